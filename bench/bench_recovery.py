"""Recovery benchmark: does lift-test calibration make the answers more accurate, not only narrower?

    .venv/bin/python bench/bench_recovery.py [--datasets sample,corr,spread] [--markets west,east]
                                             [--variants uncalibrated,calibrated] [--profile full]
                                             [--lift-readout reported|truth] [--one-market]
                                             [--readout-seeds 1,2,3] [--seed-variants calibrated]
                                             [--json OUT.json]

Datasets (mmm_pipeline.sample with different seeds and structure; each
simulates its lift tests as experiments on the true model, 2 to 8 weeks,
one national test, one `total`-scope test, and a promotion control; the
generated ones make each geo's ceiling and saturation point grow with its
size, `size_effects`, unlike the sample):

  sample  the embedded sample (seed 20240101; its pipeline.yaml sets
          model.geo_scaling market: its effects do not grow with geo size)
  corr    seed 7; search and retail bought together (weekly patterns equal up to
          6% lognormal noise: their weekly units correlate at about 0.95); geo
          sizes varying 10x (0.3 .. 3.0)
  spread  seed 11; geo sizes varying 10x; other test windows and lengths
  trend   seed 13; geo sizes varying 10x; the baseline grows 40% over the two
          years while search volume doubles (a drift a model without a trend
          term can only give to search). Compare `--variants
          uncalibrated,uncalibrated+notrend` (its pipeline.yaml sets model.trend linear).

Variant flags after `+` change the dataset's model settings: `trend` / `notrend`
(model.trend linear / none; a generated folder with a trend, the sample and `trend`,
already sets linear), `market` / `size` (model.geo_scaling), `roi` / `beta`
(model.saturation_parameterization), `spendsplit` (lift_tests.national_split_log_sd 0: a national
test split across markets by spend share alone). A variant is compared with its
uncalibrated twin (`calibrated+market` with `uncalibrated+market`), anything else
with `uncalibrated`.

`--lift-readout truth` replaces each test's reported delta_y by its true lift in the test's scope
(truth.json `true_delta_y_reported_scope`; sigma unchanged): it separates what the likelihood does
from the luck of the generated readouts, which are drawn with noise of the stated sigma (a readout
1.3 sigma below the truth rightly pulls the tested cells down).

`--readout-seeds 1,2,3` adds, per seed, a calibrated fit on readouts redrawn as the true lift in the
test's scope + Normal(0, sigma) with that seed (the generator's own noise, sigma unchanged), compared
with the same uncalibrated fit: one readout draw is ~9 tested cells' worth of luck, the seeds give the
likelihood's expected share of tested cells it improves (printed per seed and pooled).
`--seed-variants calibrated,calibrated+spendsplit` fits each listed variant per seed.

`--one-market` fits all six geos as one market `all` (and `--markets` defaults to it): a national test is
then one likelihood term against its whole readout, where two markets each get their geos' spend
share of it.

Per dataset and market it fits the uncalibrated and the calibrated model
as the pipeline does (pipeline spec, every staged control, `full` profile: nutpie,
4 chains x 500 tune x 2000 draws, every 2nd kept, and the retry ladder when a
gate fails; each fit in its own spawned process), then per geo x channel the true
and estimated ROAS under both variants (mmm_pipeline.reporting.model_report.marketer_rows:
contribution over the training weeks / spend, truth from truth.json on the same
units). `steady_state` as a variant fits the previous calibration
(pymc-marketing's add_lift_test_measurements on the weekly conversion) for
comparison. Printed summary per dataset and variant: mean |ROAS error|, 94% HDI
coverage of the true ROAS, mean |ROAS error| on tested cells (geo x channel of a
geo test, and every geo of a national test's channel), the share of tested cells
where the calibrated error is below the uncalibrated, the median bias
improvement over the tested channels' cells, gates (max R-hat, min ESS,
divergences) and fit seconds. Targets (bench/README.md): calibrated mean error
below uncalibrated on every dataset; calibrated better on >= 80% of tested
cells; coverage >= 0.90 for both; median bias improvement > 0; gates green.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEN_X = {"US-CA": 3.0, "US-TX": 1.6, "US-WA": 0.3, "US-NY": 2.4, "US-FL": 1.0, "US-IL": 0.3}


def dataset_structure(name: str) -> tuple[int, dict]:
    from datetime import date

    from mmm_pipeline.sample import DEFAULT_SEED

    if name == "sample":
        return DEFAULT_SEED, {}
    if name == "corr":
        return 7, {"geo_size": TEN_X, "size_effects": True, "correlated": ("search", "amazon")}
    if name == "spread":
        return 11, {"geo_size": TEN_X, "size_effects": True, "lift_tests": [
            ("LT-S-01", "search", "US-CA", date(2025, 2, 3), 42, "window"),
            ("LT-S-02", "social", "US-IL", date(2025, 4, 7), 14, "window"),
            ("LT-S-03", "retail", "US-NY", date(2025, 5, 5), 56, "total"),
            ("LT-S-04", "youtube", "US-TX", date(2025, 6, 2), 28, "window"),
            ("LT-S-05", "retail", "", date(2025, 9, 1), 21, "window"),
        ]}
    if name == "trend":  # the baseline grows 40% over the two years while search volume doubles
        return 13, {"geo_size": TEN_X, "size_effects": True, "trend": 0.4, "ramp": ("search", 1.0)}
    raise SystemExit(f"unknown dataset {name!r}")


def readouts_around_truth(folder: Path, out: Path | None = None, seed: int | None = None) -> None:
    """Rewrite lift_tests.csv (in `out`, a copy of `folder`, when given) with each test's true lift in
    its scope as delta_y, plus Normal(0, sigma) noise drawn with `seed` when one is given."""
    import shutil

    import numpy as np
    import pandas as pd

    if out is not None:
        shutil.copytree(folder, out)
    target = out or folder
    truth = json.loads((folder / "truth.json").read_text())
    true_lift = {t["test_id"]: t["true_delta_y_reported_scope"] for t in truth["lift_tests"]}
    tests = pd.read_csv(target / "lift_tests.csv")
    missing = sorted(set(tests["test_id"]) - set(true_lift))
    if missing:
        raise SystemExit(f"{folder / 'truth.json'}: no true lift for test(s) {missing}")
    noise = 0.0 if seed is None else \
        np.random.default_rng(seed).normal(0.0, 1.0, len(tests)) * tests["sigma"].to_numpy(float)
    tests["delta_y"] = (tests["test_id"].map(true_lift).to_numpy(float) + noise).round(2)
    tests.to_csv(target / "lift_tests.csv", index=False)


def one_market(folder: Path) -> None:
    """Rewrite the folder's pipeline.yaml so that every geo is in one market, `all`."""
    import yaml

    path = folder / "pipeline.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["markets"] = {"all": sorted(g for geos in spec["markets"].values() for g in geos)}
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


