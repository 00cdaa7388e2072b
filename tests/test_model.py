"""The modelling core: config, data prep, build (no sampling), and slow fit / save / gate tests.

Data: the deterministic sample is generated into a temporary folder and its
CSVs are aggregated to the weekly staging shape with pandas (~1 s). Tests
marked `slow` sample with nutpie (`pytest -m slow`; `pytest -m "not slow"`
keeps the suite quick).
"""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mmm_pipeline import model as M
from mmm_pipeline.model.lift_tests import convert_lift_tests

WEST = ["US-CA", "US-TX", "US-WA"]
CHANNELS = ["retail", "search", "social", "youtube"]


CHANNEL_UNIT = {"youtube": "impressions", "search": "clicks", "social": "impressions", "retail": "spend"}


def sample_tables(input_dir: Path) -> dict:
    """Weekly media / KPI / cost-per-unit frames of the sample, aggregated with pandas.

    Mirrors staging (ISO weeks from Monday, date spine filled with zeros,
    incomplete last week flagged) for the sample's channel catalogue, so the
    model tests do not depend on the ingest code.
    """
    files = sorted((input_dir / "ad_reporting").glob("*"))
    ad = pd.concat([pd.read_parquet(f) if f.suffix == ".parquet" else pd.read_csv(f) for f in files])
    platform = ad["platform"].str.lower().str.replace(" ", "_")
    youtube = ad["campaign_name"].str.contains("youtube", case=False)
    ad["channel"] = np.select(
        [platform.eq("google_ads") & youtube, platform.eq("google_ads"),
         platform.isin(["facebook_ads", "tiktok_ads"]), platform.eq("amazon_ads")],
        ["youtube", "search", "social", "retail"], default="")
    assert (ad["channel"] != "").all()
    ad["unit"] = ad["channel"].map(CHANNEL_UNIT)
    ad["date_day"] = pd.to_datetime(ad["date_day"])
    ad["units"] = np.select([ad["unit"].eq(u) for u in ("impressions", "clicks", "spend")],
                            [ad["impressions"], ad["clicks"], ad["spend"]]).astype(float)
    last_day = ad["date_day"].max()
    ad["week_start"] = ad["date_day"] - pd.to_timedelta(ad["date_day"].dt.weekday, unit="D")
    weekly = ad.groupby(["week_start", "geo", "channel"], as_index=False)[["units", "spend"]].sum()
    grid = pd.MultiIndex.from_product([sorted(ad["week_start"].unique()), sorted(ad["geo"].unique()),
                                       sorted(CHANNEL_UNIT)], names=["week_start", "geo", "channel"])
    media = weekly.set_index(["week_start", "geo", "channel"]).reindex(grid, fill_value=0.0).reset_index()
    media["unit"] = media["channel"].map(CHANNEL_UNIT)
    media["incomplete_week"] = media["week_start"] + pd.Timedelta(days=6) > last_day
    kpi = pd.read_csv(input_dir / "kpi" / "kpi.csv", parse_dates=["date_day"])
    kpi["week_start"] = kpi["date_day"] - pd.to_timedelta(kpi["date_day"].dt.weekday, unit="D")
    kpi = kpi.groupby(["week_start", "geo"], as_index=False)["revenue"].sum().rename(
        columns={"revenue": "kpi_value"})
    kpi["kpi_name"] = "revenue"
    kpi["incomplete_week"] = kpi["week_start"] + pd.Timedelta(days=6) > last_day
    cpu = media[["week_start", "geo", "channel", "unit", "units", "spend"]].copy()
    observed = (cpu["units"] > 0) & (cpu["spend"] > 0)
    rate = cpu["spend"].where(observed) / cpu["units"].where(observed)
    fill = cpu.assign(r=rate).groupby(["geo", "channel"])["r"].transform("mean")
    cpu["cost_per_unit"] = np.where(cpu["unit"] == "spend", 1.0, rate.fillna(fill))
    daily = ad[["date_day", "geo", "channel", "unit", "clicks", "impressions", "spend"]]
    lift = pd.read_csv(input_dir / "lift_tests.csv", keep_default_na=True)
    # the sample's own model settings (geo_scaling market), as the pipeline would read them
    model = yaml.safe_load((input_dir / "pipeline.yaml").read_text()).get("model") or {}
    return {"media": media, "kpi": kpi, "cpu": cpu, "daily": daily, "lift": lift, "model": model}


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict:
    from mmm_pipeline.sample import generate_sample

    input_dir = tmp_path_factory.mktemp("model_sample") / "input"
    generate_sample(input_dir)
    t = sample_tables(input_dir)
    conv, rejected = convert_lift_tests(t["lift"], t["daily"], WEST, market="west")
    assert rejected.empty
    t["lift_west"] = conv
    return t


