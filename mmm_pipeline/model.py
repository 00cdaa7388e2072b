"""Model spec, build, fit, diagnostics and persistence of the geo-level MMM.

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
Parameters reported by :func:`parameter_summary` are in this parameterisation
(lam per unit of max-scaled units, beta in max-scaled KPI units) plus beta in
KPI units (``beta_kpi = beta * target_scale``).

Priors (all hierarchies non-centered)
-------------------------------------
Each media parameter theta[geo, channel] is ``link(mu[channel] + sigma *
z[geo, channel])`` with ``z ~ Normal(0, 1)`` and ``mu ~ Normal(mu_loc,
mu_scale)`` per channel: pymc-extras' ``Prior("Normal", mu=Prior("Normal",
dims="channel"), sigma=..., dims=("geo", "channel"), centered=False,
transform=...)``. The link is ``exp`` for ``saturation_lam`` and
``saturation_beta`` (a log-normal hierarchy) and ``sigmoid`` for
``adstock_alpha`` (logit-normal). The sampler sees only unit-normal offsets
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
because seasonality scales with a geo's baseline), ``gamma_control[geo,
control] ~ Normal(0, control_sigma)`` on controls divided by their max abs
value, likelihood ``Normal(mu, y_sigma[geo])`` with ``y_sigma ~
HalfNormal(noise_sigma)``.

pymc / pymc-marketing are imported lazily (they take seconds to import).
"""

from __future__ import annotations

import contextlib
import io
import hashlib
import json
import math
import os
import threading
import time
import warnings
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ModelConfig", "CalibrationConfig", "PriorsConfig", "HierarchicalPrior", "SamplerConfig", "GateConfig", "ModelError",
    "ModelData", "FitResult", "load_model_config", "config_hash", "prepare_model_data", "model_priors",
    "make_mmm", "build_mmm", "lift_tests_for_model", "fit_model", "diagnostics", "gate_result",
    "free_parameter_names", "save_model", "load_model", "contributions_frame", "parameter_summary",
    "predict_mean",
]

NATIONAL = "national"
MEDIA_PARAMETERS = ("adstock_alpha", "saturation_lam", "saturation_beta")
HDI_PROB = 0.94
# Per-observation deterministics never enter the convergence gate.
_PER_OBSERVATION = {
    "channel_contribution", "mu", "y", "intercept_contribution_original_scale",
    "control_contribution", "fourier_contribution", "yearly_seasonality_contribution",
    "total_media_contribution_original_scale", "lift_measurements_model_estimated_lift",
    "lift_measurements_model_estimated_lift_original_scale", "lift_window_implied",
}

ProgressCallback = Callable[[str], None]


class ModelError(RuntimeError):
    """Model data, fit or file problem; the message says what and where."""


# --------------------------------------------------------------------------- config


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HierarchicalPrior(_Strict):
    """theta[geo, channel] = link(mu[channel] + sigma * z[geo, channel]), z ~ N(0, 1)."""

    mu_loc: float
    mu_scale: float = Field(gt=0)
    geo_sigma: float = Field(gt=0, description="geo spread on the link scale: its value when fixed, "
                             "else the scale of its prior")


class PriorsConfig(_Strict):
    # logit(alpha): centre -0.5 -> alpha 0.38; +-1 on the logit covers alpha 0.12..0.82 (2 sd).
    adstock_alpha: HierarchicalPrior = HierarchicalPrior(mu_loc=-0.5, mu_scale=1.0, geo_sigma=0.3)
    # log(lam) on max-scaled units: median e^1 = 2.7, 2 sd covers 0.6 .. 12.
    saturation_lam: HierarchicalPrior = HierarchicalPrior(mu_loc=1.0, mu_scale=0.75, geo_sigma=0.2)
    # log(beta) on the max-scaled KPI: median 0.15, 2 sd covers 0.02 .. 1.1 of the max week.
    saturation_beta: HierarchicalPrior = HierarchicalPrior(mu_loc=-1.9, mu_scale=1.0, geo_sigma=0.25)
    geo_sigma_per_channel: bool = False
    # How the geo spread sigma (link scale) is treated: "fixed" = sigma is `geo_sigma`
    # (partial pooling of a set strength, nothing to sample); "halfnormal" = sigma ~
    # HalfNormal(geo_sigma); "lognormal" = sigma ~ LogNormal(log(geo_sigma), 0.5).
    geo_sigma_prior: Literal["fixed", "halfnormal", "lognormal"] = "fixed"
    intercept_mu: float = 0.5
    intercept_sigma: float = Field(0.5, gt=0)
    fourier_sigma: float = Field(0.1, gt=0)
    control_sigma: float = Field(0.5, gt=0)
    noise_sigma: float = Field(0.2, gt=0)


class SamplerConfig(_Strict):
    nuts_sampler: Literal["nutpie", "pymc"] = "nutpie"
    chains: int = Field(4, ge=1, le=16)
    tune: int = Field(1000, ge=1)
    draws: int = Field(1000, ge=1)
    target_accept: float = Field(0.9, gt=0, lt=1)
    max_treedepth: int = Field(10, ge=3, le=15)
    # nutpie mass-matrix adaptation: "low_rank" also learns the few strongly
    # correlated directions (beta x lam of a weakly saturated channel).
    adaptation: Literal["diag", "low_rank", "draw_diag"] = "low_rank"
    cores: int | None = Field(None, ge=1, description="parallel chains; default min(chains, cpu count)")
    # Keep every thin-th draw after sampling: longer chains settle R-hat on the beta x lam
    # ridge (max R-hat over 8 seeds: 1.0036-1.0088 at 1,000 draws, 1.0017-1.0028 at 2,000)
    # while the stored posterior, and every step that reads it, stays the same size.
    thin: int = Field(1, ge=1, le=100)


class GateConfig(_Strict):
    max_rhat: float = Field(1.01, gt=1)
    min_ess_bulk: float = Field(400, ge=0)
    max_divergences: int = Field(0, ge=0)
    # Warnings (do not fail the gate).
    min_r2: float = 0.5
    min_coverage: float = Field(0.85, ge=0, le=1)
    max_coverage: float = Field(0.99, ge=0, le=1)


