"""Code versions follow the code: a change to how ROAS is computed re-materializes ROAS rows."""

from __future__ import annotations

import shutil

import dagster as dg
import pytest

from assets import metadata, ingestion, models, outputs
from mmm_pipeline import warehouse


def test_a_changed_line_of_the_roas_module_changes_its_code_version(tmp_path):
    from importlib.util import find_spec

    src = find_spec("mmm_pipeline.decisions.curves").origin
    copy = tmp_path / "curves.py"
    shutil.copy(src, copy)
    before = metadata.hash_sources([copy])
    copy.write_text(copy.read_text().replace("roas_mean", "roas_mean_v2", 1))
    assert metadata.hash_sources([copy]) != before
    others = [p for m in outputs.CURVES_MODULES[1:] for p in metadata.module_sources(m)]
    assert outputs.ROAS_CODE_VERSION == metadata.source_version(*outputs.CURVES_MODULES) \
        == metadata.hash_sources([src, *others]) != metadata.hash_sources([copy, *others])


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
    from importlib.util import find_spec

    files = metadata.module_sources("mmm_pipeline.model")
    folder = find_spec("mmm_pipeline.model").submodule_search_locations[0]
    assert {p.name for p in files} >= {"__init__.py", "fit.py", "diagnostics.py", "lift_likelihood.py"}
    assert all(str(p).startswith(folder) for p in files)
    assert models.MODEL_CODE_VERSION == metadata.source_version("mmm_pipeline.model", "mmm_pipeline.ingestion.lift_tests")
