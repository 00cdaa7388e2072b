"""The model's settings: pydantic config of priors, sampler, gates and calibration, and the profiles.

``load_model_config(profile, overrides)`` is the one way in: the profile's
defaults (``PROFILES``) with pipeline.yaml's ``model:`` block deep-merged in.
``config_hash`` names a config in model versions. Shared constants of the
model package (``NATIONAL``, ``MEDIA_PARAMETERS``, ``HDI_PROB``) and its error
type live here, because every other module of the package reads them.
"""

from __future__ import annotations

import hashlib
import json
from copy import deepcopy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NATIONAL = "national"
# LinearTrendEffect prefix: its posterior holds `trend_effect_contribution` (date, geo) in scaled KPI.
TREND_PREFIX = "trend"
MEDIA_PARAMETERS = ("adstock_alpha", "adstock_theta", "saturation_lam", "saturation_slope", "saturation_kappa", "saturation_beta")
HDI_PROB = 0.94


class ModelError(RuntimeError):
    """Model data, fit or file problem; the message says what and where."""



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
    # `adstock: delayed`: log(theta), the lag of the peak effect in periods; median e^-0.5 = 0.6, 2 sd
    # covering 0.08 .. 4.5 (pymc-marketing's HalfNormal(1) default has its median at 0.67). Log-normal
    # so the hierarchy stays non-centered like the others; theta near 0 is the geometric kernel.
    adstock_theta: HierarchicalPrior = HierarchicalPrior(mu_loc=-0.5, mu_scale=1.0, geo_sigma=0.3)
    # log(lam) on max-scaled units: median e^1 = 2.7, 2 sd covers 0.6 .. 12.
    saturation_lam: HierarchicalPrior = HierarchicalPrior(mu_loc=1.0, mu_scale=0.75, geo_sigma=0.2)
    # log(beta) on the max-scaled KPI: median 0.15, 2 sd covers 0.02 .. 1.1 of the max week.
    saturation_beta: HierarchicalPrior = HierarchicalPrior(mu_loc=-1.9, mu_scale=1.0, geo_sigma=0.25)
    # The ROI parameterization (model.saturation_parameterization: roi, the default; see
    # mmm_pipeline.model.roi_prior): relative ROI = the channel's share of the KPI / its share of the paid
    # spend in a typical week = relative_roi_unit * link(m[channel]) * exp(geo_sigma * z[geo, channel]),
    # m ~ Normal(mu_loc, mu_scale). softplus(N(3, 3.5)) x 0.1: median 0.30 (a channel of average
    # efficiency when paid media drive ~30% of the KPI), 90% in 0.006 .. 0.88; geos differ by ~25%.
    # (mu_scale 2.5, 90% up to 0.71, shrank high-ROI channels: spread coverage 0.88; bench/README.md)
    relative_roi: HierarchicalPrior = HierarchicalPrior(mu_loc=3.0, mu_scale=3.5, geo_sigma=0.25)
    # softplus: about linear above 1, so channels bought together trade ROI along a straight ridge;
    # exp: log-normal (Meridian's), curved ridge, divergences on correlated channels (bench/README.md)
    relative_roi_link: Literal["exp", "softplus"] = "softplus"
    # `saturation: hill` (pymc-marketing's HillSaturation, x^s / (x^s + kappa^s)): log(slope) with median
    # e^0.4 = 1.5, 2 sd covering 0.55 .. 4 (below 1 concave, above 1 S-shaped); the half-saturation point
    # kappa as a multiple of the typical week's units x0 (log ratio median 0: kappa = x0, 2 sd covering
    # x0 / 4 .. 4 x0), so the prior means the same for every channel, unit and geo size.
    hill_slope: HierarchicalPrior = HierarchicalPrior(mu_loc=0.4, mu_scale=0.5, geo_sigma=0.1)
    hill_kappa_ratio: HierarchicalPrior = HierarchicalPrior(mu_loc=0.0, mu_scale=0.7, geo_sigma=0.2)
    relative_roi_unit: float = Field(0.1, gt=0)
    geo_sigma_per_channel: bool = False
    # How the geo spread sigma (link scale) is treated: "fixed" = sigma is `geo_sigma`
    # (partial pooling of a set strength, nothing to sample); "halfnormal" = sigma ~
    # HalfNormal(geo_sigma); "lognormal" = sigma ~ LogNormal(log(geo_sigma), 0.5).
    geo_sigma_prior: Literal["fixed", "halfnormal", "lognormal"] = "fixed"
    intercept_mu: float = 0.5
    intercept_sigma: float = Field(0.5, gt=0)
    fourier_sigma: float = Field(0.1, gt=0)
    # How a market's geos share the yearly season (gamma_fourier[geo, mode]): "geo" = each geo its own
    # Normal(0, fourier_sigma) per mode; "market" = one market season per mode, Normal(0, fourier_sigma),
    # plus non-centered geo deviations whose spread is HalfNormal(fourier_geo_sigma) (the KPI is per capita
    # or per the geo's size, so one season fits geos of any size; docs/models.md "Seasonality").
    fourier_pooling: Literal["geo", "market"] = "geo"
    fourier_geo_sigma: float = Field(0.05, gt=0)
    # The prior sd of mode k is fourier_sigma * k ** -fourier_decay: 0 = every mode alike; 1 keeps the
    # high modes that a smooth season does not need near zero unless the data ask for them.
    fourier_decay: float = Field(0.0, ge=0, le=3)
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
    # LLVM optimisation level numba compiles with (numba's default is 3), one level for every fit of a
    # process, the validation refit's included (fit.use_numba_opt). On the sample's models (2 cores,
    # 2026-12-05) level 1 compiled 1.5-3.4 s faster than 3 and sampled as fast; level 0 compiled
    # 7.5-10 s faster but sampled 4 x 2,500 draws 23% slower, and the short validation refit took
    # 99-163 s cold against 78-88 s at level 1 (bench/bench_numba_level.py, 2026-12-06).
    numba_opt: int = Field(1, ge=0, le=3)


