"""Fitting one market's MMM: data, build, sample (nutpie), thin, diagnose; the result as :class:`FitResult`."""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mmm_pipeline.model.build import build_model
from mmm_pipeline.model.calibration import Calibration
from mmm_pipeline.model.config import ModelConfig, SamplerConfig, config_hash
from mmm_pipeline.model.data import ModelData, prepare_model_data
from mmm_pipeline.model.diagnostics import DIVERGENCE_ATTR, diagnose, gate_result
from mmm_pipeline.model.progress import ProgressCallback, SamplingProgress, nutpie_progress


@dataclass
class FitResult:
    mmm: Any
    data: ModelData
    config: ModelConfig
    config_hash: str
    variant: str                      # "calibrated" | "uncalibrated"
    diagnostics: dict
    gate_passed: bool
    gate_failures: list[str]
    gate_warnings: list[str]
    fit_seconds: float
    stage_seconds: dict[str, float]
    sampler_stats: dict[str, float]
    lift_tests_used: pd.DataFrame | None = None
    calibration: Calibration | None = None    # what load_model re-applies (saved in the posterior's attrs)



# The normalised source (mmm_pipeline.code_graph.normalise) of the pymc-marketing method that
# _thin_before_deterministics repeats; tests/test_library_helpers.py fails when an upgrade changes it.
SAMPLE_WITH_DETERMINISTICS_SHA = "4eb39110932576ec"


def _thin_before_deterministics(mmm, thin: int, counts: dict) -> None:
    """Make `mmm.fit` keep every thin-th draw *before* pymc-marketing computes the deterministics.

    The one place that depends on pymc-marketing's private `_sample_with_deterministics` (no public
    hook thins before the deterministics); its source hash is pinned in
    SAMPLE_WITH_DETERMINISTICS_SHA.

    pymc-marketing 1.3 samples the free variables, then computes every deterministic (channel
    contributions per date, geo and channel, ...) on all draws (`_sample_with_deterministics`); on
    the 20-geo Meridian model that is 10 s per 4,000 draws and the run's memory peak. The same
    steps in the same order, with the thinning in between; `counts` receives the divergences and the
    draws of the unthinned run, which the divergence gate judges."""
    import pymc as pm

    def sample_thinned(sampler_kwargs, step_factory=None):
        model = mmm._get_sampling_model()
        with model:
            kwargs = dict(sampler_kwargs)
            if step_factory is not None:
                kwargs["step"] = step_factory()
            idata = pm.sample(var_names=[v.name for v in model.free_RVs], **kwargs)
            stats = idata.sample_stats
            counts["divergences"] = int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else 0
            counts["draws"] = int(stats.sizes["chain"] * stats.sizes["draw"])
            # renumber the kept draws 0..n-1: what pymc-marketing samples from this posterior later
            # (the posterior predictive of the fit) is numbered that way, and must align with it
            idata = idata.isel(draw=slice(None, None, thin)).map_over_datasets(
                lambda ds: ds.assign_coords(draw=np.arange(ds.sizes["draw"])) if "draw" in ds.dims else ds)
            if model.deterministics:
                pm.compute_deterministics(idata, extend_dataset=True, progressbar=False)
        return idata

    mmm._sample_with_deterministics = sample_thinned


def use_numba_opt(level: int) -> None:
    """Every fit of this process compiles at one LLVM level, set through numba's documented `NUMBA_OPT`
    (its compiler re-reads the NUMBA_* environment before each compile). The first fit's level holds
    for the process, the validation refit's included; a `NUMBA_OPT` exported by the user wins."""
    os.environ.setdefault("NUMBA_OPT", str(level))


def _nuts_kwargs(s: SamplerConfig) -> dict:
    nuts: dict[str, Any] = {"target_accept": s.target_accept, "max_treedepth": s.max_treedepth}
    if s.nuts_sampler == "nutpie" and s.adaptation != "diag":
        nuts["adaptation"] = s.adaptation
    return {"nuts": nuts}


