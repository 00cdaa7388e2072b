"""Two checks of a market's calibration, from the two fitted posteriors alone (no refit).

**Consistency** (:func:`consistency_table`). The calibrated posterior must equal the uncalibrated
posterior reweighted by the calibration likelihood: both models share the data, the priors and the
structure, and the calibrated one only adds terms. So the uncalibrated draws are reweighted by
*every* calibration term of the calibrated model, as that model holds them
(:class:`~mmm_pipeline.model.calibration.Calibration`): each lift test's window term with its
own Normal or StudentT, its readout and its sigma (for a national test split across markets, the
market's share with the widened sigma), and each ROAS/CPA target's Normal on the model's ratio over
the fitted weeks. The weights are Pareto-smoothed (PSIS, ArviZ's ``psislw``). For each test's implied
lift and each tested cell's ROAS and mROAS the calibrated mean is compared with the reweighted one:
a difference above ``max(0.1 uncalibrated sd, 4 sqrt(MCSE_cal^2 + MCSE_IS^2))`` with Pareto k-hat
below 0.7 means one of the two computations is wrong (verdict ``inconsistent``); k-hat of 0.7 or more
means the experiments pull the model further than its own uncertainty allows, which the
reweighting cannot follow (verdict ``experiments_disagree``: "the experiments disagree with what the
data alone suggested").

**Each lift test predicted when held out** (:func:`lift_test_holdout`). The calibrated model
without test j is approximated by leave-one-test-out importance weights on the calibrated draws
(``1 / p(readout_j | draw)``, Pareto-smoothed): the test's implied lift under those weights is the
prediction of an experiment the model has not seen, beside the uncalibrated model's prediction.
k-hat of 0.7 or more marks the row ``needs_refit`` (the benchmark refits). A test is scored only
where another test of the same channel stays in the fitting unit: without a sibling, the model
without it knows nothing experimental about that channel and the comparison says nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import HDI_PROB

PARETO_K_MAX = 0.7
# the smallest difference that counts, in uncalibrated posterior sd
MIN_DIFF_SD = 0.1
MCSE_MULTIPLE = 4.0
CONSISTENCY_COLUMNS = ["market", "quantity", "test_id", "geo", "channel", "calibrated_mean", "reweighted_mean",
                       "uncalibrated_mean", "uncalibrated_sd", "diff_in_uncal_sd", "threshold_in_uncal_sd", "mcse",
                       "pareto_k", "verdict"]
HOLDOUT_COLUMNS = ["market", "test_id", "channel", "geo", "scope", "measured", "sigma", "predicted_mean",
                   "predicted_hdi_low", "predicted_hdi_high", "z", "log_pred_density", "uncal_predicted_mean",
                   "uncal_hdi_low", "uncal_hdi_high", "uncal_z", "pareto_k", "method"]
RESAMPLE_SEED = 20240101


class ConsistencyError(ValueError):
    """The two posteriors cannot be compared (no calibration terms, or different draws layouts)."""


@dataclass(frozen=True)
class Terms:
    """The calibration terms of a calibrated model, evaluated on a posterior: per draw (S, K)."""

    names: list[str]              # "lift:<test_id>" or "target:<metric>:<channel>:<geo>"
    loglik: np.ndarray            # (S, K) log density of each term's observation
    lift_ids: list[str]           # the lift terms' test ids, in order (the first len(lift_ids) terms)
    lift_implied: np.ndarray      # (S, len(lift_ids)) implied lift in KPI units


def _chains(mmm) -> int:
    return int(mmm.idata.posterior.sizes["chain"])


def _lift_loglik(implied: np.ndarray, design, likelihood: str, nu: float) -> np.ndarray:
    from scipy import stats

    if likelihood == "studentt":
        return stats.t.logpdf(design.observed[None, :], df=nu, loc=implied, scale=design.sigma[None, :])
    return stats.norm.logpdf(design.observed[None, :], loc=implied, scale=design.sigma[None, :])


def _target_loglik(mmm, targets: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Each ROAS/CPA target's Normal on the model's ratio over the fitted weeks (contribution in KPI
    units over the model's own spend, as pymc-marketing's add_cost_per_target_calibration)."""
    from scipy import stats

    from mmm_pipeline.decisions.curves import _pick

    post, cd = mmm.idata.posterior, mmm.idata.constant_data
    contribution = post["channel_contribution"].sum("date") * cd["target_scale"]
    spend = cd["channel_spend"].sum("date")
    names, cols = [], []
    geos = [str(g) for g in post.coords["geo"].values] if "geo" in post.coords else [None]
    for r in targets.to_dict("records"):
        geo = r.get("geo")
        geo = geos[0] if geo is None or (isinstance(geo, float) and np.isnan(geo)) else geo
        c = _pick(contribution, geo, r["channel"])
        s = float(_pick(spend, geo, r["channel"])[0])
        ratio = c / s if r["metric"] == "roas" else s / c
        cols.append(stats.norm.logpdf(float(r["value"]), loc=ratio, scale=float(r["sigma"])))
        names.append(f"target:{r['metric']}:{r['channel']}:{geo}")
    return names, (np.column_stack(cols) if cols else np.zeros((post.sizes["chain"] * post.sizes["draw"], 0)))


