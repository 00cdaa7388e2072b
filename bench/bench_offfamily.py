"""Off-family recovery benchmark (issue 27): the product's answers against a truth it was not built on.

    .venv/bin/python bench/bench_offfamily.py [--structures hill_daily,weibull_lag,notebook,sample,corr,spread]
                                              [--seeds 10 | --quick] [--profile full|fast]
                                              [--out-csv bench/offfamily_results.csv] [--readme]
                                              [--workdir DIR] [--resume] [--keep] [--candidate JSON]

Per structure and generator seed it writes an input folder (off-family: mmm_pipeline.sample.offfamily;
in-family `sample`, `corr`, `spread`: mmm_pipeline.sample's generator with the recovery benchmark's
structures, the seed varied), gives the product only what a user would give (the folder; the
generator's truth and, for in-family folders, their `model:` settings are taken out), runs the whole
graph with product defaults (`assets.run.run_all`, a fresh warehouse, artifacts and ephemeral Dagster
instance, in a process of its own), reads the marts and scores them against the generator's truth:

* per geo x channel and variant: |error| relative to the truth and 94% HDI coverage of ROAS
  (`marts.channel_roas`), mROAS and the response to +10% (from the mart when it has their intervals,
  else from the saved model: `decisions.curves.marginal_response_draws` / `response_draws` at the
  mart's current weekly spend and cost per unit, x the planning horizon for +10%);
* per lift test and variant: |predicted - true lift| / true lift in the test's scope and coverage
  (`marts.lift_test_fit`; a national test split over markets is summed back to national scope);
* per fit: gates passed on the first attempt and after the retry ladder, fit seconds (`marts.model_runs`);
* the default budget plan per variant (the mart's for the variant it planned with, the other variant's
  by `decisions.allocation.allocate` with the same default scenario on the saved model): its true gain
  over the current plan under the generator's response, the best plan's gain under the truth for the
  same budget and bounds (scipy), the share captured, and whether the plan's 94% gain HDI covers the
  true gain.

Raw rows go to --out-csv (one per structure x seed x variant) and `<out-csv stem>_cells.csv` (one per
cell, test, fit and plan); the table (per structure and pooled, seed-bootstrap 90% intervals) is
printed and, with --readme, prepended to bench/README.md's off-family section, dated, with the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFF_FAMILY = ("hill_daily", "weibull_lag", "notebook")
IN_FAMILY = ("sample", "corr", "spread")
DEFAULT_STRUCTURES = "hill_daily,weibull_lag,notebook,sample,corr,spread"
COVERAGE_JSON = ROOT / "mmm_pipeline" / "reporting" / "interval_coverage.json"  # the health card reads it
RESULTS_MARKER = "<!-- offfamily-results: newest first, bench/bench_offfamily.py --readme inserts below -->"
BOOT = 2000


# --------------------------------------------------------------------------- datasets


def generator_seed(structure: str, k: int) -> int:
    """The generator seed of the k-th seed (1-based) of a structure."""
    if structure in OFF_FAMILY:
        return k
    from bench.bench_recovery import dataset_structure

    base, _ = dataset_structure(structure)
    return base + (k - 1) if structure == "sample" else base + 1000 * (k - 1)


def prepare(structure: str, k: int, folder: Path) -> dict:
    """Write the input folder for (structure, seed k) and return the issue-27 truth (also written to
    `<folder>.truth.json`; nothing of it stays inside the folder)."""
    from mmm_pipeline.sample.offfamily import generate, load_truth, truth_path_for

    seed = generator_seed(structure, k)
    if structure in OFF_FAMILY:
        generate(structure, folder, seed)
        return load_truth(truth_path_for(folder))
    import yaml

    from bench.bench_recovery import dataset_structure
    from mmm_pipeline.sample import generate_sample
    from mmm_pipeline.sample.offfamily.infamily import infamily_truth

    _, struct = dataset_structure(structure)
    raw = generate_sample(folder, seed=seed, **struct)
    (folder / "truth.json").replace(folder.parent / f"{folder.name}.generator_truth.json")
    spec = yaml.safe_load((folder / "pipeline.yaml").read_text())
    spec.pop("model", None)  # the generator's structure is not the user's knowledge: product defaults
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    raw["structure_name"] = structure
    truth = infamily_truth(folder, raw)
    truth["structure"], truth["generator_seed"] = structure, seed
    truth_path_for(folder).write_text(json.dumps(truth) + "\n")
    return truth


def with_candidate(folder: Path, settings: dict) -> None:
    """Merge a candidate product default into the folder's pipeline.yaml `model:` (the same for every
    dataset, so the benchmark judges the setting, not knowledge of the generator)."""
    import yaml

    from mmm_pipeline.model.config import _deep_merge

    path = folder / "pipeline.yaml"
    spec = yaml.safe_load(path.read_text()) or {}
    spec["model"] = _deep_merge(spec.get("model") or {}, settings)
    path.write_text(yaml.safe_dump(spec, sort_keys=False))


# --------------------------------------------------------------------------- worker (own process)


def worker(input_dir: Path, work: Path, profile: str, candidate: str | None = None) -> int:
    """Run the whole graph on `input_dir` into `work/`, then write `work/answers.json` from the marts, with
    the model code that answered (the health card's coverage is only this code's) and the candidate
    settings merged into its pipeline.yaml, if any."""
    os.environ.update({"MMM_INPUT_DIR": str(input_dir), "MMM_WAREHOUSE": str(work / "warehouse.duckdb"),
                       "MMM_ARTIFACT_DIR": str(work / "artifacts"), "MMM_PROFILE": profile,
                       "GX_ANALYTICS_ENABLED": "false"})
    import warnings

    warnings.filterwarnings("ignore")
    import dagster as dg

    from assets.definitions import defs
    from assets.run import failed_checks, run_all

    t0 = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        ok, results = run_all(defs, instance)
        failed = [e.step_key for r in results for e in r.all_events if e.event_type_value == "STEP_FAILURE"]
        checks = [c for r in results for c in failed_checks(r)]
    seconds = time.perf_counter() - t0
    answers = extract(work / "warehouse.duckdb", input_dir)
    from mmm_pipeline.reporting.health import model_code_version

    answers.update({"ok": bool(ok), "run_seconds": seconds, "failed_steps": failed, "failed_checks": checks,
                    "model_code_version": model_code_version(), "candidate": candidate or ""})
    (work / "answers.json").write_text(json.dumps(answers, default=float))
    return 0


def _hdi(draws, prob=0.94):
    from mmm_pipeline.model.summaries import hdi_bounds

    import numpy as np

    lo, hi = hdi_bounds(np.asarray(draws, float).reshape(-1, 1), prob)
    return float(lo[0]), float(hi[0])


def extract(db: Path, input_dir: Path) -> dict:
    """What the product answered, per market and variant, from the marts (and the saved models where
    the marts lack an interval)."""
    import numpy as np
    import pandas as pd

    from mmm_pipeline import model as model_lib
    from mmm_pipeline import warehouse
    from mmm_pipeline.decisions import allocation, curves
    from mmm_pipeline.model import market as market_lib

    out: dict = {"runs": [], "cells": [], "lift": [], "plans": [], "errors": [], "notes": []}
    if not db.exists():
        out["errors"].append("no warehouse written")
        return out

    def table(con, name, where=""):
        try:
            return con.execute(f"SELECT * FROM {name} {where}").df()
        except Exception:
            return pd.DataFrame()

    with warehouse.connect(db) as con:
        runs = table(con, "marts.model_runs_latest")
        roas = table(con, "marts.channel_roas_latest")
        lift = table(con, "marts.lift_test_fit_latest")
        plans = table(con, "marts.allocation_plan_latest", "WHERE allocation_id = 'default'")
        alloc = table(con, "marts.budget_allocation_latest", "WHERE allocation_id = 'default'")
        forecast = table(con, "marts.cost_per_unit_forecast_latest")
        curves_now = table(con, "marts.response_curves_latest")
        # each market's own national (market) ROAS per channel, the latest fit of each variant
        national = table(con, "marts.channel_roas_market", "m WHERE materialized_at = (SELECT max(materialized_at) "
                         "FROM marts.channel_roas_market x WHERE x.market = m.market AND x.variant = m.variant)")
    # the plan the product recommends (a failed variant's plan may be written beside it, chosen = false)
    plans, alloc = ((df[df["chosen"].fillna(True).astype(bool)] if "chosen" in df else df) for df in (plans, alloc))
    for r in runs.to_dict("records"):
        hist = json.loads(r["attempt_history"]) if r.get("attempt_history") else []
        out["runs"].append({"market": r["market"], "variant": r["variant"], "passed_gates": bool(r["passed_gates"]),
                            "first_attempt_passed": bool(hist[0]["passed"]) if hist else bool(r["passed_gates"]),
                            "attempts": int(r["attempts"] or 1), "fit_seconds": float(r["fit_seconds"] or 0.0),
                            "max_rhat": float(r["max_rhat"]), "min_ess_bulk": float(r["min_ess_bulk"]),
                            "divergences": int(r["divergences"]), "gated": bool(r["gated"]), "profile": r["profile"]})
    horizon = int(plans["horizon_weeks"].iloc[0]) if len(plans) else 8
    has_mroas_hdi = {"mroas_hdi_low", "mroas_hdi_high"} <= set(roas.columns)
    has_plus10 = {"response_plus10_mean", "response_plus10_hdi_low", "response_plus10_hdi_high"} <= set(roas.columns)
    if not has_mroas_hdi:
        out["notes"].append("mROAS interval: not in marts.channel_roas; computed from the saved model")
    if not has_plus10:
        out["notes"].append("response to +10%: not in marts.channel_roas; computed from the saved model")
    models = {(r["market"], r["variant"]): r["artifact_uri"] for r in runs.to_dict("records")}
    loaded: dict = {}

    def mmm_of(market, variant):
        key = (market, variant)
        if key not in loaded:
            loaded[key] = model_lib.load_model(models[key])
        return loaded[key]

    for r in roas.to_dict("records"):
        row = {"market": r["market"], "variant": r["variant"], "geo": r["geo"], "channel": r["channel"],
               "roas_mean": r["roas_mean"], "roas_lo": r["roas_hdi_low"], "roas_hi": r["roas_hdi_high"],
               "mroas_mean": r["mroas_mean"], "current_weekly_spend": r["current_weekly_spend"],
               "cost_per_unit_used": r["cost_per_unit_used"], "horizon_weeks": horizon}
        need_model = not (has_mroas_hdi and has_plus10 and pd.notna(r.get("mroas_hdi_low"))
                          and pd.notna(r.get("response_plus10_hdi_low")))
        if has_mroas_hdi and pd.notna(r.get("mroas_hdi_low")):
            row.update(mroas_lo=r["mroas_hdi_low"], mroas_hi=r["mroas_hdi_high"], mroas_source="mart")
        if has_plus10 and pd.notna(r.get("response_plus10_hdi_low")):
            row.update(plus10_mean=r["response_plus10_mean"], plus10_lo=r["response_plus10_hdi_low"],
                       plus10_hi=r["response_plus10_hdi_high"], plus10_source="mart")
        if need_model:
            try:
                mmm = mmm_of(r["market"], r["variant"])
                s, cpu = float(r["current_weekly_spend"]), float(r["cost_per_unit_used"])
                if "mroas_source" not in row:
                    d = curves.marginal_response_draws(mmm, r["geo"], r["channel"], s, cpu)
                    lo, hi = _hdi(d)
                    row.update(mroas_mean_model=float(d.mean()), mroas_lo=lo, mroas_hi=hi, mroas_source="model")
                if "plus10_source" not in row:
                    d = curves.response_draws(mmm, r["geo"], r["channel"], np.array([s, 1.1 * s]) / cpu)
                    d = (d[:, 1] - d[:, 0]) * horizon
                    lo, hi = _hdi(d)
                    row.update(plus10_mean=float(d.mean()), plus10_lo=lo, plus10_hi=hi, plus10_source="model")
            except Exception as exc:  # noqa: BLE001 - a benchmark records and goes on
                out["errors"].append(f"cells {r['market']}/{r['variant']}/{r['geo']}/{r['channel']}: {exc!r}")
        out["cells"].append(row)
    out["national"] = [{"market": r["market"], "variant": r["variant"], "channel": r["channel"],
                        "roas_mean": r["roas_mean"], "roas_lo": r["roas_hdi_low"], "roas_hi": r["roas_hdi_high"]}
                       for r in national.to_dict("records")]
    for r in lift.to_dict("records"):
        out["lift"].append({"market": r["market"], "variant": r["variant"], "test_id": r["test_id"],
                            "geo": r.get("geo"), "scope": r.get("scope"), "predicted_mean": r["predicted_mean"],
                            "predicted_lo": r["predicted_hdi_low"], "predicted_hi": r["predicted_hdi_high"],
                            "observed": r["observed"]})

    # default plans: the mart's (one variant per market), the other variant's with the same code
    from mmm_pipeline.settings import load_pipeline_config

    config = load_pipeline_config(input_dir)[0]
    for market in sorted(runs["market"].unique()) if len(runs) else []:
        cur = curves_now[curves_now["market"] == market].drop_duplicates(["geo", "channel"])
        geos = sorted(cur["geo"].unique())
        fc = forecast[forecast["geo"].isin(geos)]
        for variant in sorted(runs[runs["market"] == market]["variant"].unique()):
            p = plans[(plans["market"] == market) & (plans["variant"] == variant)]
            try:
                # the product's default scenario, hold rule included (a variant whose plan is not in the
                # mart is planned here with the same threshold)
                scenario = allocation.default_scenario(market, cur, horizon_weeks=config.planning_horizon_weeks,
                                                       variant=variant,
                                                       min_probability_of_gain=config.plan_min_probability_of_gain,
                                                       utility=config.plan_utility,
                                                       utility_confidence=config.plan_utility_confidence)
                if len(p):
                    a = alloc[(alloc["market"] == market) & (alloc["variant"] == variant)]
                    summary, source = p.iloc[0].to_dict(), "mart"
                else:
                    a, summary = allocation.allocate(mmm_of(market, variant), scenario, fc, cur,
                                                     max_weekly_spend=cur, return_summary=True)
                    source = "bench: decisions.allocation.allocate on the saved model, default scenario"
                bounds = {(g, c): scenario.bound_for(g, c) for g, c in zip(a["geo"], a["channel"])}
                out["plans"].append({
                    "market": market, "variant": variant, "source": source,
                    "horizon_weeks": int(summary["horizon_weeks"]), "total_budget": float(summary["total_budget"]),
                    "gain_mean": float(summary["gain_mean"]), "gain_lo": float(summary["gain_hdi_low"]),
                    "gain_hi": float(summary["gain_hdi_high"]),
                    "expected_response_mean": float(summary["expected_response_mean"]),
                    "current_response_mean": float(summary["current_response_mean"]),
                    "optimizer_converged": bool(a["optimizer_converged"].all()),
                    "cells": [{"geo": g, "channel": c, "current_weekly_spend": float(cw),
                               "optimal_weekly_spend": float(ow), "low": bounds[(g, c)][0] * float(cw),
                               "high": bounds[(g, c)][1] * float(cw)}
                              for g, c, cw, ow in a[["geo", "channel", "current_weekly_spend",
                                                     "optimal_weekly_spend"]].itertuples(index=False)]})
            except Exception as exc:  # noqa: BLE001
                out["errors"].append(f"plan {market}/{variant}: {exc!r}")

    # the fair test of calibration (issue 28 item 4): what reweighting needs, per market, beside the answers
    out["calibration"] = []
    for market in sorted(runs["market"].unique()) if len(runs) else []:
        if not {(market, "uncalibrated"), (market, "calibrated")} <= models.keys():
            continue
        try:
            profile = str(runs[runs["market"] == market]["profile"].iloc[0])
            with warehouse.connect(db) as con:
                inputs = market_lib.read_inputs(con, config, market, profile=profile, input_dir=input_dir)
            arrays = calibration_arrays(mmm_of(market, "uncalibrated"), mmm_of(market, "calibrated"),
                                        inputs.media[inputs.media["geo"].isin(inputs.geos)],
                                        inputs.cpu[inputs.cpu["geo"].isin(inputs.geos)], horizon)
            if arrays is not None:
                path = db.parent / f"calibration_{market}.npz"
                np.savez_compressed(path, **{k: np.asarray(v) for k, v in arrays.items()})
                out["calibration"].append({"market": market, "geos": list(inputs.geos), "path": str(path)})
        except Exception as exc:  # noqa: BLE001
            out["errors"].append(f"calibration arrays {market}: {exc!r}")
    return out


def calibration_arrays(unc, cal, media, cpu, horizon: int) -> dict | None:
    """One market's draws for the fair test of calibration: the uncalibrated posterior's implied lift of
    every lift term of the calibrated model, the other calibration terms' log density, the tested cells'
    mROAS, response to +10% and ROAS, and the real calibrated fit's means (which the reweighting at the
    actual readouts must match). None when the calibrated model has no window lift term."""
    import numpy as np

    from mmm_pipeline.decisions import curves
    from mmm_pipeline.model.calibration import Calibration
    from mmm_pipeline.reporting import calibration_checks as cc
    from mmm_pipeline.reporting.model_report import model_lift_draws

    calib = Calibration.from_attrs(cal.idata.attrs)
    design = calib.lift_design
    if design is None or not len(design.test_ids):
        return None
    terms = cc.calibration_terms(unc, calib)
    k = len(terms.lift_ids)
    cells = cc.tested_cells(calib)
    weeks = curves.model_weeks(unc)
    now = curves.spend_summary(media, weeks).set_index(["geo", "channel"])
    rates = curves.spend_summary(cpu, weeks).set_index(["geo", "channel"])

    def cell_table(mmm):
        d = cc.cell_draws(mmm, cells, media, cpu)
        for geo, channel in cells:
            if (geo, channel) not in now.index:
                continue
            w, cpu_used = float(now.loc[(geo, channel), "current_weekly_spend"]), \
                float(rates.loc[(geo, channel), "cost_per_unit_used"])
            r = curves.response_draws(mmm, geo, channel, np.array([w, 1.1 * w]) / cpu_used)
            d[("plus10", geo, channel)] = (r[:, 1] - r[:, 0]) * horizon
        return d

    unc_cells, cal_cells = cell_table(unc), cell_table(cal)
    keys = sorted(unc_cells.keys() & cal_cells.keys())
    meta = design.rows.drop_duplicates("test_id").set_index("test_id")
    return {"test_ids": np.array(terms.lift_ids), "test_channels": np.array([str(meta.loc[t, "channel"])
                                                                            for t in terms.lift_ids]),
            "sigma": design.sigma, "observed": design.observed, "chains": int(unc.idata.posterior.sizes["chain"]),
            "likelihood": np.array(calib.lift_likelihood), "nu": float(calib.lift_nu),
            "implied_unc": terms.lift_implied, "other_loglik": terms.loglik[:, k:].sum(axis=1),
            "implied_cal_mean": model_lift_draws(cal, design).mean(axis=0),
            "cell_keys": np.array(["|".join(key) for key in keys]),
            "cells_unc": np.column_stack([unc_cells[key] for key in keys]) if keys else np.zeros((len(terms.lift_implied), 0)),
            "cells_cal_mean": np.array([float(np.mean(cal_cells[key])) for key in keys])}


def predicted_update(s: float, sigma: float, n: int = 20000, seed: int = 0) -> tuple[float, float]:
    """What an exact Normal update of a well-calibrated posterior (sd `s`) by a readout of noise `sigma`
    gives a test's implied lift: (P(updated mean closer to the truth), E err^2 updated / E err^2 before).
    err before = -d, after = -(1 - g) d + g e, d ~ N(0, s^2), e ~ N(0, sigma^2), gain g = s^2 / (s^2 + sigma^2)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    d, e = rng.normal(0, s, n), rng.normal(0, sigma, n)
    g = s * s / (s * s + sigma * sigma)
    return float(np.mean(np.abs(-(1 - g) * d + g * e) < np.abs(d))), sigma * sigma / (s * s + sigma * sigma)


