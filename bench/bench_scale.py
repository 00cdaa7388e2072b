"""Scale benchmark: the whole pipeline on Meridian's simulated geo tables (20 geos; 40 geos).

Run from the repository root:

    .venv/bin/python bench/bench_scale.py                      # fast, then full profile (~12-17 min on 2 cores)
    .venv/bin/python bench/bench_scale.py --dataset meridian40 --profiles full   # 40 geos (issue 30 item 6)
    .venv/bin/python bench/bench_scale.py --profiles fast      # smoke run (~2-2.5 min)
    .venv/bin/python bench/bench_scale.py --profiles full --model-override '{"sampler": {"target_accept": 0.95}}'
    .venv/bin/python bench/bench_scale.py --keep --json /tmp/scale.json

What it does
------------
1. Converts the public fixture ``../shared/fixtures/meridian_geo_media.csv``
   (google/meridian ``geo_media.csv``: 20 geos x 156 weeks x 4 impression
   channels, KPI ``conversions``), or with ``--dataset meridian40`` Meridian's
   demo table ``bench/data/meridian_geo_all_channels.csv.gz`` (google/meridian
   ``meridian/data/simulated_data/csv/geo_all_channels.csv`` at commit 8ca83f6,
   Apache-2.0, gzipped unchanged: 40 geos x 156 weeks x 5 impression channels,
   2 controls, populations; its organic channel, ``Promo`` and revenue per
   conversion are left out by the preset), into the project's input contract with the
   project's converter, exactly as a user would:
   ``.venv/bin/mmm-convert-wide SRC <tmp>/input --preset meridian``.
   The converted ``pipeline.yaml`` has no ``markets`` (one market ``all``)
   and there is no ``lift_tests.csv`` (only the *uncalibrated* model is
   fitted; the calibrated asset reports "no valid lift test").
   ``--model-override JSON`` merges a ``model:`` block into that
   ``pipeline.yaml`` (any ``ModelConfig`` key, e.g. sampler or priors).
2. Per profile (``fast``, ``full``), in a fresh subprocess with its own empty
   warehouse, artifact folder and ``DAGSTER_HOME`` (the project's
   ``dagster.yaml`` copied in: telemetry off, pool limit 1):

       env MMM_INPUT_DIR=<tmp>/input MMM_WAREHOUSE=<tmp>/<profile>/w.duckdb \\
           MMM_ARTIFACT_DIR=<tmp>/<profile>/art MMM_PROFILE=<profile> \\
           DAGSTER_HOME=<tmp>/<profile> GX_ANALYTICS_ENABLED=false \\
           /usr/bin/time -v .venv/bin/python -m assets.run        (cwd = repo root)

   Wall time is measured around the subprocess. Peak memory is GNU time's
   ``Maximum resident set size`` (the largest process; nutpie samples the
   chains in threads of the same process); a /proc poller also records the
   peak *sum* of RSS over the process tree as a cross-check, plus the
   machine's 1-minute load average before, during (max and mean) and after.
3. Reads ``marts.model_runs_latest`` (DuckDB, read-only, after the process
   exited) and prints per fit: fit_seconds, max_rhat, min_ess_bulk,
   divergences, passed_gates (and r2, coverage_94, gate_failures); the
   model's geo / channel / week counts from ``marts.contributions_latest``
   (and the staging weeks, for the incomplete ones left out); the stage
   timings and failed / warning checks from the run's log.
4. For the ``full`` profile prints the targets: max R-hat <= 1.01, min bulk
   ESS >= 400, 0 divergences, every fit gated, wall < 6 min for 20 geos (issue 12)
   and < 15 min for 40 geos (issue 30), peak RSS < 8 GiB: PASS / FAIL.

Everything lives under one ``/tmp/bench_scale_*`` folder, removed at the end
unless ``--keep``. Exits 0 whatever the verdict (a failed gate makes
``assets.run`` exit 1, which is reported); a non-zero exit means the
benchmark itself errored (conversion failed, no model run in the warehouse).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV_PY = REPO / ".venv" / "bin" / "python"
CONVERT = REPO / ".venv" / "bin" / "mmm-convert-wide"
DEFAULT_SRC = REPO.parent / "shared" / "fixtures" / "meridian_geo_media.csv"
# name -> (the wide table, the whole run's wall-clock target in seconds)
DATASETS = {
    "meridian20": (DEFAULT_SRC, 6 * 60),
    "meridian40": (REPO / "bench" / "data" / "meridian_geo_all_channels.csv.gz", 15 * 60),
}
GNU_TIME = Path("/usr/bin/time")

TARGETS = {"max_rhat": 1.01, "min_ess_bulk": 400.0, "divergences": 0, "peak_mb": 8 * 1024}


# --------------------------------------------------------------------------- machine


def loadavg() -> tuple[float, float, float]:
    with open("/proc/loadavg") as fh:
        a, b, c = fh.read().split()[:3]
    return float(a), float(b), float(c)


def machine() -> dict:
    info = {"cpus": os.cpu_count()}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    info["mem_gb"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    code = ("import sys, importlib.metadata as m; print(sys.version.split()[0]); "
            "print(' '.join(f'{p} {m.version(p)}' for p in "
            "('pymc-marketing', 'pymc', 'nutpie', 'dagster', 'duckdb', 'pandas')))")
    out = subprocess.run([str(VENV_PY), "-c", code], capture_output=True, text=True, cwd=REPO)
    if out.returncode == 0:
        lines = out.stdout.strip().splitlines()
        info["python"], info["packages"] = lines[0], lines[1]
    return info


# --------------------------------------------------------------------------- process-tree RSS


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                kids.extend(int(x) for x in fh.read().split())
    except OSError:
        pass
    return kids


def tree_rss_mb(root: int) -> float:
    """Sum of VmRSS over `root` and its descendants (MB)."""
    total_kb, stack, seen = 0, [root], set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total_kb += int(line.split()[1])
                        break
        except OSError:
            continue
        stack.extend(_children(pid))
    return total_kb / 1024


# --------------------------------------------------------------------------- steps


def convert(src: Path, out_dir: Path, model_override: dict | None) -> dict:
    cmd = [str(CONVERT), str(src), str(out_dir), "--preset", "meridian"]
    if not CONVERT.exists():
        cmd = [str(VENV_PY), "-m", "mmm_pipeline.ingestion.convert", str(src), str(out_dir), "--preset", "meridian"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    seconds = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"conversion failed ({' '.join(cmd)}):\n{res.stdout}\n{res.stderr}")
    summary = json.loads(res.stdout)
    summary["seconds"] = seconds
    summary["command"] = " ".join(cmd)
    if model_override:
        import yaml  # the venv's PyYAML; only the parent reads it

        path = out_dir / "pipeline.yaml"
        cfg = yaml.safe_load(path.read_text()) or {}
        cfg["model"] = model_override
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    summary["pipeline_yaml"] = (out_dir / "pipeline.yaml").read_text()
    return summary


def parse_time_v(path: Path) -> dict:
    out: dict = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("Maximum resident set size (kbytes):"):
            out["maxrss_mb"] = int(line.rsplit(":", 1)[1]) / 1024
        elif line.startswith("User time (seconds):"):
            out["user_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("System time (seconds):"):
            out["sys_s"] = float(line.rsplit(":", 1)[1])
        elif line.startswith("Percent of CPU this job got:"):
            out["cpu_pct"] = line.rsplit(":", 1)[1].strip()
        elif line.startswith("Exit status:"):
            out["exit_status"] = int(line.rsplit(":", 1)[1])
    return out


def parse_log(text: str) -> dict:
    out: dict = {"stages": {}}
    for name, secs in re.findall(r"stage (\w+): ([0-9.]+) s", text):
        out["stages"][name] = out["stages"].get(name, 0.0) + float(secs)
    for key, label in (("failed_gates", "Failed blocking checks (gates):"), ("warned", "Checks that warn:"),
                       ("failed_steps", "Failed steps:")):
        m = re.search(re.escape(label) + r" (.*)", text)
        out[key] = m.group(1).strip() if m else ""
    m = re.search(r"(\d+) run\(s\) in (\d+) s \((\w+) profile\): (\w+)", text)
    if m:
        out["runs"], out["runs_seconds"], out["outcome"] = int(m.group(1)), int(m.group(2)), m.group(4)
    out["calibrated_skipped"] = "no valid lift test" in text
    out["tracebacks"] = text.count("Traceback (most recent call last)")
    return out


def step_seconds(home: Path) -> list[tuple[str, str, float, float]]:
    """(job, step, start epoch seconds, seconds) from the Dagster instance's SQLite event logs under `home`."""
    import sqlite3
    from datetime import datetime, timezone

    rows: list[tuple[str, str, float, float]] = []
    jobs: dict[str, str] = {}
    try:
        con = sqlite3.connect(f"file:{home / 'history' / 'runs.db'}?mode=ro", uri=True)
        jobs = dict(con.execute("SELECT run_id, pipeline_name FROM runs").fetchall())
        con.close()
    except sqlite3.Error:
        pass
    for db in sorted((home / "history" / "runs").glob("*.db")):
        if db.name == "index.db":
            continue
        job = jobs.get(db.stem, "?")
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            start: dict[str, float] = {}
            for etype, step, ts in con.execute(
                    "SELECT dagster_event_type, step_key, timestamp FROM event_logs ORDER BY id"):
                t = datetime.fromisoformat(str(ts)).replace(tzinfo=timezone.utc).timestamp()  # stored in UTC
                if etype == "STEP_START":
                    start[step] = t
                elif etype in ("STEP_SUCCESS", "STEP_FAILURE") and step in start:
                    rows.append((job, step, start[step], t - start[step]))
        except sqlite3.Error:
            pass
        finally:
            con.close()
    rows.sort(key=lambda r: r[2])
    return rows


