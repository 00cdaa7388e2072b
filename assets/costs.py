"""Cost per unit and its forecast (group `costs`). Logic lives in mmm_pipeline.ingestion.cost_per_unit."""


import dagster as dg

from assets.automation import DOWNSTREAM
from assets.metadata import OWNERS, plots_metadata, source_version, table_metadata
from assets.pools import DUCKDB, pool
from assets.staging import staging_media_weekly, staging_kpi_weekly
from mmm_pipeline.ingestion import cost_per_unit as cpu_lib
from mmm_pipeline.ingestion import staging
from mmm_pipeline.settings import settings_hash
from mmm_pipeline.units import run_units
from mmm_pipeline.warehouse import append_history, fingerprint
from resources import ArtifactStore, PipelineSettings, WarehouseResource

COST_CODE_VERSION = source_version("mmm_pipeline.ingestion.cost_per_unit", "mmm_pipeline.ingestion.staging", glue=__name__)
COMMON = dict(automation_condition=DOWNSTREAM, group_name="costs", owners=OWNERS, code_version=COST_CODE_VERSION,
              kinds={"duckdb", "pandas"}, pool=pool(DUCKDB))


def _latest(con, table: str):
    df = con.execute(f"SELECT * FROM {table}_latest").df()
    df["week_start"] = df["week_start"].dt.date if hasattr(df["week_start"], "dt") else df["week_start"]
    return df


def _plots(artifacts: ArtifactStore, cpu, forecast, name: str) -> dict:
    figures = {ch: cpu_lib.plot_cost_per_unit(cpu, forecast, ch) for ch in sorted(cpu["channel"].unique())}
    return plots_metadata(artifacts, figures, "costs", f"{name}_")


@dg.asset(deps=[staging_media_weekly, staging_kpi_weekly],
          description="marts.cost_per_unit: spend / units per week x geo x channel (1.0 for spend "
          "channels; cpm = 1000 x cost per impression). Weeks with zero units or spend get an imputed, "
          "positive rate (imputed = true).", **COMMON)
def cost_per_unit(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        media = _latest(con, "staging.media_weekly")
        staging_version = media["data_version"].iloc[0]
        version = fingerprint(COST_CODE_VERSION, staging_version, config.cost_per_unit.model_dump())
        cpu = cpu_lib.compute_cost_per_unit(
            media.drop(columns=["data_version", "materialized_at"]),
            window=config.cost_per_unit.imputation_window_weeks,
        )
        appended = append_history(con, "marts.cost_per_unit", cpu, version=version, units=run_units(con, config))
    meta = table_metadata(cpu, "marts.cost_per_unit")
    meta.update({
        "data_version": version, "history_appended": appended,
        "imputed_rows": int(cpu["imputed"].sum()),
        "imputation_methods": dg.MetadataValue.json(
            {str(k): int(v) for k, v in cpu["imputation"].value_counts().items()}),
    })
    meta.update(_plots(artifacts, cpu, None, "cost_per_unit"))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


@dg.asset(deps=[cost_per_unit],
          description="marts.cost_per_unit_forecast: cost per unit for each week of the planning "
          "horizon (pipeline.yaml planning_horizon_weeks, default 8), starting the Monday after the "
          "last complete week: trailing spend-weighted rate x last year's seasonal ratio when two "
          "years exist. One PNG per channel in the metadata and under the artifact directory.",
          **COMMON)
def cost_per_unit_forecast(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                           settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    config, _ = settings.config()
    with warehouse.get_connection() as con:
        cal = staging.build_calendar(con, config.geo_weights)
        cpu = _latest(con, "marts.cost_per_unit")
        version = fingerprint(COST_CODE_VERSION, cpu["data_version"].iloc[0], settings_hash(
            config, include={"planning_horizon_weeks", "cost_per_unit", "geo_weights"}))
        forecast = cpu_lib.forecast_cost_per_unit(
            cpu, cal.complete_weeks, config.planning_horizon_weeks,
            trailing=config.cost_per_unit.forecast_trailing_weeks,
        )
        appended = append_history(con, "marts.cost_per_unit_forecast", forecast, version=version,
                                  units=run_units(con, config))
    meta = table_metadata(forecast, "marts.cost_per_unit_forecast")
    meta.update({"data_version": version, "history_appended": appended,
                 "horizon_start": str(forecast["week_start"].min()),
                 "methods": dg.MetadataValue.json(sorted(forecast["method"].unique().tolist()))})
    meta.update(_plots(artifacts, cpu, forecast, "cost_per_unit_forecast"))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))