def update_given_error(u: float, s: float, sigma: float) -> tuple[float, float]:
    """The same exact Normal update, given the uncalibrated mean's realised error `u` (= mean - truth) instead
    of averaging over it: (P(updated mean closer to the truth), E err^2 updated) over the readout noise only.
    err after = (1 - g) u + g e, e ~ N(0, sigma^2). On a few datasets the realised uncalibrated errors, not
    the update, decide the RMSE ratio; this says what a correct update would have scored on these errors."""
    from scipy.stats import norm

    g = s * s / (s * s + sigma * sigma)
    if g == 0 or sigma == 0:
        return float(g > 0 and u != 0), float((1 - g) ** 2 * u * u)
    lo, hi = (-abs(u) - (1 - g) * u) / (g * sigma), (abs(u) - (1 - g) * u) / (g * sigma)
    return float(norm.cdf(hi) - norm.cdf(lo)), float((1 - g) ** 2 * u * u + g * g * sigma * sigma)


def fair_test(a: dict, true_lift: dict, true_cells: dict, *, n_readouts: int = 200, seed: int = 0) -> dict:
    """The fair test of calibration on one market (issue 28 item 4): `n_readouts` readouts of every test
    drawn around its true lift with its sigma, each turned into a calibrated posterior by reweighting the
    uncalibrated draws with the model's lift likelihood (Pareto-smoothed), scored against the truth beside
    the uncalibrated answer. `true_lift`: test id -> true lift in the scope the market's term measures
    (None: not scored, e.g. a national test split over markets); `true_cells`: (quantity, geo, channel)
    -> truth. Returns pooled sums and counts, so datasets pool by adding."""
    from types import SimpleNamespace

    import numpy as np

    from mmm_pipeline.reporting import calibration_checks as cc

    rng = np.random.default_rng(seed)
    ids = [str(t) for t in a["test_ids"]]
    channels = [str(c) for c in a["test_channels"]]
    imp, sigma, observed = np.asarray(a["implied_unc"], float), np.asarray(a["sigma"], float), np.asarray(a["observed"], float)
    chains, other = int(a["chains"]), np.asarray(a["other_loglik"], float)
    like, nu = str(a["likelihood"]), float(a["nu"])
    scored = [j for j, t in enumerate(ids) if true_lift.get(t) is not None]
    truth = np.array([true_lift[ids[j]] if j in scored else np.nan for j in range(len(ids))])
    unc_mean, unc_sd = imp.mean(axis=0), imp.std(axis=0)
    keys = [tuple(k.split("|")) for k in a["cell_keys"]]
    cell_unc = np.asarray(a["cells_unc"], float)
    cell_truth = np.array([true_cells.get(k, np.nan) for k in keys], float)

    def loglik(y):
        return cc._lift_loglik(imp, SimpleNamespace(observed=y, sigma=sigma), like, nu)

    out = {k: 0.0 for k in ("lift_pairs", "lift_closer", "lift_pred_closer", "lift_sq_cal", "lift_sq_unc",
                            "lift_pred_sq", "lift_pred_sq_unc", "lift_given_closer", "lift_given_sq", "heldout_pairs", "heldout_err_cal", "heldout_err_unc",
                            "readouts", "khat_bad")}
    for q in ("mroas", "plus10", "roas"):
        out.update({f"{q}_pairs": 0.0, f"{q}_err_cal": 0.0, f"{q}_err_unc": 0.0})
    for j in scored:
        p_closer, mse_ratio = predicted_update(float(unc_sd[j]), float(sigma[j]), seed=j)
        out["lift_pred_closer"] += p_closer * n_readouts
        out["lift_pred_sq"] += mse_ratio * unc_sd[j] ** 2 * n_readouts
        out["lift_pred_sq_unc"] += unc_sd[j] ** 2 * n_readouts
        given_closer, given_sq = update_given_error(float(unc_mean[j] - truth[j]), float(unc_sd[j]), float(sigma[j]))
        out["lift_given_closer"] += given_closer * n_readouts
        out["lift_given_sq"] += given_sq * n_readouts
    siblings = {j: [i for i in scored if i != j and channels[i] == channels[j]] for j in scored}
    for _ in range(n_readouts):
        y = observed.copy()
        y[scored] = truth[scored] + sigma[scored] * rng.standard_normal(len(scored))
        ll = loglik(y)
        w, khat = cc.psis_weights(ll.sum(axis=1) + other, chains)
        out["readouts"] += 1
        out["khat_bad"] += float(khat >= cc.PARETO_K_MAX)
        cal = w @ imp
        for j in scored:
            e_cal, e_unc = cal[j] - truth[j], unc_mean[j] - truth[j]
            out["lift_pairs"] += 1
            out["lift_closer"] += float(abs(e_cal) < abs(e_unc))
            out["lift_sq_cal"] += e_cal ** 2
            out["lift_sq_unc"] += e_unc ** 2
            if siblings[j]:  # the test held out: the others' readouts only
                w_j, _ = cc.psis_weights(ll.sum(axis=1) - ll[:, j] + other, chains)
                out["heldout_pairs"] += 1
                out["heldout_err_cal"] += abs(w_j @ imp[:, j] - truth[j]) / abs(truth[j])
                out["heldout_err_unc"] += abs(e_unc) / abs(truth[j])
        cell_cal = w @ cell_unc if cell_unc.shape[1] else np.zeros(0)
        for m, key in enumerate(keys):
            if not np.isfinite(cell_truth[m]) or cell_truth[m] == 0:
                continue
            q = key[0]
            out[f"{q}_pairs"] += 1
            out[f"{q}_err_cal"] += abs(cell_cal[m] / cell_truth[m] - 1)
            out[f"{q}_err_unc"] += abs(cell_unc[:, m].mean() / cell_truth[m] - 1)
    # confirmation by the real calibrated fit: the reweighting at the actual readouts against its means
    w, _ = cc.psis_weights(loglik(observed).sum(axis=1) + other, chains)
    diffs = np.abs(w @ imp - np.asarray(a["implied_cal_mean"], float)) / np.where(unc_sd > 0, unc_sd, np.nan)
    out["confirm_max_diff_sd"] = float(np.nanmax(diffs)) if len(diffs) else np.nan
    return out


