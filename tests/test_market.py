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
