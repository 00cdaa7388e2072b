"""Every table the pipeline writes to `staging` and `marts`, declared once: each column's DuckDB
type, unit and meaning.

Its readers:

* `mmm_pipeline.warehouse` creates each table from its declaration and brings a table an older
  version wrote up to it (`ensure_table`), so no column's type depends on a DataFrame (an all-null
  column would be typed NULL, which BI drivers handle poorly);
* `mmm_pipeline.reporting.publish` creates the BI file's tables from it and writes it there as
  COMMENT ON TABLE / VIEW / COLUMN (`duckdb_tables()`, `duckdb_views()`, `duckdb_columns()`);
* `python -m mmm_pipeline.schema [docs/marts.md]` writes the marts dictionary's tables (`make docs`
  runs it; a test fails when the committed page is out of date).

Units: a money column is in the reporting currency its table's `currency` column names; a KPI
column is in the units its table's `kpi_name` and `kpi_unit` name. `problems()` enforces both for
every published (`marts`) table, and that a column whose name says money or KPI declares a unit.

This module is left out of every code version (`mmm_pipeline.code_graph.UNVERSIONED`): a
description edit must not refit every model, and a declared type change is applied to the
existing rows in place by `warehouse.ensure_table`.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple


class SchemaError(ValueError):
    """A table or column written or published is not declared here, or a declaration is wrong."""


@dataclass(frozen=True)
class Unit:
    label: str            # as the docs and the column comments say it
    money: bool = False   # its table needs `currency`
    kpi: bool = False     # its table needs `kpi_name` and `kpi_unit`


MONEY = Unit("`currency`", money=True)
MONEY_PER_UNIT = Unit("`currency` per media unit", money=True)
MONEY_PER_1000 = Unit("`currency` per 1,000 impressions", money=True)
MONEY_PER_KPI = Unit("`currency` per `kpi_unit`", money=True, kpi=True)
KPI = Unit("`kpi_unit`", kpi=True)
KPI_PER_MONEY = Unit("`kpi_unit` per `currency`", money=True, kpi=True)
# the row says which quantity it holds (a parameter, a ROAS, a lift), so money and KPI alike
BY_ROW = Unit("the row's quantity", money=True, kpi=True)
MEDIA_UNITS = Unit("media units")
SHARE = Unit("share (0-1)")
PROBABILITY = Unit("probability (0-1)")
PERCENT = Unit("%")
POINTS = Unit("percentage points")
RELATIVE = Unit("relative change")
WEEKS = Unit("weeks")
DAYS = Unit("days")
SECONDS = Unit("seconds")
COUNT = Unit("count")

TYPES = ("VARCHAR", "DOUBLE", "BIGINT", "BOOLEAN", "DATE", "TIMESTAMP")
NUMERIC = ("DOUBLE", "BIGINT")
# A numeric column named like money or a KPI quantity must say its unit.
MONEY_OR_KPI_NAME = re.compile(r"spend|budget|cost|cpm|roas|gain|contribution|response|kpi|lift|predicted|"
                               r"forecast|actual|observed|measured|delta_y|sigma|crps")


class Units(NamedTuple):
    """The values of a row's unit columns (`mmm_pipeline.units.run_units` finds them)."""

    currency: str | None
    kpi_name: str | None
    kpi_unit: str | None


UNIT_COLUMNS = Units._fields


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str
    unit: Unit | None = None
    not_null: bool = False

    def comment(self) -> str:
        return f"{self.description} [unit: {self.unit.label}]" if self.unit else self.description


@dataclass(frozen=True)
class Table:
    name: str                    # schema-qualified, e.g. marts.channel_roas
    section: str                 # its heading in the marts dictionary
    grain: str                   # what one row is
    description: str
    columns: tuple[Column, ...]
    version_column: str | None   # the history table's version column; None: not a history table

    @property
    def published(self) -> bool:
        return self.name.startswith("marts.")

    @property
    def short_name(self) -> str:
        return self.name.split(".", 1)[1]

    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def comment(self) -> str:
        return f"{self.description} One row per {self.grain}."

    def view_comment(self) -> str:
        return (f"The rows of {self.name}'s newest materialization (per market, variant or scenario where "
                f"it has them): what to read by default. {self.comment()}")


def column(name: str, type_: str, description: str, unit: Unit | None = None, *, not_null: bool = False) -> Column:
    if type_ not in TYPES:
        raise SchemaError(f"{name}: type {type_!r} is not one of {TYPES}")
    return Column(name, type_, description, unit, not_null)


V, D, I, B, DATE, TS = "VARCHAR", "DOUBLE", "BIGINT", "BOOLEAN", "DATE", "TIMESTAMP"

# Columns many tables share, by name.
COMMON = {c.name: c for c in (
    column("market", V, "The market: the geos fitted jointly (pipeline.yaml `markets`; `all` when none is configured)."),
    column("variant", V, "`uncalibrated` (media, KPI and controls) or `calibrated` (also the lift tests and ROAS "
           "targets)."),
    column("model_version", V, "The fitted model's version (a hash of the code, data, configuration, variant, "
           "calibration inputs and scales); joins `marts.model_runs`."),
    column("gated", B, "True when the model passed its convergence gate in the full profile. False: an ungated model "
           "(fast profile or a failed gate), not for decisions."),
    column("gate_reason", V, "Why `gated` is false ('' when it is true)."),
    column("geo", V, "The geo (as in the input; `national` for data without geos)."),
    column("channel", V, "The media channel (channels.csv)."),
    column("week_start", DATE, "Monday of the ISO week."),
    column("currency", V, "The reporting currency (ISO code) of this row's money columns: pipeline.yaml "
           "`reporting_currency`, or the channel catalogue's only currency."),
    column("kpi_name", V, "The KPI the model explains (the KPI file's column; pipeline.yaml `kpi_column`)."),
    column("kpi_unit", V, "The unit of this row's KPI columns: the reporting currency when the KPI is money "
           "(revenue, sales, GMV...), else `count`."),
    column("train_start", DATE, "First day of the model's training period (Monday of its first modelled week)."),
    column("train_end", DATE, "Last day of the model's training period (Sunday of its last modelled week)."),
    column("planning_horizon_weeks", I, "The planning horizon (pipeline.yaml `planning_horizon_weeks`).", WEEKS),
    column("unit", V, "The channel's delivery unit (channels.csv): `impressions`, `clicks` or `spend`."),
)}
HISTORY = {
    "data_version": column("data_version", V, "The materialization's version: a hash of the code and inputs that "
                           "made the rows (one value per materialization)."),
    "model_version": COMMON["model_version"],
    "materialized_at": column("materialized_at", TS, "When the rows were written (UTC). The `_latest` view keeps "
                              "the newest materialization per partition."),
}
HDI = "94% HDI"


