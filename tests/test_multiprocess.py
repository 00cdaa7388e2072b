"""Two market partitions of `model_job` at once, each under Dagster's multiprocess executor,
against one DuckDB warehouse: no DuckDB lock error, every fit recorded, and the two runs
really ran at the same time.

`dagster job execute` (the CLI) runs a job with its default executor, which for an asset job is
the multiprocess one (every step in its own process) when the instance is persistent, so each
run gets a DAGSTER_HOME of its own with the project's dagster.yaml. Only the warehouse's file
lock (`<warehouse>.lock`, held by every connection) stands between the processes of the two
runs: their instances, and so their `duckdb` / `model_fit` pools, are separate.

To stay within a few minutes on 2 cores the runs select one step of `model_job`, the
`mmm_uncalibrated` fit: it reads the warehouse and writes marts in a process of its own (each
step process imports the whole code location, ~10 s on 2 cores), and the fits of the two markets
overlap. (The calibrated fit is the same asset code path with one more likelihood term; it would
double the test's time without exercising anything more of the executor or the locks.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml
from filelock import FileLock

from mmm_pipeline import warehouse
from tests.conftest import REPO, materialize

# Every test here runs the pipeline's model fits (in subprocesses).
pytestmark = pytest.mark.fit

FIT_STEPS = ("mmm_uncalibrated",)
STEPS = FIT_STEPS
RUN_TIMEOUT_S = 420
# A DuckDB lock conflict ("IO Error: Could not set lock on file ... Conflicting lock is held"),
# a filelock timeout ("The file lock '...' could not be acquired") or SQLite's "database is locked".
LOCK_ERROR = re.compile(r"could not set lock|conflicting lock|lock .*could not be acquired|"
                        r"database is locked|lock.*(error|exception|timeout|timed out)", re.IGNORECASE)


def _env(input_dir: Path, wh: Path, art: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MMM_INPUT_DIR=str(input_dir), MMM_WAREHOUSE=str(wh), MMM_ARTIFACT_DIR=str(art),
               MMM_PROFILE="fast", DAGSTER_HOME=str(home), GX_ANALYTICS_ENABLED="false",
               PYTHONUNBUFFERED="1")
    return env


def _intervals(home: Path) -> tuple[dict, tuple[float, float], str]:
    """(step_key -> (start, end) timestamps, (run start, run end), partition) of the one run
    recorded in the instance at `home`."""
    from dagster._core.instance.ref import InstanceRef

    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    try:
        runs = instance.get_runs()
        assert len(runs) == 1, [r.run_id for r in runs]
        run = runs[0]
        assert run.status == dg.DagsterRunStatus.SUCCESS, run.status
        starts, ends, run_span = {}, {}, [None, None]
        for rec in instance.all_logs(run.run_id):
            ev = rec.dagster_event
            if ev is None:
                continue
            if ev.event_type == dg.DagsterEventType.STEP_START:
                starts[rec.step_key] = rec.timestamp
            elif ev.event_type == dg.DagsterEventType.STEP_SUCCESS:
                ends[rec.step_key] = rec.timestamp
            elif ev.event_type == dg.DagsterEventType.RUN_START:
                run_span[0] = rec.timestamp
            elif ev.event_type == dg.DagsterEventType.RUN_SUCCESS:
                run_span[1] = rec.timestamp
        steps = {k: (starts[k], ends[k]) for k in starts if k in ends}
        assert None not in run_span, run_span
        return steps, tuple(run_span), run.tags.get("dagster/partition")
    finally:
        instance.dispose()


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Seconds during which both intervals were open (<= 0: they did not overlap)."""
    return min(a[1], b[1]) - max(a[0], b[0])


def test_two_markets_run_at_once_under_the_multiprocess_executor(sample_dir, copy_input, tmp_path):
    input_dir = copy_input(sample_dir)
    wh, art = tmp_path / "warehouse.duckdb", tmp_path / "artifacts"
    markets = sorted(yaml.safe_load((input_dir / "pipeline.yaml").read_text())["markets"])
    assert markets == ["east", "west"]

    ingest = materialize(input_dir, wh, art, models=False)
    assert ingest.success

    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}
    homes: dict[str, Path] = {}
    started = time.monotonic()
    try:
        for market in markets:
            home = homes[market] = tmp_path / f"dagster_home_{market}"
            home.mkdir()
            shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
            logs[market] = tmp_path / f"model_job_{market}.log"
            cmd = [sys.executable, "-m", "dagster", "job", "execute", "-m", "assets.definitions",
                   "-j", "model_job", "--tags", json.dumps({"dagster/partition": market}),
                   "-o", ",".join(STEPS)]
            with open(logs[market], "w") as out:
                # A session of its own, so a hung run can be killed with its step processes.
                procs[market] = subprocess.Popen(cmd, cwd=REPO, env=_env(input_dir, wh, art, home),
                                                 stdout=out, stderr=subprocess.STDOUT,
                                                 start_new_session=True)
        codes = {}
        for market, proc in procs.items():
            left = max(1.0, RUN_TIMEOUT_S - (time.monotonic() - started))
            codes[market] = proc.wait(timeout=left)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    texts = {m: p.read_text(errors="replace") for m, p in logs.items()}
    for market, text in texts.items():
        assert codes[market] == 0, f"model_job {market} exited {codes[market]}:\n{text[-6000:]}"
        assert "RUN_SUCCESS" in text and "STEP_FAILURE" not in text, text[-6000:]
        # Each step ran in a process of its own (the multiprocess executor), not in the CLI's.
        pids = {step: set(re.findall(rf" - (\d+) - {step} - STEP_START", text)) for step in STEPS}
        assert all(len(p) == 1 for p in pids.values()) and len(set.union(*pids.values())) == len(STEPS), pids
        lock_errors = [line for line in text.splitlines() if LOCK_ERROR.search(line)]
        assert not lock_errors, f"model_job {market}: lock errors:\n" + "\n".join(lock_errors[:20])

    # The runs overlapped: both were running at once, and so were the two markets' fits.
    spans = {}
    for market, home in homes.items():
        steps, run_span, partition = _intervals(home)
        assert partition == market
        assert set(STEPS) <= set(steps), steps
        spans[market] = (steps, run_span)
    (w_steps, w_run), (e_steps, e_run) = spans["west"], spans["east"]
    assert _overlap(w_run, e_run) > 0, (w_run, e_run)
    assert max(w_run[0], e_run[0]) < min(w_run[1], e_run[1])  # both started before either finished
    fit_overlap = max(_overlap(w_steps[a], e_steps[b]) for a in FIT_STEPS for b in FIT_STEPS)
    assert fit_overlap > 1.0, {"west": w_steps, "east": e_steps}

    # Nothing lost to the concurrency: one fit per market and variant, each with its artifact.
    with FileLock(str(warehouse.lock_path(wh)), timeout=10):  # released once the runs ended
        pass
    with warehouse.connect(wh, timeout=30) as con:
        runs = con.execute("SELECT market, variant, model_version, artifact_uri FROM marts.model_runs "
                           "ORDER BY 1, 2").fetchall()
        contrib = con.execute("SELECT market, variant, count(DISTINCT model_version) FROM marts.contributions "
                              "GROUP BY ALL ORDER BY 1, 2").fetchall()
    assert [(m, v) for m, v, *_ in runs] == [(m, "uncalibrated") for m in markets], runs
    assert len({version for _, _, version, _ in runs}) == 2
    assert all(Path(uri).is_file() for *_, uri in runs)
    assert contrib == [(m, "uncalibrated", 1) for m in markets]
