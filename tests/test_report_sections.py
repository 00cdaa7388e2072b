"""The report, grown (issue 29): the health card, share of spend vs effect, carryover share, the
contribution waterfall, average beside marginal returns and drift, on hand-made marts (no fit)."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline.decisions import curves
from mmm_pipeline.model.config import GateConfig
from mmm_pipeline.reporting import health, report
from mmm_pipeline.reporting.wording import Kpi
from tests.conftest import assert_formatted, visible_text

FULL = GateConfig()  # max R-hat 1.01, bulk ESS 400, no divergence


def _run(variant="calibrated", rhat=1.004, ess=900.0, div=0, gated=True, profile="full"):
    return {"variant": variant, "model_version": f"mv-{variant}", "profile": profile, "chains": 4, "draws": 1000,
            "max_rhat": rhat, "min_ess_bulk": ess, "divergences": div, "gated": gated, "passed_gates": gated,
            "r2": 0.9, "mape": 0.05, "coverage_94": 0.93, "gate_failures": ""}


def _status(card: pd.DataFrame, check: str, variant: str | None = None) -> str:
    rows = card[card["check_name"] == check]
    if variant:
        rows = rows[rows["variant"] == variant]
    assert len(rows) == 1, rows
    return rows["status"].iloc[0]


# --------------------------------------------------------------------------- carryover and shares


def test_carryover_share_is_zero_without_adstock_and_grows_with_alpha_within_its_bound():
    from pymc_marketing.mmm import GeometricAdstock

    l_max = 8
    geometric = GeometricAdstock(l_max=l_max)
    assert curves.carryover_share(geometric, alpha=0.0) == pytest.approx(0.0)
    assert curves.carryover_share(GeometricAdstock(l_max=1), alpha=0.9) == pytest.approx(0.0)  # nothing carries
    alphas = np.linspace(0, 0.999, 50)
    share = curves.carryover_share(geometric, alpha=alphas)
    assert share.shape == alphas.shape
    assert ((share >= -1e-12) & (share <= 1)).all()
    assert (np.diff(share) > 0).all()
    assert share[-1] < (l_max - 1) / l_max
    # 1 - w0 / sum(w) of the normalised kernel: 0.5 with weights 1, 0.5, 0.25 -> 1 - 1/1.75
    assert curves.carryover_share(GeometricAdstock(l_max=3), alpha=0.5) == pytest.approx(1 - 1 / 1.75)


def test_carryover_share_of_a_delayed_kernel_grows_with_its_peak_lag():
    """DelayedAdstock's weights alpha^((l - theta)^2): theta 0 is a (faster-decaying) geometric kernel, a
    later peak carries more of the effect past the first week; shapes of the draws are kept."""
    from pymc_marketing.mmm import DelayedAdstock

    delayed = DelayedAdstock(l_max=6)
    alpha = 0.5
    weights = alpha ** (np.arange(6) ** 2)
    assert curves.carryover_share(delayed, alpha=alpha, theta=0.0) == pytest.approx(1 - 1 / weights.sum())
    thetas = np.array([[0.0, 1.0], [2.0, 3.0]])
    share = curves.carryover_share(delayed, alpha=np.full((2, 2), alpha), theta=thetas)
    assert share.shape == (2, 2)
    assert (np.diff(share.ravel()) > 0).all()
    assert share[1, 1] > 0.9  # a peak three weeks out: almost nothing in the week of spend


def test_effect_shares_add_up_to_one_per_draw_and_spend_shares_to_one():
    rng = np.random.default_rng(0)
    draws = {"tv": rng.gamma(5, 100, 400), "search": rng.gamma(3, 50, 400), "social": rng.gamma(2, 30, 400)}
    spend = {"tv": 5000.0, "search": 2000.0, "social": 1000.0}
    carry = {"tv": rng.uniform(0.5, 0.8, 400), "search": np.zeros(400), "social": rng.uniform(0.1, 0.3, 400)}
    alpha_means = {"tv": 0.7, "search": 0.0, "social": 0.2}
    out = curves.channel_shares(draws, spend, carry, alpha_means, l_max=8).set_index("channel")
    assert list(out.reset_index().columns) == curves.SHARE_COLUMNS
    assert out["effect_share_mean"].sum() == pytest.approx(1.0, abs=1e-12)
    assert out["spend_share"].sum() == pytest.approx(1.0)
    assert out.loc["tv", "spend_share"] == pytest.approx(5 / 8)
    total = sum(draws.values())
    assert out.loc["tv", "effect_share_mean"] == pytest.approx(np.mean(draws["tv"] / total))
    assert (out["effect_share_hdi_low"] <= out["effect_share_mean"]).all()
    assert (out["effect_share_mean"] <= out["effect_share_hdi_high"]).all()
    assert out.loc["search", "carryover_share_mean"] == 0.0  # every effect in its own week
    assert out.loc["search", "carryover_share_hdi_high"] == 0.0
    assert out.loc["tv", "carryover_share_mean"] == pytest.approx(carry["tv"].mean())
    assert out.loc["social", "adstock_alpha_mean"] == 0.2 and (out["l_max"] == 8).all()
    c = out["carryover_share_mean"]
    assert ((c >= 0) & (c <= 1)).all() and out.loc["tv", "carryover_share_mean"] > out.loc["social", "carryover_share_mean"]
    no_adstock = curves.channel_shares(draws, spend)
    assert no_adstock["carryover_share_mean"].isna().all()


# --------------------------------------------------------------------------- health card


def test_convergence_status_follows_the_gates_of_the_profile():
    gates = lambda _profile: FULL  # noqa: E731
    runs = pd.DataFrame([_run("uncalibrated", rhat=1.02), _run("calibrated")])
    card = health.model_health("west", runs, gates)
    assert _status(card, "convergence", "uncalibrated") == "red"
    assert "R-hat 1.020 above 1.01" in card.loc[card["variant"] == "uncalibrated", "sentence"].iloc[0]
    assert _status(card, "convergence", "calibrated") == "green"
    card = health.model_health("west", pd.DataFrame([_run(ess=399)]), gates)
    assert _status(card, "convergence") == "red"
    card = health.model_health("west", pd.DataFrame([_run(div=1)]), gates)
    assert _status(card, "convergence") == "red"
    card = health.model_health("west", pd.DataFrame([_run(gated=False, profile="fast")]), gates)
    assert _status(card, "convergence") == "amber"  # gates hold but not enforced
    assert set(card["status"]) <= set(health.STATUSES) and list(card.columns) == health.COLUMNS


@pytest.mark.parametrize("model_mape, status", [(0.08, "green"), (0.105, "amber"), (0.12, "red")])
def test_out_of_sample_status_against_the_naive_forecast(model_mape, status):
    val = pd.DataFrame([{"geo": "market", "model_mape": model_mape, "baseline_mape": 0.1, "holdout_weeks": 8,
                         "beats_baseline": model_mape < 0.1}])
    card = health.model_health("west", pd.DataFrame([_run()]), lambda _p: FULL, validation=val)
    assert _status(card, "out_of_sample") == status
    assert "naive forecast" in card.loc[card["check_name"] == "out_of_sample", "sentence"].iloc[0]


def test_missing_validation_is_amber_not_green():
    card = health.model_health("west", pd.DataFrame([_run()]), lambda _p: FULL)
    assert _status(card, "out_of_sample") == "amber"
    assert "held_out_experiments" not in set(card["check_name"])  # no mart: no row


@pytest.mark.parametrize("inside, status", [(5, "green"), (4, "green"), (3, "amber"), (2, "red")])
def test_held_out_experiments_status_is_the_share_inside_the_interval(inside, status):
    holdout = pd.DataFrame({"measured": [10.0] * inside + [100.0] * (5 - inside), "predicted_hdi_low": 5.0,
                            "predicted_hdi_high": 20.0, "method": "reweighted"})
    card = health.model_health("west", pd.DataFrame([_run()]), lambda _p: FULL, holdout=holdout)
    assert _status(card, "held_out_experiments") == status
    assert card.loc[card["check_name"] == "held_out_experiments", "value"].iloc[0] == pytest.approx(inside / 5)


@pytest.mark.parametrize("pareto_k, verdicts, status", [(0.3, ["consistent"], "green"),
                                                        (0.8, ["consistent"], "amber"),
                                                        (0.3, ["consistent", "inconsistent"], "red")])
def test_calibration_consistency_status(pareto_k, verdicts, status):
    cons = pd.DataFrame({"pareto_k": pareto_k, "verdict": verdicts})
    card = health.model_health("west", pd.DataFrame([_run()]), lambda _p: FULL, consistency=cons)
    assert _status(card, "calibration_consistency") == status


def test_data_checks_are_green_when_every_suite_passed_and_amber_otherwise():
    ok = pd.DataFrame({"suite": ["raw_kpi", "staging_kpi_weekly"], "success": [True, True]})
    card = health.model_health("west", pd.DataFrame([_run()]), lambda _p: FULL, validations=ok)
    assert _status(card, "data_checks") == "green"
    bad = ok.assign(success=[True, False])
    card = health.model_health("west", pd.DataFrame([_run()]), lambda _p: FULL, validations=bad)
    assert _status(card, "data_checks") == "amber"
    assert "staging_kpi_weekly" in card.loc[card["check_name"] == "data_checks", "sentence"].iloc[0]


def _coverage(off_roas: float, off_mroas: float) -> dict:
    group = lambda r, m: {"datasets": 6, "roas": {"mean": r, "low": r - 0.05, "high": r + 0.05},  # noqa: E731
                          "mroas": {"mean": m, "low": m - 0.05, "high": m + 0.05}}
    return {"measured": "2026-12-07", "code": "commit abc1234", "model_code_versions": ["v1"], "coverage": {
        "uncalibrated": {"off_family": group(off_roas, off_mroas), "in_family": group(0.92, 0.90)}}}


@pytest.mark.parametrize("off_roas, off_mroas, status", [(0.61, 0.76, "amber"), (0.90, 0.89, "green"),
                                                         (0.90, 0.87, "amber")])
def test_interval_coverage_is_the_benchmarks_record_and_amber_below_the_target(off_roas, off_mroas, status):
    runs = pd.DataFrame([_run("uncalibrated"), _run("calibrated")])
    card = health.model_health("west", runs, lambda _p: FULL, coverage_reference=_coverage(off_roas, off_mroas),
                               code_version="v1")
    rows = card[card["check_name"] == "interval_coverage"]
    assert list(rows["variant"]) == ["uncalibrated"]          # no record of the calibrated variant: no row
    assert rows["status"].iloc[0] == status and rows["value"].iloc[0] == pytest.approx(min(off_roas, off_mroas))
    sentence = rows["sentence"].iloc[0]
    assert f"true average return in {off_roas:.0%}" in sentence and "6 datasets" in sentence
    assert "commit abc1234" in sentence and "ROAS" not in sentence  # a count KPI's report never says ROAS
    assert ("narrower than the uncertainty" in sentence) == (status == "amber")
    assert "interval_coverage" not in set(health.model_health("west", runs, lambda _p: FULL)["check_name"])


@pytest.mark.parametrize("recorded", [["v0"], ["v0", "v1"], []])
def test_interval_coverage_of_other_model_code_says_so_and_is_never_green(recorded):
    runs = pd.DataFrame([_run("uncalibrated")])
    ref = {**_coverage(0.95, 0.95), "model_code_versions": recorded}
    row = health.model_health("west", runs, lambda _p: FULL, coverage_reference=ref, code_version="v1")
    row = row[row["check_name"] == "interval_coverage"].iloc[0]
    assert row["status"] == "amber" and "describe an earlier model" in row["sentence"]
    assert "this run's v1" in row["sentence"] and "mean what they say" not in row["sentence"]


def test_the_card_compares_the_record_with_this_checkouts_model_code():
    """The version is the model code's (normalised source): the same here as the benchmark's worker records."""
    from mmm_pipeline import code_graph

    assert health.model_code_version() == code_graph.source_version(*health.COVERAGE_MODEL_MODULES)
    assert {"mmm_pipeline.model.priors", "mmm_pipeline.model.lift_likelihood", "mmm_pipeline.settings"} <= set(
        code_graph.reached(*health.COVERAGE_MODEL_MODULES))


def test_publishing_coverage_refuses_rows_of_candidate_settings():
    from bench.bench_offfamily import coverage_reference

    rows = pd.DataFrame({"structure": ["hill_daily"], "seed": [1], "variant": ["uncalibrated"], "roas_cov": [0.5],
                         "mroas_cov": [0.6], "model_code_version": ["v1"], "candidate": ['{"l_max": 12}']})
    with pytest.raises(SystemExit, match="hill_daily seed 1"):
        coverage_reference(rows, measured="2026-12-07", code="x", sources=[])
    ref = coverage_reference(rows.assign(candidate=float("nan")), measured="2026-12-07", code="x", sources=[])
    assert ref["model_code_versions"] == ["v1"]
    assert coverage_reference(rows.drop(columns=["model_code_version", "candidate"]), measured="2026-12-07",
                              code="x", sources=[])["model_code_versions"] == ["not recorded"]


def test_the_packaged_interval_coverage_is_the_benchmark_csvs_it_names():
    """The health card's figures trace to committed raw rows: recomputed from them, they are the same."""
    from bench.bench_offfamily import ROOT, coverage_reference, read_summaries

    ref = health.interval_coverage_reference()
    off = ref["coverage"]["uncalibrated"]["off_family"] if ref else {}
    assert set(off.get("structures", ())) == {"hill_daily", "weibull_lag", "notebook"}  # every off-family process
    assert all((ROOT / p).is_file() for p in ref["sources"])
    again = coverage_reference(read_summaries(ref["sources"]), measured=ref["measured"], code=ref["code"],
                               sources=ref["sources"])
    assert again == ref


