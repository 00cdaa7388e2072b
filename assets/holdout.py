"""Out-of-sample validation of a market's model (group `models`): a refit without the last weeks
forecasts them (`mmm_pipeline.model.holdout`)."""

import dagster as dg

from assets.metadata import source_version, table_metadata
from assets.models import COMMON, MODEL_CODE_VERSION, STAGED, market_inputs
from mmm_pipeline.model import market as market_lib
from mmm_pipeline.model.market import MarketError
from mmm_pipeline.warehouse import append_history, fingerprint, table_exists
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
          kinds={"pymc", "duckdb"}, pool="model_fit",
          description="marts.model_validation (per geo and for the market: out-of-sample MAPE, CRPS and 94% "
          "coverage of the held-out weeks against the better naive forecast) and marts.model_validation_weekly "
          "(each held-out week: actual, forecast mean and 94% HDI, naive forecast). The refit has the "
          "uncalibrated structure (no lift tests) on the same config; model.validation.enabled: false skips it.",
          **{**COMMON, "code_version": HOLDOUT_CODE_VERSION})
def model_validation(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     settings: PipelineSettings) -> dg.MaterializeResult:
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.model.holdout import holdout_validation

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
    cfg, geos, media, kpi, cpu, controls = inputs.config, inputs.geos, inputs.media, inputs.kpi, inputs.cpu, inputs.controls
    v = cfg.validation
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
    version = fingerprint(MODEL_CODE_VERSION, inputs.data_version, model_lib.config_hash(cfg), v.model_dump(), market,
                          scales.rows().to_json())
    with warehouse.get_connection() as con:
        done = table_exists(con, "marts.model_validation") and con.execute(
            "SELECT count(*) FROM marts.model_validation WHERE data_version = ?", [version]).fetchone()[0]
        table = con.execute("SELECT * FROM marts.model_validation WHERE data_version = ?", [version]).df() \
            if done else None
    if table is None:  # a new version: refit on the training weeks (an unchanged one reads its rows)
        context.log.info(f"out-of-sample: refitting without the last {v.holdout_weeks} complete weeks")
        try:
            res = holdout_validation(media, kpi, cpu, cfg, holdout_weeks=v.holdout_weeks, geos=geos,
                                     controls=controls if cfg.control_columns else None,
                                     progress_callback=context.log.info, scales=scales)
        except model_lib.ModelError as exc:  # e.g. too short a history: say so, do not stop the report
            context.log.warning(f"out-of-sample validation not run: {exc}")
            return dg.MaterializeResult(
                metadata={"market": market, "validated": False, "reason": str(exc)},
                data_version=dg.DataVersion(f"not-validated-{version}"),
                check_results=[dg.AssetCheckResult(check_name="beats_naive_forecast", passed=False,
                                                   severity=dg.AssetCheckSeverity.WARN,
                                                   metadata={"reason": f"not validated: {exc}"})])
        table = res.table.assign(market=market, fit_passed_gates=res.fit.gate_passed)
        with warehouse.transaction() as con:
            append_history(con, "marts.model_validation", table, version=version, partition_columns=("market",))
            append_history(con, "marts.model_validation_weekly", res.forecast.assign(market=market),
                           version=version, partition_columns=("market",))
    row = table[table["geo"] == "market"].iloc[0]
    worst = table[table["geo"] != "market"].sort_values("model_mape").iloc[-1]
    msg = (f"held-out weeks {row['first_week']} to {row['last_week']}: model MAPE {row['model_mape']:.1%} vs "
           f"{row['baseline']} {row['baseline_mape']:.1%}; 94% coverage {row['coverage_94']:.0%}; worst geo "
           f"{worst['geo']} {worst['model_mape']:.1%}")
    (context.log.info if row["beats_baseline"] else context.log.warning)(f"out-of-sample: {msg}")
    shown = table.drop(columns=["data_version", "materialized_at"], errors="ignore")
    meta = table_metadata(shown, "marts.model_validation")
    meta.update({"market": market, "model_mape": float(row["model_mape"]),
                 "baseline_mape": float(row["baseline_mape"]), "baseline": str(row["baseline"]),
                 "by_geo": dg.MetadataValue.md(shown.to_markdown(index=False))})
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(version),
        check_results=[dg.AssetCheckResult(
            check_name="beats_naive_forecast", passed=bool(row["beats_baseline"]), severity=severity,
            metadata={"summary": msg, "model_mape": float(row["model_mape"]),
                      "baseline_mape": float(row["baseline_mape"]),
                      "geos_not_beating_it": dg.MetadataValue.json(
                          table[(table["geo"] != "market") & ~table["beats_baseline"]]["geo"].tolist())})])
