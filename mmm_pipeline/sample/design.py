"""What the embedded sample is made of: calendar, geos, channels and their platforms, line items,
parameter populations, cost seasonality, YouTube flights and the lift tests (declarations only;
``simulate`` draws from them, ``generate`` writes the files)."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

DEFAULT_SEED = 20240101
DEFAULT_OUT_DIR = "data/sample"

START = date(2024, 1, 1)
END = date(2025, 12, 31)
L_MAX = 8

GEOS = ["US-CA", "US-TX", "US-WA", "US-NY", "US-FL", "US-IL"]
GEO_SIZE = {"US-CA": 1.40, "US-TX": 1.20, "US-WA": 0.65, "US-NY": 1.30, "US-FL": 1.00, "US-IL": 0.75}
GEO_COST = {"US-CA": 1.22, "US-TX": 0.92, "US-WA": 1.05, "US-NY": 1.28, "US-FL": 0.95, "US-IL": 0.90}
MARKETS = {"west": ["US-CA", "US-TX", "US-WA"], "east": ["US-NY", "US-FL", "US-IL"]}

CHANNELS = ["youtube", "search", "social", "retail"]
CHANNEL_UNIT = {"youtube": "impressions", "search": "clicks", "social": "impressions", "retail": "spend"}
CHANNEL_PLATFORMS = {
    "youtube": ["google_ads"],
    "search": ["google_ads"],
    "social": ["facebook_ads", "tiktok_ads"],
    "retail": ["amazon_ads"],
}
CHANNELS_CSV = (
    "channel,platform,campaign_pattern,unit,currency\n"
    "youtube,google_ads,youtube,impressions,USD\n"
    "search,google_ads,,clicks,USD\n"
    "social,facebook_ads,,impressions,USD\n"
    "social,tiktok_ads,,impressions,USD\n"
    "retail,amazon_ads,,spend,USD\n"
)
PIPELINE_YAML = (
    "kpi_column: revenue\n"
    "markets:\n"
    "  west: [US-CA, US-TX, US-WA]\n"
    "  east: [US-NY, US-FL, US-IL]\n"
    "planning_horizon_weeks: 8\n"
    "# The tests' extra spend is in the ad data, so the level each test ran on is the\n"
    "# window's own delivery less the added units (LT-2025-04 started as its budget rose).\n"
    "lift_tests:\n"
    "  baseline: window\n"
    "# controls/promo.csv holds promotion days: a week's value is their count\n"
    "controls:\n"
    "  promo: sum\n"
)
# The embedded sample's structure (generate_sample without keywords): the baseline grows 5% over the two
# years (issue 12: real baselines drift; the media delivery has trends of its own, so a model without
# a trend term would hand the drift to whichever channel grew).
SAMPLE_STRUCTURE = {"trend": 0.05}


def pipeline_model_yaml(*, size_effects: bool, trend: float) -> str:
    """The `model:` section of a generated folder's pipeline.yaml: what its generator implies."""
    # the generator's season is two harmonics and its KPI has no holiday peak: 2 modes, not the default 10
    lines = ["  yearly_seasonality: 2"]
    if not size_effects:
        # effects drawn independently of geo size (the sample's geos differ 2.2x): one scale per market
        # is the right model; data with `size_effects` keeps the default (`size`)
        lines.append("  geo_scaling: market")
    if trend:
        lines.append("  trend: linear")
    return "model:\n" + "\n".join(lines) + "\n"

BASE_COLUMNS = [
    "source_relation", "date_day", "platform", "account_id", "account_name",
    "campaign_id", "campaign_name",
]
AD_COLUMNS = ["ad_group_id", "ad_group_name", "ad_id", "ad_name"]
METRIC_COLUMNS = ["clicks", "impressions", "spend", "conversions", "conversions_value", "geo"]

PLATFORMS: dict[str, dict[str, str]] = {
    "google_ads": {"file": "google_ads.csv", "platform": "google_ads", "source_relation": "google_ads.daily",
                   "account_id": "4821937560", "account_name": "Acme Google"},
    "facebook_ads": {"file": "facebook_ads.csv", "platform": "Facebook Ads", "source_relation": "facebook_ads.daily",
                     "account_id": "act_1082736", "account_name": "Acme Meta"},
    "tiktok_ads": {"file": "tiktok_ads.parquet", "platform": "tiktok_ads", "source_relation": "tiktok_ads.daily",
                   "account_id": "7012345678", "account_name": "Acme TikTok"},
    "amazon_ads": {"file": "amazon_ads.csv", "platform": "amazon_ads", "source_relation": "amazon_ads.daily",
                   "account_id": "ENTITY3XK2", "account_name": "Acme Amazon"},
}

