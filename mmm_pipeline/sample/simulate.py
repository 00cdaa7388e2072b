"""The sample's known weekly MMM, simulated: delivery, cost, lift-test spend, KPI and the ad reports.

:func:`build` runs the stages in a fixed order on one random generator (the
order of the draws is part of the sample: change it and every number moves).
The saturation is pymc-marketing's ``LogisticSaturation.function``
(:func:`mmm_pipeline.model.saturation.logistic_saturation`); the normalised
geometric adstock is written out here because the generator needs it on
numpy arrays of whole histories at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mmm_pipeline.sample.design import (
    AD_COLUMNS, AOV, BASE_COLUMNS, CHANNEL_UNIT, CHANNELS, COST_WAVE, DRIVERS, END, GEO_COST, GEO_SIZE, GEOS,
    INTERCEPT_PER_SIZE, ITEMS, KPI_DOW_WEIGHTS, L_MAX, LIFT_TESTS, MEDIA_DOW, METRIC_COLUMNS, NOISE_FRACTION,
    PLATFORMS, POPULATION, PROMO, Q4_RISE, SEASONALITY, START, YOUTUBE_OFF,
)


def _adstock(x: np.ndarray, alpha: np.ndarray, l_max: int = L_MAX) -> np.ndarray:
    """Normalised geometric adstock along axis 0; alpha broadcasts over the rest.

    Written out: pymc-marketing's geometric_adstock is a pytensor op, compiled per shape, and any
    change in its summation order would move the sample's rounded cents."""
    lags = np.arange(l_max)
    w = np.power(alpha[None, ...], lags.reshape((-1,) + (1,) * alpha.ndim))
    w = w / w.sum(axis=0, keepdims=True)
    out = np.zeros_like(x, dtype=float)
    n = x.shape[0]
    for lag in range(l_max):
        out[lag:] += w[lag] * x[: n - lag]
    return out


def _driver_pattern(rng: np.random.Generator, n_weeks: int, week_doy: np.ndarray, name: str) -> np.ndarray:
    """Weekly volume multiplier (mean ~1) with seasonality, trend, bursts and dips."""
    t = week_doy / 365.25
    w = np.arange(n_weeks)
    phase = rng.uniform(0, 1)
    amp = rng.uniform(0.25, 0.40)
    trend = rng.uniform(-0.3, 0.4)
    m = (1 + amp * np.sin(2 * np.pi * (t - phase))) * np.exp(trend * (w / n_weeks - 0.5))
    # bursts
    for _ in range(int(rng.integers(5, 8))):
        s = int(rng.integers(0, n_weeks - 3))
        m[s: s + int(rng.integers(2, 5))] *= rng.uniform(1.6, 2.3)
    # dips (low-budget stretches)
    for _ in range(int(rng.integers(4, 7))):
        s = int(rng.integers(0, n_weeks - 3))
        m[s: s + int(rng.integers(2, 5))] *= rng.uniform(0.2, 0.45)
    if name in ("facebook", "amazon", "tiktok"):  # Black-Friday / holiday push
        m[(t > 0.87) & (t < 0.97)] *= 1.4
    m *= np.exp(rng.normal(0, 0.22, n_weeks))
    m = np.clip(m, 0.10, None)
    return m / m.mean()


def _r2(a: np.ndarray) -> np.ndarray:
    return np.round(a, 2)


@dataclass
class Calendar:
    """Days and weeks of the sample (weeks start on START, a Monday; the last one is incomplete)."""

    days: pd.DatetimeIndex
    n_days: int
    n_weeks: int
    week_of_day: np.ndarray
    dow: np.ndarray
    week_starts: pd.DatetimeIndex
    week_doy: np.ndarray
    day_doy: np.ndarray
    months: np.ndarray
    complete: np.ndarray
    last_week_days: int

    @classmethod
    def make(cls) -> "Calendar":
        days = pd.date_range(START, END, freq="D")
        n_days = len(days)
        n_weeks = (n_days + 6) // 7
        week_starts = pd.date_range(START, periods=n_weeks, freq="7D")
        complete = np.ones(n_weeks, dtype=bool)
        last_week_days = n_days - 7 * (n_weeks - 1)
        if last_week_days < 7:
            complete[-1] = False
        return cls(days=days, n_days=n_days, n_weeks=n_weeks, week_of_day=np.arange(n_days) // 7,
                   dow=np.asarray(days.day_of_week), week_starts=week_starts,
                   week_doy=np.asarray(week_starts.day_of_year, dtype=float),
                   day_doy=np.asarray(days.day_of_year, dtype=float), months=np.asarray(days.month),
                   complete=complete, last_week_days=last_week_days)