# ----------------------------------------------------------------------------- config


def test_profiles_and_overrides():
    full = M.load_model_config("full")
    fast = M.load_model_config("fast")
    assert (full.sampler.nuts_sampler, full.sampler.chains, full.sampler.tune, full.sampler.draws,
            full.sampler.thin) == ("nutpie", 4, 500, 2000, 2)  # 4 x 1000 kept
    assert full.sampler.target_accept == pytest.approx(0.9)
    assert (fast.sampler.chains, fast.sampler.tune, fast.sampler.draws, fast.sampler.thin) == (2, 200, 200, 1)
    assert fast.gates.max_rhat == 1.1 and fast.gates.min_ess_bulk == 20  # smoke-test gate
    assert full.l_max == 8 and full.yearly_seasonality == 10 and full.control_columns == ()
    assert full.time_varying_media is False
    assert (full.gates.max_rhat, full.gates.min_ess_bulk, full.gates.max_divergence_share) == (1.01, 400, 0)
    assert (full.gates.min_r2, full.gates.min_coverage, full.gates.max_coverage) == (0.5, 0.85, 0.99)

    cfg = M.load_model_config("full", {"sampler": {"draws": 500}, "priors": {"saturation_lam": {"mu_loc": 0.5}},
                                       "profiles": {"fast": {"sampler": {"draws": 50}}}})
    assert cfg.sampler.draws == 500 and cfg.sampler.chains == 4
    assert cfg.priors.saturation_lam.mu_loc == 0.5
    assert cfg.priors.saturation_lam.mu_scale == full.priors.saturation_lam.mu_scale
    assert M.load_model_config("fast", {"profiles": {"fast": {"sampler": {"draws": 50}}}}).sampler.draws == 50

    assert M.config_hash(full) == M.config_hash(M.load_model_config("full"))
    assert M.config_hash(full) != M.config_hash(cfg) != M.config_hash(fast)
    assert len(M.config_hash(full)) == 16


