"""What a marketer acts on (group `outputs`), per market: response curves and ROAS in money,
budget allocations. Logic lives in `mmm_pipeline.decisions.curves` and `mmm_pipeline.decisions.allocation`.

Each output reads the fitted models of its market. A model whose convergence
gate failed after its retries still feeds these assets: its rows say
`gated = false` and `gate_reason` why, and a plan is made with a gated model
when the market has one. With `model.strict_gates: true` a failed gate blocks
them (blocking checks). In the fast profile the gates only warn and every row
says `gated = false`.
"""

import dagster as dg
import pandas as pd

from assets.metadata import OWNERS, plots_metadata, source_version, table_metadata
from assets.automation import DOWNSTREAM
from assets.models import MARKETS, market_inputs, mmm_calibrated, mmm_uncalibrated
from mmm_pipeline.decisions.allocation import plan_variant  # noqa: F401  (the assets' API too)
from mmm_pipeline.schema import Units
from mmm_pipeline.warehouse import append_history, fingerprint, table_exists
from resources import ArtifactStore, PipelineSettings, WarehouseResource

# Each output's code version follows the modules that compute it (and what they import: the model
# helpers they evaluate the posterior with).
CURVES_MODULES = ("mmm_pipeline.decisions.curves",)
CURVES_CODE_VERSION = source_version(*CURVES_MODULES, glue=__name__)
ROAS_CODE_VERSION = source_version(*CURVES_MODULES, glue=__name__)
ALLOCATION_CODE_VERSION = source_version("mmm_pipeline.decisions.allocation", *CURVES_MODULES, glue=__name__)
# What channel_roas writes: per geo and channel, per channel of the market, all media of the market.
# in the order curves.channel_roas(..., with_totals=True, with_shares=True) returns them
ROAS_TABLES = ("marts.channel_roas", "marts.channel_roas_market", "marts.channel_roas_market_total",
               "marts.channel_share")
COMMON = dict(automation_condition=DOWNSTREAM, group_name="outputs", owners=OWNERS, partitions_def=MARKETS,
              deps=[mmm_uncalibrated, mmm_calibrated])


def _fitted_models(con, market: str) -> dict[str, dict]:
    """variant -> {model_version, gated, mmm} of the market's latest fits."""
    from mmm_pipeline import model as model_lib

    runs = con.execute("SELECT * FROM marts.model_runs_latest WHERE market = ?", [market]).df()
    return {r["variant"]: {"model_version": r["model_version"], "gated": bool(r["gated"]),
                           "gate_reason": gate_reason(r), "mmm": model_lib.load_model(r["artifact_uri"])}
            for r in runs.to_dict("records")}


def gate_reason(run: dict) -> str:
    """Why a model's outputs are not gated ("" when they are), from its marts.model_runs row."""
    if run["gated"]:
        return ""
    if run["profile"] != "full":
        return f"{run['profile']} profile: its gate only warns (use the full profile to publish)"
    return f"convergence gate failed: {run.get('gate_failures') or '?'}"


def _stamp(df: pd.DataFrame, market: str, variant: str, fit: dict) -> pd.DataFrame:
    df = df.copy()
    df.insert(0, "gate_reason", fit["gate_reason"])
    df.insert(0, "gated", fit["gated"])
    df.insert(0, "variant", variant)
    df.insert(0, "market", market)
    return df


def _append_per_variant(warehouse: WarehouseResource, tables: dict[str, dict[str, pd.DataFrame]],
                        fits: dict, code_version: str, units: Units) -> tuple[pd.DataFrame, str]:
    """Append each variant's rows as a version of each table (one transaction); returns the first
    table's rows and the asset's data version. Both change exactly when a model or the code
    computing the rows does."""
    with warehouse.transaction() as con:
        for table, rows in tables.items():
            for v, df in rows.items():
                df = df.assign(model_version=fits[v]["model_version"])
                append_history(con, table, df, version=fingerprint(code_version, fits[v]["model_version"]),
                               partition_columns=("market", "variant"), units=units)
    version = fingerprint(code_version, sorted(f["model_version"] for f in fits.values()))
    return pd.concat(next(iter(tables.values())).values(), ignore_index=True), version


