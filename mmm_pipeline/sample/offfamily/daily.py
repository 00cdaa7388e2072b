"""`hill_daily` and `weibull_lag`: daily processes outside the model's family.

Shared design (one market of 6 geos, 110 weeks from Monday 2024-01-01, 8 weeks of unreported
burn-in media before it so the first weeks carry in):

* geos 12x apart in population (geos.csv), every effect per capita: a geo's ceiling and saturation
  point are per person, with 15% geo-level variation;
* 4 channels in mixed units: video (impressions, Google Ads "YouTube"), search (clicks, Google Ads),
  social (impressions, Facebook Ads at two campaigns), retail (spend, Amazon Ads); video and social
  are bought together (a shared weekly budget pattern: weekly spend within a geo correlates >= 0.8);
* daily spend = weekly budget x the channel's day-of-week profile x daily noise; cost per unit with
  a yearly wave, a Q4 rise, geo multipliers and daily noise (continued into the planning horizon);
* controls: promotion days (national sales and geo-specific ones; the weeks holding one get 30-50%
  more search, social and video budget) and a daily price index (list-price steps, 8% promo
  discount), both given to the model (controls/promo.csv `sum`, controls/price.csv `mean`);
* KPI (daily revenue per geo) = population x per-capita baseline x yearly season x holiday bump x
  trend x day-of-week x (price/100)^-1.4 x (1 + 0.18 on promotion days) + media + noise (daily 3%
  of the geo's baseline plus an AR(1) weekly shock);
* lift tests run on the actual spend path: the tested channel's daily spend in the test geos (all
  geos for a national test) is raised by 30-60% over 2 to 8 weeks; the readout is the KPI difference
  over the window (`window`) or window plus the carryover to the end of the data (`total`), true
  lift by re-simulation, readout = true + Normal(0, sigma), sigma 15% (2 weeks) to 10% (8 weeks).

`hill_daily`: Hill saturation z^s / (z^s + K^s), shape s in [1.3, 2.4] (never 1), unnormalised
daily geometric carryover (weights alpha^l, alpha in [0.6, 0.92], so a sustained spend is
adstocked to 1/(1-alpha) times itself). `weibull_lag`: a peaked, delayed carryover (Weibull pdf
weights, shape 1.5-3, scale 4-15 days, peak weight 1) and a stretched-exponential saturation
1 - exp(-(z/K)^rho), rho in [0.55, 0.9].
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from mmm_pipeline.sample.offfamily.figures import cell_figures, cells_json, lift_truth, sigma_fraction
from mmm_pipeline.sample.offfamily.process import MediaProcess, PlanContext

START = date(2024, 1, 1)            # a Monday
N_WEEKS = 110
BURN_WEEKS = 8
HORIZON_WEEKS = 8                   # the pipeline's default planning horizon
GEOS = ["NYC", "LAX", "CHI", "DAL", "DEN", "BOI"]
POPULATION_M = [9.0, 6.0, 3.4, 2.0, 1.3, 0.75]   # millions: 12x apart
CHANNELS = ["video", "search", "social", "retail"]
UNIT = {"video": "impressions", "search": "clicks", "social": "impressions", "retail": "spend"}
CORRELATED = ("social", "video")
PROMO_BOOSTED = ("search", "social", "video")
CORR_NOISE = 0.11                  # lognormal sd between the correlated pair's weekly patterns
# per channel: share of media spend, base cost per unit (CPM for impressions, CPC for clicks),
# ROAS at the channel's typical spend (range), day-of-week profile of spend (Mon..Sun)
CHANNEL_SPEC = {
    "video": {"share": 0.25, "cpu": 14.0, "roas": (0.6, 2.0), "dow": [1.0, 1.0, 1.0, 1.0, 1.05, 1.1, 1.1]},
    "search": {"share": 0.30, "cpu": 1.6, "roas": (1.5, 3.5), "dow": [1.1, 1.1, 1.05, 1.0, 0.95, 0.85, 0.95]},
    "social": {"share": 0.30, "cpu": 9.0, "roas": (0.8, 2.5), "dow": [0.95, 0.95, 1.0, 1.0, 1.05, 1.1, 1.05]},
    "retail": {"share": 0.15, "cpu": 1.0, "roas": (1.5, 3.0), "dow": [1.0, 1.0, 1.0, 1.0, 1.0, 1.05, 1.05]},
}
GEO_COST = [1.30, 1.20, 1.05, 0.95, 0.92, 0.85]
BASELINE_PER_CAPITA = 0.05          # revenue per person per day
MEDIA_SPEND_SHARE = 0.10            # media spend / baseline revenue
Q4_RISE = {10: 0.20, 11: 0.35, 12: 0.30}
PRICE_ELASTICITY = 1.4
PROMO_LIFT = 0.18
PROMO_DISCOUNT = 0.08
KPI_DOW = [0.96, 0.97, 0.98, 1.0, 1.04, 1.06, 0.99]
AOV = 55.0

# campaigns: (platform key, channel, campaign_id, campaign_name, share of the channel's delivery, ctr, cvr)
PLATFORMS = {
    "google_ads": {"file": "google_ads.csv", "platform": "google_ads", "source_relation": "google_ads.daily",
                   "account_id": "5550001111", "account_name": "Northwind Google"},
    "facebook_ads": {"file": "facebook_ads.csv", "platform": "Facebook Ads",
                     "source_relation": "facebook_ads.daily", "account_id": "act_880011",
                     "account_name": "Northwind Meta"},
    "amazon_ads": {"file": "amazon_ads.csv", "platform": "amazon_ads", "source_relation": "amazon_ads.daily",
                   "account_id": "ENTITY9NW", "account_name": "Northwind Amazon"},
}
CAMPAIGNS = [
    ("google_ads", "video", "71000001", "YouTube - Reach", 1.0, 0.004, 0.01),
    ("google_ads", "search", "71000002", "Search - Brand", 0.45, 0.09, 0.08),
    ("google_ads", "search", "71000003", "Search - Generic", 0.55, 0.04, 0.035),
    ("facebook_ads", "social", "6120001", "Prospecting", 0.6, 0.009, 0.02),
    ("facebook_ads", "social", "6120002", "Retargeting", 0.4, 0.014, 0.05),
    ("amazon_ads", "retail", "AMZ-SP-9", "Sponsored Products", 0.7, 0.0, 0.11),
    ("amazon_ads", "retail", "AMZ-SB-9", "Sponsored Brands", 0.3, 0.0, 0.07),
]
CHANNELS_CSV = (
    "channel,platform,campaign_pattern,unit,currency\n"
    "video,google_ads,youtube,impressions,USD\n"
    "search,google_ads,,clicks,USD\n"
    "social,facebook_ads,,impressions,USD\n"
    "retail,amazon_ads,,spend,USD\n"
)

# Lift tests: id, channel, geo index (None = national), start week (from START), start weekday offset,
# days, scope. Two or more per tested channel, one national, one `total`, one starting mid-week.
TESTS = {
    "hill_daily": [
        ("HD-01", "social", 1, 30, 0, 28, "window"),
        ("HD-02", "social", 4, 52, 2, 21, "total"),
        ("HD-03", "social", None, 74, 0, 14, "window"),
        ("HD-04", "search", 0, 40, 0, 42, "window"),
        ("HD-05", "search", 5, 62, 0, 56, "window"),
    ],
    "weibull_lag": [
        ("WL-01", "video", 2, 28, 0, 28, "window"),
        ("WL-02", "video", None, 70, 0, 21, "window"),
        ("WL-03", "retail", 1, 44, 0, 42, "total"),
        ("WL-04", "retail", 4, 60, 0, 14, "window"),
        ("WL-05", "social", 0, 36, 3, 35, "window"),
        ("WL-06", "social", 5, 80, 0, 21, "window"),
    ],
}
STRUCTURE_ID = {"hill_daily": 101, "weibull_lag": 102}


@dataclass
class Cal:
    n_days: int          # burn-in + data + horizon
    burn: int            # first data day index
    data_end: int        # one past the last data day
    dates: pd.DatetimeIndex
    dow: np.ndarray
    week: np.ndarray     # week index from the burn-in's first Monday
    doy: np.ndarray
    month: np.ndarray

    @classmethod
    def make(cls) -> "Cal":
        first = pd.Timestamp(START) - pd.Timedelta(days=7 * BURN_WEEKS)
        n = 7 * (BURN_WEEKS + N_WEEKS + HORIZON_WEEKS)
        dates = pd.date_range(first, periods=n, freq="D")
        return cls(n_days=n, burn=7 * BURN_WEEKS, data_end=7 * (BURN_WEEKS + N_WEEKS), dates=dates,
                   dow=np.asarray(dates.dayofweek), week=np.arange(n) // 7,
                   doy=np.asarray(dates.dayofyear, float), month=np.asarray(dates.month))


def _weekly_pattern(rng, n_weeks: int, week_doy: np.ndarray) -> np.ndarray:
    """A channel's national weekly budget multiplier (mean 1): season, trend, bursts, dips, Q4, noise."""
    t = week_doy / 365.25
    w = np.arange(n_weeks)
    m = (1 + rng.uniform(0.15, 0.35) * np.sin(2 * np.pi * (t - rng.uniform()))) \
        * np.exp(rng.uniform(-0.25, 0.35) * (w / n_weeks - 0.5))
    for _ in range(int(rng.integers(5, 9))):
        s = int(rng.integers(0, n_weeks - 4))
        m[s: s + int(rng.integers(2, 5))] *= rng.uniform(1.4, 2.0)
    for _ in range(int(rng.integers(3, 6))):
        s = int(rng.integers(0, n_weeks - 4))
        m[s: s + int(rng.integers(2, 4))] *= rng.uniform(0.35, 0.6)
    m[(t > 0.86) & (t < 0.97)] *= 1.3
    m *= np.exp(rng.normal(0, 0.15, n_weeks))
    return m / m.mean()


