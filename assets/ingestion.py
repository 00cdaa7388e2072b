"""Raw loads of the input folder (group `ingestion`). Logic lives in mmm_pipeline.ingestion.ingest."""


import dagster as dg

from assets.metadata import OWNERS, source_version, table_metadata
from assets.pools import DUCKDB, pool
from mmm_pipeline.ingestion import ingest
from mmm_pipeline.warehouse import fingerprint
from resources import PipelineSettings, WarehouseResource

INGEST_CODE_VERSION = source_version("mmm_pipeline.ingestion.ingest", "mmm_pipeline.ingestion.load",
                                     "mmm_pipeline.ingestion.readers", glue=__name__)
COMMON = dict(group_name="ingestion", owners=OWNERS, code_version=INGEST_CODE_VERSION,
              kinds={"duckdb"}, pool=pool(DUCKDB))


def files_version(con, *kinds: str) -> str:
    """Changes with the loaded files and with what their rows were derived with (catalogue, FX, KPI column)."""
    return fingerprint(INGEST_CODE_VERSION, [sorted(ingest.current_files(con, k).items()) for k in kinds],
                       [ingest.load_context(con, k) for k in kinds])


def _result(con, report: ingest.LoadReport | None, table: str, version: str) -> dg.MaterializeResult:
    df = con.execute(f"SELECT * FROM {table} LIMIT 10000").df()
    count = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    meta = table_metadata(df, table)
    meta["dagster/row_count"] = dg.MetadataValue.int(count)
    meta["data_version"] = version
    if report is not None:
        meta.update(report.as_metadata())
        meta["files_loaded_names"] = dg.MetadataValue.json(report.files_loaded)
        meta["files_retired_names"] = dg.MetadataValue.json(report.files_retired)
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


@dg.asset(description="The channel catalogue (channels.csv) and optional fx_rates.csv: which platform "
          "and campaign pattern make which channel, in which unit and currency.", **COMMON)
def raw_channels(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        ingest.load_channels(con, settings.input_path(), context.run_id, config.reporting_currency)
        return _result(con, None, "raw.channels", files_version(con, "channels") +
                       fingerprint(con.execute("SELECT * FROM raw.fx_rates").fetchall()))


@dg.asset(deps=[raw_channels], description="Fivetran ad reporting rows (ad_reporting/*.csv|parquet), "
          "platform names normalised, mapped to channels, spend in the reporting currency. Bad rows "
          "go to raw.quarantine; restated rows to raw.ad_reporting_superseded.", **COMMON)
def raw_ad_reporting(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        currency = ingest.reporting_currency(con, config.reporting_currency)
        report = ingest.load_ad_reporting(con, settings.input_path(), currency, context.run_id, config.ingest)
        context.log.info(f"ad reporting: {report.as_metadata()}")
        return _result(con, report, "raw.ad_reporting", files_version(con, "ad_reporting", "channels"))


@dg.asset(description="The KPI series (kpi/*.csv|parquet), one KPI column chosen by pipeline.yaml "
          "kpi_column; bad rows quarantined.", **COMMON)
def raw_kpi(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
            settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        report = ingest.load_kpi(con, settings.input_path(), config.kpi_column, context.run_id, config.ingest)
        return _result(con, report, "raw.kpi", files_version(con, "kpi"))


@dg.asset(description="Controls (controls/*.csv|parquet, optional): non-media drivers of the KPI such "
          "as price or promotions, by day (or Monday-dated week) and optional geo; one raw row per file "
          "row with its numeric columns as JSON, bad rows quarantined.", **COMMON)
def raw_controls(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        report = ingest.load_controls(con, settings.input_path(), context.run_id, config.ingest)
        return _result(con, report, "raw.controls", files_version(con, "controls"))


@dg.asset(description="Lift tests as marketers report them (lift_tests.csv): money added over a "
          "window, KPI lift over the window and its sigma.", **COMMON)
def raw_lift_tests(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        report = ingest.load_lift_tests(con, settings.input_path(), context.run_id, config.ingest)
        return _result(con, report, "raw.lift_tests", files_version(con, "lift_tests"))
