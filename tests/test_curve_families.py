"""A second adstock family (DelayedAdstock) through every step, and the choice of family by held-out fit
(`model.family_candidates`, asset model_family, mmm_pipeline.model.family)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mmm_pipeline import model as M
from mmm_pipeline import warehouse
from mmm_pipeline.model import family as F
from tests.conftest import materialize
from test_model import WEST
from test_roi_prior import tables  # noqa: F401  (the sample's west tables and converted lift tests)

# --------------------------------------------------------------------------- the choice rule


def _points(values, weeks=8, geos=("a", "b", "c")) -> pd.Series:
    idx = pd.MultiIndex.from_product([range(weeks), geos], names=["week_start", "geo"])
    return pd.Series(np.asarray(values, dtype=float).reshape(-1), index=idx)


def test_the_default_family_stays_unless_another_forecasts_better_beyond_noise():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.02, 0.06, 24)
    noisy = base + rng.normal(0, 0.01, 24)          # about as good: within noise
    better = base - 0.01 + rng.normal(0, 0.002, 24)  # lower at every point: far beyond 2 standard errors
    pts = {"geometric + logistic": _points(base), "delayed + logistic": _points(noisy)}
    chosen, table, reason = F.choose(pts, {k: True for k in pts}, "geometric + logistic")
    assert chosen == "geometric + logistic" and "kept" in reason
    assert table.loc["geometric + logistic", "diff_se"] == 0.0 and table.loc["delayed + logistic", "points"] == 24

    pts["delayed + hill"] = _points(better)
    chosen, table, reason = F.choose(pts, {k: True for k in pts}, "geometric + logistic")
    assert chosen == "delayed + hill" and "standard errors" in reason
    d = better - base
    assert table.loc["delayed + hill", "diff_vs_default"] == pytest.approx(d.mean())
    assert table.loc["delayed + hill", "diff_se"] == pytest.approx(d.std(ddof=1) / np.sqrt(24))

    # a refit that did not converge is no evidence: it is not chosen, however low its score
    chosen, _, _ = F.choose(pts, {"geometric + logistic": True, "delayed + logistic": True, "delayed + hill": False},
                            "geometric + logistic")
    assert chosen == "geometric + logistic"
    # the default's own refit failed: the best converged candidate; none converged: the default, said so
    chosen, _, reason = F.choose(pts, {"geometric + logistic": False, "delayed + logistic": True,
                                       "delayed + hill": False}, "geometric + logistic")
    assert chosen == "delayed + logistic" and "did not pass its gate" in reason
    chosen, _, reason = F.choose(pts, {k: False for k in pts}, "geometric + logistic")
    assert chosen == "geometric + logistic" and "no candidate's refit passed" in reason


def test_points_are_scaled_by_their_geos_mean_kpi_so_a_large_geo_does_not_decide_alone():
    forecast = pd.DataFrame({"week_start": [1, 2, 1, 2], "geo": ["big", "big", "small", "small"],
                             "actual": [1000.0, 1000.0, 10.0, 10.0], "crps": [50.0, 30.0, 0.5, 0.3]})
    p = F.relative_points(forecast)
    np.testing.assert_allclose(p.loc[(1, "big")], 0.05)
    np.testing.assert_allclose(p.loc[(2, "small")], 0.03)


def test_family_candidates_are_validated():
    with pytest.raises(ValueError, match="two or more"):
        M.load_model_config("fast", {"family_candidates": [{"adstock": "delayed"}]})
    with pytest.raises(ValueError, match="duplicates"):
        M.load_model_config("fast", {"family_candidates": [{"adstock": "delayed"}, {"adstock": "delayed"}]})
    with pytest.raises(ValueError, match="hill needs saturation_parameterization: roi"):
        M.load_model_config("fast", {"saturation_parameterization": "beta",
                                     "family_candidates": [{}, {"saturation": "hill"}]})
    with pytest.raises(ValueError, match="adstock"):
        M.load_model_config("fast", {"adstock": "weibull"})
    with pytest.raises(ValueError, match="validation.enabled: false switches off"):
        M.load_model_config("fast", {"validation": {"enabled": False},
                                     "family_candidates": [{}, {"adstock": "delayed"}]})
    cfg = M.load_model_config("fast", {"family_candidates": [{}, {"adstock": "delayed", "saturation": "hill"}]})
    chosen = M.config.with_family(cfg, cfg.family_candidates[1])
    assert (chosen.adstock, chosen.saturation) == ("delayed", "hill")
    assert M.config_hash(chosen) != M.config_hash(cfg)  # a fit of the chosen family is its own model version


# --------------------------------------------------------------------------- the delayed adstock, end to end


@pytest.mark.slow
def test_a_delayed_adstock_fits_round_trips_and_reaches_lifts_curves_carryover_and_reports(tables, tmp_path):
    """Delayed adstock with the Hill saturation: neither of the logistic's parameters exists."""
    from mmm_pipeline.decisions import curves as C
    from mmm_pipeline.model.lift_likelihood import implied_lift_draws
    from mmm_pipeline.reporting import model_report

    cfg = M.load_model_config("fast", {**tables["model"], "adstock": "delayed", "saturation": "hill",
                                       "sampler": {"chains": 2, "tune": 100, "draws": 100}})
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg, geos=WEST, lift_tests=tables["lift_west"])
    post = res.mmm.idata.posterior
    assert type(res.mmm.adstock).__name__ == "DelayedAdstock"
    assert {"adstock_alpha", "adstock_theta"} <= set(post.data_vars)
    assert "adstock_theta_raw_offset" in {v.name for v in res.mmm.model.free_RVs}  # non-centered like the rest
    assert "adstock_theta" in set(M.parameter_summary(res.mmm)["parameter"])
    assert "adstock_theta" in M.free_parameter_names(res.mmm)  # gated like every media parameter
    loaded = M.load_model(M.save_model(res.mmm, tmp_path / "west.nc"))
    assert type(loaded.adstock).__name__ == "DelayedAdstock"
    # the lift likelihood reads both adstock parameters: its draws equal the fitted Deterministic
    np.testing.assert_allclose(implied_lift_draws(res.mmm, res.calibration.lift_design),
                               post["lift_window_implied"].stack(s=("chain", "draw")).transpose("s", ...).to_numpy(),
                               rtol=1e-6)
    # the carryover share per draw comes from the posterior kernel: by hand for one geo and channel
    per_geo, _, _, shares = C.channel_roas(loaded, tables["media"][tables["media"]["geo"].isin(WEST)],
                                           tables["cpu"], with_totals=True, with_shares=True)
    a = post["adstock_alpha"].sel(geo="US-CA", channel="search").to_numpy().ravel()
    th = post["adstock_theta"].sel(geo="US-CA", channel="search").to_numpy().ravel()
    w = a[:, None] ** ((np.arange(cfg.l_max)[None, :] - th[:, None]) ** 2)
    np.testing.assert_allclose(C.carryover_share(loaded.adstock, alpha=a, theta=th), 1 - w[:, 0] / w.sum(axis=1),
                               rtol=1e-6)
    assert shares["carryover_share_mean"].between(0, 1).all() and (shares["l_max"] == cfg.l_max).all()
    assert per_geo["mroas_mean"].notna().all()
    # the calibration report and the UI's figures read each family's own parameters
    models = {"uncalibrated": ("u", loaded), "calibrated": ("c", res.mmm)}
    report, fit_table = model_report.calibration_tables(models, tables["lift_west"], "west", None)
    assert {"saturation_slope", "saturation_kappa", "saturation_beta", "adstock_alpha", "adstock_theta",
            "roas"} <= set(report["parameter"])
    assert "saturation_lam" not in set(report["parameter"]) and len(fit_table)
    figs = model_report.calibration_figures(models, report, fit_table, None)
    assert "kappa" in figs["posterior_lam_beta"].axes[0].get_xlabel()
    assert any("theta" in ax.get_title() or "theta" in ax.get_ylabel()
               for ax in model_report.model_figures(loaded, pd.DataFrame(
                   {"week_start": ["2025-01-06"], "component": ["baseline"], "mean": [1.0]}), "west")["trace"].axes)


