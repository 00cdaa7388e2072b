"""Reports on fitted models: calibration report, lift-test fit, and the plots shown in the UI.

Parameters are compared in one parameterisation: `saturation_lam` on the
model's max-scaled channel units (the truth's lam, defined on units divided by
the generator's `unit_scale`, is rescaled by channel_scale / unit_scale),
`saturation_beta` in KPI units per week (beta x target scale) and
`adstock_alpha`. HDIs are 94%.

What a marketer reads is compared too, per geo and channel:
* `roas`: the channel's contribution over the training weeks (posterior
  `channel_contribution` summed over the weeks, KPI units) / its spend over them
  (`constant_data.channel_spend`), per draw; the truth is the generating model's
  contribution on the same weekly units (truth.json parameters) / the same spend;
* `response_at_current_spend`: the steady-state weekly response at the mean weekly
  units of the last 13 modelled weeks (`curves.response_draws`; with HSGP media
  the multiplier is taken at 1, its prior mean, as in the response curves).
With a truth file each row has each model's error, whether the truth is inside
each 94% HDI and the bias improvement of pymc-marketing's geo-lift calibration
example, (|mean_uncal - true| - |mean_cal - true|) / hdi_width_uncal x 100.

`lift_test_fit`: per test and variant, the lift the model implies **in the
test's own scope** (window, or window + carryover) on the actual spend path
against the reported readout and sigma: the calibrated posterior's own deterministic
`lift_window_implied`, and for a model without the term (uncalibrated) the same
expression evaluated on its posterior (`lift_likelihood.implied_lift_draws`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import HDI_PROB, MEDIA_PARAMETERS
from mmm_pipeline.model.saturation import logistic_saturation
from mmm_pipeline.model.summaries import hdi_bounds, parameter_summary, target_scale

# Each family's own parameters (logistic: lam; Hill: slope, kappa; delayed adstock: theta), as parameter_summary
# names them -> the report's name (beta in KPI units per week).
REPORT_PARAMETERS = {"saturation_lam": "saturation_lam", "saturation_slope": "saturation_slope",
                     "saturation_kappa": "saturation_kappa", "saturation_beta_kpi": "saturation_beta",
                     "adstock_alpha": "adstock_alpha", "adstock_theta": "adstock_theta"}
# The saturation parameter plotted against beta: the logistic's steepness, else the Hill's half-saturation point.
_SHAPE_PARAMETERS = {"saturation_lam": "saturation lam (max-scaled units)",
                     "saturation_kappa": "saturation kappa (max-scaled units)"}
MARKETER_PARAMETERS = ("roas", "response_at_current_spend")
RECENT_WEEKS = 13


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


def true_contribution(truth: dict, units: np.ndarray, geo: str, channel: str) -> np.ndarray:
    """The generating model's weekly contribution (KPI units) on `units` (weeks,) of one cell.

    `truth` is a sample's truth.json (``mmm_pipeline.sample``): its alpha, lam, beta and
    unit_scale of the cell, through the normalised geometric adstock and the logistic saturation.
    """
    l_max = int(truth["adstock"]["l_max"])
    a, lam, beta = truth["alpha"][geo][channel], truth["lam"][geo][channel], truth["beta"][geo][channel]
    x = np.asarray(units, float) / truth["unit_scale"][channel]
    # the generator's own adstock (sample/simulate.py), on one cell's numpy history
    w = a ** np.arange(l_max)
    w = w / w.sum()
    ad = np.zeros_like(x)
    for k in range(l_max):
        ad[k:] += w[k] * x[: len(x) - k]
    return logistic_saturation(ad, lam, beta)


def marketer_rows(mmm, truth: dict | None = None) -> pd.DataFrame:
    """ROAS and response at current spend per geo and channel: mean, 94% HDI (and the truth).

    Columns: geo, channel, parameter, mean, hdi_low, hdi_high, hdi_width, truth.
    """
    from mmm_pipeline.decisions.curves import response_draws

    post = mmm.idata.posterior
    cd = mmm.idata.constant_data
    contrib = (post["channel_contribution"].sum("date") * target_scale(mmm)).stack(sample=("chain", "draw"))
    units = cd["channel_data"]
    spend = cd["channel_spend"] if "channel_spend" in cd else None
    geo_model = "geo" in units.dims
    geos = [str(g) for g in units.coords["geo"].values] if geo_model else ["national"]
    rows = []
    for geo in geos:
        for ch in [str(c) for c in units.coords["channel"].values]:
            sel = {"channel": ch, **({"geo": geo} if geo_model else {})}
            u = np.asarray(units.sel(sel), float)
            sp = float(np.asarray(spend.sel(sel)).sum()) if spend is not None else float(u.sum())
            c = np.asarray(contrib.sel(sel), float)
            current = float(u[-RECENT_WEEKS:].mean())
            resp = response_draws(mmm, geo, ch, np.array([current]))[:, 0]
            t_roas = t_resp = np.nan
            if truth is not None:
                try:
                    t_roas = float(true_contribution(truth, u, geo, ch).sum()) / sp if sp > 0 else np.nan
                    t_resp = float(true_contribution(truth, np.full(4 * int(truth["adstock"]["l_max"]), current),
                                                      geo, ch)[-1])
                except (KeyError, TypeError):
                    pass
            for name, draws, t in (("roas", c / sp if sp > 0 else c * np.nan, t_roas),
                                   ("response_at_current_spend", resp, t_resp)):
                lo, hi = hdi_bounds(draws[:, None], HDI_PROB)
                rows.append({"geo": geo, "channel": ch, "parameter": name, "mean": float(draws.mean()),
                             "hdi_low": float(lo[0]), "hdi_high": float(hi[0]),
                             "hdi_width": float(hi[0] - lo[0]), "truth": t})
    return pd.DataFrame(rows)


def compare_variants(per_variant: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (geo, channel, parameter): each variant's mean, HDI, width, error, truth-in-HDI,
    the precision improvement and the bias improvement (pure pandas; `truth` column optional)."""
    key = ["geo", "channel", "parameter"]
    base = per_variant.get("uncalibrated", next(iter(per_variant.values())))
    out = base[key + (["truth"] if "truth" in base else [])].copy()
    if "truth" not in out:
        out["truth"] = np.nan
    for variant in ("uncalibrated", "calibrated"):
        p = per_variant.get(variant)
        cols = {c: f"{c}_{variant}" for c in ("mean", "hdi_low", "hdi_high", "hdi_width")}
        if p is None:
            for c in cols.values():
                out[c] = np.nan
        else:
            out = out.merge(p[key + list(cols)].rename(columns=cols), on=key, how="left")
    u, c, t = "uncalibrated", "calibrated", out["truth"]
    out["precision_improvement_pct"] = (out[f"hdi_width_{u}"] - out[f"hdi_width_{c}"]) / out[f"hdi_width_{u}"] * 100
    for v in (u, c):
        out[f"error_{v}"] = (out[f"mean_{v}"] - t).abs() / t.abs()
        out[f"signed_error_{v}"] = (out[f"mean_{v}"] - t) / t.abs()
        inside = (out[f"hdi_low_{v}"] <= t) & (t <= out[f"hdi_high_{v}"])
        out[f"truth_in_hdi_{v}"] = inside.where(t.notna() & out[f"mean_{v}"].notna())
    out["bias_improvement_pct"] = ((out[f"mean_{u}"] - t).abs() - (out[f"mean_{c}"] - t).abs()) \
        / out[f"hdi_width_{u}"] * 100
    return out


