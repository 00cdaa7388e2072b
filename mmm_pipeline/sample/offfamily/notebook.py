"""`notebook`: the process of pymc-marketing's geo-lift calibration notebook, with field readouts.

From the notebook's text (../shared/references/pymc_marketing_geo_lift_calibration_notebook.txt):
104 weeks from Monday 2022-01-03, 8 geos, two spend channels whose weekly spend correlates about
0.99 (channel_1 = base x geo_scale + N(0, 0.02), channel_2 = base x geo_scale x 0.95 + N(0, 0.02),
base ~ Uniform(0.2, 1) per geo and week divided by its max, geo_scale 0.7..1.0, both clipped to
[0.1, 1]); geometric adstock (alpha 0.5, l_max 8, normalised), logistic saturation on the channel
over its max over weeks and geos (pymc-marketing's default channel scaling), lam ~ N(4, 0.5) /
N(3, 0.5) clipped to [1.5, 8] and beta ~ N(0.6, 0.08) / N(0.5, 0.08) clipped to [0.3, 0.9] per geo,
intercept 0.3 + 0.05 x geo index, Normal noise sd 0.08, no seasonality and no controls. The
experiment is in the data: channel_1 + 0.15 (clipped to 1.2) in geos 0, 2, 4, 6 over the last 8 weeks.

Written in the product's contract: spend = x x 10,000 USD a week, revenue = y x 100,000, as daily
rows (each week spread evenly over its days: the weekly sums are the process's weeks). What
differs from the notebook is the readout, as run in the field (issue 27, item 2): each treated geo
is one test of `window` scope whose delta_y is the KPI difference over the 8 weeks on the actual
spend path (with minus without the extra spend, by re-simulation), plus
Normal(0, sigma) with sigma 10% of the true lift; the notebook instead reads the instantaneous
saturation difference at the pre-period level.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from mmm_pipeline.sample.offfamily.figures import cell_figures, cells_json, lift_truth, sigma_fraction
from mmm_pipeline.sample.offfamily.process import MediaProcess, PlanContext

N_WEEKS = 104
START = pd.Timestamp("2022-01-03")
GEOS = [f"geo_{i:02d}" for i in range(8)]
CHANNELS = ["channel_1", "channel_2"]
TREATED = [0, 2, 4, 6]
EXPERIMENT_WEEKS = 8
DELTA_X = 0.15
SPEND_UNIT = 10_000.0
KPI_UNIT = 100_000.0
L_MAX = 8
ALPHA = 0.5
HORIZON_WEEKS = 8
STRUCTURE_ID = 103
CHANNELS_CSV = ("channel,platform,campaign_pattern,unit,currency\n"
                "channel_1,google_ads,,spend,USD\n"
                "channel_2,facebook_ads,,spend,USD\n")
PLATFORMS = {
    "google_ads": {"file": "google_ads.csv", "platform": "google_ads", "source_relation": "google_ads.daily",
                   "account_id": "1000200030", "account_name": "Notebook Google", "campaign_id": "9001",
                   "campaign_name": "Channel 1", "channel": "channel_1"},
    "facebook_ads": {"file": "facebook_ads.csv", "platform": "facebook_ads", "source_relation": "facebook_ads.daily",
                     "account_id": "act_4000", "account_name": "Notebook Meta", "campaign_id": "9002",
                     "campaign_name": "Channel 2", "channel": "channel_2"},
}


def build(seed: int) -> dict:
    rng = np.random.default_rng([STRUCTURE_ID, int(seed)])
    rng_params = np.random.default_rng([STRUCTURE_ID, int(seed), 1])
    G, C, W = len(GEOS), len(CHANNELS), N_WEEKS
    exp0 = W - EXPERIMENT_WEEKS
    x = np.zeros((W, G, C))
    x_wo = np.zeros((W, G, C))
    for g in range(G):
        base = rng.uniform(0.2, 1.0, W)
        base = base / base.max()
        gs = 0.7 + 0.3 * (g / (G - 1))
        for i in range(W):
            ch1 = float(np.clip(base[i] * gs + rng.normal(0, 0.02), 0.1, 1.0))
            x_wo[i, g, 0] = ch1
            if g in TREATED and i >= exp0:
                ch1 = float(np.clip(ch1 + DELTA_X, 0.1, 1.2))
            x[i, g, 0] = ch1
            ch2 = float(np.clip(base[i] * gs * 0.95 + rng.normal(0, 0.02), 0.1, 1.0))
            x[i, g, 1] = x_wo[i, g, 1] = ch2
    lam = np.zeros((G, C))
    beta = np.zeros((G, C))
    for g in range(G):
        lam[g, 0] = rng_params.normal(4.0, 0.5)
        beta[g, 0] = rng_params.normal(0.6, 0.08)
        lam[g, 1] = rng_params.normal(3.0, 0.5)
        beta[g, 1] = rng_params.normal(0.5, 0.08)
    lam = np.clip(lam, 1.5, 8.0)
    beta = np.clip(beta, 0.3, 0.9)
    intercept = np.array([0.3 + 0.05 * i for i in range(G)])
    y_sigma = 0.08

    spend = np.round(x * SPEND_UNIT, 2)          # as written; units = spend (spend channels)
    spend_wo = np.round(x_wo * SPEND_UNIT, 2)
    # the generating model's channel scale: max over weeks and geos per channel (of the data as written)
    scale = spend.max(axis=(0, 1))
    w = ALPHA ** np.arange(L_MAX)
    kernel = np.tile((w / w.sum())[None, None, :], (G, C, 1))
    proc = MediaProcess(geos=list(GEOS), channels=list(CHANNELS), periods_per_week=1, profile=np.ones((C, 1)),
                        kernel=kernel, family="logistic", params={"lam": lam},
                        input_scale=np.tile(scale[None, :], (G, 1)), out_scale=beta * KPI_UNIT,
                        notes={"input_scale": "max weekly spend of the channel over weeks and geos",
                               "out_scale": "beta x 100,000 (revenue per week at saturation)"})
    contrib = proc.contributions(spend)
    y_model = intercept[None, :] + contrib.sum(axis=2) / KPI_UNIT + rng.normal(0, y_sigma, (W, G))
    revenue = np.round(y_model * KPI_UNIT, 2)

    dates = pd.date_range(START, periods=W, freq="7D")
    start = dates[exp0].date()
    end = start + timedelta(days=7 * EXPERIMENT_WEEKS - 1)
    window = slice(exp0, W)
    lift_rows, lift_truths = [], []
    frac_sigma = sigma_fraction(EXPERIMENT_WEEKS)
    for g in TREATED:
        u_wo = spend.copy()
        u_wo[window, g, 0] = spend_wo[window, g, 0]
        tr = lift_truth(proc, spend, u_wo, window, [g], W)
        true = tr["true_delta_y_window"]
        sigma = abs(true) * frac_sigma
        observed = true + float(rng.normal(0, sigma))
        delta_spend = float(round((spend - u_wo)[window, g, 0].sum(), 2))
        tid = f"NB-{GEOS[g]}"
        lift_rows.append({"test_id": tid, "channel": "channel_1", "geo": GEOS[g], "start_date": start.isoformat(),
                          "end_date": end.isoformat(), "delta_spend": delta_spend, "delta_y": round(observed, 2),
                          "sigma": round(sigma, 2), "scope": "window"})
        lift_truths.append({"test_id": tid, "channel": "channel_1", "geo": GEOS[g], "geos": [GEOS[g]],
                            "national": False, "start_date": start.isoformat(), "end_date": end.isoformat(),
                            "n_days": 7 * EXPERIMENT_WEEKS, "scope": "window", "delta_spend": delta_spend,
                            "delta_units": delta_spend, **tr, "true_delta_y_reported_scope": true,
                            "sigma_fraction": frac_sigma, "delta_y": round(observed, 2), "sigma": round(sigma, 2)})

    # Written as daily rows, each week's value spread evenly over its 7 days (cents to the Sunday), so
    # the weekly sums are the process's weeks exactly. (Weekly rows dated on Mondays would make the
    # pipeline's last data day the last Monday, and the tests, which end on the last Sunday, fall
    # outside the data.)
    days = pd.date_range(START, periods=7 * W, freq="D")
    date_str = days.strftime("%Y-%m-%d").to_numpy()

    def spread(weekly: np.ndarray) -> np.ndarray:
        per_day = np.round(weekly / 7.0, 2)
        out = np.repeat(per_day, 7, axis=0)
        out[6::7] = np.round(weekly - 6 * per_day, 2)
        return out

    frames = {}
    for plat, meta in PLATFORMS.items():
        c = CHANNELS.index(meta["channel"])
        s = spread(spend[:, :, c])
        frames[plat] = pd.DataFrame({
            "source_relation": meta["source_relation"], "date_day": np.repeat(date_str, G),
            "platform": meta["platform"], "account_id": meta["account_id"], "account_name": meta["account_name"],
            "campaign_id": meta["campaign_id"], "campaign_name": meta["campaign_name"],
            "clicks": np.rint(s / 1.5).reshape(-1).astype(np.int64),
            "impressions": np.rint(1000 * s / 6.0).reshape(-1).astype(np.int64),
            "spend": s.reshape(-1), "conversions": 0, "conversions_value": 0.0, "geo": np.tile(GEOS, 7 * W)})
    kpi = pd.DataFrame({"date_day": np.repeat(date_str, G), "geo": np.tile(GEOS, 7 * W),
                        "revenue": spread(revenue).reshape(-1)})

    figs = cell_figures(proc, spend, spend, slice(0, W), HORIZON_WEEKS, np.ones(C, dtype=bool))
    ctx = PlanContext(history_units=spend[W - L_MAX:], horizon_cpu=np.ones((HORIZON_WEEKS, G, C)),
                      horizon_weeks=HORIZON_WEEKS)
    pre = slice(0, exp0)
    corr = [float(np.corrcoef(spend[pre, g, 0], spend[pre, g, 1])[0, 1]) for g in range(G)]
    truth = {
        "structure": "notebook", "seed": int(seed), "generator": "mmm_pipeline.sample.offfamily (notebook)",
        "dates": {"start": dates[0].date().isoformat(), "end": (dates[-1] + pd.Timedelta(days=6)).date().isoformat(),
                  "n_weeks": W, "grain": "weekly process, written as daily rows (a week spread evenly)",
                  "burn_in_weeks": 0,
                  "horizon_start": (dates[-1] + pd.Timedelta(days=7)).date().isoformat(),
                  "horizon_weeks": HORIZON_WEEKS},
        "geos": GEOS, "population": None, "markets": {"all": GEOS},
        "channels": {ch: {"unit": "spend"} for ch in CHANNELS},
        "kpi": {"column": "revenue", "currency": "USD"},
        "process": proc.to_json(), "plan_context": ctx.to_json(),
        "adstock": {"type": "geometric", "alpha": ALPHA, "l_max": L_MAX, "normalize": True},
        "saturation": {"type": "logistic", "lam": lam.tolist(), "beta": beta.tolist(),
                       "input": "spend / max weekly spend of the channel over weeks and geos"},
        "intercept": (intercept * KPI_UNIT).tolist(), "noise_sd": y_sigma * KPI_UNIT,
        "spend_unit": SPEND_UNIT, "kpi_unit": KPI_UNIT,
        "cells": cells_json(proc, figs, {ch: "spend" for ch in CHANNELS}),
        "lift_tests": lift_truths,
        "correlation": {"pair": list(CHANNELS), "weekly_spend_corr_by_geo_pre_experiment": dict(zip(GEOS, corr)),
                        "weekly_spend_corr_pooled_pre_experiment": float(np.corrcoef(
                            spend[pre, :, 0].ravel(), spend[pre, :, 1].ravel())[0, 1])},
        "media_share": float(contrib.sum() / revenue.sum()),
        "definitions": {"process": "weekly: revenue = 100,000 x (intercept + sum_c beta logistic(lam adstock(spend)/"
                                   "scale) + N(0, 0.08)); see mmm_pipeline/sample/offfamily/notebook.py",
                        "lift": "KPI with minus without the experiment's extra spend over the 8 weeks",
                        "figures": "as mmm_pipeline/sample/offfamily/figures.py (weekly periods)"},
    }
    pipeline_yaml = f"kpi_column: revenue\nmarkets:\n  all: [{', '.join(GEOS)}]\n"
    return {"frames": frames, "kpi": kpi, "controls": {}, "geos": None, "lift": pd.DataFrame(lift_rows),
            "truth": truth, "channels_csv": CHANNELS_CSV, "pipeline_yaml": pipeline_yaml, "platforms": PLATFORMS,
            "_internal": {"proc": proc, "units": spend, "spend": spend, "x_wo": spend_wo, "train": slice(0, W)}}
