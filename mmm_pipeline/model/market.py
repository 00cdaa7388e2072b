"""One fitting unit's model workflow: inputs -> configuration (built once) -> scales -> fit or load -> mart rows.

A fitting unit is a market today: a set of geos fitted jointly (so a joint fit of more geos stays
one call). Everything here takes plain values (a DuckDB connection, frames, paths, settings),
imports nothing from Dagster and raises one error type, :class:`MarketError`, whose message says
what to fix. The assets in ``assets/models.py`` turn the results into Dagster metadata, checks and
``MaterializeResult`` and nothing else.

The steps, in order:

* :func:`read_inputs`: the market's geos and latest staging tables, the data version they make
  together, and the model configuration (the profile, pipeline.yaml's ``model`` section and the
  staged controls), built here once;
* :func:`select_family` / :func:`write_family_selection`: with ``model.family_candidates``, the curve
  family chosen by held-out fit (``mmm_pipeline.model.family``), which :func:`read_inputs` then puts
  in the config of every later step;
* :func:`calibration_inputs`: the converted lift tests of the market (`roas_targets.csv` rows among them)
  (calibrated variant);
* :func:`market_scales`: the fixed scales, stored on first use;
* :func:`plan`: the model version (code, data, configuration, variant, calibration, scales);
* :func:`fit_or_load`: the saved artifact of that version, or a fit up the retry ladder, saved;
* :func:`mart_rows` / :func:`write_marts`: marts.model_runs, contributions, model_fit,
  model_fit_geo, prior_posterior, model_diagnostics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mmm_pipeline.ingestion import staging as staging_lib
from mmm_pipeline.model.config import (
    ModelConfig, ModelError, config_hash, load_model_config, with_control_columns, with_family,
)
from mmm_pipeline.schema import Units
from mmm_pipeline.settings import ConfigError, PipelineConfig, market_geos
from mmm_pipeline.units import run_units
from mmm_pipeline.warehouse import append_history, fingerprint, table_exists

# idata attr: the attempts (JSON list of ladder.attempt_record), saved with the artifact.
ATTEMPTS_ATTR = "mmm_pipeline_attempts"


class MarketError(Exception):
    """A market's model step cannot run: the market is not configured, the model settings or
    geos.csv are invalid, or the inputs cannot make a model. The message names what to fix."""


@dataclass(frozen=True)
class MarketInputs:
    """What every model and output step of one market reads."""

    market: str
    geos: list[str]
    media: pd.DataFrame
    kpi: pd.DataFrame
    cpu: pd.DataFrame
    controls: pd.DataFrame      # staging.controls_weekly of the market's geos, wide (empty: no controls)
    data_version: str
    config: ModelConfig         # the profile + pipeline.yaml `model` + the staged controls
    pipeline: PipelineConfig
    profile: str
    input_dir: Path
    units: Units                # what the marts' money and KPI columns are in


def model_config(profile: str, model_section: dict | None, controls: pd.DataFrame) -> ModelConfig:
    """The profile's model config with pipeline.yaml's `model` section and the staged controls (all,
    or those model.control_columns picks)."""
    try:
        cfg = load_model_config(profile, model_section)
        return with_control_columns(cfg, [c for c in controls.columns if c not in ("week_start", "geo")])
    except ModelError as exc:
        raise MarketError(str(exc)) from None


def _latest(con, table: str) -> pd.DataFrame:
    df = con.execute(f"SELECT * FROM {table}_latest").df()  # table: one of the constant names below
    if "week_start" in df:
        df["week_start"] = pd.to_datetime(df["week_start"])
    return df


def read_inputs(con, pipeline: PipelineConfig, market: str, *, profile: str, input_dir: Path,
                resolve_family: bool = True) -> MarketInputs:
    """The market's geos, latest staging.media_weekly, staging.kpi_weekly, marts.cost_per_unit and
    staging.controls_weekly (wide), the data version they make together, and the model config.

    With `model.family_candidates` the config carries the family chosen for these data
    (:func:`resolve_family_choice`) unless `resolve_family` is false (the choice itself reads them so)."""
    cal = staging_lib.build_calendar(con, pipeline.geo_weights)
    try:
        geos = market_geos(pipeline, cal.geos)
    except ConfigError as exc:
        raise MarketError(str(exc)) from None
    if market not in geos:
        raise MarketError(f"market {market!r} is not in pipeline.yaml markets {sorted(geos)}; "
                          "reload the code location after changing markets")
    media = _latest(con, "staging.media_weekly")
    kpi = _latest(con, "staging.kpi_weekly")
    cpu = _latest(con, "marts.cost_per_unit")
    # No loaded control rows means no controls, whatever an older staging.controls_weekly holds (its
    # history keeps the last non-empty materialization as "latest" when controls/ is emptied).
    has_controls = table_exists(con, "raw.controls_current") and table_exists(con, "staging.controls_weekly_latest") \
        and con.execute("SELECT count(*) FROM raw.controls_current").fetchone()[0] > 0
    controls_long = _latest(con, "staging.controls_weekly") if has_controls else staging_lib.empty_controls_weekly()
    controls_long = controls_long[controls_long["geo"].isin(geos[market])]
    versions = [media["data_version"].iloc[0], kpi["data_version"].iloc[0], cpu["data_version"].iloc[0], geos[market]]
    if len(controls_long):  # without controls the version is what it was before controls existed
        versions.append(controls_long["data_version"].iloc[0])
    controls = staging_lib.controls_wide(controls_long.drop(columns=["data_version", "materialized_at"],
                                                            errors="ignore"))
    inputs = MarketInputs(market, geos[market], media, kpi, cpu, controls, fingerprint(*versions),
                          model_config(profile, pipeline.model, controls), pipeline, profile, Path(input_dir),
                          run_units(con, pipeline))
    return resolve_family_choice(con, inputs) if resolve_family else inputs


def resolve_family_choice(con, inputs: MarketInputs) -> MarketInputs:
    """`inputs` with the curve family chosen for their data (marts.model_family) when
    `model.family_candidates` lists some; unchanged otherwise. Raises MarketError when no choice was
    made for these data yet."""
    from mmm_pipeline.model import family as family_lib

    cfg = inputs.config
    if not cfg.family_candidates:
        return inputs
    got = family_lib.read_choice(con, inputs.market, family_lib.selection_key(inputs.market, inputs.data_version, cfg))
    if got is None:
        raise MarketError(f"market {inputs.market}: model.family_candidates lists {len(cfg.family_candidates)} "
                          "curve families but none was chosen for these data yet: materialize "
                          f"model_family[{inputs.market}] first (make run does)")
    return replace(inputs, config=with_family(cfg, got[0]))


def market_scales(con, inputs: MarketInputs, set_by: str):
    """The market's FixedScaling values (mmm_pipeline.model.scales), stored on first use; per capita
    when geos.csv gives the market's geos a population, else per geo mean KPI (`model.geo_scaling`).
    `con` should hold a transaction: both variants may ask at once."""
    from mmm_pipeline.ingestion import geos as geos_lib
    from mmm_pipeline.model import scales as scales_lib
    from mmm_pipeline.model.data import prepare_model_data

    cfg = inputs.config
    try:
        data = prepare_model_data(inputs.media, inputs.kpi, inputs.cpu, geos=inputs.geos,
                                  control_columns=cfg.control_columns,
                                  controls=inputs.controls if cfg.control_columns else None)
        population = (geos_lib.market_populations(geos_lib.read_geo_populations(inputs.input_dir), data.geos)
                      if cfg.geo_scaling == "size" else None)  # `market`: one scale per market, geos.csv unused
    except (ModelError, geos_lib.GeoFileError) as exc:
        raise MarketError(f"market {inputs.market}: {exc}") from exc
    scales, _ = scales_lib.market_scales(con, inputs.market, data, set_by, population,
                                         by_size=cfg.geo_scaling == "size", units=inputs.units)
    return scales


def calibration_inputs(con, inputs: MarketInputs, variant: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """(converted lift tests, ROAS/CPA targets) of the market for `variant` (None, None uncalibrated).

    `roas_targets.csv` reaches the model as lift tests (its rows are loaded into raw.lift_tests as
    window lifts, see ingestion.ingest.roas_targets_spec), so no target term is added any more; the
    second element stays for models saved with one (model.calibration re-adds it on load)."""
    if variant != "calibrated":
        return None, None
    lift = con.execute("SELECT * FROM marts.lift_tests_latest WHERE market = ?", [inputs.market]).df() \
        if table_exists(con, "marts.lift_tests_latest") else pd.DataFrame()
    lift = lift.dropna(subset=["x"]) if "x" in lift else lift
    return lift, None


def _uncalibrated_lift_draws(con, inputs: MarketInputs, market: str, rows: pd.DataFrame,
                             log: Callable[[str], None]) -> tuple[dict | None, str | None, str]:
    """(test_id -> predicted lift draws, the model version, why not) of `market`'s latest uncalibrated
    model over its converted `rows`: None with the reason when that model is missing, of other data,
    or unreadable. The draws are cached beside the model's artifact (a national test's split is
    asked by every market)."""
    import numpy as np

    from mmm_pipeline.model import national_split
    from mmm_pipeline.model.artifacts import load_model

    if not table_exists(con, "marts.model_runs_latest"):
        return None, None, "no model has been fitted"
    run = con.execute("SELECT model_version, data_version, artifact_uri FROM marts.model_runs_latest "
                      "WHERE market = ? AND variant = 'uncalibrated'", [market]).df()
    if not len(run):
        return None, None, f"market {market} has no uncalibrated model"
    version, artifact = str(run["model_version"].iloc[0]), Path(str(run["artifact_uri"].iloc[0]))
    current = inputs if market == inputs.market else read_inputs(
        con, inputs.pipeline, market, profile=inputs.profile, input_dir=inputs.input_dir)
    if run["data_version"].iloc[0] != current.data_version:
        return None, version, f"market {market}'s uncalibrated model is of other data (refit it first)"
    design_rows = rows.drop(columns=["materialized_at", "data_version"], errors="ignore").sort_values(
        ["test_id", "geo"]).reset_index(drop=True)
    cache = artifact.with_name(f"{artifact.stem}.national_lifts.{fingerprint(design_rows.to_json())}.npz")
    if cache.is_file():
        with np.load(cache) as z:
            return {str(t): z[f"d{k}"] for k, t in enumerate(z["test_ids"])}, version, ""
    try:
        draws = national_split.predicted_lift_draws(load_model(artifact), design_rows)
    except ModelError as exc:
        return None, version, f"market {market}'s uncalibrated model cannot be read: {exc}"
    tmp = cache.with_name(f".{cache.name}.tmp.npz")
    np.savez(tmp, test_ids=np.array(list(draws), dtype=str), **{f"d{k}": v for k, v in enumerate(draws.values())})
    tmp.replace(cache)
    log(f"predicted lifts of national tests {sorted(draws)} in market {market} by model {version}")
    return draws, version, ""


def national_test_split(con, inputs: MarketInputs, lift: pd.DataFrame, *,
                        log: Callable[[str], None] = print) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the market's converted lift tests with each national test it shares with other markets split
    by the markets' predicted lifts, marts.national_test_split rows of those tests).

    With `lift_tests.national_split: spend_share` (the default) the rows say how the conversion split
    the test by spend and the terms stay as they are; with `predicted_lift` every market's
    uncalibrated model and converted tests must be there: the calibrated model of each market depends
    on all of them (`mmm_pipeline.model.national_split`)."""
    from mmm_pipeline.model import national_split

    settings = inputs.pipeline.lift_tests
    tests = national_split.spanning_tests(lift)
    if not tests:
        return lift, pd.DataFrame(columns=national_split.SPLIT_COLUMNS)
    predicted = settings.national_split == national_split.PREDICTED
    all_rows = con.execute("SELECT * FROM marts.lift_tests_latest WHERE list_contains(?, test_id)",
                           [tests]).df()
    raw = con.execute("SELECT test_id, delta_y, sigma FROM raw.lift_tests WHERE list_contains(?, test_id)",
                      [tests]).df().drop_duplicates("test_id").set_index("test_id")
    draws: dict[str, dict] = {}
    versions: dict[str, str | None] = {}
    reasons: dict[str, str] = {}
    for market, rows in all_rows.groupby("market"):
        draws[market], versions[market], reasons[market] = _uncalibrated_lift_draws(con, inputs, market, rows, log) \
            if predicted else (None, None, "lift_tests.national_split is spend_share")
    out = []
    for k, test_id in enumerate(tests):
        rows = all_rows[all_rows["test_id"] == test_id]
        shares = rows.drop_duplicates("market").set_index("market")["market_share"].astype(float).to_dict()
        why = sorted({reasons[m] for m in shares if reasons.get(m)})
        if test_id in raw.index:
            per_market = {m: (draws[m] or {}).get(test_id) for m in shares}
            readout = raw.loc[test_id].to_dict()
        else:  # raw.lift_tests was reloaded after the conversion: its terms stay
            per_market, readout = dict.fromkeys(shares), {"delta_y": float("nan"), "sigma": float("nan")}
            why.append("the readout is no longer in raw.lift_tests")
        test = {"test_id": test_id, "channel": rows["channel"].iloc[0], "scope": rows["scope"].iloc[0], **readout}
        split = national_split.lift_share_split(test, shares, per_market, split_log_sd=settings.national_split_log_sd,
                                                seed=k)
        why = "; ".join(why)
        if why:
            split["method"] = split["method"].where(split["method"] == national_split.PREDICTED,
                                                    f"spend_share: {why}")
        split["uncalibrated_model_version"] = split["market"].map(versions)
        out.append(split)
    split = pd.concat(out, ignore_index=True)
    return national_split.apply_split(lift, split, inputs.market), split


