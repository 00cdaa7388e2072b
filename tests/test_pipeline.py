"""The code location end to end: one shared materialization of the sample, plus failure paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mmm_pipeline import warehouse
from tests.conftest import REPO, check_results, materialize, snapshot

#: Model checks that warn on what the draws say (fast profile): a fresh clone may see them warn.
DRAW_DEPENDENT_WARNINGS = {"in_sample_fit", "data_informative", "convergence", "beats_naive_forecast"}

MART_COLUMNS = {
    "marts.cost_per_unit": ["week_start", "geo", "channel", "unit", "units", "spend", "cost_per_unit", "cpm",
                            "imputed", "data_version", "materialized_at"],
    "marts.cost_per_unit_forecast": ["week_start", "geo", "channel", "cost_per_unit", "method", "data_version"],
}


def test_sample_materializes_with_every_check_passing(sample_run):
    result = sample_run["result"]
    assert result.success
    checks = check_results(result)
    evaluations = [e.asset_check_evaluation_data for e in result.all_events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION"]
    failed = {(d.check_name, d.severity.value) for d in evaluations if not d.passed}
    # every blocking check passes, in every market; the freshness checks warn (the sample ends on
    # 2025-12-31); the fast profile's model checks judge draws and may warn: over 20 seeds in_sample_fit
    # warned in 17 (a geo's 94% interval covering above 0.99 of its weeks), data_informative in 13 (a shape
    # element at its prior), convergence in none (max R-hat 1.03-1.09, max + 3 sd 1.14 against the fast
    # gate's 1.1; min ESS 22-101 against 20; the default seed rerun in another process reached R-hat 1.19):
    # bench/README.md, "Draws, seeds and the tests' thresholds"
    assert {name for name, severity in failed if severity != "WARN"} == set(), failed
    assert {"raw_ad_reporting_freshness", "raw_kpi_freshness"} <= {name for name, _ in failed}
    assert {name for name, _ in failed} <= {"raw_ad_reporting_freshness", "raw_kpi_freshness",
                                            *DRAW_DEPENDENT_WARNINGS}, failed
    assert {"raw_ad_reporting_contract", "staging_media_weekly_contract", "staging_kpi_weekly_contract",
            "cost_per_unit_contract"} <= set(checks)
    with warehouse.connect(sample_run["warehouse"]) as con:
        media = con.execute("SELECT * FROM staging.media_weekly_latest").df()
        cpu = con.execute("SELECT * FROM marts.cost_per_unit_latest").df()
        fc = con.execute("SELECT * FROM marts.cost_per_unit_forecast_latest").df()
        cols = {t: [d[0] for d in con.execute(f"SELECT * FROM {t} LIMIT 0").description] for t in MART_COLUMNS}
    # 2024-01-01 .. 2025-12-31: 104 complete weeks + 1 incomplete, 6 geos, 4 channels
    assert len(media) == 105 * 6 * 4 and media.incomplete_week.sum() == 6 * 4
    assert set(media.unit) == {"impressions", "clicks", "spend"}
    assert (cpu.cost_per_unit > 0).all() and cpu.imputed.any()  # YouTube off-flights are imputed
    assert (cpu[cpu.unit == "spend"].cost_per_unit == 1.0).all()
    assert len(fc) == 8 * 6 * 4 and str(fc.week_start.min().date()) == "2025-12-29"
    for table, want in MART_COLUMNS.items():
        assert set(want) <= set(cols[table]), table


def test_sample_cost_per_unit_recovers_generated_cpm_shape(sample_run):
    with warehouse.connect(sample_run["warehouse"]) as con:
        cpu = con.execute("SELECT * FROM marts.cost_per_unit_latest WHERE channel = 'social' AND NOT imputed").df()
    q = pd.to_datetime(cpu.week_start).dt.quarter
    assert cpu[q == 4].cpm.mean() > 1.15 * cpu[q == 2].cpm.mean()  # the Q4 rise the generator built in
    by_geo = cpu.groupby("geo").cpm.mean()
    assert by_geo.max() / by_geo.min() > 1.1  # and geo differences


def test_ui_metadata_has_row_counts_schema_preview_and_plots(sample_run):
    result = sample_run["result"]
    mats = {e.event_specific_data.materialization.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    for key in ("raw_ad_reporting", "staging_media_weekly", "cost_per_unit", "cost_per_unit_forecast"):
        meta = mats[key]
        assert meta["dagster/row_count"].value > 0 and "dagster/column_schema" in meta and "preview" in meta
    plots = [k for k in mats["cost_per_unit"] if k.startswith("plot_") and not k.endswith("_path")]
    assert sorted(plots) == ["plot_retail", "plot_search", "plot_social", "plot_youtube"]
    assert mats["cost_per_unit"]["plot_social"].value.startswith("![")
    png = Path(mats["cost_per_unit"]["plot_social_path"].value)
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_rematerializing_unchanged_input_changes_nothing(sample_run, tmp_path):
    import shutil

    db = tmp_path / "w.duckdb"
    shutil.copy(sample_run["warehouse"], db)
    before = snapshot(db)
    # One market again (each market's run is the same code on its own partition): every asset of
    # the graph runs, each fit is loaded from its artifact, and the outputs are recomputed.
    again = materialize(sample_run["input"], db, sample_run["artifacts"], markets=["west"])
    assert again.success
    after = snapshot(db)
    assert before.keys() == after.keys()
    for table in before:
        pd.testing.assert_frame_equal(before[table], after[table], obj=table)

    def versions(runs) -> dict:
        return {(e.event_specific_data.materialization.asset_key.to_user_string(), e.partition):
                e.event_specific_data.materialization.tags.get("dagster/data_version")
                for e in runs.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}

    first, second = versions(sample_run["result"]), versions(again)
    assert {k: first[k] for k in second} == second and all(second.values())
    assert {p for _, p in second} == {None, "west"} and len(second) == len({k for k in first if k[1] != "east"})


def test_missing_kpi_week_fails_blocking_check_and_stops_downstream(sample_dir, copy_input, tmp_path):
    folder = copy_input(sample_dir)
    kpi = pd.read_csv(folder / "kpi" / "kpi.csv")
    gap = pd.to_datetime(kpi.date_day).between("2025-06-02", "2025-06-08") & (kpi.geo == "US-TX")
    kpi[~gap].to_csv(folder / "kpi" / "kpi.csv", index=False)
    result = materialize(folder, tmp_path / "w.duckdb", tmp_path / "art", models=False)
    checks = check_results(result)
    assert checks["staging_kpi_weekly_contract"] == (False, "ERROR")
    meta = next(e.asset_check_evaluation_data.metadata for e in result.all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.asset_check_evaluation_data.check_name == "staging_kpi_weekly_contract")
    assert "2025-06-02" in meta["missing_week_list"].value and "US-TX" in meta["missing_week_list"].value
    materialized = {e.event_specific_data.materialization.asset_key.to_user_string()
                    for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert "staging_kpi_weekly" in materialized
    assert "cost_per_unit" not in materialized and "cost_per_unit_forecast" not in materialized


def test_bad_file_fails_ingestion_with_clear_error_and_keeps_warehouse(sample_run, copy_input, tmp_path):
    import shutil

    folder = copy_input(sample_run["input"])
    db = tmp_path / "w.duckdb"
    shutil.copy(sample_run["warehouse"], db)
    before = snapshot(db)["raw.ad_reporting"]
    (folder / "ad_reporting" / "broken.csv").write_text("date_day,platform\n2024-01-01,google_ads\n")
    result = materialize(folder, db, tmp_path / "art", models=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    text = str(failure.event_specific_data.error)
    assert "ad_reporting/broken.csv" in text and "missing required column" in text and "spend" in text
    pd.testing.assert_frame_equal(before, snapshot(db)["raw.ad_reporting"])


def test_definitions_validate_with_the_project_instance_config(tmp_path):
    import os
    import shutil

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    out = subprocess.run([str(Path(sys.executable).parent / "dagster"), "definitions", "validate",
                          "-w", "workspace.yaml"], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_domain_package_does_not_import_dagster():
    code = ("import sys, mmm_pipeline.ingestion.ingest, mmm_pipeline.ingestion.staging, mmm_pipeline.ingestion.cost_per_unit, "
            "mmm_pipeline.validation, mmm_pipeline.warehouse, mmm_pipeline.sample, mmm_pipeline.ingestion.convert; "
            "bad = [m for m in ('dagster', 'great_expectations', 'pymc', 'pymc_marketing') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


READER = r'''
import sys, time, duckdb
path, ready, stop, out = sys.argv[1:5]
ok = errors = 0
first = None
deadline = time.time() + 300
while time.time() < deadline:
    try:
        con = duckdb.connect(path, read_only=True)
        n = con.execute("SELECT count(*) FROM marts.cost_per_unit_latest").fetchall()[0][0]
        con.close()
        ok += 1
        if first is None:
            first = n
            open(ready, "w").write(str(n))
    except Exception as exc:
        errors += 1
        print(repr(exc), file=sys.stderr)
    if __import__("os").path.exists(stop):
        break
    time.sleep(0.02)
open(out, "w").write(f"{ok} {errors}")
'''


def test_bi_reader_in_another_process_queries_published_marts_while_a_run_writes(sample_run, copy_input, tmp_path):
    import os
    import shutil
    import time

    from mmm_pipeline.reporting import publish

    db = tmp_path / "wh" / "warehouse.duckdb"
    db.parent.mkdir()
    shutil.copy(sample_run["warehouse"], db)
    published = publish.published_path(db)
    with warehouse.connect(db) as con:
        publish.publish_marts(con, published)
    folder = copy_input(sample_run["input"])
    # a restatement file: the run really rewrites raw rows and the marts' history
    kpi = pd.read_csv(folder / "kpi" / "kpi.csv")
    kpi["revenue"] = kpi["revenue"] * 1.01
    kpi.to_csv(folder / "kpi" / "kpi.csv", index=False)
    ready, stop, out = tmp_path / "ready", tmp_path / "stop", tmp_path / "out"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(published), str(ready), str(stop), str(out)],
                              stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):
            if ready.exists():
                break
            time.sleep(0.05)
        assert ready.exists(), "the reader never managed to query the published file"
        from mmm_pipeline import warehouse as wh

        with wh.connect(db):  # the writer holds the warehouse: DuckDB 2 refuses any other process now
            probe = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(db)!r}, read_only=True)"],
                                   capture_output=True, text=True)
            assert probe.returncode != 0
        result = materialize(folder, db, tmp_path / "art", models=False)
        assert result.success
        with wh.connect(db) as con:
            publish.publish_marts(con, published)
        time.sleep(0.3)
    finally:
        stop.write_text("stop")
        reader.wait(timeout=60)
    ok, errors = map(int, out.read_text().split())
    assert errors == 0, reader.stderr.read()
    assert ok > 10
    assert os.path.exists(published)


def test_instance_config_monitors_and_retries_runs(tmp_path):
    import os
    import shutil

    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    code = ("import dagster as dg; i = dg.DagsterInstance.get(); "
            "assert i.run_monitoring_enabled and i.run_monitoring_max_runtime_seconds == 7200; "
            "assert i.run_retries_enabled and i.run_retries_max_retries == 1; "
            "assert i.get_concurrency_config().pool_config.default_pool_limit == 1")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "DAGSTER_HOME": str(tmp_path)},
                   timeout=120)


def test_unwritable_warehouse_or_artifact_path_fails_the_first_asset_naming_the_setting(sample_dir, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    # root ignores permission bits, so "not writable" is a path below a regular file
    result = materialize(sample_dir, blocker / "warehouse.duckdb", tmp_path / "art", models=False)
    assert not result.success
    # resources are set up when the run starts, before any asset touches the warehouse
    failures = [e for e in result.all_events if e.event_type_value in ("RESOURCE_INIT_FAILURE", "STEP_FAILURE")]
    text = " ".join(str(getattr(e.event_specific_data, "error", "")) for e in failures)
    assert f"MMM_WAREHOUSE={blocker / 'warehouse.duckdb'} is not a writable file: {blocker} is a file" in text
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").iterdir())

    from mmm_pipeline.settings import ConfigError, check_writable

    with pytest.raises(ConfigError, match=r"MMM_ARTIFACT_DIR=.*a_file is not a writable folder: .*a_file is a file"):
        check_writable(blocker, "MMM_ARTIFACT_DIR", is_folder=True)
    check_writable(tmp_path / "new" / "art", "MMM_ARTIFACT_DIR", is_folder=True)  # created, fine
    assert (tmp_path / "new" / "art").is_dir() and not list((tmp_path / "new" / "art").iterdir())


def test_staging_is_versioned_by_the_settings_it_reads_only():
    from mmm_pipeline.settings import NOT_STAGING_SETTINGS, PipelineConfig, settings_hash

    def version(**settings) -> str:
        return settings_hash(PipelineConfig.model_validate(settings), exclude=NOT_STAGING_SETTINGS)

    base = version(kpi_column="revenue")
    # The model section, plans and freshness do not change the weekly data: nothing refits.
    assert version(kpi_column="revenue", model={"strict_gates": True}) == base
    assert version(kpi_column="revenue", planning_horizon_weeks=12, freshness_days=30) == base
    # What staging reads (the KPI column, geo weights, currency) does.
    assert version(kpi_column="orders") != base
    assert version(kpi_column="revenue", geo_weights={"US-CA": 2.0}) != base
    assert version(kpi_column="revenue", reporting_currency="EUR") != base
