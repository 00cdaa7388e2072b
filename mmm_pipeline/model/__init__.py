"""The geo-level MMM of one market: spec, build, fit, diagnostics, persistence and summaries.

One model is fitted per market: pymc-marketing 1.3's multidimensional ``MMM``
(``pymc_marketing.mmm.MMM``; ``pymc_marketing.mmm.multidimensional`` is a
deprecated shim that re-exports the same class) with ``dims=("geo",)`` -- or
no extra dims when the only geo is ``national`` -- on weekly delivery units
(impressions / clicks / money, one column per channel), the KPI as target,
``GeometricAdstock(l_max)`` then ``LogisticSaturation`` and yearly Fourier
seasonality. Only complete weeks are modelled.

Scaling (pymc-marketing's data-derived max scaling, stated explicitly)
----------------------------------------------------------------------
* channel: each channel's units are divided by their max over weeks *and* the
  market's geos (one scale per channel), so a geo's saturation ``lam`` means
  the same thing in every geo and matches the generator's ``unit_scale``;
* target: the KPI is divided by its max over weeks and geos (one scalar), so
  ``saturation_beta`` (the channel's asymptotic weekly contribution) is
  ``beta_kpi / target_scale`` in every geo and geos of different size share
  one population of betas.
That is ``model.geo_scaling: market``. The default, ``size``, scales each geo
by its size instead: with ``geos.csv`` populations both scales are per capita
(each geo's value is its population times the market's per-person max), without
it the geo's mean weekly KPI stands in for its population
(:mod:`mmm_pipeline.model.scales`), so pooled priors mean the same effect per
unit of size and ceilings grow with geo size; everything is reported in totals.
Parameters reported by :func:`parameter_summary` are in this parameterisation
(lam per unit of max-scaled units, beta in max-scaled KPI units) plus beta in
KPI units (``beta_kpi = beta * target_scale``).

Priors (all hierarchies non-centered)
-------------------------------------
Each media parameter theta[geo, channel] is ``link(mu[channel] + sigma *
z[geo, channel])`` with ``z ~ Normal(0, 1)`` and ``mu ~ Normal(mu_loc,
mu_scale)`` per channel: pymc-extras' ``Prior("Normal", mu=Prior("Normal",
dims="channel"), sigma=..., dims=("geo", "channel"), centered=False,
transform=...)``. The link is ``exp`` for ``saturation_lam`` (a log-normal
hierarchy) and ``sigmoid`` for ``adstock_alpha`` (logit-normal). The curve's
height is sampled as the channel's relative ROI in a typical week and
``saturation_beta`` derived from it (``roi_prior``, the default
``saturation_parameterization: roi``), or, with ``beta``, as a log-normal
hierarchy on ``saturation_beta`` itself. The sampler sees only unit-normal offsets
and the per-channel means, which removes the funnels that make the centered
Gamma / TruncatedNormal / Beta hierarchies of the pymc-marketing notebooks
diverge hundreds of times on this data shape (see bench/bench_model.py).

The geo spread ``sigma`` (on the link scale) is, by default, *fixed* at
``geo_sigma`` (``priors.geo_sigma_prior: fixed``): partial pooling of a set
strength (0.3 logit for alpha, 0.2 log for lam, 0.25 log for beta: geos of
one market differ by ~20-30 %). With 3 geos per market a learned spread is
barely identified (its posterior is its prior) and both a HalfNormal and a
LogNormal spread left a handful of divergences and R-hat ~1.01-1.02 on the
spread itself in the full profile; ``geo_sigma_prior: halfnormal`` (sigma ~
HalfNormal(geo_sigma), optionally per channel) or ``lognormal`` turn it back
on for markets with many geos. With a single (national) geo the same priors
are used without the geo level.

Sampling: nutpie with its low-rank mass-matrix adaptation (``sampler.adaptation:
low_rank``), which learns the strongly correlated (beta, lam) direction of a
channel that is not far into saturation: ~15 leapfrog steps per draw instead
of ~75 with the diagonal mass matrix, same ESS.

Everything else: ``intercept_contribution[geo] ~ Normal(mu, sigma)``,
``gamma_fourier[geo, mode] ~ Normal(0, fourier_sigma)`` (per-geo seasonality,
because seasonality scales with a geo's baseline; ``priors.fourier_pooling: market`` shares a market
season with non-centered geo deviations), ``gamma_control[geo,
control] ~ Normal(0, control_sigma)`` on controls divided by their max abs
value, likelihood ``Normal(mu, y_sigma[geo])`` with ``y_sigma ~
HalfNormal(noise_sigma)``.

Modules (the order a fit goes through them):

* ``market``: one fitting unit's workflow end to end (inputs, config built once, scales, model
  version, fit or load, mart rows), the entry point of the assets; raises ``MarketError``;
* ``config``: pydantic settings, profiles, ``load_model_config``, ``config_hash``;
* ``lift_tests``: lift-test readouts converted to model units (``convert_lift_tests``);
* ``data``: ``prepare_model_data`` (staging tables to ``ModelData``), ``lift_tests_for_model``;
* ``priors``: ``model_priors`` (the pymc-marketing model_config), ``geo_spread``;
* ``build``: ``make_mmm``, ``build_model`` (the MMM and its ``calibration.Calibration``: the ROI
  parameterization from ``roi_prior``, the terms from ``lift_likelihood`` and ``roas_targets``), ``build_mmm``;
* ``fit``: ``fit_model`` -> ``FitResult`` (``progress``: nutpie's draw-level progress);
* ``diagnostics``: ``diagnose`` (convergence, in-sample fit), ``gate_result``;
* ``ladder``: ``fit_with_ladder``, the retry ladder a fit that fails its gate climbs (``model.retry``);
* ``artifacts``: ``save_model`` / ``load_model`` (which re-applies the saved ``Calibration``);
* ``summaries``: contributions, parameter summary, and the shared ``target_scale``,
  ``hdi_bounds``, ``summarise``.

pymc / pymc-marketing are imported lazily (they take seconds to import).
"""

