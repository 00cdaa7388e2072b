"""Config + data to an unfitted pymc-marketing MMM: the model object and its calibration terms.

``make_mmm`` creates the MMM (adstock,
saturation, scaling, seasonality, cost per unit); ``build_model`` builds its graph, adds the ROI
parameterization, the ROAS/CPA targets and the lift-test likelihood, and returns them as one
:class:`~mmm_pipeline.model.calibration.Calibration`. Nothing is sampled here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

import mmm_pipeline.model.roas_targets as rt
from mmm_pipeline.model.calibration import Calibration
from mmm_pipeline.model.config import TREND_PREFIX, ModelConfig
from mmm_pipeline.model.data import ModelData, lift_columns, lift_tests_for_model
from mmm_pipeline.model.lift_likelihood import add_window_lift_likelihood, window_design
from mmm_pipeline.model.priors import model_priors
from mmm_pipeline.model.roi_prior import add_roi_parameterization


def make_mmm(data: ModelData, cfg: ModelConfig, model_config: dict | None = None, scales=None):
    """An unbuilt pymc-marketing MMM for `data` (priors from `cfg` unless model_config given).

    `scales` (:class:`mmm_pipeline.model.scales.Scales`): the market's fixed scales, passed as
    pymc-marketing's FixedScaling; without them the scales derive from `data`: per geo size (each
    geo's mean KPI) with `cfg.geo_scaling = size`, else the max over weeks and geos."""
    from pymc_marketing.mmm import MMM, DelayedAdstock, GeometricAdstock, HillSaturation, LogisticSaturation
    from pymc_marketing.mmm.scaling import DataDerivedScaling, FixedScaling, Scaling

    if scales is None and cfg.geo_scaling == "size" and data.dims:
        from mmm_pipeline.model.scales import data_scales

        scales = data_scales(data, by_size=True)
    if scales is None:
        scaling = Scaling(target=DataDerivedScaling(method="max", dims=data.dims),
                          channel=DataDerivedScaling(method="max", dims=data.dims))
    else:
        # Per capita, each geo has its own value (population x the market's per-person scale), so nothing
        # is reduced over geo; otherwise one value over date and the geos: one target, one per channel.
        reduced = () if scales.geo_size and data.dims else data.dims
        scaling = Scaling(target=FixedScaling(dims=reduced, value=scales.target_value(data.geos)),
                          channel=FixedScaling(dims=reduced, value=scales.channel_value(data.geos, data.channels)))
    mmm = MMM(
        date_column="date",
        channel_columns=list(data.channels),
        target_column=data.kpi_name,
        adstock=(DelayedAdstock if cfg.adstock == "delayed" else GeometricAdstock)(l_max=cfg.l_max),
        saturation=HillSaturation() if cfg.saturation == "hill" else LogisticSaturation(),
        dims=data.dims or None,
        scaling=scaling,
        model_config=model_config if model_config is not None else model_priors(cfg, data.dims),
        control_columns=list(cfg.control_columns) or None,
        yearly_seasonality=cfg.yearly_seasonality,
        time_varying_media=cfg.time_varying_media,
        time_varying_intercept=cfg.trend == "hsgp",
        cost_per_unit=data.cost_per_unit,
    )
    if cfg.trend == "linear":
        from pymc_extras.prior import Prior
        from pymc_marketing.mmm import LinearTrend
        from pymc_marketing.mmm.additive_effect import LinearTrendEffect

        # One trend per geo: the KPI is scaled by the market's max, so a shared trend would add
        # the same absolute drift to a small geo as to a large one. The library's default prior.
        trend_dims = (*data.dims, f"{TREND_PREFIX}_changepoint")
        trend = LinearTrend(n_changepoints=cfg.trend_changepoints, prefix=TREND_PREFIX, dims=data.dims or None,
                            priors={"delta": Prior("Laplace", mu=0, b=0.25, dims=trend_dims)})
        mmm.add_mu_effect(LinearTrendEffect(trend=trend, prefix=TREND_PREFIX))
    return mmm


def build_mmm(data: ModelData, cfg: ModelConfig, **kwargs):
    """The built MMM of :func:`build_model` without its calibration state (to inspect a graph)."""
    return build_model(data, cfg, **kwargs)[0]


def build_model(data: ModelData, cfg: ModelConfig, *, lift_tests: pd.DataFrame | None = None,
                model_config: dict | None = None, roas_targets: pd.DataFrame | None = None,
                scales=None) -> tuple[Any, Calibration]:
    """make_mmm + build_model (+ the ROI parameterization, + ROAS/CPA targets through pymc-marketing's
    add_cost_per_target_calibration, + the lift-test likelihood as `cfg.calibration` says), and
    what of that MMM.save does not keep (:class:`Calibration`). Nothing is sampled.

    `lift_tests`: converted tests (`lift_tests.convert_lift_tests`); the rows this model can use are
    kept in the calibration. `roas_targets`: `roas_targets.csv` rows; the usable ones likewise."""
    mmm = make_mmm(data, cfg, model_config, scales)
    mmm.build_model(data.X, data.y)
    calibration = Calibration(lift_likelihood=cfg.calibration.distribution, lift_nu=cfg.calibration.studentt_nu)
    if cfg.saturation_parameterization == "roi":
        calibration.roi = add_roi_parameterization(mmm, data, cfg)
    if roas_targets is not None and len(roas_targets):
        usable, _ = rt.targets_for_model(roas_targets, data.channels, data.geos, bool(data.dims))
        if len(usable):
            rt.add_roas_targets(mmm, usable, rt.spend_frame(data))
            calibration.roas_targets = usable
    if lift_tests is None:
        return mmm, calibration
    cal = cfg.calibration
    lift = lift_tests_for_model(lift_tests, data, likelihood=cal.likelihood, keep_extra=True)
    if not len(lift):
        return mmm, calibration
    calibration.lift_tests = lift
    if cal.likelihood == "window":
        calibration.lift_design = window_design(lift, data, cfg.l_max, extra_spend_in_data=cal.extra_spend_in_data)
        add_window_lift_likelihood(mmm, calibration.lift_design, likelihood=cal.distribution, nu=cal.studentt_nu)
    else:  # pymc-marketing's own term, which MMM.save keeps
        mmm.add_lift_test_measurements(lift[lift_columns("steady_state", bool(data.dims))])
    return mmm, calibration
