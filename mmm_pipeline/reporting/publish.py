"""Publish the marts to a read-only DuckDB file that BI tools can open while the pipeline runs.

DuckDB 2 refuses any connection from another process while a writer holds the
warehouse, so BI never opens the warehouse. Instead the `marts` schema (every
history table and its `_latest` view) is copied into `published/mmm.duckdb`:
written under a temporary name, checkpointed and closed, then renamed over the
previous copy. The rename is atomic, so a reader sees either the old file or
the new one; a connection already open keeps reading the old one.

:func:`publish` is the whole publication (`bi_publication` runs it): the BI file, the HTML
reports beside it and, when MMM_PARQUET_EXPORT is set, the Parquet export.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import NamedTuple

import duckdb

from mmm_pipeline import schema
from mmm_pipeline.paths import path_inside
from mmm_pipeline.settings import ConfigError
from mmm_pipeline.warehouse import create_table_sql, quote_ident, quote_literal, table_columns, utcnow


def published_path(warehouse: Path | str) -> Path:
    """Default location: `published/mmm.duckdb` beside the warehouse file (not `marts.duckdb`: a catalog named like the schema makes `marts.x` ambiguous)."""
    return Path(warehouse).parent / "published" / "mmm.duckdb"


def publish_marts(con: duckdb.DuckDBPyConnection, target: Path | str) -> dict[str, int]:
    """Copy schema `marts` of the open warehouse connection to `target`; returns rows per table.

    Each table is created from its declaration (mmm_pipeline.schema: declared types and column order,
    the declared columns only) and carries its description as COMMENT ON TABLE / COLUMN, as does
    its `_latest` view: BI tools show them, and `duckdb_columns()` lists them. A warehouse table
    that is not declared fails the publication, naming it."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tables = [schema.table(f"marts.{t}") for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' "
        "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
    views = con.execute(
        "SELECT view_name, sql FROM duckdb_views() WHERE schema_name = 'marts' AND NOT internal ORDER BY 1"
    ).fetchall()
    counts = {}
    con.execute(f"ATTACH {quote_literal(tmp)} AS pub")  # ATTACH takes no bound parameter
    try:
        con.execute("CREATE SCHEMA pub.marts")
        for t in tables:
            have = table_columns(con, t.name)
            # a column a table not yet rewritten since an upgrade lacks reads NULL
            cols = ", ".join(quote_ident(c) for c in t.column_names() if c in have)
            con.execute(create_table_sql(t, catalog="pub"))
            con.execute(f"INSERT INTO pub.{t.name} ({cols}) SELECT {cols} FROM {t.name}")
            counts[t.short_name] = con.execute(f"SELECT count(*) FROM pub.{t.name}").fetchall()[0][0]
        published = schema.table("marts._published")
        con.execute(create_table_sql(published, catalog="pub"))
        con.execute("INSERT INTO pub.marts._published VALUES (?::TIMESTAMP)", [utcnow()])
    finally:
        con.execute("DETACH pub")
    # Views are recreated in the copy itself so they refer to its own tables.
    out = duckdb.connect(str(tmp))
    try:
        out.execute("USE marts")
        for _, sql in views:
            out.execute(sql.replace("marts.", ""))
        _comment(out, [*tables, published], {v for v, _ in views})
        out.execute("CHECKPOINT")
    finally:
        out.close()
    os.replace(tmp, target)
    return counts


def _comment(con: duckdb.DuckDBPyConnection, tables: list[schema.Table], views: set[str]) -> None:
    """COMMENT ON each table, its `_latest` view and their columns, from the declarations (COMMENT
    takes no bound parameter: the text is quoted)."""
    for t in tables:
        relations = [(t.name, "TABLE", t.comment())]
        if f"{t.short_name}_latest" in views:
            relations.append((f"{t.name}_latest", "VIEW", t.view_comment()))
        for relation, kind, comment in relations:
            con.execute(f"COMMENT ON {kind} {relation} IS {quote_literal(comment)}")
            for c in t.columns:
                con.execute(f"COMMENT ON COLUMN {relation}.{quote_ident(c.name)} IS {quote_literal(c.comment())}")


