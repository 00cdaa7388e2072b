"""ROI parameterization of the saturation (logistic or Hill): the prior is on ROI, beta is derived.

Meridian's idea (its ``media_prior_type: roi``; the default here), for pymc-marketing's logistic
``beta * tanh(lam * x / 2)``. With beta and lam both free, a channel that is not
far into saturation is identified only through their product, the slope
``beta * lam / 2``: the posterior is a curved ridge, and where two channels are
bought together the two ridges combine into a geometry that left divergences
and R-hat above 1.01 on correlated data. Here the free parameters are lam and
the channel's ROI in a typical week, relative to the geo's KPI per unit of paid spend:

    relative_roi[geo, channel] = roi / (mean weekly KPI / mean weekly paid spend of the geo)
                               = the channel's share of the KPI / its share of the spend
    beta * tanh(lam * x0 / 2)  = relative_roi * spend share * mean weekly KPI    (the typical week)

(x0: the geo x channel's mean weekly scaled units over the training weeks; the spend share is
of the geo's mean weekly paid spend, in money through the cost per unit). So ROI (KPI per unit
of money, ``saturation_roi``) = relative_roi x KPI / spend, and beta follows. roi is what the data
pin (the level of the channel's contribution at the spend it usually gets); lam only bends the
curve around that point, so the two are nearly orthogonal.

Relative, not in money, because a KPI may be revenue or orders: a ROI prior in money (Meridian's
LogNormal(0.2, 0.9)) means nothing for orders, while "a channel's share of the KPI over its share
of the spend" means the same for both (Robyn's effect share / spend share). 0.3 is a channel of
average efficiency when paid media drive about 30% of the KPI.

The prior (``priors.relative_roi``, link ``priors.relative_roi_link``) is

    relative_roi[geo, channel] = unit * link(m[channel]) * exp(geo_sigma * z[geo, channel])
    m ~ Normal(mu_loc, mu_scale),  z ~ Normal(0, 1)

with ``unit`` = ``priors.relative_roi_unit`` (0.1). The link matters where two channels are bought
together: the data then fix about ``roi_a * spend_a + roi_b * spend_b`` and not the split. With
``exp`` (a log-normal, as Meridian) that ridge is curved in the sampler's space and narrows toward
the end where one channel takes everything; the step size tuned on the wide part diverges there
(corr benchmark, west: 68 divergences, R-hat 1.037). With the default ``softplus`` the channel
level is about linear in the sampled value above 1 (hence ``unit``: typical values sit at 2-6),
the ridge is straight and of constant width, and the same fit had 0 divergences (bench/README.md).
Geos differ by a factor (``exp``, ~25% at geo_sigma 0.25), so a channel with a small ROI does not
get a large absolute geo spread.

With ``saturation: hill`` (pymc-marketing's ``HillSaturation``, ``beta * x^s / (x^s + kappa^s)``) the
same holds with the Hill curve at the typical week: kappa is sampled as a multiple of x0
(``saturation_relative_kappa``, log-normal, non-centered over geos), so
``Hill(x0) = 1 / (1 + ratio^s)`` and ``beta = response0 / Hill(x0)``; the slope keeps pymc-marketing's
variable (``saturation_slope``, a log-normal hierarchy from ``priors.hill_slope``).

``saturation_beta`` stays in the model as a Deterministic, so the curves, lift
likelihood, optimizer and reports read it as before.

The graph surgery is pymc's ``pm.do`` (replace the beta variable by the
expression); :func:`add_roi_parameterization` returns the typical week and the prior, which a
fit saves with its posterior (``calibration.Calibration.roi``), and :func:`apply_saved` repeats
the surgery on load.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

VARIABLE = "saturation_roi"  # KPI per unit of money in the typical week (a Deterministic)
RELATIVE = "saturation_relative_roi"
KAPPA_RATIO = "saturation_relative_kappa"  # Hill: the half-saturation point / the typical week's units


def typical_week(mmm, data) -> dict[str, Any]:
    """The typical week of each (*geo, channel) from the built model's data and scales.

    x0: mean weekly scaled units; share: mean weekly spend / the geo's mean weekly paid spend;
    kpi0: the geo's mean weekly KPI in scaled units; kpi_per_spend: its mean weekly KPI / paid spend
    (KPI per unit of money). Without cost per unit the units are the spend. A geo x channel with no
    spend takes the channel's median over the other geos (its beta only matters if a plan moves
    budget there)."""
    import xarray as xr

    model = mmm.model

    def arr(name):
        value = model[name].get_value() if hasattr(model[name], "get_value") else model[name].eval()
        dims = model.named_vars_to_dims.get(name) or ()
        return xr.DataArray(np.asarray(value, float), dims=dims, coords={d: list(model.coords[d]) for d in dims})

    units = arr("channel_data")
    if data.cost_per_unit is None:
        spend = units
    else:
        cpu = (data.cost_per_unit.melt(id_vars=["date", *data.dims], var_name="channel", value_name="cpu")
               .assign(date=lambda f: pd.to_datetime(f["date"]))
               .set_index(["date", *data.dims, "channel"])["cpu"].to_xarray()).reindex_like(units)
        if cpu.isnull().any():
            raise ValueError("cost per unit does not cover every week, geo and channel of the model")
        spend = units * cpu
    dims = (*data.dims, "channel")
    spend0 = spend.mean("date")
    total = spend0.sum("channel")
    kpi = arr("target_data").mean("date")
    x0 = _filled((units / arr("channel_scale")).mean("date").transpose(*dims).to_numpy(), 1.0)
    share = _filled((spend0 / total).transpose(*dims).to_numpy(), 1e-9)
    kpi0 = (kpi / arr("target_scale")).transpose(*data.dims).to_numpy()
    kpi_per_spend = (kpi / total).transpose(*data.dims).to_numpy()
    if not np.all(np.isfinite(kpi_per_spend)) or not np.all(kpi_per_spend > 0):
        finite = kpi_per_spend[np.isfinite(kpi_per_spend) & (kpi_per_spend > 0)]
        kpi_per_spend = np.where(np.isfinite(kpi_per_spend) & (kpi_per_spend > 0), kpi_per_spend,
                                 np.median(finite) if finite.size else 1.0)
    return {"x0": x0, "share": share, "kpi0": kpi0, "kpi_per_spend": kpi_per_spend, "dims": list(dims)}


def _filled(values: np.ndarray, default: float) -> np.ndarray:
    v = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    if v.ndim == 2 and np.isfinite(v).any():
        with np.errstate(all="ignore"):
            fill = np.nanmedian(np.where(np.isfinite(v), v, np.nan), axis=0) if np.isfinite(v).any() else None
        v = np.where(np.isnan(v), fill[None, :], v)
    return np.where(np.isnan(v), default, v)


def prior_spec(cfg) -> dict[str, Any]:
    """The prior of the relative ROI (and, for the Hill saturation, of kappa / x0) from a ModelConfig
    (stored with the model)."""
    p = cfg.priors
    spec = {"mu_loc": p.relative_roi.mu_loc, "mu_scale": p.relative_roi.mu_scale,
            "geo_sigma": p.relative_roi.geo_sigma, "link": p.relative_roi_link, "unit": p.relative_roi_unit,
            "geo_sigma_prior": p.geo_sigma_prior, "geo_sigma_per_channel": p.geo_sigma_per_channel,
            "saturation": cfg.saturation}
    if cfg.saturation == "hill":
        spec["kappa_ratio"] = p.hill_kappa_ratio.model_dump()
    return spec


def _apply(mmm, spec: dict[str, Any], week: dict[str, Any]) -> None:
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.dims import Deterministic
    from pymc_extras.prior import Prior
    from pytensor.xtensor import as_xtensor

    from mmm_pipeline.model.priors import geo_spread
    from pytensor.xtensor import math as pxm

    dims = tuple(week["dims"])
    geo_dims = dims[:-1]

    def const(name, d):
        return as_xtensor(pt.constant(np.asarray(week[name], float)), dims=d)

    with mmm.model:
        level = Prior("Normal", mu=spec["mu_loc"], sigma=spec["mu_scale"], dims=("channel",),
                      transform=spec["link"]).create_variable(f"{RELATIVE}_channel", xdist=True)
        relative = spec["unit"] * level
        if geo_dims:  # a geo factor around the channel's level
            sigma = geo_spread(spec["geo_sigma_prior"], spec["geo_sigma"], spec["geo_sigma_per_channel"])
            factor = Prior("Normal", mu=0.0, sigma=sigma, dims=dims, centered=False,
                           transform="exp").create_variable(f"{RELATIVE}_geo", xdist=True)
            relative = relative * factor
        relative = Deterministic(RELATIVE, relative.transpose(*dims))
    response0 = relative * const("share", dims) * const("kpi0", geo_dims)  # the typical week's, scaled KPI
    replaced = {}
    if spec.get("saturation", "logistic") == "hill":
        # kappa = x0 x ratio, so f(x0) = 1 / (1 + ratio^slope): the Hill curve at the typical week
        k = spec["kappa_ratio"]
        with mmm.model:
            if geo_dims:
                sigma = geo_spread(spec["geo_sigma_prior"], k["geo_sigma"], spec["geo_sigma_per_channel"])
                mu = Prior("Normal", mu=k["mu_loc"], sigma=k["mu_scale"], dims=("channel",))
                ratio = Prior("Normal", mu=mu, sigma=sigma, dims=dims, centered=False, transform="exp")
            else:
                ratio = Prior("Normal", mu=k["mu_loc"], sigma=k["mu_scale"], dims=dims, transform="exp")
            ratio = ratio.create_variable(KAPPA_RATIO, xdist=True).transpose(*dims)
        slope = mmm.model["saturation_slope"]
        replaced["saturation_kappa"] = (const("x0", dims) * ratio).transpose(*dims)
        beta = response0 / pxm.sigmoid(-slope * pxm.log(ratio))
    else:
        lam = mmm.model["saturation_lam"]
        beta = response0 / pxm.tanh(lam * const("x0", dims) / 2)
    replaced["saturation_beta"] = beta.transpose(*dims)
    # not prune_vars=True: that also drops pymc-marketing's leaf deterministics (the contributions in
    # original scale the optimizer reads); only the replaced variables' own free variables go
    model = pm.do(mmm.model, replaced, prune_vars=False)
    mmm.model = _without(model, [n for n in model.named_vars if any(n.startswith(f"{r}_") for r in replaced)])
    with mmm.model:
        relative = as_xtensor(mmm.model[RELATIVE], dims=dims)
        Deterministic(VARIABLE, (relative * const("kpi_per_spend", geo_dims)).transpose(*dims))


def _without(model, names: list[str]):
    """`model` without the named variables (the replaced beta's hierarchy, which nothing reads now)."""
    from pymc.model.fgraph import ModelVar, fgraph_from_model, model_from_fgraph

    fgraph, _ = fgraph_from_model(model, inlined_views=True)
    for node in [n for n in fgraph.apply_nodes
                 if isinstance(n.op, ModelVar) and any(o.name in names for o in n.outputs)]:
        if node in fgraph.apply_nodes:
            fgraph.remove_node(node)
    return model_from_fgraph(fgraph, mutate_fgraph=True)


def add_roi_parameterization(mmm, data, cfg) -> dict[str, Any]:
    """Replace the free beta of the built `mmm` by relative ROI x the typical week / its saturation;
    returns what :func:`apply_saved` needs to repeat it (the prior and the typical week, JSON-ready).

    Call right after ``build_model``, before any calibration term reads ``saturation_beta``."""
    week = typical_week(mmm, data)
    spec = prior_spec(cfg)
    _apply(mmm, spec, week)
    return {"prior": spec, **{k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in week.items()}}


def apply_saved(mmm, saved: dict[str, Any]) -> None:
    """Repeat the surgery on a model rebuilt by ``MMM.load`` (whose beta is a free variable again)."""
    _apply(mmm, saved["prior"], saved)
