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


def _platform_sql(expr: str) -> str:
    base = f"nullif(trim(both '_' FROM regexp_replace(lower(trim({expr})), '[^0-9a-z]+', '_', 'g')), '')"
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in PLATFORM_ALIASES.items())
    return f"(CASE {base} {cases} ELSE {base} END)"


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


@dataclass
class SourceFile:
    path: Path
    rel: str
    sha256: str
    mtime: datetime


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
        sha256=sha256_file(p),
        mtime=datetime.fromtimestamp(p.stat().st_mtime),
    )


def read_as_text(con: duckdb.DuckDBPyConnection, src: SourceFile, temp: str, required: list[str],
                 optional: list[str] = ()) -> list[str]:
    """Read a CSV or Parquet file into temp table `temp`, every column as text.

    Column names are normalised (BOM, case, spaces). Raises IngestError for an
    unreadable or empty file or a missing required column.
    """
    if src.path.stat().st_size == 0:
        raise IngestError(f"{src.rel}: the file is empty (0 bytes); expected a header with columns {required}")
    fmt = "parquet" if src.path.suffix.lower() == ".parquet" else "csv"
    reader = (
        f"read_parquet({_q(src.path)})"
        if fmt == "parquet"
        else f"read_csv({_q(src.path)}, all_varchar=true, header=true, nullstr={NULL_STRINGS!r})"
    )
    try:
        cols = [d[0] for d in con.execute(f"SELECT * FROM {reader} LIMIT 0").description]
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
    keep = [c for c in required + list(optional) if c in normalized]
    select = ", ".join(
        f'CAST("{cols[normalized.index(c)]}" AS VARCHAR) AS "{c}"' for c in keep
    )
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {temp} AS SELECT {select} FROM {reader}")
    except duckdb.Error as exc:
        raise IngestError(f"{src.rel}: cannot be read as {fmt.upper()}: {exc}") from exc
    return keep


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
    return f"TRY_CAST(trim({expr_text}) AS {sql_type})"


def _metric_checks(col: str, required_if: str | None = None, allow_negative: bool = False) -> str:
    """Reason for a bad number cell: unparseable, negative, or missing when it is needed."""
    missing = (
        f"WHEN s.{col} IS NULL AND ({required_if}) THEN 'missing {col}'" if required_if else ""
    )
    negative = "" if allow_negative else f"WHEN {_typed('s.' + col, 'DOUBLE')} < 0 THEN 'negative {col}'"
    return (
        f"CASE {missing} "
        f"WHEN s.{col} IS NOT NULL AND {_typed('s.' + col, 'DOUBLE')} IS NULL "
        f"THEN 'unparseable {col} ' || s.{col} {negative} END"
    )


def _null_key(col: str) -> str:
    return f"CASE WHEN nullif(trim(s.{col}), '') IS NULL THEN 'null key {col}' END"


def _date_check(col: str) -> str:
    return (
        f"CASE WHEN s.{col} IS NULL THEN 'null key {col}' "
        f"WHEN {_typed('s.' + col, 'DATE')} IS NULL THEN 'unparseable date {col} ' || s.{col} END"
    )


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
    # (temp source table, file, its columns) -> SELECT producing the table's columns plus `_reason`
    typed_select: Callable[[str, SourceFile, list[str]], str]