def run_pipeline(profile: str, input_dir: Path, work: Path, timeout_s: int, poll_s: float) -> dict:
    home = work / profile
    home.mkdir(parents=True)
    if (REPO / "dagster.yaml").exists():
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = dict(os.environ, MMM_INPUT_DIR=str(input_dir), MMM_WAREHOUSE=str(home / "w.duckdb"),
               MMM_ARTIFACT_DIR=str(home / "art"), MMM_PROFILE=profile, DAGSTER_HOME=str(home),
               GX_ANALYTICS_ENABLED="false", PYTHONUNBUFFERED="1")
    time_file = home / "time.txt"
    cmd = [str(VENV_PY), "-m", "assets.run"]
    if GNU_TIME.exists():
        cmd = [str(GNU_TIME), "-v", "-o", str(time_file)] + cmd
    log_path = home / "run.log"
    load_before = loadavg()
    loads: list[float] = []
    peak_tree = 0.0
    timeline: list[tuple[float, float]] = []  # (epoch seconds, process-tree RSS MB)
    print(f"[{profile}] {' '.join(cmd)}  (log: {log_path})", flush=True)
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        next_report = t0 + 60
        timed_out = False
        while proc.poll() is None:
            rss = tree_rss_mb(proc.pid)
            timeline.append((time.time(), rss))
            peak_tree = max(peak_tree, rss)
            loads.append(loadavg()[0])
            now = time.perf_counter()
            if now - t0 > timeout_s:
                proc.kill()  # only the process this benchmark started
                timed_out = True
                break
            if now >= next_report:
                print(f"[{profile}] {now - t0:.0f} s, tree RSS now {tree_rss_mb(proc.pid):,.0f} MB, "
                      f"load {loads[-1]:.2f}", flush=True)
                next_report += 60
            time.sleep(poll_s)
        rc = proc.wait()
    wall = time.perf_counter() - t0
    text = log_path.read_text(errors="replace")
    tv = parse_time_v(time_file)
    if "maxrss_mb" not in tv:  # no GNU time: RUSAGE_CHILDREN (max over children so far)
        import resource

        tv["maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "profile": profile, "rc": rc, "timed_out": timed_out, "wall_s": wall, "peak_rss_mb": tv.get("maxrss_mb"),
        "peak_tree_rss_mb": peak_tree, "time_v": tv, "load_before": load_before, "load_after": loadavg(),
        "load_max": max(loads) if loads else None, "load_mean": sum(loads) / len(loads) if loads else None,
        "log": parse_log(text), "log_tail": text[-4000:],
    }
    steps = step_seconds(home)
    result["steps"] = [
        {"job": job, "step": step, "seconds": secs,
         "peak_tree_rss_mb": max((r for t, r in timeline if start <= t <= start + secs), default=None)}
        for job, step, start, secs in steps]
    if timeline:
        t_peak = max(timeline, key=lambda x: x[1])[0]
        result["peak_at_s"] = t_peak - timeline[0][0]
        result["peak_step"] = next((f"{job}/{step}" for job, step, start, secs in steps
                                    if start <= t_peak <= start + secs), "between steps")
    result.update(read_warehouse(home / "w.duckdb"))
    return result


