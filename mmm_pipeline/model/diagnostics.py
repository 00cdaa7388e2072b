"""Is the fit usable? Convergence of the free parameters, in-sample fit in KPI units, and the gate.

Convergence is ArviZ's ``az.summary(kind="diagnostics")`` (rank-normalised split
R-hat, bulk and tail ESS) per element of every free parameter; the in-sample
fit compares the observed KPI with pymc-marketing's posterior predictive
(``mmm.sample_posterior_predictive`` on the training data).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import MEDIA_PARAMETERS, NATIONAL, TREND_PREFIX, ModelConfig
from mmm_pipeline.model.summaries import target_scale

# idata attr: [divergent transitions, draws sampled] over every draw, before any thinning.
DIVERGENCE_ATTR = "mmm_pipeline_divergences"

# Per-observation deterministics never enter the convergence gate.
_PER_OBSERVATION = {
    "channel_contribution", "mu", "y", "intercept_contribution_original_scale",
    "control_contribution", "fourier_contribution", "yearly_seasonality_contribution",
    "total_media_contribution_original_scale", "lift_measurements_model_estimated_lift",
    "lift_measurements_model_estimated_lift_original_scale", "lift_window_implied",
    f"{TREND_PREFIX}_effect_contribution",
}
PPC_MAX_DRAWS = 4000


def _ds(node):
    """A DataTree node as an xarray Dataset (Datasets pass through)."""
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def free_parameter_names(mmm) -> list[str]:
    """Sampled variables plus the named per-geo media parameters present in the posterior."""
    post = mmm.idata.posterior
    names: list[str] = []
    model = getattr(mmm, "model", None)
    if model is not None:
        names = [v.name for v in model.free_RVs]
    else:  # pragma: no cover - models are rebuilt on load
        names = [n for n in post.data_vars if n.endswith(("_offset", "_mu", "_sigma"))]
    for extra in (*MEDIA_PARAMETERS, "saturation_roi", "intercept_contribution"):
        if extra in post.data_vars and extra not in names:
            names.append(extra)
    return [n for n in names if n in post.data_vars and n not in _PER_OBSERVATION]


def posterior_predictive_kpi(mmm, n_max: int = PPC_MAX_DRAWS, seed: int = 0) -> np.ndarray:
    """In-sample posterior predictive draws of y in KPI units: (samples, date, *dims).

    pymc-marketing's ``mmm.sample_posterior_predictive`` on the training data
    (``mmm.X``; y ~ the likelihood for every posterior draw, not added to the
    idata) times the target scale; at most `n_max` draws (a fixed random subset).
    """
    idata = mmm.idata
    dims = idata.constant_data["target_data"].dims
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        pp = mmm.sample_posterior_predictive(mmm.X, extend_idata=False, combined=True, random_seed=seed,
                                             progressbar=False)
    arr = (pp["y"] * target_scale(mmm)).transpose("sample", *dims).to_numpy()
    if arr.shape[0] > n_max:
        arr = arr[np.random.default_rng(seed).choice(arr.shape[0], n_max, replace=False)]
    return arr


def convergence(idata, names: list[str]) -> pd.DataFrame:
    """``az.summary(kind="diagnostics")`` of the posterior variables `names`, one row per element
    (labels like ``saturation_lam[US-CA, social]``), plus the variable's name in column ``parameter``."""
    import arviz as az

    summ = az.summary(_ds(idata.posterior)[names], kind="diagnostics", round_to="none")
    return summ.assign(parameter=summ.index.str.split("[").str[0])


