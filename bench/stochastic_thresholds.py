"""Distributions of the draw-dependent quantities the test suite asserts on, over many model seeds.

Every fit takes a fixed seed (`model.random_seed`), yet a fresh clone on another machine drew other
draws (compiled code differs across CPUs and compile options) and failed two thresholds tuned on one
machine's draws. A threshold on a random quantity must hold over the distribution of that quantity,
not on one draw of it. This script reruns what the `sample_run` test fixture runs (the embedded
sample, whole graph, fast profile) once per seed, each in a process of its own, and prints, per
statistic, its distribution next to the test's threshold (min / max / mean / sd and mean + 3 sd).

    .venv/bin/python bench/stochastic_thresholds.py --seeds 20           # 20 seeds (1..20), ~1 min each
    .venv/bin/python bench/stochastic_thresholds.py --seeds 20240101,20240101   # one seed twice: determinism

Rerun it whenever the model changes; tests/test_models_pipeline.py and tests/test_pipeline.py say which
statistic each of their thresholds comes from. Raw rows go to bench/stochastic_thresholds.csv.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: statistic -> (the test that asserts on it, its threshold in words). A test's threshold must lie
#: outside the range this script measures (max + 3 sd for an upper bound), or be a property.
THRESHOLDS = {
    # tests/test_models_pipeline.py::test_each_market_fits_both_variants_and_publishes_the_marts
    "flagged_elements": ("test_models_pipeline", "none: which shape elements stay at their prior varies"),
    "flagged_roi": ("test_models_pipeline", "== 0 (with roi_contraction_min)"),
    "roi_contraction_min": ("test_models_pipeline", "> 0.1 = prior-dominated's contraction limit"),
    "contraction_median": ("test_models_pipeline", "> 0.5"),
    "divergences": ("test_models_pipeline", "== 0"),
    "worst_geo_r2_gap": ("test_models_pipeline", "> 0 (worst geo below pooled R2)"),
    "max_rhat": ("test_pipeline: convergence may warn", "fast gate 1.1 warns only"),
    "min_ess_bulk": ("test_pipeline: convergence may warn", "fast gate 20 warns only"),
    # tests/test_models_pipeline.py::test_each_market_is_validated_out_of_sample_against_a_naive_forecast
    "validation_mape_max": ("test_models_pipeline: validation", "< 0.08"),
    "validation_mape_over_baseline_max": ("test_models_pipeline: beats_baseline", "< 1"),
    "validation_coverage_min": ("test_models_pipeline: validation", ">= 0.75"),
    # tests/test_models_pipeline.py::test_calibration_report_compares_both_models_with_the_truth
    "lift_z2_calibrated_over_uncalibrated": ("test_models_pipeline: calibration", "< 1"),
    # tests/test_holdout.py (--holdout)
    "holdout_mape_over_baseline": ("test_holdout", "< 0.9"),
    "holdout_coverage": ("test_holdout", ">= 0.75"),
    "holdout_max_weekly_error": ("test_holdout", "< 0.25"),
    "wrong_mape_over_baseline": ("test_holdout: wrong model", ">= 1 (does not beat the baseline)"),
    "wrong_minus_good_mape": ("test_holdout: wrong model", "> 0"),
    # --direct: tests/test_model.py, tests/test_scales.py, tests/test_controls.py
    "trend_rise_min": ("test_model: linear trend", "> 0.6"),
    "trend_rise_max": ("test_model: linear trend", "< 1.4"),
    "scales_lam_hdi_margin_min": ("test_scales: refit lam inside the first fit's HDI", ">= 0"),
    "controls_promo_over_added": ("test_controls: promo", "0.7 .. 1.3"),
    "controls_price_over_added": ("test_controls: price nets out", "< 0.1"),
    # --full: tests/test_models_pipeline.py::test_full_profile_passes_the_gates... (one attempt per seed;
    # the test allows a second)
    "full_gated": ("test_models_pipeline: full profile", "both fits gated (a second attempt allowed)"),
    "full_max_rhat": ("test_models_pipeline: full profile", "<= 1.01 (the product's gate)"),
    "full_min_ess_bulk": ("test_models_pipeline: full profile", ">= 400 (the product's gate)"),
    "full_divergences": ("test_models_pipeline: full profile", "== 0 (the product's gate)"),
    "full_read_narrowing_min": ("test_models_pipeline: full profile", "> 0 (tested ROAS, response narrow)"),
    "full_lift_narrowing_min": ("test_models_pipeline: full profile", "> 0 (each test's implied lift narrows)"),
    # --tiny: tests/test_model.py::test_tiny_fast_fit_end_to_end (the `fitted` fixture's fit)
    "tiny_r2": ("test_model: tiny fit", "> 0.8"),
    "tiny_mape": ("test_model: tiny fit", "< 0.2"),
    "tiny_coverage_94": ("test_model: tiny fit", "> 0.5"),
    # --your-data: tests/test_your_data.py (5 geos of the converted Meridian table, per-capita scales)
    "your_data_max_abs_total_error": ("test_your_data: components add up to each geo's KPI", "< 0.03"),
}


#: model_job's assets that carry every check and mart the tests read of a fit
MODEL_ASSETS = ["lift_tests_model_units", "mmm_uncalibrated", "mmm_calibrated", "calibration_report", "model_validation"]


def _write_seed(input_dir: Path, seed: int) -> None:
    import yaml

    path = input_dir / "pipeline.yaml"
    cfg = yaml.safe_load(path.read_text()) or {}
    cfg.setdefault("model", {})["random_seed"] = int(seed)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def measure_one(seed: int, workdir: Path) -> dict:
    """Materialize the sample's whole graph (fast profile, ephemeral instance) with `seed`; its statistics."""
    import dagster as dg

    from assets.definitions import ALL_ASSETS, ALL_CHECKS, ingest_job, model_job
    from assets.run import failed_checks
    from mmm_pipeline import warehouse
    from mmm_pipeline.sample import generate_sample
    from mmm_pipeline.settings import RunSettings
    from resources import build_resources

    input_dir, wh, art = workdir / "input", workdir / "warehouse.duckdb", workdir / "artifacts"
    generate_sample(input_dir)
    _write_seed(input_dir, seed)
    settings = RunSettings(input_dir, wh, art, "fast")
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[ingest_job, model_job],
                          resources=build_resources(settings))
    started = time.perf_counter()
    # Every check the tests read sits on these assets (none on the curves, plans or report downstream),
    # so the run stops there: a seed takes half the time of the whole graph.
    instance = dg.DagsterInstance.ephemeral()
    results = [defs.resolve_job_def("ingest_job").execute_in_process(raise_on_error=False, instance=instance)]
    job = defs.resolve_job_def("model_job")
    for market in job.partitions_def.get_partition_keys():
        results.append(job.execute_in_process(partition_key=market, raise_on_error=False, instance=instance,
                                              asset_selection=[dg.AssetKey(k) for k in MODEL_ASSETS]))
    ok = all(r.success for r in results) and not any(failed_checks(r) for r in results)
    seconds = time.perf_counter() - started
    warned = sorted({c.split(":")[-1] for r in results for c in failed_checks(r, dg.AssetCheckSeverity.WARN)})
    with warehouse.connect(wh) as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest").df()
        shift = con.execute("SELECT * FROM marts.prior_posterior_latest").df()
        by_geo = con.execute("SELECT * FROM marts.model_fit_geo_latest").df()
        validation = con.execute("SELECT * FROM marts.model_validation_latest WHERE geo = 'market'").df()
        lift_fit = con.execute("SELECT * FROM marts.lift_test_fit_latest").df()
    flagged = shift[shift.prior_dominated]
    z2 = lift_fit.groupby("variant").z_score.apply(lambda s: float((s ** 2).mean()))
    row = {
        "seed": seed, "ok": bool(ok), "seconds": round(seconds, 1),
        "flagged_elements": int(len(flagged)),
        "flagged_fits": int(flagged.groupby(["market", "variant"]).ngroups),
        "contraction_median": float(shift.contraction.median()),
        "roi_contraction_min": float(shift.loc[shift.parameter == "saturation_roi", "contraction"].min()),
        "max_rhat": float(runs.max_rhat.max()), "min_ess_bulk": float(runs.min_ess_bulk.min()),
        "divergences": int(runs.divergences.sum()),
        "worst_geo_r2_gap": float((runs.r2 - runs.worst_geo_r2).min()),
        "max_geo_coverage_94": float(by_geo.coverage_94.max()),
        "validation_mape_max": float(validation.model_mape.max()),
        "validation_mape_over_baseline_max": float((validation.model_mape / validation.baseline_mape).max()),
        "validation_coverage_min": float(validation.coverage_94.min()),
        "lift_z2_calibrated_over_uncalibrated": float(z2["calibrated"] / z2["uncalibrated"]),
        "warned_checks": ",".join(warned),
    }
    for parameter in sorted(shift.parameter.unique()):
        row[f"flagged_{parameter.removeprefix('saturation_').removeprefix('adstock_')}"] = int(
            (flagged.parameter == parameter).sum())
    # a fingerprint of the draws: equal across two runs only if the posterior draws are identical
    row["posterior_fingerprint"] = float(shift.posterior_mean.sum())
    return row


