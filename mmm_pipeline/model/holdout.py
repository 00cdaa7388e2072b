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
100, ``max_divergence_share`` 0.01, never stricter than the profile's) and climbs the retry ladder
when it fails it; a refit that still fails leaves the forecast on record but proves nothing
(:attr:`mmm_pipeline.model.market.Validation.passed`).

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

    def fit_once(c: ModelConfig):
        return fit_model(_before(media_weekly, cutoff), _before(kpi_weekly, cutoff), _before(cost_per_unit, cutoff),
                         c, geos=geos, controls=_before(controls, cutoff), progress_callback=progress_callback,
                         scales=scales)

    # a refit that fails its gate climbs the same ladder as a fit: a stuck chain's forecast is not evidence
    fit, attempts = fit_with_ladder(fit_once, refit_config(cfg), log=progress_callback or (lambda _: None))
    # the held-out weeks in the fitted model's units (controls scaled as in training)
    later = prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos,
                               control_columns=cfg.control_columns, controls=controls,
                               control_transform=(fit.data.control_references, fit.data.control_scales))
    X_test = later.X[pd.to_datetime(later.X["date"]).isin(test_weeks)].reset_index(drop=True)
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
