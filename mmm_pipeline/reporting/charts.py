"""The report's number formats, HTML tables and plots (matplotlib, Agg, PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
from typing import Callable

import pandas as pd

from mmm_pipeline.units import MONEY_KPI_WORDS

HDI_LABEL = "94% interval"


# --------------------------------------------------------------------------- formatting


def money(v, currency: str, digits: int = 0) -> str:
    if v is None or pd.isna(v):
        return "n/a"
    return f"{v:,.{digits}f} {currency}"


def ratio(v, digits: int = 2) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{v:,.{digits}f}"


def pct(v, digits: int = 1) -> str:
    return "n/a" if v is None or pd.isna(v) else f"{100 * v:.{digits}f}%"


def interval(lo, hi, fmt: Callable) -> str:
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return "interval not stored"
    return f"{fmt(lo)} to {fmt(hi)}"


def html_table(df: pd.DataFrame, formats: dict[str, Callable] | None = None, flag_rows=None) -> str:
    """A small HTML table; `formats` per column, `flag_rows` a boolean Series marking rows."""
    formats = formats or {}
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for i, (_, r) in enumerate(df.iterrows()):
        cells = "".join(
            f"<td class='{'num' if isinstance(r[c], (int, float)) and not isinstance(r[c], bool) else ''}'>"
            f"{html.escape(formats[c](r[c]) if c in formats else ('' if pd.isna(r[c]) else str(r[c])))}</td>"
            if not isinstance(r[c], (list, dict)) else f"<td>{html.escape(str(r[c]))}</td>"
            for c in df.columns)
        cls = " class='flag'" if flag_rows is not None and bool(flag_rows.iloc[i]) else ""
        rows.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_image(fig, alt: str) -> dict:
    """A closed figure as the template's image: {"alt", "src": PNG data URI}."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)  # fixed margins: a layout engine would draw the text twice
    plt.close(fig)
    return {"alt": alt, "src": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}


VARIANT_COLORS = {"uncalibrated": "#8c8c8c", "calibrated": "#1f77b4"}


def _money_axis(ax, currency: str, axis: str = "y"):
    from matplotlib.ticker import FuncFormatter

    def fmt(v, _):
        a = abs(v)
        return f"{v / 1e6:.1f}M" if a >= 1e6 else f"{v / 1e3:.0f}k" if a >= 1e3 else f"{v:.0f}"

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(FuncFormatter(fmt))
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(currency)


def plot_headline(ch: pd.DataFrame, currency: str, kpi: str):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    x = range(len(ch))
    ax.bar([i - 0.2 for i in x], ch["spend"], width=0.4, label="spend", color="#bbbbbb")
    ax.bar([i + 0.2 for i in x], ch["contribution_mean"], width=0.4, label=f"incremental {kpi}", color="#1f77b4")
    ax.set_xticks(list(x), ch["channel"])
    _money_axis(ax, currency)
    fig.subplots_adjust(left=0.11, right=0.98, top=0.88, bottom=0.1)
    ax.set_title("Spend and what it brought, per channel (training period)")
    ax.set_ylim(top=1.25 * float(max(ch["spend"].max(), ch["contribution_mean"].max())))
    ax.legend(frameon=False, loc="upper left", ncol=2)
    return fig


def plot_fit(fit: pd.DataFrame, kpi: str, currency: str):
    plt = _plt()
    geos = sorted(fit["geo"].unique())
    fig, axes = plt.subplots(len(geos), 1, figsize=(10, 2.3 * len(geos)), sharex=True, squeeze=False)
    for ax, geo in zip(axes[:, 0], geos):
        d = fit[fit["geo"] == geo].sort_values("week_start")
        w = pd.to_datetime(d["week_start"])
        ax.fill_between(w, d["predicted_low"], d["predicted_high"], color="#1f77b4", alpha=0.25,
                        label=f"predicted, {HDI_LABEL}")
        ax.plot(w, d["predicted_mean"], color="#1f77b4", lw=1.2, label="predicted mean")
        ax.plot(w, d["actual"], color="black", lw=0.9, marker=".", ms=3, label="actual")
        ax.set_title(geo, loc="left", fontsize=10)
        _money_axis(ax, currency if any(x in kpi.lower() for x in MONEY_KPI_WORDS) else kpi)
    axes[0, 0].legend(frameon=False, ncol=3, fontsize=8, loc="upper right")
    fig.suptitle(f"Weekly {kpi}: actual vs predicted")
    fig.subplots_adjust(left=0.09, right=0.98, top=1 - 0.45 / (2.3 * len(geos)), bottom=0.25 / len(geos), hspace=0.3)
    return fig


def plot_contributions(contrib: pd.DataFrame, kpi: str, currency: str):
    plt = _plt()
    wide = contrib.pivot_table(index="week_start", columns="component", values="mean", aggfunc="sum").sort_index()
    order = [c for c in ("baseline", "seasonality") if c in wide] + \
        [c for c in wide.columns if c not in ("baseline", "seasonality")]
    wide = wide[order]
    fig, ax = plt.subplots(figsize=(10, 3.8))
    idx = pd.to_datetime(wide.index)
    pos = wide.clip(lower=0)
    neg = wide.clip(upper=0)
    ax.stackplot(idx, pos.T.values, labels=list(wide.columns), alpha=0.85)
    if (neg < 0).any().any():
        ax.stackplot(idx, neg.T.values, alpha=0.5)
    ax.set_title(f"Weekly {kpi} by component (sum over geos, posterior mean)")
    _money_axis(ax, currency if any(x in kpi.lower() for x in MONEY_KPI_WORDS) else kpi)
    ax.legend(frameon=False, ncol=len(wide.columns), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.91, bottom=0.2)
    return fig


