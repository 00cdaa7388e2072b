"""The HTML reports, the Data Docs site and the publication asset, on the shared fast materialization."""

from __future__ import annotations

import json
import re
import time
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from mmm_pipeline import validation, warehouse
from mmm_pipeline.reporting import report
from mmm_pipeline.validation import data_docs


def _latest_runs(wh: Path) -> pd.DataFrame:
    with warehouse.connect(wh) as con:
        return con.execute("SELECT market, variant, model_version, gated FROM marts.model_runs_latest").df()


def _inputs(sample_run, market: str) -> report.ReportInputs:
    with warehouse.connect(sample_run["warehouse"]) as con:
        return report.load_inputs(con, market, currency="USD", today=date(2026, 1, 5))


def test_one_self_contained_report_per_market_and_an_index(sample_run):
    assert sample_run["result"].success
    reports = sample_run["artifacts"] / "reports"
    runs = _latest_runs(sample_run["warehouse"])
    index = (reports / "index.html").read_text()
    for market, m in runs.groupby("market"):
        version = m.set_index("variant").loc["calibrated", "model_version"]  # the sample calibrates both markets
        path = reports / market / f"{version}.html"
        page = path.read_text()
        for sid, title in report.SECTIONS:
            assert f'data-section="{sid}"' in page and title.split(". ", 1)[1] in page
        # self-contained: no reference leaves the file (images are data URIs, styles inline)
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
        assert "<link" not in page and "<script" not in page
        assert page.count('src="data:image/png;base64,') >= 7
        assert 'id="ungated-banner"' in page and "UNGATED MODEL" in page  # fast profile: not gated
        assert f'href="{market}/{version}.html"' in index
        sidecar = json.loads((reports / market / f"{version}.json").read_text())
        assert sidecar["gated"] is False and sidecar["headline"]["currency"] == "USD"
    assert 'id="ungated-banner"' in index


def test_report_reads_marts_only_and_takes_under_ten_seconds(sample_run, monkeypatch):
    from mmm_pipeline import model

    def no_model(*_a, **_k):
        raise AssertionError("the report must not load a model")

    monkeypatch.setattr(model, "load_model", no_model)
    started, cpu = time.perf_counter(), time.process_time()
    inp = _inputs(sample_run, "west")
    rep = report.build_report(inp)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    # CPU time: other test processes on the machine stretch the wall clock, not the work
    assert cpu < 10, f"report took {cpu:.1f} s of CPU ({seconds:.1f} s wall)"
    assert len(rep.sections) == 9  # the held-out experiments section included
    # the headline numbers are the marts' own
    roas, alloc = inp.t("roas"), inp.t("allocation")
    spend = roas.loc[roas["variant"] == rep.variant, "spend"].sum()
    assert rep.headline["spend"] == pytest.approx(spend)
    a = alloc[alloc["allocation_id"] == alloc["allocation_id"].iloc[0]]
    assert rep.headline["plan_gain"] == pytest.approx((a["expected_response_mean"] - a["current_response_mean"]).sum())
    assert f"{spend:,.0f} USD" in rep.html
    # market totals come from the posterior draws summed over geos: means add up, the interval is the sum's own
    mkt, total = inp.t("roas_market"), inp.t("roas_total")
    mine = roas[roas["variant"] == rep.variant]
    media = total[total["variant"] == rep.variant].iloc[0]
    # all media lives apart: the per-channel rows add up to it
    assert mkt[mkt["variant"] == rep.variant]["spend"].sum() == pytest.approx(media["spend"])
    assert media["spend"] == pytest.approx(spend)
    assert media["contribution_mean"] == pytest.approx(mine["contribution_mean"].sum())
    assert media["contribution_hdi_high"] - media["contribution_hdi_low"] < \
        (mine["contribution_hdi_high"] - mine["contribution_hdi_low"]).sum()
    plan = inp.t("plan").set_index("allocation_id").loc[a["allocation_id"].iloc[0]]
    assert plan["gain_mean"] == pytest.approx(rep.headline["plan_gain"])
    assert plan["gain_hdi_low"] <= plan["gain_mean"] <= plan["gain_hdi_high"]
    assert f"94% interval {plan['gain_hdi_low']:,.0f} USD to {plan['gain_hdi_high']:,.0f} USD" in rep.html
    # gaps are said in words, not filled with numbers
    assert "Out-of-sample: refitted without its last 8 complete weeks" in rep.html
    # the sample's promotion control is named with its total (tests/test_controls.py checks its size)
    assert "Controls (measured from their reference level" in rep.html and "promo " in rep.html
    # per-parameter diagnostics and the weekly fit come from the marts the fit wrote
    assert set(inp.t("diagnostics")["parameter"]) >= {"saturation_lam", "saturation_beta", "adstock_alpha"}
    fit = inp.t("fit")
    assert len(fit) and (fit["predicted_low"] <= fit["predicted_high"]).all()
    assert "**UNGATED**" in rep.summary_markdown