def load_files(con: duckdb.DuckDBPyConnection, spec: TableSpec, files: list[SourceFile],
               run_id: str | None = None) -> LoadReport:
    report = LoadReport(spec.kind)
    loaded_now = current_files(con, spec.kind)
    changed = [f for f in files if loaded_now.get(f.rel) != f.sha256]
    report.files_unchanged = [f.rel for f in files if loaded_now.get(f.rel) == f.sha256]
    present = {f.rel for f in files}
    removed = sorted(set(loaded_now) - present)

    # Read and type every changed file before writing anything.
    staged = []
    for i, src in enumerate(changed):
        temp = f"_src_{spec.kind}_{i}"
        columns = read_as_text(con, src, temp, spec.required, spec.optional)
        typed = f"_typed_{spec.kind}_{i}"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {typed} AS {spec.typed_select(temp, src, columns)}")
        staged.append((src, temp, typed))

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
        for src, temp, typed in staged:
            con.execute(f"DELETE FROM {spec.table} WHERE source_file = ?", [src.rel])
            con.execute(f"INSERT INTO {spec.table} ({cols}) SELECT {cols} FROM {typed} WHERE _reason IS NULL")
            con.execute("DELETE FROM raw.quarantine WHERE kind = ? AND source_file = ?", [spec.kind, src.rel])
            con.execute(
                f"""INSERT INTO raw.quarantine
                    SELECT ?, ?, t.source_row, t._reason, to_json(s), ?
                    FROM {typed} t JOIN {temp} s ON s.rowid + 1 = t.source_row
                    WHERE t._reason IS NOT NULL""",
                [spec.kind, src.rel, now],
            )
            n_read, n_bad = con.execute(
                f"SELECT count(*), count(_reason) FROM {typed}"
            ).fetchone()
            con.execute(
                "INSERT INTO raw.load_log VALUES (?, ?, ?, ?, 'loaded', ?, ?, ?, ?, ?)",
                [spec.kind, src.rel, src.sha256, src.mtime, n_read, n_read - n_bad, n_bad, now, run_id],
            )
            report.files_loaded.append(src.rel)
            report.rows_loaded += n_read - n_bad
            report.rows_quarantined += n_bad
        con.commit()
    except Exception:
        con.rollback()
        raise
    finally:
        for _, temp, typed in staged:
            con.execute(f"DROP TABLE IF EXISTS {temp}")
            con.execute(f"DROP TABLE IF EXISTS {typed}")
    report.table_rows = con.execute(f"SELECT count(*) FROM {spec.table}").fetchone()[0]
    return report


# --------------------------------------------------------------------------
# Ad reporting


def _campaign_channel_map(con, temp: str) -> None:
    """Map each distinct (platform, campaign_name) to the first matching catalogue line.

    Done in Python on distinct pairs: the catalogue's patterns are Python
    regular expressions and there are far fewer campaigns than rows.
    """
    catalogue = con.execute(
        "SELECT platform, campaign_pattern, channel, unit, currency FROM raw.channels ORDER BY line_no"
    ).fetchall()
    pairs = con.execute(
        f"SELECT DISTINCT {_platform_sql('platform')} AS platform, campaign_name FROM {temp}"
    ).fetchall()
    rows = []
    for platform, campaign in pairs:
        for cat_platform, pattern, channel, unit, currency in catalogue:
            if cat_platform == platform and (
                not pattern or re.search(pattern, campaign or "", flags=re.IGNORECASE)
            ):
                rows.append((platform, campaign, channel, unit, currency))
                break
    mapping = pd.DataFrame(rows, columns=["platform", "campaign_name", "channel", "unit", "currency"])
    register(con, "_map_df", mapping)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _campaign_map AS SELECT * FROM _map_df"
    )
    unregister(con, "_map_df")