class TimeVaryingMediaConfig(_Strict):
    """HSGP over time multiplying all media contributions (pymc-marketing media_tvp_config)."""

    m: int = Field(20, ge=3, le=400)
    eta_lam: float = Field(1.0, gt=0)
    ls_mu: float = Field(5.0, gt=0)
    ls_sigma: float = Field(10.0, gt=0)


class CalibrationConfig(_Strict):
    """How lift tests enter the calibrated model (README "Lift tests in model units")."""

    # "window": mmm_pipeline.lift_likelihood, the test's implied lift on the actual spend path
    # summed over its readout (window, or window + carryover), one term per test.
    # "steady_state": pymc-marketing's add_lift_test_measurements on the weekly conversion
    # (beta * (sat(x + dx) - sat(x)), one row per geo); kept for comparison.
    likelihood: Literal["window", "steady_state"] = "window"
    distribution: Literal["normal", "studentt"] = "normal"
    studentt_nu: float = Field(5.0, gt=1)
    # The test's extra spend is in the ad reports (it was really spent): the treated path is the
    # data, the untreated one the data less the extra units. False: data without the test's units.
    extra_spend_in_data: bool = True


class ModelConfig(_Strict):
    profile: str
    sampler: SamplerConfig
    priors: PriorsConfig = PriorsConfig()
    l_max: int = Field(8, ge=1, le=52)
    yearly_seasonality: int | None = Field(2, ge=1, le=10)
    control_columns: tuple[str, ...] = ()
    time_varying_media: bool = False
    time_varying_media_config: TimeVaryingMediaConfig = TimeVaryingMediaConfig()
    gates: GateConfig = GateConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    random_seed: int = 20240101

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.gates.min_coverage > self.gates.max_coverage:
            raise ValueError("gates.min_coverage must not exceed gates.max_coverage")
        if len(set(self.control_columns)) != len(self.control_columns):
            raise ValueError("control_columns has duplicates")
        return self


PROFILES: dict[str, dict[str, Any]] = {
    "full": {"sampler": {"chains": 4, "tune": 1000, "draws": 2000, "thin": 2, "target_accept": 0.9}},
    # A smoke profile: 2 x 200 draws cannot reach a bulk ESS of 400, so its gate only
    # catches a broken fit (R-hat > 1.1, ESS < 20, any divergence); use `full` to publish.
    "fast": {"sampler": {"chains": 2, "tune": 200, "draws": 200, "target_accept": 0.9},
             "gates": {"max_rhat": 1.1, "min_ess_bulk": 20, "max_divergences": 0}},
}


def _deep_merge(base: dict, over: dict) -> dict:
    out = deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = deepcopy(value)
    return out


def load_model_config(profile: str, overrides: dict | None = None) -> ModelConfig:
    """The profile's config with `overrides` (pipeline.yaml `model:`) deep-merged in.

    `overrides` may hold any ModelConfig key (``sampler``, ``priors``, ``gates``,
    ``l_max``, ...) and an optional ``profiles: {full: {...}, fast: {...}}``
    whose entry for `profile` is merged last. Raises ValueError naming the bad
    setting.
    """
    if profile not in PROFILES:
        raise ValueError(f"model profile {profile!r} is unknown; use one of {sorted(PROFILES)}")
    overrides = dict(overrides or {})
    per_profile = overrides.pop("profiles", None) or {}
    if not isinstance(per_profile, dict):
        raise ValueError("model.profiles must be a mapping of profile name -> settings")
    unknown = set(per_profile) - set(PROFILES)
    if unknown:
        raise ValueError(f"model.profiles has unknown profile(s) {sorted(unknown)}")
    defaults = ModelConfig.model_validate({"profile": profile, "sampler": {}}).model_dump()
    data = _deep_merge(_deep_merge(defaults, PROFILES[profile]), overrides)
    data = _deep_merge(data, per_profile.get(profile) or {})
    data["profile"] = profile
    try:
        return ModelConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"model.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ValueError(f"invalid model setting(s): {problems}") from exc


def config_hash(cfg: ModelConfig) -> str:
    """Stable 16-hex hash of every setting (profile included)."""
    payload = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- data


@dataclass
class ModelData:
    """Wide, complete-week model input of one market."""

    X: pd.DataFrame            # date, [geo], channels..., controls...
    y: pd.Series               # KPI, aligned with X
    cost_per_unit: pd.DataFrame  # date, [geo], channels (money per unit, > 0)
    channels: list[str]
    geos: list[str]
    kpi_name: str
    dims: tuple[str, ...]
    weeks: list[pd.Timestamp]
    dropped_weeks: list[pd.Timestamp]
    control_scales: dict[str, float] = field(default_factory=dict)


def _to_ts(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).astype("datetime64[ns]")


