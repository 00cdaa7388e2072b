"""Tests for mmm_pipeline.sample: the deterministic sample folder and its truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mmm_pipeline.sample import generate_sample, main

START = pd.Timestamp("2024-01-01")
GEOS = ["US-CA", "US-TX", "US-WA", "US-NY", "US-FL", "US-IL"]
CHANNELS = ["youtube", "search", "social", "retail"]
BASE = ["source_relation", "date_day", "platform", "account_id", "account_name", "campaign_id", "campaign_name"]
METRICS = ["clicks", "impressions", "spend", "conversions", "conversions_value", "geo"]
AD = ["ad_group_id", "ad_group_name", "ad_id", "ad_name"]
FILES = ["google_ads.csv", "facebook_ads.csv", "tiktok_ads.parquet", "amazon_ads.csv"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("gen") / "sample"
    truth = generate_sample(out)
    return out, truth


def _read(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
        df["date_day"] = pd.to_datetime(df["date_day"]).dt.strftime("%Y-%m-%d")
        return df
    return pd.read_csv(path, dtype={"account_id": str, "campaign_id": str, "ad_group_id": str, "ad_id": str})


@pytest.fixture(scope="module")
def ads(sample) -> dict[str, pd.DataFrame]:
    out, _ = sample
    return {f.split(".")[0]: _read(out / "ad_reporting" / f) for f in FILES}


def _assign_channels(df: pd.DataFrame, catalogue: pd.DataFrame) -> pd.Series:
    plat = df["platform"].str.lower().str.replace(r"[^a-z0-9]+", "_", regex=True)
    channel = pd.Series(pd.NA, index=df.index, dtype="object")
    for row in catalogue.itertuples():
        pattern = row.campaign_pattern if isinstance(row.campaign_pattern, str) else ""
        hit = (plat == row.platform) & channel.isna()
        if pattern:
            hit &= df["campaign_name"].str.contains(pattern, flags=re.IGNORECASE, regex=True)
        channel[hit] = row.channel
    return channel


@pytest.fixture(scope="module")
def long(sample, ads) -> pd.DataFrame:
    out, _ = sample
    catalogue = pd.read_csv(out / "channels.csv", keep_default_na=False)
    units = dict(zip(catalogue.channel, catalogue.unit))
    df = pd.concat([d[BASE + METRICS] for d in ads.values()], ignore_index=True)
    df["channel"] = _assign_channels(df, catalogue)
    assert df["channel"].notna().all()
    df["units"] = [r[units[c]] for c, r in zip(df["channel"], df[["clicks", "impressions", "spend"]].to_dict("records"))]
    df["date"] = pd.to_datetime(df["date_day"])
    df["week"] = (df["date"] - START).dt.days // 7
    return df


def _weekly_x(long: pd.DataFrame, n_weeks: int) -> np.ndarray:
    agg = long.groupby(["week", "geo", "channel"])["units"].sum()
    x = np.zeros((n_weeks, len(GEOS), len(CHANNELS)))
    for (w, g, c), v in agg.items():
        x[w, GEOS.index(g), CHANNELS.index(c)] = v
    return x


def _model_media(x: np.ndarray, truth: dict) -> np.ndarray:
    scale = np.array([truth["unit_scale"][c] for c in CHANNELS])
    xs = x / scale
    contrib = np.zeros_like(xs)
    l_max = truth["adstock"]["l_max"]
    for gi, g in enumerate(GEOS):
        for ci, c in enumerate(CHANNELS):
            a, lam, beta = truth["alpha"][g][c], truth["lam"][g][c], truth["beta"][g][c]
            w = a ** np.arange(l_max)
            w = w / w.sum()
            ad = np.convolve(xs[:, gi, ci], w)[: len(xs)]
            contrib[:, gi, ci] = beta * (1 - np.exp(-lam * ad)) / (1 + np.exp(-lam * ad))
    return contrib


def _baseline(truth: dict) -> np.ndarray:
    weeks = pd.to_datetime(truth["dates"]["week_starts"])
    t = np.asarray(weeks.day_of_year, dtype=float) / truth["seasonality"]["period_days"]
    co = truth["seasonality"]["coefficients"]
    season = sum(co[f"sin_{k}"] * np.sin(2 * np.pi * k * t) + co[f"cos_{k}"] * np.cos(2 * np.pi * k * t) for k in (1, 2))
    icpt = np.array([truth["intercept"][g] for g in GEOS])
    # truth.json's documented trend form: baseline x (1 + trend * week / (n_weeks - 1))
    share = truth.get("trend", {}).get("share_over_two_years", 0.0)
    drift = 1 + share * np.linspace(0, 1, len(weeks))
    return icpt[None, :] * (1 + season[:, None]) * drift[:, None]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_deterministic_bytes(sample, tmp_path):
    out, truth = sample
    again = generate_sample(tmp_path / "again")
    assert again == truth
    a, b = _files(out), _files(tmp_path / "again")
    assert set(a) == {
        "ad_reporting/google_ads.csv", "ad_reporting/facebook_ads.csv", "ad_reporting/tiktok_ads.parquet",
        "ad_reporting/amazon_ads.csv", "kpi/kpi.csv", "controls/promo.csv", "channels.csv", "lift_tests.csv",
        "pipeline.yaml", "truth.json",
    }
    assert a == b
    assert not Path(str(tmp_path / "again") + ".tmp").exists()
    assert sum(len(v) for v in a.values()) < 8_500_000
    other = generate_sample(tmp_path / "other", seed=7)
    assert other["beta"] != truth["beta"]
    assert (tmp_path / "other" / "kpi" / "kpi.csv").read_bytes() != a["kpi/kpi.csv"]


def test_columns_exact(sample, ads):
    out, _ = sample
    for name, df in ads.items():
        expected = BASE + (AD if name == "facebook_ads" else []) + METRICS
        assert list(df.columns) == expected, name
    assert list(pd.read_csv(out / "kpi" / "kpi.csv").columns) == ["date_day", "geo", "revenue", "orders"]
    lt = pd.read_csv(out / "lift_tests.csv")
    assert list(lt.columns) == ["test_id", "channel", "geo", "start_date", "end_date", "delta_spend", "delta_y", "sigma",
                                "scope"]
    assert (out / "channels.csv").read_text().splitlines() == [
        "channel,platform,campaign_pattern,unit,currency",
        "youtube,google_ads,youtube,impressions,USD",
        "search,google_ads,,clicks,USD",
        "social,facebook_ads,,impressions,USD",
        "social,tiktok_ads,,impressions,USD",
        "retail,amazon_ads,,spend,USD",
    ]
    cfg = yaml.safe_load((out / "pipeline.yaml").read_text())
    assert list(pd.read_csv(out / "controls" / "promo.csv").columns) == ["date_day", "geo", "promo"]
    assert cfg == {"kpi_column": "revenue", "planning_horizon_weeks": 8, "controls": {"promo": "sum"},
                   "markets": {"west": ["US-CA", "US-TX", "US-WA"], "east": ["US-NY", "US-FL", "US-IL"]},
                   "lift_tests": {"baseline": "window"},
                   # the sample draws geo effects independently of geo size: one scale per market;
                   # its baseline drifts 5% over the two years: a linear trend; its season is two
                   # harmonics without a holiday peak: 2 Fourier modes, not the default 10
                   "model": {"yearly_seasonality": 2, "geo_scaling": "market", "trend": "linear"}}
    for df in ads.values():
        assert df["clicks"].dtype.kind == "i" and df["impressions"].dtype.kind == "i"
        assert np.allclose(df["spend"], df["spend"].round(2))
        assert (df[["clicks", "impressions", "spend", "conversions", "conversions_value"]] >= 0).all().all()


def test_dates_and_incomplete_last_week(sample, ads):
    out, truth = sample
    kpi = pd.read_csv(out / "kpi" / "kpi.csv")
    for df in [*ads.values(), kpi]:
        d = pd.to_datetime(df["date_day"])
        assert d.min() == pd.Timestamp("2024-01-01") and d.max() == pd.Timestamp("2025-12-31")
    assert pd.Timestamp("2024-01-01").day_of_week == 0 and pd.Timestamp("2025-12-31").day_of_week == 2
    days = pd.to_datetime(kpi["date_day"].unique())
    assert len(days) == 731
    weeks = (days - START).days // 7
    counts = pd.Series(weeks).value_counts().sort_index()
    assert len(counts) == 105 and (counts.iloc[:-1] == 7).all() and counts.iloc[-1] == 3
    assert truth["dates"]["n_weeks"] == 105 and truth["dates"]["last_week_complete"] is False
    assert len(kpi) == 731 * 6 and sorted(kpi["geo"].unique()) == sorted(GEOS)


def test_geos_platforms_campaigns(ads):
    assert set(ads["facebook_ads"]["platform"]) == {"Facebook Ads"}
    assert set(ads["google_ads"]["platform"]) == {"google_ads"}
    assert set(ads["tiktok_ads"]["platform"]) == {"tiktok_ads"}
    assert set(ads["amazon_ads"]["platform"]) == {"amazon_ads"}
    for df in ads.values():
        assert sorted(df["geo"].unique()) == sorted(GEOS)
        assert df["source_relation"].nunique() == 1 and df["account_id"].nunique() == 1
    g = ads["google_ads"]
    assert g["campaign_name"].nunique() >= 4
    assert {"Search - Brand", "Search - Generic", "Search - Competitor", "YouTube - Awareness"} <= set(g["campaign_name"])
    assert g.groupby("campaign_id")["campaign_name"].nunique().eq(1).all()
    fb = ads["facebook_ads"]
    assert fb["campaign_id"].nunique() == 3 and fb["ad_id"].nunique() == 6
    assert fb.groupby("campaign_id")["ad_id"].nunique().eq(2).all()
    # ad grain: several rows per (date, geo, campaign)
    assert fb.groupby(["date_day", "geo", "campaign_id"]).size().eq(2).all()
    assert ads["tiktok_ads"]["campaign_id"].nunique() == 2 and ads["amazon_ads"]["campaign_id"].nunique() == 2
    # complete grid for every campaign except YouTube, which misses some off-flight rows
    for name, df in ads.items():
        per = df.groupby(["campaign_id"] + (["ad_id"] if name == "facebook_ads" else [])).size()
        yt = df["campaign_name"].str.contains("youtube", case=False)
        full = per.drop(df.loc[yt, "campaign_id"].unique(), errors="ignore")
        assert (full == 731 * 6).all(), name
    yt = g[g["campaign_name"] == "YouTube - Awareness"]
    assert 731 * 6 - 6 * 7 * 6 <= len(yt) < 731 * 6  # rows missing for 2 off stretches
    zero_rows = yt[(yt["impressions"] == 0) & (yt["spend"] == 0) & (yt["clicks"] == 0)]
    assert len(zero_rows) >= 2 * 7 * 6
    weekly = yt.assign(week=(pd.to_datetime(yt["date_day"]) - START).dt.days // 7).groupby("week")["impressions"].sum()
    weekly = weekly.reindex(range(105), fill_value=0)
    assert (weekly == 0).sum() >= 10


def test_cost_per_unit_varies_by_week_and_geo(long):
    social = long[long["channel"] == "social"]
    q = social.groupby(social["date"].dt.to_period("Q"))[["spend", "impressions"]].sum()
    cpm = 1000 * q["spend"] / q["impressions"]
    assert 5 <= cpm.min() and cpm.max() <= 20
    assert cpm[pd.Period("2024Q4")] > 1.15 * cpm[pd.Period("2024Q2")]
    assert cpm[pd.Period("2025Q4")] > 1.15 * cpm[pd.Period("2025Q2")]
    wk = social.groupby("week")[["spend", "impressions"]].sum()
    weekly_cpm = 1000 * wk["spend"] / wk["impressions"]
    assert weekly_cpm.max() / weekly_cpm.min() > 1.3
    geo = social.groupby("geo")[["spend", "impressions"]].sum()
    geo_cpm = 1000 * geo["spend"] / geo["impressions"]
    assert geo_cpm["US-CA"] > 1.15 * geo_cpm["US-TX"] and geo_cpm["US-NY"] > 1.15 * geo_cpm["US-IL"]
    # per line item (mix-free): every campaign/geo is pricier in Q4 than in Q2
    item = long.assign(q=long["date"].dt.quarter, key=long["campaign_id"] + long["geo"])
    item = item[item["channel"].isin(["social", "youtube", "search"]) & item["q"].isin([2, 4])]
    unit_col = np.where(item["channel"] == "search", item["clicks"], item["impressions"])
    by = item.assign(u=unit_col).groupby(["key", "q"])[["spend", "u"]].sum()
    cpu = (by["spend"] / by["u"]).unstack()
    assert (cpu[4] > 1.2 * cpu[2]).all()
    search = long[long["channel"] == "search"]
    cpc = search["spend"].sum() / search["clicks"].sum()
    assert 0.8 <= cpc <= 3.0


def test_kpi_recomputed_from_ad_files(sample, long):
    out, truth = sample
    n_weeks = truth["dates"]["n_weeks"]
    x = _weekly_x(long, n_weeks)
    # units have a decent range and unit_scale is the max over weeks and geos
    for ci, c in enumerate(CHANNELS):
        assert x[:, :, ci].max() == pytest.approx(truth["unit_scale"][c], rel=1e-9)
        xc = x[:-1, :, ci]
        pos = xc[xc > 0]
        assert pos.max() / np.quantile(pos, 0.1) > 3, c
    kpi = pd.read_csv(out / "kpi" / "kpi.csv")
    kpi["week"] = (pd.to_datetime(kpi["date_day"]) - START).dt.days // 7
    y = kpi.pivot_table(index="week", columns="geo", values="revenue", aggfunc="sum")[GEOS].to_numpy()
    contrib = _model_media(x, truth)
    # the promotion control, recomputed from controls/promo.csv and its true effect per promotion day
    promo = pd.read_csv(out / "controls" / "promo.csv")
    promo["week"] = (pd.to_datetime(promo["date_day"]) - START).dt.days // 7
    days = promo.pivot_table(index="week", columns="geo", values="promo", aggfunc="sum")[GEOS].to_numpy()
    truth_promo = truth["controls"]["promo"]
    promo_contrib = days * np.array([truth_promo["effect_per_promo_day"][g] for g in GEOS])[None, :]
    np.testing.assert_allclose(promo_contrib.T, [truth_promo["weekly_contribution"][g] for g in GEOS])
    # promotions run with the social pushes: a confounder an MMM without the control would credit to social
    assert truth_promo["corr_weekly_days_with_social_spend"] > 0.4
    assert 0.02 < truth_promo["contribution_share"] < 0.06
    mu = _baseline(truth) + contrib.sum(axis=2) + promo_contrib
    sd = np.array([truth["noise_sd"][g] for g in GEOS])
    resid = (y - mu)[:-1]  # drop the incomplete week
    ratio = resid.std(axis=0) / sd
    assert (ratio < 2).all() and (ratio > 0.5).all(), ratio
    assert np.abs(resid.mean(axis=0) / sd).max() < 0.6
    # media matters: without it the fit is far worse
    assert ((y - _baseline(truth))[:-1].std(axis=0) > 1.3 * sd).all()
    # weekly sums equal the stored model y (incl. noise) up to cent rounding
    y_model = np.array([truth["weekly_revenue_model"][g] for g in GEOS]).T
    assert np.abs(y[:-1] - y_model[:-1]).max() < 0.05
    # contribution shares as documented, every channel identifiable
    total = y[:-1].sum()
    for ci, c in enumerate(CHANNELS):
        share = contrib[:-1, :, ci].sum() / total
        assert share == pytest.approx(truth["contribution_share"][c], rel=1e-3)
        assert share > 0.03
    assert 0.25 <= truth["media_share"] <= 0.40
    orders = kpi["revenue"] / kpi["orders"]
    assert 50 < orders.median() < 70


def test_lift_spend_present_in_ad_data(sample, long):
    out, truth = sample
    lt = pd.read_csv(out / "lift_tests.csv", keep_default_na=False)
    assert len(lt) == 5 and len(truth["lift_tests"]) == 5
    geo_tests = lt[lt["geo"] != ""]
    assert len(geo_tests) == 4 and set(geo_tests["geo"]) <= set(GEOS)
    assert {"social", "search", "youtube"} <= set(geo_tests["channel"])
    assert (lt["geo"] == "").sum() == 1
    n_weeks = truth["dates"]["n_weeks"]
    x_with = _weekly_x(long, n_weeks)
    contrib_with = _model_media(x_with, truth)
    for row, t in zip(lt.itertuples(), truth["lift_tests"]):
        start, end = pd.Timestamp(row.start_date), pd.Timestamp(row.end_date)
        n_days = (end - start).days + 1
        # tests of 2 to 8 weeks (issue 11), week-aligned
        assert start.day_of_week == 0 and start.year == 2025 and 14 <= n_days <= 56 and n_days % 7 == 0
        assert row.delta_spend == pytest.approx(t["delta_spend"], abs=0.01)
        geos = GEOS if row.geo == "" else [row.geo]
        sel = long[(long["channel"] == row.channel) & long["geo"].isin(geos)
                   & (long["date"] >= start) & (long["date"] <= end)]
        spend = sel["spend"].sum()
        # the extra money is really in the ad reports
        assert spend == pytest.approx(t["baseline_spend_window"] + t["delta_spend"], abs=0.05)
        assert 0.3 <= t["delta_spend"] / t["baseline_spend_window"] <= 0.6
        assert sel["units"].sum() > t["delta_units"] > 0
        if row.geo:
            # versus the other geos, the test geo's spend jumps in the window compared to the 4 weeks before
            ch = long[long["channel"] == row.channel]
            before = ch[(ch["date"] >= start - pd.Timedelta(days=28)) & (ch["date"] < start)]
            during = ch[(ch["date"] >= start) & (ch["date"] <= end)]
            share_before = before.loc[before["geo"] == row.geo, "spend"].sum() / before["spend"].sum()
            share_during = during.loc[during["geo"] == row.geo, "spend"].sum() / during["spend"].sum()
            assert share_during > 1.15 * share_before, row.test_id
        # the true lift is reproducible from the ad data and the truth parameters
        x_wo = x_with.copy()
        ci = CHANNELS.index(row.channel)
        w0 = (start - START).days // 7
        for g, dx in t["delta_units_weekly"].items():
            x_wo[w0: w0 + len(dx), GEOS.index(g), ci] -= np.array(dx)
        diff = (contrib_with - _model_media(x_wo, truth)).sum(axis=2)
        gi = [GEOS.index(g) for g in geos]
        lift = diff[w0: w0 + n_days // 7][:, gi].sum()
        assert lift == pytest.approx(t["true_delta_y_window"], rel=1e-4)
        # ... and so is the carryover after the window
        assert diff[w0 + n_days // 7:][:, gi].sum() == pytest.approx(t["true_delta_y_after_window"], rel=1e-4)
    lengths = sorted((pd.Timestamp(r.end_date) - pd.Timestamp(r.start_date)).days + 1 for r in lt.itertuples())
    assert lengths[0] == 14 and lengths[-1] == 56


def test_observed_lifts_within_noise(sample):
    out, truth = sample
    lt = pd.read_csv(out / "lift_tests.csv", keep_default_na=False)
    assert set(lt["scope"]) == {"window", "total"}
    for row, t in zip(lt.itertuples(), truth["lift_tests"]):
        assert row.test_id == t["test_id"] and row.scope == t["scope"]
        # the readout covers the window, plus the carryover for a `total` test
        assert t["true_delta_y_total"] == pytest.approx(t["true_delta_y_window"] + t["true_delta_y_after_window"])
        assert t["true_delta_y_after_window"] > 0.03 * t["true_delta_y_window"]
        true = t["true_delta_y_total"] if row.scope == "total" else t["true_delta_y_window"]
        assert t["true_delta_y_reported_scope"] == pytest.approx(true)
        assert true > 0
        assert 0.14 * true <= row.sigma <= 0.26 * true
        assert abs(row.delta_y - true) <= 4 * row.sigma
        assert row.delta_y == pytest.approx(t["delta_y"]) and row.sigma == pytest.approx(t["sigma"])


def test_truth_keys(sample):
    out, truth = sample
    on_disk = json.loads((out / "truth.json").read_text())
    assert on_disk == json.loads(json.dumps(truth))
    for key in ["dates", "geos", "channels", "unit_scale", "alpha", "lam", "beta", "population", "intercept",
                "seasonality", "noise_sd", "adstock", "contribution_share", "lift_tests", "definitions"]:
        assert key in truth
    assert truth["adstock"]["l_max"] == 8 and truth["adstock"]["normalize"] is True
    assert set(truth["alpha"]) == set(GEOS) and all(set(v) == set(CHANNELS) for v in truth["alpha"].values())
    assert {c: v["unit"] for c, v in truth["channels"].items()} == {
        "youtube": "impressions", "search": "clicks", "social": "impressions", "retail": "spend"}


def test_main_cli(tmp_path, capsys):
    target = tmp_path / "cli"
    assert main([str(target), "--seed", "3"]) == 0
    first = _files(target)
    assert "truth.json" in first and json.loads(first["truth.json"])["seed"] == 3
    (target / "marker").write_text("x")
    assert main([str(target)]) == 0
    assert "exists" in capsys.readouterr().out
    assert (target / "marker").exists()  # nothing touched
    assert main([str(target), "--force", "--seed", "3"]) == 0
    assert not (target / "marker").exists()
    assert _files(target) == first


def test_the_sample_has_a_mild_trend_and_its_pipeline_yaml_models_it(sample, tmp_path):
    """Issue 12: the embedded sample's baseline drifts 5% over two years; its pipeline.yaml says
    trend: linear (and geo_scaling: market, and the 2 Fourier modes of its smooth, holiday-free
    season); generated data without a trend or with size effects keeps the defaults it implies."""
    out, truth = sample
    assert truth["trend"]["share_over_two_years"] == 0.05
    assert yaml.safe_load((out / "pipeline.yaml").read_text())["model"] == {
        "yearly_seasonality": 2, "geo_scaling": "market", "trend": "linear"}
    plain = generate_sample(tmp_path / "plain", seed=11, size_effects=True)
    assert "trend" not in plain
    assert yaml.safe_load((tmp_path / "plain" / "pipeline.yaml").read_text())["model"] == {"yearly_seasonality": 2}


def test_trend_and_ramp_structure_for_the_recovery_bench(tmp_path):
    """bench/bench_recovery.py's `trend` dataset: the baseline drifts and a channel's volume ramps."""
    from mmm_pipeline.sample.simulate import build

    plain_frames, plain_kpi, _, plain_truth, _ = build(13)
    frames, kpi, _, truth, _ = build(13, trend=0.4, ramp=("search", 1.0))
    assert "trend" not in plain_truth and truth["trend"]["share_over_two_years"] == 0.4
    assert truth["ramp"] == {"driver": "search", "share_over_two_years": 1.0}
    google = [f for f in frames if "google" in f]
    ads, plain_ads = frames[google[0]], plain_frames[google[0]]
    search = ads["campaign_name"].str.startswith("Search")
    year = pd.to_datetime(ads["date_day"]).dt.year
    first, last = (ads[search & (year == y)]["clicks"].sum() / plain_ads[search & (year == y)]["clicks"].sum()
                   for y in (year.min() + 0, year.min() + 1))
    assert last > first * 1.3  # search volume rises against the plain sample over the years
    # the KPI's last weeks gain about 40% of the intercept over the plain sample's
    week = pd.to_datetime(kpi["date_day"]).dt.to_period("W")
    late = week >= week.max() - 8
    gain = (kpi[late & (kpi.geo == "US-CA")]["revenue"].sum() - plain_kpi[late & (plain_kpi.geo == "US-CA")]
            ["revenue"].sum()) / (9 * 7 * truth["intercept"]["US-CA"] / 7)
    assert 0.3 < gain < 0.6, gain


def test_size_effects_make_each_geos_ceiling_and_saturation_grow_with_its_size():
    """Generated data unlike the sample (bench/bench_recovery.py's corr, spread, trend): a geo 10x the
    size of another has a 10x ceiling and saturates at 10x the delivery, so its ROAS is not inflated
    by being small."""
    from mmm_pipeline.sample.simulate import build

    sizes = {"US-CA": 3.0, "US-TX": 1.6, "US-WA": 0.3, "US-NY": 2.4, "US-FL": 1.0, "US-IL": 0.3}
    _, _, _, plain, _ = build(11, geo_size=sizes)
    _, _, _, sized, _ = build(11, geo_size=sizes, size_effects=True)
    assert sized["structure"]["size_effects"] and not plain["structure"]["size_effects"]
    for c in CHANNELS:
        # the same draws: beta scaled by the size, lam by the largest size over the geo's
        assert sized["beta"]["US-CA"][c] / plain["beta"]["US-CA"][c] == pytest.approx(3.0)
        assert sized["beta"]["US-WA"][c] / plain["beta"]["US-WA"][c] == pytest.approx(0.3)
        assert sized["lam"]["US-WA"][c] / plain["lam"]["US-WA"][c] == pytest.approx(10.0)

    # every geo then owes about the same share of its KPI to media, whatever its size
    share = [sum(sized["contribution_share_by_geo"][g].values()) for g in GEOS]
    assert max(share) / min(share) < 1.15, share


def test_recovery_bench_redraws_readouts_around_the_truth(sample, tmp_path):
    """bench_recovery --readout-seeds: each seed's readouts are the true lift in the test's scope plus
    Normal(0, sigma) noise, reproducible per seed, different across seeds; the source folder is kept."""
    from bench.bench_recovery import readouts_around_truth

    folder, truth = sample
    before = (folder / "lift_tests.csv").read_text()
    true_lift = {t["test_id"]: t["true_delta_y_reported_scope"] for t in truth["lift_tests"]}
    draws = []
    for seed, name in [(1, "a"), (1, "b"), (2, "c")]:
        readouts_around_truth(folder, tmp_path / name, seed=seed)
        draws.append(pd.read_csv(tmp_path / name / "lift_tests.csv").set_index("test_id"))
    assert (folder / "lift_tests.csv").read_text() == before
    pd.testing.assert_frame_equal(draws[0], draws[1])
    assert not np.allclose(draws[0]["delta_y"], draws[2]["delta_y"])
    original = pd.read_csv(folder / "lift_tests.csv").set_index("test_id")
    for d in draws:
        z = (d["delta_y"] - d.index.map(true_lift)) / d["sigma"]
        assert (z.abs() < 4).all()
        pd.testing.assert_series_equal(d["sigma"], original["sigma"])  # only the readout changes
