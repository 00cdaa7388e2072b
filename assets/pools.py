"""The Dagster concurrency pools of warehouse and fit steps, and their absence under `make run`.

In the UI and under the daemon every warehouse step (ingestion, staging, costs, the BI copy) runs
in the `duckdb` pool and every model fit in `model_fit` (limits in dagster.yaml and `make ui`), so
runs launched side by side take turns. `make run` (`python -m assets.run`) needs none of that: its
run lock admits one run per warehouse and DAGSTER_HOME, ingestion finishes before the markets
start, the warehouse file lock serialises every write, and `MMM_FIT_CONCURRENCY` below 2 runs the
markets one after the other. It sets `MMM_RUN_WITHOUT_POOLS=1` before loading the definitions, so
its steps claim no pool slot, and a killed `make run` leaves none behind for the next one to wait on.
"""

import os

WITHOUT_POOLS_ENV = "MMM_RUN_WITHOUT_POOLS"


DUCKDB = "duckdb"
MODEL_FIT = "model_fit"


def pool(name: str) -> str | None:
    """`name`, or no pool when this process runs `make run`'s jobs (read when an asset module is
    imported, so `make run` sets the variable before it loads the definitions)."""
    return None if os.environ.get(WITHOUT_POOLS_ENV) == "1" else name
