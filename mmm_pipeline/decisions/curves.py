"""Response curves and ROAS with money on the x axis (marts `response_curves`, `channel_roas`).

The models are fitted on delivery units (impressions, clicks, or money for
spend channels); marketers plan in money. Everything here converts through one
cost per unit per geo x channel: the spend-weighted rate of the last
`recent_weeks` modelled (complete) weeks, ``sum(spend) / sum(units)`` (exactly
1 for spend channels, so their spend curve *is* their unit curve).

Weekly response curve (steady state)
------------------------------------
The model is ``contribution[t] = beta * logistic(lam * adstock(x)[t] / s)``
with a *normalised* geometric adstock (weights summing to 1), so a weekly
input ``x`` sustained long enough is adstocked to exactly ``x`` and the weekly
response settles at ``beta * T * logistic(lam * x / s)``, ``T`` the target
scale, ``s`` the channel scale, ``logistic(z) = (1 - e^-z) / (1 + e^-z)``.
That is what :func:`response_curves` reports per posterior draw (mean and 94%
HDI), at weekly spend ``spend`` = ``units * cost_per_unit_used``.

Why not ``MMM.sample_saturation_curve``: pymc-marketing 1.3's method does give
per-geo posterior curves, but on one x grid shared by every channel and geo,
in max-scaled units (``np.linspace(0, max_value, num_points)``), evaluated
through ``pm.sample_prior_predictive`` (a graph compile per call) and without
any cost-per-unit / spend support. The mart needs a grid per geo x channel in
money (0 to ``max_multiple`` x that cell's largest weekly spend), so the same
saturation is evaluated here directly from the posterior (``saturation_lam``,
``saturation_beta``, ``channel_scale``, ``target_scale``), vectorised over
draws; ``tests/test_curves_allocation.py`` checks it against the library's
saturation ``sample_curve`` at the same scaled inputs. (With the default ROI
parameterization, ``MMM.sample_saturation_curve`` itself would redraw beta
from the saturation's own beta prior, which that model replaces by a derived
beta: another reason not to use it.) Saturations other than
``LogisticSaturation`` are evaluated through the model's own
``saturation.function`` (pytensor). A time-varying media multiplier (HSGP), if
configured, is not part of the curve (the curve is the media response at a
multiplier of 1).

ROAS
----
:func:`channel_roas` takes each channel's contribution over the training
weeks from pymc-marketing's ``mmm.incrementality.compute_incremental_contribution
(frequency="all_time", include_carryover=True)`` (the counterfactual with that
channel's spend set to zero, adstock carryover within the period included),
per posterior draw, and divides it by the channel's actual spend over the same
weeks (staging), draw by draw. For this model (identity link, no mu effects)
that contribution equals the posterior ``channel_contribution`` summed over
the training weeks times the target scale, to floating point;
``contribution_source="posterior"`` uses that sum directly and skips the
~9 s evaluator compile of the incrementality module. ``mroas_mean`` is the
slope of the weekly response curve at the cell's current weekly spend (KPI
per money unit), with its 94% HDI over draws; ``response_plus_10pct_*`` the steady-state
weekly response at 1.1 x that spend minus at 1 x, times the planning horizon in weeks (KPI
units). These two are what a lift test of extra spend reaches; average ROAS is everything a
channel did against zero spend over the training period, which no experiment measures. The
market rows add the geos per draw: the response to +10% in every geo, and mROAS as the slope of
the market's response when every geo's spend grows in proportion (the spend-weighted slopes).
"""

from __future__ import annotations

from datetime import date
from typing import Literal, Mapping, Sequence

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import HDI_PROB, NATIONAL
from mmm_pipeline.model.saturation import hill_saturation, logistic_saturation
from mmm_pipeline.model.summaries import hdi_bounds

__all__ = [
    "CurveError", "spend_summary", "response_curves", "channel_roas", "roas_summary",
    "response_draws", "marginal_response_draws", "plot_response_curves",
    "CURVE_COLUMNS", "ROAS_COLUMNS", "SHARE_COLUMNS", "carryover_share", "channel_shares",
]

CURVE_COLUMNS = ["geo", "channel", "spend", "units", "response_mean", "hdi_low", "hdi_high",
                 "cost_per_unit_used", "current_weekly_spend", "max_weekly_spend"]
