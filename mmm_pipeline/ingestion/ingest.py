"""Raw loads of the input folder into DuckDB's `raw` schema.

Contract (see DESIGN.md / README): `ad_reporting/*.csv|*.parquet`,
`kpi/*.csv|*.parquet`, `channels.csv`, optional `controls/*.csv|*.parquet`, `lift_tests.csv`,
`fx_rates.csv` and `pipeline.yaml`.

How a load behaves:
- Files are read by `mmm_pipeline.ingestion.readers` (paths and names bound, never
  formatted into SQL). Row rules run as SQL and a failing row goes to
  `raw.quarantine` with the file, its 1-based data row and the reason; good
  rows load. Among the rows that pass the row rules, an exact duplicate keeps
  its first copy; rows sharing a natural key with different values are all
  quarantined as conflicting.
- A file that cannot be read, is empty, or lacks a required column raises
  `IngestError` naming the file and column *before* anything is written.
- Each load is one transaction: a changed file replaces exactly its own rows,
  a removed file's rows are retired (and logged), an unchanged file (same
  sha256) is not touched, so re-running on the same files changes nothing.
  When what the rows are derived with changes (the catalogue, FX rates, the
  KPI column, the limits), every file of the kind is read again.
- When two files carry the same natural key (a re-export restating recent
  days), the row from the newer file (modification time, then name) wins and
  the superseded row is logged in `raw.ad_reporting_superseded`.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pandas as pd
import regex

from mmm_pipeline.ingestion.readers import (  # noqa: F401  (IngestError and list_files are this module's API too)
    DATE_RULE, IngestError, SourceFile, TypedRead, column_names, list_files, normalize_column, read_as_text,
    read_typed, source_file,
)
from mmm_pipeline.ingestion.load import (  # noqa: F401  (LoadReport, load_context, PROVENANCE: its API too)
    PROVENANCE, LoadReport, TableSpec, col_sql, current_files, date_check, load_context, load_files, log_whole_file,
    metric_checks, null_key_check, row_reason, unparseable_check,
)
from mmm_pipeline.settings import IngestSettings
from mmm_pipeline.warehouse import fingerprint, quote_ident, quote_literal, register, unregister, utcnow

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
# Columns that describe where a row came from, not what it says (left out of "exact duplicate").

# Display names and renamed connectors that the dbt package names differently.
PLATFORM_ALIASES = {
    "microsoft_advertising": "microsoft_ads",
    "bing_ads": "microsoft_ads",
    "x_ads": "twitter_ads",
    "meta_ads": "facebook_ads",
    "linkedin_ad_analytics": "linkedin_ads",
}


def normalize_platform(name: str | None) -> str | None:
    """`Google Ads`, `google_ads` and `GOOGLE-ADS` are one platform: `google_ads`."""
    if name is None:
        return None
    key = re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")
    return PLATFORM_ALIASES.get(key, key) or None

# --------------------------------------------------------------------------
# Channel catalogue and FX rates


def load_channels(con: duckdb.DuckDBPyConnection, input_dir: Path, run_id: str | None = None,
                  configured_currency: str | None = None) -> pd.DataFrame:
    """Replace `raw.channels` (and `raw.fx_rates`) with `channels.csv` (and `fx_rates.csv`).

    Every line must be valid, and every channel convertible to the reporting
    currency, before anything is written.
    """
    path = Path(input_dir) / "channels.csv"
    if not path.exists():
        raise IngestError(f"channels.csv: not found in {input_dir}; the channel catalogue is required")
    src = source_file(input_dir, path)
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
            regex.compile(pattern)
        except regex.error as exc:
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
    _check_currencies(list(zip(out["channel"], out["currency"])), fx, configured_currency)
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
        log_whole_file(con, "channels", src, len(out), run_id)
        con.commit()
    except Exception:
        con.rollback()
        raise
    return out


def _read_fx(con, input_dir: Path) -> pd.DataFrame | None:
    path = Path(input_dir) / "fx_rates.csv"
    if not path.exists():
        return None
    src = source_file(input_dir, path)
    read_as_text(con, src, "_src_fx", ["date", "currency", "rate_to_reporting"])
    df = con.execute(
        """SELECT rowid + 1 AS row, TRY_CAST(date AS DATE) AS date, upper(trim(currency)) AS currency,
                  TRY_CAST(rate_to_reporting AS DOUBLE) AS rate_to_reporting, date AS date_raw,
                  rate_to_reporting AS rate_raw FROM _src_fx"""
    ).df()
    rate = df["rate_to_reporting"]
    bad = df[df["date"].isna() | df["currency"].isna() | ~((rate > 0) & (rate < float("inf")))]
    if len(bad):
        r = bad.iloc[0]
        raise IngestError(
            f"fx_rates.csv row {int(r['row'])}: need a date, a currency and a positive, finite "
            f"rate_to_reporting (got date={r['date_raw']!r}, rate={r['rate_raw']!r}); {len(bad)} bad row(s)"
        )
    return df[["date", "currency", "rate_to_reporting"]]


def _check_currencies(channel_currency: list[tuple[str, str]], fx: pd.DataFrame | None,
                      configured: str | None) -> str:
    """The reporting currency; fails naming the channels and currencies nothing can convert."""
    currencies = sorted({c for _, c in channel_currency})
    target = (configured or (currencies[0] if len(currencies) == 1 else "")).upper()
    if not target:
        raise IngestError(
            f"channels.csv: channels use several currencies {currencies}; "
            "set reporting_currency in pipeline.yaml and provide fx_rates.csv"
        )
    foreign = {ch: c for ch, c in channel_currency if c != target}
    if foreign and fx is None:
        raise IngestError(
            f"channels.csv: channel(s) {sorted(foreign)} are not in the reporting currency {target} "
            "and there is no fx_rates.csv (date, currency, rate_to_reporting) to convert them"
        )
    no_rate = sorted({c for c in foreign.values()} - set(fx["currency"] if fx is not None else []))
    if no_rate:
        chans = sorted(ch for ch, c in foreign.items() if c in no_rate)
        raise IngestError(
            f"fx_rates.csv: no rate for currency {', '.join(no_rate)} (channel(s) {chans} are in it; "
            f"the reporting currency is {target}); add its rate_to_reporting rows"
        )
    return target


def reporting_currency(con, configured: str | None) -> str:
    """One reporting currency per run; mixed currencies need fx_rates.csv with their rates."""
    cats = con.execute("SELECT channel, currency FROM raw.channels ORDER BY line_no").fetchall()
    fx = con.execute("SELECT DISTINCT currency FROM raw.fx_rates").df()
    return _check_currencies(cats, fx if len(fx) else None, configured)




# --------------------------------------------------------------------------
# Ad reporting


def _campaign_channel_map(con, temp: str, timeout: float) -> None:
    """Map each distinct raw (platform, campaign_name) to its platform and catalogue line.

    Done in Python on distinct pairs, because the catalogue's patterns are
    Python-style regular expressions and there are far fewer campaigns than
    rows; the big table then joins on the raw strings (no per-row regex work).
    The `regex` engine takes a time budget per search, so a catastrophic
    pattern fails naming its line instead of hanging the load.
    """
    catalogue = [
        (line, platform, pattern, regex.compile(pattern, regex.IGNORECASE) if pattern else None, channel, unit, cur)
        for line, platform, pattern, channel, unit, cur in con.execute(
            "SELECT line_no, platform, campaign_pattern, channel, unit, currency FROM raw.channels ORDER BY line_no"
        ).fetchall()
    ]
    pairs = con.execute(f"SELECT DISTINCT platform, campaign_name FROM {temp}").fetchall()
    rows = []
    for raw_platform, campaign in pairs:
        platform = normalize_platform(raw_platform)
        match = (None, None, None)
        for line, cat_platform, pattern, compiled, channel, unit, currency in catalogue:
            if cat_platform != platform:
                continue
            try:
                hit = compiled is None or compiled.search(campaign or "", timeout=timeout) is not None
            except TimeoutError:
                raise IngestError(
                    f"channels.csv row {line}, column campaign_pattern: {pattern!r} took more than {timeout:g} s "
                    f"on campaign name {str(campaign)[:80]!r} (nested repetition such as (a+)+ backtracks "
                    "without end: simplify the pattern; pipeline.yaml ingest.pattern_timeout_seconds sets "
                    "the budget). Nothing was loaded"
                ) from None
            if hit:
                match = (channel, unit, currency)
                break
        rows.append((raw_platform, campaign, platform, *match))
    mapping = pd.DataFrame(
        rows, columns=["raw_platform", "campaign_name", "platform", "channel", "unit", "currency"]
    ).astype(object)
    register(con, "_map_df", mapping)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {temp}_map AS SELECT * FROM _map_df")
    unregister(con, "_map_df")


def _dates(limits: IngestSettings) -> tuple:
    """Context parts of every kind with dates: the date rule and the formats pipeline.yaml declares."""
    return DATE_RULE, limits.date_formats


def ad_reporting_spec(con: duckdb.DuckDBPyConnection, currency: str,
                      limits: IngestSettings = IngestSettings()) -> TableSpec:
    catalogue = con.execute("SELECT * FROM raw.channels ORDER BY line_no").fetchall()
    fx = con.execute("SELECT * FROM raw.fx_rates ORDER BY ALL").fetchall()
    known_platforms = sorted({row[2] for row in catalogue})
    needs_fx = any(row[5] != currency for row in catalogue)

    def typed_select(read: TypedRead, src: SourceFile) -> str:
        temp, cols = read.temp, read.columns
        _campaign_channel_map(con, temp, limits.pattern_timeout_seconds)
        opt = {c: (f"coalesce({col_sql(c)}, '')" if c in cols else "''") for c in ("ad_group_id", "ad_id")}
        geo = "nullif(s.geo, '')" if "geo" in cols else "NULL"
        unit_required = {
            "impressions": "m.unit = 'impressions'",
            "clicks": "m.unit = 'clicks'",
            "spend": "TRUE",
        }
        reasons = [
            null_key_check("source_relation"), date_check("date_day", read), null_key_check("platform"),
            null_key_check("account_id"), null_key_check("campaign_id"),
            "CASE WHEN m.platform IS NOT NULL AND NOT list_contains($platforms, m.platform) "
            "THEN 'unknown platform ' || s.platform || ' (not in channels.csv)' "
            "WHEN m.platform IS NOT NULL AND m.channel IS NULL "
            "THEN 'unmapped campaign: no channels.csv pattern for platform ' || m.platform END",
            *(metric_checks(c, read, unit_required.get(c)) for c in AD_METRICS),
        ]
        if needs_fx:
            fx_join = "ASOF LEFT JOIN raw.fx_rates fx ON fx.currency = m.currency AND fx.date <= s.date_day"
            rate = "CASE WHEN m.currency = $currency THEN 1.0 ELSE fx.rate_to_reporting END"
            reasons.append(
                f"CASE WHEN m.channel IS NOT NULL AND ({rate}) IS NULL "
                "THEN 'no fx rate for ' || m.currency || ' on ' || s.date_day "
                "|| ' (fx_rates.csv has none on or before it)' END"
            )
        else:
            fx_join, rate = "", "1.0"
        return f"""
        SELECT
            $source_file AS source_file,
            {read.row_expr} AS source_row,
            $source_mtime AS source_mtime,
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
            {row_reason(reasons)}
        FROM {temp} s
        LEFT JOIN {temp}_map m
          ON m.raw_platform IS NOT DISTINCT FROM s.platform
         AND m.campaign_name IS NOT DISTINCT FROM s.campaign_name
        {fx_join}
        """

    types = {"date_day": "DATE", **{m: "DOUBLE" for m in AD_METRICS}}
    params = {"platforms": known_platforms or [""], "currency": currency,
              "max_metric_value": limits.max_metric_value}
    return TableSpec("ad_reporting", "raw.ad_reporting", AD_REQUIRED, AD_OPTIONAL, types, typed_select,
                     natural_key=tuple(AD_NATURAL_KEY), params=params,
                     context=fingerprint(catalogue, fx, currency, limits.max_metric_value, *_dates(limits)),
                     max_retired_share=limits.max_retired_share, after_load=_refresh_superseded,
                     volume_platform="platform", volume_channel="channel",
                     date_formats=limits.date_formats)


def _refresh_superseded(con: duckdb.DuckDBPyConnection) -> None:
    """Log rows restated by a newer file and expose the winners as `raw.ad_reporting_current`
    (inside the load's transaction)."""
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


def load_ad_reporting(con: duckdb.DuckDBPyConnection, input_dir: Path, currency: str,
                      run_id: str | None = None, limits: IngestSettings = IngestSettings()) -> LoadReport:
    files = list_files(input_dir, "ad_reporting")
    if not files and not current_files(con, "ad_reporting"):
        raise IngestError(f"ad_reporting/: no *.csv or *.parquet files in {input_dir}/ad_reporting")
    report = load_files(con, ad_reporting_spec(con, currency, limits), files, run_id)
    report.rows_superseded = con.execute("SELECT count(*) FROM raw.ad_reporting_superseded").fetchone()[0]
    return report


# --------------------------------------------------------------------------
# KPI


def kpi_spec(kpi_column: str, limits: IngestSettings = IngestSettings()) -> TableSpec:
    def typed_select(read: TypedRead, src: SourceFile) -> str:
        geo = "nullif(trim(s.geo), '')" if "geo" in read.columns else "NULL"
        reasons = [date_check("date_day", read), metric_checks(kpi_column, read, "TRUE", label="$kpi_name")]
        return f"""
        SELECT $source_file AS source_file, {read.row_expr} AS source_row, $source_mtime AS source_mtime,
               s.date_day, {geo} AS geo, $kpi_name AS kpi_name, {col_sql(kpi_column)} AS kpi_value,
               {row_reason(reasons)}
        FROM {read.temp} s
        """

    def kpi_current(con) -> None:
        con.execute(
            """CREATE OR REPLACE VIEW raw.kpi_current AS
               SELECT * FROM raw.kpi
               QUALIFY row_number() OVER (PARTITION BY date_day, geo ORDER BY source_mtime DESC, source_file DESC) = 1"""
        )

    return TableSpec("kpi", "raw.kpi", ["date_day", kpi_column], ["geo"],
                     {"date_day": "DATE", kpi_column: "DOUBLE"}, typed_select, natural_key=("date_day", "geo"),
                     params={"kpi_name": kpi_column, "max_metric_value": limits.max_metric_value},
                     # A changed KPI column choice re-reads every file.
                     context=fingerprint(kpi_column, limits.max_metric_value, *_dates(limits)),
                     max_retired_share=limits.max_retired_share, after_load=kpi_current,
                     date_formats=limits.date_formats)


def resolve_kpi_column(con, files: list[SourceFile], configured: str | None) -> str:
    if configured:
        return normalize_column(configured)
    candidates: set[str] = set()
    for src in files:
        candidates |= {c for c in column_names(con, src) if c not in ("date_day", "geo")}
    if len(candidates) != 1:
        raise IngestError(
            f"kpi/: found KPI column candidates {sorted(candidates)}; "
            "set kpi_column in pipeline.yaml to choose one"
        )
    return candidates.pop()


def load_kpi(con: duckdb.DuckDBPyConnection, input_dir: Path, configured_kpi: str | None,
             run_id: str | None = None, limits: IngestSettings = IngestSettings()) -> LoadReport:
    files = list_files(input_dir, "kpi")
    if not files and not current_files(con, "kpi"):
        raise IngestError(f"kpi/: no *.csv or *.parquet files in {input_dir}/kpi")
    return load_files(con, kpi_spec(resolve_kpi_column(con, files, configured_kpi), limits), files, run_id)


# --------------------------------------------------------------------------
# Lift tests


def lift_tests_spec(limits: IngestSettings = IngestSettings()) -> TableSpec:
    def typed_select(read: TypedRead, src: SourceFile) -> str:
        reasons = [
            null_key_check("test_id"), null_key_check("channel"), date_check("start_date", read),
            date_check("end_date", read),
            "CASE WHEN s.end_date < s.start_date THEN 'end_date before start_date' END",
            # A go-dark test removes spend: a negative delta_spend is valid.
            metric_checks("delta_spend", read, "TRUE", allow_negative=True),
            metric_checks("delta_y", read, "TRUE", allow_negative=True),
            f"CASE {unparseable_check('sigma', read)} WHEN s.sigma IS NULL THEN 'missing sigma' "
            "WHEN NOT isfinite(s.sigma) OR s.sigma > $max_metric_value THEN 'sigma must be a finite number' "
            "WHEN NOT (s.sigma > 0) THEN 'sigma must be a positive number' END",
        ]
        geo = "nullif(trim(s.geo), '')" if "geo" in read.columns else "NULL"
        # kept as written: convert_lift_tests judges it (empty = window, else window | total)
        scope = "nullif(trim(s.scope), '')" if "scope" in read.columns else "NULL"
        return f"""
        SELECT $source_file AS source_file, {read.row_expr} AS source_row, trim(s.test_id) AS test_id,
               trim(s.channel) AS channel, {geo} AS geo, s.start_date, s.end_date,
               s.delta_spend, s.delta_y, s.sigma, {scope} AS scope,
               {row_reason(reasons)}
        FROM {read.temp} s
        """

    numbers = ["delta_spend", "delta_y", "sigma"]
    return TableSpec(
        "lift_tests", "raw.lift_tests",
        ["test_id", "channel", "start_date", "end_date", *numbers], ["geo", "scope"],
        {"start_date": "DATE", "end_date": "DATE", **{c: "DOUBLE" for c in numbers}},
        typed_select, natural_key=("test_id",), params={"max_metric_value": limits.max_metric_value},
        # "scope": files loaded before the column was read are read again
        context=fingerprint(limits.max_metric_value, "scope", *_dates(limits)),
        date_formats=limits.date_formats,
    )


def roas_targets_spec(limits: IngestSettings = IngestSettings()) -> TableSpec:
    """`roas_targets.csv` rows as lift tests (into raw.lift_tests, kind `roas_targets`).

    A ROAS or CPA read out by an experiment is the return on the spend the experiment added (or
    removed, go-dark) over its window, not average ROAS over the fit: so a row enters as the window
    lift it implies, `delta_y = roas x extra_spend` (CPA: `extra_spend / cpa`), its sigma carried
    the same way (CPA by the delta method), and fits like any lift test. A row without its window
    and extra spend says nothing an experiment measured and is quarantined with that reason."""
    def typed_select(read: TypedRead, src: SourceFile) -> str:
        window = ("start_date", "end_date", "extra_spend")
        has_window = all(c in read.columns for c in window)
        metric, value, sigma = "lower(trim(s.metric))", "s.value", "s.sigma"
        reasons = [
            null_key_check("channel"),
            "CASE WHEN s.metric IS NULL OR lower(trim(s.metric)) NOT IN ('roas', 'cpa') "
            "THEN 'metric must be roas or cpa' END",
            f"CASE {unparseable_check('value', read)} WHEN NOT (isfinite(s.value) AND s.value > 0) "
            "THEN 'value must be a positive number' END",
            f"CASE {unparseable_check('sigma', read)} WHEN NOT (isfinite(s.sigma) AND s.sigma > 0) "
            "THEN 'sigma must be a positive number' END",
        ]
        if has_window:
            reasons += [date_check("start_date", read), date_check("end_date", read),
                        "CASE WHEN s.end_date < s.start_date THEN 'end_date before start_date' END",
                        metric_checks("extra_spend", read, "TRUE", allow_negative=True),
                        "CASE WHEN s.extra_spend = 0 THEN 'extra_spend must not be 0' END"]
            start, end, extra = "s.start_date", "s.end_date", "s.extra_spend"
        else:
            missing = ", ".join(c for c in window if c not in read.columns)
            reasons.append(quote_literal(
                f"no {missing}: a ROAS/CPA target is an experiment's readout over its window (start_date, "
                "end_date) on the spend it added (extra_spend); without them it would calibrate average ROAS "
                "over the fit, which no experiment measures"))
            start, end, extra = "NULL::DATE", "NULL::DATE", "NULL::DOUBLE"
        given_id = "nullif(trim(s.test_id), '')" if "test_id" in read.columns else "NULL"
        geo = "nullif(trim(s.geo), '')" if "geo" in read.columns else "NULL"
        return f"""
        SELECT $source_file AS source_file, {read.row_expr} AS source_row,
               'roas_targets:' || coalesce({given_id}, 'row' || {read.row_expr}) AS test_id,
               trim(s.channel) AS channel, {geo} AS geo, {start} AS start_date, {end} AS end_date,
               {extra} AS delta_spend,
               CASE WHEN {metric} = 'roas' THEN {value} * {extra} ELSE {extra} / {value} END AS delta_y,
               CASE WHEN {metric} = 'roas' THEN {sigma} * abs({extra})
                    ELSE abs({extra}) * {sigma} / ({value} * {value}) END AS sigma,
               'window' AS scope,
               {row_reason(reasons)}
        FROM {read.temp} s
        """

    numbers = ["value", "sigma", "extra_spend"]
    return TableSpec(
        "roas_targets", "raw.lift_tests", ["channel", "metric", "value", "sigma"],
        ["geo", "test_id", "start_date", "end_date", "extra_spend"],
        {"start_date": "DATE", "end_date": "DATE", **{c: "DOUBLE" for c in numbers}},
        typed_select, natural_key=("test_id",), params={"max_metric_value": limits.max_metric_value},
        context=fingerprint(limits.max_metric_value, *_dates(limits)), date_formats=limits.date_formats,
    )


def load_lift_tests(con: duckdb.DuckDBPyConnection, input_dir: Path, run_id: str | None = None,
                    limits: IngestSettings = IngestSettings()) -> LoadReport:
    """`lift_tests.csv` and the experiments of `roas_targets.csv` (as window lifts) into raw.lift_tests."""
    report = LoadReport("lift_tests")
    for name, spec in (("lift_tests.csv", lift_tests_spec(limits)), ("roas_targets.csv", roas_targets_spec(limits))):
        path = Path(input_dir) / name
        part = load_files(con, spec, [source_file(input_dir, path)] if path.exists() else [], run_id)
        for f in ("files_loaded", "files_unchanged", "files_retired"):
            getattr(report, f).extend(getattr(part, f))
        report.rows_loaded += part.rows_loaded
        report.rows_quarantined += part.rows_quarantined
        report.table_rows = part.table_rows
    return report



# --------------------------------------------------------------------------
# Controls: non-media drivers of the KPI (price, promotions, weather, ...)

CONTROL_KEYS = ("date_day", "geo")


def control_names(con, files: list[SourceFile]) -> list[str]:
    """Every numeric column the controls/ files carry besides `date_day` and `geo`, in first-seen order;
    a file with none fails naming it."""
    names: list[str] = []
    for src in files:
        cols = [c for c in column_names(con, src) if c not in CONTROL_KEYS]
        if not cols or any(not c for c in cols):
            raise IngestError(f"{src.rel}: a controls file needs `date_day`, optional `geo` and at least one "
                              f"named numeric control column; the file has columns {column_names(con, src)}")
        names += [c for c in cols if c not in names]
    return names


def controls_spec(names: list[str], limits: IngestSettings = IngestSettings()) -> TableSpec:
    """Controls files: one raw row per file row, its controls as JSON keyed by column name (the names
    reach SQL as quoted identifiers; reasons label them through the bound `$control_names`)."""

    def typed_select(read: TypedRead, src: SourceFile) -> str:
        present = [(names.index(c) + 1, c) for c in read.columns if c in names]
        geo = "nullif(trim(s.geo), '')" if "geo" in read.columns else "NULL"
        # A control may be negative (a temperature, a price index change); it must be a finite number.
        reasons = [date_check("date_day", read), *(
            metric_checks(c, read, "TRUE", allow_negative=True, label=f"$control_names[{i}]") for i, c in present)]
        values = ", ".join(f"{quote_ident(c)} := {col_sql(c)}" for _, c in present)
        return f"""
        SELECT $source_file AS source_file, {read.row_expr} AS source_row, $source_mtime AS source_mtime,
               s.date_day, {geo} AS geo, to_json(struct_pack({values})) AS control_values,
               {row_reason(reasons)}
        FROM {read.temp} s
        """

    def controls_current(con) -> None:
        # one value per day, geo and control: a newer file restates an older one
        con.execute(
            """CREATE OR REPLACE VIEW raw.controls_current AS
               SELECT c.date_day, c.geo, k.key AS control, CAST(k.value AS DOUBLE) AS value,
                      c.source_file, c.source_row
               FROM raw.controls c, json_each(c.control_values) k
               QUALIFY row_number() OVER (PARTITION BY c.date_day, c.geo, k.key
                                          ORDER BY c.source_mtime DESC, c.source_file DESC) = 1"""
        )

    return TableSpec("controls", "raw.controls", ["date_day"], ["geo", *names],
                     {"date_day": "DATE", **{c: "DOUBLE" for c in names}}, typed_select,
                     natural_key=CONTROL_KEYS,
                     params={"control_names": names or [""], "max_metric_value": limits.max_metric_value},
                     context=fingerprint(limits.max_metric_value, *_dates(limits)),
                     max_retired_share=limits.max_retired_share, after_load=controls_current,
                     date_formats=limits.date_formats)


def load_controls(con: duckdb.DuckDBPyConnection, input_dir: Path, run_id: str | None = None,
                  limits: IngestSettings = IngestSettings()) -> LoadReport:
    """Load `controls/*.csv|parquet` (optional: no folder and nothing loaded before = no controls)."""
    if not (Path(input_dir) / "controls").is_dir() and not current_files(con, "controls"):
        report = load_files(con, controls_spec([], limits), [], run_id)  # creates raw.controls_current
        return report
    files = list_files(input_dir, "controls")  # a folder gone after a load fails, naming it
    return load_files(con, controls_spec(control_names(con, files), limits), files, run_id)
