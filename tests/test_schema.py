"""The marts are documented where BI tools read them: every written table and column is declared in
mmm_pipeline/schema.py (type, unit, meaning), tables are created from it (never typed NULL), the
BI file carries the descriptions as comments, and the marts dictionary is generated from it."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from mmm_pipeline import schema, warehouse
from mmm_pipeline.reporting import publish

REPO = Path(__file__).resolve().parents[1]
UNITS = schema.Units("EUR", "orders", "count")


def _columns(con) -> pd.DataFrame:
    return con.execute("SELECT schema_name || '.' || table_name AS relation, column_name, data_type, comment "
                       "FROM duckdb_columns() WHERE database_name = current_database() "
                       "AND schema_name IN ('staging', 'marts')").df()


def test_every_declaration_is_complete_and_says_its_money_and_kpi_units():
    assert schema.problems() == []
    # the declared types are DuckDB's own names for them: a created table reads back as declared
    con = duckdb.connect()
    for s in ("staging", "marts"):
        con.execute(f"CREATE SCHEMA {s}")
    for t in schema.TABLES:
        con.execute(warehouse.create_table_sql(t))
        assert warehouse.table_columns(con, t.name) == {c.name: c.type for c in t.columns}, t.name


def _table(*columns: schema.Column) -> schema.Table:
    return schema.Table("marts.t", "s", "row", "A table.", tuple(columns), None)


@pytest.mark.parametrize("columns, problem", [
    ((schema.column("spend", "DOUBLE", "Spend.", schema.MONEY),),
     "marts.t.spend: money (`currency`) in a table without a `currency` column"),
    ((schema.column("response", "DOUBLE", "Response.", schema.KPI), schema.COMMON["kpi_name"]),
     "marts.t.response: KPI units (`kpi_unit`) in a table without `kpi_name` and `kpi_unit`"),
    ((schema.column("roas", "DOUBLE", "ROAS.", schema.KPI_PER_MONEY), schema.COMMON["currency"]),
     "marts.t.roas: KPI units (`kpi_unit` per `currency`) in a table without `kpi_name` and `kpi_unit`"),
    ((schema.column("budget_total", "DOUBLE", "The budget."),),
     "marts.t.budget_total: named like money or a KPI but declares no unit"),
    ((schema.column("x", "DOUBLE", " "),), "marts.t.x: no description"),
    ((schema.Column("x", "INT", "x."),), "marts.t.x: type 'INT' is not one of"),
])
def test_a_money_or_kpi_column_without_its_units_fails_the_check(columns, problem):
    found = schema.problems([_table(*columns)])
    assert any(p.startswith(problem) for p in found), found


def test_a_money_and_kpi_column_with_their_unit_columns_pass_the_check():
    columns = (schema.column("roas", "DOUBLE", "ROAS.", schema.KPI_PER_MONEY),
               *(schema.COMMON[c] for c in schema.UNIT_COLUMNS))
    assert schema.problems([_table(*columns)]) == []
    # a staging table (warehouse only) needs no unit columns
    assert schema.problems([schema.Table("staging.t", "s", "row", "A table.", columns[:1], None)]) == []


def test_tables_are_created_from_the_schema_so_an_all_null_column_is_never_typed_null(tmp_path):
    db = tmp_path / "w.duckdb"
    runs = pd.DataFrame({"market": ["west"], "variant": ["calibrated"], "fit_seconds": [None], "worst_geo": [None],
                         "attempt_history": [None], "passed_gates": [None]})
    rows = pd.DataFrame({"market": ["west"], "variant": ["calibrated"], "channel": ["social"],
                         "spend": [None], "train_start": [None], "gated": [None]})
    with warehouse.connect(db) as con:
        warehouse.append_history(con, "marts.model_runs", runs, version="v1")
        warehouse.append_history(con, "marts.channel_roas_market", rows, version="v1", units=UNITS)
        types = _columns(con)
        assert not (types["data_type"] == '"NULL"').any(), types[types["data_type"] == '"NULL"']
        declared = {(t.name, c.name): c.type for t in schema.TABLES for c in t.columns}
        for r in types.itertuples():
            assert declared[(r.relation.removesuffix("_latest"), r.column_name)] == r.data_type
        assert con.execute("SELECT currency, kpi_name, kpi_unit FROM marts.channel_roas_market_latest").fetchall() \
            == [("EUR", "orders", "count")]
        # what is not declared is not written
        with pytest.raises(schema.SchemaError, match="not declared in mmm_pipeline/schema.py"):
            warehouse.append_history(con, "marts.model_runs", runs.assign(surprise=1), version="v2")
        with pytest.raises(schema.SchemaError, match="marts.nowhere is not declared"):
            warehouse.append_history(con, "marts.nowhere", runs, version="v2")
        with pytest.raises(schema.SchemaError, match="need `currency`"):
            warehouse.append_history(con, "marts.channel_roas", rows, version="v2")


def _previous_version_warehouse(db: Path) -> None:
    """A warehouse as the previous version wrote it: tables created from the first DataFrame
    (`CREATE TABLE AS`), an all-null column typed NULL, no unit or training-period columns, and the
    market's `all media` row among the per-channel rows."""
    t0 = datetime(2026, 1, 5)
    old_market = pd.DataFrame({
        "market": "west", "variant": "calibrated", "gated": False, "gate_reason": None,
        "channel": ["social", "search", "all media"], "spend": [10.0, 30.0, 40.0],
        "contribution_mean": [5.0, 12.0, 17.0], "roas_mean": [0.5, 0.4, 0.425], "model_version": "m0",
        "data_version": "d0", "materialized_at": t0})
    old_runs = pd.DataFrame({"market": ["west"], "variant": ["calibrated"], "fit_seconds": [None], "max_rhat": [1.0],
                             "model_version": ["m0"], "materialized_at": [t0]})
    with warehouse.connect(db) as con:
        for table, df in (("marts.channel_roas_market", old_market), ("marts.model_runs", old_runs)):
            con.register("_old", df)
            con.execute(f"CREATE TABLE {table} AS SELECT * FROM _old")
            con.unregister("_old")
            warehouse.create_latest_view(con, table, ("market", "variant"))
        assert warehouse.table_columns(con, "marts.channel_roas_market")["gate_reason"] == '"NULL"'
        assert warehouse.table_columns(con, "marts.model_runs")["fit_seconds"] == '"NULL"'


