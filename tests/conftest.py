"""Shared fixtures: one fast in-process materialization of the sample, reused by tests."""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path

# numba keeps its default optimisation level (3) in the tests. Level 0 compiles a little faster
# per function but leaves each jitted call's dispatcher address as an unused global in the final
# module, which numba reads as "dynamic globals" and refuses to cache: with it, pytensor's disk
# cache (~/.pytensor/numba) stayed empty and every fit recompiled from scratch (measured on the
# sample's west market, fast fit, 2-core machine: NUMBA_OPT=0 63-66 s every time; level 3 42 s
# cold, 8.8 s once the cache holds the model's functions).

import dagster as dg  # noqa: E402
import pytest  # noqa: E402

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MMM_PROFILE", "fast")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"


# Fixtures that fit a model (or read a fitted one): a test using any of them is marked `fit`, so
# `make test-fast` (`-m "not fit"`) is the edit loop without Bayesian sampling.
FIT_FIXTURES = {"sample_run", "fitted", "mmm", "curves", "default_alloc", "webserver"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if FIT_FIXTURES & names or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.fit)
        # `make test` runs two pytest-xdist workers with `--dist loadgroup`: a session or module
        # fixture is built once per worker that needs it, so the tests sharing the one sample
        # materialization run on one worker, and those sharing a module fixture stay together.
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if "sample_run" in names:
            item.add_marker(pytest.mark.xdist_group("sample_run"))
        elif any(d.scope == "module" for fixture_defs in defs.values() for d in fixture_defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        pytest.skip(f"public fixture {path} not found (expected ../shared/fixtures beside the repo)")
    return path


class Runs:
    """The results of one `assets.run.run_all`: ingest_job, then model_job per market."""

    def __init__(self, ok: bool, results: list, instance):
        self.success, self.results, self.instance = ok, results, instance
        self.all_events = [e for r in results for e in r.all_events]

    def log_messages(self) -> list[str]:
        return [rec.user_message for r in self.results for rec in self.instance.all_logs(r.run_id)]


def definitions(input_dir: Path, warehouse: Path, artifacts: Path, profile: str = "fast") -> dg.Definitions:
    from assets.definitions import ALL_ASSETS, ALL_CHECKS, ingest_job, model_job
    from mmm_pipeline.settings import RunSettings
    from resources import build_resources

    settings = RunSettings(Path(input_dir), Path(warehouse), Path(artifacts), profile)
    return dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[ingest_job, model_job],
                          resources=build_resources(settings))


def materialize(input_dir: Path, warehouse: Path, artifacts: Path, *, models: bool = True,
                profile: str = "fast", markets: list[str] | None = None, instance=None,
                select: list[str] | None = None) -> Runs:
    """Run the code location in process against the given folders (fast profile by default).

    `select`: only these assets of model_job per market (after the whole ingest_job), for tests
    that read the fits and not the outputs downstream of them."""
    from assets.run import failed_checks, run_all

    defs = definitions(input_dir, warehouse, artifacts, profile)
    instance = instance or dg.DagsterInstance.ephemeral()
    if models and select:
        results = [defs.resolve_job_def("ingest_job").execute_in_process(raise_on_error=False, instance=instance)]
        if results[0].success and not failed_checks(results[0]):
            job = defs.resolve_job_def("model_job")
            for market in markets or job.partitions_def.get_partition_keys():
                results.append(job.execute_in_process(
                    partition_key=market, raise_on_error=False, instance=instance,
                    asset_selection=[dg.AssetKey(k) for k in select]))
        ok = all(r.success for r in results) and not any(failed_checks(r) for r in results)
        return Runs(ok, results, instance)
    if models:
        return Runs(*run_all(defs, instance, markets=markets), instance)
    result = defs.resolve_job_def("ingest_job").execute_in_process(raise_on_error=False, instance=instance)
    return Runs(result.success, [result], instance)


def visible_text(page: str) -> str:
    """What a reader sees of a report: no style, no image data, no tags."""
    page = re.sub(r"<style.*?</style>|<img[^>]*>", " ", page, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def assert_formatted(text: str) -> None:
    """No raw Python or pandas rendering left: booleans, midnight timestamps, signed zeros."""
    assert not re.search(r"\b(True|False|nan|NaT)\b", text), re.search(r".{40}\b(True|False|nan|NaT)\b.{40}", text)
    assert "00:00:00" not in text
    assert [z for z in re.findall(r"-\d[\d,]*(?:\.\d+)?", text) if float(z.replace(",", "")) == 0] == []


def snapshot(db: Path) -> dict:
    """Every table of the warehouse, sorted: what a failed or repeated run must leave as it was."""
    from mmm_pipeline import warehouse

    with warehouse.connect(db) as con:
        tables = [t for (t,) in con.execute(
            "SELECT table_schema||'.'||table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' AND table_schema IN ('raw','staging','marts') ORDER BY 1").fetchall()]
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").df() for t in tables}


def check_results(result) -> dict[str, tuple[bool, str]]:
    out = {}
    for e in result.all_events:
        if e.event_type_value == "ASSET_CHECK_EVALUATION":
            d = e.asset_check_evaluation_data
            out[d.check_name] = (d.passed, d.severity.value)
    return out


def pytest_configure(config):
    """Generate the sample before any test module is imported: the market partitions are read
    from MMM_INPUT_DIR's pipeline.yaml when `assets.models` is imported (a test module that
    imports the assets at collection would otherwise fix them to the default input)."""
    import tempfile

    from mmm_pipeline.sample import generate_sample

    base = Path(tempfile.mkdtemp(prefix="mmm-test-sample-"))
    generate_sample(base / "input")
    os.environ["MMM_INPUT_DIR"] = str(base / "input")
    config.add_cleanup(lambda: shutil.rmtree(base, ignore_errors=True))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The embedded sample (read-only: tests that change it work on `copy_input`)."""
    return Path(os.environ["MMM_INPUT_DIR"])


@pytest.fixture(scope="session")
def sample_run(sample_dir, tmp_path_factory):
    """The one shared materialization of the whole graph on the sample."""
    root = tmp_path_factory.mktemp("run")
    wh, art = root / "warehouse.duckdb", root / "artifacts"
    # A persistent instance (SQLite under its own DAGSTER_HOME), so a webserver started on
    # that home shows these runs (tests/test_ui_browser.py).
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\nnux:\n  enabled: false\n")
    instance = dg.DagsterInstance.from_config(str(home))
    result = materialize(sample_dir, wh, art, instance=instance)
    return {"result": result, "warehouse": wh, "artifacts": art, "input": sample_dir, "dagster_home": home}


@pytest.fixture()
def copy_input(tmp_path):
    def _copy(src: Path) -> Path:
        dst = tmp_path / "input"
        shutil.copytree(src, dst)
        return dst
    return _copy
