"""Retention: keep the newest N versions of every history table and of the model artifacts.

`mmm-prune [--keep N]` (default MMM_KEEP_VERSIONS, else 10). History tables are
the staging and mart tables carrying `materialized_at` and a version column;
versions are counted per market and variant where a table has them, so each
partition keeps its own N newest materializations, and the rows the `_latest`
views show are never removed. Model artifacts whose version no longer has a
`marts.model_runs` row are deleted.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import duckdb

from mmm_pipeline import warehouse
from mmm_pipeline.settings import RunSettings

PARTITION_COLUMNS = ("market", "variant", "allocation_id")


def history_tables(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name, list(column_name) FROM information_schema.columns "
        "WHERE table_schema IN ('staging', 'marts') GROUP BY 1 ORDER BY 1").fetchall()
    kinds = {t: k for t, k in con.execute(
        "SELECT table_schema || '.' || table_name, table_type FROM information_schema.tables").fetchall()}
    return {t: cols for t, cols in rows if "materialized_at" in cols and kinds.get(t) == "BASE TABLE"}


def prune_history(con: duckdb.DuckDBPyConnection, keep: int) -> dict[str, int]:
    """Delete all but the `keep` newest materializations per partition; returns rows deleted per table."""
    if keep < 1:
        raise ValueError("keep must be at least 1: the newest version is what the _latest views show")
    deleted = {}
    for table, cols in history_tables(con).items():
        parts = [c for c in PARTITION_COLUMNS if c in cols]
        by = ", ".join(parts)
        part_expr = f"PARTITION BY {by}" if parts else ""
        before = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
        con.execute(
            f"""DELETE FROM {table} WHERE ({', '.join(parts + ['materialized_at'])}) IN (
                    SELECT ({', '.join(parts + ['materialized_at'])}) FROM (
                        SELECT {by + ',' if parts else ''} materialized_at,
                               dense_rank() OVER ({part_expr} ORDER BY materialized_at DESC) AS r
                        FROM (SELECT DISTINCT {by + ',' if parts else ''} materialized_at FROM {table}))
                    WHERE r > ?)""",
            [keep],
        )
        deleted[table] = before - con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    return deleted


def prune_artifacts(con: duckdb.DuckDBPyConnection, artifact_dir: Path) -> list[Path]:
    """Delete model files (`<variant>/<market>/<model_version>.nc`) without a model_runs row."""
    if not warehouse.table_exists(con, "marts.model_runs"):
        return []
    kept = {v for (v,) in con.execute("SELECT DISTINCT model_version FROM marts.model_runs").fetchall()}
    removed = []
    for path in Path(artifact_dir).glob("*/*/*.nc"):
        if path.stem not in kept:
            path.unlink()
            removed.append(path)
    return removed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", type=int, default=int(os.environ.get("MMM_KEEP_VERSIONS", "10")),
                    help="versions to keep per table and partition (MMM_KEEP_VERSIONS, default 10)")
    args = ap.parse_args(argv)
    settings = RunSettings.from_env()
    with warehouse.connect(settings.warehouse) as con:
        deleted = prune_history(con, args.keep)
        removed = prune_artifacts(con, settings.artifact_dir)
    for table, n in deleted.items():
        print(f"{table:<40} {n:>8} rows deleted")
    print(f"{len(removed)} model artifact(s) deleted from {settings.artifact_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