def calibration_terms(mmm, calibration, *, implied: np.ndarray | None = None) -> Terms:
    """Every calibration term of `calibration` (the calibrated model's), evaluated on `mmm`'s posterior
    (either variant). `implied`: the lift draws when already computed."""
    from mmm_pipeline.model.lift_likelihood import implied_lift_draws

    design = calibration.lift_design
    n = int(mmm.idata.posterior.sizes["chain"] * mmm.idata.posterior.sizes["draw"])
    names, parts = [], []
    lift_ids: list[str] = []
    lift_implied = np.zeros((n, 0))
    if design is not None and len(design.test_ids):
        lift_implied = implied if implied is not None else implied_lift_draws(mmm, design)
        lift_ids = list(design.test_ids)
        names += [f"lift:{t}" for t in lift_ids]
        parts.append(_lift_loglik(lift_implied, design, calibration.lift_likelihood, calibration.lift_nu))
    if calibration.roas_targets is not None and len(calibration.roas_targets):
        t_names, t_ll = _target_loglik(mmm, calibration.roas_targets)
        names += t_names
        parts.append(t_ll)
    if not names:
        raise ConsistencyError("the calibrated model has no window lift term and no ROAS/CPA target "
                               "(model.calibration.likelihood: steady_state is not checked)")
    return Terms(names, np.column_stack(parts), lift_ids, lift_implied)


def psis_weights(log_ratio: np.ndarray, chains: int) -> tuple[np.ndarray, float]:
    """Normalised Pareto-smoothed importance weights for draws (chain-major, `chains` chains) whose
    log density ratio target / proposal is `log_ratio`; with the Pareto k-hat."""
    import arviz_stats  # noqa: F401  (registers the .azstats accessor)
    import xarray as xr

    lr = np.asarray(log_ratio, dtype=float).reshape(chains, -1)
    # psislw smooths exp(-x): hand it the negative log ratio
    lw, khat = xr.DataArray(-lr, dims=["chain", "draw"]).azstats.psislw(dim=["chain", "draw"])
    lw = np.asarray(lw).reshape(-1)
    w = np.exp(lw - np.logaddexp.reduce(lw))
    khat = float(khat)
    # ArviZ gives no k-hat when one draw takes all the weight: the worst case, not an unknown
    return w, khat if np.isfinite(khat) else float("inf")


def _mcse_mean(draws: np.ndarray, chains: int) -> float:
    """Monte Carlo standard error of a mean of MCMC draws (ArviZ)."""
    import arviz_stats  # noqa: F401
    import xarray as xr

    return float(xr.DataArray(np.asarray(draws, float).reshape(chains, -1), dims=["chain", "draw"])
                 .azstats.mcse(sample_dims=["chain", "draw"]))