@dataclass(frozen=True)
class Plan:
    """One variant's model version and what goes into it."""

    variant: str
    model_version: str
    config_hash: str
    lift: pd.DataFrame | None
    targets: pd.DataFrame | None
    scales: Any

    @property
    def has_calibration(self) -> bool:
        """Something to calibrate on (the calibrated variant is fitted only then)."""
        return (self.lift is not None and not self.lift.empty) or (self.targets is not None and not self.targets.empty)


def plan(inputs: MarketInputs, variant: str, lift, targets, scales, *, code_version: str) -> Plan:
    """The variant's model version: a hash of `code_version`, the data, the config, the variant, the
    market, the calibration inputs and the scales (an unchanged version loads its saved model)."""
    cfg_hash = config_hash(inputs.config)
    lift_version = fingerprint(lift.drop(columns=["materialized_at", "data_version"], errors="ignore").to_json()) \
        if lift is not None else ""
    if targets is not None and len(targets):
        lift_version = fingerprint(lift_version, targets.to_json())
    version = fingerprint(code_version, inputs.data_version, cfg_hash, variant, inputs.market, lift_version,
                          scales.rows().to_json())
    return Plan(variant, version, cfg_hash, lift, targets, scales)


@dataclass
class Fitted:
    """A variant's model, fitted now (`fit`) or loaded from its artifact (`reused`), with its gate."""

    mmm: Any
    artifact: Path
    reused: bool
    fit: Any                    # FitResult of the last attempt, None when loaded
    attempts: list[dict]
    diagnostics: dict
    passed: bool
    failures: list[str]
    warnings: list[str]


