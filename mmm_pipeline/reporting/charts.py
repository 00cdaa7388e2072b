"""The report's number formats, HTML tables and plots (matplotlib, Agg, PNG data URIs)."""

from __future__ import annotations

import base64
import html
import io
import math
from datetime import date, datetime
from typing import Callable

import numpy as np
import pandas as pd

from mmm_pipeline.units import MONEY_KPI_WORDS

HDI_LABEL = "94% interval"


# --------------------------------------------------------------------------- formatting


def _missing(v) -> bool:
    try:
        return v is None or bool(pd.isna(v))
    except (TypeError, ValueError):  # a list or an array: not one missing value
        return False


def _no_negative_zero(text: str) -> str:
    """Drop the sign of a value that rounds to zero ("-0.00" -> "0.00")."""
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def number(v, digits: int = 0) -> str:
    return "n/a" if _missing(v) else _no_negative_zero(f"{v:,.{digits}f}")


def money(v, currency: str, digits: int = 0) -> str:
    return "n/a" if _missing(v) else f"{number(v, digits)} {currency}"


def ratio(v, digits: int = 2) -> str:
    return number(v, digits)


def pct(v, digits: int = 1) -> str:
    return "n/a" if _missing(v) else f"{number(100 * v, digits)}%"


def day(v) -> str:
    """A date, or a timestamp: the day alone at midnight ("2024-11-04", never "2024-11-04 00:00:00")."""
    if _missing(v):
        return ""
    t = pd.Timestamp(v)
    return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%d %H:%M")


def interval(lo, hi, fmt: Callable) -> str:
    if _missing(lo) or _missing(hi):
        return "interval not stored"
    return f"{fmt(lo)} to {fmt(hi)}"


def cell(v) -> str:
    """A table cell without a format of its own: yes/no, days, grouped numbers, no "-0.00"."""
    if isinstance(v, (list, dict, tuple)):
        return str(v)
    if _missing(v):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (datetime, date, np.datetime64)):
        return day(v)
    if isinstance(v, (int, np.integer)):
        return f"{v:,}"
    if isinstance(v, (float, np.floating)):
        return number(v, 0 if abs(v) >= 100 else 2)
    return str(v)


# Column names as a reader says them; any other column loses its underscores.
COLUMN_LABELS = {
    "r2": "R-squared", "mape": "MAPE", "coverage_94": "weeks inside the 94% interval", "max_rhat": "max R-hat",
    "min_ess_bulk": "min bulk ESS", "min_ess_tail": "min tail ESS", "passed_gates": "passed its gates",
    "gated": "gated", "model_mape": "model MAPE", "baseline_mape": "naive forecast MAPE",
    "model_crps": "model CRPS", "baseline_crps": "naive forecast CRPS", "beats_baseline": "beats the naive forecast",
    "z_score": "z", "uncal_z": "z (uncalibrated)", "uncal_predicted_mean": "predicted (uncalibrated)",
    "pareto_k": "Pareto k-hat", "predicted_hdi_low": "predicted, 94% low", "predicted_hdi_high": "predicted, 94% high",
    "at_bound": "at a bound", "extrapolated": "beyond the largest spend seen",
}


def column_label(name) -> str:
    return COLUMN_LABELS.get(str(name), str(name).replace("_", " "))


def html_table(df: pd.DataFrame, formats: dict[str, Callable] | None = None, flag_rows=None) -> str:
    """A small HTML table; `formats` per column (else `cell`), `flag_rows` a boolean Series marking rows."""
    formats = formats or {}
    head = "".join(f"<th>{html.escape(column_label(c))}</th>" for c in df.columns)
    rows = []
    for i, r in enumerate(df.itertuples(index=False, name=None)):
        cells = "".join(
            f"<td class='{'num' if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) else ''}'>"
            f"{html.escape(formats[c](v) if c in formats else cell(v))}</td>"
            for c, v in zip(df.columns, r))
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


def _tick_digits(step: float) -> int:
    """Decimals that write a tick step exactly (0.5 -> 1, 0.25 -> 2, 2 -> 0), at most 4."""
    digits = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    while digits < 4 and abs(round(step, digits) - step) > 1e-9 * step:
        digits += 1
    return digits


def _compact_axis(ax, label: str, axis: str = "y"):
    """Tick labels in k / M with the decimals the tick step needs, so no two ticks read the same
    ("7.5k 8.0k 8.5k", not "8k 8k 8k"), and the axis's one unit as its label."""
    from matplotlib.ticker import FuncFormatter

    target = ax.yaxis if axis == "y" else ax.xaxis

    def fmt(v, _pos):
        if v == 0:
            return "0"
        ticks = sorted(target.get_majorticklocs())
        top = max((abs(t) for t in ticks), default=abs(v))
        scale, suffix = (1e6, "M") if top >= 1e6 else (1e3, "k") if top >= 1e3 else (1.0, "")
        step = min((b - a for a, b in zip(ticks, ticks[1:]) if b > a), default=0.0) / scale
        return _no_negative_zero(f"{v / scale:,.{_tick_digits(step)}f}") + suffix

    target.set_major_formatter(FuncFormatter(fmt))
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(label)


