"""Benchmark: the pipeline's MMM spec vs the centered hierarchies of the geo-lift notebook.

    .venv/bin/python bench/bench_model.py [--market west] [--input data/sample]
                                          [--chains 4 --tune 1000 --draws 1000]
                                          [--variants a,b] [--recovery]

Both variants fit the *calibrated* model (lift tests converted with
mmm_pipeline.model.lift_tests) of one market of the sample (default `west`: US-CA,
US-TX, US-WA x 4 channels x 104 complete weeks) with nutpie, same seed, same
data, same intercept / seasonality / likelihood priors; only the media priors
(and, for the `*-diag` variants, the mass-matrix adaptation) differ:

  a       the pipeline spec (mmm_pipeline.model, profile `full`): non-centered
          log-normal (lam, beta) and logit-normal (alpha) geo hierarchies,
          nutpie low-rank mass matrix
  b       the seed notebook's centered hierarchies, same sampler settings as a:
          lam   ~ Gamma(mu=Gamma(4, 1), sigma=HalfNormal(2))
          beta  ~ TruncatedNormal(mu=HalfNormal(1), sigma=HalfNormal(0.3), 0.01, 2)
          alpha ~ Beta(mu=Beta(2, 2), nu=HalfNormal(10))
          (hyper-parameters per channel, geo x channel values)
  a-diag  a with nutpie's default diagonal mass matrix
  a-uncal a without the lift tests (for --recovery)
  b-diag  b with nutpie's default diagonal mass matrix

Each fit runs in a fresh (spawned) process so its peak RSS is its own (it
includes ~0.5 GB of imported pymc / pytensor / numba). Printed per fit: wall
seconds of the whole fit (data prep + build + compile + sample +
diagnostics), sampling seconds (nutpie's, excluding compilation),
divergences, max R-hat and min bulk ESS (over the free parameters, as the
pipeline's gate), ESS/s (min bulk ESS / sampling seconds, and / wall
seconds), mean leapfrog steps per draw (post-warmup), microseconds per
gradient evaluation (sum of the chains' sampling time / all leapfrog steps
incl. warmup; chains share the machine's cores), peak RSS; then the ESS/s
ratio a / b. `--recovery` also fits `a-uncal` (variant a without the lift
tests) and prints, against truth.json: parameter recovery (share of true
values inside the 94% HDI, mean absolute relative error, relative HDI
width), each channel's share of the market's KPI, and the model-implied
weekly lift at every lift-test point with and without calibration.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def weekly_tables(input_dir: Path) -> dict:
    """The staging / mart frames the pipeline would build, via the project's own code."""
    from mmm_pipeline.ingestion import cost_per_unit as cpu_lib
    from mmm_pipeline import warehouse
    from mmm_pipeline.ingestion import ingest, staging
    from mmm_pipeline.settings import load_pipeline_config

    config, _ = load_pipeline_config(input_dir)
    with tempfile.TemporaryDirectory() as tmp:
        with warehouse.connect(Path(tmp) / "bench.duckdb") as con:
            ingest.load_channels(con, input_dir)
            currency = ingest.reporting_currency(con, config.reporting_currency)
            ingest.load_ad_reporting(con, input_dir, currency)
            ingest.load_kpi(con, input_dir, config.kpi_column)
            ingest.load_lift_tests(con, input_dir)
            ingest.load_controls(con, input_dir)
            cal = staging.build_calendar(con, config.geo_weights)
            media = staging.build_media_weekly(con, cal, config.geo_weights)
            kpi = staging.build_kpi_weekly(con, cal)
            controls = staging.controls_wide(staging.build_controls_weekly(con, cal, config.controls))
            cpu = cpu_lib.compute_cost_per_unit(media)
            lift = con.execute("SELECT * FROM raw.lift_tests").df()
            daily = con.execute(
                "SELECT date_day, geo, channel, unit, clicks, impressions, spend "
                "FROM raw.ad_reporting_current").df()
    return {"media": media, "kpi": kpi, "cpu": cpu, "lift": lift, "daily": daily, "controls": controls,
            "markets": config.markets or {}}