def prepare_model_data(
    media_weekly: pd.DataFrame,
    kpi_weekly: pd.DataFrame,
    cost_per_unit: pd.DataFrame | None = None,
    *,
    geos: Sequence[str] | None = None,
    control_columns: Sequence[str] = (),
    controls: pd.DataFrame | None = None,
) -> ModelData:
    """Pivot staging tables to the model's wide frame, complete weeks only.

    A week is modelled when it is complete in both media and KPI (the
    `incomplete_week` flags) and every geo has a KPI value for it; the grid
    must be rectangular (every geo x week x channel), otherwise ModelError.
    """
    media = media_weekly.copy()
    kpi = kpi_weekly.copy()
    for df, name in ((media, "media_weekly"), (kpi, "kpi_weekly")):
        missing = {"week_start", "geo"} - set(df.columns)
        if missing:
            raise ModelError(f"{name} lacks column(s) {sorted(missing)}")
        df["week_start"] = _to_ts(df["week_start"])
    if geos is not None:
        geos = list(geos)
        media = media[media["geo"].isin(geos)]
        kpi = kpi[kpi["geo"].isin(geos)]
        absent = sorted(set(geos) - set(media["geo"]) | set(geos) - set(kpi["geo"]))
        if absent:
            raise ModelError(f"geo(s) {absent} have no media or KPI rows")
    if media.empty or kpi.empty:
        raise ModelError("no media or KPI rows to model")
    kpi_names = kpi["kpi_name"].dropna().unique().tolist() if "kpi_name" in kpi else []
    if len(kpi_names) > 1:
        raise ModelError(f"kpi_weekly holds several KPIs {kpi_names}; model one at a time")
    kpi_name = kpi_names[0] if kpi_names else "kpi"

    bad_weeks = set()
    if "incomplete_week" in media:
        bad_weeks |= set(media.loc[media["incomplete_week"].astype(bool), "week_start"])
    if "incomplete_week" in kpi:
        bad_weeks |= set(kpi.loc[kpi["incomplete_week"].astype(bool), "week_start"])
    all_weeks = sorted(set(media["week_start"]) | set(kpi["week_start"]))
    media = media[~media["week_start"].isin(bad_weeks)]
    kpi = kpi[~kpi["week_start"].isin(bad_weeks)]

    wide = media.pivot_table(index=["week_start", "geo"], columns="channel", values="units",
                             aggfunc="sum")
    channels = sorted(wide.columns.tolist())
    for reserved in ("date", "geo", "channel", "control", kpi_name):
        if reserved in channels:
            raise ModelError(f"channel name {reserved!r} is reserved")
    y = kpi.groupby(["week_start", "geo"])["kpi_value"].sum()
    geo_list = sorted(set(wide.index.get_level_values("geo")))
    weeks = sorted(set(wide.index.get_level_values("week_start")) & set(y.index.get_level_values("week_start")))
    if len(weeks) < 10:
        raise ModelError(f"only {len(weeks)} complete weeks with both media and KPI; need >= 10")
    grid = pd.MultiIndex.from_product([weeks, geo_list], names=["week_start", "geo"])
    missing_media = grid.difference(wide.index)
    missing_kpi = grid.difference(y.index)
    if len(missing_kpi):
        raise ModelError(f"KPI missing for {len(missing_kpi)} week x geo cells, e.g. {list(missing_kpi[:3])}")
    if len(missing_media):
        raise ModelError(f"media missing for {len(missing_media)} week x geo cells, e.g. {list(missing_media[:3])}")
    wide = wide.reindex(grid)
    if wide.isna().any().any():
        cols = wide.columns[wide.isna().any()].tolist()
        raise ModelError(f"media units missing (NaN) for channel(s) {cols}")
    if (wide < 0).any().any():
        raise ModelError("negative media units")
    y = y.reindex(grid).astype(float)
    if not np.isfinite(y.to_numpy()).all():
        raise ModelError("KPI has non-finite values")

    national = geo_list == [NATIONAL]
    dims: tuple[str, ...] = () if national else ("geo",)
    X = wide.reset_index().rename(columns={"week_start": "date"})
    X.columns.name = None
    X = X[["date", "geo", *channels]]

    control_scales: dict[str, float] = {}
    if control_columns:
        if controls is None:
            raise ModelError(f"control columns {list(control_columns)} configured but no controls given")
        c = controls.copy()
        c["week_start"] = _to_ts(c["week_start"])
        missing = set(control_columns) - set(c.columns)
        if missing:
            raise ModelError(f"controls lack column(s) {sorted(missing)}")
        keys = ["week_start", "geo"] if "geo" in c.columns else ["week_start"]
        c = c[[*keys, *control_columns]].rename(columns={"week_start": "date"})
        X = X.merge(c, on=["date", "geo"] if "geo" in keys else ["date"], how="left")
        if X[list(control_columns)].isna().any().any():
            raise ModelError("controls missing for some modelled week x geo cells")
        for col in control_columns:
            scale = float(np.abs(X[col]).max()) or 1.0
            control_scales[col] = scale
            X[col] = X[col].astype(float) / scale

    cpu_wide = None
    if cost_per_unit is not None:
        cpu = cost_per_unit.copy()
        cpu["week_start"] = _to_ts(cpu["week_start"])
        cpu = cpu[cpu["geo"].isin(geo_list)]
        cpu_wide = cpu.pivot_table(index=["week_start", "geo"], columns="channel",
                                   values="cost_per_unit", aggfunc="mean").reindex(grid)
        cpu_wide = cpu_wide.reindex(columns=channels)
        if cpu_wide.isna().any().any() or (cpu_wide <= 0).any().any():
            bad = cpu_wide.columns[(cpu_wide.isna() | (cpu_wide <= 0)).any()].tolist()
            raise ModelError(f"cost_per_unit missing or not > 0 for channel(s) {bad} in modelled weeks")
        cpu_wide = cpu_wide.reset_index().rename(columns={"week_start": "date"})
        cpu_wide.columns.name = None
        if national:
            cpu_wide = cpu_wide.drop(columns="geo")
    if national:
        X = X.drop(columns="geo")
    y = pd.Series(y.to_numpy(), name=kpi_name)
    return ModelData(
        X=X.reset_index(drop=True), y=y, cost_per_unit=cpu_wide, channels=channels, geos=geo_list,
        kpi_name=kpi_name, dims=dims, weeks=list(weeks),
        dropped_weeks=sorted(w for w in all_weeks if w in bad_weeks), control_scales=control_scales,
    )


# --------------------------------------------------------------------------- build


def model_priors(cfg: ModelConfig, dims: tuple[str, ...]) -> dict[str, Any]:
    """pymc-marketing model_config with the non-centered hierarchies."""
    from pymc_extras.prior import Prior

    p = cfg.priors
    media_dims = (*dims, "channel")
    sigma_dims = ("channel",) if p.geo_sigma_per_channel else None

    def hier(spec: HierarchicalPrior, transform: str):
        mu = Prior("Normal", mu=spec.mu_loc, sigma=spec.mu_scale, dims=("channel",))
        if not dims:  # single geo: no geo level to pool over
            return Prior("Normal", mu=spec.mu_loc, sigma=spec.mu_scale, dims=media_dims,
                         transform=transform)
        if p.geo_sigma_prior == "halfnormal":
            sigma = Prior("HalfNormal", sigma=spec.geo_sigma, dims=sigma_dims)
        elif p.geo_sigma_prior == "lognormal":
            sigma = Prior("LogNormal", mu=math.log(spec.geo_sigma), sigma=0.5, dims=sigma_dims)
        else:
            sigma = spec.geo_sigma
        return Prior("Normal", mu=mu, sigma=sigma, dims=media_dims, centered=False, transform=transform)

    config: dict[str, Any] = {
        "adstock_alpha": hier(p.adstock_alpha, "sigmoid"),
        "saturation_lam": hier(p.saturation_lam, "exp"),
        "saturation_beta": hier(p.saturation_beta, "exp"),
        "intercept": Prior("Normal", mu=p.intercept_mu, sigma=p.intercept_sigma, dims=dims),
        "likelihood": Prior("Normal", sigma=Prior("HalfNormal", sigma=p.noise_sigma, dims=dims),
                            dims=("date", *dims)),
        "gamma_fourier": Prior("Normal", mu=0, sigma=p.fourier_sigma, dims=(*dims, "fourier_mode")),
        "gamma_control": Prior("Normal", mu=0, sigma=p.control_sigma, dims=(*dims, "control")),
    }
    if cfg.time_varying_media:
        from pymc_marketing.hsgp_kwargs import HSGPKwargs

        t = cfg.time_varying_media_config
        config["media_tvp_config"] = HSGPKwargs(m=t.m, L=None, eta_lam=t.eta_lam, ls_mu=t.ls_mu,
                                                ls_sigma=t.ls_sigma, cov_func=None)
    return config