# --------------------------------------------------------------------------- the choice in the graph


@pytest.mark.slow
def test_model_family_chooses_by_held_out_fit_and_every_fit_uses_the_choice(sample_dir, copy_input, tmp_path):
    folder = copy_input(sample_dir)
    path = folder / "pipeline.yaml"
    config = yaml.safe_load(path.read_text())
    config["model"]["family_candidates"] = [{"adstock": "geometric"}, {"adstock": "delayed"}]
    path.write_text(yaml.safe_dump(config))
    wh, art = tmp_path / "w.duckdb", tmp_path / "art"
    # a fit before any choice names the asset to run
    early = materialize(folder, wh, art, markets=["west"], select=["mmm_uncalibrated"])
    assert not early.success
    failures = [e.event_specific_data.error.message for r in early.results for e in r.all_events
                if e.event_type_value == "STEP_FAILURE"]
    assert any("materialize model_family[west] first" in m for m in failures), failures

    runs = materialize(folder, wh, art, markets=["west"],
                       select=["model_family", "model_validation", "mmm_uncalibrated"])
    assert runs.success
    with warehouse.connect(wh) as con:
        fam = con.execute("SELECT * FROM marts.model_family_latest WHERE market = 'west'").df()
        val = con.execute("SELECT DISTINCT data_version FROM marts.model_validation WHERE market = 'west'").df()
        weekly = con.execute("SELECT * FROM marts.model_validation_weekly_latest WHERE market = 'west'").df()
        artifact = con.execute("SELECT artifact_uri FROM marts.model_runs_latest WHERE market = 'west' "
                               "AND variant = 'uncalibrated'").fetchone()[0]
    assert sorted(fam["candidate"]) == ["delayed + logistic", "geometric + logistic"]
    assert fam["chosen"].sum() == 1 and fam["is_default"].sum() == 1 and (fam["points"] == 8 * 3).all()
    assert fam.loc[fam["is_default"], "candidate"].item() == "geometric + logistic"
    assert (fam.loc[fam["is_default"], "diff_se"] == 0).all() and fam["relative_crps"].gt(0).all()
    chosen = fam[fam["chosen"]].iloc[0]
    assert chosen["reason"] and fam["reason"].nunique() == 1
    # the validation of the chosen family is the choice's own refit, not a second one
    assert len(val) == 1
    assert weekly["crps"].notna().all() and (weekly["crps"] >= 0).all()
    expected = "DelayedAdstock" if chosen["adstock"] == "delayed" else "GeometricAdstock"
    assert type(M.load_model(artifact).adstock).__name__ == expected


def test_the_report_says_how_the_family_was_chosen_only_when_a_choice_is_configured():
    from mmm_pipeline.reporting.report import ReportInputs, _family_paragraph
    from tests.conftest import assert_formatted, visible_text

    fam = pd.DataFrame({"candidate": ["geometric + logistic", "delayed + logistic"], "relative_crps": [0.041, 0.032],
                        "diff_vs_default": [0.0, -0.009], "diff_se": [0.0, 0.002], "refit_passed_gates": [True, True],
                        "chosen": [False, True],
                        "reason": ["delayed + logistic chosen: held-out relative CRPS 0.0320 ..."] * 2})
    empty = pd.DataFrame()
    inp = ReportInputs(market="west", currency="USD", kpi_name="revenue", tables={"family": fam}, load_log=empty,
                       quarantine=empty, imputed=empty, freshness=empty,
                       model_settings={"family_candidates": [{}, {"adstock": "delayed"}]})
    text = visible_text(_family_paragraph(inp))
    assert "Curve family" in text and "delayed + logistic chosen" in text and "0.0320" in text
    assert_formatted(text)
    # a stored choice from an earlier configuration is not shown once the candidates are gone
    inp.model_settings = {}
    assert _family_paragraph(inp) == ""
