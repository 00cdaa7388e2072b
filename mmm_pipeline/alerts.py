"""`marts.alerts`: one row per failed run, failed gate or stale input, for a BI dashboard."""

from __future__ import annotations

import duckdb

from mmm_pipeline.warehouse import ensure_table, utcnow


def record_alert(con: duckdb.DuckDBPyConnection, asset: str | None, problem: str, run_id: str | None,
                 severity: str = "error", once: bool = False) -> bool:
    """Append an alert; with `once`, skip it when the same asset already has the same problem on record.

    `once` serves alerts that describe a state rather than an event (a gate failed for one model
    version): re-materializing the same inputs re-reads the same artifact and must not add a row.
    Returns whether a row was written."""
    ensure_table(con, "marts.alerts")
    problem = problem[:2000]
    if once and con.execute("SELECT count(*) FROM marts.alerts WHERE asset IS NOT DISTINCT FROM ? AND problem = ?",
                            [asset, problem]).fetchone()[0]:
        return False
    con.execute("INSERT INTO marts.alerts (alerted_at, asset, problem, severity, run_id) VALUES (?, ?, ?, ?, ?)",
                [utcnow(), asset, problem, severity, run_id])
    return True