def _fit_one(args: dict) -> dict:
    """Spawned process: one fit; returns the marketer rows, gates and timing."""
    sys.path.insert(0, str(ROOT))
    import warnings

    warnings.filterwarnings("ignore")
    from bench.bench_model import weekly_tables
    from mmm_pipeline import model as M
    from mmm_pipeline.reporting import model_report as R
    from mmm_pipeline.model.lift_tests import convert_lift_tests, with_scope
    from mmm_pipeline.settings import load_pipeline_config

    input_dir = Path(args["input"])
    t = weekly_tables(input_dir)
    geos = t["markets"][args["market"]]
    pipeline = load_pipeline_config(input_dir)[0]
    lt = pipeline.lift_tests.conversion_kwargs()
    variant, _, extra = args["variant"].split("#")[0].partition("+")  # e.g. uncalibrated+trend, calibrated#s2
    if "spendsplit" in extra.split("+"):  # a national test split across markets by spend share alone
        lt["national_split_log_sd"] = 0.0
    lift, _ = convert_lift_tests(with_scope(t["lift"], input_dir / "lift_tests.csv"), t["daily"], geos,
                                 market=args["market"], **lt)
    over = dict(pipeline.model or {})  # the dataset's own model settings (the sample: geo_scaling market)
    if variant == "steady_state":
        over["calibration"] = {"likelihood": "steady_state"}
    for flag in filter(None, extra.split("+")):
        if flag in ("trend", "notrend"):  # generated folders with a trend already set model.trend linear
            over["trend"] = "linear" if flag == "trend" else "none"
        elif flag in ("market", "size"):  # one scale per market, or each geo by its size
            over["geo_scaling"] = flag
        elif flag in ("roi", "beta"):  # the media prior on ROI (beta derived) or on beta
            over["saturation_parameterization"] = flag
        elif flag == "spendsplit":  # handled above, in the conversion
            pass
        else:
            raise SystemExit(f"unknown variant flag {flag!r} in {args['variant']!r}")
    # as the pipeline fits: every staged control (the generator's promotion), and the retry ladder
    controls = t["controls"][t["controls"]["geo"].isin(geos)] if len(t["controls"]) else None
    cfg = M.with_control_columns(M.load_model_config(args["profile"], over),
                                 [c for c in t["controls"].columns if c not in ("week_start", "geo")])
    res, attempts = M.fit_with_ladder(
        lambda c: M.fit_model(t["media"], t["kpi"], t["cpu"], c, geos=geos, controls=controls,
                              lift_tests=None if variant == "uncalibrated" else lift), cfg)
    truth = json.loads((input_dir / "truth.json").read_text())
    rows = R.marketer_rows(res.mmm, truth)
    fit = R.lift_test_fit({variant: ("v", res.mmm)}, lift, args["market"])
    d = res.diagnostics
    return {"rows": rows.to_dict("records"), "lift_fit": fit.to_dict("records"),
            "tested": [(r["geo"], r["channel"]) for r in lift.to_dict("records")],
            "max_rhat": d["max_rhat"], "min_ess_bulk": d["min_ess_bulk"], "divergences": d["divergences"],
            "gate": bool(res.gate_passed), "fit_seconds": sum(a["fit_seconds"] for a in attempts),
            "attempts": [{k: a[k] for k in ("rung", "max_rhat", "divergences", "passed")} for a in attempts]}


