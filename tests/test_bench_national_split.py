"""bench/bench_national_split.py scores each market's share of a national test against the truth."""

import numpy as np
import pytest

from bench import bench_national_split as bench

TRUTH = {
    "markets": {"west": ["a", "b"], "east": ["c"]},
    "lift_tests": [
        {"test_id": "G-1", "national": False, "channel": "tv", "scope": "window"},
        {"test_id": "N-1", "national": True, "channel": "tv", "scope": "window", "delta_y": 100.0, "sigma": 10.0,
         # west's true share 0.6: its spend share 0.5 is 0.1 off, its predicted share (0.75) 0.15
         "true_delta_y_window_by_geo": {"a": 40.0, "b": 20.0, "c": 40.0},
         "true_delta_y_total_by_geo": {"a": 50.0, "b": 25.0, "c": 25.0}},
    ],
}


def _write(folder, market, draws, share):
    np.savez(folder / f"{market}.lifts.npz", test_ids=np.array(["N-1"]), spend_shares=np.array([share]),
             max_rhat=1.001, fit_seconds=10.0, d0=draws)


def test_scores_both_splits_against_the_markets_true_share_of_the_lift(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path, "west", rng.normal(300.0, 15.0, 4000), 0.5)
    _write(tmp_path, "east", rng.normal(100.0, 5.0, 4000), 0.5)
    rows = {r["market"]: r for r in bench.score("spread", 1, tmp_path, TRUTH, tau=0.5)}
    west = rows["west"]
    assert west["true_share"] == pytest.approx(0.6)
    assert west["z_spend"] == pytest.approx(0.1 / (0.5 * 0.5 * 0.5))
    assert west["lift_share_mean"] == pytest.approx(0.75, abs=0.01)
    assert west["z_lift"] == pytest.approx((0.6 - west["lift_share_mean"]) / west["lift_share_sd"])
    assert rows["east"]["true_share"] == pytest.approx(0.4)
    table = bench.table(__import__("pandas").DataFrame(list(rows.values())))
    assert "| predicted lift | 1 |" in table and "| spend share (tau 0.5) | 1 |" in table


def test_a_dataset_whose_markets_are_not_all_fitted_is_not_scored(tmp_path):
    _write(tmp_path, "west", np.full(10, 1.0), 0.5)
    assert bench.score("spread", 1, tmp_path, TRUTH, tau=0.5) == []
