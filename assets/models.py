"""Bayesian MMM per market (group `models`): lift tests in model units, the two fits, their gates.

Every asset here is partitioned by market (pipeline.yaml `markets`, default one
market `all`), so each market's fits run, fail and retry on their own. The
modelling itself lives in `mmm_pipeline.model` .
"""

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
import pandas as pd

from assets.automation import DOWNSTREAM
from assets.metadata import OWNERS, plots_metadata, source_version, table_metadata
from assets.costs import cost_per_unit
from assets.ingestion import raw_lift_tests
from assets.staging import staging_controls_weekly, staging_kpi_weekly, staging_media_weekly
from mmm_pipeline.ingestion import staging as staging_lib
from mmm_pipeline.alerts import record_alert
from mmm_pipeline.model.ladder import ATTEMPTS_ATTR, fit_with_ladder
from mmm_pipeline.paths import safe_name
from mmm_pipeline.settings import RunSettings, market_geos, market_names
from mmm_pipeline.warehouse import append_history, fingerprint
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# A change to the fitting code refits (it is part of every model_version); the report's own code
# only re-runs the report.
MODEL_CODE_VERSION = source_version("mmm_pipeline.model", "mmm_pipeline.model.lift_tests",
                                    "mmm_pipeline.settings", glue=__name__)
REPORT_CODE_VERSION = source_version("mmm_pipeline.reporting.model_report", glue=__name__)
MARKETS = dg.StaticPartitionsDefinition(market_names(RunSettings.from_env().input_dir))
VARIANTS = ("uncalibrated", "calibrated")
COMMON = dict(automation_condition=DOWNSTREAM, group_name="models", owners=OWNERS, partitions_def=MARKETS, code_version=MODEL_CODE_VERSION)


def _latest(con, table: str) -> pd.DataFrame:
    df = con.execute(f"SELECT * FROM {table}_latest").df()
    if "week_start" in df:
        df["week_start"] = pd.to_datetime(df["week_start"])
    return df


class MarketInputs(NamedTuple):
    """What every per-market model and output asset reads."""

    config: Any
    pipeline_hash: str
    geos: list[str]
    media: pd.DataFrame
    kpi: pd.DataFrame
    cpu: pd.DataFrame
    controls: pd.DataFrame      # staging.controls_weekly of the market's geos, wide (empty: no controls)
    data_version: str


def market_inputs(con, settings: PipelineSettings, market: str) -> MarketInputs:
    """The pipeline config, the market's geos, latest staging.media_weekly, staging.kpi_weekly,
    marts.cost_per_unit and staging.controls_weekly (wide), and the data version they make
    together. Fails when `market` is not in pipeline.yaml's markets."""
    config, pipeline_hash = settings.config()
    cal = staging_lib.build_calendar(con, config.geo_weights)
    geos = market_geos(config, cal.geos)
    if market not in geos:
        raise dg.Failure(f"market {market!r} is not in pipeline.yaml markets {sorted(geos)}; "
                         "reload the code location after changing markets")
    media = _latest(con, "staging.media_weekly")
    kpi = _latest(con, "staging.kpi_weekly")
    cpu = _latest(con, "marts.cost_per_unit")
    # No loaded control rows means no controls, whatever an older staging.controls_weekly holds (its
    # history keeps the last non-empty materialization as "latest" when controls/ is emptied).
    has_controls = _exists(con, "raw.controls_current") and _exists(con, "staging.controls_weekly_latest") and \
        con.execute("SELECT count(*) FROM raw.controls_current").fetchone()[0] > 0
    controls_long = _latest(con, "staging.controls_weekly") if has_controls else staging_lib.empty_controls_weekly()
    controls_long = controls_long[controls_long["geo"].isin(geos[market])]
    versions = [media["data_version"].iloc[0], kpi["data_version"].iloc[0], cpu["data_version"].iloc[0], geos[market]]
    if len(controls_long):  # without controls the version is what it was before controls existed
        versions.append(controls_long["data_version"].iloc[0])
    return MarketInputs(config, pipeline_hash, geos[market], media, kpi, cpu,
                        staging_lib.controls_wide(controls_long.drop(columns=["data_version", "materialized_at"],
                                                                     errors="ignore")),
                        fingerprint(*versions))


