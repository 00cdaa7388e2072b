"""Reading input files into DuckDB temp tables, with errors that name the file, row and column.

Every path and every name that comes from a file reaches DuckDB as a bound
parameter (`$path`, `$types`) or a quoted identifier (`quote_ident`), never by
string formatting: a header cell is data, not SQL.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from mmm_pipeline.warehouse import quote_ident

NULL_STRINGS = ["", "NA", "na", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None"]


class IngestError(ValueError):
    """An input file cannot be loaded; the message names the file, column and problem."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalize_column(name: str) -> str:
    return re.sub(r"\s+", "_", str(name).replace("\ufeff", "").strip().lower())


_HASHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")


@dataclass
class SourceFile:
    path: Path
    rel: str
    mtime: datetime
    # Hashing runs in a background thread (hashlib releases the GIL), so a new
    # file's sha256 is computed while DuckDB reads it.
    _sha: Future = field(repr=False, default=None)

    @property
    def sha256(self) -> str:
        return self._sha.result()

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() == ".parquet"


def source_file(input_dir: Path, p: Path) -> SourceFile:
    """A file of the input folder, named by its path relative to the folder."""
    return SourceFile(path=p, rel=str(p.relative_to(input_dir)), mtime=datetime.fromtimestamp(p.stat().st_mtime),
                      _sha=_HASHER.submit(sha256_file, p))


def list_files(input_dir: Path, sub: str) -> list[SourceFile]:
    """The CSV and Parquet files of a required sub-folder; a missing folder fails (an unmounted
    share must not look like a folder whose files were all deleted)."""
    folder = Path(input_dir) / sub
    if not folder.is_dir():
        raise IngestError(f"{sub}/: folder {folder} not found (not mounted, moved or misspelled?); "
                          f"the input contract needs it, and nothing loaded before was changed")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".parquet") and p.is_file())
    return [source_file(input_dir, p) for p in paths]


# Reader SQL: the path is always the bound parameter $path.
CSV_TEXT = f"read_csv($path, all_varchar=true, header=true, nullstr={NULL_STRINGS!r})"
PARQUET = "read_parquet($path)"


def header(con: duckdb.DuckDBPyConnection, src: SourceFile) -> list[str]:
    """The column names exactly as written (DuckDB renames a repeated `spend` to `spend_1`).

    `ignore_errors` keeps a few ragged lines from fooling the delimiter sniffer into
    reading the whole file as one column.
    """
    try:
        if src.is_parquet:
            return list(pq.read_schema(src.path).names)
        row = con.execute("SELECT * FROM read_csv($path, header=false, all_varchar=true, ignore_errors=true) "
                          "LIMIT 1", {"path": str(src.path)}).fetchone()
    except (duckdb.Error, OSError, ValueError) as exc:
        raise IngestError(f"{src.rel}: cannot be read as {'PARQUET' if src.is_parquet else 'CSV'}: {exc}") from exc
    return [("" if c is None else str(c)) for c in (row or [])]


def probe_columns(con, src: SourceFile, required: list[str]) -> list[str]:
    """The header's normalised names, after checking it: not empty, no repeated or missing column."""
    if src.path.stat().st_size == 0:
        raise IngestError(f"{src.rel}: the file is empty (0 bytes); expected a header with columns {required}")
    normalized = [normalize_column(c) for c in header(con, src)]
    dupes = sorted({c for c in normalized if normalized.count(c) > 1})
    if dupes:
        counts = ", ".join(f"{c!r} ({normalized.count(c)} times)" for c in dupes)
        raise IngestError(f"{src.rel}: column(s) {counts} appear more than once in the header; "
                          "keep one of each (which one is meant cannot be guessed)")
    missing = [c for c in required if c not in normalized]
    if missing:
        raise IngestError(f"{src.rel}: missing required column(s) {missing}; the file has columns {normalized}")
    return normalized


def _selected(normalized: list[str], wanted: list[str]) -> list[tuple[int, str]]:
    return [(normalized.index(c), c) for c in wanted if c in normalized]


def read_as_text(con: duckdb.DuckDBPyConnection, src: SourceFile, temp: str, required: list[str],
                 optional: list[str] = ()) -> list[str]:
    """Read a small file into temp table `temp`, every column as text (catalogue, FX rates)."""
    normalized = probe_columns(con, src, required)
    keep = _selected(normalized, required + list(optional))
    # By position: the reader's own names may differ from the header (renamed repeats).
    select = ", ".join(f"CAST(#{i + 1} AS VARCHAR) AS {quote_ident(c)}" for i, c in keep)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {select} FROM "
                    f"{PARQUET if src.is_parquet else CSV_TEXT}", {"path": str(src.path)})
    except duckdb.Error as exc:
        raise IngestError(f"{src.rel}: cannot be read as {'PARQUET' if src.is_parquet else 'CSV'}: {exc}") from exc
    return [c for _, c in keep]


