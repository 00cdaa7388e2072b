"""Raw loads of the input folder into DuckDB's `raw` schema.

Contract (see DESIGN.md / README): `ad_reporting/*.csv|*.parquet`,
`kpi/*.csv|*.parquet`, `channels.csv`, optional `lift_tests.csv`,
`fx_rates.csv` and `pipeline.yaml`.

How a load behaves:
- Every file is read as text first, so one bad cell cannot fail a file:
  row-level rules run as SQL and a failing row goes to `raw.quarantine` with
  the file, its 1-based data row and the reason; good rows load.
- A file that cannot be read, is empty, or lacks a required column raises
  `IngestError` naming the file and column *before* anything is written.
- Each load is one transaction: a changed file replaces exactly its own rows,
  a removed file's rows are retired (and logged), an unchanged file (same
  sha256) is not touched, so re-running on the same files changes nothing.
- When two files carry the same natural key (a re-export restating recent
  days), the row from the newer file (modification time, then name) wins and
  the superseded row is logged in `raw.ad_reporting_superseded`.
"""

from __future__ import annotations

import hashlib
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import duckdb
import pandas as pd

from mmm_pipeline.warehouse import register, unregister, utcnow

NULL_STRINGS = ["", "NA", "na", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None"]
UNITS = ("impressions", "clicks", "spend")
NATIONAL = "national"

AD_REQUIRED = [
    "source_relation", "date_day", "platform", "account_id", "account_name", "campaign_id",
    "campaign_name", "clicks", "impressions", "spend", "conversions", "conversions_value",
]
AD_OPTIONAL = ["ad_group_id", "ad_id", "geo"]
# The natural key of an ad-reporting row. `geo` is part of it because geo-split
# reports repeat the same campaign and day once per geo.
AD_NATURAL_KEY = [
    "source_relation", "date_day", "platform", "account_id", "campaign_id", "ad_group_id", "ad_id",
    "geo",
]
AD_METRICS = ["clicks", "impressions", "spend", "conversions", "conversions_value"]

# Display names and renamed connectors that the dbt package names differently.
PLATFORM_ALIASES = {
    "microsoft_advertising": "microsoft_ads",
    "bing_ads": "microsoft_ads",
    "x_ads": "twitter_ads",
    "meta_ads": "facebook_ads",
    "linkedin_ad_analytics": "linkedin_ads",
}


class IngestError(ValueError):
    """An input file cannot be loaded; the message names the file, column and problem."""


def normalize_platform(name: str | None) -> str | None:
    """`Google Ads`, `google_ads` and `GOOGLE-ADS` are one platform: `google_ads`."""
    if name is None:
        return None
    key = re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")
    return PLATFORM_ALIASES.get(key, key) or None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _q(s: str) -> str:
    return "'" + str(s).replace("'", "''") + "'"


def _norm_col(name: str) -> str:
    return re.sub(r"\s+", "_", name.replace("\ufeff", "").strip().lower())


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


def list_files(input_dir: Path, sub: str) -> list[SourceFile]:
    folder = Path(input_dir) / sub
    if not folder.is_dir():
        return []
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".csv", ".parquet") and p.is_file())
    return [_source(input_dir, p) for p in paths]


def _source(input_dir: Path, p: Path) -> SourceFile:
    return SourceFile(
        path=p,
        rel=str(p.relative_to(input_dir)),
        mtime=datetime.fromtimestamp(p.stat().st_mtime),
        _sha=_HASHER.submit(sha256_file, p),
    )