# --------------------------------------------------------------------------- scoring


def score(structure: str, k: int, truth: dict, answers: dict) -> tuple[list[dict], list[dict]]:
    """(per-variant summary rows, detail rows) of one dataset."""
    import numpy as np

    from mmm_pipeline.sample.offfamily import best_plan, cell_index, true_response

    geos, channels = cell_index(truth)
    tc = {(c["geo"], c["channel"]): c for c in truth["cells"]}
    detail: list[dict] = []
    base = {"structure": structure, "seed": k, "generator_seed": truth.get("generator_seed", truth.get("seed"))}

    def rel(est, true):
        return abs(float(est) - float(true)) / abs(float(true)) if true and np.isfinite(true) else np.nan

    for c in answers["cells"]:
        t = tc.get((c["geo"], c["channel"]))
        if t is None:
            continue
        for fig, mean_key, lo, hi, true_key in (("roas", "roas_mean", "roas_lo", "roas_hi", "roas"),
                                                 ("mroas", "mroas_mean", "mroas_lo", "mroas_hi", "mroas"),
                                                 ("plus10", "plus10_mean", "plus10_lo", "plus10_hi", "response_plus10")):
            if c.get(mean_key) is None or c.get(lo) is None:
                continue
            detail.append({**base, "kind": fig, "market": c["market"], "variant": c["variant"], "geo": c["geo"],
                           "channel": c["channel"], "truth": t[true_key], "estimate": c[mean_key],
                           "lo": c[lo], "hi": c[hi], "rel_error": rel(c[mean_key], t[true_key]),
                           "covered": bool(c[lo] <= t[true_key] <= c[hi]),
                           "source": c.get(f"{fig}_source", "mart")})
    # national ROAS per market and channel (issue 30 item 4: a correlated pair's weaker channel must not
    # collapse, below a quarter of its truth with an interval that excludes the truth)
    market_geos: dict = {}
    for c in answers["cells"]:
        market_geos.setdefault(c["market"], set()).add(c["geo"])
    for n in answers.get("national", []):
        mine = [t for (g, ch), t in tc.items() if ch == n["channel"] and g in market_geos.get(n["market"], ())]
        spend = sum(t["spend"] for t in mine)
        if not mine or not spend:
            continue
        true = sum(t["contribution"] for t in mine) / spend
        covered = bool(n["roas_lo"] <= true <= n["roas_hi"])
        detail.append({**base, "kind": "roas_national", "market": n["market"], "variant": n["variant"],
                       "geo": "national", "channel": n["channel"], "truth": true, "estimate": n["roas_mean"],
                       "lo": n["roas_lo"], "hi": n["roas_hi"], "rel_error": rel(n["roas_mean"], true),
                       "covered": covered, "collapsed": bool(n["roas_mean"] < 0.25 * true and not covered),
                       "source": "mart"})
    tests = {t["test_id"]: t for t in truth["lift_tests"]}
    by_test: dict = {}
    for r in answers["lift"]:
        acc = by_test.setdefault((r["test_id"], r["variant"]), {"mean": 0.0, "lo": 0.0, "hi": 0.0, "markets": []})
        acc["mean"] += r["predicted_mean"]
        acc["lo"] += r["predicted_lo"]
        acc["hi"] += r["predicted_hi"]
        acc["markets"].append(r["market"])
    for (tid, variant), acc in by_test.items():
        t = tests.get(tid)
        if t is None:
            continue
        true = t["true_delta_y_reported_scope"]
        detail.append({**base, "kind": "lift", "market": "+".join(acc["markets"]), "variant": variant,
                       "geo": t["geo"] or "national", "channel": t["channel"], "test_id": tid, "truth": true,
                       "estimate": acc["mean"], "lo": acc["lo"], "hi": acc["hi"], "rel_error": rel(acc["mean"], true),
                       "covered": bool(acc["lo"] <= true <= acc["hi"]),
                       "source": "mart" if len(acc["markets"]) == 1 else
                       f"sum of {len(acc['markets'])} markets' predictions (HDI bounds added)"})
    fair: dict = {}
    for c in answers.get("calibration", []):
        a = dict(np.load(c["path"]))
        national_split = set(c["geos"]) != set(geos)  # a national test's term is this market's share
        true_lift = {}
        for tid in map(str, a["test_ids"]):
            t = tests.get(tid)
            true_lift[tid] = None if t is None or (t.get("national") and national_split) else \
                float(t["true_delta_y_reported_scope"])
        true_cells = {(q, g, ch): float(tc[(g, ch)][key]) for (g, ch) in tc
                      for q, key in (("mroas", "mroas"), ("plus10", "response_plus10"), ("roas", "roas"))}
        res = fair_test(a, true_lift, true_cells, seed=k)
        for key, v in res.items():
            fair[key] = max(fair.get(key, 0.0), v) if key == "confirm_max_diff_sd" else fair.get(key, 0.0) + v
    if fair:
        detail.append({**base, "kind": "fair", "market": "+".join(c["market"] for c in answers["calibration"]),
                       "variant": "calibrated", **fair})
    for r in answers["runs"]:
        detail.append({**base, "kind": "fit", "market": r["market"], "variant": r["variant"],
                       "gate_first": r["first_attempt_passed"], "gate_final": r["passed_gates"],
                       "attempts": r["attempts"], "fit_seconds": r["fit_seconds"], "max_rhat": r["max_rhat"],
                       "divergences": r["divergences"]})
    for p in answers["plans"]:
        G, C = len(geos), len(channels)
        opt, cur, lo, hi = (np.zeros((G, C)) for _ in range(4))
        for c in p["cells"]:
            i, j = geos.index(c["geo"]), channels.index(c["channel"])
            opt[i, j], cur[i, j] = c["optimal_weekly_spend"], c["current_weekly_spend"]
            lo[i, j], hi[i, j] = c["low"], c["high"]
        r_opt, r_cur = true_response(truth, opt).sum(), true_response(truth, cur).sum()
        budget_w = float(cur.sum())
        bx, r_best = best_plan(truth, budget_w, lo, hi, starts=[cur, opt])
        true_gain, best_gain = r_opt - r_cur, r_best - r_cur
        detail.append({**base, "kind": "plan", "market": p["market"], "variant": p["variant"],
                       "source": p["source"], "budget_weekly": budget_w,
                       "true_current_response": r_cur, "true_plan_response": r_opt, "true_best_response": r_best,
                       "true_gain": true_gain, "best_gain": best_gain, "pred_gain": p["gain_mean"],
                       "pred_gain_lo": p["gain_lo"], "pred_gain_hi": p["gain_hi"],
                       "pred_current_response": p["current_response_mean"],
                       "gain_covered": bool(p["gain_lo"] <= true_gain <= p["gain_hi"]),
                       "optimizer_converged": p["optimizer_converged"]})
    return summarise_dataset(base, detail, answers), detail


