"""The model layer in the code location: fits per market, gates, marts, calibration report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline import model as model_lib
from mmm_pipeline import warehouse
from tests.conftest import check_results, materialize

MART_COLUMNS = {
    "marts.model_runs": ["model_version", "market", "variant", "data_version", "config_hash", "sampler", "chains",
                         "draws", "fit_seconds", "max_rhat", "min_ess_bulk", "divergences", "passed_gates",
                         "artifact_uri", "materialized_at"],
    "marts.contributions": ["model_version", "market", "variant", "week_start", "geo", "component",
                            "component_type", "mean", "hdi_low", "hdi_high"],
    "marts.lift_tests": ["test_id", "market", "channel", "geo", "x", "delta_x", "delta_y", "sigma",
                         "delta_y_window", "weeks_in_window", "cost_per_unit_used", "data_version"],
    "marts.calibration_report": ["model_version_uncalibrated", "model_version_calibrated", "market", "geo",
                                 "channel", "parameter", "hdi_width_uncalibrated", "hdi_width_calibrated",
                                 "precision_improvement_pct", "error_uncalibrated", "error_calibrated"],
    "marts.lift_test_fit": ["test_id", "market", "variant", "model_version", "predicted_mean",
                            "predicted_hdi_low", "predicted_hdi_high", "observed", "sigma", "z_score"],
}


# model_job's fits, and with them the calibration report (its lift_test_fit too)
FITS = ["lift_tests_model_units", "mmm_uncalibrated", "mmm_calibrated"]
FITS_AND_REPORT = [*FITS, "calibration_report"]


def events(result, kind):
    return [e for e in result.all_events if e.event_type_value == kind]


def test_each_market_fits_both_variants_and_publishes_the_marts(sample_run):
    assert sample_run["result"].success
    with warehouse.connect(sample_run["warehouse"]) as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest ORDER BY market, variant").df()
        tables = {t: [d[0] for d in con.execute(f"SELECT * FROM {t} LIMIT 0").description] for t in MART_COLUMNS}
        contrib = con.execute("SELECT * FROM marts.contributions_latest").df()
        lift = con.execute("SELECT * FROM marts.lift_tests_latest").df()
    for table, cols in MART_COLUMNS.items():
        assert set(cols) <= set(tables[table]), (table, set(cols) - set(tables[table]))
    assert runs[["market", "variant"]].values.tolist() == [
        ["east", "calibrated"], ["east", "uncalibrated"], ["west", "calibrated"], ["west", "uncalibrated"]]
    assert (runs.divergences == 0).all() and (runs.sampler == "nutpie").all()  # 0 in 20 seeds x 4 fits
    assert not runs.gated.any()  # fast profile: gates only warn, outputs are marked ungated
    assert runs.model_version.nunique() == 4
    for r in runs.itertuples():
        assert r.artifact_uri.endswith(f"{r.variant}/{r.market}/{r.model_version}.nc")
    # contributions: every channel, the baseline, seasonality, the promotion control and the sample's
    # trend (its pipeline.yaml: trend linear), per geo and week, in KPI units
    assert set(contrib.component_type) == {"media", "baseline", "seasonality", "control", "trend"}
    assert set(contrib[contrib.component_type == "control"].component) == {"promo"}
    assert set(contrib[contrib.component_type == "media"].component) == {"youtube", "search", "social", "retail"}
    assert (contrib.hdi_low <= contrib["mean"]).all() and (contrib["mean"] <= contrib.hdi_high).all()
    assert contrib.groupby(["market", "variant"]).geo.nunique().tolist() == [3, 3, 3, 3]
    # in-sample fit per geo, each against its own mean: below the pooled R-squared on geo data
    with warehouse.connect(sample_run["warehouse"]) as con:
        by_geo = con.execute("SELECT * FROM marts.model_fit_geo_latest").df()
    assert by_geo.groupby(["market", "variant"]).geo.nunique().tolist() == [3, 3, 3, 3]
    assert (by_geo.weeks == 104).all()
    worst = by_geo.loc[by_geo.groupby(["market", "variant"]).r2.idxmin()].sort_values(["market", "variant"])
    assert worst.geo.tolist() == runs.worst_geo.tolist()
    assert (runs.worst_geo_r2 < runs.r2).all()
    # prior vs posterior per media parameter element: the sample's data inform nearly every one. Which
    # shape elements stay at their prior in the fast profile (2 x 200 draws) varies with the draws, and
    # the draws vary across machines and processes (bench/README.md, "Draws, seeds and the tests'
    # thresholds"): over 20 seeds, 0-4 elements per run, of adstock_alpha, saturation_lam and
    # saturation_beta (beta is derived from the ROI and lam, so a loose lam loosens it). No count is
    # asserted. What holds whatever the draws: the ROI the money answers rest on is informed (its
    # smallest contraction over 20 seeds 0.54-0.69, min - 3 sd 0.43, where 0.1 flags an element), and
    # the check flags exactly the fits with flagged elements (below).
    with warehouse.connect(sample_run["warehouse"]) as con:
        shift = con.execute("SELECT * FROM marts.prior_posterior_latest").df()
    # saturation_roi: the ROI parameterization's prior (beta is derived from it and lam)
    assert len(shift) == 4 * 3 * 4 * 4 and set(shift.parameter) == {"adstock_alpha", "saturation_lam",
                                                                     "saturation_beta", "saturation_roi"}
    assert shift.contraction.median() > 0.5  # 20 seeds: 0.825-0.847
    roi = shift[shift.parameter == "saturation_roi"]
    assert not roi.prior_dominated.any() and roi.contraction.min() > 0.3, roi
    flagged = shift[shift.prior_dominated]
    by_market = {}
    for res in sample_run["result"].results[1:]:
        for e in res.all_events:
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and \
                    e.asset_check_evaluation_data.check_name == "data_informative":
                by_market.setdefault(res.run_id, []).append(e.asset_check_evaluation_data.passed)
    # the flag is the check's: it fails exactly where elements were flagged
    assert sum(not p for ps in by_market.values() for p in ps) == flagged.groupby(["market", "variant"]).ngroups
    # lift tests: the national test is split into each market's geos
    national = lift[lift.test_id == "LT-2025-05"]
    assert sorted(national.geo) == sorted(["US-CA", "US-TX", "US-WA", "US-NY", "US-FL", "US-IL"])
    # ... and between the markets by spend (the default): marts.national_test_split says so, and each
    # calibrated model's term is the conversion's
    with warehouse.connect(sample_run["warehouse"]) as con:
        split = con.execute("SELECT * FROM marts.national_test_split_latest").df().set_index("market")
        observed = con.execute("SELECT market, observed, sigma FROM marts.lift_test_fit_latest WHERE "
                               "test_id = 'LT-2025-05' AND variant = 'calibrated'").df().set_index("market")
    assert sorted(split.index) == ["east", "west"] and (split.test_id == "LT-2025-05").all()
    assert split.method.str.startswith("spend_share").all() and split.lift_share_mean.isna().all()
    assert split.spend_share.sum() == pytest.approx(1.0) and split.delta_y_test.sum() == pytest.approx(120084.16)
    terms = national.drop_duplicates("market").set_index("market")
    for market in ("east", "west"):
        assert split.loc[market, "delta_y_test"] == pytest.approx(terms.loc[market, "delta_y_test"])
        assert split.loc[market, "sigma_test"] == pytest.approx(terms.loc[market, "sigma_test"])
        assert observed.loc[market, "observed"] == pytest.approx(terms.loc[market, "delta_y_test"])


def test_a_national_test_can_be_split_by_the_markets_predicted_lifts(sample_run):
    """`lift_tests.national_split: predicted_lift`: each market's share of LT-2025-05 is its share of the
    lift both markets' uncalibrated models predict for it; the shares' posterior sd widens the terms."""
    from mmm_pipeline.model import market as market_lib
    from mmm_pipeline.settings import load_pipeline_config

    config, _ = load_pipeline_config(sample_run["input"])
    config = config.model_copy(update={"lift_tests": config.lift_tests.model_copy(
        update={"national_split": "predicted_lift"})})
    with warehouse.connect(sample_run["warehouse"]) as con:
        runs = con.execute("SELECT market, model_version FROM marts.model_runs_latest WHERE variant = "
                           "'uncalibrated'").df().set_index("market")
        terms, splits = {}, {}
        for market in ("east", "west"):
            inputs = market_lib.read_inputs(con, config, market, profile="fast", input_dir=sample_run["input"])
            lift, _ = market_lib.calibration_inputs(con, inputs, "calibrated")
            terms[market], splits[market] = market_lib.national_test_split(con, inputs, lift, log=lambda _: None)
    split = splits["west"].set_index("market")
    assert splits["east"].set_index("market").equals(split)  # both markets' fits see the same split
    assert (split.method == "predicted_lift").all()
    assert split.lift_share_mean.sum() == pytest.approx(1.0) and (split.lift_share_sd > 0).all()
    assert (split.lift_share_hdi_low < split.lift_share_mean).all() and \
        (split.lift_share_mean < split.lift_share_hdi_high).all()
    assert split.delta_y_test.sum() == pytest.approx(120084.16)
    assert (split.uncalibrated_model_version == runs.model_version.reindex(split.index)).all()
    for market in ("east", "west"):
        rows = terms[market][terms[market].test_id == "LT-2025-05"]
        assert rows.delta_y_test.tolist() == pytest.approx([split.loc[market, "delta_y_test"]] * len(rows))
        s, sd = split.loc[market, "lift_share_mean"], split.loc[market, "lift_share_sd"]
        assert rows.sigma_test.iloc[0] == pytest.approx(np.sqrt(26364.65 ** 2 * s + (120084.16 * sd) ** 2))
        other = terms[market][terms[market].test_id != "LT-2025-05"]
        assert (other.delta_y_test > 0).all()  # geo tests keep their own readouts


def test_make_run_fits_every_uncalibrated_model_first_when_markets_split_by_predicted_lift(
        sample_run, copy_input, tmp_path):
    """With `national_split: predicted_lift` run_all runs each market's first stage (lift tests, curve
    family, uncalibrated fit, out-of-sample refit) for every market before any calibrated fit, whose
    national term is then its predicted share. The uncalibrated fits load from the shared artifacts."""
    import shutil

    import yaml

    folder = copy_input(sample_run["input"])
    spec = yaml.safe_load((folder / "pipeline.yaml").read_text())
    spec.setdefault("lift_tests", {})["national_split"] = "predicted_lift"
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    art = tmp_path / "art"
    shutil.copytree(sample_run["artifacts"], art)
    runs = materialize(folder, tmp_path / "w.duckdb", art)
    assert runs.success
    def materialized(run) -> list[str]:
        return sorted({e.asset_key.to_user_string() for e in run.all_events
                       if e.event_type_value == "ASSET_MATERIALIZATION"})

    model_runs = [r for r in runs.results if r.job_def.name == "model_job"]  # per market: first stage, rest
    first = ["lift_tests_model_units", "mmm_uncalibrated", "model_family", "model_validation"]
    assert [materialized(r) == first for r in model_runs] == [True, False, True, False]
    assert all("mmm_calibrated" in materialized(r) and "mmm_uncalibrated" not in materialized(r)
               for r in model_runs[1::2])
    # every first stage ended before any calibrated fit's run started
    record = {r.run_id: runs.instance.get_run_record_by_id(r.run_id) for r in model_runs}
    last_first_end = max(record[r.run_id].end_time for r in model_runs[0::2])
    assert all(record[r.run_id].start_time >= last_first_end for r in model_runs[1::2])
    assert any("already exists" in m for m in runs.log_messages())  # loaded, not refitted
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        split = con.execute("SELECT * FROM marts.national_test_split_latest").df().set_index("market")
        fit = con.execute("SELECT market, observed FROM marts.lift_test_fit_latest WHERE test_id = 'LT-2025-05' "
                          "AND variant = 'calibrated'").df().set_index("market")
    assert (split.method == "predicted_lift").all() and split.lift_share_mean.sum() == pytest.approx(1.0)
    assert fit.observed.sort_index().tolist() == pytest.approx(split.delta_y_test.sort_index().tolist())


def test_saved_artifact_round_trips_with_its_cost_per_unit(sample_run):
    with warehouse.connect(sample_run["warehouse"]) as con:
        run = con.execute("SELECT * FROM marts.model_runs_latest WHERE market = 'west' AND variant = 'calibrated'").df()
    mmm = model_lib.load_model(run.artifact_uri[0])
    assert "channel_spend" in mmm.idata.constant_data  # historical cost per unit travels with the model
    again = model_lib.load_model(run.artifact_uri[0])
    assert (model_lib.predict_mean(mmm) == model_lib.predict_mean(again)).all()


def test_convergence_checks_report_and_only_warn_in_fast_profile(sample_run):
    result = sample_run["result"]
    gate = [e.asset_check_evaluation_data for e in events(result, "ASSET_CHECK_EVALUATION")
            if e.asset_check_evaluation_data.check_name == "convergence"]
    assert len(gate) == 4
    assert {g.severity.value for g in gate} == {"WARN"}
    assert all("max_rhat" in g.metadata and "offending_parameters" in g.metadata for g in gate)
    logs = " ".join(result.log_messages())  # sampler progress and stage timings in the run log
    assert "sampling with nutpie" in logs and "stage sample" in logs


def test_calibration_report_compares_both_models_with_the_truth(sample_run):
    with warehouse.connect(sample_run["warehouse"]) as con:
        report = con.execute("SELECT * FROM marts.calibration_report_latest").df()
        fit = con.execute("SELECT * FROM marts.lift_test_fit_latest").df()
    assert set(report.parameter) == {"saturation_lam", "saturation_beta", "adstock_alpha", "roas",
                                     "response_at_current_spend"}
    assert len(report) == 2 * 3 * 4 * 5  # markets x geos x channels x (3 parameters + ROAS + response)
    assert report.truth.notna().all() and report.error_calibrated.notna().all()
    assert report.bias_improvement_pct.notna().all() and report.truth_in_hdi_calibrated.notna().all()
    # one lift_test_fit row per test and variant (the national test is one term per market)
    assert not fit.duplicated(["market", "test_id", "variant"]).any()
    assert report.model_version_calibrated.notna().all()
    assert set(fit.variant) == {"uncalibrated", "calibrated"}
    # the calibrated model is pulled towards the measured lifts (20 seeds: mean z^2 calibrated / uncalibrated
    # 0.29-0.42)
    z = fit.groupby("variant").z_score.apply(lambda s: (s ** 2).mean())
    assert z["calibrated"] < z["uncalibrated"]
    mats = {e.event_specific_data.materialization.asset_key.to_user_string()
            for e in events(sample_run["result"], "ASSET_MATERIALIZATION")}
    assert {"lift_tests_model_units", "mmm_uncalibrated", "mmm_calibrated", "calibration_report"} <= mats


def test_calibration_is_checked_against_the_reweighted_uncalibrated_fit_and_each_test_held_out(sample_run):
    """Every market: marts.calibration_consistency (each test's implied lift, each tested cell's ROAS
    and mROAS) and marts.lift_test_holdout (one row per test), the calibration_consistent check run.
    Which verdicts come out depends on the draws (fast profile: few); the rows and their shape do not."""
    with warehouse.connect(sample_run["warehouse"]) as con:
        cons = con.execute("SELECT * FROM marts.calibration_consistency_latest").df()
        hold = con.execute("SELECT * FROM marts.lift_test_holdout_latest").df()
        fit = con.execute("SELECT market, test_id FROM marts.lift_test_fit_latest WHERE variant = 'calibrated'").df()
    for market in ("east", "west"):
        assert set(hold.loc[hold.market == market, "test_id"]) == set(fit.loc[fit.market == market, "test_id"])
        assert set(cons.loc[cons.market == market, "quantity"]) == {"implied_lift", "roas", "mroas"}
    assert cons.verdict.isin(["consistent", "inconsistent", "experiments_disagree"]).all()
    assert (cons.pareto_k.notna() & cons.uncalibrated_sd.gt(0) & cons.mcse.gt(0)).all()
    # west holds two social tests (LT-2025-01 in US-TX, its share of the national LT-2025-05): each is
    # predicted from the other; every other test of the sample has no sibling of its channel
    scored = hold[hold.method.isin(["reweighted", "needs_refit"])]
    assert sorted(zip(scored.market, scored.test_id)) == [("west", "LT-2025-01"), ("west", "LT-2025-05")]
    assert (scored.predicted_hdi_low <= scored.predicted_mean).all() and scored.z.notna().all()
    assert scored.log_pred_density.notna().all() and scored.pareto_k.notna().all()
    rest = hold.drop(scored.index)
    assert rest.method.str.startswith("not_scored").all() and rest.predicted_mean.isna().all()
    assert hold.uncal_predicted_mean.notna().all() and hold.uncal_z.notna().all()
    checks = [e.asset_check_evaluation_data for e in events(sample_run["result"], "ASSET_CHECK_EVALUATION")
              if e.asset_check_evaluation_data.check_name == "calibration_consistent"]
    assert len(checks) == 2 and all("pareto_k" in c.metadata for c in checks)


@pytest.mark.fit
def test_a_starved_fit_retries_then_delivers_marked_ungated_or_blocks_with_strict_gates(
        sample_dir, copy_input, tmp_path):
    # One variant: the ladder, the marking and strict_gates are one code path for both (the
    # calibrated fit adds a likelihood term), and each starved attempt is mostly its compile.
    folder = copy_input(sample_dir)
    with open(folder / "pipeline.yaml", "a") as fh:
        fh.write("model:\n  retry: {ladder: [{name: longer tuning, tune_multiplier: 2}]}\n"
                 "  profiles:\n    full:\n      sampler: {chains: 1, tune: 5, draws: 5}\n")
    db, art = tmp_path / "w.duckdb", tmp_path / "art"
    outputs = ["response_curves", "channel_roas"]
    result = materialize(folder, db, art, profile="full", markets=["west"],
                         select=["mmm_uncalibrated", *outputs, "budget_allocation"])
    assert result.success  # the failed gates warn: the user still gets an answer
    gates = {(e.asset_check_evaluation_data.asset_key.to_user_string(), e.asset_check_evaluation_data.check_name):
             e.asset_check_evaluation_data for e in events(result, "ASSET_CHECK_EVALUATION")}
    gate = gates[("mmm_uncalibrated", "convergence")]
    assert not gate.passed and gate.severity.value == "WARN" and gate.metadata["attempts"].value == 2
    assert gate.metadata["offending_parameters"].value  # names the parameters
    with warehouse.connect(db) as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest ORDER BY variant").df()
        roas = con.execute("SELECT DISTINCT variant, gated, gate_reason FROM marts.channel_roas_latest").df()
        plan = con.execute("SELECT * FROM marts.allocation_plan_latest").df()
    assert runs.variant.tolist() == ["uncalibrated"] and (runs.attempts == 2).all() and not runs.gated.any()
    history = [json.loads(h) for h in runs.attempt_history]
    assert [[(a["rung"], a["tune"], a["draws"]) for a in h] for h in history] == \
        [[("as configured", 5, 5), ("longer tuning", 10, 5)]]
    assert roas.variant.tolist() == ["uncalibrated"] and not roas.gated.any()
    assert roas.gate_reason.str.startswith("convergence gate failed: max R-hat").all()
    # the plan falls back to the only model there is, and says it is not gated
    assert plan.variant.tolist() == ["uncalibrated"] and not plan.gated.any()

    # strict_gates: the same failed fit (strict_gates is not part of the model version, so the
    # artifact is reused, not refitted) now blocks every output
    text = (folder / "pipeline.yaml").read_text().replace("model:\n", "model:\n  strict_gates: true\n")
    (folder / "pipeline.yaml").write_text(text)
    strict = materialize(folder, db, art, profile="full", markets=["west"], select=["mmm_uncalibrated", *outputs])
    assert not strict.success
    gates = {(e.asset_check_evaluation_data.asset_key.to_user_string(), e.asset_check_evaluation_data.check_name):
             e.asset_check_evaluation_data for e in events(strict, "ASSET_CHECK_EVALUATION")}
    assert gates[("mmm_uncalibrated", "convergence")].severity.value == "ERROR"
    materialized = {e.event_specific_data.materialization.asset_key.to_user_string():
                    e.event_specific_data.materialization.metadata
                    for e in events(strict, "ASSET_MATERIALIZATION")}
    assert materialized["mmm_uncalibrated"]["reused_existing_artifact"].value is True
    assert not materialized.keys() & set(outputs)


@pytest.mark.fit
def test_without_valid_lift_tests_the_calibrated_variant_is_not_fitted(sample_dir, copy_input, tmp_path):
    folder = copy_input(sample_dir)
    tests = pd.read_csv(folder / "lift_tests.csv")
    tests["channel"] = "tv"  # no such channel: every test is quarantined
    tests.to_csv(folder / "lift_tests.csv", index=False)
    db = tmp_path / "w.duckdb"
    result = materialize(folder, db, tmp_path / "art", markets=["east"], select=FITS_AND_REPORT)
    with warehouse.connect(db) as con:
        runs = con.execute("SELECT variant FROM marts.model_runs_latest").df()
        q = con.execute("SELECT reason FROM raw.quarantine WHERE kind LIKE 'lift_test_conversion%'").df()
        report = con.execute("SELECT * FROM marts.calibration_report_latest").df()
    assert runs.variant.tolist() == ["uncalibrated"]
    assert len(q) == 3 and q.reason.str.startswith("unknown_channel").all()  # east geos + the national test
    assert report.hdi_width_calibrated.isna().all() and report.hdi_width_uncalibrated.notna().all()
    meta = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in events(result, "ASSET_MATERIALIZATION")}
    assert meta["mmm_calibrated"]["fitted"].value is False
    assert "not fitted" in meta["calibration_report"]["note"].value


@pytest.mark.slow
def test_full_profile_passes_the_gates_and_calibration_narrows_tested_roas(sample_dir, copy_input, tmp_path):
    """The newcomer's `make run` on one market: full profile on the sample, every gate green;
    calibration narrows what a marketer reads at the tested cells (ROAS, response at current spend)
    and the model-implied lift at every test.

    West only (2 of `make run`'s 4 full fits): its market holds two geo tests (social US-TX,
    search US-WA) and its share of the national test; the markets are fitted independently, and
    east's full fits are measured by `make run` and bench/bench_recovery.py."""
    folder = copy_input(sample_dir)
    # Sampling is not bit-identical across processes: on the sample a full fit has shown one
    # divergence in 8,000 draws now and then (issue 12: retry ladder). One fresh attempt is allowed;
    # the second must pass every gate.
    for attempt in (1, 2):
        db, art = tmp_path / f"w{attempt}.duckdb", tmp_path / f"art{attempt}"
        result = materialize(folder, db, art, profile="full", markets=["west"], select=FITS_AND_REPORT)
        if result.success:
            break
    assert result.success
    with warehouse.connect(db) as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest").df()
        report = con.execute("SELECT * FROM marts.calibration_report_latest WHERE parameter IN "
                             "('roas', 'response_at_current_spend', 'saturation_beta')").df()
        tests = con.execute("SELECT test_id, geo, channel FROM raw.lift_tests WHERE geo IS NOT NULL").df()
        fit = con.execute("SELECT * FROM marts.lift_test_fit_latest").df()
    # 20 seeds (bench/stochastic_thresholds.py --full): gated at the first attempt in 20 of 20, max R-hat
    # 1.003-1.004, min bulk ESS 1,779-2,335, no divergence; tested ROAS / response narrowing >= 12.8%
    # (min - 3 sd 7.7%), each test's lift >= 23.5% (min - 3 sd 19.9%)
    assert len(runs) == 2 and set(runs.market) == {"west"} and runs.passed_gates.all() and runs.gated.all()
    assert (runs.max_rhat <= 1.01).all() and (runs.min_ess_bulk >= 400).all() and (runs.divergences == 0).all()
    tested = tests.merge(report, on=["geo", "channel"])
    assert sorted(tested.test_id.unique()) == ["LT-2025-01", "LT-2025-02"]
    shown = tested[["test_id", "geo", "channel", "parameter", "precision_improvement_pct"]]
    # Each tested cell's ROAS and response at current spend narrow (make run, 2026-12-04: 29% and 16%
    # for ROAS, 27% and 17% for the response). Not asserted on beta: it trades off against lam along
    # a ridge, so its own HDI may not narrow (+7.1% / +0.1% in that run, -1.9% / -3.7% in a CI run).
    read = tested[tested.parameter.isin(["roas", "response_at_current_spend"])]
    assert len(read) == 4 and (read.hdi_width_calibrated < read.hdi_width_uncalibrated).all(), shown
    # what a lift test measures directly: the lift at its operating point
    width = (fit.predicted_hdi_high - fit.predicted_hdi_low)
    widths = fit.assign(width=width).pivot_table(index=["test_id", "market", "geo"], columns="variant",
                                                 values="width")
    assert {"LT-2025-01", "LT-2025-02", "LT-2025-05"} <= set(fit.test_id)  # the national test too
    assert (widths.calibrated < widths.uncalibrated).all(), widths