@dg.asset(deps=[raw_lift_tests, staging_media_weekly], kinds={"duckdb", "pandas"}, pool="duckdb",
          check_specs=[dg.AssetCheckSpec("lift_tests_usable", asset="lift_tests_model_units",
                                         description="Warns listing tests that could not be converted "
                                         "(unknown channel or geo, window outside the data...).")],
          description="marts.lift_tests: each lift test per geo in the model's units: the cost per unit of the "
          "test's own window, its scope (window or total), the readout and sigma of its one likelihood term "
          "(delta_y_test, sigma_test), and the weekly steady-state conversion (x, delta_x, delta_y, sigma per "
          "week) kept for the steady_state option. Unusable tests are quarantined.", **COMMON)
def lift_tests_model_units(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                           settings: PipelineSettings) -> dg.MaterializeResult:
    from mmm_pipeline.model import lift_tests as lift_lib

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
        config, geos = inputs.config, inputs.geos
        tests = con.execute("SELECT * FROM raw.lift_tests").df()
        daily = con.execute("SELECT date_day, geo, channel, unit, clicks, impressions, spend "
                            "FROM raw.ad_reporting_current").df()
        converted, rejected = lift_lib.convert_lift_tests(tests, daily, geos, market=market,
                                                          **config.lift_tests.model_dump())
        version = fingerprint(MODEL_CODE_VERSION, converted.to_json(), rejected.to_json())
        kind = f"lift_test_conversion:{market}"
        con.execute("DELETE FROM raw.quarantine WHERE kind = ?", [kind])
        if len(rejected):
            rows = rejected.merge(tests[["test_id", "source_file", "source_row"]], on="test_id", how="left")
            for r in rows.to_dict("records"):
                con.execute("INSERT INTO raw.quarantine VALUES (?, ?, ?, ?, ?, now())",
                            [kind, r.get("source_file") or "lift_tests.csv", r.get("source_row"),
                             f"{r['reason']}: {r.get('detail', '')}", pd.Series(r).to_json()])
        mart = converted.reindex(columns=[
            "test_id", "market", "channel", "geo", "x", "delta_x", "delta_y", "sigma", "delta_y_window",
            "weeks_in_window", "cost_per_unit_used", "unit", "start_date", "end_date", "delta_spend",
            "scope", "delta_y_test", "sigma_test", "market_share", "geo_share", "national"])
        mart["market"] = market
        appended = append_history(con, "marts.lift_tests", mart, version=version, partition_columns=("market",))
    meta = table_metadata(mart, "marts.lift_tests")
    meta.update({"data_version": version, "history_appended": appended, "market": market,
                 "tests_converted": int(converted["test_id"].nunique()) if len(converted) else 0,
                 "tests_rejected": len(rejected),
                 "rejected": dg.MetadataValue.md(rejected.to_markdown(index=False) if len(rejected)
                                                 else "No test rejected.")})
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(version),
        check_results=[dg.AssetCheckResult(
            check_name="lift_tests_usable", passed=rejected.empty, severity=dg.AssetCheckSeverity.WARN,
            metadata={"rejected": dg.MetadataValue.md(
                rejected.to_markdown(index=False) if len(rejected) else "All tests usable.")})],
    )


def _gate_checks(variant: str) -> list[dg.AssetCheckSpec]:
    key = dg.AssetKey(f"mmm_{variant}")
    return [
        dg.AssetCheckSpec("convergence", asset=key, blocking=True,
                          description="max R-hat, min bulk ESS and divergences over the free parameters "
                          "(full profile: <= 1.01, >= 400, 0). Blocks curves and allocations; in the fast "
                          "profile it only warns."),
        dg.AssetCheckSpec("data_informative", asset=key,
                          description="Warns listing media parameters (per geo and channel) whose posterior "
                          "is still their prior: variance narrowed by less than gates.min_posterior_contraction "
                          "and mean moved by under half a prior sd (marts.prior_posterior)."),
        dg.AssetCheckSpec("in_sample_fit", asset=key,
                          description="R-squared, MAPE and 94% interval coverage, pooled and per geo "
                          "(each geo against its own mean: marts.model_fit_geo); warns when the pooled or the "
                          "worst geo's value is outside the configured range."),
    ]