def _promotions(rng, cal: Cal, G: int) -> np.ndarray:
    """(days, G) 0/1 promotion days: national sales every 5-9 weeks (4-7 days, any weekday) and
    1-2 geo-only events a year per geo."""
    promo = np.zeros((cal.n_days, G))
    d = int(rng.integers(10, 40))
    while d < cal.n_days:
        promo[d: d + int(rng.integers(4, 8)), :] = 1
        d += int(rng.integers(35, 64))
    years = cal.n_days / 365.25
    for g in range(G):
        for _ in range(int(rng.poisson(1.5 * years))):
            s = int(rng.integers(0, cal.n_days - 7))
            promo[s: s + int(rng.integers(3, 6)), g] = 1
    return promo


def _kernels(rng, structure: str, G: int, C: int) -> tuple[np.ndarray, dict]:
    if structure == "hill_daily":
        L = 120
        alpha_c = rng.uniform(0.6, 0.92, C)
        logit = np.log(alpha_c / (1 - alpha_c))[None, :] + rng.normal(0, 0.1, (G, C))
        alpha = 1 / (1 + np.exp(-logit))
        k = np.power(alpha[..., None], np.arange(L)[None, None, :])
        return k, {"type": "geometric_daily_unnormalised", "alpha": alpha.tolist(), "l_max_days": L,
                   "weights": "alpha**l, l = 0..119 (sum ~ 1/(1-alpha))"}
    L = 90
    shape_c = rng.uniform(1.5, 3.0, C)
    scale_c = rng.uniform(4.0, 15.0, C)
    shape = shape_c[None, :] * np.exp(rng.normal(0, 0.05, (G, C)))
    scale = scale_c[None, :] * np.exp(rng.normal(0, 0.08, (G, C)))
    t = np.arange(L)[None, None, :] + 0.5
    pdf = (shape[..., None] / scale[..., None]) * (t / scale[..., None]) ** (shape[..., None] - 1) \
        * np.exp(-(t / scale[..., None]) ** shape[..., None])
    k = pdf / pdf.max(axis=-1, keepdims=True)
    return k, {"type": "weibull_pdf_daily", "shape": shape.tolist(), "scale_days": scale.tolist(), "l_max_days": L,
               "weights": "Weibull pdf at l + 0.5 days, divided by its largest weight (peak weight 1)"}