# What experiments can vouch for first (mROAS, the response to +10%), then average ROAS.
MARGINAL_COLUMNS = ["mroas_mean", "mroas_hdi_low", "mroas_hdi_high", "response_plus_10pct_mean",
                    "response_plus_10pct_hdi_low", "response_plus_10pct_hdi_high", "planning_horizon_weeks"]
# Every ROAS row says the training period its ROAS is over.
TRAINING_PERIOD = ["train_start", "train_end"]
ROAS_COLUMNS = ["geo", "channel", "spend", *MARGINAL_COLUMNS, "contribution_mean", "contribution_hdi_low",
                "contribution_hdi_high", "roas_mean", "roas_hdi_low", "roas_hdi_high",
                "cost_per_incremental_kpi", "current_weekly_spend", "cost_per_unit_used", *TRAINING_PERIOD]


# Market rows of `channel_roas(..., with_totals=True)`: per channel summed over geos; and all media
# together, apart, so that summing the per-channel rows never counts it twice.
MARKET_ROAS_COLUMNS = ["channel", "spend", *MARGINAL_COLUMNS, "contribution_mean", "contribution_hdi_low",
                       "contribution_hdi_high", "roas_mean", "roas_hdi_low", "roas_hdi_high",
                       "cost_per_incremental_kpi", "current_weekly_spend", *TRAINING_PERIOD]
TOTAL_ROAS_COLUMNS = ["channels", *MARKET_ROAS_COLUMNS[1:]]

# Rows of `channel_roas(..., with_shares=True)` (mart `channel_share`): per channel of the market, its share
# of the spend beside its share of the media effect (per draw: the channel's contribution over all media's),
# and the share of a week's effect that arrives in later weeks (the posterior adstock, either family).
SHARE_COLUMNS = ["channel", "spend", "spend_share", "effect_share_mean", "effect_share_hdi_low",
                 "effect_share_hdi_high", "carryover_share_mean", "carryover_share_hdi_low",
                 "carryover_share_hdi_high", "adstock_alpha_mean", "l_max"]

# The response to +10%: the steady-state weekly response at 1.1 x the current weekly spend minus at 1 x.
PLUS_10PCT = 1.1

ROAS_MAX_DRAWS = 1000


class CurveError(ValueError):
    """Curve / ROAS input problem; the message says what and where."""


# --------------------------------------------------------------------------- model access


def model_weeks(mmm) -> pd.DatetimeIndex:
    """The modelled (complete) weeks of a fitted MMM."""
    return pd.DatetimeIndex(mmm.idata.posterior.coords["date"].values)


def training_period(mmm) -> tuple[date, date]:
    """(first day, last day) of the weeks the model was fitted on: the Monday of the first, the
    Sunday of the last."""
    weeks = model_weeks(mmm)
    return weeks.min().date(), (weeks.max() + pd.Timedelta(days=6)).date()


def model_geos(mmm) -> list[str]:
    post = mmm.idata.posterior
    if "geo" in post.coords:
        return [str(g) for g in post.coords["geo"].values]
    return [NATIONAL]


def model_channels(mmm) -> list[str]:
    return [str(c) for c in mmm.idata.posterior.coords["channel"].values]


def _pick(da, geo: str, channel: str) -> np.ndarray:
    """Values of `da` at (geo, channel) where it has those dims, flattened over the rest."""
    sel = {}
    if "channel" in da.dims:
        sel["channel"] = channel
    if "geo" in da.dims:
        sel["geo"] = geo
    return np.asarray(da.sel(sel)).reshape(-1)


def _scalar(da, geo: str, channel: str) -> float:
    v = _pick(da, geo, channel)
    return float(v[0])