def fit_or_load(inputs: MarketInputs, p: Plan, artifact: Path, *, log: Callable[[str], None] = print,
                warn: Callable[[str], None] = print) -> Fitted:
    """Load the artifact of `p.model_version` when it is there and valid, else fit (up the retry
    ladder, `model.retry`) and save it there. Raises MarketError for input a model cannot use."""
    from mmm_pipeline.model.artifacts import load_model, save_model
    from mmm_pipeline.model.diagnostics import diagnose, gate_result
    from mmm_pipeline.model.fit import fit_model
    from mmm_pipeline.model.ladder import fit_with_ladder

    cfg = inputs.config
    if artifact.exists():
        try:
            mmm = load_model(artifact)
            log(f"model version {p.model_version} already exists at {artifact}: loaded, not refitted")
            diag = diagnose(mmm, max_rhat=cfg.gates.max_rhat, min_ess_bulk=cfg.gates.min_ess_bulk)
            return Fitted(mmm, artifact, True, None, json.loads(mmm.idata.attrs.get(ATTEMPTS_ATTR, "[]")), diag,
                          *gate_result(diag, cfg))
        except ModelError as exc:
            warn(f"{exc}; refitting")
            artifact.unlink(missing_ok=True)
    log(f"fitting {p.variant} model for market {inputs.market} ({inputs.profile} profile, "
        f"geos {inputs.geos}), version {p.model_version}")
    use_lift = p.variant == "calibrated" and p.lift is not None and not p.lift.empty
    try:
        fit, attempts = fit_with_ladder(
            lambda attempt_cfg: fit_model(
                inputs.media, inputs.kpi, inputs.cpu, attempt_cfg, lift_tests=p.lift if use_lift else None,
                geos=inputs.geos, controls=inputs.controls if attempt_cfg.control_columns else None,
                scales=p.scales, progress_callback=log, roas_targets=p.targets),
            cfg, log=warn)
    except ModelError as exc:
        raise MarketError(f"market {inputs.market}, {p.variant} model: {exc}") from exc
    fit.mmm.idata.attrs[ATTEMPTS_ATTR] = json.dumps(attempts)
    save_model(fit.mmm, artifact)
    for stage, seconds in fit.stage_seconds.items():
        log(f"stage {stage}: {seconds:.1f} s")
    return Fitted(fit.mmm, artifact, False, fit, attempts, fit.diagnostics, fit.gate_passed, fit.gate_failures,
                  fit.gate_warnings)