class GateConfig(_Strict):
    max_rhat: float = Field(1.01, gt=1)
    min_ess_bulk: float = Field(400, ge=0)
    # Divergent transitions as a share of all post-warmup draws (before thinning). Default 0:
    # a divergence marks a region the sampler could not explore, so the posterior there (and any
    # ROAS read from it) is biased by an unknown amount; Betancourt (2017, "A Conceptual
    # Introduction to Hamiltonian Monte Carlo", sec. 6.2) and the Stan manual treat any divergence
    # as a warning to act on. Raise it knowingly (e.g. 0.001) for models you have inspected.
    max_divergence_share: float = Field(0.0, ge=0, lt=1)
    # Warns (check `data_informative`) on media parameters whose posterior is still the prior:
    # narrowed by less than this share of the prior variance and moved by under half a prior sd.
    min_posterior_contraction: float = Field(0.1, ge=0, lt=1)
    # Warnings (do not fail the gate).
    min_r2: float = 0.5
    min_coverage: float = Field(0.85, ge=0, le=1)
    max_coverage: float = Field(0.99, ge=0, le=1)


class ValidationConfig(_Strict):
    """Out-of-sample check (asset `model_validation`, see mmm_pipeline.model.holdout)."""

    enabled: bool = True
    # the last complete weeks held out: refit without them, forecast them
    holdout_weeks: int = Field(8, ge=1, le=52)
    # The refit's sampler (each at most the profile's value, unthinned). The forecast needs predictive
    # paths, not a gated posterior: 2 x 500 draws give 1,000, and warmup, most of a fit's time, is
    # nutpie's default 300 (README "Out-of-sample validation").
    chains: int = Field(2, ge=1, le=16)
    tune: int = Field(300, ge=50)
    draws: int = Field(500, ge=50)
    # what failing to beat the better naive forecast (market MAPE) does: `warn` reports it on the
    # `beats_naive_forecast` check; `error` fails that check as an ERROR
    gate: Literal["warn", "error"] = "warn"
    # The refit's own convergence gate, never stricter than the profile's (`refit_config`): loose enough
    # for 2 x 500 draws, tight enough to catch a broken refit (a stuck chain: R-hat 1.26, bulk ESS 6 was
    # seen off-family), whose forecast says nothing about the model. A refit that fails it climbs the
    # retry ladder like a fit; one that still fails is reported, and the check does not pass on it.
    max_rhat: float = Field(1.05, gt=1)
    min_ess_bulk: float = Field(100, ge=0)
    max_divergence_share: float = Field(0.01, ge=0, lt=1)


