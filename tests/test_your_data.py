"""Your own data, no code change: the converted Meridian table through the whole pipeline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmm_pipeline import warehouse
from tests.conftest import REPO, assert_formatted, fixture_path, visible_text

# Every test here runs the pipeline's model fits (in subprocesses).
pytestmark = pytest.mark.fit


def test_converted_meridian_table_runs_end_to_end_and_keeps_its_constant_cpm(tmp_path):
    # Five of the table's 20 geos: the same path end to end at a quarter of the fit (the
    # 20-geo model is measured in bench/bench_scale.py).
    full = pd.read_csv(fixture_path("meridian_geo_media.csv"))
    geos = sorted(full["geo"].unique())[:5]
    src = tmp_path / "meridian_geo_media_5_geos.csv"
    full[full["geo"].isin(geos)].to_csv(src, index=False)
    folder = tmp_path / "meridian"
    console = Path(sys.executable).parent / "mmm-convert-wide"  # the installed console command
    subprocess.run([str(console), str(src), str(folder), "--preset", "meridian"], check=True, cwd=REPO,
                   timeout=120, capture_output=True)
    db = tmp_path / "w.duckdb"
    env = {**os.environ, "MMM_INPUT_DIR": str(folder), "MMM_WAREHOUSE": str(db), "MMM_PROFILE": "fast",
           "MMM_ARTIFACT_DIR": str(tmp_path / "art"), "DAGSTER_HOME": str(tmp_path)}
    run = subprocess.run([sys.executable, "-m", "assets.run"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "model_job all: ok" in run.stdout  # no markets configured: one market `all`
    with warehouse.connect(db) as con:
        cpu = con.execute("SELECT * FROM marts.cost_per_unit_latest WHERE units > 0").df()
        runs = con.execute("SELECT market, variant FROM marts.model_runs_latest").df()
        basis = con.execute("SELECT DISTINCT basis FROM marts.model_scales").fetchall()
        # per-capita scales (the converter wrote geos.csv) still report totals: each geo's components add
        # up to its KPI
        totals = con.execute("SELECT c.geo, c.s, k.s FROM (SELECT geo, sum(mean) s FROM marts.contributions_latest "
                             "GROUP BY 1) c JOIN (SELECT geo, sum(kpi_value) s FROM staging.kpi_weekly_latest "
                             "WHERE NOT incomplete_week GROUP BY 1) k USING (geo)").fetchall()
        # a count KPI, and the marts say so
        kpi_units = con.execute("SELECT DISTINCT kpi_name, kpi_unit FROM marts.channel_roas_latest").fetchall()
    assert runs.values.tolist() == [["all", "uncalibrated"]]  # no lift tests: calibrated not fitted
    assert kpi_units == [("conversions", "count")]
    assert (folder / "geos.csv").exists() and basis == [("per_capita",)]
    # 20 seeds (bench/stochastic_thresholds.py --your-data, bench/stochastic_thresholds_your_data.csv): the worst
    # geo's |contributions / KPI - 1| was 0.0003-0.0011 (max + 3 sd 0.0019); a per-capita slip is off by the population
    assert len(totals) == 5 and all(abs(c / k - 1) < 0.01 for _, c, k in totals), totals
    wide = pd.read_csv(src)
    for k in range(4):
        got = cpu[cpu.channel == f"channel{k}"]
        assert len(got) > 0.95 * len(geos) * 156  # weeks with impressions
        assert (got.cpm / got.cpm.median() - 1).abs().max() <= 2e-7
        want = (wide[f"Channel{k}_spend"] / wide[f"Channel{k}_impression"]).median() * 1000
        np.testing.assert_allclose(got.cpm.median(), want, rtol=1e-7)
    assert (tmp_path / "published" / "mmm.duckdb").exists()
    # The report of a count KPI (issue 29): the cost of one more conversion, not money per money; the fast
    # profile's gates; formatted values; model parts in words; the index with the period and the plan's gain.
    (page,) = (tmp_path / "art" / "reports" / "all").glob("*.html")
    text = visible_text(page.read_text())
    assert "conversions of conversions" not in text and "ROAS" not in text and "break-even" not in text
    assert re.search(r"Lowest marginal cost per incremental conversion channel\d: [\d.]+ USD", text)
    assert "fast profile: max R-hat at most 1.1, bulk ESS at least 20, no divergent transitions" in text
    assert "_raw" not in text and "saturation_" not in text and "carryover (how much" in text
    assert_formatted(text)
    index = visible_text((tmp_path / "art" / "reports" / "index.html").read_text())
    assert re.search(r"\d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d \(156 weeks\)", index)
    assert re.search(r"[+-]?[\d,]+ conversions \(94% interval -?[\d,]+ conversions to -?[\d,]+ conversions\) over 8 "
                     "weeks", index)
