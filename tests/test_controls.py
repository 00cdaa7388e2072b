"""Controls (controls/*.csv|parquet): ingestion with quarantine, weekly staging, the blocking check,
and the flow into the model and marts.contributions."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import check_results, materialize
from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import ingest, staging
from mmm_pipeline.ingestion.readers import IngestError, normalize_column

GEOS = ["US-CA", "US-TX", "US-WA"]


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    warehouse.ensure_schema(con)
    return con


def _write(path: Path, df: pd.DataFrame, extra_lines: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    if extra_lines:
        with open(path, "a") as fh:
            fh.write(extra_lines)
    return path


def _daily(days: int = 21, geos=GEOS) -> pd.DataFrame:
    dates = pd.date_range("2024-01-01", periods=days)
    return pd.DataFrame([{"date_day": d.date(), "geo": g, "price": 10.0 + i % 3, "promo": float(i % 7 == 0)}
                         for i, d in enumerate(dates) for g in geos])


def _calendar(geos=GEOS, mode="geo", grain="daily", days=21):
    from datetime import date, timedelta

    return staging.Calendar(grain, date(2024, 1, 1), date(2024, 1, 1) + timedelta(days=days - 1), mode, list(geos))


# ----------------------------------------------------------------------------- ingestion


def test_bad_control_cells_are_quarantined_with_the_column_named_and_the_rest_loads(tmp_path):
    df = _daily()
    df.loc[3, "price"] = np.inf
    _write(tmp_path / "controls" / "c.csv", df, "2024-01-05,US-CA,abc,1\n2024-01-02,US-CA,99,0\n2024-01-03,US-CA,,0\n")
    con = _con()
    report = ingest.load_controls(con, tmp_path)
    reasons = dict(con.execute("SELECT source_row, reason FROM raw.quarantine WHERE kind = 'controls'").fetchall())
    n = len(df)
    assert reasons[4] == "non-finite price: inf"
    assert reasons[n + 1].startswith("unparseable price")
    assert reasons[n + 3] == "missing price"
    # row rules run first: row n + 2 restates row 4's key, but row 4 failed them, so n + 2 loads
    assert n + 2 not in reasons
    assert report.rows_quarantined == len(reasons)
    assert report.rows_loaded == n + 3 - len(reasons)
    current = con.execute("SELECT control, count(*) FROM raw.controls_current GROUP BY 1 ORDER BY 1").fetchall()
    assert [c for c, _ in current] == ["price", "promo"]


def test_a_conflicting_restatement_in_one_file_quarantines_both_rows(tmp_path):
    con = _con()
    _write(tmp_path / "controls" / "c.csv", _daily(days=7, geos=["US-CA"]), "2024-01-02,US-CA,99,0\n")
    ingest.load_controls(con, tmp_path)
    rows = con.execute("SELECT source_row, reason FROM raw.quarantine ORDER BY 1").fetchall()
    assert rows == [(2, "conflicting values for natural key (2 rows in this file)"),
                    (8, "conflicting values for natural key (2 rows in this file)")]


def test_a_hostile_control_column_name_is_data_not_sql(tmp_path):
    name = 'x"); CREATE TABLE pwned AS SELECT 1; --$$'
    df = pd.DataFrame({"date_day": ["2024-01-01", "2024-01-02"], name: ["1.5", "oops"]})
    _write(tmp_path / "controls" / "c.csv", df)
    con = _con()
    ingest.load_controls(con, tmp_path)
    assert not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'pwned'").fetchone()[0]
    stored = normalize_column(name)  # header names are normalised like every other input's
    assert con.execute("SELECT control, value FROM raw.controls_current").fetchall() == [(stored, 1.5)]
    reason = con.execute("SELECT reason FROM raw.quarantine").fetchone()[0]
    assert reason.startswith(f"unparseable {name}") and '"oops"' in reason  # the header as written


def test_no_controls_folder_means_no_controls_but_a_folder_gone_after_a_load_fails(tmp_path):
    con = _con()
    assert ingest.load_controls(con, tmp_path).table_rows == 0
    assert con.execute("SELECT count(*) FROM raw.controls_current").fetchone()[0] == 0
    _write(tmp_path / "controls" / "c.csv", _daily())
    assert ingest.load_controls(con, tmp_path).rows_loaded == len(_daily())
    before = con.execute("SELECT count(*) FROM raw.controls").fetchone()[0]
    (tmp_path / "controls" / "c.csv").unlink()
    (tmp_path / "controls").rmdir()
    with pytest.raises(IngestError, match="controls/: folder .* not found"):
        ingest.load_controls(con, tmp_path)
    assert con.execute("SELECT count(*) FROM raw.controls").fetchone()[0] == before


def test_a_controls_file_without_a_control_column_fails_naming_the_file(tmp_path):
    _write(tmp_path / "controls" / "only_keys.csv", pd.DataFrame({"date_day": ["2024-01-01"], "geo": ["US-CA"]}))
    with pytest.raises(IngestError, match=r"controls/only_keys.csv: a controls file needs"):
        ingest.load_controls(_con(), tmp_path)


# ----------------------------------------------------------------------------- staging


def _staged(tmp_path, files: dict[str, pd.DataFrame], cal, aggregation=None) -> pd.DataFrame:
    for name, df in files.items():
        _write(tmp_path / "controls" / name, df)
    con = _con()
    ingest.load_controls(con, tmp_path)
    return staging.build_controls_weekly(con, cal, aggregation)


def test_weeks_are_the_mean_of_their_days_or_the_sum_when_configured(tmp_path):
    df = _daily()
    out = _staged(tmp_path, {"c.csv": df}, _calendar(), {"promo": "sum"})
    assert len(out) == 3 * 3 * 2  # weeks x geos x controls
    first = out[(out["geo"] == "US-CA") & (out["week_start"] == out["week_start"].min())].set_index("control")
    days = df[(df["geo"] == "US-CA")].head(7)
    assert first.loc["price", "value"] == pytest.approx(days["price"].mean())
    assert first.loc["promo", "value"] == pytest.approx(days["promo"].sum())
    assert first.loc["promo", "aggregation"] == "sum" and first.loc["price", "aggregation"] == "mean"
    assert (out["days_reported"] == 7).all()


def test_a_control_without_geo_holds_for_every_geo_and_a_geo_row_wins(tmp_path):
    national = _daily(geos=["x"]).drop(columns=["geo", "promo"])
    own = _daily(geos=["US-TX"]).drop(columns=["promo"])
    own["price"] = 50.0
    out = _staged(tmp_path, {"national.csv": national, "tx.csv": own}, _calendar())
    by_geo = out.groupby("geo")["value"].mean()
    assert by_geo["US-TX"] == pytest.approx(50.0)
    assert by_geo["US-CA"] == pytest.approx(by_geo["US-WA"]) == pytest.approx(national["price"].head(21).mean(), rel=0.02)


def test_a_national_model_averages_the_geos(tmp_path):
    df = _daily()
    df.loc[df["geo"] == "US-TX", "price"] += 3
    out = _staged(tmp_path, {"c.csv": df}, _calendar(geos=[ingest.NATIONAL], mode="national"))
    week1 = out[(out["control"] == "price")].iloc[0]
    assert week1["geo"] == ingest.NATIONAL
    assert week1["value"] == pytest.approx(df.head(21)["price"].mean())


def test_a_configured_aggregation_for_a_column_no_file_has_fails_naming_it(tmp_path):
    with pytest.raises(ValueError, match=r"controls: \['promo_dayz'\] are not columns"):
        _staged(tmp_path, {"c.csv": _daily()}, _calendar(), {"promo_dayz": "sum"})


def test_missing_control_weeks_and_short_weeks_are_named(tmp_path):
    df = _daily()
    df = df[~((df["geo"] == "US-WA") & (pd.to_datetime(df["date_day"]) >= "2024-01-15"))]  # US-WA's week 3
    df = df[~((df["geo"] == "US-TX") & (df["date_day"].astype(str) == "2024-01-09"))]        # a day short
    cal = _calendar()
    out = _staged(tmp_path, {"c.csv": df}, cal)
    kpi = pd.DataFrame({"week_start": cal.weeks})
    missing = staging.missing_control_weeks(out, kpi, cal)
    problems = {(r.geo, str(r.week_start), r.control): r.problem for r in missing.itertuples()}
    assert problems[("US-WA", "2024-01-15", "price")] == "no control rows"
    assert problems[("US-TX", "2024-01-08", "promo")] == "6 of 7 days reported"
    assert len(problems) == 4


def test_controls_wide_is_one_column_per_control():
    long = pd.DataFrame({"week_start": ["2024-01-01"] * 2, "geo": ["A", "A"], "control": ["price", "promo"],
                         "value": [1.0, 2.0]})
    wide = staging.controls_wide(long)
    assert list(wide.columns) == ["week_start", "geo", "price", "promo"]
    assert staging.controls_wide(staging.empty_controls_weekly()).columns.tolist() == ["week_start", "geo"]


# ----------------------------------------------------------------------------- the pipeline


def _with_promo(src: Path, dst: Path, effect_share: float = 0.25, seed: int = 7) -> dict:
    """The sample plus controls: promotion days per geo that lift revenue by `effect_share` of the geo's
    mean daily revenue, and a national price index with no effect. Returns the added revenue per geo."""
    import shutil

    shutil.copytree(src, dst)
    kpi_path = dst / "kpi" / "kpi.csv"
    kpi = pd.read_csv(kpi_path)
    rng = np.random.default_rng(seed)
    kpi["promo"] = (rng.uniform(size=len(kpi)) < 0.12).astype(float)
    lift = kpi.groupby("geo")["revenue"].transform("mean") * effect_share * kpi["promo"]
    kpi["revenue"] = (kpi["revenue"] + lift).round(2)
    kpi["added"] = lift
    kpi.drop(columns=["promo", "added"]).to_csv(kpi_path, index=False)
    _write(dst / "controls" / "promo.csv", kpi[["date_day", "geo", "promo"]])
    days = sorted(kpi["date_day"].unique())
    price = pd.DataFrame({"date_day": days, "price_index": 100 + np.round(rng.normal(0, 2, len(days)).cumsum() / 5, 2)})
    price.to_parquet(dst / "controls" / "price.parquet", index=False)
    with open(dst / "pipeline.yaml", "a") as fh:
        fh.write("controls:\n  promo: sum\n")
    return {"daily": kpi[["date_day", "geo", "added"]]}


def test_a_missing_control_week_fails_the_blocking_check_and_names_the_week(sample_dir, tmp_path):
    inp = tmp_path / "input"
    _with_promo(sample_dir, inp)
    promo = pd.read_csv(inp / "controls" / "promo.csv")
    promo = promo[~((promo["geo"] == "US-NY") & promo["date_day"].between("2024-03-04", "2024-03-10"))]
    promo.to_csv(inp / "controls" / "promo.csv", index=False)
    runs = materialize(inp, tmp_path / "wh.duckdb", tmp_path / "art", models=False)
    checks = check_results(runs.results[0])
    assert checks["staging_controls_weekly_contract"] == (False, "ERROR")
    meta = next(e.asset_check_evaluation_data.metadata for e in runs.results[0].all_events
                if e.event_type_value == "ASSET_CHECK_EVALUATION"
                and e.asset_check_evaluation_data.check_name == "staging_controls_weekly_contract")
    assert meta["missing_weeks"].value == 1
    assert "US-NY" in meta["missing_week_list"].value and "2024-03-04" in meta["missing_week_list"].value


@pytest.mark.fit
def test_controls_flow_from_the_file_into_the_model_and_marts_contributions(sample_dir, tmp_path):
    inp = tmp_path / "input"
    truth = _with_promo(sample_dir, inp)
    wh = tmp_path / "wh.duckdb"
    runs = materialize(inp, wh, tmp_path / "art", markets=["west"], select=["mmm_uncalibrated"])
    assert runs.success, runs.log_messages()[-20:]
    checks = check_results(runs.results[0])
    assert checks["staging_controls_weekly_contract"] == (True, "ERROR")
    with warehouse.connect(wh) as con:
        staged = con.execute("SELECT control, aggregation, count(*) FROM staging.controls_weekly_latest "
                             "GROUP BY ALL ORDER BY 1").fetchall()
        contrib = con.execute(
            "SELECT component, week_start, geo, mean FROM marts.contributions_latest "
            "WHERE market = 'west' AND variant = 'uncalibrated' AND component_type = 'control'").df()
        run = con.execute("SELECT * FROM marts.model_runs_latest WHERE market = 'west'").df()
    weeks = staged[0][2] // 6
    assert staged == [("price_index", "mean", weeks * 6), ("promo", "sum", weeks * 6)]
    assert set(contrib["component"]) == {"price_index", "promo"}
    # the promotion's revenue over the modelled weeks, against what was added to the KPI
    daily = truth["daily"]
    daily = daily[daily["geo"].isin(["US-CA", "US-TX", "US-WA"])]
    daily["week_start"] = (pd.to_datetime(daily["date_day"]) - pd.to_timedelta(
        pd.to_datetime(daily["date_day"]).dt.weekday, unit="D")).dt.date
    modelled = set(pd.to_datetime(contrib["week_start"]).dt.date)
    added = daily[daily["week_start"].isin(modelled)]["added"].sum()
    promo = contrib[contrib["component"] == "promo"]["mean"].sum()
    assert promo == pytest.approx(added, rel=0.3), (promo, added)  # 20 seeds (stochastic_thresholds --direct): 0.97-1.00
    # a price index is never 0: its contribution is measured from its mean, so over the period it nets out
    assert abs(contrib[contrib["component"] == "price_index"]["mean"].sum()) < 0.1 * added
    assert set(run["control_columns"]) == {"price_index, promo"}