class TimeVaryingMediaConfig(_Strict):
    """HSGP over time multiplying all media contributions (pymc-marketing media_tvp_config)."""

    m: int = Field(20, ge=3, le=400)
    eta_lam: float = Field(1.0, gt=0)
    ls_mu: float = Field(5.0, gt=0)
    ls_sigma: float = Field(10.0, gt=0)


class CurveFamily(_Strict):
    """One candidate of `model.family_candidates`: an adstock and a saturation family."""

    adstock: Literal["geometric", "delayed"] = "geometric"
    saturation: Literal["logistic", "hill"] = "logistic"

    @property
    def label(self) -> str:
        return f"{self.adstock} + {self.saturation}"


class CalibrationConfig(_Strict):
    """How lift tests enter the calibrated model (README "Lift tests in model units")."""

    # "window": mmm_pipeline.model.lift_likelihood, the test's implied lift on the actual spend path
    # summed over its readout (window, or window + carryover), one term per test.
    # "steady_state": pymc-marketing's add_lift_test_measurements on the weekly conversion
    # (beta * (sat(x + dx) - sat(x)), one row per geo); kept for comparison.
    likelihood: Literal["window", "steady_state"] = "window"
    distribution: Literal["normal", "studentt"] = "normal"
    studentt_nu: float = Field(5.0, gt=1)
    # The test's extra spend is in the ad reports (it was really spent): the treated path is the
    # data, the untreated one the data less the extra units. False: data without the test's units.
    extra_spend_in_data: bool = True


class RetryStep(_Strict):
    """One rung of the retry ladder: how the sampler settings of the *first* attempt change."""

    name: str
    tune_multiplier: float = Field(1.0, ge=1)
    draws_multiplier: float = Field(1.0, ge=1)
    thin_multiplier: int = Field(1, ge=1, le=20)
    target_accept: float | None = Field(None, gt=0, lt=1)
    # Run this rung only when the attempt before it failed on convergence alone (divergences within the
    # gate) with max R-hat at most this: chains just short on a ridge need length, not smaller steps.
    only_below_rhat: float | None = Field(None, gt=1)


class RetryConfig(_Strict):
    """When a fit fails its convergence gate, refit with each rung in turn until one passes.

    An attempt is started only if the time spent so far plus its estimated duration (the
    previous attempt's time x their tune + draws ratio) stays within `time_budget_seconds`.
    """

    ladder: tuple[RetryStep, ...] = ()
    time_budget_seconds: float = Field(1800, gt=0)


DEFAULT_LADDER = (
    # The usual failure is one or two divergences in 8,000 draws (3 of 16 sample fits at 500 tune), which
    # longer tuning alone did not cure and smaller steps did (make run, east): both in the first rung.
    # Off the model's family 0.95 left 3 and 10 divergences where 0.99 left none (weibull_lag, hill_daily
    # seed 1, same tuning), for 12-16% more time (bench/README.md "Smaller steps on the retry ladder").
    {"name": "smaller steps", "tune_multiplier": 2, "target_accept": 0.99},
    # measured on two channels correlated ~0.99: 8,000 draws thinned by 8 passed where 4,000 did not
    {"name": "more draws", "tune_multiplier": 2, "target_accept": 0.99, "draws_multiplier": 2,
     "thin_multiplier": 2},
    # the geo-lift notebook's process (two channels correlated ~0.99): every attempt above ended free of
    # divergences at R-hat 1.012-1.014; on such a ridge only longer chains bring R-hat under 1.01
    {"name": "longer chains", "tune_multiplier": 2, "target_accept": 0.99, "draws_multiplier": 4,
     "thin_multiplier": 4, "only_below_rhat": 1.05},
    # Off-family, 4 of 8 fits that reached the 4x rung still ended just over the limit there, free of
    # divergences (R-hat 1.0113-1.0143); refitted at 8x, the two tried passed (1.0045, 1.0042), for about
    # twice that rung's time (bench/README.md "The retry ladder at 0.99 and the forecast-gated refit").
    {"name": "longest chains", "tune_multiplier": 2, "target_accept": 0.99, "draws_multiplier": 8,
     "thin_multiplier": 8, "only_below_rhat": 1.02},
)


