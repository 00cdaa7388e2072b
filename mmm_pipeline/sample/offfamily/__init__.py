"""Generators outside the model's family, with their truth (issue 27).

``generate(structure, out_dir, seed)`` writes an input folder in the product's contract
(ad_reporting/, kpi/, channels.csv, lift_tests.csv, pipeline.yaml with only what a user would
say: the market, the controls' aggregation, the KPI column; geos.csv and controls/ where the
structure has them) and, *beside* it, ``<out_dir>.truth.json`` (never inside the input folder:
the pipeline reads a truth.json there in the in-family format, and a user has none). Same seed,
same bytes.

Structures: ``hill_daily`` and ``weibull_lag`` (:mod:`.daily`), ``notebook`` (:mod:`.notebook`).
:func:`true_response` scores any plan under the truth; :func:`best_plan` finds the best one for a
budget and per-cell bounds. :mod:`.infamily` gives the in-family sample the same truth figures.

    python -m mmm_pipeline.sample.offfamily STRUCTURE OUT_DIR [--seed N]
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from mmm_pipeline.sample.offfamily.process import MediaProcess, PlanContext, best_plan as _best_plan
from mmm_pipeline.sample.offfamily.process import plan_response

__all__ = ["STRUCTURES", "build", "generate", "truth_path_for", "load_truth", "true_response", "best_plan",
           "cell_index"]

STRUCTURES = ("hill_daily", "weibull_lag", "notebook")


def build(structure: str, seed: int) -> dict:
    if structure in ("hill_daily", "weibull_lag"):
        from mmm_pipeline.sample.offfamily import daily

        return daily.build(structure, seed)
    if structure == "notebook":
        from mmm_pipeline.sample.offfamily import notebook

        return notebook.build(seed)
    raise ValueError(f"unknown off-family structure {structure!r}; one of {STRUCTURES}")


def truth_path_for(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    return out.parent / f"{out.name}.truth.json"


def generate(structure: str, out_dir: str | Path, seed: int) -> dict:
    """Write the input folder `out_dir` (replacing it) and `<out_dir>.truth.json`; return the truth."""
    b = build(structure, seed)
    out = Path(out_dir)
    tmp = Path(str(out) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "ad_reporting").mkdir(parents=True)
    (tmp / "kpi").mkdir()
    for plat, df in b["frames"].items():
        df.to_csv(tmp / "ad_reporting" / b["platforms"][plat]["file"], index=False, lineterminator="\n")
    b["kpi"].to_csv(tmp / "kpi" / "kpi.csv", index=False, lineterminator="\n")
    if b["controls"]:
        (tmp / "controls").mkdir()
        for name, df in b["controls"].items():
            df.to_csv(tmp / "controls" / f"{name}.csv", index=False, lineterminator="\n")
    if b["geos"] is not None:
        b["geos"].to_csv(tmp / "geos.csv", index=False, lineterminator="\n")
    b["lift"].to_csv(tmp / "lift_tests.csv", index=False, lineterminator="\n")
    (tmp / "channels.csv").write_text(b["channels_csv"], encoding="utf-8", newline="\n")
    (tmp / "pipeline.yaml").write_text(b["pipeline_yaml"], encoding="utf-8", newline="\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(out)
    truth_path_for(out).write_text(json.dumps(b["truth"], indent=1) + "\n", encoding="utf-8", newline="\n")
    return b["truth"]


def load_truth(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def _process(truth: dict) -> tuple[MediaProcess, PlanContext]:
    return MediaProcess.from_json(truth["process"]), PlanContext.from_json(truth["plan_context"])


def cell_index(truth: dict) -> tuple[list[str], list[str]]:
    return list(truth["process"]["geos"]), list(truth["process"]["channels"])


def _to_array(truth: dict, plan) -> np.ndarray:
    """A plan as (G, C) weekly money: an array, or {(geo, channel): weekly money} (cells not named: 0),
    or a frame with geo, channel, weekly_spend."""
    geos, channels = cell_index(truth)
    if isinstance(plan, np.ndarray):
        return plan.astype(float)
    if isinstance(plan, pd.DataFrame):
        plan = {(g, c): v for g, c, v in plan[["geo", "channel", "weekly_spend"]].itertuples(index=False)}
    out = np.zeros((len(geos), len(channels)))
    for (g, c), v in plan.items():
        out[geos.index(g), channels.index(c)] = float(v)
    return out


def true_response(truth: dict, plan) -> np.ndarray:
    """(G, C) true KPI a plan's horizon spend adds (over the horizon and its carryover), per cell.

    `plan`: weekly money per cell held over the truth's horizon (see `_to_array`). The pipeline's
    `budget_allocation` expected response is the same quantity under the model."""
    proc, ctx = _process(truth)
    return plan_response(proc, ctx, _to_array(truth, plan))


def best_plan(truth: dict, budget_weekly: float, low, high, starts=None) -> tuple[np.ndarray, float]:
    """The plan with the largest true response for a weekly budget within per-cell weekly bounds."""
    proc, ctx = _process(truth)
    return _best_plan(proc, ctx, budget_weekly, _to_array(truth, low), _to_array(truth, high),
                      [_to_array(truth, s) for s in (starts or [])])