def test_a_warehouse_written_by_the_previous_version_is_upgraded_with_its_rows_kept(tmp_path):
    db = tmp_path / "w.duckdb"
    _previous_version_warehouse(db)
    new_market = pd.DataFrame({"market": "west", "variant": "calibrated", "gated": True, "gate_reason": "",
                               "channel": ["social", "search"], "spend": [11.0, 29.0],
                               "train_start": pd.Timestamp("2024-01-01").date(),
                               "train_end": pd.Timestamp("2025-12-28").date(), "model_version": "m1"})
    total = pd.DataFrame({"market": ["west"], "variant": ["calibrated"], "channels": ["search, social"],
                          "spend": [40.0], "model_version": ["m1"]})
    with warehouse.connect(db) as con:
        warehouse.append_history(con, "marts.model_runs", pd.DataFrame(
            {"market": ["west"], "variant": ["calibrated"], "fit_seconds": [12.5]}), version="m1")
        warehouse.append_history(con, "marts.channel_roas_market", new_market, version="d1", units=UNITS,
                                 partition_columns=("market", "variant"))
        warehouse.append_history(con, "marts.channel_roas_market_total", total, version="d1", units=UNITS,
                                 partition_columns=("market", "variant"))
        for table in ("marts.model_runs", "marts.channel_roas_market", "marts.channel_roas_market_total"):
            have = warehouse.table_columns(con, table)
            assert all(have[c.name] == c.type for c in schema.table(table).columns), (table, have)
        runs = con.execute("SELECT model_version, fit_seconds FROM marts.model_runs ORDER BY 1").fetchall()
        market = con.execute("SELECT data_version, channel, spend, currency, train_start FROM marts.channel_roas_market "
                             "ORDER BY 1, 2").df()
        moved = con.execute("SELECT data_version, spend, roas_mean, channels, currency FROM "
                            "marts.channel_roas_market_total ORDER BY 1").fetchall()
        latest = con.execute("SELECT channel FROM marts.channel_roas_market_latest ORDER BY 1").fetchall()
        publish.publish_marts(con, tmp_path / "pub.duckdb")
    # the old rows are kept (NULL where they had no value) and the new ones written beside them
    assert runs == [("m0", None), ("m1", 12.5)]
    assert market[["data_version", "channel", "spend"]].values.tolist() == [
        ["d0", "search", 30.0], ["d0", "social", 10.0], ["d1", "search", 29.0], ["d1", "social", 11.0]]
    assert market["currency"].isna().tolist() == [True, True, False, False] and market["train_start"].isna().sum() == 2
    # the old `all media` row moved to the total table: the per-channel rows add up to it
    assert moved == [("d0", 40.0, 0.425, None, None), ("d1", 40.0, None, "search, social", "EUR")]
    assert latest == [("search",), ("social",)]
    pub = duckdb.connect(str(tmp_path / "pub.duckdb"), read_only=True)
    assert not (_columns(pub)["data_type"] == '"NULL"').any()


