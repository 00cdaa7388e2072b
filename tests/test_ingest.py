"""Raw loads: row rules, quarantine, clear errors, idempotency, restatements, currencies."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd
import pytest

from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import ingest
from tests.conftest import fixture_path

HEADER = ("source_relation,date_day,platform,account_id,account_name,campaign_id,campaign_name,"
          "clicks,impressions,spend,conversions,conversions_value,geo")
CHANNELS = """channel,platform,campaign_pattern,unit,currency
video,google_ads,youtube,impressions,USD
search,google_ads,,clicks,USD
social,facebook_ads,,impressions,USD
"""


def ad_row(day="2024-01-01", platform="google_ads", campaign="C1", name="Search - Brand", clicks=10,
           impressions=1000, spend=12.5, geo="G1", relation="google_ads.daily") -> str:
    return f"{relation},{day},{platform},A1,Acct,{campaign},{name},{clicks},{impressions},{spend},1,10,{geo}"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


@pytest.fixture()
def folder(tmp_path) -> Path:
    d = tmp_path / "in"
    write(d / "channels.csv", CHANNELS)
    write(d / "ad_reporting" / "google.csv", "\n".join([
        HEADER,
        ad_row("2024-01-01"), ad_row("2024-01-02"),
        ad_row("2024-01-01", campaign="C2", name="YouTube - Reach", clicks=0, impressions=5000, spend=40),
        ad_row("2024-01-01", platform="Facebook Ads", campaign="F1", name="Prospecting", impressions=800, spend=8),
    ]) + "\n")
    return d


def load(db: Path, folder: Path, currency: str | None = None):
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder, configured_currency=currency)
        return ingest.load_ad_reporting(con, folder, ingest.reporting_currency(con, currency))


def rows(db: Path, sql: str) -> pd.DataFrame:
    with warehouse.connect(db) as con:
        return con.execute(sql).df()


def test_platform_names_are_normalised():
    assert ingest.normalize_platform("Google Ads") == "google_ads"
    assert ingest.normalize_platform("google_ads") == "google_ads"
    assert ingest.normalize_platform(" Facebook  Ads ") == "facebook_ads"
    assert ingest.normalize_platform("Microsoft Advertising") == "microsoft_ads"


def test_clean_file_loads_and_maps_channels_by_first_matching_pattern(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    assert rep.rows_loaded == 4 and rep.rows_quarantined == 0
    df = rows(db, "SELECT campaign_id, platform, channel, unit FROM raw.ad_reporting ORDER BY campaign_id, date_day")
    assert dict(zip(df.campaign_id, df.channel)) == {"C1": "search", "C2": "video", "F1": "social"}
    assert set(df.platform) == {"google_ads", "facebook_ads"}
    log = rows(db, "SELECT * FROM raw.load_log WHERE kind = 'ad_reporting'")
    assert log.loc[0, "rows_loaded"] == 4 and len(log.loc[0, "sha256"]) == 64


@pytest.mark.parametrize("bad_row, reason", [
    (ad_row(spend=-3), "negative spend"),
    (ad_row(impressions=-1, name="YouTube - X"), "negative impressions"),
    (ad_row(day="2024-13-45"), "invalid date '2024-13-45' in date_day (no such calendar day)"),
    (ad_row(campaign=""), "null key campaign_id"),
    (ad_row(platform="Snapchat Ads"), "unknown platform Snapchat Ads"),
    (ad_row(spend="abc"), 'Could not convert string "abc"'),
    (ad_row(spend="na"), "missing spend"),
])
def test_bad_rows_go_to_quarantine_with_file_row_and_reason(folder, tmp_path, bad_row, reason):
    db = tmp_path / "w.duckdb"
    load(db, folder)
    write(folder / "ad_reporting" / "more.csv", "\n".join([HEADER, ad_row("2024-02-01"), bad_row]) + "\n")
    rep = load(db, folder)
    assert rep.rows_loaded == 1 and rep.rows_quarantined == 1
    q = rows(db, "SELECT * FROM raw.quarantine")
    assert len(q) == 1
    assert q.loc[0, "source_file"] == "ad_reporting/more.csv" and q.loc[0, "source_row"] == 2
    assert reason in q.loc[0, "reason"]
    assert "Acct" in q.loc[0, "record"]  # the row as read is kept
    # what was loaded before is still there
    assert rows(db, "SELECT count(*) n FROM raw.ad_reporting").n[0] == 5


def test_rows_keep_their_file_row_numbers_around_unreadable_lines(folder, tmp_path):
    lines = [HEADER, ad_row("2024-02-01"), ad_row("2024-02-02", spend="x1"), ad_row("2024-02-03", clicks="y"),
             ad_row("2024-02-04"), ad_row("2024-02-05", spend=-1), ad_row("2024-02-06")]
    write(folder / "ad_reporting" / "mixed.csv", "\n".join(lines) + "\n")
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    q = rows(db, "SELECT source_row, reason FROM raw.quarantine ORDER BY source_row")
    assert q.source_row.tolist() == [2, 3, 5]
    assert "spend" in q.reason[0] and "clicks" in q.reason[1] and q.reason[2] == "negative spend"
    good = rows(db, "SELECT source_row, date_day FROM raw.ad_reporting WHERE source_file = 'ad_reporting/mixed.csv' ORDER BY 1")
    assert good.source_row.tolist() == [1, 4, 6]
    assert [str(d.date()) for d in good.date_day] == ["2024-02-01", "2024-02-04", "2024-02-06"]
    log = rows(db, "SELECT rows_read, rows_loaded, rows_quarantined FROM raw.load_log WHERE source_file = 'ad_reporting/mixed.csv'")
    assert log.values.tolist() == [[6, 3, 3]]
    assert rep.rows_quarantined == 3


def test_conflicting_rows_of_one_natural_key_are_all_quarantined(folder, tmp_path):
    write(folder / "ad_reporting" / "dup.csv", "\n".join([HEADER, ad_row("2024-03-01"), ad_row("2024-03-01", spend=99)]) + "\n")
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    assert rep.rows_quarantined == 2
    assert rows(db, "SELECT reason FROM raw.quarantine").reason.str.contains("conflicting values for natural key").all()


@pytest.mark.parametrize("name, content, message", [
    ("missing_col.csv", HEADER.replace(",spend", "") + "\n", "missing required column(s) ['spend']"),
    ("empty.csv", "", "the file is empty"),
    ("truncated.parquet", None, "cannot be read as PARQUET"),
])
def test_unreadable_file_fails_naming_file_and_problem_and_keeps_loaded_rows(folder, tmp_path, name, content, message):
    db = tmp_path / "w.duckdb"
    load(db, folder)
    before = rows(db, "SELECT * FROM raw.ad_reporting ORDER BY source_row")
    path = folder / "ad_reporting" / name
    if content is None:
        pd.DataFrame({"a": range(1000)}).to_parquet(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        write(path, content)
    # change the good file too: nothing of it may be applied when another file fails
    write(folder / "ad_reporting" / "google.csv", HEADER + "\n" + ad_row("2024-05-05") + "\n")
    with pytest.raises(ingest.IngestError) as err:
        load(db, folder)
    assert f"ad_reporting/{name}" in str(err.value) and message in str(err.value)
    after = rows(db, "SELECT * FROM raw.ad_reporting ORDER BY source_row")
    pd.testing.assert_frame_equal(before, after)


def test_utf8_bom_header_is_read(folder, tmp_path):
    write(folder / "ad_reporting" / "bom.csv", ("\ufeff" + HEADER + "\n" + ad_row("2024-04-01") + "\n").encode("utf-8"))
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    assert rep.rows_quarantined == 0
    assert rows(db, "SELECT count(*) n FROM raw.ad_reporting WHERE source_file = 'ad_reporting/bom.csv'").n[0] == 1


def test_reload_is_idempotent_changed_file_replaces_removed_file_retires(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    load(db, folder)
    first = rows(db, "SELECT * FROM raw.ad_reporting ORDER BY source_file, source_row")
    log1 = rows(db, "SELECT * FROM raw.load_log")
    rep = load(db, folder)
    assert rep.files_loaded == [] and rep.files_unchanged == ["ad_reporting/google.csv"]
    pd.testing.assert_frame_equal(first, rows(db, "SELECT * FROM raw.ad_reporting ORDER BY source_file, source_row"))
    pd.testing.assert_frame_equal(log1, rows(db, "SELECT * FROM raw.load_log"))

    write(folder / "ad_reporting" / "other.csv", HEADER + "\n" + ad_row("2024-06-01", campaign="C9") + "\n")
    load(db, folder)
    write(folder / "ad_reporting" / "google.csv", HEADER + "\n" + ad_row("2024-01-01", spend=1.0) + "\n")
    rep = load(db, folder)
    assert rep.files_loaded == ["ad_reporting/google.csv"]
    df = rows(db, "SELECT source_file, spend FROM raw.ad_reporting ORDER BY source_file")
    assert df.values.tolist() == [["ad_reporting/google.csv", 1.0], ["ad_reporting/other.csv", 12.5]]

    (folder / "ad_reporting" / "other.csv").unlink()
    rep = load(db, folder)
    assert rep.files_retired == ["ad_reporting/other.csv"]
    assert rows(db, "SELECT count(*) n FROM raw.ad_reporting WHERE source_file LIKE '%other%'").n[0] == 0
    events = rows(db, "SELECT event FROM raw.load_log WHERE source_file = 'ad_reporting/other.csv' ORDER BY logged_at")
    assert events.event.tolist() == ["loaded", "retired"]


def test_restated_rows_from_a_newer_file_win_and_are_logged(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    newer = write(folder / "ad_reporting" / "restatement.csv", HEADER + "\n" + ad_row("2024-01-02", spend=50) + "\n")
    old = folder / "ad_reporting" / "google.csv"
    t = time.time()
    os.utime(old, (t - 3600, t - 3600))
    os.utime(newer, (t, t))
    rep = load(db, folder)
    assert rep.rows_superseded == 1
    cur = rows(db, "SELECT source_file, spend FROM raw.ad_reporting_current WHERE campaign_id = 'C1' AND date_day = '2024-01-02'")
    assert cur.values.tolist() == [["ad_reporting/restatement.csv", 50.0]]
    sup = rows(db, "SELECT * FROM raw.ad_reporting_superseded")
    assert sup.loc[0, "source_file"] == "ad_reporting/google.csv"
    assert sup.loc[0, "superseded_by_file"] == "ad_reporting/restatement.csv"


def test_mixed_currencies_need_fx_rates_and_are_converted(folder, tmp_path):
    write(folder / "channels.csv", CHANNELS.replace("social,facebook_ads,,impressions,USD", "social,facebook_ads,,impressions,EUR"))
    write(folder / "pipeline.yaml", "reporting_currency: USD\n")
    db = tmp_path / "w.duckdb"
    with pytest.raises(ingest.IngestError, match="several currencies"):
        load(db, folder)
    with pytest.raises(ingest.IngestError, match=r"\['social'\].*no fx_rates.csv"):
        load(db, folder, "USD")
    write(folder / "fx_rates.csv", "date,currency,rate_to_reporting\n2023-12-01,EUR,1.10\n2024-01-01,EUR,1.20\n")
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder, configured_currency="USD")
        ingest.load_ad_reporting(con, folder, ingest.reporting_currency(con, "USD"))
        spend, orig = con.execute("SELECT spend, spend_original FROM raw.ad_reporting WHERE channel = 'social'").fetchone()
    assert orig == 8 and spend == pytest.approx(8 * 1.20)


def test_channel_catalogue_errors_name_row_and_column(folder, tmp_path):
    write(folder / "channels.csv", CHANNELS + "tv,tv_platform,,minutes,USD\n")
    with warehouse.connect(tmp_path / "w.duckdb") as con, pytest.raises(ingest.IngestError, match="channels.csv row 4, column unit"):
        ingest.load_channels(con, folder)


def test_real_fivetran_ad_report_example_is_rolled_up_to_channels(tmp_path):
    src = fixture_path("pymc_marketing_ad_report_example.csv")
    d = tmp_path / "in"
    write(d / "channels.csv", "channel,platform,campaign_pattern,unit,currency\n"
          "search,google_ads,,clicks,USD\nsocial,facebook_ads,,impressions,USD\nvideo,tiktok_ads,,impressions,USD\n")
    (d / "ad_reporting").mkdir(parents=True)
    (d / "ad_reporting" / "ad_report.csv").write_bytes(src.read_bytes())
    db = tmp_path / "w.duckdb"
    rep = load(db, d)
    raw = pd.read_csv(src)
    assert rep.rows_loaded == len(raw) == 16 and rep.rows_quarantined == 0
    got = rows(db, "SELECT platform, sum(spend) spend, sum(clicks) clicks FROM raw.ad_reporting GROUP BY 1 ORDER BY 1")
    want = raw.assign(platform=raw.platform.map(ingest.normalize_platform)).groupby("platform")[["spend", "clicks"]].sum()
    assert got.set_index("platform")["spend"].to_dict() == pytest.approx(want["spend"].to_dict())
    assert set(got.platform) == {"google_ads", "facebook_ads", "tiktok_ads"}
    # ad grain: ad_id is part of the key, so several ads per campaign and day are not duplicates
    assert rows(db, "SELECT count(DISTINCT ad_id) n FROM raw.ad_reporting").n[0] == raw.ad_id.nunique()
