"""Shared fixtures: one fast in-process materialization of the sample, reused by tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MMM_PROFILE", "fast")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"public fixture {path} not found (expected ../shared/fixtures beside the repo)")
    return path


def materialize(input_dir: Path, warehouse: Path, artifacts: Path):
    """Run the code location's job in process against the given folders (fast profile)."""
    from assets.definitions import ALL_ASSETS, ALL_CHECKS, mmm_job
    from mmm_pipeline.settings import RunSettings
    from resources import build_resources

    settings = RunSettings(Path(input_dir), Path(warehouse), Path(artifacts), "fast")
    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[mmm_job],
                          resources=build_resources(settings))
    job = defs.resolve_job_def("mmm_job")
    return job.execute_in_process(raise_on_error=False, instance=dg.DagsterInstance.ephemeral())


def check_results(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.asset_check_evaluation_data
            out[d.check_name] = (d.passed, d.severity.value)
    return out


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    from mmm_pipeline.sample_data import generate_sample

    out = tmp_path_factory.mktemp("sample") / "input"
    generate_sample(out)
    return out


@pytest.fixture(scope="session")
def sample_run(sample_dir, tmp_path_factory):
    """The one shared materialization of the whole graph on the sample."""
    root = tmp_path_factory.mktemp("run")
    wh, art = root / "warehouse.duckdb", root / "artifacts"
    result = materialize(sample_dir, wh, art)
    return {"result": result, "warehouse": wh, "artifacts": art, "input": sample_dir}


@pytest.fixture()
def copy_input(tmp_path):
    def _copy(src: Path) -> Path:
        dst = tmp_path / "input"
        shutil.copytree(src, dst)
        return dst
    return _copy
