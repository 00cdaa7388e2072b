"""Weekly staging: ISO weeks (Monday start) x geo x channel, with a complete date spine.

Geo handling (DESIGN.md): when the KPI has geos and every ad row has a geo,
the model is geo-level. Ad rows without a geo are split across the KPI's geos
by `geo_weights` from pipeline.yaml; without weights such data is modelled
nationally (geo `national`, KPI summed over geos), because splitting media by
the KPI itself would leak the outcome into the media.

Input grain: daily rows, or weekly rows dated on Mondays (one row per week),
as wide MMM tables usually are; both give the same weekly tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import pandas as pd

from mmm_pipeline.ingestion.ingest import NATIONAL
from mmm_pipeline.warehouse import register, unregister

MEDIA_COLUMNS = [
    "week_start", "geo", "channel", "unit", "units", "spend", "clicks", "impressions",
    "no_media", "days_in_week", "incomplete_week", "spend_without_units",
]
KPI_COLUMNS = ["week_start", "geo", "kpi_name", "kpi_value", "days_in_week", "days_reported", "incomplete_week"]


@dataclass(frozen=True)
class Calendar:
    grain: str          # daily | weekly
    first_day: date
    last_day: date      # last day covered by the data (a weekly row covers 7 days)
    geo_mode: str       # geo | national
    geos: list[str]

    @property
    def weeks(self) -> list[date]:
        start = self.first_day - timedelta(days=self.first_day.weekday())
        return [start + timedelta(weeks=i) for i in range((self.last_day - start).days // 7 + 1)]

    @property
    def complete_weeks(self) -> list[date]:
        return [w for w in self.weeks if w >= self.first_day and w + timedelta(days=6) <= self.last_day]


def build_calendar(con: duckdb.DuckDBPyConnection, geo_weights: dict[str, float] | None) -> Calendar:
    ad_min, ad_max, ad_non_monday, ad_multi = con.execute(
        """SELECT min(date_day), max(date_day), count(*) FILTER (WHERE isodow(date_day) <> 1),
                  (SELECT count(*) FROM (SELECT date_trunc('week', date_day) w, count(DISTINCT date_day) n
                   FROM raw.ad_reporting_current GROUP BY 1 HAVING n > 1))
           FROM raw.ad_reporting_current"""
    ).fetchone()
    kpi_min, kpi_max, kpi_non_monday = con.execute(
        "SELECT min(date_day), max(date_day), count(*) FILTER (WHERE isodow(date_day) <> 1) FROM raw.kpi_current"
    ).fetchone()
    if ad_min is None or kpi_min is None:
        raise ValueError(
            "staging needs loaded ad reporting and KPI rows; "
            f"have ad rows: {ad_min is not None}, KPI rows: {kpi_min is not None}"
        )
    weekly = ad_non_monday == 0 and kpi_non_monday == 0 and ad_multi == 0
    first_day = min(ad_min, kpi_min)
    last_day = max(ad_max, kpi_max) + (timedelta(days=6) if weekly else timedelta(0))

    kpi_geos = [g for (g,) in con.execute(
        "SELECT DISTINCT geo FROM raw.kpi_current WHERE geo IS NOT NULL ORDER BY 1").fetchall()]
    ad_geos = [g for (g,) in con.execute(
        "SELECT DISTINCT geo FROM raw.ad_reporting_current WHERE geo IS NOT NULL ORDER BY 1").fetchall()]
    ad_without_geo = con.execute(
        "SELECT count(*) FROM raw.ad_reporting_current WHERE geo IS NULL").fetchone()[0]
    if kpi_geos and (ad_without_geo == 0 or geo_weights):
        geos = sorted(set(kpi_geos) | set(ad_geos))
        mode = "geo"
    else:
        geos, mode = [NATIONAL], "national"
    return Calendar("weekly" if weekly else "daily", first_day, last_day, mode, geos)


def build_media_weekly(con: duckdb.DuckDBPyConnection, cal: Calendar,
                       geo_weights: dict[str, float] | None) -> pd.DataFrame:
    weights = pd.DataFrame(
        {"geo": list((geo_weights or {}).keys()), "w": list((geo_weights or {}).values())},
        columns=["geo", "w"],
    )
    if len(weights):
        weights["w"] = weights["w"] / weights["w"].sum()
    register(con, "_geo_weights", weights)
    # Rows with a geo keep it; rows without one are split by geo_weights (geo model)
    # or everything is summed to `national`. Aggregate first, then split the small result.
    metrics = "sum(clicks) AS clicks, sum(impressions) AS impressions, sum(spend) AS spend"
    week = "CAST(date_trunc('week', date_day) AS DATE) AS week_start"
    if cal.geo_mode == "geo":
        agg_sql = f"""
            SELECT {week}, geo, channel, {metrics} FROM raw.ad_reporting_current
            WHERE geo IS NOT NULL GROUP BY ALL
            UNION ALL
            SELECT n.week_start, g.geo, n.channel, n.clicks * g.w, n.impressions * g.w, n.spend * g.w
            FROM (SELECT {week}, channel, {metrics} FROM raw.ad_reporting_current
                  WHERE geo IS NULL GROUP BY ALL) n, _geo_weights g"""
        agg_sql = f"SELECT week_start, geo, channel, {metrics} FROM ({agg_sql}) GROUP BY ALL"
    else:
        agg_sql = f"SELECT {week}, '{NATIONAL}' AS geo, channel, {metrics} FROM raw.ad_reporting_current GROUP BY ALL"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _media_agg AS {agg_sql}")
    unregister(con, "_geo_weights")
    register(con, "_weeks", pd.DataFrame({"week_start": pd.to_datetime(cal.weeks).date}))
    register(con, "_geos", pd.DataFrame({"geo": cal.geos}))
    df = con.execute(
        f"""
        WITH agg AS (SELECT * FROM _media_agg), channels AS (
            SELECT channel, any_value(unit) AS unit FROM raw.ad_reporting_current GROUP BY channel
        )
        SELECT w.week_start, g.geo, c.channel, c.unit,
               CASE c.unit WHEN 'impressions' THEN coalesce(agg.impressions, 0)
                           WHEN 'clicks' THEN coalesce(agg.clicks, 0)
                           ELSE coalesce(agg.spend, 0) END AS units,
               coalesce(agg.spend, 0) AS spend, coalesce(agg.clicks, 0) AS clicks,
               coalesce(agg.impressions, 0) AS impressions,
               agg.week_start IS NULL AS no_media
        FROM _weeks w CROSS JOIN _geos g CROSS JOIN channels c
        LEFT JOIN agg ON agg.week_start = w.week_start AND agg.geo = g.geo AND agg.channel = c.channel
        ORDER BY w.week_start, g.geo, c.channel
        """
    ).df()
    unregister(con, "_weeks")
    unregister(con, "_geos")
    con.execute("DROP TABLE IF EXISTS _media_agg")
    df["week_start"] = pd.to_datetime(df["week_start"]).dt.date
    df["days_in_week"] = [_days_covered(w, cal) for w in df["week_start"]]
    df["incomplete_week"] = df["days_in_week"] < 7
    df["spend_without_units"] = (df["spend"] > 0) & (df["units"] <= 0)
    return df[MEDIA_COLUMNS]


def _days_covered(week: date, cal: Calendar) -> int:
    start = max(week, cal.first_day)
    end = min(week + timedelta(days=6), cal.last_day)
    return max((end - start).days + 1, 0)


def build_kpi_weekly(con: duckdb.DuckDBPyConnection, cal: Calendar) -> pd.DataFrame:
    geo = "geo" if cal.geo_mode == "geo" else f"'{NATIONAL}'"
    df = con.execute(
        f"""SELECT CAST(date_trunc('week', date_day) AS DATE) AS week_start, {geo} AS geo,
                   any_value(kpi_name) AS kpi_name, sum(kpi_value) AS kpi_value,
                   count(DISTINCT date_day) AS days_reported
            FROM raw.kpi_current GROUP BY ALL ORDER BY 1, 2"""
    ).df()
    df["week_start"] = pd.to_datetime(df["week_start"]).dt.date
    df["days_in_week"] = [_days_covered(w, cal) for w in df["week_start"]]
    if cal.grain == "weekly":
        df["days_reported"] = df["days_in_week"]
    df["incomplete_week"] = df["days_in_week"] < 7
    return df[KPI_COLUMNS]


def _week_gaps(weekly: pd.DataFrame, cal: Calendar, weeks: list[date], extra: tuple = (),
               what: str = "KPI") -> list[tuple]:
    """(geo, week_start, *extra, problem) for each geo x week of `weeks` that `weekly` (indexed by
    geo, week_start, *extra) lacks or that is short of days."""
    problems = []
    for g in cal.geos:
        for w in weeks:
            key = (g, w, *extra)
            if key not in weekly.index:
                problems.append((*key, f"no {what} rows"))
                continue
            row = weekly.loc[key]
            if int(row["days_reported"]) < int(row["days_in_week"]):
                problems.append((*key, f"{int(row['days_reported'])} of {int(row['days_in_week'])} days reported"))
    return problems


def _kpi_range(kpi_weekly: pd.DataFrame, cal: Calendar) -> list[date]:
    first, last = kpi_weekly["week_start"].min(), kpi_weekly["week_start"].max()
    return [w for w in cal.weeks if first <= w <= last]


def missing_kpi_weeks(kpi_weekly: pd.DataFrame, cal: Calendar) -> pd.DataFrame:
    """(geo, week_start, problem) for every KPI week that is absent or short of days.

    Every geo must report every week between the KPI's first and last week;
    in daily data a week must also have a row for each day it covers.
    """
    cols = ["geo", "week_start", "problem"]
    if kpi_weekly.empty:
        return pd.DataFrame(columns=cols)
    have = kpi_weekly.set_index(["geo", "week_start"])
    return pd.DataFrame(_week_gaps(have, cal, _kpi_range(kpi_weekly, cal)), columns=cols)


CONTROL_COLUMNS = ["week_start", "geo", "control", "aggregation", "value", "days_reported", "days_in_week",
                   "incomplete_week"]


def build_controls_weekly(con: duckdb.DuckDBPyConnection, cal: Calendar,
                          aggregation: dict[str, str] | None = None) -> pd.DataFrame:
    """Controls per ISO week, geo and control (long: one row each), from `raw.controls_current`.

    A week is the mean of its days (default) or their sum (pipeline.yaml `controls: {col: sum}`).
    In a geo model a row without a geo holds for every geo, and a geo's own row wins over it on the
    same day; in a national model the geos' values of a day are averaged. Controls of geos the model
    does not have are left out. A configured column no controls file has fails, naming it.
    """
    aggregation = dict(aggregation or {})
    names = [c for (c,) in con.execute("SELECT DISTINCT control FROM raw.controls_current ORDER BY 1").fetchall()]
    unknown = sorted(set(aggregation) - set(names))
    if unknown:
        raise ValueError(f"pipeline.yaml controls: {unknown} are not columns of any controls/ file "
                         f"(the files have {names or 'no controls'})")
    if not names:
        return empty_controls_weekly()
    register(con, "_control_agg", pd.DataFrame({"control": names,
                                                "aggregation": [aggregation.get(c, "mean") for c in names]}))
    register(con, "_geos", pd.DataFrame({"geo": cal.geos}))
    if cal.geo_mode == "geo":
        daily = """
            SELECT d.date_day, g.geo, d.control, d.value FROM raw.controls_current d
            JOIN _geos g ON g.geo = d.geo
            UNION ALL
            SELECT n.date_day, g.geo, n.control, n.value FROM raw.controls_current n CROSS JOIN _geos g
            WHERE n.geo IS NULL AND NOT EXISTS (
                SELECT 1 FROM raw.controls_current o
                WHERE o.geo = g.geo AND o.date_day = n.date_day AND o.control = n.control)"""
    else:
        daily = f"""SELECT date_day, '{NATIONAL}' AS geo, control, avg(value) AS value
                    FROM raw.controls_current GROUP BY ALL"""
    df = con.execute(
        f"""WITH daily AS ({daily})
            SELECT CAST(date_trunc('week', d.date_day) AS DATE) AS week_start, d.geo, d.control, a.aggregation,
                   CASE a.aggregation WHEN 'sum' THEN sum(d.value) ELSE avg(d.value) END AS value,
                   count(DISTINCT d.date_day) AS days_reported
            FROM daily d JOIN _control_agg a USING (control)
            GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3"""
    ).df()
    unregister(con, "_control_agg")
    unregister(con, "_geos")
    df["week_start"] = pd.to_datetime(df["week_start"]).dt.date
    df["days_in_week"] = [_days_covered(w, cal) for w in df["week_start"]]
    if cal.grain == "weekly":
        df["days_reported"] = df["days_in_week"]
    df["incomplete_week"] = df["days_in_week"] < 7
    return df[CONTROL_COLUMNS]


def empty_controls_weekly() -> pd.DataFrame:
    """No controls: the table's columns with their types (so the history table is typed)."""
    types = {"week_start": "datetime64[ns]", "geo": "object", "control": "object", "aggregation": "object",
             "value": "float64", "days_reported": "int64", "days_in_week": "int64", "incomplete_week": "bool"}
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})[CONTROL_COLUMNS]


def missing_control_weeks(controls_weekly: pd.DataFrame, kpi_weekly: pd.DataFrame, cal: Calendar) -> pd.DataFrame:
    """(geo, week_start, control, problem) for every week of the KPI's range a control lacks or is
    short of days in: the model needs every control in every modelled week (never filled with 0)."""
    cols = ["geo", "week_start", "control", "problem"]
    if controls_weekly.empty or kpi_weekly.empty:
        return pd.DataFrame(columns=cols)
    have = controls_weekly.set_index(["geo", "week_start", "control"])
    weeks = _kpi_range(kpi_weekly, cal)
    return pd.DataFrame([gap for control in sorted(controls_weekly["control"].unique())
                         for gap in _week_gaps(have, cal, weeks, (control,), "control")], columns=cols)


def controls_wide(controls_weekly: pd.DataFrame) -> pd.DataFrame:
    """`staging.controls_weekly` as the model reads it: week_start, geo, one column per control."""
    if controls_weekly.empty:
        return pd.DataFrame(columns=["week_start", "geo"])
    wide = controls_weekly.pivot_table(index=["week_start", "geo"], columns="control", values="value",
                                       aggfunc="first").reset_index()
    wide.columns.name = None
    return wide