def test_a_gated_model_has_no_banner_and_a_failed_gate_says_why(sample_run):
    inp = _inputs(sample_run, "east")
    runs = inp.tables["runs"].copy()
    inp.tables["runs"] = runs.assign(gated=True, passed_gates=True, profile="full")
    page = report.build_report(inp).html
    assert 'id="ungated-banner"' not in page and "UNGATED model" not in page
    inp.tables["runs"] = runs.assign(gated=False, passed_gates=False, profile="full",
                                     gate_failures="max R-hat 1.0400 > 1.01")
    page = report.build_report(inp).html
    assert 'id="ungated-banner"' in page and "failed its convergence gate (max R-hat 1.0400 &gt; 1.01)" in page
    # a failed gate blocks the outputs: the marts' ROAS and plan then come from an earlier model, and it says so
    inp.tables["runs"] = inp.tables["runs"].assign(model_version=["new1", "new2"][:len(runs)])
    banner = re.search(r'id="ungated-banner"[^>]*>([^<]*)<', report.build_report(inp).html).group(1)
    assert "come from earlier model(s)" in banner and inp.t("roas")["model_version"].iloc[0] in banner


def test_a_market_without_a_model_fails_with_its_name(sample_run):
    with warehouse.connect(sample_run["warehouse"]) as con, pytest.raises(report.ReportError, match="'north'"):
        report.load_inputs(con, "north", currency="USD")


def _events(sample_run, asset: str):
    inst = sample_run["result"].instance
    return inst.fetch_materializations(dg.AssetKey(asset), limit=10).records


def test_report_asset_metadata_has_path_and_summary(sample_run):
    records = _events(sample_run, "market_report")
    assert {r.partition_key for r in records} == {"east", "west"}
    meta = records[0].asset_materialization.metadata
    assert Path(meta["path"].value).exists() and meta["path"].value.endswith(".html")
    assert "UNGATED" in meta["summary"].value and meta["sections"].value == 9
    assert meta["render_cpu_seconds"].value < 10


def test_bi_publication_is_an_asset_with_its_source_runs_and_the_reports(sample_run):
    from assets.definitions import defs

    records = _events(sample_run, "bi_publication")
    assert len(records) == 1
    meta = records[0].asset_materialization.metadata
    model_runs = {r.run_id for r in sample_run["result"].results if r.job_def.name == "model_job"}
    assert model_runs and model_runs <= set(meta["source_runs"].value)
    published = Path(meta["published_file"].value)
    with duckdb.connect(str(published), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM marts.model_fit_latest").fetchone()[0] > 0
    assert (published.parent / "reports" / "index.html").exists()
    assert list((published.parent / "reports").glob("*/*.html"))
    graph = defs.resolve_asset_graph()
    # the end of the graph, and both reader-facing assets warn when older than the weekly refresh
    assert not graph.get(dg.AssetKey("bi_publication")).child_keys
    assert dg.AssetKey("market_report") in graph.get(dg.AssetKey("bi_publication")).parent_keys
    for key in ("bi_publication", "market_report"):
        policy = graph.get(dg.AssetKey(key)).freshness_policy
        assert policy is not None and policy.warn_window.to_timedelta().days == 8


def test_the_sensor_requests_the_publication_asset_after_a_success(sample_run):
    from assets.run_sensors import publish_marts_after_success

    assert publish_marts_after_success.job_name == "publish_job"
    inst = sample_run["result"].instance
    by_job = {r.job_def.name: r.dagster_run for r in sample_run["result"].results}

    def evaluate(run):
        success = inst.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS)[0].dagster_event
        ctx = dg.build_run_status_sensor_context(sensor_name="publish_marts_after_success", dagster_instance=inst,
                                                 dagster_run=run, dagster_event=success)
        return publish_marts_after_success(ctx)

    request = evaluate(by_job["model_job"])
    assert isinstance(request, dg.RunRequest) and request.run_key == f"publish-after-{by_job['model_job'].run_id}"
    # a publication run does not publish again (no loop)
    assert isinstance(evaluate(by_job["publish_job"]), dg.SkipReason)


