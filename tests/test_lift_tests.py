"""Lift tests in model units: hand-computed numbers on small synthetic frames."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mmm_pipeline.model.lift_tests import CONVERTED_COLUMNS, REJECTED_COLUMNS, convert_lift_tests

DAYS = pd.date_range("2024-01-01", "2024-03-31", freq="D")  # 91 days, 13 weeks
M1 = ["A", "B"]  # the market under test; geo C belongs to another market


def _daily() -> pd.DataFrame:
    """search (clicks) and retail (spend) in geos A, B, C, in the ad-reporting shape.

    search A: 100 clicks / 200 USD a day, but 120 clicks / 300 USD from 2024-03-04 (cpu 2.5);
    search B: 50 clicks / 150 USD a day, nothing from 2024-03-25; search C: 10 / 10.
    retail (unit spend): A 70, B 35, C 35 USD a day.
    """
    rows = []
    for d in DAYS:
        late = d >= pd.Timestamp("2024-03-04")
        rows.append((d, "A", "search", "clicks", 120 if late else 100, 5000, 300 if late else 200))
        dead = d >= pd.Timestamp("2024-03-25")
        rows.append((d, "B", "search", "clicks", 0 if dead else 50, 2000, 0 if dead else 150))
        rows.append((d, "C", "search", "clicks", 10, 500, 10))
        for geo, usd in (("A", 70.0), ("B", 35.0), ("C", 35.0)):
            rows.append((d, geo, "retail", "spend", 3, 900, usd))
    return pd.DataFrame(rows, columns=["date_day", "geo", "channel", "unit", "clicks", "impressions", "spend"])


def _tests(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["test_id", "channel", "geo", "start_date", "end_date",
                                             "delta_spend", "delta_y", "sigma"])


def test_geo_test_hand_computed():
    # 2024-03-04 .. 2024-03-17 is 14 days = 2 weeks.
    tests = _tests(("T1", "search", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0))
    conv, rej = convert_lift_tests(tests, _daily(), M1, market="m1")
    assert rej.empty
    assert list(conv.columns) == CONVERTED_COLUMNS
    r = conv.iloc[0]
    assert (r.test_id, r.market, r.channel, r.geo) == ("T1", "m1", "search", "A")
    assert r.weeks_in_window == pytest.approx(2.0)
    # baseline: the 56 days 2024-01-08 .. 2024-03-03, 100 clicks a day -> 700 a week
    assert r.x == pytest.approx(700.0)
    # cost per unit over the window: 300 / 120 = 2.5 USD per click
    assert r.cost_per_unit_used == pytest.approx(2.5)
    # (1000 USD / 2 weeks) / 2.5 = 200 clicks a week
    assert r.delta_x == pytest.approx(200.0)
    assert r.delta_y == pytest.approx(2000.0)
    assert r.sigma == pytest.approx(400.0)
    assert r.delta_y_window == pytest.approx(4000.0)
    assert r.unit == "clicks" and not r.national and r.geo_share == 1.0


def test_window_baseline_option():
    tests = _tests(("T1", "search", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
                   ("T0", "search", "A", "2024-01-01", "2024-01-14", 1000.0, 4000.0, 800.0))
    conv, rej = convert_lift_tests(tests, _daily(), M1, baseline="window")
    assert rej.empty  # no pre-period needed
    # window: 120 clicks a day -> 840 a week, less the 200 a week the test added
    assert conv.iloc[0].x == pytest.approx(640.0)
    assert conv.iloc[0].delta_x == pytest.approx(200.0)
    # first two weeks: 700 a week at cpu 2 -> delta_x 250, x 450
    assert conv.iloc[1].x == pytest.approx(450.0) and conv.iloc[1].delta_x == pytest.approx(250.0)


def test_fractional_weeks_and_partial_baseline():
    # starts 2024-01-15: the 8-week baseline would begin 2023-11-20; only the 14 days
    # 2024-01-01 .. 2024-01-14 exist -> x = 1400 clicks / 2 weeks = 700.
    # 2024-01-15 .. 2024-01-24 is 10 days = 10/7 weeks; cpu = 200/100 = 2.
    tests = _tests(("T2", "search", "A", "2024-01-15", "2024-01-24", 100.0, 50.0, 10.0))
    conv, rej = convert_lift_tests(tests, _daily(), M1)
    assert rej.empty
    r = conv.iloc[0]
    n = 10 / 7
    assert r.weeks_in_window == pytest.approx(n)
    assert r.x == pytest.approx(700.0)
    assert r.delta_x == pytest.approx(100.0 / n / 2.0)  # 35 clicks a week
    assert r.delta_y == pytest.approx(35.0)
    assert r.sigma == pytest.approx(7.0)
    assert r.market is None


def test_national_test_split_by_spend_share():
    # retail in 2024-03-11 .. 2024-03-20 (10 days): A 700, B 350, C 350 USD -> shares .5 .25 .25
    tests = _tests(("N1", "retail", None, "2024-03-11", "2024-03-20", 2800.0, 1400.0, 280.0))
    conv, rej = convert_lift_tests(tests, _daily(), M1, market="m1")
    assert rej.empty
    assert conv["geo"].tolist() == ["A", "B"]  # C is the other market's share
    a, b = conv.iloc[0], conv.iloc[1]
    assert a.geo_share == pytest.approx(0.5) and b.geo_share == pytest.approx(0.25)
    assert a.national and b.national
    # A: 1400 USD over 10/7 weeks = 980 USD a week; spend unit -> cpu 1
    assert a.cost_per_unit_used == 1.0
    assert a.delta_x == pytest.approx(980.0)
    assert a.delta_y == pytest.approx(700 * 0.7)
    assert a.sigma == pytest.approx(140 * 0.7)  # proportional split of sigma
    assert a.delta_y_window == pytest.approx(700.0)
    assert a.delta_spend == pytest.approx(1400.0)
    assert a.x == pytest.approx(490.0)  # 70 USD a day
    assert b.delta_x == pytest.approx(490.0)
    assert b.delta_y == pytest.approx(245.0)
    assert b.sigma == pytest.approx(49.0)
    assert b.x == pytest.approx(245.0)
    # the shares of the split add up across the two markets
    other, _ = convert_lift_tests(tests, _daily(), ["C"], market="m2")
    assert other["geo"].tolist() == ["C"]
    assert conv["delta_spend"].sum() + other["delta_spend"].sum() == pytest.approx(2800.0)
    assert conv["delta_y_window"].sum() + other["delta_y_window"].sum() == pytest.approx(1400.0)


def test_national_sigma_sqrt_share_option():
    tests = _tests(("N1", "retail", "", "2024-03-11", "2024-03-20", 2800.0, 1400.0, 280.0))
    conv, _ = convert_lift_tests(tests, _daily(), M1, national_sigma_split="sqrt_share")
    a = conv.iloc[0]
    assert a.sigma == pytest.approx(280 * math.sqrt(0.5) * 0.7)
    assert a.delta_y == pytest.approx(490.0)  # only sigma changes


def test_pymc_marketing_columns_present():
    tests = _tests(("T1", "search", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0))
    conv, _ = convert_lift_tests(tests, _daily(), M1)
    assert {"channel", "geo", "x", "delta_x", "delta_y", "sigma"} <= set(conv.columns)
    assert conv[["x", "delta_x", "delta_y", "sigma"]].dtypes.map(pd.api.types.is_float_dtype).all()


@pytest.mark.parametrize(
    "row, reason",
    [
        (("R1", "tv", "A", "2024-03-04", "2024-03-17", 1.0, 1.0, 1.0), "unknown_channel"),
        (("R2", "search", "ZZ", "2024-03-04", "2024-03-17", 1.0, 1.0, 1.0), "unknown_geo"),
        (("R3", "search", "A", "2024-03-25", "2024-04-07", 1.0, 1.0, 1.0), "window_outside_data"),
        (("R4", "search", "A", "2023-12-25", "2024-01-07", 1.0, 1.0, 1.0), "window_outside_data"),
        (("R5", "search", "A", "2024-03-17", "2024-03-04", 1.0, 1.0, 1.0), "invalid_window"),
        (("R6", "search", "A", "2024-03-04", "2024-03-17", 1.0, 1.0, 0.0), "invalid_values"),
        (("R7", "search", "A", "2024-01-01", "2024-01-14", 1.0, 1.0, 1.0), "no_baseline"),
        (("R8", "search", "B", "2024-03-25", "2024-03-31", 1.0, 1.0, 1.0), "no_delivery_in_window"),
    ],
)
def test_rejections(row, reason):
    conv, rej = convert_lift_tests(_tests(row), _daily(), M1, market="m1")
    assert conv.empty
    assert list(rej.columns) == REJECTED_COLUMNS
    assert rej["reason"].tolist() == [reason]
    assert rej.iloc[0]["test_id"] == row[0]
    assert rej.iloc[0]["market"] == "m1"
    assert rej.iloc[0]["detail"]


def test_other_markets_geo_is_neither_converted_nor_rejected():
    tests = _tests(
        ("OK", "search", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
        ("C1", "search", "C", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
        ("C2", "tv", "C", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),  # C's market rejects it
        ("BAD", "tv", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
    )
    conv, rej = convert_lift_tests(tests, _daily(), M1)
    assert conv["test_id"].tolist() == ["OK"]
    assert rej["test_id"].tolist() == ["BAD"]
    conv_c, rej_c = convert_lift_tests(tests, _daily(), ["C"])
    assert conv_c["test_id"].tolist() == ["C1"]
    assert rej_c["test_id"].tolist() == ["C2"]  # BAD is geo A: m1's rejection, not C's


def test_national_test_skips_geos_without_spend():
    # search in 2024-03-25 .. 2024-03-31: A 2100 USD, B nothing, C 70 USD
    tests = _tests(("N2", "search", None, "2024-03-25", "2024-03-31", 2170.0, 700.0, 70.0))
    conv, rej = convert_lift_tests(tests, _daily(), M1)
    assert rej.empty
    assert conv["geo"].tolist() == ["A"]
    assert conv.iloc[0].geo_share == pytest.approx(2100 / 2170)
    assert conv.iloc[0].delta_spend == pytest.approx(2100.0)
    # a market whose geos had no spend at all cannot take a share
    conv_b, rej_b = convert_lift_tests(tests, _daily(), ["B"])
    assert conv_b.empty and rej_b["reason"].tolist() == ["no_delivery_in_window"]


def test_units_column_and_timestamp_dates_accepted():
    daily = _daily()
    daily["units"] = daily["clicks"].where(daily["unit"] == "clicks", daily["spend"])
    daily = daily.drop(columns=["clicks", "impressions"])
    tests = _tests(("T1", "search", "A", pd.Timestamp("2024-03-04"), pd.Timestamp("2024-03-17"),
                    1000.0, 4000.0, 800.0))
    conv, rej = convert_lift_tests(tests, daily, M1)
    assert rej.empty and conv.iloc[0].delta_x == pytest.approx(200.0)


def test_empty_inputs_give_empty_frames_with_columns():
    conv, rej = convert_lift_tests(_tests(), _daily(), M1)
    assert conv.empty and rej.empty
    assert list(conv.columns) == CONVERTED_COLUMNS and list(rej.columns) == REJECTED_COLUMNS


def test_bad_arguments():
    with pytest.raises(ValueError):
        convert_lift_tests(_tests(), _daily(), M1, baseline_weeks=0)
    with pytest.raises(ValueError, match="baseline"):
        convert_lift_tests(_tests(), _daily(), M1, baseline="median")
    with pytest.raises(ValueError, match="units"):
        convert_lift_tests(_tests(), _daily().drop(columns=["unit"]), M1)


def test_window_likelihood_columns_geo_and_national_terms():
    tests = _tests(("T1", "search", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
                   ("N1", "retail", None, "2024-03-11", "2024-03-20", 2800.0, 1400.0, 280.0))
    conv, rej = convert_lift_tests(tests, _daily(), M1, market="m1")
    assert rej.empty
    t1 = conv[conv["test_id"] == "T1"].iloc[0]
    # a geo test: its own readout and sigma over the window, scope window by default
    assert (t1.scope, t1.delta_y_test, t1.sigma_test, t1.market_share) == ("window", 4000.0, 800.0, 1.0)
    n = conv[conv["test_id"] == "N1"]
    # a national test: one term per market, the market's share (A .5 + B .25) of the readout,
    # sigma x sqrt(share) widened by the split's error (share x (1 - share) x 0.5 of the readout
    # by default) -- never sigma split per geo row
    assert n["market_share"].tolist() == pytest.approx([0.75, 0.75])
    assert n["delta_y_test"].tolist() == pytest.approx([1400 * 0.75] * 2)
    split_sd = 1400 * 0.75 * 0.25 * 0.5
    assert n["sigma_test"].tolist() == pytest.approx([math.sqrt(280 ** 2 * 0.75 + split_sd ** 2)] * 2)
    # without the split's error the markets' terms' variances add up to the reported one
    plain, _ = convert_lift_tests(tests, _daily(), M1, market="m1", national_split_log_sd=0.0)
    other, _ = convert_lift_tests(tests, _daily(), ["C"], market="m2", national_split_log_sd=0.0)
    s_m1 = plain.loc[plain["test_id"] == "N1", "sigma_test"].iloc[0]
    s_other = other.loc[other["test_id"] == "N1", "sigma_test"].iloc[0]
    assert s_m1 == pytest.approx(280 * math.sqrt(0.75))
    assert s_m1 ** 2 + s_other ** 2 == pytest.approx(280.0 ** 2)
    # one market of every geo: nothing is split, the reported sigma stands
    whole, _ = convert_lift_tests(tests, _daily(), ["A", "B", "C"], market="all")
    w = whole[whole["test_id"] == "N1"]
    assert w["market_share"].tolist() == pytest.approx([1.0] * 3)
    assert w["sigma_test"].tolist() == pytest.approx([280.0] * 3)
    assert w["delta_y_test"].tolist() == pytest.approx([1400.0] * 3)
    with pytest.raises(ValueError, match="national_split_log_sd"):
        convert_lift_tests(tests, _daily(), M1, national_split_log_sd=-1.0)


def test_scope_column_is_read_and_validated(tmp_path):
    from mmm_pipeline.model.lift_tests import with_scope

    tests = _tests(("T1", "search", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
                   ("T2", "search", "B", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0),
                   ("T3", "retail", "A", "2024-03-04", "2024-03-17", 1000.0, 4000.0, 800.0))
    csv = tmp_path / "lift_tests.csv"
    csv.write_text("test_id,scope\nT1,total\nT2,forever\nT3,\n")
    scoped = with_scope(tests, csv)
    assert scoped["scope"].tolist()[:2] == ["total", "forever"] and pd.isna(scoped["scope"].iloc[2])
    conv, rej = convert_lift_tests(scoped, _daily(), M1)
    assert conv.set_index("test_id")["scope"].to_dict() == {"T1": "total", "T3": "window"}
    assert rej["reason"].tolist() == ["invalid_scope"] and "forever" in rej["detail"].iloc[0]
    # no file or no column: every test is a window test
    assert with_scope(tests, tmp_path / "absent.csv")["scope"].isna().all()


def test_scope_is_loaded_into_raw_lift_tests_and_an_older_warehouse_reads_the_file_again(sample_dir, tmp_path):
    import shutil

    from mmm_pipeline import warehouse
    from mmm_pipeline.ingestion import ingest

    d = tmp_path / "in"
    shutil.copytree(sample_dir, d)
    csv = pd.read_csv(d / "lift_tests.csv", dtype=str, keep_default_na=False)
    assert "scope" in csv and set(csv["scope"]) >= {"window", "total"}
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:  # a warehouse from before `scope` was loaded
        con.execute("ALTER TABLE raw.lift_tests DROP COLUMN scope")
        ingest.load_lift_tests(con, d)
        con.execute("UPDATE raw.load_context SET context = 'old' WHERE kind = 'lift_tests'")
    with warehouse.connect(db) as con:  # the schema gains the column, the unchanged file is re-read
        report = ingest.load_lift_tests(con, d)
        assert report.files_loaded == ["lift_tests.csv"]
        raw = con.execute("SELECT test_id, scope FROM raw.lift_tests").df()
    assert raw.set_index("test_id")["scope"].to_dict() == \
        {t: (s or None) for t, s in zip(csv["test_id"], csv["scope"])}


def test_roas_targets_enter_as_window_lifts_and_a_target_without_its_window_is_quarantined(sample_dir, tmp_path):
    """issue 28 item 6: a ROAS/CPA readout is the return on an experiment's extra spend over its window."""
    import shutil

    from mmm_pipeline import warehouse
    from mmm_pipeline.ingestion import ingest

    d = tmp_path / "in"
    shutil.copytree(sample_dir, d)
    (d / "roas_targets.csv").write_text(
        "test_id,channel,geo,metric,value,sigma,start_date,end_date,extra_spend\n"
        "G1,social,US-TX,roas,2.0,0.5,2025-03-03,2025-03-30,10000\n"   # +20,000 +- 5,000
        ",search,,cpa,4.0,1.0,2025-04-07,2025-04-20,-8000\n"           # go-dark: -2,000 +- 500
        "G3,search,US-WA,roas,2.0,0.5,2025-04-20,2025-04-07,1000\n")   # end before start
    (d / "roas_targets_old.csv").write_text("x\n")  # not read: only roas_targets.csv is
    db = tmp_path / "w.duckdb"
    with warehouse.connect(db) as con:
        report = ingest.load_lift_tests(con, d)
        rows = con.execute("SELECT * FROM raw.lift_tests WHERE source_file = 'roas_targets.csv' "
                           "ORDER BY source_row").df()
        quarantined = con.execute("SELECT source_row, reason FROM raw.quarantine WHERE kind = 'roas_targets'").df()
    assert report.files_loaded == ["lift_tests.csv", "roas_targets.csv"] and report.rows_quarantined == 1
    assert rows.test_id.tolist() == ["roas_targets:G1", "roas_targets:row2"]
    assert rows.delta_y.tolist() == pytest.approx([20000.0, -2000.0])
    assert rows.sigma.tolist() == pytest.approx([5000.0, 8000 * 1.0 / 16.0])
    assert rows.delta_spend.tolist() == [10000.0, -8000.0] and (rows.scope == "window").all()
    assert rows.geo.isna().tolist() == [False, True]  # the CPA test is national
    assert quarantined.reason.tolist() == ["end_date before start_date"]

    # the file of before (no window): every row quarantined, saying why
    (d / "roas_targets.csv").write_text("channel,geo,metric,value,sigma\nsocial,US-TX,roas,0.95,0.20\n")
    with warehouse.connect(db) as con:
        ingest.load_lift_tests(con, d)
        n = con.execute("SELECT count(*) FROM raw.lift_tests WHERE source_file = 'roas_targets.csv'").fetchone()[0]
        [(reason,)] = con.execute("SELECT reason FROM raw.quarantine WHERE kind = 'roas_targets'").fetchall()
    assert n == 0 and reason.startswith("no start_date, end_date, extra_spend: ") and "average ROAS" in reason