# --------------------------------------------------------------------------- the sections, rendered


def _inputs(kpi_name="revenue") -> report.ReportInputs:
    weeks = pd.date_range("2025-01-06", periods=4, freq="W-MON")
    runs = pd.DataFrame([_run("uncalibrated"), _run("calibrated")])
    channels = ["tv", "search"]
    roas = pd.DataFrame([{"variant": v, "geo": g, "channel": c, "spend": 1000.0, "contribution_mean": 1500.0,
                          "contribution_hdi_low": 1000.0, "contribution_hdi_high": 2000.0, "roas_mean": 1.5,
                          "roas_hdi_low": 1.0, "roas_hdi_high": 2.0, "mroas_mean": 0.8, "mroas_hdi_low": 0.5,
                          "mroas_hdi_high": 1.1, "response_plus_10pct_mean": 80.0,
                          "response_plus_10pct_hdi_low": 50.0, "response_plus_10pct_hdi_high": 110.0,
                          "planning_horizon_weeks": 8, "current_weekly_spend": 100.0,
                          "model_version": f"mv-{v}", "market": "west"}
                         for v in ("uncalibrated", "calibrated") for g in ("g1", "g2") for c in channels])
    market = (roas.groupby(["variant", "channel"], as_index=False)
              .agg({c: "first" for c in roas.columns if c not in ("variant", "channel", "geo")}))
    contrib = pd.DataFrame([{"variant": v, "geo": "g1", "week_start": w, "component": comp, "component_type": kind,
                             "mean": val, "hdi_low": val * 0.8, "hdi_high": val * 1.2}
                            for v in ("uncalibrated", "calibrated") for w in weeks
                            for comp, kind, val in (("baseline", "baseline", 500.0), ("seasonality", "seasonality", -20.0),
                                                    ("price", "control", 30.0), ("tv", "media", 200.0),
                                                    ("search", "media", 100.0))])
    fit = pd.DataFrame([{"variant": v, "geo": "g1", "week_start": w, "actual": 810.0, "predicted_mean": 800.0,
                         "predicted_low": 700.0, "predicted_high": 900.0}
                        for v in ("uncalibrated", "calibrated") for w in weeks])
    shares = pd.DataFrame([{"variant": v, "channel": c, "spend": 2000.0, "spend_share": 0.5,
                            "effect_share_mean": e, "effect_share_hdi_low": e - 0.1, "effect_share_hdi_high": e + 0.1,
                            "carryover_share_mean": co, "carryover_share_hdi_low": co / 2,
                            "carryover_share_hdi_high": min(co * 1.5, 1), "adstock_alpha_mean": 0.5, "l_max": 8}
                           for v in ("uncalibrated", "calibrated") for c, e, co in (("tv", 0.65, 0.6),
                                                                                      ("search", 0.35, 0.1))])
    drift = pd.DataFrame([{"market": "west", "variant": "calibrated", "model_version": "mv-calibrated", "geo": "g1",
                           "channel": "tv", "previous_model_version": "mv-old", "roas_previous": 1.0,
                           "roas_current": 1.5, "roas_change": 0.5, "share_previous": 0.5, "share_current": 0.6,
                           "share_change_pp": 10.0, "flagged": True},
                          {"market": "west", "variant": "calibrated", "model_version": "mv-older", "geo": "g1",
                           "channel": "search", "previous_model_version": "mv-x", "roas_previous": 1.0,
                           "roas_current": 9.0, "roas_change": 8.0, "share_previous": 0.5, "share_current": 0.4,
                           "share_change_pp": -10.0, "flagged": True}])
    fresh = pd.DataFrame([{"source": "KPI", "newest_day": weeks[-1].date(), "age_days": 3, "fresh": True}])
    return report.ReportInputs(
        market="west", currency="EUR", kpi_name=kpi_name,
        tables={"runs": runs, "roas": roas, "roas_market": market, "contributions": contrib, "fit": fit,
                "shares": shares, "drift": drift},
        load_log=pd.DataFrame({"event": ["loaded"]}), quarantine=pd.DataFrame(), imputed=pd.DataFrame(),
        freshness=fresh, generated_at=datetime(2026, 1, 5, tzinfo=timezone.utc))