@dg.asset(kinds={"pymc", "duckdb"},
          description="marts.response_curves: per geo and channel, weekly KPI response (mean, 94% HDI) "
          "against weekly spend from 0 to 2x the historical maximum, money on the x axis through the "
          "spend-weighted cost per unit of the last 13 weeks; one PNG per channel with both variants.",
          code_version=CURVES_CODE_VERSION, **COMMON)
def response_curves(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                    settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from mmm_pipeline.decisions import curves

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
        geos, cpu = inputs.geos, inputs.cpu
        fits = _fitted_models(con, market)
    cpu = cpu[cpu["geo"].isin(geos)]
    by_variant = {v: curves.response_curves(f["mmm"], cpu) for v, f in fits.items()}
    rows = {v: _stamp(df, market, v, fits[v]) for v, df in by_variant.items()}
    all_rows, version = _append_per_variant(warehouse, {"marts.response_curves": rows}, fits, CURVES_CODE_VERSION,
                                            inputs.units)
    meta = table_metadata(all_rows, "marts.response_curves")
    meta.update({"market": market, "variants": dg.MetadataValue.json(sorted(fits)),
                 "gated": dg.MetadataValue.json({v: f["gated"] for v, f in fits.items()})})
    channels = sorted(all_rows["channel"].unique())
    meta.update(plots_metadata(artifacts, {f"curve_{ch}": curves.plot_response_curves(by_variant, ch) for ch in channels},
                       ("curves", market)))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


@dg.asset(kinds={"pymc", "duckdb"},
          description="marts.channel_roas: per geo and channel, for both variants, first what a lift test "
          "of extra spend can vouch for: marginal ROAS at the current weekly spend (the last 13 weeks' mean) and "
          "the response to +10% of it over the planning horizon, each with its 94% HDI; then spend, "
          "carryover-aware contribution (pymc-marketing incrementality) and average ROAS over the training "
          "period against zero spend (no experiment measures this), mean and 94% HDI, and cost per incremental "
          "KPI; each row says its training period. marts.channel_roas_market: the same per channel summed over "
          "geos per draw; marts.channel_roas_market_total: all media together, apart. "
          "marts.channel_share: per channel, share of spend beside share of the media effect (per draw, 94% HDI) "
          "and the carryover share (of a week's effect, what arrives in later weeks: posterior adstock). "
          "marts.refresh_drift: ROAS "
          "and media share against the previous gated model, flagged above model.refresh_drift_threshold.",
          code_version=ROAS_CODE_VERSION, **COMMON)
def channel_roas(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                 settings: PipelineSettings) -> dg.MaterializeResult:
    from mmm_pipeline.decisions import curves

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
        geos, media, cpu = inputs.geos, inputs.media, inputs.cpu
        fits = _fitted_models(con, market)
    media, cpu = media[media["geo"].isin(geos)], cpu[cpu["geo"].isin(geos)]
    horizon = inputs.pipeline.planning_horizon_weeks
    roas = {v: curves.channel_roas(f["mmm"], media, cpu, with_totals=True, horizon_weeks=horizon, with_shares=True)
            for v, f in fits.items()}
    # channel_roas returns the tables in ROAS_TABLES' order: per geo; the market's per channel and for
    # all media, with the posterior's intervals (the report's headline); the shares and carryover
    tables = {table: {v: _stamp(frames[i], market, v, fits[v]) for v, frames in roas.items()}
              for i, table in enumerate(ROAS_TABLES)}
    all_rows, version = _append_per_variant(warehouse, tables, fits, ROAS_CODE_VERSION, inputs.units)
    drift_md = _refresh_drift(warehouse, inputs.config.refresh_drift_threshold, market, roas, fits, inputs.units)
    meta = table_metadata(all_rows, "marts.channel_roas")
    meta["refresh_drift"] = dg.MetadataValue.md(drift_md)
    summary = all_rows.groupby(["variant", "channel"])[["spend", "contribution_mean"]].sum()
    summary["roas"] = summary["contribution_mean"] / summary["spend"]
    meta.update({"market": market, "roas_by_channel": dg.MetadataValue.md(summary.reset_index().to_markdown(index=False))})
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))