def response_draws(mmm, geo: str, channel: str, units: np.ndarray) -> np.ndarray:
    """Steady-state weekly response (KPI units) per posterior draw at weekly `units`.

    Shape (draws, len(units)). ``beta * T * logistic(lam * units / s)`` for
    LogisticSaturation (``LogisticSaturation.function`` on the posterior draws, compiled
    once); other saturations through the model's own ``saturation.function``.
    """
    post = mmm.idata.posterior
    cd = mmm.idata.constant_data
    x = np.asarray(units, dtype=float)[None, :] / _scalar(cd["channel_scale"], geo, channel)
    target = _scalar(cd["target_scale"], geo, channel)
    sat = getattr(mmm, "saturation", None)
    name = type(sat).__name__ if sat is not None else "LogisticSaturation"
    if name == "LogisticSaturation":
        lam = _pick(post["saturation_lam"], geo, channel)[:, None]
        beta = _pick(post["saturation_beta"], geo, channel)[:, None]
        return logistic_saturation(x, lam, beta) * target
    if name == "HillSaturation":
        slope, kappa, beta = (_pick(post[f"saturation_{v}"], geo, channel)[:, None] for v in ("slope", "kappa", "beta"))
        return hill_saturation(x, slope, kappa, beta) * target
    # Generic path: the saturation's own function on numpy inputs.
    import pytensor.tensor as pt

    params = {}
    for short, var in sat.variable_mapping.items():
        params[short] = pt.as_tensor(_pick(post[var], geo, channel)[:, None])
    out = sat.function(pt.as_tensor(x), **params)
    return np.asarray(out.eval()) * target


def marginal_response_draws(mmm, geo: str, channel: str, weekly_spend: float,
                            cost_per_unit: float) -> np.ndarray:
    """d(weekly response) / d(weekly spend) per draw at `weekly_spend` (KPI per money unit).

    Central difference on the steady-state curve with a relative step of 1e-4
    (forward difference at zero spend); exact to ~1e-8 relative for the
    logistic curve.
    """
    s = float(weekly_spend)
    h = 1e-4 * s if s > 0 else 1e-4 * cost_per_unit * _scalar(mmm.idata.constant_data["channel_scale"],
                                                               geo, channel)
    lo = max(s - h, 0.0)
    hi = s + h
    r = response_draws(mmm, geo, channel, np.array([lo, hi]) / cost_per_unit)
    return (r[:, 1] - r[:, 0]) / (hi - lo)


# --------------------------------------------------------------------------- spend summary


def spend_summary(frame: pd.DataFrame, weeks: Sequence, *, recent_weeks: int = 13,
                  geos: Sequence[str] | None = None, channels: Sequence[str] | None = None) -> pd.DataFrame:
    """Per geo x channel: cost_per_unit_used, current_weekly_spend, max_weekly_spend, spend_total.

    `frame` is weekly rows (week_start, geo, channel, units, spend[, unit,
    cost_per_unit]) such as ``marts.cost_per_unit`` or ``staging.media_weekly``;
    only `weeks` (the model's complete weeks) are used.

    * cost_per_unit_used: sum(spend) / sum(units) over the last `recent_weeks`
      weeks (exactly 1.0 where ``unit == "spend"``); when the window has no
      units, the mean of the frame's `cost_per_unit` over the window (the
      mart's imputed rates), else over all weeks; else CurveError.
    * current_weekly_spend: sum(spend) over the window / `recent_weeks` (zero
      weeks count).
    * max_weekly_spend: the largest weekly spend over `weeks`.
    * spend_total: spend over `weeks`.
    """
    need = {"week_start", "geo", "channel", "spend"}
    missing = need - set(frame.columns)
    if missing:
        raise CurveError(f"spend frame lacks column(s) {sorted(missing)}")
    if recent_weeks < 1:
        raise CurveError("recent_weeks must be >= 1")
    weeks = pd.DatetimeIndex(pd.to_datetime(list(weeks))).sort_values()
    recent = weeks[-recent_weeks:]
    df = frame.copy()
    df["week_start"] = pd.to_datetime(df["week_start"]).astype("datetime64[ns]")
    df = df[df["week_start"].isin(weeks)]
    if geos is not None:
        df = df[df["geo"].isin(list(geos))]
    if channels is not None:
        df = df[df["channel"].isin(list(channels))]
    if "units" not in df:
        df["units"] = df["spend"]
    df["spend"] = df["spend"].astype(float)
    df["units"] = df["units"].astype(float)
    # One row per week x geo x channel (a national model fed per-geo rows sums them).
    agg = {"units": "sum", "spend": "sum"}
    if "cost_per_unit" in df:
        agg["cost_per_unit"] = "mean"
    if "unit" in df:
        agg["unit"] = "first"
    df = df.groupby(["week_start", "geo", "channel"], as_index=False).agg(agg)
    rows = []
    cells = [(g, c) for g in (geos or sorted(df["geo"].unique())) for c in (channels or sorted(df["channel"].unique()))]
    for geo, channel in cells:
        d = df[(df["geo"] == geo) & (df["channel"] == channel)]
        if d.empty:
            raise CurveError(f"no weekly spend rows for {geo} / {channel} in the modelled weeks")
        w = d[d["week_start"].isin(recent)]
        is_spend = "unit" in d and (d["unit"] == "spend").all()
        if is_spend:
            cpu = 1.0
        elif w["units"].sum() > 0 and w["spend"].sum() > 0:
            cpu = float(w["spend"].sum() / w["units"].sum())
        elif "cost_per_unit" in d and w["cost_per_unit"].notna().any():
            cpu = float(w["cost_per_unit"].mean())
        elif d["units"].sum() > 0 and d["spend"].sum() > 0:
            cpu = float(d["spend"].sum() / d["units"].sum())
        elif "cost_per_unit" in d and d["cost_per_unit"].notna().any():
            cpu = float(d["cost_per_unit"].mean())
        else:
            raise CurveError(f"no cost per unit for {geo} / {channel}: no units, spend or rate in the data")
        if not (np.isfinite(cpu) and cpu > 0):
            raise CurveError(f"cost per unit for {geo} / {channel} is {cpu}; must be > 0")
        rows.append({
            "geo": geo, "channel": channel, "cost_per_unit_used": cpu,
            "current_weekly_spend": float(w["spend"].sum()) / len(recent),
            "max_weekly_spend": float(d["spend"].max()),
            "spend_total": float(d["spend"].sum()),
            "is_spend_channel": bool(is_spend),
        })
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- curves