def summarise_dataset(base: dict, detail: list[dict], answers: dict) -> list[dict]:
    import numpy as np

    rows = []
    variants = sorted({d["variant"] for d in detail if "variant" in d})
    for v in variants:
        d = [x for x in detail if x.get("variant") == v]
        row = {**base, "variant": v, "ok": answers.get("ok"), "run_seconds": answers.get("run_seconds"),
               # absent from answers written before the worker recorded them
               "model_code_version": answers.get("model_code_version"), "candidate": answers.get("candidate")}
        for kind in ("roas", "mroas", "plus10", "lift", "roas_national"):
            x = [y for y in d if y["kind"] == kind]
            row[f"{kind}_err"] = float(np.nanmean([y["rel_error"] for y in x])) if x else np.nan
            row[f"{kind}_cov"] = float(np.mean([y["covered"] for y in x])) if x else np.nan
            row[f"{kind}_n"] = len(x)
        national = [y for y in d if y["kind"] == "roas_national"]
        row["national_collapsed"] = float(sum(y["collapsed"] for y in national)) if national else np.nan
        fits = [y for y in d if y["kind"] == "fit"]
        row["gate_first"] = float(np.mean([y["gate_first"] for y in fits])) if fits else np.nan
        row["gate_final"] = float(np.mean([y["gate_final"] for y in fits])) if fits else np.nan
        row["fit_seconds"] = float(np.mean([y["fit_seconds"] for y in fits])) if fits else np.nan
        pl = [y for y in d if y["kind"] == "plan"]
        if pl:
            cur = sum(y["true_current_response"] for y in pl)
            tg, bg = sum(y["true_gain"] for y in pl), sum(y["best_gain"] for y in pl)
            row.update(plan_true_gain_pct=100 * tg / cur, plan_best_gain_pct=100 * bg / cur,
                       plan_captured=tg / bg if bg > 0 else np.nan,
                       plan_pred_gain_pct=100 * sum(y["pred_gain"] for y in pl)
                       / sum(y["pred_current_response"] for y in pl),
                       plan_gain_covered=float(np.mean([y["gain_covered"] for y in pl])),
                       plan_source=";".join(sorted({y["source"].split(":")[0] for y in pl})))
        else:
            row.update(plan_true_gain_pct=np.nan, plan_best_gain_pct=np.nan, plan_captured=np.nan,
                       plan_pred_gain_pct=np.nan, plan_gain_covered=np.nan, plan_source="")
        fair = [y for y in d if y["kind"] == "fair"]
        if fair:
            f = fair[0]

            def ratio(a, b):
                return f[a] / f[b] if f.get(b) else np.nan

            row.update(fair_lift_closer=ratio("lift_closer", "lift_pairs"),
                       fair_lift_closer_pred=ratio("lift_pred_closer", "lift_pairs"),
                       fair_lift_rmse_ratio=float(np.sqrt(ratio("lift_sq_cal", "lift_sq_unc"))),
                       fair_lift_rmse_ratio_pred=float(np.sqrt(ratio("lift_pred_sq", "lift_pred_sq_unc"))),
                       # the Normal update on the uncalibrated errors that happened (absent from older rows)
                       fair_lift_closer_given=ratio("lift_given_closer", "lift_pairs") if "lift_given_sq" in f else np.nan,
                       fair_lift_rmse_ratio_given=float(np.sqrt(ratio("lift_given_sq", "lift_sq_unc")))
                       if "lift_given_sq" in f else np.nan,
                       fair_heldout_err_cal=ratio("heldout_err_cal", "heldout_pairs"),
                       fair_heldout_err_unc=ratio("heldout_err_unc", "heldout_pairs"),
                       fair_khat_bad=ratio("khat_bad", "readouts"),
                       fair_confirm_max_diff_sd=f.get("confirm_max_diff_sd", np.nan))
            for q in ("mroas", "plus10", "roas"):
                row[f"fair_{q}_err_cal"] = ratio(f"{q}_err_cal", f"{q}_pairs")
                row[f"fair_{q}_err_unc"] = ratio(f"{q}_err_unc", f"{q}_pairs")
        row["errors"] = len(answers.get("errors", []))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- table


