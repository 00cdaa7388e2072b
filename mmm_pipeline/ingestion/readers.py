"""Reading input files into DuckDB temp tables, with errors that name the file, row and column.

Every path and every name that comes from a file reaches DuckDB as a bound
parameter (`$path`, `$types`, `$date_formats`) or a quoted identifier (`quote_ident`), never by
string formatting: a header cell is data, not SQL.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePath

import duckdb
import pyarrow.parquet as pq

from mmm_pipeline.warehouse import quote_ident, quote_literal

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


# --------------------------------------------------------------------------
# Dates: judged row by row, never sniffed. A DATE column is read as text and
# parsed by one SQL expression: ISO dates (YYYY-MM-DD), ISO timestamps at
# midnight (the time is dropped), then the strptime formats pipeline.yaml
# `ingest.date_formats` declares for the file (bound as the list `$date_formats`).
# A value nothing accepts keeps its text in `<col>__raw`; `load.date_check`
# says why. The regular expressions below are this module's constants.

_OFFSET = r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?"
ISO_DATE = r"\d{4}-\d{2}-\d{2}"
ISO_AT_MIDNIGHT = r" *\d{4}-\d{2}-\d{2}(?:[Tt ]00:00(?::00(?:\.0+)?)?" + _OFFSET + r")? *"
#: An ISO date or timestamp at any time (to tell a time of day or a non-existent day from a format).
ISO_ANY = r" *\d{4}-\d{2}-\d{2}(?:[Tt ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?" + _OFFSET + r")? *"
#: Part of every context that reads dates: a change to the date rule re-reads the files once.
DATE_RULE = "dates: ISO, ISO at midnight, declared formats (v1)"


def declared_date_formats(rel: str, date_formats: dict[str, list[str]]) -> list[str]:
    """The strptime formats pipeline.yaml declares for file `rel` (every matching glob, in order)."""
    rel = PurePath(rel).as_posix()
    out: list[str] = []
    for pattern, formats in (date_formats or {}).items():
        if fnmatch.fnmatchcase(rel, pattern):
            out += [f for f in formats if f not in out]
    return out


def iso_date_sql(text: str) -> str:
    """SQL: `text` as a DATE when it is an ISO date or an ISO timestamp at midnight, else NULL."""
    # the plain date first: its simpler pattern is most rows' only test
    return (f"CASE WHEN regexp_full_match({text}, {quote_literal(ISO_DATE)}) THEN TRY_CAST({text} AS DATE) "
            f"WHEN regexp_full_match({text}, {quote_literal(ISO_AT_MIDNIGHT)}) "
            f"THEN TRY_CAST(left(ltrim({text}), 10) AS DATE) END")


def _parse_dates(select: str, dates: list[str], declared: bool) -> str:
    """Wrap `select` (date columns as text): each date column parsed, plus `<col>__raw`, its text
    when it held something that did not parse (NULL otherwise: nothing to report)."""
    if not dates:
        return select
    first, second, drop = [], [], []
    for c in dates:
        # helper names with a space: no normalised header name has one
        q, d, t = quote_ident(c), quote_ident(c + " date"), quote_ident(c + " timestamp")
        first.append(f"{iso_date_sql(q)} AS {d}")
        parsed = d
        if declared:
            first.append(f"try_strptime({q}, $date_formats) AS {t}")
            parsed = f"coalesce({d}, CASE WHEN {t} = date_trunc('day', {t}) THEN CAST({t} AS DATE) END)"
            drop.append(t)
        second.append((q, parsed, f"CASE WHEN ({parsed}) IS NOT NULL THEN NULL WHEN trim({q}) <> '' THEN {q} END "
                                  f"AS {quote_ident(c + '__raw')}"))
        drop.append(d)
    replace = ", ".join(f"{parsed} AS {q}" for q, parsed, _ in second)
    return (f"SELECT * EXCLUDE ({', '.join(drop)}) REPLACE ({replace}), {', '.join(r for _, _, r in second)} "
            f"FROM (SELECT *, {', '.join(first)} FROM ({select}))")


@dataclass
class TypedRead:
    """A file read into a temp table with its target types, and how to number its rows."""

    temp: str
    columns: list[str]           # normalised names present
    raw_text: set[str]           # columns with a `<col>__raw` text copy (Parquet: cast failures show there)
    row_expr: str                # SQL for the 1-based data row, over alias `s`
    rejects: str | None          # temp table of (source_row, reason, record) for rows the reader refused
    n_rejected: int = 0
    # The declared formats its text dates were parsed with (bound as `$date_formats`; [] when none).
    date_formats: list[str] = field(default_factory=list)


def read_typed(con: duckdb.DuckDBPyConnection, src: SourceFile, temp: str, required: list[str],
               optional: list[str], types: dict[str, str], date_formats: list[str] = ()) -> TypedRead:
    """Read a CSV or Parquet file into temp table `temp` with the target column types.

    CSV is parsed once, typed, by DuckDB's reader with `store_rejects`: a line
    whose cell cannot be cast, or with too many or too few fields, is kept out
    of the table and recorded (line, error, the line's text) for the
    quarantine. Rows are numbered by their position in the file (rowid + 1,
    shifted past rejected lines). Parquet columns are cast with TRY_CAST and
    keep a text copy, so a failed cast is visible as `<col>__raw IS NOT NULL
    AND <col> IS NULL`.

    DATE columns are never typed by the reader (it would sniff one format for
    the whole file): they are read as text and parsed row by row
    (`_parse_dates`: ISO, ISO at midnight, then `date_formats`, the formats
    pipeline.yaml declares for this file); a Parquet DATE column is taken as is.
    """
    normalized = probe_columns(con, src, required)
    keep = _selected(normalized, required + list(optional))
    params = {"path": str(src.path)}
    date_formats = list(date_formats or [])
    if src.is_parquet:
        try:
            ptypes = [r[1] for r in con.execute(f"DESCRIBE SELECT * FROM {PARQUET}", params).fetchall()]
        except duckdb.Error as exc:
            raise IngestError(f"{src.rel}: cannot be read as PARQUET: {exc}") from exc
        parts, text_dates = [], []
        for i, c in keep:
            t = types.get(c, "VARCHAR")
            if t == "DATE" and ptypes[i] == "DATE":
                parts.append(f"#{i + 1} AS {quote_ident(c)}")  # a real date: nothing to parse
            elif t == "DATE":
                # a timestamp is judged by its text like a CSV cell (midnight only); one with a time zone in UTC
                col = f"timezone('UTC', #{i + 1})" if ptypes[i] == "TIMESTAMP WITH TIME ZONE" else f"#{i + 1}"
                parts.append(f"CAST({col} AS VARCHAR) AS {quote_ident(c)}")
                text_dates.append(c)
            else:
                parts.append(f"TRY_CAST(#{i + 1} AS {t}) AS {quote_ident(c)}")
                if t != "VARCHAR":
                    parts.append(f"CAST(#{i + 1} AS VARCHAR) AS {quote_ident(c + '__raw')}")
        declared = date_formats if text_dates else []
        if declared:
            params["date_formats"] = declared
        select = _parse_dates(f"SELECT {', '.join(parts)} FROM {PARQUET}", text_dates, bool(declared))
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS {select}", params)
        except duckdb.Error as exc:
            raise IngestError(f"{src.rel}: cannot be read as PARQUET: {exc}") from exc
        raw = {c for _, c in keep if types.get(c, "VARCHAR") not in ("VARCHAR", "DATE")} | set(text_dates)
        return TypedRead(temp, [c for _, c in keep], raw, "s.rowid + 1", None, date_formats=declared)

    # Types by position, so no header text is ever part of the statement; dates are read as text.
    wanted = dict((i, c) for i, c in keep)
    dates = [c for _, c in keep if types.get(c) == "DATE"]
    declared = date_formats if dates else []
    if declared:
        params["date_formats"] = declared
    params["types"] = [("VARCHAR" if types.get(wanted[i]) == "DATE" else types.get(wanted[i], "VARCHAR"))
                       if i in wanted else "VARCHAR" for i in range(len(normalized))]
    rej, scan = f"{temp}_rej", f"{temp}_rejscan"
    for t in (rej, scan):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    select = ", ".join(f"#{i + 1} AS {quote_ident(c)}" for i, c in keep)
    reader = (f"read_csv($path, header=true, nullstr={NULL_STRINGS!r}, types=$types, "
              f"store_rejects=true, rejects_table='{rej}', rejects_scan='{scan}')")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS "
                    f"{_parse_dates(f'SELECT {select} FROM {reader}', dates, bool(declared))}", params)
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
    return TypedRead(temp, [c for _, c in keep], set(dates), row_expr, f"{temp}_bad", n_rejected,
                     date_formats=declared)


def column_names(con, src: SourceFile) -> list[str]:
    """Normalised header names (to choose a KPI column)."""
    return [normalize_column(c) for c in header(con, src)]