def read_warehouse(path: Path) -> dict:
    out: dict = {"fits": [], "counts": {}}
    if not path.exists():
        return out
    import duckdb  # imported only after the child has exited

    con = duckdb.connect(str(path), read_only=True)
    try:
        def has(table: str) -> bool:
            schema, name = table.split(".")
            return bool(con.execute("SELECT count(*) FROM information_schema.tables "
                                    "WHERE table_schema = ? AND table_name = ?", [schema, name]).fetchone()[0])

        if has("marts.model_runs_latest"):
            df = con.execute(
                "SELECT market, variant, model_version, profile, chains, draws, fit_seconds, max_rhat, "
                "min_ess_bulk, divergences, r2, mape, coverage_94, passed_gates, gated, gate_failures "
                "FROM marts.model_runs_latest ORDER BY market, variant").df()
            out["fits"] = json.loads(df.to_json(orient="records"))
        if has("marts.contributions_latest"):
            for market, variant, geos, channels, weeks, first, last in con.execute(
                    "SELECT market, variant, count(DISTINCT geo), "
                    "count(DISTINCT component) FILTER (WHERE component_type = 'media'), "
                    "count(DISTINCT week_start), min(week_start), max(week_start) "
                    "FROM marts.contributions_latest GROUP BY 1, 2 ORDER BY 1, 2").fetchall():
                out["counts"][f"{market}/{variant}"] = {"geos": geos, "channels": channels, "weeks": weeks,
                                                        "first_week": str(first), "last_week": str(last)}
        if has("staging.media_weekly_latest"):
            cols = {r[0] for r in con.execute("DESCRIBE staging.media_weekly_latest").fetchall()}
            inc = "count(DISTINCT week_start) FILTER (WHERE incomplete_week)" if "incomplete_week" in cols else "NULL"
            geos, channels, weeks, incomplete = con.execute(
                f"SELECT count(DISTINCT geo), count(DISTINCT channel), count(DISTINCT week_start), {inc} "
                "FROM staging.media_weekly_latest").fetchone()
            out["staging"] = {"geos": geos, "channels": channels, "weeks": weeks, "incomplete_weeks": incomplete}
        if has("raw.quarantine"):
            out["quarantined_rows"] = con.execute("SELECT count(*) FROM raw.quarantine").fetchone()[0]
    finally:
        con.close()
    return out


