"""The fair test of calibration (bench/bench_offfamily.py, issue 28 item 4) on a conjugate toy where
the exact answer is known: an uncalibrated posterior N(m0, s^2) that is well calibrated (the truth is a
draw from it), tests of noise sigma. Reweighting must then reproduce the exact Normal update."""

from __future__ import annotations

import numpy as np
import pytest

from bench.bench_offfamily import fair_test, predicted_update, update_given_error


def _toy(rng, s: float, sigma: float, n_draws: int = 4000, n_tests: int = 1):
    truth = rng.normal(10.0, s, n_tests)                          # the truth, as a draw from the posterior
    draws = 10.0 + s * rng.standard_normal((n_draws, n_tests))     # the uncalibrated posterior
    exact_cal = 10.0 + s * s / (s * s + sigma * sigma) * (truth + 0.0 - 10.0)  # for the record only
    a = {"test_ids": np.array([f"T{j}" for j in range(n_tests)]), "test_channels": np.array(["tv"] * n_tests),
         "sigma": np.full(n_tests, sigma), "observed": truth.copy(), "chains": 4, "likelihood": np.array("normal"),
         "nu": 5.0, "implied_unc": draws, "other_loglik": np.zeros(n_draws),
         "cell_keys": np.array([], dtype=str), "cells_unc": np.zeros((n_draws, 0)), "cells_cal_mean": np.zeros(0)}
    return a, {f"T{j}": float(truth[j]) for j in range(n_tests)}, exact_cal


def test_the_normal_update_prediction_is_the_textbook_one():
    p, ratio = predicted_update(1.0, 1.0, n=200000)
    assert ratio == pytest.approx(0.5)                 # sigma^2 / (s^2 + sigma^2)
    assert p == pytest.approx(0.65, abs=0.01)          # the 65% the issue quotes for sigma = s
    assert predicted_update(1.0, 0.5, n=200000)[0] == pytest.approx(0.75, abs=0.01)
    assert predicted_update(1.0, 2.0, n=200000)[0] == pytest.approx(0.58, abs=0.01)


@pytest.mark.parametrize("sigma", [0.5, 1.0])
def test_reweighting_a_calibrated_posterior_matches_the_exact_update_pooled_over_datasets(sigma):
    rng = np.random.default_rng(7)
    tot: dict = {}
    for k in range(40):
        a, truth, _ = _toy(rng, 1.0, sigma)
        a["implied_cal_mean"] = a["implied_unc"].mean(axis=0)   # filled below by the reweighting itself
        out = fair_test(a, truth, {}, n_readouts=40, seed=k)
        for key, v in out.items():
            tot[key] = tot.get(key, 0.0) + (0.0 if key == "confirm_max_diff_sd" else v)
    closer, pred_closer = tot["lift_closer"] / tot["lift_pairs"], tot["lift_pred_closer"] / tot["lift_pairs"]
    ratio = np.sqrt(tot["lift_sq_cal"] / tot["lift_sq_unc"])
    pred_ratio = np.sqrt(tot["lift_pred_sq"] / tot["lift_pred_sq_unc"])
    # 1,600 (test, readout) pairs from 40 truths: the seed-to-seed spread of the share is about 0.05
    assert abs(closer - pred_closer) < 0.08, (closer, pred_closer)
    assert abs(ratio - pred_ratio) < 0.15, (ratio, pred_ratio)
    assert tot["khat_bad"] == 0


def test_the_update_given_the_realised_error_averages_to_the_unconditional_one_and_fits_one_dataset():
    """Given the uncalibrated mean's realised error u, only the readout noise is random: averaged over
    u ~ N(0, s^2) it is the textbook update; on one dataset it is what reweighting scores, where the
    unconditional reference can be far off (one dataset's u decides the denominator)."""
    s, sigma = 1.0, 1.0
    us = np.random.default_rng(0).normal(0, s, 20000)
    given = np.array([update_given_error(u, s, sigma) for u in us])
    p, ratio = predicted_update(s, sigma, n=200000)
    assert given[:, 0].mean() == pytest.approx(p, abs=0.01)
    assert given[:, 1].mean() / s ** 2 == pytest.approx(ratio, abs=0.02)
    assert update_given_error(0.0, s, sigma)[0] == 0.0     # a perfect uncalibrated mean cannot be beaten
    conditional = {}
    for truth in (10.2, 11.5):                             # a lucky and an unlucky uncalibrated mean (10.0)
        a, _, _ = _toy(np.random.default_rng(1), s, sigma)
        a["implied_unc"] = 10.0 + (a["implied_unc"] - a["implied_unc"].mean()) / a["implied_unc"].std()
        a["implied_cal_mean"] = a["implied_unc"].mean(axis=0)
        out = fair_test(a, {"T0": truth}, {}, n_readouts=400, seed=2)
        realised = np.sqrt(out["lift_sq_cal"] / out["lift_sq_unc"])
        conditional[truth] = np.sqrt(out["lift_given_sq"] / out["lift_sq_unc"])
        assert realised == pytest.approx(conditional[truth], rel=0.1), (truth, realised, conditional)
    # g = 1/2: E err^2 = u^2 / 4 + 1/4. The lucky mean (u = -0.2) scores a ratio far above the unconditional
    # 0.71 although the update is exact; the unlucky one (u = -1.5) below it
    assert conditional[10.2] == pytest.approx(np.sqrt((0.25 * 0.04 + 0.25) / 0.04), rel=1e-6)
    assert conditional[11.5] == pytest.approx(np.sqrt((0.25 * 2.25 + 0.25) / 2.25), rel=1e-6)