def mart_rows(inputs: MarketInputs, p: Plan, f: Fitted, *, gates_enforced: bool) -> dict[str, pd.DataFrame]:
    """The model marts' rows of one fitted variant, by table (marts.model_runs first); a model's
    gate counts (`gated`) only where `gates_enforced` (the full profile)."""
    from mmm_pipeline.model.diagnostics import prior_posterior_shift
    from mmm_pipeline.model.summaries import contributions_frame

    cfg, diag, market, variant = inputs.config, f.diagnostics, inputs.market, p.variant
    shift = prior_posterior_shift(f.mmm, seed=cfg.random_seed, min_contraction=cfg.gates.min_posterior_contraction)
    attempts = f.attempts
    run_row = pd.DataFrame([{
        "market": market, "variant": variant, "data_version": inputs.data_version, "config_hash": p.config_hash,
        "profile": inputs.profile, "sampler": cfg.sampler.nuts_sampler,
        "control_columns": ", ".join(cfg.control_columns), "chains": diag["chains"],
        "draws": diag["draws"], "fit_seconds": sum(a["fit_seconds"] for a in attempts) if f.fit else None,
        "attempts": len(attempts) or None, "attempt_history": json.dumps(attempts) if attempts else None,
        "strict_gates": bool(cfg.strict_gates), "divergence_share": float(diag.get("divergence_share", 0.0)),
        "max_rhat": diag["max_rhat"], "min_ess_bulk": diag["min_ess_bulk"], "divergences": diag["divergences"],
        "r2": diag["r2"], "mape": diag["mape"], "coverage_94": diag["coverage_94"],
        "worst_geo": diag.get("worst_geo"), "worst_geo_r2": diag.get("worst_geo_r2"),
        "passed_gates": bool(f.passed), "gated": bool(f.passed and gates_enforced),
        "gate_failures": "; ".join(f.failures), "artifact_uri": str(f.artifact),
    }])
    contributions = contributions_frame(f.mmm)
    contributions.insert(0, "variant", variant)
    contributions.insert(0, "market", market)
    return {
        "marts.model_runs": run_row,
        "marts.contributions": contributions,
        # what the report shows for fit and convergence, so it never reloads the posterior
        "marts.model_fit": diag["fit_table"].assign(market=market, variant=variant),
        "marts.prior_posterior": shift.assign(market=market, variant=variant),
        "marts.model_fit_geo": diag["fit_by_geo"].assign(market=market, variant=variant),
        "marts.model_diagnostics": pd.DataFrame([{"market": market, "variant": variant, "parameter": n, **v}
                                                 for n, v in diag["per_parameter"].items()]),
    }


