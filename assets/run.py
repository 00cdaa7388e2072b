"""`python -m assets.run`: materialize the whole graph once and say where the results are.

Runs in process against the Dagster instance at DAGSTER_HOME (so the runs show
in `make ui`), with resources from the MMM_* environment variables: first
`ingest_job`, then `model_job` per market (the markets at the same time, one process each,
unless MMM_PARALLEL_MARKETS=0; with `lift_tests.national_split: predicted_lift` in two stages:
every market's lift tests and uncalibrated fit first, since each calibrated fit then reads all of them). Exits non-zero when an asset
fails or a blocking check fails (the rest still runs where it can).
One run at a time per warehouse and per DAGSTER_HOME: a second waits for the first, naming it
(`mmm_pipeline.run_lock`; MMM_RUN_WAIT_SECONDS bounds the wait, then exit code 75).
"""

import os
import sys
import time

import dagster as dg

from assets.pools import WITHOUT_POOLS_ENV
from mmm_pipeline import warehouse
from mmm_pipeline.reporting.publish import published_path
from mmm_pipeline.run_lock import EXIT_TIMEOUT, RunLockTimeout, run_lock, run_lock_files, wait_seconds
from mmm_pipeline.settings import RunSettings

LOG_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def failed_checks(result, severity=dg.AssetCheckSeverity.ERROR) -> list[str]:
    out = []
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.asset_check_evaluation_data
            if not d.passed and d.severity == severity:
                part = f"[{e.partition}]" if getattr(e, "partition", None) else ""
                out.append(f"{d.asset_key.to_user_string()}{part}:{d.check_name}")
    return out


def fail_dead_runs(instance) -> list[str]:
    """Mark failed the runs of this instance whose process is gone (a killed `make run`), so the UI
    does not show them running forever. They hold no pool slot: `make run` claims none (assets/pools.py)."""
    failed = []
    active = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.CANCELING]
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=active)):
        run = record.dagster_run
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.RUN_START).records
        pid = records[0].event_log_entry.dagster_event.pid if records else None
        if pid is None or pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        instance.report_run_failed(run, f"process {pid} of this run is gone (killed?)")
        failed.append(run.run_id)
    return failed


# What every market's calibrated fit reads of all markets when a national test shared between markets
# is split by their uncalibrated predictions (lift_tests.national_split: predicted_lift): these run
# first, for every market (the curve family the fits use, and the out-of-sample refit too, which needs no calibrated fit, so that a
# market whose fit was quick has work while it waits).
FIRST_STAGE = (dg.AssetKey("lift_tests_model_units"), dg.AssetKey("model_family"), dg.AssetKey("mmm_uncalibrated"),
               dg.AssetKey("model_validation"))


def markets_read_each_other(defs) -> bool:
    """Whether each market's calibrated fit reads every market's uncalibrated fit (pipeline.yaml
    `lift_tests.national_split: predicted_lift`), so that `make run` fits those first."""
    from mmm_pipeline.settings import ConfigError

    try:
        config, _ = defs.resources["settings"].config()
    except (KeyError, ConfigError):  # no settings resource, or a config ingest_job already refused
        return False
    return config.lift_tests.national_split == "predicted_lift"


def _run_first_stage(model_job, instance, market: str, run_config) -> list:
    return [model_job.execute_in_process(instance=instance, raise_on_error=False, partition_key=market,
                                         run_config=run_config, asset_selection=list(FIRST_STAGE))]