def _table(name: str, section: str, grain: str, description: str, *columns: Column | str,
           version_column: str | None = "data_version") -> Table:
    """A table of `columns` (a name: the COMMON column); a history table gets its version column
    (unless declared among `columns`) and `materialized_at` last."""
    cols = [COMMON[c] if isinstance(c, str) else c for c in columns]
    if version_column:
        names = {c.name for c in cols}
        cols += [HISTORY[n] for n in (version_column, "materialized_at") if n not in names]
    return Table(name, section, grain, description, tuple(cols), version_column)


def _interval(prefix: str, what: str, unit: Unit) -> list[Column]:
    """`<prefix>_mean`, `<prefix>_hdi_low`, `<prefix>_hdi_high`: a posterior mean and its 94% HDI."""
    return [column(f"{prefix}_mean", D, f"{what}: posterior mean.", unit),
            column(f"{prefix}_hdi_low", D, f"{what}: lower bound of the {HDI}.", unit),
            column(f"{prefix}_hdi_high", D, f"{what}: upper bound of the {HDI}.", unit)]


KPI_COLUMNS = ("kpi_name", "kpi_unit")

COSTS, MODELS, CALIBRATION, DECISIONS, STAGING = (
    "Costs", "Models", "Calibration and lift tests", "Decisions", "Staging (warehouse only)")

# Marginal ROAS, the response to +10% and average ROAS: per geo, per channel of a market, and all media.
_ROAS_MEASURES = [
    column("spend", D, "Spend over the training period (staging.media_weekly).", MONEY),
    *_interval("mroas", "Marginal ROAS: the KPI from the next unit of money at `current_weekly_spend` (the slope "
               "of the steady-state weekly response curve there)", KPI_PER_MONEY),
    *_interval("response_plus_10pct", "Extra KPI from 10% more weekly spend, over `planning_horizon_weeks`", KPI),
    "planning_horizon_weeks",
    *_interval("contribution", "Incremental KPI over the training period, carryover included "
               "(pymc-marketing incrementality)", KPI),
    *_interval("roas", "Average ROAS against zero spend over the training period: contribution / spend per draw "
               "(no experiment measures this; act on mROAS)", KPI_PER_MONEY),
    column("cost_per_incremental_kpi", D, "Spend / posterior mean contribution (the cost per acquisition when the "
           "KPI is a count).", MONEY_PER_KPI),
    column("current_weekly_spend", D, "Mean weekly spend of the last 13 modelled weeks: where mROAS and the +10% "
           "response are taken.", MONEY),
    "train_start", "train_end",
]

