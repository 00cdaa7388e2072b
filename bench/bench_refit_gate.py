"""The out-of-sample refit of staged datasets under the product's refit gate (issue 30 item 1).

    .venv/bin/python bench/bench_refit_gate.py DIR/notebook_s1/staged/all.pkl [...]

Each argument is a market's staged inputs as `bench/bench_fit_variants.py` writes them
(`<workdir>/<structure>_s<seed>/staged/<market>.pkl`). Per market: `market.run_validation` with the
product's defaults (the refit as the `model_validation` asset runs it: its own gate, the retry ladder),
printing each attempt's parameter diagnostics, the forecast gate's verdict, and the market row (attempts,
the gate's R-hat and ESS, MAPE against the naive forecast).
"""

from __future__ import annotations

import json
import pickle
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHOWN = ("refit judged", "fit done", "retry")
FIELDS = ["fit_passed_gates", "fit_attempts", "fit_max_rhat", "fit_min_ess_bulk", "fit_divergences",
          "fit_gate_failures", "model_mape", "baseline_mape", "coverage_94"]


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore")
    from mmm_pipeline.model.market import model_config, run_validation

    for staged in map(Path, argv if argv is not None else sys.argv[1:]):
        d = pickle.loads(staged.read_bytes())
        inputs = replace(d["inputs"], config=model_config("full", {}, d["inputs"].controls))
        t0 = time.perf_counter()
        v, _ = run_validation(inputs, d["scales"], "bench_refit_gate",
                              log=lambda m: print(m[:300], flush=True) if any(s in m for s in SHOWN) else None)
        row = v.table[v.table["geo"] == "market"].iloc[0]
        print(staged, json.dumps({k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in FIELDS},
                                 default=str), f"{time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
