"""Response curves, ROAS and budget allocation (mmm_pipeline.decisions.curves / mmm_pipeline.decisions.allocation).

One tiny model is fitted once for the module (2 geos x 2 channels x 60 weeks,
nutpie 2 chains x 100 draws, ~10 s): `tv` is bought in impressions at a
varying cost per impression, `retail` is a spend channel. Everything else is
hand-checkable arithmetic on that posterior.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline.decisions import allocation as A
from mmm_pipeline.decisions import curves as C
from mmm_pipeline import model as M

GEOS = ["G1", "G2"]
CHANNELS = ["retail", "tv"]
N_WEEKS = 60
HORIZON = 8


def synthetic_tables(seed: int = 3) -> dict:
    """Weekly staging-shaped frames with a known logistic response (no dependence on /tmp)."""
    rng = np.random.default_rng(seed)
    weeks = pd.date_range("2024-01-01", periods=N_WEEKS, freq="7D")
    media, kpi, cpu = [], [], []
    for gi, geo in enumerate(GEOS):
        size = 1.0 + 0.5 * gi
        tv_units = size * 2e6 * (1 + 0.6 * np.sin(np.arange(N_WEEKS) / 5.0)) * rng.uniform(0.7, 1.3, N_WEEKS)
        tv_units[10:13] = 0.0  # an off flight
        tv_cpu = 0.01 * (1 + 0.15 * np.cos(np.arange(N_WEEKS) / 7.0)) * (1 + 0.1 * gi)
        retail = size * 1.5e4 * rng.uniform(0.5, 1.5, N_WEEKS)
        y = size * 2e5 + 6e4 * size * (1 - np.exp(-tv_units / (size * 3e6))) \
            + 4e4 * size * (1 - np.exp(-retail / (size * 2e4))) + rng.normal(0, 3e3, N_WEEKS)
        for w, u, r, s, v in zip(weeks, tv_units, tv_cpu, retail, y):
            media.append((w, geo, "tv", "impressions", u, u * r, False))
            media.append((w, geo, "retail", "spend", s, s, False))
            cpu.append((w, geo, "tv", "impressions", u, u * r, r))
            cpu.append((w, geo, "retail", "spend", s, s, 1.0))
            kpi.append((w, geo, v, "revenue", False))
    media = pd.DataFrame(media, columns=["week_start", "geo", "channel", "unit", "units", "spend", "incomplete_week"])
    cpu = pd.DataFrame(cpu, columns=["week_start", "geo", "channel", "unit", "units", "spend", "cost_per_unit"])
    kpi = pd.DataFrame(kpi, columns=["week_start", "geo", "kpi_value", "kpi_name", "incomplete_week"])
    future = pd.date_range(weeks[-1] + pd.Timedelta(days=7), periods=HORIZON, freq="7D")
    forecast = pd.DataFrame([(w, g, c, "spend" if c == "retail" else "impressions",
                              1.0 if c == "retail" else 0.011 * (1 + 0.1 * gi) * (1 + 0.02 * k))
                             for k, w in enumerate(future) for gi, g in enumerate(GEOS) for c in CHANNELS],
                            columns=["week_start", "geo", "channel", "unit", "cost_per_unit"])
    return {"media": media, "kpi": kpi, "cpu": cpu, "forecast": forecast, "weeks": weeks}


@pytest.fixture(scope="module")
def tables() -> dict:
    return synthetic_tables()


@pytest.fixture(scope="module")
def mmm(tables):
    # one scale per market: the hand checks below read scalar scales (per geo: tests/test_geo_size.py)
    cfg = M.load_model_config("fast", {"geo_scaling": "market",
                                       "sampler": {"chains": 2, "tune": 100, "draws": 100, "cores": 2},
                                       "yearly_seasonality": 1})
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg)
    return res.mmm


@pytest.fixture(scope="module")
def curves(mmm, tables):
    return C.response_curves(mmm, tables["cpu"], recent_weeks=13, n_points=21, max_multiple=2.0)


@pytest.fixture(scope="module")
def default_alloc(mmm, tables, curves):
    sc = A.default_scenario("m1", curves, horizon_weeks=HORIZON)
    return sc, A.allocate(mmm, sc, tables["forecast"], curves, max_weekly_spend=curves)


# ----------------------------------------------------------------------------- curves


def test_curves_start_at_zero_and_are_non_decreasing(curves, tables):
    assert list(curves.columns) == C.CURVE_COLUMNS
    assert len(curves) == len(GEOS) * len(CHANNELS) * 21
    media = tables["media"]
    for (geo, channel), d in curves.groupby(["geo", "channel"]):
        d = d.sort_values("spend")
        assert d["spend"].iloc[0] == 0 and d["units"].iloc[0] == 0
        assert d["response_mean"].iloc[0] == 0 and d["hdi_low"].iloc[0] == 0 and d["hdi_high"].iloc[0] == 0
        for col in ("spend", "units", "response_mean", "hdi_low", "hdi_high"):
            assert (np.diff(d[col].to_numpy()) >= 0).all(), (geo, channel, col)
        assert (d["hdi_low"] <= d["response_mean"] + 1e-9).all()
        assert (d["response_mean"] <= d["hdi_high"] + 1e-9).all()
        assert d["response_mean"].iloc[-1] > 0
        cell = media[(media.geo == geo) & (media.channel == channel)]
        top = cell["spend"].max()
        assert d["max_weekly_spend"].iloc[0] == pytest.approx(top)
        assert d["spend"].max() == pytest.approx(2.0 * top)
        recent = cell.sort_values("week_start").tail(13)
        assert d["current_weekly_spend"].iloc[0] == pytest.approx(recent["spend"].sum() / 13)
        cpu = 1.0 if channel == "retail" else recent["spend"].sum() / recent["units"].sum()
        assert d["cost_per_unit_used"].iloc[0] == pytest.approx(cpu, rel=1e-12)


def test_spend_and_unit_curves_agree_through_the_cost_per_unit(mmm, curves):
    for (geo, channel), d in curves.groupby(["geo", "channel"]):
        cpu = d["cost_per_unit_used"].iloc[0]
        np.testing.assert_allclose(d["units"] * cpu, d["spend"], rtol=1e-12)
        # the unit curve evaluated at spend / cpu gives the same response
        unit_curve = C.response_draws(mmm, geo, channel, d["spend"].to_numpy() / cpu).mean(axis=0)
        np.testing.assert_allclose(d["response_mean"], unit_curve, rtol=1e-10, atol=1e-9)
    retail = curves[curves["channel"] == "retail"]
    assert (retail["cost_per_unit_used"] == 1.0).all()
    assert (retail["units"].to_numpy() == retail["spend"].to_numpy()).all()  # identical, not just close


def test_curve_matches_pymc_marketing_sample_saturation_curve(mmm):
    """The hand-evaluated saturation is pymc-marketing's own curve at the same scaled inputs."""
    import copy

    from pymc_extras.prior import Prior

    scale = mmm.idata.constant_data["channel_scale"]
    # The default ROI parameterization derives beta (roi_prior); pymc-marketing's sample_saturation_curve
    # would redraw it from the saturation's own beta hierarchy, absent from this posterior. With beta a
    # plain variable, the library's curve reads the posterior's beta and lam as they are.
    saturation = copy.deepcopy(mmm.saturation)
    saturation.update_priors({"saturation_beta": Prior("HalfNormal", sigma=1.0, dims=("geo", "channel"))})
    ref = saturation.sample_curve(parameters=mmm.idata.posterior.dataset, max_value=2.0, num_points=5)
    ref = ref * mmm.idata.constant_data["target_scale"]
    assert saturation.function_priors["beta"].distribution == "HalfNormal"  # the update took
    for geo in GEOS:
        for channel in CHANNELS:
            s = float(scale.sel(channel=channel))
            x = ref.coords["x"].to_numpy()
            mine = C.response_draws(mmm, geo, channel, x * s)
            theirs = ref.sel(geo=geo, channel=channel).stack(sample=("chain", "draw")).transpose("sample", "x")
            np.testing.assert_allclose(mine, theirs.to_numpy(), rtol=1e-8, atol=1e-6)


