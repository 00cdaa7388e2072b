"""Out-of-sample validation: refit without the last weeks, forecast them, compare with a naive baseline.

The model is refitted on every complete week but the last ``holdout_weeks``
(the same config, no lift tests: the structure both variants share), then
pymc-marketing's ``sample_posterior_predictive`` forecasts the held-out weeks
from their actual media and controls, carrying the adstock in from the
training weeks (``include_last_observations``). Per geo and for the market:

* ``mape`` of the posterior-mean forecast, ``crps`` of the predictive draws
  (``pymc_marketing.metrics.crps``; each week's own in the weekly forecast), ``coverage_94``: the share of held-out
  weeks inside the 94% HDI of the predictive draws;
* the same for the better (lower market MAPE) of two naive forecasts: the
  mean of the last 8 training weeks, and the KPI of the same week one year
  earlier (52 weeks) when the history has it. A point forecast's CRPS is its
  absolute error.

The refit has a convergence gate of its own (``model.validation`` ``max_rhat`` 1.05, ``min_ess_bulk``
100, ``max_divergence_share`` 0.01, never stricter than the profile's), judged on what the refit is
for: the R-hat and bulk ESS of the forecast's expected KPI (``mu``) in every held-out week and geo and
of the market's weekly totals (:func:`forecast_gate`), not of every free parameter. Two channels
bought together leave their split on a ridge that 2 x 500 draws do not mix (the geo-lift notebook's
process: parameter R-hat 1.17-1.38) while every chain forecasts the same KPI; a stuck chain forecasts
another, and fails. A refit that fails climbs the retry ladder; one that still fails leaves the
forecast on record but proves nothing (:attr:`mmm_pipeline.model.market.Validation.passed`).

``beats_baseline`` is the model's MAPE below the baseline's. A model that
cannot forecast its own KPI better than last year's number has learned
nothing a marketer can act on, whatever its in-sample R-squared says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import HDI_PROB, ModelConfig, ModelError
from mmm_pipeline.model.data import prepare_model_data
from mmm_pipeline.model.track_record import predictive_draws

SEASON_WEEKS = 52
TRAILING_WEEKS = 8
COLUMNS = ["geo", "holdout_weeks", "first_week", "last_week", "model_mape", "model_crps", "coverage_94",
           "baseline", "baseline_mape", "baseline_crps", "beats_baseline", "kpi_mean"]


@dataclass
class HoldoutResult:
    table: pd.DataFrame          # one row per geo plus `market` (COLUMNS)
    forecast: pd.DataFrame       # week_start, geo, actual, forecast_mean, hdi_low, hdi_high, baseline, crps
    fit: object                  # the training-weeks FitResult (the last attempt up the retry ladder)
    attempts: list[dict] | None = None    # mmm_pipeline.model.ladder.attempt_record of each refit attempt

    @property
    def market_row(self) -> pd.Series:
        return self.table[self.table["geo"] == "market"].iloc[0]


def _before(df: pd.DataFrame | None, cutoff: pd.Timestamp) -> pd.DataFrame | None:
    if df is None:
        return None
    return df[pd.to_datetime(df["week_start"]) < cutoff]


def baseline_forecasts(y: pd.DataFrame, test_weeks: list[pd.Timestamp],
                       train_weeks: list[pd.Timestamp]) -> dict[str, pd.DataFrame]:
    """Naive forecasts (name -> weeks x geos): the mean of the last training weeks, and the same week a
    year before when every test week has one. `y` is indexed by week_start with one column per geo."""
    trailing = y.loc[train_weeks[-TRAILING_WEEKS:]].mean()
    out = {f"mean of the last {TRAILING_WEEKS} weeks": pd.DataFrame(
        [trailing.to_numpy()] * len(test_weeks), index=test_weeks, columns=y.columns)}
    last_year = [w - pd.Timedelta(weeks=SEASON_WEEKS) for w in test_weeks]
    if all(w in y.index for w in last_year):
        same = y.loc[last_year].copy()
        same.index = test_weeks
        out["same week last year"] = same
    return out


def _metrics(actual: np.ndarray, draws: np.ndarray | None, point: np.ndarray) -> dict:
    """MAPE of `point`; CRPS of `draws` (samples x weeks) or, without draws, the absolute error."""
    from pymc_marketing.metrics import crps

    out = {"mape": float(np.mean(np.abs(point - actual) / np.abs(actual)))}
    out["crps"] = float(crps(actual, draws)) if draws is not None else float(np.mean(np.abs(point - actual)))
    return out


def point_crps(actual: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Each week's CRPS of its predictive draws (samples x weeks), pymc-marketing's `crps` per point."""
    from pymc_marketing.metrics import crps

    return np.array([crps(actual[i:i + 1], draws[:, i:i + 1]) for i in range(len(actual))], dtype=float)


