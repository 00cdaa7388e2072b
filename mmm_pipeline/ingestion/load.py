"""The generic incremental file loader behind every raw load, and its SQL row rules.

:func:`load_files` loads the changed files of one kind (a :class:`TableSpec`)
in one transaction: read, judge every row (row rules and in-file duplicates),
quarantine the bad ones, replace the file's rows, retire removed files, log
each file in ``raw.load_log``. The row-rule builders (``metric_checks``,
``null_key_check``, ``date_check``, ``row_reason``) write the SQL CASE
expressions a spec's ``typed_select`` combines; ``mmm_pipeline.ingestion.ingest``
holds the specs of each kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import duckdb

from mmm_pipeline.ingestion import volume
from mmm_pipeline.ingestion.readers import (
    ISO_ANY, IngestError, SourceFile, TypedRead, declared_date_formats, read_typed,
)
from mmm_pipeline.warehouse import quote_ident, quote_literal, utcnow

#: Columns every raw row carries about its file (not part of its content).
PROVENANCE = ("source_file", "source_row", "source_mtime")


@dataclass
class LoadReport:
    kind: str
    files_loaded: list[str] = field(default_factory=list)
    files_unchanged: list[str] = field(default_factory=list)
    files_retired: list[str] = field(default_factory=list)
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_superseded: int = 0
    table_rows: int = 0

    def as_metadata(self) -> dict:
        return {
            "files_loaded": len(self.files_loaded),
            "files_unchanged": len(self.files_unchanged),
            "files_retired": len(self.files_retired),
            "rows_loaded": self.rows_loaded,
            "rows_quarantined": self.rows_quarantined,
            "rows_superseded": self.rows_superseded,
            "table_rows": self.table_rows,
        }


def current_files(con: duckdb.DuckDBPyConnection, kind: str) -> dict[str, str]:
    """File -> sha256 of the files whose rows are in the warehouse now."""
    rows = con.execute(
        """
        SELECT source_file, sha256, event FROM raw.load_log WHERE kind = ?
        QUALIFY row_number() OVER (PARTITION BY source_file ORDER BY logged_at DESC, event) = 1
        """,
        [kind],
    ).fetchall()
    return {f: sha for f, sha, event in rows if event == "loaded"}


def load_context(con: duckdb.DuckDBPyConnection, kind: str) -> str | None:
    """The context the kind's rows were last derived with (None before the first load)."""
    row = con.execute("SELECT context FROM raw.load_context WHERE kind = ? ORDER BY logged_at DESC LIMIT 1",
                      [kind]).fetchone()
    return row[0] if row else None


# --------------------------------------------------------------------------
# Row rules: SQL over alias `s` (the typed read). Column names are quoted
# identifiers; a name that comes from a config (the KPI column) is labelled in
# reasons through a bound parameter, never spliced in as text.


def col_sql(col: str) -> str:
    """Column `col` of the typed read (alias `s`), quoted."""
    return f"s.{quote_ident(col)}"


def _label(col: str, label: str | None) -> str:
    return label or quote_literal(col)  # `col` is then one of this module's constant column names


def unparseable_check(col: str, read: TypedRead, label: str | None = None) -> str:
    """A WHEN clause: the cell had text that did not parse as the column's type (empty when not typed)."""
    if col not in read.raw_text:
        return ""
    raw = f"s.{quote_ident(col + '__raw')}"
    return f"WHEN {raw} IS NOT NULL AND {col_sql(col)} IS NULL THEN 'unparseable ' || {_label(col, label)} || ': ' || {raw}"