# ----------------------------------------------------------------------------- ROAS


def test_roas_summary_hand_checked():
    out = C.roas_summary(np.array([100.0, 200.0, 300.0, 400.0]), spend=100.0)
    assert out["contribution_mean"] == 250.0
    assert out["roas_mean"] == 2.5
    assert out["cost_per_incremental_kpi"] == pytest.approx(100 / 250)
    assert 1.0 <= out["roas_hdi_low"] <= out["roas_hdi_high"] <= 4.0
    zero = C.roas_summary(np.array([1.0, 2.0]), spend=0.0)
    assert np.isnan(zero["roas_mean"]) and np.isnan(zero["cost_per_incremental_kpi"])


def test_channel_roas_is_contribution_over_spend(mmm, tables):
    roas = C.channel_roas(mmm, tables["media"], tables["cpu"], contribution_source="posterior")
    assert list(roas.columns) == C.ROAS_COLUMNS and len(roas) == 4
    post = mmm.idata.posterior
    target = float(mmm.idata.constant_data["target_scale"])
    media = tables["media"]
    for r in roas.to_dict("records"):
        spend = media[(media.geo == r["geo"]) & (media.channel == r["channel"])]["spend"].sum()
        assert r["spend"] == pytest.approx(spend)
        contrib = post["channel_contribution"].sel(geo=r["geo"], channel=r["channel"]).sum("date") * target
        draws = contrib.to_numpy().ravel()
        assert r["contribution_mean"] == pytest.approx(draws.mean(), rel=1e-10)
        assert r["roas_mean"] == pytest.approx((draws / spend).mean(), rel=1e-10)
        assert r["roas_mean"] == pytest.approx(r["contribution_mean"] / r["spend"], rel=1e-10)
        assert r["roas_hdi_low"] <= r["roas_mean"] <= r["roas_hdi_high"]
        assert r["cost_per_incremental_kpi"] == pytest.approx(spend / draws.mean(), rel=1e-10)
        # mROAS: analytic slope of beta * T * logistic(lam * s / (cpu * scale)) at the current spend
        lam = post["saturation_lam"].sel(geo=r["geo"], channel=r["channel"]).to_numpy().ravel()
        beta = post["saturation_beta"].sel(geo=r["geo"], channel=r["channel"]).to_numpy().ravel()
        k = lam / (r["cost_per_unit_used"] * float(mmm.idata.constant_data["channel_scale"].sel(channel=r["channel"])))
        z = k * r["current_weekly_spend"]
        slope = beta * target * k * 2 * np.exp(-z) / (1 + np.exp(-z)) ** 2
        assert r["mroas_mean"] == pytest.approx(slope.mean(), rel=1e-6)
        assert 0 < r["mroas_mean"]
        lo, hi = M.hdi_bounds(slope)
        assert (r["mroas_hdi_low"], r["mroas_hdi_high"]) == pytest.approx((float(lo), float(hi)), rel=1e-5)
        # the response to +10%: steady-state weekly response at 1.1 x minus 1 x, over the 8-week horizon
        curve = lambda spend: beta * target * (1 - np.exp(-k * spend)) / (1 + np.exp(-k * spend))  # noqa: E731
        plus10 = (curve(1.1 * r["current_weekly_spend"]) - curve(r["current_weekly_spend"])) * 8
        assert r["planning_horizon_weeks"] == 8
        assert r["response_plus_10pct_mean"] == pytest.approx(plus10.mean(), rel=1e-9)
        assert r["response_plus_10pct_hdi_low"] <= r["response_plus_10pct_mean"] <= r["response_plus_10pct_hdi_high"]
        # a chord of a concave curve: below the tangent, above the slope at 1.1 x
        assert (slope * 0.1 * r["current_weekly_spend"] * 8 >= plus10 - 1e-9).all()


