"""The calibration report of a market (group `models`): both fitted variants against each other,
the lift tests and, with truth.json, the truth (`mmm_pipeline.reporting.model_report`)."""

from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import plots_metadata, source_version, table_metadata
from assets.models import COMMON, mmm_calibrated, mmm_uncalibrated
from mmm_pipeline.model import market as market_lib
from mmm_pipeline.warehouse import append_history, fingerprint, table_exists
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# The report's own code only re-runs the report (no refit).
REPORT_CODE_VERSION = source_version("mmm_pipeline.reporting.model_report", "mmm_pipeline.model.market", glue=__name__)


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
            if table_exists(con, "marts.lift_tests_latest") else pd.DataFrame()
    models = {}
    for r in runs.to_dict("records"):
        models[r["variant"]] = (r["model_version"], model_lib.load_model(r["artifact_uri"]))
    truth_path = Path(settings.input_dir) / "truth.json"
    truth = truth_path if truth_path.exists() else None
    cal = market_lib.model_config(settings.profile, settings.config()[0].model, pd.DataFrame()).calibration
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
