"""A national lift test shared by markets: is each market's share of it right, split by spend or by
the uncalibrated models' predicted lifts (issue 28 item 5)?

    .venv/bin/python bench/bench_national_split.py [--structures sample,spread] [--seeds 10]
                                                   [--workdir DIR] [--out-csv bench/national_split.csv]

Per dataset (the off-family benchmark's `prepare`: the in-family structures with two markets and a
national test, product defaults), the pipeline's `ingest_job` stages it (`bench_fit_variants.stage`),
each market gets one uncalibrated full-profile fit (`model.fit_model` with the product's market inputs
and scales, no ladder) in a process of its own, and the fit's predicted lift of each national test
over the market's converted rows (`national_split.predicted_lift_draws`) is kept. With every market's
draws, `national_split.lift_share_split` gives each market's share (mean, sd); the truth is the
market's share of the generator's true lift in the test's scope. Printed per method, over all
(national test x seed): the mean z = (true - estimate) / sd and the share with |z| > 2, where the
spend split's sd is the conversion's s (1 - s) tau (`lift_tests.national_split_log_sd`). Only one
market's z per test is counted (two markets' shares are complements: the same |z|). Rows are
appended to --out-csv, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COLUMNS = ["structure", "seed", "test_id", "channel", "market", "true_share", "spend_share", "spend_sd",
           "lift_share_mean", "lift_share_sd", "z_spend", "z_lift", "max_rhat", "fit_seconds"]


def fit_market(staged: Path, folder: Path) -> None:
    """One uncalibrated full-profile fit of a staged market; writes `<market>.lifts.npz` beside it:
    each national test's predicted lift draws over the market's converted rows, and its spend share."""
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    from mmm_pipeline import model as M
    from mmm_pipeline import warehouse
    from mmm_pipeline.model import national_split
    from mmm_pipeline.model.lift_tests import convert_lift_tests

    d = pickle.loads(staged.read_bytes())
    inputs, scales = d["inputs"], d["scales"]
    with warehouse.connect(staged.parent / "warehouse.duckdb") as con:
        tests = con.execute("SELECT * FROM raw.lift_tests").df()
        daily = con.execute("SELECT date_day, geo, channel, unit, clicks, impressions, spend "
                            "FROM raw.ad_reporting_current").df()
    lift, _ = convert_lift_tests(tests, daily, inputs.geos, market=inputs.market,
                                 **inputs.pipeline.lift_tests.conversion_kwargs())
    spanning = national_split.spanning_tests(lift)
    t0 = time.perf_counter()
    res = M.fit_model(inputs.media, inputs.kpi, inputs.cpu, inputs.config, geos=inputs.geos,
                      controls=inputs.controls if inputs.config.control_columns else None, scales=scales)
    draws = national_split.predicted_lift_draws(res.mmm, lift[lift["test_id"].isin(spanning)])
    shares = lift.drop_duplicates("test_id").set_index("test_id")["market_share"]
    np.savez(staged.with_suffix(".lifts.npz"), test_ids=np.array(list(draws), dtype=str),
             spend_shares=np.array([shares[t] for t in draws], float),
             max_rhat=float(res.diagnostics["max_rhat"]), fit_seconds=time.perf_counter() - t0,
             **{f"d{k}": v for k, v in enumerate(draws.values())})


def score(structure: str, seed: int, staged_dir: Path, truth: dict, tau: float) -> list[dict]:
    """One row per (national test, market) of a dataset whose markets are all fitted."""
    import numpy as np

    from mmm_pipeline.model import national_split

    per_market = {}
    for f in sorted(staged_dir.glob("*.lifts.npz")):
        with np.load(f) as z:
            per_market[f.name.split(".")[0]] = {
                "draws": {str(t): z[f"d{k}"] for k, t in enumerate(z["test_ids"])},
                "shares": dict(zip(map(str, z["test_ids"]), z["spend_shares"].tolist())),
                "rhat": float(z["max_rhat"]), "seconds": float(z["fit_seconds"])}
    markets = truth["markets"]
    rows = []
    for k, t in enumerate(x for x in truth["lift_tests"] if x.get("national")):
        tid = t["test_id"]
        if not all(tid in per_market.get(m, {}).get("draws", {}) for m in markets):
            continue
        by_geo = t["true_delta_y_total_by_geo" if t["scope"] == "total" else "true_delta_y_window_by_geo"]
        total = sum(by_geo.values())
        test = {"test_id": tid, "channel": t["channel"], "scope": t["scope"], "delta_y": t["delta_y"],
                "sigma": t["sigma"]}
        spend = {m: per_market[m]["shares"][tid] for m in markets}
        split = national_split.lift_share_split(test, spend, {m: per_market[m]["draws"][tid] for m in markets},
                                                seed=k).set_index("market")
        for m in markets:
            true = sum(by_geo[g] for g in markets[m]) / total
            s = spend[m]
            spend_sd = s * (1 - s) * tau
            mean, sd = split.loc[m, "lift_share_mean"], split.loc[m, "lift_share_sd"]
            rows.append({"structure": structure, "seed": seed, "test_id": tid, "channel": t["channel"], "market": m,
                         "true_share": true, "spend_share": s, "spend_sd": spend_sd, "lift_share_mean": mean,
                         "lift_share_sd": sd, "z_spend": (true - s) / spend_sd if spend_sd > 0 else float("nan"),
                         "z_lift": (true - mean) / sd if sd > 0 else float("nan"),
                         "max_rhat": per_market[m]["rhat"], "fit_seconds": per_market[m]["seconds"]})
    return rows


def table(df) -> str:
    """Per method: tests x seeds, mean z, share |z| > 2, mean |share error| (one market per test)."""
    first = df.sort_values("market").drop_duplicates(["structure", "seed", "test_id"])
    out = ["| split | tests x seeds | mean z | share with abs(z) > 2 | mean abs share error | sd used (median) |",
           "|---|---:|---:|---:|---:|---:|"]
    for label, z, est, sd in (("spend share (tau 0.5)", "z_spend", "spend_share", "spend_sd"),
                              ("predicted lift", "z_lift", "lift_share_mean", "lift_share_sd")):
        out.append(f"| {label} | {len(first)} | {first[z].mean():+.2f} | {(first[z].abs() > 2).mean():.2f} | "
                   f"{(first[est] - first['true_share']).abs().mean():.3f} | {first[sd].median():.3f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", default="sample,spread")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--workdir", default="/tmp/bench_national_split")
    ap.add_argument("--out-csv", default=str(ROOT / "bench" / "national_split.csv"))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # staged.pkl, input folder
    a = ap.parse_args(argv)
    if a.one:  # a fit in a process of its own (memory, and a fresh numba / pytensor state per fit)
        fit_market(Path(a.one[0]), Path(a.one[1]))
        return 0
    import pandas as pd

    from bench.bench_offfamily import prepare
    from mmm_pipeline.settings import load_pipeline_config

    out = Path(a.out_csv)
    done = pd.read_csv(out) if out.exists() else pd.DataFrame(columns=COLUMNS)
    root = Path(a.workdir)
    for seed in range(1, a.seeds + 1):  # seed-major: a partial run covers every structure
        for structure in a.structures.split(","):
            if ((done["structure"] == structure) & (done["seed"] == seed)).any():
                continue
            ds = root / f"{structure}_s{seed}"
            folder, truth_file = ds / "input", ds / "input.truth.json"
            if not truth_file.exists():
                ds.mkdir(parents=True, exist_ok=True)
                prepare(structure, seed, folder)
            staged = ds / "staged"
            if not staged.exists():
                subprocess.run([sys.executable, str(ROOT / "bench" / "bench_fit_variants.py"), "--variants", "{}",
                                "--stage", str(folder), str(staged)], check=True, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for pk in sorted(staged.glob("*.pkl")):
                if pk.with_suffix(".lifts.npz").exists():
                    continue
                r = subprocess.run([sys.executable, __file__, "--one", str(pk), str(folder)], cwd=ROOT,
                                   capture_output=True, text=True)
                if r.returncode:
                    print(f"{structure} s{seed} {pk.stem}: failed\n{r.stderr[-2000:]}", flush=True)
            tau = load_pipeline_config(folder)[0].lift_tests.national_split_log_sd
            rows = score(structure, seed, staged, json.loads(truth_file.read_text()), tau)
            if not rows:
                continue
            done = pd.concat([done, pd.DataFrame(rows)[COLUMNS]], ignore_index=True)
            done.to_csv(out, index=False)
            for r in rows:
                print(f"{structure} s{seed} {r['test_id']} {r['market']}: true {r['true_share']:.3f}, spend "
                      f"{r['spend_share']:.3f} (z {r['z_spend']:+.2f}), predicted {r['lift_share_mean']:.3f} +/- "
                      f"{r['lift_share_sd']:.3f} (z {r['z_lift']:+.2f}), R-hat {r['max_rhat']:.3f}", flush=True)
    if len(done):
        print(table(done))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