METRICS = [("roas_err", "ROAS err", "pct"), ("roas_cov", "ROAS cov", "share"),
           ("mroas_err", "mROAS err", "pct"), ("mroas_cov", "mROAS cov", "share"),
           ("plus10_err", "+10% err", "pct"), ("plus10_cov", "+10% cov", "share"),
           ("lift_err", "lift err", "pct"), ("lift_cov", "lift cov", "share"),
           ("gate_first", "gates 1st", "share"), ("gate_final", "gates ladder", "share"),
           ("fit_seconds", "fit s", "num"),
           # national (market) ROAS per channel; channels below a quarter of their truth with an interval
           # that excludes it, per dataset (issue 30 item 4); absent from runs before 2026-12-07 (ninth session)
           ("roas_national_err", "national ROAS err", "pct"), ("roas_national_cov", "national ROAS cov", "share"),
           ("national_collapsed", "channels collapsed", "num2")]
# the fair test of calibration (issue 28 item 4), beside what an exact Normal update would give
FAIR_METRICS = [("fair_lift_closer", "lift: calibrated closer", "share"),
                ("fair_lift_closer_pred", "(Normal update)", "share"),
                ("fair_lift_rmse_ratio", "lift RMSE cal/uncal", "share"),
                ("fair_lift_rmse_ratio_pred", "(Normal update)", "share"),
                # the Normal update given each dataset's realised uncalibrated errors (ninth session on)
                ("fair_lift_closer_given", "closer (update, realised errors)", "share"),
                ("fair_lift_rmse_ratio_given", "RMSE ratio (update, realised errors)", "share"),
                ("fair_mroas_err_cal", "mROAS err cal", "pct"), ("fair_mroas_err_unc", "uncal", "pct"),
                ("fair_plus10_err_cal", "+10% err cal", "pct"), ("fair_plus10_err_unc", "uncal", "pct"),
                ("fair_heldout_err_cal", "held-out lift err cal", "pct"), ("fair_heldout_err_unc", "uncal", "pct"),
                ("fair_roas_err_cal", "tested ROAS err cal", "pct"), ("fair_roas_err_unc", "uncal", "pct"),
                ("fair_khat_bad", "k-hat >= 0.7", "share"), ("fair_confirm_max_diff_sd", "vs real fit (sd)", "num2")]
