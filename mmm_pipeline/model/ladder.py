"""The retry ladder: a fit that fails its convergence gate is refitted with stronger settings.

`model.retry.ladder` lists the rungs (README "When a gate fails"); each rung says how the
*first* attempt's sampler settings change (tuning and draws multiplied, thinning multiplied so
the stored posterior keeps its size, a higher target_accept). The rungs run in order until an
attempt passes, the ladder ends, or the next attempt would not finish within
`model.retry.time_budget_seconds` (estimated from the previous attempt's time, scaled by the
rung's tune + draws: the first attempt's time also holds the compile, and the later rungs'
smaller steps, at their higher target_accept, cost more per draw). A rung with `only_below_rhat`
runs only when the attempt before it failed on convergence alone, just over the R-hat limit
(chains too short on a ridge), and is skipped otherwise.
Every attempt is returned, so the model run records what was tried.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable

from mmm_pipeline.model.config import ModelConfig, RetryStep

if TYPE_CHECKING:  # annotation only: fit's package imports this module
    from mmm_pipeline.model.fit import FitResult


def escalate(cfg: ModelConfig, step: RetryStep) -> ModelConfig:
    """`cfg` with the rung's sampler settings (relative to `cfg`'s own)."""
    s = cfg.sampler
    sampler = s.model_copy(update={
        "tune": int(round(s.tune * step.tune_multiplier)),
        "draws": int(round(s.draws * step.draws_multiplier)),
        "thin": s.thin * step.thin_multiplier,
        "target_accept": step.target_accept if step.target_accept is not None else s.target_accept,
    })
    return cfg.model_copy(update={"sampler": sampler})


def _cost(cfg: ModelConfig) -> float:
    return cfg.sampler.chains * (cfg.sampler.tune + cfg.sampler.draws)


def attempt_record(n: int, rung: str, cfg: ModelConfig, fit: FitResult) -> dict:
    d, s = fit.diagnostics, cfg.sampler
    return {"attempt": n, "rung": rung, "tune": s.tune, "draws": s.draws, "thin": s.thin,
            "target_accept": s.target_accept, "fit_seconds": fit.fit_seconds,
            "max_rhat": round(float(d["max_rhat"]), 5), "min_ess_bulk": round(float(d["min_ess_bulk"]), 1),
            "divergences": int(d["divergences"]), "passed": bool(fit.gate_passed),
            "failures": "; ".join(fit.gate_failures)}


def just_short_on_a_ridge(fit: FitResult, cfg: ModelConfig, max_rhat: float) -> bool:
    """The fit failed its gate on R-hat or ESS alone (divergences within the gate), R-hat <= `max_rhat`."""
    d, g = fit.diagnostics, cfg.gates
    share = d.get("divergence_share", d["divergences"] / max(d.get("chains", 1) * d.get("draws", 1), 1))
    return (not d["divergences"] or share <= g.max_divergence_share) and float(d["max_rhat"]) <= max_rhat


def fit_with_ladder(fit_once: Callable[[ModelConfig], FitResult], cfg: ModelConfig, *,
                    log: Callable[[str], None] = lambda _: None,
                    clock: Callable[[], float] = time.monotonic) -> tuple[FitResult, list[dict]]:
    """(the first passing fit, or the last one tried; every attempt's record)."""
    start = clock()
    fit = fit_once(cfg)
    attempts = [attempt_record(1, "as configured", cfg, fit)]
    last_cfg, last_seconds = cfg, max(clock() - start, 1e-9)
    for step in cfg.retry.ladder:
        if fit.gate_passed:
            break
        if step.only_below_rhat is not None and not just_short_on_a_ridge(fit, cfg, step.only_below_rhat):
            log(f"retry '{step.name}' skipped: it is for fits just over the R-hat limit without divergences "
                f"(max R-hat {float(fit.diagnostics['max_rhat']):.4f}, {int(fit.diagnostics['divergences'])} "
                "divergences)")
            continue
        nxt = escalate(cfg, step)
        elapsed = clock() - start
        estimate = last_seconds * _cost(nxt) / _cost(last_cfg)
        if elapsed + estimate > cfg.retry.time_budget_seconds:
            log(f"retry '{step.name}' not started: {elapsed:.0f} s spent + about {estimate:.0f} s would exceed "
                f"model.retry.time_budget_seconds = {cfg.retry.time_budget_seconds:g}")
            break
        log(f"gate failed ({'; '.join(fit.gate_failures)}); retry {len(attempts)} of {len(cfg.retry.ladder)}: "
            f"'{step.name}' (tune {nxt.sampler.tune}, draws {nxt.sampler.draws}, thin {nxt.sampler.thin}, "
            f"target_accept {nxt.sampler.target_accept})")
        began = clock()
        fit = fit_once(nxt)
        last_cfg, last_seconds = nxt, max(clock() - began, 1e-9)
        attempts.append(attempt_record(len(attempts) + 1, step.name, nxt, fit))
    return fit, attempts