def _fit_variant(context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: PipelineSettings,
                 artifacts: ArtifactStore, variant: str) -> dg.MaterializeResult:
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.reporting import model_report

    market = context.partition_key
    with warehouse.get_connection() as con:
        config, pipeline_hash, geos, media, kpi, cpu, controls, data_version = market_inputs(con, settings, market)
        lift = None
        if variant == "calibrated":
            lift = con.execute("SELECT * FROM marts.lift_tests_latest WHERE market = ?", [market]).df() \
                if _exists(con, "marts.lift_tests_latest") else pd.DataFrame()
            lift = lift.dropna(subset=["x"]) if "x" in lift else lift
    # experiments read out as iROAS / CPA: pymc-marketing's cost-per-target calibration
    from mmm_pipeline.model import roas_targets as rt_lib

    targets = rt_lib.read_roas_targets(settings.input_dir) if variant == "calibrated" else None
    if targets is not None:
        targets = targets[targets["geo"].isna() | targets["geo"].isin(geos)].reset_index(drop=True)
    cfg = _model_config(settings, config, controls)
    cfg_hash = model_lib.config_hash(cfg)
    lift_version = fingerprint(lift.drop(columns=["materialized_at", "data_version"], errors="ignore").to_json()) \
        if lift is not None else ""
    if targets is not None and len(targets):
        lift_version = fingerprint(lift_version, targets.to_json())
    scales = _fixed_scales(warehouse, settings, market, media, kpi, cpu, controls, cfg, geos, f"{variant} fit of {data_version}")
    model_version = fingerprint(MODEL_CODE_VERSION, data_version, cfg_hash, variant, market, lift_version,
                                scales.rows().to_json())
    checks_enforced = settings.profile == "full"
    # A failed gate blocks the outputs only with model.strict_gates; otherwise they materialize
    # with gated = false and the reason (the fast profile's gate always only warns).
    blocks = checks_enforced and cfg.strict_gates
    severity = dg.AssetCheckSeverity.ERROR if blocks else dg.AssetCheckSeverity.WARN

    if variant == "calibrated" and (lift is None or lift.empty) and (targets is None or targets.empty):
        context.log.warning(f"market {market}: no valid lift test, so the calibrated model is not fitted")
        return dg.MaterializeResult(
            metadata={"fitted": False, "market": market,
                      "reason": "no valid lift test for this market (see marts.lift_tests and raw.quarantine)"},
            data_version=dg.DataVersion(f"not-fitted-{model_version}"),
            # WARN, not ERROR: the calibration report still runs and says the variant is missing.
            check_results=[dg.AssetCheckResult(check_name=n, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"reason": "not fitted: no valid lift test"})
                           for n in ("convergence", "in_sample_fit", "data_informative")],
        )

    artifact = artifacts.path(safe_name(variant), safe_name(market), f"{model_version}.nc")
    reused = False
    fit = None
    attempts: list[dict] = []
    if artifact.exists():
        try:
            mmm = model_lib.load_model(artifact)
            attempts = json.loads(mmm.idata.attrs.get(ATTEMPTS_ATTR, "[]"))
            reused = True
            context.log.info(f"model version {model_version} already exists at {artifact}: loaded, not refitted")
        except model_lib.ModelError as exc:
            context.log.warning(f"{exc}; refitting")
            artifact.unlink(missing_ok=True)
    if not reused:
        context.log.info(f"fitting {variant} model for market {market} ({settings.profile} profile, "
                         f"geos {geos}), version {model_version}")
        use_lift = variant == "calibrated" and lift is not None and not lift.empty
        fit, attempts = fit_with_ladder(
            lambda attempt_cfg: model_lib.fit_model(
                media, kpi, cpu, attempt_cfg, lift_tests=lift if use_lift else None, geos=geos,
                controls=controls if attempt_cfg.control_columns else None, scales=scales,
                progress_callback=context.log.info, roas_targets=targets),
            cfg, log=context.log.warning)
        fit.mmm.idata.attrs[ATTEMPTS_ATTR] = json.dumps(attempts)
        model_lib.save_model(fit.mmm, artifact)
        mmm = fit.mmm
        for stage, seconds in fit.stage_seconds.items():
            context.log.info(f"stage {stage}: {seconds:.1f} s")
    diag = fit.diagnostics if fit else model_lib.diagnose(
        mmm, max_rhat=cfg.gates.max_rhat, min_ess_bulk=cfg.gates.min_ess_bulk)
    if fit:
        passed, failures, warns = fit.gate_passed, fit.gate_failures, fit.gate_warnings
    else:
        passed, failures, warns = model_lib.gate_result(diag, cfg)

    from mmm_pipeline.model.diagnostics import prior_posterior_shift

    shift = prior_posterior_shift(mmm, seed=cfg.random_seed, min_contraction=cfg.gates.min_posterior_contraction)
    dominated = shift[shift["prior_dominated"]]
    run_row = pd.DataFrame([{
        "market": market, "variant": variant, "data_version": data_version, "config_hash": cfg_hash,
        "profile": settings.profile, "sampler": cfg.sampler.nuts_sampler,
        "control_columns": ", ".join(cfg.control_columns), "chains": diag["chains"],
        "draws": diag["draws"], "fit_seconds": sum(a["fit_seconds"] for a in attempts) if fit else None,
        "attempts": len(attempts) or None, "attempt_history": json.dumps(attempts) if attempts else None,
        "strict_gates": bool(cfg.strict_gates), "divergence_share": float(diag.get("divergence_share", 0.0)),
        "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"], "divergences": diag["divergences"],
        "r2": diag["r2"], "mape": diag["mape"], "coverage_94": diag["coverage_94"],
        "worst_geo": diag.get("worst_geo"), "worst_geo_r2": diag.get("worst_geo_r2"),
        "passed_gates": bool(passed), "gated": bool(passed and checks_enforced),
        "gate_failures": "; ".join(failures), "artifact_uri": str(artifact),
    }])
    contributions = model_lib.contributions_frame(mmm)
    contributions.insert(0, "variant", variant)
    contributions.insert(0, "market", market)
    with warehouse.transaction() as con:
        appended = append_history(con, "marts.model_runs", run_row, version=model_version,
                                  version_column="model_version", partition_columns=("market", "variant"))
        append_history(con, "marts.contributions", contributions, version=model_version,
                       version_column="model_version", partition_columns=("market", "variant"))
        # What the report shows for fit and convergence, so it never reloads the posterior.
        fit_rows = diag["fit_table"].assign(market=market, variant=variant)
        append_history(con, "marts.model_fit", fit_rows, version=model_version,
                       version_column="model_version", partition_columns=("market", "variant"))
        append_history(con, "marts.prior_posterior", shift.assign(market=market, variant=variant),
                       version=model_version, version_column="model_version", partition_columns=("market", "variant"))
        append_history(con, "marts.model_fit_geo", diag["fit_by_geo"].assign(market=market, variant=variant),
                       version=model_version, version_column="model_version", partition_columns=("market", "variant"))
        diag_rows = pd.DataFrame([{"market": market, "variant": variant, "parameter": n, **v}
                                  for n, v in diag["per_parameter"].items()])
        append_history(con, "marts.model_diagnostics", diag_rows, version=model_version,
                       version_column="model_version", partition_columns=("market", "variant"))

    meta = {
        "market": market, "variant": variant, "model_version": model_version, "artifact": dg.MetadataValue.path(
            str(artifact)), "reused_existing_artifact": reused, "history_appended": appended,
        "profile": settings.profile, "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"],
        "divergences": diag["divergences"], "r2": diag["r2"], "coverage_94": diag["coverage_94"],
        "fit_seconds": fit.fit_seconds if fit else 0.0,
        "stage_seconds": dg.MetadataValue.json(fit.stage_seconds if fit else {}),
        "contributions": dg.MetadataValue.md(contributions.groupby(["component", "component_type"])["mean"]
                                             .sum().reset_index().to_markdown(index=False)),
    }
    meta.update(plots_metadata(artifacts, model_report.model_figures(mmm, contributions, title=f"{market} {variant}"),
                               (variant, market)))
    offenders = diag.get("rhat_offenders", []) + diag.get("ess_offenders", [])
    if len(attempts) > 1:
        meta["attempts"] = dg.MetadataValue.md(pd.DataFrame(attempts).to_markdown(index=False))
    if not passed:
        tried = f" after {len(attempts)} attempt(s)" if len(attempts) > 1 else ""
        consequence = ("it blocks the outputs (model.strict_gates)" if blocks else
                       "the outputs still materialize, marked gated = false" if checks_enforced else "")
        problem = (f"convergence gate failed for {variant} model {model_version}{tried}: {'; '.join(failures)}"
                   + (f"; {consequence}" if consequence else ""))
        (context.log.error if checks_enforced else context.log.warning)(problem)
        with warehouse.get_connection() as con:
            record_alert(con, f"mmm_{variant}[{market}]", problem, context.run_id,
                         "error" if checks_enforced else "warning", once=True)
    return dg.MaterializeResult(
        metadata=meta, data_version=dg.DataVersion(model_version),
        check_results=[
            dg.AssetCheckResult(
                check_name="convergence", passed=bool(passed), severity=severity,
                metadata={"max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"],
                          "divergences": diag["divergences"], "enforced": checks_enforced,
                          "blocks_outputs": blocks, "attempts": len(attempts) or 1,
                          "failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures) or "none"),
                          "offending_parameters": dg.MetadataValue.json(offenders)}),
            dg.AssetCheckResult(
                check_name="data_informative", passed=dominated.empty, severity=dg.AssetCheckSeverity.WARN,
                metadata={"prior_dominated": len(dominated), "elements": len(shift),
                          "median_contraction": float(shift["contraction"].median()) if len(shift) else None,
                          "parameters": dg.MetadataValue.md(
                              dominated[["parameter", "element", "contraction", "shift_z"]].to_markdown(index=False)
                              if len(dominated) else "Every media parameter moved away from its prior.")}),
            dg.AssetCheckResult(
                check_name="in_sample_fit", passed=not warns, severity=dg.AssetCheckSeverity.WARN,
                metadata={"r2": diag["r2"], "mape": diag["mape"], "coverage_94": diag["coverage_94"],
                          "worst_geo": diag.get("worst_geo") or "", "worst_geo_r2": diag.get("worst_geo_r2"),
                          "by_geo": dg.MetadataValue.md(diag["fit_by_geo"].to_markdown(index=False)),
                          "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in warns) or "none")}),
        ],
    )


def _model_config(settings: PipelineSettings, config, controls: pd.DataFrame):
    """The profile's model config with pipeline.yaml's `model` section and the staged controls (all,
    or those model.control_columns picks)."""
    from mmm_pipeline import model as model_lib

    cfg = model_lib.load_model_config(settings.profile, config.model)
    try:
        return model_lib.with_control_columns(cfg, [c for c in controls.columns if c not in ("week_start", "geo")])
    except model_lib.ModelError as exc:
        raise dg.Failure(str(exc)) from None


def _fixed_scales(warehouse, settings, market, media, kpi, cpu, controls, cfg, geos, set_by: str):
    """The market's FixedScaling values (mmm_pipeline.model.scales), stored on first use; per capita
    when geos.csv gives the market's geos a population, else per geo mean KPI (`model.geo_scaling`)."""
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.ingestion import geos as geos_lib
    from mmm_pipeline.model import scales as scales_lib

    data = model_lib.prepare_model_data(media, kpi, cpu, geos=geos, control_columns=cfg.control_columns,
                                        controls=controls if cfg.control_columns else None)
    try:
        population = (geos_lib.market_populations(geos_lib.read_geo_populations(settings.input_dir), data.geos)
                      if cfg.geo_scaling == "size" else None)  # `market`: one scale per market, geos.csv unused
    except geos_lib.GeoFileError as e:
        raise dg.Failure(f"market {market}: {e}") from e
    with warehouse.transaction() as con:  # both variants may ask at once: the lock serialises them
        scales, _ = scales_lib.market_scales(con, market, data, set_by, population,
                                             by_size=cfg.geo_scaling == "size")
    return scales


def _exists(con, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema=? AND "
                            "table_name=?", [schema, name]).fetchall()[0][0])


