"""The code location end to end: one shared materialization of the sample, plus failure paths."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mmm_pipeline import warehouse
from tests.conftest import REPO, check_results, materialize

MART_COLUMNS = {
    "marts.cost_per_unit": ["week_start", "geo", "channel", "unit", "units", "spend", "cost_per_unit", "cpm",
                            "imputed", "data_version", "materialized_at"],
    "marts.cost_per_unit_forecast": ["week_start", "geo", "channel", "cost_per_unit", "method", "data_version"],
}


def snapshot(db: Path) -> dict[str, pd.DataFrame]:
    with warehouse.connect(db) as con:
        tables = [t for (t,) in con.execute(
            "SELECT table_schema||'.'||table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema IN ('raw','staging','marts') ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").df() for t in tables}


def test_sample_materializes_with_every_check_passing(sample_run):
    result = sample_run["result"]
    assert result.success
    checks = check_results(result)
    assert {n for n, (passed, _) in checks.items() if not passed} == set()
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
    again = materialize(sample_run["input"], db, sample_run["artifacts"])
    assert again.success
    after = snapshot(db)
    assert before.keys() == after.keys()
    for table in before:
        pd.testing.assert_frame_equal(before[table], after[table], obj=table)
    versions = {e.event_specific_data.materialization.asset_key.to_user_string():
                e.event_specific_data.materialization.tags.get("dagster/data_version")
                for e in sample_run["result"].all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    versions2 = {e.event_specific_data.materialization.asset_key.to_user_string():
                 e.event_specific_data.materialization.tags.get("dagster/data_version")
                 for e in again.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
    assert versions == versions2 and all(versions.values())


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
    code = ("import sys, mmm_pipeline.ingest, mmm_pipeline.staging, mmm_pipeline.cost_per_unit, "
            "mmm_pipeline.validation, mmm_pipeline.warehouse, mmm_pipeline.sample_data, mmm_pipeline.convert; "
            "bad = [m for m in ('dagster', 'great_expectations', 'pymc', 'pymc_marketing') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