TABLES: tuple[Table, ...] = (
    # ------------------------------------------------------------------ costs
    _table("marts.cost_per_unit", COSTS, "week x geo x channel",
           "What one delivery unit cost each week (CPM for impression channels); weeks with no units or no spend "
           "get an imputed, positive rate.",
           "week_start", "geo", "channel", "unit",
           column("units", D, "Delivery units of the week.", MEDIA_UNITS),
           column("spend", D, "Spend of the week.", MONEY),
           column("cost_per_unit", D, "Spend / units (1.0 for spend channels), or the imputed rate.", MONEY_PER_UNIT),
           column("cpm", D, "1000 x the cost per impression; null for other units.", MONEY_PER_1000),
           column("imputed", B, "True when `cost_per_unit` is imputed (the week had no units or no spend)."),
           column("imputation", V, "How it was imputed: `window_<n>w` (the rate of the +/- n weeks around), "
                  "`geo_channel_mean` or `channel_mean`; null when observed."),
           "currency"),
    _table("marts.cost_per_unit_forecast", COSTS, "planning-horizon week x geo x channel",
           "Cost per unit for each week of the planning horizon, from the Monday after the last complete week: "
           "what the budget plans buy units at.",
           "week_start", "geo", "channel", "unit",
           column("cost_per_unit", D, "Forecast cost per unit: the trailing 8-week spend-weighted rate, times last "
                  "year's seasonal ratio when two years exist.", MONEY_PER_UNIT),
           column("method", V, "`trailing_seasonal`, `trailing`, or `spend_unit` (spend channels: 1.0)."),
           "currency"),

    # ------------------------------------------------------------------ models
    _table("marts.model_runs", MODELS, "fit (market x variant x model version)",
           "Each fitted model: its settings, convergence, in-sample fit and gate.",
           "market", "variant",
           column("data_version", V, "The version of the staged inputs the model was fitted on."),
           column("config_hash", V, "Hash of the model configuration (profile + pipeline.yaml `model` + controls)."),
           column("profile", V, "`full` (gated) or `fast` (ungated smoke settings)."),
           column("sampler", V, "The NUTS sampler (`nutpie`, `pymc`, ...)."),
           column("control_columns", V, "The controls the model used, comma-separated ('' for none)."),
           column("chains", I, "Chains sampled.", COUNT),
           column("draws", I, "Draws kept per chain.", COUNT),
           column("fit_seconds", D, "Sampling time over every attempt; null when the model was loaded, not "
                  "fitted.", SECONDS),
           column("attempts", I, "Fit attempts up the retry ladder (`model.retry`); null when loaded.", COUNT),
           column("attempt_history", V, "JSON list of the attempts: settings, time, R-hat, ESS, divergences, "
                  "failures."),
           column("strict_gates", B, "`model.strict_gates`: a failed gate blocks curves, ROAS and plans."),
           column("divergence_share", D, "Divergent transitions / draws sampled.", SHARE),
           column("max_rhat", D, "Largest rank-normalised split R-hat over the free parameters."),
           column("min_ess_bulk", D, "Smallest bulk effective sample size over the free parameters."),
           column("divergences", I, "Divergent transitions after warmup (over every draw sampled).", COUNT),
           column("r2", D, "In-sample R-squared of the posterior predictive mean, pooled over geos."),
           column("mape", D, "In-sample MAPE of the posterior predictive mean (weeks with a non-zero KPI).", SHARE),
           column("coverage_94", D, "Share of observed weeks inside the 94% posterior predictive interval.", SHARE),
           column("worst_geo", V, "The geo with the lowest R-squared against its own mean; null for national data."),
           column("worst_geo_r2", D, "That geo's R-squared."),
           column("passed_gates", B, "True when max R-hat, min bulk ESS and divergences are within the profile's "
                  "gates."),
           "gated",
           column("gate_failures", V, "The failed gates in words, `; `-separated ('' when none)."),
           column("artifact_uri", V, "Where the fitted model (NetCDF) is saved."),
           version_column="model_version"),
    _table("marts.model_scales", MODELS, "market x scale",
           "The fixed scales each market's models divide the KPI and the channels by, set on first use and reused "
           "by every refit until reset (`python -m mmm_pipeline.model.scales reset`).",
           "market",
           column("scale_of", V, "What is scaled: `__target__` (the KPI), a channel, `size:<geo>` (a geo's mean "
                  "weekly KPI) or `population:<geo>`."),
           column("value", D, "The scale: KPI units for the KPI and a geo's size, the channel's delivery units for a "
                  "channel; per person when `basis` is `per_capita`.", BY_ROW),
           column("set_by", V, "The fit that set it."),
           column("set_at", TS, "When it was set (UTC)."),
           column("basis", V, "`total` (one scale per market), `per_capita` (geos.csv populations) or "
                  "`per_kpi_mean` (each geo's mean KPI)."),
           *UNIT_COLUMNS, version_column=None),
    _table("marts.contributions", MODELS, "week x geo x component (per fit)",
           "The weekly decomposition of the KPI: each channel, the baseline, seasonality, trend and controls.",
           "market", "variant", "week_start", "geo",
           column("component", V, "A channel, `baseline`, `seasonality`, `trend`, or a control's name."),
           column("component_type", V, "`media`, `baseline`, `seasonality`, `trend` or `control`."),
           column("mean", D, "The component's contribution to the week's KPI: posterior mean.", KPI),
           column("hdi_low", D, f"Lower bound of the contribution's {HDI}.", KPI),
           column("hdi_high", D, f"Upper bound of the contribution's {HDI}.", KPI),
           *KPI_COLUMNS, version_column="model_version"),
    _table("marts.model_fit", MODELS, "week x geo (per fit)",
           "Actual against predicted KPI per training week (what the report's fit plot draws).",
           "week_start", "geo",
           column("actual", D, "The week's observed KPI.", KPI),
           column("predicted_mean", D, "Posterior predictive mean.", KPI),
           column("predicted_low", D, "3% quantile of the posterior predictive (the 94% interval's lower end).", KPI),
           column("predicted_high", D, "97% quantile of the posterior predictive.", KPI),
           "market", "variant", *KPI_COLUMNS, version_column="model_version"),
    _table("marts.model_fit_geo", MODELS, "geo (per fit)",
           "In-sample fit per geo, each geo against its own mean.",
           "geo",
           column("weeks", I, "Training weeks.", WEEKS),
           column("r2", D, "R-squared of the predictive mean against the geo's own mean."),
           column("mape", D, "MAPE of the predictive mean.", SHARE),
           column("coverage_94", D, "Share of weeks inside the 94% predictive interval.", SHARE),
           "market", "variant", version_column="model_version"),
    _table("marts.model_diagnostics", MODELS, "parameter (per fit)",
           "Convergence per free parameter, over its elements.",
           "market", "variant",
           column("parameter", V, "The model parameter (pymc-marketing's name)."),
           column("max_rhat", D, "Largest R-hat over its elements."),
           column("min_ess_bulk", D, "Smallest bulk ESS over its elements."),
           column("min_ess_tail", D, "Smallest tail ESS over its elements."),
           version_column="model_version"),
    _table("marts.prior_posterior", MODELS, "media parameter x element (per fit)",
           "How far the data moved each media parameter from its prior (check `data_informative`).",
           column("parameter", V, "The media parameter (`adstock_alpha`, `adstock_theta`, `saturation_lam`, `saturation_beta`, "
                  "`saturation_roi`)."),
           column("element", V, "Its element: the geo and channel, comma-separated."),
           column("prior_mean", D, "Prior mean (in the parameter's own, model-scaled units)."),
           column("prior_sd", D, "Prior standard deviation."),
           column("posterior_mean", D, "Posterior mean."),
           column("posterior_sd", D, "Posterior standard deviation."),
           column("contraction", D, "1 - (posterior sd / prior sd)^2: 0 when the data narrowed nothing.", SHARE),
           column("shift_z", D, "|posterior mean - prior mean| / prior sd."),
           column("prior_dominated", B, "True when the posterior neither narrowed by "
                  "`gates.min_posterior_contraction` nor moved by half a prior sd: the value is the prior's."),
           "market", "variant", version_column="model_version"),
    _table("marts.model_validation", MODELS, "geo, and one `market` row (per market)",
           "Out of sample: the model refitted without its last `model.validation.holdout_weeks` complete weeks "
           "and its forecast of them, against the better of two naive forecasts.",
           column("geo", V, "The geo, or `market` for the market's row (weekly totals over its geos): do not sum "
                  "the `market` row with the geo rows."),
           column("holdout_weeks", I, "Weeks held out.", WEEKS),
           column("first_week", DATE, "Monday of the first held-out week."),
           column("last_week", DATE, "Monday of the last held-out week."),
           column("model_mape", D, "MAPE of the forecast's posterior mean over the held-out weeks.", SHARE),
           column("model_crps", D, "Mean CRPS of the forecast draws.", KPI),
           column("coverage_94", D, "Share of held-out weeks inside the forecast's 94% HDI.", SHARE),
           column("baseline", V, "The naive forecast compared with (the mean of the last 8 training weeks, or the "
                  "same week a year earlier)."),
           column("baseline_mape", D, "The naive forecast's MAPE.", SHARE),
           column("baseline_crps", D, "The naive forecast's CRPS (its absolute error).", KPI),
           column("beats_baseline", B, "True when `model_mape` < `baseline_mape`."),
           column("kpi_mean", D, "Mean weekly KPI over the held-out weeks.", KPI),
           "market",
           column("fit_passed_gates", B, "Whether the refit passed its own convergence gate (`model.validation` "
                  "max_rhat 1.05, min_ess_bulk 100, max_divergence_share 0.01, never stricter than the profile's), "
                  "judged on the forecast's expected KPI in every held-out week and geo and the weekly totals, "
                  "after the retry ladder. When false the forecast is on record but proves nothing, and "
                  "`beats_naive_forecast` does not pass."),
           column("fit_attempts", I, "Refit attempts up the retry ladder (`model.retry`).", COUNT),
           column("fit_max_rhat", D, "The last refit attempt's largest R-hat of the forecast's expected KPI (per "
                  "held-out week and geo, and the weekly totals): the gate's quantity. Rows written before "
                  "2026-12-07 (tenth session) hold the free parameters' largest R-hat."),
           column("fit_min_ess_bulk", D, "The last refit attempt's smallest bulk ESS of the forecast's expected KPI "
                  "(before 2026-12-07, tenth session: over the free parameters)."),
           column("fit_divergences", I, "The last refit attempt's divergent transitions after warmup.", COUNT),
           column("fit_gate_failures", V, "Why the refit failed its gate; empty when it passed."),
           *KPI_COLUMNS),
    _table("marts.model_validation_weekly", MODELS, "held-out week x geo (per market)",
           "The out-of-sample forecast of each held-out week.",
           "week_start", "geo",
           column("actual", D, "The week's observed KPI.", KPI),
           column("forecast_mean", D, "Forecast: posterior predictive mean.", KPI),
           column("hdi_low", D, f"Lower bound of the forecast's {HDI}.", KPI),
           column("hdi_high", D, f"Upper bound of the forecast's {HDI}.", KPI),
           column("baseline", D, "The naive forecast of the week.", KPI),
           "market",
           column("crps", D, "The week's CRPS of the forecast draws (lower is better; the point score behind "
                  "`marts.model_family`).", KPI),
           *KPI_COLUMNS),
    _table("marts.model_family", MODELS, "candidate curve family (per market and choice)",
           "How the market's curve family was chosen when `model.family_candidates` lists two or more: each "
           "candidate refitted without the held-out weeks (as `marts.model_validation`), scored by its forecast's "
           "CRPS per held-out week and geo over the geo's mean KPI; the first candidate is kept unless another "
           "converged one is lower by more than 2 standard errors of the paired difference.",
           "market",
           column("candidate", V, "`<adstock> + <saturation>`."),
           column("adstock", V, "`geometric` or `delayed`."),
           column("saturation", V, "`logistic` or `hill`."),
           column("is_default", B, "The first candidate: kept unless another is better beyond noise."),
           column("holdout_weeks", I, "Weeks held out.", WEEKS),
           column("points", I, "Held-out (week, geo) points scored.", COUNT),
           column("relative_crps", D, "Mean over the points of CRPS / the geo's mean held-out KPI (lower is "
                  "better).", SHARE),
           column("diff_vs_default", D, "Mean paired difference of the points' relative CRPS against the default's "
                  "(negative: this candidate forecast better).", SHARE),
           column("diff_se", D, "Standard error of that mean difference (0 for the default).", SHARE),
           column("refit_passed_gates", B, "Whether the candidate's refit passed the validation gate (a refit that "
                  "did not cannot be chosen over a converged default)."),
           column("refit_max_rhat", D, "The candidate refit's largest R-hat."),
           column("chosen", B, "The family the market's models use."),
           column("reason", V, "Why the chosen family was chosen (the same on every row of a choice)."),
           column("selection_key", V, "What the choice was made for (market, data version, model settings): the "
                  "fits read the choice of their own key."),
           ),
    _table("marts.kpi_forecast", MODELS, "model x forecast week x geo (and `market`)",
           "Each fitted model's forecast of the planning horizon's weeks after its training, under the media it "
           "expects (each geo and channel's mean weekly media of the last 13 training weeks continued; controls "
           "at their mean of those weeks): what marts.track_record scores when the weeks arrive.",
           "market", "variant", "model_version", "week_start",
           column("geo", V, "The geo, or `market` for the market's total (draws summed per sample)."),
           *_interval("forecast", "The week's KPI forecast", KPI),
           *KPI_COLUMNS),
    _table("marts.track_record", MODELS, "earlier model x arrived week x geo (and `market`)",
           "Each earlier model, once the data reach the weeks it forecast: its stored forecast and its "
           "posterior re-evaluated on the media and controls that happened, against the KPI that came.",
           "market", "variant",
           column("model_version", V, "The earlier model scored (joins `marts.model_runs`)."),
           "week_start",
           column("geo", V, "The geo, or `market` for the market's total."),
           column("actual", D, "The KPI that came.", KPI),
           *_interval("forecast", "The stored forecast under the media the model expected", KPI),
           column("forecast_error", D, "forecast_mean - actual.", KPI),
           column("forecast_covered", B, "True when the actual KPI is inside the forecast's 94% HDI."),
           *_interval("rescored", "The model's posterior re-evaluated on the media and controls that happened",
                      KPI),
           column("rescored_error", D, "rescored_mean - actual.", KPI),
           column("rescored_covered", B, "True when the actual KPI is inside the re-evaluation's 94% HDI."),
           *KPI_COLUMNS),
    _table("marts.model_health", MODELS, "market x check x variant",
           "The report's health card: each check of the market's models and data, green / amber / red with a "
           "sentence (mmm_pipeline/reporting/health.py; written by `market_report`).",
           "market",
           column("variant", V, "The model checked: `uncalibrated`, `calibrated`, or `both` for the data checks "
                  "and freshness (the out-of-sample check is the uncalibrated structure the validation refits)."),
           column("check_name", V, "`convergence`, `out_of_sample`, `held_out_experiments`, "
                  "`calibration_consistency`, `data_checks`, `data_freshness` or `interval_coverage` (the off-family "
                  "benchmark's record of the variant's 94% intervals, not this fit's)."),
           column("status", V, "`green`, `amber` or `red`."),
           column("value", D, "What was measured, in the check's own terms: max R-hat, held-out MAPE, the share of "
                  "held-out tests inside their interval, Pareto k-hat, failed data-quality suites, or the oldest "
                  "source's age in days."),
           column("threshold", V, "The thresholds, in words."),
           column("sentence", V, "What the check says, in words.")),
    _table("marts.alerts", MODELS, "alert",
           "Failed runs, failed gates (once per model version) and stale inputs, for a dashboard.",
           column("alerted_at", TS, "When it was raised (UTC).", not_null=True),
           column("asset", V, "The asset key (with `[partition]`) or the job."),
           column("problem", V, "What failed, in words.", not_null=True),
           column("severity", V, "`error` or `warning`.", not_null=True),
           column("run_id", V, "The Dagster run."),
           version_column=None),

    # ------------------------------------------------------------------ calibration and lift tests
    _table("marts.lift_tests", CALIBRATION, "lift test x geo (per market)",
           "Each lift test converted to the model's weekly units (the calibrated model's input).",
           column("test_id", V, "The test (lift_tests.csv)."),
           "market", "channel",
           column("geo", V, "The geo; a national test has one row per geo of the market (its spend share)."),
           column("x", D, "Weekly delivery units the test added to (pre-period mean, or the window's own level "
                  "with `lift_tests.baseline: window`).", MEDIA_UNITS),
           column("delta_x", D, "Extra weekly delivery units the test bought.", MEDIA_UNITS),
           column("delta_y", D, "Weekly lift (the readout / weeks in the window).", KPI),
           column("sigma", D, "Standard error of the weekly lift.", KPI),
           column("delta_y_window", D, "The reported lift over the window (the geo's share for a national test).",
                  KPI),
           column("weeks_in_window", D, "(end_date - start_date + 1 day) / 7.", WEEKS),
           column("cost_per_unit_used", D, "Spend-weighted cost per unit of the test's own window, geo and channel "
                  "(1 for spend channels).", MONEY_PER_UNIT),
           "unit",
           column("start_date", DATE, "First day of the test."),
           column("end_date", DATE, "Last day of the test."),
           column("delta_spend", D, "Money the test added over the window (the geo's share for a national test).",
                  MONEY),
           column("scope", V, "`window` (lift during the window) or `total` (carryover after it included)."),
           column("delta_y_test", D, "The readout of the test's one likelihood term in this market (delta_y x "
                  "market_share).", KPI),
           column("sigma_test", D, "Its standard error, widened for the uncertainty of a national split.", KPI),
           column("market_share", D, "The market's share of the test's window spend (1 for a geo test).", SHARE),
           column("geo_share", D, "The geo's share of the test's window spend (1 for a geo test).", SHARE),
           column("national", B, "True for a test without a geo (ran in every geo)."),
           *UNIT_COLUMNS),
    _table("marts.national_test_split", CALIBRATION, "national lift test x market (tests spanning markets)",
           "How a national lift test that ran in several markets' geos is split between the markets' calibrated "
           "models: by each market's share of its window spend (the default), or with `lift_tests.national_split: "
           "predicted_lift` by its share of the lift the uncalibrated models predict for it on their spend paths, "
           "that share's posterior uncertainty in the term's sigma (`method` says which, and why the spend split "
           "where a prediction was asked for).",
           "market", "variant",
           column("test_id", V, "The test (lift_tests.csv)."),
           "channel",
           column("scope", V, "`window` or `total`."),
           column("delta_y", D, "The test's whole readout (every market).", KPI),
           column("sigma", D, "Its standard error as reported.", KPI),
           column("spend_share", D, "The market's share of the test's window spend.", SHARE),
           *[column(f"lift_share_{s}", D, f"The market's share of the predicted lift: {w} (null on the spend "
                    "split).", SHARE)
             for s, w in (("mean", "posterior mean"), ("sd", "posterior sd"),
                          ("hdi_low", "94% HDI, low"), ("hdi_high", "94% HDI, high"))],
           column("delta_y_test", D, "The market's likelihood term: delta_y x its share (lift share, or spend "
                  "share when `method` is not `predicted_lift`).", KPI),
           column("sigma_test", D, "Its standard error: sqrt(sigma^2 x share + (delta_y x share sd)^2).", KPI),
           column("method", V, "`predicted_lift`, or `spend_share: <why>`."),
           column("uncalibrated_model_version", V, "The market's uncalibrated model whose predictions split it."),
           *UNIT_COLUMNS, version_column="model_version"),
    _table("marts.calibration_report", CALIBRATION, "market x geo x channel x parameter",
           "Both models' estimates side by side (and, with truth.json, against the truth): did calibration "
           "sharpen them?",
           column("model_version_uncalibrated", V, "The uncalibrated model's version."),
           column("model_version_calibrated", V, "The calibrated model's version; null when it was not fitted."),
           "market", "geo", "channel",
           column("parameter", V, "`saturation_lam` (logistic) or `saturation_slope` and `saturation_kappa` (Hill) "
                  "(max-scaled units), `saturation_beta` (KPI per week), `adstock_alpha` (and `adstock_theta`, the "
                  "delayed adstock's peak lag in weeks), `roas` (KPI per money over the training period) or "
                  "`response_at_current_spend` (weekly KPI at the last 13 weeks' mean units)."),
           column("truth", D, "The true value (truth.json of a generated input; null otherwise).", BY_ROW),
           *[c for v in ("uncalibrated", "calibrated") for c in (
               column(f"mean_{v}", D, f"The {v} model's posterior mean.", BY_ROW),
               column(f"hdi_low_{v}", D, f"Lower bound of the {v} model's {HDI}.", BY_ROW),
               column(f"hdi_high_{v}", D, f"Upper bound of the {v} model's {HDI}.", BY_ROW),
               column(f"hdi_width_{v}", D, f"Width of the {v} model's {HDI}.", BY_ROW))],
           column("precision_improvement_pct", D, "(width_uncalibrated - width_calibrated) / width_uncalibrated x "
                  "100.", PERCENT),
           *[c for v in ("uncalibrated", "calibrated") for c in (
               column(f"error_{v}", D, f"|mean_{v} - truth| / |truth|.", SHARE),
               column(f"signed_error_{v}", D, f"(mean_{v} - truth) / |truth|.", SHARE),
               column(f"truth_in_hdi_{v}", B, f"True when the truth is inside the {v} model's {HDI}."))],
           column("bias_improvement_pct", D, "(|mean_uncalibrated - truth| - |mean_calibrated - truth|) / "
                  "width_uncalibrated x 100: positive when calibration moved the mean towards the truth.", PERCENT),
           *UNIT_COLUMNS),
    _table("marts.lift_test_fit", CALIBRATION, "lift test x variant (one row for a national test)",
           "The lift each model implies in the test's own scope, against the readout.",
           column("test_id", V, "The test."),
           "market", "variant", "model_version",
           column("geo", V, "The test's geo; `all geos` for a national test."),
           "channel",
           column("scope", V, "`window` or `total`."),
           *_interval("predicted", "The lift the model implies in the test's scope", KPI),
           column("observed", D, "The test's readout (the market's share for a national test).", KPI),
           column("sigma", D, "The readout's standard error.", KPI),
           column("z_score", D, "(observed - predicted_mean) / sigma."),
           *KPI_COLUMNS),
    _table("marts.calibration_consistency", CALIBRATION,
           "market x quantity (each test's implied lift, each tested cell's ROAS and mROAS)",
           "The calibrated posterior against the uncalibrated one reweighted by every calibration term (PSIS): "
           "they must agree.",
           "market",
           column("quantity", V, "`implied_lift` (a test's implied lift, KPI), `roas` or `mroas` (a tested cell's, "
                  "KPI per money)."),
           column("test_id", V, "The test (for `implied_lift`; null otherwise)."),
           column("geo", V, "The cell's geo (`all geos` for a national test)."),
           "channel",
           column("calibrated_mean", D, "The calibrated model's posterior mean.", BY_ROW),
           column("reweighted_mean", D, "The uncalibrated draws reweighted by every calibration term: its mean.",
                  BY_ROW),
           column("uncalibrated_mean", D, "The uncalibrated model's posterior mean.", BY_ROW),
           column("uncalibrated_sd", D, "The uncalibrated model's posterior sd.", BY_ROW),
           column("diff_in_uncal_sd", D, "|calibrated_mean - reweighted_mean| / uncalibrated_sd."),
           column("threshold_in_uncal_sd", D, "The largest difference allowed: max(0.1, 4 x mcse / "
                  "uncalibrated_sd)."),
           column("mcse", D, "Combined Monte Carlo standard error of the two means.", BY_ROW),
           column("pareto_k", D, "PSIS k-hat of the reweighting (>= 0.7: unreliable)."),
           column("verdict", V, "`consistent`, `inconsistent` (a bug in one of the two) or `experiments_disagree` "
                  "(k-hat >= 0.7)."),
           *UNIT_COLUMNS),
    _table("marts.lift_test_holdout", CALIBRATION, "lift test (per market)",
           "Each lift test predicted by the calibrated model without it (leave-one-test-out PSIS), beside the "
           "uncalibrated model's prediction.",
           "market",
           column("test_id", V, "The test."),
           "channel",
           column("geo", V, "The test's geo; `all geos` for a national test."),
           column("scope", V, "`window` or `total`."),
           column("measured", D, "The test's readout (the market's share for a national test).", KPI),
           column("sigma", D, "The readout's standard error.", KPI),
           column("predicted_mean", D, "Predicted lift without the test: posterior mean.", KPI),
           column("predicted_hdi_low", D, f"Lower bound of its {HDI}.", KPI),
           column("predicted_hdi_high", D, f"Upper bound of its {HDI}.", KPI),
           column("z", D, "(measured - predicted_mean) / sqrt(predicted sd^2 + sigma^2)."),
           column("log_pred_density", D, "Log predictive density of the readout."),
           column("uncal_predicted_mean", D, "The uncalibrated model's predicted lift: posterior mean.", KPI),
           column("uncal_hdi_low", D, f"Lower bound of its {HDI}.", KPI),
           column("uncal_hdi_high", D, f"Upper bound of its {HDI}.", KPI),
           column("uncal_z", D, "z of the uncalibrated prediction."),
           column("pareto_k", D, "PSIS k-hat of leaving the test out."),
           column("method", V, "`reweighted`, `needs_refit` (k-hat >= 0.7) or `not_scored: ...` (why: e.g. no "
                  "other test of the channel in the market)."),
           *KPI_COLUMNS),

    # ------------------------------------------------------------------ decisions
    _table("marts.response_curves", DECISIONS, "model x geo x channel x spend point (41, from 0 to 2x the largest "
           "weekly spend)",
           "The steady-state weekly KPI response to weekly spend, in money.",
           "market", "variant", "gated", "gate_reason", "geo", "channel",
           column("spend", D, "Weekly spend.", MONEY),
           column("units", D, "The delivery units that spend buys at `cost_per_unit_used`.", MEDIA_UNITS),
           column("response_mean", D, "Weekly KPI response: posterior mean.", KPI),
           column("hdi_low", D, f"Lower bound of the response's {HDI}.", KPI),
           column("hdi_high", D, f"Upper bound of the response's {HDI}.", KPI),
           column("cost_per_unit_used", D, "Spend-weighted cost per unit of the last 13 modelled weeks.",
                  MONEY_PER_UNIT),
           column("current_weekly_spend", D, "Mean weekly spend of the last 13 modelled weeks.", MONEY),
           column("max_weekly_spend", D, "The largest weekly spend in the training period.", MONEY),
           "model_version", *UNIT_COLUMNS),
    _table("marts.channel_roas", DECISIONS, "model x geo x channel",
           "What each channel returns per geo: first what an experiment of extra spend can vouch for (mROAS, the "
           "response to +10%), then average ROAS against zero spend.",
           "market", "variant", "gated", "gate_reason", "geo", "channel", *_ROAS_MEASURES,
           column("cost_per_unit_used", D, "Spend-weighted cost per unit of the last 13 modelled weeks.",
                  MONEY_PER_UNIT),
           "model_version", *UNIT_COLUMNS),
    _table("marts.channel_roas_market", DECISIONS, "model x channel",
           "The same per channel for the market: each geo's draws summed per draw, so the intervals are the "
           "market's (not a sum of intervals); mROAS is the market's slope when every geo's spend grows in "
           "proportion. All media together: marts.channel_roas_market_total.",
           "market", "variant", "gated", "gate_reason", "channel", *_ROAS_MEASURES, "model_version", *UNIT_COLUMNS),
    _table("marts.channel_roas_market_total", DECISIONS, "model",
           "All media together for the market (every channel and geo summed per draw): kept apart from the "
           "per-channel rows so that summing those never counts it twice.",
           "market", "variant", "gated", "gate_reason",
           column("channels", V, "The channels summed, comma-separated."),
           *_ROAS_MEASURES, "model_version", *UNIT_COLUMNS),
    _table("marts.channel_share", DECISIONS, "model x channel",
           "Per channel of the market: its share of the spend beside its share of the media effect, and how much "
           "of a week's effect arrives in later weeks (the report's share and carryover section).",
           "market", "variant", "gated", "gate_reason", "channel",
           column("spend", D, "Spend over the training period.", MONEY),
           column("spend_share", D, "The channel's share of all media spend.", SHARE),
           *_interval("effect_share", "The channel's share of the media effect (its contribution over all media's, "
                      "per posterior draw; the means add up to 1)", SHARE),
           *_interval("carryover_share", "Of one week's media effect, the share arriving in later weeks: "
                      "1 - the first week's weight of the posterior adstock kernel per draw (geometric: 1 - 1 / "
                      "sum of alpha^l over `l_max` weeks; delayed: weights alpha^((l - theta)^2); geos weighted by "
                      "their spend)", SHARE),
           column("adstock_alpha_mean", D, "Posterior mean of the adstock's alpha (geometric: its decay; delayed: "
                  "its spread around the peak), geos weighted by spend."),
           column("l_max", I, "The adstock's window (weeks).", WEEKS),
           "model_version", *UNIT_COLUMNS),
    _table("marts.refresh_drift", DECISIONS, "market x variant x geo x channel (gated models only)",
           "How a refit's ROAS and media share moved against the previous gated model of the market and variant.",
           "geo", "channel",
           column("previous_model_version", V, "The previous gated model compared with."),
           column("roas_previous", D, "The previous model's average ROAS.", KPI_PER_MONEY),
           column("roas_current", D, "This model's average ROAS.", KPI_PER_MONEY),
           column("roas_change", D, "roas_current / roas_previous - 1.", RELATIVE),
           column("share_previous", D, "The channel's share of the geo's media contribution, previous model.",
                  SHARE),
           column("share_current", D, "The same, this model.", SHARE),
           column("share_change_pp", D, "100 x (share_current - share_previous).", POINTS),
           column("flagged", B, "True when ROAS or the share moved by more than `model.refresh_drift_threshold`."),
           "market", "variant", "model_version", "train_start", "train_end", *UNIT_COLUMNS),
    _table("marts.budget_allocation", DECISIONS, "scenario x geo x channel (horizon totals)",
           "Each scenario's budget plan: pymc-marketing's optimizer in money, with the forecast cost per unit, "
           "next to the current plan.",
           column("allocation_id", V, "The scenario (pipeline.yaml `scenarios`; `default`: today's spend, each "
                  "cell within +/-50%)."),
           "market", "variant", "geo", "channel",
           column("current_spend", D, "The current plan over the horizon: the last 13 weeks' mean weekly spend x "
                  "`horizon_weeks`.", MONEY),
           column("optimal_spend", D, "The optimal plan's spend over the horizon.", MONEY),
           column("optimal_units", D, "The delivery units the optimal spend buys at the forecast cost per unit.",
                  MEDIA_UNITS),
           column("cost_per_unit", D, "The horizon's forecast cost per unit (money-weighted mean).", MONEY_PER_UNIT),
           *_interval("expected_response", "KPI over the horizon from the optimal plan, its carryover included",
                      KPI),
           column("current_response_mean", D, "KPI over the horizon from the current plan: posterior mean.", KPI),
           column("extrapolated", B, "True when the optimal weekly spend exceeds the largest weekly spend in the "
                  "data."),
           column("total_budget", D, "The scenario's budget over the horizon.", MONEY),
           column("horizon_weeks", I, "The scenario's horizon.", WEEKS),
           column("optimized", B, "False for a fixed plan (`fixed_allocation`), evaluated and not optimized."),
           column("optimizer_converged", B, "Whether the optimizer converged (its last point meets the budget and "
                  "bounds either way)."),
           column("optimizer_message", V, "The optimizer's message."),
           column("start_week", DATE, "Monday of the horizon's first week."),
           column("optimal_weekly_spend", D, "The optimal plan's weekly spend.", MONEY),
           column("current_weekly_spend", D, "The current plan's weekly spend.", MONEY),
           column("max_weekly_spend", D, "The largest weekly spend in the data.", MONEY),
           column("move", V, "`increase`, `decrease`, `unchanged`, or `hold`: the optimizer moved the cell but "
                  "the posterior probability that the move gains was below `plan_min_probability_of_gain`, or "
                  "the whole plan's was (keep the current mix); a held cell keeps its current spend."),
           column("probability_move_gains", D, "Posterior probability that the cell's move gains: its extra KPI "
                  "per extra money beats the KPI per money lost where the money comes from (a cut: loses less "
                  "per money than the money earns where it goes). Empty for a cell that does not move, or when "
                  "the scenario's budget change forces every move.", PROBABILITY),
           column("at_bound", V, "`lower` or `upper` when the optimal spend sits at the cell's bound (the plan "
                  "would go further if allowed), else empty."),
           column("lift_tests", V, "The lift tests behind the cell's channel in this geo (national tests "
                  "included), comma-separated; empty when none."),
           column("lift_test_conflict", V, "Set when the move goes against a lift test the model predicted "
                  "badly without it (marts.lift_test_holdout |z| > 2): more money where the test measured "
                  "less than predicted, or less where it measured more."),
           column("chosen", B, "True for the plan the report recommends; false for the wanted variant's plan, "
                  "written beside it when that variant failed its gate (marked not gated)."),
           "model_version", "gated", "gate_reason", *UNIT_COLUMNS),
    _table("marts.allocation_plan", DECISIONS, "scenario",
           "Each scenario's plan as a whole: response and gain over the horizon with the posterior's intervals "
           "(a sum of the cells' intervals is not the plan's).",
           column("allocation_id", V, "The scenario."),
           "market",
           column("total_budget", D, "The scenario's budget over the horizon.", MONEY),
           column("horizon_weeks", I, "The scenario's horizon.", WEEKS),
           *_interval("expected_response", "KPI over the horizon from the optimal plan", KPI),
           *_interval("current_response", "KPI over the horizon from the current plan", KPI),
           *_interval("gain", "Expected minus current response, per draw", KPI),
           column("decision", V, "`move` (the plan differs from the current mix), `keep_current_mix` (the "
                  "optimizer's plan gained with posterior probability below `plan_min_probability_of_gain`: "
                  "the cells keep their current spend and gain_* is 0) or `fixed_plan` (a what-if)."),
           column("probability_of_gain", D, "Posterior probability that the optimizer's plan (after holding the "
                  "unconvincing cells) beats the current plan.", PROBABILITY),
           *_interval("candidate_gain", "The optimizer's plan (after holds) minus the current plan, per draw: "
                      "the gain declined when the decision is keep_current_mix", KPI),
           column("min_probability_of_gain", D, "The threshold the decision used (empty: none).", PROBABILITY),
           column("utility", V, "What the optimizer maximised over the posterior draws: `mean` (expected "
                  "response), `cvar 0.9` (mean of the worst 10% of draws) or `mean_tightness 0.75`; pipeline.yaml "
                  "`plan_utility` or the scenario's `utility`."),
           column("held_cells", I, "Cells held at their current spend.", COUNT),
           column("chosen", B, "True for the plan the report recommends (see budget_allocation.chosen)."),
           column("fallback_reason", V, "Why the chosen plan uses another variant than the scenario asked for "
                  "('' when it does not)."),
           "variant", "model_version", "gated", "gate_reason", *UNIT_COLUMNS),
    Table("marts._published", "Publication", "publication", "When this BI file was published.",
          (column("published_at", TS, "When the BI file was written (UTC)."),), None),

    # ------------------------------------------------------------------ staging (warehouse only)
    _table("staging.media_weekly", STAGING, "ISO week x geo x channel",
           "Media per week in the catalogue's unit, on a complete date spine (filled weeks say `no_media`).",
           "week_start", "geo", "channel", "unit",
           column("units", D, "Delivery units of the week (impressions, clicks, or spend for spend channels).",
                  MEDIA_UNITS),
           column("spend", D, "Spend of the week in the reporting currency.", MONEY),
           column("clicks", D, "Clicks of the week.", COUNT),
           column("impressions", D, "Impressions of the week.", COUNT),
           column("no_media", B, "True for a week the spine filled (no ad row: zero spend and units)."),
           column("days_in_week", I, "Days of the week inside the data's date range (7 but at the edges).", DAYS),
           column("incomplete_week", B, "True when the week is cut by the data's first or last day (not modelled)."),
           column("spend_without_units", B, "True when the week has spend but no delivery units.")),
    _table("staging.kpi_weekly", STAGING, "ISO week x geo",
           "The KPI per week (a missing week is never filled with zero: its check fails).",
           "week_start", "geo", "kpi_name",
           column("kpi_value", D, "The KPI summed over the week's reported days.", KPI),
           column("days_in_week", I, "Days of the week inside the data's date range.", DAYS),
           column("days_reported", I, "Days of the week the KPI file reports.", DAYS),
           column("incomplete_week", B, "True when the week is cut by the data's first or last day (not modelled).")),
    _table("staging.controls_weekly", STAGING, "ISO week x geo x control",
           "Each control (controls/ files) per week; a control without a geo holds for every geo. Empty without "
           "controls.",
           "week_start", "geo",
           column("control", V, "The control's column name in its file."),
           column("aggregation", V, "How its days make the week: `mean` (default) or `sum` (pipeline.yaml "
                  "`controls`)."),
           column("value", D, "The control's weekly value, in the file's own units."),
           column("days_reported", I, "Days of the week the file reports.", DAYS),
           column("days_in_week", I, "Days of the week inside the data's date range.", DAYS),
           column("incomplete_week", B, "True when the week is cut by the data's first or last day.")),
)