def test_held_out_tests_and_the_real_fit_confirmation():
    rng = np.random.default_rng(3)
    a, _, _ = _toy(rng, 1.0, 0.5, n_tests=2)
    # truths inside the bulk of the posterior (far in its tails the weights degenerate: k-hat >= 0.7)
    a["observed"] = np.array([10.6, 9.3])
    truth = {"T0": 10.6, "T1": 9.3}
    # the real calibrated fit's means: here the exact posterior means at the actual readouts
    s2, g2 = 1.0, 0.25
    a["implied_cal_mean"] = 10.0 + s2 / (s2 + g2) * (a["observed"] - 10.0)
    out = fair_test(a, truth, {}, n_readouts=20, seed=1)
    assert out["heldout_pairs"] == 40                  # each test has a sibling of its channel
    # the two tests' implied lifts are independent here: holding one out leaves its own posterior
    # as it was, so its held-out error is the uncalibrated one
    assert out["heldout_err_cal"] == pytest.approx(out["heldout_err_unc"], rel=0.05)
    assert out["confirm_max_diff_sd"] < 0.1            # reweighting agrees with the exact update
    a["implied_cal_mean"] = a["implied_cal_mean"] + 1.0  # a calibrated fit that moved elsewhere
    assert fair_test(a, truth, {}, n_readouts=2, seed=1)["confirm_max_diff_sd"] > 0.9
    # a test whose truth is not in this market's scope (a national split) is not scored
    out = fair_test(a, {"T0": truth["T0"], "T1": None}, {}, n_readouts=5, seed=1)
    assert out["lift_pairs"] == 5 and out["heldout_pairs"] == 0


def test_national_roas_is_scored_per_market_and_a_collapsed_channel_is_counted():
    """Issue 30 item 4: the benchmark scores each market's national ROAS per channel against the truth
    summed over the market's geos, and counts a channel below a quarter of its truth whose interval
    excludes the truth (the weaker of two correlated channels taking nothing)."""
    from bench.bench_offfamily import score

    cells = [{"geo": g, "channel": ch, "spend": 100.0, "contribution": contrib}
             for g in ("a", "b") for ch, contrib in (("tv", 200.0), ("social", 100.0))]
    truth = {"process": {"geos": ["a", "b"], "channels": ["tv", "social"]}, "cells": cells, "lift_tests": [],
             "seed": 1}
    answers = {"cells": [{"market": "m", "geo": g, "channel": ch} for g in ("a", "b") for ch in ("tv", "social")],
               "national": [{"market": "m", "variant": "uncalibrated", "channel": "tv", "roas_mean": 2.2,
                             "roas_lo": 1.5, "roas_hi": 3.0},
                            {"market": "m", "variant": "uncalibrated", "channel": "social", "roas_mean": 0.2,
                             "roas_lo": 0.0, "roas_hi": 0.6}],
               "lift": [], "runs": [], "plans": []}
    summary, detail = score("corr", 1, truth, answers)
    national = {d["channel"]: d for d in detail if d["kind"] == "roas_national"}
    assert national["tv"]["truth"] == pytest.approx(2.0) and national["tv"]["covered"]
    assert not national["tv"]["collapsed"]
    assert national["social"]["truth"] == pytest.approx(1.0) and national["social"]["collapsed"]
    row = summary[0]
    assert row["national_collapsed"] == 1 and row["roas_national_cov"] == 0.5
    assert row["roas_national_err"] == pytest.approx((0.1 + 0.8) / 2)