def test_market_rows_add_the_geos_per_draw(mmm, tables):
    per_geo, market, total = C.channel_roas(mmm, tables["media"], tables["cpu"], contribution_source="posterior",
                                            with_totals=True, horizon_weeks=4)
    assert list(market.columns) == C.MARKET_ROAS_COLUMNS and list(total.columns) == C.TOTAL_ROAS_COLUMNS
    assert sorted(market["channel"]) == sorted(per_geo["channel"].unique()) and len(total) == 1
    # every row says the training period: Monday of the first modelled week to Sunday of the last
    weeks = C.model_weeks(mmm)
    for frame in (per_geo, market, total):
        assert set(frame["train_start"]) == {weeks.min().date()}
        assert set(frame["train_end"]) == {(weeks.max() + pd.Timedelta(days=6)).date()}
    assert (per_geo["planning_horizon_weeks"] == 4).all()
    for channel, d in per_geo.groupby("channel"):
        m = market.set_index("channel").loc[channel]
        # means add over geos; the market's mROAS is the spend-weighted slope of its geos
        assert m["response_plus_10pct_mean"] == pytest.approx(d["response_plus_10pct_mean"].sum(), rel=1e-9)
        weighted = (d["mroas_mean"] * d["current_weekly_spend"]).sum() / d["current_weekly_spend"].sum()
        assert m["mroas_mean"] == pytest.approx(weighted, rel=1e-9)
        assert m["mroas_hdi_low"] <= m["mroas_mean"] <= m["mroas_hdi_high"]
    everything = total.iloc[0]
    assert everything["spend"] == pytest.approx(market["spend"].sum(), rel=1e-9)
    assert everything["response_plus_10pct_mean"] == pytest.approx(per_geo["response_plus_10pct_mean"].sum(), rel=1e-9)