def _probe_columns(con, src: SourceFile, required: list[str], optional: list[str]) -> tuple[str, list[str], list[str]]:
    """(reader SQL without options, original header names, normalised names); checks the header."""
    if src.path.stat().st_size == 0:
        raise IngestError(f"{src.rel}: the file is empty (0 bytes); expected a header with columns {required}")
    fmt = "parquet" if src.path.suffix.lower() == ".parquet" else "csv"
    probe = (f"read_parquet({_q(src.path)})" if fmt == "parquet"
             else f"read_csv({_q(src.path)}, all_varchar=true, header=true)")
    try:
        cols = [d[0] for d in con.execute(f"SELECT * FROM {probe} LIMIT 0").description]
    except duckdb.Error as exc:
        raise IngestError(f"{src.rel}: cannot be read as {fmt.upper()}: {exc}") from exc
    normalized = [_norm_col(c) for c in cols]
    dupes = sorted({c for c in normalized if normalized.count(c) > 1})
    if dupes:
        raise IngestError(f"{src.rel}: column(s) {dupes} appear more than once in the header")
    missing = [c for c in required if c not in normalized]
    if missing:
        raise IngestError(
            f"{src.rel}: missing required column(s) {missing}; the file has columns {normalized}"
        )
    return fmt, cols, normalized


