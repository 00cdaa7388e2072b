"""Dagster resources: the DuckDB warehouse, the artifact store and the run settings.

Defaults come from environment variables (see `mmm_pipeline.settings`):
MMM_INPUT_DIR, MMM_WAREHOUSE, MMM_ARTIFACT_DIR, MMM_PROFILE (and the optional MMM_PARQUET_EXPORT,
MMM_DAGSTER_UI_URL).
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from mmm_pipeline import warehouse
from mmm_pipeline.paths import path_inside
from mmm_pipeline.settings import (
    PipelineConfig,
    RunSettings,
    check_input_dir,
    check_writable,
    load_pipeline_config,
)


class WarehouseResource(DuckDBResource):
    """DuckDBResource whose connections hold the warehouse's cross-process file lock.

    DuckDB 2 refuses a second process even read-only while a writer is open,
    so reads and writes are serialized alike; BI reads the published copy.
    """

    lock_timeout_seconds: float = 1800.0

    def setup_for_execution(self, context) -> None:
        # Fail the first asset that needs the warehouse with the setting's name,
        # not with a lock-file or DuckDB I/O error.
        check_writable(Path(self.database), "MMM_WAREHOUSE", is_folder=False)

    @contextmanager
    def get_connection(self):
        with warehouse.connect(self.database, timeout=self.lock_timeout_seconds) as con:
            yield con

    @contextmanager
    def transaction(self):
        """A connection whose writes commit together or not at all: an asset that writes several
        tables leaves none of them changed when it fails."""
        with self.get_connection() as con:
            con.begin()
            try:
                yield con
                con.commit()
            except BaseException:
                con.rollback()
                raise


class ArtifactStore(dg.ConfigurableResource):
    """Files a run writes (plots, model artifacts) under MMM_ARTIFACT_DIR."""

    root: str

    def setup_for_execution(self, context) -> None:
        check_writable(Path(self.root), "MMM_ARTIFACT_DIR", is_folder=True)

    def path(self, *parts: str) -> Path:
        """`root/parts...`, resolved; ValueError when it would lie outside the root (every file goes through here)."""
        return path_inside(self.root, *parts)

    def write_bytes(self, relpath: str, data: bytes) -> Path:
        """Write atomically: a reader never sees a half-written file."""
        target = self.path(relpath)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
        return target


class PipelineSettings(dg.ConfigurableResource):
    """Where the input lives and which profile runs; `config()` reads pipeline.yaml."""

    input_dir: str
    profile: str = "full"
    # MMM_PARQUET_EXPORT: a folder or s3://... prefix that also receives the marts as Parquet.
    parquet_export: str | None = None
    # MMM_DAGSTER_UI_URL: where the Dagster UI runs, so the reports' index links each run's page.
    dagster_ui_url: str | None = None

    def input_path(self) -> Path:
        path = Path(self.input_dir)
        check_input_dir(path)
        return path

    def config(self) -> tuple[PipelineConfig, str]:
        return load_pipeline_config(self.input_path())


def build_resources(settings: RunSettings | None = None) -> dict:
    settings = settings or RunSettings.from_env()
    return {
        "warehouse": WarehouseResource(database=str(settings.warehouse)),
        "artifacts": ArtifactStore(root=str(settings.artifact_dir)),
        "settings": PipelineSettings(input_dir=str(settings.input_dir), profile=settings.profile,
                                     parquet_export=settings.parquet_export,
                                     dagster_ui_url=settings.dagster_ui_url),
    }