def fit_model(
    media_weekly: pd.DataFrame,
    kpi_weekly: pd.DataFrame,
    cost_per_unit: pd.DataFrame | None,
    cfg: ModelConfig,
    *,
    lift_tests: pd.DataFrame | None = None,
    progress_callback: ProgressCallback | None = None,
    geos: Sequence[str] | None = None,
    controls: pd.DataFrame | None = None,
    model_config: dict | None = None,
    roas_targets: pd.DataFrame | None = None,
    scales=None,
) -> FitResult:
    """Fit one market's MMM (calibrated when `lift_tests` is given) and diagnose it.

    `geos` restricts the staging frames to a market's geos (default: all).
    `lift_tests` is :func:`mmm_pipeline.model.lift_tests.convert_lift_tests` output
    (rows of other geos / channels are ignored). `model_config` replaces the
    priors built from `cfg` (used by the benchmark). `scales`: fixed scales (mmm_pipeline.model.scales;
    default: derived from the data). Raises ModelError for bad
    input; a fit that does not converge is *returned* with gate_passed False.
    """
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    progress = SamplingProgress(progress_callback)

    def stage(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = round(now - start, 3)
        return now

    t = time.perf_counter()
    progress.emit("preparing model data")
    data = prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos,
                              control_columns=cfg.control_columns, controls=controls)
    progress.emit(f"model data: {len(data.weeks)} complete weeks x {len(data.geos)} geo(s) "
                  f"x {len(data.channels)} channels; dropped weeks {[str(w.date()) for w in data.dropped_weeks]}")
    t = stage("prepare_data", t)

    progress.emit("importing pymc-marketing")
    import pymc_marketing.mmm  # noqa: F401  (import time is its own stage)

    t = stage("import", t)
    cal = cfg.calibration.likelihood
    mmm, calibration = build_model(data, cfg, lift_tests=lift_tests, model_config=model_config,
                                   roas_targets=roas_targets, scales=scales)
    lift, targets = calibration.lift_tests, calibration.roas_targets
    n_targets = len(targets) if targets is not None else 0
    variant = "calibrated" if calibration.calibrated else "uncalibrated"
    if lift_tests is not None and lift is None:
        progress.emit("no lift test applies to this market" + ("" if n_targets else ": fitting uncalibrated"))
    if n_targets:
        progress.emit(f"added {n_targets} ROAS/CPA target term(s) (add_cost_per_target_calibration)")
    if lift is not None and len(lift):
        n_terms = lift["test_id"].nunique() if cal == "window" else len(lift)
        progress.emit(f"added {n_terms} lift test likelihood term(s) ({cal}) from {len(lift)} row(s)")
    t = stage("build", t)

    s = cfg.sampler
    cores = s.cores or max(1, min(s.chains, os.cpu_count() or 1))
    progress.emit(f"sampling with {s.nuts_sampler}: {s.chains} chains x {s.tune} tune + {s.draws} draws"
                  f"{f' (1 in {s.thin} kept)' if s.thin > 1 else ''}, {cores} in parallel (compiling first)")
    unthinned: dict[str, int] = {}
    if s.thin > 1:
        _thin_before_deterministics(mmm, s.thin, unthinned)
    hook = nutpie_progress(progress) if s.nuts_sampler == "nutpie" else contextlib.nullcontext()
    # Unthinned, pymc-marketing recomputes the deterministics with pymc's default rich
    # progress bar ("Computing ...") and no way to turn it off: keep it out of the run log.
    use_numba_opt(s.numba_opt)
    with hook, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="pymc")
        mmm.fit(
            data.X, data.y,
            progressbar=False,
            random_seed=cfg.random_seed,
            nuts_sampler=s.nuts_sampler,
            chains=s.chains,
            tune=s.tune,
            draws=s.draws,
            cores=cores,
            **_nuts_kwargs(s),
        )
    t = stage("sample", t)
    # saved once with the posterior: load_model re-applies it to the rebuilt graph
    calibration.save_to(mmm.idata)
    sampling_time = float(mmm.idata.posterior.attrs.get("sampling_time", stages["sample"]))
    sampled = mmm.idata.sample_stats
    # divergences as a share of every post-warmup draw; R-hat and ESS are then judged on exactly the
    # (thinned) posterior that is saved and used downstream
    mmm.idata.attrs[DIVERGENCE_ATTR] = json.dumps([unthinned["divergences"], unthinned["draws"]] if unthinned else [
        int(np.asarray(sampled["diverging"]).sum()) if "diverging" in sampled else 0,
        int(sampled.sizes["chain"] * sampled.sizes["draw"])])

    diag = diagnose(mmm, max_rhat=cfg.gates.max_rhat, min_ess_bulk=cfg.gates.min_ess_bulk)
    passed, failures, warns = gate_result(diag, cfg)
    t = stage("diagnostics", t)
    total = time.perf_counter() - t0

    steps = int(sum(c["steps"] for c in progress.final)) if progress.final else None
    runtime_ms = float(sum(c["runtime_ms"] for c in progress.final)) if progress.final else None
    n_steps = mmm.idata.sample_stats["n_steps"] if "n_steps" in mmm.idata.sample_stats else None
    sampler_stats = {
        "sampling_seconds": round(sampling_time, 3),
        "mean_leapfrog_steps_per_draw": float(n_steps.mean()) if n_steps is not None else None,
        "total_leapfrog_steps": steps,
        "us_per_gradient": (1000.0 * runtime_ms / steps) if steps else None,
        "chains": s.chains, "draws": s.draws, "tune": s.tune, "cores": cores,
    }
    progress.emit(
        f"fit done in {total:.1f}s ({variant}): max R-hat {diag['max_rhat']:.4f}, "
        f"min bulk ESS {diag['min_ess_bulk']:.0f}, {diag['divergences']} divergences, "
        f"R2 {diag['r2']:.3f}, 94% coverage {diag['coverage_94']:.3f}; gate "
        f"{'passed' if passed else 'FAILED: ' + '; '.join(failures)}"
    )
    return FitResult(
        mmm=mmm, data=data, config=cfg, config_hash=config_hash(cfg), variant=variant,
        diagnostics=diag, gate_passed=passed, gate_failures=failures, gate_warnings=warns,
        fit_seconds=round(total, 3), stage_seconds=stages, sampler_stats=sampler_stats,
        lift_tests_used=lift if variant == "calibrated" else None, calibration=calibration,
    )

