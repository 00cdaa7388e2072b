"""Benchmark: what one numba LLVM level for every fit costs the out-of-sample refit (issue 26).

    .venv/bin/python bench/bench_numba_level.py [--input data/sample] [--market west] [--reps 2]

Every fit of a process now compiles at `sampler.numba_opt` (1), the short validation refit included,
which used to compile at 0. Each run is the refit of `model.validation` (full profile: 2 chains x
300 tune + 500 draws, unthinned) on one market of the sample, in a fresh process with an empty
pytensor compile cache (what a newcomer's first `make run`, or a changed model, meets), at NUMBA_OPT
0 and 1 interleaved. Printed per run: wall seconds of the whole refit and nutpie's sampling seconds;
then the medians and the ratio level 1 / level 0 measured in this run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def one(input_dir: Path, market: str) -> dict:
    from bench_model import weekly_tables

    from mmm_pipeline import model as M
    from mmm_pipeline.model.holdout import holdout_validation

    t = weekly_tables(input_dir)
    geos = t["markets"][market]
    cfg = M.load_model_config("full")
    started = time.perf_counter()
    res = holdout_validation(t["media"], t["kpi"], t["cpu"], cfg, geos=geos, holdout_weeks=cfg.validation.holdout_weeks)
    wall = time.perf_counter() - started
    sampling = float(res.fit.mmm.idata.posterior.attrs.get("sampling_time", float("nan")))
    return {"wall": wall, "sampling": sampling, "mape": float(res.market_row["model_mape"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default=str(ROOT / "data" / "sample"))
    ap.add_argument("--market", default="west")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(json.dumps(one(Path(a.input), a.market)))
        return 0
    rows = []
    for rep in range(a.reps):
        for level in (0, 1):
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, NUMBA_OPT=str(level), PYTENSOR_FLAGS=f"base_compiledir={cache}")
                out = subprocess.run([sys.executable, __file__, "--one", "--input", a.input, "--market", a.market],
                                     env=env, capture_output=True, text=True, check=True, cwd=ROOT / "bench")
            r = json.loads(out.stdout.strip().splitlines()[-1]) | {"level": level, "rep": rep + 1}
            rows.append(r)
            print(f"rep {r['rep']} NUMBA_OPT={level}: refit {r['wall']:.1f} s (sampling {r['sampling']:.1f} s), "
                  f"market MAPE {r['mape']:.2%}", flush=True)
    med = {lv: statistics.median(r["wall"] for r in rows if r["level"] == lv) for lv in (0, 1)}
    smed = {lv: statistics.median(r["sampling"] for r in rows if r["level"] == lv) for lv in (0, 1)}
    print(f"median refit: level 0 {med[0]:.1f} s, level 1 {med[1]:.1f} s, ratio 1/0 {med[1] / med[0]:.2f} "
          f"(+{med[1] - med[0]:.1f} s); sampling {smed[0]:.1f} s vs {smed[1]:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
