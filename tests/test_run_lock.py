"""One `make run` at a time per warehouse and DAGSTER_HOME (`mmm_pipeline.run_lock`).

Two `python -m assets.run` started at once on a fresh DAGSTER_HOME used to both create the instance's
SQLite storage, and the second died (`sqlite3.IntegrityError: UNIQUE constraint failed:
alembic_version.version_num`). Now the second waits for the first, naming it, then runs.

No model is fitted: the pipeline runs use an empty input folder, whose ingestion fails at once
(`channels.csv: not found`, exit 1), so each run takes seconds and ends as a single run would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest

from mmm_pipeline.run_lock import (EXIT_TIMEOUT, RunLockTimeout, holder_file, run_lock, run_lock_files,
                                   wait_seconds)
from tests.conftest import REPO

# A process that holds `argv[1]` with run_lock until the file `argv[2]` appears.
HOLDER = """
import sys, time
from pathlib import Path
from mmm_pipeline.run_lock import run_lock
with run_lock([sys.argv[1]], details={"input folder": "/data/acme"}):
    print("held", flush=True)
    while not Path(sys.argv[2]).exists():
        time.sleep(0.05)
"""
STORAGE_ERROR = ("IntegrityError", "UNIQUE constraint", "OperationalError", "database is locked",
                 "Traceback (most recent call last)")


@pytest.fixture()
def holder(tmp_path):
    """start(lock_file) -> a process holding lock_file (until `release(proc)` or the test ends)."""
    procs = []

    def start(lock_file: Path) -> subprocess.Popen:
        release = tmp_path / f"release_{len(procs)}"
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_file), str(release)], cwd=REPO,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        proc.release = release
        procs.append(proc)
        line = proc.stdout.readline()
        assert line.strip() == "held", line + proc.stdout.read()
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


def test_second_acquirer_waits_and_names_the_holder(tmp_path, holder):
    lock_file = tmp_path / "w.duckdb.run.lock"
    proc = holder(lock_file)
    sidecar = json.loads(holder_file(lock_file).read_text())
    assert sidecar["pid"] == proc.pid and sidecar["host"] == socket.gethostname()
    assert sidecar["input folder"] == "/data/acme" and sidecar["started"]

    threading.Timer(1.0, proc.release.touch).start()
    messages: list[str] = []
    started = time.monotonic()
    with run_lock([lock_file], log=messages.append, poll=0.1, details={"input folder": "/mine"}) as info:
        waited = time.monotonic() - started
        assert proc.wait(timeout=10) == 0  # the holder had ended
        assert json.loads(holder_file(lock_file).read_text()) == info  # the sidecar names this holder now
    assert waited >= 0.9
    assert len(messages) == 2, messages
    assert messages[0].startswith(f"Waiting for another pipeline run, which holds {lock_file}: pid {proc.pid} on ")
    assert "input folder /data/acme" in messages[0] and "MMM_RUN_WAIT_SECONDS" in messages[0]
    assert messages[1].startswith(f"{lock_file} is free")
    assert not holder_file(lock_file).exists()  # removed on release


def test_timeout_names_the_holder(tmp_path, holder):
    lock_file = tmp_path / "w.duckdb.run.lock"
    proc = holder(lock_file)
    messages: list[str] = []
    started = time.monotonic()
    with pytest.raises(RunLockTimeout) as err:
        with run_lock([lock_file], timeout=0.5, log=messages.append, poll=0.1):
            pytest.fail("acquired a held lock")
    assert 0.4 <= time.monotonic() - started < 5
    text = str(err.value)
    assert f"pid {proc.pid} on {socket.gethostname()}" in text and "input folder /data/acme" in text, text
    assert "MMM_RUN_WAIT_SECONDS" in text and str(lock_file) in text
    assert len(messages) == 1 and f"pid {proc.pid}" in messages[0]
    assert proc.poll() is None  # still holding: nothing was broken


def test_a_sigkilled_holder_releases_the_lock(tmp_path, holder):
    """flock locks die with their process: the OS closes a killed process's descriptors."""
    lock_file = tmp_path / "w.duckdb.run.lock"
    proc = holder(lock_file)
    with pytest.raises(RunLockTimeout):
        with run_lock([lock_file], timeout=0, log=lambda _: None):
            pass
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    assert json.loads(holder_file(lock_file).read_text())["pid"] == proc.pid  # left behind by the kill
    messages: list[str] = []
    started = time.monotonic()
    with run_lock([lock_file], timeout=5, log=messages.append) as info:
        assert time.monotonic() - started < 3 and messages == []  # at once (the 3 s is slack for a loaded CI), no waiting
        assert json.loads(holder_file(lock_file).read_text())["pid"] == info["pid"] == os.getpid()


