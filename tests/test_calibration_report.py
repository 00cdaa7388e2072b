"""The calibration report's arithmetic (mmm_pipeline.reporting.model_report), on hand-made frames: no fit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline.reporting import model_report as R


def _variant(mean, lo, hi, truth=2.0):
    return pd.DataFrame([{"geo": "A", "channel": "social", "parameter": "roas", "mean": mean, "hdi_low": lo,
                          "hdi_high": hi, "hdi_width": hi - lo, "truth": truth}])


def test_bias_improvement_truth_in_hdi_and_precision():
    # uncalibrated 2.6 [1.8, 3.4] (width 1.6), calibrated 2.2 [1.9, 2.5] (width 0.6), truth 2.0
    out = R.compare_variants({"uncalibrated": _variant(2.6, 1.8, 3.4), "calibrated": _variant(2.2, 1.9, 2.5)}).iloc[0]
    assert out.bias_improvement_pct == pytest.approx((0.6 - 0.2) / 1.6 * 100)
    assert out.precision_improvement_pct == pytest.approx((1.6 - 0.6) / 1.6 * 100)
    assert out.error_uncalibrated == pytest.approx(0.3) and out.error_calibrated == pytest.approx(0.1)
    assert out.signed_error_calibrated == pytest.approx(0.1)
    assert bool(out.truth_in_hdi_uncalibrated) and bool(out.truth_in_hdi_calibrated)


def test_a_confident_wrong_calibration_has_negative_bias_improvement_and_misses_the_truth():
    out = R.compare_variants({"uncalibrated": _variant(2.1, 1.5, 2.7), "calibrated": _variant(1.6, 1.5, 1.7)}).iloc[0]
    assert out.bias_improvement_pct == pytest.approx((0.1 - 0.4) / 1.2 * 100)
    assert out.precision_improvement_pct > 0  # narrower ...
    assert not bool(out.truth_in_hdi_calibrated)  # ... around the wrong value


def test_without_truth_or_calibrated_model_the_columns_are_empty():
    v = _variant(2.1, 1.5, 2.7, truth=np.nan)
    out = R.compare_variants({"uncalibrated": v}).iloc[0]
    assert np.isnan(out.mean_calibrated) and np.isnan(out.bias_improvement_pct)
    assert pd.isna(out.truth_in_hdi_uncalibrated)


def test_true_contribution_is_the_generators_formula():
    truth = {"adstock": {"l_max": 3}, "alpha": {"A": {"c": 0.5}}, "lam": {"A": {"c": 2.0}},
             "beta": {"A": {"c": 10.0}}, "unit_scale": {"c": 4.0}}
    got = R.true_contribution(truth, np.array([4.0, 0.0, 0.0, 0.0]), "A", "c")
    w = np.array([1, 0.5, 0.25]) / 1.75
    ad = np.array([w[0], w[1], w[2], 0.0])
    np.testing.assert_allclose(got, 10 * (1 - np.exp(-2 * ad)) / (1 + np.exp(-2 * ad)))


def test_roas_figure_has_one_panel_per_channel():
    rows = []
    for ch in ("social", "search"):
        for g in ("A", "B"):
            rows.append({"geo": g, "channel": ch, "truth": 1.0, "mean_uncalibrated": 1.2, "hdi_low_uncalibrated": 0.8,
                         "hdi_high_uncalibrated": 1.6, "mean_calibrated": 1.05, "hdi_low_calibrated": 0.9,
                         "hdi_high_calibrated": 1.2})
    fig = R.roas_figure(pd.DataFrame(rows))
    assert len(fig.axes) == 2 and {a.get_title() for a in fig.axes} == {"social", "search"}
