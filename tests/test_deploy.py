"""Beyond one machine: the deploy/ instance configs load, executors switch by setting, marts go to Parquet."""

from __future__ import annotations

import shutil
import sys

import dagster as dg
import duckdb
import pytest
import yaml

from tests.conftest import REPO

DEPLOY = REPO / "deploy"
PG_ENV = {"DAGSTER_PG_HOST": "pg.internal", "DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "secret",
          "DAGSTER_PG_DB": "dagster", "MMM_K8S_NAMESPACE": "mmm", "MMM_CELERY_BROKER": "pyamqp://guest@rabbitmq//",
          "MMM_CELERY_BACKEND": "rpc://"}


def _validate_class(data):
    """Validate one configurable section against its real class's schema (nothing is connected)."""
    from dagster._config import process_config
    from dagster._serdes.config_class import class_from_code_pointer

    klass = class_from_code_pointer(data.module_name, data.class_name)
    result = process_config(klass.config_type(), data.config_dict)
    assert result.success, f"{data.module_name}.{data.class_name}: {[e.message for e in result.errors]}"
    return klass, result.value


@pytest.mark.parametrize("variant", ["postgres", "k8s", "celery"])
def test_scale_out_instance_configs_load_with_their_real_classes(variant, tmp_path, monkeypatch):
    from dagster._core.instance.ref import InstanceRef

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copy(DEPLOY / variant / "dagster.yaml", tmp_path / "dagster.yaml")
    ref = InstanceRef.from_dir(str(tmp_path))  # the instance schema, concurrency rules included

    klass, value = _validate_class(ref.storage_data)
    assert klass.__name__ == "DagsterPostgresStorage"
    assert value["postgres_db"]["hostname"] == "pg.internal"  # resolved from the environment
    for data in (ref.run_storage_data, ref.event_storage_data, ref.schedule_storage_data):
        _validate_class(data)
    raw = yaml.safe_load((tmp_path / "dagster.yaml").read_text())
    assert raw["concurrency"]["pools"]["default_limit"] == 1
    assert raw["concurrency"]["runs"]["tag_concurrency_limits"][0]["key"] == "dagster/partition"
    assert raw["run_retries"]["max_retries"] == 1 and raw["run_monitoring"]["enabled"]
    if variant == "k8s":
        klass, value = _validate_class(ref.run_launcher_data)
        assert klass.__name__ == "K8sRunLauncher"
        assert value["job_namespace"] == "mmm"
        env = dict(v.split("=", 1) for v in value["env_vars"])
        assert env["MMM_WAREHOUSE"].startswith("/data/") and env["MMM_ARTIFACT_DIR"].startswith("/data/")
        assert value["volume_mounts"][0]["mount_path"] == "/data"


def test_celery_worker_config_matches_the_executor_schema(monkeypatch):
    from dagster._config import process_config
    from dagster_celery.executor import CELERY_CONFIG

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    config = yaml.safe_load((DEPLOY / "celery" / "run_config.yaml").read_text())["execution"]["config"]
    result = process_config(dg.Shape(CELERY_CONFIG), config)
    assert result.success, [e.message for e in result.errors]
    assert result.value["broker"] == "pyamqp://guest@rabbitmq//"


@pytest.mark.parametrize("name, executor", [("k8s", "k8s"), ("celery", "celery"), ("multiprocess", "multiprocess"),
                                            ("in_process", "in_process")])
def test_the_code_location_loads_with_each_executor(name, executor, sample_dir):
    from assets.definitions import ALL_ASSETS, ALL_CHECKS, defs, model_job
    from assets.deployment import executor_from_env

    chosen = executor_from_env({"MMM_EXECUTOR": name, **PG_ENV})
    scaled = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[model_job],
                            resources=defs.resources, executor=chosen)
    dg.Definitions.validate_loadable(scaled)
    job = scaled.resolve_job_def("model_job")
    assert job.executor_def.name == executor
    assert job.partitions_def.get_partition_keys() == ["west", "east"]  # one run, so one pod or worker, per market


def test_executor_setting_errors_name_the_setting_and_the_extra(monkeypatch):
    from assets.deployment import executor_from_env
    from mmm_pipeline.settings import ConfigError

    with pytest.raises(ConfigError, match=r"MMM_EXECUTOR='ray' is not an executor"):
        executor_from_env({"MMM_EXECUTOR": "ray"})
    with pytest.raises(ConfigError, match="MMM_EXECUTOR=celery needs MMM_CELERY_BROKER"):
        executor_from_env({"MMM_EXECUTOR": "celery"})
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"MMM_EXECUTOR=k8s needs the dagster_k8s package: pip install '\.\[k8s\]'"):
        executor_from_env({"MMM_EXECUTOR": "k8s"})


def test_marts_publish_as_parquet_files_bi_can_read(sample_run, tmp_path):
    from mmm_pipeline import warehouse
    from mmm_pipeline.reporting import publish

    db = tmp_path / "warehouse.duckdb"
    shutil.copy(sample_run["warehouse"], db)
    export = tmp_path / "lake" / "mmm"
    with warehouse.connect(db) as con:
        counts = publish.publish(con, db, None, str(export)).counts
    assert (tmp_path / "published" / "mmm.duckdb").exists()
    files = {p.stem: p for p in export.glob("*.parquet")}
    assert {"budget_allocation", "budget_allocation_latest", "channel_roas_latest", "response_curves_latest",
            "cost_per_unit_latest", "model_runs_latest"} <= set(files)
    assert not list(export.glob(".*.tmp"))
    with warehouse.connect(db) as con:
        for table in ("budget_allocation_latest", "channel_roas_latest"):
            expected = con.execute(f"SELECT * FROM marts.{table} ORDER BY ALL").df()
            got = duckdb.sql(f"SELECT * FROM read_parquet('{files[table]}') ORDER BY ALL").df()
            assert len(got) == len(expected) > 0
            assert list(got.columns) == list(expected.columns)
    assert counts["budget_allocation"] == duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{files['budget_allocation']}')").fetchall()[0][0]
    # a second publish overwrites in place: same files, same rows (idempotent)
    with warehouse.connect(db) as con:
        again = publish.export_marts_parquet(con, str(export))
    assert set(again) == set(files) and again["budget_allocation"] == counts["budget_allocation"]
    # a target that cannot be written fails naming the setting; the DuckDB copy for BI is already out
    from mmm_pipeline.settings import ConfigError

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with warehouse.connect(db) as con, pytest.raises(ConfigError, match=r"MMM_PARQUET_EXPORT=.*a_file/lake"):
        publish.export_marts_parquet(con, str(blocker / "lake"))
