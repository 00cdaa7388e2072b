"""Out-of-sample validation of a market's model (group `models`): a refit without the last weeks
forecasts them (`mmm_pipeline.model.holdout`)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import source_version, table_metadata
from assets.pools import MODEL_FIT, pool
from assets.models import COMMON, MODEL_CODE_VERSION, STAGED, market_inputs
from mmm_pipeline.model import market as market_lib
from mmm_pipeline.model.market import MarketError
from mmm_pipeline.warehouse import append_history, fingerprint, table_exists
from resources import PipelineSettings, WarehouseResource

# Its code is the model's and this module's own.
HOLDOUT_CODE_VERSION = source_version("mmm_pipeline.model", "mmm_pipeline.model.market", "mmm_pipeline.settings",
                                      glue=__name__)
TRACK_RECORD_CODE_VERSION = source_version("mmm_pipeline.model.track_record", glue=__name__)


@dg.asset(deps=STAGED, kinds={"pymc", "duckdb"}, pool=pool(MODEL_FIT),
          description="marts.model_family: with model.family_candidates (two or more adstock x saturation pairs), "
          "each candidate refitted without the last model.validation.holdout_weeks weeks and scored by the CRPS "
          "of its forecast of them (per week and geo, over the geo's mean KPI); the first candidate is kept "
          "unless another converged one forecasts better by more than 2 standard errors. Both fits and the "
          "out-of-sample validation use the chosen family. Without candidates it does nothing.",
          **{**COMMON, "code_version": HOLDOUT_CODE_VERSION})
def model_family(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 settings: PipelineSettings) -> dg.MaterializeResult:
    from mmm_pipeline.model import family as family_lib

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market, resolve_family=False)
    cfg = inputs.config
    if not cfg.family_candidates:
        return dg.MaterializeResult(metadata={"market": market, "selection": "off (model.family_candidates empty)",
                                              "family": f"{cfg.adstock} + {cfg.saturation}"},
                                    data_version=dg.DataVersion(f"{cfg.adstock}+{cfg.saturation}"))
    try:
        with warehouse.transaction() as con:
            scales = market_lib.market_scales(con, inputs, f"family choice of {inputs.data_version}")
        key = family_lib.selection_key(market, inputs.data_version, cfg)
        version = fingerprint(MODEL_CODE_VERSION, key, cfg.validation.model_dump(), scales.rows().to_json())
        with warehouse.get_connection() as con:
            table = family_lib.read_selection(con, market, version)
        stored = bool(len(table))
        if not stored:  # a new version: refit the candidates (an unchanged one reads its rows)
            selection = market_lib.select_family(inputs, scales, code_version=MODEL_CODE_VERSION,
                                                 log=context.log.info)
            with warehouse.transaction() as con:
                market_lib.write_family_selection(con, selection, version, inputs.units)
            table = selection.table
    except MarketError as exc:
        raise dg.Failure(str(exc)) from None
    chosen = table[table["chosen"]].iloc[0]
    context.log.info(f"curve family of {market}: {chosen['reason']}")
    shown = table.drop(columns=["data_version", "materialized_at", "selection_key", "reason"], errors="ignore")
    return dg.MaterializeResult(
        metadata={"market": market, "chosen": str(chosen["candidate"]), "reason": str(chosen["reason"]),
                  "reused": stored, "candidates": dg.MetadataValue.md(shown.to_markdown(index=False))},
        data_version=dg.DataVersion(version))


@dg.asset(deps=[*STAGED, "model_family"],
          check_specs=[dg.AssetCheckSpec(
              "beats_naive_forecast", asset="model_validation",
              description="The model refitted without the last model.validation.holdout_weeks (8) complete weeks "
              "converges (its own gate: R-hat <= 1.05, bulk ESS >= 100, after the retry ladder) and forecasts "
              "them with a lower market MAPE than the better naive forecast (same week last year, or the mean "
              "of the last 8 weeks); warns by default, an ERROR with model.validation.gate: error.")],
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
                      "refit_converged": validation.refit_converged,
                      "baseline_mape": float(row["baseline_mape"]),
                      "geos_not_beating_it": dg.MetadataValue.json(validation.geos_not_beating_baseline)})])


@dg.asset(deps=["mmm_uncalibrated", "mmm_calibrated", *STAGED], kinds={"pymc", "duckdb"},
          description="marts.kpi_forecast (each fitted model's forecast of the planning horizon's weeks after its "
          "training under the media it expects, with 94% HDI) and marts.track_record (each earlier model of "
          "the market, once the data reach its forecast weeks: its stored forecast and its posterior "
          "re-evaluated on the media and controls that happened, against the KPI that came; error and "
          "whether the 94% HDI covered it). A user sees whether the model's forward predictions hold "
          "before acting on its plans.",
          **{**COMMON, "code_version": TRACK_RECORD_CODE_VERSION})
def forecast_track_record(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                          settings: PipelineSettings) -> dg.MaterializeResult:
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.model import track_record as tr

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
        runs = con.execute("SELECT variant, model_version, artifact_uri FROM marts.model_runs_latest "
                           "WHERE market = ?", [market]).df()
        stored = con.execute("SELECT * FROM marts.kpi_forecast WHERE market = ?", [market]).df() \
            if table_exists(con, "marts.kpi_forecast") else pd.DataFrame()
        earlier = con.execute("SELECT DISTINCT variant, model_version, artifact_uri FROM marts.model_runs "
                              "WHERE market = ?", [market]).df()
        # per earlier model: the data version it was last scored on and how many of its weeks that reached
        scored = con.execute("SELECT model_version, any_value(data_version) AS data_version, "
                             "count(*) FILTER (WHERE geo = 'market') AS weeks FROM marts.track_record_latest "
                             "WHERE market = ? GROUP BY 1", [market]).df() \
            if table_exists(con, "marts.track_record_latest") else pd.DataFrame()
    horizon, seed = inputs.pipeline.planning_horizon_weeks, inputs.config.random_seed
    known = set(stored["model_version"]) if len(stored) else set()
    new_forecasts = []
    for r in runs.to_dict("records"):  # this run's models: forecast once per model version
        if r["model_version"] in known:
            continue
        rows = tr.forecast(model_lib.load_model(r["artifact_uri"]), horizon, seed=seed)
        new_forecasts.append(rows.assign(market=market, variant=r["variant"], model_version=r["model_version"]))
    records, summaries = [], []
    last_week = pd.to_datetime(inputs.kpi["week_start"]).max() if len(inputs.kpi) else None
    current = set(runs["model_version"])
    # every model whose forecast weeks the data now reach (the current one too, when the data grew
    # without a refit)
    for r in earlier.to_dict("records"):
        f = stored[stored["model_version"] == r["model_version"]] if len(stored) else stored
        if not len(f) or last_week is None \
                or pd.to_datetime(f["week_start"]).min() > last_week or not Path(r["artifact_uri"]).is_file():
            continue
        weeks = sorted(pd.to_datetime(f["week_start"]).unique())
        version = fingerprint(TRACK_RECORD_CODE_VERSION, r["model_version"], inputs.data_version)
        done = scored[scored["model_version"] == r["model_version"]] if len(scored) else scored
        if len(done) and (done["data_version"].iloc[0] == version or done["weeks"].iloc[0] >= len(weeks)):
            continue  # scored on these data, or on every week it forecast: a model is not rescored forever
        mmm = model_lib.load_model(r["artifact_uri"])
        rescored = tr.rescore(mmm, inputs.media, inputs.kpi, inputs.cpu, geos=inputs.geos,
                              control_columns=inputs.config.control_columns,
                              controls=inputs.controls if inputs.config.control_columns else None, weeks=weeks,
                              seed=seed)
        if not len(rescored):
            continue
        rows = tr.record(f, rescored).assign(market=market, variant=r["variant"], model_version=r["model_version"])
        records.append((rows, version))
        summaries.append({"variant": r["variant"], "model_version": r["model_version"], **tr.summary(rows)})
    with warehouse.transaction() as con:
        if new_forecasts:
            df = pd.concat(new_forecasts, ignore_index=True)
            append_history(con, "marts.kpi_forecast", df,
                           version=fingerprint(TRACK_RECORD_CODE_VERSION, sorted(set(df["model_version"]))),
                           partition_columns=("market", "model_version"), units=inputs.units)
        for rows, version in records:
            append_history(con, "marts.track_record", rows, version=version,
                           partition_columns=("market", "model_version"), units=inputs.units)
    meta = {"market": market, "forecasts_stored": len(new_forecasts), "models_scored": len(summaries),
            "track_record": dg.MetadataValue.md(pd.DataFrame(summaries).to_markdown(index=False) if summaries else
                                                "No earlier model's forecast weeks have arrived yet.")}
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(fingerprint(
        TRACK_RECORD_CODE_VERSION, sorted(current), [v for _, v in records], inputs.data_version)))