def test_rerun_reuses_the_artifact_and_a_truncated_artifact_is_refitted(sample_run, tmp_path):
    import shutil

    db, art = tmp_path / "w.duckdb", tmp_path / "art"
    shutil.copy(sample_run["warehouse"], db)
    shutil.copytree(sample_run["artifacts"], art)
    with warehouse.connect(db) as con:
        run = con.execute("SELECT * FROM marts.model_runs_latest WHERE market = 'west' AND variant = 'uncalibrated'").df()
    artifact = art / "uncalibrated" / "west" / f"{run.model_version[0]}.nc"
    size = artifact.stat().st_size
    with open(artifact, "r+b") as fh:  # a crash in the middle of a copy
        fh.truncate(size // 3)
    result = materialize(sample_run["input"], db, art, markets=["west"], select=FITS)
    assert result.success
    logs = " ".join(result.log_messages())
    assert "truncated, corrupt" in logs and "refitting" in logs
    assert "already exists" in logs  # the calibrated artifact was intact: loaded, not refitted
    assert artifact.stat().st_size > size // 3
    model_lib.load_model(artifact)
    with warehouse.connect(db) as con:
        again = con.execute("SELECT count(*) FROM marts.model_runs WHERE market = 'west'").fetchall()[0][0]
    assert again == 2  # same versions: no history appended


def test_outputs_speak_money_and_are_marked_ungated_in_fast_profile(sample_run):
    with warehouse.connect(sample_run["warehouse"]) as con:
        curves = con.execute("SELECT * FROM marts.response_curves_latest").df()
        roas = con.execute("SELECT * FROM marts.channel_roas_latest").df()
        alloc = con.execute("SELECT * FROM marts.budget_allocation_latest").df()
        runs = con.execute("SELECT market, variant, model_version FROM marts.model_runs_latest").df()
    for table, cols in {
        "response_curves": ["model_version", "market", "variant", "gated", "geo", "channel", "spend", "units",
                            "response_mean", "hdi_low", "hdi_high"],
        "channel_roas": ["model_version", "market", "variant", "gated", "geo", "channel", "spend",
                         "contribution_mean", "roas_mean", "roas_hdi_low", "roas_hdi_high", "mroas_mean",
                         "cost_per_incremental_kpi"],
        "budget_allocation": ["allocation_id", "market", "model_version", "variant", "gated", "geo", "channel",
                              "current_spend", "optimal_spend", "optimal_units", "cost_per_unit",
                              "expected_response_mean", "expected_response_hdi_low", "expected_response_hdi_high",
                              "current_response_mean", "extrapolated", "total_budget", "horizon_weeks"],
    }.items():
        df = {"response_curves": curves, "channel_roas": roas, "budget_allocation": alloc}[table]
        assert set(cols) <= set(df.columns), (table, set(cols) - set(df.columns))
        assert not df.gated.any()
    # the plan moves a cell only where the posterior is confident the move gains (else it holds it)
    with warehouse.connect(sample_run["warehouse"]) as con:
        plans = con.execute("SELECT * FROM marts.allocation_plan_latest").df()
    assert alloc.chosen.all() and plans.chosen.all() and len(plans) == 2
    for p in plans.itertuples():
        cells = alloc[(alloc.market == p.market) & (alloc.allocation_id == p.allocation_id)]
        assert p.min_probability_of_gain == 0.9 and p.decision in ("move", "keep_current_mix")
        assert p.decision == "keep_current_mix" or p.probability_of_gain >= 0.9, p
        held = cells[cells.move == "hold"]
        assert len(held) == p.held_cells and np.allclose(held.optimal_spend, held.current_spend)
        up, down = cells[cells.move == "increase"], cells[cells.move == "decrease"]
        assert (up.optimal_spend > up.current_spend).all() and (down.optimal_spend < down.current_spend).all()
        assert cells.lift_tests.notna().any()  # the sample's tests stand behind some cells
    # curves: per model, geo and channel, from zero spend and non-decreasing, in money
    for _, c in curves.groupby(["market", "variant", "geo", "channel"]):
        c = c.sort_values("spend")
        assert c.spend.iloc[0] == 0 and c.response_mean.iloc[0] == 0
        assert (c.response_mean.diff().dropna() >= 0).all()
        assert c.spend.max() >= 2 * c.max_weekly_spend.iloc[0] - 1e-6
    spend_only = curves[curves.channel == "retail"]
    assert (spend_only.spend == spend_only.units).all()
    assert curves.merge(runs, on=["market", "variant", "model_version"]).shape[0] == len(curves)
    # ROAS of every cell is its contribution over its spend
    assert ((roas.roas_mean - roas.contribution_mean / roas.spend).abs() <= 1e-9 * roas.roas_mean.abs()).all()
    # the default allocation: today's budget, each cell within +/-50%, money in = money out
    for (market, aid), a in alloc.groupby(["market", "allocation_id"]):
        assert aid == "default" and a.variant.eq("calibrated").all()
        assert abs(a.optimal_spend.sum() - a.total_budget.iloc[0]) <= 1e-3 * a.total_budget.iloc[0]
        assert a.total_budget.iloc[0] == pytest.approx(a.current_spend.sum())
        assert (a.optimal_spend >= 0.5 * a.current_spend - 1e-6).all()
        assert (a.optimal_spend <= 1.5 * a.current_spend + 1e-6).all()
        assert (a.optimal_units * a.cost_per_unit - a.optimal_spend).abs().max() <= 1e-6 * a.optimal_spend.max()
        assert a.expected_response_mean.sum() >= a.current_response_mean.sum()
    mats = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in events(sample_run["result"], "ASSET_MATERIALIZATION")}
    assert {"plot_curve_social", "plot_allocation_default"} <= set(mats["response_curves"]) | set(mats["budget_allocation"])
    assert mats["budget_allocation"]["plot_allocation_default"].value.startswith("![")