def metric_checks(col: str, read: TypedRead, required_if: str | None = None, allow_negative: bool = False,
                   label: str | None = None) -> str:
    """Reason for a bad number cell: unparseable, missing when it is needed, not finite (inf,
    NaN), beyond `$max_metric_value`, or negative."""
    c, name = col_sql(col), _label(col, label)
    whens = [
        unparseable_check(col, read, label),
        f"WHEN {c} IS NULL AND ({required_if}) THEN 'missing ' || {name}" if required_if else "",
        f"WHEN NOT isfinite({c}) THEN 'non-finite ' || {name} || ': ' || {c}",
        f"WHEN abs({c}) > $max_metric_value THEN {name} || ' ' || {c} || ' is above the ceiling ' "
        f"|| $max_metric_value || ' (pipeline.yaml ingest.max_metric_value)'",
        "" if allow_negative else f"WHEN {c} < 0 THEN 'negative ' || {name}",
    ]
    return f"CASE {' '.join(w for w in whens if w)} END"


def null_key_check(col: str) -> str:
    """Reason for a null or empty key cell."""
    return f"CASE WHEN {col_sql(col)} IS NULL OR {col_sql(col)} = '' THEN 'null key {col}' END"


def date_check(col: str, read: TypedRead) -> str:
    """Reason for a date key that is missing or that no accepted format reads (see `readers._parse_dates`):
    an ISO day that does not exist, an ISO timestamp (or a declared format) with a time of day
    other than midnight, or an unsupported format. The value is quoted in the reason."""
    if col not in read.raw_text:  # a Parquet DATE column: nothing to parse
        return f"CASE WHEN {col_sql(col)} IS NULL THEN 'null key {col}' END"
    raw = f"s.{quote_ident(col + '__raw')}"
    value, name = f"'''' || {raw} || ''''", quote_literal(col)
    iso = f"regexp_full_match({raw}, {quote_literal(ISO_ANY)})"
    timed = f"(TRY_CAST(left(ltrim({raw}), 10) AS DATE) IS NOT NULL AND {iso})"
    if read.date_formats:
        timed += f" OR try_strptime({raw}, $date_formats) IS NOT NULL"
    return (
        f"CASE WHEN {raw} IS NOT NULL THEN CASE "
        f"WHEN {timed} THEN {name} || ' ' || {value} || ' has a time of day other than midnight "
        f"(a day''s row takes a timestamp only at 00:00:00)' "
        f"WHEN {iso} THEN 'invalid date ' || {value} || ' in ' || {name} || ' (no such calendar day)' "
        f"ELSE 'unsupported date format ' || {value} || ' in ' || {name} || ' (accepted: ISO dates YYYY-MM-DD, "
        f"ISO timestamps at midnight, or formats declared in pipeline.yaml ingest.date_formats)' END "
        f"WHEN {col_sql(col)} IS NULL THEN 'null key {col}' END"
    )


def row_reason(reasons: list[str]) -> str:
    """The `_row_reason` column: every row-rule problem, '; '-joined (the string work only on bad rows)."""
    bad = " OR ".join(f"({r}) IS NOT NULL" for r in reasons)
    return f"CASE WHEN {bad} THEN concat_ws('; ', {', '.join(reasons)}) END AS _row_reason"


def bind_params(sql: str, params: dict) -> dict:
    """The named parameters `sql` uses (DuckDB refuses unused ones)."""
    return {k: v for k, v in params.items() if f"${k}" in sql}



def log_whole_file(con, kind: str, src: SourceFile, rows: int, run_id: str | None) -> None:
    """Log a file loaded whole (no row rules: catalogue, FX rates) in raw.load_log, once per content."""
    if current_files(con, kind).get(src.rel) == src.sha256:
        return
    con.execute(
        "INSERT INTO raw.load_log VALUES (?, ?, ?, ?, 'loaded', ?, ?, 0, ?, ?)",
        [kind, src.rel, src.sha256, src.mtime, rows, rows, utcnow(), run_id],
    )


# --------------------------------------------------------------------------
# Generic incremental file loader