def _is_mean(q: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Self-normalised importance-sampling mean of `q` under weights `w` (sum 1) and its MCSE."""
    m = float(np.sum(w * q))
    return m, float(np.sqrt(np.sum(w ** 2 * (q - m) ** 2)))


def _weighted_hdi(q: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """94% HDI of `q` under weights `w`: the HDI of an importance resample (fixed seed)."""
    from mmm_pipeline.model.summaries import hdi_bounds

    rng = np.random.default_rng(RESAMPLE_SEED)
    idx = rng.choice(len(q), size=len(q), replace=True, p=w)
    lo, hi = hdi_bounds(q[idx][:, None], HDI_PROB)
    return float(lo[0]), float(hi[0])


def tested_cells(calibration) -> list[tuple[str, str]]:
    """(geo, channel) of every cell a lift test or target reaches."""
    cells = []
    if calibration.lift_design is not None:
        cells += [(str(g), str(c)) for g, c in calibration.lift_design.rows[["geo", "channel"]].itertuples(index=False)
                  if g is not None]
    if calibration.roas_targets is not None and len(calibration.roas_targets):
        cells += [(str(g), str(c)) for g, c in calibration.roas_targets[["geo", "channel"]].itertuples(index=False)
                  if isinstance(g, str)]
    return sorted(set(cells))


def cell_draws(mmm, cells: list[tuple[str, str]], media: pd.DataFrame, cpu: pd.DataFrame) -> dict:
    """Per draw (chain-major) ROAS (contribution over the training weeks / staging spend) and mROAS
    (slope of the steady-state weekly response at the last 13 weeks' mean spend) of each cell, as the
    marts define them (`decisions.curves`): {(quantity, geo, channel): draws}."""
    from mmm_pipeline.decisions import curves

    weeks = curves.model_weeks(mmm)
    geos, channels = curves.model_geos(mmm), curves.model_channels(mmm)
    cells = [(g, c) for g, c in cells if g in geos and c in channels]
    if not cells:
        return {}
    spend = curves.spend_summary(media, weeks, geos=geos, channels=channels).set_index(["geo", "channel"])
    rates = curves.spend_summary(cpu, weeks, geos=geos, channels=channels).set_index(["geo", "channel"])
    contribution = curves._contribution_draws(mmm, "posterior")
    out = {}
    for geo, channel in cells:
        total = float(spend.loc[(geo, channel), "spend_total"])
        if total > 0:
            out[("roas", geo, channel)] = curves._pick(contribution, geo, channel) / total
        out[("mroas", geo, channel)] = curves.marginal_response_draws(
            mmm, geo, channel, float(spend.loc[(geo, channel), "current_weekly_spend"]),
            float(rates.loc[(geo, channel), "cost_per_unit_used"]))
    return out


def _verdict(diff: float, threshold: float, khat: float) -> str:
    if not np.isfinite(khat) or khat >= PARETO_K_MAX:
        return "experiments_disagree"
    return "inconsistent" if abs(diff) > threshold else "consistent"


def consistency_table(uncalibrated, calibrated, media: pd.DataFrame, cpu: pd.DataFrame, market: str) -> pd.DataFrame:
    """marts.calibration_consistency rows of one market (CONSISTENCY_COLUMNS): each test's implied
    lift, each tested cell's ROAS and mROAS, calibrated mean against the reweighted uncalibrated mean."""
    from mmm_pipeline.model.calibration import Calibration
    from mmm_pipeline.reporting.model_report import model_lift_draws

    cal = Calibration.from_attrs(calibrated.idata.attrs)
    design = cal.lift_design
    cal_implied = model_lift_draws(calibrated, design) if design is not None and len(design.test_ids) else None
    terms = calibration_terms(uncalibrated, cal)
    w, khat = psis_weights(terms.loglik.sum(axis=1), _chains(uncalibrated))
    quantities: list[tuple[str, str | None, str | None, str | None, np.ndarray, np.ndarray]] = []
    if cal_implied is not None:
        meta = design.rows.drop_duplicates("test_id").set_index("test_id")
        for k, test_id in enumerate(terms.lift_ids):
            geos = design.rows.loc[design.rows["test_id"] == test_id, "geo"]
            geo = str(geos.iloc[0]) if len(geos) == 1 and geos.iloc[0] is not None else "all geos"
            quantities.append(("implied_lift", test_id, geo, str(meta.loc[test_id, "channel"]),
                               cal_implied[:, k], terms.lift_implied[:, k]))
    cells = tested_cells(cal)
    cal_cells, unc_cells = cell_draws(calibrated, cells, media, cpu), cell_draws(uncalibrated, cells, media, cpu)
    for key in sorted(cal_cells.keys() & unc_cells.keys()):
        quantities.append((key[0], None, key[1], key[2], cal_cells[key], unc_cells[key]))
    return consistency_rows(quantities, w, khat, _chains(calibrated), market)


def consistency_rows(quantities, weights: np.ndarray, khat: float, calibrated_chains: int, market: str) -> pd.DataFrame:
    """CONSISTENCY_COLUMNS rows from (quantity, test_id, geo, channel, calibrated draws, uncalibrated
    draws) tuples and the uncalibrated draws' normalised calibration weights."""
    rows = []
    for quantity, test_id, geo, channel, cal_q, unc_q in quantities:
        sd = float(np.std(unc_q))
        reweighted, mcse_is = _is_mean(unc_q, weights)
        mcse_cal = _mcse_mean(cal_q, calibrated_chains)
        cal_mean = float(np.mean(cal_q))
        mcse = float(np.hypot(mcse_cal, mcse_is))
        threshold = max(MIN_DIFF_SD * sd, MCSE_MULTIPLE * mcse)
        diff = cal_mean - reweighted
        rows.append({"market": market, "quantity": quantity, "test_id": test_id, "geo": geo, "channel": channel,
                     "calibrated_mean": cal_mean, "reweighted_mean": reweighted, "uncalibrated_mean": float(np.mean(unc_q)),
                     "uncalibrated_sd": sd, "diff_in_uncal_sd": diff / sd if sd > 0 else float("nan"),
                     "threshold_in_uncal_sd": threshold / sd if sd > 0 else float("nan"), "mcse": mcse,
                     "pareto_k": khat, "verdict": _verdict(diff, threshold, khat)})
    return pd.DataFrame(rows, columns=CONSISTENCY_COLUMNS)


def lift_test_holdout(uncalibrated, calibrated, market: str) -> pd.DataFrame:
    """marts.lift_test_holdout rows of one market (HOLDOUT_COLUMNS): each lift test predicted by the
    calibrated model without it (leave-one-test-out PSIS weights, `method` reweighted or needs_refit)
    and by the uncalibrated model; `not_scored` where no other test of its channel stays."""
    from mmm_pipeline.model.calibration import Calibration
    from mmm_pipeline.model.lift_likelihood import implied_lift_draws
    from mmm_pipeline.model.summaries import hdi_bounds
    from mmm_pipeline.reporting.model_report import model_lift_draws

    cal = Calibration.from_attrs(calibrated.idata.attrs)
    design = cal.lift_design
    if design is None or not len(design.test_ids):
        return pd.DataFrame(columns=HOLDOUT_COLUMNS)
    cal_implied = model_lift_draws(calibrated, design)
    terms = calibration_terms(calibrated, cal, implied=cal_implied)
    unc_implied = implied_lift_draws(uncalibrated, design) if uncalibrated is not None else None
    meta = design.rows.drop_duplicates("test_id").set_index("test_id")
    channel_of = {t: str(meta.loc[t, "channel"]) for t in design.test_ids}
    rows = []
    for k, test_id in enumerate(design.test_ids):
        measured, sigma = float(design.observed[k]), float(design.sigma[k])
        geos = design.rows.loc[design.rows["test_id"] == test_id, "geo"]
        geo = str(geos.iloc[0]) if len(geos) == 1 and geos.iloc[0] is not None else "all geos"
        row = {"market": market, "test_id": test_id, "channel": channel_of[test_id], "geo": geo,
               "scope": design.scope[k], "measured": measured, "sigma": sigma}
        if unc_implied is not None:
            u = unc_implied[:, k]
            lo, hi = hdi_bounds(u[:, None], HDI_PROB)
            row |= {"uncal_predicted_mean": float(u.mean()), "uncal_hdi_low": float(lo[0]),
                    "uncal_hdi_high": float(hi[0]),
                    "uncal_z": (measured - float(u.mean())) / float(np.hypot(u.std(), sigma))}
        siblings = [t for t in design.test_ids if t != test_id and channel_of[t] == channel_of[test_id]]
        if not siblings:
            rows.append(row | {"method": "not_scored: no other test of this channel in the market"})
            continue
        ll = terms.loglik[:, k]
        w, khat = psis_weights(-ll, _chains(calibrated))  # leave test k out: weights 1 / p(y_k | draw)
        q = cal_implied[:, k]
        mean, _ = _is_mean(q, w)
        sd = float(np.sqrt(np.sum(w * (q - mean) ** 2)))
        lo, hi = _weighted_hdi(q, w)
        row |= {"predicted_mean": mean, "predicted_hdi_low": lo, "predicted_hdi_high": hi,
                "z": (measured - mean) / float(np.hypot(sd, sigma)),
                "log_pred_density": float(np.logaddexp.reduce(np.log(np.maximum(w, 1e-300)) + ll)),
                "pareto_k": khat, "method": "reweighted" if khat < PARETO_K_MAX else "needs_refit"}
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=HOLDOUT_COLUMNS)