@dataclass
class TypedRead:
    """A file read into a temp table with its target types, and how to number its rows."""

    temp: str
    columns: list[str]           # normalised names present
    raw_text: set[str]           # columns with a `<col>__raw` text copy (Parquet: cast failures show there)
    row_expr: str                # SQL for the 1-based data row, over alias `s`
    rejects: str | None          # temp table of (source_row, reason, record) for rows the reader refused
    n_rejected: int = 0


def read_typed(con: duckdb.DuckDBPyConnection, src: SourceFile, temp: str, required: list[str],
               optional: list[str], types: dict[str, str]) -> TypedRead:
    """Read a CSV or Parquet file into temp table `temp` with the target column types.

    CSV is parsed once, typed, by DuckDB's reader with `store_rejects`: a line
    whose cell cannot be cast, or with too many or too few fields, is kept out
    of the table and recorded (line, error, the line's text) for the
    quarantine. Rows are numbered by their position in the file (rowid + 1,
    shifted past rejected lines). Parquet columns are cast with TRY_CAST and
    keep a text copy, so a failed cast is visible as `<col>__raw IS NOT NULL
    AND <col> IS NULL`.
    """
    normalized = probe_columns(con, src, required)
    keep = _selected(normalized, required + list(optional))
    params = {"path": str(src.path)}
    if src.is_parquet:
        parts = []
        for i, c in keep:
            t = types.get(c, "VARCHAR")
            parts.append(f"TRY_CAST(#{i + 1} AS {t}) AS {quote_ident(c)}")
            if t != "VARCHAR":
                parts.append(f"CAST(#{i + 1} AS VARCHAR) AS {quote_ident(c + '__raw')}")
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {', '.join(parts)} FROM {PARQUET}", params)
        except duckdb.Error as exc:
            raise IngestError(f"{src.rel}: cannot be read as PARQUET: {exc}") from exc
        return TypedRead(temp, [c for _, c in keep], {c for _, c in keep if types.get(c, "VARCHAR") != "VARCHAR"},
                         "s.rowid + 1", None)

    # Types by position, so no header text is ever part of the statement.
    wanted = dict((i, c) for i, c in keep)
    params["types"] = [types.get(wanted[i], "VARCHAR") if i in wanted else "VARCHAR" for i in range(len(normalized))]
    rej, scan = f"{temp}_rej", f"{temp}_rejscan"
    for t in (rej, scan):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    select = ", ".join(f"#{i + 1} AS {quote_ident(c)}" for i, c in keep)
    reader = (f"read_csv($path, header=true, nullstr={NULL_STRINGS!r}, types=$types, "
              f"store_rejects=true, rejects_table='{rej}', rejects_scan='{scan}')")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {select} FROM {reader}", params)
    except duckdb.Error as exc:
        raise IngestError(f"{src.rel}: cannot be read as CSV: {exc}") from exc
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {temp}_bad AS
            SELECT line - 1 AS source_row,
                   -- a short line is reported once per missing column: its field count is the least found
                   coalesce('malformed row: ' || min(TRY_CAST(regexp_extract(error_message, 'Found: (\\d+)', 1) AS INT))
                                FILTER (WHERE error_type IN ('TOO MANY COLUMNS', 'MISSING COLUMNS'))
                            || ' fields, expected ' || {len(normalized)},
                            string_agg(CASE WHEN error_type = 'CAST'
                                            THEN 'unparseable ' || column_name || ': ' || error_message
                                            ELSE 'malformed row: ' || error_message END, '; ')) AS reason,
                   any_value(csv_line) AS record
            FROM {rej} GROUP BY line"""
    )
    n_rejected = con.execute(f"SELECT count(*) FROM {temp}_bad").fetchall()[0][0]
    for t in (rej, scan):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    row_expr = "s.rowid + 1"
    if n_rejected:
        # The k-th kept row is data row k + #(rejected rows before it); with rejected
        # rows R_1 < R_2 < ..., row R_i precedes the k-th kept row iff R_i - i < k.
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE {temp} AS
                WITH r AS (SELECT source_row - row_number() OVER (ORDER BY source_row) AS r_adj FROM {temp}_bad),
                     offs AS (SELECT r_adj, count(*) OVER (ORDER BY r_adj) AS n_before FROM r)
                SELECT t.* EXCLUDE (k), t.k + coalesce(o.n_before, 0) AS _row
                FROM (SELECT rowid + 1 AS k, * FROM {temp}) t
                ASOF LEFT JOIN (SELECT DISTINCT r_adj, n_before FROM offs) o ON t.k > o.r_adj
                ORDER BY t.k"""
        )
        row_expr = "s._row"
    return TypedRead(temp, [c for _, c in keep], set(), row_expr, f"{temp}_bad", n_rejected)


def column_names(con, src: SourceFile) -> list[str]:
    """Normalised header names (to choose a KPI column)."""
    return [normalize_column(c) for c in header(con, src)]
