"""Reports on fitted models: calibration report, lift-test fit, and the plots shown in the UI.

Parameters are compared in one parameterisation: `saturation_lam` on the
model's max-scaled channel units (the truth's lam, defined on units divided by
the generator's `unit_scale`, is rescaled by channel_scale / unit_scale),
`saturation_beta` in KPI units per week (beta x target scale) and
`adstock_alpha`. HDIs are 94%.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_pipeline.model import HDI_PROB, _hdi_bounds, _target_scale, parameter_summary

REPORT_PARAMETERS = {"saturation_lam": "saturation_lam", "saturation_beta_kpi": "saturation_beta",
                     "adstock_alpha": "adstock_alpha"}


def _truth_values(truth_path: Path | None, params: pd.DataFrame) -> pd.Series:
    """(geo, channel, parameter) -> true value in the report's parameterisation."""
    if truth_path is None:
        return pd.Series(dtype=float)
    truth = json.loads(Path(truth_path).read_text())
    rows = []
    for r in params[["geo", "channel", "channel_scale"]].drop_duplicates().to_dict("records"):
        g, c = r["geo"], r["channel"]
        try:
            lam = truth["lam"][g][c] * r["channel_scale"] / truth["unit_scale"][c]
            rows += [(g, c, "saturation_lam", lam), (g, c, "saturation_beta", truth["beta"][g][c]),
                     (g, c, "adstock_alpha", truth["alpha"][g][c])]
        except (KeyError, TypeError):
            continue
    return pd.DataFrame(rows, columns=["geo", "channel", "parameter", "truth"]).set_index(
        ["geo", "channel", "parameter"])["truth"]


def _report_params(mmm) -> pd.DataFrame:
    p = parameter_summary(mmm)
    p = p[p["parameter"].isin(REPORT_PARAMETERS)].copy()
    p["parameter"] = p["parameter"].map(REPORT_PARAMETERS)
    p["hdi_width"] = p["hdi_high"] - p["hdi_low"]
    return p


