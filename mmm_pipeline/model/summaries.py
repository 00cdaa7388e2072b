"""Posterior summaries of a fitted MMM in KPI units: contributions, media parameters, and the helpers
the decision and report modules share (``target_scale``, ``hdi_bounds``, ``summarise``).

Intervals are ArviZ's highest-density intervals (``az.hdi``, ``HDI_PROB`` = 94%);
summaries of posterior variables are ``az.summary`` rows (mean and HDI).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import HDI_PROB, MEDIA_PARAMETERS, NATIONAL, TREND_PREFIX

SAMPLE_DIMS = ("chain", "draw")


def target_scale(mmm):
    """The fitted model's target scale (``constant_data.target_scale``): KPI units per model unit.

    The model works on the KPI divided by this max; multiply a posterior quantity
    in model units (``channel_contribution``, ``mu``, ``saturation_beta``) by it to
    read it in KPI units.
    """
    return mmm.idata.constant_data["target_scale"]


def hdi_bounds(samples, prob: float = HDI_PROB) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the narrowest interval holding `prob` of the samples along axis 0.

    ``az.hdi(samples, prob, axis=0)`` (ArviZ's "nearest" method on the sorted draws),
    split into two arrays shaped like ``samples[0]``.
    """
    import arviz as az

    h = az.hdi(np.asarray(samples), prob=prob, axis=0)
    return h[..., 0], h[..., 1]


def summarise(da, prob: float = HDI_PROB) -> pd.DataFrame:
    """Posterior mean and HDI of a DataArray (dims chain, draw, ...) per coordinate, as a long frame.

    ``az.summary(kind="stats", ci_kind="hdi")``; columns: the non-sample dims, mean, hdi_low, hdi_high.
    """
    import arviz as az

    name = da.name or "value"
    stats = az.summary(da.to_dataset(name=name), kind="stats", ci_prob=prob, ci_kind="hdi",
                       round_to="none", fmt="xarray")[name]
    lo, hi = (f"hdi{prob * 100:g}_{b}" for b in ("lb", "ub"))
    dims = [d for d in da.dims if d not in SAMPLE_DIMS]
    out = stats.sel(summary=["mean", lo, hi]).transpose(*dims, "summary")
    index = pd.MultiIndex.from_product([out.coords[d].values for d in dims], names=dims) \
        if dims else pd.Index([0])
    values = out.to_numpy().reshape(-1, 3)
    return pd.DataFrame({"mean": values[:, 0], "hdi_low": values[:, 1], "hdi_high": values[:, 2]},
                        index=index).reset_index()


def contributions_frame(mmm) -> pd.DataFrame:
    """Weekly mean and 94% HDI per geo and component, in KPI units.

    Columns: week_start, geo, component, component_type (media | baseline |
    seasonality | control | trend), mean, hdi_low, hdi_high. Media components are the
    channels; baseline is the intercept (time-varying with `trend: hsgp`); seasonality
    the yearly Fourier sum; controls one row per control column; trend the linear trend.
    """
    post = mmm.idata.posterior
    scale = target_scale(mmm)
    dates = pd.DatetimeIndex(post.coords["date"].values)
    parts: list[pd.DataFrame] = []

    def add(da, component_type: str, component: str | None = None, comp_dim: str | None = None):
        da = da * scale
        if "date" not in da.dims:
            da = da.expand_dims(date=dates)
        df = summarise(da)
        if comp_dim is not None:
            df = df.rename(columns={comp_dim: "component"})
        else:
            df["component"] = component
        df["component_type"] = component_type
        parts.append(df)

    add(post["channel_contribution"], "media", comp_dim="channel")
    if "intercept_contribution" in post:
        add(post["intercept_contribution"], "baseline", "baseline")
    if "yearly_seasonality_contribution" in post:
        add(post["yearly_seasonality_contribution"], "seasonality", "seasonality")
    if "control_contribution" in post:
        add(post["control_contribution"], "control", comp_dim="control")
    if f"{TREND_PREFIX}_effect_contribution" in post:  # model.trend: linear (one trend, x each geo's scale)
        add(post[f"{TREND_PREFIX}_effect_contribution"], "trend", "trend")
    out = pd.concat(parts, ignore_index=True)
    if "geo" not in out.columns:
        out["geo"] = NATIONAL
    out = out.rename(columns={"date": "week_start"})
    out["week_start"] = pd.to_datetime(out["week_start"]).dt.date
    out["component"] = out["component"].astype(str)
    cols = ["week_start", "geo", "component", "component_type", "mean", "hdi_low", "hdi_high"]
    return out[cols].sort_values(["geo", "component_type", "component", "week_start"]).reset_index(drop=True)


def _pick_scale(da, geo: str, channel: str | None) -> float:
    sel = {d: v for d, v in (("geo", geo), ("channel", channel)) if d in da.dims}
    return float(np.asarray(da.sel(sel)).ravel()[0])


def parameter_summary(mmm) -> pd.DataFrame:
    """Per geo x channel posterior mean and 94% HDI of adstock_alpha, saturation_lam, saturation_beta.

    In the model's parameterisation: alpha is the geometric retention rate,
    lam the logistic steepness on channel units divided by `channel_scale`
    (max over weeks and geos), beta the asymptote in max-scaled KPI units.
    Extra rows `saturation_beta_kpi` give beta * target_scale (KPI units per
    week). Columns: geo, channel, parameter, mean, hdi_low, hdi_high,
    channel_scale, target_scale.
    """
    post = mmm.idata.posterior
    cd = mmm.idata.constant_data
    scale = target_scale(mmm)
    frames = []
    for name in MEDIA_PARAMETERS:
        if name in post:
            df = summarise(post[name])
            df["parameter"] = name
            frames.append(df)
    if "saturation_beta" in post:
        df = summarise(post["saturation_beta"] * scale)
        df["parameter"] = "saturation_beta_kpi"
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    if "geo" not in out.columns:
        out["geo"] = NATIONAL
    out["channel"] = out["channel"].astype(str)
    out["geo"] = out["geo"].astype(str)
    # per market (one value per channel) or, with per-capita scaling, per geo and channel
    out["channel_scale"] = [_pick_scale(cd["channel_scale"], g, c) for g, c in zip(out["geo"], out["channel"])]
    out["target_scale"] = [_pick_scale(scale, g, None) for g in out["geo"]]
    cols = ["geo", "channel", "parameter", "mean", "hdi_low", "hdi_high", "channel_scale", "target_scale"]
    return out[cols].sort_values(["parameter", "geo", "channel"]).reset_index(drop=True)


def predict_mean(mmm) -> np.ndarray:
    """Posterior mean of mu (the expected KPI) for the training weeks, in KPI units, laid out
    like the posterior's `mu` -- a cheap fingerprint of a fitted or loaded model."""
    mu = mmm.idata.posterior["mu"].mean(("chain", "draw"))
    return np.asarray((mu * target_scale(mmm)).to_numpy())
