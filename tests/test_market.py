"""The market module (mmm_pipeline.model.market): plain values in, one error type, no Dagster."""

from __future__ import annotations

import ast

import pandas as pd
import pytest

from mmm_pipeline import code_graph, warehouse
from mmm_pipeline.model import market
from mmm_pipeline.settings import load_pipeline_config
from tests.conftest import materialize


def test_the_market_workflow_reaches_no_dagster_and_no_asset_code():
    reached = code_graph.reached("mmm_pipeline.model.market")
    assert all(m.startswith("mmm_pipeline") for m in reached), reached
    files = code_graph.project_modules()
    for m in reached:
        for node in ast.walk(ast.parse(files[m].read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0].startswith("dagster") for n in names), (m, names)


@pytest.fixture(scope="module")
def staged(sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("market")
    wh = root / "warehouse.duckdb"
    assert materialize(sample_dir, wh, root / "artifacts", models=False).success
    return wh


def test_inputs_config_built_once_and_plans_that_follow_their_inputs(staged, sample_dir):
    pipeline, _ = load_pipeline_config(sample_dir)
    with warehouse.connect(staged) as con:
        inputs = market.read_inputs(con, pipeline, "west", profile="fast", input_dir=sample_dir)
        lift, targets = market.calibration_inputs(con, inputs, "calibrated")
        assert market.calibration_inputs(con, inputs, "uncalibrated") == (None, None)
        with pytest.raises(market.MarketError, match="not in pipeline.yaml markets"):
            market.read_inputs(con, pipeline, "atlantis", profile="fast", input_dir=sample_dir)
    assert inputs.geos == pipeline.markets["west"] and set(inputs.media["geo"]) >= set(inputs.geos)
    assert inputs.config == market.model_config("fast", pipeline.model, inputs.controls)
    assert list(inputs.config.control_columns) == [c for c in inputs.controls if c not in ("week_start", "geo")]
    scales = type("S", (), {"rows": lambda self: pd.DataFrame({"scale_of": ["kpi"], "value": [1.0]})})()
    # no marts.lift_tests yet (model_job makes it) and no roas_targets.csv: nothing to calibrate on
    assert lift.empty and targets is None
    assert not market.plan(inputs, "calibrated", lift, targets, scales, code_version="c1").has_calibration
    lift = pd.DataFrame({"test_id": ["T1"], "channel": ["search"], "x": [1.0]})
    cal = market.plan(inputs, "calibrated", lift, targets, scales, code_version="c1")
    assert cal.has_calibration
    unc = market.plan(inputs, "uncalibrated", None, None, scales, code_version="c1")
    assert not unc.has_calibration and unc.model_version != cal.model_version
    assert market.plan(inputs, "uncalibrated", None, None, scales, code_version="c1") == unc  # deterministic
    assert market.plan(inputs, "uncalibrated", None, None, scales, code_version="c2").model_version != unc.model_version
    with pytest.raises(market.MarketError, match="control"):
        market.model_config("fast", {**(pipeline.model or {}), "control_columns": ["no_such_control"]},
                            inputs.controls)


def test_validation_rows_are_versioned_stored_once_and_read_back(staged, sample_dir, tmp_path):
    """The validation's version follows its settings; its rows are written once per version and read
    back instead of refitting; a history too short for the holdout is a MarketError naming why."""
    import shutil

    pipeline, _ = load_pipeline_config(sample_dir)
    db = tmp_path / "w.duckdb"
    shutil.copy(staged, db)
    with warehouse.connect(db) as con:
        inputs = market.read_inputs(con, pipeline, "west", profile="fast", input_dir=sample_dir)
    scales = type("S", (), {"rows": lambda self: pd.DataFrame({"scale_of": ["kpi"], "value": [1.0]})})()
    version = market.validation_version(inputs, scales, code_version="c1")
    longer = inputs.config.model_copy(update={"validation": inputs.config.validation.model_copy(
        update={"holdout_weeks": 12})})
    from dataclasses import replace

    assert market.validation_version(replace(inputs, config=longer), scales, code_version="c1") != version
    assert market.validation_version(inputs, scales, code_version="c2") != version
    table = pd.DataFrame({"geo": ["US-CA", "market"], "model_mape": [0.12, 0.05], "baseline_mape": [0.1, 0.08],
                          "baseline": ["mean of the last 8 weeks"] * 2, "beats_baseline": [False, True],
                          "coverage_94": [1.0, 1.0], "first_week": ["2024-11-04"] * 2,
                          "last_week": ["2024-12-23"] * 2, "market": ["west"] * 2})
    v = market.Validation(version, table, True)
    assert v.passed and v.geos_not_beating_baseline == ["US-CA"] and "worst geo US-CA 12.0%" in v.summary()
    forecast = pd.DataFrame({"week_start": pd.to_datetime(["2024-11-04"]), "geo": ["US-CA"], "actual": [1.0],
                             "market": ["west"]})
    with warehouse.connect(db) as con:
        assert market.read_validation(con, version) is None
        market.write_validation(con, v, forecast, inputs.units)
        market.write_validation(con, v, forecast, inputs.units)  # the same version again: nothing appended
        back = market.read_validation(con, version)
        assert len(con.execute("SELECT * FROM marts.model_validation_weekly").df()) == 1
    assert back is not None and not back.refitted and len(back.table) == 2 and back.passed
    cutoff = sorted(inputs.kpi["week_start"].unique())[30]  # 30 weeks: fewer than 8 held out + 26
    short = replace(inputs, kpi=inputs.kpi[inputs.kpi["week_start"] < cutoff],
                    media=inputs.media[inputs.media["week_start"] < cutoff])
    with pytest.raises(market.MarketError, match="holdout validation needs at least"):
        market.run_validation(short, None, version)
