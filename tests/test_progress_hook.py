"""The draw-level progress of nutpie fits: the one place that relies on how pymc calls nutpie.

If pymc stops passing nutpie's per-chain progress through ``nutpie.sample(...,
progress_callback=...)``, fits still run but the run log goes quiet; this test
fails loudly instead.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mmm_pipeline.model.progress import SamplingProgress, install_nutpie_progress_hook, nutpie_progress


@pytest.mark.fit
def test_a_nutpie_fit_reports_its_chains_through_the_hook():
    import pymc as pm

    lines: list[str] = []
    progress = SamplingProgress(lines.append, every_s=0.0)
    with pm.Model():
        pm.Normal("x", 0, 1)
        with nutpie_progress(progress):
            idata = pm.sample(nuts_sampler="nutpie", chains=2, tune=50, draws=50, progressbar=False,
                              random_seed=1, compute_convergence_checks=False)
    assert idata.posterior.sizes["draw"] == 50
    assert len(progress.final) == 2, "pymc no longer feeds nutpie's progress_callback: fix model/progress.py"
    assert sum(c["finished"] for c in progress.final) == sum(c["total"] for c in progress.final) == 200
    assert all(c["steps"] > 0 for c in progress.final)
    assert lines and lines[-1].startswith("sampling: 200/200 draws")


def test_the_hook_wraps_nutpie_sample_once_and_feeds_only_the_calling_thread(monkeypatch):
    import nutpie

    calls = []

    def fake_sample(*args, progress_callback=None, **kwargs):
        chain = type("ChainProgress", (), dict(finished_draws=5, total_draws=5, divergences=0, total_num_steps=9,
                                                runtime_ms=1.0, tuning=False))()
        if progress_callback is not None:
            progress_callback([chain])
        return "idata"

    monkeypatch.setattr(nutpie, "sample", fake_sample)
    install_nutpie_progress_hook()
    wrapped = nutpie.sample
    install_nutpie_progress_hook()
    assert nutpie.sample is wrapped and wrapped is not fake_sample  # idempotent

    mine, other = SamplingProgress(None), SamplingProgress(None)
    with nutpie_progress(mine):
        assert nutpie.sample(progress_callback=calls.append) == "idata"  # pymc's callback still called
        seen_in_thread = []
        t = threading.Thread(target=lambda: seen_in_thread.append(nutpie.sample()))
        t.start()
        t.join()
    assert len(calls) == 1 and mine.final[0]["steps"] == 9 and other.final == []
    assert nutpie.sample() == "idata" and np.isfinite(mine.final[0]["runtime_ms"])