def read_as_text(con: duckdb.DuckDBPyConnection, src: SourceFile, temp: str, required: list[str],
                 optional: list[str] = ()) -> list[str]:
    """Read a small file into temp table `temp`, every column as text (catalogue, FX rates)."""
    fmt, cols, normalized = _probe_columns(con, src, required, list(optional))
    reader = (f"read_parquet({_q(src.path)})" if fmt == "parquet"
              else f"read_csv({_q(src.path)}, all_varchar=true, header=true, nullstr={NULL_STRINGS!r})")
    keep = [c for c in required + list(optional) if c in normalized]
    select = ", ".join(f'CAST("{cols[normalized.index(c)]}" AS VARCHAR) AS "{c}"' for c in keep)
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {select} FROM {reader}")
    except duckdb.Error as exc:
        raise IngestError(f"{src.rel}: cannot be read as {fmt.upper()}: {exc}") from exc
    return keep


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
    whose cell cannot be cast is kept out of the table and recorded (line,
    column, error, the line's text) for the quarantine. Rows are numbered by
    their position in the file (rowid + 1, shifted past rejected lines).
    Parquet columns are cast with TRY_CAST and keep a text copy, so a failed
    cast is visible as `<col>__raw IS NOT NULL AND <col> IS NULL`.
    """
    fmt, cols, normalized = _probe_columns(con, src, required, optional)
    keep = [c for c in required + list(optional) if c in normalized]
    orig = {c: cols[normalized.index(c)] for c in keep}
    if fmt == "parquet":
        parts = []
        for c in keep:
            t = types.get(c, "VARCHAR")
            parts.append(f'TRY_CAST("{orig[c]}" AS {t}) AS "{c}"')
            if t != "VARCHAR":
                parts.append(f'CAST("{orig[c]}" AS VARCHAR) AS "{c}__raw"')
        try:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {', '.join(parts)} "
                        f"FROM read_parquet({_q(src.path)})")
        except duckdb.Error as exc:
            raise IngestError(f"{src.rel}: cannot be read as PARQUET: {exc}") from exc
        return TypedRead(temp, keep, {c for c in keep if types.get(c, "VARCHAR") != "VARCHAR"},
                         "s.rowid + 1", None)

    all_types = {orig_name: "VARCHAR" for orig_name in cols}
    all_types.update({orig[c]: types[c] for c in keep if c in types})
    rej, scan = f"{temp}_rej", f"{temp}_rejscan"
    for t in (rej, scan):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    select = ", ".join(f'"{orig[c]}" AS "{c}"' for c in keep)
    reader = (f"read_csv({_q(src.path)}, header=true, nullstr={NULL_STRINGS!r}, types={all_types!r}, "
              f"store_rejects=true, rejects_table='{rej}', rejects_scan='{scan}')")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {select} FROM {reader}")
    except duckdb.Error as exc:
        raise IngestError(f"{src.rel}: cannot be read as CSV: {exc}") from exc
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {temp}_bad AS
            SELECT line - 1 AS source_row,
                   string_agg(CASE WHEN error_type = 'CAST'
                                   THEN 'unparseable ' || column_name || ': ' || error_message
                                   ELSE 'malformed row: ' || error_message END, '; ') AS reason,
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
    return TypedRead(temp, keep, set(), row_expr, f"{temp}_bad", n_rejected)


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


def _typed(expr_text: str, sql_type: str) -> str:
    # TRY_CAST ignores surrounding spaces for numbers and dates.
    return f"TRY_CAST({expr_text} AS {sql_type})"


def _unparseable(col: str, read: "TypedRead") -> str:
    return (f"WHEN s.{col}__raw IS NOT NULL AND s.{col} IS NULL THEN 'unparseable {col}: ' || s.{col}__raw"
            if col in read.raw_text else "")


def _metric_checks(col: str, read: "TypedRead", required_if: str | None = None,
                   allow_negative: bool = False) -> str:
    """Reason for a bad number cell: unparseable, missing when it is needed, or negative."""
    missing = f"WHEN s.{col} IS NULL AND ({required_if}) THEN 'missing {col}'" if required_if else ""
    negative = "" if allow_negative else f"WHEN s.{col} < 0 THEN 'negative {col}'"
    body = f"{_unparseable(col, read)} {missing} {negative}".strip()
    return f"CASE {body} END" if body else "NULL"


def _null_key(col: str) -> str:
    return f"CASE WHEN s.{col} IS NULL OR s.{col} = '' THEN 'null key {col}' END"


def _reason_columns(reasons: list[str]) -> str:
    """`_reason` (all problems, '; '-joined) and `_bad`, which skips the string work on good rows."""
    bad = " OR ".join(f"({r}) IS NOT NULL" for r in reasons)
    return f"nullif(concat_ws('; ', {', '.join(reasons)}), '') AS _reason, ({bad}) AS _bad"


def _date_check(col: str, read: "TypedRead") -> str:
    return f"CASE {_unparseable(col, read)} WHEN s.{col} IS NULL THEN 'null key {col}' END"


# --------------------------------------------------------------------------
# Channel catalogue and FX rates


def load_channels(con: duckdb.DuckDBPyConnection, input_dir: Path, run_id: str | None = None) -> pd.DataFrame:
    """Replace `raw.channels` with `channels.csv`; every line must be valid."""
    path = Path(input_dir) / "channels.csv"
    if not path.exists():
        raise IngestError(f"channels.csv: not found in {input_dir}; the channel catalogue is required")
    src = _source(input_dir, path)
    required = ["channel", "platform", "campaign_pattern", "unit", "currency"]
    read_as_text(con, src, "_src_channels", required)
    df = con.execute("SELECT rowid + 1 AS line_no, * FROM _src_channels ORDER BY rowid").df()
    problems = []
    for rec in df.itertuples(index=False):
        where = f"channels.csv row {rec.line_no}"
        for col in ("channel", "platform", "unit", "currency"):
            if pd.isna(getattr(rec, col)) or not str(getattr(rec, col)).strip():
                problems.append(f"{where}, column {col}: empty")
        if not pd.isna(rec.unit) and str(rec.unit).strip().lower() not in UNITS:
            problems.append(f"{where}, column unit: {rec.unit!r} is not one of {UNITS}")
        pattern = "" if pd.isna(rec.campaign_pattern) else str(rec.campaign_pattern)
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.append(f"{where}, column campaign_pattern: invalid regular expression ({exc})")
    if problems:
        raise IngestError("; ".join(problems))
    out = pd.DataFrame(
        {
            "line_no": df["line_no"].astype(int),
            "channel": df["channel"].str.strip(),
            "platform": df["platform"].map(normalize_platform),
            "campaign_pattern": df["campaign_pattern"].fillna("").astype(str),
            "unit": df["unit"].str.strip().str.lower(),
            "currency": df["currency"].str.strip().str.upper(),
        }
    )
    units = out.groupby("channel")["unit"].nunique()
    if (units > 1).any():
        raise IngestError(
            f"channels.csv: channel(s) {sorted(units[units > 1].index)} are given more than one unit"
        )
    fx = _read_fx(con, input_dir)
    con.begin()
    try:
        con.execute("DELETE FROM raw.channels")
        register(con, "_channels_df", out)
        con.execute("INSERT INTO raw.channels SELECT * FROM _channels_df")
        unregister(con, "_channels_df")
        con.execute("DELETE FROM raw.fx_rates")
        if fx is not None:
            register(con, "_fx_df", fx)
            con.execute("INSERT INTO raw.fx_rates SELECT date, currency, rate_to_reporting FROM _fx_df")
            unregister(con, "_fx_df")
        _log_whole_file(con, "channels", src, len(out), run_id)
        con.commit()
    except Exception:
        con.rollback()
        raise
    return out


def _read_fx(con, input_dir: Path) -> pd.DataFrame | None:
    path = Path(input_dir) / "fx_rates.csv"
    if not path.exists():
        return None
    src = _source(input_dir, path)
    read_as_text(con, src, "_src_fx", ["date", "currency", "rate_to_reporting"])
    df = con.execute(
        f"""SELECT rowid + 1 AS row, {_typed('date', 'DATE')} AS date, upper(trim(currency)) AS currency,
                   {_typed('rate_to_reporting', 'DOUBLE')} AS rate_to_reporting, date AS date_raw,
                   rate_to_reporting AS rate_raw FROM _src_fx"""
    ).df()
    bad = df[df["date"].isna() | df["currency"].isna() | ~(df["rate_to_reporting"] > 0)]
    if len(bad):
        r = bad.iloc[0]
        raise IngestError(
            f"fx_rates.csv row {int(r['row'])}: need a date, a currency and a positive rate_to_reporting "
            f"(got date={r['date_raw']!r}, rate={r['rate_raw']!r}); {len(bad)} bad row(s)"
        )
    return df[["date", "currency", "rate_to_reporting"]]


def reporting_currency(con, configured: str | None) -> str:
    """One reporting currency per run; mixed currencies need fx_rates.csv."""
    cats = con.execute("SELECT channel, currency FROM raw.channels ORDER BY line_no").fetchall()
    currencies = sorted({c for _, c in cats})
    target = (configured or (currencies[0] if len(currencies) == 1 else "")).upper()
    if not target:
        raise IngestError(
            f"channels.csv: channels use several currencies {currencies}; "
            "set reporting_currency in pipeline.yaml and provide fx_rates.csv"
        )
    foreign = sorted({ch for ch, c in cats if c != target})
    has_fx = con.execute("SELECT count(*) FROM raw.fx_rates").fetchone()[0] > 0
    if foreign and not has_fx:
        raise IngestError(
            f"channels.csv: channel(s) {foreign} are not in the reporting currency {target} "
            "and there is no fx_rates.csv (date, currency, rate_to_reporting) to convert them"
        )
    return target


def _log_whole_file(con, kind: str, src: SourceFile, rows: int, run_id: str | None) -> None:
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
    # (typed read, file) -> SELECT over alias `s` giving the table's columns plus `_reason`
    typed_select: Callable[[TypedRead, SourceFile], str]


def load_files(con: duckdb.DuckDBPyConnection, spec: TableSpec, files: list[SourceFile],
               run_id: str | None = None) -> LoadReport:
    report = LoadReport(spec.kind)
    loaded_now = current_files(con, spec.kind)
    # A file never loaded is read at once, without waiting for its hash.
    changed = [f for f in files if f.rel not in loaded_now or loaded_now[f.rel] != f.sha256]
    report.files_unchanged = [f.rel for f in files if f not in changed]
    removed = sorted(set(loaded_now) - {f.rel for f in files})

    # Read every changed file before writing anything: an unreadable one fails here.
    staged = []
    for i, src in enumerate(changed):
        read = read_typed(con, src, f"_src_{spec.kind}_{i}", spec.required, spec.optional, spec.types)
        staged.append((src, read, spec.typed_select(read, src)))

    target_cols = [d[0] for d in con.execute(f"SELECT * FROM {spec.table} LIMIT 0").description]
    cols = ", ".join(f'"{c}"' for c in target_cols)
    now = utcnow()
    con.begin()
    try:
        for rel in removed:
            con.execute(f"DELETE FROM {spec.table} WHERE source_file = ?", [rel])
            con.execute("DELETE FROM raw.quarantine WHERE kind = ? AND source_file = ?", [spec.kind, rel])
            con.execute(
                "INSERT INTO raw.load_log VALUES (?, ?, NULL, NULL, 'retired', NULL, 0, 0, ?, ?)",
                [spec.kind, rel, now, run_id],
            )
            report.files_retired.append(rel)
        for src, read, select in staged:
            con.execute(f"DELETE FROM {spec.table} WHERE source_file = ?", [src.rel])
            con.execute("DELETE FROM raw.quarantine WHERE kind = ? AND source_file = ?", [spec.kind, src.rel])
            n_good = con.execute(
                f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM ({select}) WHERE NOT _bad"
            ).fetchall()[0][0]
            con.execute(
                f"""INSERT INTO raw.quarantine
                    SELECT ?, ?, t.source_row, t._reason, to_json(s), ?
                    FROM ({select}) t JOIN {read.temp} s ON {read.row_expr} = t.source_row
                    WHERE t._bad""",
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
        con.commit()
    except Exception:
        con.rollback()
        raise
    finally:
        for _, read, _ in staged:
            for suffix in ("", "_bad", "_map", "_dups"):  # the read and its helper tables
                con.execute(f"DROP TABLE IF EXISTS {read.temp}{suffix}")
    report.table_rows = con.execute(f"SELECT count(*) FROM {spec.table}").fetchall()[0][0]
    return report


# --------------------------------------------------------------------------
# Ad reporting


def _campaign_channel_map(con, temp: str) -> None:
    """Map each distinct raw (platform, campaign_name) to its platform and catalogue line.

    Done in Python on distinct pairs, because the catalogue's patterns are
    Python regular expressions and there are far fewer campaigns than rows;
    the big table then joins on the raw strings (no per-row regex work).
    """
    catalogue = con.execute(
        "SELECT platform, campaign_pattern, channel, unit, currency FROM raw.channels ORDER BY line_no"
    ).fetchall()
    pairs = con.execute(f"SELECT DISTINCT platform, campaign_name FROM {temp}").fetchall()
    rows = []
    for raw_platform, campaign in pairs:
        platform = normalize_platform(raw_platform)
        match = next(
            ((channel, unit, currency) for cat_platform, pattern, channel, unit, currency in catalogue
             if cat_platform == platform
             and (not pattern or re.search(pattern, campaign or "", flags=re.IGNORECASE))),
            (None, None, None),
        )
        rows.append((raw_platform, campaign, platform, *match))
    mapping = pd.DataFrame(
        rows, columns=["raw_platform", "campaign_name", "platform", "channel", "unit", "currency"]
    ).astype(object)
    register(con, "_map_df", mapping)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {temp}_map AS SELECT * FROM _map_df")
    unregister(con, "_map_df")


def _duplicate_keys(con, temp: str, key_exprs: list[str]) -> None:
    """`<temp>_dups(h, k0.., n)`: natural keys that occur more than once in the file.

    Grouping on a hash of the key is cheap; the exact (collision-free) count is
    then taken on the few candidate rows only.
    """
    h = f"hash({', '.join(key_exprs)})"
    keys = ", ".join(f"{e} AS k{i}" for i, e in enumerate(key_exprs))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {temp}_dups AS
            WITH candidates AS (SELECT {h} AS h FROM {temp} s GROUP BY 1 HAVING count(*) > 1)
            SELECT {h} AS h, {keys}, count(*) AS n
            FROM {temp} s SEMI JOIN candidates c ON {h} = c.h
            GROUP BY ALL HAVING count(*) > 1"""
    )