def centered_notebook_priors(base: dict) -> dict:
    """Variant b: the seed notebook's centered Gamma / TruncatedNormal / Beta hierarchies."""
    from pymc_extras.prior import Prior

    gc = ("geo", "channel")
    out = dict(base)
    out["saturation_lam"] = Prior(
        "Gamma", mu=Prior("Gamma", alpha=4, beta=1, dims="channel"),
        sigma=Prior("HalfNormal", sigma=2, dims="channel"), dims=gc)
    out["saturation_beta"] = Prior(
        "TruncatedNormal", mu=Prior("HalfNormal", sigma=1, dims="channel"),
        sigma=Prior("HalfNormal", sigma=0.3, dims="channel"), lower=0.01, upper=2, dims=gc)
    out["adstock_alpha"] = Prior(
        "Beta", mu=Prior("Beta", alpha=2, beta=2, dims="channel"),
        nu=Prior("HalfNormal", sigma=10, dims="channel"), dims=gc)
    return out


def _fit_one(args: dict) -> dict:
    """Runs in a spawned process: one calibrated fit, its figures (and recovery table)."""
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.filterwarnings("ignore")
    from mmm_pipeline import model as M
    from mmm_pipeline.model.lift_tests import convert_lift_tests

    t = weekly_tables(Path(args["input"]))
    geos = t["markets"][args["market"]] if args["market"] != "all" else sorted(t["media"]["geo"].unique())
    lift, _ = convert_lift_tests(t["lift"], t["daily"], geos, market=args["market"])
    variant = args["variant"]
    cfg = M.load_model_config("full", {"sampler": {
        "chains": args["chains"], "tune": args["tune"], "draws": args["draws"],
        "adaptation": "diag" if "-diag" in variant else "low_rank"}})
    model_config = None
    if variant.startswith("b"):
        model_config = centered_notebook_priors(M.model_priors(cfg, ("geo",)))
    calibrated = not variant.endswith("-uncal")
    res = M.fit_model(t["media"], t["kpi"], t["cpu"], cfg, lift_tests=lift if calibrated else None,
                      geos=geos, model_config=model_config)
    d, s = res.diagnostics, res.sampler_stats
    out = {
        "variant": variant, "market": args["market"], "geos": geos,
        "wall_s": res.fit_seconds, "sampling_s": s["sampling_seconds"],
        "compile_and_sample_s": res.stage_seconds.get("sample"),
        "divergences": d["divergences"], "max_rhat": d["max_rhat"], "min_ess_bulk": d["min_ess_bulk"],
        "ess_per_s": d["min_ess_bulk"] / s["sampling_seconds"],
        "ess_per_wall_s": d["min_ess_bulk"] / res.fit_seconds,
        "steps_per_draw": s["mean_leapfrog_steps_per_draw"],
        "us_per_grad": s["us_per_gradient"], "total_steps": s["total_leapfrog_steps"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "gate": "pass" if res.gate_passed else "FAIL",
        "worst_rhat": d["worst_rhat"][:2], "worst_ess": d["worst_ess_bulk"][:2],
        "r2": d["r2"], "coverage_94": d["coverage_94"],
    }
    if args.get("recovery"):
        out["recovery"] = M.parameter_summary(res.mmm).to_dict("records")
        out["shares"] = _contribution_shares(res.mmm)
        out["lift_points"] = _implied_lift(res.mmm, lift)
    return out


def _hdi(samples):
    from mmm_pipeline.model import hdi_bounds

    lo, hi = hdi_bounds(samples)
    return float(samples.mean()), float(lo), float(hi)


def _contribution_shares(mmm) -> dict:
    """Posterior share of each channel in the market's KPI over the modelled weeks."""
    import numpy as np

    post, cd = mmm.idata.posterior, mmm.idata.constant_data
    total_y = float(cd["target_data"].sum())
    contrib = (post["channel_contribution"] * cd["target_scale"]).sum(("date", "geo"))
    contrib = contrib.stack(sample=("chain", "draw")).transpose("sample", "channel")
    return {str(c): _hdi(np.asarray(contrib.sel(channel=c)) / total_y) for c in contrib.channel.values}


def _implied_lift(mmm, lift) -> list[dict]:
    """Model-implied weekly lift beta * (logistic(lam (x+dx)/s) - logistic(lam x/s)) at each test row."""
    import numpy as np

    post, cd = mmm.idata.posterior, mmm.idata.constant_data
    scale = float(np.asarray(cd["target_scale"]).ravel()[0])
    rows = []
    for r in lift.to_dict("records"):
        sel = {"geo": r["geo"], "channel": r["channel"]}
        lam = np.asarray(post["saturation_lam"].sel(sel)).ravel()
        beta = np.asarray(post["saturation_beta"].sel(sel)).ravel()
        s = float(cd["channel_scale"].sel(channel=r["channel"]))

        def sat(x):
            e = np.exp(-lam * x / s)
            return (1 - e) / (1 + e)

        mean, lo, hi = _hdi(beta * (sat(r["x"] + r["delta_x"]) - sat(r["x"])) * scale)
        rows.append({"test_id": r["test_id"], "geo": r["geo"], "channel": r["channel"], "x": r["x"],
                     "delta_x": r["delta_x"], "delta_y": r["delta_y"], "sigma": r["sigma"],
                     "mean": mean, "hdi_low": lo, "hdi_high": hi})
    return rows


def _print_recovery(by: dict, truth_path: Path) -> None:
    import numpy as np
    import pandas as pd

    truth = json.loads(truth_path.read_text())

    def params(records):
        rows = []
        for r in records:
            g, c, p = r["geo"], r["channel"], r["parameter"]
            if p == "adstock_alpha":
                tv = truth["alpha"][g][c]
            elif p == "saturation_lam":  # truth lam is on units / unit_scale, the model's on units / channel_scale
                tv = truth["lam"][g][c] * r["channel_scale"] / truth["unit_scale"][c]
            elif p == "saturation_beta_kpi":
                tv = truth["beta"][g][c]
            else:
                continue
            rows.append({"geo": g, "channel": c, "parameter": p, "truth": tv, "mean": r["mean"],
                         "hdi_low": r["hdi_low"], "hdi_high": r["hdi_high"]})
        df = pd.DataFrame(rows)
        df["in_hdi"] = (df["truth"] >= df["hdi_low"]) & (df["truth"] <= df["hdi_high"])
        df["abs_rel_err"] = (df["mean"] / df["truth"] - 1).abs()
        df["rel_width"] = (df["hdi_high"] - df["hdi_low"]) / df["truth"]
        return df

    variants = [v for v in ("a-uncal", "a") if v in by and "recovery" in by[v]]
    print("\nParameter recovery vs truth.json (lam converted to the model's channel scale; "
          "beta in KPI units):")
    tables = {}
    for v in variants:
        df = params(by[v]["recovery"])
        tables[v] = df
        agg = df.groupby("parameter").agg(in_94_hdi=("in_hdi", "mean"), mean_abs_rel_err=("abs_rel_err", "mean"),
                                          median_rel_hdi_width=("rel_width", "median"))
        print(f"  [{'uncalibrated' if v == 'a-uncal' else 'calibrated'}]")
        print("   " + agg.round(3).to_string().replace("\n", "\n   "))

    geos = by[variants[-1]]["geos"]
    weeks = truth["dates"]["week_starts"]
    complete = len(weeks) - (0 if truth["dates"]["last_week_complete"] else 1)
    y = {g: float(np.sum(truth["weekly_revenue_model"][g][:complete])) for g in geos}
    print("\nChannel share of the market's KPI (truth vs posterior mean [94% HDI]):")
    for c in sorted(truth["channels"]):
        true_share = sum(truth["contribution_share_by_geo"][g][c] * y[g] for g in geos) / sum(y.values())
        cells = []
        for v in variants:
            m, lo, hi = by[v]["shares"][c]
            cells.append(f"{'uncal' if v == 'a-uncal' else 'calib'} {m:.3f} [{lo:.3f}, {hi:.3f}]")
        print(f"  {c:8s} truth {true_share:.3f}   " + "   ".join(cells))

    if len(variants) == 2:
        print("\nModel-implied weekly lift at each lift-test point (x -> x + delta_x), KPI units:")
        print("  truth = truth.json beta * (logistic(lam (x+dx)/unit_scale) - logistic(lam x/unit_scale))")
        cal = {(r["test_id"], r["geo"]): r for r in by["a"]["lift_points"]}
        for r in by["a-uncal"]["lift_points"]:
            g, c = r["geo"], r["channel"]
            lam, beta, us = truth["lam"][g][c], truth["beta"][g][c], truth["unit_scale"][c]

            def sat(x):
                e = np.exp(-lam * x / us)
                return (1 - e) / (1 + e)

            true_lift = beta * (sat(r["x"] + r["delta_x"]) - sat(r["x"]))
            k = cal[(r["test_id"], g)]
            w_u, w_c = r["hdi_high"] - r["hdi_low"], k["hdi_high"] - k["hdi_low"]
            print(f"  {r['test_id']} {g} {c:7s} truth {true_lift:8.0f}  measured {r['delta_y']:8.0f} "
                  f"+- {r['sigma']:6.0f}  uncal {r['mean']:8.0f} [{r['hdi_low']:7.0f}, {r['hdi_high']:7.0f}]"
                  f"  calib {k['mean']:8.0f} [{k['hdi_low']:7.0f}, {k['hdi_high']:7.0f}]  HDI narrower by "
                  f"{100 * (1 - w_c / w_u):5.1f}%")
        u, c_ = tables["a-uncal"], tables["a"]
        keys = {(r["geo"], r["channel"]) for r in by["a"]["lift_points"]}
        print("\nTested geo x channel cells, 94% HDI width calibrated / uncalibrated:")
        for p in ("saturation_beta_kpi", "saturation_lam"):
            for g, c in sorted(keys):
                wu = u[(u.parameter == p) & (u.geo == g) & (u.channel == c)]
                wc = c_[(c_.parameter == p) & (c_.geo == g) & (c_.channel == c)]
                ratio = float((wc.hdi_high - wc.hdi_low).iloc[0] / (wu.hdi_high - wu.hdi_low).iloc[0])
                print(f"  {p:20s} {g} {c:8s} {ratio:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", default=str(ROOT / "data" / "sample"))
    ap.add_argument("--market", default="west", help="a market of pipeline.yaml, or 'all'")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--variants", default="a,b",
                    help="comma list of a, b, a-diag, b-diag, a-uncal (a without lift tests)")
    ap.add_argument("--recovery", action="store_true")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)

    input_dir = Path(args.input)
    if not (input_dir / "truth.json").exists() and not (input_dir / "pipeline.yaml").exists():
        from mmm_pipeline.sample import generate_sample

        print(f"{input_dir} has no data: generating the sample there")
        generate_sample(input_dir)

    ctx = mp.get_context("spawn")
    results = []
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if args.recovery and "a-uncal" not in variants:
        variants.append("a-uncal")
    print(f"market {args.market}, nutpie {args.chains} chains x {args.tune} tune + {args.draws} draws, "
          f"calibrated, each fit in a fresh process")
    for variant in variants:
        job = {"variant": variant, "market": args.market, "input": str(input_dir), "chains": args.chains,
               "tune": args.tune, "draws": args.draws, "recovery": args.recovery and variant in ("a", "a-uncal")}
        t0 = time.perf_counter()
        with ctx.Pool(1) as pool:
            r = pool.apply(_fit_one, (job,))
        r["process_s"] = time.perf_counter() - t0
        results.append(r)
        print(f"  {variant:7s} wall {r['wall_s']:7.1f}s (sampling {r['sampling_s']:6.1f}s) "
              f"div {r['divergences']:4d}  max R-hat {r['max_rhat']:.4f}  min bulk ESS "
              f"{r['min_ess_bulk']:7.0f}  ESS/s {r['ess_per_s']:7.1f} (per wall s {r['ess_per_wall_s']:6.1f})  "
              f"steps/draw {r['steps_per_draw']:6.1f}  us/grad {r['us_per_grad']:6.1f}  "
              f"peak RSS {r['peak_rss_mb']:6.0f} MB  gate {r['gate']}", flush=True)
        print(f"          worst R-hat {r['worst_rhat']}  worst ESS {r['worst_ess']}", flush=True)

    by = {r["variant"]: r for r in results}
    if "a" in by and "b" in by:
        a, b = by["a"], by["b"]
        print(f"\nESS/s ratio a/b: {a['ess_per_s'] / b['ess_per_s']:.1f}x on sampling time, "
              f"{a['ess_per_wall_s'] / b['ess_per_wall_s']:.1f}x on wall time")
    if args.recovery and (input_dir / "truth.json").exists():
        _print_recovery(by, input_dir / "truth.json")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