# Media "drivers": independent delivery patterns (social = facebook + tiktok).
# base = average daily units per geo of size 1 (impressions / clicks / USD).
DRIVERS: dict[str, dict[str, Any]] = {
    "youtube": {"channel": "youtube", "base": 160_000.0},
    "search": {"channel": "search", "base": 1_500.0},
    "facebook": {"channel": "social", "base": 230_000.0},
    "tiktok": {"channel": "social", "base": 170_000.0},
    "amazon": {"channel": "retail", "base": 1_300.0},
}

# Line items = rows of the ad reports per (date, geo).  cpu = CPM (impression
# channels), CPC (search) or 1 (retail, where units are USD).  For retail the
# secondary metrics use cpc2 / cpm2.
ITEMS: list[dict[str, Any]] = [
    {"platform": "google_ads", "driver": "search", "campaign_id": "20411001", "campaign_name": "Search - Brand",
     "share": 0.30, "cpu": 0.95, "ctr": 0.08, "cvr": 0.070},
    {"platform": "google_ads", "driver": "search", "campaign_id": "20411002", "campaign_name": "Search - Generic",
     "share": 0.50, "cpu": 1.75, "ctr": 0.04, "cvr": 0.035},
    {"platform": "google_ads", "driver": "search", "campaign_id": "20411003", "campaign_name": "Search - Competitor",
     "share": 0.20, "cpu": 2.55, "ctr": 0.03, "cvr": 0.025},
    {"platform": "google_ads", "driver": "youtube", "campaign_id": "20411004", "campaign_name": "YouTube - Awareness",
     "share": 1.00, "cpu": 8.00, "ctr": 0.003, "cvr": 0.010},
    {"platform": "facebook_ads", "driver": "facebook", "campaign_id": "2385101", "campaign_name": "Prospecting",
     "ad_group_id": "2385201", "ad_group_name": "Broad", "ad_id": "2385301", "ad_name": "Video A",
     "share": 0.25, "cpu": 9.00, "ctr": 0.009, "cvr": 0.020},
    {"platform": "facebook_ads", "driver": "facebook", "campaign_id": "2385101", "campaign_name": "Prospecting",
     "ad_group_id": "2385201", "ad_group_name": "Broad", "ad_id": "2385302", "ad_name": "Carousel",
     "share": 0.20, "cpu": 9.50, "ctr": 0.011, "cvr": 0.020},
    {"platform": "facebook_ads", "driver": "facebook", "campaign_id": "2385102", "campaign_name": "Lookalike",
     "ad_group_id": "2385202", "ad_group_name": "LAL 1%", "ad_id": "2385303", "ad_name": "Video B",
     "share": 0.17, "cpu": 11.00, "ctr": 0.010, "cvr": 0.030},
    {"platform": "facebook_ads", "driver": "facebook", "campaign_id": "2385102", "campaign_name": "Lookalike",
     "ad_group_id": "2385202", "ad_group_name": "LAL 1%", "ad_id": "2385304", "ad_name": "Static A",
     "share": 0.13, "cpu": 10.50, "ctr": 0.012, "cvr": 0.030},
    {"platform": "facebook_ads", "driver": "facebook", "campaign_id": "2385103", "campaign_name": "Retargeting",
     "ad_group_id": "2385203", "ad_group_name": "Site 30d", "ad_id": "2385305", "ad_name": "Catalog",
     "share": 0.14, "cpu": 13.50, "ctr": 0.015, "cvr": 0.050},
    {"platform": "facebook_ads", "driver": "facebook", "campaign_id": "2385103", "campaign_name": "Retargeting",
     "ad_group_id": "2385203", "ad_group_name": "Site 30d", "ad_id": "2385306", "ad_name": "Static B",
     "share": 0.11, "cpu": 12.50, "ctr": 0.013, "cvr": 0.050},
    {"platform": "tiktok_ads", "driver": "tiktok", "campaign_id": "1790001", "campaign_name": "TT - Spark Ads",
     "share": 0.60, "cpu": 6.50, "ctr": 0.008, "cvr": 0.012},
    {"platform": "tiktok_ads", "driver": "tiktok", "campaign_id": "1790002", "campaign_name": "TT - Creators",
     "share": 0.40, "cpu": 7.50, "ctr": 0.007, "cvr": 0.012},
    {"platform": "amazon_ads", "driver": "amazon", "campaign_id": "AMZ-SP-01", "campaign_name": "Sponsored Products",
     "share": 0.65, "cpu": 1.00, "cpc2": 1.05, "cpm2": 3.2, "cvr": 0.110},
    {"platform": "amazon_ads", "driver": "amazon", "campaign_id": "AMZ-SB-01", "campaign_name": "Sponsored Brands",
     "share": 0.35, "cpu": 1.00, "cpc2": 1.40, "cpm2": 4.5, "cvr": 0.070},
]