def _run_market(model_job, instance, market: str, run_config, first_stage: list | None = None) -> list:
    """model_job for one market partition (the rest of it after `first_stage`, that stage's results),
    then the report alone when a failed gate blocked it."""
    selection = None
    if first_stage is not None:
        # A failure or a blocking check blocks only within its run: a failed uncalibrated step or gate
        # runs again here (a saved fit is loaded, not refitted) so that it blocks what follows it.
        failed = any(not r.success or failed_checks(r) for r in first_stage)
        again = {dg.AssetKey("mmm_uncalibrated")} if failed else set()
        selection = [k for k in model_job.asset_layer.selected_asset_keys
                     if k not in FIRST_STAGE or k in again]
    result = model_job.execute_in_process(
        instance=instance, raise_on_error=False, partition_key=market, run_config=run_config,
        asset_selection=selection)
    results = [*(first_stage or []), result]
    if failed_checks(result) and not _materialized(result, "market_report"):
        # A failed gate blocked the outputs and so the report; the report still says so
        # (banner, and which earlier model the outputs come from), so render it on its own.
        results.append(model_job.execute_in_process(
            instance=instance, raise_on_error=False, partition_key=market, run_config=run_config,
            asset_selection=[dg.AssetKey("market_report")]))
    return results


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (an OOM kill of `assets.run` must not leave a
    market's fit running on, writing to the warehouse, with nobody to report it)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's pool shutdown still joins its children
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _market_process(market: str, run_config, stage: str = "all", first_stage_ids: tuple[str, ...] = ()) -> list[str]:
    """Spawned process: `assets.definitions.defs`' model_job for `market` on DAGSTER_HOME's instance,
    `stage` "first" (FIRST_STAGE), "rest" (after the first stage's runs `first_stage_ids`) or "all"."""
    from assets.definitions import defs

    job = defs.resolve_job_def("model_job")
    with dg.DagsterInstance.get() as instance:
        if stage == "first":
            runs = _run_first_stage(job, instance, market, run_config)
        else:
            first = [StoredRun(instance, i) for i in first_stage_ids] if stage == "rest" else None
            runs = _run_market(job, instance, market, run_config, first)
        return [r.run_id for r in runs]


class StoredRun:
    """A run executed in another process, read back from the instance: what callers of `run_all` read
    of an ExecuteInProcessResult (success, all_events, run_id, dagster_run, job_def.name)."""

    def __init__(self, instance, run_id: str):
        self.run_id = run_id
        self.dagster_run = instance.get_run_by_id(run_id)
        self.success = self.dagster_run.status == dg.DagsterRunStatus.SUCCESS
        self.all_events = [rec.dagster_event for rec in instance.all_logs(run_id) if rec.is_dagster_event]
        self.job_def = type("JobName", (), {"name": self.dagster_run.job_name})()


def run_all(defs, instance, run_config=None, markets: list[str] | None = None, *,
            parallel: bool = False) -> tuple[bool, list]:
    """ingest_job, then model_job per market (all, or `markets`); returns (ok, results).

    `parallel`: one spawned process per market, at the same time (`assets.definitions.defs` and a
    persistent instance only: the processes load both themselves). Most of a fit is its single-threaded
    compile and the steps around the sampler, so on 2 cores two markets take about the time of one and
    a half. The warehouse lock serialises every write (and the pools, where the definitions have them)."""
    for run_id in fail_dead_runs(instance):
        print(f"run {run_id} died without finishing: marked failed")
    results = [defs.resolve_job_def("ingest_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config)]
    if results[0].success and not failed_checks(results[0]):
        model_job = defs.resolve_job_def("model_job")
        keys = markets or model_job.partitions_def.get_partition_keys()
        staged = len(keys) > 1 and markets_read_each_other(defs)
        if parallel and len(keys) > 1 and not instance.is_ephemeral:
            import concurrent.futures
            import multiprocessing

            n = len(keys)
            with concurrent.futures.ProcessPoolExecutor(
                    max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_die_with_parent) as pool:
                if staged:  # the same worker processes run both stages: the second imports nothing again
                    first = list(pool.map(_market_process, keys, [run_config] * n, ["first"] * n))
                    run_ids = list(pool.map(_market_process, keys, [run_config] * n, ["rest"] * n,
                                            [tuple(ids) for ids in first]))
                else:
                    run_ids = list(pool.map(_market_process, keys, [run_config] * n))
            results += [StoredRun(instance, run_id) for ids in run_ids for run_id in ids]
        elif staged:
            first = {market: _run_first_stage(model_job, instance, market, run_config) for market in keys}
            for market in keys:
                results += _run_market(model_job, instance, market, run_config, first[market])
        else:
            for market in keys:
                results += _run_market(model_job, instance, market, run_config)
    ok = all(r.success for r in results) and not any(failed_checks(r) for r in results)
    if ok:
        # bi_publication, the end of the graph; the sensor `publish_marts_after_success` runs the same
        # job for runs launched by the daemon.
        publish = _publish_job(defs).execute_in_process(instance=instance, raise_on_error=False,
                                                        run_config=run_config)
        results.append(publish)
        ok = publish.success
    return ok, results


def _materialized(result, asset: str) -> bool:
    return any(e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key == dg.AssetKey(asset)
               for e in result.all_events)


def _publish_job(defs):
    """publish_job of `defs`, or built from its assets when a caller's Definitions lists no such job."""
    from assets.report import PUBLISH_JOB

    try:
        return defs.resolve_job_def(PUBLISH_JOB.name)
    except Exception:
        return dg.Definitions.merge(defs, dg.Definitions(jobs=[PUBLISH_JOB])).resolve_job_def(PUBLISH_JOB.name)


def main() -> int:
    """One run at a time per warehouse and per DAGSTER_HOME: a second waits for the first (saying which
    run holds the locks), taking them before `DagsterInstance.get()` creates the instance's SQLite storage.
    The market processes `run_all` spawns run `_market_process`, not this: they never take them."""
    settings = RunSettings.from_env()
    try:
        with run_lock(run_lock_files(settings.warehouse, os.environ.get("DAGSTER_HOME")), timeout=wait_seconds(),
                      details={"input folder": str(settings.input_dir), "warehouse": str(settings.warehouse)}):
            return _run(settings)
    except RunLockTimeout as e:
        print(e, file=sys.stderr)
        return EXIT_TIMEOUT


def _run(settings: RunSettings) -> int:
    os.environ[WITHOUT_POOLS_ENV] = "1"  # before the definitions load; the market processes inherit it
    from assets.definitions import defs

    started = time.perf_counter()
    # markets in parallel processes unless MMM_PARALLEL_MARKETS=0 (one CPU, or to read one log at a time)
    # or MMM_FIT_CONCURRENCY is 1 (short of memory: one fit at a time)
    parallel = (os.environ.get("MMM_PARALLEL_MARKETS", "1") != "0" and (os.cpu_count() or 1) > 1
                and int(os.environ.get("MMM_FIT_CONCURRENCY", "2")) > 1)
    instance = dg.DagsterInstance.get()
    ok, results = run_all(defs, instance, LOG_CONFIG, parallel=parallel)
    failed_steps = [e.step_key for r in results for e in r.all_events if e.event_type_value == "STEP_FAILURE"]
    errors = [c for r in results for c in failed_checks(r)]
    warned = [c for r in results for c in failed_checks(r, dg.AssetCheckSeverity.WARN)]
    print(f"\n{len(results)} run(s) in {time.perf_counter() - started:.0f} s "
          f"({settings.profile} profile): {'succeeded' if ok else 'FAILED'}")
    for r in results:
        print(f"  run {r.run_id}: {r.job_def.name}{' ' + r.dagster_run.tags.get('dagster/partition', '') if r.dagster_run.tags.get('dagster/partition') else ''}: "
              f"{'ok' if r.success else 'failed'}")
    print(f"Input folder : {settings.input_dir}")
    print(f"Warehouse    : {settings.warehouse}")
    print(f"Artifacts    : {settings.artifact_dir}")
    published = published_path(settings.warehouse)
    if ok:
        print(f"BI copy      : {published} (read-only marts, safe to open while the pipeline runs)")
        if settings.parquet_export:
            print(f"Parquet marts: {settings.parquet_export}/<table>.parquet")
    if settings.warehouse.exists():
        with warehouse.connect(settings.warehouse) as con:
            for table, n in warehouse.table_row_counts(con).items():
                print(f"  {table:<40} {n:>10,} rows")
    if warned:
        print("Checks that warn: " + ", ".join(warned))
    if failed_steps:
        print("Failed steps: " + ", ".join(failed_steps))
    if errors:
        print("Failed blocking checks (gates): " + ", ".join(errors))
    print("Open the UI with `make ui` (http://127.0.0.1:3000), or query the warehouse with DuckDB.")
    index = settings.artifact_dir / "reports" / "index.html"
    print("Reports (open in a browser; the last line is the index):")
    print(index if index.exists() else f"(no report written: {index} is missing)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
