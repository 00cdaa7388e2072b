"""The off-family generators (mmm_pipeline.sample.offfamily) and their truth: no model is fitted here."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline.sample.offfamily import STRUCTURES, best_plan, build, generate, true_response, truth_path_for
from mmm_pipeline.sample.offfamily.process import MediaProcess, saturation

DAILY = ("hill_daily", "weibull_lag")


@pytest.fixture(scope="module")
def built() -> dict:
    return {s: build(s, 1) for s in STRUCTURES}


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("offfamily")
    return {s: (root / s, generate(s, root / s, 1)) for s in STRUCTURES}


def _files(folder: Path) -> dict[str, bytes]:
    out = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    out["<truth>"] = truth_path_for(folder).read_bytes()
    return out


@pytest.mark.parametrize("structure", STRUCTURES)
def test_deterministic_per_seed_and_different_across_seeds(structure, folders, tmp_path):
    first = _files(folders[structure][0])
    again = generate(structure, tmp_path / "again", 1)
    assert _files(tmp_path / "again") == first
    assert again == folders[structure][1]
    generate(structure, tmp_path / "other", 2)
    other = _files(tmp_path / "other")
    assert other["kpi/kpi.csv"] != first["kpi/kpi.csv"]
    assert other["lift_tests.csv"] != first["lift_tests.csv"]
    # the truth is beside the folder, never inside it: the pipeline reads an in-family truth.json there
    assert not (folders[structure][0] / "truth.json").exists()


def test_pipeline_yaml_says_only_what_a_user_knows(folders):
    import yaml

    for s, (folder, truth) in folders.items():
        spec = yaml.safe_load((folder / "pipeline.yaml").read_text())
        assert set(spec) <= {"kpi_column", "markets", "controls"}, s
        assert list(spec["markets"]) == ["all"] and len(spec["markets"]["all"]) >= 6


@pytest.mark.parametrize("structure", DAILY)
def test_daily_geos_populations_10x_apart_and_effects_per_capita(structure, folders):
    folder, truth = folders[structure]
    geos = pd.read_csv(folder / "geos.csv")
    assert len(geos) >= 6
    assert geos["population"].max() / geos["population"].min() >= 10
    proc = MediaProcess.from_json(truth["process"])
    pop = geos.set_index("geo")["population"].reindex(proc.geos).to_numpy(float)
    np.testing.assert_allclose(proc.input_scale, np.repeat(pop[:, None], len(proc.channels), 1))
    assert proc.family == {"hill_daily": "hill", "weibull_lag": "stretched_exp"}[structure]
    if structure == "hill_daily":
        assert np.all(np.abs(proc.params["s"] - 1) > 0.1)           # Hill shape other than 1
        np.testing.assert_allclose(proc.kernel[..., 1] / proc.kernel[..., 0], np.asarray(truth["adstock"]["alpha"]))
        assert np.all(proc.kernel.sum(axis=-1) > 2)                  # unnormalised daily carryover
    else:
        peak = proc.kernel.argmax(axis=-1)
        assert np.all(peak >= 1)                                     # delayed: the largest weight is not lag 0


def _weekly_channel_spend(folder: Path) -> pd.DataFrame:
    cat = pd.read_csv(folder / "channels.csv", keep_default_na=False)
    frames = [pd.read_csv(p) for p in sorted((folder / "ad_reporting").glob("*.csv"))]
    ads = pd.concat(frames, ignore_index=True)
    ads["plat"] = ads["platform"].str.lower().str.replace(" ", "_")
    import re

    def channel(plat, camp):
        for r in cat.to_dict("records"):
            if r["platform"] == plat and re.search(r["campaign_pattern"], camp, re.I):
                return r["channel"]
        raise AssertionError(f"unmapped {plat} {camp}")

    m = {(p, c): channel(p, c) for p, c in ads[["plat", "campaign_name"]].drop_duplicates().itertuples(index=False)}
    ads["channel"] = [m[(p, c)] for p, c in zip(ads["plat"], ads["campaign_name"])]
    ads["week"] = (pd.to_datetime(ads["date_day"]) - pd.to_datetime(ads["date_day"]).min()).dt.days // 7
    return ads.groupby(["week", "geo", "channel"])["spend"].sum().unstack("channel")


@pytest.mark.parametrize("structure", STRUCTURES)
def test_correlated_pair_from_the_written_spend(structure, folders):
    folder, truth = folders[structure]
    a, b = truth["correlation"]["pair"]
    w = _weekly_channel_spend(folder)
    if structure == "notebook":
        w = w[w.index.get_level_values("week") < 96]     # before the experiment, as the notebook reports it
    per_geo = [np.corrcoef(g[a], g[b])[0, 1] for _, g in w.groupby("geo")]
    national = w.groupby("week").sum()
    if structure == "notebook":
        assert np.mean(per_geo) >= 0.97 and min(per_geo) >= 0.95
    else:
        assert np.mean(per_geo) >= 0.8
        assert np.corrcoef(national[a], national[b])[0, 1] >= 0.8


@pytest.mark.parametrize("structure", DAILY)
def test_correlation_holds_over_the_benchmark_seeds(structure):
    means = []
    for seed in range(1, 11):
        c = build(structure, seed)["truth"]["correlation"]
        means.append(np.mean(list(c["weekly_spend_corr_by_geo"].values())))
        assert c["weekly_spend_corr_national"] >= 0.8
    assert min(means) >= 0.8


@pytest.mark.parametrize("structure", DAILY)
def test_promotion_weeks_get_more_spend_and_price_is_a_control(structure, folders):
    folder, _ = folders[structure]
    promo = pd.read_csv(folder / "controls" / "promo.csv")
    price = pd.read_csv(folder / "controls" / "price.csv")
    assert set(promo["promo"]) == {0, 1} and price["price_index"].between(50, 200).all()
    promo["week"] = (pd.to_datetime(promo["date_day"]) - pd.to_datetime(promo["date_day"]).min()).dt.days // 7
    days = promo.groupby(["week", "geo"])["promo"].sum()
    w = _weekly_channel_spend(folder)
    ratio = []
    for geo, g in w.groupby("geo"):
        d = days.xs(geo, level="geo").reindex(g.index.get_level_values("week")).to_numpy()
        ratio.append(g["search"].to_numpy()[d > 0].mean() / g["search"].to_numpy()[d == 0].mean())
    assert np.median(ratio) > 1.15


def _steady_sim(proc: MediaProcess, spend: np.ndarray, cpu: np.ndarray, weeks: int = 60) -> np.ndarray:
    """Weekly KPI in the last of `weeks` weeks of a sustained weekly spend, by simulating the path with an
    independent convolution (np.convolve per cell)."""
    G, C, P = len(proc.geos), len(proc.channels), proc.periods_per_week
    out = np.zeros((G, C))
    for g in range(G):
        for c in range(C):
            u = np.tile(spend[g, c] / cpu[g, c] * proc.profile[c], weeks)
            a = np.convolve(u, proc.kernel[g, c])[: len(u)]
            p = {k: v[g, c] for k, v in proc.params.items()}
            out[g, c] = (proc.out_scale[g, c] * saturation(proc.family, a / proc.input_scale[g, c], p))[-P:].sum()
    return out


@pytest.mark.parametrize("structure", STRUCTURES)
def test_analytic_mroas_and_plus10_match_the_simulated_steady_state(structure, folders):
    _, truth = folders[structure]
    proc = MediaProcess.from_json(truth["process"])
    cells = pd.DataFrame(truth["cells"]).set_index(["geo", "channel"])
    idx = pd.MultiIndex.from_product([proc.geos, proc.channels])
    cur = cells["current_weekly_spend"].reindex(idx).to_numpy().reshape(len(proc.geos), -1)
    cpu = cells["cost_per_unit_used"].reindex(idx).to_numpy().reshape(len(proc.geos), -1)
    h = 1e-4 * cur
    fd = (_steady_sim(proc, cur + h, cpu) - _steady_sim(proc, cur - h, cpu)) / (2 * h)
    mroas = cells["mroas"].reindex(idx).to_numpy().reshape(cur.shape)
    np.testing.assert_allclose(mroas, fd, rtol=1e-5)
    H = truth["plan_context"]["horizon_weeks"]
    plus10 = (_steady_sim(proc, 1.1 * cur, cpu) - _steady_sim(proc, cur, cpu)) * H
    np.testing.assert_allclose(cells["response_plus10"].reindex(idx).to_numpy().reshape(cur.shape), plus10, rtol=1e-7)
    assert (mroas > 0).all()


def _units_by_day(folder: Path, built_one: dict) -> np.ndarray:
    """(days, G, C) delivery units as written (the channel's unit column summed over its rows)."""
    cat = pd.read_csv(folder / "channels.csv", keep_default_na=False).set_index("channel")["unit"]
    proc = built_one["_internal"]["proc"]
    frames = [pd.read_csv(p) for p in sorted((folder / "ad_reporting").glob("*.csv"))]
    ads = pd.concat(frames, ignore_index=True)
    camp_channel = {}
    import re

    cats = pd.read_csv(folder / "channels.csv", keep_default_na=False).to_dict("records")
    for p, c in ads[["platform", "campaign_name"]].drop_duplicates().itertuples(index=False):
        key = p.lower().replace(" ", "_")
        camp_channel[(p, c)] = next(r["channel"] for r in cats if r["platform"] == key
                                    and re.search(r["campaign_pattern"], c, re.I))
    ads["channel"] = [camp_channel[(p, c)] for p, c in zip(ads["platform"], ads["campaign_name"])]
    ads["units"] = [r[cat[ch]] for ch, r in zip(ads["channel"], ads[["impressions", "clicks", "spend"]].to_dict("records"))]
    g = ads.groupby(["date_day", "geo", "channel"])["units"].sum()
    days = sorted(ads["date_day"].unique())
    idx = pd.MultiIndex.from_product([days, proc.geos, proc.channels])
    return g.reindex(idx, fill_value=0).to_numpy().reshape(len(days), len(proc.geos), len(proc.channels))


@pytest.mark.parametrize("structure", STRUCTURES)
def test_truth_path_is_the_written_data(structure, folders, built):
    folder, _ = folders[structure]
    b = built[structure]
    written = _units_by_day(folder, b)
    internal = b["_internal"]
    if structure == "notebook":
        weekly = written.reshape(-1, 7, *written.shape[1:]).sum(axis=1)
        np.testing.assert_allclose(weekly, internal["units"], atol=1e-6)
    else:
        cal = internal["cal"]
        np.testing.assert_allclose(written, internal["units"][cal.burn: cal.data_end], atol=1e-6)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_true_lift_equals_resimulation_with_and_without_the_extra_spend(structure, built):
    b = built[structure]
    internal, truth = b["_internal"], b["truth"]
    proc = internal["proc"]
    units = internal["units"]

    def kpi(u):  # independent of MediaProcess.contributions: np.convolve per cell
        out = np.zeros(u.shape[:2])
        for g in range(u.shape[1]):
            for c in range(u.shape[2]):
                a = np.convolve(u[:, g, c], proc.kernel[g, c])[: u.shape[0]]
                out[:, g] += proc.out_scale[g, c] * saturation(proc.family, a / proc.input_scale[g, c],
                                                               {k: v[g, c] for k, v in proc.params.items()})
        return out

    with_kpi = kpi(units)
    for t in truth["lift_tests"]:
        if structure == "notebook":
            g = proc.geos.index(t["geo"])
            u_wo = units.copy()
            u_wo[-8:, g, 0] = internal["x_wo"][-8:, g, 0]
            start, stop, end = len(units) - 8, len(units), len(units)
        else:
            tst = next(x for x in internal["tests"] if x["test_id"] == t["test_id"])
            m_wo = np.where(tst["mask"], internal["mult"] / (1 + tst["frac"]), internal["mult"])
            u_wo, _ = internal["realise"](internal["spend_target"] * m_wo)
            cal = internal["cal"]
            u_wo[cal.data_end:] = 0.0
            start, stop, end = tst["d0"], tst["d0"] + tst["n_days"], cal.data_end
        geo_idx = [proc.geos.index(g) for g in t["geos"]]
        diff = (with_kpi - kpi(u_wo))[:, geo_idx]
        window, total = diff[start:stop].sum(), diff[start:end].sum()
        assert t["true_delta_y_window"] == pytest.approx(window, rel=1e-9)
        assert t["true_delta_y_total"] == pytest.approx(total, rel=1e-9)
        expect = total if t["scope"] == "total" else window
        assert t["true_delta_y_reported_scope"] == pytest.approx(expect, rel=1e-12)
        assert window > 0 and total >= window
        # the readouts' fixed design: sigma 10% (8 weeks) to 15% (2 weeks) of the true lift
        frac = t["sigma"] / abs(t["true_delta_y_reported_scope"])
        weeks = t["n_days"] / 7
        assert 0.0999 <= frac <= 0.1501
        assert frac == pytest.approx(0.15 - 0.05 * (min(max(weeks, 2), 8) - 2) / 6, abs=2e-4)


@pytest.mark.parametrize("structure", STRUCTURES)
def test_experiment_design(structure, folders):
    folder, truth = folders[structure]
    lift = pd.read_csv(folder / "lift_tests.csv", keep_default_na=False)
    counts = lift.groupby("channel").size()
    assert (counts >= 2).all()                  # a held-out test always has a sibling
    days = (pd.to_datetime(lift["end_date"]) - pd.to_datetime(lift["start_date"])).dt.days + 1
    assert days.between(14, 56).all()
    assert set(lift["scope"]) <= {"window", "total"}
    if structure in DAILY:
        assert (lift["geo"] == "").any() and (lift["scope"] == "total").any()
        assert (pd.to_datetime(lift["start_date"]).dt.dayofweek != 0).any()   # one starts mid-week
    assert (lift["delta_spend"] > 0).all() and (lift["sigma"] > 0).all()


def _ingest(folder: Path) -> dict:
    from mmm_pipeline import warehouse
    from mmm_pipeline.ingestion import ingest, staging
    from mmm_pipeline.model.lift_tests import convert_lift_tests, with_scope
    from mmm_pipeline.settings import load_pipeline_config

    config, _ = load_pipeline_config(folder)
    with tempfile.TemporaryDirectory() as tmp, warehouse.connect(Path(tmp) / "w.duckdb") as con:
        ingest.load_channels(con, folder)
        currency = ingest.reporting_currency(con, config.reporting_currency)
        ingest.load_ad_reporting(con, folder, currency)
        ingest.load_kpi(con, folder, config.kpi_column)
        ingest.load_lift_tests(con, folder)
        ingest.load_controls(con, folder)
        cal = staging.build_calendar(con, config.geo_weights)
        media = staging.build_media_weekly(con, cal, config.geo_weights)
        kpi = staging.build_kpi_weekly(con, cal)
        controls = staging.build_controls_weekly(con, cal, config.controls)
        quarantined = con.execute("SELECT kind, reason, count(*) FROM raw.quarantine GROUP BY ALL").fetchall()
        lift = con.execute("SELECT * FROM raw.lift_tests").df()
        daily = con.execute("SELECT date_day, geo, channel, unit, clicks, impressions, spend "
                            "FROM raw.ad_reporting_current").df()
    geos = config.markets["all"]
    converted, rejected = convert_lift_tests(with_scope(lift, folder / "lift_tests.csv"), daily, geos, market="all",
                                             **config.lift_tests.conversion_kwargs())
    return {"quarantined": quarantined, "media": media, "kpi": kpi, "controls": controls,
            "converted": converted, "rejected": rejected}


@pytest.mark.parametrize("structure", STRUCTURES)
def test_folder_loads_through_the_products_ingestion(structure, folders):
    folder, truth = folders[structure]
    r = _ingest(folder)
    assert r["quarantined"] == []
    assert r["kpi"]["week_start"].nunique() == truth["dates"]["n_weeks"]
    assert r["rejected"].empty, r["rejected"].to_dict("records")
    assert set(r["converted"]["test_id"]) == {t["test_id"] for t in truth["lift_tests"]}
    units = r["media"].groupby("channel")["unit"].first().to_dict()
    assert units == {ch: v["unit"] for ch, v in truth["channels"].items()}
    if structure in DAILY:
        assert set(units.values()) == {"impressions", "clicks", "spend"}
        assert set(r["controls"]["control"]) == {"promo", "price_index"}
    # the truth's spend per cell over the training weeks is the staged spend
    staged = r["media"].groupby(["geo", "channel"])["spend"].sum()
    for c in truth["cells"]:
        assert staged[(c["geo"], c["channel"])] == pytest.approx(c["spend"], rel=1e-9)


@pytest.mark.slow  # the true-optimum search over every cell (~35 s): make test only
@pytest.mark.parametrize("structure", STRUCTURES)
def test_true_response_of_plans(structure, folders):
    _, truth = folders[structure]
    cells = pd.DataFrame(truth["cells"])
    geos, channels = truth["process"]["geos"], truth["process"]["channels"]
    cur = cells.set_index(["geo", "channel"])["current_weekly_spend"].reindex(
        pd.MultiIndex.from_product([geos, channels])).to_numpy().reshape(len(geos), len(channels))
    assert np.allclose(true_response(truth, np.zeros_like(cur)), 0.0)
    r = true_response(truth, cur)
    assert (r > 0).all()
    more = cur.copy()
    more[0, 0] *= 1.5
    r2 = true_response(truth, more)
    assert r2[0, 0] > r[0, 0]
    np.testing.assert_allclose(r2.ravel()[1:], r.ravel()[1:])        # cells are independent
    plan = {(geos[0], channels[0]): cur[0, 0]}
    assert true_response(truth, plan)[0, 0] == pytest.approx(r[0, 0])
    x, best = best_plan(truth, cur.sum(), 0.5 * cur, 1.5 * cur, starts=[cur])
    assert x.sum() == pytest.approx(cur.sum(), rel=1e-6)
    assert (x >= 0.5 * cur - 1e-6).all() and (x <= 1.5 * cur + 1e-6).all()
    assert best >= r.sum()
    assert best == pytest.approx(true_response(truth, x).sum())


def test_infamily_truth_matches_the_generators_own(sample_dir):
    from mmm_pipeline.sample.offfamily.infamily import infamily_truth

    raw = json.loads((sample_dir / "truth.json").read_text())
    t = infamily_truth(sample_dir, raw)
    cells = pd.DataFrame(t["cells"])
    n = t["dates"]["n_weeks"]
    for ch, weekly in raw["weekly_contribution"].items():
        assert cells[cells["channel"] == ch]["contribution"].sum() == pytest.approx(sum(weekly[:n]), rel=1e-9)
    proc = MediaProcess.from_json(t["process"])
    assert proc.family == "logistic" and np.allclose(proc.kernel.sum(axis=-1), 1.0)
    assert {x["test_id"] for x in t["lift_tests"]} == {x["test_id"] for x in raw["lift_tests"]}
    assert (cells["mroas"] > 0).all() and (cells["roas"] > 0).all()