from mmm_pipeline.model.artifacts import load_model, save_model
from mmm_pipeline.model.build import build_mmm, build_model, make_mmm
from mmm_pipeline.model.calibration import Calibration
from mmm_pipeline.model.config import (
    HDI_PROB, MEDIA_PARAMETERS, NATIONAL, PROFILES, CalibrationConfig, GateConfig, HierarchicalPrior,
    ModelConfig, ModelError, PriorsConfig, RetryConfig, RetryStep, SamplerConfig, TimeVaryingMediaConfig,
    config_hash, load_model_config, with_control_columns,
)
from mmm_pipeline.model.data import ModelData, lift_tests_for_model, prepare_model_data
from mmm_pipeline.model.diagnostics import diagnose, free_parameter_names, fit_metrics, gate_result
from mmm_pipeline.model.fit import FitResult, fit_model
from mmm_pipeline.model.ladder import fit_with_ladder
from mmm_pipeline.model.priors import model_priors
from mmm_pipeline.model.summaries import (
    contributions_frame, hdi_bounds, parameter_summary, predict_mean, summarise, target_scale,
)

__all__ = [
    "ModelConfig", "CalibrationConfig", "PriorsConfig", "HierarchicalPrior", "SamplerConfig", "GateConfig",
    "TimeVaryingMediaConfig", "RetryConfig", "RetryStep", "fit_with_ladder", "ModelError", "PROFILES",
    "NATIONAL", "MEDIA_PARAMETERS", "HDI_PROB",
    "ModelData", "FitResult", "load_model_config", "config_hash", "with_control_columns", "prepare_model_data", "model_priors",
    "make_mmm", "build_mmm", "build_model", "Calibration", "lift_tests_for_model", "fit_model", "diagnose", "fit_metrics", "gate_result",
    "free_parameter_names", "save_model", "load_model", "contributions_frame", "parameter_summary",
    "predict_mean", "target_scale", "hdi_bounds", "summarise",
]