def make_mmm(data: ModelData, cfg: ModelConfig, model_config: dict | None = None):
    """An unbuilt pymc-marketing MMM for `data` (priors from `cfg` unless model_config given)."""
    from pymc_marketing.mmm import MMM, GeometricAdstock, LogisticSaturation
    from pymc_marketing.mmm.scaling import DataDerivedScaling, Scaling

    scaling = Scaling(
        target=DataDerivedScaling(method="max", dims=data.dims),
        channel=DataDerivedScaling(method="max", dims=data.dims),
    )
    return MMM(
        date_column="date",
        channel_columns=list(data.channels),
        target_column=data.kpi_name,
        adstock=GeometricAdstock(l_max=cfg.l_max),
        saturation=LogisticSaturation(),
        dims=data.dims or None,
        scaling=scaling,
        model_config=model_config if model_config is not None else model_priors(cfg, data.dims),
        control_columns=list(cfg.control_columns) or None,
        yearly_seasonality=cfg.yearly_seasonality,
        time_varying_media=cfg.time_varying_media,
        cost_per_unit=data.cost_per_unit,
    )


def build_mmm(data: ModelData, cfg: ModelConfig, *, lift_tests: pd.DataFrame | None = None,
              model_config: dict | None = None, roas_targets: pd.DataFrame | None = None):
    """make_mmm + build_model (+ lift-test likelihood, as `cfg.calibration` says, + ROAS/CPA
    targets through pymc-marketing's add_cost_per_target_calibration). Nothing is sampled."""
    mmm = make_mmm(data, cfg, model_config)
    mmm.build_model(data.X, data.y)
    if roas_targets is not None and len(roas_targets):
        from mmm_pipeline import roas_targets as rt

        usable, _ = rt.targets_for_model(roas_targets, data.channels, data.geos, bool(data.dims))
        rt.add_roas_targets(mmm, usable, rt.spend_frame(data))
    if lift_tests is None:
        return mmm
    cal = cfg.calibration
    lift = lift_tests_for_model(lift_tests, data, likelihood=cal.likelihood)
    if not len(lift):
        return mmm
    if cal.likelihood == "window":
        from mmm_pipeline.lift_likelihood import add_window_lift_likelihood, window_design

        design = window_design(lift, data, cfg.l_max, extra_spend_in_data=cal.extra_spend_in_data)
        add_window_lift_likelihood(mmm, design, likelihood=cal.distribution, nu=cal.studentt_nu)
    else:
        mmm.add_lift_test_measurements(lift)
    return mmm


def lift_tests_for_model(lift_tests: pd.DataFrame, data: ModelData, *, keep_extra: bool = False,
                         likelihood: Literal["window", "steady_state"] = "window") -> pd.DataFrame:
    """The rows of converted lift tests that this model can use.

    `likelihood="window"` (the default): the columns the window likelihood needs
    (`lift_likelihood.DESIGN_COLUMNS`: test_id, channel, geo, window dates,
    delta_spend, cost_per_unit_used, delta_y_test, sigma_test, scope), one row per test and geo.
    `"steady_state"`: pymc-marketing's shape, channel, geo, x, delta_x, delta_y,
    sigma (weekly, in the model's original units; pymc-marketing scales them); a
    national model the same without geo. `keep_extra` keeps the other columns
    (test_id, ...) of the rows used.
    """
    if likelihood == "window":
        from mmm_pipeline.lift_likelihood import DESIGN_COLUMNS

        need, nums = list(DESIGN_COLUMNS), ["delta_spend", "cost_per_unit_used", "delta_y_test", "sigma_test"]
    else:
        need, nums = ["channel", "x", "delta_x", "delta_y", "sigma"], ["x", "delta_x", "delta_y", "sigma"]
    missing = set(need) - set(lift_tests.columns)
    if missing:
        raise ModelError(f"lift tests lack column(s) {sorted(missing)} for the {likelihood} likelihood "
                         "(re-materialize lift_tests_model_units)")
    df = lift_tests[lift_tests["channel"].isin(data.channels)]
    if data.dims:
        df = df[df["geo"].isin(data.geos)]
        cols = need if likelihood == "window" else ["channel", "geo", "x", "delta_x", "delta_y", "sigma"]
    else:
        cols = [c for c in need if c != "geo"] if likelihood == "steady_state" else need
    df = (df if keep_extra else df[cols]).copy().reset_index(drop=True)
    for c in nums:
        df[c] = df[c].astype(float)
    sig = "sigma_test" if likelihood == "window" else "sigma"
    df = df[(df[sig] > 0) & np.isfinite(df[nums]).all(axis=1)]
    if likelihood == "window":
        df = df[df["cost_per_unit_used"] > 0]
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------- fit


@dataclass
class FitResult:
    mmm: Any
    data: ModelData
    config: ModelConfig
    config_hash: str
    variant: str                      # "calibrated" | "uncalibrated"
    diagnostics: dict
    gate_passed: bool
    gate_failures: list[str]
    gate_warnings: list[str]
    fit_seconds: float
    stage_seconds: dict[str, float]
    sampler_stats: dict[str, float]
    lift_tests_used: pd.DataFrame | None = None