def test_lock_files_and_wait_setting(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    wh = tmp_path / "data" / "w.duckdb"
    assert run_lock_files(wh, home) == sorted([home / ".mmm.run.lock", tmp_path / "data" / "w.duckdb.run.lock"],
                                              key=str)
    assert run_lock_files(wh, None) == run_lock_files(wh, tmp_path / "missing") == [Path(f"{wh}.run.lock")]
    assert wait_seconds({}) is None and wait_seconds({"MMM_RUN_WAIT_SECONDS": "-1"}) is None
    assert wait_seconds({"MMM_RUN_WAIT_SECONDS": "90"}) == 90.0
    with pytest.raises(ValueError, match="MMM_RUN_WAIT_SECONDS"):
        wait_seconds({"MMM_RUN_WAIT_SECONDS": "soon"})


def _run_env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"  # fresh: no SQLite storage yet
    home.mkdir(exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "empty_input").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "MMM_RUN_WAIT_SECONDS"}
    env.update(MMM_INPUT_DIR=str(tmp_path / "empty_input"), MMM_WAREHOUSE=str(tmp_path / "warehouse.duckdb"),
               MMM_ARTIFACT_DIR=str(tmp_path / "artifacts"), MMM_PROFILE="fast", DAGSTER_HOME=str(home),
               GX_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
    return env


@pytest.mark.slow  # two pipeline processes one after the other (~35 s): make test only
def test_two_runs_at_once_on_a_fresh_dagster_home_wait_for_each_other(tmp_path):
    env = _run_env(tmp_path)
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    procs = []
    try:
        for log in logs:
            with open(log, "w") as out:
                procs.append(subprocess.Popen([sys.executable, "-m", "assets.run"], cwd=REPO, env=env,
                                              stdout=out, stderr=subprocess.STDOUT))
        codes = [proc.wait(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    texts = [log.read_text(errors="replace") for log in logs]
    for code, text in zip(codes, texts):
        assert not [s for s in STORAGE_ERROR if s in text], text[-6000:]
        # what a single run on an empty input folder does: ingestion fails, exit 1
        assert code == 1, text[-6000:]
        assert "ingest_job: failed" in text and "channels.csv: not found" in text, text[-6000:]
    waited = [i for i, text in enumerate(texts) if "Waiting for another pipeline run" in text]
    assert len(waited) == 1, texts  # the one that came second, and only it
    other = procs[1 - waited[0]]
    lines = [li for li in texts[waited[0]].splitlines() if li.startswith("Waiting for another pipeline run")]
    assert any(f"pid {other.pid} on {socket.gethostname()}" in li and f"input folder {env['MMM_INPUT_DIR']}" in li
               for li in lines), lines  # the run it waited for
    assert " is free: proceeding after waiting " in texts[waited[0]]

    # Both runs are in the one instance, one after the other.
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(env["DAGSTER_HOME"]))
    try:
        runs = sorted(instance.get_run_records(), key=lambda r: r.start_time)
        assert [r.dagster_run.status for r in runs] == [dg.DagsterRunStatus.FAILURE] * 2
        assert runs[0].end_time <= runs[1].start_time
    finally:
        instance.dispose()


def test_run_gives_up_after_mmm_run_wait_seconds_naming_the_holder(tmp_path, holder):
    env = _run_env(tmp_path)
    proc = holder(Path(env["DAGSTER_HOME"]) / ".mmm.run.lock")
    env["MMM_RUN_WAIT_SECONDS"] = "1"
    run = subprocess.run([sys.executable, "-m", "assets.run"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == EXIT_TIMEOUT, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"pid {proc.pid} on {socket.gethostname()}" in run.stderr and "gave up after waiting" in run.stderr
    assert not (Path(env["DAGSTER_HOME"]) / "storage").exists()  # it never opened the instance