def build(structure: str, seed: int) -> dict:
    """Everything of one dataset: frames to write, the true process and the truth dict."""
    if structure not in STRUCTURE_ID:
        raise ValueError(f"unknown daily structure {structure!r}")
    rng = np.random.default_rng([STRUCTURE_ID[structure], int(seed)])
    cal = Cal.make()
    G, C = len(GEOS), len(CHANNELS)
    pop = np.rint(np.array(POPULATION_M) * 1e6 * np.exp(rng.uniform(-0.04, 0.04, G)))  # as geos.csv says
    n_weeks_all = cal.n_days // 7
    week_doy = np.asarray(pd.date_range(cal.dates[0], periods=n_weeks_all, freq="7D").dayofyear, float)

    # ---- spend: weekly budgets per channel (video shares social's pattern), geo levels, promotions
    pattern = {ch: _weekly_pattern(rng, n_weeks_all, week_doy) for ch in CHANNELS}
    pattern["video"] = pattern["social"] * np.exp(rng.normal(0, CORR_NOISE, n_weeks_all))
    promo = _promotions(rng, cal, G)
    promo_week = np.zeros((n_weeks_all, G))
    np.maximum.at(promo_week, cal.week, promo)
    boost = {ch: rng.uniform(1.3, 1.5) for ch in PROMO_BOOSTED}
    base_pc = BASELINE_PER_CAPITA * np.exp(rng.normal(0, 0.1, G))
    spend_pc = {ch: MEDIA_SPEND_SHARE * BASELINE_PER_CAPITA * CHANNEL_SPEC[ch]["share"] for ch in CHANNELS}
    geo_level = np.exp(rng.normal(0, 0.2, (G, C)))
    weekly_budget = np.zeros((n_weeks_all, G, C))
    for c, ch in enumerate(CHANNELS):
        wiggle = np.exp(rng.normal(0, 0.08, (n_weeks_all, G)))
        b = pop[None, :] * spend_pc[ch] * geo_level[None, :, c] * 7 * pattern[ch][:, None] * wiggle
        if ch in PROMO_BOOSTED:
            b = b * np.where(promo_week > 0, boost[ch], 1.0)
        weekly_budget[:, :, c] = b
    dow_prof = np.array([np.array(CHANNEL_SPEC[ch]["dow"]) / np.sum(CHANNEL_SPEC[ch]["dow"]) for ch in CHANNELS])
    daily_noise = np.exp(rng.normal(0, 0.06, (cal.n_days, G, C)))
    spend_target = weekly_budget[cal.week] * dow_prof.T[cal.dow][:, None, :] * daily_noise

    # ---- cost per unit (money per delivery unit), continued into the horizon
    season = 1 + 0.05 * np.cos(2 * np.pi * cal.doy / 365.25) + np.array([Q4_RISE.get(int(m), 0.0) for m in cal.month])
    base_cpu = np.array([CHANNEL_SPEC[ch]["cpu"] / (1000.0 if UNIT[ch] == "impressions" else 1.0)
                         for ch in CHANNELS])
    cpu = base_cpu[None, None, :] * season[:, None, None] * np.array(GEO_COST)[None, :, None] \
        * np.exp(rng.normal(0, 0.04, (cal.n_days, G, C)))
    spend_ch = np.array([UNIT[ch] == "spend" for ch in CHANNELS])
    cpu[:, :, spend_ch] = 1.0

    # ---- lift tests: extra spend on the actual path
    tests = []
    mult = np.ones((cal.n_days, G, C))
    for tid, ch, gi, wk, off, nd, scope in TESTS[structure]:
        frac = float(rng.uniform(0.3, 0.6))
        d0 = cal.burn + 7 * wk + off
        geos_sel = list(range(G)) if gi is None else [gi]
        c = CHANNELS.index(ch)
        mask = np.zeros((cal.n_days, G, C), dtype=bool)
        for g in geos_sel:
            mask[d0: d0 + nd, g, c] = True
        mult[mask] *= 1 + frac
        tests.append({"test_id": tid, "channel": ch, "geos_idx": geos_sel, "national": gi is None, "d0": d0,
                      "n_days": nd, "scope": scope, "frac": frac, "mask": mask})

    def realise(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(units, spend) as written: integer units for impressions/clicks, cents for money."""
        units = target / cpu
        units[:, :, ~spend_ch] = np.rint(units[:, :, ~spend_ch])
        units[:, :, spend_ch] = np.round(target[:, :, spend_ch], 2)
        spend = np.round(units * cpu, 2)
        spend[:, :, spend_ch] = units[:, :, spend_ch]
        return units, spend

    units, spend = realise(spend_target * mult)
    units[cal.data_end:] = 0.0   # the horizon holds no delivery: only its cost process is used
    spend[cal.data_end:] = 0.0

    # ---- the true media process
    kernel, kernel_info = _kernels(rng, structure, G, C)
    proc_profile = dow_prof  # (C, 7), Monday first: the week's spend as the data spend it
    # typical per-capita daily units and their steady-state adstock: the saturation point's reference
    ref_units_pc = np.array([spend_pc[ch] / (base_cpu[c] * np.mean(GEO_COST)) for c, ch in enumerate(CHANNELS)])
    ref_adstock = ref_units_pc[None, :] * kernel.sum(axis=-1)           # (G, C) per capita
    k_rel = rng.uniform(0.6, 1.5, C)[None, :] * np.exp(rng.normal(0, 0.15, (G, C)))
    K = k_rel * ref_adstock
    if structure == "hill_daily":
        family = "hill"
        s = rng.uniform(1.3, 2.4, C)[None, :] * np.exp(rng.normal(0, 0.05, (G, C)))
        params = {"K": K, "s": s}
        sat_ref = 1 / (1 + (1 / k_rel) ** (-s))      # Hill at z = ref: (1/k)^s / (1 + (1/k)^s)
        sat_info = {"type": "hill", "formula": "z^s / (z^s + K^s), z = adstocked units per capita",
                    "s": s.tolist(), "K_per_capita": K.tolist()}
    else:
        family = "stretched_exp"
        rho = rng.uniform(0.55, 0.9, C)[None, :] * np.exp(rng.normal(0, 0.05, (G, C)))
        params = {"K": K, "rho": rho}
        sat_ref = 1 - np.exp(-np.power(1 / k_rel, rho))
        sat_info = {"type": "stretched_exponential", "formula": "1 - exp(-(z/K)^rho), z = adstocked units per capita",
                    "rho": rho.tolist(), "K_per_capita": K.tolist()}
    roas_target = np.array([rng.uniform(*CHANNEL_SPEC[ch]["roas"]) for ch in CHANNELS])
    beta_pc = roas_target[None, :] * np.array([spend_pc[ch] for ch in CHANNELS])[None, :] / sat_ref \
        * np.exp(rng.normal(0, 0.15, (G, C)))     # KPI per person per day at saturation
    proc = MediaProcess(geos=list(GEOS), channels=list(CHANNELS), periods_per_week=7, profile=proc_profile,
                        kernel=kernel, family=family, params=params,
                        input_scale=np.repeat(pop[:, None], C, axis=1), out_scale=pop[:, None] * beta_pc,
                        notes={"input_scale": "population (z is per capita)",
                               "out_scale": "population x per-capita ceiling (KPI per day)"})
    contrib = proc.contributions(units)

    # ---- KPI
    t = cal.doy / 365.25
    phase1, phase2 = rng.uniform(0, 2 * np.pi, 2)
    season_kpi = 1 + 0.08 * np.sin(2 * np.pi * t + phase1) + 0.04 * np.cos(4 * np.pi * t + phase2)
    md = np.asarray(cal.dates.month) * 100 + np.asarray(cal.dates.day)
    holiday = np.where((md >= 1120) & (md <= 1224), 0.12, 0.0)
    trend_share = float(rng.uniform(-0.05, 0.10))
    trend = 1 + trend_share * np.clip((np.arange(cal.n_days) - cal.burn) / (cal.data_end - cal.burn), 0, 1)
    kpi_dow = np.array(KPI_DOW)[cal.dow] / np.mean(KPI_DOW)
    # price index: list-price steps per geo (national moves plus geo-only ones), promotion discount, noise
    price = np.full((cal.n_days, G), 100.0)
    for _ in range(int(rng.integers(3, 6))):
        price[int(rng.integers(0, cal.n_days)):] *= 1 + rng.normal(0.01, 0.03)
    for g in range(G):
        for _ in range(int(rng.integers(1, 4))):
            price[int(rng.integers(0, cal.n_days)):, g] *= 1 + rng.normal(0.0, 0.03)
    price = price * (1 - PROMO_DISCOUNT * promo) * np.exp(rng.normal(0, 0.004, (cal.n_days, G)))
    price = np.round(price, 2)
    level = pop[None, :] * base_pc[None, :] * season_kpi[:, None] * (1 + holiday)[:, None] * trend[:, None] \
        * kpi_dow[:, None]
    baseline = level * (price / 100.0) ** (-PRICE_ELASTICITY) * (1 + PROMO_LIFT * promo)
    base_mean = (pop * base_pc)
    shock = np.zeros((n_weeks_all, G))
    e = rng.normal(0, 1, (n_weeks_all, G))
    for w in range(n_weeks_all):
        shock[w] = (0.5 * shock[w - 1] if w else 0) + e[w]
    noise = rng.normal(0, 0.03, (cal.n_days, G)) * base_mean[None, :] + 0.015 * shock[cal.week] * base_mean[None, :]
    y = baseline + contrib.sum(axis=2) + noise

    # ---- lift tests: truth by re-simulation, readouts
    lift_rows, lift_truths = [], []
    for tst in tests:
        m_wo = np.where(tst["mask"], mult / (1 + tst["frac"]), mult)
        u_wo, s_wo = realise(spend_target * m_wo)
        u_wo[cal.data_end:] = 0.0
        s_wo[cal.data_end:] = 0.0
        window = slice(tst["d0"], tst["d0"] + tst["n_days"])
        tr = lift_truth(proc, units, u_wo, window, tst["geos_idx"], cal.data_end)
        c = CHANNELS.index(tst["channel"])
        delta_spend = float(round((spend - s_wo)[:, :, c][window][:, tst["geos_idx"]].sum(), 2))
        delta_units = float((units - u_wo)[:, :, c][window][:, tst["geos_idx"]].sum())
        true_scope = tr["true_delta_y_total"] if tst["scope"] == "total" else tr["true_delta_y_window"]
        frac_sigma = sigma_fraction(tst["n_days"] / 7)
        sigma = abs(true_scope) * frac_sigma
        observed = true_scope + float(rng.normal(0, sigma))
        start = cal.dates[tst["d0"]].date()
        end = start + timedelta(days=tst["n_days"] - 1)
        geo = "" if tst["national"] else GEOS[tst["geos_idx"][0]]
        lift_rows.append({"test_id": tst["test_id"], "channel": tst["channel"], "geo": geo,
                          "start_date": start.isoformat(), "end_date": end.isoformat(), "delta_spend": delta_spend,
                          "delta_y": round(observed, 2), "sigma": round(sigma, 2), "scope": tst["scope"]})
        lift_truths.append({"test_id": tst["test_id"], "channel": tst["channel"], "geo": geo,
                            "geos": [GEOS[g] for g in tst["geos_idx"]], "national": tst["national"],
                            "start_date": start.isoformat(), "end_date": end.isoformat(), "n_days": tst["n_days"],
                            "scope": tst["scope"], "spend_increase_fraction": tst["frac"],
                            "delta_spend": delta_spend, "delta_units": delta_units, **tr,
                            "true_delta_y_reported_scope": true_scope, "sigma_fraction": frac_sigma,
                            "delta_y": round(observed, 2), "sigma": round(sigma, 2)})

    # ---- frames as written (data days only)
    data = slice(cal.burn, cal.data_end)
    frames = _ad_frames(rng, cal, units[data], spend[data], cpu[data])
    dates = cal.dates[data].strftime("%Y-%m-%d").to_numpy()
    nd = len(dates)
    rev = np.round(y[data], 2)
    kpi = pd.DataFrame({"date_day": np.repeat(dates, G), "geo": np.tile(GEOS, nd), "revenue": rev.reshape(-1),
                        "orders": np.rint(rev / AOV).astype(np.int64).reshape(-1)})
    controls = {
        "promo": pd.DataFrame({"date_day": np.repeat(dates, G), "geo": np.tile(GEOS, nd),
                               "promo": promo[data].astype(int).reshape(-1)}),
        "price": pd.DataFrame({"date_day": np.repeat(dates, G), "geo": np.tile(GEOS, nd),
                               "price_index": price[data].reshape(-1)}),
    }
    geos_df = pd.DataFrame({"geo": GEOS, "population": np.rint(pop).astype(np.int64)})

    # ---- truth
    train = slice(cal.burn, cal.data_end)
    figs = cell_figures(proc, units, spend, train, HORIZON_WEEKS, spend_ch)
    hz = slice(cal.data_end, cal.data_end + 7 * HORIZON_WEEKS)
    ctx = PlanContext(history_units=units[cal.data_end - proc.L: cal.data_end], horizon_cpu=cpu[hz],
                      horizon_weeks=HORIZON_WEEKS)
    wk_spend = spend[data].reshape(N_WEEKS, 7, G, C).sum(axis=1)
    corr_geo = [float(np.corrcoef(wk_spend[:, g, CHANNELS.index(CORRELATED[0])],
                                  wk_spend[:, g, CHANNELS.index(CORRELATED[1])])[0, 1]) for g in range(G)]
    nat = wk_spend.sum(axis=1)
    media_share = float(contrib[data].sum() / y[data].sum())
    promo_wk = promo[data].reshape(N_WEEKS, 7, G).sum(axis=1)
    truth = {
        "structure": structure, "seed": int(seed), "generator": f"mmm_pipeline.sample.offfamily ({structure})",
        "dates": {"start": cal.dates[cal.burn].date().isoformat(), "end": cal.dates[cal.data_end - 1].date().isoformat(),
                  "n_weeks": N_WEEKS, "grain": "daily", "burn_in_weeks": BURN_WEEKS,
                  "horizon_start": cal.dates[cal.data_end].date().isoformat(), "horizon_weeks": HORIZON_WEEKS},
        "geos": GEOS, "population": {g: float(p) for g, p in zip(GEOS, np.rint(pop))},
        "markets": {"all": GEOS},
        "channels": {ch: {"unit": UNIT[ch]} for ch in CHANNELS},
        "kpi": {"column": "revenue", "currency": "USD"},
        "process": proc.to_json(), "plan_context": ctx.to_json(),
        "adstock": kernel_info, "saturation": sat_info,
        "per_capita": {"baseline_per_day": base_pc.tolist(), "ceiling_per_day": beta_pc.tolist(),
                       "roas_target_at_reference": roas_target.tolist()},
        "cells": cells_json(proc, figs, UNIT),
        "lift_tests": lift_truths,
        "correlation": {"pair": list(CORRELATED), "weekly_spend_corr_by_geo": dict(zip(GEOS, corr_geo)),
                        "weekly_spend_corr_national": float(np.corrcoef(nat[:, CHANNELS.index(CORRELATED[0])],
                                                                        nat[:, CHANNELS.index(CORRELATED[1])])[0, 1])},
        "controls": {"promo": {"file": "controls/promo.csv", "aggregation": "sum", "lift_on_promo_days": PROMO_LIFT,
                               "discount": PROMO_DISCOUNT, "spend_boost_in_promo_weeks": boost,
                               "corr_promo_days_with_search_spend_mean_over_geos": float(np.mean([
                                   np.corrcoef(promo_wk[:, g], wk_spend[:, g, CHANNELS.index("search")])[0, 1]
                                   for g in range(G)]))},
                     "price": {"file": "controls/price.csv", "aggregation": "mean", "elasticity": PRICE_ELASTICITY,
                               "form": "baseline x (price_index / 100) ^ -elasticity"}},
        "baseline": {"season": "1 + 0.08 sin(2 pi doy/365.25 + p1) + 0.04 cos(4 pi doy/365.25 + p2)",
                     "phases": [float(phase1), float(phase2)], "holiday_bump": "x 1.12 from Nov 20 to Dec 24",
                     "trend_share_over_data": trend_share, "kpi_day_of_week": KPI_DOW},
        "media_share": media_share,
        "definitions": DEFINITIONS,
    }
    return {"frames": frames, "kpi": kpi, "controls": controls, "geos": geos_df,
            "lift": pd.DataFrame(lift_rows), "truth": truth, "channels_csv": CHANNELS_CSV,
            "pipeline_yaml": _pipeline_yaml(), "platforms": PLATFORMS,
            "_internal": {"proc": proc, "units": units, "spend": spend, "cpu": cpu, "cal": cal, "tests": tests,
                          "spend_target": spend_target, "mult": mult, "realise": realise, "y": y,
                          "train": train}}


def _pipeline_yaml() -> str:
    return ("kpi_column: revenue\n"
            "markets:\n"
            f"  all: [{', '.join(GEOS)}]\n"
            "# controls/promo.csv holds promotion days (a week's value is their count),\n"
            "# controls/price.csv a daily price index (a week's value is the mean)\n"
            "controls:\n"
            "  promo: sum\n"
            "  price_index: mean\n")


def _ad_frames(rng, cal: Cal, units: np.ndarray, spend: np.ndarray, cpu: np.ndarray) -> dict[str, pd.DataFrame]:
    """One Fivetran-shaped frame per platform: a row per day x geo x campaign."""
    nd, G, _ = units.shape
    dates = cal.dates[cal.burn: cal.data_end].strftime("%Y-%m-%d").to_numpy()
    season = 1 + 0.05 * np.cos(2 * np.pi * cal.doy[cal.burn: cal.data_end] / 365.25)
    parts: dict[str, list] = {p: [] for p in PLATFORMS}
    done: dict[str, np.ndarray] = {}
    for k, (plat, ch, cid, cname, share, ctr, cvr) in enumerate(CAMPAIGNS):
        c = CHANNELS.index(ch)
        u_ch, s_ch = units[:, :, c], spend[:, :, c]
        siblings = [x for x in CAMPAIGNS if x[1] == ch]
        last = siblings[-1][2] == cid
        if last:  # the channel's remainder, so its campaigns sum to the channel exactly
            u = u_ch - done.get(ch + ":u", 0.0)
            u = np.round(u, 2) if UNIT[ch] == "spend" else np.rint(u)
            s = np.round(s_ch - done.get(ch + ":s", 0.0), 2)
        else:
            u = np.rint(u_ch * share) if UNIT[ch] != "spend" else np.round(u_ch * share, 2)
            s = np.round(s_ch * share, 2) if UNIT[ch] == "spend" else np.round(u * cpu[:, :, c], 2)
            s = np.minimum(s, s_ch)
            done[ch + ":u"] = done.get(ch + ":u", 0.0) + u
            done[ch + ":s"] = done.get(ch + ":s", 0.0) + s
        if UNIT[ch] == "impressions":
            impressions, clicks = u, rng.binomial(u.astype(np.int64), ctr).astype(float)
        elif UNIT[ch] == "clicks":
            clicks, impressions = u, np.rint(u / (ctr * np.exp(rng.normal(0, 0.05, u.shape))))
        else:
            clicks = np.rint(s / (1.1 * season[:, None] * np.exp(rng.normal(0, 0.05, u.shape))))
            impressions = np.rint(1000 * s / (4.0 * season[:, None] * np.exp(rng.normal(0, 0.05, u.shape))))
        conv = rng.poisson(clicks * cvr).astype(np.int64)
        conv_value = np.round(conv * AOV * np.exp(rng.normal(0, 0.08, conv.shape)), 2)
        meta = PLATFORMS[plat]
        parts[plat].append(pd.DataFrame({
            "_d": np.repeat(np.arange(nd), G), "_k": k, "_g": np.tile(np.arange(G), nd),
            "source_relation": meta["source_relation"], "date_day": np.repeat(dates, G),
            "platform": meta["platform"], "account_id": meta["account_id"], "account_name": meta["account_name"],
            "campaign_id": cid, "campaign_name": cname,
            "clicks": clicks.reshape(-1).astype(np.int64), "impressions": impressions.reshape(-1).astype(np.int64),
            "spend": s.reshape(-1), "conversions": conv.reshape(-1), "conversions_value": conv_value.reshape(-1),
            "geo": np.tile(GEOS, nd)}))
    out = {}
    for plat, dfs in parts.items():
        df = pd.concat(dfs, ignore_index=True).sort_values(["_d", "_k", "_g"], kind="stable")
        out[plat] = df.drop(columns=["_d", "_k", "_g"]).reset_index(drop=True)
    return out


DEFINITIONS = {
    "x": "daily delivery units of the channel (its channels.csv unit) per geo; a week is Monday..Sunday",
    "contribution": "out_scale[g,c] * sat(adstock(units)[t] / input_scale[g,c]) per day (process.* in truth.json)",
    "roas": "sum over the data's days of KPI(actual) - KPI(cell's spend zero over the data days, burn-in kept), "
            "over the cell's spend in those days; carryover after the last day not counted",
    "current_weekly_spend": "mean weekly spend of the last 13 weeks of data",
    "cost_per_unit_used": "spend / units over the last 13 weeks (1 for a spend channel)",
    "steady_state_weekly_response": "KPI per week once a weekly spend, spread over days by the channel's "
                                    "day-of-week profile at cost_per_unit_used, has been sustained (periodic)",
    "mroas": "d(steady-state weekly response) / d(weekly spend) at current_weekly_spend",
    "response_plus10": "(steady-state weekly response at 1.1 x current - at current) x horizon_weeks",
    "lift": "KPI with the test's extra spend minus without (same noise), over the window's days (window) or "
            "from the window's first day to the end of the data (total); national: summed over the geos",
    "delta_y": "true lift in the test's scope + Normal(0, sigma); sigma = sigma_fraction x |true lift|",
    "plan_response": "process.plan_response: weekly money per cell held over the horizon, converted at the "
                     "horizon's true daily cost per unit, after the history (carry-in), over the horizon and "
                     "the kernel's tail, minus the same with no horizon spend",
}
