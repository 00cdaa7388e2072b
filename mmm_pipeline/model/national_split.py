"""A national lift test that spans markets, split by the markets' predicted lifts (pure numpy/pandas).

A national test's readout is one number for every geo it ran in. When the geos are fitted as
several markets, each market's calibrated model gets one term: its part of the readout. The
conversion (``lift_tests.convert_lift_tests``) splits by the market's share of the window's *spend*
(``market_share``), which is the market's share of the *lift* only where its ROAS equals the other
markets'. On the benchmark's ``spread`` data the west market got 57% of a national retail readout
against a true 45%.

Here the split is each market's share of the lift the **uncalibrated** models predict for the test
on its own spend path (the window likelihood's expression, ``lift_likelihood.implied_lift_draws``),
per posterior draw: ``share_m = S x L_m / sum_k L_k`` with ``S`` the markets' total spend share (1
when the markets cover every geo). The markets' posteriors are independent, so their draws are
paired after a seeded shuffle. The market's term is then

    delta_y_test = delta_y x mean(share_m)
    sigma_test   = sqrt(sigma^2 x mean(share_m) + (delta_y x sd(share_m))^2)

the first part so that the markets' terms add up to the reported variance (as in the spend split),
the second the split's own uncertainty, carried from the posteriors instead of the spend split's
fixed log-ROAS spread (``lift_tests.national_split_log_sd``). A test for which some market has no
usable uncalibrated prediction keeps the spend split in every market (the shares must add up), with
the reason in ``method``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmm_pipeline.model.summaries import hdi_bounds

SPLIT_COLUMNS = ["market", "test_id", "channel", "scope", "delta_y", "sigma", "spend_share",
                 "lift_share_mean", "lift_share_sd", "lift_share_hdi_low", "lift_share_hdi_high",
                 "delta_y_test", "sigma_test", "method", "uncalibrated_model_version"]
PREDICTED = "predicted_lift"


def spanning_tests(lift: pd.DataFrame) -> list[str]:
    """Test ids of national tests this market shares with others (converted rows, market_share < 1)."""
    if lift is None or not len(lift) or "national" not in lift:
        return []
    nat = lift[lift["national"].astype(bool) & (lift["market_share"] < 1.0 - 1e-9)]
    return sorted(nat["test_id"].astype(str).unique())


def lift_share_split(test: dict, spend_shares: dict[str, float], draws: dict[str, np.ndarray | None], *,
                     split_log_sd: float = 0.5, seed: int = 0, hdi_prob: float = 0.94) -> pd.DataFrame:
    """SPLIT_COLUMNS rows (one per market) of one national test.

    `test`: test_id, channel, scope, delta_y and sigma as reported (the whole test); `spend_shares`:
    market -> its share of the window spend (the conversion's market_share); `draws`: market -> the
    uncalibrated model's predicted lift draws of the market's part of the test (None: not available,
    which puts every market on the spend split, widened by `split_log_sd` as the conversion does)."""
    markets = sorted(spend_shares)
    d_y, sig = float(test["delta_y"]), float(test["sigma"])
    missing = [m for m in markets if draws.get(m) is None or not len(draws[m])]
    rows = []
    if missing:
        method = f"spend_share: no uncalibrated prediction for market(s) {', '.join(missing)}"
        for m in markets:
            rows.append({"market": m, "spend_share": spend_shares[m], "method": method})
        return _finish(rows, test, d_y, sig, split_log_sd)
    covered = float(sum(spend_shares.values()))
    rng = np.random.default_rng(seed)
    n = min(len(draws[m]) for m in markets)
    # independent posteriors: any pairing of their draws is a draw of the joint; shuffle so that no
    # chain's order lines up with another's
    paired = np.stack([rng.permutation(np.asarray(draws[m], float))[:n] for m in markets], axis=1)
    total = paired.sum(axis=1)
    usable = total > 0
    if usable.mean() < 0.5:
        method = "spend_share: the models predict no lift for this test in most draws"
        rows = [{"market": m, "spend_share": spend_shares[m], "method": method} for m in markets]
        return _finish(rows, test, d_y, sig, split_log_sd)
    shares = covered * paired[usable] / total[usable, None]
    for k, m in enumerate(markets):
        s = shares[:, k]
        lo, hi = (float(b[0]) for b in hdi_bounds(s[:, None], hdi_prob))
        rows.append({"market": m, "spend_share": spend_shares[m], "lift_share_mean": float(s.mean()),
                     "lift_share_sd": float(s.std()), "lift_share_hdi_low": float(lo),
                     "lift_share_hdi_high": float(hi), "method": PREDICTED})
    return _finish(rows, test, d_y, sig, None)


def _finish(rows: list[dict], test: dict, d_y: float, sig: float, spend_split_log_sd: float | None) -> pd.DataFrame:
    """Each row's term: from its lift share (`spend_split_log_sd` None) or, as the conversion has it,
    from its spend share s with the split error |delta_y| s (1 - s) tau."""
    out = pd.DataFrame(rows)
    for r in out.index:
        if spend_split_log_sd is None:
            s, split_sd = out.at[r, "lift_share_mean"], d_y * out.at[r, "lift_share_sd"]
        else:
            s = out.at[r, "spend_share"]
            split_sd = abs(d_y) * s * (1.0 - s) * spend_split_log_sd
        out.at[r, "delta_y_test"] = d_y * s
        out.at[r, "sigma_test"] = float(np.sqrt(sig ** 2 * s + split_sd ** 2))
    out["test_id"], out["channel"], out["scope"] = test["test_id"], test.get("channel"), test.get("scope")
    out["delta_y"], out["sigma"] = d_y, sig
    return out.reindex(columns=SPLIT_COLUMNS)


def apply_split(lift: pd.DataFrame, split: pd.DataFrame, market: str) -> pd.DataFrame:
    """The market's converted rows with each predicted-lift split's term (delta_y_test, sigma_test)
    in place of the spend split's; rows of tests kept on the spend split are unchanged."""
    out = lift.copy()
    mine = split[(split["market"] == market) & (split["method"] == PREDICTED)]
    for r in mine.to_dict("records"):
        at = out["test_id"].astype(str) == str(r["test_id"])
        out.loc[at, "delta_y_test"] = r["delta_y_test"]
        out.loc[at, "sigma_test"] = r["sigma_test"]
    return out


def predicted_lift_draws(mmm, rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """test_id -> the model's posterior draws of its implied lift over `rows` (one market's converted
    rows of the tests), in the test's scope; a test the design leaves out (window outside the
    modelled weeks) is absent."""
    from mmm_pipeline.model.lift_likelihood import implied_lift_draws, model_data_of, window_design

    design = window_design(rows, model_data_of(mmm), int(mmm.adstock.l_max))
    if not design.test_ids:
        return {}
    draws = implied_lift_draws(mmm, design)
    return {t: draws[:, k] for k, t in enumerate(design.test_ids)}