def test_channel_roas_incrementality_equals_posterior_contribution(mmm, tables):
    a = C.channel_roas(mmm, tables["media"], tables["cpu"], contribution_source="incrementality")
    b = C.channel_roas(mmm, tables["media"], tables["cpu"], contribution_source="posterior")
    pd.testing.assert_frame_equal(a, b, rtol=1e-8)


def test_roas_is_pymc_marketings_contribution_over_spend_when_spend_is_units_times_cost(mmm, tables):
    # The mart divides by the staging spend, the library by the model's units x cost per unit: the
    # same money here (and wherever no spend is booked in a week without units), so the same ROAS.
    roas = C.channel_roas(mmm, tables["media"], tables["cpu"], contribution_source="incrementality")
    lib = mmm.incrementality.contribution_over_spend(frequency="all_time", central_tendency="mean")
    for r in roas.to_dict("records"):
        draws = np.asarray(lib.sel(geo=r["geo"], channel=r["channel"])).reshape(-1)
        assert r["roas_mean"] == pytest.approx(float(draws.mean()), rel=1e-9)
        lo, hi = M.hdi_bounds(draws)
        assert (r["roas_hdi_low"], r["roas_hdi_high"]) == pytest.approx((float(lo), float(hi)), rel=1e-9)


# ----------------------------------------------------------------------------- allocation


def test_default_scenario(curves):
    sc = A.default_scenario("m1", curves, horizon_weeks=HORIZON)
    cur = curves.drop_duplicates(["geo", "channel"])
    assert sc.total_budget == pytest.approx(cur["current_weekly_spend"].sum() * HORIZON)
    assert sc.bounds == {(g, c): (0.5, 1.5) for g, c in zip(cur["geo"], cur["channel"])}
    assert sc.variant == "calibrated" and sc.fixed_allocation is None


def test_allocation_sums_to_budget_within_bounds(default_alloc, tables, curves):
    sc, out = default_alloc
    assert list(out.columns) == A.ALLOCATION_COLUMNS and len(out) == 4
    assert abs(out["optimal_spend"].sum() - sc.total_budget) <= 1e-3 * sc.total_budget
    assert (out["optimal_spend"] >= 0).all()
    assert (out["optimal_spend"] >= 0.5 * out["current_spend"] * (1 - 1e-6)).all()
    assert (out["optimal_spend"] <= 1.5 * out["current_spend"] * (1 + 1e-6)).all()
    cur = curves.drop_duplicates(["geo", "channel"]).set_index(["geo", "channel"])
    fc = tables["forecast"]
    for r in out.to_dict("records"):
        assert r["current_spend"] == pytest.approx(cur.loc[(r["geo"], r["channel"]), "current_weekly_spend"] * HORIZON)
        rates = fc[(fc.geo == r["geo"]) & (fc.channel == r["channel"])].sort_values("week_start")["cost_per_unit"]
        assert r["optimal_units"] == pytest.approx((r["optimal_spend"] / HORIZON / rates).sum(), rel=1e-9)
        assert r["optimal_spend"] == pytest.approx(r["optimal_units"] * r["cost_per_unit"], rel=1e-9)
        top = cur.loc[(r["geo"], r["channel"]), "max_weekly_spend"]
        assert r["extrapolated"] == (r["optimal_spend"] / HORIZON > top)
        assert r["expected_response_hdi_low"] <= r["expected_response_mean"] <= r["expected_response_hdi_high"]
        assert r["expected_response_mean"] > 0 and r["current_response_mean"] > 0
    assert (out["total_budget"] == sc.total_budget).all() and (out["horizon_weeks"] == HORIZON).all()
    assert out["optimized"].all() and out["variant"].eq("calibrated").all()
    assert str(out["start_week"].iloc[0]) == str((tables["weeks"][-1] + pd.Timedelta(days=7)).date())
    # optimising the same budget cannot do worse than the current plan (same objective, within solver tolerance)
    assert out["expected_response_mean"].sum() >= out["current_response_mean"].sum() * (1 - 1e-6)


