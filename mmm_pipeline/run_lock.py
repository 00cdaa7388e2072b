"""One pipeline run at a time per warehouse and per Dagster instance: `run_lock`.

Two `make run` at once on one fresh DAGSTER_HOME both created the instance's SQLite storage and the
second died (`sqlite3.IntegrityError: UNIQUE constraint failed: alembic_version.version_num`); on one
warehouse they would also interleave their loads and fits. `python -m assets.run` therefore takes
`run_lock` before `DagsterInstance.get()` (which creates that storage): a second run waits for the
first, saying which run holds the lock, and proceeds when it ends (or gives up after
`MMM_RUN_WAIT_SECONDS`, exit code `EXIT_TIMEOUT`).

Lock files: `<warehouse>.run.lock` beside the warehouse and `<DAGSTER_HOME>/.mmm.run.lock`, always
taken in the same (sorted) order so two runs never hold one each. They are not the warehouse's
per-connection lock (`<warehouse>.lock`, `warehouse.connect`), which the holder and the per-market
processes it spawns keep taking and releasing as before; those processes never take the run lock.

A SIGKILLed (or OOM-killed) holder never blocks the next run: `filelock.FileLock` is `fcntl.flock` on
Unix, and the kernel drops a flock when the last descriptor of the locked file closes, which it does
itself when the process dies (the descriptor is not inheritable, so no child keeps it open either).
tests/test_run_lock.py kills a holder with SIGKILL and takes its lock at once. (On a filesystem
without flock filelock falls back to a marker file, which it breaks when the marker's process is gone.)

The holder's details (pid, host, start time, input folder, command) go to a sidecar file
`<lock>.json`, not the lock file itself (filelock 3 truncates the lock file on every attempt). The
holder removes it before releasing the lock; one left by a killed holder is overwritten by the next.
Dagster-free.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

from filelock import FileLock, Timeout

from mmm_pipeline.settings import ConfigError

WAIT_ENV = "MMM_RUN_WAIT_SECONDS"
# EX_TEMPFAIL: another run held the lock for longer than MMM_RUN_WAIT_SECONDS; try again later.
EXIT_TIMEOUT = 75


class RunLockTimeout(TimeoutError):
    """The lock was still held when the wait ran out; the message names the holder."""

    def __init__(self, lock_file: Path, holder: str, waited: float):
        self.lock_file, self.holder, self.waited = lock_file, holder, waited
        super().__init__(f"gave up after waiting {waited:.0f} s ({WAIT_ENV}) for another pipeline run, "
                         f"which still holds {lock_file}: {holder}")


def run_lock_files(warehouse: Path | str, dagster_home: Path | str | None = None) -> list[Path]:
    """The lock files of a run on `warehouse` with the instance at `dagster_home` (none when it is
    unset or not a folder: Dagster then fails with its own message), in the order they are taken."""
    files = {Path(str(Path(warehouse).expanduser().resolve()) + ".run.lock")}
    if dagster_home:
        home = Path(dagster_home).expanduser()
        if home.is_dir():
            files.add(home.resolve() / ".mmm.run.lock")
    return sorted(files, key=str)


def wait_seconds(env: dict[str, str] | None = None) -> float | None:
    """`MMM_RUN_WAIT_SECONDS`: how long to wait for another run; unset, empty or negative: no limit."""
    value = (os.environ if env is None else env).get(WAIT_ENV, "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{WAIT_ENV}={value!r} is not a number of seconds") from None
    return None if seconds < 0 else seconds


def holder_file(lock_file: Path | str) -> Path:
    return Path(str(lock_file) + ".json")


def read_holder(lock_file: Path | str) -> str | None:
    """Who holds `lock_file`, from its sidecar, in words; None without one (a holder that is just taking
    or releasing the lock)."""
    try:
        return describe(json.loads(holder_file(lock_file).read_text()))
    except (OSError, ValueError, AttributeError):
        return None


def describe(info: dict) -> str:
    head = f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
    rest = [f"{k} {v}" for k, v in info.items() if k not in ("pid", "host", "started")]
    return head + "".join(f", {r}" for r in rest)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def run_lock(lock_files: Iterable[Path | str], *, timeout: float | None = None, details: dict | None = None,
             log: Callable[[str], None] = _stderr, poll: float = 1.0) -> Iterator[dict]:
    """Hold every lock of `lock_files` (taken in the order given) for the body; yields what the sidecars say.

    While another process holds one, `log` says who (again whenever the holder changes) and this waits,
    at most `timeout` seconds in all (None: no limit), then raises RunLockTimeout naming the holder.
    `details` (e.g. {"input folder": ...}) are written to the sidecars after pid, host and start time.
    """
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": datetime.now().astimezone().isoformat(timespec="seconds"),
            **(details or {}), "command": " ".join([Path(sys.executable).name, *sys.argv])}
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    with ExitStack() as stack:
        for path in map(Path, lock_files):
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(path))
            _acquire(lock, path, start, deadline, log, poll)
            stack.callback(lock.release)
            # LIFO: the sidecar goes before the lock is released, so it never names a later holder wrongly.
            stack.callback(holder_file(path).unlink, missing_ok=True)
            _write_holder(path, info)
        yield info


def _acquire(lock: FileLock, path: Path, start: float, deadline: float | None,
             log: Callable[[str], None], poll: float) -> None:
    shown = None  # the holder last reported; "" once the unknown one was
    while True:
        try:
            if shown is None:  # one attempt first: the wait message is for a lock that is held
                wait = 0.0
            else:
                wait = poll if deadline is None else max(0.0, min(poll, deadline - time.monotonic()))
            lock.acquire(timeout=wait)
        except Timeout:
            holder = read_holder(path)
            unknown = f"a run that has not written its details to {holder_file(path)} (yet)"
            if deadline is not None and time.monotonic() >= deadline:
                raise RunLockTimeout(path, holder or unknown, time.monotonic() - start) from None
            if shown is None or (holder is not None and holder != shown):  # again when another run holds it
                limit = (f"at most {deadline - start:.0f} s ({WAIT_ENV})" if deadline is not None
                         else f"until it ends (set {WAIT_ENV} to give up after that many seconds)")
                log(f"Waiting for another pipeline run, which holds {path}: {holder or unknown}. Waiting {limit}.")
                shown = holder or ""
            continue
        if shown is not None:
            log(f"{path} is free: proceeding after waiting {time.monotonic() - start:.0f} s.")
        return


def _write_holder(lock_file: Path, info: dict) -> None:
    """Write the sidecar whole (a waiter never reads half of it)."""
    target = holder_file(lock_file)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=1) + "\n")
    os.replace(tmp, target)
