"""The calibration report of a market (group `models`): both fitted variants against each other,
the lift tests and, with truth.json, the truth (`mmm_pipeline.reporting.model_report`)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import plots_metadata, source_version, table_metadata
from assets.models import COMMON, market_inputs, mmm_calibrated, mmm_uncalibrated
from mmm_pipeline.model import market as market_lib
from mmm_pipeline.model import national_split
from mmm_pipeline.units import run_units
from mmm_pipeline.warehouse import append_history, fingerprint, table_exists
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# The report's own code only re-runs the report (no refit).
REPORT_CODE_VERSION = source_version("mmm_pipeline.reporting.model_report", "mmm_pipeline.reporting.calibration_checks",
                                     "mmm_pipeline.model.market", "mmm_pipeline.model.national_split",
                                     glue=__name__)


def calibrated_version(runs: pd.DataFrame) -> str | None:
    """The calibrated model's version among a market's marts.model_runs_latest rows (None: not fitted)."""
    cal = runs.loc[runs["variant"] == "calibrated", "model_version"]
    return str(cal.iloc[0]) if len(cal) else None


@dg.asset(deps=[mmm_uncalibrated, mmm_calibrated], kinds={"duckdb", "pandas"},
          description="marts.calibration_report (per geo and channel, for the media parameters, ROAS and the "
          "response at current spend: 94% HDI under both models, precision improvement, and with truth.json "
          "each model's error, truth inside each HDI, bias improvement) and marts.lift_test_fit (each test's "
          "implied lift in its own scope vs the readout, per variant); marts.calibration_consistency (the "
          "calibrated posterior against the uncalibrated one reweighted by every calibration term, per test's "
          "implied lift and tested cell's ROAS and mROAS) and marts.lift_test_holdout (each lift test predicted "
          "by the calibrated model without it, leave-one-test-out PSIS, and by the uncalibrated model); a "
          "ROAS-vs-truth PNG per market.",
          check_specs=[dg.AssetCheckSpec(
              "calibration_consistent", asset="calibration_report",
              description="The calibrated posterior equals the uncalibrated one reweighted by the calibration "
              "likelihood (Pareto-smoothed): warns naming each test's lift or tested cell's ROAS / mROAS whose "
              "means differ by more than max(0.1 uncalibrated sd, 4 MCSE) with Pareto k-hat < 0.7 (a bug in one "
              "of the two). k-hat >= 0.7 passes with a note: the experiments disagree with what the data alone "
              "suggested.")],
          **{**COMMON, "code_version": REPORT_CODE_VERSION})
def calibration_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from mmm_pipeline import model as model_lib
    from mmm_pipeline.reporting import model_report

    market = context.partition_key
    with warehouse.get_connection() as con:
        runs = con.execute("SELECT * FROM marts.model_runs_latest WHERE market = ?", [market]).df()
        lift = con.execute("SELECT * FROM marts.lift_tests_latest WHERE market = ?", [market]).df() \
            if table_exists(con, "marts.lift_tests_latest") else pd.DataFrame()
        # a national test shared with other markets: the calibrated model's own term for it
        split = con.execute("SELECT * FROM marts.national_test_split_latest WHERE market = ? AND model_version = ?",
                            [market, calibrated_version(runs)]).df() \
            if table_exists(con, "marts.national_test_split_latest") else pd.DataFrame()
    if len(split) and len(lift):
        lift = national_split.apply_split(lift, split, market)
    models = {}
    for r in runs.to_dict("records"):
        models[r["variant"]] = (r["model_version"], model_lib.load_model(r["artifact_uri"]))
    truth_path = Path(settings.input_dir) / "truth.json"
    truth = truth_path if truth_path.exists() else None
    cal = market_lib.model_config(settings.profile, settings.config()[0].model, pd.DataFrame()).calibration
    report, fit_table = model_report.calibration_tables(models, lift, market, truth,
                                                        extra_spend_in_data=cal.extra_spend_in_data)
    version = fingerprint(REPORT_CODE_VERSION, sorted(v for v, _ in models.values()))
    consistency, holdout, check = _calibration_checks(context, warehouse, settings, market, models)
    with warehouse.transaction() as con:
        units = run_units(con, settings.config()[0])
        append_history(con, "marts.calibration_report", report, version=version, partition_columns=("market",),
                       units=units)
        if len(fit_table):
            append_history(con, "marts.lift_test_fit", fit_table, version=version, partition_columns=("market",),
                           units=units)
        if len(consistency):
            append_history(con, "marts.calibration_consistency", consistency, version=version,
                           partition_columns=("market",), units=units)
        if len(holdout):
            append_history(con, "marts.lift_test_holdout", holdout, version=version, partition_columns=("market",),
                           units=units)
    meta = table_metadata(report, "marts.calibration_report")
    meta.update({"market": market, "variants": dg.MetadataValue.json(sorted(models)),
                 "calibrated_fitted": "calibrated" in models,
                 "lift_test_fit": dg.MetadataValue.md(fit_table.to_markdown(index=False) if len(fit_table)
                                                      else "No calibrated model: nothing to compare.")})
    if "calibrated" not in models:
        meta["note"] = "The calibrated variant was not fitted (no valid lift test); the report has one model."
    meta.update(plots_metadata(artifacts, model_report.calibration_figures(models, report, fit_table, truth),
                               ("calibration", market)))
    if len(holdout):
        meta["lift_test_holdout"] = dg.MetadataValue.md(holdout.to_markdown(index=False))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version), check_results=[check])


def _calibration_checks(context, warehouse: WarehouseResource, settings: PipelineSettings, market: str, models: dict):
    """(marts.calibration_consistency rows, marts.lift_test_holdout rows, the calibration_consistent check)."""
    from mmm_pipeline.reporting import calibration_checks as cc

    empty = pd.DataFrame()
    if not {"uncalibrated", "calibrated"} <= models.keys():
        return empty, empty, dg.AssetCheckResult(check_name="calibration_consistent", passed=True,
                                                 metadata={"note": "no calibrated model: nothing to check"})
    unc, cal = models["uncalibrated"][1], models["calibrated"][1]
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
    media = inputs.media[inputs.media["geo"].isin(inputs.geos)]
    cpu = inputs.cpu[inputs.cpu["geo"].isin(inputs.geos)]
    try:
        consistency = cc.consistency_table(unc, cal, media, cpu, market)
    except cc.ConsistencyError as exc:
        return empty, cc.lift_test_holdout(unc, cal, market), dg.AssetCheckResult(
            check_name="calibration_consistent", passed=True, metadata={"note": str(exc)})
    holdout = cc.lift_test_holdout(unc, cal, market)
    bad = consistency[consistency["verdict"] == "inconsistent"]
    khat = float(consistency["pareto_k"].iloc[0]) if len(consistency) else float("nan")
    label = lambda r: f"{r.quantity} {r.test_id or ''} {r.geo}/{r.channel}".replace("  ", " ")  # noqa: E731
    meta = {"pareto_k": khat, "rows": len(consistency),
            "verdicts": dg.MetadataValue.json(consistency["verdict"].value_counts().to_dict()),
            "table": dg.MetadataValue.md(consistency.to_markdown(index=False))}
    if khat >= cc.PARETO_K_MAX:
        meta["note"] = (f"Pareto k-hat {khat:.2f} >= {cc.PARETO_K_MAX}: the experiments disagree with what the "
                        "data alone suggested, further than the uncalibrated posterior's own uncertainty; "
                        "the reweighting cannot check the calibrated fit.")
        context.log.warning(meta["note"])
    if len(bad):
        meta["inconsistent"] = dg.MetadataValue.json([label(r) for r in bad.itertuples()])
    return consistency, holdout, dg.AssetCheckResult(
        check_name="calibration_consistent", passed=bad.empty, severity=dg.AssetCheckSeverity.WARN, metadata=meta)