def measure_holdout(seed: int, workdir: Path) -> dict:
    """What tests/test_holdout.py asserts on (its TINY fast fit of the west market, good and wrong model)."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_holdout import TINY
    from test_model import sample_tables

    from mmm_pipeline import model as M
    from mmm_pipeline.model.holdout import holdout_validation
    from mmm_pipeline.sample import generate_sample

    generate_sample(workdir / "input")
    tables = sample_tables(workdir / "input")
    west = ["US-CA", "US-TX", "US-WA"]
    started = time.perf_counter()
    good = holdout_validation(tables["media"], tables["kpi"], tables["cpu"],
                              M.load_model_config("fast", {**TINY, "random_seed": seed}), geos=west)
    wrong = holdout_validation(tables["media"], tables["kpi"], tables["cpu"], M.load_model_config(
        "fast", {**TINY, "random_seed": seed, "yearly_seasonality": None, "l_max": 1}), geos=west)
    m, w, fc = good.market_row, wrong.market_row, good.forecast
    return {
        "seed": seed, "ok": True, "seconds": round(time.perf_counter() - started, 1),
        "holdout_mape_over_baseline": float(m["model_mape"] / m["baseline_mape"]),
        "holdout_coverage": float(m["coverage_94"]),
        "holdout_max_weekly_error": float(((fc["forecast_mean"] - fc["actual"]).abs() / fc["actual"]).max()),
        "wrong_mape_over_baseline": float(w["model_mape"] / w["baseline_mape"]),
        "wrong_minus_good_mape": float(w["model_mape"] - m["model_mape"]),
        "posterior_fingerprint": float(fc["forecast_mean"].sum()),
        "warned_checks": "",
    }


def measure_direct(seed: int, workdir: Path) -> dict:
    """What the direct-fit tests assert on: tests/test_model.py's linear trend, tests/test_scales.py's
    fixed-scale refit and tests/test_controls.py's promotion and price contributions (each as the test
    fits it, with `seed`)."""
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(REPO / "tests"))
    from test_controls import _with_promo
    from test_model import sample_tables
    from test_scales import TINY, WEST, _until

    from mmm_pipeline import model as M
    from mmm_pipeline import warehouse
    from mmm_pipeline.model import scales as S
    from mmm_pipeline.model.summaries import hdi_bounds
    from mmm_pipeline.sample import generate_sample
    from tests.conftest import materialize

    started = time.perf_counter()
    generate_sample(workdir / "input")
    tables = sample_tables(workdir / "input")
    row: dict = {"seed": seed, "ok": True, "warned_checks": ""}

    # test_linear_trend_recovers_a_drift_added_to_the_kpi_and_survives_save_load
    kpi = tables["kpi"].copy()
    weeks = np.sort(kpi["week_start"].unique())
    t = kpi["week_start"].map({w: i / (len(weeks) - 1) for i, w in enumerate(weeks)})
    geo_mean = kpi.groupby("geo")["kpi_value"].transform("mean")
    kpi["kpi_value"] += 0.4 * geo_mean * t
    cfg = M.load_model_config("fast", {"trend": "linear", "trend_changepoints": 2, "random_seed": seed,
                                       "sampler": {"tune": 150, "draws": 200, "thin": 2}})
    res = M.fit_model(tables["media"], kpi, tables["cpu"], cfg, geos=WEST)
    contrib = M.contributions_frame(res.mmm)
    trend = contrib[contrib.component_type == "trend"]
    first, last = (trend[trend.week_start == w].set_index("geo")["mean"]
                   for w in (trend.week_start.min(), trend.week_start.max()))
    added = 0.4 * geo_mean.groupby(kpi["geo"]).first()
    span = (res.data.weeks[-1] - res.data.weeks[0]) / (pd.Timestamp(weeks[-1]) - pd.Timestamp(weeks[0]))
    rise = (last - first) / (added[last.index] * span)
    row.update(trend_rise_min=float(rise.min()), trend_rise_max=float(rise.max()))

    # test_fixed_scales_equal_the_librarys_and_keep_parameters_comparable_across_a_refit
    cfg = M.load_model_config("fast", {**TINY, "geo_scaling": "market", "random_seed": seed})
    media, kpi_t, cpu = tables["media"], tables["kpi"], tables["cpu"]
    early = [_until(x, "2025-08-03") for x in (media, kpi_t, cpu)]
    later = [_until(x, "2025-08-31") for x in (media, kpi_t, cpu)]
    derived = M.fit_model(*early, cfg, geos=WEST)
    fixed = S.data_scales(derived.data)
    refit_fixed = M.fit_model(*later, cfg, geos=WEST, scales=fixed)
    later_scales = S.data_scales(M.prepare_model_data(*later, geos=WEST))  # the test's derived refit, unsampled
    moved = {c: later_scales.channel[c] / fixed.channel[c] for c in fixed.channel}
    ch = max(moved, key=moved.get)
    lam0 = derived.mmm.idata.posterior["saturation_lam"].sel(channel=ch).stack(s=("chain", "draw"))
    low, high = hdi_bounds(lam0.transpose("s", "geo").to_numpy())
    lam_fixed = refit_fixed.mmm.idata.posterior["saturation_lam"].sel(channel=ch).mean(("chain", "draw")).to_numpy()
    # position of the refit's mean inside the first fit's HDI: 0 at an edge, 0.5 mid-way, < 0 outside
    row["scales_lam_hdi_margin_min"] = float(np.min(np.minimum(lam_fixed - low, high - lam_fixed) / (high - low)))

    # test_controls_flow_from_the_file_into_the_model_and_marts_contributions
    inp = workdir / "controls_input"
    truth = _with_promo(workdir / "input", inp)
    _write_seed(inp, seed)
    wh = workdir / "controls.duckdb"
    runs = materialize(inp, wh, workdir / "controls_art", markets=["west"], select=["mmm_uncalibrated"])
    with warehouse.connect(wh) as con:
        cc = con.execute("SELECT component, week_start, geo, mean FROM marts.contributions_latest WHERE market = 'west' "
                         "AND variant = 'uncalibrated' AND component_type = 'control'").df()
    daily = truth["daily"]
    daily = daily[daily["geo"].isin(WEST)].copy()
    daily["week_start"] = (pd.to_datetime(daily["date_day"]) - pd.to_timedelta(
        pd.to_datetime(daily["date_day"]).dt.weekday, unit="D")).dt.date
    added_promo = daily[daily["week_start"].isin(set(pd.to_datetime(cc["week_start"]).dt.date))]["added"].sum()
    row.update(ok=bool(runs.success),
               controls_promo_over_added=float(cc[cc.component == "promo"]["mean"].sum() / added_promo),
               controls_price_over_added=float(abs(cc[cc.component == "price_index"]["mean"].sum()) / added_promo))
    row["seconds"] = round(time.perf_counter() - started, 1)
    row["posterior_fingerprint"] = float(rise.sum())
    return row


def measure_full(seed: int, workdir: Path) -> dict:
    """What the full-profile test asserts on: the sample's west market, both variants, full profile."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import materialize

    from mmm_pipeline import warehouse
    from mmm_pipeline.sample import generate_sample

    input_dir, wh, art = workdir / "input", workdir / "warehouse.duckdb", workdir / "artifacts"
    generate_sample(input_dir)
    _write_seed(input_dir, seed)
    started = time.perf_counter()
    result = materialize(input_dir, wh, art, profile="full", markets=["west"],
                         select=["lift_tests_model_units", "mmm_uncalibrated", "mmm_calibrated", "calibration_report"])
    with warehouse.connect(wh) as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest").df()
        report = con.execute("SELECT * FROM marts.calibration_report_latest WHERE parameter IN "
                             "('roas', 'response_at_current_spend')").df()
        tests = con.execute("SELECT test_id, geo, channel FROM raw.lift_tests WHERE geo IS NOT NULL").df()
        fit = con.execute("SELECT * FROM marts.lift_test_fit_latest").df()
    read = tests.merge(report, on=["geo", "channel"])
    widths = fit.assign(width=fit.predicted_hdi_high - fit.predicted_hdi_low).pivot_table(
        index=["test_id", "geo"], columns="variant", values="width")
    return {
        "seed": seed, "ok": bool(result.success), "seconds": round(time.perf_counter() - started, 1),
        "full_gated": int(bool(runs.gated.all() and len(runs) == 2)),
        "full_max_rhat": float(runs.max_rhat.max()), "full_min_ess_bulk": float(runs.min_ess_bulk.min()),
        "full_divergences": int(runs.divergences.sum()),
        "full_read_narrowing_min": float((1 - read.hdi_width_calibrated / read.hdi_width_uncalibrated).min()),
        "full_lift_narrowing_min": float((1 - widths.calibrated / widths.uncalibrated).min()),
        "posterior_fingerprint": float(runs.max_rhat.sum() + runs.min_ess_bulk.sum()),
        "warned_checks": "",
    }


