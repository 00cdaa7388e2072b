"""Benchmark: response curves, ROAS and the default-scenario allocation on full-profile models.

    .venv/bin/python bench/bench_allocation.py [--warehouse W.duckdb] [--model market:variant:path ...]
                                               [--horizon 8]

Inputs: a warehouse holding ``marts.cost_per_unit_latest``,
``marts.cost_per_unit_forecast_latest`` and ``staging.media_weekly_latest``
(default: MMM_WAREHOUSE, else data/warehouse.duckdb, i.e. what `make run`
wrote), and the fitted full-profile models its ``marts.model_runs_latest``
points at (or ``--model market:variant:path``). Skips with a message when
they are absent.

Per market, in a fresh spawned process (so the peak RSS is that market's own,
including ~0.5 GB of imported pymc / pytensor): load both models, then time

* curves: ``response_curves`` for each variant (all geos x channels, 41 points);
* roas: ``channel_roas`` for each variant, with the contribution from
  pymc-marketing's incrementality module (default) and from the posterior
  ``channel_contribution`` (identical numbers, no evaluator compile);
* allocation: ``default_scenario`` (budget = current spend of every cell over
  the horizon, +/-50 % bounds) allocated with the calibrated model: build the
  pymc-marketing optimizer (compile), SLSQP, and three response evaluations.

With ``--baseline-all-draws`` the allocation is also run on every posterior
draw (the baseline, ``allocate(..., max_draws=None)``), and both optimal plans are
then evaluated as fixed plans on every draw: it prints the time ratio and how
much expected response the thinned optimizer's plan gives up.

Targets: allocation < 60 s per market, curves < 30 s.
"""

from __future__ import annotations

import argparse
import os
import multiprocessing as mp
import resource
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The warehouse of `make run` (MMM_WAREHOUSE); the models are its latest fits.
DEFAULT_WAREHOUSE = os.environ.get("MMM_WAREHOUSE", str(Path(__file__).resolve().parents[1] / "data" / "warehouse.duckdb"))


def models_in_warehouse(warehouse: str) -> dict[tuple[str, str], str]:
    import duckdb

    con = duckdb.connect(warehouse, read_only=True)
    try:
        rows = con.execute("SELECT market, variant, artifact_uri FROM marts.model_runs_latest").fetchall()
    finally:
        con.close()
    return {(m, v): uri for m, v, uri in rows}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _on_all_draws(A, mmm, scenario, plan_df, forecast, curves) -> float:
    """Expected response (sum of cell means) of a plan, evaluated as a fixed plan on every draw."""
    plan = {(g, c): s for g, c, s in zip(plan_df["geo"], plan_df["channel"], plan_df["optimal_spend"])}
    fixed = scenario.model_copy(update={"fixed_allocation": plan})
    out = A.allocate(mmm, fixed, forecast, curves, max_weekly_spend=curves, max_draws=None)
    return float(out["expected_response_mean"].sum())


def run_market(market: str, paths: dict[str, str], warehouse: str, horizon: int,
               baseline_all_draws: bool = False, max_draws: int | None = None) -> dict:
    warnings.simplefilter("ignore")
    import duckdb

    from mmm_pipeline.decisions import allocation as A

    max_draws = max_draws or A.OPTIMIZER_MAX_DRAWS
    from mmm_pipeline.decisions import curves as C
    from mmm_pipeline.model import load_model

    out: dict = {"market": market}
    con = duckdb.connect(warehouse, read_only=True)
    try:
        cpu = con.sql("SELECT * FROM marts.cost_per_unit_latest").df()
        forecast = con.sql("SELECT * FROM marts.cost_per_unit_forecast_latest").df()
        media = con.sql("SELECT * FROM staging.media_weekly_latest").df()
    finally:
        con.close()

    t = time.perf_counter()
    models = {v: load_model(p) for v, p in paths.items()}
    out["load_s"] = time.perf_counter() - t

    curves = {}
    t = time.perf_counter()
    for v, mmm in models.items():
        curves[v] = C.response_curves(mmm, cpu)
    out["curves_s"] = time.perf_counter() - t
    out["curve_rows"] = sum(len(c) for c in curves.values())

    for source in ("incrementality", "posterior"):
        t = time.perf_counter()
        for v, mmm in models.items():
            roas = C.channel_roas(mmm, media, cpu, contribution_source=source)
        out[f"roas_{source}_s"] = time.perf_counter() - t
    out["roas_rows"] = len(roas)

    variant = "calibrated" if "calibrated" in models else next(iter(models))
    sc = A.default_scenario(market, curves[variant], horizon_weeks=horizon, variant=variant)
    t = time.perf_counter()
    alloc = A.allocate(models[variant], sc, forecast, curves[variant], max_weekly_spend=curves[variant],
                       max_draws=max_draws)
    out["allocation_s"] = time.perf_counter() - t
    out["allocation_variant"] = variant
    out["budget"] = sc.total_budget
    out["allocated"] = float(alloc["optimal_spend"].sum())
    out["gain_pct"] = 100 * (alloc["expected_response_mean"].sum() / alloc["current_response_mean"].sum() - 1)
    out["extrapolated_cells"] = int(alloc["extrapolated"].sum())
    out["cells"] = len(alloc)
    if baseline_all_draws:
        t = time.perf_counter()
        base = A.allocate(models[variant], sc, forecast, curves[variant], max_weekly_spend=curves[variant],
                          max_draws=None)
        out["baseline_allocation_s"] = time.perf_counter() - t
        out["max_draws"] = max_draws
        post = models[variant].idata.posterior
        out["draws"] = int(post.sizes["chain"] * post.sizes["draw"])
        out["baseline_response"] = _on_all_draws(A, models[variant], sc, base, forecast, curves[variant])
        out["thinned_response"] = _on_all_draws(A, models[variant], sc, alloc, forecast, curves[variant])
        out["plan_shift"] = float((alloc["optimal_spend"] - base["optimal_spend"]).abs().sum() / sc.total_budget)
    out["peak_rss_mb"] = _peak_mb()
    return out