def test_the_published_file_carries_every_description_and_the_units(sample_run):
    published = publish.published_path(sample_run["warehouse"])
    with duckdb.connect(str(published), read_only=True) as con:
        cols = _columns(con)
        tables = dict(con.execute("SELECT schema_name || '.' || table_name, comment FROM duckdb_tables() "
                                  "WHERE database_name = current_database()").fetchall())
        views = dict(con.execute("SELECT schema_name || '.' || view_name, comment FROM duckdb_views() "
                                 "WHERE database_name = current_database() AND NOT internal").fetchall())
        latest = {t.name: con.execute(f"SELECT * FROM {t.name}_latest").df()
                  for t in schema.published_tables() if f"{t.name}_latest" in views}
    assert {"marts.channel_roas_market_total", "marts.model_runs", "marts._published"} <= set(tables)
    for relation, comment in {**tables, **views}.items():
        declared = schema.table(relation.removesuffix("_latest"))
        assert comment == (declared.view_comment() if relation in views else declared.comment()), relation
    assert not (cols["data_type"] == '"NULL"').any()
    for r in cols.itertuples():
        c = next(c for c in schema.table(r.relation.removesuffix("_latest")).columns if c.name == r.column_name)
        assert c.description.strip() and r.comment == c.comment(), (r.relation, r.column_name)
    # every money row names its currency, every KPI row its KPI and unit (the sample's KPI is revenue in USD)
    for name, df in latest.items():
        for column in set(schema.UNIT_COLUMNS) & set(df.columns):
            assert df[column].notna().all() and len(df), (name, column)
        if "kpi_unit" in df:
            assert set(df["kpi_name"]) == {"revenue"} and set(df["kpi_unit"]) == {"USD"}, name
        if "currency" in df:
            assert set(df["currency"]) == {"USD"}, name
    # ROAS tables say their training period; all media lives apart from the channels
    for name in ("marts.channel_roas", "marts.channel_roas_market", "marts.channel_roas_market_total"):
        df = latest[name]
        assert df["train_start"].notna().all() and (df["train_end"] > df["train_start"]).all(), name
    by_channel = latest["marts.channel_roas_market"].groupby(["market", "variant"])["spend"].sum()
    total = latest["marts.channel_roas_market_total"].set_index(["market", "variant"])["spend"]
    pd.testing.assert_series_equal(by_channel.sort_index(), total.sort_index(), check_names=False)


def test_the_marts_dictionary_is_generated_from_the_schema():
    page = (REPO / "docs" / "marts.md").read_text()
    assert schema.render_page(page) == page, "docs/marts.md is out of date: run `python -m mmm_pipeline.schema docs/marts.md`"
    for t in schema.published_tables():
        assert f"### `{t.name}`" in page
