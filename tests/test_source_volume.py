"""Source volume: a file that empties, or an ad platform that collapses, fails a blocking check
(raw.source_volume, mmm_pipeline.ingestion.volume, assets.checks.raw_*_source_volume)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import ingest
from mmm_pipeline.ingestion.volume import source_volume_findings
from mmm_pipeline.settings import ConfigError, load_pipeline_config

GOOGLE = "ad_reporting/google_ads.csv"
EXAMPLE = ("ad_reporting/google_ads.csv had 17,292 rows in the last load and has 0 now; platform google_ads "
           "dropped from 17,292 to 0 rows (100% > ingest.max_row_drop_share 50%); it fed channels search, "
           "youtube. If the file was retired on purpose, list it under pipeline.yaml ingest.retired_files")


def load(db: Path, folder: Path) -> None:
    """What the raw assets do, without Dagster."""
    config, _ = load_pipeline_config(folder)
    with warehouse.connect(db) as con:
        ingest.load_channels(con, folder, configured_currency=config.reporting_currency)
        currency = ingest.reporting_currency(con, config.reporting_currency)
        ingest.load_ad_reporting(con, folder, currency, limits=config.ingest)
        ingest.load_kpi(con, folder, config.kpi_column, limits=config.ingest)
        ingest.load_controls(con, folder, limits=config.ingest)
        ingest.load_lift_tests(con, folder, limits=config.ingest)


def findings(db: Path, folder: Path, kinds=None):
    config, _ = load_pipeline_config(folder)
    with warehouse.connect(db) as con:
        return source_volume_findings(con, config.ingest, kinds)


def keep_rows(path: Path, share: float) -> int:
    """Keep the first `share` of a CSV's data rows (0: the header only); returns the rows kept."""
    lines = path.read_text().splitlines()
    n = int((len(lines) - 1) * share)
    path.write_text("\n".join(lines[: n + 1]) + "\n")
    return n


def set_ingest(folder: Path, text: str) -> None:
    """Append an `ingest:` block to the copy's pipeline.yaml (the sample has none)."""
    path = folder / "pipeline.yaml"
    base = path.read_text().split("\ningest:\n")[0].rstrip("\n")
    path.write_text(base + ("\ningest:\n" + text if text else "") + "\n")


@pytest.fixture()
def folder(sample_dir, copy_input) -> Path:
    return copy_input(sample_dir)


@pytest.fixture()
def loaded(folder, tmp_path) -> Path:
    """The sample copy loaded once, whole."""
    db = tmp_path / "w.duckdb"
    load(db, folder)
    assert findings(db, folder) == []
    return db


def test_header_only_file_fails_naming_file_platform_and_channels_until_retired(folder, loaded):
    keep_rows(folder / GOOGLE, 0)
    load(loaded, folder)
    [found] = findings(loaded, folder)
    assert (found.kind, found.source_file, found.platform) == ("ad_reporting", GOOGLE, "google_ads")
    assert found.channels == ["search", "youtube"] and found.file_emptied
    assert (found.rows_before, found.rows_after, found.platform_rows_before, found.platform_rows_after) == (
        17292, 0, 17292, 0)
    assert found.message == EXAMPLE
    assert findings(loaded, folder, ["kpi", "controls", "lift_tests"]) == []

    # Nothing reloaded: still failing, and nothing new logged.
    with warehouse.connect(loaded) as con:
        logged = con.execute("SELECT count(*) FROM raw.source_volume").fetchone()[0]
    load(loaded, folder)
    with warehouse.connect(loaded) as con:
        assert con.execute("SELECT count(*) FROM raw.source_volume").fetchone()[0] == logged
    assert [f.message for f in findings(loaded, folder)] == [EXAMPLE]

    # A later load of another platform's file does not clear it.
    keep_rows(folder / "ad_reporting" / "amazon_ads.csv", 0.9)
    load(loaded, folder)
    assert [f.message for f in findings(loaded, folder)] == [EXAMPLE]

    # Retired on purpose: the check passes (no reload needed), and on the next loads too.
    set_ingest(folder, f"  retired_files: [{GOOGLE}]")
    assert findings(loaded, folder) == []
    load(loaded, folder)
    assert findings(loaded, folder) == []


def test_putting_the_rows_back_clears_it(folder, loaded):
    google = (folder / GOOGLE).read_text()
    keep_rows(folder / GOOGLE, 0)
    load(loaded, folder)
    assert findings(loaded, folder)
    # Rewritten still empty (another header spelling, other bytes): still failing.
    (folder / GOOGLE).write_text((folder / GOOGLE).read_text().rstrip("\n") + "\n\n")
    load(loaded, folder)
    assert [f.source_file for f in findings(loaded, folder)] == [GOOGLE]
    (folder / GOOGLE).write_text(google)
    load(loaded, folder)
    assert findings(loaded, folder) == []


@pytest.mark.parametrize("kept, fails", [(0.4, True), (0.6, False)])
def test_a_platform_dropping_more_than_half_fails(folder, loaded, kept, fails):
    n = keep_rows(folder / GOOGLE, kept)
    load(loaded, folder)
    found = findings(loaded, folder)
    assert bool(found) is fails
    if fails:
        [f] = found
        assert (f.platform, f.platform_rows_before, f.platform_rows_after, f.file_emptied) == (
            "google_ads", 17292, n, False)
        assert f.message.startswith(
            f"{GOOGLE} went from 17,292 to {n:,} google_ads rows; platform google_ads dropped from 17,292 to "
            f"{n:,} rows (60% > ingest.max_row_drop_share 50%); it fed channel")
        # The failing level is not the new normal: another small change to the file keeps it failing.
        keep_rows(folder / GOOGLE, 0.99)
        load(loaded, folder)
        assert [f.platform for f in findings(loaded, folder)] == ["google_ads"]
        # A higher limit accepts it.
        set_ingest(folder, "  max_row_drop_share: 0.7")
        assert findings(loaded, folder) == []