@dataclass
class Delivery:
    """Daily delivery (days x geos x line items) as written, its cost, and the lift tests' extra spend."""

    item_channel: np.ndarray
    is_spend_item: np.ndarray
    yt_missing_weeks: np.ndarray
    base_units: np.ndarray
    cost_season: np.ndarray
    per_unit: np.ndarray
    test_frac: list
    test_masks: list
    test_mult: np.ndarray
    units_with: np.ndarray
    spend_with: np.ndarray

    def unit_values(self, u: np.ndarray) -> np.ndarray:
        """Round delivery units as written: ints for clicks/impressions, cents for spend."""
        out = np.rint(u)
        out[:, :, self.is_spend_item] = _r2(u[:, :, self.is_spend_item])
        return out

    def spend(self, units: np.ndarray) -> np.ndarray:
        spend = _r2(units * self.per_unit)
        spend[:, :, self.is_spend_item] = units[:, :, self.is_spend_item]
        return spend

    def weekly_x(self, units: np.ndarray, cal: Calendar) -> np.ndarray:
        """Weekly channel units per geo (weeks x geos x channels)."""
        x = np.zeros((cal.n_weeks, len(GEOS), len(CHANNELS)))
        by_ch = np.zeros((cal.n_days, len(GEOS), len(CHANNELS)))
        for c in range(len(CHANNELS)):
            by_ch[:, :, c] = units[:, :, self.item_channel == c].sum(axis=2)
        np.add.at(x, cal.week_of_day, by_ch)
        return x


