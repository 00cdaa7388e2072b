"""Publishing the marts for BI after every successful run launched by the daemon (schedules, UI)."""

import dagster as dg

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
