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
    weeks = set(data.weeks)
    media = tables["media"].merge(tables["cpu"][["week_start", "geo", "channel", "cost_per_unit"]],
                                  on=["week_start", "geo", "channel"])
    media = media[media["geo"].isin(WEST) & media["week_start"].isin(weeks)]
    media = media.assign(money=media["units"] * media["cost_per_unit"])
    mean = media.groupby(["geo", "channel"])[["units", "money"]].mean()
    channel_scale = media.groupby("channel")["units"].max()  # the sample: one scale per market
    kpi = tables["kpi"][tables["kpi"]["geo"].isin(WEST) & tables["kpi"]["week_start"].isin(weeks)]
    target_scale = kpi["kpi_value"].max()
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
