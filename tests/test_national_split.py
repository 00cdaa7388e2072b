"""A national lift test shared by markets, split by the markets' predicted lifts (model.national_split)."""

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline.model import national_split as ns

TEST = {"test_id": "N-1", "channel": "social", "scope": "window", "delta_y": 1000.0, "sigma": 100.0}


def test_the_split_follows_the_predicted_lifts_and_carries_their_uncertainty():
    rng = np.random.default_rng(1)
    # west spends 60% of the window's money but its model predicts a third of the lift
    draws = {"west": rng.normal(100.0, 10.0, 4000), "east": rng.normal(200.0, 20.0, 4000)}
    out = ns.lift_share_split(TEST, {"west": 0.6, "east": 0.4}, draws).set_index("market")
    assert (out["method"] == ns.PREDICTED).all()
    assert out.loc["west", "lift_share_mean"] == pytest.approx(1 / 3, abs=0.01)
    assert out["lift_share_mean"].sum() == pytest.approx(1.0)
    assert out.loc["west", "lift_share_sd"] == pytest.approx(out.loc["east", "lift_share_sd"])  # complements
    # the shares' sd from the draws: the ratio of two 10%-sd lifts, about 0.033 for a third
    assert 0.02 < out.loc["west", "lift_share_sd"] < 0.05
    assert out["delta_y_test"].sum() == pytest.approx(1000.0)
    s, sd = out.loc["west", "lift_share_mean"], out.loc["west", "lift_share_sd"]
    assert out.loc["west", "sigma_test"] == pytest.approx(np.sqrt(100.0 ** 2 * s + (1000.0 * sd) ** 2))
    assert out.loc["west", "lift_share_hdi_low"] < s < out.loc["west", "lift_share_hdi_high"]


def test_markets_that_do_not_cover_every_geo_share_only_their_part():
    draws = {"west": np.full(100, 50.0), "east": np.full(100, 50.0)}
    out = ns.lift_share_split(TEST, {"west": 0.3, "east": 0.5}, draws).set_index("market")
    assert out["lift_share_mean"].tolist() == pytest.approx([0.4, 0.4])  # 0.8 of the test, halved
    assert out["lift_share_sd"].tolist() == pytest.approx([0.0, 0.0])


def test_a_market_without_a_prediction_keeps_every_market_on_the_spend_split():
    draws = {"west": np.full(100, 50.0), "east": None}
    out = ns.lift_share_split(TEST, {"west": 0.6, "east": 0.4}, draws, split_log_sd=0.5).set_index("market")
    assert out["method"].str.startswith("spend_share: no uncalibrated prediction for market(s) east").all()
    assert out["lift_share_mean"].isna().all()
    assert out.loc[["west", "east"], "delta_y_test"].tolist() == pytest.approx([600.0, 400.0])
    # the conversion's own term: sigma^2 s + (delta_y s (1 - s) tau)^2
    assert out.loc["west", "sigma_test"] == pytest.approx(np.sqrt(100.0 ** 2 * 0.6 + (1000 * 0.6 * 0.4 * 0.5) ** 2))


def test_apply_split_replaces_only_this_markets_predicted_terms():
    lift = pd.DataFrame({"test_id": ["N-1", "N-1", "G-1"], "geo": ["a", "b", "a"],
                         "delta_y_test": [600.0, 600.0, 50.0], "sigma_test": [90.0, 90.0, 5.0]})
    split = pd.DataFrame({"market": ["west", "east"], "test_id": ["N-1", "N-1"], "method": [ns.PREDICTED] * 2,
                          "delta_y_test": [333.0, 667.0], "sigma_test": [70.0, 90.0]})
    out = ns.apply_split(lift, split, "west")
    assert out["delta_y_test"].tolist() == [333.0, 333.0, 50.0]
    assert out["sigma_test"].tolist() == [70.0, 70.0, 5.0]
    kept = ns.apply_split(lift, split.assign(method="spend_share: x"), "west")
    assert kept.equals(lift)


def test_only_national_tests_shared_with_other_markets_are_split():
    lift = pd.DataFrame({"test_id": ["N-1", "N-2", "G-1"], "national": [True, True, False],
                         "market_share": [0.6, 1.0, 1.0]})
    assert ns.spanning_tests(lift) == ["N-1"]
    assert ns.spanning_tests(pd.DataFrame()) == []
