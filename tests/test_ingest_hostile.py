"""Input a client's folder can hold that must neither run as code, hang, lose valid rows nor go stale.

One test (or parametrized set) per class of input from issue 9.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pytest

from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import ingest
from mmm_pipeline.ingestion.readers import normalize_column
from mmm_pipeline.settings import ConfigError, IngestSettings, load_pipeline_config
from tests.conftest import snapshot
from tests.test_ingest import CHANNELS, HEADER, ad_row, load, rows, write


@pytest.fixture()
def folder(tmp_path) -> Path:
    d = tmp_path / "in"
    write(d / "channels.csv", CHANNELS)
    write(d / "ad_reporting" / "google.csv", "\n".join([
        HEADER, ad_row("2024-01-01"), ad_row("2024-01-02"),
        ad_row("2024-01-01", campaign="C2", name="YouTube - Reach", clicks=0, impressions=5000, spend=40),
        ad_row("2024-01-01", platform="Facebook Ads", campaign="F1", name="Prospecting", impressions=800, spend=8),
    ]) + "\n")
    return d


def assert_unchanged(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for name in before:
        pd.testing.assert_frame_equal(before[name], after[name], obj=name)


def all_tables(db: Path) -> set[str]:
    with warehouse.connect(db) as con:
        return {f"{s}.{t}" for s, t in con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables").fetchall()}


# --- security: names from files are data, never SQL -------------------------------------------

HOSTILE_NAMES = [
    'x"); CREATE TABLE raw.pwned AS SELECT 1; --',
    "y'); CREATE TABLE raw.pwned AS SELECT 1; --",
    "z$$); CREATE TABLE raw.pwned AS SELECT 1; SELECT ($$",
]


@pytest.mark.parametrize("hostile", HOSTILE_NAMES)
def test_a_hostile_header_cell_or_file_name_runs_no_sql(folder, tmp_path, hostile):
    name = hostile.replace("/", "_")
    write(folder / "ad_reporting" / f"{name}.csv",
          HEADER + f',"{hostile.replace(chr(34), chr(34) * 2)}"\n' + ad_row("2024-02-01") + ",1\n")
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    assert rep.rows_quarantined == 0 and rep.rows_loaded == 5
    assert "raw.pwned" not in all_tables(db)
    got = rows(db, "SELECT DISTINCT source_file FROM raw.ad_reporting")
    assert f"ad_reporting/{name}.csv" in set(got.source_file)


def test_a_hostile_kpi_column_name_is_quoted_not_run(tmp_path):
    d = tmp_path / "in"
    col = 'net-revenue"; CREATE TABLE raw.pwned AS SELECT 1; --'
    write(d / "kpi" / "kpi.csv", f'date_day,geo,"{col.replace(chr(34), chr(34) * 2)}"\n2024-01-01,G1,5\n2024-01-02,G1,7\n')
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        rep = ingest.load_kpi(con, d, col)
    assert rep.rows_loaded == 2
    assert "raw.pwned" not in all_tables(db)
    assert rows(db, "SELECT DISTINCT kpi_name FROM raw.kpi").kpi_name.tolist() == [normalize_column(col)]


def test_a_channel_named_with_quotes_keeps_every_row_through_staging_costs_and_lift_tests(sample_dir, tmp_path):
    from mmm_pipeline.ingestion import cost_per_unit, staging
    from mmm_pipeline.model import lift_tests

    hostile = "x'; DROP TABLE raw.kpi; --"
    d = tmp_path / "in"
    shutil.copytree(sample_dir, d)
    (d / "channels.csv").write_text((d / "channels.csv").read_text().replace("social", hostile))
    (d / "lift_tests.csv").write_text((d / "lift_tests.csv").read_text().replace(",social,", f',"{hostile}",'))
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        ingest.load_channels(con, d)
        ingest.load_ad_reporting(con, d, "USD")
        ingest.load_kpi(con, d, "revenue")
        ingest.load_lift_tests(con, d)
        cal = staging.build_calendar(con, None)
        media = staging.build_media_weekly(con, cal, None)
        n_raw = con.execute("SELECT count(*) FROM raw.ad_reporting WHERE channel = ?", [hostile]).fetchone()[0]
        tests = con.execute("SELECT * FROM raw.lift_tests").df()
        daily = con.execute("SELECT date_day, geo, channel, unit, clicks, impressions, spend "
                            "FROM raw.ad_reporting_current").df()
        assert con.execute("SELECT count(*) FROM raw.kpi").fetchone()[0] > 0
    cpu = cost_per_unit.compute_cost_per_unit(media)
    assert n_raw == 35088
    per_channel = media.groupby("channel").size()
    assert per_channel[hostile] == per_channel["search"] == len(cal.weeks) * len(cal.geos)
    assert (cpu["channel"] == hostile).sum() == per_channel[hostile]
    assert (tests["channel"] == hostile).sum() == 2
    converted, rejected = lift_tests.convert_lift_tests(tests, daily, cal.geos, market="all")
    assert set(converted.loc[converted["channel"] == hostile, "test_id"]) == \
        set(tests.loc[tests["channel"] == hostile, "test_id"])
    assert not (rejected["channel"] == hostile).any()


def test_a_catastrophic_campaign_pattern_fails_fast_naming_its_line(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    load(db, folder)
    before = snapshot(db)
    write(folder / "channels.csv", CHANNELS.replace("video,google_ads,youtube", "video,google_ads,(a|aa)+$"))
    write(folder / "ad_reporting" / "google.csv", HEADER + "\n" + ad_row(name="a" * 60 + "b") + "\n")
    started = time.perf_counter()
    with warehouse.connect(db) as con, pytest.raises(ingest.IngestError) as err:
        ingest.load_channels(con, folder)
        ingest.load_ad_reporting(con, folder, "USD", limits=IngestSettings(pattern_timeout_seconds=0.2))
    assert time.perf_counter() - started < 20
    assert "channels.csv row 1, column campaign_pattern" in str(err.value) and "(a|aa)+$" in str(err.value)
    after = snapshot(db)
    # the catalogue itself is valid and was replaced; nothing of the ad rows changed
    for name in ("raw.ad_reporting", "raw.quarantine"):
        pd.testing.assert_frame_equal(before[name], after[name])


def test_the_pattern_that_hangs_python_re_matches_at_once(folder, tmp_path):
    write(folder / "channels.csv", CHANNELS.replace("video,google_ads,youtube", r"video,google_ads,^(\w+\s?)*$"))
    long_name = " ".join(["Brand Campaign Summer Sale Q3 2025 Retargeting"] * 6) + " !"
    write(folder / "ad_reporting" / "google.csv", HEADER + "\n" + ad_row(name=long_name) + "\n")
    started = time.perf_counter()
    rep = load(tmp_path / "w.duckdb", folder)
    assert time.perf_counter() - started < 20 and rep.rows_loaded == 1


# --- wrong money or stale data ------------------------------------------------------------------

def test_changing_only_the_catalogue_remaps_rows_and_converts_currency(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    write(folder / "pipeline.yaml", "reporting_currency: USD\n")
    load(db, folder, "USD")
    assert rows(db, "SELECT channel FROM raw.ad_reporting WHERE campaign_id = 'C2'").channel.tolist() == ["video"]
    # the data files stay as they are; the catalogue moves YouTube to search and social to EUR
    write(folder / "channels.csv", CHANNELS.replace("video,google_ads,youtube", "video,google_ads,^never$")
          .replace("social,facebook_ads,,impressions,USD", "social,facebook_ads,,impressions,EUR"))
    write(folder / "fx_rates.csv", "date,currency,rate_to_reporting\n2023-12-01,EUR,1.25\n")
    rep = load(db, folder, "USD")
    assert rep.files_loaded == ["ad_reporting/google.csv"]
    assert rows(db, "SELECT channel FROM raw.ad_reporting WHERE campaign_id = 'C2'").channel.tolist() == ["search"]
    spend, orig = rows(db, "SELECT spend, spend_original FROM raw.ad_reporting WHERE channel = 'social'").iloc[0]
    assert orig == 8 and spend == pytest.approx(10.0)
    # a new rate alone re-converts too
    write(folder / "fx_rates.csv", "date,currency,rate_to_reporting\n2023-12-01,EUR,1.5\n")
    load(db, folder, "USD")
    assert rows(db, "SELECT spend FROM raw.ad_reporting WHERE channel = 'social'").spend[0] == pytest.approx(12.0)
    # and nothing changed means nothing is read again
    assert load(db, folder, "USD").files_loaded == []


def test_a_currency_without_any_rate_fails_and_days_before_the_first_rate_are_quarantined(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    load(db, folder, "USD")
    before = snapshot(db)
    write(folder / "channels.csv", CHANNELS.replace("social,facebook_ads,,impressions,USD", "social,facebook_ads,,impressions,EUR"))
    write(folder / "fx_rates.csv", "date,currency,rate_to_reporting\n2023-12-01,GBP,1.25\n")
    with pytest.raises(ingest.IngestError, match=r"no rate for currency EUR.*\['social'\]"):
        load(db, folder, "USD")
    assert_unchanged(before, snapshot(db))  # the catalogue and its load log too
    write(folder / "fx_rates.csv", "date,currency,rate_to_reporting\n2024-01-02,EUR,1.25\n")
    rep = load(db, folder, "USD")
    q = rows(db, "SELECT reason FROM raw.quarantine")
    assert rep.rows_quarantined == 1
    assert q.reason.tolist() == ["no fx rate for EUR on 2024-01-01 (fx_rates.csv has none on or before it)"]


@pytest.mark.parametrize("cell, reason", [
    ("inf", "non-finite spend: inf"), ("Infinity", "non-finite spend: inf"), ("-inf", "non-finite spend: -inf"),
    ("1e308", "spend 1e+308 is above the ceiling 1000000000000.0"),
])
def test_non_finite_and_absurd_metrics_are_quarantined(folder, tmp_path, cell, reason):
    write(folder / "ad_reporting" / "bad.csv", HEADER + "\n" + ad_row("2024-02-01", spend=cell) + "\n")
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    assert rep.rows_quarantined == 1
    assert rows(db, "SELECT reason FROM raw.quarantine").reason[0].startswith(reason)
    assert rows(db, "SELECT count(*) n FROM raw.ad_reporting WHERE NOT isfinite(spend)").n[0] == 0


def test_the_metric_ceiling_is_configurable_and_applies_to_kpi_and_lift_tests(tmp_path):
    d = tmp_path / "in"
    write(d / "kpi" / "kpi.csv", "date_day,geo,revenue\n2024-01-01,G1,50\n2024-01-02,G1,150\n2024-01-03,G1,inf\n")
    write(d / "lift_tests.csv", "test_id,channel,geo,start_date,end_date,delta_spend,delta_y,sigma\n"
          "T1,search,G1,2024-01-01,2024-01-14,100,Infinity,5\nT2,search,G1,2024-01-01,2024-01-14,100,20,5\n")
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        kpi = ingest.load_kpi(con, d, "revenue", limits=IngestSettings(max_metric_value=100))
        lift = ingest.load_lift_tests(con, d)
        reasons = con.execute("SELECT kind, reason FROM raw.quarantine ORDER BY kind, source_row").fetchall()
    assert (kpi.rows_loaded, kpi.rows_quarantined, lift.rows_loaded) == (1, 2, 1)
    assert reasons[0][1].startswith("revenue 150.0 is above the ceiling 100.0")
    assert reasons[1][1] == "non-finite revenue: inf"
    assert reasons[2] == ("lift_tests", "non-finite delta_y: inf")
    assert load_pipeline_config_text(tmp_path, "ingest: {max_metric_value: 5000}\n").ingest.max_metric_value == 5000


def load_pipeline_config_text(tmp_path: Path, text: str):
    d = tmp_path / "cfg"
    write(d / "pipeline.yaml", text)
    return load_pipeline_config(d)[0]


# --- a failing load leaves every table as it was -------------------------------------------------

@pytest.fixture()
def kpi_folder(folder) -> Path:
    write(folder / "kpi" / "kpi.csv", "date_day,geo,revenue,net-revenue\n2024-01-01,G1,5,4\n2024-01-02,G1,7,6\n")
    return folder


@pytest.mark.parametrize("column, message", [
    ("revenu", "missing required column(s) ['revenu']"),
])
def test_a_kpi_column_that_does_not_exist_fails_and_keeps_the_kpi_rows(kpi_folder, tmp_path, column, message):
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        ingest.load_kpi(con, kpi_folder, "revenue")
    before = snapshot(db)
    with warehouse.connect(db) as con, pytest.raises(ingest.IngestError) as err:
        ingest.load_kpi(con, kpi_folder, column)
    assert "kpi/kpi.csv" in str(err.value) and message in str(err.value)
    assert_unchanged(before, snapshot(db))
    assert len(before["raw.kpi"]) == 2


def test_a_kpi_column_that_needs_quoting_loads_and_switching_replaces_every_row(kpi_folder, tmp_path):
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        ingest.load_kpi(con, kpi_folder, "revenue")
        rep = ingest.load_kpi(con, kpi_folder, "net-revenue")
    assert rep.rows_loaded == 2
    got = rows(db, "SELECT kpi_name, kpi_value FROM raw.kpi ORDER BY date_day")
    assert got.values.tolist() == [["net-revenue", 4.0], ["net-revenue", 6.0]]


def test_a_missing_input_folder_fails_naming_it_and_keeps_the_loaded_rows(folder, tmp_path):
    db = tmp_path / "w.duckdb"
    load(db, folder)
    before = snapshot(db)
    shutil.rmtree(folder / "ad_reporting")
    with pytest.raises(ingest.IngestError, match="ad_reporting/: folder .* not found"):
        load(db, folder)
    assert_unchanged(before, snapshot(db))
    with warehouse.connect(db) as con, pytest.raises(ingest.IngestError, match="kpi/: folder .* not found"):
        ingest.load_kpi(con, folder, "revenue")


def test_retiring_most_files_at_once_needs_an_explicit_setting(folder, tmp_path):
    for name in ("b", "c"):
        write(folder / "ad_reporting" / f"{name}.csv", HEADER + "\n" + ad_row(f"2024-03-0{len(name)}", campaign=name) + "\n")
    db = tmp_path / "w.duckdb"
    load(db, folder)
    before = snapshot(db)
    for name in ("google", "b"):
        (folder / "ad_reporting" / f"{name}.csv").unlink()
    with pytest.raises(ingest.IngestError, match=r"2 of the 3 loaded file\(s\) are gone.*ingest.max_retired_share"):
        load(db, folder)
    assert_unchanged(before, snapshot(db))
    with warehouse.connect(db) as con:
        rep = ingest.load_ad_reporting(con, folder, "USD", limits=IngestSettings(max_retired_share=1.0))
    assert sorted(rep.files_retired) == ["ad_reporting/b.csv", "ad_reporting/google.csv"]


# --- valid rows are never quarantined with the bad ones ------------------------------------------

def test_row_rules_run_before_duplicates_and_exact_duplicates_keep_one_copy(folder, tmp_path):
    write(folder / "ad_reporting" / "mixed.csv", "\n".join([
        HEADER,
        ad_row("2024-02-01", spend=10),            # 1 valid
        ad_row("2024-02-01", spend=-10),           # 2 bad row, same key as 1: only it goes
        ad_row("2024-02-02", spend=5),             # 3 valid
        ad_row("2024-02-02", spend=5),             # 4 exact duplicate of 3
        ad_row("2024-02-02", spend=5),             # 5 exact duplicate of 3
        ad_row("2024-02-03", spend=1),             # 6 conflicting with 7
        ad_row("2024-02-03", spend=2),             # 7
    ]) + "\n")
    db = tmp_path / "w.duckdb"
    load(db, folder)
    good = rows(db, "SELECT source_row, spend FROM raw.ad_reporting WHERE source_file = 'ad_reporting/mixed.csv' ORDER BY 1")
    assert good.values.tolist() == [[1, 10.0], [3, 5.0]]
    q = rows(db, "SELECT source_row, reason FROM raw.quarantine ORDER BY 1")
    assert q.values.tolist() == [
        [2, "negative spend"], [4, "exact duplicate of row 3"], [5, "exact duplicate of row 3"],
        [6, "conflicting values for natural key (2 rows in this file)"],
        [7, "conflicting values for natural key (2 rows in this file)"],
    ]


def test_kpi_exact_duplicates_keep_one_copy(tmp_path):
    d = tmp_path / "in"
    write(d / "kpi" / "kpi.csv", "date_day,geo,revenue\n2024-01-01,G1,5\n2024-01-01,G1,5\n2024-01-02,G1,7\n")
    with warehouse.connect(tmp_path / "w.duckdb") as con:
        rep = ingest.load_kpi(con, d, "revenue")
    assert (rep.rows_loaded, rep.rows_quarantined) == (2, 1)


# --- errors that name the problem ---------------------------------------------------------------

def test_a_repeated_column_fails_naming_the_file_and_column(folder, tmp_path):
    write(folder / "ad_reporting" / "twice.csv", HEADER + ",spend\n" + ad_row() + ",99\n")
    with pytest.raises(ingest.IngestError, match=r"ad_reporting/twice.csv: column\(s\) 'spend' \(2 times\)"):
        load(tmp_path / "w.duckdb", folder)


def test_ragged_rows_are_quarantined_and_the_rest_loads(folder, tmp_path):
    lines = [HEADER, ad_row("2024-02-01"), ad_row("2024-02-02") + ",extra", ad_row("2024-02-03"),
             ",".join(ad_row("2024-02-04").split(",")[:-2]), ad_row("2024-02-05")]
    write(folder / "ad_reporting" / "ragged.csv", "\n".join(lines) + "\n")
    db = tmp_path / "w.duckdb"
    rep = load(db, folder)
    q = rows(db, "SELECT source_row, reason FROM raw.quarantine ORDER BY 1")
    assert q.values.tolist() == [[2, "malformed row: 14 fields, expected 13"],
                                 [4, "malformed row: 11 fields, expected 13"]]
    good = rows(db, "SELECT source_row FROM raw.ad_reporting WHERE source_file = 'ad_reporting/ragged.csv' ORDER BY 1")
    assert good.source_row.tolist() == [1, 3, 5] and rep.rows_quarantined == 2


@pytest.mark.parametrize("text, message", [
    ("planning_horizon_week: 8\n", "planning_horizon_week: unknown key (did you mean 'planning_horizon_weeks'?)"),
    ("cost_per_unit: {imputation_window_week: 4}\n",
     "cost_per_unit.imputation_window_week: unknown key (did you mean 'imputation_window_weeks'?)"),
    ("ingest: {max_retired_shares: 1}\n", "ingest.max_retired_shares: unknown key (did you mean 'max_retired_share'?)"),
])
def test_an_unknown_pipeline_key_fails_naming_the_closest_valid_one(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        load_pipeline_config_text(tmp_path, text)
    assert message in str(err.value)


def test_paths_with_quotes_publish_and_export(tmp_path):
    import duckdb

    from mmm_pipeline.reporting import publish

    odd = tmp_path / "o'brien $$ \"x\""
    db = odd / "warehouse.duckdb"
    with warehouse.connect(db) as con:
        warehouse.append_history(con, "marts.model_fit_geo", pd.DataFrame({"geo": ["US-CA"], "weeks": [1]}),
                                 version="v1")
        counts = publish.publish_marts(con, publish.published_path(db))
        exported = publish.export_marts_parquet(con, str(odd / "parquet"))
    assert counts == {"model_fit_geo": 1} and exported["model_fit_geo"] == 1
    assert duckdb.connect(str(publish.published_path(db)), read_only=True).sql(
        "SELECT weeks FROM marts.model_fit_geo").fetchall() == [(1,)]
    assert (odd / "parquet" / "model_fit_geo.parquet").exists()


def test_an_asset_writing_several_tables_changes_none_when_it_fails(tmp_path):
    from mmm_pipeline.warehouse import append_history
    from resources import WarehouseResource

    wh = WarehouseResource(database=str(tmp_path / "w.duckdb"))
    frame = pd.DataFrame({"market": ["west"], "max_rhat": [1.0]})
    with wh.transaction() as con:
        append_history(con, "marts.model_runs", frame, version="v1", partition_columns=("market",))
    before = snapshot(tmp_path / "w.duckdb")
    with pytest.raises(RuntimeError), wh.transaction() as con:
        append_history(con, "marts.model_runs", frame.assign(max_rhat=2.0), version="v2", partition_columns=("market",))
        append_history(con, "marts.model_diagnostics", frame, version="v2", partition_columns=("market",))
        raise RuntimeError("the asset fails after writing two tables")
    assert_unchanged(before, snapshot(tmp_path / "w.duckdb"))
