"""Failure recovery, nothing lost: `python -m assets.run` killed with SIGKILL (an OOM kill, a
power cut) in the middle of ingestion or of a model fit, then run again.

What must hold after each kill, before anything repairs it:
- the warehouse opens (DuckDB replays or discards its WAL) and its file lock is free again
  (filelock's lock dies with the process that held it);
- raw tables hold whole loads only: every file's rows are exactly the `rows_loaded` of its
  current `loaded` entry in `raw.load_log`, no natural key twice;
- no model artifact is half-written: every `*.nc` loads (a `.*.tmp` may remain, never read),
  also when the kill lands inside `save_model`.
And the re-run completes (exit 0) with every input file loaded exactly once and one
`marts.model_runs` row per (market, variant, model_version).

The killed runs are subprocesses in a session of their own; the whole group is killed.
`assets.run` claims no Dagster pool slot (assets/pools.py), so a killed run leaves none for the
re-run to wait on; the next run marks the dead runs failed (the ingestion test, whose runs share one
DAGSTER_HOME as `make run`'s do).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import dagster as dg
import duckdb
import pytest
from filelock import FileLock

from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import ingest, readers
from tests.conftest import REPO

# Every test here runs the pipeline's model fits (in subprocesses).
pytestmark = pytest.mark.fit

POLL_S = 0.01
BULK_ROWS = 1_500_000
BULK_FILE = "ad_reporting/google_ads_bulk.csv"
# `python -m assets.run` restricted to ingest_job, or to ingest_job + model_job for some markets.
INGEST_ONLY = """
import sys
import dagster as dg
from assets.definitions import defs
from assets.run import LOG_CONFIG, failed_checks
result = defs.resolve_job_def("ingest_job").execute_in_process(
    instance=dg.DagsterInstance.get(), raise_on_error=False, run_config=LOG_CONFIG)
sys.exit(0 if result.success and not failed_checks(result) else 1)
"""
# ingest_job, then the fitting steps of model_job for one market: what a killed fit leaves behind
# is read by these steps (the outputs downstream of them only read the recorded fits).
RUN_FITS = """
import sys
import dagster as dg
from assets.definitions import defs
from assets.run import LOG_CONFIG, failed_checks
instance = dg.DagsterInstance.get()
ingest = defs.resolve_job_def("ingest_job").execute_in_process(
    instance=instance, raise_on_error=False, run_config=LOG_CONFIG)
if not ingest.success or failed_checks(ingest):
    sys.exit(1)
fits = defs.resolve_job_def("model_job").execute_in_process(
    instance=instance, raise_on_error=False, run_config=LOG_CONFIG, partition_key=sys.argv[1],
    asset_selection=[dg.AssetKey(k) for k in ("lift_tests_model_units", f"mmm_{sys.argv[2]}")])
sys.exit(0 if fits.success else 1)
"""
SAVE_LOOP = """
import sys
from pathlib import Path
from mmm_pipeline.model import load_model, save_model

mmm = load_model(sys.argv[1])
for i in range(200):
    save_model(mmm, Path(sys.argv[2]) / f"model_{i}.nc")
