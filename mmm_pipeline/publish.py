"""Publish the marts to a read-only DuckDB file that BI tools can open while the pipeline runs.

DuckDB 2 refuses any connection from another process while a writer holds the
warehouse, so BI never opens the warehouse. Instead the `marts` schema (every
history table and its `_latest` view) is copied into `published/mmm.duckdb`:
written under a temporary name, checkpointed and closed, then renamed over the
previous copy. The rename is atomic, so a reader sees either the old file or
the new one; a connection already open keeps reading the old one.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from mmm_pipeline.warehouse import utcnow


def published_path(warehouse: Path | str) -> Path:
    """Default location: `published/mmm.duckdb` beside the warehouse file (not `marts.duckdb`: a catalog named like the schema makes `marts.x` ambiguous)."""
    return Path(warehouse).parent / "published" / "mmm.duckdb"


def publish_marts(con: duckdb.DuckDBPyConnection, target: Path | str) -> dict[str, int]:
    """Copy schema `marts` of the open warehouse connection to `target`; returns rows per table."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tables = [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
        "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
    views = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'marts' AND NOT internal ORDER BY 1"
    ).fetchall()
    counts = {}
    con.execute(f"ATTACH '{tmp}' AS pub")
    try:
        con.execute("CREATE SCHEMA pub.marts")
        for t in tables:
            con.execute(f"CREATE TABLE pub.marts.{t} AS SELECT * FROM marts.{t}")
            counts[t] = con.execute(f"SELECT count(*) FROM pub.marts.{t}").fetchall()[0][0]
        con.execute("CREATE TABLE pub.marts._published AS SELECT ?::TIMESTAMP AS published_at", [utcnow()])
    finally:
        con.execute("DETACH pub")
    # Views are recreated in the copy itself so they refer to its own tables.
    out = duckdb.connect(str(tmp))
    try:
        out.execute("USE marts")
        for _, sql in views:
            out.execute(sql.replace("marts.", ""))
        out.execute("CHECKPOINT")
    finally:
        out.close()
    os.replace(tmp, target)
    return counts