def _patterns(rng, cal: Calendar, correlated, correlation_noise: float,
              ramp: tuple[str, float] | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Weekly volume patterns per driver (shared) x geo wiggle, with YouTube's off flights."""
    pattern: dict[str, np.ndarray] = {}
    for name in DRIVERS:
        p = _driver_pattern(rng, cal.n_weeks, cal.week_doy, name)
        geo_wiggle = np.exp(rng.normal(0, 0.12, (cal.n_weeks, len(GEOS))))
        pattern[name] = p[:, None] * geo_wiggle
    if correlated is not None:  # two channels bought together (a collinear pair)
        a, b = correlated
        pattern[b] = pattern[a] * np.exp(rng.normal(0, correlation_noise, pattern[a].shape))
    if ramp is not None:  # a driver whose volume grows linearly by `share` over the two years
        name, share = ramp
        pattern[name] = pattern[name] * (1 + share * np.linspace(0, 1, cal.n_weeks))[:, None]
    yt_off_weeks = np.zeros(cal.n_weeks, dtype=bool)
    yt_missing_weeks = np.zeros(cal.n_weeks, dtype=bool)
    for s, n, missing in YOUTUBE_OFF:
        yt_off_weeks[s: s + n] = True
        if missing:
            yt_missing_weeks[s: s + n] = True
    pattern["youtube"][yt_off_weeks] = 0.0
    return pattern, yt_off_weeks, yt_missing_weeks


def _delivery(rng, cal: Calendar, sizes: dict, correlated, correlation_noise: float,
              lift_tests: list, ramp: tuple[str, float] | None = None) -> Delivery:
    G, I = len(GEOS), len(ITEMS)
    size = np.array([sizes[g] for g in GEOS])
    geo_cost = np.array([GEO_COST[g] for g in GEOS])
    ch_idx = {c: k for k, c in enumerate(CHANNELS)}
    item_channel = np.array([ch_idx[DRIVERS[it["driver"]]["channel"]] for it in ITEMS])
    pattern, _, yt_missing_weeks = _patterns(rng, cal, correlated, correlation_noise, ramp)

    media_dow = np.array(MEDIA_DOW)[cal.dow]
    base_units = np.zeros((cal.n_days, G, I))
    for i, it in enumerate(ITEMS):
        drv = DRIVERS[it["driver"]]
        daily_noise = np.exp(rng.normal(0, 0.08, (cal.n_days, G)))
        base_units[:, :, i] = (drv["base"] * it["share"] * size[None, :]
                               * pattern[it["driver"]][cal.week_of_day] * media_dow[:, None] * daily_noise)

    # cost per unit
    cost_season = 1 + COST_WAVE * np.cos(2 * np.pi * cal.day_doy / 365.25)
    cost_season = cost_season + np.array([Q4_RISE.get(int(m), 0.0) for m in cal.months])
    cpu_base = np.array([it["cpu"] for it in ITEMS])
    is_spend_item = np.array([CHANNEL_UNIT[CHANNELS[c]] == "spend" for c in item_channel])
    cpu = (cpu_base[None, None, :] * cost_season[:, None, None] * geo_cost[None, :, None]
           * np.exp(rng.normal(0, 0.04, (cal.n_days, G, I))))
    cpu[:, :, is_spend_item] = 1.0
    # USD per delivery unit: CPM/1000 for impressions, CPC for clicks, 1 for spend
    per_unit = np.where(
        np.array([CHANNEL_UNIT[CHANNELS[c]] == "impressions" for c in item_channel])[None, None, :],
        cpu / 1000.0, cpu)

    # lift tests: extra units in the window
    test_frac, test_masks = [], []  # masks: (n_days, G, I) booleans
    day_index = {d.date(): k for k, d in enumerate(cal.days)}
    for tid, ch, geo, start, nd, _scope in lift_tests:
        frac = float(rng.uniform(0.35, 0.55))
        d0 = day_index[start]
        mask = np.zeros((cal.n_days, G, I), dtype=bool)
        geos_sel = list(range(G)) if geo == "" else [GEOS.index(geo)]
        items_sel = np.nonzero(item_channel == ch_idx[ch])[0]
        for g in geos_sel:
            mask[d0: d0 + nd, g, items_sel] = True
        test_frac.append(frac)
        test_masks.append(mask)
    test_mult = np.ones((cal.n_days, G, I))
    for frac, mask in zip(test_frac, test_masks):
        test_mult[mask] *= 1 + frac

    d = Delivery(item_channel=item_channel, is_spend_item=is_spend_item, yt_missing_weeks=yt_missing_weeks,
                 base_units=base_units, cost_season=cost_season, per_unit=per_unit, test_frac=test_frac,
                 test_masks=test_masks, test_mult=test_mult, units_with=np.empty(0), spend_with=np.empty(0))
    d.units_with = d.unit_values(base_units * test_mult)
    d.spend_with = d.spend(d.units_with)
    return d


@dataclass
class KpiModel:
    """The true geo parameters and the weekly KPI they generate from the written delivery."""

    unit_scale: np.ndarray
    alpha: np.ndarray
    lam: np.ndarray
    beta: np.ndarray
    intercept: np.ndarray
    contrib: np.ndarray
    noise_sd: np.ndarray
    y_week: np.ndarray

    def contributions(self, x: np.ndarray) -> np.ndarray:
        from mmm_pipeline.model.saturation import logistic_saturation

        ad = _adstock(x / self.unit_scale[None, None, :], self.alpha)
        return logistic_saturation(ad, self.lam[None], self.beta[None])


def _kpi_model(rng, cal: Calendar, x_with: np.ndarray, sizes: dict, trend: float = 0.0,
               size_effects: bool = False) -> KpiModel:
    G = len(GEOS)
    size = np.array([sizes[g] for g in GEOS])

    def draw(kind: str) -> np.ndarray:
        out = np.zeros((G, len(CHANNELS)))
        for c, ch in enumerate(CHANNELS):
            pop = POPULATION[kind][ch]
            out[:, c] = rng.normal(pop["mu"], pop["sd"], G)
        return out

    alpha = 1 / (1 + np.exp(-draw("alpha")))
    lam = np.exp(draw("lam"))
    beta = np.exp(draw("beta"))
    if size_effects:
        # Effects grow with the geo, as in most real data: the ceiling in proportion to its size, and the
        # saturation point too (lam on x / unit_scale[c] is divided by the size relative to the largest
        # geo, so every geo saturates at the same delivery per unit of size).
        beta = beta * size[:, None]
        lam = lam * (size.max() / size)[:, None]
    intercept = INTERCEPT_PER_SIZE * size * np.exp(rng.normal(0, 0.05, G))
    tw = cal.week_doy / 365.25
    season = (SEASONALITY["sin_1"] * np.sin(2 * np.pi * tw) + SEASONALITY["cos_1"] * np.cos(2 * np.pi * tw)
              + SEASONALITY["sin_2"] * np.sin(4 * np.pi * tw) + SEASONALITY["cos_2"] * np.cos(4 * np.pi * tw))
    # `trend`: the baseline drifts linearly by that share of the intercept over the two years
    baseline = intercept[None, :] * (1 + season[:, None]) * (1 + trend * np.linspace(0, 1, cal.n_weeks))[:, None]
    m = KpiModel(unit_scale=x_with.max(axis=(0, 1)), alpha=alpha, lam=lam, beta=beta, intercept=intercept,
                 contrib=np.empty(0), noise_sd=np.empty(0), y_week=np.empty(0))
    m.contrib = m.contributions(x_with)
    mu = baseline + m.contrib.sum(axis=2)
    m.noise_sd = NOISE_FRACTION * mu[cal.complete].mean(axis=0)
    eps = rng.normal(0, 1, (cal.n_weeks, G)) * m.noise_sd[None, :]
    m.y_week = mu + eps
    return m


def _lift_test(rng, cal: Calendar, dlv: Delivery, model: KpiModel, x_with: np.ndarray, test: tuple,
               frac: float, mask: np.ndarray) -> tuple[dict, dict]:
    """(lift_tests.csv row, truth entry) of one test: the true model run on the actual spend path
    with and without the extra spend; the readout is the KPI difference over the window's weeks
    (plus the carryover after them when the test's scope is "total")."""
    tid, ch, geo, start, nd, scope = test
    units_wo = dlv.unit_values(dlv.base_units * np.where(mask, dlv.test_mult / (1 + frac), dlv.test_mult))
    spend_wo = dlv.spend(units_wo)
    x_wo = dlv.weekly_x(units_wo, cal)
    d0 = int(np.flatnonzero(cal.days.date == start)[0])
    w0, w1 = d0 // 7, (d0 + nd - 1) // 7
    geos_sel = list(range(len(GEOS))) if geo == "" else [GEOS.index(geo)]
    c = CHANNELS.index(ch)
    diff = (model.contrib - model.contributions(x_wo)).sum(axis=2)
    true_window = float(diff[w0: w1 + 1][:, geos_sel].sum())
    true_after = float(diff[w1 + 1:][:, geos_sel].sum())
    true_lift = true_window + (true_after if scope == "total" else 0.0)
    delta_spend = float(round((dlv.spend_with - spend_wo)[mask].sum(), 2))
    base_spend = float(round(spend_wo[mask].sum(), 2))
    delta_units = float(round((dlv.units_with - units_wo)[mask].sum(), 2))
    dx = x_with[:, :, c] - x_wo[:, :, c]
    sigma = true_lift * float(rng.uniform(0.15, 0.25))
    observed = true_lift + float(rng.normal(0, sigma))
    end = start + timedelta(days=nd - 1)
    row = {"test_id": tid, "channel": ch, "geo": geo, "start_date": start.isoformat(),
           "end_date": end.isoformat(), "delta_spend": delta_spend,
           "delta_y": round(observed, 2), "sigma": round(sigma, 2), "scope": scope}
    truth = {
        "test_id": tid, "channel": ch, "geo": geo, "geos": [GEOS[g] for g in geos_sel],
        "start_date": start.isoformat(), "end_date": end.isoformat(), "n_days": nd,
        "week_starts": [cal.week_starts[w].date().isoformat() for w in range(w0, w1 + 1)],
        "spend_increase_fraction": frac,
        "baseline_spend_window": base_spend,
        "delta_spend": delta_spend,
        "delta_units": delta_units,
        "unit": CHANNEL_UNIT[ch],
        "cost_per_unit_window": delta_spend / delta_units,
        "cost_per_1000_units_window": 1000.0 * delta_spend / delta_units,
        "delta_units_weekly": {GEOS[g]: [float(round(v, 2)) for v in dx[w0: w1 + 1, g]] for g in geos_sel},
        "scope": scope,
        "true_delta_y_window": true_window,
        "true_delta_y_after_window": true_after,
        "true_delta_y_total": true_window + true_after,
        "true_delta_y_reported_scope": true_lift,
        "true_delta_y_window_by_geo": {GEOS[g]: float(diff[w0: w1 + 1, g].sum()) for g in geos_sel},
        "true_delta_y_total_by_geo": {GEOS[g]: float(diff[w0:, g].sum()) for g in geos_sel},
        "delta_y": round(observed, 2),
        "sigma": round(sigma, 2),
        "true_roas_window": true_window / delta_spend,
        "true_roas_total": (true_window + true_after) / delta_spend,
    }
    return row, truth


@dataclass
class Promotions:
    """Promotion days (days x geos, 0/1), their weekly count, and the revenue they add per week."""

    daily: np.ndarray
    weekly_days: np.ndarray
    effect_per_day: np.ndarray     # USD of weekly revenue per promotion day, per geo
    weekly_contribution: np.ndarray

    def frame(self, cal: Calendar) -> pd.DataFrame:
        return pd.DataFrame({"date_day": np.repeat(cal.days.strftime("%Y-%m-%d").to_numpy(), len(GEOS)),
                             "geo": np.tile(GEOS, cal.n_days), "promo": self.daily.reshape(-1).astype(int)})


def _promotions(seed: int, cal: Calendar, x_with: np.ndarray, intercept: np.ndarray) -> Promotions:
    """Promotion days, more likely in weeks of heavy social delivery, drawn from their own stream so
    every other number of the sample stays what it was without them."""
    rng = np.random.default_rng([seed, 7])
    social = x_with[:, :, CHANNELS.index("social")]
    rate = np.clip(PROMO["base_rate"] * (social / social.mean(axis=0, keepdims=True)) ** PROMO["social_power"],
                   0.0, PROMO["max_rate"])
    daily = (rng.uniform(size=(cal.n_days, len(GEOS))) < rate[cal.week_of_day]).astype(float)
    weekly = np.zeros((cal.n_weeks, len(GEOS)))
    np.add.at(weekly, cal.week_of_day, daily)
    effect = PROMO["lift_per_day"] * intercept / 7.0
    return Promotions(daily, weekly, effect, weekly * effect[None, :])


def _daily_kpi(rng, cal: Calendar, y_week: np.ndarray) -> pd.DataFrame:
    """The weekly KPI spread to days by day-of-week weights plus zero-sum daily noise; orders by AOV."""
    G = len(GEOS)
    kpi_w = np.array(KPI_DOW_WEIGHTS)[cal.dow]
    daily_noise = rng.normal(0, 0.004, (cal.n_days, G))
    for w in range(cal.n_weeks):  # zero-sum within each week
        sl = slice(7 * w, min(7 * w + 7, cal.n_days))
        daily_noise[sl] -= daily_noise[sl].mean(axis=0, keepdims=True)
    revenue = _r2(y_week[cal.week_of_day] * (kpi_w[:, None] + daily_noise))
    aov = AOV * np.exp(rng.normal(0, 0.04, (cal.n_days, G)))
    orders = np.rint(revenue / aov).astype(np.int64)
    return pd.DataFrame({
        "date_day": np.repeat(cal.days.strftime("%Y-%m-%d").to_numpy(), G),
        "geo": np.tile(GEOS, cal.n_days),
        "revenue": revenue.reshape(-1),
        "orders": orders.reshape(-1),
    })


def _secondary_metrics(rng, dlv: Delivery) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(clicks, impressions, conversions, conversions_value) per day x geo x line item."""
    clicks = np.zeros_like(dlv.units_with)
    impressions = np.zeros_like(dlv.units_with)
    cost_season = dlv.cost_season[:, None]
    for i, it in enumerate(ITEMS):
        unit = CHANNEL_UNIT[DRIVERS[it["driver"]]["channel"]]
        u = dlv.units_with[:, :, i]
        if unit == "impressions":
            impressions[:, :, i] = u
            clicks[:, :, i] = rng.binomial(u.astype(np.int64), it["ctr"])
        elif unit == "clicks":
            clicks[:, :, i] = u
            ctr = it["ctr"] * np.exp(rng.normal(0, 0.05, u.shape))
            impressions[:, :, i] = np.rint(u / ctr)
        else:  # spend
            noise = np.exp(rng.normal(0, 0.05, u.shape))
            clicks[:, :, i] = np.rint(u / (it["cpc2"] * noise * cost_season))
            impressions[:, :, i] = np.rint(1000.0 * u / (it["cpm2"] * noise * cost_season))
    cvr = np.array([it["cvr"] for it in ITEMS])
    conversions = rng.poisson(clicks * cvr[None, None, :]).astype(float)
    conv_value = _r2(conversions * AOV * np.exp(rng.normal(0, 0.08, conversions.shape)))
    return clicks, impressions, conversions, conv_value


def _ad_reports(rng, cal: Calendar, dlv: Delivery) -> dict[str, pd.DataFrame]:
    """One Fivetran-shaped frame per platform (YouTube's missing-row flights left out)."""
    G = len(GEOS)
    clicks, impressions, conversions, conv_value = _secondary_metrics(rng, dlv)
    date_str = cal.days.strftime("%Y-%m-%d").to_numpy()
    frames: dict[str, pd.DataFrame] = {}
    for plat, meta in PLATFORMS.items():
        has_ads = plat == "facebook_ads"
        parts = []
        for i in [i for i, it in enumerate(ITEMS) if it["platform"] == plat]:
            it = ITEMS[i]
            keep = np.ones((cal.n_days, G), dtype=bool)
            if it["driver"] == "youtube":
                keep[dlv.yt_missing_weeks[cal.week_of_day]] = False
            cols: dict[str, Any] = {
                "_d": np.repeat(np.arange(cal.n_days), G), "_g": np.tile(np.arange(G), cal.n_days), "_i": i,
                "source_relation": meta["source_relation"], "date_day": np.repeat(date_str, G),
                "platform": meta["platform"], "account_id": meta["account_id"],
                "account_name": meta["account_name"], "campaign_id": it["campaign_id"],
                "campaign_name": it["campaign_name"],
            }
            if has_ads:
                for col in AD_COLUMNS:
                    cols[col] = it[col]
            cols.update({
                "clicks": clicks[:, :, i].reshape(-1).astype(np.int64),
                "impressions": impressions[:, :, i].reshape(-1).astype(np.int64),
                "spend": dlv.spend_with[:, :, i].reshape(-1),
                "conversions": conversions[:, :, i].reshape(-1).astype(np.int64),
                "conversions_value": conv_value[:, :, i].reshape(-1),
                "geo": np.tile(GEOS, cal.n_days),
            })
            parts.append(pd.DataFrame(cols)[keep.reshape(-1)])
        df = pd.concat(parts, ignore_index=True)
        df = df.sort_values(["_d", "_i", "_g"], kind="stable").reset_index(drop=True)
        frames[plat] = df[BASE_COLUMNS + (AD_COLUMNS if has_ads else []) + METRIC_COLUMNS]
    return frames


def build(seed: int, *, geo_size: dict[str, float] | None = None,
          correlated: tuple[str, str] | None = None, correlation_noise: float = 0.06,
          lift_tests: Sequence[tuple] | None = None, trend: float = 0.0,
          ramp: tuple[str, float] | None = None, promotions: bool = True, size_effects: bool = False,
          ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame, dict]:
    """The sample's frames and truth. The keywords vary its structure (bench/bench_recovery.py):
    `geo_size` (geo -> size), `correlated` (two driver names whose weekly patterns become the
    same up to lognormal noise of sd `correlation_noise`), `lift_tests` (LIFT_TESTS-shaped),
    `trend` (the baseline grows by that share of the intercept over the two years), `ramp`
    ((driver, share): that driver's volume grows by `share` over the two years, so a channel's
    spend rises with the baseline), `promotions` (promotion days that lift revenue, written as the
    control controls/promo.csv; their draws come from a stream of their own), `size_effects` (a geo's
    ceiling beta and saturation point grow in proportion to its size, instead of being drawn
    independently of it). The defaults with design.SAMPLE_STRUCTURE (its 5% trend) are the embedded sample."""
    from mmm_pipeline.sample.truth import sample_truth

    rng = np.random.default_rng(seed)
    lift_tests = list(lift_tests or LIFT_TESTS)
    sizes = {**GEO_SIZE, **(geo_size or {})}
    cal = Calendar.make()
    dlv = _delivery(rng, cal, sizes, correlated, correlation_noise, lift_tests, ramp)
    x_with = dlv.weekly_x(dlv.units_with, cal)
    model = _kpi_model(rng, cal, x_with, sizes, trend, size_effects)
    tests = [_lift_test(rng, cal, dlv, model, x_with, t, frac, mask)
             for t, frac, mask in zip(lift_tests, dlv.test_frac, dlv.test_masks)]
    promo = _promotions(seed, cal, x_with, model.intercept) if promotions else None
    if promo is not None:  # additive: the lift tests' differences do not change
        model.y_week = model.y_week + promo.weekly_contribution
    kpi = _daily_kpi(rng, cal, model.y_week)
    frames = _ad_reports(rng, cal, dlv)
    truth = sample_truth(seed, cal, model, sizes, [t for _, t in tests], correlated, correlation_noise)
    truth["structure"]["size_effects"] = size_effects
    if trend:
        truth["trend"] = {"share_over_two_years": trend, "form": "baseline x (1 + trend * week / (n_weeks - 1))"}
    if ramp:
        truth["ramp"] = {"driver": ramp[0], "share_over_two_years": ramp[1]}
    controls = {}
    if promo is not None:
        social_spend = dlv.weekly_x(dlv.spend_with, cal)[:, :, CHANNELS.index("social")]
        c = cal.complete
        controls = {"promo": promo.frame(cal)}
        truth["controls"] = {"promo": {
            "file": "controls/promo.csv", "aggregation": "sum", "unit": "promotion days per week",
            "effect_per_promo_day": {g: float(v) for g, v in zip(GEOS, promo.effect_per_day)},
            "weekly_contribution": {g: [float(v) for v in promo.weekly_contribution[:, i]] for i, g in enumerate(GEOS)},
            "contribution_share": float(promo.weekly_contribution[c].sum() / model.y_week[c].sum()),
            "corr_weekly_days_with_social_spend": float(np.corrcoef(promo.weekly_days[c].ravel(),
                                                                    social_spend[c].ravel())[0, 1]),
            "definition": "y[w,g] += effect_per_promo_day[g] * promotion days in week w; a promotion day adds "
                          f"{PROMO['lift_per_day']} of a baseline day's revenue (intercept[g] / 7)"}}
    lift_df = pd.DataFrame([r for r, _ in tests], columns=["test_id", "channel", "geo", "start_date", "end_date",
                                                           "delta_spend", "delta_y", "sigma", "scope"])
    return frames, kpi, lift_df, truth, controls
