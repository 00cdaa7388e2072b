"""A track record on the user's own data: each model's forecast of the weeks after its training, scored
when those weeks arrive.

Each run stores, per market and variant, the model's **forecast** of the next
``planning_horizon_weeks`` weeks' KPI under the media it expects (each geo and channel's mean weekly
media of the last 13 training weeks, continued; controls held at their mean of the same weeks), with
its 94% HDI (``marts.kpi_forecast``).

A later run whose data reach some of those weeks reloads each earlier model and **re-evaluates** its
posterior on the media and controls that actually happened (pymc-marketing's
``sample_posterior_predictive`` with the adstock carried in from the training weeks, as the holdout
validation does). Both are compared with the KPI that came (``marts.track_record``): the forecast
answers "did the model see the coming weeks right", the re-evaluation "does its response hold when
spend differs from what it expected" -- what to know before acting on its plans.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import HDI_PROB
from mmm_pipeline.model.data import prepare_model_data

RECENT_WEEKS = 13
MARKET = "market"   # the geo label of the market's total rows
FORECAST_COLUMNS = ["week_start", "geo", "forecast_mean", "forecast_hdi_low", "forecast_hdi_high"]
RECORD_COLUMNS = ["week_start", "geo", "actual", "forecast_mean", "forecast_hdi_low", "forecast_hdi_high",
                  "forecast_error", "forecast_covered", "rescored_mean", "rescored_hdi_low", "rescored_hdi_high",
                  "rescored_error", "rescored_covered"]


def predictive_draws(mmm, X_new: pd.DataFrame, *, seed: int | None) -> tuple[np.ndarray, list[str]]:
    """KPI draws (sample, week, geo) of `mmm` on the weeks of `X_new` (in the model's units), the
    adstock carried in from its training weeks; with the geo labels."""
    from mmm_pipeline.model.summaries import target_scale

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        pred = mmm.sample_posterior_predictive(X_new, extend_idata=False, include_last_observations=True,
                                               combined=True, progressbar=False, random_seed=seed)
    y = pred["y"] * target_scale(mmm)  # `y` is in model units (the KPI over its per-geo max)
    dims = ("sample", "date", "geo") if "geo" in y.dims else ("sample", "date")
    draws = np.asarray(y.transpose(*dims).to_numpy(), dtype=float)
    if draws.ndim == 2:
        draws = draws[:, :, None]
    geos = [str(g) for g in y.coords["geo"].values] if "geo" in y.dims else ["national"]
    return draws, geos


def training_frame(mmm) -> pd.DataFrame:
    """The model's training X (date, [geo], channels, controls) from the saved fit data."""
    fit = mmm.idata.fit_data.to_dataset().to_dataframe().reset_index()
    return fit.drop(columns=[mmm.target_column], errors="ignore")


def train_end(mmm) -> pd.Timestamp:
    """Monday of the model's last training week."""
    return pd.Timestamp(pd.to_datetime(mmm.idata.fit_data.coords[mmm.date_column].values).max())


def expected_frame(X_train: pd.DataFrame, weeks_ahead: int, *, date_column: str = "date",
                   recent_weeks: int = RECENT_WEEKS) -> pd.DataFrame:
    """The next `weeks_ahead` weeks with each geo's mean media and controls of its last
    `recent_weeks` training weeks (what a run expects when nobody changes the plan)."""
    X = X_train.copy()
    X[date_column] = pd.to_datetime(X[date_column])
    weeks = sorted(X[date_column].unique())
    recent = X[X[date_column].isin(weeks[-recent_weeks:])]
    keys = [c for c in ("geo",) if c in X]
    values = [c for c in X.columns if c not in (date_column, *keys)]
    level = recent.groupby(keys)[values].mean().reset_index() if keys else recent[values].mean().to_frame().T
    step = pd.Timedelta(weeks=1)
    future = pd.DataFrame({date_column: [weeks[-1] + k * step for k in range(1, weeks_ahead + 1)]})
    return future.merge(level, how="cross")[X.columns.tolist()]


def _summarise(draws: np.ndarray, weeks: list[pd.Timestamp], geos: list[str], prefix: str) -> pd.DataFrame:
    """Mean and 94% HDI per week and geo, plus the market's total (draws summed per sample)."""
    from mmm_pipeline.model.summaries import hdi_bounds

    frames = []
    for label, d in [*((g, draws[:, :, j]) for j, g in enumerate(geos)), (MARKET, draws.sum(axis=2))]:
        low, high = hdi_bounds(d, HDI_PROB)
        frames.append(pd.DataFrame({"week_start": [w.date() for w in weeks], "geo": label,
                                    f"{prefix}_mean": d.mean(axis=0), f"{prefix}_hdi_low": low,
                                    f"{prefix}_hdi_high": high}))
    return pd.concat(frames, ignore_index=True)


def forecast(mmm, weeks_ahead: int, *, seed: int | None) -> pd.DataFrame:
    """The model's forecast of the `weeks_ahead` weeks after its training under the media it expects
    (FORECAST_COLUMNS; per geo and the market)."""
    X_future = expected_frame(training_frame(mmm), weeks_ahead, date_column=mmm.date_column)
    draws, geos = predictive_draws(mmm, X_future, seed=seed)
    weeks = sorted(pd.to_datetime(X_future[mmm.date_column]).unique())
    return _summarise(draws, weeks, geos, "forecast")[FORECAST_COLUMNS]


def rescore(mmm, media_weekly: pd.DataFrame, kpi_weekly: pd.DataFrame, cost_per_unit: pd.DataFrame, *,
            geos, control_columns=(), controls: pd.DataFrame | None = None,
            weeks: list | None = None, seed: int | None) -> pd.DataFrame:
    """The model re-evaluated on the media and controls that happened in the complete weeks after its
    training (only `weeks` when given), beside the KPI that came: week_start, geo, actual,
    rescored_mean / _hdi_low / _hdi_high (per geo and the market). Empty when no such week has data yet."""
    end = train_end(mmm)
    transform = None
    if control_columns:  # controls scaled as the model's training weeks scaled them
        before = lambda df: None if df is None else df[pd.to_datetime(df["week_start"]) <= end]  # noqa: E731
        trained = prepare_model_data(before(media_weekly), before(kpi_weekly), before(cost_per_unit), geos=geos,
                                     control_columns=control_columns, controls=before(controls))
        transform = (trained.control_references, trained.control_scales)
    full = prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos, control_columns=control_columns,
                              controls=controls, control_transform=transform)
    wanted = {pd.Timestamp(w) for w in weeks} if weeks is not None else None
    new_weeks = [w for w in full.weeks if w > end and (wanted is None or w in wanted)]
    if not new_weeks:
        return pd.DataFrame(columns=["week_start", "geo", "actual", "rescored_mean", "rescored_hdi_low",
                                     "rescored_hdi_high"])
    X_new = full.X[pd.to_datetime(full.X["date"]).isin(new_weeks)].reset_index(drop=True)
    draws, labels = predictive_draws(mmm, X_new, seed=seed)
    out = _summarise(draws, new_weeks, labels, "rescored")
    y = pd.DataFrame(full.y.to_numpy().reshape(len(full.weeks), len(full.geos)), index=full.weeks,
                     columns=full.geos)
    actual = y.loc[new_weeks, [g for g in labels if g in y.columns] or list(y.columns)]
    actual.columns = labels
    long = actual.assign(**{MARKET: actual.sum(axis=1)}).rename_axis("week_start").reset_index().melt(
        id_vars="week_start", var_name="geo", value_name="actual")
    long["week_start"] = pd.to_datetime(long["week_start"]).dt.date
    return long.merge(out, on=["week_start", "geo"])