def write_marts(con, model_version: str, rows: dict[str, pd.DataFrame], units: Units) -> bool:
    """Append `rows` (mart_rows) as `model_version`; True when marts.model_runs got a new version.
    `con` should hold a transaction, so the tables change together or not at all."""
    appended = False
    for table, df in rows.items():
        new = append_history(con, table, df, version=model_version, partition_columns=("market", "variant"),
                             units=units)
        appended = appended or (new and table == "marts.model_runs")
    return appended


# --------------------------------------------------------------------------- out-of-sample validation


@dataclass(frozen=True)
class Validation:
    """One market's out-of-sample validation (`mmm_pipeline.model.holdout`) at one version: its
    marts.model_validation rows (one per geo plus `market`), read back or just computed."""

    version: str
    table: pd.DataFrame
    refitted: bool

    @property
    def market_row(self) -> pd.Series:
        return self.table[self.table["geo"] == "market"].iloc[0]

    @property
    def refit_converged(self) -> bool:
        """The refit passed its own gate (`model.validation`); rows stored before it was recorded count."""
        flag = self.market_row.get("fit_passed_gates")
        return True if flag is None or pd.isna(flag) else bool(flag)

    @property
    def passed(self) -> bool:
        """The refit converged and its forecast beats the naive one: a stuck refit proves nothing."""
        return self.refit_converged and bool(self.market_row["beats_baseline"])

    @property
    def geos_not_beating_baseline(self) -> list[str]:
        t = self.table
        return t[(t["geo"] != "market") & ~t["beats_baseline"]]["geo"].tolist()

    def summary(self) -> str:
        row = self.market_row
        worst = self.table[self.table["geo"] != "market"].sort_values("model_mape").iloc[-1]
        said = (f"held-out weeks {row['first_week']} to {row['last_week']}: model MAPE {row['model_mape']:.1%} vs "
                f"{row['baseline']} {row['baseline_mape']:.1%}; 94% coverage {row['coverage_94']:.0%}; worst geo "
                f"{worst['geo']} {worst['model_mape']:.1%}")
        if not self.refit_converged:
            said += (f"; the refit did not converge ({row.get('fit_gate_failures') or 'gate failed'}): "
                     "its forecast is not evidence either way")
        return said