class _Progress:
    """Throttled progress lines from nutpie's per-chain progress."""

    def __init__(self, callback: ProgressCallback | None, every_s: float = 5.0):
        self.callback = callback
        self.every_s = every_s
        self.last = 0.0
        self.lock = threading.Lock()
        self.final: list = []
        self.finished = False

    def emit(self, msg: str) -> None:
        if self.callback is not None:
            try:
                self.callback(msg)
            except Exception:  # a logging failure must not kill a fit
                pass

    def chains(self, progress) -> None:
        with self.lock:
            self.final = [
                dict(finished=p.finished_draws, total=p.total_draws, divergences=p.divergences,
                     steps=p.total_num_steps, runtime_ms=p.runtime_ms, tuning=p.tuning)
                for p in progress
            ]
            now = time.monotonic()
            done = sum(c["finished"] for c in self.final)
            total = sum(c["total"] for c in self.final) or 1
            finished = done >= total
            if (now - self.last < self.every_s and not finished) or (finished and self.finished):
                return
            self.last, self.finished = now, finished
            tuning = sum(1 for c in self.final if c["tuning"])
            div = sum(c["divergences"] for c in self.final)
        self.emit(f"sampling: {done}/{total} draws incl. warmup ({100 * done / total:.0f}%), "
                  f"{tuning} chain(s) tuning, {div} divergences so far")


_HOOK_LOCK = threading.Lock()
_HOOK_LOCAL = threading.local()


def _install_nutpie_progress_hook() -> None:
    """Make pymc's nutpie progress manager also feed the calling fit's _Progress.

    pymc passes its own `progress_callback` to nutpie, so ours cannot go through
    `pm.sample`; instead pymc's manager class is subclassed once (idempotent). The
    manager is created in the thread that calls `pm.sample` and picks up that
    thread's _Progress, so concurrent fits in threads do not mix their lines.
    """
    import pymc.sampling.mcmc as mcmc

    with _HOOK_LOCK:
        base = mcmc.NutpieProgressBarManager
        if getattr(base, "_mmm_pipeline_hook", False):
            return

        class _Manager(base):  # type: ignore[misc, valid-type]
            _mmm_pipeline_hook = True

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self._mmm_progress = getattr(_HOOK_LOCAL, "progress", None)

            def update(self, chain_progress):
                if self._mmm_progress is not None:
                    self._mmm_progress.chains(chain_progress)
                return super().update(chain_progress)

        mcmc.NutpieProgressBarManager = _Manager


@contextlib.contextmanager
def _nutpie_progress_hook(progress: _Progress):
    try:
        _install_nutpie_progress_hook()
    except Exception:  # pymc internals moved: fits still run, without draw-level progress
        yield
        return
    previous = getattr(_HOOK_LOCAL, "progress", None)
    _HOOK_LOCAL.progress = progress
    try:
        yield
    finally:
        _HOOK_LOCAL.progress = previous


def _nuts_kwargs(s: SamplerConfig) -> dict:
    nuts: dict[str, Any] = {"target_accept": s.target_accept, "max_treedepth": s.max_treedepth}
    if s.nuts_sampler == "nutpie" and s.adaptation != "diag":
        nuts["adaptation"] = s.adaptation
    return {"nuts": nuts}


def fit_model(
    media_weekly: pd.DataFrame,
    kpi_weekly: pd.DataFrame,
    cost_per_unit: pd.DataFrame | None,
    cfg: ModelConfig,
    *,
    lift_tests: pd.DataFrame | None = None,
    progress_callback: ProgressCallback | None = None,
    geos: Sequence[str] | None = None,
    controls: pd.DataFrame | None = None,
    model_config: dict | None = None,
    roas_targets: pd.DataFrame | None = None,
) -> FitResult:
    """Fit one market's MMM (calibrated when `lift_tests` is given) and diagnose it.

    `geos` restricts the staging frames to a market's geos (default: all).
    `lift_tests` is :func:`mmm_pipeline.lift_tests.convert_lift_tests` output
    (rows of other geos / channels are ignored). `model_config` replaces the
    priors built from `cfg` (used by the benchmark). Raises ModelError for bad
    input; a fit that does not converge is *returned* with gate_passed False.
    """
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    progress = _Progress(progress_callback)

    def stage(name: str, start: float) -> float:
        now = time.perf_counter()
        stages[name] = round(now - start, 3)
        return now

    t = time.perf_counter()
    progress.emit("preparing model data")
    data = prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos,
                              control_columns=cfg.control_columns, controls=controls)
    progress.emit(f"model data: {len(data.weeks)} complete weeks x {len(data.geos)} geo(s) "
                  f"x {len(data.channels)} channels; dropped weeks {[str(w.date()) for w in data.dropped_weeks]}")
    t = stage("prepare_data", t)

    progress.emit("importing pymc-marketing")
    import pymc_marketing.mmm  # noqa: F401  (import time is its own stage)

    t = stage("import", t)
    cal = cfg.calibration.likelihood
    lift = lift_tests_for_model(lift_tests, data, likelihood=cal) if lift_tests is not None else None
    n_targets = 0
    if roas_targets is not None and len(roas_targets):
        from mmm_pipeline.roas_targets import targets_for_model

        n_targets = len(targets_for_model(roas_targets, data.channels, data.geos, bool(data.dims))[0])
    variant = "calibrated" if (lift is not None and len(lift)) or n_targets else "uncalibrated"
    if lift_tests is not None and (lift is None or not len(lift)):
        progress.emit("no lift test applies to this market" + ("" if n_targets else ": fitting uncalibrated"))
    mmm = build_mmm(data, cfg, lift_tests=lift, model_config=model_config,
                    roas_targets=roas_targets if n_targets else None)
    if n_targets:
        progress.emit(f"added {n_targets} ROAS/CPA target term(s) (add_cost_per_target_calibration)")
    if lift is not None and len(lift):
        n_terms = lift["test_id"].nunique() if cal == "window" else len(lift)
        progress.emit(f"added {n_terms} lift test likelihood term(s) ({cal}) from {len(lift)} row(s)")
    t = stage("build", t)

    s = cfg.sampler
    cores = s.cores or max(1, min(s.chains, os.cpu_count() or 1))
    progress.emit(f"sampling with {s.nuts_sampler}: {s.chains} chains x {s.tune} tune + {s.draws} draws"
                  f"{f' (1 in {s.thin} kept)' if s.thin > 1 else ''}, {cores} in parallel (compiling first)")
    hook = _nutpie_progress_hook(progress) if s.nuts_sampler == "nutpie" else contextlib.nullcontext()
    # pymc-marketing recomputes deterministics with pymc's default rich progress
    # bar ("Computing ...") and no way to turn it off: keep it out of the run log.
    with hook, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="pymc")
        mmm.fit(
            data.X, data.y,
            progressbar=False,
            random_seed=cfg.random_seed,
            nuts_sampler=s.nuts_sampler,
            chains=s.chains,
            tune=s.tune,
            draws=s.draws,
            cores=cores,
            **_nuts_kwargs(s),
        )
    t = stage("sample", t)
    from mmm_pipeline import roas_targets as rt
    from mmm_pipeline.lift_likelihood import lift_attrs

    # so load_model re-adds the window-lift and ROAS-target terms
    mmm.idata.attrs.update({**lift_attrs(mmm), **rt.attrs(mmm)})
    sampling_time = float(mmm.idata.posterior.attrs.get("sampling_time", stages["sample"]))
    if s.thin > 1:
        # The gate then judges exactly the posterior that is saved and used downstream.
        mmm.idata = mmm.idata.isel(draw=slice(None, None, s.thin))

    diag = diagnostics(mmm, max_rhat=cfg.gates.max_rhat, min_ess_bulk=cfg.gates.min_ess_bulk)
    passed, failures, warns = gate_result(diag, cfg)
    t = stage("diagnostics", t)
    total = time.perf_counter() - t0

    steps = int(sum(c["steps"] for c in progress.final)) if progress.final else None
    runtime_ms = float(sum(c["runtime_ms"] for c in progress.final)) if progress.final else None
    n_steps = mmm.idata.sample_stats["n_steps"] if "n_steps" in mmm.idata.sample_stats else None
    sampler_stats = {
        "sampling_seconds": round(sampling_time, 3),
        "mean_leapfrog_steps_per_draw": float(n_steps.mean()) if n_steps is not None else None,
        "total_leapfrog_steps": steps,
        "us_per_gradient": (1000.0 * runtime_ms / steps) if steps else None,
        "chains": s.chains, "draws": s.draws, "tune": s.tune, "cores": cores,
    }
    progress.emit(
        f"fit done in {total:.1f}s ({variant}): max R-hat {diag['max_rhat']:.4f}, "
        f"min bulk ESS {diag['min_ess_bulk']:.0f}, {diag['divergences']} divergences, "
        f"R2 {diag['r2']:.3f}, 94% coverage {diag['coverage_94']:.3f}; gate "
        f"{'passed' if passed else 'FAILED: ' + '; '.join(failures)}"
    )
    return FitResult(
        mmm=mmm, data=data, config=cfg, config_hash=config_hash(cfg), variant=variant,
        diagnostics=diag, gate_passed=passed, gate_failures=failures, gate_warnings=warns,
        fit_seconds=round(total, 3), stage_seconds=stages, sampler_stats=sampler_stats,
        lift_tests_used=(lift_tests_for_model(lift_tests, data, keep_extra=True, likelihood=cal)
                         if variant == "calibrated" else None),
    )


