"""Geo size: geos.csv populations, per-capita scales, and the converter writing geos.csv."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from mmm_pipeline import model as M
from mmm_pipeline import warehouse
from mmm_pipeline.ingestion import geos as G
from mmm_pipeline.model import scales as S
from tests.conftest import fixture_path


def _write(tmp_path, text: str):
    (tmp_path / "geos.csv").write_text(text)
    return tmp_path


def test_geos_csv_is_read_and_bad_rows_are_named(tmp_path):
    assert G.read_geo_populations(tmp_path) is None  # optional file
    ok = _write(tmp_path, "geo,population,market\na,1000,west\nb,250.5,west\n")
    assert G.read_geo_populations(ok) == {"a": 1000.0, "b": 250.5}
    for text, says in [("geo,pop\na,1\n", "missing column(s) ['population']"),
                       ("geo,population\na,1\nb,lots\n", "row 3: column population 'lots' is not a number"),
                       ("geo,population\na,0\n", "row 2: column population must be a positive number"),
                       ("geo,population\na,1\na,2\n", "row 3: geo 'a' appears twice"),
                       ("geo,population\n,5\n", "row 2: column geo is empty")]:
        with pytest.raises(G.GeoFileError, match="geos.csv") as e:
            G.read_geo_populations(_write(tmp_path, text))
        assert says in str(e.value)
    with pytest.raises(G.GeoFileError, match=r"no population for geo\(s\) \['c'\]"):
        G.market_populations({"a": 1.0, "b": 2.0}, ["a", "b", "c"])
    assert G.market_populations({"national": 5.0}, ["national"]) is None  # nothing to compare a size with


def _two_geos(y_small=(10.0, 12.0, 11.0), y_big=(100.0, 130.0, 110.0)):
    dates = pd.date_range("2024-01-01", periods=3, freq="W-MON")
    X = pd.DataFrame({"date": [*dates, *dates], "geo": ["small"] * 3 + ["big"] * 3,
                      "tv": [1.0, 2.0, 3.0, 10.0, 30.0, 20.0]})
    return M.ModelData(X=X, y=pd.Series([*y_small, *y_big], name="kpi"), cost_per_unit=None, channels=["tv"],
                       geos=["big", "small"], kpi_name="kpi", dims=("geo",), weeks=list(dates), dropped_weeks=[])


def test_per_capita_scales_are_the_per_person_max_times_each_geos_population():
    data = _two_geos()
    pop = {"small": 1_000.0, "big": 10_000.0}
    s = S.data_scales(data, pop)
    assert s.basis == S.PER_CAPITA
    assert s.target == pytest.approx(max(12.0 / 1_000, 130.0 / 10_000))
    assert s.channel == {"tv": pytest.approx(max(3.0 / 1_000, 30.0 / 10_000))}
    assert s.target_value(["big", "small"]).values.tolist() == pytest.approx([s.target * 10_000, s.target * 1_000])
    # population changes refit: the sizes are part of the rows hashed into the model version
    assert "population:big" in s.rows()["scale_of"].tolist()
    assert S.data_scales(data).basis == S.TOTAL and S.data_scales(data).target == 130.0


def test_stored_scales_are_reused_only_on_their_own_basis_and_old_warehouses_migrate():
    con = duckdb.connect()
    warehouse.ensure_schema(con)
    # a warehouse from before geo sizes: no basis column
    con.execute("CREATE TABLE marts.model_scales (market VARCHAR, scale_of VARCHAR, value DOUBLE, "
                "set_by VARCHAR, set_at TIMESTAMP)")
    con.execute("INSERT INTO marts.model_scales VALUES ('m', '__target__', 500, 'old', now()), "
                "('m', 'tv', 50, 'old', now())")
    data, pop = _two_geos(), {"small": 1_000.0, "big": 10_000.0}
    total, new = S.market_scales(con, "m", data, "fit 1")
    assert (total.target, new) == (500.0, [])  # the old rows are total scales, reused as such
    per_capita, new = S.market_scales(con, "m", data, "fit 2", pop)
    assert per_capita.target == pytest.approx(0.013) and sorted(new) == ["__target__", "tv"]
    assert per_capita.geo_size == pop
    again, new = S.market_scales(con, "m", _two_geos(y_big=(100.0, 999.0, 110.0)), "fit 3", pop)
    assert again.target == pytest.approx(0.013) and new == []  # fixed until reset, like total scales
    assert sorted(con.execute("SELECT basis, count(*) FROM marts.model_scales GROUP BY 1").fetchall()) == \
        [("per_capita", 2), ("total", 2)]


def test_a_per_capita_model_scales_each_geo_by_its_population_and_reports_totals():
    cfg = M.load_model_config("fast")
    data = _two_geos()
    pop = {"small": 1_000.0, "big": 10_000.0}
    s = S.data_scales(data, pop)
    mmm = M.build_mmm(data, cfg, scales=s)
    target = mmm.scalers["_target"]
    assert dict(zip(target["geo"].values, target.values)) == pytest.approx({"big": 0.013 * 10_000,
                                                                             "small": 0.013 * 1_000})
    channel = mmm.scalers["_channel"]
    assert float(channel.sel(geo="small", channel="tv")) == pytest.approx(0.003 * 1_000)
    # what the model fits: target_data / target_scale = the KPI per person over the market's per-person max
    import pymc as pm

    geos = list(mmm.model.coords["geo"])
    fitted = pm.draw(mmm.model["target_data"]) / pm.draw(mmm.model["target_scale"])
    np.testing.assert_allclose(fitted[:, geos.index("big")], np.array([100.0, 130.0, 110.0]) / 10_000 / 0.013)
    np.testing.assert_allclose(fitted[:, geos.index("small")], np.array([10.0, 12.0, 11.0]) / 1_000 / 0.013)


def test_meridian_conversion_writes_each_geos_population_to_geos_csv(tmp_path):
    from mmm_pipeline.ingestion.convert import MERIDIAN_PRESET, convert_wide_table

    src = fixture_path("meridian_geo_media.csv")
    summary = convert_wide_table(src, tmp_path / "m", **MERIDIAN_PRESET)
    assert summary["files"]["geos.csv"] == 20
    pops = G.read_geo_populations(tmp_path / "m")
    wide = pd.read_csv(src)
    assert pops == pytest.approx(wide.groupby("geo")["population"].mean().to_dict())
    assert "population" not in summary["ignored_columns"]


def test_without_populations_each_geo_is_sized_by_its_mean_kpi():
    data = _two_geos()  # small: mean KPI 11, big: mean KPI 113.33
    s = S.data_scales(data, by_size=True)
    assert s.basis == S.PER_KPI_MEAN and s.geo_size == pytest.approx({"big": 340 / 3, "small": 11.0})
    assert s.target == pytest.approx(max(12.0 / 11.0, 130.0 / (340 / 3)))
    assert s.channel["tv"] == pytest.approx(max(3.0 / 11.0, 30.0 / (340 / 3)))
    # each geo's FixedScaling grows with its size: ~10x between the two geos, as their KPI does
    tv = s.channel_value(["big", "small"], ["tv"]).values[:, 0]
    assert tv[0] / tv[1] == pytest.approx((340 / 3) / 11.0)
    assert "size:big" in s.rows()["scale_of"].tolist()
    # the model default: geo_scaling size; `market` keeps one scalar per market
    sized = M.build_mmm(data, M.load_model_config("fast"))
    assert dict(zip(sized.scalers["_target"]["geo"].values, sized.scalers["_target"].values)) == pytest.approx(
        {"big": s.target * 340 / 3, "small": s.target * 11.0})
    market = M.build_mmm(data, M.load_model_config("fast", {"geo_scaling": "market"}))
    assert market.scalers["_target"].size == 1 and float(market.scalers["_target"]) == 130.0


def test_mean_kpi_sizes_are_stored_and_reused_so_a_refit_keeps_parameter_meaning():
    con = duckdb.connect()
    warehouse.ensure_schema(con)
    first, new = S.market_scales(con, "m", _two_geos(), "fit 1", by_size=True)
    assert first.basis == S.PER_KPI_MEAN and sorted(new) == ["__target__", "size:big", "size:small", "tv"]
    # a refit whose weeks move the small geo's mean KPI 10x keeps the first fit's sizes and scales
    again, new = S.market_scales(con, "m", _two_geos(y_small=(100.0, 120.0, 110.0)), "fit 2", by_size=True)
    assert new == [] and again.geo_size == pytest.approx(first.geo_size) and again.target == first.target
    assert again.target_value(["big", "small"]).values.tolist() == pytest.approx(
        first.target_value(["big", "small"]).values.tolist())
    # the bases do not mix: one scale per market is stored on its own
    total, new = S.market_scales(con, "m", _two_geos(), "fit 3")
    assert total.basis == S.TOTAL and sorted(new) == ["__target__", "tv"]
