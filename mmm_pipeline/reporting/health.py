"""The model health card (mart `model_health`): one row per check and variant, green / amber / red, in words.

Computed from marts that other assets already wrote (nothing is refitted):

- ``convergence``: marts.model_runs against the gates of the run's profile (``load_model_config``):
  red when max R-hat, bulk ESS or the divergent share breaks them; amber when they hold but the
  profile does not enforce them (fast), so the model is not gated; green when gated.
- ``out_of_sample``: marts.model_validation's market row: green when the model's held-out MAPE beats
  the naive forecast's, amber when within 10% of it, red beyond; amber when no validation is stored.
- ``held_out_experiments`` (calibrated variant): marts.lift_test_holdout: of the scored tests, the share
  whose measurement falls inside the held-out prediction's 94% interval: green from 80%, amber from
  50%, red below; amber when no test can be scored.
- ``calibration_consistency`` (calibrated variant): marts.calibration_consistency: red when a quantity
  is inconsistent, amber when the tests pull further than the uncalibrated uncertainty allows
  (Pareto k-hat 0.7 or more), green otherwise.
- ``data_checks`` (variant ``both``): the newest Great Expectations result of every suite: green when
  all passed, amber when a suite failed (its rows are quarantined or flagged; see the data section).
- ``data_freshness`` (variant ``both``): the newest day of each source against ``freshness_days``:
  green or amber.
- ``interval_coverage`` (per variant): not this fit's but the method's record, from the off-family
  benchmark (``interval_coverage.json`` beside this module, written by ``bench/bench_offfamily.py
  --publish-coverage``): the share of cells whose true ROAS and mROAS fell inside the variant's 94%
  interval on data the model did not generate. Green when both reach ``COVERAGE_TARGET`` off the
  model's family, amber otherwise: the intervals are then narrower than they look. The record names the
  model code it measured (``model_code_version``); when this code's differs, the row says the figures
  describe an earlier model and is never green.

``out_of_sample`` is the uncalibrated variant's row: the validation refits that structure.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Callable

import pandas as pd

from mmm_pipeline import code_graph
from mmm_pipeline.reporting.charts import HDI_LABEL, pct

COLUMNS = ["market", "variant", "check_name", "status", "value", "threshold", "sentence"]
STATUSES = ("green", "amber", "red")
CHECK_TITLES = {"convergence": "Convergence", "out_of_sample": "Out-of-sample error",
                "held_out_experiments": "Held-out experiments", "calibration_consistency": "Calibration consistency",
                "data_checks": "Data checks", "data_freshness": "Data freshness",
                "interval_coverage": "Interval coverage (benchmark)"}
# thresholds of the checks that are not the profile's gates
OOS_AMBER_RATIO = 1.1          # model MAPE up to 10% above the naive forecast's: amber
HOLDOUT_GREEN, HOLDOUT_AMBER = 0.8, 0.5  # share of scored tests inside the held-out 94% interval
PARETO_K_LIMIT = 0.7
COVERAGE_TARGET = 0.88  # pooled coverage of the true ROAS and mROAS a 94% interval must reach (issue 30)
COVERAGE_FILE = "interval_coverage.json"
# the code the fits' intervals come from: the model package and its settings (the models' code version)
COVERAGE_MODEL_MODULES = ("mmm_pipeline.model", "mmm_pipeline.model.market", "mmm_pipeline.settings")
BOTH = "both"  # the variant of a check that is not one model's (data freshness)


def _row(market, variant, check, status, value, threshold, sentence) -> dict:
    assert status in STATUSES, status
    return {"market": market, "variant": variant, "check_name": check, "status": status,
            "value": None if value is None else float(value), "threshold": threshold, "sentence": sentence}


def _convergence(market: str, run: dict, gates) -> dict:
    rhat, ess = float(run["max_rhat"]), float(run["min_ess_bulk"])
    div = float(run.get("divergences") or 0)
    draws = float(run.get("chains") or 0) * float(run.get("draws") or 0)
    div_share = div / draws if draws else 0.0
    broken = []
    if rhat > gates.max_rhat:
        broken.append(f"max R-hat {rhat:.3f} above {gates.max_rhat:g}")
    if ess < gates.min_ess_bulk:
        broken.append(f"bulk ESS {ess:,.0f} below {gates.min_ess_bulk:g}")
    if div_share > gates.max_divergence_share:
        broken.append(f"{div:,.0f} divergent transitions")
    threshold = f"R-hat <= {gates.max_rhat:g}, ESS >= {gates.min_ess_bulk:g}"
    profile = str(run.get("profile"))
    if broken:
        return _row(market, run["variant"], "convergence", "red", rhat, threshold,
                    f"The sampler did not converge ({'; '.join(broken)}, {profile} profile): do not act on "
                    "this model's numbers.")
    if not bool(run.get("gated")):
        return _row(market, run["variant"], "convergence", "amber", rhat, threshold,
                    f"The {profile} profile's loose gates hold (max R-hat {rhat:.3f}, bulk ESS {ess:,.0f}), but "
                    "the model is not gated: refit in the full profile before acting on it.")
    return _row(market, run["variant"], "convergence", "green", rhat, threshold,
                f"The sampler converged: max R-hat {rhat:.3f}, bulk ESS {ess:,.0f}, no divergence beyond the "
                f"gate ({profile} profile).")


def _out_of_sample(market: str, variant: str, val: pd.DataFrame) -> dict:
    threshold = f"model MAPE below the naive forecast's (amber within {OOS_AMBER_RATIO - 1:.0%})"
    row = val[val["geo"] == "market"] if len(val) and "geo" in val else val
    if not len(row):
        return _row(market, variant, "out_of_sample", "amber", None, threshold,
                    "Not measured: no out-of-sample validation is stored, so only in-sample fit is known.")
    r = row.iloc[0]
    model, naive = float(r["model_mape"]), float(r["baseline_mape"])
    weeks = int(r["holdout_weeks"]) if "holdout_weeks" in r and pd.notna(r["holdout_weeks"]) else None
    held = f"its last {weeks} weeks" if weeks else "its last weeks"
    said = (f"Refitted without {held}, the model forecasts them with a MAPE of {pct(model)} against {pct(naive)} for "
            "the naive forecast")
    converged = r.get("fit_passed_gates")
    if converged is not None and not pd.isna(converged) and not bool(converged):
        return _row(market, variant, "out_of_sample", "amber", model, threshold,
                    said + f", but the refit did not converge (R-hat {float(r['fit_max_rhat']):.3f}, bulk ESS "
                    f"{float(r['fit_min_ess_bulk']):.0f}): that forecast is not evidence either way."
                    if "fit_max_rhat" in r and pd.notna(r["fit_max_rhat"]) else
                    said + ", but the refit did not converge: that forecast is not evidence either way.")
    if model < naive:
        return _row(market, variant, "out_of_sample", "green", model, threshold, said + ": it beats it.")
    if model <= OOS_AMBER_RATIO * naive:
        return _row(market, variant, "out_of_sample", "amber", model, threshold,
                    said + ": about as good, so its forecasts add little over the naive one.")
    return _row(market, variant, "out_of_sample", "red", model, threshold,
                said + ": worse than the naive forecast; the model does not predict weeks it has not seen.")


def _held_out(market: str, holdout: pd.DataFrame) -> dict:
    threshold = f">= {HOLDOUT_GREEN:.0%} inside (amber >= {HOLDOUT_AMBER:.0%})"
    scored = holdout[holdout["method"].isin(["reweighted", "needs_refit"])] if len(holdout) else holdout
    scored = scored[scored["predicted_hdi_low"].notna()] if len(scored) else scored
    if not len(scored):
        return _row(market, "calibrated", "held_out_experiments", "amber", None, threshold,
                    "Not measured: no lift test has a second test of its channel, so none can be predicted from "
                    "the others.")
    inside = ((scored["measured"] >= scored["predicted_hdi_low"]) & (scored["measured"] <= scored["predicted_hdi_high"]))
    share = float(inside.mean())
    said = (f"{int(inside.sum())} of {len(scored)} held-out lift test(s) fall inside the {HDI_LABEL} the model "
            "predicts without them")
    status = "green" if share >= HOLDOUT_GREEN else "amber" if share >= HOLDOUT_AMBER else "red"
    tail = {"green": ": the model predicts experiments it has not seen.",
            "amber": ": some experiments disagree with the model; read those channels with care.",
            "red": ": the model does not predict most experiments it has not seen."}[status]
    return _row(market, "calibrated", "held_out_experiments", status, share, threshold, said + tail)


def _consistency(market: str, consistency: pd.DataFrame) -> dict:
    threshold = f"no inconsistent quantity; Pareto k-hat < {PARETO_K_LIMIT:g}"
    pk = float(consistency["pareto_k"].iloc[0])
    bad = consistency[consistency["verdict"] == "inconsistent"] if "verdict" in consistency else consistency.iloc[:0]
    if len(bad):
        return _row(market, "calibrated", "calibration_consistency", "red", pk, threshold,
                    f"{len(bad)} quantity(ies) of the calibrated fit differ from the uncalibrated one updated by the "
                    "tests: a fitting problem.")
    if pk >= PARETO_K_LIMIT:
        return _row(market, "calibrated", "calibration_consistency", "amber", pk, threshold,
                    f"The experiments pull the model further than its uncertainty without them allows (Pareto "
                    f"k-hat {pk:.2f}): trust the tested channels less than their intervals suggest.")
    return _row(market, "calibrated", "calibration_consistency", "green", pk, threshold,
                f"The calibrated fit equals the uncalibrated one updated by the tests (Pareto k-hat {pk:.2f}).")


def _freshness(market: str, variant: str, fresh: pd.DataFrame, days: int) -> dict:
    stale = fresh[~fresh["fresh"].astype(bool)]
    oldest = fresh["age_days"].max()
    if len(stale):
        return _row(market, variant, "data_freshness", "amber", oldest, f"<= {days} days",
                    "Stale input: " + ", ".join(f"{r.source} ({'never loaded' if pd.isna(r.age_days) else f'{int(r.age_days)} days old'})"
                                                for r in stale.itertuples()) + f", against a limit of {days} days.")
    return _row(market, variant, "data_freshness", "green", oldest, f"<= {days} days",
                f"Every source is fresh (newest day within {days} days).")


def _data_checks(market: str, validations: pd.DataFrame) -> dict:
    failed = validations[~validations["success"].astype(bool)]
    n = len(validations)
    if len(failed):
        return _row(market, BOTH, "data_checks", "amber", len(failed), "every suite passes",
                    f"{len(failed)} of {n} data-quality suite(s) failed in their newest run: "
                    + ", ".join(str(s) for s in failed["suite"]) + " (see the Data Docs).")
    return _row(market, BOTH, "data_checks", "green", 0, "every suite passes",
                f"All {n} data-quality suites passed in their newest run.")


def model_code_version() -> str:
    """The normalised-source version of the model code (COVERAGE_MODEL_MODULES and what they import): the
    benchmark records it with its figures, the health card compares it with this checkout's."""
    return code_graph.source_version(*COVERAGE_MODEL_MODULES)


