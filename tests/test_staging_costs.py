"""Weekly staging and cost per unit, on hand-made data and on public fixtures."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import convert, cost_per_unit, ingest, staging
from mmm_pipeline.settings import load_pipeline_config
from tests.conftest import fixture_path


def run_domain(folder: Path, db: Path):
    """Ingest -> staging -> cost per unit through the domain functions (no Dagster)."""
    config, _ = load_pipeline_config(folder)
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        ingest.load_ad_reporting(con, folder, ingest.reporting_currency(con, config.reporting_currency))
        ingest.load_kpi(con, folder, config.kpi_column)
        cal = staging.build_calendar(con, config.geo_weights)
        media = staging.build_media_weekly(con, cal, config.geo_weights)
        kpi = staging.build_kpi_weekly(con, cal)
        quarantine = con.execute("SELECT * FROM raw.quarantine").df()
    cpu = cost_per_unit.compute_cost_per_unit(media)
    return cal, media, kpi, cpu, quarantine


def media_frame(units, spend, unit="impressions", geo="G", channel="c"):
    weeks = [date(2024, 1, 1) + timedelta(weeks=i) for i in range(len(units))]
    return pd.DataFrame({"week_start": weeks, "geo": geo, "channel": channel, "unit": unit,
                         "units": np.asarray(units, float), "spend": np.asarray(spend, float)})


def test_cost_per_unit_is_spend_over_units_and_imputes_undefined_weeks():
    m = media_frame([1000, 0, 2000, 4000, 1000], [10, 0, 40, 0, 10])
    cpu = cost_per_unit.compute_cost_per_unit(m, window=1).set_index("week_start")
    rates = cpu["cost_per_unit"].to_numpy()
    assert rates[0] == pytest.approx(0.01) and rates[2] == pytest.approx(0.02) and rates[4] == pytest.approx(0.01)
    # week 2: zero units and spend -> neighbours' spend-weighted rate (10+40)/(1000+2000)
    assert rates[1] == pytest.approx(50 / 3000)
    # week 4: units but no spend -> neighbours (40+10)/(2000+1000)
    assert rates[3] == pytest.approx(50 / 3000)
    assert cpu["imputed"].tolist() == [False, True, False, True, False]
    assert (cpu["cpm"] == 1000 * cpu["cost_per_unit"]).all()
    assert (rates > 0).all()


def test_imputation_falls_back_to_geo_then_channel_rate_and_spend_channels_are_one():
    a = media_frame([100] + [0] * 12 + [300], [1] + [0] * 12 + [9], geo="A")
    b = media_frame([0] * 14, [0] * 14, geo="B")
    s = media_frame([5, 0, 7], [5, 0, 7], unit="spend", channel="tv")
    cpu = cost_per_unit.compute_cost_per_unit(pd.concat([a, b, s]), window=2)
    mid = cpu[(cpu.geo == "A") & (cpu.week_start == date(2024, 3, 4))].iloc[0]
    assert mid.imputation == "geo_channel_mean" and mid.cost_per_unit == pytest.approx(10 / 400)
    assert (cpu[cpu.geo == "B"].imputation == "channel_mean").all()
    tv = cpu[cpu.channel == "tv"]
    assert (tv.cost_per_unit == 1.0).all() and not tv.imputed.any() and tv.cpm.isna().all()
    with pytest.raises(ValueError, match="channel 'c'"):
        cost_per_unit.compute_cost_per_unit(b, window=2)


def test_forecast_uses_trailing_rate_and_last_years_seasonal_shape():
    weeks = 120
    season = 1 + 0.3 * (np.arange(weeks) % 52 >= 39)  # Q4 dearer every year
    m = media_frame(np.full(weeks, 1000.0), 10 * season)
    cpu = cost_per_unit.compute_cost_per_unit(m)
    complete = sorted(cpu.week_start)
    fc = cost_per_unit.forecast_cost_per_unit(cpu, complete, horizon_weeks=8, trailing=8)
    assert fc.week_start.min() == complete[-1] + timedelta(weeks=1) and len(fc) == 8
    assert set(fc.method) == {"trailing_seasonal"}
    short = cost_per_unit.forecast_cost_per_unit(cpu.iloc[-20:], complete[-20:], horizon_weeks=4)
    assert set(short.method) == {"trailing"}
    assert short.cost_per_unit.iloc[0] == pytest.approx(cpu.cost_per_unit.iloc[-8:].mean())


def test_meridian_fixture_cost_per_unit_matches_its_constant_cpm(tmp_path):
    src = fixture_path("meridian_geo_media.csv")
    folder = tmp_path / "meridian"
    convert.convert_wide_table(src, folder, **convert.MERIDIAN_PRESET)
    cal, media, kpi, cpu, quarantine = run_domain(folder, tmp_path / "w.duckdb")
    assert quarantine.empty and cal.grain == "weekly" and cal.geo_mode == "geo"
    wide = pd.read_csv(src)
    assert len(cal.geos) == 20 and len(cal.weeks) == wide.time.nunique() == 156
    assert not kpi.incomplete_week.any() and not media.incomplete_week.any()
    for k in range(4):
        ch = f"channel{k}"
        want = wide.assign(week_start=pd.to_datetime(wide.time).dt.date).set_index(["geo", "week_start"])
        want = want[f"Channel{k}_spend"] / want[f"Channel{k}_impression"]
        got = cpu[cpu.channel == ch].set_index(["geo", "week_start"])
        has_imp = got.units > 0
        np.testing.assert_allclose(got.cost_per_unit[has_imp], want.loc[got.index[has_imp]], rtol=1e-9)
        cpm = got.cpm[has_imp]
        assert (cpm / cpm.median() - 1).abs().max() <= 2e-7, ch


def test_robyn_fixture_mixed_units_zero_weeks_and_na_strings(tmp_path):
    src = fixture_path("robyn_dt_simulated_weekly.csv")
    folder = tmp_path / "robyn"
    convert.convert_wide_table(src, folder, **convert.ROBYN_PRESET)
    # a missing value written as "na" in the ad report: quarantined, never read as zero
    ad = folder / "ad_reporting" / "wide_table.csv"
    lines = ad.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("spend")] = "na"
    lines[1] = ",".join(row)
    ad.write_text("\n".join(lines) + "\n")
    cal, media, kpi, cpu, quarantine = run_domain(folder, tmp_path / "w.duckdb")
    assert cal.geo_mode == "national" and cal.geos == ["national"]
    assert quarantine.reason.tolist() == ["missing spend"] and quarantine.source_row.tolist() == [1]
    units = cpu.groupby("channel").unit.first().to_dict()
    assert units == {"facebook": "impressions", "search": "clicks", "tv": "spend", "ooh": "spend", "print": "spend"}
    assert (cpu.cost_per_unit > 0).all()
    fb = cpu[cpu.channel == "facebook"]
    wide = pd.read_csv(src)
    zero_weeks = int(((wide.facebook_I == 0) | (wide.facebook_S == 0)).sum())
    assert fb.imputed.sum() >= zero_weeks - 1  # the quarantined row may belong to another channel
    # the week with impressions but no spend is imputed, not 0 and not infinite
    odd = wide[(wide.facebook_I > 0) & (wide.facebook_S == 0)]
    assert len(odd) == 1
    wk = pd.to_datetime(odd.DATE).dt.date.iloc[0]
    row = fb[fb.week_start == wk].iloc[0]
    assert row.imputed and np.isfinite(row.cost_per_unit) and row.cost_per_unit > 0
    observed = fb[~fb.imputed]
    np.testing.assert_allclose(observed.cost_per_unit, observed.spend / observed.units)


def test_geo_weights_split_rows_without_geo_otherwise_national(tmp_path):
    folder = tmp_path / "in"
    (folder / "ad_reporting").mkdir(parents=True)
    (folder / "kpi").mkdir()
    (folder / "channels.csv").write_text("channel,platform,campaign_pattern,unit,currency\ns,google_ads,,clicks,USD\n")
    days = pd.date_range("2024-01-01", "2024-01-21")
    pd.DataFrame({"source_relation": "g", "date_day": days.date, "platform": "google_ads", "account_id": "a",
                  "account_name": "a", "campaign_id": "c", "campaign_name": "c", "clicks": 10, "impressions": 100,
                  "spend": 5.0, "conversions": 0, "conversions_value": 0}).to_csv(folder / "ad_reporting" / "a.csv", index=False)
    pd.concat([pd.DataFrame({"date_day": days.date, "geo": g, "orders": 3.0}) for g in ("N", "S")]).to_csv(
        folder / "kpi" / "k.csv", index=False)
    cal, media, kpi, _, _ = run_domain(folder, tmp_path / "a.duckdb")
    assert cal.geo_mode == "national" and set(media.geo) == {"national"}
    assert kpi.kpi_value.tolist() == [42.0, 42.0, 42.0]  # 7 days x 2 geos x 3
    (folder / "pipeline.yaml").write_text("geo_weights: {N: 3, S: 1}\n")
    cal, media, kpi, _, _ = run_domain(folder, tmp_path / "b.duckdb")
    assert cal.geo_mode == "geo"
    spend = media.groupby("geo").spend.sum()
    assert spend["N"] == pytest.approx(0.75 * 105) and spend["S"] == pytest.approx(0.25 * 105)


def test_spine_fills_missing_weeks_flags_incomplete_and_lists_missing_kpi_weeks(tmp_path):
    folder = tmp_path / "in"
    (folder / "ad_reporting").mkdir(parents=True)
    (folder / "kpi").mkdir()
    (folder / "channels.csv").write_text("channel,platform,campaign_pattern,unit,currency\ns,google_ads,,clicks,USD\n")
    days = [d for d in pd.date_range("2024-01-01", "2024-01-24").date if not date(2024, 1, 8) <= d <= date(2024, 1, 14)]
    pd.DataFrame({"source_relation": "g", "date_day": days, "platform": "google_ads", "account_id": "a",
                  "account_name": "a", "campaign_id": "c", "campaign_name": "c", "clicks": 10, "impressions": 100,
                  "spend": 5.0, "conversions": 0, "conversions_value": 0, "geo": "N"}).to_csv(
        folder / "ad_reporting" / "a.csv", index=False)
    kdays = [d for d in pd.date_range("2024-01-01", "2024-01-24").date if not date(2024, 1, 15) <= d <= date(2024, 1, 21)]
    pd.DataFrame({"date_day": kdays, "geo": "N", "orders": 1.0}).to_csv(folder / "kpi" / "k.csv", index=False)
    cal, media, kpi, cpu, _ = run_domain(folder, tmp_path / "w.duckdb")
    assert media.week_start.tolist() == [date(2024, 1, 1), date(2024, 1, 8), date(2024, 1, 15), date(2024, 1, 22)]
    assert media.no_media.tolist() == [False, True, False, False]
    assert media.units.tolist() == [70, 0, 70, 30]
    assert media.incomplete_week.tolist() == [False, False, False, True]
    assert cal.complete_weeks == [date(2024, 1, 1), date(2024, 1, 8), date(2024, 1, 15)]
    missing = staging.missing_kpi_weeks(kpi, cal)
    assert missing.week_start.tolist() == [date(2024, 1, 15)] and missing.problem.tolist() == ["no KPI rows"]
    assert 0 not in kpi.kpi_value.tolist()
