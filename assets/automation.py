"""How the pipeline runs by itself: a weekly schedule and an input-folder sensor refresh ingestion;
everything downstream follows by declarative automation once the blocking checks it depends on pass."""

import json
import os

import dagster as dg

from mmm_pipeline.ingestion import readers
from mmm_pipeline.warehouse import fingerprint
from resources import PipelineSettings

# Monday 06:00 by default (the week's data is complete on Sunday); MMM_REFRESH_CRON overrides it.
REFRESH_CRON = os.environ.get("MMM_REFRESH_CRON", "0 6 * * 1")
INGESTION = dg.AssetSelection.groups("ingestion")

# Downstream assets materialize when their dependencies update, not while any is in progress,
# and only after the dependencies' blocking checks passed: one refresh fits each model once.
DOWNSTREAM = dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()

refresh_job = dg.define_asset_job("refresh_ingestion", selection=INGESTION,
                                  description="Reload the input folder; downstream follows by automation.")

weekly_refresh = dg.ScheduleDefinition(
    name="weekly_refresh", job=refresh_job, cron_schedule=REFRESH_CRON,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description=f"Refresh ingestion every week ({REFRESH_CRON}, MMM_REFRESH_CRON).",
)


def input_state(input_dir) -> dict[str, str]:
    """File -> sha256 of every input file the pipeline reads."""
    # A vanished folder counts as a change: the refresh it triggers then fails naming the folder.
    files = [f for sub in ("ad_reporting", "kpi", "controls") if (input_dir / sub).is_dir()
             for f in readers.list_files(input_dir, sub)]
    for name in ("channels.csv", "lift_tests.csv", "roas_targets.csv", "geos.csv", "fx_rates.csv", "pipeline.yaml"):
        if (input_dir / name).exists():
            files.append(readers.source_file(input_dir, input_dir / name))
    return {f.rel: f.sha256 for f in files}


@dg.sensor(job=refresh_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Refreshes ingestion when ad-reporting, KPI, controls, lift-test or config files in "
           "MMM_INPUT_DIR are added, changed or removed.")
def input_folder_sensor(context: dg.SensorEvaluationContext, settings: PipelineSettings):
    state = input_state(settings.input_path())
    version = fingerprint(sorted(state.items()))
    previous = json.loads(context.cursor) if context.cursor else {}
    if previous.get("version") == version:
        return dg.SkipReason("no input file changed")
    changed = sorted(f for f in set(state) | set(previous.get("files", {}))
                     if state.get(f) != previous.get("files", {}).get(f))
    context.update_cursor(json.dumps({"version": version, "files": state}))
    return dg.RunRequest(run_key=version, tags={"mmm/changed_files": ",".join(changed)[:1000]})
