"""truth.json of a generated sample: every true parameter, share and lift, and the definitions in words."""

from __future__ import annotations

from typing import Any

import numpy as np

from mmm_pipeline.sample.design import (
    AOV, CHANNEL_PLATFORMS, CHANNEL_UNIT, CHANNELS, COST_WAVE, END, GEO_COST, GEOS, ITEMS, KPI_DOW_WEIGHTS, L_MAX,
    MARKETS, POPULATION, Q4_RISE, SEASONALITY, START, YOUTUBE_OFF,
)

#: The truth's definitions in words (truth.json `definitions`).
DEFINITIONS = {
    "x": "weekly sum of the channel's unit column over its rows (channels.csv mapping), per geo",
    "contribution": "beta[g][c] * logistic(lam[g][c] * adstock(x / unit_scale[c], alpha[g][c]))",
    "y": "intercept[g]*(1+season[w]) + sum_c contribution + Normal(0, noise_sd[g]), weekly USD revenue",
    "daily_kpi": "revenue[d] = y[week] * (dow_weight[d] + zero-sum daily noise); complete weeks sum to y",
    "last_week": "incomplete (3 days); its days carry only their dow-weight share of y: drop when fitting",
    "contribution_share": "sum of the channel's contribution / sum of y, over complete weeks and all geos",
    "delta_spend": "USD added over the whole window (difference of written spend, all test geos)",
    "delta_units": "delivery units added over the window (unit of the channel)",
    "cost_per_unit_window": "delta_spend / delta_units (USD per unit; per impression for impressions)",
    "true_delta_y_window": "sum over the window's weeks and test geos of y(with test) - y(without), same noise",
    "true_delta_y_after_window": "carry-over lift after the window",
    "true_delta_y_total": "window + after-window lift (the whole effect of the test's spend)",
    "scope": "window: delta_y reads out the window only; total: it includes the carryover",
    "delta_y": "true lift in the test's scope + Normal(0, sigma), as reported; sigma = its standard error",
    "national_test": "geo empty: the test ran in every geo; one measurement of the sum of the geos' lifts",
}


def sample_truth(seed: int, cal, model, sizes: dict, lift_truth: list, correlated, correlation_noise: float) -> dict:
    """The truth dict (module docstring of ``mmm_pipeline.sample.generate`` lists its keys)."""
    complete, y_week, contrib = cal.complete, model.y_week, model.contrib
    week_starts, n_days, n_weeks, last_week_days = cal.week_starts, cal.n_days, cal.n_weeks, cal.last_week_days
    alpha, lam, beta, intercept, noise_sd = model.alpha, model.lam, model.beta, model.intercept, model.noise_sd
    unit_scale = model.unit_scale
    total_rev = y_week[complete].sum()
    contribution_share = {ch: float(contrib[complete][:, :, c].sum() / total_rev) for c, ch in enumerate(CHANNELS)}
    share_by_geo = {
        g: {ch: float(contrib[complete][:, k, c].sum() / y_week[complete][:, k].sum()) for c, ch in enumerate(CHANNELS)}
        for k, g in enumerate(GEOS)
    }
    week_start_str = [d.date().isoformat() for d in week_starts]

    def geo_ch(a: np.ndarray) -> dict:
        return {g: {ch: float(a[k, c]) for c, ch in enumerate(CHANNELS)} for k, g in enumerate(GEOS)}

    truth: dict[str, Any] = {
        "description": "Known weekly geo-level MMM that generated the sample KPI; see mmm_pipeline/sample/generate.py docstring.",
        "seed": seed,
        "generator": "mmm_pipeline.sample.generate_sample",
        "dates": {
            "start": START.isoformat(), "end": END.isoformat(), "n_days": n_days,
            "week_starts": week_start_str, "n_weeks": n_weeks,
            "last_week_complete": bool(complete[-1]), "last_week_n_days": int(last_week_days),
        },
        "geos": GEOS,
        "geo_size": sizes,
        "structure": {"correlated_drivers": list(correlated) if correlated else None,
                      "correlation_noise": correlation_noise if correlated else None},
        "markets": MARKETS,
        "kpi": {"column": "revenue", "currency": "USD", "grain": "daily x geo",
                "day_of_week_weights": dict(zip(["mon", "tue", "wed", "thu", "fri", "sat", "sun"], KPI_DOW_WEIGHTS)),
                "average_order_value": AOV},
        "channels": {ch: {"unit": CHANNEL_UNIT[ch], "platforms": CHANNEL_PLATFORMS[ch]} for ch in CHANNELS},
        "unit_scale": {ch: float(unit_scale[c]) for c, ch in enumerate(CHANNELS)},
        "adstock": {"type": "geometric", "l_max": L_MAX, "normalize": True, "mode": "After",
                    "weights": "alpha**l / sum_{k<l_max} alpha**k, l = 0..l_max-1"},
        "saturation": {"type": "logistic", "formula": "(1 - exp(-lam*x)) / (1 + exp(-lam*x))",
                       "input": "adstocked x / unit_scale[channel]"},
        "alpha": geo_ch(alpha),
        "lam": geo_ch(lam),
        "beta": geo_ch(beta),
        "population": {
            "alpha": {"scale": "logit", **POPULATION["alpha"]},
            "lam": {"scale": "log", **POPULATION["lam"]},
            "beta": {"scale": "log", "units": "USD revenue per week", **POPULATION["beta"]},
        },
        "intercept": {g: float(intercept[k]) for k, g in enumerate(GEOS)},
        "seasonality": {
            "type": "yearly_fourier", "n_order": 2, "period_days": 365.25,
            "features": "t = dayofyear(week_start)/365.25; sin_k = sin(2*pi*k*t), cos_k = cos(2*pi*k*t)",
            "coefficients": SEASONALITY,
            "form": "multiplicative on the intercept: intercept[g] * (1 + sum_k coef_k * feature_k)",
        },
        "noise_sd": {g: float(noise_sd[k]) for k, g in enumerate(GEOS)},
        "contribution_share": contribution_share,
        "media_share": float(sum(contribution_share.values())),
        "contribution_share_by_geo": share_by_geo,
        "weekly_contribution": {ch: [float(v) for v in contrib[:, :, c].sum(axis=1)] for c, ch in enumerate(CHANNELS)},
        "weekly_revenue_model": {g: [float(v) for v in y_week[:, k]] for k, g in enumerate(GEOS)},
        "cost": {
            "currency": "USD",
            "base_cost_per_unit": {f"{it['platform']}:{it['campaign_name']}:{it.get('ad_name', '')}": it["cpu"]
                                   for it in ITEMS},
            "cost_unit": "CPM for impression channels, CPC for search, 1 for retail (spend units)",
            "q4_rise_by_month": {str(k): v for k, v in Q4_RISE.items()},
            "yearly_wave_amplitude": COST_WAVE,
            "geo_multiplier": GEO_COST,
            "daily_noise_sd_log": 0.04,
            "formula": "base * (1 + wave*cos(2*pi*doy/365.25) + q4_rise[month]) * geo_multiplier * lognormal",
        },
        "youtube_flights": {
            "off": [{"start": week_start_str[s], "n_weeks": n, "rows": "missing" if miss else "zeros"}
                    for s, n, miss in YOUTUBE_OFF],
        },
        "lift_tests": lift_truth,
        "definitions": DEFINITIONS,
    }
    return truth
