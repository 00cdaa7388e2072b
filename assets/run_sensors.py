"""Sensors on runs: publish the marts after a success, record an alert after a failure."""

import dagster as dg

from mmm_pipeline.alerts import record_alert
from resources import WarehouseResource


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful run, copy the marts to the read-only BI file (published/mmm.duckdb "
    "beside the warehouse) under a temporary name and rename it into place.",
)
def publish_marts_after_success(context: dg.RunStatusSensorContext, warehouse: WarehouseResource):
    counts = warehouse.publish()
    context.log.info(f"published {sum(counts.values())} rows in {len(counts)} mart tables to "
                     f"{warehouse.published_path()} after run {context.dagster_run.run_id}")


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Writes a row to marts.alerts for every failed run (job, failed steps, "
                       "error) so a BI dashboard can show it.")
def alert_on_run_failure(context: dg.RunFailureSensorContext, warehouse: WarehouseResource):
    run = context.dagster_run
    steps = [e.step_key for e in context.get_step_failure_events()]
    partition = run.tags.get("dagster/partition")
    asset = ", ".join(steps) or run.job_name
    problem = (f"run of {run.job_name}{f' [{partition}]' if partition else ''} failed"
               f"{' in ' + ', '.join(steps) if steps else ''}: {context.failure_event.message}")
    with warehouse.get_connection() as con:
        record_alert(con, asset, problem, run.run_id)
    context.log.error(problem)
