"""The retry ladder and the gate rules, on synthetic fits (no sampling)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from assets.outputs import gate_reason, plan_variant
from mmm_pipeline import model as M
from mmm_pipeline.model.ladder import escalate, fit_with_ladder


def _fake_fit(passes_from: int, seconds: float, clock: list[float], seen: list, *, rhat: float = 1.03,
              divergences: int = 0, compile_seconds: float = 0.0):
    def fit_once(cfg):
        seen.append(cfg.sampler)
        clock[0] += seconds * (cfg.sampler.tune + cfg.sampler.draws) / 2000 + (compile_seconds if len(seen) == 1 else 0)
        ok = len(seen) >= passes_from
        return SimpleNamespace(gate_passed=ok, gate_failures=[] if ok else [f"max R-hat {rhat} > 1.01"],
                               fit_seconds=seconds, config=cfg,
                               diagnostics={"max_rhat": 1.0 if ok else rhat, "min_ess_bulk": 500,
                                            "divergences": 0 if ok else divergences,
                                            "divergence_share": 0.0 if ok else divergences / 8000})
    return fit_once


def test_full_profile_ladder_escalates_tuning_and_steps_then_draws():
    cfg = M.load_model_config("full")
    rungs = [escalate(cfg, step).sampler for step in cfg.retry.ladder]
    assert [(r.tune, r.draws, r.thin, r.target_accept) for r in rungs] == [
        (1000, 2000, 2, 0.99), (1000, 4000, 4, 0.99), (1000, 8000, 8, 0.99), (1000, 16000, 16, 0.99)]
    assert M.load_model_config("fast").retry.ladder == ()  # the smoke profile never retries


def test_ladder_stops_at_the_first_passing_attempt_and_records_every_attempt():
    cfg, clock, seen, lines = M.load_model_config("full"), [0.0], [], []
    fit, attempts = fit_with_ladder(_fake_fit(3, 100, clock, seen), cfg, log=lines.append, clock=lambda: clock[0])
    assert fit.gate_passed and len(seen) == 3
    assert [(a["rung"], a["passed"]) for a in attempts] == [
        ("as configured", False), ("smaller steps", False), ("more draws", True)]
    assert attempts[1]["tune"] == 1000 and attempts[1]["target_accept"] == 0.99 and attempts[2]["draws"] == 4000
    assert "retry 1 of 4: 'smaller steps'" in lines[0]


def test_longer_chains_run_only_for_a_fit_just_over_the_rhat_limit_without_divergences():
    """The last rungs (4x, then 8x draws) are for chains too short on a ridge: R-hat a little over 1.01
    and no divergences. A fit that diverges, or is far off (a stuck chain), is not helped by length alone;
    8x only follows a fit within 1.02."""
    cfg = M.load_model_config("full")
    base = ["as configured", "smaller steps", "more draws"]
    for rhat, divergences, expected in ((1.013, 0, base + ["longer chains", "longest chains"]),
                                        (1.03, 0, base + ["longer chains"]),
                                        (1.013, 12, base),
                                        (1.26, 0, base)):
        clock, seen, lines = [0.0], [], []
        fit, attempts = fit_with_ladder(_fake_fit(99, 10, clock, seen, rhat=rhat, divergences=divergences), cfg,
                                        log=lines.append, clock=lambda: clock[0])
        assert [a["rung"] for a in attempts] == expected, (rhat, divergences)
        assert not fit.gate_passed
        skipped = [line for line in lines if "skipped" in line]
        assert len(skipped) == 5 - len(expected), lines
    clock, seen = [0.0], []
    fit, attempts = fit_with_ladder(_fake_fit(4, 10, clock, seen, rhat=1.012), cfg, clock=lambda: clock[0])
    assert fit.gate_passed and attempts[-1]["rung"] == "longer chains"
    assert (attempts[-1]["draws"], attempts[-1]["thin"]) == (8000, 8)  # the stored posterior keeps its size
    clock, seen = [0.0], []
    fit, attempts = fit_with_ladder(_fake_fit(5, 10, clock, seen, rhat=1.012), cfg, clock=lambda: clock[0])
    assert fit.gate_passed and attempts[-1]["rung"] == "longest chains"
    assert (attempts[-1]["draws"], attempts[-1]["thin"]) == (16000, 16)


def test_ladder_respects_the_time_budget_and_a_passing_fit_is_not_retried():
    cfg = M.load_model_config("full", {"retry": {"time_budget_seconds": 250}})
    clock, seen, lines = [0.0], [], []
    fit, attempts = fit_with_ladder(_fake_fit(99, 100, clock, seen), cfg, log=lines.append, clock=lambda: clock[0])
    # the first attempt takes 125 s; the next rung (tune 1,000 + draws 2,000 against 500 + 2,000)
    # is estimated at 150 s more: over the 250 s budget, so it is not started
    assert not fit.gate_passed and len(attempts) == 1 and len(seen) == 1
    assert any("time_budget_seconds = 250" in line for line in lines)
    clock, seen = [0.0], []
    fit, attempts = fit_with_ladder(_fake_fit(1, 100, clock, seen), M.load_model_config("full"))
    assert fit.gate_passed and len(attempts) == 1


def test_the_time_budget_scales_the_previous_attempt_not_the_first_with_its_compile():
    """A first attempt that spent 400 s compiling would, scaled up, keep the later rungs from starting;
    the previous attempt's time per tune + draws is what the next one costs."""
    cfg = M.load_model_config("full", {"retry": {"time_budget_seconds": 1000}})
    clock, seen, lines = [0.0], [], []
    fit, attempts = fit_with_ladder(_fake_fit(99, 20, clock, seen, rhat=1.013, compile_seconds=400), cfg,
                                    log=lines.append, clock=lambda: clock[0])
    # 425 s first (400 compile + 25), then 30 + 50 + 90 s: 595 s; the 8x rung (170 s) would end at 765 s
    assert [a["rung"] for a in attempts] == ["as configured", "smaller steps", "more draws", "longer chains",
                                             "longest chains"]
    assert clock[0] == pytest.approx(765)
    # scaled from the first attempt's 425 s, 'more draws' (estimated at 850 s) would never have started
    assert not any("not started" in line for line in lines)