def _refresh_drift(warehouse: WarehouseResource, threshold: float, market: str, roas: dict, fits: dict,
                   units: Units) -> str:
    """Write marts.refresh_drift: each variant's ROAS and media share against the previous gated model of
    the market and variant (mmm_pipeline.decisions.drift); returns a markdown summary."""
    from mmm_pipeline.decisions import drift

    lines = []
    with warehouse.transaction() as con:
        for variant, (per_geo, *_) in roas.items():
            current = fits[variant]["model_version"]
            previous = con.execute(
                "SELECT * FROM marts.channel_roas WHERE market = ? AND variant = ? AND gated AND model_version <> ? "
                "QUALIFY materialized_at = max(materialized_at) OVER ()", [market, variant, current]).df() \
                if table_exists(con, "marts.channel_roas") else pd.DataFrame()
            if previous.empty:
                lines.append(f"- {variant}: no previous gated model to compare with")
                continue
            prev_version = str(previous["model_version"].iloc[0])
            rows = drift.refresh_drift(per_geo, previous, prev_version, threshold)
            rows = rows.assign(market=market, variant=variant, model_version=current,
                               train_start=per_geo["train_start"].iloc[0], train_end=per_geo["train_end"].iloc[0])
            append_history(con, "marts.refresh_drift", rows, version=fingerprint(current, prev_version, threshold),
                           partition_columns=("market", "variant"), units=units)
            flagged = rows[rows["flagged"]]
            lines.append(f"- {variant}: against {prev_version}, {len(flagged)} of {len(rows)} geo x channel cells "
                         f"moved by more than {threshold:.0%}"
                         + (": " + ", ".join(f"{r.geo} {r.channel} ROAS {r.roas_change:+.0%}"
                                             for r in flagged.head(8).itertuples()) if len(flagged) else ""))
    return "\n".join(lines)


def market_scenarios(config, market: str, current: pd.DataFrame):
    """The market's scenarios from pipeline.yaml `scenarios`, or the default one."""
    from mmm_pipeline.decisions import allocation

    mine = [s for s in (config.scenarios or []) if s.get("market") == market]
    if not mine:
        return [allocation.default_scenario(market, current, horizon_weeks=config.planning_horizon_weeks,
                                            min_probability_of_gain=config.plan_min_probability_of_gain,
                                            utility=config.plan_utility,
                                            utility_confidence=config.plan_utility_confidence)]
    geos, channels = set(current["geo"]), set(current["channel"])
    out = []
    for i, spec in enumerate(mine):
        spec = {"horizon_weeks": config.planning_horizon_weeks, "allocation_id": f"scenario_{i + 1}",
                "min_probability_of_gain": config.plan_min_probability_of_gain, "utility": config.plan_utility,
                "utility_confidence": config.plan_utility_confidence, **spec}
        where = f"pipeline.yaml scenarios[{spec['allocation_id']}]"
        try:
            scenario = allocation.Scenario.model_validate(spec)
        except Exception as exc:
            raise allocation.AllocationError(f"{where}: invalid scenario: {exc}") from exc
        for field in ("bounds", "fixed_allocation"):
            for geo, channel in (getattr(scenario, field) or {}):
                if channel != "*" and channel not in channels:
                    raise allocation.AllocationError(
                        f"{where}.{field}: channel {channel!r} is not a channel of market {market} "
                        f"(channels: {sorted(channels)})")
                if geo != "*" and geo not in geos:
                    raise allocation.AllocationError(
                        f"{where}.{field}: geo {geo!r} is not in market {market} (geos: {sorted(geos)})")
        out.append(scenario)
    return out