def summarise(results: dict) -> list[dict]:
    """results[dataset][market][variant] -> summary rows per dataset and calibrated variant."""
    import numpy as np
    import pandas as pd

    from mmm_pipeline.reporting.model_report import compare_variants

    out = []
    for ds, markets in results.items():
        frames, tested, gates = {}, set(), []
        for market, by_variant in markets.items():
            for v, r in by_variant.items():
                frames.setdefault(v, []).append(pd.DataFrame(r["rows"]))
                tested |= {tuple(x) for x in r["tested"]}
                gates.append({"dataset": ds, "market": market, "variant": v, "max_rhat": r["max_rhat"],
                              "min_ess_bulk": r["min_ess_bulk"], "divergences": r["divergences"],
                              "gate": r["gate"], "fit_seconds": r["fit_seconds"]})
        frames = {v: pd.concat(f, ignore_index=True) for v, f in frames.items()}
        for cal in [v for v in frames if v != "uncalibrated"]:
            # calibrated+market against uncalibrated+market; anything else against plain uncalibrated
            base = cal.replace("calibrated", "uncalibrated", 1) if cal.startswith("calibrated") else "uncalibrated"
            base = base if base in frames else "uncalibrated"
            cmp = compare_variants({"uncalibrated": frames[base], "calibrated": frames[cal]})
            roas = cmp[cmp["parameter"] == "roas"].copy()
            roas["tested"] = [(g, c) in tested for g, c in zip(roas["geo"], roas["channel"])]
            t = roas[roas["tested"]]
            tested_channels = set(c for _, c in tested)
            tc = roas[roas["channel"].isin(tested_channels)]
            g = [x for x in gates if x["dataset"] == ds and x["variant"] in (base, cal)]
            out.append({
                "dataset": ds, "variant": cal, "baseline": base, "cells": len(roas), "tested_cells": len(t),
                "mean_abs_err_uncal": float(roas["error_uncalibrated"].mean()),
                "mean_abs_err_cal": float(roas["error_calibrated"].mean()),
                "coverage_uncal": float(roas["truth_in_hdi_uncalibrated"].astype(float).mean()),
                "coverage_cal": float(roas["truth_in_hdi_calibrated"].astype(float).mean()),
                "tested_err_uncal": float(t["error_uncalibrated"].mean()),
                "tested_err_cal": float(t["error_calibrated"].mean()),
                "tested_cells_better": float((t["error_calibrated"] < t["error_uncalibrated"]).mean()),
                "median_bias_improvement_tested_channels": float(np.median(tc["bias_improvement_pct"])),
                "median_precision_improvement_roas": float(np.median(roas["precision_improvement_pct"])),
                "max_rhat": max(x["max_rhat"] for x in g), "min_ess_bulk": min(x["min_ess_bulk"] for x in g),
                "divergences": sum(x["divergences"] for x in g), "gates_green": all(x["gate"] for x in g),
                "fit_seconds": {f"{x['market']}/{x['variant']}": round(x["fit_seconds"], 1) for x in g},
                "per_cell": roas[["geo", "channel", "truth", "mean_uncalibrated", "hdi_low_uncalibrated",
                                  "hdi_high_uncalibrated", "mean_calibrated", "hdi_low_calibrated",
                                  "hdi_high_calibrated", "signed_error_uncalibrated", "signed_error_calibrated",
                                  "bias_improvement_pct", "tested"]].to_dict("records"),
            })
    return out