def interval_coverage_reference() -> dict | None:
    """The benchmark's measured coverage (COVERAGE_FILE, packaged with this module), or None."""
    path = resources.files(__package__).joinpath(COVERAGE_FILE)
    return json.loads(path.read_text()) if path.is_file() else None


def _interval_coverage(market: str, variant: str, reference: dict, current_version: str) -> dict | None:
    measured = reference.get("coverage", {}).get(variant)
    if not measured or "off_family" not in measured:
        return None
    off, inf = measured["off_family"], measured.get("in_family")

    def share(q: dict) -> str:  # the seed-bootstrap interval, when the seeds spread at all (one seed: none)
        return f"{q['mean']:.0%}" + (f" [{q['low']:.0%}, {q['high']:.0%}]" if q["high"] > q["low"] else "")

    def said(group: dict) -> str:
        # in words that hold for a revenue and a count KPI alike (a count's report never says ROAS)
        return (f"the true average return in {share(group['roas'])} of cells and the true marginal return in "
                f"{share(group['mroas'])}")

    where = (f"the off-family benchmark ({off['datasets']} datasets from processes unlike the model's, "
             f"{reference['measured']}, {reference['code']})")
    sentence = (f"On {where}, this variant's {HDI_LABEL}s held {said(off)}"
                + (f"; on {inf['datasets']} datasets from its own family, {said(inf)}" if inf else "") + ". ")
    worst = min(off["roas"]["mean"], off["mroas"]["mean"])
    threshold = f">= {COVERAGE_TARGET:.0%} of cells off the model's family"
    measured_versions = reference.get("model_code_versions") or []
    stale = ""
    if set(measured_versions) != {current_version}:  # a record of other code (or of none named) cannot vouch for it
        stale = (f" These figures describe an earlier model: its code has changed since (benchmarked model code "
                 f"{', '.join(measured_versions) or 'not recorded'}, this run's {current_version}), so they may no "
                 "longer hold; rerun bench/bench_offfamily.py and publish its coverage to refresh them.")
    if worst >= COVERAGE_TARGET:
        return _row(market, variant, "interval_coverage", "amber" if stale else "green", worst, threshold,
                    sentence + (stale.strip() or "The intervals mean what they say."))
    return _row(market, variant, "interval_coverage", "amber", worst, threshold,
                sentence + "Where your data may not follow the model's curves, the intervals are narrower than "
                "the uncertainty: lean on the channels a lift test has measured." + stale)


