"""Blocking data-quality checks: Great Expectations 1.x suites on raw and staging tables.

Row-level rules already ran as SQL during the load (that is what fills
raw.quarantine); these checks assert the loaded tables hold the contract and
stop downstream assets in the run when they do not. The metadata carries a
markdown table of the failed expectations with counts and a link to the
result's page in the GX Data Docs site (MMM_ARTIFACT_DIR/gx, see
`mmm_pipeline.validation.data_docs`): each suite runs through its own Checkpoint.
"""


from datetime import date

import dagster as dg
import pandas as pd

from assets.costs import cost_per_unit
from assets.ingestion import raw_ad_reporting, raw_controls, raw_kpi, raw_lift_tests
from assets.staging import staging_controls_weekly, staging_kpi_weekly, staging_media_weekly
from mmm_pipeline.ingestion import staging
from mmm_pipeline.ingestion.volume import source_volume_findings
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# Above this many raw rows the raw suite is counted in DuckDB instead of a GX
# pandas batch (same rules, same outcome shape; ~2 s per million rows saved).
GX_MAX_RAW_ROWS = 1_000_000
MIN_VALID_DATE = date(2000, 1, 1)


def _gx_root(artifacts: ArtifactStore):
    return artifacts.path("gx")


def _result(outcome, extra: dict | None = None, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    meta = {"suite": outcome.suite, "summary": dg.MetadataValue.json(outcome.summary()),
            "failed_expectations": dg.MetadataValue.md(outcome.to_markdown())}
    if outcome.data_docs_url:
        meta["data_docs"] = dg.MetadataValue.url(outcome.data_docs_url)
    meta.update(extra or {})
    return dg.AssetCheckResult(passed=outcome.success, metadata=meta, severity=severity)


def _dates(series: pd.Series) -> list[date]:
    return sorted(pd.to_datetime(series).dt.date.unique())


@dg.asset_check(asset=raw_ad_reporting, blocking=True,
                description="Keys not null, metrics non-negative, natural key unique, dates in range, "
                "platforms in the catalogue (GX suite; DuckDB SQL counts of the same rules above 1M rows, "
                "without a Data Docs page).")
def raw_ad_reporting_contract(warehouse: WarehouseResource, artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from mmm_pipeline import validation
    from mmm_pipeline.validation import data_docs

    with warehouse.get_connection() as con:
        con.execute("CREATE OR REPLACE TEMP VIEW _raw_ad_check AS SELECT * REPLACE "
                    "(coalesce(geo, 'national') AS geo) FROM raw.ad_reporting_current")
        platforms = [p for (p,) in con.execute("SELECT DISTINCT platform FROM raw.channels").fetchall()]
        n = con.execute("SELECT count(*) FROM _raw_ad_check").fetchone()[0]
        args = (MIN_VALID_DATE, date.today(), platforms)
        spec = validation.raw_ad_reporting_suite(*args)
        if n > GX_MAX_RAW_ROWS:
            # counted in SQL and reported as such: no GX run, so no Data Docs page
            outcome = validation.raw_ad_reporting_sql_outcome(con, "_raw_ad_check", *args)
            df = None
        else:
            df = con.execute("SELECT * FROM _raw_ad_check").df()
        quarantined = con.execute(
            "SELECT reason, count(*) AS n FROM raw.quarantine WHERE kind = 'ad_reporting' "
            "GROUP BY 1 ORDER BY 2 DESC LIMIT 20").df()
    if df is not None:
        outcome = data_docs.validate(spec, df, _gx_root(artifacts))
    return _result(outcome, {
        "rows": n,
        "validated_by": "Great Expectations" if df is not None else
        f"DuckDB SQL counts of the same rules (over {GX_MAX_RAW_ROWS:,} rows; no Data Docs page)",
        "quarantined_by_reason": dg.MetadataValue.md(
            quarantined.to_markdown(index=False) if len(quarantined) else "No quarantined rows."),
    })


@dg.asset_check(asset=raw_ad_reporting, blocking=False,
                description="Warns when rows were quarantined or restated by a newer file.")
def raw_ad_reporting_quarantine(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        q = con.execute("SELECT source_file, reason, count(*) AS rows, min(source_row) AS first_row "
                        "FROM raw.quarantine WHERE kind = 'ad_reporting' GROUP BY 1, 2 ORDER BY 3 DESC").df()
        superseded = con.execute("SELECT count(*) FROM raw.ad_reporting_superseded").fetchone()[0]
    return dg.AssetCheckResult(
        passed=q.empty and superseded == 0, severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_rows": int(q["rows"].sum()) if len(q) else 0,
                  "superseded_rows": superseded,
                  "by_file_and_reason": dg.MetadataValue.md(
                      q.to_markdown(index=False) if len(q) else "Nothing quarantined.")},
    )


def _source_volume(warehouse: WarehouseResource, settings: PipelineSettings, kind: str) -> dg.AssetCheckResult:
    """Files of `kind` emptied, or (ad reporting) platforms collapsed: see mmm_pipeline.ingestion.volume."""
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        findings = source_volume_findings(con, config.ingest, [kind])
    table = pd.DataFrame([f.as_record() for f in findings])
    return dg.AssetCheckResult(
        passed=not findings, severity=dg.AssetCheckSeverity.ERROR,
        description=" ".join(f.message for f in findings) or None,
        metadata={
            "findings": len(findings),
            "files": dg.MetadataValue.json(sorted({f.source_file for f in findings})),
            "platforms": dg.MetadataValue.json(sorted({f.platform for f in findings if f.platform})),
            "channels": dg.MetadataValue.json(sorted({c for f in findings for c in f.channels})),
            "by_file": dg.MetadataValue.md(table.drop(columns="message").to_markdown(index=False)
                                           if findings else "No file emptied, no platform collapsed."),
            "messages": dg.MetadataValue.md("\n".join(f"- {f.message}" for f in findings) or "All well."),
            "max_row_drop_share": config.ingest.max_row_drop_share,
            "retired_files": dg.MetadataValue.json(config.ingest.retired_files),
        })


_RETIRE = "files emptied or removed on purpose go under pipeline.yaml ingest.retired_files"


@dg.asset_check(asset=raw_ad_reporting, blocking=True,
                description="Fails while an ad-reporting file that had rows has none, or a platform has lost "
                "more than ingest.max_row_drop_share (0.5) of its rows since its last accepted load (a removed "
                f"file counts); names the file, the platform and the channels it fed ({_RETIRE}).")
def raw_ad_reporting_source_volume(warehouse: WarehouseResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _source_volume(warehouse, settings, "ad_reporting")


@dg.asset_check(asset=raw_kpi, blocking=True,
                description=f"Fails while a KPI file that had rows has none ({_RETIRE}).")
def raw_kpi_source_volume(warehouse: WarehouseResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _source_volume(warehouse, settings, "kpi")


@dg.asset_check(asset=raw_controls, blocking=True,
                description=f"Fails while a controls file that had rows has none ({_RETIRE}).")
def raw_controls_source_volume(warehouse: WarehouseResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _source_volume(warehouse, settings, "controls")


@dg.asset_check(asset=raw_lift_tests, blocking=True,
                description=f"Fails while lift_tests.csv had rows and has none ({_RETIRE}).")
def raw_lift_tests_source_volume(warehouse: WarehouseResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _source_volume(warehouse, settings, "lift_tests")


def _freshness(warehouse: WarehouseResource, settings: PipelineSettings, table: str) -> dg.AssetCheckResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        newest = con.execute(f"SELECT max(date_day) FROM {table}").fetchall()[0][0]
    age = (date.today() - newest).days if newest else None
    passed = age is not None and age <= config.freshness_days
    return dg.AssetCheckResult(
        passed=passed, severity=dg.AssetCheckSeverity.WARN,
        metadata={"newest_day": str(newest), "age_days": age if age is not None else -1,
                  "max_age_days": config.freshness_days,
                  "note": dg.MetadataValue.text("pipeline.yaml freshness_days sets the limit")})


@dg.asset_check(asset=raw_ad_reporting, blocking=False,
                description="Warns when the newest ad-reporting day is older than freshness_days (default 8).")
def raw_ad_reporting_freshness(warehouse: WarehouseResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _freshness(warehouse, settings, "raw.ad_reporting_current")


@dg.asset_check(asset=raw_kpi, blocking=False,
                description="Warns when the newest KPI day is older than freshness_days (default 8).")
def raw_kpi_freshness(warehouse: WarehouseResource, settings: PipelineSettings) -> dg.AssetCheckResult:
    return _freshness(warehouse, settings, "raw.kpi_current")


@dg.asset_check(asset=raw_kpi, blocking=True,
                description="No quarantined KPI rows: a KPI row that could not be read would leave a "
                "week short, and the KPI is never silently filled.")
def raw_kpi_contract(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        q = con.execute("SELECT source_file, source_row, reason FROM raw.quarantine WHERE kind = 'kpi' "
                        "ORDER BY 1, 2 LIMIT 50").df()
        n = con.execute("SELECT count(*) FROM raw.quarantine WHERE kind = 'kpi'").fetchone()[0]
    return dg.AssetCheckResult(
        passed=n == 0, metadata={"quarantined_rows": n, "rows": dg.MetadataValue.md(
            q.to_markdown(index=False) if n else "Nothing quarantined.")})


@dg.asset_check(asset=raw_lift_tests, blocking=False,
                description="Lift tests: unique ids, positive sigma, known channels (GX); warns only, "
                "valid tests still calibrate.")
def raw_lift_tests_contract(warehouse: WarehouseResource, artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from mmm_pipeline import validation
    from mmm_pipeline.validation import data_docs

    with warehouse.get_connection() as con:
        df = con.execute("SELECT test_id, channel, geo, start_date, end_date, delta_spend, delta_y, sigma "
                         "FROM raw.lift_tests").df()
        channels = [c for (c,) in con.execute("SELECT DISTINCT channel FROM raw.channels").fetchall()]
        n_bad = con.execute("SELECT count(*) FROM raw.quarantine WHERE kind = 'lift_tests'").fetchone()[0]
    outcome = data_docs.validate(validation.lift_tests_suite(channels), df, _gx_root(artifacts))
    res = _result(outcome, {"quarantined_rows": n_bad}, severity=dg.AssetCheckSeverity.WARN)
    return dg.AssetCheckResult(passed=res.passed and n_bad == 0, metadata=res.metadata,
                               severity=dg.AssetCheckSeverity.WARN)


@dg.asset_check(asset=staging_media_weekly, blocking=True,
                description="Every week present per geo and channel, keys unique, units and spend "
                "non-negative, spend with zero units counted (GX).")
def staging_media_weekly_contract(warehouse: WarehouseResource, settings: PipelineSettings,
                                  artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from mmm_pipeline import validation
    from mmm_pipeline.validation import data_docs

    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        df = con.execute("SELECT * EXCLUDE (data_version, materialized_at) FROM staging.media_weekly_latest").df()
    spec = validation.media_weekly_suite(cal.weeks, cal.geos, sorted(df["channel"].unique()))
    outcome = data_docs.validate(spec, df, _gx_root(artifacts))
    return _result(outcome, {"spend_without_units_rows": int(df["spend_without_units"].sum()),
                             "no_media_rows": int(df["no_media"].sum())})


@dg.asset_check(asset=staging_kpi_weekly, blocking=True,
                description="Every geo reports every week of the KPI's range with all its days; the "
                "metadata lists missing weeks. Plus the GX suite (not null, non-negative, unique).")
def staging_kpi_weekly_contract(warehouse: WarehouseResource, settings: PipelineSettings,
                                artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from mmm_pipeline import validation
    from mmm_pipeline.validation import data_docs

    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        df = con.execute("SELECT * EXCLUDE (data_version, materialized_at) FROM staging.kpi_weekly_latest").df()
    df["week_start"] = pd.to_datetime(df["week_start"]).dt.date
    missing = staging.missing_kpi_weeks(df, cal)
    kpi_weeks = [w for w in cal.weeks if df["week_start"].min() <= w <= df["week_start"].max()]
    outcome = data_docs.validate(validation.kpi_weekly_suite(kpi_weeks, cal.geos), df, _gx_root(artifacts))
    res = _result(outcome, {
        "missing_weeks": len(missing),
        "missing_week_list": dg.MetadataValue.md(
            missing.to_markdown(index=False) if len(missing) else "No missing KPI week."),
    })
    return dg.AssetCheckResult(passed=outcome.success and missing.empty, metadata=res.metadata)


@dg.asset_check(asset=staging_controls_weekly, blocking=True,
                description="Every control has every geo and every week of the KPI's range with all its "
                "days (the metadata lists what is missing, and the quarantined control rows); values "
                "finite, keys unique (GX). Passes with no controls/ folder.")
def staging_controls_weekly_contract(warehouse: WarehouseResource, settings: PipelineSettings,
                                     artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from mmm_pipeline import validation
    from mmm_pipeline.validation import data_docs

    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        df = con.execute("SELECT * EXCLUDE (data_version, materialized_at) FROM staging.controls_weekly_latest").df()
        kpi = con.execute("SELECT week_start FROM staging.kpi_weekly_latest").df()
        quarantined = con.execute(
            "SELECT source_file, source_row, reason FROM raw.quarantine WHERE kind = 'controls' "
            "ORDER BY 1, 2 LIMIT 50").df()
    for frame in (df, kpi):
        frame["week_start"] = pd.to_datetime(frame["week_start"]).dt.date
    missing = staging.missing_control_weeks(df, kpi, cal)
    spec = validation.controls_weekly_suite(cal.geos, sorted(df["control"].unique()), config.ingest.max_metric_value)
    outcome = data_docs.validate(spec, df, _gx_root(artifacts))
    res = _result(outcome, {
        "controls": dg.MetadataValue.json(sorted(df["control"].unique().tolist())),
        "missing_weeks": len(missing),
        "missing_week_list": dg.MetadataValue.md(
            missing.head(200).to_markdown(index=False) if len(missing) else "No missing control week."),
        "quarantined_rows": dg.MetadataValue.md(
            quarantined.to_markdown(index=False) if len(quarantined) else "Nothing quarantined."),
    })
    return dg.AssetCheckResult(passed=outcome.success and missing.empty, metadata=res.metadata)


@dg.asset_check(asset=cost_per_unit, blocking=True,
                description="Cost per unit positive and present on every row (pymc-marketing rejects "
                "zero or missing rates), units known, key unique (GX).")
def cost_per_unit_contract(warehouse: WarehouseResource, artifacts: ArtifactStore) -> dg.AssetCheckResult:
    from mmm_pipeline import validation
    from mmm_pipeline.validation import data_docs

    with warehouse.get_connection() as con:
        df = con.execute("SELECT * EXCLUDE (data_version, materialized_at) FROM marts.cost_per_unit_latest").df()
    return _result(data_docs.validate(validation.cost_per_unit_suite(), df, _gx_root(artifacts)))