def ad_reporting_spec(con: duckdb.DuckDBPyConnection, currency: str) -> TableSpec:
    known_platforms = {p for (p,) in con.execute("SELECT DISTINCT platform FROM raw.channels").fetchall()}
    needs_fx = con.execute(
        "SELECT count(*) FROM raw.channels WHERE currency <> ?", [currency]
    ).fetchall()[0][0] > 0

    def typed_select(read: TypedRead, src: SourceFile) -> str:
        temp, cols = read.temp, read.columns
        _campaign_channel_map(con, temp)
        opt = {c: (f"coalesce(s.{c}, '')" if c in cols else "''") for c in ("ad_group_id", "ad_id")}
        geo = "nullif(s.geo, '')" if "geo" in cols else "NULL"
        key_exprs = ["s.source_relation", "s.date_day", "s.platform", "s.account_id", "s.campaign_id",
                     opt["ad_group_id"], opt["ad_id"], f"coalesce({geo}, '')"]
        _duplicate_keys(con, temp, key_exprs)
        platforms = ", ".join(_q(p) for p in sorted(known_platforms)) or "''"
        unit_required = {
            "impressions": "m.unit = 'impressions'",
            "clicks": "m.unit = 'clicks'",
            "spend": "TRUE",
        }
        reasons = [
            _null_key("source_relation"), _date_check("date_day", read), _null_key("platform"),
            _null_key("account_id"), _null_key("campaign_id"),
            f"CASE WHEN m.platform IS NOT NULL AND m.platform NOT IN ({platforms}) "
            f"THEN 'unknown platform ' || s.platform || ' (not in channels.csv)' "
            f"WHEN m.platform IS NOT NULL AND m.channel IS NULL "
            f"THEN 'unmapped campaign: no channels.csv pattern for platform ' || m.platform END",
            *(_metric_checks(c, read, unit_required.get(c)) for c in AD_METRICS),
        ]
        has_dups = con.execute(f"SELECT count(*) FROM {temp}_dups").fetchall()[0][0] > 0
        if has_dups:
            reasons.append(
                "CASE WHEN d.n IS NOT NULL THEN 'duplicate natural key (' || d.n || ' rows in this file)' END")
        if needs_fx:
            fx_join = "ASOF LEFT JOIN raw.fx_rates fx ON fx.currency = m.currency AND fx.date <= s.date_day"
            rate = f"CASE WHEN m.currency = {_q(currency)} THEN 1.0 ELSE fx.rate_to_reporting END"
            reasons.append(
                f"CASE WHEN m.channel IS NOT NULL AND ({rate}) IS NULL "
                f"THEN 'no fx rate for ' || m.currency || ' on or before ' || s.date_day END"
            )
        else:
            fx_join, rate = "", "1.0"
        dup_match = " AND ".join(f"d.k{i} IS NOT DISTINCT FROM {e}" for i, e in enumerate(key_exprs))
        dup_join = (f"LEFT JOIN {temp}_dups d ON d.h = hash({', '.join(key_exprs)}) AND {dup_match}"
                    if has_dups else "")
        return f"""
        SELECT
            {_q(src.rel)} AS source_file,
            {read.row_expr} AS source_row,
            TIMESTAMP '{src.mtime:%Y-%m-%d %H:%M:%S}' AS source_mtime,
            s.source_relation,
            s.date_day,
            m.platform,
            s.account_id,
            s.account_name,
            s.campaign_id,
            s.campaign_name,
            {opt['ad_group_id']} AS ad_group_id,
            {opt['ad_id']} AS ad_id,
            {geo} AS geo,
            m.channel, m.unit, m.currency,
            coalesce(s.clicks, 0) AS clicks,
            coalesce(s.impressions, 0) AS impressions,
            s.spend * ({rate}) AS spend,
            s.spend AS spend_original,
            coalesce(s.conversions, 0) AS conversions,
            coalesce(s.conversions_value, 0) AS conversions_value,
            {_reason_columns(reasons)}
        FROM {temp} s
        LEFT JOIN {temp}_map m
          ON m.raw_platform IS NOT DISTINCT FROM s.platform
         AND m.campaign_name IS NOT DISTINCT FROM s.campaign_name
        {dup_join}
        {fx_join}
        """

    types = {"date_day": "DATE", **{m: "DOUBLE" for m in AD_METRICS}}
    return TableSpec("ad_reporting", "raw.ad_reporting", AD_REQUIRED, AD_OPTIONAL, types, typed_select)