PLAN_METRICS = [("plan_true_gain_pct", "plan true gain %", "pp"), ("plan_best_gain_pct", "best plan gain %", "pp"),
                ("plan_captured", "share captured", "share"), ("plan_pred_gain_pct", "predicted gain %", "pp"),
                ("plan_gain_covered", "gain HDI covers", "share")]


def bootstrap(groups: list, rng) -> tuple[float, float, float]:
    """Mean over datasets and its 90% seed-bootstrap interval; `groups` = per structure, the per-seed
    values (resampled within each structure, so a pooled figure keeps the structures' weights)."""
    import numpy as np

    groups = [np.asarray([v for v in g if np.isfinite(v)], float) for g in groups]
    groups = [g for g in groups if len(g)]
    if not groups:
        return np.nan, np.nan, np.nan
    point = float(np.mean(np.concatenate(groups)))
    stats = np.empty(BOOT)
    for b in range(BOOT):
        stats[b] = np.mean(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups]))
    return point, float(np.quantile(stats, 0.05)), float(np.quantile(stats, 0.95))


def _fmt(kind: str, v: tuple) -> str:
    import numpy as np

    p, lo, hi = v
    if not np.isfinite(p):
        return "n/a"
    if kind == "pct":
        return f"{100 * p:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"
    if kind == "pp":
        return f"{p:+.1f} [{lo:+.1f}, {hi:+.1f}]"
    if kind == "share":
        return f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
    if kind == "num2":
        return f"{p:.2f} [{lo:.2f}, {hi:.2f}]"
    return f"{p:.0f} [{lo:.0f}, {hi:.0f}]"