MODEL_DESCRIPTION = (
    "pymc-marketing multidimensional MMM (dims geo) on weekly delivery units: geometric adstock, logistic "
    "saturation, yearly Fourier seasonality, non-centered partially pooled geo parameters, fitted with "
    "nutpie. Saved with MMM.save to MMM_ARTIFACT_DIR/<variant>/<market>/<model_version>.nc; an existing "
    "valid artifact of the same version is loaded instead of refitted. A fit that fails its gate climbs the "
    "retry ladder (model.retry). Writes marts.model_runs (with every attempt), marts.contributions, "
    "marts.model_fit, marts.model_fit_geo, marts.model_diagnostics and marts.prior_posterior."
)


@dg.asset(deps=[staging_media_weekly, staging_kpi_weekly, staging_controls_weekly, cost_per_unit], check_specs=_gate_checks("uncalibrated"),
          kinds={"pymc", "duckdb"}, pool="model_fit", description="Uncalibrated " + MODEL_DESCRIPTION, **COMMON)
def mmm_uncalibrated(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    return _fit_variant(context, warehouse, settings, artifacts, "uncalibrated")


@dg.asset(deps=[staging_media_weekly, staging_kpi_weekly, staging_controls_weekly, cost_per_unit, lift_tests_model_units],
          check_specs=_gate_checks("calibrated"), kinds={"pymc", "duckdb"}, pool="model_fit",
          description="Lift-test-calibrated (add_lift_test_measurements) " + MODEL_DESCRIPTION, **COMMON)
def mmm_calibrated(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    return _fit_variant(context, warehouse, settings, artifacts, "calibrated")


@dg.asset(deps=[mmm_uncalibrated, mmm_calibrated], kinds={"duckdb", "pandas"},
          description="marts.calibration_report (per geo and channel, for the media parameters, ROAS and the "
          "response at current spend: 94% HDI under both models, precision improvement, and with truth.json "
          "each model's error, truth inside each HDI, bias improvement) and marts.lift_test_fit (each test's "
          "implied lift in its own scope vs the readout, per variant); a ROAS-vs-truth PNG per market.",
          **{**COMMON, "code_version": REPORT_CODE_VERSION})
def calibration_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.reporting import model_report

    market = context.partition_key
    with warehouse.get_connection() as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest WHERE market = ?", [market]).df()
        lift = con.execute("SELECT * FROM marts.lift_tests_latest WHERE market = ?", [market]).df() \
            if _exists(con, "marts.lift_tests_latest") else pd.DataFrame()
    models = {}
    for r in runs.to_dict("records"):
        models[r["variant"]] = (r["model_version"], model_lib.load_model(r["artifact_uri"]))
    truth_path = Path(settings.input_dir) / "truth.json"
    truth = truth_path if truth_path.exists() else None
    cal = model_lib.load_model_config(settings.profile, settings.config()[0].model).calibration
    report, fit_table = model_report.calibration_tables(models, lift, market, truth,
                                                        extra_spend_in_data=cal.extra_spend_in_data)
    version = fingerprint(REPORT_CODE_VERSION, sorted(v for v, _ in models.values()))
    with warehouse.transaction() as con:
        append_history(con, "marts.calibration_report", report, version=version, partition_columns=("market",))
        if len(fit_table):
            append_history(con, "marts.lift_test_fit", fit_table, version=version, partition_columns=("market",))
    meta = table_metadata(report, "marts.calibration_report")
    meta.update({"market": market, "variants": dg.MetadataValue.json(sorted(models)),
                 "calibrated_fitted": "calibrated" in models,
                 "lift_test_fit": dg.MetadataValue.md(fit_table.to_markdown(index=False) if len(fit_table)
                                                      else "No calibrated model: nothing to compare.")})
    if "calibrated" not in models:
        meta["note"] = "The calibrated variant was not fitted (no valid lift test); the report has one model."
    meta.update(plots_metadata(artifacts, model_report.calibration_figures(models, report, fit_table, truth),
                               ("calibration", market)))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


@dg.asset(deps=[staging_media_weekly, staging_kpi_weekly, staging_controls_weekly, cost_per_unit],
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
          **COMMON)
def model_validation(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     settings: PipelineSettings) -> dg.MaterializeResult:
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.model.holdout import holdout_validation

    market = context.partition_key
    with warehouse.get_connection() as con:
        config, _, geos, media, kpi, cpu, controls, data_version = market_inputs(con, settings, market)
    cfg = _model_config(settings, config, controls)
    v = cfg.validation
    severity = dg.AssetCheckSeverity.ERROR if v.gate == "error" else dg.AssetCheckSeverity.WARN
    if not v.enabled:
        return dg.MaterializeResult(
            metadata={"enabled": False, "market": market},
            check_results=[dg.AssetCheckResult(check_name="beats_naive_forecast", passed=True,
                                               severity=dg.AssetCheckSeverity.WARN,
                                               metadata={"note": "model.validation.enabled is false"})])
    scales = _fixed_scales(warehouse, settings, market, media, kpi, cpu, controls, cfg, geos, f"validation of {data_version}")
    version = fingerprint(MODEL_CODE_VERSION, data_version, model_lib.config_hash(cfg), v.model_dump(), market,
                          scales.rows().to_json())
    with warehouse.get_connection() as con:
        done = _exists(con, "marts.model_validation") and con.execute(
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