@pytest.mark.parametrize("overrides, needle", [
    ({"sampler": {"chains": 0}}, "sampler.chains"),
    ({"sampler": {"target_accept": 1.5}}, "sampler.target_accept"),
    ({"priors": {"saturation_beta": {"mu_scale": -1}}}, "priors.saturation_beta.mu_scale"),
    ({"l_max": "eight"}, "l_max"),
    ({"no_such_setting": 1}, "no_such_setting"),
    ({"profiles": {"turbo": {}}}, "turbo"),
])
def test_bad_overrides_name_the_setting(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        M.load_model_config("full", overrides)


def test_unknown_profile():
    with pytest.raises(ValueError, match="profile"):
        M.load_model_config("turbo")


def test_gate_result_on_synthetic_diagnostics():
    cfg = M.load_model_config("full")
    good = {"max_rhat": 1.004, "min_ess_bulk": 900.0, "divergences": 0, "r2": 0.95, "coverage_94": 0.95,
            "per_parameter": {}}
    assert M.gate_result(good, cfg) == (True, [], [])
    bad = {"max_rhat": 1.2, "min_ess_bulk": 12.0, "divergences": 3, "r2": 0.2, "coverage_94": 0.5,
           "per_parameter": {"saturation_lam": {"max_rhat": 1.2, "min_ess_bulk": 12.0},
                             "y_sigma": {"max_rhat": 1.0, "min_ess_bulk": 1000.0}},
           "worst_rhat": [("saturation_lam[US-CA, social]", 1.2)],
           "worst_ess_bulk": [("saturation_lam[US-CA, social]", 12.0)]}
    passed, failures, warns = M.gate_result(bad, cfg)
    assert not passed and len(failures) == 3 and len(warns) == 2
    assert "saturation_lam" in failures[0] and "y_sigma" not in failures[0]
    assert "divergent" in failures[2]


# ----------------------------------------------------------------------------- data


def test_prepare_model_data_drops_incomplete_week(tables):
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    assert data.geos == WEST and data.channels == CHANNELS and data.dims == ("geo",)
    assert len(data.weeks) == 104 and [str(w.date()) for w in data.dropped_weeks] == ["2025-12-29"]
    assert len(data.X) == len(data.y) == 104 * 3
    assert list(data.X.columns) == ["date", "geo", *CHANNELS]
    assert data.kpi_name == "revenue" and data.y.name == "revenue"
    assert list(data.cost_per_unit.columns) == ["date", "geo", *CHANNELS]
    assert (data.cost_per_unit[CHANNELS] > 0).all().all()
    assert (data.cost_per_unit["retail"] == 1.0).all()


def test_prepare_model_data_national_and_errors(tables):
    media = tables["media"][tables["media"]["geo"] == "US-CA"].assign(geo="national")
    kpi = tables["kpi"][tables["kpi"]["geo"] == "US-CA"].assign(geo="national")
    data = M.prepare_model_data(media, kpi)
    assert data.dims == () and "geo" not in data.X.columns and data.cost_per_unit is None
    with pytest.raises(M.ModelError, match="KPI missing"):
        M.prepare_model_data(tables["media"], tables["kpi"].iloc[5:], geos=WEST)
    with pytest.raises(M.ModelError, match="no media or KPI"):
        M.prepare_model_data(tables["media"], tables["kpi"], geos=["US-XX"])


# ----------------------------------------------------------------------------- build (no sampling)


def test_model_builds_with_expected_dims_coords_priors(tables):
    cfg = M.load_model_config("full", tables["model"])
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    mmm, calibration = M.build_model(data, cfg, lift_tests=tables["lift_west"])
    model = mmm.model
    assert list(model.coords["geo"]) == WEST
    assert list(model.coords["channel"]) == CHANNELS
    assert len(model.coords["date"]) == 104
    free = {v.name for v in model.free_RVs}
    for name in ("adstock_alpha", "saturation_lam"):
        # non-centered: unit-normal geo x channel offsets around a per-channel mean
        assert f"{name}_raw_offset" in free and f"{name}_raw_mu" in free
        assert name not in free and name in model.named_vars  # a transformed deterministic
        assert tuple(model.named_vars_to_dims[name]) == ("geo", "channel")
        assert tuple(model.named_vars_to_dims[f"{name}_raw_offset"]) == ("geo", "channel")
        assert tuple(model.named_vars_to_dims[f"{name}_raw_mu"]) == ("channel",)
    # the default ROI parameterization: beta is derived from ROI and lam (roi_prior), not sampled; the
    # relative ROI is a channel level (softplus) times a non-centered geo factor
    assert not any(n.startswith("saturation_beta") for n in free)
    assert {"saturation_relative_roi_channel_raw", "saturation_relative_roi_geo_raw_offset"} <= free
    for name in ("saturation_beta", "saturation_relative_roi", "saturation_roi"):
        assert tuple(model.named_vars_to_dims[name]) == ("geo", "channel")
    assert {"intercept_contribution", "gamma_fourier", "y_sigma"} <= free
    assert tuple(model.named_vars_to_dims["gamma_fourier"]) == ("geo", "fourier_mode")
    assert len(model.coords["fourier_mode"]) == 4  # yearly_seasonality 2 -> sin/cos x 2
    # priors as configured
    p = mmm.model_config["saturation_lam"]
    assert p.distribution == "Normal" and p.centered is False and p.transform == "exp"
    assert mmm.model_config["adstock_alpha"].transform == "sigmoid"
    assert calibration.roi["prior"]["link"] == "softplus"
    assert calibration.roi["prior"]["mu_loc"] == cfg.priors.relative_roi.mu_loc
    assert mmm.adstock.l_max == 8
    # lift tests: the window likelihood, one term per test -- LT-2025-01 (TX social), LT-2025-02
    # (WA search) and the national LT-2025-05 as ONE term over its 3 west geo rows
    assert "lift_window_obs" in model.named_vars and "lift_measurements" not in model.named_vars
    assert len(tables["lift_west"]) == 5
    assert list(model.coords["lift_test"]) == ["LT-2025-01", "LT-2025-02", "LT-2025-05"]
    # scales: one per channel (max over weeks and geos), one for the target
    assert mmm.scalers["_channel"].dims == ("channel",)
    assert mmm.scalers["_target"].size == 1


def test_learned_geo_sigma_option_and_national_build(tables):
    cfg = M.load_model_config("fast", {"priors": {"geo_sigma_prior": "halfnormal"}})
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    free = {v.name for v in M.build_mmm(data, cfg).model.free_RVs}
    assert {"saturation_lam_raw_sigma", "saturation_relative_roi_geo_raw_sigma", "adstock_alpha_raw_sigma"} <= free

    media = tables["media"][tables["media"]["geo"] == "US-CA"].assign(geo="national")
    kpi = tables["kpi"][tables["kpi"]["geo"] == "US-CA"].assign(geo="national")
    national = M.prepare_model_data(media, kpi)
    mmm = M.build_mmm(national, M.load_model_config("fast"))
    assert "geo" not in mmm.model.coords
    assert tuple(mmm.model.named_vars_to_dims["saturation_beta"]) == ("channel",)


def test_season_shared_by_the_markets_geos_with_a_prior_falling_with_the_mode(tables):
    """priors.fourier_pooling: market = one season per mode with non-centered geo deviations;
    fourier_decay: mode k's prior sd is fourier_sigma * k ** -decay (docs/models.md "Seasonality")."""
    cfg = M.load_model_config("fast", {"yearly_seasonality": 3,
                                       "priors": {"fourier_pooling": "market", "fourier_decay": 1.0}})
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    mmm = M.build_mmm(data, cfg)
    model = mmm.model
    free = {v.name for v in model.free_RVs}
    assert {"gamma_fourier_mu", "gamma_fourier_offset", "gamma_fourier_sigma"} <= free
    assert "gamma_fourier" not in free and tuple(model.named_vars_to_dims["gamma_fourier"]) == ("geo", "fourier_mode")
    assert tuple(model.named_vars_to_dims["gamma_fourier_mu"]) == ("fourier_mode",)
    modes = list(model.coords["fourier_mode"])
    sigma = dict(zip(modes, np.asarray(mmm.model_config["gamma_fourier"].parameters["mu"].parameters["sigma"])))
    p = cfg.priors
    for k in (1, 2, 3):
        assert sigma[f"sin_{k}"] == sigma[f"cos_{k}"] == pytest.approx(p.fourier_sigma / k)
    # the default: each geo its own season, every mode alike
    plain = M.build_mmm(data, M.load_model_config("fast", {"yearly_seasonality": 3}))
    assert "gamma_fourier" in {v.name for v in plain.model.free_RVs}
    assert plain.model_config["gamma_fourier"].parameters["sigma"] == p.fourier_sigma


# ----------------------------------------------------------------------------- slow: sampling


@pytest.fixture(scope="module")
def fitted(tables):
    # 200 draws, 1 in 2 kept: the stored posterior (and the gate) has 100 per chain
    cfg = M.load_model_config("fast", {**tables["model"], "sampler": {"tune": 150, "draws": 200, "thin": 2}})
    lines: list[str] = []
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg, geos=WEST,
                      lift_tests=tables["lift_west"], progress_callback=lines.append)
    return res, lines