def test_a_scenario_config_error_names_the_setting(sample_run, copy_input, tmp_path):
    import shutil

    import dagster as dg

    from tests.conftest import definitions

    folder = copy_input(sample_run["input"])
    with open(folder / "pipeline.yaml", "a") as fh:
        fh.write("scenarios:\n  - {allocation_id: tv_push, market: west, total_budget: 1000000,\n"
                 "     bounds: {'US-CA/tv': [0.5, 2.0]}}\n"
                 "  - {allocation_id: too_small, market: west, total_budget: 1000,\n"
                 "     bounds: {'*/*': [0.9, 1.1]}}\n")
    db, art = tmp_path / "w.duckdb", tmp_path / "art"
    shutil.copy(sample_run["warehouse"], db)
    shutil.copytree(sample_run["artifacts"], art)
    defs = definitions(folder, db, art)
    job = defs.resolve_job_def("model_job")
    result = job.execute_in_process(partition_key="west", raise_on_error=False, instance=dg.DagsterInstance.ephemeral(),
                                    asset_selection=[dg.AssetKey("budget_allocation")])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert "pipeline.yaml scenarios[tv_push].bounds: channel 'tv' is not a channel of market west" in text


def test_each_market_is_validated_out_of_sample_against_a_naive_forecast(sample_run):
    with warehouse.connect(sample_run["warehouse"]) as con:
        val = con.execute("SELECT * FROM marts.model_validation_latest ORDER BY market, geo").df()
        weekly = con.execute("SELECT * FROM marts.model_validation_weekly_latest").df()
    assert val.groupby("market")["geo"].apply(set).to_dict() == {
        "east": {"US-FL", "US-IL", "US-NY", "market"}, "west": {"US-CA", "US-TX", "US-WA", "market"}}
    market = val[val["geo"] == "market"].set_index("market")
    # the sample's model, promotion control included, forecasts the last 8 weeks about as well as the naive
    # forecast or better: over 20 seeds the worse market's MAPE is 0.90-0.97 of the naive one's (max + 3 sd
    # 1.03, so "beats it in every market" would fail by chance); its MAPE 0.033-0.036, its coverage 0.875
    assert (market["model_mape"] < 1.1 * market["baseline_mape"]).all() and market["beats_baseline"].any(), market
    assert (market["model_mape"] < 0.08).all() and (market["coverage_94"] >= 0.75).all()
    assert (weekly.groupby("market").size() == 8 * 3).all()
    assert str(pd.Timestamp(max(weekly["week_start"])).date()) == "2025-12-22"
    checks = {(e.asset_check_evaluation_data.check_name, e.asset_check_evaluation_data.passed)
              for e in events(sample_run["result"], "ASSET_CHECK_EVALUATION")}
    assert ("beats_naive_forecast", True) in checks


