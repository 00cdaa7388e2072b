"""ROI parameterization of the logistic saturation: the prior is on ROI, beta is derived.

Meridian's idea (its ``media_prior_type: roi``), for pymc-marketing's logistic
``beta * tanh(lam * x / 2)``. With beta and lam both free, a channel that is not
far into saturation is identified only through their product, the slope
``beta * lam / 2``: the posterior is a curved ridge, and where two channels are
bought together the two ridges combine into a geometry that left divergences
and R-hat above 1.01 on correlated data. Here the free parameters are lam and

    roi[geo, channel] = response of a typical week / its spend
                      = beta * tanh(lam * x0 / 2) * target_scale / spend0

(x0: the geo x channel's mean weekly scaled units over the training weeks,
spend0: its mean weekly spend in money), so

    beta = roi * spend0 / target_scale / tanh(lam * x0 / 2).

roi is what the data pin (the level of the channel's contribution at the
spend it usually gets); lam only bends the curve around that point, so the two
are nearly orthogonal. The prior is a log-normal hierarchy on ROI in money
(``priors.saturation_roi``; Meridian's default ROI prior is LogNormal(0.2, 0.9)),
the same for every channel whatever its unit, which is also a statement a
marketer can read and change. ``saturation_beta`` stays in the model as a
Deterministic, so the curves, lift likelihood, optimizer and reports read it
as before.

The graph surgery is pymc's ``pm.do`` (replace the beta variable by the
expression); a saved model keeps x0, spend0/target_scale and the prior in the
InferenceData attrs and :func:`readd_from_attrs` repeats the surgery on load.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

ATTR = "mmm_pipeline_roi_parameterization"
VARIABLE = "saturation_roi"


def typical_week(mmm, data) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(x0, spend0 / target_scale, dims) per (*geo, channel) from the built model's data and scales.

    A geo x channel with no spend in the training weeks takes the channel's median over the other
    geos (its beta then only matters if a plan moves budget there), or 1 and a tiny spend."""
    import xarray as xr

    model = mmm.model

    def arr(name):
        value = model[name].get_value() if hasattr(model[name], "get_value") else model[name].eval()
        dims = model.named_vars_to_dims.get(name) or ()
        return xr.DataArray(np.asarray(value, float), dims=dims, coords={d: list(model.coords[d]) for d in dims})

    units = arr("channel_data")
    scaled = units / arr("channel_scale")
    cpu = (data.cost_per_unit.melt(id_vars=["date", *data.dims], var_name="channel", value_name="cpu")
           .assign(date=lambda f: pd.to_datetime(f["date"]))
           .set_index(["date", *data.dims, "channel"])["cpu"].to_xarray())
    cpu = cpu.reindex_like(units)
    if cpu.isnull().any():
        raise ValueError("cost per unit does not cover every week, geo and channel of the model")
    x0 = scaled.mean("date")
    spend0 = (units * cpu).mean("date") / arr("target_scale")
    dims = (*data.dims, "channel")
    x0, spend0 = x0.transpose(*dims).to_numpy(), spend0.transpose(*dims).to_numpy()
    out = []
    for values in (x0, spend0):
        v = np.where(values > 0, values, np.nan)
        if v.ndim == 2:
            fill = np.nanmedian(v, axis=0) if np.isfinite(v).any() else np.full(v.shape[1], np.nan)
            v = np.where(np.isnan(v), fill[None, :], v)
        out.append(v)
    x0 = np.where(np.isnan(out[0]), 1.0, out[0])
    spend0 = np.where(np.isnan(out[1]), 1e-9, out[1])
    return x0, spend0, dims


def _apply(mmm, prior, x0: np.ndarray, spend0: np.ndarray, dims: tuple[str, ...]) -> None:
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.xtensor import as_xtensor
    from pytensor.xtensor import math as pxm

    with mmm.model:
        roi = prior.create_variable(VARIABLE, xdist=True)
    lam = mmm.model["saturation_lam"]
    x0_x = as_xtensor(pt.constant(x0), dims=dims)
    spend0_x = as_xtensor(pt.constant(spend0), dims=dims)
    beta = roi * spend0_x / pxm.tanh(lam * x0_x / 2)
    mmm.model = pm.do(mmm.model, {"saturation_beta": beta.transpose(*dims)}, prune_vars=True)


def add_roi_parameterization(mmm, data, prior) -> None:
    """Replace the free beta of the built `mmm` by ROI x typical spend / saturation at the typical week.

    `prior`: the pymc-extras Prior of ``saturation_roi`` (dims (*geo, channel)). Call right after
    ``build_model``, before any calibration term reads ``saturation_beta``."""
    x0, spend0, dims = typical_week(mmm, data)
    _apply(mmm, prior, x0, spend0, dims)
    mmm._mmm_pipeline_roi = {"x0": x0.tolist(), "spend0": spend0.tolist(), "dims": list(dims),
                             "prior": prior.to_dict()}


def attrs(mmm) -> dict[str, str]:
    """What :func:`readd_from_attrs` needs, for the InferenceData attrs (empty without the ROI prior)."""
    spec = getattr(mmm, "_mmm_pipeline_roi", None)
    return {ATTR: json.dumps(spec)} if spec else {}


def readd_from_attrs(mmm, attrs_: dict[str, Any]) -> None:
    """Repeat the surgery on a model rebuilt by ``MMM.load`` (whose beta is a free variable again)."""
    raw = attrs_.get(ATTR)
    if not raw:
        return
    from pymc_extras.prior import Prior

    spec = json.loads(raw)
    _apply(mmm, Prior.from_dict(spec["prior"]), np.asarray(spec["x0"], float),
           np.asarray(spec["spend0"], float), tuple(spec["dims"]))
    mmm._mmm_pipeline_roi = spec


def is_roi(mmm) -> bool:
    return getattr(mmm, "_mmm_pipeline_roi", None) is not None
