"""Retention keeps the newest N versions per partition and never the rows _latest shows."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd

from mmm_pipeline import retention, warehouse


def test_prune_keeps_newest_versions_per_market_and_the_latest_rows(tmp_path):
    db = tmp_path / "w.duckdb"
    art = tmp_path / "art"
    t0 = datetime(2026, 1, 1)
    with warehouse.connect(db) as con:
        for i in range(5):
            for market in ("west", "east"):
                if market == "east" and i > 1:
                    continue  # east was materialized twice only
                df = pd.DataFrame({"market": [market] * 2, "variant": "calibrated", "max_rhat": [i, i]})
                warehouse.append_history(con, "marts.model_runs", df, version=f"{market}-v{i}",
                                         partition_columns=("market", "variant"),
                                         materialized_at=t0 + timedelta(days=i, hours=market == "east"))
                path = art / "calibrated" / market / f"{market}-v{i}.nc"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"x")
        latest_before = con.execute("SELECT * FROM marts.model_runs_latest ORDER BY ALL").df()
        deleted = retention.prune_history(con, keep=2)
        removed = retention.prune_artifacts(con, art)
        left = con.execute("SELECT market, model_version FROM marts.model_runs GROUP BY ALL ORDER BY ALL").df()
        latest_after = con.execute("SELECT * FROM marts.model_runs_latest ORDER BY ALL").df()
    assert deleted["marts.model_runs"] == 6  # west v0..v2, 2 rows each
    assert left.values.tolist() == [["east", "east-v0"], ["east", "east-v1"], ["west", "west-v3"], ["west", "west-v4"]]
    pd.testing.assert_frame_equal(latest_before, latest_after)
    assert sorted(p.stem for p in removed) == ["west-v0", "west-v1", "west-v2"]
    assert sorted(p.stem for p in art.glob("*/*/*.nc")) == ["east-v0", "east-v1", "west-v3", "west-v4"]