def measure_tiny(seed: int, workdir: Path) -> dict:
    """tests/test_model.py's `fitted` fixture (west, fast profile, 150 tune + 200 draws, thin 2) with `seed`."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_model import WEST, sample_tables

    from mmm_pipeline import model as M
    from mmm_pipeline.model.lift_tests import convert_lift_tests
    from mmm_pipeline.sample import generate_sample

    started = time.perf_counter()
    generate_sample(workdir / "input")
    tables = sample_tables(workdir / "input")
    lift, _ = convert_lift_tests(tables["lift"], tables["daily"], WEST, market="west")
    cfg = M.load_model_config("fast", {**tables["model"], "random_seed": seed,
                                       "sampler": {"tune": 150, "draws": 200, "thin": 2}})
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg, geos=WEST, lift_tests=lift)
    d = res.diagnostics
    return {"seed": seed, "ok": True, "seconds": round(time.perf_counter() - started, 1), "warned_checks": "",
            "tiny_r2": float(d["r2"]), "tiny_mape": float(d["mape"]), "tiny_coverage_94": float(d["coverage_94"]),
            "posterior_fingerprint": float(d["r2"] + d["mape"])}


def measure_your_data(seed: int, workdir: Path) -> dict:
    """tests/test_your_data.py's run (5 geos of the converted Meridian table, fast profile) with `seed`:
    how far each geo's contributions, added up, fall from its KPI."""
    import pandas as pd

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import FIXTURES, materialize

    from mmm_pipeline import warehouse
    from mmm_pipeline.ingestion.convert import main as convert_main

    full = pd.read_csv(FIXTURES / "meridian_geo_media.csv")
    src = workdir / "meridian_5_geos.csv"
    full[full["geo"].isin(sorted(full["geo"].unique())[:5])].to_csv(src, index=False)
    folder = workdir / "meridian"
    convert_main([str(src), str(folder), "--preset", "meridian"])
    _write_seed(folder, seed)
    os.environ["MMM_INPUT_DIR"] = str(folder)  # the market partitions (one market `all`) are read at import
    started = time.perf_counter()
    wh = workdir / "w.duckdb"
    result = materialize(folder, wh, workdir / "art", markets=["all"], select=["mmm_uncalibrated"])
    with warehouse.connect(wh) as con:
        totals = con.execute(YOUR_DATA_TOTALS).fetchall()
    worst = max(abs(c / k - 1) for _, c, k in totals)
    return {"seed": seed, "ok": bool(result.success), "seconds": round(time.perf_counter() - started, 1),
            "warned_checks": "", "your_data_max_abs_total_error": float(worst), "posterior_fingerprint": float(worst)}