def refresh_superseded(con: duckdb.DuckDBPyConnection) -> int:
    """Log rows restated by a newer file and expose the winners as `raw.ad_reporting_current`."""
    con.begin()
    try:
        con.execute("DELETE FROM raw.ad_reporting_superseded")
        files = con.execute("SELECT count(DISTINCT source_file) FROM raw.ad_reporting").fetchone()[0]
        if files > 1:  # with one file nothing can be restated
            key = ", ".join(AD_NATURAL_KEY)
            h = f"hash({key})"
            con.execute(
                f"""
                INSERT INTO raw.ad_reporting_superseded
                WITH candidates AS (
                    SELECT {h} AS h FROM raw.ad_reporting GROUP BY 1 HAVING count(DISTINCT source_file) > 1
                ), ranked AS (
                    SELECT a.*, first_value(a.source_file) OVER w AS winner, row_number() OVER w AS rn
                    FROM raw.ad_reporting a SEMI JOIN candidates c ON {h} = c.h
                    WINDOW w AS (PARTITION BY {key} ORDER BY source_mtime DESC, source_file DESC)
                )
                SELECT source_file, source_row, winner, source_relation, date_day, platform, account_id,
                       campaign_id, ad_group_id, ad_id, geo, spend, ?
                FROM ranked WHERE rn > 1 AND winner <> source_file
                """,
                [utcnow()],
            )
        con.execute(
            """CREATE OR REPLACE VIEW raw.ad_reporting_current AS
               SELECT a.* FROM raw.ad_reporting a
               ANTI JOIN raw.ad_reporting_superseded s USING (source_file, source_row)"""
        )
        con.commit()
    except Exception:
        con.rollback()
        raise
    return con.execute("SELECT count(*) FROM raw.ad_reporting_superseded").fetchone()[0]


