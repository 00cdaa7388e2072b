"""The code location: one `Definitions` object (workspace.yaml points at it)."""

import dagster as dg

from assets import calibration, checks, costs, holdout, ingestion, models, outputs, report, staging
from assets.deployment import executor_from_env
from assets.automation import input_folder_sensor, refresh_job, weekly_refresh
from assets.run_sensors import alert_on_run_failure, publish_marts_after_success
from resources import build_resources

ALL_ASSETS = dg.load_assets_from_modules([ingestion, staging, costs, models, calibration, holdout, outputs, report])
ALL_CHECKS = dg.load_asset_checks_from_modules([checks])

# Unpartitioned data preparation, with its checks: blocking checks stop what is downstream.
ingest_job = dg.define_asset_job(
    "ingest_job",
    selection=dg.AssetSelection.groups("ingestion", "validation", "costs"),
    description="Ingest, validate, stage and price the input folder (MMM_INPUT_DIR).",
)
# One run per market partition: lift tests in model units, both fits, the calibration report,
# response curves, ROAS and budget allocations.
model_job = dg.define_asset_job(
    "model_job",
    selection=dg.AssetSelection.groups("models", "outputs") | dg.AssetSelection.assets(report.market_report),
    partitions_def=models.MARKETS,
    description="Fit the uncalibrated and calibrated MMM of one market, report on them, turn them "
    "into response curves, ROAS and budget allocations in money, and write the market's HTML report.",
)
# The end of the graph: the BI copy of the marts and the reports beside it (make run, and the
# publish_marts_after_success sensor after every successful run).
publish_job = report.PUBLISH_JOB

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[ingest_job, model_job, publish_job, refresh_job],
    schedules=[weekly_refresh],
    sensors=[
        input_folder_sensor,
        publish_marts_after_success,
        alert_on_run_failure,
        dg.AutomationConditionSensorDefinition(
            "downstream_automation", target=dg.AssetSelection.all(),
            default_status=dg.DefaultSensorStatus.RUNNING,
            description="Materializes staging, costs and models after ingestion updates, once the "
            "blocking checks they depend on passed."),
    ],
    resources=build_resources(),
    executor=executor_from_env(),
)