@pytest.mark.slow
def test_tiny_fast_fit_end_to_end(fitted):
    res, lines = fitted
    assert res.variant == "calibrated" and len(res.lift_tests_used) == 5
    assert dict(res.mmm.idata.posterior.sizes)["draw"] == 100 and res.mmm.idata.sample_stats.sizes["draw"] == 100
    assert any("200 draws (1 in 2 kept)" in line for line in lines)
    # thinned before the deterministics are computed; the divergence gate still counts every draw
    assert dict(res.mmm.idata.posterior.sizes)["draw"] == 100 and "channel_contribution" in res.mmm.idata.posterior
    from mmm_pipeline.model.diagnostics import DIVERGENCE_ATTR
    assert json.loads(res.mmm.idata.attrs[DIVERGENCE_ATTR])[1] == 2 * 200
    assert set(res.lift_tests_used["test_id"]) == {"LT-2025-01", "LT-2025-02", "LT-2025-05"}
    assert res.fit_seconds > 0 and {"prepare_data", "build", "sample", "diagnostics"} <= set(res.stage_seconds)
    assert any(line.startswith("sampling") for line in lines) and "fit done" in lines[-1]
    d = res.diagnostics
    assert d["chains"] == 2 and d["draws"] == 100 and d["divergences"] >= 0
    assert "channel_contribution" not in d["parameters"] and "mu" not in d["parameters"]
    assert {"saturation_lam", "saturation_relative_roi_geo_raw_offset", "saturation_roi", "y_sigma"} <= set(d["parameters"])
    # 20 seeds (bench/stochastic_thresholds.py --tiny, bench/stochastic_thresholds_tiny.csv): R2 0.9660-0.9662,
    # MAPE 0.0469-0.0471, 94% coverage 0.946-0.968 (min - 3 sd 0.928): each bound is far outside that
    assert 0.8 < d["r2"] <= 1 and 0 < d["mape"] < 0.2 and 0.5 < d["coverage_94"] <= 1
    assert res.sampler_stats["mean_leapfrog_steps_per_draw"] > 0
    # cost per unit reaches the saved model (money view)
    assert "channel_spend" in res.mmm.idata.constant_data

    contrib = M.contributions_frame(res.mmm)
    assert list(contrib.columns) == ["week_start", "geo", "component", "component_type", "mean",
                                     "hdi_low", "hdi_high"]
    # the sample's model section asks for a linear trend (its baseline drifts 5%)
    assert set(contrib["component_type"]) == {"media", "baseline", "seasonality", "trend"}
    assert set(contrib.loc[contrib.component_type == "media", "component"]) == set(CHANNELS)
    assert len(contrib) == 104 * 3 * (4 + 3)
    assert (contrib["hdi_low"] <= contrib["mean"]).all() and (contrib["mean"] <= contrib["hdi_high"]).all()
    # components add up to the fitted mean in KPI units
    total = contrib.groupby(["geo", "week_start"], as_index=False)["mean"].sum()
    mu = res.mmm.idata.posterior["mu"].mean(("chain", "draw")) * res.mmm.idata.constant_data["target_scale"]
    mu = mu.to_dataframe(name="mu").reset_index()[["date", "geo", "mu"]]
    mu["week_start"] = pd.to_datetime(mu["date"]).dt.date
    both = total.merge(mu, on=["geo", "week_start"], validate="1:1")
    assert len(both) == 104 * 3
    np.testing.assert_allclose(both["mean"], both["mu"], rtol=1e-6)

    params = M.parameter_summary(res.mmm)
    assert set(params["parameter"]) == {"adstock_alpha", "saturation_lam", "saturation_beta",
                                        "saturation_beta_kpi"}
    assert len(params) == 4 * 3 * 4
    alpha = params[params.parameter == "adstock_alpha"]
    assert ((alpha["mean"] > 0) & (alpha["mean"] < 1)).all()