class ModelConfig(_Strict):
    profile: str
    sampler: SamplerConfig
    priors: PriorsConfig = PriorsConfig()
    l_max: int = Field(8, ge=1, le=52)
    # Yearly Fourier order (sin/cos pairs per geo). 10, Prophet's default yearly order (Robyn's too): a
    # holiday peak the KPI and the media budgets share is only absorbed by a flexible season; with 2
    # modes media took it (off-family, 6 datasets: mean |ROAS error| 1.30 -> 0.56, |mROAS error| 1.13 ->
    # 0.58; bench/README.md "Seasonality order"). A smooth season's data may set 2 (the sample does).
    yearly_seasonality: int | None = Field(10, ge=1, le=10)
    control_columns: tuple[str, ...] = ()
    # Baseline drift that seasonality cannot explain, so media does not absorb it:
    # `linear` = pymc-marketing's LinearTrendEffect (piecewise linear, `trend_changepoints`
    # evenly spaced slope changes, Laplace(0, 0.25) priors on the max-scaled KPI, starting at 0
    # so the intercept keeps the level; one trend per geo); `hsgp` = a time-varying intercept
    # (HSGP, per geo).
    trend: Literal["none", "linear", "hsgp"] = "none"
    trend_changepoints: int = Field(4, ge=1, le=52)
    # How geos of different size share the pooled priors (mmm_pipeline.model.scales): `size` scales each
    # geo by its size (geos.csv population, else the geo's mean KPI), so the priors mean the same effect
    # per unit of size and a small geo does not get a large geo's ceiling; `market` uses one scale per
    # market and channel (the same absolute ceiling a priori in every geo).
    geo_scaling: Literal["size", "market"] = "size"
    # What the media prior is on (mmm_pipeline.model.roi_prior): `beta` = lam and beta (the curve's
    # ceiling) free; `roi` = lam and the ROI of a typical week free, beta derived (Meridian's ROI prior).
    saturation_parameterization: Literal["beta", "roi"] = "roi"
    # The saturation family: `logistic` (pymc-marketing's LogisticSaturation, concave: the most return
    # per unit at zero spend) or `hill` (HillSaturation: concave or S-shaped, learned per channel);
    # `hill` needs the ROI parameterization (its kappa is a multiple of the typical week's units).
    saturation: Literal["logistic", "hill"] = "logistic"
    # The carryover family, normalised (weights sum to 1, so a sustained spend's weekly effect does not
    # depend on it): `geometric` (GeometricAdstock: the effect peaks in the week of spend and decays by
    # alpha) or `delayed` (DelayedAdstock: weights alpha^((l - theta)^2), a peak theta periods later,
    # learned per geo and channel).
    adstock: Literal["geometric", "delayed"] = "geometric"
    # Two or more: the market's family is chosen among them by the held-out fit of the KPI (asset
    # model_family, mmm_pipeline.model.family): the first is the default and another replaces it only when
    # its out-of-sample CRPS is lower beyond noise. Empty (default): `adstock` and `saturation` as set.
    family_candidates: tuple[CurveFamily, ...] = ()
    time_varying_media: bool = False
    time_varying_media_config: TimeVaryingMediaConfig = TimeVaryingMediaConfig()
    gates: GateConfig = GateConfig()
    retry: RetryConfig = RetryConfig()
    # false (default): a model that fails its gate after every retry still feeds the outputs,
    # marked gated = false with the reason; true: the failed gate blocks the outputs.
    strict_gates: bool = False
    calibration: CalibrationConfig = CalibrationConfig()
    validation: ValidationConfig = ValidationConfig()
    # marts.refresh_drift flags a geo x channel whose ROAS (or media share) moved by more than this share
    # against the previous gated model of the market and variant
    refresh_drift_threshold: float = Field(0.2, gt=0)
    random_seed: int = 20240101

    @model_validator(mode="after")
    def _check(self) -> "ModelConfig":
        if self.gates.min_coverage > self.gates.max_coverage:
            raise ValueError("gates.min_coverage must not exceed gates.max_coverage")
        if len(set(self.control_columns)) != len(self.control_columns):
            raise ValueError("control_columns has duplicates")
        hill = self.saturation == "hill" or any(c.saturation == "hill" for c in self.family_candidates)
        if hill and self.saturation_parameterization != "roi":
            raise ValueError("saturation: hill needs saturation_parameterization: roi")
        if len(set(self.family_candidates)) != len(self.family_candidates):
            raise ValueError("family_candidates has duplicates")
        if len(self.family_candidates) == 1:
            raise ValueError("family_candidates needs two or more families to choose from (or none: then "
                             "adstock and saturation are used as set)")
        if self.family_candidates and not self.validation.enabled:
            # the choice *is* held-out refits: switching validation off would still pay for them, unasked
            raise ValueError("family_candidates chooses by refits without the held-out weeks, which "
                             "validation.enabled: false switches off: enable validation or list no candidates")
        return self


