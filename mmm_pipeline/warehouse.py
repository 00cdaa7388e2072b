"""The DuckDB warehouse: connections, schema and history-keeping tables.

DuckDB allows one writer per file, and DuckDB 2 refuses even a read-only
connection from another process while a writer is open, so every connection
made here holds an exclusive file lock beside the database for its lifetime.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import duckdb
import pandas as pd
from filelock import FileLock

from mmm_pipeline import schema

SCHEMAS = ("raw", "staging", "marts")

RAW_DDL = """
CREATE TABLE IF NOT EXISTS raw.load_log (
    kind VARCHAR NOT NULL,            -- ad_reporting | kpi | lift_tests | channels | fx_rates
    source_file VARCHAR NOT NULL,     -- path relative to the input folder
    sha256 VARCHAR,
    file_mtime TIMESTAMP,
    event VARCHAR NOT NULL,           -- loaded | retired
    rows_read BIGINT,
    rows_loaded BIGINT,
    rows_quarantined BIGINT,
    logged_at TIMESTAMP NOT NULL,
    run_id VARCHAR
);
CREATE TABLE IF NOT EXISTS raw.quarantine (
    kind VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    source_row BIGINT,                -- 1-based data row (the header is row 0)
    reason VARCHAR NOT NULL,
    record VARCHAR,                   -- the row as read, JSON
    detected_at TIMESTAMP NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.ad_reporting (
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    source_mtime TIMESTAMP,
    source_relation VARCHAR NOT NULL,
    date_day DATE NOT NULL,
    platform VARCHAR NOT NULL,
    account_id VARCHAR NOT NULL,
    account_name VARCHAR,
    campaign_id VARCHAR NOT NULL,
    campaign_name VARCHAR,
    ad_group_id VARCHAR NOT NULL,     -- '' at campaign grain
    ad_id VARCHAR NOT NULL,           -- '' at campaign or ad-group grain
    geo VARCHAR,                      -- NULL: the row carries no geo
    channel VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    clicks DOUBLE NOT NULL,
    impressions DOUBLE NOT NULL,
    spend DOUBLE NOT NULL,            -- reporting currency
    spend_original DOUBLE NOT NULL,   -- as reported, in `currency`
    conversions DOUBLE NOT NULL,
    conversions_value DOUBLE NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.ad_reporting_superseded (
    source_file VARCHAR, source_row BIGINT, superseded_by_file VARCHAR,
    source_relation VARCHAR, date_day DATE, platform VARCHAR, account_id VARCHAR,
    campaign_id VARCHAR, ad_group_id VARCHAR, ad_id VARCHAR, geo VARCHAR,
    spend DOUBLE, logged_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS raw.kpi (
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    source_mtime TIMESTAMP,
    date_day DATE NOT NULL,
    geo VARCHAR,
    kpi_name VARCHAR NOT NULL,
    kpi_value DOUBLE NOT NULL
);
-- One row per row of a controls/ file: its numeric columns as a JSON object {control: value}
-- (the columns differ from file to file; staging unnests them).
CREATE TABLE IF NOT EXISTS raw.controls (
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    source_mtime TIMESTAMP,
    date_day DATE NOT NULL,
    geo VARCHAR,
    control_values JSON NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.lift_tests (
    source_file VARCHAR NOT NULL,
    source_row BIGINT NOT NULL,
    test_id VARCHAR NOT NULL,
    channel VARCHAR NOT NULL,
    geo VARCHAR,
    start_date DATE NOT NULL,
    end_date DATE NOT NULL,
    delta_spend DOUBLE NOT NULL,
    delta_y DOUBLE NOT NULL,
    sigma DOUBLE NOT NULL,
    scope VARCHAR            -- window (default when empty) | total; validated by the conversion
);
-- warehouses made before `scope` was loaded
ALTER TABLE raw.lift_tests ADD COLUMN IF NOT EXISTS scope VARCHAR;
CREATE TABLE IF NOT EXISTS raw.channels (
    line_no INTEGER NOT NULL,
    channel VARCHAR NOT NULL,
    platform VARCHAR NOT NULL,
    campaign_pattern VARCHAR NOT NULL,
    unit VARCHAR NOT NULL,
    currency VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS raw.fx_rates (
    date DATE NOT NULL,
    currency VARCHAR NOT NULL,
    rate_to_reporting DOUBLE NOT NULL
);
-- What a kind's rows were derived with besides their files (catalogue, FX rates, KPI column,
-- limits): when it changes, every file of the kind is read again.
CREATE TABLE IF NOT EXISTS raw.load_context (
    kind VARCHAR NOT NULL,
    context VARCHAR NOT NULL,
    logged_at TIMESTAMP NOT NULL
);
-- Rows per file (and ad-reporting platform) before and after each load that changed a kind: one
-- row per file of the kind then (changed or not), so a file that empties or a platform that
-- collapses is found against its history (mmm_pipeline.ingestion.volume). Warehouses made before
-- it gain it here; their history starts with the next load.
CREATE TABLE IF NOT EXISTS raw.source_volume (
    kind VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,     -- path relative to the input folder
    platform VARCHAR NOT NULL,        -- ad_reporting: the rows' platform; '' for other kinds or no rows
    file_status VARCHAR NOT NULL,     -- loaded | unchanged | retired (in this load)
    rows_before BIGINT NOT NULL,
    rows_after BIGINT NOT NULL,
    channels_before VARCHAR[],        -- the channels those rows fed (ad_reporting)
    channels_after VARCHAR[],
    logged_at TIMESTAMP NOT NULL,     -- the load (one value per load, as in raw.load_log)
    run_id VARCHAR
);
"""


def quote_ident(name: str) -> str:
    """A SQL identifier for any name (a column header, a KPI column): quoted, inner quotes doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A SQL string literal, for the few statements DuckDB cannot bind a parameter in (ATTACH, COPY TO)."""
    return "'" + str(value).replace("'", "''") + "'"


def utcnow() -> datetime:
    # DuckDB TIMESTAMP is naive; store UTC.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def lock_path(database: Path | str) -> Path:
    return Path(str(database) + ".lock")


@contextmanager
def connect(database: Path | str, *, timeout: float = 600) -> Iterator[duckdb.DuckDBPyConnection]:
    """An exclusive, process-safe connection to the warehouse file."""
    database = Path(database)
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_path(database)), timeout=timeout):
        con = duckdb.connect(str(database))
        try:
            ensure_schema(con)
            yield con
        finally:
            con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for name in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
    con.execute(RAW_DDL)


def fingerprint(*parts: object) -> str:
    """A short, stable content hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def table_exists(con: duckdb.DuckDBPyConnection, qualified: str) -> bool:
    schema_name, name = qualified.split(".")
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema=? AND table_name=?",
            [schema_name, name],
        ).fetchone()[0]
    )


def create_table_sql(t: schema.Table, catalog: str | None = None) -> str:
    """CREATE TABLE for the declaration `t` (in the attached database `catalog`, when given)."""
    cols = ", ".join(f"{quote_ident(c.name)} {c.type}{' NOT NULL' if c.not_null else ''}" for c in t.columns)
    return f"CREATE TABLE IF NOT EXISTS {f'{catalog}.' if catalog else ''}{t.name} ({cols})"


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column -> DuckDB type of `table` (schema-qualified) in the connection's own database."""
    schema_name, name = table.split(".")
    return dict(con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = "
                            "current_database() AND schema_name = ? AND table_name = ? ORDER BY column_index",
                            [schema_name, name]).fetchall())


def ensure_table(con: duckdb.DuckDBPyConnection, table: str) -> schema.Table:
    """Create `table` from its declaration (mmm_pipeline.schema), or bring the one an older version
    made up to it, its rows kept: a declared column it lacks is added (older rows read NULL), and
    a column of another type (NULL where an all-null DataFrame column made it) is cast to the
    declared one. Columns no longer declared are left alone (nothing reads or publishes them)."""
    t = schema.table(table)
    if not table_exists(con, table):
        con.execute(create_table_sql(t))
        return t
    have = table_columns(con, table)
    for c in t.columns:
        if c.name not in have:
            con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(c.name)} {c.type}")
        elif have[c.name] != c.type:
            con.execute(f"ALTER TABLE {table} ALTER COLUMN {quote_ident(c.name)} TYPE {c.type}")
    for migrate in MIGRATIONS.get(table, ()):
        migrate(con)
    return t