def ad_reporting_spec(con: duckdb.DuckDBPyConnection, currency: str) -> TableSpec:
    known_platforms = {p for (p,) in con.execute("SELECT DISTINCT platform FROM raw.channels").fetchall()}
    needs_fx = con.execute(
        "SELECT count(*) FROM raw.channels WHERE currency <> ?", [currency]
    ).fetchone()[0] > 0

    def typed_select(temp: str, src: SourceFile, cols: list[str]) -> str:
        _campaign_channel_map(con, temp)
        opt = {c: (f"coalesce(trim(s.{c}), '')" if c in cols else "''") for c in ("ad_group_id", "ad_id")}
        geo = "nullif(trim(s.geo), '')" if "geo" in cols else "NULL"
        platforms = ", ".join(_q(p) for p in sorted(known_platforms)) or "''"
        unit_required = {
            "impressions": "m.unit = 'impressions'",
            "clicks": "m.unit = 'clicks'",
            "spend": "TRUE",
        }
        reasons = [
            _null_key("source_relation"), _date_check("date_day"), _null_key("platform"),
            _null_key("account_id"), _null_key("campaign_id"),
            f"CASE WHEN s.platform IS NOT NULL AND {_platform_sql('s.platform')} NOT IN ({platforms}) "
            f"THEN 'unknown platform ' || s.platform || ' (not in channels.csv)' "
            f"WHEN s.platform IS NOT NULL AND m.channel IS NULL "
            f"THEN 'unmapped campaign: no channels.csv pattern for platform ' || {_platform_sql('s.platform')} END",
            *(_metric_checks(c, unit_required.get(c)) for c in AD_METRICS),
        ]
        spend = _typed("s.spend", "DOUBLE")
        if needs_fx:
            fx_join = (
                f"ASOF LEFT JOIN raw.fx_rates fx ON fx.currency = m.currency "
                f"AND fx.date <= {_typed('s.date_day', 'DATE')}"
            )
            rate = f"CASE WHEN m.currency = {_q(currency)} THEN 1.0 ELSE fx.rate_to_reporting END"
            reasons.append(
                f"CASE WHEN m.channel IS NOT NULL AND ({rate}) IS NULL "
                f"THEN 'no fx rate for ' || m.currency || ' on or before ' || s.date_day END"
            )
        else:
            fx_join, rate = "", "1.0"
        key_cols = ", ".join(
            ["s.source_relation", "s.date_day", "s.platform", "s.account_id", "s.campaign_id",
             opt["ad_group_id"], opt["ad_id"], f"coalesce({geo}, '')"]
        )
        return f"""
        SELECT
            {_q(src.rel)} AS source_file,
            s.rowid + 1 AS source_row,
            TIMESTAMP '{src.mtime:%Y-%m-%d %H:%M:%S}' AS source_mtime,
            trim(s.source_relation) AS source_relation,
            {_typed('s.date_day', 'DATE')} AS date_day,
            {_platform_sql('s.platform')} AS platform,
            trim(s.account_id) AS account_id,
            s.account_name,
            trim(s.campaign_id) AS campaign_id,
            s.campaign_name,
            {opt['ad_group_id']} AS ad_group_id,
            {opt['ad_id']} AS ad_id,
            {geo} AS geo,
            m.channel, m.unit, m.currency,
            coalesce({_typed('s.clicks', 'DOUBLE')}, 0) AS clicks,
            coalesce({_typed('s.impressions', 'DOUBLE')}, 0) AS impressions,
            {spend} * ({rate}) AS spend,
            {spend} AS spend_original,
            coalesce({_typed('s.conversions', 'DOUBLE')}, 0) AS conversions,
            coalesce({_typed('s.conversions_value', 'DOUBLE')}, 0) AS conversions_value,
            nullif(concat_ws('; ', {', '.join(reasons)},
                CASE WHEN count(*) OVER (PARTITION BY {key_cols}) > 1
                THEN 'duplicate natural key (' || count(*) OVER (PARTITION BY {key_cols}) || ' rows in this file)'
                END), '') AS _reason
        FROM {temp} s
        LEFT JOIN _campaign_map m
          ON m.platform = {_platform_sql('s.platform')}
         AND m.campaign_name IS NOT DISTINCT FROM s.campaign_name
        {fx_join}
        """

    return TableSpec("ad_reporting", "raw.ad_reporting", AD_REQUIRED, AD_OPTIONAL, typed_select)