def _print(summary: list[dict], results: dict) -> None:
    for s in summary:
        print(f"\n== {s['dataset']} ({s['variant']} vs {s['baseline']}): {s['cells']} cells, {s['tested_cells']} tested")
        print(f"mean |ROAS error|   uncal {s['mean_abs_err_uncal']:.1%}   cal {s['mean_abs_err_cal']:.1%}")
        print(f"94% HDI coverage    uncal {s['coverage_uncal']:.2f}    cal {s['coverage_cal']:.2f}")
        print(f"tested cells error  uncal {s['tested_err_uncal']:.1%}   cal {s['tested_err_cal']:.1%}   "
              f"calibrated better in {s['tested_cells_better']:.0%}")
        print(f"median bias improvement (tested channels) {s['median_bias_improvement_tested_channels']:+.1f}%   "
              f"median ROAS HDI narrowing {s['median_precision_improvement_roas']:+.1f}%")
        print(f"gates: max R-hat {s['max_rhat']:.4f}, min ESS {s['min_ess_bulk']:.0f}, divergences "
              f"{s['divergences']}, green {s['gates_green']}; fit s {s['fit_seconds']}")
        print("geo    channel   true   uncal [94% HDI]        cal [94% HDI]          err u / c   bias impr")
        for c in s["per_cell"]:
            print(f"{c['geo']:6} {c['channel']:8} {c['truth']:6.3f}  {c['mean_uncalibrated']:6.3f} "
                  f"[{c['hdi_low_uncalibrated']:.3f}, {c['hdi_high_uncalibrated']:.3f}]  {c['mean_calibrated']:6.3f} "
                  f"[{c['hdi_low_calibrated']:.3f}, {c['hdi_high_calibrated']:.3f}]  "
                  f"{c['signed_error_uncalibrated']:+.1%} / {c['signed_error_calibrated']:+.1%}  "
                  f"{c['bias_improvement_pct']:+6.1f}{'  tested' if c['tested'] else ''}")
    print("\nlift tests (predicted in the test's scope vs measured):")
    for ds, markets in results.items():
        for market, by_variant in markets.items():
            for v, r in by_variant.items():
                for f in r["lift_fit"]:
                    print(f"  {ds:6} {market:5} {v:13} {f['test_id']:10} {f['scope']:6} predicted "
                          f"{f['predicted_mean']:10,.0f} [{f['predicted_hdi_low']:,.0f}, {f['predicted_hdi_high']:,.0f}]"
                          f"  measured {f['observed']:10,.0f} +/- {f['sigma']:,.0f}  z {f['z_score']:+.2f}")


