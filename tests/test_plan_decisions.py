"""The plan holds what the posterior cannot vouch for (issue 31): per-cell probability that a move
gains, "hold" for a cell under the threshold, "keep the current mix" for a plan under it, the lift
tests behind a cell and a move against a test's held-out prediction; the report's headline says
so, and says when the plan fell back to another variant.

The posterior here is synthetic (response a * sqrt(weekly spend) per draw, SLSQP on the mean), so
each case is exact and fits no model; the pipeline's own plans are tested in test_models_pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import minimize

from mmm_pipeline.decisions.allocation import (
    MOVE_TOLERANCE, hold_unconvincing_moves, lift_test_evidence, move_probabilities)
from mmm_pipeline.reporting.report import _plan_decision
from mmm_pipeline.reporting.wording import Kpi

H = 8


def world(mean: list[float], sd: list[float], *, draws: int = 2000, seed: int = 0):
    """Per-draw coefficients a[d, cell]: response of a weekly plan w is a * sqrt(w) per draw."""
    rng = np.random.default_rng(seed)
    a = np.asarray(mean) + rng.normal(size=(draws, len(mean))) * np.asarray(sd)

    def response(w):
        return a * np.sqrt(np.maximum(w, 0.0))

    def optimizer(budget):
        def optimize(lo, hi):
            x0 = np.clip(np.full(len(mean), budget / len(mean)), lo, hi)
            res = minimize(lambda w: -(a.mean(axis=0) * np.sqrt(np.maximum(w, 1e-12))).sum(), x0,
                           bounds=list(zip(lo, hi)), method="SLSQP",
                           constraints=[{"type": "eq", "fun": lambda w: w.sum() - budget}],
                           options={"ftol": 1e-12, "maxiter": 500})
            return np.clip(res.x, lo, hi), bool(res.success), str(res.message)
        return optimize

    return response, optimizer


def decide(mean, sd, *, threshold=0.9, cur=None, budget=None, bounds=(0.5, 1.5)):
    response, optimizer = world(mean, sd)
    cur = np.full(len(mean), 100.0) if cur is None else np.asarray(cur, dtype=float)
    budget = cur.sum() if budget is None else budget
    lo, hi = bounds[0] * cur, bounds[1] * cur
    optimize = optimizer(budget)
    plan, _, _ = optimize(lo, hi)
    d = hold_unconvincing_moves(cur, lo, hi, budget, H, threshold, plan, response(plan), response(cur),
                                optimize, response)
    return d, cur, budget


def test_a_clear_reallocation_moves_with_high_probability():
    d, cur, budget = decide([2.0, 1.0], [0.05, 0.05])
    assert not d.keep_current and not d.held.any()
    assert d.plan[0] > cur[0] * 1.4 and d.plan[1] < cur[1] * 0.6   # toward the better cell, to its bound
    assert d.probability_of_gain == 1.0 and (d.probability_move_gains == 1.0).all()
    assert d.plan.sum() == pytest.approx(budget)


def test_a_plan_the_posterior_cannot_tell_from_today_keeps_the_current_mix():
    d, cur, budget = decide([1.05, 1.0], [0.4, 0.4])
    assert d.candidate_gain.mean() > 0                      # the mean says move ...
    assert d.probability_of_gain < 0.9                      # ... the posterior cannot tell
    assert d.keep_current and (d.plan == cur).all() and d.held.all() and not d.moved.any()
    assert (d.plan_draws == world([1.05, 1.0], [0.4, 0.4])[0](cur)).all()
    # without the rule the same posterior moves the budget
    assert not decide([1.05, 1.0], [0.4, 0.4], threshold=0.0)[0].keep_current


def test_an_unconvincing_cell_is_held_and_the_rest_reoptimised():
    # cell 0 clearly beats cell 1; cell 2's mean beats cell 1's too, but the posterior is unsure of it
    args = ([3.0, 1.0, 1.3], [0.05, 0.05, 0.6])
    d, cur, budget = decide(*args, cur=[20.0, 140.0, 140.0])
    free = decide(*args, cur=[20.0, 140.0, 140.0], threshold=0.0)[0]
    assert free.moved.all() and free.plan[2] > cur[2] and free.probability_move_gains[2] < 0.9
    assert not d.keep_current and d.held.tolist() == [False, False, True]
    assert (d.plan[d.held] == cur[d.held]).all()            # held at today's spend
    assert (d.probability_move_gains[d.moved] >= 0.9).all()   # every move left is convincing
    assert d.probability_of_gain >= 0.9 and d.plan.sum() == pytest.approx(budget)
    assert d.plan[0] > cur[0]


def test_a_budget_change_forces_its_moves_and_nothing_is_held():
    d, cur, budget = decide([1.05, 1.0], [0.4, 0.4], budget=240.0)
    assert d.plan.sum() == pytest.approx(240.0) and not d.keep_current and not d.held.any()
    assert np.isnan(d.probability_move_gains).all()


def test_move_probabilities_of_two_cells_are_the_plans_probability_of_gain():
    rng = np.random.default_rng(1)
    dr = np.c_[rng.normal(60, 30, 4000), rng.normal(-50, 30, 4000), np.zeros(4000)]
    p = move_probabilities(dr, np.array([100.0, -100.0, 0.0]), np.array([True, True, False]))
    assert p[0] == p[1] == (dr.sum(axis=1) > 0).mean() and np.isnan(p[2])
    assert MOVE_TOLERANCE < 0.01


def test_lift_tests_behind_a_cell_and_a_move_against_a_held_out_test():
    alloc = pd.DataFrame({"geo": ["A", "A", "B"], "channel": ["tv", "search", "tv"],
                          "move": ["increase", "decrease", "decrease"]})
    tests = pd.DataFrame({"test_id": ["T1", "T1", "T2"], "channel": ["tv", "tv", "search"], "geo": ["A", "B", "A"]})
    holdout = pd.DataFrame({"test_id": ["T1", "T2"], "channel": ["tv", "search"], "z": [-2.6, 0.4],
                            "measured": [100.0, 50.0], "predicted_mean": [300.0, 45.0]})
    out = lift_test_evidence(alloc, tests, holdout)
    assert out["lift_tests"].tolist() == ["T1", "T2", "T1"]
    # more tv money in A although T1 came in below the held-out prediction; cutting tv in B agrees with it
    assert "T1" in out.loc[0, "lift_test_conflict"] and "z = -2.6" in out.loc[0, "lift_test_conflict"]
    assert out["lift_test_conflict"].iloc[1:].isna().all()
    none = lift_test_evidence(alloc, tests.iloc[0:0], pd.DataFrame())
    assert none["lift_tests"].isna().all() and none["lift_test_conflict"].isna().all()
    # a cell of a tested channel without a test of its own (off-family hill_daily seed 1 failed here:
    # pandas 3 stores the missing ids as NaN in a string column)
    more = pd.concat([alloc, pd.DataFrame({"geo": ["B"], "channel": ["search"], "move": ["increase"]})],
                     ignore_index=True)
    out = lift_test_evidence(more, tests, holdout)
    assert out["lift_tests"].iloc[:3].tolist() == ["T1", "T2", "T1"] and out["lift_tests"].isna().iloc[3]
    assert out["lift_test_conflict"].isna().iloc[3]


def _plan_row(**kw):
    row = {"allocation_id": "default", "variant": "uncalibrated", "decision": "move", "probability_of_gain": 0.97,
           "min_probability_of_gain": 0.9, "held_cells": 2, "gain_mean": 10.0, "gain_hdi_low": 2.0,
           "gain_hdi_high": 20.0, "candidate_gain_mean": 10.0, "candidate_gain_hdi_low": 2.0,
           "candidate_gain_hdi_high": 20.0, "fallback_reason": ""}
    return pd.Series({**row, **kw})


def test_the_headline_says_keep_the_current_mix_and_names_a_fallback():
    kpi = Kpi("revenue", "USD")
    main = {"id": "default"}
    keep = _plan_decision(_plan_row(decision="keep_current_mix", probability_of_gain=0.62, gain_mean=0.0),
                          pd.DataFrame(), main, kpi)
    assert keep["keep"] and "Keep the current mix" in keep["text"] and "62" in keep["text"]
    move = _plan_decision(_plan_row(), pd.DataFrame(), main, kpi)
    assert not move["keep"] and "97" in move["text"] and "2 cell(s)" in move["text"] and move["beside"] is None
    beside = pd.DataFrame([{**_plan_row(variant="calibrated", gain_mean=-5.0, probability_of_gain=0.3,
                                        decision="keep_current_mix").to_dict(), "chosen": False}])
    fell = _plan_decision(_plan_row(fallback_reason="the calibrated model is not gated (R-hat 1.02)"), beside,
                          main, kpi)
    assert "uses the uncalibrated model because the calibrated model is not gated" in fell["text"]
    assert "calibrated model's own plan (not gated)" in fell["text"]
    label, value, note = fell["beside"]
    assert "NOT gated" in label and "30" in note and "keep current mix" in note


def test_the_index_says_keep_the_current_mix_or_the_gain_with_its_probability():
    from mmm_pipeline.reporting.report import _index_row

    base = {"market": "west", "generated_at": "2026-12-07T03:00:00", "run_id": "",
            "headline": {"kpi": "revenue", "currency": "USD", "plan_gain": 0.0, "plan_gain_low": 0.0,
                         "plan_gain_high": 0.0, "plan_weeks": 8}}
    keep = _index_row({**base, "headline": {**base["headline"], "plan_decision": "keep_current_mix",
                                            "plan_probability_of_gain": 0.62}}, None)
    assert keep["plan"].startswith("keep the current mix") and "62" in keep["plan"]
    move = _index_row({**base, "headline": {**base["headline"], "plan_gain": 1000.0, "plan_gain_high": 2000.0,
                                            "plan_decision": "move", "plan_probability_of_gain": 0.97}}, None)
    assert move["plan"].startswith("+1,000") and "probability of gain 97" in move["plan"]
    old = _index_row(base, None)  # a sidecar from before the decision existed
    assert "probability" not in old["plan"] and "keep" not in old["plan"]