def load_ad_reporting(con: duckdb.DuckDBPyConnection, input_dir: Path, currency: str,
                      run_id: str | None = None) -> LoadReport:
    files = list_files(input_dir, "ad_reporting")
    if not files and not current_files(con, "ad_reporting"):
        raise IngestError(f"ad_reporting/: no *.csv or *.parquet files in {input_dir}/ad_reporting")
    report = load_files(con, ad_reporting_spec(con, currency), files, run_id)
    report.rows_superseded = refresh_superseded(con)
    return report


# --------------------------------------------------------------------------
# KPI


def kpi_spec(kpi_column: str) -> TableSpec:
    def typed_select(read: TypedRead, src: SourceFile) -> str:
        geo = "nullif(trim(s.geo), '')" if "geo" in read.columns else "NULL"
        reasons = [
            _date_check("date_day", read), _metric_checks(kpi_column, read, "TRUE"),
            f"CASE WHEN count(*) OVER (PARTITION BY s.date_day, {geo}) > 1 THEN 'duplicate date_day and geo (' "
            f"|| count(*) OVER (PARTITION BY s.date_day, {geo}) || ' rows in this file)' END",
        ]
        return f"""
        SELECT {_q(src.rel)} AS source_file, {read.row_expr} AS source_row,
               TIMESTAMP '{src.mtime:%Y-%m-%d %H:%M:%S}' AS source_mtime,
               s.date_day, {geo} AS geo, {_q(kpi_column)} AS kpi_name, s.{kpi_column} AS kpi_value,
               {_reason_columns(reasons)}
        FROM {read.temp} s
        """

    return TableSpec("kpi", "raw.kpi", ["date_day", kpi_column], ["geo"],
                     {"date_day": "DATE", kpi_column: "DOUBLE"}, typed_select)