def test_bad_ladder_settings_name_the_setting():
    with pytest.raises(ValueError, match=r"model.retry.ladder.0.tune_multiplier"):
        M.load_model_config("full", {"retry": {"ladder": [{"name": "x", "tune_multiplier": 0.5}]}})
    with pytest.raises(ValueError, match=r"model.gates.max_divergence_share"):
        M.load_model_config("full", {"gates": {"max_divergence_share": 1.5}})


def _diag(divergences: int, share: float) -> dict:
    return {"max_rhat": 1.0, "min_ess_bulk": 1000, "divergences": divergences, "divergence_share": share,
            "r2": 0.9, "coverage_94": 0.94, "per_parameter": {}}


def test_divergences_are_judged_as_a_share_of_draws():
    strict = M.load_model_config("full")
    ok, failures, _ = M.gate_result(_diag(1, 1 / 8000), strict)
    assert not ok and "1 divergent transitions (0.013% of draws) > 0.000%" in failures[0]
    tolerant = M.load_model_config("full", {"gates": {"max_divergence_share": 0.001}})
    assert M.gate_result(_diag(1, 1 / 8000), tolerant)[0]
    assert not M.gate_result(_diag(9, 9 / 8000), tolerant)[0]


def test_strict_gates_does_not_change_the_model_version():
    base, strict = M.load_model_config("full"), M.load_model_config("full", {"strict_gates": True})
    assert M.config_hash(base) == M.config_hash(strict)
    assert M.config_hash(base) != M.config_hash(M.load_model_config("full", {"retry": {"ladder": []}}))


def test_a_plan_uses_a_gated_model_when_the_market_has_one():
    fits = {"calibrated": {"gated": False, "gate_reason": "convergence gate failed: max R-hat 1.02 > 1.01"},
            "uncalibrated": {"gated": True, "gate_reason": ""}}
    variant, why = plan_variant("calibrated", fits)
    assert variant == "uncalibrated" and "calibrated model is not gated (convergence gate failed" in why
    assert plan_variant("uncalibrated", fits) == ("uncalibrated", "")
    fits["uncalibrated"]["gated"] = False  # none gated: the wanted model, marked ungated by its rows
    assert plan_variant("calibrated", fits) == ("calibrated", "")
    assert plan_variant("calibrated", {"uncalibrated": fits["uncalibrated"]})[0] == "uncalibrated"