def plot_headline(ch: pd.DataFrame, currency: str, kpi_unit: str, kpi_label: str):
    """Spend and incremental KPI per channel: one axis when the KPI is money in `currency`, else
    two panels, each in its own unit (spend in money, the KPI in its count)."""
    plt = _plt()
    channels = list(ch["channel"])
    if kpi_unit == currency:
        fig, ax = plt.subplots(figsize=(8, 3.2))
        x = range(len(ch))
        ax.bar([i - 0.2 for i in x], ch["spend"], width=0.4, label="spend", color="#bbbbbb")
        ax.bar([i + 0.2 for i in x], ch["contribution_mean"], width=0.4, label=f"incremental {kpi_label}",
               color="#1f77b4")
        ax.set_xticks(list(x), channels)
        ax.set_ylim(top=1.25 * float(max(ch["spend"].max(), ch["contribution_mean"].max())))
        _compact_axis(ax, currency)
        ax.legend(frameon=False, loc="upper left", ncol=2)
        ax.set_title("Spend and what it brought, per channel (training period)")
        fig.subplots_adjust(left=0.11, right=0.98, top=0.88, bottom=0.1)
        return fig
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.9 + 0.45 * max(len(ch), 2)), sharey=True)
    y = range(len(ch))
    left.barh(list(y), ch["spend"], color="#bbbbbb")
    right.barh(list(y), ch["contribution_mean"], color="#1f77b4")
    left.set_yticks(list(y), channels)
    left.invert_yaxis()
    left.set_title(f"Spend ({currency})", fontsize=10)
    right.set_title(f"Incremental {kpi_label}", fontsize=10)
    _compact_axis(left, currency, axis="x")
    _compact_axis(right, kpi_unit, axis="x")
    fig.suptitle("Spend and what it brought, per channel (training period)", fontsize=11)
    fig.subplots_adjust(left=0.16, right=0.97, top=0.8, bottom=0.3 / (0.9 + 0.45 * max(len(ch), 2)) + 0.12,
                        wspace=0.12)
    return fig


def plot_fit(fit: pd.DataFrame, kpi_label: str, kpi_unit: str):
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
        _compact_axis(ax, kpi_unit)
    axes[0, 0].legend(frameon=False, ncol=3, fontsize=8, loc="upper right")
    fig.suptitle(f"Weekly {kpi_label}: actual vs predicted")
    fig.subplots_adjust(left=0.09, right=0.98, top=1 - 0.45 / (2.3 * len(geos)), bottom=0.25 / len(geos), hspace=0.3)
    return fig


def plot_contributions(contrib: pd.DataFrame, kpi_label: str, kpi_unit: str):
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
    ax.set_title(f"Weekly {kpi_label} by component (sum over geos, posterior mean)")
    _compact_axis(ax, kpi_unit)
    ncol = min(len(wide.columns), 6)  # wrap the legend rather than run it off the page
    ax.legend(frameon=False, ncol=ncol, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08))
    fig.subplots_adjust(left=0.09, right=0.98, top=0.91, bottom=0.2 + 0.05 * ((len(wide.columns) - 1) // ncol))
    return fig


def plot_returns(returns: pd.DataFrame, ylabel: str, title: str, break_even: float | None):
    """Per channel, one point per variant and geo with its interval (`mean`, `low`, `high`): ROAS with
    its break-even line, or the cost per incremental KPI (no break-even; an interval without an upper
    end is drawn to the top of the plot)."""
    plt = _plt()
    channels = sorted(returns["channel"].unique())
    variants = [v for v in ("uncalibrated", "calibrated") if v in set(returns["variant"])]
    geos = sorted(returns["geo"].unique())
    finite = pd.concat([returns["mean"], returns["high"]]).replace([np.inf, -np.inf], np.nan)
    top = float(finite.max()) * 1.1 if finite.notna().any() else 1.0
    fig, ax = plt.subplots(figsize=(10, 3.6))
    step = 1.0 / (len(variants) * len(geos) + 1)
    for vi, v in enumerate(variants):
        for gi, g in enumerate(geos):
            d = returns[(returns["variant"] == v) & (returns["geo"] == g)].set_index("channel").reindex(channels)
            mean, low, high = (d[c].clip(upper=top) for c in ("mean", "low", "high"))
            xs = [i + (vi * len(geos) + gi) * step - 0.4 for i in range(len(channels))]
            ax.errorbar(xs, mean, yerr=[mean - low, high - mean], fmt="o", ms=4, color=VARIANT_COLORS.get(v, "k"),
                        alpha=0.9, capsize=2, label=v if gi == 0 else None)
    if break_even is not None:
        ax.axhline(break_even, color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(range(len(channels)), channels)
    _compact_axis(ax, ylabel)
    ax.set_title(title)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.1)
    ax.legend(frameon=False)
    return fig


def plot_curves(curves: pd.DataFrame, currency: str, kpi_label: str, kpi_unit: str):
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
        _compact_axis(ax, f"weekly spend ({currency})", axis="x")
        _compact_axis(ax, f"weekly {kpi_label} ({kpi_unit})" if kpi_unit != kpi_label else f"weekly {kpi_label}")
        ax.legend(frameon=False, fontsize=7)
    for ax in axes.ravel()[len(channels):]:
        ax.set_visible(False)
    fig.subplots_adjust(left=0.09, right=0.98, top=1 - 0.3 / (3.0 * rows), bottom=0.5 / (3.0 * rows),
                        wspace=0.3, hspace=0.45)
    return fig


def plot_lift(fit: pd.DataFrame, kpi_unit: str):
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
    _compact_axis(ax, f"lift over the test's readout ({kpi_unit})")
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
    _compact_axis(ax, currency)
    ax.set_title(title + " (orange: beyond the largest weekly spend seen)", fontsize=10)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.2)
    ax.legend(frameon=False)
    return fig


def plot_waterfall(steps: pd.DataFrame, kpi_label: str, kpi_unit: str):
    """Contribution waterfall over the training period: `steps` (label, value, kind) in order, each bar
    starting where the previous one ended, then the total (kind: baseline, control, other, media)."""
    plt = _plt()
    colors = {"baseline": "#8c8c8c", "control": "#9467bd", "other": "#bcbd22", "media": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(10, 3.8))
    start = 0.0
    for i, r in enumerate(steps.itertuples()):
        ax.bar(i, r.value, bottom=start, color=colors.get(r.kind, "#1f77b4"), width=0.7)
        start += r.value
    n = len(steps)
    ax.bar(n, start, color="#1d2330", width=0.7)
    ax.set_xticks(range(n + 1), [*steps["label"], f"total {kpi_label}"], rotation=30, ha="right", fontsize=8)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_title(f"What made up the {kpi_label} over the training period (posterior mean, sum over geos)")
    _compact_axis(ax, kpi_unit)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.9, bottom=0.22)
    return fig