def geo_size(home: Path) -> dict:
    """Does a geo's response ceiling follow its size? Per geo: weekly KPI mean, the media ceiling
    (sum over channels of the posterior mean of beta in KPI units, from the saved uncalibrated model),
    and the default allocation's optimal / current spend; corr(log KPI, log ceiling) and the plan's
    shift for the five smallest and five largest geos."""
    import duckdb
    import numpy as np

    from mmm_pipeline.model import load_model, parameter_summary

    arts = sorted((home / "art").rglob("uncalibrated/**/*.nc")) or sorted((home / "art").rglob("*.nc"))
    db = home / "w.duckdb"
    if not arts or not db.exists():
        return {}
    params = parameter_summary(load_model(arts[-1]))
    ceiling = params[params["parameter"] == "saturation_beta_kpi"].groupby("geo")["mean"].sum()
    con = duckdb.connect(str(db), read_only=True)
    try:
        kpi = con.execute("SELECT geo, avg(kpi_value) FROM staging.kpi_weekly_latest WHERE NOT incomplete_week "
                          "GROUP BY 1").df().set_index("geo").iloc[:, 0]
        plan = con.execute("SELECT geo, sum(optimal_spend) / sum(current_spend) FROM marts.budget_allocation_latest "
                           "WHERE variant = 'uncalibrated' AND allocation_id = (SELECT min(allocation_id) FROM "
                           "marts.budget_allocation_latest WHERE variant = 'uncalibrated') GROUP BY 1").df()
        # spend-weighted mROAS per geo at current spend: what the optimizer moves budget along
        mroas = con.execute("SELECT geo, sum(mroas_mean * current_weekly_spend) / sum(current_weekly_spend) "
                            "FROM marts.channel_roas_latest WHERE variant = 'uncalibrated' GROUP BY 1").df()
        basis = con.execute("SELECT DISTINCT basis FROM marts.model_scales").fetchall()
    finally:
        con.close()
    plan = plan.set_index("geo").iloc[:, 0]
    geos = kpi.sort_values().index.tolist()
    ratio = (ceiling / kpi).reindex(geos)
    out = {"scale_basis": [b[0] for b in basis],
           "corr_log_kpi_log_ceiling": float(np.corrcoef(np.log(kpi[geos]), np.log(ceiling[geos]))[0, 1]),
           "ceiling_over_kpi_smallest_geo": float(ratio.iloc[0]), "ceiling_over_kpi_largest_geo": float(ratio.iloc[-1]),
           "ceiling_spread": float(ceiling.max() / ceiling.min()), "kpi_spread": float(kpi.max() / kpi.min())}
    if len(plan):
        out["plan_change_5_smallest"] = float(plan.reindex(geos[:5]).mean() - 1)
        out["plan_change_5_largest"] = float(plan.reindex(geos[-5:]).mean() - 1)
        out["corr_log_kpi_plan_ratio"] = float(np.corrcoef(np.log(kpi[geos]), np.log(plan.reindex(geos)))[0, 1])
    if len(mroas):
        # the shift comes from the curves when it follows each geo's mROAS, not its size
        m = mroas.set_index("geo").iloc[:, 0].reindex(geos)
        out["mroas_5_smallest_over_5_largest"] = float(m.iloc[:5].mean() / m.iloc[-5:].mean())
        out["corr_log_kpi_log_mroas"] = float(np.corrcoef(np.log(kpi[geos]), np.log(m))[0, 1])
        if len(plan):
            out["corr_log_mroas_log_plan_ratio"] = float(np.corrcoef(np.log(m), np.log(plan.reindex(geos)))[0, 1])
    return out


