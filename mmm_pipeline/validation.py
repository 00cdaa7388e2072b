"""Great Expectations 1.x suites for the pipeline's tables, and a small runner.

The Dagster asset checks read a table from DuckDB into pandas, pick one of the
suites below (a :class:`SuiteSpec`: expectations with their runtime values as
suite parameters) and run it through :func:`mmm_pipeline.data_docs.validate`
(a file-backed context with a Checkpoint per check, so every result is a Data
Docs page); :func:`run_suite` runs the same expectations in an ephemeral
context (tests, no files). Either returns :class:`SuiteOutcome`, plain data
(no GX objects) that the checks turn into check metadata (``summary()`` and
``to_markdown()``, plus ``data_docs_url``).

Design notes
------------
* ``great_expectations`` is imported lazily (inside functions): importing it
  costs seconds, and this module is imported by the Dagster code location.
  ``GX_ANALYTICS_ENABLED=false`` is set before the first import, and the
  context is created with analytics and progress bars off, so validation
  prints nothing.
* For :func:`run_suite`, one ephemeral (in-memory) GX context and one pandas
  datasource are created per process and reused.  Every :func:`run_suite` call registers a dataframe
  asset under a unique name (``<suite>-<uuid>``) and deletes it again
  afterwards, so calls never collide.  A process-wide lock serialises runs
  (the GX context is not thread safe).
* ``dagster-ge`` is not used: it pins GX < 1.

Dates
-----
DuckDB ``DATE`` columns arrive in pandas as ``datetime64`` (pandas Timestamps),
and pandas refuses to compare a Timestamp with a ``datetime.date``.  The
builders therefore turn every date parameter into a ``pandas.Timestamp``, and
:func:`run_suite` converts object columns holding ``datetime.date`` values to
``datetime64`` before validating, so either representation works.

Nullable key parts
------------------
``ad_group_id`` and ``ad_id`` of the raw ad reporting table are nullable but
part of its natural key.  The uniqueness expectation expects callers to
coalesce them to ``''`` first (as the SQL natural key does); GX's pandas
engine would also treat two nulls as equal (``DataFrame.duplicated``), but
other engines would not, so do not rely on it.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ExpectationOutcome",
    "SuiteOutcome",
    "run_suite",
    "raw_ad_reporting_expectations",
    "media_weekly_expectations",
    "kpi_weekly_expectations",
    "cost_per_unit_expectations",
    "lift_tests_expectations",
    "RAW_AD_REPORTING_KEY",
    "MEDIA_WEEKLY_KEY",
    "KPI_WEEKLY_KEY",
    "COST_PER_UNIT_KEY",
    "COST_UNITS",
]

#: Natural key of the raw ad reporting table (ad_group_id / ad_id coalesced to '').
RAW_AD_REPORTING_KEY: tuple[str, ...] = (
    "source_relation",
    "date_day",
    "platform",
    "account_id",
    "campaign_id",
    "ad_group_id",
    "ad_id",
    "geo",
)
_RAW_NOT_NULL: tuple[str, ...] = (
    "source_relation",
    "date_day",
    "platform",
    "account_id",
    "campaign_id",
    "geo",
    "channel",
)
MEDIA_WEEKLY_KEY: tuple[str, ...] = ("week_start", "geo", "channel")
KPI_WEEKLY_KEY: tuple[str, ...] = ("week_start", "geo")
COST_PER_UNIT_KEY: tuple[str, ...] = ("week_start", "geo", "channel")
#: Allowed values of ``marts.cost_per_unit.unit``.
COST_UNITS: tuple[str, ...] = ("impressions", "clicks", "spend")

_SAMPLE_SIZE = 5  # values shown in ExpectationOutcome.observed
_OBSERVED_MAX_CHARS = 200


# --------------------------------------------------------------------------
# Result types
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectationOutcome:
    """Result of one expectation, flattened from GX's validation result."""

    expectation: str  # e.g. "expect_column_values_to_not_be_null"
    column: str | None  # column or comma-joined columns, None for table-level
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: str | None  # observed value / partial unexpected list (<= 5 values)


