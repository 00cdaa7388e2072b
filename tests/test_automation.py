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