def plot_shares(shares: pd.DataFrame):
    """Per channel: share of spend (bar) beside share of the media effect (bar with its interval)."""
    plt = _plt()
    d = shares.reset_index(drop=True)
    y = np.arange(len(d))
    fig, ax = plt.subplots(figsize=(9, 0.9 + 0.5 * max(len(d), 2)))
    ax.barh(y - 0.2, 100 * d["spend_share"], height=0.4, color="#bbbbbb", label="share of spend")
    mean = 100 * d["effect_share_mean"]
    err = [mean - 100 * d["effect_share_hdi_low"], 100 * d["effect_share_hdi_high"] - mean]
    ax.barh(y + 0.2, mean, height=0.4, color="#1f77b4", xerr=err, capsize=2,
            label=f"share of media effect ({HDI_LABEL})")
    ax.set_yticks(list(y), list(d["channel"]))
    ax.invert_yaxis()
    _compact_axis(ax, "% of all media", axis="x")
    height = 1.5 + 0.5 * max(len(d), 2)
    fig.set_size_inches(9, height)
    ax.legend(frameon=False, fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.55 / (height - 1.35)))
    ax.set_title("Share of spend vs share of effect, per channel (training period)", fontsize=10)
    fig.subplots_adjust(left=0.16, right=0.98, top=1 - 0.35 / height, bottom=1.0 / height)
    return fig


def plot_average_marginal(rows: pd.DataFrame, ylabel: str, title: str, break_even: float | None):
    """Per channel, the average figure beside the marginal one, each with its interval
    (columns channel, avg, avg_low, avg_high, marg, marg_low, marg_high; an open upper end is drawn
    to the top of the plot)."""
    plt = _plt()
    d = rows.reset_index(drop=True)
    vals = pd.concat([d[c] for c in ("avg", "avg_high", "marg", "marg_high")]).replace([np.inf, -np.inf], np.nan)
    top = float(vals.max()) * 1.1 if vals.notna().any() else 1.0
    fig, ax = plt.subplots(figsize=(10, 3.4))
    x = np.arange(len(d))
    for off, key, color, label in ((-0.15, "avg", "#8c8c8c", "average (vs zero spend)"),
                                   (0.15, "marg", "#1f77b4", "marginal (at today's spend)")):
        mean, low, high = (d[c].replace([np.inf, -np.inf], top).clip(upper=top) for c in (key, f"{key}_low", f"{key}_high"))
        ax.errorbar(x + off, mean, yerr=[(mean - low).clip(lower=0), (high - mean).clip(lower=0)], fmt="o", ms=5,
                    color=color, capsize=3, label=label)
    if break_even is not None:
        ax.axhline(break_even, color="#c0392b", lw=0.8, ls="--")
    ax.set_xticks(list(x), list(d["channel"]))
    _compact_axis(ax, ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.1)
    return fig
