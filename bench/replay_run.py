"""`python -m assets.run` with every fit replaced by loading the posterior a reference run saved.

    REPLAY_ARTIFACTS=/path/to/reference/artifacts MMM_PROFILE=fast ... python bench/replay_run.py

nutpie's sampling is not bit-reproducible between runs (issue 12), so two fresh
runs differ in every posterior quantity. To check that a code change leaves the
marts as they were, run this once with the old code and once with the new one
(PYTHONPATH at each checkout, separate MMM_WAREHOUSE / MMM_ARTIFACT_DIR /
DAGSTER_HOME) against the same REPLAY_ARTIFACTS (`<variant>/<market>/*.nc` of a
normal run), then compare with `bench/compare_marts.py`. Everything after the
sampler (diagnostics, contributions, curves, ROAS, allocation, calibration
report) runs as in a normal run; the markets come from pipeline.yaml.
"""
import glob
import os
import sys
from pathlib import Path

import yaml

from mmm_pipeline import model as M

ART = os.environ["REPLAY_ARTIFACTS"]
_CONFIG = yaml.safe_load((Path(os.environ.get("MMM_INPUT_DIR", "data/sample")) / "pipeline.yaml").read_text()) or {}
MARKETS = {m: set(g) for m, g in (_CONFIG.get("markets") or {}).items()}


def replay_fit_model(media_weekly, kpi_weekly, cost_per_unit, cfg, *, lift_tests=None, progress_callback=None,
                     geos=None, controls=None, model_config=None, roas_targets=None):
    data = M.prepare_model_data(media_weekly, kpi_weekly, cost_per_unit, geos=geos,
                                control_columns=cfg.control_columns, controls=controls)
    cal = cfg.calibration.likelihood
    lift = M.lift_tests_for_model(lift_tests, data, likelihood=cal) if lift_tests is not None else None
    variant = "calibrated" if (lift is not None and len(lift)) else "uncalibrated"
    market = next((m for m, g in MARKETS.items() if g == set(data.geos)), "all")
    (path,) = glob.glob(f"{ART}/{variant}/{market}/*.nc")
    mmm = M.load_model(path)
    diagnose = getattr(M, "diagnose", None) or M.diagnostics  # its name before issue 10
    diag = diagnose(mmm, max_rhat=cfg.gates.max_rhat, min_ess_bulk=cfg.gates.min_ess_bulk)
    passed, failures, warns = M.gate_result(diag, cfg)
    if progress_callback:
        progress_callback(f"replayed {path}")
    return M.FitResult(
        mmm=mmm, data=data, config=cfg, config_hash=M.config_hash(cfg), variant=variant, diagnostics=diag,
        gate_passed=passed, gate_failures=failures, gate_warnings=warns, fit_seconds=1.0,
        stage_seconds={"sample": 1.0}, sampler_stats={"sampling_seconds": 1.0, "chains": 2, "draws": 200,
                                                       "tune": 200, "cores": 2},
        lift_tests_used=(M.lift_tests_for_model(lift_tests, data, keep_extra=True, likelihood=cal)
                         if variant == "calibrated" else None))


M.fit_model = replay_fit_model
from assets.run import main  # noqa: E402

sys.exit(main())
