"""Tests for mmm_pipeline.validation (Great Expectations 1.x suites + runner).

GX takes seconds to import; the first suite builder call imports it once per
test session and the cached ephemeral context is shared by every test.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline import validation as v

ROOT = Path(__file__).resolve().parents[1]

PLATFORMS = ["google_ads", "facebook_ads", "tiktok_ads"]
MIN_DATE, MAX_DATE = dt.date(2024, 1, 1), dt.date(2024, 3, 31)
WEEKS = [dt.date(2024, 1, 1) + dt.timedelta(weeks=i) for i in range(6)]
GEOS = ["north", "south"]
CHANNELS = ["search", "social", "tv"]


# --------------------------------------------------------------------------
# Clean frames (dtypes as DuckDB hands them over: DATE -> datetime64)
# --------------------------------------------------------------------------


def raw_frame(n: int = 60) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame(
        {
            "source_file": "ads.csv",
            "source_row": i,
            "source_relation": "ad_reporting",
            "date_day": pd.to_datetime(MIN_DATE) + pd.to_timedelta(i % 90, unit="D"),
            "platform": np.array(PLATFORMS)[i % 3],
            "account_id": "acc1",
            "campaign_id": [f"cmp{k}" for k in i // 90],
            "ad_group_id": ["" if k % 2 else f"ag{k % 4}" for k in i],  # '' = null coalesced
            "ad_id": "",
            "geo": np.array(GEOS)[i % 2],
            "channel": np.array(CHANNELS)[i % 3],
            "clicks": (i % 10).astype("int64"),
            "impressions": (i % 100).astype("int64"),
            "spend": (i % 7) * 1.5,
            "conversions": 0.0,
            "conversions_value": 0.0,
        }
    )


def media_frame() -> pd.DataFrame:
    idx = pd.MultiIndex.from_product(
        [pd.to_datetime(WEEKS), GEOS, CHANNELS], names=["week_start", "geo", "channel"]
    )
    df = idx.to_frame(index=False)
    n = len(df)
    df["unit"] = "clicks"
    df["units"] = 10.0
    df["spend"] = 5.0
    df["clicks"] = 10
    df["impressions"] = 100
    df["no_media"] = False
    df["incomplete_week"] = False
    df["spend_without_units"] = False
    assert n == len(WEEKS) * len(GEOS) * len(CHANNELS)
    return df


def kpi_frame() -> pd.DataFrame:
    idx = pd.MultiIndex.from_product([pd.to_datetime(WEEKS), GEOS], names=["week_start", "geo"])
    df = idx.to_frame(index=False)
    df["kpi_value"] = 100.0
    df["days_in_week"] = 7
    df["incomplete_week"] = False
    return df


def cpu_frame() -> pd.DataFrame:
    df = media_frame()[["week_start", "geo", "channel", "unit", "units", "spend"]].copy()
    df["cost_per_unit"] = 0.5
    df["cpm"] = 50.0
    df["imputed"] = False
    return df


def lift_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "test_id": ["t1", "t2", "t3"],
            "channel": ["search", "social", "tv"],
            "geo": ["north", "south", "north"],
            "start_date": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]),
            "end_date": pd.to_datetime(["2024-01-28", "2024-02-28", "2024-03-28"]),
            "delta_spend": [1000.0, 500.0, 2000.0],
            "delta_y": [50.0, 10.0, 80.0],
            "sigma": [5.0, 3.0, 8.0],
        }
    )


@pytest.fixture(scope="module")
def suites() -> dict:
    """Build every suite once (first call imports GX)."""
    return {
        "raw": v.raw_ad_reporting_expectations(MIN_DATE, MAX_DATE, PLATFORMS),
        "media": v.media_weekly_expectations(WEEKS, GEOS, CHANNELS),
        "kpi": v.kpi_weekly_expectations(WEEKS, GEOS),
        "cpu": v.cost_per_unit_expectations(),
        "lift": v.lift_tests_expectations(CHANNELS),
    }


FRAMES = {
    "raw": raw_frame,
    "media": media_frame,
    "kpi": kpi_frame,
    "cpu": cpu_frame,
    "lift": lift_frame,
}


def only_failure(outcome: v.SuiteOutcome) -> v.ExpectationOutcome:
    failed = outcome.failed()
    assert len(failed) == 1, outcome.to_markdown()
    return failed[0]


# --------------------------------------------------------------------------
# Module hygiene
# --------------------------------------------------------------------------


def test_import_is_lazy_and_dagster_free():
    code = (
        "import sys, mmm_pipeline.validation as m; "
        "print('great_expectations' in sys.modules, 'dagster' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------
# Clean frames pass
# --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(FRAMES))
def test_clean_frame_passes(suites, name):
    out = v.run_suite(name, FRAMES[name](), suites[name])
    assert out.success, out.to_markdown()
    assert out.failed() == []
    assert len(out.outcomes) == len(suites[name])
    assert out.to_markdown() == f"All {len(suites[name])} expectations passed."
    assert out.summary() == {"suite": name, "evaluated": len(suites[name]), "failed": 0}
    for o in out.outcomes:
        assert o.expectation.startswith("expect_")


def test_outcomes_follow_given_order(suites):
    out = v.run_suite("raw", raw_frame(), suites["raw"])
    assert [o.expectation for o in out.outcomes] == [e.expectation_type for e in suites["raw"]]


# --------------------------------------------------------------------------
# Each rule fails, with the right unexpected_count
# --------------------------------------------------------------------------


def _set(col, rows, value):
    def f(df):
        df.loc[rows, col] = value
        return df

    return f


def _dup(rows):
    def f(df):
        df.loc[rows[1:], df.columns] = df.loc[[rows[0]] * (len(rows) - 1), df.columns].to_numpy()
        return df

    return f


RAW_CASES = [
    ("null_campaign", _set("campaign_id", [3, 7], None), "expect_column_values_to_not_be_null", "campaign_id", 2),
    ("null_date", _set("date_day", [1], pd.NaT), "expect_column_values_to_not_be_null", "date_day", 1),
    ("null_geo", _set("geo", [0, 1, 2], None), "expect_column_values_to_not_be_null", "geo", 3),
    ("neg_clicks", _set("clicks", [5], -1), "expect_column_values_to_be_between", "clicks", 1),
    ("neg_impr", _set("impressions", [5, 6], -3), "expect_column_values_to_be_between", "impressions", 2),
    ("neg_spend", _set("spend", [2, 4, 8], -0.01), "expect_column_values_to_be_between", "spend", 3),
    ("date_low", _set("date_day", [0], pd.Timestamp("2023-12-31")), "expect_column_values_to_be_between", "date_day", 1),
    ("date_high", _set("date_day", [0, 1], pd.Timestamp("2024-04-01")), "expect_column_values_to_be_between", "date_day", 2),
    ("bad_platform", _set("platform", [9], "snapchat_ads"), "expect_column_values_to_be_in_set", "platform", 1),
    ("dup_key", _dup([10, 11]), "expect_compound_columns_to_be_unique", ",".join(v.RAW_AD_REPORTING_KEY), 2),
]


@pytest.mark.parametrize(
    "mutate,expectation,column,count", [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES]
)
def test_raw_rules(suites, mutate, expectation, column, count):
    out = v.run_suite("raw", mutate(raw_frame()), suites["raw"])
    assert not out.success
    f = only_failure(out)
    assert (f.expectation, f.column, f.unexpected_count) == (expectation, column, count)
    assert f.element_count == 60
    assert f.observed  # a sample of the offending values


def test_raw_key_uniqueness_with_blank_ad_ids(suites):
    # two rows differing only in ad_id ('' vs 'x') are distinct keys
    df = raw_frame()
    df.loc[11, v.RAW_AD_REPORTING_KEY] = df.loc[10, v.RAW_AD_REPORTING_KEY].to_numpy()
    df.loc[11, "ad_id"] = "ad-x"
    assert v.run_suite("raw", df, suites["raw"]).success
    df.loc[11, "ad_id"] = ""
    f = only_failure(v.run_suite("raw", df, suites["raw"]))
    assert f.expectation == "expect_compound_columns_to_be_unique"
    assert f.unexpected_count == 2


def test_media_missing_week_row(suites):
    df = media_frame().iloc[1:]
    f = only_failure(v.run_suite("media", df, suites["media"]))
    assert f.expectation == "expect_table_row_count_to_equal"
    assert f.column is None and f.unexpected_count is None
    n = len(WEEKS) * len(GEOS) * len(CHANNELS)
    assert f.observed == f"{n - 1} (expected {n})"


MEDIA_CASES = [
    ("null_channel", _set("channel", [0], None), "expect_column_values_to_not_be_null", "channel", 1),
    ("neg_units", _set("units", [1, 2], -1.0), "expect_column_values_to_be_between", "units", 2),
    ("neg_spend", _set("spend", [3], -5.0), "expect_column_values_to_be_between", "spend", 1),
    ("week_not_in_set", _set("week_start", [0, 1, 2, 3, 4, 5], pd.Timestamp("2024-01-03")),
     "expect_column_values_to_be_in_set", "week_start", 6),
]


@pytest.mark.parametrize(
    "mutate,expectation,column,count", [c[1:] for c in MEDIA_CASES], ids=[c[0] for c in MEDIA_CASES]
)
def test_media_rules(suites, mutate, expectation, column, count):
    out = v.run_suite("media", mutate(media_frame()), suites["media"])
    f = only_failure(out)
    assert (f.expectation, f.column, f.unexpected_count) == (expectation, column, count)


def test_media_duplicate_key_and_unknown_geo(suites):
    df = media_frame()
    df.loc[1, ["week_start", "geo", "channel"]] = df.loc[0, ["week_start", "geo", "channel"]].to_numpy()
    df.loc[2, "geo"] = "east"
    out = v.run_suite("media", df, suites["media"])
    got = {(o.expectation, o.column): o.unexpected_count for o in out.failed()}
    assert got == {
        ("expect_compound_columns_to_be_unique", "week_start,geo,channel"): 2,
        ("expect_column_values_to_be_in_set", "geo"): 1,
    }


def test_spend_without_units_is_tolerated_up_to_one_percent(suites):
    # 2_400 rows: 24 flagged rows (1 %) pass but stay visible, 25 fail
    weeks = [dt.date(2020, 1, 6) + dt.timedelta(weeks=i) for i in range(100)]
    geos = [f"g{i}" for i in range(8)]
    idx = pd.MultiIndex.from_product(
        [pd.to_datetime(weeks), geos, CHANNELS], names=["week_start", "geo", "channel"]
    )
    df = idx.to_frame(index=False)
    df["unit"], df["units"], df["spend"] = "clicks", 1.0, 1.0
    df["clicks"], df["impressions"] = 1, 1
    df["no_media"] = df["incomplete_week"] = df["spend_without_units"] = False
    suite = v.media_weekly_expectations(weeks, geos, CHANNELS)

    df.loc[:23, "spend_without_units"] = True
    out = v.run_suite("media", df, suite)
    assert out.success
    (o,) = [o for o in out.outcomes if o.column == "spend_without_units"]
    assert o.success and o.unexpected_count == 24 and o.unexpected_percent == pytest.approx(1.0)
    md = out.to_markdown()
    assert md.startswith(f"All {len(suite)} expectations passed.")
    assert "spend_without_units" in md and "24 unexpected" in md

    df.loc[:24, "spend_without_units"] = True
    f = only_failure(v.run_suite("media", df, suite))
    assert (f.column, f.unexpected_count, f.observed) == ("spend_without_units", 25, "True, True, True, True, True")


KPI_CASES = [
    ("neg_kpi", _set("kpi_value", [0, 5], -1.0), "expect_column_values_to_be_between", "kpi_value", 2),
    ("null_kpi", _set("kpi_value", [4], np.nan), "expect_column_values_to_not_be_null", "kpi_value", 1),
    ("null_geo", _set("geo", [4], None), "expect_column_values_to_not_be_null", "geo", 1),
]


@pytest.mark.parametrize(
    "mutate,expectation,column,count", [c[1:] for c in KPI_CASES], ids=[c[0] for c in KPI_CASES]
)
def test_kpi_rules(suites, mutate, expectation, column, count):
    f = only_failure(v.run_suite("kpi", mutate(kpi_frame()), suites["kpi"]))
    assert (f.expectation, f.column, f.unexpected_count) == (expectation, column, count)


def test_kpi_duplicate_row(suites):
    df = pd.concat([kpi_frame(), kpi_frame().iloc[[3]]], ignore_index=True)
    out = v.run_suite("kpi", df, suites["kpi"])
    got = {(o.expectation, o.column): (o.unexpected_count, o.observed) for o in out.failed()}
    n = len(WEEKS) * len(GEOS)
    assert got == {
        ("expect_compound_columns_to_be_unique", "week_start,geo"): (2, "(2024-01-08, south), (2024-01-08, south)"),
        ("expect_table_row_count_to_equal", None): (None, f"{n + 1} (expected {n})"),
    }


CPU_CASES = [
    ("zero_cost", _set("cost_per_unit", [0, 1], 0.0), "expect_column_values_to_be_between", "cost_per_unit", 2),
    ("neg_cost", _set("cost_per_unit", [2], -1.0), "expect_column_values_to_be_between", "cost_per_unit", 1),
    ("null_cost", _set("cost_per_unit", [2, 3, 4], np.nan), "expect_column_values_to_not_be_null", "cost_per_unit", 3),
    ("bad_unit", _set("unit", [0], "views"), "expect_column_values_to_be_in_set", "unit", 1),
    ("dup_key", _dup([0, 1, 2]), "expect_compound_columns_to_be_unique", "week_start,geo,channel", 3),
]


@pytest.mark.parametrize(
    "mutate,expectation,column,count", [c[1:] for c in CPU_CASES], ids=[c[0] for c in CPU_CASES]
)
def test_cost_per_unit_rules(suites, mutate, expectation, column, count):
    f = only_failure(v.run_suite("cpu", mutate(cpu_frame()), suites["cpu"]))
    assert (f.expectation, f.column, f.unexpected_count) == (expectation, column, count)


LIFT_CASES = [
    ("dup_id", _set("test_id", [1], "t1"), "expect_column_values_to_be_unique", "test_id", 2),
    ("null_id", _set("test_id", [1], None), "expect_column_values_to_not_be_null", "test_id", 1),
    ("zero_sigma", _set("sigma", [0], 0.0), "expect_column_values_to_be_between", "sigma", 1),
    ("bad_channel", _set("channel", [0, 1], "radio"), "expect_column_values_to_be_in_set", "channel", 2),
    ("null_start", _set("start_date", [2], pd.NaT), "expect_column_values_to_not_be_null", "start_date", 1),
    ("null_end", _set("end_date", [0], pd.NaT), "expect_column_values_to_not_be_null", "end_date", 1),
    ("end_before_start", _set("end_date", [1], pd.Timestamp("2024-01-15")),
     "expect_column_pair_values_a_to_be_greater_than_b", "end_date,start_date", 1),
]


@pytest.mark.parametrize(
    "mutate,expectation,column,count", [c[1:] for c in LIFT_CASES], ids=[c[0] for c in LIFT_CASES]
)
def test_lift_rules(suites, mutate, expectation, column, count):
    f = only_failure(v.run_suite("lift", mutate(lift_frame()), suites["lift"]))
    assert (f.expectation, f.column, f.unexpected_count) == (expectation, column, count)


# --------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------


def test_to_markdown_lists_failed_with_counts(suites):
    df = raw_frame()
    df.loc[[1, 2, 3], "spend"] = -1.0
    df.loc[[4], "platform"] = "snapchat_ads"
    out = v.run_suite("raw_ad_reporting", df, suites["raw"])
    md = out.to_markdown()
    lines = md.splitlines()
    assert lines[0] == f"2 of {len(suites['raw'])} expectations failed in suite `raw_ad_reporting`:"
    assert "| expectation | column | unexpected | % | sample |" in lines
    rows = [ln for ln in lines if ln.startswith("| expect_")]
    assert rows == [
        "| expect_column_values_to_be_between | spend | 3 | 5.00 | -1, -1, -1 |",
        "| expect_column_values_to_be_in_set | platform | 1 | 1.67 | snapchat_ads |",
    ]
    s = out.summary()
    assert s == {"suite": "raw_ad_reporting", "evaluated": len(suites["raw"]), "failed": 2}
    json.dumps(s)


def test_sample_is_capped_at_five_values(suites):
    df = raw_frame()
    df.loc[:19, "clicks"] = -np.arange(1, 21)
    f = only_failure(v.run_suite("raw", df, suites["raw"]))
    assert f.unexpected_count == 20
    assert f.observed == "-1, -2, -3, -4, -5"


def test_missing_column_is_a_failure_not_an_exception(suites):
    df = cpu_frame().drop(columns=["cost_per_unit"])
    out = v.run_suite("cpu", df, suites["cpu"])
    assert not out.success
    failed = out.failed()
    assert {f.column for f in failed} == {"cost_per_unit"}
    assert all(f.observed.startswith("error:") and f.unexpected_count is None for f in failed)
    assert "cost_per_unit" in out.to_markdown()


def test_python_date_objects_are_accepted(suites):
    # object columns of datetime.date (e.g. from a hand-built frame) are compared as dates
    df = raw_frame()
    df["date_day"] = df["date_day"].dt.date
    assert df["date_day"].dtype == object
    assert v.run_suite("raw", df, suites["raw"]).success
    df.loc[0, "date_day"] = dt.date(2025, 1, 1)
    f = only_failure(v.run_suite("raw", df, suites["raw"]))
    assert (f.column, f.unexpected_count, f.observed) == ("date_day", 1, "2025-01-01")


def test_duckdb_frame(suites):
    duckdb = pytest.importorskip("duckdb")
    df = duckdb.sql(
        """
        select w::date as week_start, g as geo, 100.0 as kpi_value, 7 as days_in_week,
               false as incomplete_week
        from range(date '2024-01-01', date '2024-02-12', interval 7 day) t(w),
             (values ('north'), ('south')) s(g)
        """
    ).df()
    assert v.run_suite("kpi", df, suites["kpi"]).success


# --------------------------------------------------------------------------
# Runner behaviour
# --------------------------------------------------------------------------


def test_nothing_printed(suites, capsys):
    df = raw_frame()
    df.loc[0, "spend"] = -1
    v.run_suite("raw", df, suites["raw"])
    v.run_suite("media", media_frame(), suites["media"])
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == ""


def test_repeated_runs_reuse_context_and_leave_no_assets(suites):
    from mmm_pipeline.validation import runtime

    v.run_suite("kpi", kpi_frame(), suites["kpi"])
    ctx, ds = runtime.ephemeral_context_and_datasource()
    for _ in range(3):
        # same suite name and same expectation objects each time: no collisions
        assert v.run_suite("kpi", kpi_frame(), suites["kpi"]).success
    ctx_again, ds_again = runtime.ephemeral_context_and_datasource()
    assert ds_again is ds and ctx_again is ctx
    assert ds.assets == []
    # expectation objects were not bound to a suite
    assert all(e.id is None for e in suites["kpi"])


def test_outcome_types_are_plain(suites):
    df = raw_frame()
    df.loc[0, "clicks"] = -1
    out = v.run_suite("raw", df, suites["raw"])
    for o in out.outcomes:
        assert isinstance(o.success, bool)
        assert o.element_count is None or type(o.element_count) is int
        assert o.unexpected_count is None or type(o.unexpected_count) is int
        assert o.unexpected_percent is None or type(o.unexpected_percent) is float
        assert o.observed is None or isinstance(o.observed, str)
    with pytest.raises(AttributeError):
        out.success = True  # frozen