def refit_config(cfg: ModelConfig) -> ModelConfig:
    """The refit's config: the model as configured, sampled as `cfg.validation` says (each setting at
    most the profile's, unthinned), gated by the validation's own convergence gate, never stricter
    than the profile's (the fast profile's looser R-hat and ESS limits stay)."""
    v, s, g = cfg.validation, cfg.sampler, cfg.gates
    sampler = s.model_copy(update={"chains": min(s.chains, v.chains), "tune": min(s.tune, v.tune),
                                   "draws": min(s.draws, v.draws), "thin": 1})
    gates = g.model_copy(update={"max_rhat": max(g.max_rhat, v.max_rhat),
                                 "min_ess_bulk": min(g.min_ess_bulk, v.min_ess_bulk),
                                 "max_divergence_share": max(g.max_divergence_share, v.max_divergence_share)})
    return cfg.model_copy(update={"sampler": sampler, "gates": gates})


def forecast_expectation(mmm, X_new: pd.DataFrame):
    """The expected KPI (`mu`, model units) of `X_new`'s weeks per chain and draw: (chain, draw, date[, geo])."""
    import contextlib
    import io
    import warnings

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        pred = mmm.sample_posterior_predictive(X_new, extend_idata=False, include_last_observations=True,
                                               combined=False, progressbar=False, var_names=["mu"], random_seed=0)
    return pred["mu"]


def forecast_gate(fit, mu, cfg: ModelConfig):
    """`fit` (a FitResult) judged by `cfg.gates` on its forecast: max R-hat and min bulk ESS of `mu`
    (chain, draw, date[, geo]) per held-out week and geo and of the weekly totals, and the divergent
    share of the sampler. The parameters' own figures stay in the diagnostics as ``parameter_max_rhat``
    and ``parameter_min_ess_bulk``; ``max_rhat`` and ``min_ess_bulk`` become the forecast's."""
    import dataclasses

    import arviz as az

    g, d = cfg.gates, fit.diagnostics
    parts = [mu] + ([mu.sum("geo")] if "geo" in mu.dims else [])
    rhat = max(float(az.rhat(x.to_dataset(name="mu"))["mu"].max()) for x in parts)
    ess = min(float(az.ess(x.to_dataset(name="mu"), method="bulk")["mu"].min()) for x in parts)
    share = d.get("divergence_share", d["divergences"] / max(d.get("chains", 1) * d.get("draws", 1), 1))
    failures = []
    if not rhat <= g.max_rhat:
        failures.append(f"forecast max R-hat {rhat:.4f} > {g.max_rhat} (the held-out weeks' expected KPI; "
                        f"parameters' {float(d['max_rhat']):.4f})")
    if not ess >= g.min_ess_bulk:
        failures.append(f"forecast min bulk ESS {ess:.0f} < {g.min_ess_bulk:g}")
    if d["divergences"] and share > g.max_divergence_share:
        failures.append(f"{d['divergences']} divergent transitions ({share:.3%} of draws) > "
                        f"{g.max_divergence_share:.3%}")
    diag = {**d, "parameter_max_rhat": float(d["max_rhat"]), "parameter_min_ess_bulk": float(d["min_ess_bulk"]),
            "max_rhat": rhat, "min_ess_bulk": ess, "gate_on": "forecast"}
    return dataclasses.replace(fit, diagnostics=diag, gate_passed=not failures, gate_failures=failures)


