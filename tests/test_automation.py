"""Schedule, input-folder sensor and declarative automation, driven with Dagster's build contexts."""

from __future__ import annotations

import dagster as dg

from assets.automation import DOWNSTREAM, input_folder_sensor, weekly_refresh
from resources import PipelineSettings


def test_weekly_schedule_refreshes_ingestion_on_monday_morning():
    assert weekly_refresh.cron_schedule == "0 6 * * 1"
    assert weekly_refresh.default_status == dg.DefaultScheduleStatus.RUNNING
    data = weekly_refresh.evaluate_tick(dg.build_schedule_context())
    assert len(data.run_requests) == 1 and weekly_refresh.job_name == "refresh_ingestion"


def test_input_sensor_fires_on_new_changed_or_removed_files_only(sample_dir, copy_input):
    folder = copy_input(sample_dir)
    settings = PipelineSettings(input_dir=str(folder))

    def tick(cursor):
        ctx = dg.build_sensor_context(cursor=cursor, resources={"settings": settings})
        return input_folder_sensor(ctx), ctx.cursor

    first, cursor = tick(None)
    assert isinstance(first, dg.RunRequest)
    again, cursor2 = tick(cursor)
    assert isinstance(again, dg.SkipReason) and cursor2 == cursor
    (folder / "ad_reporting" / "restatement.csv").write_text((folder / "ad_reporting" / "amazon_ads.csv").read_text())
    changed, cursor3 = tick(cursor)
    assert isinstance(changed, dg.RunRequest) and changed.run_key != first.run_key
    assert changed.tags["mmm/changed_files"] == "ad_reporting/restatement.csv"
    (folder / "lift_tests.csv").unlink()
    removed, _ = tick(cursor3)
    assert isinstance(removed, dg.RunRequest) and "lift_tests.csv" in removed.tags["mmm/changed_files"]


def test_downstream_assets_wait_for_blocking_checks():
    from assets.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in ("staging_media_weekly", "cost_per_unit", "mmm_calibrated", "calibration_report"):
        assert graph.get(dg.AssetKey(key)).automation_condition == DOWNSTREAM
    eager, blocking = DOWNSTREAM.operands
    assert blocking == dg.AutomationCondition.all_deps_blocking_checks_passed()
    assert eager == dg.AutomationCondition.eager()
    for key in ("raw_ad_reporting", "raw_kpi"):  # ingestion runs from the schedule and the sensor
        assert graph.get(dg.AssetKey(key)).automation_condition is None


def test_stale_input_warns_and_fresh_input_passes(sample_run):
    from tests.conftest import check_results

    checks = check_results(sample_run["result"])
    # the sample ends on 2025-12-31: older than 8 days, so both freshness checks warn (never block)
    assert checks["raw_ad_reporting_freshness"] == (False, "WARN")
    assert checks["raw_kpi_freshness"] == (False, "WARN")


def test_run_failure_sensor_writes_an_alert_row(sample_run, tmp_path):
    import shutil

    from assets.run_sensors import alert_on_run_failure
    from mmm_pipeline import warehouse as wh
    from resources import WarehouseResource
    from tests.conftest import materialize

    folder = tmp_path / "input"
    shutil.copytree(sample_run["input"], folder)
    (folder / "ad_reporting" / "broken.csv").write_text("date_day\n2024-01-01\n")
    db = tmp_path / "w.duckdb"
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(folder, db, tmp_path / "art", models=False, instance=instance)
    assert not result.success
    run = result.results[0].dagster_run
    failure = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[0].dagster_event
    ctx = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure", dagster_instance=instance, dagster_run=run, dagster_event=failure,
        resources={"warehouse": WarehouseResource(database=str(db))},
    ).for_run_failure()
    alert_on_run_failure(ctx)
    with wh.connect(db) as con:
        alerts = con.execute("SELECT * FROM marts.alerts").df()
    assert len(alerts) == 1 and alerts.run_id[0] == run.run_id
    assert "raw_ad_reporting" in alerts.asset[0] and "ingest_job" in alerts.problem[0]


def test_a_state_alert_is_recorded_once_and_event_alerts_every_time():
    import duckdb

    from mmm_pipeline.alerts import record_alert

    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts")
    gate = "convergence gate failed for uncalibrated model abc: max R-hat 1.02 > 1.01"
    assert record_alert(con, "mmm_uncalibrated[west]", gate, "run1", "warning", once=True)
    # Re-materializing the same inputs re-reads the same artifact: the same gate failure is not news.
    assert not record_alert(con, "mmm_uncalibrated[west]", gate, "run2", "warning", once=True)
    # Another market, or another failure, is.
    assert record_alert(con, "mmm_uncalibrated[east]", gate, "run2", "warning", once=True)
    assert record_alert(con, "mmm_uncalibrated[west]", gate.replace("abc", "def"), "run3", "warning", once=True)
    # A failed run is an event: two failures are two rows.
    record_alert(con, None, "ingest_job failed", "run4")
    record_alert(con, None, "ingest_job failed", "run5")
    assert con.execute("SELECT count(*) FROM marts.alerts").fetchone()[0] == 5