def model_health(market: str, runs: pd.DataFrame, gates_for: Callable[[str], object], *,
                 validation: pd.DataFrame | None = None, holdout: pd.DataFrame | None = None,
                 consistency: pd.DataFrame | None = None, freshness: pd.DataFrame | None = None,
                 freshness_days: int = 8, validations: pd.DataFrame | None = None,
                 coverage_reference: dict | None = None, code_version: str | None = None) -> pd.DataFrame:
    """The health card's rows (COLUMNS) of one market: per variant of `runs` (marts.model_runs_latest),
    convergence and out-of-sample error; for the calibrated variant the held-out experiments and the
    calibration consistency (when it has lift tests); data freshness once per variant when given; per
    variant the benchmark's interval coverage when `coverage_reference` (interval_coverage_reference())
    is given, compared with `code_version` (default: this checkout's model_code_version()). `gates_for(profile)`
    returns the GateConfig in force for a profile."""
    val = validation if validation is not None else pd.DataFrame()
    rows = []
    variants = [v for v in ("uncalibrated", "calibrated") if v in set(runs["variant"])] + sorted(
        set(runs["variant"]) - {"uncalibrated", "calibrated"})
    by = runs.set_index("variant")
    for v in variants:
        rows.append(_convergence(market, {**by.loc[v].to_dict(), "variant": v}, gates_for(str(by.loc[v, "profile"]))))
    # the validation refits the uncalibrated structure (assets.holdout.model_validation)
    rows.append(_out_of_sample(market, "uncalibrated", val))
    if "calibrated" in variants:
        if holdout is not None and len(holdout):
            rows.append(_held_out(market, holdout))
        if consistency is not None and len(consistency) and "pareto_k" in consistency:
            rows.append(_consistency(market, consistency))
    if validations is not None and len(validations) and "success" in validations:
        rows.append(_data_checks(market, validations))
    if freshness is not None and len(freshness):
        rows.append(_freshness(market, BOTH, freshness, freshness_days))
    if coverage_reference:
        current = code_version if code_version is not None else model_code_version()
        rows.extend(r for r in (_interval_coverage(market, v, coverage_reference, current) for v in variants) if r)
    return pd.DataFrame(rows, columns=COLUMNS)


def from_inputs(inp) -> pd.DataFrame:
    """`model_health` of a report's inputs (mmm_pipeline.reporting.report.ReportInputs)."""
    return model_health(inp.market, inp.t("runs"), inp.gates, validation=inp.t("validation"),
                        holdout=inp.t("lift_holdout"), consistency=inp.t("consistency"),
                        freshness=inp.freshness, freshness_days=inp.freshness_days, validations=inp.validations,
                        coverage_reference=interval_coverage_reference())


__all__ = ["BOTH", "COLUMNS", "STATUSES", "CHECK_TITLES", "COVERAGE_TARGET", "model_health", "from_inputs",
           "interval_coverage_reference"]
