"""What people read (group `reporting`): one HTML report per market, then the publication.

`market_report` renders `mmm_pipeline.reporting.report` from the marts (no refit) into
MMM_ARTIFACT_DIR/reports/<market>/<model_version>.html and index.html.
`bi_publication` is the end of the graph: it copies the marts to the read-only
BI file and the reports beside it, so the UI shows when they were last
published and from which runs. Both carry a FreshnessPolicy: they warn when
older than the weekly refresh cadence.
"""

import time
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.metadata import OWNERS, source_version
from assets.pools import DUCKDB, pool
from assets.automation import DOWNSTREAM
from assets.costs import cost_per_unit, cost_per_unit_forecast
from assets.calibration import calibration_report
from assets.holdout import forecast_track_record, model_validation
from assets.models import MARKETS, lift_tests_model_units, mmm_calibrated, mmm_uncalibrated
from assets.outputs import budget_allocation, channel_roas, market_scenarios, response_curves
from mmm_pipeline.reporting import publish
from mmm_pipeline.units import reporting_currency
from mmm_pipeline.warehouse import append_history, fingerprint
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# Follows the code (issue 9), the Jinja templates the reports are rendered with (no Python source) and the
# benchmark's interval coverage the health card quotes (data).
REPORTING_DIR = Path(__file__).resolve().parents[1] / "mmm_pipeline" / "reporting"
REPORT_INPUT_FILES = sorted(REPORTING_DIR.glob("*.j2")) + sorted(REPORTING_DIR.glob("*.json"))
REPORT_CODE_VERSION = fingerprint(
    source_version("mmm_pipeline.reporting.report", "mmm_pipeline.reporting.charts", "mmm_pipeline.reporting.publish",
                   "mmm_pipeline.reporting.health", "mmm_pipeline.reporting.wording", glue=__name__), *(t.read_text() for t in REPORT_INPUT_FILES))[:12]
# The refresh is weekly (weekly_refresh): warn a day after a refresh was due, fail after two missed ones.
REFRESH_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(days=15), warn_window=timedelta(days=8))
DATA_DOCS_INDEX = ("gx", "uncommitted", "data_docs", "local_site", "index.html")


def _scenario_bounds(config, market: str, alloc: pd.DataFrame) -> dict:
    """allocation_id -> bound_for(geo, channel), to mark cells the optimizer left at a bound."""
    if alloc.empty:
        return {}
    current = alloc.drop_duplicates(["geo", "channel"])[["geo", "channel", "current_weekly_spend"]]
    try:
        return {s.allocation_id: s.bound_for for s in market_scenarios(config, market, current)}
    except Exception:  # the scenarios changed since the allocation ran: mark nothing
        return {}


@dg.asset(deps=[mmm_uncalibrated, mmm_calibrated, calibration_report, model_validation, forecast_track_record,
                response_curves, channel_roas, budget_allocation],
          kinds={"html", "duckdb"}, group_name="reporting", owners=OWNERS, partitions_def=MARKETS,
          code_version=REPORT_CODE_VERSION, automation_condition=DOWNSTREAM, freshness_policy=REFRESH_FRESHNESS,
          description="One self-contained HTML report per market (health card, headline, fit, contribution "
          "waterfall, channel economics with average beside marginal returns, share of spend vs share of effect "
          "and carryover, response curves, calibration, drift against the previous model, budget plan, data) read "
          "from the marts only, at MMM_ARTIFACT_DIR/reports/<market>/<model_version>.html, plus reports/index.html. "
          "Writes marts.model_health (the health card: per check, green / amber / red and a sentence) first.")