# --------------------------------------------------------------------------- diagnostics


def _ds(node):
    """A DataTree node as an xarray Dataset (Datasets pass through)."""
    return node.to_dataset() if hasattr(node, "to_dataset") else node


def free_parameter_names(mmm) -> list[str]:
    """Sampled variables plus the named per-geo media parameters present in the posterior."""
    post = mmm.idata.posterior
    names: list[str] = []
    model = getattr(mmm, "model", None)
    if model is not None:
        names = [v.name for v in model.free_RVs]
    else:  # pragma: no cover - models are rebuilt on load
        names = [n for n in post.data_vars if n.endswith(("_offset", "_mu", "_sigma"))]
    for extra in ("adstock_alpha", "saturation_lam", "saturation_beta", "intercept_contribution"):
        if extra in post.data_vars and extra not in names:
            names.append(extra)
    return [n for n in names if n in post.data_vars and n not in _PER_OBSERVATION]


def _element_label(name: str, da, idx: tuple) -> str:
    dims = [d for d in da.dims if d not in ("chain", "draw")]
    if not dims:
        return name
    parts = [str(da.coords[d].values[i]) if d in da.coords else str(i) for d, i in zip(dims, idx)]
    return f"{name}[{', '.join(parts)}]"


def _ppc_y(mmm, dims: Sequence[str], n_max: int = 4000, seed: int = 0) -> np.ndarray:
    """In-sample posterior predictive draws of y in KPI units: (samples, date, *dims).

    Drawn from the model's Normal likelihood, y ~ Normal(mu, y_sigma), for every
    posterior draw (mu and y_sigma are in the posterior), then times the target
    scale. This is exactly what pm.sample_posterior_predictive would draw on the
    training data, without compiling a function (and independent of any
    posterior_predictive group a caller may have added for other data).
    """
    idata = mmm.idata
    post = idata.posterior
    mu = post["mu"]
    rng = np.random.default_rng(seed)
    yrep = mu + post["y_sigma"].broadcast_like(mu) * rng.standard_normal(mu.shape)
    yrep = yrep * idata.constant_data["target_scale"]
    yrep = yrep.stack(sample=("chain", "draw")).transpose("sample", *dims)
    arr = yrep.to_numpy()
    if arr.shape[0] > n_max:
        arr = arr[rng.choice(arr.shape[0], n_max, replace=False)]
    return arr