def test_a_deleted_file_fails_unless_retired(folder, loaded):
    (folder / "ad_reporting" / "facebook_ads.csv").unlink()
    load(loaded, folder)
    [found] = findings(loaded, folder)
    assert (found.source_file, found.platform, found.channels) == (
        "ad_reporting/facebook_ads.csv", "facebook_ads", ["social"])
    assert found.file_gone and not found.file_emptied and found.platform_rows_after == 0
    assert "ad_reporting/facebook_ads.csv was removed from the input folder" in found.message
    load(loaded, folder)  # still gone, nothing reloaded: still failing
    assert len(findings(loaded, folder)) == 1
    set_ingest(folder, "  retired_files: [ad_reporting/facebook_ads.csv]")
    assert findings(loaded, folder) == []


def test_a_deleted_lift_tests_file_fails_unless_retired(folder, loaded):
    (folder / "lift_tests.csv").unlink()
    load(loaded, folder)
    [found] = findings(loaded, folder)
    assert (found.kind, found.source_file, found.file_gone) == ("lift_tests", "lift_tests.csv", True)
    assert found.message == ("lift_tests.csv was removed from the input folder (5 rows in the last load). "
                             "If the file was retired on purpose, list it under pipeline.yaml ingest.retired_files")
    set_ingest(folder, "  retired_files: [lift_tests.csv]")
    assert findings(loaded, folder) == []


def test_a_file_moved_to_another_name_of_the_same_platform_passes(folder, loaded):
    (folder / GOOGLE).rename(folder / "ad_reporting" / "google_ads_2024_2025.csv")
    load(loaded, folder)
    assert findings(loaded, folder) == []


def test_an_emptied_kpi_file_fails(folder, loaded):
    kpi = folder / "kpi" / "kpi.csv"
    full = kpi.read_text()
    keep_rows(kpi, 0)
    load(loaded, folder)
    [found] = findings(loaded, folder)
    assert (found.kind, found.source_file, found.platform, found.file_emptied) == ("kpi", "kpi/kpi.csv", "", True)
    assert found.message.startswith("kpi/kpi.csv had 4,386 rows in the last load and has 0 now. If the file")
    assert findings(loaded, folder, ["ad_reporting"]) == []
    kpi.write_text(full)
    load(loaded, folder)
    assert findings(loaded, folder) == []


def test_a_warehouse_made_before_the_table_gains_it_and_judges_from_the_next_load(folder, loaded):
    with warehouse.connect(loaded) as con:
        con.execute("DROP TABLE raw.source_volume")
    with warehouse.connect(loaded) as con:
        assert con.execute("SELECT count(*) FROM raw.source_volume").fetchone()[0] == 0
    keep_rows(folder / GOOGLE, 0)
    load(loaded, folder)
    assert [f.message for f in findings(loaded, folder)] == [EXAMPLE]


def test_history_is_one_row_per_file_and_platform_per_load(folder, loaded):
    with warehouse.connect(loaded) as con:
        df = con.execute("SELECT * FROM raw.source_volume WHERE kind = 'ad_reporting'").df()
    assert len(df) == 4 and df.logged_at.nunique() == 1 and (df.file_status == "loaded").all()
    assert df.set_index("source_file").loc[GOOGLE, ["platform", "rows_before", "rows_after"]].tolist() == [
        "google_ads", 0, 17292]


@pytest.mark.parametrize("text, message", [
    ("  retired_files: [/etc/passwd]\n", "ingest.retired_files: Value error, '/etc/passwd' is not a path relative"),
    ("  retired_files: [../x.csv]\n", "ingest.retired_files: Value error, '../x.csv' is not a path relative"),
    ("  max_row_drop_share: 1.5\n", "ingest.max_row_drop_share: Input should be less than or equal to 1"),
])
def test_settings_are_validated(folder, text, message):
    set_ingest(folder, text.rstrip("\n"))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_pipeline_config(folder)


def test_the_check_is_blocking_in_dagster(folder, tmp_path):
    from tests.conftest import check_results, materialize

    db, art = tmp_path / "w.duckdb", tmp_path / "art"

    def run():
        result = materialize(folder, db, art, models=False).results[0]
        materialized = {e.event_specific_data.materialization.asset_key.to_user_string()
                        for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"}
        return result, check_results(result), materialized

    _, checks, materialized = run()
    volume_checks = {n: c for n, c in checks.items() if n.endswith("_source_volume")}
    assert volume_checks == {f"raw_{k}_source_volume": (True, "ERROR")
                             for k in ("ad_reporting", "kpi", "controls", "lift_tests")}
    assert "staging_media_weekly" in materialized

    keep_rows(folder / GOOGLE, 0)
    result, checks, materialized = run()
    assert checks["raw_ad_reporting_source_volume"] == (False, "ERROR")
    evaluation = next(e.asset_check_evaluation_data for e in result.all_events
                      if e.event_type_value == "ASSET_CHECK_EVALUATION"
                      and e.asset_check_evaluation_data.check_name == "raw_ad_reporting_source_volume")
    assert evaluation.description == EXAMPLE
    assert evaluation.metadata["files"].value == [GOOGLE]
    assert evaluation.metadata["platforms"].value == ["google_ads"]
    assert evaluation.metadata["channels"].value == ["search", "youtube"]
    assert "| ad_reporting | ad_reporting/google_ads.csv | google_ads |" in evaluation.metadata["by_file"].value
    # blocking: staging is not rebuilt without the channels
    assert "raw_ad_reporting" in materialized
    assert "staging_media_weekly" not in materialized and "cost_per_unit" not in materialized