def _summary(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = hdi_bounds(draws, HDI_PROB)
    return draws.mean(axis=0), lo, hi


def response_curves(mmm, cost_per_unit: pd.DataFrame, *, recent_weeks: int = 13, n_points: int = 41,
                    max_multiple: float = 2.0) -> pd.DataFrame:
    """Weekly steady-state response vs weekly spend, per geo and channel (mart `response_curves`).

    `cost_per_unit` is ``marts.cost_per_unit`` (week_start, geo, channel,
    unit, units, spend, cost_per_unit); its modelled weeks give the cost per
    unit used (spend-weighted over the last `recent_weeks`), the current
    weekly spend and the largest weekly spend. The spend grid is `n_points`
    evenly spaced points from 0 to `max_multiple` x the cell's largest weekly
    spend (or, for a cell that never spent, to `max_multiple` x the money
    that buys the channel's scale in units); ``units = spend /
    cost_per_unit_used``. response_mean is the posterior mean; hdi_low /
    hdi_high the 94% HDI per point, made non-decreasing along the curve by a
    running maximum (every draw's curve is increasing, the per-point HDI need
    not be by sampling noise). Columns: CURVE_COLUMNS.
    """
    if n_points < 2:
        raise CurveError("n_points must be >= 2")
    if not max_multiple > 0:
        raise CurveError("max_multiple must be > 0")
    geos, channels = model_geos(mmm), model_channels(mmm)
    cpu = cost_per_unit
    if geos == [NATIONAL] and "geo" in cpu and not (cpu["geo"] == NATIONAL).any():
        cpu = cpu.assign(geo=NATIONAL)
    summ = spend_summary(cpu, model_weeks(mmm), recent_weeks=recent_weeks, geos=geos, channels=channels)
    ch_scale = mmm.idata.constant_data["channel_scale"]
    frames = []
    for r in summ.to_dict("records"):
        geo, channel, rate = r["geo"], r["channel"], r["cost_per_unit_used"]
        top = r["max_weekly_spend"]
        if not top > 0:
            top = rate * _scalar(ch_scale, geo, channel)
        spend = np.linspace(0.0, max_multiple * top, n_points)
        units = spend.copy() if r["is_spend_channel"] else spend / rate
        draws = response_draws(mmm, geo, channel, units)
        mean, lo, hi = _summary(draws)
        mean = np.maximum.accumulate(np.maximum(mean, 0.0))
        lo = np.maximum.accumulate(np.maximum(lo, 0.0))
        hi = np.maximum.accumulate(np.maximum(hi, 0.0))
        frames.append(pd.DataFrame({
            "geo": geo, "channel": channel, "spend": spend, "units": units, "response_mean": mean,
            "hdi_low": lo, "hdi_high": hi, "cost_per_unit_used": rate,
            "current_weekly_spend": r["current_weekly_spend"], "max_weekly_spend": r["max_weekly_spend"],
        }))
    return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]