def holdout_validation(media_weekly: pd.DataFrame, kpi_weekly: pd.DataFrame, cost_per_unit: pd.DataFrame,
                       cfg: ModelConfig, *, holdout_weeks: int = 8, geos=None,
                       controls: pd.DataFrame | None = None, progress_callback=None, scales=None) -> HoldoutResult:
    from mmm_pipeline.model.fit import fit_model
    from mmm_pipeline.model.ladder import fit_with_ladder
    from mmm_pipeline.model.summaries import hdi_bounds

    full = prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos,
                              control_columns=cfg.control_columns, controls=controls)
    if len(full.weeks) < holdout_weeks + 26:
        raise ModelError(f"holdout validation needs at least {holdout_weeks + 26} complete weeks "
                         f"({holdout_weeks} held out + 26 to fit on); the data has {len(full.weeks)}")
    test_weeks, train_weeks = full.weeks[-holdout_weeks:], full.weeks[:-holdout_weeks]
    cutoff = test_weeks[0]

    def held_out_X(fit) -> pd.DataFrame:
        """The held-out weeks in the fitted model's units (controls scaled as in training)."""
        later = prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos,
                                   control_columns=cfg.control_columns, controls=controls,
                                   control_transform=(fit.data.control_references, fit.data.control_scales))
        return later.X[pd.to_datetime(later.X["date"]).isin(test_weeks)].reset_index(drop=True)

    def fit_once(c: ModelConfig):
        fit = fit_model(_before(media_weekly, cutoff), _before(kpi_weekly, cutoff), _before(cost_per_unit, cutoff),
                        c, geos=geos, controls=_before(controls, cutoff), progress_callback=progress_callback,
                        scales=scales)
        judged = forecast_gate(fit, forecast_expectation(fit.mmm, held_out_X(fit)), c)
        if progress_callback:
            progress_callback(f"refit judged on its forecast: {'passed' if judged.gate_passed else 'FAILED: '}"
                              f"{'; '.join(judged.gate_failures)}")
        return judged

    # a refit that fails its gate climbs the same ladder as a fit: a stuck chain's forecast is not evidence
    fit, attempts = fit_with_ladder(fit_once, refit_config(cfg), log=progress_callback or (lambda _: None))
    X_test = held_out_X(fit)
    draws, geo_labels = predictive_draws(fit.mmm, X_test, seed=cfg.random_seed)
    if "geo" not in X_test:
        geo_labels = list(full.geos)

    y_all = pd.DataFrame(full.y.to_numpy().reshape(len(full.weeks), len(full.geos)), index=full.weeks,
                         columns=full.geos)[geo_labels]
    actual = y_all.loc[test_weeks].to_numpy()
    naive = baseline_forecasts(y_all, test_weeks, train_weeks)
    # the naive forecast to beat: the better of the two on the market's held-out weeks
    baseline_name = min(naive, key=lambda k: _metrics(actual.sum(axis=1), None,
                                                      naive[k][geo_labels].to_numpy().sum(axis=1))["mape"])
    base = naive[baseline_name][geo_labels].to_numpy()
    mean = draws.mean(axis=0)
    low, high = hdi_bounds(draws, HDI_PROB)

    rows, frames = [], []
    for j, geo in enumerate(geo_labels):
        m = _metrics(actual[:, j], draws[:, :, j], mean[:, j])
        b = _metrics(actual[:, j], None, base[:, j])
        rows.append({"geo": geo, "model_mape": m["mape"], "model_crps": m["crps"],
                     "coverage_94": float(np.mean((actual[:, j] >= low[:, j]) & (actual[:, j] <= high[:, j]))),
                     "baseline_mape": b["mape"], "baseline_crps": b["crps"], "kpi_mean": float(actual[:, j].mean())})
        frames.append(pd.DataFrame({"week_start": [w.date() for w in test_weeks], "geo": geo,
                                    "actual": actual[:, j], "forecast_mean": mean[:, j], "hdi_low": low[:, j],
                                    "hdi_high": high[:, j], "baseline": base[:, j],
                                    "crps": point_crps(actual[:, j], draws[:, :, j])}))
    # the market: the geos' weekly totals (draws summed per sample)
    tot_draws, tot_actual, tot_base = draws.sum(axis=2), actual.sum(axis=1), base.sum(axis=1)
    t_low, t_high = hdi_bounds(tot_draws, HDI_PROB)
    m, b = _metrics(tot_actual, tot_draws, tot_draws.mean(axis=0)), _metrics(tot_actual, None, tot_base)
    rows.append({"geo": "market", "model_mape": m["mape"], "model_crps": m["crps"],
                 "coverage_94": float(np.mean((tot_actual >= t_low) & (tot_actual <= t_high))),
                 "baseline_mape": b["mape"], "baseline_crps": b["crps"], "kpi_mean": float(tot_actual.mean())})
    table = pd.DataFrame(rows)
    table["holdout_weeks"] = holdout_weeks
    table["first_week"], table["last_week"] = test_weeks[0].date(), test_weeks[-1].date()
    table["baseline"] = baseline_name
    table["beats_baseline"] = table["model_mape"] < table["baseline_mape"]
    return HoldoutResult(table[COLUMNS], pd.concat(frames, ignore_index=True), fit, attempts)
