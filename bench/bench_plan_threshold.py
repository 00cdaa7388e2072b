"""How the plan's hold threshold trades gain against losses (issue 31 item 2), scored under the truth.

    .venv/bin/python bench/bench_plan_threshold.py DATASET_DIR [DATASET_DIR ...]
                                                  [--thresholds 0,0.8,0.9,0.95] [--utilities mean,cvar:0.9]
                                                  [--out-csv FILE]

A DATASET_DIR is one folder of `bench/bench_offfamily.py --keep --workdir DIR` (DIR/<structure>_s<k>: its
`input/`, `input.truth.json` and `work/` with the warehouse and the saved models). For every market and
variant the default scenario's plan is made again with each `plan_min_probability_of_gain` threshold
(`decisions.allocation.allocate`, the product's code: the optimizer's plan, then every move the posterior
is not this sure pays is held) and scored under the generator's true response as the off-family benchmark
scores the product's plan: the true gain (% of the current mix's true media response), the best plan's for
the same budget and bounds, the share captured, whether the plan truly loses, the predicted gain and
whether its 94% interval covers the true gain, the cells held and the decision (move / keep_current_mix).
Printed pooled per threshold; rows appended to --out-csv. About a minute per dataset and threshold on 2
cores (a weibull_lag dataset, 4 thresholds: 128 s).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def plans_at_thresholds(ds: Path, thresholds: list[float], utilities: list[str] = ("mean",)) -> list[dict]:
    """One row per (market, variant, utility, threshold) of a kept dataset; a utility is NAME[:CONFIDENCE]."""
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    from mmm_pipeline import model as model_lib
    from mmm_pipeline import warehouse
    from mmm_pipeline.decisions import allocation
    from mmm_pipeline.sample.offfamily import best_plan, cell_index, true_response
    from mmm_pipeline.settings import load_pipeline_config

    truth = json.loads((ds / "input.truth.json").read_text())
    config = load_pipeline_config(ds / "input")[0]
    with warehouse.connect(ds / "work" / "warehouse.duckdb") as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest").df()
        forecast = con.execute("SELECT * FROM marts.cost_per_unit_forecast_latest").df()
        curves_now = con.execute("SELECT * FROM marts.response_curves_latest").df()
    geos, channels = cell_index(truth)
    rows = []
    for r in runs.to_dict("records"):
        market, variant = r["market"], r["variant"]
        mmm = model_lib.load_model(r["artifact_uri"])
        cur = curves_now[curves_now["market"] == market].drop_duplicates(["geo", "channel"])
        fc = forecast[forecast["geo"].isin(cur["geo"].unique())]
        for u, t in ((u, t) for u in utilities for t in thresholds):
            name, _, level = u.partition(":")
            scenario = allocation.default_scenario(market, cur, horizon_weeks=config.planning_horizon_weeks,
                                                   variant=variant, min_probability_of_gain=t, utility=name,
                                                   **({"utility_confidence": float(level)} if level else {}))
            a, summary = allocation.allocate(mmm, scenario, fc, cur, max_weekly_spend=cur, return_summary=True)
            opt, now, lo, hi = (np.zeros((len(geos), len(channels))) for _ in range(4))
            for g, c, cw, ow in a[["geo", "channel", "current_weekly_spend", "optimal_weekly_spend"]].itertuples(
                    index=False):
                i, j = geos.index(g), channels.index(c)
                low, high = scenario.bound_for(g, c)
                opt[i, j], now[i, j], lo[i, j], hi[i, j] = ow, cw, low * cw, high * cw
            r_opt, r_cur = true_response(truth, opt).sum(), true_response(truth, now).sum()
            _, r_best = best_plan(truth, float(now.sum()), lo, hi, starts=[now, opt])
            true_gain, best_gain = r_opt - r_cur, r_best - r_cur
            pred = float(summary["current_response_mean"])
            rows.append({"dataset": ds.name, "market": market, "variant": variant, "gated": bool(r["gated"]),
                         "utility": u, "threshold": t, "decision": summary.get("decision"),
                         "held_cells": int(summary.get("held_cells") or 0), "cells": len(a),
                         "true_gain_pct": 100 * true_gain / r_cur, "best_gain_pct": 100 * best_gain / r_cur,
                         "captured": true_gain / best_gain if best_gain > 0 else float("nan"),
                         "pred_gain_pct": 100 * float(summary["gain_mean"]) / pred,
                         # a kept current mix gains exactly 0 on both sides: rounding must not call it missed
                         "gain_covered": bool(summary["gain_hdi_low"] - 1e-9 * abs(r_cur) <= true_gain
                                              <= summary["gain_hdi_high"] + 1e-9 * abs(r_cur)),
                         "probability_of_gain": summary.get("probability_of_gain")})
    return rows


def table(df) -> str:
    df = df.assign(utility=df["utility"].fillna("mean") if "utility" in df else "mean")
    out = ["| utility | threshold | plans | true gain % (mean) | plans that truly lose | worst true gain % | share captured "
           "(pooled) | predicted gain % | gain HDI covers | cells held | keep current mix |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for (u, t), g in df.groupby(["utility", "threshold"]):
        pooled = g["true_gain_pct"].sum() / g["best_gain_pct"].sum() if g["best_gain_pct"].sum() > 0 else float("nan")
        out.append(f"| {u} | {t:.2f} | {len(g)} | {g['true_gain_pct'].mean():+.2f} | {(g['true_gain_pct'] < -1e-6).mean():.2f} | "
                   f"{g['true_gain_pct'].min():+.2f} | {pooled:.2f} | {g['pred_gain_pct'].mean():+.2f} | "
                   f"{g['gain_covered'].mean():.2f} | {g['held_cells'].sum() / g['cells'].sum():.2f} | "
                   f"{(g['decision'] == 'keep_current_mix').mean():.2f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    import pandas as pd

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("datasets", nargs="+")
    ap.add_argument("--thresholds", default="0,0.8,0.9,0.95")
    ap.add_argument("--utilities", default="mean", help="NAME[:CONFIDENCE],... of allocation.Scenario.utility")
    ap.add_argument("--out-csv", default=None)
    a = ap.parse_args(argv)
    thresholds = [float(x) for x in a.thresholds.split(",")]
    rows = []
    for d in a.datasets:
        new = plans_at_thresholds(Path(d), thresholds, a.utilities.split(","))
        rows += new
        for r in new:
            print(f"{r['dataset']} {r['market']} {r['variant']:12} {r['utility']} t={r['threshold']:.2f}: {r['decision']}, "
                  f"held {r['held_cells']}/{r['cells']}, true {r['true_gain_pct']:+.2f}% (best "
                  f"{r['best_gain_pct']:+.2f}%), predicted {r['pred_gain_pct']:+.2f}%, covered {r['gain_covered']}",
                  flush=True)
    df = pd.DataFrame(rows)
    if a.out_csv:
        out = Path(a.out_csv)
        df = pd.concat([pd.read_csv(out), df], ignore_index=True) if out.exists() else df
        df.to_csv(out, index=False)
    print(table(df))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