# --------------------------------------------------------------------------- ROAS


def roas_summary(contribution_draws: np.ndarray, spend: float) -> dict:
    """ROAS per draw = contribution / spend, summarised; contribution summarised too.

    `contribution_draws` (1-D, KPI over the period per posterior draw), `spend`
    (money over the same period). Zero spend gives NaN ROAS and NaN cost per
    incremental KPI; a zero mean contribution gives an infinite cost per KPI.
    """
    c = np.asarray(contribution_draws, dtype=float).reshape(-1)
    c_mean = float(c.mean())
    c_lo, c_hi = hdi_bounds(c[:, None], HDI_PROB)
    if spend > 0:
        # staging spend, not the model's units x cost per unit (contribution_over_spend): README, definitions
        roas = c / spend
        r_lo, r_hi = hdi_bounds(roas[:, None], HDI_PROB)
        out_roas = (float(roas.mean()), float(r_lo[0]), float(r_hi[0]))
        # spend / mean contribution; the library's spend_over_contribution is per draw (README, definitions)
        cpik = spend / c_mean if c_mean != 0 else float("inf")
    else:
        out_roas = (float("nan"),) * 3
        cpik = float("nan")
    return {"spend": float(spend), "contribution_mean": c_mean, "contribution_hdi_low": float(c_lo[0]),
            "contribution_hdi_high": float(c_hi[0]), "roas_mean": out_roas[0], "roas_hdi_low": out_roas[1],
            "roas_hdi_high": out_roas[2], "cost_per_incremental_kpi": cpik}


