"""The ROI parameterization (model.saturation_parameterization: roi, the default): the prior is on the
relative ROI of a typical week, beta is derived, and a saved model comes back with the same graph."""

from __future__ import annotations

import numpy as np
import pytest

from mmm_pipeline import model as M
from mmm_pipeline.model.lift_tests import convert_lift_tests
from test_model import CHANNELS, WEST, sample_tables


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict:
    from mmm_pipeline.sample import generate_sample

    input_dir = tmp_path_factory.mktemp("roi_sample") / "input"
    generate_sample(input_dir)
    t = sample_tables(input_dir)
    t["lift_west"], _ = convert_lift_tests(t["lift"], t["daily"], WEST, market="west")
    return t


def _cfg(tables, profile="fast", **over):
    return M.load_model_config(profile, {**tables["model"], "saturation_parameterization": "roi", **over})


def _values(model, names, point):
    outs = model.replace_rvs_by_values([model[n] for n in names])  # a function of the point, not of draws
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore")
    return [np.asarray(v) for v in fn(point)]


def _typical_week(tables, data):
    """By hand from the tables, west's fitted weeks: per geo x channel mean weekly units and money, the
    channel scale (the sample: one per market), the KPI rows and the target scale."""
    weeks = set(data.weeks)
    media = tables["media"].merge(tables["cpu"][["week_start", "geo", "channel", "cost_per_unit"]],
                                  on=["week_start", "geo", "channel"])
    media = media[media["geo"].isin(WEST) & media["week_start"].isin(weeks)]
    media = media.assign(money=media["units"] * media["cost_per_unit"])
    mean = media.groupby(["geo", "channel"])[["units", "money"]].mean()
    kpi = tables["kpi"][tables["kpi"]["geo"].isin(WEST) & tables["kpi"]["week_start"].isin(weeks)]
    return mean, media.groupby("channel")["units"].max(), kpi, kpi["kpi_value"].max()


def test_beta_is_derived_from_roi_and_the_typical_weeks_spend(tables):
    cfg = _cfg(tables)
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    mmm = M.build_mmm(data, cfg, lift_tests=tables["lift_west"])
    model = mmm.model
    free = {v.name for v in model.free_RVs}
    assert {"saturation_relative_roi_channel_raw", "saturation_relative_roi_geo_raw_offset",
            "saturation_lam_raw_offset"} <= free
    assert not any(name.startswith("saturation_beta") for name in free)
    assert "saturation_beta" in model.named_vars and "lift_window_obs" in model.named_vars
    # pymc-marketing's leaf deterministics survive the surgery (the budget optimizer reads this one)
    assert "total_media_contribution_original_scale" in model.named_vars

    # at a random point, by hand from the tables: response of the mean week = ROI x its spend in money,
    # and relative ROI = ROI / (the geo's mean weekly KPI / its mean weekly paid spend)
    point = {k: v + 0.3 * np.random.default_rng(1).standard_normal(np.shape(v))
             for k, v in model.initial_point().items()}
    rel, roi, lam, beta = _values(model, ("saturation_relative_roi", "saturation_roi", "saturation_lam",
                                          "saturation_beta"), point)
    mean, channel_scale, kpi, target_scale = _typical_week(tables, data)
    for i, geo in enumerate(WEST):
        kpi_per_spend = kpi.loc[kpi["geo"] == geo, "kpi_value"].mean() / mean.loc[geo, "money"].sum()
        for j, ch in enumerate(CHANNELS):
            x0 = mean.loc[(geo, ch), "units"] / channel_scale[ch]
            response = beta[i, j] * np.tanh(lam[i, j] * x0 / 2) * target_scale
            assert response == pytest.approx(roi[i, j] * mean.loc[(geo, ch), "money"], rel=1e-6)
            assert roi[i, j] == pytest.approx(rel[i, j] * kpi_per_spend, rel=1e-6)