def validation_version(inputs: MarketInputs, scales, *, code_version: str) -> str:
    """The validation's version: the model code, the data, the model and validation settings, the
    market and its scales (an unchanged version reads its rows instead of refitting)."""
    cfg = inputs.config
    return fingerprint(code_version, inputs.data_version, config_hash(cfg), cfg.validation.model_dump(),
                       inputs.market, scales.rows().to_json())


def read_validation(con, version: str) -> Validation | None:
    """The stored rows of `version`, or None when it was never computed."""
    if not table_exists(con, "marts.model_validation"):
        return None
    table = con.execute("SELECT * FROM marts.model_validation WHERE data_version = ?", [version]).df()
    return Validation(version, table, False) if len(table) else None


def run_validation(inputs: MarketInputs, scales, version: str, *,
                   log: Callable[[str], None] = print) -> tuple[Validation, pd.DataFrame]:
    """Refit without the last `model.validation.holdout_weeks` complete weeks and forecast them:
    (the validation, marts.model_validation_weekly rows). Raises MarketError when the history is too
    short or the inputs cannot make a model."""
    from mmm_pipeline.model.holdout import holdout_validation

    cfg = inputs.config
    try:
        res = holdout_validation(inputs.media, inputs.kpi, inputs.cpu, cfg,
                                 holdout_weeks=cfg.validation.holdout_weeks, geos=inputs.geos,
                                 controls=inputs.controls if cfg.control_columns else None,
                                 progress_callback=log, scales=scales)
    except ModelError as exc:
        raise MarketError(str(exc)) from exc
    d = res.fit.diagnostics
    table = res.table.assign(market=inputs.market, fit_passed_gates=res.fit.gate_passed,
                             fit_attempts=len(res.attempts or [None]), fit_max_rhat=float(d["max_rhat"]),
                             fit_min_ess_bulk=float(d["min_ess_bulk"]), fit_divergences=int(d["divergences"]),
                             fit_gate_failures="; ".join(res.fit.gate_failures))
    return Validation(version, table, True), res.forecast.assign(market=inputs.market)