_BY_NAME = {t.name: t for t in TABLES}


def table(name: str) -> Table:
    """The declaration of `name` (schema-qualified); SchemaError when there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise SchemaError(f"{name} is not declared in mmm_pipeline/schema.py: declare its columns (type, unit, "
                          "meaning) there before writing or publishing it") from None


def published_tables() -> list[Table]:
    return [t for t in TABLES if t.published]


def problems(tables=TABLES) -> list[str]:
    """What is wrong with the declarations: a column without a description, type or unit where it
    needs one, a money column in a table without `currency`, a KPI column without `kpi_name` and
    `kpi_unit`."""
    out = []
    for t in tables:
        names = t.column_names()
        if not t.description.strip() or not t.grain.strip():
            out.append(f"{t.name}: no description or grain")
        if len(set(names)) != len(names):
            out.append(f"{t.name}: duplicate columns {sorted({n for n in names if names.count(n) > 1})}")
        for c in t.columns:
            where = f"{t.name}.{c.name}"
            if not c.description.strip():
                out.append(f"{where}: no description")
            if c.type not in TYPES:
                out.append(f"{where}: type {c.type!r} is not one of {TYPES}")
            if c.unit is None and c.type in NUMERIC and MONEY_OR_KPI_NAME.search(c.name):
                out.append(f"{where}: named like money or a KPI but declares no unit")
            if not t.published or c.unit is None:
                continue
            if c.unit.money and "currency" not in names:
                out.append(f"{where}: money ({c.unit.label}) in a table without a `currency` column")
            if c.unit.kpi and not {"kpi_name", "kpi_unit"} <= set(names):
                out.append(f"{where}: KPI units ({c.unit.label}) in a table without `kpi_name` and `kpi_unit`")
    return out


# --------------------------------------------------------------------------- the marts dictionary

BEGIN = "<!-- BEGIN tables: generated by `python -m mmm_pipeline.schema docs/marts.md` from mmm_pipeline/schema.py -->"
END = "<!-- END tables -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """The dictionary's tables: per section, per table its grain, meaning and columns."""
    lines = [BEGIN, ""]
    section = None
    for t in TABLES:
        if t.section != section:
            section = t.section
            lines += [f"## {section}", ""]
        view = f" (and `{t.name}_latest`)" if t.version_column else ""
        lines += [f"### `{t.name}`", "", f"{t.description} One row per {t.grain}{view}.", "",
                  "| column | type | unit | meaning |", "|---|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {_cell(c.unit.label) if c.unit else ''} | {_cell(c.description)} |"
                  for c in t.columns]
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def render_page(page: str) -> str:
    """`page` with the text between its BEGIN and END markers replaced by `markdown()`."""
    start, stop = page.find(BEGIN), page.find(END)
    if start < 0 or stop < start:
        raise SchemaError(f"the page lacks the markers {BEGIN!r} ... {END!r}")
    return page[:start] + markdown() + page[stop + len(END):]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m mmm_pipeline.schema",
                                description="Write the marts dictionary's tables into a page (between its markers).")
    p.add_argument("page", nargs="?", type=Path, help="the page to update (default: print the tables)")
    args = p.parse_args(argv)
    bad = problems()
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    if args.page is None:
        print(markdown())
        return 0
    text = args.page.read_text()
    new = render_page(text)
    if new != text:
        args.page.write_text(new)
        print(f"{args.page}: tables updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
