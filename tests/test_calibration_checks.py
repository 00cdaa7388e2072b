"""The calibration consistency check and the held-out lift tests (mmm_pipeline.reporting.calibration_checks),
on a conjugate Normal model whose exact posteriors are known: the arithmetic, not a fit."""

from __future__ import annotations

import numpy as np
import pytest

from mmm_pipeline.reporting import calibration_checks as cc

CHAINS, DRAWS = 4, 1000


def _normal_update(prior_mean, prior_sd, y, sigma):
    precision = 1 / prior_sd ** 2 + 1 / sigma ** 2
    return (prior_mean / prior_sd ** 2 + y / sigma ** 2) / precision, precision ** -0.5


def _draws(mean, sd, seed):
    return np.random.default_rng(seed).normal(mean, sd, CHAINS * DRAWS)


def _loglik(theta, y, sigma):
    return -0.5 * ((y - theta) / sigma) ** 2 - np.log(sigma * np.sqrt(2 * np.pi))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.0])
def test_an_exact_update_is_consistent_and_a_wrong_one_is_not(sigma):
    """Uncalibrated theta ~ N(0, 1); a lift readout y = 0.8 with noise sigma. The exact calibrated
    posterior passes; one shifted by 0.3 uncalibrated sd (a bug in the calibrated model) fails."""
    y = 0.8
    uncal = _draws(0, 1, 1)
    w, khat = cc.psis_weights(_loglik(uncal, y, sigma), CHAINS)
    assert khat < cc.PARETO_K_MAX and w.sum() == pytest.approx(1)
    m, s = _normal_update(0, 1, y, sigma)
    exact = _draws(m, s, 2)
    wrong = exact + 0.3
    rows = cc.consistency_rows([("implied_lift", "T1", "g", "c", exact, uncal),
                                ("implied_lift", "T2", "g", "c", wrong, uncal)], w, khat, CHAINS, "m")
    assert rows["verdict"].tolist() == ["consistent", "inconsistent"]
    assert rows.loc[0, "reweighted_mean"] == pytest.approx(m, abs=0.05)
    assert abs(rows.loc[1, "diff_in_uncal_sd"]) > rows.loc[1, "threshold_in_uncal_sd"]


def test_experiments_far_outside_the_posterior_are_reported_as_disagreeing():
    """A readout 6 sd away with a tight sigma: the reweighting cannot follow (k-hat >= 0.7)."""
    uncal = _draws(0, 1, 3)
    w, khat = cc.psis_weights(_loglik(uncal, 6.0, 0.05), CHAINS)
    assert khat >= cc.PARETO_K_MAX
    m, s = _normal_update(0, 1, 6.0, 0.05)
    rows = cc.consistency_rows([("roas", None, "g", "c", _draws(m, s, 4), uncal)], w, khat, CHAINS, "m")
    assert rows["verdict"].tolist() == ["experiments_disagree"]


def test_leave_one_test_out_weights_recover_the_posterior_without_that_test():
    """Two readouts of one quantity: the calibrated draws reweighted by 1 / p(y2) equal the posterior
    with y1 only, and the held-out prediction of y2 is that posterior's."""
    y1, y2, sigma = 0.5, 1.2, 0.7
    m12, s12 = _normal_update(*_normal_update(0, 1, y1, sigma), y2, sigma)
    m1, s1 = _normal_update(0, 1, y1, sigma)
    cal = _draws(m12, s12, 5)
    w, khat = cc.psis_weights(-_loglik(cal, y2, sigma), CHAINS)
    mean, mcse = cc._is_mean(cal, w)
    assert khat < cc.PARETO_K_MAX
    assert mean == pytest.approx(m1, abs=4 * mcse + 0.01)
    # its interval: wider than the calibrated one, near the exact (importance sampling from the
    # narrower calibrated posterior reaches the tails less well: within 0.15 here)
    lo, hi = cc._weighted_hdi(cal, w)
    assert hi - lo > 2 * 1.88 * s12
    assert lo == pytest.approx(m1 - 1.88 * s1, abs=0.15) and hi == pytest.approx(m1 + 1.88 * s1, abs=0.15)