def resolve_kpi_column(con, files: list[SourceFile], configured: str | None) -> str:
    if configured:
        return configured
    candidates: set[str] = set()
    for src in files:
        try:
            cols = [_norm_col(d[0]) for d in con.execute(f"SELECT * FROM {_reader(src)} LIMIT 0").description]
        except duckdb.Error as exc:
            raise IngestError(f"{src.rel}: cannot be read: {exc}") from exc
        candidates |= {c for c in cols if c not in ("date_day", "geo")}
    if len(candidates) != 1:
        raise IngestError(
            f"kpi/: found KPI column candidates {sorted(candidates)}; "
            "set kpi_column in pipeline.yaml to choose one"
        )
    return candidates.pop()


def _reader(src: SourceFile) -> str:
    if src.path.suffix.lower() == ".parquet":
        return f"read_parquet({_q(src.path)})"
    return f"read_csv({_q(src.path)}, all_varchar=true, header=true)"


def load_kpi(con: duckdb.DuckDBPyConnection, input_dir: Path, configured_kpi: str | None,
             run_id: str | None = None) -> LoadReport:
    files = list_files(input_dir, "kpi")
    if not files and not current_files(con, "kpi"):
        raise IngestError(f"kpi/: no *.csv or *.parquet files in {input_dir}/kpi")
    kpi_column = resolve_kpi_column(con, files, configured_kpi)
    spec = kpi_spec(kpi_column)
    # A changed KPI column choice re-reads every file.
    if con.execute("SELECT count(*) FROM raw.kpi WHERE kpi_name <> ?", [kpi_column]).fetchone()[0]:
        con.execute("DELETE FROM raw.load_log WHERE kind = 'kpi'")
        con.execute("DELETE FROM raw.kpi")
    report = load_files(con, spec, files, run_id)
    con.execute(
        """CREATE OR REPLACE VIEW raw.kpi_current AS
           SELECT * FROM raw.kpi
           QUALIFY row_number() OVER (PARTITION BY date_day, geo ORDER BY source_mtime DESC, source_file DESC) = 1"""
    )
    return report


