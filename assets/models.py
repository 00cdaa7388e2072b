"""Bayesian MMM per market (group `models`): lift tests in model units, the two fits, their gates.

Every asset here is partitioned by market (pipeline.yaml `markets`, default one
market `all`), so each market's fits run, fail and retry on their own. The
workflow (inputs, configuration, scales, fit or load, mart rows) is
`mmm_pipeline.model.market`; these assets turn its results into Dagster metadata,
checks and `MaterializeResult`. The calibration report and the out-of-sample
validation of each market are in `assets.calibration` and `assets.holdout`.
"""

import dagster as dg
import pandas as pd

from assets.automation import DOWNSTREAM
from assets.metadata import OWNERS, plots_metadata, source_version, table_metadata
from assets.pools import DUCKDB, MODEL_FIT, pool
from mmm_pipeline.alerts import record_alert
from mmm_pipeline.model import market as market_lib
from mmm_pipeline.model.market import MarketError, MarketInputs
from mmm_pipeline.paths import safe_name
from mmm_pipeline.settings import RunSettings, market_names
from mmm_pipeline.warehouse import append_history, fingerprint
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# A change to the fitting code refits (it is part of every model_version).
MODEL_CODE_VERSION = source_version("mmm_pipeline.model", "mmm_pipeline.model.market", "mmm_pipeline.settings",
                                    glue=__name__)
MARKETS = dg.StaticPartitionsDefinition(market_names(RunSettings.from_env().input_dir))
COMMON = dict(automation_condition=DOWNSTREAM, group_name="models", owners=OWNERS, partitions_def=MARKETS,
              code_version=MODEL_CODE_VERSION)
# Upstream assets by key (importing their modules would make their code part of this one's version).
STAGED = ["staging_media_weekly", "staging_kpi_weekly", "staging_controls_weekly", "cost_per_unit"]


def market_inputs(con, settings: PipelineSettings, market: str, *, resolve_family: bool = True) -> MarketInputs:
    """`market_lib.read_inputs` of the run's settings; a Failure naming the problem when it cannot."""
    config, _ = settings.config()
    try:
        return market_lib.read_inputs(con, config, market, profile=settings.profile, input_dir=settings.input_dir,
                                      resolve_family=resolve_family)
    except MarketError as exc:
        raise dg.Failure(str(exc)) from None