def _all_media_rows_apart(con) -> None:
    """Older versions wrote the market's `all media` row among the per-channel rows of
    marts.channel_roas_market (summing its spend counted everything twice): move them to
    marts.channel_roas_market_total."""
    if not con.execute("SELECT count(*) FROM marts.channel_roas_market WHERE channel = ?", [ALL_MEDIA]).fetchone()[0]:
        return
    total = ensure_table(con, "marts.channel_roas_market_total")
    have = table_columns(con, "marts.channel_roas_market")
    cols = ", ".join(quote_ident(c) for c in total.column_names() if c in have)
    con.execute(f"INSERT INTO marts.channel_roas_market_total ({cols}) SELECT {cols} FROM marts.channel_roas_market "
                "WHERE channel = ?", [ALL_MEDIA])
    con.execute("DELETE FROM marts.channel_roas_market WHERE channel = ?", [ALL_MEDIA])


ALL_MEDIA = "all media"  # the channel label older versions gave the market's total row
# Data moves a table needs beyond its declared columns, run by ensure_table (each finds nothing to do
# once done).
MIGRATIONS = {"marts.channel_roas_market": (_all_media_rows_apart,)}


def append_history(
    con: duckdb.DuckDBPyConnection,
    table: str,
    df: pd.DataFrame,
    *,
    version: str,
    partition_columns: tuple[str, ...] = (),
    materialized_at: datetime | None = None,
    units: schema.Units | None = None,
) -> bool:
    """Append `df` stamped with `version` unless that version is already the newest.

    The table is created from its declaration (`ensure_table`) and every value cast to its declared
    type, so an all-null column is typed as declared, not NULL; a column `df` lacks is NULL, one the
    declaration lacks is an error. Its `currency`, `kpi_name` and `kpi_unit` columns, where it has
    them, come from `units` unless `df` has them. Every history table carries its version column
    (`data_version` or `model_version`) and `materialized_at`; the `<table>_latest` view shows the
    newest materialization (per partition columns, e.g. market). Returns True when rows were appended.
    """
    t = ensure_table(con, table)
    if t.version_column is None:
        raise schema.SchemaError(f"{table} is not declared as a history table")
    materialized_at = materialized_at or utcnow()
    df = df.copy()
    for name in schema.UNIT_COLUMNS:
        if name in t.column_names() and name not in df:
            value = getattr(units, name, None)
            if value is None:
                raise schema.SchemaError(f"{table}: its money or KPI columns need `{name}`: pass units= "
                                         "(mmm_pipeline.units.run_units)")
            df[name] = value
    df[t.version_column] = version
    df["materialized_at"] = pd.Timestamp(materialized_at)
    unknown = [c for c in df.columns if c not in t.column_names()]
    if unknown:
        raise schema.SchemaError(f"{table}: column(s) {unknown} are not declared in mmm_pipeline/schema.py")
    partition_values = (
        df[list(partition_columns)].drop_duplicates().to_dict("records") if partition_columns else [{}]
    )
    register(con, "_history_rows", df)
    try:
        if partition_values and all(
            _latest_version(con, table, t.version_column, part) == version for part in partition_values
        ):
            create_latest_view(con, table, partition_columns)
            return False
        cols = [c for c in t.columns if c.name in df.columns]
        names = ", ".join(quote_ident(c.name) for c in cols)
        values = ", ".join(f"CAST({quote_ident(c.name)} AS {c.type})" for c in cols)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {values} FROM _history_rows")
    finally:
        unregister(con, "_history_rows")
    create_latest_view(con, table, partition_columns)
    return True