def calibration_tables(models: dict[str, tuple[str, object]], lift: pd.DataFrame, market: str,
                       truth_path: Path | None, *, extra_spend_in_data: bool = True,
                       ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(calibration_report, lift_test_fit) for one market.

    `models` maps variant -> (model_version, fitted MMM); the calibrated one may be absent.
    """
    truth = json.loads(Path(truth_path).read_text()) if truth_path is not None else None
    per_variant = {}
    for v, (_, m) in models.items():
        p = _report_params(m)
        tv = _truth_values(truth_path, p)
        p["truth"] = [tv.get(tuple(k), np.nan) for k in p[["geo", "channel", "parameter"]].itertuples(index=False)]
        per_variant[v] = pd.concat([p[["geo", "channel", "parameter", "mean", "hdi_low", "hdi_high", "hdi_width",
                                       "truth"]], marketer_rows(m, truth)], ignore_index=True)
    report = compare_variants(per_variant)
    report.insert(0, "market", market)
    report.insert(0, "model_version_calibrated", models.get("calibrated", (None,))[0])
    report.insert(0, "model_version_uncalibrated", models.get("uncalibrated", (None,))[0])
    return report, lift_test_fit(models, lift, market, extra_spend_in_data=extra_spend_in_data)


def model_lift_draws(mmm, design) -> np.ndarray:
    """(samples, tests) implied lift: the calibrated posterior's own ``lift_window_implied`` when it
    holds these tests, else the same expression evaluated on the posterior (a model without the term)."""
    from mmm_pipeline.model.lift_likelihood import LIFT_NAME, implied_lift_draws

    name = f"{LIFT_NAME}_implied"
    post = mmm.idata.posterior
    if name in post and set(design.test_ids) <= set(map(str, post[name].coords["lift_test"].values)):
        da = post[name].sel(lift_test=design.test_ids).stack(sample=("chain", "draw"))
        return da.transpose("sample", "lift_test").to_numpy()
    return implied_lift_draws(mmm, design)


def lift_test_fit(models: dict[str, tuple[str, object]], lift: pd.DataFrame, market: str, *,
                  extra_spend_in_data: bool = True) -> pd.DataFrame:
    """Per test and variant: the implied lift in the test's scope (mean, 94% HDI) vs the readout."""
    from mmm_pipeline.model.lift_likelihood import DESIGN_COLUMNS, model_data_of, window_design

    if lift is None or not len(lift) or not set(DESIGN_COLUMNS) <= set(lift.columns):
        return pd.DataFrame()
    rows = []
    for variant, (version, mmm) in models.items():
        data = model_data_of(mmm)
        design = window_design(lift, data, int(mmm.adstock.l_max), extra_spend_in_data=extra_spend_in_data)
        if not design.test_ids:
            continue
        draws = model_lift_draws(mmm, design)
        lo, hi = hdi_bounds(draws, HDI_PROB)
        meta = lift.drop_duplicates("test_id").set_index("test_id")
        for k, test_id in enumerate(design.test_ids):
            m = meta.loc[test_id]
            mean = float(draws[:, k].mean())
            national = bool(m.get("national", False))
            rows.append({
                "test_id": test_id, "market": market, "variant": variant, "model_version": version,
                "geo": "all geos" if national else m["geo"], "channel": m["channel"], "scope": design.scope[k],
                "predicted_mean": mean, "predicted_hdi_low": float(lo[k]), "predicted_hdi_high": float(hi[k]),
                "observed": float(design.observed[k]), "sigma": float(design.sigma[k]),
                "z_score": (float(design.observed[k]) - mean) / float(design.sigma[k]),
            })
    return pd.DataFrame(rows)


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
             if any(n.startswith(p) for p in MEDIA_PARAMETERS)
             and "geo" not in post[n].dims and "channel" in post[n].dims]
    if not hyper:  # national model: the parameters themselves are per channel
        hyper = [n for n in MEDIA_PARAMETERS if n in post]
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
    shape = None
    for ax, ch in zip(axes[0], channels):
        sub = report[report["channel"] == ch].set_index(["geo", "parameter"])
        for variant in ("uncalibrated", "calibrated"):
            if variant not in models:
                continue
            p = _report_params(models[variant][1])
            p = p[p["channel"] == ch].set_index(["geo", "parameter"])
            present = set(p.index.get_level_values("parameter"))
            shape = next((n for n in _SHAPE_PARAMETERS if n in present), None)
            if shape is None or "saturation_beta" not in present:
                continue
            x, beta = p.xs(shape, level="parameter"), p.xs("saturation_beta", level="parameter")
            ax.errorbar(x["mean"], beta["mean"],
                        xerr=[x["mean"] - x["hdi_low"], x["hdi_high"] - x["mean"]],
                        yerr=[beta["mean"] - beta["hdi_low"], beta["hdi_high"] - beta["mean"]],
                        fmt="o", ms=4, lw=0.8, color=colors[variant], label=variant, alpha=0.8)
        truth_params = set(sub.index.get_level_values("parameter"))
        if report["truth"].notna().any() and shape in truth_params and "saturation_beta" in truth_params:
            t_x = sub.xs(shape, level="parameter")["truth"]
            t_beta = sub.xs("saturation_beta", level="parameter")["truth"]
            ax.scatter(t_x, t_beta, marker="x", color="black", s=40, label="truth", zorder=5)
        ax.set_title(ch)
        ax.set_xlabel(_SHAPE_PARAMETERS.get(shape, "saturation"))
        ax.set_ylabel("saturation beta (KPI / week)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"Posterior {(shape or 'saturation').replace('saturation_', '')} and beta per geo (94% HDI)")
    fig.tight_layout()
    figs["posterior_lam_beta"] = fig

    roas = report[report["parameter"] == "roas"] if "parameter" in report else report.iloc[0:0]
    if len(roas):
        figs["roas_vs_truth"] = roas_figure(roas)

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
        ax.set_ylabel("KPI lift over the test's readout (its scope)")
        ax.set_title("Lift tests: implied on the actual spend path vs measured")
        ax.legend(fontsize=7)
        fig.tight_layout()
        figs["lift_fit"] = fig
    return figs


def roas_figure(roas: pd.DataFrame):
    """True vs uncalibrated vs calibrated ROAS (94% HDI) per geo and channel: one panel per channel."""
    plt = _plt()
    channels = sorted(roas["channel"].unique())
    fig, axes = plt.subplots(1, len(channels), figsize=(3.6 * len(channels), 3.6), dpi=80, squeeze=False)
    colors = {"uncalibrated": "tab:gray", "calibrated": "tab:blue"}
    for ax, ch in zip(axes[0], channels):
        sub = roas[roas["channel"] == ch].sort_values("geo")
        xs = np.arange(len(sub))
        for k, v in enumerate(("uncalibrated", "calibrated")):
            m = sub[f"mean_{v}"].to_numpy(float)
            if not np.isfinite(m).any():
                continue
            ax.errorbar(xs + 0.18 * (k - 0.5), m, yerr=[m - sub[f"hdi_low_{v}"], sub[f"hdi_high_{v}"] - m],
                        fmt="o", ms=4, lw=1, color=colors[v], label=v)
        if sub["truth"].notna().any():
            ax.scatter(xs, sub["truth"], marker="x", color="black", s=45, zorder=5, label="truth")
        ax.set_xticks(xs, sub["geo"], rotation=30, fontsize=7)
        ax.set_title(ch)
        ax.set_ylabel("ROAS (KPI per unit of money)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("ROAS per geo and channel: truth vs uncalibrated vs calibrated (94% HDI)")
    fig.tight_layout()
    return fig