def _worker(args, queue):
    try:
        queue.put(run_market(*args))
    except Exception as exc:  # report, do not hang the parent
        queue.put({"market": args[0], "error": f"{type(exc).__name__}: {exc}"})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--warehouse", default=DEFAULT_WAREHOUSE)
    ap.add_argument("--model", action="append", default=[], metavar="MARKET:VARIANT:PATH")
    ap.add_argument("--horizon", type=int, default=8)
    ap.add_argument("--max-draws", type=int, default=None,
                    help="draws the optimizer uses (default: the pipeline's OPTIMIZER_MAX_DRAWS)")
    ap.add_argument("--baseline-all-draws", action="store_true",
                    help="also optimize on every posterior draw and compare (time ratio, response given up)")
    args = ap.parse_args(argv)

    if not Path(args.warehouse).is_file():
        print(f"SKIP: warehouse {args.warehouse} not found (run `make run` first, or pass --warehouse)")
        return 0
    models = models_in_warehouse(args.warehouse)
    if args.model:
        models = {}
        for spec in args.model:
            market, variant, path = spec.split(":", 2)
            models[(market, variant)] = path
    absent = [p for p in models.values() if not Path(p).is_file()]
    if absent:
        print(f"SKIP: model file(s) not found: {absent} (pass --model market:variant:path)")
        return 0

    by_market: dict[str, dict[str, str]] = {}
    for (market, variant), path in models.items():
        by_market.setdefault(market, {})[variant] = path

    ctx = mp.get_context("spawn")
    results = []
    for market, paths in by_market.items():
        q = ctx.Queue()
        p = ctx.Process(target=_worker, args=((market, paths, args.warehouse, args.horizon,
                                                        args.baseline_all_draws, args.max_draws), q))
        p.start()
        res = q.get()
        p.join()
        results.append(res)
        if "error" in res:
            print(f"{market}: FAILED {res['error']}")
            continue
        n = len(paths)
        print(f"{market}: load {res['load_s']:.1f}s ({n} models) | curves {res['curves_s']:.2f}s "
              f"({res['curve_rows']} rows, {n} models) | roas incrementality {res['roas_incrementality_s']:.1f}s, "
              f"posterior {res['roas_posterior_s']:.2f}s ({n} models) | allocation ({res['allocation_variant']}, "
              f"{res['cells']} cells, {args.horizon} weeks) {res['allocation_s']:.1f}s: budget "
              f"{res['budget']:,.0f} -> allocated {res['allocated']:,.0f}, response {res['gain_pct']:+.1f}% vs "
              f"current, {res['extrapolated_cells']} extrapolated | peak RSS {res['peak_rss_mb']:.0f} MB")
        if "baseline_allocation_s" in res:
            loss = 100 * (1 - res["thinned_response"] / res["baseline_response"])
            print(f"{market}: baseline on all {res['draws']:,} draws {res['baseline_allocation_s']:.1f}s; thinned "
                  f"(<= {res['max_draws']:,} draws) {res['allocation_s']:.1f}s: ratio {res['allocation_s'] / res['baseline_allocation_s']:.2f}; "
                  f"both plans on all draws: expected response {res['baseline_response']:,.0f} (baseline) vs "
                  f"{res['thinned_response']:,.0f} (thinned), {loss:+.3f}% given up; plans differ by "
                  f"{100 * res['plan_shift']:.1f}% of the budget (sum of |difference|)")
    ok = [r for r in results if "error" not in r]
    if ok:
        worst_alloc = max(r["allocation_s"] for r in ok)
        worst_curves = max(r["curves_s"] + r["roas_incrementality_s"] for r in ok)
        print(f"targets: allocation < 60 s per market: {'met' if worst_alloc < 60 else 'MISSED'} "
              f"(worst {worst_alloc:.1f}s); curves (+ROAS) < 30 s per market: "
              f"{'met' if worst_curves < 30 else 'MISSED'} (worst {worst_curves:.1f}s)")
    return 1 if len(ok) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