@pytest.mark.slow
def test_in_sample_fit_is_pymc_marketings_posterior_predictive(fitted):
    from mmm_pipeline.model.diagnostics import posterior_predictive_kpi

    res, _ = fitted
    mmm = res.mmm
    post = mmm.idata.posterior
    n = post.sizes["chain"] * post.sizes["draw"]
    draws = posterior_predictive_kpi(mmm)
    assert draws.shape == (n, *mmm.idata.constant_data["target_data"].shape)
    np.testing.assert_array_equal(draws, posterior_predictive_kpi(mmm))  # seeded
    # the predictive mean is the posterior mean of mu, up to the likelihood noise averaged over n draws
    scale = float(np.asarray(M.target_scale(mmm)).ravel()[0])
    mu = (post["mu"] * scale).mean(("chain", "draw")).transpose(*mmm.idata.constant_data["target_data"].dims)
    noise = float(post["y_sigma"].max()) * scale
    np.testing.assert_allclose(draws.mean(axis=0), mu.to_numpy(), atol=5 * noise / np.sqrt(n))
    # and it is what the diagnostics (marts.model_fit) report
    np.testing.assert_allclose(res.diagnostics["fit_table"]["predicted_mean"].to_numpy(), draws.mean(axis=0).ravel())


@pytest.mark.slow
def test_save_load_round_trip(fitted, tmp_path):
    res, _ = fitted
    path = M.save_model(res.mmm, tmp_path / "models" / "west.nc")
    assert path.exists() and not list(path.parent.glob(".*tmp"))
    loaded = M.load_model(path)
    assert list(loaded.model.coords["geo"]) == WEST
    assert "lift_window_obs" in loaded.model.named_vars  # the window-lift term is restored
    X = res.data.X
    a = res.mmm.sample_posterior_predictive(X, extend_idata=False, random_seed=7, progressbar=False)
    b = loaded.sample_posterior_predictive(X, extend_idata=False, random_seed=7, progressbar=False)
    np.testing.assert_allclose(a["y"].to_numpy(), b["y"].to_numpy(), rtol=1e-8)
    assert np.allclose(M.predict_mean(res.mmm), M.predict_mean(loaded))
    pd.testing.assert_frame_equal(M.parameter_summary(res.mmm), M.parameter_summary(loaded))
    assert "channel_spend" in loaded.idata.constant_data

    # a truncated file gives a clear error
    for n, cut in enumerate((3, 1.1)):
        broken = tmp_path / f"broken{n}.nc"
        broken.write_bytes(path.read_bytes()[: int(path.stat().st_size / cut)])
        with pytest.raises(M.ModelError, match="truncated, corrupt"):
            M.load_model(broken)
    junk = tmp_path / "junk.nc"
    junk.write_text("not a model")
    with pytest.raises(M.ModelError, match="truncated, corrupt"):
        M.load_model(junk)
    with pytest.raises(M.ModelError, match="does not exist"):
        M.load_model(tmp_path / "missing.nc")