def write_validation(con, v: Validation, forecast: pd.DataFrame, units: Units) -> None:
    """Append the validation's rows and its weekly forecast (`con` should hold a transaction)."""
    append_history(con, "marts.model_validation", v.table, version=v.version, partition_columns=("market",),
                   units=units)
    append_history(con, "marts.model_validation_weekly", forecast, version=v.version, partition_columns=("market",),
                   units=units)


# --------------------------------------------------------------------------- curve family


def select_family(inputs: MarketInputs, scales, *, code_version: str,
                  log: Callable[[str], None] = print):
    """Refit every `model.family_candidates` family without the held-out weeks and choose one
    (mmm_pipeline.model.family). `inputs`: read with `resolve_family=False`. Returns a
    ``family.Selection``; raises MarketError when the history is too short to hold weeks out."""
    from mmm_pipeline.model import family as family_lib

    cfg = inputs.config
    cands = tuple(cfg.family_candidates)
    runs, points, converged, max_rhat = {}, {}, {}, {}
    for fam in cands:
        log(f"family choice: refitting {fam.label} without the last {cfg.validation.holdout_weeks} weeks")
        candidate = replace(inputs, config=with_family(cfg, fam))
        version = validation_version(candidate, scales, code_version=code_version)
        validation, forecast = run_validation(candidate, scales, version, log=log)
        runs[fam.label] = (validation, forecast)
        points[fam.label] = family_lib.relative_points(forecast)
        converged[fam.label] = validation.refit_converged
        max_rhat[fam.label] = float(validation.market_row.get("fit_max_rhat", float("nan")))
    chosen, table, reason = family_lib.choose(points, converged, cands[0].label)
    key = family_lib.selection_key(inputs.market, inputs.data_version, cfg)
    rows = family_lib.selection_rows(inputs.market, cands, table, converged, max_rhat, chosen, reason, key,
                                     cfg.validation.holdout_weeks)
    return family_lib.Selection(rows, next(f for f in cands if f.label == chosen), runs)


def write_family_selection(con, selection, version: str, units: Units) -> None:
    """Append the choice's marts.model_family rows, and the chosen candidate's refit as the market's
    out-of-sample validation (model_validation of the chosen family then reads it instead of refitting).
    `con` should hold a transaction."""
    from mmm_pipeline.model.family import TABLE

    append_history(con, TABLE, selection.table, version=version, partition_columns=("market",), units=units)
    validation, forecast = selection.validations[selection.chosen.label]
    write_validation(con, validation, forecast, units)