def tables(summary) -> str:
    """Markdown: accuracy table and plan table, per structure and pooled, both variants."""
    import numpy as np

    rng = np.random.default_rng(0)
    structures = list(dict.fromkeys(summary["structure"]))
    variants = [v for v in ("uncalibrated", "calibrated") if v in set(summary["variant"])]
    out = []
    fair_title = ("Fair test of calibration (200 readouts per dataset drawn around the true lifts, each a "
                  "reweighted calibrated posterior; tested cells; beside each criterion the Normal update's value)")
    for title, metrics in (("Accuracy (mean over cells / tests / fits; |error| relative to the truth)", METRICS),
                           ("Default budget plan under the true response (% of the current plan's true response)",
                            PLAN_METRICS), (fair_title, FAIR_METRICS)):
        fair = metrics is FAIR_METRICS
        if fair and "fair_lift_closer" not in summary:
            continue
        metrics = [m for m in metrics if m[0] in summary]  # older CSVs lack newer figures
        out.append(f"**{title}**\n")
        out.append("| structure | variant | seeds | " + " | ".join(m[1] for m in metrics) + " |")
        out.append("|---|---|---:|" + "---:|" * len(metrics))
        for s in structures + (["pooled"] if len(structures) > 1 else []):
            for v in (["calibrated"] if fair else variants):
                sub = summary[summary["variant"] == v]
                parts = [sub[sub["structure"] == s]] if s != "pooled" else [sub[sub["structure"] == x] for x in structures]
                n = sum(len(p) for p in parts)
                cells = [_fmt(kind, bootstrap([p[key].to_numpy(float) for p in parts], rng)) for key, _, kind in metrics]
                out.append(f"| {s} | {v} | {n} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def coverage_reference(summary, *, measured: str, code: str, sources: list[str]) -> dict:
    """The health card's record of the method (mmm_pipeline.reporting.health.interval_coverage_reference):
    per variant, off- and in-family, the mean over datasets of the share of cells whose true ROAS and
    mROAS fell inside the 94% interval, with the seed-bootstrap 90% interval (as `tables` computes it)."""
    import numpy as np

    rng = np.random.default_rng(0)
    candidate = summary["candidate"].astype(object).fillna("") if "candidate" in summary else None
    if candidate is not None and (candidate != "").any():
        bad = summary.loc[candidate != "", ["structure", "seed"]].drop_duplicates().to_records(index=False)
        raise SystemExit("the health card's coverage describes the product's defaults; these rows measured candidate "
                         f"settings: {', '.join(f'{s} seed {k}' for s, k in bad)}")
    # a row from before the worker recorded its code counts as unknown code: the card then says stale
    versions = sorted(set(summary["model_code_version"].fillna("not recorded"))) if "model_code_version" in summary \
        else ["not recorded"]
    out: dict = {"measured": measured, "code": code, "model_code_versions": versions, "sources": sources,
                 "nominal": 0.94, "coverage": {}}
    for v in ("uncalibrated", "calibrated"):
        for group, structures in (("off_family", OFF_FAMILY), ("in_family", IN_FAMILY)):
            sub = summary[(summary["variant"] == v) & summary["structure"].isin(structures)]
            if not len(sub):
                continue
            parts = [sub[sub["structure"] == s] for s in structures if (sub["structure"] == s).any()]
            entry = {"datasets": int(len(sub)), "structures": [str(p["structure"].iloc[0]) for p in parts]}
            for q in ("roas", "mroas"):
                mean, low, high = bootstrap([p[f"{q}_cov"].to_numpy(float) for p in parts], rng)
                entry[q] = {"mean": round(mean, 3), "low": round(low, 3), "high": round(high, 3)}
            out["coverage"].setdefault(v, {})[group] = entry
    return out


def read_summaries(paths: list[str]):
    """The summary rows of several runs' CSVs; a (structure, seed, variant) in a later file replaces it."""
    import pandas as pd

    frames = [pd.read_csv(ROOT / p if not Path(p).is_absolute() else p) for p in paths]
    rows = pd.concat(frames, ignore_index=True)
    return rows.drop_duplicates(["structure", "seed", "variant"], keep="last").reset_index(drop=True)


def commit_label() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        return f"{sha}{' + uncommitted changes' if dirty else ''}"
    except Exception:  # noqa: BLE001
        return "unknown commit"


def readme_entry(summary, args, notes: list[str], elapsed: float) -> str:
    head = (f"#### {date.today().isoformat()}, commit {commit_label()}: `{' '.join(sys.argv[1:])}`\n\n"
            f"Profile {args.profile}; {len(summary) // max(summary['variant'].nunique(), 1)} datasets in "
            f"{elapsed / 3600:.1f} h on {os.cpu_count()} cores; raw rows in `{args.out_csv}`"
            + (f"; candidate model settings `{args.candidate}`" if args.candidate else "") + ".\n")
    note = "".join(f"- {n}\n" for n in sorted(set(notes)))
    return head + ("\n" + note if note else "") + "\n" + tables(summary) + "\n"


def write_readme(entry: str) -> None:
    path = ROOT / "bench" / "README.md"
    text = path.read_text()
    if RESULTS_MARKER not in text:
        raise SystemExit(f"{path}: marker line not found ({RESULTS_MARKER})")
    path.write_text(text.replace(RESULTS_MARKER, RESULTS_MARKER + "\n\n" + entry.rstrip() + "\n", 1))


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", default=DEFAULT_STRUCTURES)
    ap.add_argument("--seeds", type=int, default=10, help="generator seeds per structure (default 10)")
    ap.add_argument("--quick", action="store_true", help="3 seeds per structure (the edit loop)")
    ap.add_argument("--first-seed", type=int, default=1,
                    help="start at this seed (e.g. --first-seed 2 --seeds 2: seed 2 alone)")
    ap.add_argument("--profile", choices=("full", "fast"), default="full")
    ap.add_argument("--out-csv", default=str(ROOT / "bench" / "offfamily_results.csv"))
    ap.add_argument("--readme", action="store_true", help="prepend the dated table to bench/README.md")
    ap.add_argument("--workdir", default=None, help="keep each dataset's folder, truth and answers here")
    ap.add_argument("--resume", action="store_true", help="reuse answers.json already in --workdir")
    ap.add_argument("--keep", action="store_true", help="keep each dataset's warehouse and artifacts")
    ap.add_argument("--candidate", default=None, metavar="JSON",
                    help="model settings to judge as a new product default, merged into every dataset's "
                    "pipeline.yaml `model:` alike (e.g. '{\"yearly_seasonality\": 10}'); never the generator's")
    ap.add_argument("--publish-coverage", nargs="+", metavar="CSV",
                    help="run nothing: write the health card's interval coverage (" + str(COVERAGE_JSON.relative_to(ROOT))
                    + ") from these summary CSVs (paths from the repository root; a later file's dataset replaces "
                    "an earlier one's)")
    ap.add_argument("--code", default=None, help="with --publish-coverage: the commit(s) whose model produced the "
                    "CSVs, as the health card names them (default: this checkout's)")
    ap.add_argument("--worker", nargs=2, metavar=("INPUT_DIR", "WORK_DIR"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(Path(a.worker[0]), Path(a.worker[1]), a.profile, a.candidate)
    if a.publish_coverage:
        ref = coverage_reference(read_summaries(a.publish_coverage), measured=date.today().isoformat(),
                                 code=a.code or f"commit {commit_label()}", sources=list(a.publish_coverage))
        COVERAGE_JSON.write_text(json.dumps(ref, indent=2) + "\n")
        print(json.dumps(ref, indent=2))
        return 0
    import tempfile

    import pandas as pd

    structures = [s.strip() for s in a.structures.split(",") if s.strip()]
    for s in structures:
        if s not in OFF_FAMILY + IN_FAMILY:
            raise SystemExit(f"unknown structure {s!r}: one of {', '.join(OFF_FAMILY + IN_FAMILY)}")
    n_seeds = 3 if a.quick else a.seeds
    root = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="bench_offfamily_"))
    root.mkdir(parents=True, exist_ok=True)
    out_csv = Path(a.out_csv)
    cells_csv = out_csv.with_name(out_csv.stem + "_cells.csv")
    summary_rows, detail_rows, notes = [], [], []
    t0 = time.perf_counter()
    # seed-major: a run stopped part way (and resumed with --resume) has covered every structure
    for k in range(a.first_seed, n_seeds + 1):
        for s in structures:
            ds = root / f"{s}_s{k}"
            ds.mkdir(exist_ok=True)
            folder = ds / "input"
            answers_path = ds / "work" / "answers.json"
            truth = prepare(s, k, folder) if not (a.resume and answers_path.exists()) else \
                json.loads((ds / "input.truth.json").read_text())
            if a.candidate and not (a.resume and answers_path.exists()):
                with_candidate(folder, json.loads(a.candidate))
            if not (a.resume and answers_path.exists()):
                work = ds / "work"
                if work.exists():
                    shutil.rmtree(work)
                work.mkdir()
                t1 = time.perf_counter()
                with open(work / "run.log", "w") as log:
                    rc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--profile", a.profile,
                                         "--worker", str(folder), str(work),
                                         *(["--candidate", a.candidate] if a.candidate else [])], cwd=ROOT, stdout=log,
                                        stderr=subprocess.STDOUT).returncode
                if rc != 0 or not answers_path.exists():
                    print(f"[{time.perf_counter() - t0:7.0f}s] {s} seed {k}: worker failed (rc {rc}); "
                          f"see {work / 'run.log'}", flush=True)
                    continue
                if not a.keep:
                    for p in (work / "warehouse.duckdb", work / "artifacts"):
                        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                wall = time.perf_counter() - t1
            else:
                wall = float("nan")
            answers = json.loads(answers_path.read_text())
            notes += answers.get("notes", [])
            rows, detail = score(s, k, truth, answers)
            summary_rows += rows
            detail_rows += detail
            for r in rows:
                print(f"[{time.perf_counter() - t0:7.0f}s] {s} seed {k} {r['variant']:12}: ok {r['ok']}, "
                      f"ROAS err {r['roas_err']:.1%} cov {r['roas_cov']:.2f} | mROAS err {r['mroas_err']:.1%} "
                      f"cov {r['mroas_cov']:.2f} | +10% err {r['plus10_err']:.1%} cov {r['plus10_cov']:.2f} | "
                      f"lift err {r['lift_err']:.1%} cov {r['lift_cov']:.2f} | gates {r['gate_first']:.2f}/"
                      f"{r['gate_final']:.2f}, fit {r['fit_seconds']:.0f}s | plan true gain "
                      f"{r['plan_true_gain_pct']:+.1f}% (predicted {r['plan_pred_gain_pct']:+.1f}%, best "
                      f"{r['plan_best_gain_pct']:+.1f}%, captured {r['plan_captured']:.2f}, HDI covers "
                      f"{r['plan_gain_covered']:.2f}) | run {wall:.0f}s, errors {r['errors']}", flush=True)
            for e in answers.get("errors", []):
                print(f"    error: {e}")
            out_csv.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(summary_rows).to_csv(out_csv, index=False)
            pd.DataFrame(detail_rows).to_csv(cells_csv, index=False)
    if not summary_rows:
        print("no dataset produced results")
        return 1
    summary = pd.DataFrame(summary_rows)
    elapsed = time.perf_counter() - t0
    print(f"\nwork folder: {root}\nraw rows: {out_csv}, {cells_csv}\n")
    for n in sorted(set(notes)):
        print(f"note: {n}")
    print(tables(summary))
    if a.readme:
        write_readme(readme_entry(summary, a, notes, elapsed))
        print(f"prepended to {ROOT / 'bench' / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