def test_a_risk_averse_utility_trades_expected_response_for_a_better_worst_tenth(mmm, tables, curves, monkeypatch):
    """`Scenario.utility: cvar` (docs/decisions.md "Utility"): pymc-marketing's CVaR utility is what the
    optimizer maximises, so its plan's mean of the worst 10% of draws is at least the expected-response
    plan's, whose expected response is in turn at least the CVaR plan's (same draws, same bounds)."""
    seen = {}
    real = A.hold_unconvincing_moves

    def record(*args, **kwargs):  # the optimizer's plan per draw, before any hold (threshold 0 here)
        seen["draws"] = inspect.signature(real).bind(*args, **kwargs).arguments["plan_draws"].sum(axis=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(A, "hold_unconvincing_moves", record)
    plans = {}
    for utility in ("mean", "cvar"):
        sc = A.default_scenario("m1", curves, horizon_weeks=HORIZON, utility=utility, utility_confidence=0.9)
        out = A.allocate(mmm, sc, tables["forecast"], curves, max_weekly_spend=curves)
        assert abs(out["optimal_spend"].sum() - sc.total_budget) <= 1e-3 * sc.total_budget
        assert (out["optimal_spend"] >= 0.5 * out["current_spend"] * (1 - 1e-6)).all()
        assert (out["optimal_spend"] <= 1.5 * out["current_spend"] * (1 + 1e-6)).all()
        plans[utility] = (out["optimal_spend"].to_numpy(), seen["draws"])

    def worst_tenth(x):
        return np.sort(x)[: max(1, int(0.1 * len(x)))].mean()

    (w_mean, d_mean), (w_cvar, d_cvar) = plans["mean"], plans["cvar"]
    assert not np.allclose(w_mean, w_cvar, rtol=1e-3)  # the utility changed the plan
    assert worst_tenth(d_cvar) >= worst_tenth(d_mean) - 1e-6 * abs(worst_tenth(d_mean))
    assert d_mean.mean() >= d_cvar.mean() - 1e-6 * abs(d_mean.mean())
    with pytest.raises(Exception, match="utility"):
        A.default_scenario("m1", curves, utility="median")


def test_fixed_allocation_is_evaluated_not_optimised(mmm, tables, curves, default_alloc, monkeypatch):
    _, base = default_alloc
    plan = {("G1", "tv"): 12345.0, ("G2", "retail"): 0.0}
    sc = A.Scenario(allocation_id="what-if", market="m1", horizon_weeks=HORIZON, fixed_allocation=plan)

    def no_solver(*args, **kwargs):
        raise AssertionError("a fixed plan must not be optimised")

    from pymc_marketing.mmm.budget_optimizer import BudgetOptimizer

    monkeypatch.setattr(BudgetOptimizer, "allocate_budget", no_solver)
    out = A.allocate(mmm, sc, tables["forecast"], curves, max_weekly_spend=curves).set_index(["geo", "channel"])
    assert out.loc[("G1", "tv"), "optimal_spend"] == pytest.approx(12345.0)
    assert out.loc[("G2", "retail"), "optimal_spend"] == 0.0
    assert out.loc[("G2", "retail"), "expected_response_mean"] == pytest.approx(0.0, abs=1e-9)
    for cell in [("G1", "retail"), ("G2", "tv")]:  # unnamed cells keep their current spend ...
        assert out.loc[cell, "optimal_spend"] == pytest.approx(out.loc[cell, "current_spend"])
        # ... and so their response is the current one
        assert out.loc[cell, "expected_response_mean"] == pytest.approx(out.loc[cell, "current_response_mean"])
    assert out["total_budget"].iloc[0] == pytest.approx(out["optimal_spend"].sum())
    assert not out["optimized"].any()
    # the current responses agree with the optimised run's
    b = base.set_index(["geo", "channel"])
    np.testing.assert_allclose(out["current_response_mean"], b.loc[out.index, "current_response_mean"], rtol=1e-9)


def test_optimizer_uses_every_kth_draw_above_the_cap(mmm, tables, curves, default_alloc, monkeypatch):
    from pymc_marketing.mmm.budget_optimizer import BudgetOptimizer

    seen = []
    real = BudgetOptimizer.set_posterior

    def spy(self, idata):
        seen.append((idata.posterior.sizes["chain"], idata.posterior.sizes["draw"]))
        return real(self, idata)

    monkeypatch.setattr(BudgetOptimizer, "set_posterior", spy)
    sc, base = default_alloc
    assert mmm.idata.posterior.sizes["chain"] * mmm.idata.posterior.sizes["draw"] == 200  # under the cap: untouched
    out = A.allocate(mmm, sc, tables["forecast"], curves, max_weekly_spend=curves, max_draws=50)
    assert seen == [(2, 25)]  # every 4th draw of each chain
    assert abs(out["optimal_spend"].sum() - sc.total_budget) <= 1e-3 * sc.total_budget
    # exactly the plan of a model whose posterior holds only those draws (a property: no tolerance tuned
    # on one machine's draws)
    thinned = copy.copy(mmm)
    thinned.idata = mmm.idata.isel(draw=slice(None, None, 4))
    seen.clear()
    same = A.allocate(thinned, sc, tables["forecast"], curves, max_weekly_spend=curves, max_draws=None)
    assert seen == []  # no cap: the posterior as given
    for col in ("optimal_spend", "current_response_mean", "expected_response_mean", "expected_response_hdi_low"):
        np.testing.assert_allclose(out[col], same[col], rtol=1e-9, err_msg=col)


def test_infeasible_bounds_fail_before_optimising(mmm, tables, curves, monkeypatch):
    def no_optimizer(*args, **kwargs):
        raise AssertionError("infeasible scenarios must fail before the optimizer is built")

    monkeypatch.setattr(mmm, "budget_optimizer", no_optimizer)
    cur = curves.drop_duplicates(["geo", "channel"])
    current_total = cur["current_weekly_spend"].sum() * HORIZON
    low = A.Scenario(allocation_id="x", market="m1", total_budget=current_total, horizon_weeks=HORIZON,
                     bounds={("*", "*"): (1.2, 2.0)})
    with pytest.raises(A.AllocationError, match=r"lower bounds sum to .* exceeding total_budget .* by .*20\.00 %"):
        A.allocate(mmm, low, tables["forecast"], curves, max_weekly_spend=curves)
    high = A.Scenario(allocation_id="x", market="m1", total_budget=current_total, horizon_weeks=HORIZON,
                      bounds={("*", "*"): (0.0, 0.75)})
    with pytest.raises(A.AllocationError,
                       match=r"upper bounds sum to .* falling short of total_budget .* by .*25\.00 %"):
        A.allocate(mmm, high, tables["forecast"], curves, max_weekly_spend=curves)


def test_cell_without_cost_forecast_fails_before_optimising(mmm, tables, curves, monkeypatch):
    monkeypatch.setattr(mmm, "budget_optimizer", lambda *a, **k: (_ for _ in ()).throw(AssertionError("built")))
    sc = A.default_scenario("m1", curves, horizon_weeks=HORIZON)
    fc = tables["forecast"]
    no_tv = fc[~((fc.geo == "G2") & (fc.channel == "tv"))]
    with pytest.raises(A.AllocationError, match=r"no positive cost-per-unit forecast for 1 cell\(s\).*G2/tv: 8 of 8"):
        A.allocate(mmm, sc, no_tv, curves, max_weekly_spend=curves)
    short = A.default_scenario("m1", curves, horizon_weeks=HORIZON + 2)  # forecast covers 8 weeks only
    with pytest.raises(A.AllocationError, match=r"no positive cost-per-unit forecast for 4 cell\(s\).*2 of 10"):
        A.allocate(mmm, short, fc, curves, max_weekly_spend=curves)


def test_scenario_validation():
    sc = A.Scenario(allocation_id="a", market="m", total_budget=10.0,
                    bounds={"G1/tv": (0.5, 1.0), ("*", "retail"): (0, 2)})
    assert sc.bound_for("G1", "tv") == (0.5, 1.0) and sc.bound_for("G2", "retail") == (0, 2)
    assert sc.bound_for("G2", "tv") is None
    with pytest.raises(ValueError, match="low <= high"):
        A.Scenario(allocation_id="a", market="m", total_budget=10.0, bounds={("G1", "tv"): (1.5, 0.5)})
    with pytest.raises(ValueError, match="total_budget is required"):
        A.Scenario(allocation_id="a", market="m")
    with pytest.raises(ValueError, match=">= 0"):
        A.Scenario(allocation_id="a", market="m", fixed_allocation={("G1", "tv"): -1.0})


def test_plots(curves, default_alloc):
    import matplotlib.pyplot as plt

    fig = C.plot_response_curves({"uncalibrated": curves, "calibrated": curves}, "tv")
    assert len(fig.axes) == len(GEOS)
    plt.close(fig)
    fig = A.plot_allocation(default_alloc[1])
    assert len(fig.axes) == 2
    plt.close(fig)


@pytest.mark.slow
def test_national_model_curves_roas_allocation(tables):
    """A model without geos (dims=()) goes through the same code: budgets over channel only (~30 s: a
    second fit and optimizer compile). It also carries a linear trend (a pymc-marketing mu_effect),
    which curves, ROAS and the optimizer must leave out of the media response."""
    media = tables["media"][tables["media"]["geo"] == "G1"].assign(geo="national")
    kpi = tables["kpi"][tables["kpi"]["geo"] == "G1"].assign(geo="national")
    cpu = tables["cpu"][tables["cpu"]["geo"] == "G1"].assign(geo="national")
    fc = tables["forecast"][tables["forecast"]["geo"] == "G1"].assign(geo="national")
    # one scale per market: the hand checks below read scalar scales (per geo: tests/test_geo_size.py)
    cfg = M.load_model_config("fast", {"geo_scaling": "market",
                                       "sampler": {"chains": 2, "tune": 100, "draws": 100, "cores": 2},
                                       "yearly_seasonality": 1, "trend": "linear"})
    mmm = M.fit_model(media, kpi, cpu, cfg).mmm
    assert "trend_effect_contribution" in mmm.idata.posterior
    curves = C.response_curves(mmm, cpu, n_points=11)
    assert set(curves["geo"]) == {"national"} and len(curves) == 2 * 11
    roas = C.channel_roas(mmm, media, cpu, contribution_source="posterior")
    assert len(roas) == 2 and (roas["roas_mean"] > 0).all()
    sc = A.default_scenario("all", curves, horizon_weeks=HORIZON)
    out = A.allocate(mmm, sc, fc, curves, max_weekly_spend=curves)
    assert len(out) == 2 and set(out["geo"]) == {"national"}
    assert abs(out["optimal_spend"].sum() - sc.total_budget) <= 1e-3 * sc.total_budget
    assert (out["optimal_spend"] >= 0.5 * out["current_spend"] * (1 - 1e-6)).all()
    assert (out["optimal_spend"] <= 1.5 * out["current_spend"] * (1 + 1e-6)).all()


def test_refresh_drift_flags_cells_whose_roas_or_share_moved_past_the_threshold():
    from mmm_pipeline.decisions.drift import refresh_drift

    prev = pd.DataFrame({"geo": ["a", "a", "b", "b"], "channel": ["tv", "search"] * 2,
                         "contribution_mean": [60.0, 40.0, 50.0, 50.0], "roas_mean": [2.0, 1.0, 1.5, 1.5]})
    cur = prev.assign(roas_mean=[2.1, 1.3, 1.5, 1.5], contribution_mean=[60.0, 40.0, 80.0, 20.0])
    out = refresh_drift(cur, prev, "v1", threshold=0.2).set_index(["geo", "channel"])
    assert out.loc[("a", "tv"), "roas_change"] == pytest.approx(0.05) and not out.loc[("a", "tv"), "flagged"]
    assert out.loc[("a", "search"), "roas_change"] == pytest.approx(0.3) and out.loc[("a", "search"), "flagged"]
    # ROAS unchanged but the media share moved 50% -> 80%: flagged on the share
    assert out.loc[("b", "tv"), "share_change_pp"] == pytest.approx(30.0) and out.loc[("b", "tv"), "flagged"]
    assert (out["previous_model_version"] == "v1").all()


def test_a_fallback_plan_is_written_beside_the_failed_variants_own_plan(mmm, tables, curves):
    """The calibrated model failed its gate: the plan uses the gated uncalibrated one, and the
    calibrated model's plan is written beside it, not chosen and not gated (issue 31). Both plans
    hold what the posterior cannot vouch for."""
    fits = {"calibrated": {"mmm": mmm, "model_version": "c1", "gated": False, "gate_reason": "R-hat 1.02"},
            "uncalibrated": {"mmm": mmm, "model_version": "u1", "gated": True, "gate_reason": ""}}
    sc = A.default_scenario("m1", curves, horizon_weeks=HORIZON, min_probability_of_gain=0.9)
    tests = pd.DataFrame({"test_id": ["T1"], "channel": [curves["channel"].iloc[0]], "geo": [curves["geo"].iloc[0]]})
    rows, plans = A.plan_scenario(sc, fits, tables["forecast"], curves, lift_tests=tests, holdout=pd.DataFrame())
    by = {p["variant"]: p for p in plans}
    assert by["uncalibrated"]["chosen"] and not by["calibrated"]["chosen"] and not by["calibrated"]["gated"]
    assert by["uncalibrated"]["fallback_reason"] == "the calibrated model is not gated (R-hat 1.02)"
    assert by["calibrated"]["fallback_reason"].startswith("not chosen: ")
    assert rows.groupby("variant")["chosen"].first().to_dict() == {"calibrated": False, "uncalibrated": True}
    assert rows["lift_tests"].eq("T1").sum() == 2  # the tested cell, in both plans
    for p in plans:
        cells = rows[rows["variant"] == p["variant"]]
        assert cells["optimal_spend"].sum() == pytest.approx(sc.total_budget, rel=1e-3)
        held = cells[cells["move"] == "hold"]
        assert len(held) == p["held_cells"] and np.allclose(held["optimal_spend"], held["current_spend"])
        if p["decision"] == "move":
            assert p["probability_of_gain"] >= 0.9
        else:
            assert p["decision"] == "keep_current_mix" and p["gain_mean"] == 0
            assert np.allclose(cells["optimal_spend"], cells["current_spend"])


@pytest.mark.slow
@pytest.mark.parametrize("family, component", [({"saturation": "hill"}, "HillSaturation"),
                                               ({"adstock": "delayed"}, "DelayedAdstock")])
def test_another_curve_family_gives_curves_and_a_plan_through_the_same_code(tables, family, component):
    """`saturation: hill` and `adstock: delayed` (docs/models.md "Saturation family", "Adstock family"): the
    curves read the family's variables, and pymc-marketing's optimizer plans on the model's own graph,
    within budget and bounds, its current response the curves' steady state."""
    cfg = M.load_model_config("fast", {"geo_scaling": "market", "yearly_seasonality": 1, **family,
                                       "sampler": {"chains": 2, "tune": 100, "draws": 100, "cores": 2}})
    hill = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg).mmm
    assert component in (type(hill.saturation).__name__, type(hill.adstock).__name__)
    curves = C.response_curves(hill, tables["cpu"], recent_weeks=13, n_points=11, max_multiple=2.0)
    for _, d in curves.groupby(["geo", "channel"]):
        d = d.sort_values("spend")
        assert d["response_mean"].iloc[0] == 0 and (np.diff(d["response_mean"].to_numpy()) >= 0).all()
    sc = A.default_scenario("m1", curves, horizon_weeks=HORIZON)
    out = A.allocate(hill, sc, tables["forecast"], curves, max_weekly_spend=curves)
    assert abs(out["optimal_spend"].sum() - sc.total_budget) <= 1e-3 * sc.total_budget
    assert (out["optimal_spend"] >= 0.5 * out["current_spend"] * (1 - 1e-6)).all()
    assert (out["optimal_spend"] <= 1.5 * out["current_spend"] * (1 + 1e-6)).all()
    assert out["expected_response_mean"].sum() >= out["current_response_mean"].sum() * (1 - 1e-6)
    # the optimizer's current response (its graph) equals the curves' (numpy Hill) at the current spend,
    # summed over the horizon as a steady state
    cur = curves.drop_duplicates(["geo", "channel"]).set_index(["geo", "channel"])
    for r in out.to_dict("records"):
        c = cur.loc[(r["geo"], r["channel"])]
        steady = C.response_draws(hill, r["geo"], r["channel"],
                                  np.array([c["current_weekly_spend"] / c["cost_per_unit_used"]])).mean()
        assert r["current_response_mean"] == pytest.approx(steady * HORIZON, rel=0.25), r