# --------------------------------------------------------------------------
# Lift tests


def lift_tests_spec() -> TableSpec:
    def typed_select(read: TypedRead, src: SourceFile) -> str:
        reasons = [
            _null_key("test_id"), _null_key("channel"), _date_check("start_date", read),
            _date_check("end_date", read),
            "CASE WHEN s.end_date < s.start_date THEN 'end_date before start_date' END",
            # A go-dark test removes spend: a negative delta_spend is valid.
            _metric_checks("delta_spend", read, "TRUE", allow_negative=True),
            _metric_checks("delta_y", read, "TRUE", allow_negative=True),
            f"CASE {_unparseable('sigma', read)} WHEN s.sigma IS NULL THEN 'missing sigma' "
            "WHEN NOT (s.sigma > 0) THEN 'sigma must be a positive number' END",
            "CASE WHEN count(*) OVER (PARTITION BY s.test_id) > 1 THEN 'duplicate test_id' END",
        ]
        geo = "nullif(trim(s.geo), '')" if "geo" in read.columns else "NULL"
        return f"""
        SELECT {_q(src.rel)} AS source_file, {read.row_expr} AS source_row, trim(s.test_id) AS test_id,
               trim(s.channel) AS channel, {geo} AS geo, s.start_date, s.end_date,
               s.delta_spend, s.delta_y, s.sigma,
               {_reason_columns(reasons)}
        FROM {read.temp} s
        """

    numbers = ["delta_spend", "delta_y", "sigma"]
    return TableSpec(
        "lift_tests", "raw.lift_tests",
        ["test_id", "channel", "start_date", "end_date", *numbers], ["geo"],
        {"start_date": "DATE", "end_date": "DATE", **{c: "DOUBLE" for c in numbers}},
        typed_select,
    )


def load_lift_tests(con: duckdb.DuckDBPyConnection, input_dir: Path, run_id: str | None = None) -> LoadReport:
    path = Path(input_dir) / "lift_tests.csv"
    files = [_source(input_dir, path)] if path.exists() else []
    return load_files(con, lift_tests_spec(), files, run_id)