REMOTE_SCHEMES = ("s3://", "gs://", "gcs://", "r2://", "az://", "abfss://", "https://")


def _mart_relations(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every table and view of schema `marts` (history tables and their `_latest` views)."""
    return [t for (t,) in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'marts' ORDER BY 1"
    ).fetchall()]


def export_marts_parquet(con: duckdb.DuckDBPyConnection, uri: str) -> dict[str, int]:
    """Write every mart as `<uri>/<table>.parquet`; returns rows per file.

    `uri` is a local folder or an object-store prefix (s3://, gs://, r2://, az://...).
    Object stores get DuckDB's httpfs and the environment's credential chain
    for s3:// (AWS_ACCESS_KEY_ID, AWS_REGION, ... or an instance role); other stores
    use the persistent DuckDB secrets of the user running the pipeline. A local file is written
    under a temporary name and renamed, so a reader never sees half a file; an
    object-store PUT is atomic per object.
    """
    remote = uri.startswith(REMOTE_SCHEMES)
    counts = {}
    table = None
    try:
        if remote:
            con.execute("INSTALL httpfs; LOAD httpfs")
            if uri.startswith("s3://"):  # other stores use DuckDB secrets the user created
                con.execute("INSTALL aws; LOAD aws")
                con.execute("CREATE OR REPLACE SECRET mmm_parquet_export (TYPE s3, PROVIDER credential_chain)")
        else:
            Path(uri).mkdir(parents=True, exist_ok=True)
        base = uri.rstrip("/")
        for table in _mart_relations(con):
            if not re.fullmatch(r"[A-Za-z0-9_]+", table):
                continue
            final = f"{base}/{table}.parquet"
            target = final if remote else str(Path(base) / f".{table}.parquet.{os.getpid()}.tmp")
            # COPY answers with the number of rows it wrote
            counts[table] = con.execute(f"COPY (SELECT * FROM marts.{table}) TO {quote_literal(target)} "
                                        "(FORMAT parquet, COMPRESSION zstd)").fetchall()[0][0]
            if not remote:
                os.replace(target, final)
    except (OSError, duckdb.Error) as exc:
        where = f" (writing marts.{table})" if table else ""
        raise ConfigError(f"MMM_PARQUET_EXPORT={uri}: the marts could not be exported{where}: {exc}") from exc
    return counts


class Publication(NamedTuple):
    counts: dict[str, int]   # rows per mart table in the BI file
    path: Path               # the BI file
    reports: Path            # the folder the reports were copied to
    report_files: int


def publish(con: duckdb.DuckDBPyConnection, warehouse: Path | str, reports: Path | None,
            parquet_export: str | None = None) -> Publication:
    """Copy the marts of the open warehouse connection to the BI file beside `warehouse`, the
    `reports` folder (when it exists) beside that, and the marts to `parquet_export` when set."""
    target = published_path(warehouse)
    counts = publish_marts(con, target)
    if parquet_export:
        export_marts_parquet(con, parquet_export)
    dst = target.parent / "reports"
    n = copy_reports(reports, dst) if reports is not None and Path(reports).exists() else 0
    return Publication(counts, target, dst, n)


def copy_reports(src: Path, dst: Path) -> int:
    """Copy the report folder beside the BI file; each file lands under a temporary name, then is renamed.

    Links are skipped (one could publish a file from elsewhere) and each target must stay inside `dst`."""
    n = 0
    for f in sorted(src.rglob("*")):
        if f.is_file() and not f.is_symlink() and not f.name.startswith("."):
            target = path_inside(dst, f.relative_to(src))
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            shutil.copyfile(f, tmp)
            tmp.replace(target)
            n += 1
    return n