def test_gate_reason_says_why_rows_are_ungated():
    assert gate_reason({"gated": True, "profile": "full"}) == ""
    assert "fast profile" in gate_reason({"gated": False, "profile": "fast", "gate_failures": ""})
    assert gate_reason({"gated": False, "profile": "full", "gate_failures": "max R-hat 1.02 > 1.01"}) == \
        "convergence gate failed: max R-hat 1.02 > 1.01"


def test_fit_by_geo_judges_each_geo_against_its_own_mean_and_the_gate_warns_on_the_worst():
    import numpy as np
    import pandas as pd

    from mmm_pipeline.model.diagnostics import fit_by_geo

    rng = np.random.default_rng(0)
    weeks = pd.date_range("2025-01-06", periods=52, freq="7D")
    rows = []
    for geo, level, noise in (("big", 1000.0, 5.0), ("small", 100.0, 40.0)):
        signal = level + 50 * np.sin(np.arange(52) / 4)
        pred = signal + rng.normal(scale=noise, size=52) * (geo == "small")
        rows.append(pd.DataFrame({"week_start": weeks, "geo": geo, "actual": signal + rng.normal(scale=5, size=52),
                                  "predicted_mean": pred, "predicted_low": pred - 20, "predicted_high": pred + 20}))
    table = pd.concat(rows)
    by_geo = fit_by_geo(table).set_index("geo")
    pooled = 1 - ((table.actual - table.predicted_mean) ** 2).sum() / ((table.actual - table.actual.mean()) ** 2).sum()
    assert pooled > 0.95  # the levels alone make the pooled R-squared look good
    assert by_geo.loc["big", "r2"] > 0.9 and by_geo.loc["small", "r2"] < 0.5
    worst = by_geo["r2"].idxmin()
    diag = {**_diag(0, 0.0), "r2": pooled, "worst_geo": worst, "worst_geo_r2": by_geo.loc[worst, "r2"],
            "fit_by_geo": by_geo.reset_index()}
    ok, _, warns = M.gate_result(diag, M.load_model_config("full"))
    assert ok  # fit warns, it never fails the gate
    assert any("within geo small" in w for w in warns), warns
    assert any("coverage outside" in w and "small" in w for w in warns), warns


def test_prior_posterior_shift_flags_parameters_the_data_did_not_inform():
    import numpy as np
    import pymc as pm
    import xarray as xr

    from mmm_pipeline.model.diagnostics import prior_posterior_shift

    with pm.Model(coords={"channel": ["informed", "silent"]}) as model:
        pm.HalfNormal("saturation_beta", 1.0, dims="channel")
        pm.Beta("adstock_alpha", 2, 2, dims="channel")
    rng = np.random.default_rng(0)
    n = 2000
    beta = np.stack([rng.normal(0.3, 0.02, n), np.abs(rng.normal(0, 1.0, n))], axis=-1)  # silent = its prior
    alpha = np.stack([rng.beta(40, 10, n), rng.beta(2, 2, n)], axis=-1)
    post = xr.Dataset({v: (("chain", "draw", "channel"), a.reshape(2, n // 2, 2))
                       for v, a in (("saturation_beta", beta), ("adstock_alpha", alpha))},
                      coords={"channel": ["informed", "silent"]})
    fake = SimpleNamespace(model=model, idata=SimpleNamespace(posterior=post))
    shift = prior_posterior_shift(fake, draws=4000, seed=1).set_index(["parameter", "element"])
    assert shift.loc[("saturation_beta", "informed"), "contraction"] > 0.9
    assert not shift.loc[("saturation_beta", "informed"), "prior_dominated"]
    assert shift.loc[("saturation_beta", "silent"), "prior_dominated"]
    assert abs(shift.loc[("saturation_beta", "silent"), "contraction"]) < 0.1
    assert shift.loc[("adstock_alpha", "silent"), "prior_dominated"]
    assert not shift.loc[("adstock_alpha", "informed"), "prior_dominated"]
