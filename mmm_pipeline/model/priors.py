"""The pymc-marketing priors of the model: the non-centered media hierarchies and the rest.

``model_priors`` writes the hierarchies of the package docstring as a pymc-marketing
``model_config``; ``geo_spread`` is the geo level they share with the ROI parameterization
(``roi_prior``).
"""

from __future__ import annotations

import math
from typing import Any

from mmm_pipeline.model.config import HierarchicalPrior, ModelConfig


def geo_spread(geo_sigma_prior: str, geo_sigma: float, per_channel: bool):
    """The geo spread sigma of a hierarchy (link scale): fixed, or a HalfNormal / LogNormal prior."""
    from pymc_extras.prior import Prior

    sigma_dims = ("channel",) if per_channel else None
    if geo_sigma_prior == "halfnormal":
        return Prior("HalfNormal", sigma=geo_sigma, dims=sigma_dims)
    if geo_sigma_prior == "lognormal":
        return Prior("LogNormal", mu=math.log(geo_sigma), sigma=0.5, dims=sigma_dims)
    return geo_sigma


def media_prior(cfg: ModelConfig, dims: tuple[str, ...], spec: HierarchicalPrior, transform: str):
    """theta[*geo, channel] = link(mu[channel] + sigma * z), non-centered (package docstring)."""
    from pymc_extras.prior import Prior

    p = cfg.priors
    media_dims = (*dims, "channel")
    mu = Prior("Normal", mu=spec.mu_loc, sigma=spec.mu_scale, dims=("channel",))
    if not dims:  # single geo: no geo level to pool over
        return Prior("Normal", mu=spec.mu_loc, sigma=spec.mu_scale, dims=media_dims, transform=transform)
    sigma = geo_spread(p.geo_sigma_prior, spec.geo_sigma, p.geo_sigma_per_channel)
    return Prior("Normal", mu=mu, sigma=sigma, dims=media_dims, centered=False, transform=transform)


def season_prior(cfg: ModelConfig, dims: tuple[str, ...]):
    """gamma_fourier[*geo, mode]: per geo, or a market season with geo deviations; sd falling with the mode."""
    import numpy as np
    from pymc_extras.prior import Prior

    p = cfg.priors
    sigma: Any = p.fourier_sigma
    if p.fourier_decay and cfg.yearly_seasonality:
        # pymc-marketing orders the modes sin_1..sin_n, cos_1..cos_n
        import xarray as xr

        k = np.tile(np.arange(1, cfg.yearly_seasonality + 1, dtype=float), 2)
        sigma = xr.DataArray(p.fourier_sigma * k ** -p.fourier_decay, dims=("fourier_mode",))
    if p.fourier_pooling == "market" and dims:
        market = Prior("Normal", mu=0, sigma=sigma, dims=("fourier_mode",))
        return Prior("Normal", mu=market, sigma=Prior("HalfNormal", sigma=p.fourier_geo_sigma),
                     dims=(*dims, "fourier_mode"), centered=False)
    return Prior("Normal", mu=0, sigma=sigma, dims=(*dims, "fourier_mode"))


def model_priors(cfg: ModelConfig, dims: tuple[str, ...]) -> dict[str, Any]:
    """pymc-marketing model_config with the non-centered hierarchies."""
    from pymc_extras.prior import Prior

    p = cfg.priors

    def hier(spec: HierarchicalPrior, transform: str):
        return media_prior(cfg, dims, spec, transform)

    if cfg.saturation == "hill":
        # kappa's own prior is a placeholder: the ROI parameterization (roi_prior) replaces kappa by a
        # multiple of the typical week's units and beta by the typical week's response, as it does beta
        saturation = {"saturation_slope": hier(p.hill_slope, "exp"),
                      "saturation_kappa": hier(p.hill_kappa_ratio, "exp"),
                      "saturation_beta": hier(p.saturation_beta, "exp")}
    else:
        saturation = {"saturation_lam": hier(p.saturation_lam, "exp"),
                      "saturation_beta": hier(p.saturation_beta, "exp")}
    adstock = {"adstock_alpha": hier(p.adstock_alpha, "sigmoid")}
    if cfg.adstock == "delayed":
        adstock["adstock_theta"] = hier(p.adstock_theta, "exp")
    config: dict[str, Any] = {
        **adstock,
        **saturation,
        "intercept": Prior("Normal", mu=p.intercept_mu, sigma=p.intercept_sigma, dims=dims),
        "likelihood": Prior("Normal", sigma=Prior("HalfNormal", sigma=p.noise_sigma, dims=dims),
                            dims=("date", *dims)),
        "gamma_fourier": season_prior(cfg, dims),
        "gamma_control": Prior("Normal", mu=0, sigma=p.control_sigma, dims=(*dims, "control")),
    }
    if cfg.time_varying_media:
        from pymc_marketing.hsgp_kwargs import HSGPKwargs

        t = cfg.time_varying_media_config
        config["media_tvp_config"] = HSGPKwargs(m=t.m, L=None, eta_lam=t.eta_lam, ls_mu=t.ls_mu,
                                                ls_sigma=t.ls_sigma, cov_func=None)
    return config