@dataclass(frozen=True)
class TableSpec:
    kind: str
    table: str
    required: list[str]
    optional: list[str]
    types: dict[str, str]             # target SQL type per column (others VARCHAR)
    # (typed read, file) -> SELECT over alias `s` giving the table's columns plus `_row_reason`;
    # it may use the bound parameters $source_file, $source_mtime and those in `params`.
    typed_select: Callable[[TypedRead, SourceFile], str]
    natural_key: tuple[str, ...]      # output columns that identify a row within a file
    params: dict = field(default_factory=dict)
    # What the rows are derived with besides the files: a change re-reads every file.
    context: str = ""
    # Share of the loaded files one load may retire (more fails, see IngestSettings).
    max_retired_share: float = 1.0
    # File glob -> strptime formats its DATE columns may use besides ISO (ingest.date_formats);
    # part of `context` too, so a change re-reads the files.
    date_formats: dict[str, list[str]] = field(default_factory=dict)
    # Runs inside the load's transaction after the rows are written (derived views, restatements).
    after_load: Callable[[duckdb.DuckDBPyConnection], None] | None = None
    # Columns raw.source_volume counts rows by (platform) and lists the channels of (None: neither).
    volume_platform: str | None = None
    volume_channel: str | None = None


def _mark_duplicates(select: str, key: tuple[str, ...], content: list[str]) -> str:
    """`select` plus `_reason`: its row-rule reason or, for rows that pass them, a duplicate reason.

    Among rows sharing a natural key, identical rows keep the first copy and
    quarantine the others (`exact duplicate of row N`); rows whose values differ
    are all quarantined (`conflicting values ...`): which one is right cannot
    be known. Grouping on a hash is cheap; the exact key decides on the few
    candidate rows.
    """
    k = ", ".join(quote_ident(c) for c in key)
    kh, ch = f"hash({k})", f"hash({', '.join(quote_ident(c) for c in content)})"
    return f"""
    WITH b AS MATERIALIZED ({select}),
    cand AS (SELECT {kh} AS h FROM b WHERE _row_reason IS NULL GROUP BY 1 HAVING count(*) > 1),
    d AS (
        SELECT source_row,
               CASE WHEN min({ch}) OVER w <> max({ch}) OVER w
                    THEN 'conflicting values for natural key (' || count(*) OVER w || ' rows in this file)'
                    WHEN source_row <> min(source_row) OVER w
                    THEN 'exact duplicate of row ' || min(source_row) OVER w END AS _dup_reason
        FROM b WHERE _row_reason IS NULL AND {kh} IN (SELECT h FROM cand)
        WINDOW w AS (PARTITION BY {k}))
    SELECT b.* EXCLUDE (_row_reason), coalesce(b._row_reason, d._dup_reason) AS _reason
    FROM b LEFT JOIN d USING (source_row)"""