# --------------------------------------------------------------------------- report


def _f(v, fmt: str) -> str:
    return "n/a" if v is None else format(v, fmt)


def report(res: dict) -> None:
    p = res["profile"]
    lg = res["log"]
    print(f"\n=== profile {p} ===")
    print(f"assets.run exit code {res['rc']}{' (TIMED OUT, killed)' if res['timed_out'] else ''}; "
          f"outcome: {lg.get('outcome', '?')} ({lg.get('runs', '?')} Dagster runs)")
    print(f"wall {res['wall_s']:.1f} s ({res['wall_s'] / 60:.2f} min); peak RSS {_f(res['peak_rss_mb'], ',.0f')} MB "
          f"(GNU time max RSS), process-tree peak {res['peak_tree_rss_mb']:,.0f} MB (/proc poll); "
          f"CPU user {_f(res['time_v'].get('user_s'), '.0f')} s, sys {_f(res['time_v'].get('sys_s'), '.0f')} s, "
          f"{res['time_v'].get('cpu_pct', '?')}")
    print(f"1-min load average: before {res['load_before'][0]:.2f}, during max {_f(res['load_max'], '.2f')} / "
          f"mean {_f(res['load_mean'], '.2f')}, after {res['load_after'][0]:.2f}")
    if lg["stages"]:
        print("fit stages (s): " + ", ".join(f"{k} {v:.1f}" for k, v in lg["stages"].items()))
    if res.get("peak_step"):
        print(f"process-tree RSS peaked {res['peak_at_s']:.0f} s into the run, in {res['peak_step']}")
    if res.get("steps"):
        ingest = [s for s in res["steps"] if s["job"] == "ingest_job"]
        print(f"Dagster steps: ingest_job {len(ingest)} steps, {sum(s['seconds'] for s in ingest):.1f} s, "
              f"peak tree RSS {max((s['peak_tree_rss_mb'] or 0) for s in ingest) if ingest else 0:,.0f} MB")
        for s in res["steps"]:
            if s["job"] != "ingest_job" and s["seconds"] >= 1.0:
                print(f"  {s['job']}/{s['step']:<22} {s['seconds']:7.1f} s   peak tree RSS "
                      f"{_f(s['peak_tree_rss_mb'], ',.0f')} MB")
    st = res.get("staging")
    if st:
        print(f"staging: {st['geos']} geos x {st['channels']} channels x {st['weeks']} weeks "
              f"({st['incomplete_weeks']} incomplete); quarantined rows: {res.get('quarantined_rows')}")
    for key, c in res["counts"].items():
        print(f"model {key}: {c['geos']} geos x {c['channels']} channels x {c['weeks']} weeks "
              f"({c['first_week']} .. {c['last_week']})")
    variants = {f["variant"] for f in res["fits"]}
    if "calibrated" not in variants:
        print("no lift tests in the converted folder: only the uncalibrated model is fitted"
              + (" (the calibrated asset logged 'no valid lift test')" if lg["calibrated_skipped"] else ""))
    for f in res["fits"]:
        print(f"fit {f['market']}/{f['variant']} ({f['chains']} chains x {f['draws']} draws): "
              f"fit_seconds {_f(f['fit_seconds'], '.1f')}, max_rhat {_f(f['max_rhat'], '.4f')}, "
              f"min_ess_bulk {_f(f['min_ess_bulk'], '.0f')}, divergences {f['divergences']}, "
              f"passed_gates {f['passed_gates']}, gated {f['gated']}; r2 {_f(f['r2'], '.3f')}, "
              f"coverage_94 {_f(f['coverage_94'], '.3f')}")
        if f.get("gate_failures"):
            print(f"  gate_failures: {f['gate_failures']}")
    if not res["fits"]:
        print("NO model run in marts.model_runs_latest; log tail:\n" + res["log_tail"])
    if lg["failed_gates"]:
        print(f"failed blocking checks (assets.run): {lg['failed_gates']}")
    if lg["failed_steps"]:
        print(f"failed steps: {lg['failed_steps']}")
    if lg["warned"]:
        print(f"checks that warn: {lg['warned']}")


