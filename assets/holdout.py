"""Out-of-sample validation of a market's model (group `models`): a refit without the last weeks
forecasts them (`mmm_pipeline.model.holdout`)."""

import dagster as dg

from assets.metadata import source_version, table_metadata
from assets.pools import MODEL_FIT, pool
from assets.models import COMMON, MODEL_CODE_VERSION, STAGED, market_inputs
from mmm_pipeline.model import market as market_lib
from mmm_pipeline.model.market import MarketError
from resources import PipelineSettings, WarehouseResource

# Its code is the model's and this module's own.
HOLDOUT_CODE_VERSION = source_version("mmm_pipeline.model", "mmm_pipeline.model.market", "mmm_pipeline.settings",
                                      glue=__name__)


@dg.asset(deps=STAGED,
          check_specs=[dg.AssetCheckSpec(
              "beats_naive_forecast", asset="model_validation",
              description="The model refitted without the last model.validation.holdout_weeks (8) complete weeks "
              "forecasts them with a lower market MAPE than the better naive forecast (same week last year, "
              "or the mean of the last 8 weeks); warns by default, an ERROR with model.validation.gate: error.")],
          kinds={"pymc", "duckdb"}, pool=pool(MODEL_FIT),
          description="marts.model_validation (per geo and for the market: out-of-sample MAPE, CRPS and 94% "
          "coverage of the held-out weeks against the better naive forecast) and marts.model_validation_weekly "
          "(each held-out week: actual, forecast mean and 94% HDI, naive forecast). The refit has the "
          "uncalibrated structure (no lift tests) on the same config; model.validation.enabled: false skips it.",
          **{**COMMON, "code_version": HOLDOUT_CODE_VERSION})
def model_validation(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     settings: PipelineSettings) -> dg.MaterializeResult:
    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
    v = inputs.config.validation
    severity = dg.AssetCheckSeverity.ERROR if v.gate == "error" else dg.AssetCheckSeverity.WARN
    if not v.enabled:
        return dg.MaterializeResult(
            metadata={"enabled": False, "market": market},
            check_results=[dg.AssetCheckResult(check_name="beats_naive_forecast", passed=True,
                                               severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"note": "model.validation.enabled is false"})])
    try:
        with warehouse.transaction() as con:
            scales = market_lib.market_scales(con, inputs, f"validation of {inputs.data_version}")
    except MarketError as exc:
        raise dg.Failure(str(exc)) from None
    version = market_lib.validation_version(inputs, scales, code_version=MODEL_CODE_VERSION)
    with warehouse.get_connection() as con:
        validation = market_lib.read_validation(con, version)
    if validation is None:  # a new version: refit on the training weeks (an unchanged one reads its rows)
        context.log.info(f"out-of-sample: refitting without the last {v.holdout_weeks} complete weeks")
        try:
            validation, forecast = market_lib.run_validation(inputs, scales, version, log=context.log.info)
        except MarketError as exc:  # e.g. too short a history: say so, do not stop the report
            context.log.warning(f"out-of-sample validation not run: {exc}")
            return dg.MaterializeResult(
                metadata={"market": market, "validated": False, "reason": str(exc)},
                data_version=dg.DataVersion(f"not-validated-{version}"),
                check_results=[dg.AssetCheckResult(check_name="beats_naive_forecast", passed=False,
                                                   severity=dg.AssetCheckSeverity.WARN,
                                                   metadata={"reason": f"not validated: {exc}"})])
        with warehouse.transaction() as con:
            market_lib.write_validation(con, validation, forecast, inputs.units)
    table, row, msg = validation.table, validation.market_row, validation.summary()
    (context.log.info if validation.passed else context.log.warning)(f"out-of-sample: {msg}")
    shown = table.drop(columns=["data_version", "materialized_at"], errors="ignore")
    meta = table_metadata(shown, "marts.model_validation")
    meta.update({"market": market, "model_mape": float(row["model_mape"]),
                 "baseline_mape": float(row["baseline_mape"]), "baseline": str(row["baseline"]),
                 "by_geo": dg.MetadataValue.md(shown.to_markdown(index=False))})
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(version),
        check_results=[dg.AssetCheckResult(
            check_name="beats_naive_forecast", passed=validation.passed, severity=severity,
            metadata={"summary": msg, "model_mape": float(row["model_mape"]),
                      "baseline_mape": float(row["baseline_mape"]),
                      "geos_not_beating_it": dg.MetadataValue.json(validation.geos_not_beating_baseline)})])
