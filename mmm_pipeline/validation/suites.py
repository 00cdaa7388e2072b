"""The expectation suites of the pipeline's tables (:class:`SuiteSpec` builders), and the raw
ad-reporting suite counted in SQL for tables too large for a pandas batch."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mmm_pipeline.validation.outcomes import ExpectationOutcome, SuiteOutcome
from mmm_pipeline.validation.runtime import gx_expectations

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
    gxe = gx_expectations()
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
    gxe = gx_expectations()
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
    gxe = gx_expectations()
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


CONTROLS_WEEKLY_KEY: tuple[str, ...] = ("week_start", "geo", "control")


def _controls_weekly(p) -> list:
    gxe = gx_expectations()
    return [
        *_not_null(gxe, (*CONTROLS_WEEKLY_KEY, "value")),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=list(CONTROLS_WEEKLY_KEY)),
        gxe.ExpectColumnValuesToBeInSet(column="geo", value_set=p("geos")),
        gxe.ExpectColumnValuesToBeInSet(column="control", value_set=p("controls")),
        gxe.ExpectColumnValuesToBeInSet(column="aggregation", value_set=["mean", "sum"]),
        # finite: an inf or 1e308 would reach the model's scaling (the load quarantines them)
        gxe.ExpectColumnValuesToBeBetween(column="value", min_value=p("min_value"), max_value=p("max_value")),
    ]


def controls_weekly_suite(geos: Iterable[str], controls: Iterable[str], max_abs_value: float) -> SuiteSpec:
    """``staging.controls_weekly``: one value per week x geo x control (the week coverage is checked
    beside the suite, naming the missing weeks)."""
    return SuiteSpec("staging_controls_weekly", _controls_weekly, {
        "geos": _unique_list(geos), "controls": _unique_list(controls),
        "min_value": -float(max_abs_value), "max_value": float(max_abs_value)})


def _cost_per_unit(p) -> list:
    gxe = gx_expectations()
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
    gxe = gx_expectations()
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
