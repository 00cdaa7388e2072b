"""The in-family sample generator (mmm_pipeline.sample) seen through the same truth engine.

`infamily_truth(folder, truth)` builds the weekly :class:`MediaProcess` of a folder written by
``generate_sample`` (normalised geometric adstock, l_max 8; logistic saturation on units over the
channel's unit_scale; beta in KPI per week) and the same figures as the off-family generators,
from the folder's ad reports (its channels.csv mapping) and its truth.json parameters. The last,
incomplete week is not a training week (the pipeline drops it). The in-family generator has no
future cost process, so the planning horizon's true cost per unit is each cell's spend-weighted
rate of the last 8 complete weeks (what the pipeline's cost forecast uses too).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_pipeline.sample.offfamily.figures import cell_figures, cells_json
from mmm_pipeline.sample.offfamily.process import MediaProcess, PlanContext

HORIZON_WEEKS = 8
TRAILING_COST_WEEKS = 8


def _platform_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def weekly_media(folder: Path) -> tuple[pd.DatetimeIndex, list[str], list[str], np.ndarray, np.ndarray, dict]:
    """(week_starts, geos, channels, units (W, G, C), spend (W, G, C), unit per channel) over the
    folder's complete weeks, rows mapped to channels as channels.csv says (first matching line)."""
    folder = Path(folder)
    cat = pd.read_csv(folder / "channels.csv", dtype=str, keep_default_na=False)
    frames = []
    for p in sorted((folder / "ad_reporting").iterdir()):
        if p.suffix == ".csv":
            frames.append(pd.read_csv(p, dtype={"campaign_name": str, "platform": str}))
        elif p.suffix == ".parquet":
            frames.append(pd.read_parquet(p))
    ads = pd.concat(frames, ignore_index=True)
    ads["date_day"] = pd.to_datetime(ads["date_day"])
    ads["_plat"] = ads["platform"].map(_platform_key)
    pairs = ads[["_plat", "campaign_name"]].drop_duplicates()
    mapping = {}
    for plat, camp in pairs.itertuples(index=False):
        for r in cat.to_dict("records"):
            if _platform_key(r["platform"]) == plat and re.search(r["campaign_pattern"] or "", str(camp), re.I):
                mapping[(plat, camp)] = (r["channel"], r["unit"])
                break
    ch_unit = {}
    for ch, unit in mapping.values():
        ch_unit[ch] = unit
    ads["channel"] = [mapping[(p, c)][0] for p, c in zip(ads["_plat"], ads["campaign_name"])]
    ads["units"] = [row[ch_unit[ch]] for ch, row in zip(ads["channel"], ads[["impressions", "clicks", "spend"]]
                                                        .to_dict("records"))]
    kpi_days = pd.concat([pd.read_csv(p, usecols=["date_day"]) for p in sorted((folder / "kpi").glob("*.csv"))])
    first = pd.to_datetime(kpi_days["date_day"]).min()
    last = pd.to_datetime(kpi_days["date_day"]).max()
    n_complete = ((last - first).days + 1) // 7
    weeks = pd.date_range(first, periods=n_complete, freq="7D")
    ads["week"] = (ads["date_day"] - first).dt.days // 7
    ads = ads[ads["week"] < n_complete]
    geos = sorted(ads["geo"].unique())
    channels = list(dict.fromkeys(cat["channel"]))
    agg = ads.groupby(["week", "geo", "channel"])[["units", "spend"]].sum()
    idx = pd.MultiIndex.from_product([range(n_complete), geos, channels], names=["week", "geo", "channel"])
    agg = agg.reindex(idx, fill_value=0.0)
    shape = (n_complete, len(geos), len(channels))
    return weeks, geos, channels, agg["units"].to_numpy().reshape(shape), agg["spend"].to_numpy().reshape(shape), ch_unit


def infamily_truth(folder: Path, truth: dict, horizon_weeks: int = HORIZON_WEEKS) -> dict:
    """The issue-27 truth of an in-family folder: process, plan context, cells, lift tests."""
    weeks, geos, channels, units, spend, ch_unit = weekly_media(folder)
    G, C = len(geos), len(channels)
    l_max = int(truth["adstock"]["l_max"])
    alpha = np.array([[truth["alpha"][g][c] for c in channels] for g in geos])
    w = np.power(alpha[..., None], np.arange(l_max)[None, None, :])
    kernel = w / w.sum(axis=-1, keepdims=True)
    lam = np.array([[truth["lam"][g][c] for c in channels] for g in geos])
    beta = np.array([[truth["beta"][g][c] for c in channels] for g in geos])
    scale = np.array([truth["unit_scale"][c] for c in channels])
    proc = MediaProcess(geos=geos, channels=channels, periods_per_week=1, profile=np.ones((C, 1)), kernel=kernel,
                        family="logistic", params={"lam": lam}, input_scale=np.tile(scale[None, :], (G, 1)),
                        out_scale=beta, notes={"source": "in-family generator truth.json"})
    spend_ch = np.array([ch_unit[c] == "spend" for c in channels])
    figs = cell_figures(proc, units, spend, slice(0, len(weeks)), horizon_weeks, spend_ch)
    recent = slice(len(weeks) - TRAILING_COST_WEEKS, len(weeks))
    u_r, s_r = units[recent].sum(axis=0), spend[recent].sum(axis=0)
    rate = np.where(u_r > 0, s_r / np.maximum(u_r, 1e-300), figs["cost_per_unit_used"])
    rate = np.where(spend_ch[None, :], 1.0, rate)
    ctx = PlanContext(history_units=units[-l_max:], horizon_cpu=np.repeat(rate[None], horizon_weeks, axis=0),
                      horizon_weeks=horizon_weeks)
    tests = []
    for t in truth.get("lift_tests", []):
        tests.append({"test_id": t["test_id"], "channel": t["channel"], "geo": t["geo"], "geos": t["geos"],
                      "national": t["geo"] == "", "scope": t["scope"],
                      "true_delta_y_window": t["true_delta_y_window"],
                      "true_delta_y_total": t["true_delta_y_total"],
                      "true_delta_y_reported_scope": t["true_delta_y_reported_scope"],
                      "true_delta_y_window_by_geo": t.get("true_delta_y_window_by_geo", {}),
                      "true_delta_y_total_by_geo": t.get("true_delta_y_total_by_geo", {}),
                      "delta_spend": t["delta_spend"], "delta_y": t["delta_y"], "sigma": t["sigma"]})
    return {"structure": truth.get("structure_name", "in-family"), "seed": truth["seed"],
            "dates": {"start": weeks[0].date().isoformat(), "n_weeks": len(weeks), "grain": "weekly",
                      "horizon_start": (weeks[-1] + pd.Timedelta(days=7)).date().isoformat(),
                      "horizon_weeks": horizon_weeks},
            "geos": geos, "markets": truth["markets"], "channels": {c: {"unit": ch_unit[c]} for c in channels},
            "process": proc.to_json(), "plan_context": ctx.to_json(),
            "cells": cells_json(proc, figs, ch_unit), "lift_tests": tests,
            "horizon_cost": "spend-weighted rate of the last 8 complete weeks per cell (the generator has no "
                            "future cost process)"}