PROFILES: dict[str, dict[str, Any]] = {
    # 500 tuning steps: nutpie's adaptation settles well within them, and warmup was most of the time
    # (sample, west: 21 s at 1,000 tune, 10 s at 500, max R-hat over 4 seeds 1.0026-1.0041; README)
    "full": {"sampler": {"chains": 4, "tune": 500, "draws": 2000, "thin": 2, "target_accept": 0.9},
             "retry": {"ladder": DEFAULT_LADDER}},
    # A smoke profile: 2 x 200 draws cannot reach a bulk ESS of 400, so its gate only
    # catches a broken fit (R-hat > 1.1, ESS < 20, any divergence); use `full` to publish.
    "fast": {"sampler": {"chains": 2, "tune": 200, "draws": 200, "target_accept": 0.9},
             "gates": {"max_rhat": 1.1, "min_ess_bulk": 20, "max_divergence_share": 0.0}},
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
    """Stable 16-hex hash of every setting that shapes the posterior (profile included):
    `strict_gates` only decides what a failed gate blocks, `validation` only the out-of-sample refit
    and `refresh_drift_threshold` only a flag, so changing them refits nothing."""
    payload = json.dumps(cfg.model_dump(mode="json", exclude={"strict_gates", "validation",
                                                              "refresh_drift_threshold"}), sort_keys=True,
                         separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]



def with_family(cfg: ModelConfig, family: CurveFamily) -> ModelConfig:
    """`cfg` with `family`'s adstock and saturation (its candidates kept, so every step that resolves the
    same choice gets the same config and `config_hash`)."""
    return cfg.model_copy(update={"adstock": family.adstock, "saturation": family.saturation})


def with_control_columns(cfg: ModelConfig, available: list[str]) -> ModelConfig:
    """The controls a fit uses: every staged control unless `model.control_columns` picks some
    (then each must be staged). A changed set changes `config_hash`, so the model refits."""
    if cfg.control_columns:
        unknown = sorted(set(cfg.control_columns) - set(available))
        if unknown:
            raise ModelError(f"pipeline.yaml model.control_columns {unknown} are not in staging.controls_weekly "
                             f"(staged controls: {sorted(available) or 'none; add controls/*.csv'})")
        return cfg
    return cfg.model_copy(update={"control_columns": tuple(available)})