def test_waterfall_steps_go_baseline_controls_other_then_channels_and_end_at_the_total():
    contrib = _inputs().t("contributions")
    steps = report.waterfall_steps(contrib[contrib["variant"] == "calibrated"])
    assert list(steps["label"]) == ["baseline", "price", "seasonality", "tv", "search"]
    assert steps["value"].sum() == pytest.approx(4 * (500 - 20 + 30 + 200 + 100))


def test_average_beside_marginal_swaps_bounds_for_a_count_kpi():
    inp = _inputs("orders")
    money = report.average_beside_marginal(inp.t("roas_market"), "calibrated", Kpi("revenue", "EUR"))
    count = report.average_beside_marginal(inp.t("roas_market"), "calibrated", Kpi("orders", "EUR"))
    r = money.set_index("channel").loc["tv"]
    assert (r["avg"], r["avg_low"], r["avg_high"], r["marg"]) == (1.5, 1.0, 2.0, 0.8)
    c = count.set_index("channel").loc["tv"]
    assert (c["avg"], c["avg_low"], c["avg_high"]) == pytest.approx((1 / 1.5, 1 / 2.0, 1 / 1.0))
    assert c["marg_low"] == pytest.approx(1 / 1.1)


@pytest.mark.parametrize("kpi_name", ["revenue", "orders"])
def test_the_report_has_the_grown_sections_drawn_from_the_marts(kpi_name):
    inp = _inputs(kpi_name)
    rep = report.build_report(inp)
    page = rep.html
    ids = [sid for sid, _ in report.SECTIONS]
    assert ids[0] == "health" and {"shares", "drift"} <= set(ids)
    for sid, title in report.SECTIONS:
        assert f'data-section="{sid}"' in page and title.split(". ", 1)[1] in page
    text = visible_text(page)
    # the health card, computed from the marts here (the asset writes marts.model_health first)
    assert "class='status green'" in page and "Convergence" in text and "Out-of-sample error" in text
    assert "Not measured: no out-of-sample validation" in text
    # share of spend vs effect and carryover, from marts.channel_share
    assert "tv brings 65.0% of the media effect on 50.0% of the spend" in text
    assert "Carryover" in text and "highest for tv (60.0%" in text
    # drift: only the current model's comparison, in words
    assert "in 1 of 1 geo x channel cells" in text and "mv-old" in text and "mv-x" not in text
    if kpi_name == "revenue":
        assert "ROAS 1.00 to 1.50 (+50%)" in text
    else:
        assert "cost per order 1.00 EUR to 0.667 EUR" in text
        assert "ROAS 1.00 to" not in text
    # waterfall, average beside marginal, shares: images
    for alt in ("contribution waterfall", "share of spend vs share of effect", "average beside marginal"):
        assert f'alt="{alt}' in page
    assert "<script" not in page and "<link" not in page  # still one self-contained file
    assert_formatted(text)


def test_a_stored_health_card_is_drawn_as_it_is():
    inp = _inputs()
    card = health.from_inputs(inp)
    card.loc[card["check_name"] == "convergence", "status"] = "red"
    card.loc[card["check_name"] == "convergence", "sentence"] = "Stored sentence from marts.model_health."
    inp.tables["health"] = card
    rep = report.build_report(inp)
    text = visible_text(rep.html)
    assert "Stored sentence from marts.model_health." in text and "class='status red'" in rep.html
    assert "First to look at: convergence" in text