def diagnostics(mmm, *, max_rhat: float = 1.01, min_ess_bulk: float = 400) -> dict:
    """Convergence over the free parameters and in-sample fit in KPI units.

    Free parameters: the model's sampled variables (offsets, per-channel means,
    intercepts, Fourier coefficients, noise, any learned geo spread) plus the
    named per-geo media parameters adstock_alpha, saturation_lam and
    saturation_beta; per-observation deterministics (channel_contribution, mu,
    ...) are left out. Keys: max_rhat, min_ess_bulk, min_ess_tail, divergences
    (post-warmup), chains, draws, parameters, per_parameter {name: {max_rhat,
    min_ess_bulk, min_ess_tail}}, rhat_offenders / ess_offenders (elements
    beyond `max_rhat` / `min_ess_bulk`, e.g. "saturation_lam[US-CA, social]"),
    worst_rhat, worst_ess_bulk, and the fit: r2, mape, coverage_94 (share of
    observed weeks inside the 94% posterior predictive interval), n_obs.
    fit_table: per week (and geo) the actual KPI and the posterior predictive mean and
    94% interval (read by the report: marts.model_fit).
    """
    import arviz as az

    idata = mmm.idata
    names = free_parameter_names(mmm)
    post = _ds(idata.posterior)[names]
    rhat = az.rhat(post)
    ess = az.ess(post, method="bulk")
    ess_tail = az.ess(post, method="tail")
    worst_rhat, worst_ess = [], []
    rhat_limit, ess_limit = max_rhat, min_ess_bulk
    max_rhat, min_ess, min_ess_tail = 1.0, float("inf"), float("inf")
    per_param: dict[str, dict] = {}
    for n in names:
        r = np.asarray(rhat[n].to_numpy(), dtype=float)
        e = np.asarray(ess[n].to_numpy(), dtype=float)
        et = np.asarray(ess_tail[n].to_numpy(), dtype=float)
        r = np.where(np.isfinite(r), r, np.inf)  # NaN R-hat (stuck chain) counts as failed
        e = np.where(np.isfinite(e), e, 0.0)
        per_param[n] = {"max_rhat": float(r.max()), "min_ess_bulk": float(e.min()),
                        "min_ess_tail": float(np.nanmin(et)) if et.size else float("nan")}
        max_rhat = max(max_rhat, float(r.max()))
        min_ess = min(min_ess, float(e.min()))
        if et.size:
            min_ess_tail = min(min_ess_tail, float(np.nanmin(et)))
        da = rhat[n]
        for idx in np.ndindex(r.shape):
            label = _element_label(n, da, idx) if r.shape else n
            worst_rhat.append((float(r[idx]) if r.shape else float(r), label))
            worst_ess.append((float(e[idx]) if e.shape else float(e), label))
    worst_rhat.sort(reverse=True)
    worst_ess.sort()

    stats = idata.sample_stats
    div = int(np.asarray(stats["diverging"]).sum()) if "diverging" in stats else 0
    n_chains = int(post.sizes["chain"])
    n_draws = int(post.sizes["draw"])

    # In-sample fit in KPI units.
    target = idata.constant_data["target_data"]
    y_obs = np.asarray(target.to_numpy(), dtype=float)
    yrep = _ppc_y(mmm, target.dims)
    y_mean = yrep.mean(axis=0)
    lo, hi = np.quantile(yrep, [0.03, 0.97], axis=0)
    resid = y_obs - y_mean
    ss_res = float((resid ** 2).sum())
    ss_tot = float(((y_obs - y_obs.mean()) ** 2).sum())
    r2 = 1 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    nz = np.abs(y_obs) > 0
    mape = float(np.mean(np.abs(resid[nz] / y_obs[nz]))) if nz.any() else float("nan")
    coverage = float(np.mean((y_obs >= lo) & (y_obs <= hi)))
    # Actual vs predicted per week (and geo), kept so reports read it instead of resampling.
    fit_table = pd.DataFrame({
        **{d: np.broadcast_to(np.asarray(target.coords[d].values).reshape(
            [-1 if j == i else 1 for j in range(len(target.dims))]), y_obs.shape).ravel()
           for i, d in enumerate(target.dims)},
        "actual": y_obs.ravel(), "predicted_mean": y_mean.ravel(),
        "predicted_low": lo.ravel(), "predicted_high": hi.ravel()})
    fit_table = fit_table.rename(columns={"date": "week_start"})
    if "geo" not in fit_table:
        fit_table["geo"] = NATIONAL
    fit_table["week_start"] = pd.to_datetime(fit_table["week_start"]).dt.date
    fit_table["geo"] = fit_table["geo"].astype(str)

    return {
        "max_rhat": float(max_rhat),
        "min_ess_bulk": float(min_ess) if np.isfinite(min_ess) else 0.0,
        "min_ess_tail": float(min_ess_tail) if np.isfinite(min_ess_tail) else 0.0,
        "divergences": div,
        "chains": n_chains,
        "draws": n_draws,
        "n_parameters": len(names),
        "parameters": names,
        "rhat_offenders": [lbl for v, lbl in worst_rhat if not v <= rhat_limit][:25],
        "ess_offenders": [lbl for v, lbl in worst_ess if v < ess_limit][:25],
        "worst_rhat": [(lbl, round(v, 4)) for v, lbl in worst_rhat[:5]],
        "worst_ess_bulk": [(lbl, round(v, 1)) for v, lbl in worst_ess[:5]],
        "per_parameter": per_param,
        "r2": float(r2),
        "mape": mape,
        "coverage_94": coverage,
        "n_obs": int(y_obs.size),
        "fit_table": fit_table[["week_start", "geo", "actual", "predicted_mean", "predicted_low",
                                "predicted_high"]],
    }


def gate_result(diag: dict, cfg: ModelConfig) -> tuple[bool, list[str], list[str]]:
    """(passed, failures, warnings). Convergence fails the gate; poor fit only warns."""
    g = cfg.gates
    failures: list[str] = []
    warns: list[str] = []
    per = diag.get("per_parameter", {})
    if not diag["max_rhat"] <= g.max_rhat:
        bad = sorted(n for n, v in per.items() if not v["max_rhat"] <= g.max_rhat)
        failures.append(f"max R-hat {diag['max_rhat']:.4f} > {g.max_rhat} "
                        f"(parameters: {', '.join(bad) or '?'}; worst: "
                        f"{', '.join(l for l, _ in diag.get('worst_rhat', [])[:3])})")
    if not diag["min_ess_bulk"] >= g.min_ess_bulk:
        bad = sorted(n for n, v in per.items() if not v["min_ess_bulk"] >= g.min_ess_bulk)
        failures.append(f"min bulk ESS {diag['min_ess_bulk']:.0f} < {g.min_ess_bulk:g} "
                        f"(parameters: {', '.join(bad) or '?'}; worst: "
                        f"{', '.join(l for l, _ in diag.get('worst_ess_bulk', [])[:3])})")
    if diag["divergences"] > g.max_divergences:
        failures.append(f"{diag['divergences']} divergent transitions > {g.max_divergences}")
    if not diag["r2"] >= g.min_r2:
        warns.append(f"in-sample R2 {diag['r2']:.3f} < {g.min_r2}")
    cov = diag["coverage_94"]
    if not (g.min_coverage <= cov <= g.max_coverage):
        warns.append(f"94% interval coverage {cov:.3f} outside [{g.min_coverage}, {g.max_coverage}]")
    return (not failures), failures, warns