def test_relative_roi_prior_is_a_channel_level_times_a_geo_factor(tables):
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    model = M.build_mmm(data, _cfg(tables)).model
    point = model.initial_point()
    point["saturation_relative_roi_channel_raw"] = np.array([-1.0, 0.5, 3.0, 6.0])
    offsets = np.random.default_rng(2).standard_normal((3, 4))
    point["saturation_relative_roi_geo_raw_offset"] = offsets
    (rel,) = _values(model, ("saturation_relative_roi",), point)
    softplus = np.log1p(np.exp(np.array([-1.0, 0.5, 3.0, 6.0])))
    np.testing.assert_allclose(rel, 0.1 * softplus[None, :] * np.exp(0.25 * offsets), rtol=1e-6)


def test_roi_is_the_default_and_beta_and_the_log_normal_link_are_options(tables):
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    default = M.build_mmm(data, M.load_model_config("fast", tables["model"]))
    assert "saturation_relative_roi_channel_raw" in {v.name for v in default.model.free_RVs}

    beta = M.build_mmm(data, M.load_model_config("fast", {**tables["model"], "saturation_parameterization": "beta"}))
    assert "saturation_roi" not in beta.model.named_vars
    assert "saturation_beta_raw_offset" in {v.name for v in beta.model.free_RVs}

    model = M.build_mmm(data, _cfg(tables, priors={"relative_roi_link": "exp"})).model
    point = model.initial_point()
    point["saturation_relative_roi_geo_raw_offset"] = np.zeros((3, 4))
    point["saturation_relative_roi_channel_raw"] = np.array([-1.0, 0.5, 3.0, 6.0])
    (rel,) = _values(model, ("saturation_relative_roi",), point)
    np.testing.assert_allclose(rel, 0.1 * np.exp([[-1.0, 0.5, 3.0, 6.0]] * 3), rtol=1e-6)


@pytest.mark.slow
def test_roi_model_fits_and_round_trips_through_save_and_load(tables, tmp_path):
    cfg = _cfg(tables, sampler={"chains": 2, "tune": 100, "draws": 100})
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg, geos=WEST,
                      lift_tests=tables["lift_west"])
    post = res.mmm.idata.posterior
    assert {"saturation_roi", "saturation_beta", "saturation_lam"} <= set(post.data_vars)
    assert set(M.parameter_summary(res.mmm)["parameter"]) >= {"saturation_beta", "saturation_lam"}

    loaded = M.load_model(M.save_model(res.mmm, tmp_path / "west.nc"))
    free = {v.name for v in loaded.model.free_RVs}
    assert "saturation_relative_roi_geo_raw_offset" in free and "saturation_beta_raw_offset" not in free
    assert "lift_window_obs" in loaded.model.named_vars
    X = res.data.X
    a = res.mmm.sample_posterior_predictive(X, extend_idata=False, random_seed=7, progressbar=False)
    b = loaded.sample_posterior_predictive(X, extend_idata=False, random_seed=7, progressbar=False)
    np.testing.assert_allclose(a["y"].to_numpy(), b["y"].to_numpy(), rtol=1e-8)


