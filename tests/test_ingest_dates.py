"""Dates are judged row by row: ISO dates, ISO timestamps at midnight and the formats pipeline.yaml
declares load; any other value goes to quarantine with its file, row and text. Nothing is sniffed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import ingest
from mmm_pipeline.settings import ConfigError, IngestSettings, load_pipeline_config
from tests.test_ingest import HEADER, ad_row, folder, rows, write  # noqa: F401  (folder: a fixture)

UNSUPPORTED = ("unsupported date format '{}' in date_day (accepted: ISO dates YYYY-MM-DD, ISO timestamps "
               "at midnight, or formats declared in pipeline.yaml ingest.date_formats)")
# The user's file: the sample's google_ads.csv with five of its 2024-01-13 rows written otherwise.
ODD_DATES = ["01/13/2024", "13/01/2024", "2024-01-13T00:00:00Z", "2024/01/13", "13 Jan 2024"]


def odd_dates_folder(sample_dir: Path, dst: Path, pipeline_yaml: str | None = None) -> tuple[Path, list[int]]:
    """channels.csv and the sample's google_ads.csv whose date_day is one of ODD_DATES in five rows
    (rows of 2024-01-13, so the one timestamp that loads repeats no other row); returns the rows."""
    dst.mkdir(parents=True)
    shutil.copy(sample_dir / "channels.csv", dst / "channels.csv")
    lines = (sample_dir / "ad_reporting" / "google_ads.csv").read_text().splitlines()
    col = lines[0].split(",").index("date_day")
    picked = [i for i, line in enumerate(lines) if i and line.split(",")[col] == "2024-01-13"][:5]
    for i, value in zip(picked, ODD_DATES):
        cells = lines[i].split(",")
        cells[col] = value
        lines[i] = ",".join(cells)
    write(dst / "ad_reporting" / "google_ads.csv", "\n".join(lines) + "\n")
    if pipeline_yaml is not None:
        write(dst / "pipeline.yaml", pipeline_yaml)
    return dst, picked  # a data row's number is its line's index (the header is line 0)


def load_ads(db: Path, folder: Path) -> ingest.LoadReport:
    config, _ = load_pipeline_config(folder)
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        return ingest.load_ad_reporting(con, folder, ingest.reporting_currency(con, None), limits=config.ingest)


def test_a_file_with_five_odd_dates_loads_every_row_that_parses(sample_dir, tmp_path):
    folder, picked = odd_dates_folder(sample_dir, tmp_path / "in")
    db = tmp_path / "w.duckdb"
    rep = load_ads(db, folder)
    assert (rep.rows_loaded, rep.rows_quarantined) == (17_288, 4)
    q = rows(db, "SELECT source_file, source_row, reason, record FROM raw.quarantine ORDER BY source_row")
    refused = [(r, v) for r, v in zip(picked, ODD_DATES) if v != "2024-01-13T00:00:00Z"]
    assert q.source_file.unique().tolist() == ["ad_reporting/google_ads.csv"]
    assert q.source_row.tolist() == [r for r, _ in refused]
    assert q.reason.tolist() == [UNSUPPORTED.format(v) for _, v in refused]
    assert all(f'"date_day__raw":"{v}"' in rec for (_, v), rec in zip(refused, q.record))  # the text as read
    midnight = picked[ODD_DATES.index("2024-01-13T00:00:00Z")]
    got = rows(db, f"SELECT date_day FROM raw.ad_reporting WHERE source_row = {midnight}")
    assert [str(d.date()) for d in got.date_day] == ["2024-01-13"]
    log = rows(db, "SELECT rows_read, rows_loaded, rows_quarantined FROM raw.load_log WHERE kind = 'ad_reporting'")
    assert log.values.tolist() == [[17_292, 17_288, 4]]


def test_a_declared_format_loads_its_dates_and_never_guesses_the_ambiguous_ones(sample_dir, tmp_path):
    folder, picked = odd_dates_folder(sample_dir, tmp_path / "in")
    db = tmp_path / "w.duckdb"
    assert load_ads(db, folder).rows_loaded == 17_288
    # declaring the format re-reads the unchanged file (the formats are part of what rows derive from)
    write(folder / "pipeline.yaml", "ingest:\n  date_formats:\n    ad_reporting/google_*.csv: ['%m/%d/%Y']\n")
    rep = load_ads(db, folder)
    assert rep.files_loaded == ["ad_reporting/google_ads.csv"]
    assert (rep.rows_loaded, rep.rows_quarantined) == (17_289, 3)
    us = picked[ODD_DATES.index("01/13/2024")]
    got = rows(db, f"SELECT date_day FROM raw.ad_reporting WHERE source_row = {us}")
    assert [str(d.date()) for d in got.date_day] == ["2024-01-13"]
    q = rows(db, "SELECT source_row, reason FROM raw.quarantine ORDER BY source_row")
    assert q.source_row.tolist() == [picked[ODD_DATES.index(v)] for v in ("13/01/2024", "2024/01/13", "13 Jan 2024")]
    assert q.reason[0] == UNSUPPORTED.format("13/01/2024")  # month 13 is not read as a day


@pytest.mark.parametrize("value", [
    "2024-02-01T00:00:00", "2024-02-01 00:00", "2024-02-01T00:00:00.000Z", "2024-02-01T00:00:00+02:00",
    "2024-02-01 00:00:00-0500", "2024-02-01T00:00:00+01",
])
def test_iso_timestamps_at_midnight_load_as_their_day(folder, tmp_path, value):
    write(folder / "ad_reporting" / "ts.csv", "\n".join([HEADER, ad_row(value, campaign="T1")]) + "\n")
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        rep = ingest.load_ad_reporting(con, folder, "USD")
    assert rep.rows_quarantined == 0
    got = rows(db, "SELECT date_day FROM raw.ad_reporting WHERE campaign_id = 'T1'")
    assert [str(d.date()) for d in got.date_day] == ["2024-02-01"]


@pytest.mark.parametrize("value", ["2024-02-01T10:30:00", "2024-02-01 00:00:01", "2024-02-01T23:00:00Z"])
def test_a_timestamp_with_a_time_of_day_is_quarantined_saying_so(folder, tmp_path, value):
    lines = [HEADER, ad_row("2024-02-02", campaign="T1"), ad_row(value, campaign="T1"),
             ad_row("2024-02-03", campaign="T1")]
    write(folder / "ad_reporting" / "ts.csv", "\n".join(lines) + "\n")
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        rep = ingest.load_ad_reporting(con, folder, "USD")
    assert rep.rows_quarantined == 1
    q = rows(db, "SELECT source_file, source_row, reason FROM raw.quarantine")
    assert q.values.tolist() == [["ad_reporting/ts.csv", 2,
                                  f"date_day '{value}' has a time of day other than midnight "
                                  "(a day's row takes a timestamp only at 00:00:00)"]]


def test_a_declared_format_with_a_time_takes_only_midnight(folder, tmp_path):
    lines = [HEADER, ad_row("02/01/2024 00:00", campaign="T1"), ad_row("02/02/2024 09:15", campaign="T1")]
    write(folder / "ad_reporting" / "us.csv", "\n".join(lines) + "\n")
    db = tmp_path / "w.duckdb"
    limits = IngestSettings(date_formats={"ad_reporting/us.csv": ["%m/%d/%Y %H:%M"]})
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        rep = ingest.load_ad_reporting(con, folder, "USD", limits=limits)
    assert rep.rows_quarantined == 1
    assert rows(db, "SELECT reason FROM raw.quarantine").reason[0].startswith(
        "date_day '02/02/2024 09:15' has a time of day other than midnight")


def test_kpi_and_lift_test_dates_follow_the_same_rule(tmp_path):
    d = tmp_path / "in"
    write(d / "kpi" / "kpi.csv", "date_day,geo,revenue\n2024-01-01,G1,50\n01.02.2024,G1,60\n2024-01-03T00:00:00Z,G1,70\n"
                                 "2024-01-04T12:00:00,G1,80\n04/01/2024,G1,90\n2024-01-06,G1,100\n")
    write(d / "lift_tests.csv", "test_id,channel,geo,start_date,end_date,delta_spend,delta_y,sigma\n"
          "T1,search,G1,2024-01-01,2024-01-14T00:00:00+01:00,100,20,5\n"
          "T2,search,G1,2024/03/04,2024-03-17,100,20,5\n"
          "T3,search,G1,04.03.2024,17.03.2024,100,20,5\n"
          "T4,search,G1,2024-03-04,17 Mar 2024,100,20,5\n")
    limits = IngestSettings(date_formats={"kpi/*.csv": ["%d.%m.%Y"], "lift_tests.csv": ["%d.%m.%Y"]})
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        kpi = ingest.load_kpi(con, d, "revenue", limits=limits)
        lift = ingest.load_lift_tests(con, d, limits=limits)
        kpi_days = con.execute("SELECT source_row, CAST(date_day AS VARCHAR) FROM raw.kpi ORDER BY 1").fetchall()
        tests = con.execute("SELECT test_id, CAST(start_date AS VARCHAR), CAST(end_date AS VARCHAR) "
                            "FROM raw.lift_tests ORDER BY 1").fetchall()
        q = con.execute("SELECT kind, source_row, reason FROM raw.quarantine ORDER BY kind, source_row").fetchall()
    assert (kpi.rows_loaded, kpi.rows_quarantined, lift.rows_loaded, lift.rows_quarantined) == (4, 2, 2, 2)
    assert kpi_days == [(1, "2024-01-01"), (2, "2024-02-01"), (3, "2024-01-03"), (6, "2024-01-06")]
    assert tests == [("T1", "2024-01-01", "2024-01-14"), ("T3", "2024-03-04", "2024-03-17")]
    assert q[0][:2] == ("kpi", 4) and "time of day other than midnight" in q[0][2]
    assert q[1] == ("kpi", 5, UNSUPPORTED.format("04/01/2024"))  # declared %d.%m.%Y, not a slash
    assert q[2] == ("lift_tests", 2, UNSUPPORTED.format("2024/03/04").replace("date_day", "start_date"))
    assert q[3] == ("lift_tests", 4, UNSUPPORTED.format("17 Mar 2024").replace("date_day", "end_date"))


def test_parquet_dates_keep_working_and_text_dates_follow_the_rule(tmp_path):
    d = tmp_path / "in"
    frame = pd.DataFrame({"revenue": [1.0, 2.0, 3.0]})
    cases = {
        "real_dates.parquet": frame.assign(date_day=pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03"]).date),
        "timestamps.parquet": frame.assign(
            date_day=pd.to_datetime(["2024-01-04", "2024-01-05 06:00", "2024-01-06"], format="ISO8601")),
        "text.parquet": frame.assign(date_day=["2024-01-07", "07/01/2024", "2024-01-09T00:00:00Z"]),
    }
    (d / "kpi").mkdir(parents=True)
    for name, df in cases.items():
        df.to_parquet(d / "kpi" / name)
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        rep = ingest.load_kpi(con, d, "revenue")
        days = con.execute("SELECT CAST(date_day AS VARCHAR) FROM raw.kpi ORDER BY 1").fetchall()
        q = con.execute("SELECT source_file, source_row, reason FROM raw.quarantine ORDER BY 1").fetchall()
    assert (rep.rows_loaded, rep.rows_quarantined) == (7, 2)
    assert [x for (x,) in days] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-06",
                                    "2024-01-07", "2024-01-09"]
    assert q == [("kpi/text.parquet", 2, UNSUPPORTED.format("07/01/2024")),
                 ("kpi/timestamps.parquet", 2, "date_day '2024-01-05 06:00:00' has a time of day other than "
                                               "midnight (a day's row takes a timestamp only at 00:00:00)")]


def test_bad_dates_and_malformed_lines_keep_their_row_numbers(folder, tmp_path):
    lines = [HEADER, ad_row("2024-02-01"), ad_row("Feb 2 2024"), ad_row("2024-02-03") + ",extra",
             ad_row("2024-02-04"), ad_row(""), ad_row("2024-02-06")]
    write(folder / "ad_reporting" / "mixed.csv", "\n".join(lines) + "\n")
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        ingest.load_ad_reporting(con, folder, "USD")
    q = rows(db, "SELECT source_row, reason FROM raw.quarantine ORDER BY source_row")
    assert q.source_row.tolist() == [2, 3, 5]
    assert q.reason[0] == UNSUPPORTED.format("Feb 2 2024") and q.reason[1].startswith("malformed row")
    assert q.reason[2] == "null key date_day"
    good = rows(db, "SELECT source_row, CAST(date_day AS VARCHAR) d FROM raw.ad_reporting "
                    "WHERE source_file = 'ad_reporting/mixed.csv' ORDER BY 1")
    assert good.values.tolist() == [[1, "2024-02-01"], [4, "2024-02-04"], [6, "2024-02-06"]]


def test_a_hostile_value_or_format_is_data_not_sql(folder, tmp_path):
    value = "x'); DROP TABLE raw.ad_reporting; --"
    write(folder / "ad_reporting" / "h.csv", "\n".join([HEADER, ad_row(value.replace(",", ""))]) + "\n")
    limits = IngestSettings(date_formats={"ad_reporting/h.csv": ["%Y-%m-%d'); DROP TABLE raw.ad_reporting; --"]})
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder)
        rep = ingest.load_ad_reporting(con, folder, "USD", limits=limits)
    assert rep.rows_quarantined == 1 and rep.rows_loaded == 4
    assert rows(db, "SELECT reason FROM raw.quarantine").reason[0] == UNSUPPORTED.format(value)


@pytest.mark.parametrize("text, message", [
    ("ingest: {date_formats: {'ad_reporting/*.csv': ['%Q/%d/%Y']}}", "'%Q/%d/%Y' is not a valid strptime format"),
    ("ingest: {date_formats: {'ad_reporting/*.csv': ['%m/%d']}}", "'%m/%d' has no year directive"),
    ("ingest: {date_formats: {'ad_reporting/*.csv': []}}", "lists no format"),
    ("ingest: {date_formats: {'kpi/*.csv': ['%Y-%m-%d %z']}}", "has a time zone"),
])
def test_a_bad_declared_format_fails_naming_the_setting(tmp_path, text, message):
    write(tmp_path / "pipeline.yaml", text + "\n")
    with pytest.raises(ConfigError) as err:
        load_pipeline_config(tmp_path)
    assert "ingest.date_formats" in str(err.value) and message in str(err.value)


def test_one_declared_format_may_be_a_string(tmp_path):
    write(tmp_path / "pipeline.yaml", "ingest:\n  date_formats:\n    kpi/kpi.csv: '%d/%m/%Y'\n")
    assert load_pipeline_config(tmp_path)[0].ingest.date_formats == {"kpi/kpi.csv": ["%d/%m/%Y"]}