# --------------------------------------------------------------------------- persistence


def save_model(mmm, path: str | Path) -> Path:
    """MMM.save to NetCDF, written to a temporary name then renamed (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    from mmm_pipeline import roas_targets as rt
    from mmm_pipeline.lift_likelihood import lift_attrs

    if getattr(mmm, "idata", None) is not None:
        mmm.idata.attrs.update({**lift_attrs(mmm), **rt.attrs(mmm)})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mmm.save(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_model(path: str | Path):
    """What MMM.load does (rebuild the graph from fit_data, re-add pymc-marketing's lift
    tests), with the file read fully into memory first, then re-add the window-lift term
    (`lift_likelihood`) saved in the attrs.

    Raises ModelError when the file is missing, truncated or not a saved MMM.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist")
    from pymc_marketing.data.idata import load_idata
    from pymc_marketing.mmm import MMM

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # MMM.load opens the file lazily; read it all now so that a damaged file
            # fails here, not at the first posterior access, and release the file.
            lazy = load_idata(str(path))
            try:
                idata = lazy.load()
            finally:
                lazy.close()
            mmm = MMM.load_from_idata(idata)
            from mmm_pipeline import roas_targets as rt
            from mmm_pipeline.lift_likelihood import readd_from_attrs

            readd_from_attrs(mmm, idata.attrs)
            rt.readd_from_attrs(mmm, idata.attrs)
            return mmm
    except Exception as exc:  # netCDF/HDF5 errors, missing attrs, DifferentModelError
        raise ModelError(
            f"cannot load model file {path} ({path.stat().st_size} bytes): it is truncated, "
            f"corrupt or not a saved pymc-marketing MMM ({type(exc).__name__}: {exc})"
        ) from exc


# --------------------------------------------------------------------------- summaries


def _target_scale(mmm):
    return mmm.idata.constant_data["target_scale"]


def _hdi_bounds(samples: np.ndarray, prob: float = HDI_PROB) -> tuple[np.ndarray, np.ndarray]:
    """Narrowest interval holding `prob` of the samples, along axis 0."""
    x = np.sort(samples, axis=0)
    n = x.shape[0]
    k = int(math.floor(prob * n))
    if k < 1 or n < 2:
        return x[0], x[-1]
    widths = x[k:] - x[: n - k]
    i = np.argmin(widths, axis=0)
    lo = np.take_along_axis(x, i[None], axis=0)[0]
    hi = np.take_along_axis(x, (i + k)[None], axis=0)[0]
    return lo, hi


def _summarise(da, sample_dims=("chain", "draw")) -> pd.DataFrame:
    """mean / hdi_low / hdi_high per non-sample coordinate, as a long frame."""
    dims = [d for d in da.dims if d not in sample_dims]
    stacked = da.stack(sample=sample_dims).transpose("sample", *dims)
    arr = stacked.to_numpy()
    lo, hi = _hdi_bounds(arr)
    mean = arr.mean(axis=0)
    index = pd.MultiIndex.from_product([stacked.coords[d].values for d in dims], names=dims) \
        if dims else pd.Index([0])
    return pd.DataFrame({"mean": np.ravel(mean), "hdi_low": np.ravel(lo), "hdi_high": np.ravel(hi)},
                        index=index).reset_index()


def contributions_frame(mmm) -> pd.DataFrame:
    """Weekly mean and 94% HDI per geo and component, in KPI units.

    Columns: week_start, geo, component, component_type (media | baseline |
    seasonality | control), mean, hdi_low, hdi_high. Media components are the
    channels; baseline is the intercept; seasonality the yearly Fourier sum;
    controls one row per control column.
    """
    post = mmm.idata.posterior
    scale = _target_scale(mmm)
    dates = pd.DatetimeIndex(post.coords["date"].values)
    parts: list[pd.DataFrame] = []

    def add(da, component_type: str, component: str | None = None, comp_dim: str | None = None):
        da = da * scale
        if "date" not in da.dims:
            da = da.expand_dims(date=dates)
        df = _summarise(da)
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
    out = pd.concat(parts, ignore_index=True)
    if "geo" not in out.columns:
        out["geo"] = NATIONAL
    out = out.rename(columns={"date": "week_start"})
    out["week_start"] = pd.to_datetime(out["week_start"]).dt.date
    out["component"] = out["component"].astype(str)
    cols = ["week_start", "geo", "component", "component_type", "mean", "hdi_low", "hdi_high"]
    return out[cols].sort_values(["geo", "component_type", "component", "week_start"]).reset_index(drop=True)


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
    scale = _target_scale(mmm)
    frames = []
    for name in MEDIA_PARAMETERS:
        if name in post:
            df = _summarise(post[name])
            df["parameter"] = name
            frames.append(df)
    if "saturation_beta" in post:
        df = _summarise(post["saturation_beta"] * scale)
        df["parameter"] = "saturation_beta_kpi"
        frames.append(df)
    out = pd.concat(frames, ignore_index=True)
    if "geo" not in out.columns:
        out["geo"] = NATIONAL
    ch_scale = cd["channel_scale"].to_series()
    if isinstance(ch_scale.index, pd.MultiIndex):
        ch_scale = ch_scale.groupby(level="channel").first()
    out["channel_scale"] = out["channel"].map(ch_scale.to_dict())
    out["target_scale"] = float(np.asarray(scale).ravel()[0]) if np.asarray(scale).size == 1 else np.nan
    out["channel"] = out["channel"].astype(str)
    out["geo"] = out["geo"].astype(str)
    cols = ["geo", "channel", "parameter", "mean", "hdi_low", "hdi_high", "channel_scale", "target_scale"]
    return out[cols].sort_values(["parameter", "geo", "channel"]).reset_index(drop=True)


def predict_mean(mmm) -> np.ndarray:
    """Posterior mean of mu (the expected KPI) for the training weeks, in KPI units, laid out
    like the posterior's `mu` -- a cheap fingerprint of a fitted or loaded model."""
    mu = mmm.idata.posterior["mu"].mean(("chain", "draw"))
    return np.asarray((mu * _target_scale(mmm)).to_numpy())