def _latest_version(con, table: str, version_column: str, partition: dict) -> str | None:
    where = " AND ".join(f"{quote_ident(k)} = ?" for k in partition) or "TRUE"
    row = con.execute(
        f'SELECT {quote_ident(version_column)} FROM {table} WHERE {where} '
        "ORDER BY materialized_at DESC LIMIT 1",
        list(partition.values()),
    ).fetchone()
    return row[0] if row else None


def create_latest_view(con, table: str, partition_columns: tuple[str, ...] = ()) -> None:
    if partition_columns:
        keys = ", ".join(quote_ident(c) for c in partition_columns)
        cond = (
            f"({keys}, materialized_at) IN "
            f"(SELECT {keys}, max(materialized_at) FROM {table} GROUP BY {keys})"
        )
    else:
        cond = f"materialized_at = (SELECT max(materialized_at) FROM {table})"
    con.execute(f"CREATE OR REPLACE VIEW {table}_latest AS SELECT * FROM {table} WHERE {cond}")


def table_row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables "
        "WHERE table_schema IN ('raw','staging','marts') ORDER BY 1"
    ).fetchall()
    return {name: con.execute(f"SELECT count(*) FROM {name}").fetchone()[0] for (name,) in rows}


def register(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> None:
    """`con.register` that first finishes a half-fetched result (DuckDB 2 refuses otherwise)."""
    con.complete()
    con.register(name, df)


def unregister(con: duckdb.DuckDBPyConnection, name: str) -> None:
    con.complete()
    con.unregister(name)