@dataclass(frozen=True)
class SuiteOutcome:
    """Result of :func:`run_suite`."""

    suite: str
    success: bool
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    # file:// URL of this result's Data Docs page (runs through mmm_pipeline.data_docs only)
    data_docs_url: str | None = None

    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_markdown(self) -> str:
        """Markdown table of the failed expectations.

        ``"All N expectations passed."`` when none failed.  Expectations that
        passed only thanks to ``mostly`` (unexpected_count > 0) are listed on
        a short "Tolerated" line below, so flagged rows stay visible.
        """
        failed = self.failed()
        lines: list[str] = []
        if not failed:
            lines.append(f"All {len(self.outcomes)} expectations passed.")
        else:
            lines.append(
                f"{len(failed)} of {len(self.outcomes)} expectations failed "
                f"in suite `{_md_cell(self.suite)}`:"
            )
            lines.append("")
            lines.append("| expectation | column | unexpected | % | sample |")
            lines.append("|---|---|---:|---:|---|")
            for o in failed:
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            _md_cell(o.expectation),
                            _md_cell(o.column or "(table)"),
                            "" if o.unexpected_count is None else str(o.unexpected_count),
                            _fmt_pct(o.unexpected_percent),
                            _md_cell(o.observed or ""),
                        ]
                    )
                    + " |"
                )
        tolerated = [o for o in self.outcomes if o.success and (o.unexpected_count or 0) > 0]
        if tolerated:
            parts = [
                f"{o.expectation}({o.column or 'table'}): {o.unexpected_count} unexpected"
                f" ({_fmt_pct(o.unexpected_percent)}%)"
                for o in tolerated
            ]
            lines.append("")
            lines.append("Tolerated (within `mostly`): " + _md_cell("; ".join(parts)))
        return "\n".join(lines)

    def summary(self) -> dict:
        return {"suite": self.suite, "evaluated": len(self.outcomes), "failed": len(self.failed())}


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _fmt_pct(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.2f}" if p >= 0.01 or p == 0 else f"{p:.2g}"


# --------------------------------------------------------------------------
# GX plumbing (lazy)
# --------------------------------------------------------------------------

_LOCK = threading.RLock()
_STATE: dict[str, Any] = {}  # "pid", "context", "datasource"
_DATASOURCE_NAME = "mmm_pipeline_pandas"


def _gx():
    """Import great_expectations with analytics off (first call takes seconds)."""
    import sys

    if "great_expectations" not in sys.modules:
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        import warnings

        with warnings.catch_warnings():
            # GX's dependencies import deprecated stdlib modules (sre_constants, ...)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import great_expectations  # noqa: F401
            import great_expectations.expectations  # noqa: F401
    import great_expectations as gx

    return gx


def _gxe():
    _gx()
    import great_expectations.expectations as gxe

    return gxe


def _datasource():
    """Per-process cached ephemeral context + pandas datasource (call under _LOCK)."""
    if _STATE.get("pid") == os.getpid() and "datasource" in _STATE:
        return _STATE["datasource"]
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    no_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=no_bars,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = no_bars  # belt and braces
    datasource = context.data_sources.add_pandas(name=_DATASOURCE_NAME)
    _STATE.clear()
    _STATE.update(pid=os.getpid(), context=context, datasource=datasource)
    return datasource