def record(forecast_rows: pd.DataFrame, rescored: pd.DataFrame) -> pd.DataFrame:
    """Per week and geo that has arrived: the stored forecast and the re-evaluation against the KPI that
    came (RECORD_COLUMNS; error = prediction - actual, covered = actual inside the 94% HDI)."""
    f = forecast_rows.copy()
    f["week_start"] = pd.to_datetime(f["week_start"]).dt.date
    r = rescored.copy()
    r["week_start"] = pd.to_datetime(r["week_start"]).dt.date
    out = r.merge(f[FORECAST_COLUMNS], on=["week_start", "geo"], how="left")
    for p in ("forecast", "rescored"):
        out[f"{p}_error"] = out[f"{p}_mean"] - out["actual"]
        covered = ((out["actual"] >= out[f"{p}_hdi_low"]) & (out["actual"] <= out[f"{p}_hdi_high"])).astype("boolean")
        covered[out[f"{p}_mean"].isna()] = pd.NA   # a week the stored forecast did not reach
        out[f"{p}_covered"] = covered
    return out[RECORD_COLUMNS].sort_values(["geo", "week_start"]).reset_index(drop=True)


def summary(rows: pd.DataFrame) -> dict:
    """The market's record of one model: weeks scored, MAPE and 94% coverage of the forecast and of
    the re-evaluation on actual spend."""
    m = rows[rows["geo"] == MARKET]
    out = {"weeks": int(len(m))}
    for p in ("forecast", "rescored"):
        ok = m[m[f"{p}_mean"].notna()]
        out[f"{p}_mape"] = float((ok[f"{p}_error"].abs() / ok["actual"].abs()).mean()) if len(ok) else float("nan")
        out[f"{p}_coverage"] = float(ok[f"{p}_covered"].astype(float).mean()) if len(ok) else float("nan")
    return out