def calibration_tables(models: dict[str, tuple[str, object]], lift: pd.DataFrame, market: str,
                       truth_path: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calibration_report, lift_test_fit) for one market.

    `models` maps variant -> (model_version, fitted MMM); the calibrated one may be absent.
    """
    params = {v: _report_params(m) for v, (_, m) in models.items()}
    base = params.get("uncalibrated", next(iter(params.values())))
    key = ["geo", "channel", "parameter"]
    report = base[key + ["channel_scale"]].copy()
    for variant in ("uncalibrated", "calibrated"):
        p = params.get(variant)
        cols = {"mean": f"mean_{variant}", "hdi_width": f"hdi_width_{variant}"}
        if p is None:
            for c in cols.values():
                report[c] = np.nan
        else:
            report = report.merge(p[key + list(cols)].rename(columns=cols), on=key, how="left")
    report["precision_improvement_pct"] = (
        (report["hdi_width_uncalibrated"] - report["hdi_width_calibrated"]) / report["hdi_width_uncalibrated"] * 100
    )
    truth = _truth_values(truth_path, base)
    report["truth"] = [truth.get(tuple(k), np.nan) for k in report[key].itertuples(index=False)]
    for variant in ("uncalibrated", "calibrated"):
        report[f"error_{variant}"] = (report[f"mean_{variant}"] - report["truth"]).abs() / report["truth"]
    report.insert(0, "market", market)
    report.insert(0, "model_version_calibrated", models.get("calibrated", (None,))[0])
    report.insert(0, "model_version_uncalibrated", models.get("uncalibrated", (None,))[0])
    report = report.drop(columns=["channel_scale"])

    fit_rows = []
    if lift is not None and len(lift):
        for variant, (version, mmm) in models.items():
            for r in lift.to_dict("records"):
                draws = predicted_lift_draws(mmm, r["geo"], r["channel"], r["x"], r["delta_x"])
                lo, hi = _hdi_bounds(draws[:, None], HDI_PROB)
                mean = float(draws.mean())
                fit_rows.append({
                    "test_id": r["test_id"], "market": market, "variant": variant, "model_version": version,
                    "geo": r["geo"], "channel": r["channel"], "predicted_mean": mean,
                    "predicted_hdi_low": float(lo[0]), "predicted_hdi_high": float(hi[0]),
                    "observed": r["delta_y"], "sigma": r["sigma"],
                    "z_score": (r["delta_y"] - mean) / r["sigma"],
                })
    return report, pd.DataFrame(fit_rows)


def predicted_lift_draws(mmm, geo: str, channel: str, x: float, delta_x: float) -> np.ndarray:
    """Posterior draws of the weekly KPI lift of adding `delta_x` units on top of `x` (steady state).

    The same quantity pymc-marketing's lift-test likelihood compares with the
    measured lift: beta * (logistic(lam * (x + dx) / s) - logistic(lam * x / s)),
    in KPI units.
    """
    post = mmm.idata.posterior
    cd = mmm.idata.constant_data

    def pick(da):
        sel = {"channel": channel}
        if "geo" in da.dims:
            sel["geo"] = geo
        return np.asarray(da.sel(sel)).reshape(-1)

    lam = pick(post["saturation_lam"])
    beta = pick(post["saturation_beta"])
    ch_scale = cd["channel_scale"]
    s = float(np.asarray(ch_scale.sel({d: v for d, v in (("channel", channel), ("geo", geo)) if d in ch_scale.dims})).ravel()[0])
    target = float(np.asarray(_target_scale(mmm)).ravel()[0])

    def logistic(z):
        return (1 - np.exp(-z)) / (1 + np.exp(-z))

    return beta * target * (logistic(lam * (x + delta_x) / s) - logistic(lam * x / s))


# --------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def model_figures(mmm, contributions: pd.DataFrame, title: str) -> dict:
    """Trace plots of the channel-level (population) media parameters and the decomposition over time."""
    plt = _plt()
    post = mmm.idata.posterior
    hyper = [n for n in post.data_vars
             if any(n.startswith(p) for p in ("saturation_lam", "saturation_beta", "adstock_alpha"))
             and "geo" not in post[n].dims and "channel" in post[n].dims]
    if not hyper:  # national model: the parameters themselves are per channel
        hyper = [n for n in ("saturation_lam", "saturation_beta", "adstock_alpha") if n in post]
    figs = {}
    fig, axes = plt.subplots(len(hyper), 1, figsize=(9, 2.0 * len(hyper) + 0.5), dpi=80, squeeze=False)
    for ax, name in zip(axes[:, 0], hyper):
        da = post[name]
        for ch in da.coords["channel"].values:
            for chain in da.coords["chain"].values:
                ax.plot(np.asarray(da.sel(channel=ch, chain=chain)).ravel(), lw=0.5, alpha=0.7)
        ax.set_ylabel(name, fontsize=7)
    axes[0, 0].set_title(f"{title}: trace of channel-level media parameters (one line per chain x channel)")
    axes[-1, 0].set_xlabel("draw")
    fig.tight_layout()
    figs["trace"] = fig

    total = contributions.groupby(["week_start", "component"])["mean"].sum().unstack("component").fillna(0)
    order = [c for c in ("baseline", "seasonality") if c in total] + \
        [c for c in total.columns if c not in ("baseline", "seasonality")]
    fig, ax = plt.subplots(figsize=(10, 4), dpi=80)
    pos = total[order].clip(lower=0)
    ax.stackplot(pd.to_datetime(pos.index), pos.T.values, labels=order, alpha=0.85)
    ax.set_title(f"{title}: weekly KPI decomposition (posterior mean, summed over geos)")
    ax.legend(fontsize=7, loc="upper left", ncol=4)
    fig.tight_layout()
    figs["contributions"] = fig
    return figs


def calibration_figures(models: dict, report: pd.DataFrame, fit_table: pd.DataFrame, truth_path) -> dict:
    plt = _plt()
    figs = {}
    channels = sorted(report["channel"].unique())
    fig, axes = plt.subplots(1, len(channels), figsize=(4 * len(channels), 3.8), dpi=80, squeeze=False)
    colors = {"uncalibrated": "tab:gray", "calibrated": "tab:blue"}
    for ax, ch in zip(axes[0], channels):
        sub = report[report["channel"] == ch].set_index(["geo", "parameter"])
        for variant in ("uncalibrated", "calibrated"):
            if variant not in models:
                continue
            p = _report_params(models[variant][1])
            p = p[p["channel"] == ch].set_index(["geo", "parameter"])
            lam, beta = p.xs("saturation_lam", level="parameter"), p.xs("saturation_beta", level="parameter")
            ax.errorbar(lam["mean"], beta["mean"],
                        xerr=[lam["mean"] - lam["hdi_low"], lam["hdi_high"] - lam["mean"]],
                        yerr=[beta["mean"] - beta["hdi_low"], beta["hdi_high"] - beta["mean"]],
                        fmt="o", ms=4, lw=0.8, color=colors[variant], label=variant, alpha=0.8)
        if report["truth"].notna().any():
            t_lam = sub.xs("saturation_lam", level="parameter")["truth"]
            t_beta = sub.xs("saturation_beta", level="parameter")["truth"]
            ax.scatter(t_lam, t_beta, marker="x", color="black", s=40, label="truth", zorder=5)
        ax.set_title(ch)
        ax.set_xlabel("saturation lam (max-scaled units)")
        ax.set_ylabel("saturation beta (KPI / week)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Posterior lam and beta per geo (94% HDI)")
    fig.tight_layout()
    figs["posterior_lam_beta"] = fig

    if len(fit_table):
        fig, ax = plt.subplots(figsize=(8, 4), dpi=80)
        labels = (fit_table["test_id"] + " " + fit_table["geo"].astype(str)).drop_duplicates().tolist()
        pos = {lab: i for i, lab in enumerate(labels)}
        for k, (variant, g) in enumerate(fit_table.groupby("variant")):
            xs = np.array([pos[f"{t} {geo}"] for t, geo in zip(g["test_id"], g["geo"].astype(str))]) + 0.15 * (k - 0.5)
            ax.errorbar(xs, g["predicted_mean"], yerr=[g["predicted_mean"] - g["predicted_hdi_low"],
                                                       g["predicted_hdi_high"] - g["predicted_mean"]],
                        fmt="o", color=colors.get(variant, "tab:orange"), label=f"predicted ({variant})")
        obs = fit_table.drop_duplicates(["test_id", "geo"])
        ax.errorbar([pos[f"{t} {geo}"] for t, geo in zip(obs["test_id"], obs["geo"].astype(str))],
                    obs["observed"], yerr=obs["sigma"], fmt="s", color="black", label="measured +/- sigma")
        ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7, ha="right")
        ax.set_ylabel("weekly KPI lift")
        ax.set_title("Lift tests: predicted vs measured")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs["lift_fit"] = fig
    return figs