def _normalise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Convert object columns of ``datetime.date`` values to datetime64 (copy only if needed)."""
    import pandas as pd

    converted: dict[str, Any] = {}
    for col in df.columns:
        s = df[col]
        if s.dtype != object:
            continue
        idx = s.first_valid_index()
        if idx is None:
            continue
        v = s.loc[idx]
        if isinstance(v, pd.Series):  # duplicate index labels
            v = v.iloc[0]
        if isinstance(v, _dt.date) and not isinstance(v, _dt.datetime):
            try:
                converted[col] = pd.to_datetime(s)
            except (TypeError, ValueError):
                pass
    if not converted:
        return df
    out = df.copy(deep=False)
    for col, values in converted.items():
        out[col] = values
    return out


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)
    return cleaned[:80] or "suite"


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------


def run_suite(suite_name: str, df: pd.DataFrame, expectations: list) -> SuiteOutcome:
    """Validate ``df`` against GX 1.x ``expectations`` and flatten the result.

    ``expectations`` are ``great_expectations.expectations`` objects (e.g. from
    the builders below).  They are copied, so the same list can be reused for
    several runs.  Identical expectations are evaluated once (an
    ExpectationSuite is set-like).  An expectation that errors (e.g. missing
    column) is reported as failed with ``observed="error: ..."``.
    """
    import copy

    gx = _gx()
    frame = _normalise_frame(df)
    result_format = {"result_format": "BASIC", "partial_unexpected_count": _SAMPLE_SIZE}

    with _LOCK:
        datasource = _datasource()
        asset_name = f"{_safe_name(suite_name)}-{uuid.uuid4().hex}"
        asset = datasource.add_dataframe_asset(name=asset_name)
        try:
            batch_def = asset.add_batch_definition_whole_dataframe("whole")
            batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
            suite = gx.ExpectationSuite(
                name=_safe_name(suite_name),
                expectations=[_detached_copy(copy, e) for e in expectations],
            )
            result = batch.validate(suite, result_format=result_format)
        finally:
            try:
                datasource.delete_asset(asset_name)
            except Exception:  # pragma: no cover - best effort cleanup
                pass

    # GX groups results by domain; report them in the order they were given.
    order = {_config_key(e.configuration): i for i, e in reversed(list(enumerate(expectations)))}
    results = sorted(
        result.results,
        key=lambda r: order.get(_config_key(r.expectation_config), len(order)),
    )
    outcomes = [_outcome(r) for r in results]
    return SuiteOutcome(
        suite=suite_name,
        success=bool(result.success) and all(o.success for o in outcomes),
        outcomes=outcomes,
    )


def _detached_copy(copy_mod, expectation):
    e = copy_mod.copy(expectation)
    if getattr(e, "id", None):
        e.id = None
    return e


def _config_key(cfg) -> tuple[str, str]:
    kwargs = {k: v for k, v in (cfg.kwargs or {}).items() if k != "batch_id"}
    return str(cfg.type), repr(sorted(kwargs.items(), key=lambda kv: kv[0]))


def _outcome(r) -> ExpectationOutcome:
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs or {})
    res = dict(r.result or {})
    exc = _exception_message(r.exception_info)

    if kwargs.get("column") is not None:
        column: str | None = str(kwargs["column"])
    elif kwargs.get("column_list"):
        column = ",".join(map(str, kwargs["column_list"]))
    elif kwargs.get("column_A") is not None:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    else:
        column = None

    if exc is not None:
        observed: str | None = f"error: {exc}"
    elif "observed_value" in res:
        observed = _fmt_value(res["observed_value"])
        if column is None and "value" in kwargs:
            observed += f" (expected {_fmt_value(kwargs['value'])})"
        elif column is None and ("min_value" in kwargs or "max_value" in kwargs):
            lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
            lo_s = "" if lo is None else _fmt_value(lo)
            hi_s = "" if hi is None else _fmt_value(hi)
            observed += f" (expected {lo_s}..{hi_s})"
    elif res.get("partial_unexpected_list"):
        observed = ", ".join(_fmt_value(v) for v in res["partial_unexpected_list"][:_SAMPLE_SIZE])
    else:
        observed = None
    if observed is not None and len(observed) > _OBSERVED_MAX_CHARS:
        observed = observed[: _OBSERVED_MAX_CHARS - 1] + "…"

    return ExpectationOutcome(
        expectation=str(cfg.type),
        column=column,
        success=bool(r.success) and exc is None,
        element_count=_int_or_none(res.get("element_count")),
        unexpected_count=_int_or_none(res.get("unexpected_count")),
        unexpected_percent=_float_or_none(res.get("unexpected_percent")),
        observed=observed,
    )


def _exception_message(info) -> str | None:
    """GX 1.x: either {raised_exception, exception_message, ...} or {metric_id: {...}}."""
    if not info:
        return None
    if "raised_exception" in info:
        if info.get("raised_exception"):
            return str(info.get("exception_message") or "exception")
        return None
    for sub in info.values():
        if isinstance(sub, dict) and sub.get("raised_exception"):
            return str(sub.get("exception_message") or "exception")
    return None


def _int_or_none(v) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _float_or_none(v) -> float | None:
    try:
        f = None if v is None else float(v)
    except (TypeError, ValueError):
        return None
    return None if f is None or math.isnan(f) else f


def _fmt_value(v) -> str:
    if isinstance(v, dict):
        return "(" + ", ".join(_fmt_value(x) for x in v.values()) + ")"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    if v is None:
        return "null"
    try:  # NaN / NaT / pd.NA; np.datetime64 -> Timestamp
        import numpy as np
        import pandas as pd

        if pd.isna(v):
            return "null"
        if isinstance(v, np.datetime64):
            v = pd.Timestamp(v)
        elif isinstance(v, np.generic):
            v = v.item()
    except (TypeError, ValueError):
        pass
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, _dt.datetime):
        if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
            return v.date().isoformat()
        return v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    text = str(v)
    if text.endswith("T00:00:00") and len(text) == 19:  # GX-serialised midnight datetimes
        return text[:10]
    return text


# --------------------------------------------------------------------------
# Suite builders
# --------------------------------------------------------------------------


def _ts(d) -> Any:
    """Date-like -> pandas.Timestamp (DuckDB DATE columns arrive as datetime64)."""
    import pandas as pd

    return pd.Timestamp(d)


def _unique_list(values: Iterable) -> list:
    seen: dict = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def _not_null(gxe, columns: Sequence[str]) -> list:
    return [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns]


def _non_negative(gxe, columns: Sequence[str]) -> list:
    return [gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0) for c in columns]


def _param(name: str) -> dict:
    """A GX suite parameter reference: the stored suite keeps it, each run passes the value."""
    return {"$PARAMETER": name}


@dataclass(frozen=True)
class SuiteSpec:
    """A suite whose runtime values (week lists, date ranges, catalogues) are suite parameters.

    ``build(p)`` returns the expectations with ``p(name)`` in place of each
    runtime value: :meth:`template` is what the Data Docs context stores (so a
    new week does not rebuild the suite), :meth:`expectations` the same list
    with the values filled in (for :func:`run_suite`).
    """

    name: str
    build: Any
    parameters: dict = field(default_factory=dict)

    def template(self) -> list:
        return self.build(_param)

    def expectations(self) -> list:
        return self.build(self.parameters.__getitem__)


def _raw_ad_reporting(p) -> list:
    gxe = _gxe()
    return [
        *_not_null(gxe, _RAW_NOT_NULL),
        *_non_negative(gxe, ("clicks", "impressions", "spend")),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(RAW_AD_REPORTING_KEY)),
        gxe.ExpectColumnValuesToBeBetween(column="date_day", min_value=p("min_date"), max_value=p("max_date")),
        gxe.ExpectColumnValuesToBeInSet(column="platform", value_set=p("platforms")),
    ]


def raw_ad_reporting_suite(min_date: _dt.date, max_date: _dt.date, platforms: list[str]) -> SuiteSpec:
    """Raw ad reporting table (one row per day x ad x geo, unioned across platforms).

    Expects ``ad_group_id`` / ``ad_id`` coalesced to ``''`` (not null) so the
    natural key :data:`RAW_AD_REPORTING_KEY` is well defined.
    """
    return SuiteSpec("raw_ad_reporting", _raw_ad_reporting, {
        "min_date": _ts(min_date), "max_date": _ts(max_date), "platforms": _unique_list(platforms)})


def raw_ad_reporting_expectations(min_date: _dt.date, max_date: _dt.date, platforms: list[str]) -> list:
    return raw_ad_reporting_suite(min_date, max_date, platforms).expectations()


def _media_weekly(p) -> list:
    gxe = _gxe()
    return [
        *_not_null(gxe, MEDIA_WEEKLY_KEY),
        *_non_negative(gxe, ("units", "spend")),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(MEDIA_WEEKLY_KEY)),
        gxe.ExpectTableRowCountToEqual(value=p("row_count")),
        gxe.ExpectColumnValuesToBeInSet(column="week_start", value_set=p("weeks")),
        gxe.ExpectColumnValuesToBeInSet(column="geo", value_set=p("geos")),
        gxe.ExpectColumnValuesToBeInSet(column="channel", value_set=p("channels")),
        # spend booked in a week without delivered units: tolerated up to 1 % of rows
        gxe.ExpectColumnValuesToBeInSet(column="spend_without_units", value_set=[False], mostly=0.99),
    ]


def media_weekly_suite(weeks: list[_dt.date], geos: Iterable[str], channels: Iterable[str]) -> SuiteSpec:
    """``staging.media_weekly``: a dense week x geo x channel panel."""
    weeks_ts = _unique_list(_ts(w) for w in weeks)
    geos_l, channels_l = _unique_list(geos), _unique_list(channels)
    return SuiteSpec("staging_media_weekly", _media_weekly, {
        "row_count": len(weeks_ts) * len(geos_l) * len(channels_l), "weeks": weeks_ts, "geos": geos_l,
        "channels": channels_l})


def media_weekly_expectations(weeks: list[_dt.date], geos: Iterable[str], channels: Iterable[str]) -> list:
    return media_weekly_suite(weeks, geos, channels).expectations()


def _kpi_weekly(p) -> list:
    gxe = _gxe()
    return [
        *_not_null(gxe, (*KPI_WEEKLY_KEY, "kpi_value")),
        *_non_negative(gxe, ("kpi_value",)),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(KPI_WEEKLY_KEY)),
        gxe.ExpectTableRowCountToEqual(value=p("row_count")),
        gxe.ExpectColumnValuesToBeInSet(column="week_start", value_set=p("weeks")),
        gxe.ExpectColumnValuesToBeInSet(column="geo", value_set=p("geos")),
    ]


def kpi_weekly_suite(weeks: list[_dt.date], geos: Iterable[str]) -> SuiteSpec:
    """``staging.kpi_weekly``: a dense week x geo panel of the KPI."""
    weeks_ts = _unique_list(_ts(w) for w in weeks)
    geos_l = _unique_list(geos)
    return SuiteSpec("staging_kpi_weekly", _kpi_weekly,
                     {"row_count": len(weeks_ts) * len(geos_l), "weeks": weeks_ts, "geos": geos_l})


def kpi_weekly_expectations(weeks: list[_dt.date], geos: Iterable[str]) -> list:
    return kpi_weekly_suite(weeks, geos).expectations()


def _cost_per_unit(p) -> list:
    gxe = _gxe()
    return [
        *_not_null(gxe, (*COST_PER_UNIT_KEY, "cost_per_unit")),
        gxe.ExpectColumnValuesToBeBetween(column="cost_per_unit", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeInSet(column="unit", value_set=list(COST_UNITS)),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(COST_PER_UNIT_KEY)),
    ]


def cost_per_unit_suite() -> SuiteSpec:
    """``marts.cost_per_unit``."""
    return SuiteSpec("cost_per_unit", _cost_per_unit)


def cost_per_unit_expectations() -> list:
    return cost_per_unit_suite().expectations()


def _lift_tests(p) -> list:
    gxe = _gxe()
    return [
        gxe.ExpectColumnValuesToNotBeNull(column="test_id"),
        gxe.ExpectColumnValuesToBeUnique(column="test_id"),
        gxe.ExpectColumnValuesToNotBeNull(column="sigma"),
        gxe.ExpectColumnValuesToBeBetween(column="sigma", min_value=0, strict_min=True),
        gxe.ExpectColumnValuesToBeInSet(column="channel", value_set=p("channels")),
        *_not_null(gxe, ("start_date", "end_date")),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="end_date",
            column_B="start_date",
            or_equal=True,
            ignore_row_if="either_value_is_missing",
        ),
    ]


def lift_tests_suite(channels: Iterable[str]) -> SuiteSpec:
    """Raw lift tests (calibration experiments)."""
    return SuiteSpec("raw_lift_tests", _lift_tests, {"channels": _unique_list(channels)})


def lift_tests_expectations(channels: Iterable[str]) -> list:
    return lift_tests_suite(channels).expectations()


# --------------------------------------------------------------------------
# The raw ad-reporting suite as SQL, for tables too large for a pandas batch


def raw_ad_reporting_sql_outcome(con, table: str, min_date: _dt.date, max_date: _dt.date,
                                 platforms: list[str]) -> SuiteOutcome:
    """The same expectations as :func:`raw_ad_reporting_expectations`, counted in DuckDB.

    A GX pandas suite costs about 2 s per million rows plus building the
    DataFrame; the SQL counts cost a fraction of a second, so large loads are
    validated here with identical rules and the same outcome shape.
    """
    total = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    outcomes = []

    def add(expectation: str, column: str | None, bad: int, sample: str | None = None) -> None:
        outcomes.append(ExpectationOutcome(
            expectation, column, bad == 0, total, bad,
            (100.0 * bad / total) if total else 0.0, sample,
        ))

    for c in _RAW_NOT_NULL:
        add("expect_column_values_to_not_be_null", c,
            con.execute(f'SELECT count(*) FROM {table} WHERE "{c}" IS NULL').fetchone()[0])
    for c in ("clicks", "impressions", "spend"):
        add("expect_column_values_to_be_between", c,
            con.execute(f'SELECT count(*) FROM {table} WHERE "{c}" < 0').fetchone()[0])
    key = ", ".join(f'"{c}"' for c in RAW_AD_REPORTING_KEY)
    # Group on a hash first (cheap), then count exactly on the candidate rows only.
    dup = con.execute(
        f"""WITH c AS (SELECT hash({key}) h FROM {table} GROUP BY 1 HAVING count(*) > 1)
            SELECT coalesce(sum(n), 0) FROM (
                SELECT count(*) n FROM {table} SEMI JOIN c ON hash({key}) = c.h GROUP BY {key} HAVING n > 1)"""
    ).fetchone()[0]
    add("expect_compound_columns_to_be_unique", ",".join(RAW_AD_REPORTING_KEY), int(dup))
    out_of_range = con.execute(
        f"SELECT count(*) FROM {table} WHERE date_day < ? OR date_day > ?", [min_date, max_date]
    ).fetchone()[0]
    add("expect_column_values_to_be_between", "date_day", out_of_range)
    unknown = con.execute(
        f"SELECT count(*), list(DISTINCT platform)[:5] FROM {table} "
        f"WHERE platform NOT IN (SELECT unnest(?::VARCHAR[]))", [list(platforms)]
    ).fetchone()
    add("expect_column_values_to_be_in_set", "platform", unknown[0], str(unknown[1]) if unknown[0] else None)
    return SuiteOutcome("raw_ad_reporting (sql)", all(o.success for o in outcomes), outcomes)
