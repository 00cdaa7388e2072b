"""`make run` runs its jobs without Dagster pools (assets/pools.py); the code location the UI and the
daemon load keeps them. Each case imports the definitions in a fresh process: pools are read there."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = (
    "import json\n"
    "from assets.definitions import defs\n"
    "pools = {}\n"
    "for job in ('ingest_job', 'model_job', 'publish_job'):\n"
    "    for node in defs.resolve_job_def(job).graph.node_dict.values():\n"
    "        pools[node.name] = node.definition.pool\n"
    "print(json.dumps(pools))\n"
)


@pytest.mark.parametrize("without_pools", [False, True])
def test_make_run_claims_no_pool_and_the_code_location_keeps_them(without_pools):
    env = {k: v for k, v in os.environ.items() if k != "MMM_RUN_WITHOUT_POOLS"}
    if without_pools:
        env["MMM_RUN_WITHOUT_POOLS"] = "1"
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
                         check=True, timeout=300).stdout
    pools = json.loads(out.strip().splitlines()[-1])
    if without_pools:
        assert not any(pools.values()), {n: p for n, p in pools.items() if p}
    else:
        assert pools["raw_ad_reporting"] == "duckdb" and pools["mmm_calibrated"] == "model_fit"
        assert pools["model_validation"] == "model_fit"