def test_the_hill_saturation_derives_kappa_and_beta_from_the_typical_week(tables):
    """`saturation: hill`: kappa = x0 x ratio and beta = response0 / Hill(x0), so the curve passes
    through the typical week's ROI exactly as the logistic does; the window lift likelihood evaluates
    the Hill curve by its own variables; the numpy Hill equals pymc-marketing's."""
    import pytensor.tensor as pt
    from pymc_marketing.mmm import HillSaturation
    from pytensor.xtensor import as_xtensor

    from mmm_pipeline.model.saturation import hill_saturation

    cfg = _cfg(tables, saturation="hill")
    data = M.prepare_model_data(tables["media"], tables["kpi"], tables["cpu"], geos=WEST)
    mmm = M.build_mmm(data, cfg, lift_tests=tables["lift_west"])
    model = mmm.model
    assert type(mmm.saturation).__name__ == "HillSaturation"
    free = {v.name for v in model.free_RVs}
    assert {"saturation_slope_raw_offset", "saturation_relative_kappa_raw_offset",
            "saturation_relative_roi_channel_raw"} <= free
    assert not any(n.startswith(("saturation_beta", "saturation_kappa", "saturation_lam")) for n in free)
    assert "lift_window_obs" in model.named_vars

    point = {k: v + 0.3 * np.random.default_rng(3).standard_normal(np.shape(v))
             for k, v in model.initial_point().items()}
    rel, roi, slope, kappa, ratio, beta = _values(model, (
        "saturation_relative_roi", "saturation_roi", "saturation_slope", "saturation_kappa",
        "saturation_relative_kappa", "saturation_beta"), point)
    mean, channel_scale, _, target_scale = _typical_week(tables, data)
    for i, geo in enumerate(WEST):
        for j, ch in enumerate(CHANNELS):
            x0 = mean.loc[(geo, ch), "units"] / channel_scale[ch]
            assert kappa[i, j] == pytest.approx(x0 * ratio[i, j], rel=1e-6)
            response = float(hill_saturation(x0, slope[i, j], kappa[i, j], beta[i, j])) * target_scale
            assert response == pytest.approx(roi[i, j] * mean.loc[(geo, ch), "money"], rel=1e-6)

    x = np.array([0.0, 0.01, 0.3, 1.0, 4.0])
    lib = HillSaturation().function(as_xtensor(pt.as_tensor(x), dims=("i",)), slope=1.7, kappa=0.4, beta=2.0)
    np.testing.assert_allclose(hill_saturation(x, 1.7, 0.4, 2.0), lib.values.eval(), rtol=1e-12)
    with pytest.raises(ValueError, match="saturation: hill needs saturation_parameterization: roi"):
        M.load_model_config("fast", {"saturation": "hill", "saturation_parameterization": "beta"})


@pytest.mark.slow
def test_a_hill_model_fits_round_trips_and_gives_curves_and_lifts(tables, tmp_path):
    from mmm_pipeline.decisions.curves import marginal_response_draws, response_draws
    from mmm_pipeline.model.lift_likelihood import implied_lift_draws

    cfg = _cfg(tables, saturation="hill", sampler={"chains": 2, "tune": 100, "draws": 100})
    res = M.fit_model(tables["media"], tables["kpi"], tables["cpu"], cfg, geos=WEST,
                      lift_tests=tables["lift_west"])
    post = res.mmm.idata.posterior
    assert {"saturation_slope", "saturation_kappa", "saturation_beta", "saturation_roi"} <= set(post.data_vars)
    assert {"saturation_slope", "saturation_kappa"} <= set(M.parameter_summary(res.mmm)["parameter"])
    loaded = M.load_model(M.save_model(res.mmm, tmp_path / "west.nc"))
    assert type(loaded.saturation).__name__ == "HillSaturation"
    assert "saturation_relative_kappa_raw_offset" in {v.name for v in loaded.model.free_RVs}
    X = res.data.X
    a = res.mmm.sample_posterior_predictive(X, extend_idata=False, random_seed=7, progressbar=False)
    b = loaded.sample_posterior_predictive(X, extend_idata=False, random_seed=7, progressbar=False)
    np.testing.assert_allclose(a["y"].to_numpy(), b["y"].to_numpy(), rtol=1e-8)
    # the curves' numpy Hill path: zero at zero spend, rising, and mROAS its central difference in money
    units = np.array([0.0, 5e4, 1e5, 2e5])
    r = response_draws(loaded, "US-CA", "social", units)
    assert r.shape == (200, 4) and (r[:, 0] == 0).all() and (np.diff(r, axis=1) > 0).all()
    m = marginal_response_draws(loaded, "US-CA", "social", 1e5 * 2.0, 2.0)
    np.testing.assert_allclose(m, (response_draws(loaded, "US-CA", "social", np.array([1e5 * (1 + 1e-4)]))[:, 0]
                                   - response_draws(loaded, "US-CA", "social", np.array([1e5 * (1 - 1e-4)]))[:, 0])
                               / (2 * 1e5 * 1e-4 * 2.0), rtol=1e-6)
    # the lift likelihood's implied lifts read the Hill variables: draws equal the fitted Deterministic
    design = res.calibration.lift_design
    np.testing.assert_allclose(implied_lift_draws(res.mmm, design),
                               post["lift_window_implied"].stack(s=("chain", "draw")).transpose("s", ...).to_numpy(),
                               rtol=1e-6)
