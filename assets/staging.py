"""Weekly staging tables (group `validation`: the validated, conformed weekly grain)."""


import dagster as dg

from assets.automation import DOWNSTREAM
from assets.metadata import OWNERS, source_version, table_metadata
from assets.pools import DUCKDB, pool
from assets.ingestion import files_version, raw_ad_reporting, raw_controls, raw_kpi
from mmm_pipeline.ingestion import staging
from mmm_pipeline.settings import NOT_STAGING_SETTINGS, settings_hash
from mmm_pipeline.warehouse import append_history, fingerprint
from resources import PipelineSettings, WarehouseResource

STAGING_CODE_VERSION = source_version("mmm_pipeline.ingestion.staging", "mmm_pipeline.settings", glue=__name__)
COMMON = dict(automation_condition=DOWNSTREAM, group_name="validation", owners=OWNERS, code_version=STAGING_CODE_VERSION,
              kinds={"duckdb"}, pool=pool(DUCKDB))


def staging_version(con, config, *extra_kinds: str) -> str:
    return fingerprint(STAGING_CODE_VERSION, files_version(con, "ad_reporting", "channels", "kpi", *extra_kinds),
                       settings_hash(config, exclude=NOT_STAGING_SETTINGS))


def _publish(con, df, table: str, version: str) -> dg.MaterializeResult:
    appended = append_history(con, table, df, version=version)
    meta = table_metadata(df, table)
    meta.update({"data_version": version, "history_appended": appended})
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


@dg.asset(deps=[raw_ad_reporting, raw_kpi],
          description="staging.media_weekly: ISO week (Monday) x geo x channel with units in the "
          "catalogue's unit, spend, clicks, impressions; complete date spine (no_media flags filled "
          "weeks), incomplete weeks flagged and kept.", **COMMON)
def staging_media_weekly(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                         settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        context.log.info(f"calendar: {cal.grain} input, {cal.geo_mode} model, {len(cal.weeks)} weeks, "
                         f"geos {cal.geos}")
        df = staging.build_media_weekly(con, cal, config.geo_weights)
        return _publish(con, df, "staging.media_weekly", staging_version(con, config))


@dg.asset(deps=[raw_kpi, raw_ad_reporting],
          description="staging.kpi_weekly: the KPI per ISO week and geo. A missing week is never "
          "filled with zero: its check fails and lists the weeks.", **COMMON)
def staging_kpi_weekly(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        df = staging.build_kpi_weekly(con, cal)
        return _publish(con, df, "staging.kpi_weekly", staging_version(con, config))


@dg.asset(deps=[raw_controls, raw_kpi, raw_ad_reporting],
          description="staging.controls_weekly: each control per ISO week and geo (long: week_start, geo, "
          "control, value), the mean of its days or, per pipeline.yaml `controls`, their sum; a control "
          "without a geo holds for every geo. Empty without controls/. Missing weeks fail its check.", **COMMON)
def staging_controls_weekly(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                            settings: PipelineSettings) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        try:
            df = staging.build_controls_weekly(con, cal, config.controls)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from None
        context.log.info(f"controls: {sorted(df['control'].unique())}")
        return _publish(con, df, "staging.controls_weekly", staging_version(con, config, "controls"))