def _contribution_draws(mmm, source: str):
    """Per-draw contribution over the training weeks: DataArray (chain, draw, [geo,] channel)."""
    if source == "incrementality":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Its memory grows with the draws evaluated at once (8.4 GB for 4 x 1000 draws on
            # 20 geos): a fixed random subset of 1,000 draws bounds it.
            post = mmm.idata.posterior
            n_draws = int(post.sizes["chain"] * post.sizes["draw"])
            subset = {"num_samples": ROAS_MAX_DRAWS, "random_state": 0} if n_draws > ROAS_MAX_DRAWS else {}
            return mmm.incrementality.compute_incremental_contribution(
                frequency="all_time", include_carryover=True, **subset)
    if source == "posterior":
        post = mmm.idata.posterior
        return post["channel_contribution"].sum("date") * mmm.idata.constant_data["target_scale"]
    raise CurveError(f"contribution_source must be 'incrementality' or 'posterior', not {source!r}")


def marginal_summary(slope_draws: np.ndarray, plus10_draws: np.ndarray, horizon_weeks: int) -> dict:
    """mROAS (KPI per money unit) and the response to +10% over the horizon (KPI units), each its
    posterior mean and 94% HDI, from per-draw values (1-D each)."""
    out = {}
    for name, draws in (("mroas", slope_draws), ("response_plus_10pct", plus10_draws)):
        d = np.asarray(draws, dtype=float).reshape(-1)
        if not np.isfinite(d).all():  # e.g. the market slope of a channel with no current spend
            out |= dict.fromkeys((f"{name}_mean", f"{name}_hdi_low", f"{name}_hdi_high"), float("nan"))
            continue
        lo, hi = hdi_bounds(d[:, None], HDI_PROB)
        out |= {f"{name}_mean": float(d.mean()), f"{name}_hdi_low": float(lo[0]), f"{name}_hdi_high": float(hi[0])}
    return out | {"planning_horizon_weeks": int(horizon_weeks)}


def channel_roas(mmm, media_weekly: pd.DataFrame, cost_per_unit: pd.DataFrame, *, recent_weeks: int = 13,
                 contribution_source: Literal["incrementality", "posterior"] = "incrementality",
                 with_totals: bool = False, horizon_weeks: int = 8, with_shares: bool = False):
    """ROAS per geo and channel over the training weeks (mart `channel_roas`).

    spend: actual spend in `media_weekly` (staging) over the model's weeks;
    contribution: carryover-aware incremental KPI of the channel over those
    weeks per draw (see the module docstring); roas per draw = contribution /
    spend, summarised (mean, 94% HDI); mroas_*: slope of the weekly
    response curve at current_weekly_spend (the mean weekly spend of the last
    `recent_weeks` weeks, from `media_weekly`) with the cost per unit of
    `cost_per_unit` over the same window, per draw; response_plus_10pct_*: the
    weekly response at 1.1 x current_weekly_spend minus at 1 x, times
    `horizon_weeks`, per draw; cost_per_incremental_kpi = spend /
    contribution_mean. Columns: ROAS_COLUMNS.

    with_totals: also return the market's rows (MARKET_ROAS_COLUMNS) and all media's one row
    (TOTAL_ROAS_COLUMNS): each channel's contribution summed over geos per draw (and over
    channels for all media), so their intervals are the posterior's, not a sum of per-geo
    intervals. Every row carries the training period (`train_start`, `train_end`).

    with_shares (with with_totals): a fourth frame, SHARE_COLUMNS (`channel_shares`): each
    channel's share of spend and of the media effect (per draw), and its carryover share from
    the posterior adstock (per geo, weighted by the geos' spend on the channel).
    """
    geos, channels = model_geos(mmm), model_channels(mmm)
    weeks = model_weeks(mmm)
    media, cpu = media_weekly, cost_per_unit
    if geos == [NATIONAL]:
        if "geo" not in media or not (media["geo"] == NATIONAL).any():
            media = media.assign(geo=NATIONAL)
        if "geo" not in cpu or not (cpu["geo"] == NATIONAL).any():
            cpu = cpu.assign(geo=NATIONAL)
    spend = spend_summary(media, weeks, recent_weeks=recent_weeks, geos=geos, channels=channels)
    rates = spend_summary(cpu, weeks, recent_weeks=recent_weeks, geos=geos, channels=channels)
    rates = rates.set_index(["geo", "channel"])["cost_per_unit_used"]
    contrib = _contribution_draws(mmm, contribution_source)
    rows = []
    totals: dict[str, list] = {}
    for r in spend.to_dict("records"):
        geo, channel = r["geo"], r["channel"]
        draws = _pick(contrib, geo, channel)
        rate = float(rates.loc[(geo, channel)])
        current = r["current_weekly_spend"]
        # slope at today's spend; marginal_contribution_over_spend is a historical +1 % counterfactual
        slope = marginal_response_draws(mmm, geo, channel, current, rate)
        weekly = response_draws(mmm, geo, channel, np.array([current, PLUS_10PCT * current]) / rate)
        plus10 = (weekly[:, 1] - weekly[:, 0]) * horizon_weeks
        for key in (channel, None):  # None: all media
            acc = totals.setdefault(key, [0.0, 0.0, 0.0, 0.0, 0.0])
            acc[0] = acc[0] + np.asarray(draws, dtype=float)
            acc[1] += r["spend_total"]
            acc[2] = acc[2] + slope * current   # the market's slope when every geo grows in proportion
            acc[3] = acc[3] + plus10
            acc[4] += current
        row = {"geo": geo, "channel": channel, **roas_summary(draws, r["spend_total"]),
               **marginal_summary(slope, plus10, horizon_weeks)}
        row["current_weekly_spend"] = current
        row["cost_per_unit_used"] = rate
        rows.append(row)
    start, end = training_period(mmm)
    per_geo = pd.DataFrame(rows).assign(train_start=start, train_end=end)[ROAS_COLUMNS]
    if not with_totals:
        return per_geo
    summed = pd.DataFrame([
        {"channel": k, **roas_summary(d, s), **marginal_summary(np.asarray(w) / cur if cur > 0 else np.full(np.shape(w), np.nan), p, horizon_weeks),
         "current_weekly_spend": cur}
        for k, (d, s, w, p, cur) in totals.items()]).assign(train_start=start, train_end=end)
    everything = summed["channel"].isna()
    total = summed[everything].assign(channels=", ".join(channels))[TOTAL_ROAS_COLUMNS].reset_index(drop=True)
    market = summed[~everything][MARKET_ROAS_COLUMNS].reset_index(drop=True)
    if not with_shares:
        return per_geo, market, total
    carryover, alpha_means, l_max = _carryover_draws(mmm, spend)
    shares = channel_shares({c: totals[c][0] for c in channels if c in totals},
                            {c: totals[c][1] for c in channels if c in totals}, carryover, alpha_means, l_max)
    return per_geo, market, total, shares


def carryover_share(adstock, **params) -> np.ndarray:
    """The share of a week's media effect that arrives after that week, per parameter value.

    `adstock`: a pymc-marketing adstock (GeometricAdstock, DelayedAdstock, ...); `params`: its
    parameters by their short names (`alpha`, `theta`), arrays of one shape. Through the library's own
    kernel: a unit pulse's adstocked effect, 1 - week 0 / sum over the `l_max` weeks (the share does not
    depend on the normalisation). Geometric: 1 - 1 / sum(alpha**l), 0 when alpha = 0 or l_max = 1.
    """
    from pytensor.xtensor import as_xtensor

    arrays = {k: np.asarray(v, dtype=float) for k, v in params.items()}
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    flat = {k: as_xtensor(np.broadcast_to(a, shape).reshape(-1), dims=("_value",)) for k, a in arrays.items()}
    pulse = np.zeros((int(adstock.l_max), int(np.prod(shape, dtype=int))))
    pulse[0] = 1.0
    out = np.asarray(adstock.function(as_xtensor(pulse, dims=("date", "_value")), **flat, dim="date")
                     .transpose("date", "_value").values.eval())
    return (1.0 - out[0] / out.sum(axis=0)).reshape(shape)


def _share_row(draws: np.ndarray) -> tuple[float, float, float]:
    d = np.asarray(draws, dtype=float).reshape(-1)
    d = d[np.isfinite(d)]
    if not len(d):
        return (float("nan"),) * 3
    lo, hi = hdi_bounds(d[:, None], HDI_PROB)
    return float(d.mean()), float(lo[0]), float(hi[0])


def channel_shares(contribution_draws: Mapping[str, np.ndarray], spend: Mapping[str, float],
                   carryover_draws: Mapping[str, np.ndarray] | None = None,
                   alpha_means: Mapping[str, float] | None = None, l_max: int | None = None) -> pd.DataFrame:
    """Share of spend vs share of effect per channel, and carryover share (SHARE_COLUMNS).

    contribution_draws: channel -> the market's contribution per posterior draw (1-D, the same draws
    for every channel); effect share per draw = channel / sum over channels, so the means add up to 1
    exactly (draws whose media total is 0 are left out). spend: channel -> spend over the same weeks.
    carryover_draws: channel -> the carryover share per draw (`carryover_share`, geos weighted by
    spend, see `channel_roas`); alpha_means: channel -> the posterior mean of the adstock's alpha.
    """
    channels = list(contribution_draws)
    stacked = np.vstack([np.asarray(contribution_draws[c], dtype=float).reshape(-1) for c in channels])
    total = stacked.sum(axis=0)
    keep = total != 0
    shares = stacked[:, keep] / total[keep]
    spend_total = float(sum(spend[c] for c in channels))
    carryover_draws, alpha_means = carryover_draws or {}, alpha_means or {}
    rows = []
    for i, c in enumerate(channels):
        mean, lo, hi = _share_row(shares[i])
        row = {"channel": c, "spend": float(spend[c]),
               "spend_share": float(spend[c]) / spend_total if spend_total > 0 else float("nan"),
               "effect_share_mean": mean, "effect_share_hdi_low": lo, "effect_share_hdi_high": hi}
        if c in carryover_draws and l_max:
            row |= dict(zip(("carryover_share_mean", "carryover_share_hdi_low", "carryover_share_hdi_high"),
                            _share_row(carryover_draws[c])))
            row |= {"adstock_alpha_mean": float(alpha_means.get(c, float("nan"))), "l_max": int(l_max)}
        else:
            row |= {"carryover_share_mean": float("nan"), "carryover_share_hdi_low": float("nan"),
                    "carryover_share_hdi_high": float("nan"), "adstock_alpha_mean": float("nan"), "l_max": l_max}
        rows.append(row)
    return pd.DataFrame(rows, columns=SHARE_COLUMNS)


def _carryover_draws(mmm, spend: pd.DataFrame) -> tuple[dict[str, np.ndarray], dict[str, float], int | None]:
    """channel -> the carryover share per draw (geos weighted by their spend on the channel), channel ->
    the posterior mean of alpha (same weights), and l_max. One kernel evaluation for every cell."""
    post = mmm.idata.posterior
    adstock = getattr(mmm, "adstock", None)
    l_max = getattr(adstock, "l_max", None)
    mapping = dict(getattr(adstock, "variable_mapping", {}) or {})
    if not l_max or not mapping or any(v not in post for v in mapping.values()):
        return {}, {}, None
    cells = list(zip(spend["geo"], spend["channel"]))
    params = {short: np.stack([_pick(post[var], g, c) for g, c in cells]) for short, var in mapping.items()}
    share = carryover_share(adstock, **params)  # (cells, draws)
    carry, alpha = {}, {}
    for channel, d in spend.groupby("channel"):
        idx = [i for i, (_, c) in enumerate(cells) if c == channel]
        w = np.asarray(d["spend_total"], dtype=float)
        w = w / w.sum() if w.sum() > 0 else np.full(len(w), 1.0 / len(w))
        carry[str(channel)] = (w[:, None] * share[idx]).sum(axis=0)
        if "alpha" in params:
            alpha[str(channel)] = float((w * params["alpha"][idx].mean(axis=1)).sum())
    return carry, alpha, int(l_max)



# --------------------------------------------------------------------------- plot


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


VARIANT_COLORS = {"uncalibrated": "tab:gray", "calibrated": "tab:blue"}


def plot_response_curves(curves_by_variant: Mapping[str, pd.DataFrame], channel: str):
    """One panel per geo for `channel`: each variant's weekly response (mean line, 94% HDI band)
    against weekly spend, current weekly spend (dashed) and the largest weekly spend seen (dotted)."""
    plt = _plt()
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    _thousands = FuncFormatter(lambda v, _: f"{v / 1e6:g}M" if abs(v) >= 1e6 else
                               (f"{v / 1e3:g}k" if abs(v) >= 1e3 else f"{v:g}"))
    frames = {v: df[df["channel"] == channel] for v, df in curves_by_variant.items()}
    frames = {v: df for v, df in frames.items() if len(df)}
    if not frames:
        raise CurveError(f"no curve rows for channel {channel!r}")
    geos = sorted(set().union(*(set(df["geo"]) for df in frames.values())))
    fig, axes = plt.subplots(1, len(geos), figsize=(4.2 * len(geos), 3.6), dpi=80, squeeze=False, sharey=True)
    for ax, geo in zip(axes[0], geos):
        marked = False
        for k, (variant, df) in enumerate(frames.items()):
            d = df[df["geo"] == geo].sort_values("spend")
            if d.empty:
                continue
            color = VARIANT_COLORS.get(variant, f"C{k + 2}")
            ax.fill_between(d["spend"], d["hdi_low"], d["hdi_high"], color=color, alpha=0.25, lw=0)
            ax.plot(d["spend"], d["response_mean"], color=color, lw=1.5, label=f"{variant} (mean, 94% HDI)")
            if not marked:
                cur = float(d["current_weekly_spend"].iloc[0])
                ax.axvline(cur, color="black", ls="--", lw=1, label="current weekly spend")
                ax.axvline(float(d["max_weekly_spend"].iloc[0]), color="black", ls=":", lw=1,
                           label="largest weekly spend seen")
                marked = True
        ax.set_title(f"{channel} - {geo}", fontsize=9)
        ax.set_xlabel("weekly spend (money)")
        ax.xaxis.set_major_formatter(_thousands)
        ax.yaxis.set_major_formatter(_thousands)
        ax.xaxis.set_major_locator(MaxNLocator(5))
    axes[0, 0].set_ylabel("weekly response (KPI)")
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Response curve of {channel} at steady state")
    fig.tight_layout()
    return fig