def _print_seeds(summary: list[dict]) -> None:
    """Per dataset and variant, the calibrated fits on redrawn readouts (`calibrated#sN`) pooled over seeds."""
    import numpy as np

    groups = dict.fromkeys((s["dataset"], s["variant"].split("#")[0]) for s in summary if "#" in s["variant"])
    for ds, variant in groups:
        rows = [s for s in summary if s["dataset"] == ds and s["variant"].split("#")[0] == variant
                and "#" in s["variant"]]
        cells = [c for s in rows for c in s["per_cell"] if c["tested"]]
        better = [abs(c["signed_error_calibrated"]) < abs(c["signed_error_uncalibrated"]) for c in cells]
        print(f"\n== {ds} {variant}: {len(rows)} readout draws (seeds), each against the same uncalibrated fit")
        for s in rows:
            print(f"  {s['variant']:24} mean err {s['mean_abs_err_uncal']:.1%} -> {s['mean_abs_err_cal']:.1%}  "
                  f"tested {s['tested_err_uncal']:.1%} -> {s['tested_err_cal']:.1%}  better {s['tested_cells_better']:.0%}  "
                  f"bias impr {s['median_bias_improvement_tested_channels']:+.1f}  coverage {s['coverage_cal']:.2f}  "
                  f"gates {s['gates_green']}")
        print(f"  pooled: calibrated better on {np.mean(better):.0%} of {len(better)} tested cells; mean error "
              f"cal < uncal in {sum(s['mean_abs_err_cal'] < s['mean_abs_err_uncal'] for s in rows)} of {len(rows)} "
              f"draws; median bias improvement, median over draws "
              f"{np.median([s['median_bias_improvement_tested_channels'] for s in rows]):+.1f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default="sample,corr,spread")
    ap.add_argument("--markets", default=None, help="default: west,east (all with --one-market)")
    ap.add_argument("--variants", default="uncalibrated,calibrated")
    ap.add_argument("--profile", default="full")
    ap.add_argument("--lift-readout", choices=("reported", "truth"), default="reported",
                    help="truth: every test reads out its true lift (see the module docstring)")
    ap.add_argument("--one-market", action="store_true", help="all geos in one market `all`")
    ap.add_argument("--readout-seeds", default="", help="e.g. 1,2,3: also a calibrated fit per redrawn readout")
    ap.add_argument("--seed-variants", default="calibrated",
                    help="the calibrated variant(s) fitted per readout seed, e.g. calibrated,calibrated+spendsplit")
    ap.add_argument("--json", default=None, help="also write the results and summary here")
    a = ap.parse_args(argv)
    a.markets = a.markets or ("all" if a.one_market else "west,east")
    from mmm_pipeline.sample import generate_sample

    ctx = mp.get_context("spawn")
    results: dict = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for ds in a.datasets.split(","):
            seed, structure = dataset_structure(ds)
            folder = Path(tmp) / ds
            generate_sample(folder, seed=seed, **structure)
            if a.lift_readout == "truth":
                readouts_around_truth(folder)
            if a.one_market:
                one_market(folder)
            runs = [(v, folder) for v in a.variants.split(",")]
            for seed in filter(None, a.readout_seeds.split(",")):
                readouts_around_truth(folder, Path(tmp) / f"{ds}#s{seed}", seed=int(seed))
                runs += [(f"{v}#s{seed}", Path(tmp) / f"{ds}#s{seed}") for v in a.seed_variants.split(",")]
            for market in a.markets.split(","):
                for v, input_dir in runs:
                    with ctx.Pool(1) as pool:
                        r = pool.apply(_fit_one, ({"input": str(input_dir), "market": market, "variant": v,
                                                   "profile": a.profile},))
                    results.setdefault(ds, {}).setdefault(market, {})[v] = r
                    print(f"[{time.perf_counter() - t0:6.0f}s] {ds} {market} {v}: fit {r['fit_seconds']:.0f}s, "
                          f"max R-hat {r['max_rhat']:.4f}, divergences {r['divergences']}, gate {r['gate']}, "
                          f"attempts {len(r['attempts'])}", flush=True)
                    if a.json:
                        Path(a.json).write_text(json.dumps({"results": results}, default=str))
    summary = summarise(results)
    _print(summary, results)
    _print_seeds(summary)
    if a.json:
        Path(a.json).write_text(json.dumps({"results": results, "summary": summary}, default=str, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