@dg.asset(deps=["raw_lift_tests", "staging_media_weekly"], kinds={"duckdb", "pandas"}, pool=pool(DUCKDB),
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
        inputs = market_inputs(con, settings, market, resolve_family=False)  # tests do not depend on the curves
        config, geos = inputs.pipeline, inputs.geos
        tests = con.execute("SELECT * FROM raw.lift_tests").df()
        daily = con.execute("SELECT date_day, geo, channel, unit, clicks, impressions, spend "
                            "FROM raw.ad_reporting_current").df()
        converted, rejected = lift_lib.convert_lift_tests(tests, daily, geos, market=market,
                                                          **config.lift_tests.conversion_kwargs())
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
        appended = append_history(con, "marts.lift_tests", mart, version=version, partition_columns=("market",),
                                  units=inputs.units)
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
    from mmm_pipeline.reporting import model_report

    market = context.partition_key
    try:
        with warehouse.get_connection() as con:
            inputs = market_inputs(con, settings, market)
            lift, targets = market_lib.calibration_inputs(con, inputs, variant)
            split = None
            if variant == "calibrated" and lift is not None and len(lift):
                lift, split = market_lib.national_test_split(con, inputs, lift, log=context.log.info)
        with warehouse.transaction() as con:  # both variants may ask at once: the lock serialises them
            scales = market_lib.market_scales(con, inputs, f"{variant} fit of {inputs.data_version}")
        plan = market_lib.plan(inputs, variant, lift, targets, scales, code_version=MODEL_CODE_VERSION)
    except MarketError as exc:
        raise dg.Failure(str(exc)) from None
    cfg, model_version = inputs.config, plan.model_version
    checks_enforced = settings.profile == "full"
    # A failed gate blocks the outputs only with model.strict_gates; otherwise they materialize
    # with gated = false and the reason (the fast profile's gate always only warns).
    blocks = checks_enforced and cfg.strict_gates
    severity = dg.AssetCheckSeverity.ERROR if blocks else dg.AssetCheckSeverity.WARN

    if variant == "calibrated" and not plan.has_calibration:
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
    try:
        fitted = market_lib.fit_or_load(inputs, plan, artifact, log=context.log.info, warn=context.log.warning)
        rows = market_lib.mart_rows(inputs, plan, fitted, gates_enforced=checks_enforced)
    except MarketError as exc:
        raise dg.Failure(str(exc)) from None
    if split is not None and len(split):
        # this market's rows; each market's calibrated fit writes its own
        rows["marts.national_test_split"] = split[split["market"] == market].assign(variant=variant)
    with warehouse.transaction() as con:
        appended = market_lib.write_marts(con, model_version, rows, inputs.units)
    diag, passed, failures, warns, attempts = (fitted.diagnostics, fitted.passed, fitted.failures, fitted.warnings,
                                               fitted.attempts)
    contributions, shift = rows["marts.contributions"], rows["marts.prior_posterior"]
    dominated = shift[shift["prior_dominated"]]
    meta = {
        "market": market, "variant": variant, "model_version": model_version, "artifact": dg.MetadataValue.path(
            str(artifact)), "reused_existing_artifact": fitted.reused, "history_appended": appended,
        "profile": settings.profile, "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"],
        "divergences": diag["divergences"], "r2": diag["r2"], "coverage_94": diag["coverage_94"],
        "fit_seconds": fitted.fit.fit_seconds if fitted.fit else 0.0,
        "stage_seconds": dg.MetadataValue.json(fitted.fit.stage_seconds if fitted.fit else {}),
        "contributions": dg.MetadataValue.md(contributions.groupby(["component", "component_type"])["mean"]
                                             .sum().reset_index().to_markdown(index=False)),
    }
    meta.update(plots_metadata(artifacts, model_report.model_figures(fitted.mmm, contributions,
                                                                     title=f"{market} {variant}"), (variant, market)))
    offenders = diag.get("rhat_offenders", []) + diag.get("ess_offenders", [])
    if split is not None and len(split):
        meta["national_test_split"] = dg.MetadataValue.md(split[
            ["test_id", "market", "spend_share", "lift_share_mean", "lift_share_sd", "delta_y_test", "sigma_test",
             "method"]].to_markdown(index=False))
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




MODEL_DESCRIPTION = (
    "pymc-marketing multidimensional MMM (dims geo) on weekly delivery units: adstock and saturation as "
    "model.adstock / model.saturation say (geometric and logistic by default; chosen by model_family when "
    "model.family_candidates lists several), yearly Fourier seasonality, non-centered partially pooled geo parameters, fitted with "
    "nutpie. Saved with MMM.save to MMM_ARTIFACT_DIR/<variant>/<market>/<model_version>.nc; an existing "
    "valid artifact of the same version is loaded instead of refitted. A fit that fails its gate climbs the "
    "retry ladder (model.retry). Writes marts.model_runs (with every attempt), marts.contributions, "
    "marts.model_fit, marts.model_fit_geo, marts.model_diagnostics and marts.prior_posterior."
)


@dg.asset(deps=[*STAGED, "model_family"], check_specs=_gate_checks("uncalibrated"),
          kinds={"pymc", "duckdb"}, pool=pool(MODEL_FIT), description="Uncalibrated " + MODEL_DESCRIPTION, **COMMON)
def mmm_uncalibrated(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                     settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    return _fit_variant(context, warehouse, settings, artifacts, "uncalibrated")


# A national test that spans markets may be split by every market's uncalibrated prediction of it
# (lift_tests.national_split: predicted_lift), so each market's calibrated fit may read all markets'.
@dg.asset(deps=[*STAGED, "model_family",
                dg.AssetDep(lift_tests_model_units, partition_mapping=dg.AllPartitionMapping()),
                dg.AssetDep("mmm_uncalibrated", partition_mapping=dg.AllPartitionMapping())],
          check_specs=_gate_checks("calibrated"), kinds={"pymc", "duckdb"}, pool=pool(MODEL_FIT),
          description="Lift-test-calibrated " + MODEL_DESCRIPTION + " The lift tests enter as a window "
          "likelihood on each test's spend path; a national test shared with other markets is split by spend "
          "share or, with lift_tests.national_split: predicted_lift, by the markets' uncalibrated predicted lifts "
          "(marts.national_test_split).", **COMMON)
def mmm_calibrated(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    return _fit_variant(context, warehouse, settings, artifacts, "calibrated")
