"""`marts.alerts`: one row per failed run, failed gate or stale input, for a BI dashboard."""

from __future__ import annotations

import duckdb

from mmm_pipeline.warehouse import utcnow

DDL = """CREATE TABLE IF NOT EXISTS marts.alerts (
    alerted_at TIMESTAMP NOT NULL,
    asset VARCHAR,            -- asset key (with [partition]) or job name
    problem VARCHAR NOT NULL, -- what failed, in words
    severity VARCHAR NOT NULL,
    run_id VARCHAR
)"""


def record_alert(con: duckdb.DuckDBPyConnection, asset: str | None, problem: str, run_id: str | None,
                 severity: str = "error") -> None:
    con.execute(DDL)
    con.execute("INSERT INTO marts.alerts VALUES (?, ?, ?, ?, ?)", [utcnow(), asset, problem[:2000], severity, run_id])