def test_every_check_links_its_data_docs_page(sample_run):
    docs = sample_run["artifacts"] / "gx" / "uncommitted" / "data_docs" / "local_site"
    assert (docs / "index.html").exists()
    linked = {}
    for e in sample_run["result"].all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.asset_check_evaluation_data
            if "data_docs" in d.metadata:
                linked[d.check_name] = d.metadata["data_docs"].value
    assert set(linked) >= {"raw_ad_reporting_contract", "staging_media_weekly_contract",
                           "staging_kpi_weekly_contract", "cost_per_unit_contract", "raw_lift_tests_contract"}
    for url in linked.values():
        assert url.startswith("file://") and Path(url[len("file://"):]).exists()
    # the stored suites keep runtime values as suite parameters, not baked-in weeks
    suite = json.loads((sample_run["artifacts"] / "gx" / "expectations" / "staging_kpi_weekly.json").read_text())
    assert {"$PARAMETER": "weeks"} in [x["kwargs"].get("value_set") for x in suite["expectations"]]
    checkpoints = {p.stem for p in (sample_run["artifacts"] / "gx" / "checkpoints").glob("*.json")}
    assert {"staging_kpi_weekly", "cost_per_unit"} <= checkpoints


def test_sql_counted_results_say_what_counted_them(tmp_path, monkeypatch):
    """Above GX_MAX_RAW_ROWS the raw contract is DuckDB counts, reported as such (no GX result made up)."""
    from assets import checks
    from mmm_pipeline import warehouse as wh

    db = tmp_path / "w.duckdb"
    with wh.connect(db) as con:
        con.execute("CREATE OR REPLACE TABLE raw.ad_reporting_current AS SELECT 'x' AS source_relation, DATE '2024-01-01' AS "
                    "date_day, 'google_ads' AS platform, 'a' AS account_id, 'c' AS campaign_id, '' AS ad_group_id, "
                    "'' AS ad_id, 'US' AS geo, 'search' AS channel, 1.0 AS clicks, -5.0 AS impressions, 2.0 AS spend")
        con.execute("CREATE OR REPLACE TABLE raw.channels AS SELECT 'google_ads' AS platform")
    monkeypatch.setattr(checks, "GX_MAX_RAW_ROWS", 0)
    from resources import ArtifactStore, WarehouseResource

    result = checks.raw_ad_reporting_contract(WarehouseResource(database=str(db)), ArtifactStore(root=str(tmp_path / "a")))
    assert not result.passed and "data_docs" not in result.metadata
    assert result.metadata["validated_by"].value.startswith("DuckDB SQL counts")
    assert "impressions" in result.metadata["failed_expectations"].value
    assert not (tmp_path / "a" / "gx").exists()


def test_the_report_renders_on_its_own_as_after_a_failed_gate(sample_run):
    # run_all does this when a failed gate blocked the outputs (and so the report) in a market's run
    from tests.conftest import definitions

    defs = definitions(sample_run["input"], sample_run["warehouse"], sample_run["artifacts"])
    result = defs.resolve_job_def("model_job").execute_in_process(
        instance=sample_run["result"].instance, partition_key="east", asset_selection=[dg.AssetKey("market_report")])
    steps = {e.step_key for e in result.all_events if e.event_type_value == "STEP_SUCCESS"}
    assert steps == {"market_report"}
    assert "market_report" in {e.asset_key.to_user_string() for e in result.all_events
                               if e.event_type_value == "ASSET_MATERIALIZATION"}


def test_publish_writes_the_bi_file_the_reports_beside_it_and_the_parquet_export(tmp_path):
    """Publication is reporting's (mmm_pipeline.reporting.publish.publish); the resource only connects."""
    from mmm_pipeline import warehouse as wh
    from mmm_pipeline.reporting import publish
    from resources import WarehouseResource

    db = tmp_path / "wh" / "warehouse.duckdb"
    reports = tmp_path / "reports"
    (reports / "west").mkdir(parents=True)
    (reports / "west" / "r.html").write_text("<p>west</p>")
    (reports / "link.html").symlink_to(tmp_path / "elsewhere.html")
    with wh.connect(db) as con:
        wh.append_history(con, "marts.model_fit_geo", pd.DataFrame({"geo": ["a", "b"]}), version="v1")
        out = publish.publish(con, db, reports, str(tmp_path / "lake"))
    assert out.counts["model_fit_geo"] == 2 and out.path == publish.published_path(db) and out.report_files == 1
    assert (out.reports / "west" / "r.html").read_text() == "<p>west</p>" and not (out.reports / "link.html").exists()
    assert duckdb.connect(str(out.path), read_only=True).execute(
        "SELECT count(*) FROM marts.model_fit_geo").fetchone() == (2,)
    assert (tmp_path / "lake" / "model_fit_geo.parquet").exists()
    assert not hasattr(WarehouseResource(database=str(db)), "publish")