def market_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource, settings: PipelineSettings,
                  artifacts: ArtifactStore) -> dg.MaterializeResult:
    from mmm_pipeline.reporting import health, report

    market = context.partition_key
    started, cpu_started = time.perf_counter(), time.process_time()
    config, _ = settings.config()
    docs = artifacts.path(*DATA_DOCS_INDEX)
    with warehouse.get_connection() as con:
        alloc = con.execute("SELECT * FROM marts.budget_allocation_latest WHERE market = ?", [market]).df() \
            if warehouse_table(con, "marts.budget_allocation_latest") else pd.DataFrame()
        inputs = report.load_inputs(con, market, currency=reporting_currency(con, config.reporting_currency),
                                    freshness_days=config.freshness_days,
                                    bounds=_scenario_bounds(config, market, alloc),
                                    data_docs_index=docs if docs.exists() else None, model_settings=config.model)
    # the health card's checks, from the marts just read, become a mart of their own; the report draws it
    card = health.from_inputs(inputs)
    with warehouse.transaction() as con:
        append_history(con, "marts.model_health", card,
                       version=fingerprint(REPORT_CODE_VERSION, card.to_json()), partition_columns=("market",))
        inputs.tables["health"] = con.execute("SELECT * FROM marts.model_health_latest WHERE market = ?",
                                              [market]).df()
    rendered = report.build_report(inputs)
    path = report.write_report(rendered, artifacts.path("reports"), run_id=context.run_id,
                               dagster_ui_url=settings.dagster_ui_url)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    context.log.info(f"report for {market} written to {path} in {seconds:.1f} s")
    return dg.MaterializeResult(
        metadata={"path": dg.MetadataValue.path(str(path)),
                  "index": dg.MetadataValue.path(str(artifacts.path("reports", "index.html"))),
                  "summary": dg.MetadataValue.md(rendered.summary_markdown),
                  "model_version": rendered.model_version, "variant": rendered.variant, "gated": rendered.gated,
                  "sections": len(rendered.sections), "bytes": path.stat().st_size,
                  "render_seconds": round(seconds, 2), "render_cpu_seconds": round(cpu_seconds, 2)},
        # what the report says, not when it was rendered (the page carries its generation time)
        data_version=dg.DataVersion(fingerprint(REPORT_CODE_VERSION, rendered.model_version,
                                                rendered.summary_markdown)))


def warehouse_table(con, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                            "table_name = ?", [schema, name]).fetchone()[0])


PUBLISHED_FROM = [cost_per_unit, cost_per_unit_forecast, lift_tests_model_units, mmm_uncalibrated, mmm_calibrated,
                  calibration_report, model_validation, forecast_track_record, response_curves, channel_roas,
                  budget_allocation, market_report]


@dg.asset(deps=PUBLISHED_FROM, kinds={"duckdb", "html"}, pool=pool(DUCKDB), group_name="reporting", owners=OWNERS,
          code_version=REPORT_CODE_VERSION, freshness_policy=REFRESH_FRESHNESS,
          description="Publishes the marts (every history table and _latest view) to the read-only BI file "
          "published/mmm.duckdb beside the warehouse (atomic rename), the Parquet export when "
          "MMM_PARQUET_EXPORT is set, and the HTML reports to published/reports/. Run by `make run` and by the "
          "publish_marts_after_success sensor after every successful run.")
def bi_publication(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                   artifacts: ArtifactStore, settings: PipelineSettings) -> dg.MaterializeResult:
    with warehouse.get_connection() as con:
        counts, published, reports_dst, n_reports = publish.publish(
            con, warehouse.database, artifacts.path("reports"), settings.parquet_export)
    # Which runs produced what was published: the latest materialization of every upstream asset (per market).
    sources = []
    for a in PUBLISHED_FROM:
        key = a.key
        partitions = MARKETS.get_partition_keys() if a.partitions_def else [None]
        for p in partitions:
            records = context.instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, asset_partitions=[p] if p else None), limit=1).records
            if records:
                r = records[0]
                sources.append({"asset": key.to_user_string(), "partition": p or "", "run_id": r.run_id,
                                "materialized_at": pd.Timestamp(r.timestamp, unit="s").strftime("%Y-%m-%d %H:%M:%S")})
    src = pd.DataFrame(sources)
    context.log.info(f"published {sum(counts.values())} rows in {len(counts)} mart tables to {published} and "
                     f"{n_reports} report files to {reports_dst}")
    return dg.MaterializeResult(data_version=dg.DataVersion(fingerprint(REPORT_CODE_VERSION, counts, n_reports)),
                                metadata={
        "published_file": dg.MetadataValue.path(str(published)),
        "reports": dg.MetadataValue.path(str(reports_dst / "index.html")),
        "tables": len(counts), "rows": sum(counts.values()), "report_files": n_reports,
        "rows_per_table": dg.MetadataValue.json(counts),
        "source_runs": dg.MetadataValue.json(sorted(src["run_id"].unique().tolist()) if len(src) else []),
        "sources": dg.MetadataValue.md(src.to_markdown(index=False) if len(src) else "nothing materialized yet"),
    })


PUBLISH_JOB = dg.define_asset_job(
    "publish_job", selection=dg.AssetSelection.assets(bi_publication),
    description="Publish the marts to the read-only BI file and the HTML reports beside it.")
