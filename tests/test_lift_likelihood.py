"""The in-graph window/total lift likelihood (mmm_pipeline.model.lift_likelihood), on toy paths.

Models are built, not sampled (except the HSGP test's short fit): the implied
lift is evaluated at the model's initial point and compared with a numpy hand
computation of adstock (build-up included) and logistic saturation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline.model import lift_likelihood as LL
from mmm_pipeline import model as M

WEEKS = pd.date_range("2024-01-01", periods=14, freq="7D")
GEOS = ["A", "B"]
CHANNELS = ["c1", "c2"]
DAY = pd.Timedelta(days=1)


def toy_data(national: bool = False) -> M.ModelData:
    rng = np.random.default_rng(0)
    geos = ["national"] if national else GEOS
    # c1 runs at a constant 75 units a week (so the test's adstock build-up is visible), c2 varies
    rows = [{"date": w, "geo": g, "c1": 75.0, "c2": float(rng.uniform(10, 20))} for w in WEEKS for g in geos]
    X = pd.DataFrame(rows)
    if national:
        X = X.drop(columns="geo")
    y = pd.Series(100 + rng.normal(0, 1, len(X)), name="kpi")
    return M.ModelData(X=X, y=y, cost_per_unit=None, channels=CHANNELS, geos=geos, kpi_name="kpi",
                       dims=() if national else ("geo",), weeks=list(WEEKS), dropped_weeks=[])


def make_row(test_id="T1", channel="c1", geo="B", start=WEEKS[4], end=WEEKS[6] + 6 * DAY, delta_spend=63.0,
             cpu=0.7, scope="window", delta_y=5.0, sigma=1.0):
    return {"test_id": test_id, "channel": channel, "geo": geo, "start_date": start, "end_date": end,
            "delta_spend": delta_spend, "cost_per_unit_used": cpu, "delta_y_test": delta_y,
            "sigma_test": sigma, "scope": scope}


def hand_contribution(units, alpha, lam, beta, l_max=8):
    w = alpha ** np.arange(l_max)
    w = w / w.sum()
    ad = np.array([sum(w[k] * units[t - k] for k in range(l_max) if t - k >= 0) for t in range(len(units))])
    return beta * (1 - np.exp(-lam * ad)) / (1 + np.exp(-lam * ad))


def evaluate(mmm, extra=()):
    """Implied lift and per-geo alpha, lam, beta (model scale) at the model's initial point
    (random variables replaced by their values, so every output is of the same point)."""
    model = mmm.model
    outs = model.replace_rvs_by_values([model["lift_window_implied"], model["adstock_alpha"].values,
                                        model["saturation_lam"].values, model["saturation_beta"].values,
                                        *extra])
    f = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    return [np.array(v, copy=True) for v in f(model.initial_point())]


@pytest.fixture(scope="module")
def cfg():
    # one scale per market: the hand computations below read scalar channel and target scales
    return M.load_model_config("fast", {"geo_scaling": "market"})


def test_implied_lift_equals_hand_computation_on_a_3_week_toy_path(cfg):
    data = toy_data()
    # 3 weeks and 3 days: the last week is partial (3 of 7 days in the window).
    row = make_row(end=WEEKS[7] + 2 * DAY)
    mmm = M.build_mmm(data, cfg, lift_tests=pd.DataFrame([row]))
    implied, alpha, lam, beta = evaluate(mmm)
    g, c = GEOS.index("B"), CHANNELS.index("c1")
    factual = data.X.loc[data.X["geo"] == "B", "c1"].to_numpy()
    n_days = 24
    days_in_week = np.zeros(len(WEEKS))
    days_in_week[4:7], days_in_week[7] = 7, 3
    extra = 63.0 / n_days * days_in_week / 0.7
    # the extra units are in the data: untreated = factual - extra
    s = float(mmm.scalers["_channel"].sel(channel="c1"))
    ts = float(mmm.scalers["_target"])
    diff = (hand_contribution(factual / s, alpha[g, c], lam[g, c], beta[g, c])
            - hand_contribution((factual - extra) / s, alpha[g, c], lam[g, c], beta[g, c]))
    expected = float((diff * days_in_week / 7).sum() * ts)
    assert implied.shape == (1,)
    assert implied[0] == pytest.approx(expected, rel=1e-9)
    # adstock builds up inside the window: the window's weekly lift grows week by week
    assert diff[4] < diff[5] < diff[6]
    # and it is below the steady-state lift of the same weekly increment
    steady = beta[g, c] * ((1 - np.exp(-lam[g, c] * (factual[5] / s))) / (1 + np.exp(-lam[g, c] * factual[5] / s))
                           - (1 - np.exp(-lam[g, c] * (factual[5] - extra[5]) / s))
                           / (1 + np.exp(-lam[g, c] * (factual[5] - extra[5]) / s)))
    assert diff[4] < steady


def test_extra_spend_not_in_data_adds_on_top_of_the_factual_path(cfg):
    data = toy_data()
    row = make_row()
    c2 = cfg.model_copy(update={"calibration": M.CalibrationConfig(extra_spend_in_data=False)})
    mmm = M.build_mmm(data, c2, lift_tests=pd.DataFrame([row]))
    implied, alpha, lam, beta = evaluate(mmm)
    g, c = 1, 0
    factual = data.X.loc[data.X["geo"] == "B", "c1"].to_numpy()
    extra = np.zeros(len(WEEKS))
    extra[4:7] = 63.0 / 21 * 7 / 0.7
    s, ts = float(mmm.scalers["_channel"].sel(channel="c1")), float(mmm.scalers["_target"])
    diff = (hand_contribution((factual + extra) / s, alpha[g, c], lam[g, c], beta[g, c])
            - hand_contribution(factual / s, alpha[g, c], lam[g, c], beta[g, c]))
    assert implied[0] == pytest.approx(float(diff[4:7].sum() * ts), rel=1e-9)


def test_total_scope_includes_the_carryover_weeks(cfg):
    data = toy_data()
    rows = [make_row("W", scope="window"), make_row("T", scope="total")]
    mmm = M.build_mmm(data, cfg, lift_tests=pd.DataFrame(rows))
    implied, alpha, lam, beta = evaluate(mmm)
    g, c = 1, 0
    factual = data.X.loc[data.X["geo"] == "B", "c1"].to_numpy()
    extra = np.zeros(len(WEEKS))
    extra[4:7] = 63.0 / 21 * 7 / 0.7
    s, ts = float(mmm.scalers["_channel"].sel(channel="c1")), float(mmm.scalers["_target"])
    diff = (hand_contribution(factual / s, alpha[g, c], lam[g, c], beta[g, c])
            - hand_contribution((factual - extra) / s, alpha[g, c], lam[g, c], beta[g, c])) * ts
    window, total = implied
    assert window == pytest.approx(diff[4:7].sum(), rel=1e-9)
    # weeks 4..6 plus l_max - 1 = 7 weeks of carryover (to week 13, the last modelled week)
    assert total == pytest.approx(diff[4:14].sum(), rel=1e-9)
    assert total > window * 1.05
    assert diff[7] > 0 and diff[:4].max() == pytest.approx(0.0, abs=1e-12)


def test_national_test_adds_one_likelihood_term_with_the_reported_sigma(cfg):
    data = toy_data()
    start, end = WEEKS[2], WEEKS[4] + 6 * DAY
    rows = [make_row("N", channel="c2", geo=g, start=start, end=end, delta_spend=sp, cpu=1.0, delta_y=9.0,
                     sigma=3.0) for g, sp in (("A", 10.0), ("B", 20.0))]
    mmm = M.build_mmm(data, cfg, lift_tests=pd.DataFrame(rows))
    obs = mmm.model["lift_window_obs"]
    assert [v.name for v in mmm.model.observed_RVs] == ["y", "lift_window_obs"]
    assert mmm.model.coords["lift_test"] == ("N",)
    # one term: the sum of the geos' implied lifts, observed 9.0 with sigma 3.0 (scaled)
    ref = float(mmm.scalers["_target"])
    observed = mmm.model.rvs_to_values[obs]
    assert np.asarray(observed.data if hasattr(observed, "data") else observed.eval()) == \
        pytest.approx([9.0 / ref])
    implied, alpha, lam, beta, logp = evaluate(mmm, [mmm.model.logp(vars=[obs], sum=False)[0]])
    s, ts = float(mmm.scalers["_channel"].sel(channel="c2")), ref
    total = 0.0
    for g, sp in (("A", 10.0), ("B", 20.0)):
        k = GEOS.index(g)
        factual = data.X.loc[data.X["geo"] == g, "c2"].to_numpy()
        extra = np.zeros(len(WEEKS))
        extra[2:5] = sp / 21 * 7
        d = (hand_contribution(factual / s, alpha[k, 1], lam[k, 1], beta[k, 1])
             - hand_contribution((factual - extra) / s, alpha[k, 1], lam[k, 1], beta[k, 1]))
        total += d[2:5].sum() * ts
    assert implied[0] == pytest.approx(total, rel=1e-9)
    # its log-likelihood has one element whose sigma is the reported one
    z = (9.0 - implied[0]) / 3.0
    assert np.shape(logp) == (1,)
    assert float(np.ravel(logp)[0]) == pytest.approx(-0.5 * z ** 2 - np.log(3.0 / ref) - 0.5 * np.log(2 * np.pi),
                                                     rel=1e-6)


def test_national_model_and_studentt_option(cfg):
    data = toy_data(national=True)
    c2 = cfg.model_copy(update={"calibration": M.CalibrationConfig(distribution="studentt", studentt_nu=4)})
    mmm = M.build_mmm(data, c2, lift_tests=pd.DataFrame([make_row(geo=None)]))
    assert "lift_window_obs" in mmm.model.named_vars
    assert mmm.model["lift_window_obs"].owner.op.__class__.__name__.lower().startswith("studentt")
    implied, *_ = evaluate(mmm)
    assert implied[0] > 0


def test_window_reaching_an_unmodelled_week_is_skipped_and_bad_scope_fails():
    data = toy_data()
    design = LL.window_design(pd.DataFrame([make_row(end=WEEKS[-1] + 10 * DAY)]), data, 8)
    assert design.test_ids == [] and design.skipped[0]["test_id"] == "T1"
    with pytest.raises(ValueError, match="scope"):
        LL.window_design(pd.DataFrame([make_row(scope="forever")]), data, 8)


def test_design_round_trips_through_json():
    data = toy_data()
    d = LL.window_design(pd.DataFrame([make_row(), make_row("T2", scope="total", geo="A")]), data, 8)
    back = LL.LiftDesign.from_json(d.to_json())
    assert back.test_ids == d.test_ids and back.scope == ["window", "total"]
    np.testing.assert_allclose(back.untreated, d.untreated)
    np.testing.assert_allclose(back.weight, d.weight)


def test_steady_state_option_keeps_pymc_marketing_likelihood(cfg):
    data = toy_data()
    lift = pd.DataFrame([{"channel": "c1", "geo": "B", "x": 70.0, "delta_x": 30.0, "delta_y": 2.0, "sigma": 0.5}])
    c2 = cfg.model_copy(update={"calibration": M.CalibrationConfig(likelihood="steady_state")})
    mmm = M.build_mmm(data, c2, lift_tests=lift)
    assert "lift_measurements" in mmm.model.named_vars and "lift_window_obs" not in mmm.model.named_vars


@pytest.mark.fit
def test_hsgp_variant_builds_samples_and_reloads_with_lift_tests(cfg, tmp_path):
    # 1 chain x 50 draws of pymc's sampler on the toy (the HSGP graph compiles slowly: ~1-3 min)
    data = toy_data()
    c2 = M.load_model_config("fast", {"time_varying_media": True, "geo_scaling": "market"})
    mmm, calibration = M.build_model(data, c2, lift_tests=pd.DataFrame([make_row()]))
    assert "media_temporal_latent_multiplier" in mmm.model.named_vars
    mmm.fit(data.X, data.y, nuts_sampler="pymc", chains=1, tune=30, draws=20, progressbar=False,
            random_seed=1, compute_convergence_checks=False)
    calibration.save_to(mmm.idata)  # what fit_model does after sampling
    implied = mmm.idata.posterior["lift_window_implied"]
    assert implied.sizes["lift_test"] == 1 and np.isfinite(implied).all()
    # the same expression evaluated from the posterior (what the report uses for any model)
    design = LL.window_design(pd.DataFrame([make_row()]), data, 8)
    draws = LL.implied_lift_draws(mmm, design)
    np.testing.assert_allclose(draws[:, 0], implied.stack(s=("chain", "draw")).values[0], rtol=1e-8)
    # the report reads a calibrated posterior's own deterministic, and recomputes only without it
    from mmm_pipeline.reporting.model_report import model_lift_draws

    np.testing.assert_array_equal(model_lift_draws(mmm, design)[:, 0], implied.stack(s=("chain", "draw")).values[0])
    other = LL.window_design(pd.DataFrame([{**make_row(), "test_id": "not-in-the-graph"}]), data, 8)
    np.testing.assert_allclose(model_lift_draws(mmm, other), draws, rtol=1e-12)  # evaluated, same expression
    path = M.save_model(mmm, tmp_path / "m.nc")
    back = M.load_model(path)
    assert "lift_window_obs" in back.model.named_vars


def test_roas_targets_add_cost_per_target_terms(cfg):
    from mmm_pipeline.model import roas_targets as RT

    data = toy_data()
    keys = data.X[["date", "geo"]]
    data.cost_per_unit = keys.assign(c1=0.5, c2=2.0)
    targets = pd.DataFrame([
        {"channel": "c1", "geo": "B", "metric": "roas", "value": 1.5, "sigma": 0.3},
        {"channel": "c2", "geo": None, "metric": "cpa", "value": 4.0, "sigma": 1.0},
        {"channel": "c9", "geo": None, "metric": "roas", "value": 1.0, "sigma": 0.1},
        {"channel": "c1", "geo": "A", "metric": "iroas", "value": 1.0, "sigma": 0.1},
        {"channel": "c1", "geo": "Z", "metric": "roas", "value": 1.0, "sigma": 0.1},  # another market
    ])
    used, rejected = RT.targets_for_model(targets, CHANNELS, GEOS, True)
    # the geo-less CPA is one term per geo, sigma x sqrt(2), so together they carry sigma once
    assert used[["channel", "geo", "metric"]].values.tolist() == [["c1", "B", "roas"], ["c2", "A", "cpa"],
                                                                   ["c2", "B", "cpa"]]
    assert used["sigma"].tolist() == pytest.approx([0.3, np.sqrt(2), np.sqrt(2)])
    assert len(rejected) == 2 and "unknown channel" in rejected["reason"].iloc[0]
    spend = RT.spend_frame(data)
    assert spend["c1"].tolist() == pytest.approx((data.X["c1"] * 0.5).tolist())
    mmm, calibration = M.build_model(data, cfg, roas_targets=targets)
    names = set(mmm.model.named_vars)
    assert any(n.startswith("roas_target") for n in names) and any(n.startswith("cpa_target") for n in names)
    assert calibration.roas_targets.equals(used) and calibration.calibrated


def test_the_calibration_state_round_trips_and_rebuilds_the_same_graph(cfg):
    """One typed state (ROI prior and typical week, converted tests, their design, targets) goes
    through the attrs and, applied to a bare build, gives the graph build_model made."""
    data = toy_data()
    targets = pd.DataFrame([{"channel": "c2", "geo": "A", "metric": "roas", "value": 1.0, "sigma": 0.2}])
    lift = pd.DataFrame([make_row(), make_row(test_id="T2", channel="c2", geo="A", scope="total")])
    mmm, calibration = M.build_model(data, cfg, lift_tests=lift, roas_targets=targets)
    assert calibration.calibrated and calibration.roi is not None
    assert calibration.lift_design.test_ids == ["T1", "T2"] and calibration.lift_design.scope == ["window", "total"]
    back = M.Calibration.from_attrs(calibration.to_attrs())
    assert back.roi == calibration.roi and back.lift_design.to_json() == calibration.lift_design.to_json()
    pd.testing.assert_frame_equal(back.roas_targets, calibration.roas_targets, check_dtype=False)
    assert back.lift_tests["test_id"].tolist() == calibration.lift_tests["test_id"].tolist()
    bare = M.make_mmm(data, cfg)
    bare.build_model(data.X, data.y)
    from mmm_pipeline.model import roas_targets as RT

    back.apply(bare, spend=RT.spend_frame(data))
    assert set(bare.model.named_vars) == set(mmm.model.named_vars)
    assert not [a for a in vars(mmm) if a.startswith("_mmm_pipeline")]  # nothing rides on the library's object
    plain = M.Calibration.from_attrs({})
    assert not plain.calibrated and plain.roi is None