@pytest.mark.slow
def test_starved_fit_fails_gate_and_names_parameters(tables):
    cfg = M.load_model_config("fast", {"sampler": {"chains": 1, "tune": 10, "draws": 10}})
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg, geos=WEST)
    assert res.variant == "uncalibrated"
    assert not res.gate_passed
    text = " ".join(res.gate_failures)
    assert "R-hat" in text and "ESS" in text
    assert "saturation_" in text or "adstock_alpha" in text
    assert res.diagnostics["rhat_offenders"] and res.diagnostics["ess_offenders"]


def test_time_varying_media_switches_on_by_config(tables):
    cfg = M.load_model_config("fast", {"time_varying_media": True})
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    mmm = M.build_mmm(data, cfg)
    names = set(mmm.model.named_vars)
    # pymc-marketing's HSGP multiplier on the media contributions
    assert any("media_temporal_latent_multiplier" in n for n in names), sorted(names)
    plain = M.build_mmm(data, M.load_model_config("fast"))
    assert not any("media_temporal_latent_multiplier" in n for n in plain.model.named_vars)


def test_trend_options_add_pymc_marketings_trend_or_a_time_varying_intercept(tables):
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    linear = M.build_mmm(data, M.load_model_config("fast", {"trend": "linear", "trend_changepoints": 3}))
    assert {"trend_delta", "trend_effect_contribution"} <= set(linear.model.named_vars)
    assert linear.model.coords["trend_changepoint"] == (0, 1, 2)
    # one trend per geo (a shared one would add the same KPI drift to small and large geos)
    assert set(linear.model.named_vars_to_dims["trend_effect_contribution"]) == {"date", "geo"}
    hsgp = M.build_mmm(data, M.load_model_config("fast", {"trend": "hsgp"}))
    assert "date" in hsgp.model.named_vars_to_dims["intercept_contribution"]
    plain = M.build_mmm(data, M.load_model_config("fast"))
    assert "trend_delta" not in plain.model.named_vars
    assert "date" not in plain.model.named_vars_to_dims["intercept_contribution"]
    with pytest.raises(ValueError, match="model.trend: Input should be 'none', 'linear' or 'hsgp'"):
        M.load_model_config("fast", {"trend": "quadratic"})


