"""Tests for mmm_pipeline.ingestion.convert (wide MMM table -> input-contract folder)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mmm_pipeline.ingestion.convert import (
    AD_REPORTING_COLUMNS,
    ROBYN_CHANNELS,
    ChannelSpec,
    convert_wide_table,
    detect_channels,
    main,
    parse_channel_arg,
)

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
MERIDIAN = FIXTURES / "meridian_geo_media.csv"
ROBYN = FIXTURES / "robyn_dt_simulated_weekly.csv"


def _fixture(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"public fixture {path.name} not found at {path} (expected ../shared/fixtures)")
    return path


@pytest.fixture
def meridian() -> Path:
    return _fixture(MERIDIAN)


@pytest.fixture
def robyn() -> Path:
    return _fixture(ROBYN)


def _header(path: Path) -> list[str]:
    with path.open(newline="") as fh:
        return next(csv.reader(fh))


def _read_out(path: Path) -> pd.DataFrame:
    # keep text columns as text; numbers parsed by pandas' (correctly rounded) parser
    return pd.read_csv(path, dtype={"date_day": str, "geo": str}, keep_default_na=False,
                       na_values=[""])


# ----------------------------------------------------------------------------- detection

def test_detect_channels_meridian_header(meridian):
    specs = detect_channels(_header(meridian))
    assert specs == [
        ChannelSpec(f"channel{i}", "impressions", f"Channel{i}_impression", f"Channel{i}_spend")
        for i in range(4)
    ]


def test_detect_channels_robyn_header_finds_nothing(robyn):
    # Robyn's _S/_I/_P suffixes are not auto-detected: ROBYN_CHANNELS is the mapping
    assert detect_channels(_header(robyn)) == []
    header = set(_header(robyn))
    for s in ROBYN_CHANNELS:
        assert s.spend_column in header
        assert s.units_column is None or s.units_column in header


def test_detect_channels_variants():
    cols = ["date", "TV_Spend", "search_clicks", "Search_spend", "social_impressions",
            "social_spend", "orphan_impressions", "kpi"]
    assert detect_channels(cols) == [
        ChannelSpec("tv", "spend", None, "TV_Spend"),
        ChannelSpec("search", "clicks", "search_clicks", "Search_spend"),
        ChannelSpec("social", "impressions", "social_impressions", "social_spend"),
    ]
    with pytest.raises(ValueError, match="both"):
        detect_channels(["a_impressions", "a_clicks", "a_spend"])


def test_channel_spec_validation():
    with pytest.raises(ValueError, match="unit"):
        ChannelSpec("x", "views", "x_v", "x_s")
    with pytest.raises(ValueError, match="units_column"):
        ChannelSpec("x", "clicks", None, "x_s")
    assert parse_channel_arg("TV:spend::tv_S") == ChannelSpec("tv", "spend", None, "tv_S")
    assert parse_channel_arg("fb:impressions:fb_I:fb_S") == ChannelSpec(
        "fb", "impressions", "fb_I", "fb_S")
    with pytest.raises(ValueError, match="expected"):
        parse_channel_arg("fb:impressions")


# ----------------------------------------------------------------------------- Meridian

def test_meridian_conversion(meridian, tmp_path):
    out = tmp_path / "contract"
    summary = convert_wide_table(meridian, out)

    assert summary["files"]["ad_reporting/wide_table.csv"] == 20 * 156 * 4
    assert summary["files"]["kpi/kpi.csv"] == 20 * 156
    assert [c["channel"] for c in summary["channels"]] == [f"channel{i}" for i in range(4)]
    assert summary["n_geos"] == 20 and summary["n_dates"] == 156
    assert summary["date_range"] == ["2021-01-25", "2024-01-15"]
    assert set(summary["ignored_columns"]) == {
        "competitor_activity_score_control", "sentiment_score_control",
        "revenue_per_conversion", "population"}
    assert summary["missing"]["spend_total"] == 0 and summary["missing"]["units_total"] == 0

    ad = _read_out(out / "ad_reporting" / "wide_table.csv")
    assert list(ad.columns) == AD_REPORTING_COLUMNS + ["geo"]
    assert len(ad) == 20 * 156 * 4
    assert ad["date_day"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert (ad["platform"] == ad["campaign_name"]).all()
    assert (ad["source_relation"] == ad["platform"] + ".wide_table").all()
    assert (ad["clicks"] == 0).all()
    assert (ad[["conversions", "conversions_value"]] == 0).all().all()

    src = pd.read_csv(meridian)
    src["date_day"] = pd.to_datetime(src["time"]).dt.strftime("%Y-%m-%d")
    for i in range(4):
        ch = ad[ad["platform"] == f"channel{i}"].merge(
            src[["date_day", "geo", f"Channel{i}_impression", f"Channel{i}_spend"]],
            on=["date_day", "geo"], how="inner", validate="one_to_one")
        assert len(ch) == 20 * 156
        # exact values survive the round trip ...
        np.testing.assert_array_equal(ch["spend"].to_numpy(), ch[f"Channel{i}_spend"].to_numpy())
        np.testing.assert_array_equal(ch["impressions"].to_numpy(),
                                      ch[f"Channel{i}_impression"].to_numpy())
        # ... so spend per impression reproduces the source's
        np.testing.assert_allclose(
            (ch["spend"] / ch["impressions"]).to_numpy(),
            (ch[f"Channel{i}_spend"] / ch[f"Channel{i}_impression"]).to_numpy(),
            rtol=1e-12, atol=0)

    kpi = _read_out(out / "kpi" / "kpi.csv")
    assert list(kpi.columns) == ["date_day", "geo", "conversions"]
    assert len(kpi) == 20 * 156
    merged = kpi.merge(src[["date_day", "geo", "conversions"]], on=["date_day", "geo"],
                       suffixes=("", "_src"), validate="one_to_one")
    np.testing.assert_array_equal(merged["conversions"], merged["conversions_src"])

    assert (out / "channels.csv").read_text().splitlines() == [
        "channel,platform,campaign_pattern,unit,currency",
        *[f"channel{i},channel{i},,impressions,USD" for i in range(4)],
    ]
    assert yaml.safe_load((out / "pipeline.yaml").read_text()) == {"kpi_column": "conversions"}


# ----------------------------------------------------------------------------- Robyn

def test_robyn_conversion_with_preset_channels(robyn, tmp_path):
    out = tmp_path / "robyn"
    summary = convert_wide_table(robyn, out, date_column="DATE", geo_column=None,
                                 kpi_column="revenue", channels=ROBYN_CHANNELS)
    assert [(c["channel"], c["unit"]) for c in summary["channels"]] == [
        ("facebook", "impressions"), ("search", "clicks"),
        ("tv", "spend"), ("ooh", "spend"), ("print", "spend")]
    assert summary["geos"] is None
    assert set(summary["ignored_columns"]) == {"competitor_sales_B", "events", "newsletter"}
    assert summary["files"]["ad_reporting/wide_table.csv"] == 208 * 5

    ad = _read_out(out / "ad_reporting" / "wide_table.csv")
    assert list(ad.columns) == AD_REPORTING_COLUMNS  # national: no geo column
    assert ad["spend"].notna().all()

    src = pd.read_csv(robyn, na_values=["na"])
    src["date_day"] = pd.to_datetime(src["DATE"]).dt.strftime("%Y-%m-%d")
    for name, col in [("tv", "tv_S"), ("ooh", "ooh_S"), ("print", "print_S"),
                      ("facebook", "facebook_S"), ("search", "search_S")]:
        ch = ad[ad["platform"] == name].merge(src, on="date_day", validate="one_to_one")
        assert len(ch) == 208
        np.testing.assert_array_equal(ch["spend"].to_numpy(), ch[col].to_numpy())
        # zero-spend weeks stay as rows with spend 0
        assert (ch["spend"] == 0).sum() == (src[col] == 0).sum() > 0
    fb = ad[ad["platform"] == "facebook"].merge(src, on="date_day")
    np.testing.assert_array_equal(fb["impressions"].to_numpy(), fb["facebook_I"].to_numpy())
    assert (fb["clicks"] == 0).all()
    se = ad[ad["platform"] == "search"].merge(src, on="date_day")
    np.testing.assert_array_equal(se["clicks"].to_numpy(), se["search_clicks_P"].to_numpy())
    assert (se["impressions"] == 0).all()
    tv = ad[ad["platform"] == "tv"]
    assert (tv[["clicks", "impressions"]] == 0).all().all()

    raw_lines = (out / "ad_reporting" / "wide_table.csv").read_text().splitlines()
    tv_zero = [l for l in raw_lines if l.startswith("tv.wide_table,")
               and l.split(",")[9] in ("0", "0.0")]
    assert len(tv_zero) == (src["tv_S"] == 0).sum()

    kpi = _read_out(out / "kpi" / "kpi.csv")
    assert list(kpi.columns) == ["date_day", "revenue"]
    assert len(kpi) == 208
    np.testing.assert_array_equal(kpi["revenue"].to_numpy(), src["revenue"].to_numpy())
    assert yaml.safe_load((out / "pipeline.yaml").read_text())["kpi_column"] == "revenue"
    assert [l.split(",")[3] for l in (out / "channels.csv").read_text().splitlines()[1:]] == [
        "impressions", "clicks", "spend", "spend", "spend"]


def test_robyn_without_channels_explains(robyn, tmp_path):
    with pytest.raises(ValueError, match="no channels detected"):
        convert_wide_table(robyn, tmp_path / "o", date_column="DATE", geo_column=None,
                           kpi_column="revenue")


# ----------------------------------------------------------------------------- missing values / errors

def _small_wide(tmp_path: Path) -> Path:
    path = tmp_path / "small wide.csv"
    path.write_text(
        "time,geo,TV_spend,search_clicks,search_spend,sales,visits\n"
        "2024-01-01,01,100.5,10,20.25,1000,7\n"
        "2024-01-08,01,na,NA,30.125,,8\n"
        "2024-01-01,02,0,5,,900,na\n"
        "2024-01-08,02,0.1,0,0,950,9\n"
    )
    return path


def test_missing_cells_written_empty_and_counted(tmp_path):
    src = _small_wide(tmp_path)
    out = tmp_path / "out"
    summary = convert_wide_table(src, out, kpi_column="sales", extra_kpi_columns=["visits"])
    assert summary["missing"]["spend"] == {"tv": 1, "search": 1}
    assert summary["missing"]["units"] == {"search": 1}
    assert summary["missing"]["kpi"] == {"sales": 1, "visits": 1}
    assert summary["geos"] == ["01", "02"]  # geo codes kept as text

    rows = list(csv.DictReader((out / "ad_reporting" / "wide_table.csv").open()))
    assert len(rows) == 8
    by = {(r["date_day"], r["geo"], r["platform"]): r for r in rows}
    assert by[("2024-01-08", "01", "tv")]["spend"] == ""
    assert by[("2024-01-08", "01", "search")]["clicks"] == ""
    assert by[("2024-01-08", "01", "search")]["spend"] == "30.125"
    assert by[("2024-01-01", "02", "search")]["spend"] == ""
    assert float(by[("2024-01-01", "02", "tv")]["spend"]) == 0.0
    assert by[("2024-01-08", "02", "tv")]["spend"] == "0.1"

    kpi = list(csv.DictReader((out / "kpi" / "kpi.csv").open()))
    assert list(kpi[0]) == ["date_day", "geo", "sales", "visits"]
    assert kpi[1]["sales"] == "" and kpi[2]["visits"] == ""


@pytest.mark.parametrize(
    "kwargs, column",
    [
        ({"date_column": "week"}, "week"),
        ({"geo_column": "region"}, "region"),
        ({"kpi_column": "orders"}, "orders"),
        ({"kpi_column": "sales", "extra_kpi_columns": ["margin"]}, "margin"),
        ({"kpi_column": "sales",
          "channels": [ChannelSpec("radio", "spend", None, "radio_spend")]}, "radio_spend"),
        ({"kpi_column": "sales",
          "channels": [ChannelSpec("tv", "impressions", "TV_impressions", "TV_spend")]},
         "TV_impressions"),
    ],
)
def test_missing_column_error_names_file_and_column(tmp_path, kwargs, column):
    src = _small_wide(tmp_path)
    with pytest.raises(ValueError) as info:
        convert_wide_table(src, tmp_path / "out", **kwargs)
    assert "small wide.csv" in str(info.value)
    assert repr(column) in str(info.value)
    assert not (tmp_path / "out").exists()


def test_non_numeric_value_error(tmp_path):
    src = tmp_path / "bad.csv"
    src.write_text("time,x_spend,y\n2024-01-01,abc,1\n")
    with pytest.raises(ValueError, match=r"bad\.csv.*'x_spend'.*abc"):
        convert_wide_table(src, tmp_path / "out", geo_column=None, kpi_column="y")


def test_existing_pipeline_yaml_keys_kept_and_foreign_files_refused(tmp_path):
    src = _small_wide(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "pipeline.yaml").write_text("planning_horizon_weeks: 8\nkpi_column: old\n")
    convert_wide_table(src, out, kpi_column="sales")
    assert yaml.safe_load((out / "pipeline.yaml").read_text()) == {
        "planning_horizon_weeks": 8, "kpi_column": "sales"}
    convert_wide_table(src, out, kpi_column="sales")  # re-running into the same folder is fine
    (out / "kpi" / "other.csv").write_text("date_day,sales\n")
    with pytest.raises(ValueError, match="other.csv"):
        convert_wide_table(src, out, kpi_column="sales")


# ----------------------------------------------------------------------------- CLI

def test_cli_meridian_preset(meridian, tmp_path, capsys):
    out = tmp_path / "m"
    assert main([str(meridian), str(out), "--preset", "meridian"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"]["ad_reporting/wide_table.csv"] == 20 * 156 * 4
    assert (out / "channels.csv").exists()


def test_cli_robyn_preset(robyn, tmp_path, capsys):
    out = tmp_path / "r"
    assert main([str(robyn), str(out), "--preset", "robyn"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [c["unit"] for c in summary["channels"]] == [
        "impressions", "clicks", "spend", "spend", "spend"]
    assert summary["kpi_column"] == "revenue" and summary["geos"] is None


def test_cli_explicit_channels_and_errors(robyn, tmp_path, capsys):
    out = tmp_path / "r2"
    rc = main([str(robyn), str(out), "--date-column", "DATE", "--no-geo", "--kpi-column", "revenue",
               "--extra-kpi", "competitor_sales_B",
               "--channel", "facebook:impressions:facebook_I:facebook_S",
               "--channel", "tv:spend::tv_S", "--currency", "EUR"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert [c["channel"] for c in summary["channels"]] == ["facebook", "tv"]
    assert (out / "channels.csv").read_text().splitlines()[2] == "tv,tv,,spend,EUR"
    assert list(pd.read_csv(out / "kpi" / "kpi.csv").columns) == [
        "date_day", "revenue", "competitor_sales_B"]

    rc = main([str(robyn), str(tmp_path / "r3"), "--preset", "robyn", "--kpi-column", "sales"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "robyn_dt_simulated_weekly.csv" in err and "'sales'" in err


def test_meridian_preset_keeps_its_controls_and_robyn_events_become_indicators(meridian, robyn, tmp_path):
    from mmm_pipeline.ingestion.convert import MERIDIAN_PRESET, ROBYN_PRESET

    summary = convert_wide_table(meridian, tmp_path / "m", **MERIDIAN_PRESET)
    assert summary["controls"] == ["competitor_activity_score_control", "sentiment_score_control"]
    controls = pd.read_csv(tmp_path / "m" / "controls" / "controls.csv")
    src = pd.read_csv(meridian)
    assert list(controls.columns) == ["date_day", "geo", *summary["controls"]]
    np.testing.assert_array_equal(controls["sentiment_score_control"], src["sentiment_score_control"])
    assert "sentiment_score_control" not in summary["ignored_columns"]

    summary = convert_wide_table(robyn, tmp_path / "r", **ROBYN_PRESET)
    assert summary["event_levels"] == {"events": ["event1", "event2"]}
    controls = pd.read_csv(tmp_path / "r" / "controls" / "controls.csv")
    assert list(controls.columns) == ["date_day", "competitor_sales_B", "newsletter", "events_event1", "events_event2"]
    assert controls["events_event1"].sum() == 1 and controls["events_event2"].sum() == 1
    assert summary["ignored_columns"] == []