def refresh_superseded(con: duckdb.DuckDBPyConnection) -> int:
    """Log rows restated by a newer file and expose the winners as `raw.ad_reporting_current`."""
    # One string per natural key (unit separator between parts).
    key = "concat_ws(chr(31), " + ", ".join(f"coalesce(CAST({c} AS VARCHAR), '')" for c in AD_NATURAL_KEY) + ")"
    con.begin()
    try:
        con.execute("DELETE FROM raw.ad_reporting_superseded")
        con.execute(
            f"""
            INSERT INTO raw.ad_reporting_superseded
            WITH conflicted AS (
                SELECT {key} AS k FROM raw.ad_reporting GROUP BY ALL HAVING count(DISTINCT source_file) > 1
            ), ranked AS (
                SELECT a.*, first_value(a.source_file) OVER w AS winner, row_number() OVER w AS rn
                FROM raw.ad_reporting a SEMI JOIN conflicted c ON {key} = c.k
                WINDOW w AS (PARTITION BY {key} ORDER BY source_mtime DESC, source_file DESC)
            )
            SELECT source_file, source_row, winner, source_relation, date_day, platform, account_id,
                   campaign_id, ad_group_id, ad_id, geo, spend, ?
            FROM ranked WHERE rn > 1
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
    def typed_select(temp: str, src: SourceFile, cols: list[str]) -> str:
        geo = "nullif(trim(s.geo), '')" if "geo" in cols else "NULL"
        reasons = [_date_check("date_day"), _metric_checks(kpi_column, "TRUE")]
        return f"""
        SELECT {_q(src.rel)} AS source_file, s.rowid + 1 AS source_row,
               TIMESTAMP '{src.mtime:%Y-%m-%d %H:%M:%S}' AS source_mtime,
               {_typed('s.date_day', 'DATE')} AS date_day, {geo} AS geo,
               {_q(kpi_column)} AS kpi_name, {_typed('s.' + kpi_column, 'DOUBLE')} AS kpi_value,
               nullif(concat_ws('; ', {', '.join(reasons)},
                   CASE WHEN count(*) OVER (PARTITION BY s.date_day, {geo}) > 1
                   THEN 'duplicate date_day and geo (' || count(*) OVER (PARTITION BY s.date_day, {geo})
                        || ' rows in this file)' END), '') AS _reason
        FROM {temp} s
        """

    return TableSpec("kpi", "raw.kpi", ["date_day", kpi_column], ["geo"], typed_select)


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
    def typed_select(temp: str, src: SourceFile, cols: list[str]) -> str:
        reasons = [
            _null_key("test_id"), _null_key("channel"), _date_check("start_date"), _date_check("end_date"),
            "CASE WHEN TRY_CAST(s.end_date AS DATE) < TRY_CAST(s.start_date AS DATE) "
            "THEN 'end_date before start_date' END",
            # A go-dark test removes spend: a negative delta_spend is valid.
            _metric_checks("delta_spend", "TRUE", allow_negative=True),
            _metric_checks("delta_y", "TRUE", allow_negative=True),
            f"CASE WHEN s.sigma IS NULL THEN 'missing sigma' WHEN NOT ({_typed('s.sigma', 'DOUBLE')} > 0) "
            "THEN 'sigma must be a positive number' END",
            "CASE WHEN count(*) OVER (PARTITION BY s.test_id) > 1 THEN 'duplicate test_id' END",
        ]
        return f"""
        SELECT {_q(src.rel)} AS source_file, s.rowid + 1 AS source_row, trim(s.test_id) AS test_id,
               trim(s.channel) AS channel, nullif(trim(s.geo), '') AS geo,
               {_typed('s.start_date', 'DATE')} AS start_date, {_typed('s.end_date', 'DATE')} AS end_date,
               {_typed('s.delta_spend', 'DOUBLE')} AS delta_spend, {_typed('s.delta_y', 'DOUBLE')} AS delta_y,
               {_typed('s.sigma', 'DOUBLE')} AS sigma,
               nullif(concat_ws('; ', {', '.join(reasons)}), '') AS _reason
        FROM {temp} s
        """

    return TableSpec(
        "lift_tests", "raw.lift_tests",
        ["test_id", "channel", "start_date", "end_date", "delta_spend", "delta_y", "sigma"], ["geo"],
        typed_select,
    )


def load_lift_tests(con: duckdb.DuckDBPyConnection, input_dir: Path, run_id: str | None = None) -> LoadReport:
    path = Path(input_dir) / "lift_tests.csv"
    files = [_source(input_dir, path)] if path.exists() else []
    return load_files(con, lift_tests_spec(), files, run_id)
