"""Code versions follow the code: a change to how ROAS is computed re-materializes ROAS rows."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from assets import metadata, ingestion, models, outputs
from mmm_pipeline import code_graph, warehouse


def _copy_project(tmp_path):
    """The project's packages copied under tmp_path (code_graph reads files, imports nothing)."""
    for pkg in code_graph.PROJECT_PACKAGES:
        shutil.copytree(code_graph.ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _edit(root, module: str, old: str, new: str) -> None:
    path = code_graph.project_modules(root)[module]
    text = path.read_text()
    assert old in text, (module, old)
    path.write_text(text.replace(old, new, 1))


def test_a_code_change_in_a_reached_module_changes_the_version_and_nothing_else_does(tmp_path):
    root = _copy_project(tmp_path)

    def versions():
        return {"roas": code_graph.source_version(*outputs.CURVES_MODULES, own=("assets.outputs",), root=root),
                "model": code_graph.source_version("mmm_pipeline.model", own=("assets.models",), root=root),
                "ingest": code_graph.source_version("mmm_pipeline.ingestion.ingest", root=root)}

    before = versions()
    assert before["roas"] == outputs.ROAS_CODE_VERSION
    # summaries is reached from curves (an import), not listed: a change there changes ROAS and the model
    _edit(root, "mmm_pipeline.model.summaries", "def hdi_bounds(", "def hdi_bounds_v2(")
    after = versions()
    assert after["roas"] != before["roas"] and after["model"] != before["model"]
    assert after["ingest"] == before["ingest"]  # not reached from ingestion
    # the asset's own module counts, by its own source only
    _edit(root, "assets.outputs", "def gate_reason(", "def gate_reason_v2(")
    assert versions()["roas"] != after["roas"] and versions()["model"] == after["model"]
    # the reports and the curves read fitted models; editing them refits nothing (the model code once
    # reached the report module through a helper, so a figure's fix refitted every model)
    moved = versions()
    _edit(root, "mmm_pipeline.reporting.model_report", "def calibration_figures(", "def calibration_figures_v2(")
    _edit(root, "mmm_pipeline.decisions.curves", "def channel_shares(", "def channel_shares_v2(")
    assert versions()["model"] == moved["model"] and versions()["roas"] != moved["roas"]


def test_a_docstring_or_comment_edit_changes_no_version(tmp_path):
    root = _copy_project(tmp_path)
    modules = sorted(code_graph.project_modules(root))
    before = {m: code_graph.source_version(m, root=root) for m in modules}
    for m, path in code_graph.project_modules(root).items():
        text = path.read_text()
        text = text.replace('"""', '"""Edited. ', 1).replace("\n# ", "\n# edited\n# ", 1)
        path.write_text("# a new comment line\n" + text)
    assert {m: code_graph.source_version(m, root=root) for m in modules} == before
    _edit(root, "mmm_pipeline.model.fit", "def fit_model(", "def fit_model_v2(")
    changed = {m for m in modules if code_graph.source_version(m, root=root) != before[m]}
    assert "mmm_pipeline.model.fit" in changed and "mmm_pipeline.model" in changed
    assert "mmm_pipeline.ingestion.ingest" not in changed and "mmm_pipeline.model.config" not in changed


def test_a_table_description_edit_refits_nothing(tmp_path):
    """mmm_pipeline.schema is in every asset's import graph (the warehouse creates tables from it), but
    its descriptions must not change a code version: that would refit every model."""
    root = _copy_project(tmp_path)
    modules = ["mmm_pipeline.model", "mmm_pipeline.warehouse", "mmm_pipeline.decisions.curves"]
    before = {m: code_graph.source_version(m, root=root) for m in modules}
    assert "mmm_pipeline.schema" in code_graph.reached("mmm_pipeline.warehouse", root=root)
    _edit(root, "mmm_pipeline.schema", '"Spend of the week."', '"Spend of the week, edited."')
    assert {m: code_graph.source_version(m, root=root) for m in modules} == before


def test_every_asset_carries_the_version_of_the_code_that_computes_it():
    from assets.definitions import ALL_ASSETS

    versions = {key.to_user_string(): spec.code_version for a in ALL_ASSETS for key, spec in
                ((s.key, s) for s in a.specs)}
    assert versions["channel_roas"] == outputs.ROAS_CODE_VERSION
    assert versions["budget_allocation"] == outputs.ALLOCATION_CODE_VERSION
    assert versions["mmm_calibrated"] == models.MODEL_CODE_VERSION
    assert versions["raw_ad_reporting"] == ingestion.INGEST_CODE_VERSION
    assert all(v and v != "1" for v in versions.values()), versions


def test_rerunning_channel_roas_with_changed_code_appends_new_rows(sample_run, tmp_path, monkeypatch):
    from tests.conftest import definitions

    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(sample_run["warehouse"], wh)
    defs = definitions(sample_run["input"], wh, sample_run["artifacts"])
    job = dg.define_asset_job("roas_only", selection=["channel_roas"], partitions_def=models.MARKETS)
    defs = dg.Definitions(assets=defs.assets, resources=defs.resources, jobs=[job])

    def rows():
        with warehouse.connect(wh) as con:
            return con.execute("SELECT count(*), count(DISTINCT data_version) FROM marts.channel_roas "
                               "WHERE market = 'west'").fetchone()

    def run():
        result = defs.resolve_job_def("roas_only").execute_in_process(partition_key="west",
                                                                       instance=dg.DagsterInstance.ephemeral())
        assert result.success

    n0, versions0 = rows()
    run()  # same code: nothing appended
    assert rows() == (n0, versions0)
    monkeypatch.setattr(outputs, "ROAS_CODE_VERSION", "changed-roas-code")
    run()
    n1, versions1 = rows()
    assert n1 == 2 * n0 and versions1 == versions0 + 2  # one new version per variant
    with warehouse.connect(wh) as con:
        latest = con.execute("SELECT DISTINCT data_version FROM marts.channel_roas_latest WHERE market = 'west'").df()
    assert len(latest) == 2


@pytest.mark.parametrize("module", ["mmm_pipeline.ingestion.ingest", "mmm_pipeline.model",
                                    "mmm_pipeline.model.lift_likelihood"])
def test_source_version_does_not_import_the_module(module):
    import sys

    was_loaded = module in sys.modules
    metadata.source_version(module)
    assert (module in sys.modules) == was_loaded


def test_a_package_stands_for_all_its_modules():
    reached = code_graph.reached("mmm_pipeline.model")
    assert {"mmm_pipeline.model.fit", "mmm_pipeline.model.diagnostics", "mmm_pipeline.model.lift_likelihood",
            "mmm_pipeline.warehouse"} <= set(reached)  # warehouse: imported by model.scales
    assert "mmm_pipeline.ingestion.ingest" not in reached