def test_too_short_a_history_for_the_holdout_warns_and_does_not_stop_the_run(sample_dir, copy_input, tmp_path):
    folder = copy_input(sample_dir)
    with open(folder / "pipeline.yaml", "a") as fh:
        fh.write("model:\n  validation:\n    holdout_weeks: 52\n")
    # 104 complete weeks hold 52 out and 52 to fit on; trimmed to 70 weeks of KPI, 52 + 26 do not fit
    kpi = pd.read_csv(folder / "kpi" / "kpi.csv")
    kpi[kpi["date_day"] < "2025-05-05"].to_csv(folder / "kpi" / "kpi.csv", index=False)
    result = materialize(folder, tmp_path / "w.duckdb", tmp_path / "art", markets=["west"],
                         select=["model_validation"])
    assert result.success
    check = [e.asset_check_evaluation_data for e in events(result, "ASSET_CHECK_EVALUATION")
             if e.asset_check_evaluation_data.check_name == "beats_naive_forecast"][0]
    assert not check.passed and check.severity.value == "WARN"
    assert "needs at least 78 complete weeks" in check.metadata["reason"].value


@pytest.mark.slow
def test_a_later_run_scores_the_earlier_models_forecast_on_the_weeks_that_came(sample_dir, copy_input, tmp_path):
    """Issue 31's track record: a run stores its model's forecast of the coming weeks; a later run, whose
    KPI reaches them, re-evaluates that model on the spend that happened and compares both with the KPI
    that came. The first run sees the KPI without its last 8 weeks (media complete: a week is modelled
    when both are), the second the whole file (the ingest and the track record: no refit, to keep the
    test short; a refit's new model is forecast, not scored, until its own weeks come)."""
    folder = copy_input(sample_dir)
    kpi_file = folder / "kpi" / "kpi.csv"
    kpi = pd.read_csv(kpi_file)
    days = pd.to_datetime(kpi["date_day"])
    last_monday = days.max() - pd.to_timedelta(days.max().weekday(), unit="D")
    cutoff = last_monday - pd.Timedelta(weeks=8)
    kpi[days < cutoff].to_csv(kpi_file, index=False)
    db, art = tmp_path / "w.duckdb", tmp_path / "art"
    select = ["mmm_uncalibrated", "forecast_track_record"]
    assert materialize(folder, db, art, markets=["west"], select=select).success
    with warehouse.connect(db) as con:
        forecast = con.execute("SELECT * FROM marts.kpi_forecast_latest").df()
        first = con.execute("SELECT model_version FROM marts.model_runs_latest").fetchone()[0]
        scored = warehouse.table_exists(con, "marts.track_record")
    assert set(forecast["model_version"]) == {first} and not scored
    weeks = sorted(pd.to_datetime(forecast["week_start"]).unique())
    assert len(weeks) == 8 and weeks[0] == cutoff and set(forecast["geo"]) == {"US-CA", "US-TX", "US-WA", "market"}

    kpi.to_csv(kpi_file, index=False)  # the weeks arrive; the weekly ingest runs, the model is not refitted
    result = materialize(folder, db, art, markets=["west"], select=["forecast_track_record"])
    assert result.success
    with warehouse.connect(db) as con:
        record = con.execute("SELECT * FROM marts.track_record_latest").df()
        actual = con.execute("SELECT week_start, geo, kpi_value FROM staging.kpi_weekly_latest").df()
        forecasts = con.execute("SELECT DISTINCT model_version FROM marts.kpi_forecast").df()
    assert set(forecasts["model_version"]) == {first} and set(record["model_version"]) == {first}
    assert sorted(pd.to_datetime(record["week_start"]).unique()) == weeks[:len(record["week_start"].unique())]
    assert len(record["week_start"].unique()) >= 7   # the last week may be incomplete in the data
    on_day = lambda df: df.assign(week_start=pd.to_datetime(df["week_start"]).dt.date)  # noqa: E731
    per_geo = on_day(record[record["geo"] != "market"]).merge(on_day(actual), on=["week_start", "geo"])
    assert len(per_geo) == 3 * len(record["week_start"].unique())
    np.testing.assert_allclose(per_geo["actual"], per_geo["kpi_value"], rtol=1e-9)
    for p in ("forecast", "rescored"):
        np.testing.assert_allclose(record[f"{p}_error"], record[f"{p}_mean"] - record["actual"], rtol=1e-9)
        inside = (record["actual"] >= record[f"{p}_hdi_low"]) & (record["actual"] <= record[f"{p}_hdi_high"])
        assert (record[f"{p}_covered"].astype(bool) == inside).all()
    meta = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in events(result, "ASSET_MATERIALIZATION")}
    assert meta["forecast_track_record"]["models_scored"].value == 1