# Populations of the partially pooled geo parameters.
POPULATION = {
    "alpha": {  # logit scale
        "youtube": {"mu": 0.2, "sd": 0.25},
        "search": {"mu": -1.4, "sd": 0.25},
        "social": {"mu": -0.4, "sd": 0.25},
        "retail": {"mu": -0.85, "sd": 0.25},
    },
    "lam": {  # log scale
        "youtube": {"mu": float(np.log(3.0)), "sd": 0.15},
        "search": {"mu": float(np.log(3.5)), "sd": 0.15},
        "social": {"mu": float(np.log(3.5)), "sd": 0.15},
        "retail": {"mu": float(np.log(3.8)), "sd": 0.15},
    },
    "beta": {  # log scale, USD revenue per week
        "youtube": {"mu": float(np.log(95_000.0)), "sd": 0.20},
        "search": {"mu": float(np.log(110_000.0)), "sd": 0.20},
        "social": {"mu": float(np.log(95_000.0)), "sd": 0.20},
        "retail": {"mu": float(np.log(70_000.0)), "sd": 0.20},
    },
}
INTERCEPT_PER_SIZE = 280_000.0  # USD baseline revenue per week for a geo of size 1
SEASONALITY = {"sin_1": 0.05, "cos_1": 0.09, "sin_2": -0.03, "cos_2": 0.035}
NOISE_FRACTION = 0.05
# Promotions (controls/promo.csv): a day is a promotion day with a weekly probability that rises with the
# week's social delivery (promotions are planned with the social pushes, so an MMM without the control
# credits social with them); a promotion day adds `lift_per_day` of a baseline day's revenue.
PROMO = {"base_rate": 0.08, "max_rate": 0.7, "social_power": 2.0, "lift_per_day": 0.5}
KPI_DOW_WEIGHTS = [0.135, 0.130, 0.130, 0.135, 0.145, 0.165, 0.160]  # Mon..Sun, sums to 1
MEDIA_DOW = [1.03, 1.04, 1.03, 1.01, 0.97, 0.95, 0.97]
AOV = 60.0

# Cost seasonality: +Q4 rise by month (Oct-Dec), plus a mild yearly wave peaking in winter.
Q4_RISE = {10: 0.24, 11: 0.38, 12: 0.32}
COST_WAVE = 0.05

# YouTube off flights: (start week index, n weeks, rows missing?)
YOUTUBE_OFF = [(6, 3, True), (28, 4, False), (51, 2, False), (66, 3, True), (85, 2, False)]

# Lift tests: id, channel, geo ("" = national), start, n_days, scope of the readout
# ("window": the KPI gained during the test dates; "total": with the carryover after them).
# 2 to 8 weeks long; every tested channel has a geo test, social also the national one.
LIFT_TESTS = [
    ("LT-2025-01", "social", "US-TX", date(2025, 3, 3), 28, "window"),
    ("LT-2025-02", "search", "US-WA", date(2025, 4, 14), 14, "window"),
    ("LT-2025-03", "youtube", "US-FL", date(2025, 6, 2), 56, "window"),
    ("LT-2025-04", "retail", "US-IL", date(2025, 7, 21), 42, "total"),
    ("LT-2025-05", "social", "", date(2025, 9, 15), 28, "window"),
]


