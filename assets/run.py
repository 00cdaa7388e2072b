"""`python -m assets.run`: materialize the whole graph once and say where the results are.

Runs in process against the Dagster instance at DAGSTER_HOME (so the run shows
in `make ui`), with resources from the MMM_* environment variables. Exits
non-zero when an asset fails or a blocking check fails.
"""

from __future__ import annotations

import sys

import dagster as dg

from assets.definitions import defs
from mmm_pipeline import warehouse
from mmm_pipeline.settings import RunSettings


def main() -> int:
    settings = RunSettings.from_env()
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("mmm_job")
    result = job.execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
    )

    failed_steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    failed_checks = [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and not e.asset_check_evaluation_data.passed
        and e.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.ERROR
    ]
    warned = [
        f"{e.asset_check_evaluation_data.asset_key.to_user_string()}:{e.asset_check_evaluation_data.check_name}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and not e.asset_check_evaluation_data.passed
        and e.asset_check_evaluation_data.severity == dg.AssetCheckSeverity.WARN
    ]
    print(f"\nRun {result.run_id}: {'succeeded' if result.success and not failed_checks else 'FAILED'}")
    print(f"Input folder : {settings.input_dir}")
    print(f"Warehouse    : {settings.warehouse}")
    print(f"Artifacts    : {settings.artifact_dir}")
    if settings.warehouse.exists():
        with warehouse.connect(settings.warehouse) as con:
            for table, n in warehouse.table_row_counts(con).items():
                print(f"  {table:<40} {n:>10,} rows")
    if warned:
        print("Checks that warn: " + ", ".join(warned))
    if failed_steps:
        print("Failed steps: " + ", ".join(failed_steps))
    if failed_checks:
        print("Failed blocking checks: " + ", ".join(failed_checks))
    print("Open the UI with `make ui` (http://127.0.0.1:3000), or query the warehouse with DuckDB.")
    return 0 if result.success and not failed_steps and not failed_checks else 1


if __name__ == "__main__":
    sys.exit(main())