"""
FILE_KINDS = {"ad_reporting": "raw.ad_reporting", "kpi": "raw.kpi", "lift_tests": "raw.lift_tests"}


# --------------------------------------------------------------------------- helpers


def run_env(tmp_path: Path, input_dir: Path, home: str) -> dict[str, str]:
    """The environment of one pipeline process, with the DAGSTER_HOME `tmp_path / home`."""
    home_dir = tmp_path / home
    home_dir.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home_dir / "dagster.yaml")
    env = dict(os.environ)
    env.update(MMM_INPUT_DIR=str(input_dir), MMM_WAREHOUSE=str(tmp_path / "warehouse.duckdb"),
               MMM_ARTIFACT_DIR=str(tmp_path / "artifacts"), MMM_PROFILE="fast",
               DAGSTER_HOME=str(home_dir), GX_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1",
               # one market at a time, so a kill lands in exactly one fit (the parallel path's
               # children die with their parent: test_market_processes_die_with_a_killed_parent)
               MMM_PARALLEL_MARKETS="0")
    return env


class Run:
    """A pipeline subprocess (its own session, so SIGKILL reaches everything it started)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def open_files(self) -> list[str]:
        names = []
        try:
            fds = os.listdir(f"/proc/{self.proc.pid}/fd")
        except OSError:
            return names
        for fd in fds:
            try:
                names.append(os.readlink(f"/proc/{self.proc.pid}/fd/{fd}"))
            except OSError:
                pass
        return names

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def kill_when(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """SIGKILL as soon as `condition()` holds; fail if the run ends or times out first."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if condition():
                    self.kill()
                    return
                if self.proc.poll() is not None:
                    pytest.fail(f"the run exited ({self.proc.returncode}) before {what}:\n{self.output()[-4000:]}")
                time.sleep(POLL_S)
            pytest.fail(f"no {what} within {timeout:.0f} s:\n{self.output()[-4000:]}")
        finally:
            self.kill()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the re-run did not finish within {timeout:.0f} s:\n{self.output()[-4000:]}")


@contextmanager
def read_only(db: Path):
    """The warehouse as a reader sees it, under its lock: a lock still held would time out here,
    and the WAL is replayed in memory only (the re-run, not this check, recovers it on disk)."""
    with FileLock(str(warehouse.lock_path(db)), timeout=10):
        con = duckdb.connect(str(db), read_only=True)
        try:
            yield con
        finally:
            con.close()


def stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except FileNotFoundError:
        return -1, 0


def file_rows(path: Path) -> int:
    reader = (f"read_parquet('{path}')" if path.suffix == ".parquet"
              else f"read_csv('{path}', all_varchar=true, header=true)")
    return duckdb.sql(f"SELECT count(*) FROM {reader}").fetchall()[0][0]


def write_bulk_ad_report(input_dir: Path, rows: int = BULK_ROWS) -> Path:
    """A big google_ads report (search campaigns, unique natural keys) so that its load takes seconds."""
    path = input_dir / BULK_FILE
    geos = "['US-CA', 'US-TX', 'US-WA', 'US-NY', 'US-FL', 'US-IL']"
    # i = 4386 * campaign + 731 * geo + day: one row per campaign, geo and day.
    duckdb.sql(f"""COPY (
        SELECT 'google_ads.bulk' AS source_relation,
               DATE '2024-01-01' + CAST(i % 731 AS INTEGER) AS date_day,
               'google_ads' AS platform, '9990001' AS account_id, 'Acme Bulk' AS account_name,
               CAST(900000 + i // 4386 AS VARCHAR) AS campaign_id,
               'Search - Bulk ' || (i // 4386) AS campaign_name,
               1 + i % 7 AS clicks, 10 + i % 97 AS impressions, round(0.5 + (i % 13) * 0.1, 2) AS spend,
               0 AS conversions, 0.0 AS conversions_value,
               {geos}[1 + (i // 731) % 6] AS geo
        FROM range({rows}) t(i)) TO '{path}' (HEADER)""")
    return path


def assert_raw_consistent(con) -> dict[str, dict[str, tuple[int, int]]]:
    """Whole loads only; returns kind -> {file: (rows_read, rows_loaded)} of the current load log."""
    current = {}
    for kind, table in FILE_KINDS.items():
        log = con.execute(
            """SELECT source_file, event, rows_read, rows_loaded, rows_quarantined FROM raw.load_log
               WHERE kind = ?
               QUALIFY row_number() OVER (PARTITION BY source_file ORDER BY logged_at DESC, event) = 1""",
            [kind]).fetchall()
        loaded = {f: (read, good, bad) for f, event, read, good, bad in log if event == "loaded"}
        in_table = dict(con.execute(f"SELECT source_file, count(*) FROM {table} GROUP BY 1").fetchall())
        assert in_table == {f: good for f, (_, good, _) in loaded.items() if good}, (kind, in_table, loaded)
        quarantined = dict(con.execute("SELECT source_file, count(*) FROM raw.quarantine WHERE kind = ? "
                                       "GROUP BY 1", [kind]).fetchall())
        assert quarantined == {f: bad for f, (_, _, bad) in loaded.items() if bad}, (kind, quarantined, loaded)
        assert all(read == good + bad for read, good, bad in loaded.values()), loaded
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == sum(g for _, g, _ in loaded.values())
        current[kind] = {f: (read, good) for f, (read, good, _) in loaded.items()}
    key = ", ".join(ingest.AD_NATURAL_KEY)
    for table, cols in (("raw.ad_reporting", key), ("raw.ad_reporting", "source_file, source_row"),
                        ("raw.kpi", "date_day, geo")):
        dupes = con.execute(f"SELECT count(*) FROM (SELECT {cols} FROM {table} "
                            "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        assert dupes == 0, (table, cols, dupes)
    return current


def assert_artifacts_whole(artifacts: Path) -> list[Path]:
    """Every `*.nc` under `artifacts` is a complete model; returns them."""
    from mmm_pipeline.model import load_model

    models = sorted(artifacts.rglob("*.nc"))
    for path in models:
        assert not path.name.startswith("."), path
        load_model(path)  # raises ModelError on a truncated or damaged file
    return models


# --------------------------------------------------------------------------- ingestion


def test_sigkill_during_ingestion_then_rerun_loses_and_duplicates_nothing(sample_dir, copy_input, tmp_path):
    input_dir = copy_input(sample_dir)
    bulk = write_bulk_ad_report(input_dir)
    db = tmp_path / "warehouse.duckdb"
    wal, lock = Path(f"{db}.wal"), str(warehouse.lock_path(db))

    # Two kills of `python -m assets.run` inside raw_ad_reporting's load of the bulk file: while
    # its transaction writes the rows into the database file, and at its commit (WAL written, not
    # yet checkpointed). Detected from the process's open files and the database / WAL file
    # stamps, polled every 10 ms: nothing writes the database while the files are read into temp
    # tables, and the rows of the big INSERT are written to the database file before the commit
    # writes the WAL; on a fresh warehouse that grows the file.
    def reading(state: dict, run: Run) -> bool:
        files = run.open_files()
        state["lock_held"] = lock in files
        if str(bulk) in files and state["lock_held"]:
            state.setdefault("stamps_while_reading", (stamp(db), stamp(wal)))
        return state["lock_held"] and "stamps_while_reading" in state

    def writing(state: dict, run: Run) -> bool:
        if not reading(state, run):
            return False
        (db_size, _), wal_stamp = state["stamps_while_reading"]
        return stamp(db)[0] > db_size or stamp(wal) != wal_stamp

    def committing(state: dict, run: Run) -> bool:
        if not reading(state, run):
            return False
        if (stamp(db), stamp(wal)) != state["stamps_while_reading"]:
            state.setdefault("writing_since", time.monotonic())
        wal_written = stamp(wal) != state["stamps_while_reading"][1] and stamp(wal)[0] > 0
        # Without catching the WAL within 3 s of the first write, kill anyway.
        return wal_written or time.monotonic() - state.get("writing_since", float("inf")) > 3

    # One DAGSTER_HOME for the killed runs and the re-run, as `make run` has.
    env = run_env(tmp_path, input_dir, "dagster_home")
    seen, killed_runs = [], []
    for phase, condition in (("writing", writing), ("committing", committing)):
        run = Run(["-m", "assets.run"], env, tmp_path / f"killed_{phase}.log")
        state: dict = {}
        run.kill_when(lambda: condition(state, run), timeout=120, what=f"{phase} the bulk ad report")
        assert state["lock_held"], phase  # killed while holding the warehouse lock
        # `make run` claims no pool slot (assets/pools.py), so the killed run left none behind
        runs, claimed, _ = _instance_state(Path(env["DAGSTER_HOME"]))
        dead = {run_id for run_id, (_, status) in runs.items() if status == "STARTED"}
        assert len(dead) == 1 and not any(holders & dead for holders in claimed.values()), (runs, claimed)
        killed_runs.append(*dead)
        # the second `make run` began by marking the first one's dead run failed
        assert [runs[r][1] for r in killed_runs[:-1]] == ["FAILURE"] * (len(killed_runs) - 1), runs
        seen.append((phase, state["stamps_while_reading"], stamp(db), stamp(wal)))
        assert "model_job" not in run.output(), "killed too late: ingestion had finished"
        # The lock is free at once and the warehouse opens; only whole loads are in it.
        with read_only(db) as con:
            current = assert_raw_consistent(con)
            assert con.execute("SELECT count(*) FROM raw.load_log WHERE source_file = ?",
                               [BULK_FILE]).fetchone()[0] <= 1, seen
            ad_rows = con.execute("SELECT count(*) FROM raw.ad_reporting").fetchone()[0]
        if phase == "writing" and stamp(wal) == state["stamps_while_reading"][1]:
            # Killed before its commit (no WAL yet), after rows were written to the database
            # file: none of them is visible.
            assert stamp(db)[0] > state["stamps_while_reading"][0][0], seen
            assert current["ad_reporting"] == {} and ad_rows == 0, seen

    # What the next `make run` does first: the last killed run is marked failed, once.
    from dagster._core.instance.ref import InstanceRef

    from assets.run import fail_dead_runs

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
    try:
        assert fail_dead_runs(instance) == killed_runs[-1:]
        assert fail_dead_runs(instance) == []
    finally:
        instance.dispose()
    # The re-run claims the pools (INGEST_ONLY runs the code location's job as the UI would): a slot
    # a dead run still held would keep it waiting past the timeout.
    rerun = Run(["-c", INGEST_ONLY], env, tmp_path / "rerun.log")
    assert rerun.wait(timeout=240) == 0, rerun.output()[-6000:]

    with read_only(db) as con:
        current = assert_raw_consistent(con)
        events = con.execute("SELECT kind, source_file, event, sha256 FROM raw.load_log ORDER BY 1, 2").fetchall()
        superseded = con.execute("SELECT count(*) FROM raw.ad_reporting_superseded").fetchone()[0]
        n_current = con.execute("SELECT count(*) FROM raw.ad_reporting_current").fetchone()[0]
        media_weeks = con.execute("SELECT count(*) FROM staging.media_weekly_latest").fetchone()[0]
    # Every input file is in the current load log exactly once, with all of its rows ...
    for kind in FILE_KINDS:
        files = ({f.rel: f.path for f in ingest.list_files(input_dir, kind)} if kind != "lift_tests"
                 else {"lift_tests.csv": input_dir / "lift_tests.csv"})
        assert set(current[kind]) == set(files), (kind, current[kind])
        for rel, path in files.items():
            assert current[kind][rel][0] == file_rows(path), (kind, rel)
    assert current["ad_reporting"][BULK_FILE] == (BULK_ROWS, BULK_ROWS)
    # ... logged `loaded` exactly once in all (a killed load left no entry), with its sha256.
    loaded = [(k, f) for k, f, e, _ in events if e == "loaded"]
    assert len(loaded) == len(set(loaded)), events
    assert [e for e in events if e[2] != "loaded"] == [], events
    shas = {(k, f): s for k, f, _, s in events}
    for kind in ("ad_reporting", "kpi"):
        for f in ingest.list_files(input_dir, kind):
            assert shas[(kind, f.rel)] == readers.sha256_file(f.path), (kind, f.rel)
    assert superseded == 0 and n_current == sum(good for _, good in current["ad_reporting"].values())
    assert media_weeks == 105 * 6 * 4  # staging rebuilt from the complete raw tables


# --------------------------------------------------------------------------- model fit


def test_sigkill_during_model_fit_leaves_no_half_written_artifact(sample_dir, copy_input, tmp_path):
    input_dir = copy_input(sample_dir)
    db, artifacts = tmp_path / "warehouse.duckdb", tmp_path / "artifacts"

    killed = Run(["-m", "assets.run"], run_env(tmp_path, input_dir, "home_killed"), tmp_path / "killed.log")
    killed.kill_when(lambda: "sampling with nutpie" in killed.output(), timeout=240,
                     what="first model fit sampling")
    fitting = re.findall(r"fitting (\w+) model for market (\w+)", killed.output())
    assert len(fitting) == 1, fitting  # killed in the first fit
    [(variant, market)] = fitting

    with read_only(db) as con:  # the lock is free and the warehouse opens
        assert_raw_consistent(con)
        runs_before = con.execute("SELECT count(*) FROM marts.model_runs").fetchone()[0] \
            if warehouse.table_exists(con, "marts.model_runs") else 0
    assert runs_before == 0  # killed during the first fit: nothing recorded for it
    assert_artifacts_whole(artifacts)
    leftovers = sorted(artifacts.rglob(".*.tmp"))  # may remain; never read

    # The re-run: ingest_job, then the killed fit of model_job (as `python -m assets.run` does,
    # without the other variant, the other market and the outputs, to keep the test short).
    rerun = Run(["-c", RUN_FITS, market, variant], run_env(tmp_path, input_dir, "home_rerun"),
                tmp_path / "rerun.log")
    assert rerun.wait(timeout=300) == 0, rerun.output()[-6000:]

    with read_only(db) as con:
        rows = con.execute("SELECT market, variant, model_version, artifact_uri FROM marts.model_runs "
                           "ORDER BY 1, 2").fetchall()
        dupes = con.execute("SELECT count(*) FROM (SELECT market, variant, model_version FROM marts.model_runs "
                            "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
        contributions = con.execute("SELECT market, variant, count(DISTINCT model_version) "
                                    "FROM marts.contributions GROUP BY ALL ORDER BY 1, 2").fetchall()
    assert dupes == 0, rows
    assert [(m, v) for m, v, *_ in rows] == [(market, variant)], rows
    assert contributions == [(market, variant, 1)]
    models = assert_artifacts_whole(artifacts)
    versions = {v: version for _, v, version, _ in rows}
    for _, v, version, uri in rows:
        assert Path(uri) == artifacts / v / market / f"{version}.nc" and Path(uri) in models
    assert sorted(artifacts.rglob(".*.tmp")) == leftovers  # the re-run wrote no new leftovers

    # A kill in the middle of save_model (the write the sampling kill cannot reach): the target
    # name never holds a partial file, only the temporary one does.
    out = tmp_path / "save_kill"
    out.mkdir()
    saver = Run(["-c", SAVE_LOOP, str(artifacts / variant / market / f"{versions[variant]}.nc"), str(out)],
                run_env(tmp_path, input_dir, "home_save"), tmp_path / "save.log")
    partial = lambda: [p for p in out.glob(".model_*.nc.*.tmp") if stamp(p)[0] > 0]  # noqa: E731
    saver.kill_when(lambda: bool(partial()), timeout=120, what="a model being written")
    [tmp] = partial()
    assert not (out / (tmp.name[1:].split(".nc.")[0] + ".nc")).exists(), tmp
    assert_artifacts_whole(out)  # the models saved before the kill are whole


# --------------------------------------------------------------------------- Dagster instance


def _instance_state(home: Path) -> tuple[dict[str, tuple[str, str]], dict[str, set[str]], dict[str, set[str]]]:
    """(run_id -> (job, status), pool -> run ids holding a slot, pool -> run ids with a step waiting)."""
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    try:
        runs = {r.run_id: (r.job_name, r.status.value) for r in instance.get_runs()}
        claimed, pending = {}, {}
        for pool in instance.event_log_storage.get_concurrency_keys():
            info = instance.event_log_storage.get_concurrency_info(pool)
            claimed[pool] = {s.run_id for s in info.claimed_slots}
            pending[pool] = {s.run_id for s in info.pending_steps if s.assigned_timestamp is None}
        return runs, claimed, pending
    finally:
        instance.dispose()


def test_market_processes_die_with_a_killed_parent(sample_dir, copy_input, tmp_path):
    """`make run` fits the markets side by side, one spawned process each: both fit at once, and an
    OOM kill of the parent alone (not its process group) takes the market processes with it."""
    def descendants(pid: int) -> set[int]:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])  # field 4: ppid
        found, frontier = set(), {pid}
        while frontier:
            frontier = {c for c, p in parents.items() if p in frontier} - found
            found |= frontier
        return found

    def alive(pids: set[int]) -> set[int]:
        out = set()
        for pid in pids:
            try:
                if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(pid)
            except OSError:
                pass
        return out

    input_dir = copy_input(sample_dir)
    env = {**run_env(tmp_path, input_dir, "home_parallel"), "MMM_PARALLEL_MARKETS": "1"}
    run = Run(["-m", "assets.run"], env, tmp_path / "parallel.log")
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            markets = set(re.findall(r"fitting \w+ model for market (\w+)", run.output()))
            if markets == {"west", "east"}:
                break
            assert run.proc.poll() is None, run.output()[-6000:]
            time.sleep(0.5)
        else:
            pytest.fail(f"the two markets did not fit at the same time:\n{run.output()[-6000:]}")
        children = descendants(run.proc.pid)
        assert len(children) >= 2, children
        os.kill(run.proc.pid, signal.SIGKILL)  # the parent only
        run.proc.wait()
        end = time.monotonic() + 20
        while alive(children) and time.monotonic() < end:
            time.sleep(0.5)
        assert not alive(children), f"market processes outlived their parent: {alive(children)}"
    finally:
        run.kill()
