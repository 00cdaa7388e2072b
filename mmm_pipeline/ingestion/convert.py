"""Convert a *wide* MMM table into the project's input-contract folder.

A wide table has one row per date (and geo) with per-channel delivery-unit and
spend columns plus a KPI column -- the shape used by Meridian's and Robyn's
demo data.  The contract folder (see DESIGN.md, "Input contract") wants long,
Fivetran ``ad_reporting__campaign_report``-shaped rows plus a KPI file, a
channel catalogue and ``pipeline.yaml``.

Each wide channel becomes its own *platform* (``platform = campaign_id =
campaign_name = <channel>``, ``source_relation = <channel>.wide_table``,
``account_id = wide``), so the written ``channels.csv`` maps it 1:1 with an
empty ``campaign_pattern``.

Written files (relative to ``out_dir``)::

    ad_reporting/wide_table.csv   one row per date x geo x channel
    kpi/kpi.csv                   date_day, [geo], kpi_column, extra KPI columns
    controls/controls.csv         date_day, [geo], control columns (when there are any)
    channels.csv                  channel, platform, campaign_pattern, unit, currency
    pipeline.yaml                 kpi_column set (other existing keys are kept)

Values are never rounded: floats are parsed correctly rounded (pandas 3's
default; ``float_precision="round_trip"`` on pandas 2) and written with
pandas' default (shortest round-trip ``repr``) formatting, so a reader gets
back the exact source doubles.  Missing spend/unit/KPI cells (``na``, ``NA``, empty...) are
written as empty cells -- never 0 -- so the pipeline's quarantine sees them;
their counts are in the returned summary.

Command line (exposed as ``mmm-convert-wide``)::

    python -m mmm_pipeline.ingestion.convert SRC OUT_DIR [--preset meridian|robyn]
        [--date-column time] [--geo-column geo | --no-geo]
        [--kpi-column conversions] [--extra-kpi COL ...]
        [--channel name:unit:units_col:spend_col ...] [--currency USD]
        [--control COL ...] [--event COL ...]

Controls: numeric non-media columns (Meridian's ``*_control`` columns, found by
that suffix with ``--preset meridian``; Robyn's ``competitor_sales_B`` and
organic ``newsletter``) are copied as they are. An event column (Robyn's
``events``: a level name in the weeks it happened, ``na`` otherwise) becomes one
0/1 control per level, ``<column>_<level>``, the way Robyn treats such factors.

Geo size: a population column (Meridian's ``population``, the default) is written to
``geos.csv`` (one row per geo, its mean over dates), and the pipeline then models
the geos per capita (``mmm_pipeline.ingestion.geos``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import yaml

__all__ = [
    "AD_REPORTING_COLUMNS",
    "ChannelSpec",
    "MERIDIAN_PRESET",
    "PRESETS",
    "ROBYN_CHANNELS",
    "ROBYN_PRESET",
    "UNITS",
    "convert_wide_table",
    "detect_channels",
    "main",
    "parse_channel_arg",
]

UNITS = ("impressions", "clicks", "spend")

AD_REPORTING_COLUMNS = [
    "source_relation",
    "date_day",
    "platform",
    "account_id",
    "account_name",
    "campaign_id",
    "campaign_name",
    "clicks",
    "impressions",
    "spend",
    "conversions",
    "conversions_value",
]

AD_REPORTING_FILE = Path("ad_reporting") / "wide_table.csv"
KPI_FILE = Path("kpi") / "kpi.csv"
CHANNELS_FILE = Path("channels.csv")
CONTROLS_FILE = Path("controls") / "controls.csv"
GEOS_FILE = Path("geos.csv")
CONTROL_SUFFIX = "_control"
PIPELINE_FILE = Path("pipeline.yaml")

# pandas < 3 needs round_trip for correctly rounded float parsing; pandas 3 parses
# exactly by default and deprecates the argument.
_READ_FLOAT_KW: dict[str, Any] = (
    {"float_precision": "round_trip"} if int(pd.__version__.split(".")[0]) < 3 else {}
)

_CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9_.\- ]+$")


@dataclass(frozen=True)
class ChannelSpec:
    """One wide-table channel.

    channel:      output channel (and platform) name, e.g. ``"channel0"``.
    unit:         ``"impressions"``, ``"clicks"`` or ``"spend"``.
    units_column: wide column with delivery units (``None`` for spend-only).
    spend_column: wide column with spend (money).
    """

    channel: str
    unit: str
    units_column: str | None
    spend_column: str

    def __post_init__(self) -> None:
        if not isinstance(self.channel, str) or not self.channel.strip():
            raise ValueError(f"ChannelSpec: empty channel name ({self!r})")
        if not _CHANNEL_NAME_RE.match(self.channel) or self.channel != self.channel.strip():
            raise ValueError(
                f"ChannelSpec: channel name {self.channel!r} may only contain letters, "
                "digits, '_', '.', '-' and inner spaces"
            )
        if self.unit not in UNITS:
            raise ValueError(
                f"ChannelSpec {self.channel!r}: unit {self.unit!r} is not one of {', '.join(UNITS)}"
            )
        if not self.spend_column:
            raise ValueError(f"ChannelSpec {self.channel!r}: spend_column is required")
        if self.unit == "spend":
            if self.units_column:
                raise ValueError(
                    f"ChannelSpec {self.channel!r}: a spend-only channel takes no units_column "
                    f"(got {self.units_column!r}); its unit is the spend column"
                )
        elif not self.units_column:
            raise ValueError(
                f"ChannelSpec {self.channel!r}: unit {self.unit!r} needs a units_column"
            )


# Robyn's demo data (dt_simulated_weekly): *_I impressions, *_P clicks, *_S spend.
ROBYN_CHANNELS: list[ChannelSpec] = [
    ChannelSpec("facebook", "impressions", "facebook_I", "facebook_S"),
    ChannelSpec("search", "clicks", "search_clicks_P", "search_S"),
    ChannelSpec("tv", "spend", None, "tv_S"),
    ChannelSpec("ooh", "spend", None, "ooh_S"),
    ChannelSpec("print", "spend", None, "print_S"),
]

# keyword arguments of convert_wide_table for each preset
MERIDIAN_PRESET: dict[str, Any] = {
    "date_column": "time",
    "geo_column": "geo",
    "kpi_column": "conversions",
    "channels": None,  # auto-detect <name>_impression / <name>_spend pairs
    "control_columns": None,  # auto-detect <name>_control
    "population_column": "population",  # written to geos.csv when the table has it
}
ROBYN_PRESET: dict[str, Any] = {
    "date_column": "DATE",
    "geo_column": None,
    "kpi_column": "revenue",
    "channels": ROBYN_CHANNELS,
    "control_columns": ["competitor_sales_B", "newsletter"],
    "event_columns": ["events"],
}
PRESETS: dict[str, dict[str, Any]] = {"meridian": MERIDIAN_PRESET, "robyn": ROBYN_PRESET}


# --------------------------------------------------------------------------- detection

_SUFFIX_RE = re.compile(r"^(?P<name>.+?)_(?P<kind>impressions?|clicks?|spend)$", re.IGNORECASE)


def detect_channels(columns: list[str]) -> list[ChannelSpec]:
    """Find channels in a wide header by column-name suffix (case-insensitive).

    ``<name>_impression(s)`` + ``<name>_spend`` -> impressions channel,
    ``<name>_click(s)`` + ``<name>_spend`` -> clicks channel,
    ``<name>_spend`` alone -> spend-only channel.  Channel names are
    lower-cased; column names are returned as spelled in ``columns``.  A units
    column without a ``_spend`` partner is not a channel (it is left for the
    caller to report as ignored).  Channels come in order of first appearance.

    Raises ``ValueError`` when two columns claim the same role of one channel
    (e.g. ``TV_spend`` and ``tv_Spend``), or a channel has both impressions and
    clicks columns (ambiguous unit: pass explicit ChannelSpecs).
    """
    found: dict[str, dict[str, str]] = {}
    for col in columns:
        m = _SUFFIX_RE.match(str(col).strip())
        if not m:
            continue
        name = m.group("name").lower()
        kind = m.group("kind").lower()
        kind = "impressions" if kind.startswith("impression") else "clicks" if kind.startswith("click") else "spend"
        roles = found.setdefault(name, {})
        if kind in roles:
            raise ValueError(
                f"detect_channels: columns {roles[kind]!r} and {col!r} both look like "
                f"the {kind} column of channel {name!r}; pass channels explicitly"
            )
        roles[kind] = str(col)

    specs: list[ChannelSpec] = []
    for name, roles in found.items():
        if "spend" not in roles:
            continue
        if "impressions" in roles and "clicks" in roles:
            raise ValueError(
                f"detect_channels: channel {name!r} has both an impressions column "
                f"({roles['impressions']!r}) and a clicks column ({roles['clicks']!r}); "
                "pass channels explicitly to choose its unit"
            )
        if "impressions" in roles:
            specs.append(ChannelSpec(name, "impressions", roles["impressions"], roles["spend"]))
        elif "clicks" in roles:
            specs.append(ChannelSpec(name, "clicks", roles["clicks"], roles["spend"]))
        else:
            specs.append(ChannelSpec(name, "spend", None, roles["spend"]))
    return specs


# --------------------------------------------------------------------------- conversion

def _numeric(series: pd.Series, src: Path, column: str) -> pd.Series:
    """Column as float64; NaN stays NaN; non-numeric text raises naming file/column."""
    if pd.api.types.is_bool_dtype(series):
        raise ValueError(f"{src}: column {column!r} is boolean, expected numbers")
    if pd.api.types.is_numeric_dtype(series):
        return series.astype("float64")
    converted = pd.to_numeric(series, errors="coerce")
    bad = series[converted.isna() & series.notna()]
    if len(bad):
        sample = ", ".join(repr(v) for v in bad.unique()[:5])
        raise ValueError(
            f"{src}: column {column!r} has {len(bad)} non-numeric value(s) ({sample}); "
            "add them to na_values if they mean 'missing'"
        )
    return converted.astype("float64")


def _parse_dates(series: pd.Series, src: Path, column: str) -> pd.Series:
    missing = int(series.isna().sum())
    if missing:
        raise ValueError(f"{src}: column {column!r} has {missing} missing date(s)")
    text = series.astype(str).str.strip()
    try:
        parsed = pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError):
        try:
            parsed = pd.to_datetime(text)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{src}: column {column!r} holds unparseable dates: {exc}") from None
    return parsed.dt.strftime("%Y-%m-%d")


def _check_out_dir(out: Path) -> None:
    """Refuse to mix our output with other CSV/Parquet files the pipeline would also load."""
    for sub, ours in (("ad_reporting", AD_REPORTING_FILE.name), ("kpi", KPI_FILE.name)):
        folder = out / sub
        if not folder.is_dir():
            continue
        others = sorted(
            p.name
            for p in folder.iterdir()
            if p.suffix.lower() in (".csv", ".parquet") and p.name != ours
        )
        if others:
            raise ValueError(
                f"{folder}: already holds {', '.join(others)}; the pipeline would load them "
                "together with the converted table -- use an empty output folder"
            )


def _write_pipeline_yaml(path: Path, kpi_column: str) -> None:
    settings: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at top level, got {type(loaded).__name__}")
        settings = loaded
    settings["kpi_column"] = kpi_column
    path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")


def convert_wide_table(
    src: str | Path,
    out_dir: str | Path,
    *,
    date_column: str = "time",
    geo_column: str | None = "geo",
    kpi_column: str = "conversions",
    channels: list[ChannelSpec] | None = None,
    extra_kpi_columns: Sequence[str] = (),
    currency: str = "USD",
    na_values: Iterable[str] = ("na", "NA", ""),
    control_columns: Sequence[str] | None = (),
    event_columns: Sequence[str] = (),
    population_column: str | None = None,
) -> dict:
    """Convert the wide CSV ``src`` into the input-contract folder ``out_dir``.

    ``channels=None`` auto-detects them with :func:`detect_channels`.
    ``geo_column=None`` means national data (no ``geo`` column is written).
    ``control_columns=None`` takes every ``*_control`` column; ``event_columns``
    become one 0/1 control per level (see the module docstring).
    Raises ``ValueError`` naming the file and column when a date, geo, KPI,
    units or spend column is missing, a value is not numeric, or a date cannot
    be parsed.  Returns a JSON-serialisable summary dict.
    """
    src = Path(src)
    out = Path(out_dir)
    extra_kpi_columns = list(extra_kpi_columns)
    na_list = list(na_values)

    if not src.is_file():
        raise ValueError(f"{src}: no such file")
    try:
        header = [str(c) for c in pd.read_csv(src, nrows=0).columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{src}: cannot read CSV header: {exc}") from None
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ValueError(f"{src}: duplicate column name(s) {dupes}")
    present = set(header)

    def need(column: str | None, role: str) -> None:
        if column is not None and column not in present:
            raise ValueError(f"{src}: missing {role} column {column!r} (columns: {', '.join(header)})")

    need(date_column, "date")
    need(geo_column, "geo")
    need(kpi_column, "KPI")
    for col in extra_kpi_columns:
        need(col, "extra KPI")

    if channels is None:
        specs = detect_channels(header)
        if not specs:
            raise ValueError(
                f"{src}: no channels detected (expected <name>_impression(s)/<name>_click(s) "
                "with <name>_spend columns); pass channels explicitly, e.g. --preset robyn "
                "or --channel name:unit:units_col:spend_col"
            )
    else:
        specs = list(channels)
        if not specs:
            raise ValueError(f"{src}: channels is an empty list")
    names = [s.channel for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate channel names in {names}")
    for s in specs:
        need(s.spend_column, f"spend (channel {s.channel!r})")
        need(s.units_column, f"{s.unit} (channel {s.channel!r})")

    controls = [c for c in header if c.endswith(CONTROL_SUFFIX)] if control_columns is None else list(control_columns)
    events = list(event_columns)
    for col in controls:
        need(col, "control")
    for col in events:
        need(col, "event")

    kpi_cols = [kpi_column] + [c for c in extra_kpi_columns if c != kpi_column]
    for col in kpi_cols:
        if col in ("date_day", "geo"):
            raise ValueError(f"{src}: KPI column {col!r} clashes with a contract key column")

    used = {date_column, *kpi_cols, *controls}
    if geo_column is not None:
        used.add(geo_column)
    # a geo's population (Meridian's `population`) goes to geos.csv: the model is then per capita
    population_used = population_column if geo_column is not None and population_column in present else None
    if population_used:
        used.add(population_used)
    for s in specs:
        used.add(s.spend_column)
        if s.units_column:
            used.add(s.units_column)
    ignored = [c for c in header if c not in used and c not in events]

    key_dtypes = {date_column: str}
    if geo_column is not None:
        key_dtypes[geo_column] = str
    try:
        df = pd.read_csv(
            src,
            usecols=[c for c in header if c in used or c in events],
            dtype={**key_dtypes, **{c: str for c in events}},
            na_values=na_list,
            **_READ_FLOAT_KW,
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{src}: cannot read CSV: {exc}") from None

    n = len(df)
    dates = _parse_dates(df[date_column], src, date_column)
    geos: pd.Series | None = None
    if geo_column is not None:
        geos = df[geo_column].str.strip()
        n_missing_geo = int(geos.isna().sum() + (geos == "").sum())
        if n_missing_geo:
            raise ValueError(f"{src}: column {geo_column!r} has {n_missing_geo} missing geo value(s)")

    numeric: dict[str, pd.Series] = {}
    for col in sorted(used - {date_column, geo_column}):
        numeric[col] = _numeric(df[col], src, col)

    # ---- ad_reporting: row-major (source row, channel) so rows stay grouped by date x geo
    k = len(specs)
    zeros = np.zeros(n, dtype="float64")
    spend = np.column_stack([numeric[s.spend_column].to_numpy() for s in specs]).ravel()
    impressions = np.column_stack(
        [numeric[s.units_column].to_numpy() if s.unit == "impressions" else zeros for s in specs]
    ).ravel()
    clicks = np.column_stack(
        [numeric[s.units_column].to_numpy() if s.unit == "clicks" else zeros for s in specs]
    ).ravel()
    chan = np.tile(np.array(names, dtype=object), n)
    ad = pd.DataFrame(
        {
            "source_relation": np.tile(np.array([f"{c}.wide_table" for c in names], dtype=object), n),
            "date_day": np.repeat(dates.to_numpy(dtype=object), k),
            "platform": chan,
            "account_id": "wide",
            "account_name": src.stem,
            "campaign_id": chan,
            "campaign_name": chan,
            "clicks": clicks,
            "impressions": impressions,
            "spend": spend,
            "conversions": 0,
            "conversions_value": 0,
        },
        columns=AD_REPORTING_COLUMNS,
    )
    if geos is not None:
        ad["geo"] = np.repeat(geos.to_numpy(dtype=object), k)

    # ---- KPI
    kpi = pd.DataFrame({"date_day": dates.to_numpy(dtype=object)})
    if geos is not None:
        kpi["geo"] = geos.to_numpy(dtype=object)
    for col in kpi_cols:
        kpi[col] = numeric[col].to_numpy()

    # ---- controls: numeric columns as they are, events as one 0/1 column per level
    control_frame = kpi[["date_day", *(["geo"] if geos is not None else [])]].copy()
    for col in controls:
        control_frame[col] = numeric[col].to_numpy()
    event_levels: dict[str, list[str]] = {}
    for col in events:
        values = df[col].str.strip()
        event_levels[col] = sorted(v for v in values.dropna().unique() if v)
        for level in event_levels[col]:
            control_frame[f"{col}_{level}"] = (values == level).astype(int).to_numpy()
    control_names = [c for c in control_frame.columns if c not in ("date_day", "geo")]
    geo_table = None
    if population_used:
        pop = pd.DataFrame({"geo": geos.to_numpy(dtype=object), "population": numeric[population_used].to_numpy()})
        bad = pop[~(pop["population"] > 0)]
        if len(bad):
            raise ValueError(f"{src}: column {population_used!r} must be a positive number on every row; "
                             f"row {int(bad.index[0]) + 2} has {bad['population'].iloc[0]!r}")
        # Meridian's population is one number per geo; should it vary by date, its mean is the geo's size
        geo_table = pop.groupby("geo", sort=False)["population"].mean().reset_index()
    has_controls = bool(control_names)

    # ---- channel catalogue
    catalogue = pd.DataFrame(
        {
            "channel": names,
            "platform": names,
            "campaign_pattern": "",
            "unit": [s.unit for s in specs],
            "currency": currency,
        }
    )

    # ---- write
    _check_out_dir(out)
    (out / AD_REPORTING_FILE).parent.mkdir(parents=True, exist_ok=True)
    (out / KPI_FILE).parent.mkdir(parents=True, exist_ok=True)
    ad.to_csv(out / AD_REPORTING_FILE, index=False, na_rep="", float_format=None)
    kpi.to_csv(out / KPI_FILE, index=False, na_rep="", float_format=None)
    catalogue.to_csv(out / CHANNELS_FILE, index=False)
    if has_controls:
        (out / CONTROLS_FILE).parent.mkdir(parents=True, exist_ok=True)
        control_frame.to_csv(out / CONTROLS_FILE, index=False, na_rep="", float_format=None)
    if geo_table is not None:
        geo_table.to_csv(out / GEOS_FILE, index=False)
    _write_pipeline_yaml(out / PIPELINE_FILE, kpi_column)

    key_cols = ["date_day"] + (["geo"] if geos is not None else [])
    duplicate_keys = int(kpi.duplicated(subset=key_cols).sum())
    missing_spend = {s.channel: int(numeric[s.spend_column].isna().sum()) for s in specs}
    missing_units = {
        s.channel: int(numeric[s.units_column].isna().sum()) for s in specs if s.units_column
    }
    missing_kpi = {c: int(numeric[c].isna().sum()) for c in kpi_cols}
    unique_dates = sorted(set(dates))
    return {
        "source": str(src),
        "out_dir": str(out),
        "rows_read": n,
        "files": {
            AD_REPORTING_FILE.as_posix(): len(ad),
            KPI_FILE.as_posix(): len(kpi),
            CHANNELS_FILE.as_posix(): len(catalogue),
            PIPELINE_FILE.as_posix(): 1,
            **({CONTROLS_FILE.as_posix(): len(control_frame)} if has_controls else {}),
            **({GEOS_FILE.as_posix(): len(geo_table)} if geo_table is not None else {}),
        },
        "controls": control_names,
        "event_levels": event_levels,
        "channels": [asdict(s) for s in specs],
        "geos": list(dict.fromkeys(geos)) if geos is not None else None,
        "n_geos": len(set(geos)) if geos is not None else 0,
        "date_range": [unique_dates[0], unique_dates[-1]] if unique_dates else None,
        "n_dates": len(unique_dates),
        "kpi_column": kpi_column,
        "kpi_columns": kpi_cols,
        "currency": currency,
        "missing": {
            "spend": missing_spend,
            "units": missing_units,
            "kpi": missing_kpi,
            "controls": {c: int(numeric[c].isna().sum()) for c in controls},
            "spend_total": sum(missing_spend.values()),
            "units_total": sum(missing_units.values()),
            "kpi_total": sum(missing_kpi.values()),
        },
        "duplicate_date_geo_rows": duplicate_keys,
        "ignored_columns": ignored,
    }


# --------------------------------------------------------------------------- CLI

def parse_channel_arg(text: str) -> ChannelSpec:
    """Parse ``name:unit:units_col:spend_col`` (``units_col`` empty for spend-only;
    ``name:spend:spend_col`` is accepted too)."""
    parts = text.split(":")
    if len(parts) == 3 and parts[1] == "spend":
        parts = [parts[0], "spend", "", parts[2]]
    if len(parts) != 4:
        raise ValueError(
            f"--channel {text!r}: expected name:unit:units_col:spend_col "
            "(units_col empty for spend-only, e.g. tv:spend::tv_S)"
        )
    name, unit, units_col, spend_col = (p.strip() for p in parts)
    return ChannelSpec(name.lower(), unit.lower(), units_col or None, spend_col)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mmm-convert-wide",
        description="Convert a wide MMM table (one row per date [x geo], per-channel unit and "
        "spend columns, a KPI column) into the mmm_pipeline input-contract folder.",
    )
    p.add_argument("src", help="wide CSV file")
    p.add_argument("out_dir", help="output contract folder (created; should be empty)")
    p.add_argument("--preset", choices=sorted(PRESETS), help="defaults for Meridian's or Robyn's demo tables; "
                   "explicit options override them")
    p.add_argument("--date-column", help="date column (default: time)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--geo-column", help="geo column (default: geo)")
    g.add_argument("--no-geo", action="store_true", help="national table: no geo column")
    p.add_argument("--kpi-column", help="KPI column (default: conversions)")
    p.add_argument("--extra-kpi", nargs="+", action="extend", default=[], metavar="COL",
                   help="further KPI columns copied into kpi/kpi.csv")
    p.add_argument("--channel", action="append", default=[], metavar="NAME:UNIT:UNITS_COL:SPEND_COL",
                   help="explicit channel (repeatable); unit is impressions, clicks or spend; "
                   "UNITS_COL empty for spend-only. Without any, channels are auto-detected.")
    p.add_argument("--currency", default="USD", help="currency written to channels.csv (default: USD)")
    p.add_argument("--control", action="append", default=None, metavar="COL",
                   help="numeric control column copied to controls/controls.csv (repeatable; default: the "
                   "preset's, or every *_control column)")
    p.add_argument("--event", action="append", default=None, metavar="COL",
                   help="event column: one 0/1 control per level (repeatable)")
    p.add_argument("--population-column", metavar="COL",
                   help="geo population column written to geos.csv, so the geos are modelled per capita "
                   "(default: population, when the table has it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    kwargs: dict[str, Any] = dict(MERIDIAN_PRESET)
    if args.preset:
        kwargs.update(PRESETS[args.preset])
    if args.date_column:
        kwargs["date_column"] = args.date_column
    if args.no_geo:
        kwargs["geo_column"] = None
    elif args.geo_column:
        kwargs["geo_column"] = args.geo_column
    if args.kpi_column:
        kwargs["kpi_column"] = args.kpi_column
    if args.control is not None:
        kwargs["control_columns"] = args.control
    if args.event is not None:
        kwargs["event_columns"] = args.event
    if args.population_column:
        kwargs["population_column"] = args.population_column
    try:
        if args.channel:
            kwargs["channels"] = [parse_channel_arg(c) for c in args.channel]
        summary = convert_wide_table(
            args.src,
            args.out_dir,
            extra_kpi_columns=args.extra_kpi,
            currency=args.currency,
            **kwargs,
        )
    except ValueError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