def fit_metrics(y_obs: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(R-squared, MAPE) of the predictive mean `y_pred` against `y_obs` (any shape, flattened).

    MAPE is ``pymc_marketing.mmm.evaluation``'s ``mape`` (scikit-learn's) over the
    non-zero observations. R-squared is the classical 1 - SS_res / SS_tot
    (scikit-learn's ``r2_score``): the evaluation module's ``r_squared`` is the
    Bayesian R-squared per draw, another quantity.
    """
    from pymc_marketing.mmm.evaluation import calculate_metric_distributions
    from sklearn.metrics import r2_score

    y, p = np.asarray(y_obs, float).ravel(), np.asarray(y_pred, float).ravel()
    r2 = float(r2_score(y, p, force_finite=False)) if y.size > 1 else float("nan")
    nz = np.abs(y) > 0
    mape = float(calculate_metric_distributions(y[nz], p[nz][:, None], ["mape"])["mape"][0]) if nz.any() \
        else float("nan")
    return r2, mape


def fit_by_geo(fit_table: pd.DataFrame) -> pd.DataFrame:
    """Per geo: R-squared against that geo's own mean, MAPE and 94% coverage of its weeks."""
    rows = []
    for geo, g in fit_table.groupby("geo", sort=True):
        r2, mape = fit_metrics(g["actual"].to_numpy(), g["predicted_mean"].to_numpy())
        inside = (g["actual"] >= g["predicted_low"]) & (g["actual"] <= g["predicted_high"])
        rows.append({"geo": geo, "weeks": len(g), "r2": r2, "mape": mape, "coverage_94": float(inside.mean())})
    return pd.DataFrame(rows, columns=["geo", "weeks", "r2", "mape", "coverage_94"])


def diagnose(mmm, *, max_rhat: float = 1.01, min_ess_bulk: float = 400) -> dict:
    """Convergence over the free parameters and in-sample fit in KPI units.

    Free parameters: the model's sampled variables (offsets, per-channel means,
    intercepts, Fourier coefficients, noise, any learned geo spread) plus the
    named per-geo media parameters adstock_alpha, saturation_lam and
    saturation_beta; per-observation deterministics (channel_contribution, mu,
    ...) are left out. Keys: max_rhat, min_ess_bulk, min_ess_tail, divergences
    (post-warmup), chains, draws, parameters, per_parameter {name: {max_rhat,
    min_ess_bulk, min_ess_tail}}, rhat_offenders / ess_offenders (elements
    beyond `max_rhat` / `min_ess_bulk`, e.g. "saturation_lam[US-CA, social]"),
    worst_rhat, worst_ess_bulk, and the fit: r2, mape, coverage_94 (share of
    observed weeks inside the 94% posterior predictive interval), n_obs.
    fit_table: per week (and geo) the actual KPI and the posterior predictive mean and
    94% interval (read by the report: marts.model_fit).
    """
    idata = mmm.idata
    names = free_parameter_names(mmm)
    summ = convergence(idata, names)
    # NaN R-hat (stuck chain) counts as failed, NaN bulk ESS as none.
    summ["r_hat"] = summ["r_hat"].where(np.isfinite(summ["r_hat"]), np.inf)
    summ["ess_bulk"] = summ["ess_bulk"].where(np.isfinite(summ["ess_bulk"]), 0.0)
    by_param = summ.groupby("parameter", sort=False)
    per_param = {n: {"max_rhat": float(g["r_hat"].max()), "min_ess_bulk": float(g["ess_bulk"].min()),
                     "min_ess_tail": float(g["ess_tail"].min())} for n, g in by_param}
    per_param = {n: per_param[n] for n in names}
    max_rhat_seen = max(1.0, float(summ["r_hat"].max()))
    min_ess = float(summ["ess_bulk"].min()) if len(summ) else float("inf")
    min_ess_tail = float(summ["ess_tail"].min()) if summ["ess_tail"].notna().any() else float("inf")
    worst_rhat = sorted(zip(summ["r_hat"].astype(float), summ.index), reverse=True)
    worst_ess = sorted(zip(summ["ess_bulk"].astype(float), summ.index))

    stats = idata.sample_stats
    post = idata.posterior
    n_chains = int(post.sizes["chain"])
    n_draws = int(post.sizes["draw"])
    # A thinned posterior keeps 1 draw in k: the fit records divergences over every draw sampled.
    if DIVERGENCE_ATTR in idata.attrs:
        div, sampled = (int(v) for v in json.loads(idata.attrs[DIVERGENCE_ATTR]))
    else:
        div = int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else 0
        sampled = n_chains * n_draws

    # In-sample fit in KPI units.
    target = idata.constant_data["target_data"]
    y_obs = np.asarray(target.to_numpy(), dtype=float)
    yrep = posterior_predictive_kpi(mmm)
    y_mean = yrep.mean(axis=0)
    lo, hi = np.quantile(yrep, [0.03, 0.97], axis=0)
    r2, mape = fit_metrics(y_obs, y_mean)
    coverage = float(np.mean((y_obs >= lo) & (y_obs <= hi)))
    # Actual vs predicted per week (and geo), kept so reports read it instead of resampling.
    fit_table = pd.DataFrame({
        **{d: np.broadcast_to(np.asarray(target.coords[d].values).reshape(
            [-1 if j == i else 1 for j in range(len(target.dims))]), y_obs.shape).ravel()
           for i, d in enumerate(target.dims)},
        "actual": y_obs.ravel(), "predicted_mean": y_mean.ravel(),
        "predicted_low": lo.ravel(), "predicted_high": hi.ravel()})
    fit_table = fit_table.rename(columns={"date": "week_start"})
    if "geo" not in fit_table:
        fit_table["geo"] = NATIONAL
    fit_table["week_start"] = pd.to_datetime(fit_table["week_start"]).dt.date
    fit_table["geo"] = fit_table["geo"].astype(str)
    by_geo = fit_by_geo(fit_table)
    worst = by_geo.sort_values("r2", kind="stable").iloc[0] if len(by_geo) else None

    return {
        "max_rhat": max_rhat_seen,
        "min_ess_bulk": min_ess if np.isfinite(min_ess) else 0.0,
        "min_ess_tail": min_ess_tail if np.isfinite(min_ess_tail) else 0.0,
        "divergences": div,
        "divergence_share": div / max(sampled, 1),
        "chains": n_chains,
        "draws": n_draws,
        "n_parameters": len(names),
        "parameters": names,
        "rhat_offenders": [lbl for v, lbl in worst_rhat if not v <= max_rhat][:25],
        "ess_offenders": [lbl for v, lbl in worst_ess if v < min_ess_bulk][:25],
        "worst_rhat": [(lbl, round(v, 4)) for v, lbl in worst_rhat[:5]],
        "worst_ess_bulk": [(lbl, round(v, 1)) for v, lbl in worst_ess[:5]],
        "per_parameter": per_param,
        "r2": r2,
        "mape": mape,
        "coverage_94": coverage,
        "n_obs": int(y_obs.size),
        # Pooled over geos, R-squared credits the model for the geos' different levels (a constant
        # per geo alone scores high): the gate's warning reads the worst geo's own R-squared.
        "fit_by_geo": by_geo,
        "worst_geo": str(worst["geo"]) if worst is not None else None,
        "worst_geo_r2": float(worst["r2"]) if worst is not None else float("nan"),
        "worst_geo_coverage_94": float(by_geo["coverage_94"].min()) if len(by_geo) else float("nan"),
        "fit_table": fit_table[["week_start", "geo", "actual", "predicted_mean", "predicted_low",
                                "predicted_high"]],
    }


def gate_result(diag: dict, cfg: ModelConfig) -> tuple[bool, list[str], list[str]]:
    """(passed, failures, warnings). Convergence fails the gate; poor fit only warns."""
    g = cfg.gates
    failures: list[str] = []
    warns: list[str] = []
    per = diag.get("per_parameter", {})
    if not diag["max_rhat"] <= g.max_rhat:
        bad = sorted(n for n, v in per.items() if not v["max_rhat"] <= g.max_rhat)
        failures.append(f"max R-hat {diag['max_rhat']:.4f} > {g.max_rhat} "
                        f"(parameters: {', '.join(bad) or '?'}; worst: "
                        f"{', '.join(l for l, _ in diag.get('worst_rhat', [])[:3])})")
    if not diag["min_ess_bulk"] >= g.min_ess_bulk:
        bad = sorted(n for n, v in per.items() if not v["min_ess_bulk"] >= g.min_ess_bulk)
        failures.append(f"min bulk ESS {diag['min_ess_bulk']:.0f} < {g.min_ess_bulk:g} "
                        f"(parameters: {', '.join(bad) or '?'}; worst: "
                        f"{', '.join(l for l, _ in diag.get('worst_ess_bulk', [])[:3])})")
    share = diag.get("divergence_share",
                     diag["divergences"] / max(diag.get("chains", 1) * diag.get("draws", 1), 1))
    if diag["divergences"] and share > g.max_divergence_share:
        failures.append(f"{diag['divergences']} divergent transitions ({share:.3%} of draws) > "
                        f"{g.max_divergence_share:.3%}")
    if not diag["r2"] >= g.min_r2:
        warns.append(f"in-sample R2 {diag['r2']:.3f} < {g.min_r2}")
    worst_r2 = diag.get("worst_geo_r2", float("nan"))
    if diag.get("worst_geo") not in (None, NATIONAL) and not worst_r2 >= g.min_r2:
        warns.append(f"in-sample R2 within geo {diag['worst_geo']} {worst_r2:.3f} < {g.min_r2} "
                     "(each geo against its own mean)")
    cov = diag["coverage_94"]
    if not (g.min_coverage <= cov <= g.max_coverage):
        warns.append(f"94% interval coverage {cov:.3f} outside [{g.min_coverage}, {g.max_coverage}]")
    geos = diag.get("fit_by_geo")
    if geos is not None and len(geos) > 1:
        off = geos[(geos["coverage_94"] < g.min_coverage) | (geos["coverage_94"] > g.max_coverage)]
        if len(off):
            warns.append("94% interval coverage outside [{}, {}] in geo(s) {}".format(
                g.min_coverage, g.max_coverage, ", ".join(f"{r.geo} ({r.coverage_94:.3f})" for r in off.itertuples())))
    return (not failures), failures, warns



def prior_posterior_shift(mmm, *, draws: int = 1000, seed: int = 0, min_contraction: float = 0.1) -> pd.DataFrame:
    """Per media parameter element: how far the data moved it from its prior.

    Prior draws of the media parameters (``pm.sample_prior_predictive`` on the fitted model's
    graph); mean and sd of prior and posterior from ``az.summary``. ``contraction`` =
    1 - (posterior sd / prior sd)^2 (0: the posterior is as wide as the prior); ``shift_z`` =
    |posterior mean - prior mean| / prior sd. ``prior_dominated`` flags an element whose
    posterior neither narrowed by ``min_contraction`` nor moved by half a prior sd: the data
    said next to nothing about it, and what it reports is the prior's.
    """
    import arviz as az
    import pymc as pm

    # saturation_roi: the ROI parameterization's own prior (beta is then derived from it and lam)
    names = [n for n in (*MEDIA_PARAMETERS, "saturation_roi") if n in mmm.model.named_vars and n in mmm.idata.posterior]
    if not names:
        return pd.DataFrame(columns=["parameter", "element", "prior_mean", "prior_sd", "posterior_mean",
                                     "posterior_sd", "contraction", "shift_z", "prior_dominated"])
    pymc_log = logging.getLogger("pymc")
    level = pymc_log.level
    pymc_log.setLevel(logging.WARNING)  # not pymc's "Sampling: [...]" line in the run log
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            prior = pm.sample_prior_predictive(draws=draws, model=mmm.model, var_names=names, random_seed=seed)
    finally:
        pymc_log.setLevel(level)
    prior_ds = _ds(prior.prior if hasattr(prior, "prior") else prior["prior"])
    post_ds = _ds(mmm.idata.posterior)[names]
    stats = {g: az.summary(ds[names], kind="stats", round_to="none", fmt="xarray")
             for g, ds in (("prior", prior_ds), ("posterior", post_ds))}
    rows = []
    for n in names:
        da = stats["posterior"][n]
        dims = [d for d in da.dims if d != "summary"]
        for idx in np.ndindex(*[da.sizes[d] for d in dims]):
            sel = {d: i for d, i in zip(dims, idx)}
            p = stats["prior"][n].isel(sel)
            q = da.isel(sel)
            p_mean, p_sd = float(p.sel(summary="mean")), float(p.sel(summary="sd"))
            q_mean, q_sd = float(q.sel(summary="mean")), float(q.sel(summary="sd"))
            label = ", ".join(str(da.coords[d].values[i]) for d, i in zip(dims, idx))
            contraction = 1 - (q_sd / p_sd) ** 2 if p_sd > 0 else float("nan")
            shift = abs(q_mean - p_mean) / p_sd if p_sd > 0 else float("nan")
            rows.append({"parameter": n, "element": label, "prior_mean": p_mean, "prior_sd": p_sd,
                         "posterior_mean": q_mean, "posterior_sd": q_sd, "contraction": contraction,
                         "shift_z": shift,
                         "prior_dominated": bool(contraction < min_contraction and shift < 0.5)})
    return pd.DataFrame(rows)