def load_files(con: duckdb.DuckDBPyConnection, spec: TableSpec, files: list[SourceFile],
               run_id: str | None = None) -> LoadReport:
    report = LoadReport(spec.kind)
    loaded_now = current_files(con, spec.kind)
    stale = load_context(con, spec.kind) != spec.context
    # A file never loaded is read at once, without waiting for its hash.
    changed = [f for f in files if stale or f.rel not in loaded_now or loaded_now[f.rel] != f.sha256]
    report.files_unchanged = [f.rel for f in files if f not in changed]
    removed = sorted(set(loaded_now) - {f.rel for f in files})
    if loaded_now and len(removed) / len(loaded_now) > spec.max_retired_share:
        raise IngestError(
            f"{spec.kind}/: {len(removed)} of the {len(loaded_now)} loaded file(s) are gone "
            f"({', '.join(removed[:5])}{', ...' if len(removed) > 5 else ''}); retiring more than "
            f"{spec.max_retired_share:.0%} of them in one load looks like a missing or half-copied folder. "
            "Nothing was changed; if the files were removed on purpose, set pipeline.yaml "
            "ingest.max_retired_share (1.0 allows all) for this load"
        )

    target_cols = [d[0] for d in con.execute(f"SELECT * FROM {spec.table} LIMIT 0").description]
    content = [c for c in target_cols if c not in PROVENANCE]
    # Read and judge every changed file before writing anything: an unreadable one fails here.
    staged = []
    for i, src in enumerate(changed):
        read = read_typed(con, src, f"_src_{spec.kind}_{i}", spec.required, spec.optional, spec.types,
                          declared_date_formats(src.rel, spec.date_formats))
        sql = _mark_duplicates(spec.typed_select(read, src), spec.natural_key, content)
        params = {**spec.params, "source_file": src.rel, "source_mtime": src.mtime,
                  "date_formats": read.date_formats}
        con.execute(f"CREATE OR REPLACE TEMP TABLE {read.temp}_out AS {sql}", bind_params(sql, params))
        staged.append((src, read))

    cols = ", ".join(quote_ident(c) for c in target_cols)
    now = utcnow()
    con.begin()
    try:
        volume_before = volume.table_counts(con, spec) if staged or removed else None
        for rel in removed:
            con.execute(f"DELETE FROM {spec.table} WHERE source_file = ?", [rel])
            con.execute("DELETE FROM raw.quarantine WHERE kind = ? AND source_file = ?", [spec.kind, rel])
            con.execute(
                "INSERT INTO raw.load_log VALUES (?, ?, NULL, NULL, 'retired', NULL, 0, 0, ?, ?)",
                [spec.kind, rel, now, run_id],
            )
            report.files_retired.append(rel)
        for src, read in staged:
            out = f"{read.temp}_out"
            con.execute(f"DELETE FROM {spec.table} WHERE source_file = ?", [src.rel])
            con.execute("DELETE FROM raw.quarantine WHERE kind = ? AND source_file = ?", [spec.kind, src.rel])
            n_good = con.execute(
                f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM {out} WHERE _reason IS NULL"
            ).fetchall()[0][0]
            con.execute(
                f"""INSERT INTO raw.quarantine
                    SELECT ?, ?, t.source_row, t._reason, to_json(s), ?
                    FROM {out} t JOIN {read.temp} s ON {read.row_expr} = t.source_row
                    WHERE t._reason IS NOT NULL""",
                [spec.kind, src.rel, now],
            ).fetchall()
            if read.rejects:
                con.execute(
                    f"INSERT INTO raw.quarantine SELECT ?, ?, source_row, reason, to_json(record), ? FROM {read.rejects}",
                    [spec.kind, src.rel, now],
                ).fetchall()
            n_read = con.execute(f"SELECT count(*) FROM {read.temp}").fetchall()[0][0] + read.n_rejected
            n_bad = n_read - n_good
            con.execute(
                "INSERT INTO raw.load_log VALUES (?, ?, ?, ?, 'loaded', ?, ?, ?, ?, ?)",
                [spec.kind, src.rel, src.sha256, src.mtime, n_read, n_good, n_bad, now, run_id],
            )
            report.files_loaded.append(src.rel)
            report.rows_loaded += n_good
            report.rows_quarantined += n_bad
        if stale:
            con.execute("INSERT INTO raw.load_context VALUES (?, ?, ?)", [spec.kind, spec.context, now])
        if volume_before is not None:  # the rows of every file of the kind, before and after (source volume)
            status = {**dict.fromkeys(report.files_unchanged, "unchanged"),
                      **dict.fromkeys(report.files_loaded, "loaded"), **dict.fromkeys(report.files_retired, "retired")}
            volume.record_volume(con, spec, volume_before, status, now, run_id)
        if spec.after_load:
            spec.after_load(con)
        con.commit()
    except Exception:
        con.rollback()
        raise
    finally:
        for _, read in staged:
            for suffix in ("", "_bad", "_out", "_map"):  # the read and its helper tables
                con.execute(f"DROP TABLE IF EXISTS {read.temp}{suffix}")
    report.table_rows = con.execute(f"SELECT count(*) FROM {spec.table}").fetchall()[0][0]
    return report

