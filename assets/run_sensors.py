"""Sensors on runs: publish after a success (as the `bi_publication` asset), record an alert after a failure."""

import dagster as dg

from assets.report import PUBLISH_JOB
from mmm_pipeline.alerts import record_alert
from resources import WarehouseResource


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    request_job=PUBLISH_JOB,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a successful run, materialize bi_publication (publish_job): the marts are copied to "
    "the read-only BI file (published/mmm.duckdb beside the warehouse) and the reports to published/reports/, "
    "so the lineage shows each publication and the runs it came from.",
)
def publish_marts_after_success(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    if run.job_name == PUBLISH_JOB.name:
        return dg.SkipReason("a publication run: nothing new to publish")
    return dg.RunRequest(run_key=f"publish-after-{run.run_id}", tags={"mmm/published_after_run": run.run_id})


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