@dg.asset(deps=[mmm_uncalibrated, mmm_calibrated, "cost_per_unit_forecast", response_curves, "calibration_report"],
          kinds={"pymc", "duckdb"},
          description="marts.budget_allocation: for each scenario of the market (pipeline.yaml `scenarios`, "
          "default: today's spend over the planning horizon, each cell within +/-50%), pymc-marketing's "
          "budget optimizer in money with the forecast cost per unit: optimal spend, the units it buys and "
          "the expected response (mean, 94% HDI) next to the current plan. Sums to the budget within 0.1%. "
          "A cell moves, and the plan leaves the current mix, only with posterior probability of gain >= "
          "pipeline.yaml `plan_min_probability_of_gain` (else `hold` / keep the current mix); each cell names "
          "the lift tests behind it and flags a move against a test's held-out prediction. When the wanted "
          "variant is not gated, its plan is written beside the chosen one (`chosen = false`).",
          code_version=ALLOCATION_CODE_VERSION, **{k: v for k, v in COMMON.items() if k != "deps"})
def budget_allocation(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                      settings: PipelineSettings, artifacts: ArtifactStore) -> dg.MaterializeResult:
    from mmm_pipeline.decisions import allocation

    market = context.partition_key
    with warehouse.get_connection() as con:
        inputs = market_inputs(con, settings, market)
        config, geos = inputs.pipeline, inputs.geos
        fits = _fitted_models(con, market)
        forecast = con.execute("SELECT * FROM marts.cost_per_unit_forecast_latest").df()
        lift_tests, holdout = (con.execute(f"SELECT * FROM {t} WHERE market = ?", [market]).df()
                               if table_exists(con, t) else pd.DataFrame()
                               for t in ("marts.lift_tests_latest", "marts.lift_test_holdout_latest"))
        curves_now = con.execute(
            "SELECT geo, channel, variant, current_weekly_spend, max_weekly_spend FROM marts.response_curves_latest "
            "WHERE market = ?", [market]).df().drop_duplicates(["geo", "channel", "variant"])
    forecast = forecast[forecast["geo"].isin(geos)]
    current = curves_now.drop_duplicates(["geo", "channel"])
    results, figures, plans = [], {}, []
    for scenario in market_scenarios(config, market, current):
        rows, scenario_plans = allocation.plan_scenario(scenario, fits, forecast, current, lift_tests=lift_tests,
                                                        holdout=holdout, log=context.log)
        results.append(rows)
        plans.extend(scenario_plans)
        figures[f"allocation_{scenario.allocation_id}"] = allocation.plot_allocation(rows[rows["chosen"]])
    alloc = pd.concat(results, ignore_index=True)
    version = fingerprint(ALLOCATION_CODE_VERSION, alloc.drop(columns=[c for c in alloc if c.endswith("_weekly_spend")],
                                                          errors="ignore").round(6).to_json())
    with warehouse.transaction() as con:
        appended = append_history(con, "marts.budget_allocation", alloc, version=version,
                                  partition_columns=("market", "allocation_id"), units=inputs.units)
        # each plan's total response and gain over the current plan, with the posterior's intervals
        append_history(con, "marts.allocation_plan", pd.DataFrame(plans), version=version,
                       partition_columns=("market", "allocation_id"), units=inputs.units)
    meta = table_metadata(alloc, "marts.budget_allocation")
    mine = alloc[alloc["chosen"]]
    totals = mine.groupby("allocation_id")[["current_spend", "optimal_spend", "current_response_mean",
                                            "expected_response_mean"]].sum()
    decisions = pd.DataFrame(plans)[["allocation_id", "variant", "chosen", "decision", "probability_of_gain",
                                     "gain_mean", "gain_hdi_low", "gain_hdi_high", "held_cells"]]
    meta.update({"market": market, "history_appended": appended,
                 "totals": dg.MetadataValue.md(totals.reset_index().to_markdown(index=False)),
                 "decisions": dg.MetadataValue.md(decisions.to_markdown(index=False)),
                 "gated": bool(mine["gated"].all()),
                 "optimizer_converged": bool(mine["optimizer_converged"].all()),
                 "extrapolated_cells": int(mine["extrapolated"].sum()),
                 "lift_test_conflicts": int(mine["lift_test_conflict"].notna().sum())})
    meta.update(plots_metadata(artifacts, figures, ("allocation", market)))
    return dg.MaterializeResult(metadata=meta, data_version=dg.DataVersion(version))