@pytest.mark.slow
def test_linear_trend_recovers_a_drift_added_to_the_kpi_and_survives_save_load(tables, tmp_path):
    kpi = tables["kpi"].copy()
    weeks = np.sort(kpi["week_start"].unique())
    t = kpi["week_start"].map({w: i / (len(weeks) - 1) for i, w in enumerate(weeks)})
    geo_mean = kpi.groupby("geo")["kpi_value"].transform("mean")
    kpi["kpi_value"] += 0.4 * geo_mean * t  # +40% of each geo's mean KPI over the two years
    cfg = M.load_model_config("fast", {"trend": "linear", "trend_changepoints": 2,
                                       "sampler": {"tune": 150, "draws": 200, "thin": 2}})
    res = M.fit_model(tables["media"], kpi, tables["cpu"], cfg, geos=WEST)
    contrib = M.contributions_frame(res.mmm)
    trend = contrib[contrib.component_type == "trend"]
    assert set(trend.geo) == set(WEST) and trend.week_start.nunique() == len(res.data.weeks)
    first, last = (trend[trend.week_start == w].set_index("geo")["mean"]
                   for w in (trend.week_start.min(), trend.week_start.max()))
    added = 0.4 * geo_mean.groupby(kpi["geo"]).first()
    span = (res.data.weeks[-1] - res.data.weeks[0]) / (pd.Timestamp(weeks[-1]) - pd.Timestamp(weeks[0]))
    rise = (last - first) / (added[last.index] * span)
    # the model's trend is the drift that was added (20 seeds, bench/stochastic_thresholds.py --direct: 0.92-1.13)
    assert rise.between(0.6, 1.4).all(), rise
    path = tmp_path / "trend.nc"
    M.save_model(res.mmm, path)
    again = M.contributions_frame(M.load_model(path))
    pd.testing.assert_frame_equal(again[again.component_type == "trend"].reset_index(drop=True),
                                  trend.reset_index(drop=True))