def targets(res: dict, wall_target_s: float) -> dict:
    fits = res["fits"]
    worst = {
        "max_rhat": max((f["max_rhat"] for f in fits), default=None),
        "min_ess_bulk": min((f["min_ess_bulk"] for f in fits), default=None),
        "divergences": max((f["divergences"] for f in fits), default=None),
    }
    rows = {
        "max_rhat": (worst["max_rhat"], f"R-hat <= {TARGETS['max_rhat']}",
                     worst["max_rhat"] is not None and worst["max_rhat"] <= TARGETS["max_rhat"]),
        "min_ess_bulk": (worst["min_ess_bulk"], f"bulk ESS >= {TARGETS['min_ess_bulk']:.0f}",
                         worst["min_ess_bulk"] is not None and worst["min_ess_bulk"] >= TARGETS["min_ess_bulk"]),
        "divergences": (worst["divergences"], "0 divergences",
                        worst["divergences"] is not None and worst["divergences"] <= TARGETS["divergences"]),
        "gated": (sum(bool(f["gated"]) for f in fits), f"every fit gated ({len(fits)})",
                  bool(fits) and all(bool(f["gated"]) for f in fits)),
        "wall_s": (res["wall_s"], f"wall < {wall_target_s / 60:g} min",
                   res["wall_s"] < wall_target_s and not res["timed_out"]),
        "peak_mb": (res["peak_rss_mb"], "peak RSS < 8 GiB (8,192 MB)",
                    res["peak_rss_mb"] is not None and res["peak_rss_mb"] < TARGETS["peak_mb"]),
    }
    print(f"\nTargets ({res['profile']} profile):")
    for key, (value, label, ok) in rows.items():
        shown = "n/a" if value is None else (f"{value:.4f}" if key == "max_rhat" else f"{value:,.0f}")
        print(f"  {label:<30} {shown:>10}  {'PASS' if ok else 'FAIL'}")
    return {k: {"value": v, "target": lbl, "pass": ok} for k, (v, lbl, ok) in rows.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="meridian20",
                    help="meridian20: geo_media.csv from ../shared/fixtures; meridian40: geo_all_channels.csv "
                         "(bench/data) (default: %(default)s)")
    ap.add_argument("--src", type=Path, default=None, help="another wide Meridian table (default: the dataset's)")
    ap.add_argument("--profiles", default="fast,full", help="comma-separated, run in this order (default: %(default)s)")
    ap.add_argument("--model-override", default=None,
                    help="JSON for pipeline.yaml `model:` in the converted folder, e.g. "
                         "'{\"sampler\": {\"target_accept\": 0.95}}'")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per pipeline run before it is killed")
    ap.add_argument("--poll", type=float, default=0.5, help="seconds between /proc samples")
    ap.add_argument("--keep", action="store_true", help="keep the /tmp folder (warehouses, logs, artifacts)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    args = ap.parse_args(argv)

    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    src, wall_target_s = DATASETS[args.dataset]
    src = args.src or src
    override = json.loads(args.model_override) if args.model_override else None
    work = Path(tempfile.mkdtemp(prefix="bench_scale_", dir="/tmp"))
    results: dict = {"machine": machine(), "load_start": loadavg(), "model_override": override, "runs": []}
    m = results["machine"]
    print(f"machine: {m.get('cpus')} cores ({m.get('cpu', '?')}), {m.get('mem_gb', '?')} GB RAM, "
          f"Python {m.get('python', '?')}; {m.get('packages', '')}")
    print(f"1-min load average at start: {results['load_start'][0]:.2f}")
    try:
        conv = convert(src, work / "input", override)
        results["convert"] = {k: conv[k] for k in ("rows_read", "n_geos", "n_dates", "date_range", "files",
                                                    "kpi_column", "ignored_columns", "seconds", "command",
                                                    "pipeline_yaml")}
        print(f"converted {conv['rows_read']:,} wide rows ({conv['n_geos']} geos x {conv['n_dates']} dates, "
              f"{len(conv['channels'])} channels: "
              + ", ".join(f"{c['channel']} ({c['unit']})" for c in conv["channels"])
              + f") in {conv['seconds']:.1f} s -> {work / 'input'}; files {conv['files']}")
        print(f"ignored columns: {', '.join(conv['ignored_columns'])}")
        print("pipeline.yaml:\n  " + conv["pipeline_yaml"].strip().replace("\n", "\n  "))
        has_lift = (work / "input" / "lift_tests.csv").exists()
        markets = "set in pipeline.yaml" if "markets" in conv["pipeline_yaml"] else "none (one market 'all')"
        print(f"lift_tests.csv: {'present' if has_lift else 'absent (only the uncalibrated model is fitted)'}; "
              f"markets: {markets}")
        for profile in profiles:
            res = run_pipeline(profile, work / "input", work, args.timeout, args.poll)
            report(res)
            res["geo_size"] = geo_size(work / profile)
            print(f"[{profile}] geo size: " + ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in res["geo_size"].items()))
            if profile == "full":
                res["targets"] = targets(res, wall_target_s)
            res.pop("log_tail", None)
            results["runs"].append(res)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
            print(f"\nresults written to {args.json}")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    if not all(r["fits"] for r in results["runs"]):
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