#: each geo's contributions added up (geo, contributions, KPI); tests/test_your_data.py reads the same
YOUR_DATA_TOTALS = (
    "SELECT c.geo, c.s, k.s FROM (SELECT geo, sum(mean) s FROM marts.contributions_latest GROUP BY 1) c "
    "JOIN (SELECT geo, sum(kpi_value) s FROM staging.kpi_weekly_latest WHERE NOT incomplete_week GROUP BY 1) k "
    "USING (geo)")

MODES = {"graph": measure_one, "holdout": measure_holdout, "direct": measure_direct, "full": measure_full,
         "tiny": measure_tiny, "your_data": measure_your_data}


def _worker(seed: int, mode: str) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"stoch-{seed}-"))
    try:
        return MODES[mode](seed, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(rows: list[dict]) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = [f"{len(df)} seeds; all runs ok: {bool(df.ok.all())}; seconds per seed: median {df.seconds.median():.0f}"]
    numeric = [c for c in df.columns if c not in ("seed", "ok", "seconds", "warned_checks", "posterior_fingerprint")
               and pd.api.types.is_numeric_dtype(df[c])]
    lines.append(f"{'statistic':<36} {'n':>3} {'min':>8} {'max':>8} {'mean':>8} {'sd':>8} {'min-3sd':>8} {'max+3sd':>8}"
                 "  test threshold")
    for c in numeric:
        s = df[c].dropna().astype(float)
        sd = s.std(ddof=1) if len(s) > 1 else 0.0
        test, threshold = THRESHOLDS.get(c, ("", ""))
        lines.append(f"{c:<36} {len(s):3d} {s.min():8.3f} {s.max():8.3f} {s.mean():8.3f} {sd:8.3f} {s.min() - 3 * sd:8.3f} "
                     f"{s.max() + 3 * sd:8.3f}  {threshold}")
    counts = df.warned_checks.fillna("").str.split(",").explode().replace("", None).dropna().value_counts()
    lines.append("checks that warned (seeds): " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    same = df.groupby("seed").posterior_fingerprint.nunique()
    repeated = same[df.groupby("seed").size() > 1]
    if len(repeated):
        lines.append("repeated seeds, distinct posteriors: " + ", ".join(f"{s}: {n}" for s, n in repeated.items())
                     + " (1 = identical draws across processes)")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="20", help="a count N (seeds 1..N) or a comma-separated list")
    ap.add_argument("--out", default=str(REPO / "bench" / "stochastic_thresholds.csv"))
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set in each worker, e.g. NUMBA_CPU_NAME=generic to compile as for another CPU")
    ap.add_argument("--holdout", action="store_true",
                    help="measure tests/test_holdout.py's direct fits instead of the sample_run graph")
    ap.add_argument("--direct", action="store_true",
                    help="measure the trend, fixed-scale and controls tests' direct fits instead")
    ap.add_argument("--full", action="store_true",
                    help="measure the full-profile test's fits (west market, both variants; minutes a seed)")
    ap.add_argument("--tiny", action="store_true", help="measure tests/test_model.py's tiny fit instead")
    ap.add_argument("--your-data", action="store_true",
                    help="measure tests/test_your_data.py's run on the converted Meridian table instead")
    ap.add_argument("--summarize", metavar="CSV", help="print the summary of a CSV this script wrote, and exit")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # worker: one seed, prints a JSON row
    args = ap.parse_args()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    if args.summarize:
        import pandas as pd

        print(summarize(pd.read_csv(args.summarize).to_dict("records")))
        return 0
    mode = next((m for m in MODES if getattr(args, m, False)), "graph")
    if args.one is not None:
        print("ROW " + json.dumps(_worker(args.one, mode)))
        return 0
    seeds = list(range(1, int(args.seeds) + 1)) if args.seeds.isdigit() else [int(s) for s in args.seeds.split(",")]
    rows = []
    for seed in seeds:
        # a process per seed: what one process compiled or cached cannot leak into the next one's draws
        proc = subprocess.run([sys.executable, __file__, "--one", str(seed)]
                              + ([f"--{mode.replace('_', '-')}"] if mode != "graph" else []),
                              capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, **dict(e.split("=", 1) for e in args.env)})
        found = [ln for ln in proc.stdout.splitlines() if ln.startswith("ROW ")]
        if proc.returncode or not found:
            print(f"seed {seed}: failed\n{proc.stderr[-3000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(found[-1][4:]))
        print(f"seed {seed}: {rows[-1]}", flush=True)
        import pandas as pd

        pd.DataFrame(rows).to_csv(args.out, index=False)
    print(summarize(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
