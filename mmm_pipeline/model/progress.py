"""Draw-level progress of a nutpie fit, as throttled log lines.

``pm.sample(nuts_sampler="nutpie")`` passes its own ``progress_callback`` to
``nutpie.sample`` and offers no way to add ours, so :func:`install_nutpie_progress_hook`
wraps ``nutpie.sample`` (nutpie's public entry point) to call the fit's
:class:`SamplingProgress` first, then pymc's callback. That function is the one
place that relies on how pymc calls nutpie; ``tests/test_progress_hook.py``
fails when pymc stops routing nutpie's progress through it. Should that happen,
fits still run, without draw-level progress (:func:`nutpie_progress` says so).
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import Callable

ProgressCallback = Callable[[str], None]

_HOOK_LOCK = threading.Lock()
_HOOK_LOCAL = threading.local()
_HOOK_MARK = "_mmm_pipeline_progress_hook"


class SamplingProgress:
    """Throttled progress lines from nutpie's per-chain progress (``nutpie.ChainProgress`` lists)."""

    def __init__(self, callback: ProgressCallback | None, every_s: float = 5.0):
        self.callback = callback
        self.every_s = every_s
        self.last = 0.0
        self.lock = threading.Lock()
        self.final: list = []
        self.finished = False

    def emit(self, msg: str) -> None:
        if self.callback is not None:
            try:
                self.callback(msg)
            except Exception:  # a logging failure must not kill a fit
                pass

    def chains(self, progress) -> None:
        with self.lock:
            self.final = [
                dict(finished=p.finished_draws, total=p.total_draws, divergences=p.divergences,
                     steps=p.total_num_steps, runtime_ms=p.runtime_ms, tuning=p.tuning)
                for p in progress
            ]
            now = time.monotonic()
            done = sum(c["finished"] for c in self.final)
            total = sum(c["total"] for c in self.final) or 1
            finished = done >= total
            if (now - self.last < self.every_s and not finished) or (finished and self.finished):
                return
            self.last, self.finished = now, finished
            tuning = sum(1 for c in self.final if c["tuning"])
            div = sum(c["divergences"] for c in self.final)
        self.emit(f"sampling: {done}/{total} draws incl. warmup ({100 * done / total:.0f}%), "
                  f"{tuning} chain(s) tuning, {div} divergences so far")


def install_nutpie_progress_hook() -> None:
    """Wrap ``nutpie.sample`` once (idempotent) so that a call made in a thread inside
    :func:`nutpie_progress` also feeds that thread's :class:`SamplingProgress`.

    Relies on pymc calling ``nutpie.sample(..., progress_callback=...)`` through the
    module attribute; the progress object is looked up in the calling thread, so
    concurrent fits in threads do not mix their lines.
    """
    import nutpie

    with _HOOK_LOCK:
        original = nutpie.sample
        if getattr(original, _HOOK_MARK, False):
            return

        @functools.wraps(original)
        def sample(*args, progress_callback=None, **kwargs):
            progress = getattr(_HOOK_LOCAL, "progress", None)
            if progress is not None:
                theirs = progress_callback

                def progress_callback(chain_progress):
                    progress.chains(chain_progress)
                    return theirs(chain_progress) if theirs is not None else None

            return original(*args, progress_callback=progress_callback, **kwargs)

        setattr(sample, _HOOK_MARK, True)
        nutpie.sample = sample


@contextlib.contextmanager
def nutpie_progress(progress: SamplingProgress):
    """Within the block, nutpie fits started by this thread report to `progress`."""
    try:
        install_nutpie_progress_hook()
    except Exception:  # nutpie missing or changed: fits still run, without draw-level progress
        yield
        return
    previous = getattr(_HOOK_LOCAL, "progress", None)
    _HOOK_LOCAL.progress = progress
    try:
        yield
    finally:
        _HOOK_LOCAL.progress = previous