def plot_roas(roas: pd.DataFrame):
    plt = _plt()
    channels = sorted(roas["channel"].unique())
    variants = [v for v in ("uncalibrated", "calibrated") if v in set(roas["variant"])]
    geos = sorted(roas["geo"].unique())
    fig, ax = plt.subplots(figsize=(10, 3.6))
    step = 1.0 / (len(variants) * len(geos) + 1)
    for vi, v in enumerate(variants):
        for gi, g in enumerate(geos):
            d = roas[(roas["variant"] == v) & (roas["geo"] == g)].set_index("channel").reindex(channels)
            xs = [i + (vi * len(geos) + gi) * step - 0.4 for i in range(len(channels))]
            ax.errorbar(xs, d["roas_mean"], yerr=[d["roas_mean"] - d["roas_hdi_low"], d["roas_hdi_high"] - d["roas_mean"]],
                        fmt="o", ms=4, color=VARIANT_COLORS.get(v, "k"), alpha=0.9, capsize=2,
                        label=v if gi == 0 else None)
    ax.axhline(1.0, color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(range(len(channels)), channels)
    ax.set_ylabel("ROAS (revenue per 1 spent)")
    ax.set_title(f"ROAS per channel, one point per geo, {HDI_LABEL} (dashed: break-even)")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.1)
    ax.legend(frameon=False)
    return fig


def plot_curves(curves: pd.DataFrame, currency: str, kpi: str):
    plt = _plt()
    channels = sorted(curves["channel"].unique())
    cols = min(2, len(channels))
    rows = (len(channels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(10, 3.0 * rows), squeeze=False)
    for ax, ch in zip(axes.ravel(), channels):
        for g, d in curves[curves["channel"] == ch].groupby("geo"):
            d = d.sort_values("spend")
            line, = ax.plot(d["spend"], d["response_mean"], lw=1.3, label=g)
            ax.fill_between(d["spend"], d["hdi_low"], d["hdi_high"], color=line.get_color(), alpha=0.15)
            cur, top = float(d["current_weekly_spend"].iloc[0]), float(d["max_weekly_spend"].iloc[0])
            ax.axvline(cur, color=line.get_color(), ls="--", lw=0.8)
            ax.axvline(top, color=line.get_color(), ls=":", lw=0.8)
        ax.set_title(f"{ch} (dashed: current weekly spend, dotted: largest seen)", fontsize=9, loc="left")
        _money_axis(ax, f"weekly spend ({currency})", axis="x")
        ax.set_ylabel(f"weekly {kpi}")
        ax.legend(frameon=False, fontsize=7)
    for ax in axes.ravel()[len(channels):]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=1 - 0.3 / (3.0 * rows), bottom=0.5 / (3.0 * rows),
                        wspace=0.3, hspace=0.45)
    return fig


def plot_lift(fit: pd.DataFrame):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 3.4))
    labels = [f"{r.test_id}\n{r.geo}" if "geo" in fit and pd.notna(getattr(r, "geo", None)) else r.test_id
              for r in fit.drop_duplicates(["test_id"] + (["geo"] if "geo" in fit else [])).itertuples()]
    keys = fit.drop_duplicates(["test_id"] + (["geo"] if "geo" in fit else []))
    for i, k in enumerate(keys.itertuples()):
        rows = fit[(fit["test_id"] == k.test_id) & ((fit["geo"] == k.geo) if "geo" in fit else True)]
        ax.errorbar([i - 0.25], [k.observed], yerr=[[1.96 * k.sigma], [1.96 * k.sigma]], fmt="s", color="black",
                    capsize=3, label="measured (+/- 1.96 sigma)" if i == 0 else None)
        for j, r in enumerate(rows.itertuples()):
            ax.errorbar([i + 0.05 + 0.2 * j], [r.predicted_mean],
                        yerr=[[r.predicted_mean - r.predicted_hdi_low], [r.predicted_hdi_high - r.predicted_mean]],
                        fmt="o", color=VARIANT_COLORS.get(r.variant, "k"), capsize=3,
                        label=f"predicted, {r.variant}" if i == 0 else None)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("lift over the test's readout (KPI)")
    ax.set_title("Lift tests: measured vs predicted readout")
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.2)
    ax.legend(frameon=False, fontsize=8)
    return fig


def plot_plan(alloc: pd.DataFrame, currency: str, title: str):
    plt = _plt()
    d = alloc.sort_values(["channel", "geo"])
    labels = [f"{c}\n{g}" for c, g in zip(d["channel"], d["geo"])]
    fig, ax = plt.subplots(figsize=(10, 3.4))
    x = range(len(d))
    ax.bar([i - 0.2 for i in x], d["current_spend"], width=0.4, color="#bbbbbb", label="current plan")
    colors = ["#e67e22" if e else "#1f77b4" for e in d["extrapolated"]]
    ax.bar([i + 0.2 for i in x], d["optimal_spend"], width=0.4, color=colors, label="recommended")
    ax.set_xticks(list(x), labels, fontsize=7)
    _money_axis(ax, currency)
    ax.set_title(title + " (orange: beyond the largest weekly spend seen)", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.2)
    ax.legend(frameon=False)
    return fig
