"""Budget allocation in money (mart `budget_allocation`) with pymc-marketing's budget optimizer.

A :class:`Scenario` says how much money to spend over a planning horizon
(``total_budget``, for the whole horizon), how long the horizon is
(``horizon_weeks``) and, optionally, per geo x channel bounds as fractions of
the cell's *current spend* (its mean weekly spend over the last 13 complete
weeks x the horizon) -- or gives a fixed what-if plan (``fixed_allocation``,
money per cell for the horizon) that is evaluated without optimising.

How pymc-marketing 1.3 is used
------------------------------
* ``mmm.budget_optimizer(start_date, end_date, budgets_to_optimize=...,
  cost_per_unit=...)`` builds the optimisation model over carry-in (the last
  ``l_max`` training weeks, held at their observed units so the adstock does
  not start cold), the horizon's weeks (the decisions) and ``l_max`` carry-over
  weeks after the horizon (no spend, the adstock tail of the horizon's spend),
  and returns a ``BudgetOptimizer``.
* Its budgets are **money per week** per (geo, channel) cell, spread evenly
  over the horizon's weeks; ``total_budget`` passed to ``allocate_budget`` is
  the per-week total (``scenario.total_budget / horizon_weeks``) and so are
  the bounds. The results here are multiplied back to horizon totals.
* ``cost_per_unit`` must be an ``xarray.DataArray`` with dims exactly
  ``("date", "geo", "channel")`` (``("date", "channel")`` for a national
  model) whose ``date`` has length ``num_periods`` (= the horizon's weeks, no
  carry-in or carry-over weeks); it is built from ``marts.cost_per_unit_forecast``
  for the horizon's weeks (the optimizer converts money to units week by week:
  ``units[t] = money[t] / cost_per_unit[t]``). Missing or non-positive rates
  are refused here before optimising.
* Bounds go to ``allocate_budget(budget_bounds=...)`` as a DataArray with dims
  ``("geo", "channel", "bound")``, ``bound`` = ``["low", "high"]``, money per
  week. A dict ``{channel: (low, high)}`` is only accepted for one budget dim.
* The mask ``budgets_to_optimize`` is passed as *all* cells (the default
  auto-detection would silently pin a cell with no posterior contribution to
  0, which would also zero its "current" response); a cell is held at 0 by the
  bounds ``(0, 0)`` instead.
* Responses: ``BudgetOptimizer.evaluate_response_distribution(plan,
  "channel_contribution")`` -- the same compiled graph the solver used, per
  posterior draw, over the whole window (carry-in, horizon, carry-over) --
  evaluated at the plan and at a zero plan; their difference summed over the
  window, times the target scale, is the KPI the horizon's spend produces
  within the horizon *plus its carryover* after it (the carry-in weeks'
  own legacy effect cancels). ``current_response_mean`` is the same at the
  current weekly spend.

Hold when the posterior cannot tell
-----------------------------------
The optimizer maximises the posterior mean (``Scenario.utility``: or pymc-marketing's CVaR or
mean-tightness utility, docs/decisions.md "Utility"). A move it proposes is kept only where the posterior
is confident it pays (``Scenario.min_probability_of_gain``, product default 0.9 from pipeline.yaml
``plan_min_probability_of_gain``):

* per cell, the **probability that its move gains** (:func:`move_probabilities`): for a cell that
  gets more money, the share of draws in which its extra KPI per extra money beats the KPI per
  money lost where the plan takes that money from; for a cell that gives money, the share in which
  the KPI it loses per money is below what the money earns where it goes. A cell under the
  threshold is **held** at its current spend and the others re-optimised, until every move left
  is convincing (unless the plan is convincing only as a whole: then its moves stay);
* for the plan, the **probability of gain** (share of draws in which the plan's response beats
  the current plan's). A budget-neutral plan under the threshold becomes **keep the current
  mix**: the cells stay at their current spend and the declined plan's gain is reported.

Invariants (``AllocationError`` names the constraint and by how much)
---------------------------------------------------------------------
Before optimising: every model cell has a current spend; bounds are
``0 <= low <= high``; lows sum to at most, and highs to at least, the budget;
every cell that may receive money has a positive cost forecast for every
horizon week. After: optimal spends sum to ``total_budget`` within 0.1 %,
every bound holds, no spend is negative.
"""

from __future__ import annotations

import contextlib
import io
import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Mapping

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mmm_pipeline.model.config import HDI_PROB, NATIONAL
from mmm_pipeline.model.summaries import hdi_bounds

__all__ = ["AllocationError", "Scenario", "default_scenario", "allocate", "plot_allocation",
           "move_probabilities", "plan_utility", "lift_test_evidence", "plan_variant", "plan_scenario", "ALLOCATION_COLUMNS",
           "SUM_TOLERANCE"]

ALLOCATION_COLUMNS = [
    "allocation_id", "market", "variant", "geo", "channel", "current_spend", "optimal_spend",
    "optimal_units", "cost_per_unit", "expected_response_mean", "expected_response_hdi_low",
    "expected_response_hdi_high", "current_response_mean", "extrapolated", "total_budget",
    "horizon_weeks", "optimized", "optimizer_converged", "optimizer_message", "start_week", "optimal_weekly_spend", "current_weekly_spend",
    "max_weekly_spend", "move", "probability_move_gains", "at_bound",
]
SUM_TOLERANCE = 1e-3   # sum of optimal_spend vs total_budget (relative)
_BOUND_TOL = 1e-6       # bound violation allowed from the solver (relative to the weekly budget)
# Posterior draws the optimizer and the response evaluations use (every k-th draw of each chain). On
# the 20-geo Meridian model, 500 of 4,000 gave up 0.003% of the expected response (bench/README.md).
OPTIMIZER_MAX_DRAWS = 500
# SLSQP's ftol is absolute on pymc-marketing's objective, which it divides by the steepest gradient
# entry, so the objective is in money (about 1e6 on the sample). pymc-marketing's 1e-9 asks for 15
# significant digits, below the rounding of a sum over 500 draws x 26 weeks, and SLSQP then wanders:
# on the sample's east market 1e-9 ran into the 1,000-iteration limit (57 s) and 1e-7 or 1e-6 took
# 48 s after a refit, where 1e-3 stopped in 2.5 s at the same plan (every cell's spend within one
# currency unit, expected response equal to 1e-12 relative; both markets, 2026-12-05).
OPTIMIZER_MINIMIZE_KWARGS = {"method": "SLSQP", "options": {"ftol": 1e-3, "maxiter": 1_000}}
# A cell "moves" when its weekly spend changes by more than this share of its current weekly spend
# (SLSQP leaves cells it did not mean to move a rounding error away from where they started).
MOVE_TOLERANCE = 0.005


class AllocationError(ValueError):
    """An infeasible or inconsistent scenario, or an allocation that breaks an invariant."""


Cell = tuple[str, str]


def _parse_cell(key: Any) -> Cell:
    if isinstance(key, str):
        for sep in ("/", "|", ","):
            if sep in key:
                geo, channel = key.split(sep, 1)
                return geo.strip(), channel.strip()
        raise ValueError(f"cell key {key!r} must be (geo, channel) or 'geo/channel'")
    if isinstance(key, (tuple, list)) and len(key) == 2:
        return str(key[0]), str(key[1])
    raise ValueError(f"cell key {key!r} must be (geo, channel) or 'geo/channel'")


class Scenario(BaseModel):
    """A budget scenario for one market.

    * total_budget: money for the whole horizon (required unless
      fixed_allocation is given; then it defaults to the plan's sum and, if
      given, must match it within 0.1 %).
    * bounds: {(geo, channel): (low, high)} as fractions of that cell's current
      spend (its mean weekly spend over the last 13 complete weeks x the
      horizon); geo or channel may be "*" (a specific key wins over a
      wildcard); keys may also be written "geo/channel". Cells without a bound
      may take anything from 0 to the whole budget.
    * fixed_allocation: {(geo, channel): money for the horizon}: a what-if plan
      evaluated without optimising; cells it does not name keep their current
      spend. Bounds, when given, are checked against the plan too.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    allocation_id: str = Field(min_length=1)
    market: str = Field(min_length=1)
    total_budget: float | None = Field(None, gt=0)
    horizon_weeks: int = Field(8, ge=1, le=104)
    bounds: dict[Cell, tuple[float, float]] | None = None
    variant: Literal["calibrated", "uncalibrated"] = "calibrated"
    fixed_allocation: dict[Cell, float] | None = None
    # None or 0: the optimizer's plan as it is. Otherwise a cell moves, and a budget-neutral plan
    # differs from the current mix, only with at least this posterior probability of gaining.
    min_probability_of_gain: float | None = Field(None, ge=0, lt=1)
    # What the optimizer maximises over the posterior draws of the plan's response (pymc-marketing's
    # utilities, :func:`plan_utility`): "mean" = the expected response; "cvar" = the mean of the worst
    # (1 - utility_confidence) share of draws; "mean_tightness" = 1 - 0.5 x (the spread between the
    # utility_confidence and 1 - utility_confidence quantiles) / mean. docs/decisions.md "Utility".
    utility: Literal["mean", "cvar", "mean_tightness"] = "mean"
    utility_confidence: float = Field(0.9, gt=0.5, lt=1)

    @field_validator("bounds", "fixed_allocation", mode="before")
    @classmethod
    def _keys(cls, value):
        if value is None:
            return value
        if not isinstance(value, Mapping):
            raise ValueError("must be a mapping of (geo, channel) -> value")
        return {_parse_cell(k): v for k, v in value.items()}

    @field_validator("bounds")
    @classmethod
    def _check_bounds(cls, value):
        for cell, (low, high) in (value or {}).items():
            if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
                raise ValueError(f"bound {cell}: ({low}, {high}) must satisfy 0 <= low <= high (fractions of "
                                 "current spend)")
        return value

    @field_validator("fixed_allocation")
    @classmethod
    def _check_fixed(cls, value):
        for cell, money in (value or {}).items():
            if not math.isfinite(money) or money < 0:
                raise ValueError(f"fixed_allocation {cell}: {money} must be >= 0")
        return value

    @model_validator(mode="after")
    def _need_budget(self) -> "Scenario":
        if self.total_budget is None and self.fixed_allocation is None:
            raise ValueError("total_budget is required unless fixed_allocation is given")
        return self

    def bound_for(self, geo: str, channel: str) -> tuple[float, float] | None:
        if not self.bounds:
            return None
        for key in ((geo, channel), ("*", channel), (geo, "*"), ("*", "*")):
            if key in self.bounds:
                return self.bounds[key]
        return None


def default_scenario(market: str, current_spend: pd.DataFrame, *, horizon_weeks: int = 8,
                     allocation_id: str = "default", variant: str = "calibrated",
                     bound_fraction: float = 0.5, min_probability_of_gain: float | None = None,
                     utility: str = "mean", utility_confidence: float = 0.9) -> Scenario:
    """Budget = current spend of all cells over the horizon; each cell within +/-50 % of its current spend.

    `current_spend` has columns geo, channel, current_weekly_spend (e.g.
    :func:`mmm_pipeline.decisions.curves.response_curves` or ``spend_summary`` output).
    """
    cur = _cell_values(current_spend, "current_weekly_spend")
    budget = float(cur.sum()) * horizon_weeks
    if not budget > 0:
        raise AllocationError(f"market {market}: current spend is 0, so the default scenario has no budget")
    bounds = {cell: (1 - bound_fraction, 1 + bound_fraction) for cell in cur.index}
    return Scenario(allocation_id=allocation_id, market=market, total_budget=budget,
                    horizon_weeks=horizon_weeks, bounds=bounds, variant=variant,
                    min_probability_of_gain=min_probability_of_gain, utility=utility,
                    utility_confidence=utility_confidence)


def utility_label(scenario: Scenario) -> str:
    """`mean`, or the risk-aware utility with its confidence (`cvar 0.9`), as the plan mart shows it."""
    return "mean" if scenario.utility == "mean" else f"{scenario.utility} {scenario.utility_confidence:g}"


def plan_utility(scenario: Scenario):
    """The pymc-marketing utility function the optimizer maximises for `scenario`."""
    from pymc_marketing.mmm import utility as U

    if scenario.utility == "cvar":
        return U.conditional_value_at_risk(scenario.utility_confidence)
    if scenario.utility == "mean_tightness":
        return U.mean_tightness_score(alpha=0.5, confidence_level=scenario.utility_confidence)
    return U.average_response


# --------------------------------------------------------------------------- helpers


def _cell_values(frame: pd.DataFrame, column: str) -> pd.Series:
    """(geo, channel) -> value from a frame that may repeat cells (e.g. curve rows)."""
    missing = {"geo", "channel", column} - set(frame.columns)
    if missing:
        raise AllocationError(f"frame lacks column(s) {sorted(missing)}")
    d = frame[["geo", "channel", column]].drop_duplicates(["geo", "channel"])
    s = d.set_index(["geo", "channel"])[column].astype(float)
    s.index = pd.MultiIndex.from_tuples([(str(g), str(c)) for g, c in s.index], names=["geo", "channel"])
    return s


def _project(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, total: float) -> np.ndarray:
    """clip(x + shift, lo, hi) with the shift that makes it sum to `total` (bisection)."""
    a, b = -(np.abs(x).max() + total + 1.0), np.abs(x).max() + total + 1.0
    for _ in range(200):
        m = 0.5 * (a + b)
        if np.clip(x + m, lo, hi).sum() < total:
            a = m
        else:
            b = m
    return np.clip(x + 0.5 * (a + b), lo, hi)


def move_probabilities(delta_response: np.ndarray, delta_spend: np.ndarray, moved: np.ndarray) -> np.ndarray:
    """Per cell, the posterior probability that its move gains against where the money comes from or goes.

    delta_response: (draws, cells) the plan's response minus the current plan's, per cell and draw;
    delta_spend: (cells,) the plan's spend minus the current spend; moved: (cells,) which cells move.
    A cell given money gains in a draw when its extra KPI per extra money beats the KPI per money the
    cells giving money lose; a cell giving money gains when the KPI it loses per money is below what
    the receiving cells earn per money. NaN for a cell that does not move, and for every cell when
    one side is empty (a budget change forces those moves; they are not a choice between cells).
    """
    delta_response = np.asarray(delta_response, dtype=float)
    delta_spend = np.asarray(delta_spend, dtype=float)
    up, down = moved & (delta_spend > 0), moved & (delta_spend < 0)
    out = np.full(delta_spend.shape, np.nan)
    if not (up.any() and down.any()):
        return out
    per_money = delta_response / np.where(moved, delta_spend, np.nan)             # (draws, cells)
    taken_from = delta_response[:, down].sum(axis=1) / delta_spend[down].sum()    # KPI lost per money
    given_to = delta_response[:, up].sum(axis=1) / delta_spend[up].sum()          # KPI won per money
    out[up] = (per_money[:, up] > taken_from[:, None]).mean(axis=0)
    out[down] = (per_money[:, down] < given_to[:, None]).mean(axis=0)
    return out


@dataclass
class HoldDecision:
    plan: np.ndarray                    # weekly spend per cell after the rule
    plan_draws: np.ndarray              # (draws, cells) its response
    held: np.ndarray                    # cells held at their current spend by the rule
    moved: np.ndarray                   # cells the final plan moves
    probability_move_gains: np.ndarray  # per cell (NaN where it never moved or the move was forced)
    candidate_gain: np.ndarray          # (draws,) the optimizer's plan after holds minus the current plan
    probability_of_gain: float
    keep_current: bool
    move_tolerance: np.ndarray
    reoptimized: bool = False
    converged: bool = True
    message: str = ""


def hold_unconvincing_moves(cur_w: np.ndarray, lo_w: np.ndarray, hi_w: np.ndarray, budget_w: float, horizon: int,
                            threshold: float, plan_w: np.ndarray, plan_draws: np.ndarray, cur_draws: np.ndarray,
                            optimize: Callable, response_draws: Callable, *, tol: float = 0.0) -> HoldDecision:
    """The hold rule of the module docstring, on any optimizer and response.

    optimize(lo, hi) -> (weekly plan, converged, message) re-solves with new weekly bounds;
    response_draws(weekly) -> (draws, cells) the response per draw. `plan_w`, `plan_draws`: the
    optimizer's first plan and its response; `cur_draws`: the current plan's. threshold 0: no rule.
    """
    move_tol = MOVE_TOLERANCE * np.where(cur_w > 0, cur_w, budget_w / len(cur_w))
    may_hold = (cur_w >= lo_w - tol) & (cur_w <= hi_w + tol)   # holding must not break a bound
    held = np.zeros(len(cur_w), dtype=bool)
    out = dict(reoptimized=False, converged=True, message="")

    def moving(w: np.ndarray) -> np.ndarray:
        return (np.abs(w - cur_w) > move_tol) & ~held

    moved = moving(plan_w)
    p_move = move_probabilities(plan_draws - cur_draws, (plan_w - cur_w) * horizon, moved)
    p_shown = p_move.copy()

    def probability_of_gain(draws: np.ndarray) -> float:
        return float(((draws - cur_draws).sum(axis=1) > 0).mean())

    # each round pins at least one more cell (a re-solve on the same compiled objective, about a second
    # on the sample), so it ends within one round per cell
    for _ in range(len(cur_w) if threshold > 0 else 0):
        if probability_of_gain(plan_draws) < threshold:
            break   # the plan as a whole is not convincing: kept below, whatever its cells say
        weak = moved & (p_move < threshold) & may_hold   # NaN (a forced move) is never weak
        pin = held | weak
        lo_h, hi_h = np.where(pin, cur_w, lo_w), np.where(pin, cur_w, hi_w)
        # Holding every move would undo a plan that is convincing as a whole: keep it then.
        if not weak.any() or not (moved & ~weak).any() or lo_h.sum() > budget_w * (1 + 1e-9) \
                or hi_h.sum() < budget_w * (1 - 1e-9):
            break
        held = pin
        plan_w, out["converged"], out["message"] = optimize(lo_h, hi_h)
        out["reoptimized"] = True
        plan_draws = response_draws(plan_w)
        moved = moving(plan_w)
        p_move = move_probabilities(plan_draws - cur_draws, (plan_w - cur_w) * horizon, moved)
        p_shown = np.where(moved, p_move, p_shown)
    candidate_gain = (plan_draws - cur_draws).sum(axis=1)
    p_gain = float((candidate_gain > 0).mean())
    budget_neutral = abs(budget_w - cur_w.sum()) <= SUM_TOLERANCE * budget_w
    keep = bool(threshold > 0 and budget_neutral and moved.any() and p_gain < threshold and may_hold.all())
    if keep:
        held = held | moved
        moved = np.zeros(len(cur_w), dtype=bool)
        plan_w, plan_draws = cur_w.copy(), cur_draws
    return HoldDecision(plan_w, plan_draws, held, moved, p_shown, candidate_gain, p_gain, keep, move_tol, **out)


def _fmt(v: float) -> str:
    return f"{v:,.2f}"


def _cells_text(cells: list, n: int = 6) -> str:
    head = ", ".join(f"{g}/{c}" for g, c in cells[:n])
    return head + (f" and {len(cells) - n} more" if len(cells) > n else "")


# --------------------------------------------------------------------------- allocate


def allocate(mmm, scenario: Scenario, cost_per_unit_forecast: pd.DataFrame, current: pd.DataFrame, *,
             max_weekly_spend: pd.DataFrame, start_date: str | pd.Timestamp | None = None,
             minimize_kwargs: dict | None = None, max_draws: int | None = OPTIMIZER_MAX_DRAWS,
             return_summary: bool = False):
    """Optimise (or evaluate a fixed plan for) one market's budget over the horizon; money in, money out.

    Parameters
    ----------
    mmm : fitted pymc-marketing MMM of the market (``mmm_pipeline.model.load_model``).
    scenario : :class:`Scenario`.
    cost_per_unit_forecast : ``marts.cost_per_unit_forecast`` rows (week_start,
        geo, channel, cost_per_unit); the horizon's weeks are taken from it.
    current : geo, channel, current_weekly_spend (mean weekly spend of the last
        13 complete weeks; the response-curve frame works).
    max_weekly_spend : geo, channel, max_weekly_spend (largest weekly spend seen;
        the response-curve frame works): ``extrapolated`` is optimal weekly
        spend above it.
    start_date : first horizon week (default: the Monday after the model's last
        week, i.e. the first week after the last complete week).
    minimize_kwargs : passed to ``BudgetOptimizer.allocate_budget`` (default OPTIMIZER_MINIMIZE_KWARGS).
    max_draws : posterior draws the optimizer and the responses use, every k-th of each
        chain above it (None: all).

    Returns one row per geo x channel with ALLOCATION_COLUMNS (money, units and
    responses are horizon totals; ``*_weekly_*`` columns per week). Raises
    AllocationError for an infeasible scenario (before optimising) or an
    allocation that breaks an invariant.
    """
    post = mmm.idata.posterior
    national = "geo" not in post.dims
    geos = [NATIONAL] if national else [str(g) for g in post.coords["geo"].values]
    channels = [str(c) for c in post.coords["channel"].values]
    cells = [(g, c) for g in geos for c in channels]
    H = scenario.horizon_weeks
    label = f"allocation {scenario.allocation_id!r} (market {scenario.market})"

    # -- current and largest weekly spend per cell
    cur = _cell_values(current, "current_weekly_spend")
    top = _cell_values(max_weekly_spend, "max_weekly_spend")
    if national:
        cur = cur.rename(index=lambda g: NATIONAL, level="geo").groupby(level=[0, 1]).sum()
        top = top.rename(index=lambda g: NATIONAL, level="geo").groupby(level=[0, 1]).max()
    absent = [c for c in cells if c not in cur.index]
    if absent:
        raise AllocationError(f"{label}: no current spend for {len(absent)} cell(s): {_cells_text(absent)}")
    absent = [c for c in cells if c not in top.index]
    if absent:
        raise AllocationError(f"{label}: no largest weekly spend for {len(absent)} cell(s): {_cells_text(absent)}")
    cur_w = np.array([cur[c] for c in cells])
    top_w = np.array([top[c] for c in cells])
    if (cur_w < 0).any():
        raise AllocationError(f"{label}: negative current spend")

    # -- horizon weeks
    weeks = pd.DatetimeIndex(post.coords["date"].values)
    step = pd.Timedelta(weeks=1) if len(weeks) < 2 else pd.Timedelta(np.median(np.diff(weeks.values)))
    start = pd.Timestamp(start_date) if start_date is not None else weeks.max() + step
    horizon = pd.DatetimeIndex([start + k * step for k in range(H)])

    # -- the plan (fixed) or the bounds (optimised), per week
    fixed = scenario.fixed_allocation is not None
    if fixed:
        unknown = [c for c in scenario.fixed_allocation if c not in cells]
        if unknown:
            raise AllocationError(f"{label}: fixed_allocation names cell(s) the model does not have: "
                                  f"{_cells_text(unknown)}")
        plan_w = np.array([scenario.fixed_allocation.get(c, cur[c] * H) / H for c in cells])
        budget = float(plan_w.sum()) * H
        if scenario.total_budget is not None and abs(budget - scenario.total_budget) > \
                SUM_TOLERANCE * scenario.total_budget:
            raise AllocationError(
                f"{label}: fixed_allocation sums to {_fmt(budget)} over the horizon but total_budget is "
                f"{_fmt(scenario.total_budget)} (off by {_fmt(budget - scenario.total_budget)}, "
                f"{100 * (budget - scenario.total_budget) / scenario.total_budget:+.3f} %; tolerance 0.1 %)")
    else:
        budget = float(scenario.total_budget)
    budget_w = budget / H
    lo_w = np.zeros(len(cells))
    hi_w = np.full(len(cells), budget_w)
    bounded = np.zeros(len(cells), dtype=bool)
    for i, (g, c) in enumerate(cells):
        b = scenario.bound_for(g, c)
        if b is not None:
            lo_w[i], hi_w[i] = b[0] * cur_w[i], b[1] * cur_w[i]
            bounded[i] = True
    hi_w = np.minimum(hi_w, np.maximum(budget_w, lo_w))  # a cell never needs more than the budget
    if not fixed:
        lo_sum, hi_sum = lo_w.sum() * H, hi_w.sum() * H
        if lo_sum > budget * (1 + 1e-9):
            raise AllocationError(
                f"{label} is infeasible: the lower bounds sum to {_fmt(lo_sum)} over the horizon, exceeding "
                f"total_budget {_fmt(budget)} by {_fmt(lo_sum - budget)} ({100 * (lo_sum / budget - 1):.2f} %)")
        if hi_sum < budget * (1 - 1e-9):
            raise AllocationError(
                f"{label} is infeasible: the upper bounds sum to {_fmt(hi_sum)} over the horizon, falling "
                f"short of total_budget {_fmt(budget)} by {_fmt(budget - hi_sum)} "
                f"({100 * (1 - hi_sum / budget):.2f} %)")

    # -- the cost forecast for every horizon week of every cell that may get money
    fc = cost_per_unit_forecast.copy()
    need = {"week_start", "geo", "channel", "cost_per_unit"}
    if need - set(fc.columns):
        raise AllocationError(f"cost_per_unit_forecast lacks column(s) {sorted(need - set(fc.columns))}")
    fc["week_start"] = pd.to_datetime(fc["week_start"]).astype("datetime64[ns]")
    if national and not (fc["geo"] == NATIONAL).any():
        fc = fc.assign(geo=NATIONAL)
    fc = fc[fc["week_start"].isin(horizon) & fc["geo"].isin(geos) & fc["channel"].isin(channels)]
    rate = fc.groupby(["week_start", "geo", "channel"])["cost_per_unit"].mean()
    grid = pd.MultiIndex.from_product([horizon, geos, channels], names=["week_start", "geo", "channel"])
    rate = rate.reindex(grid)
    may_spend = (plan_w > 0) if fixed else (hi_w > 0)
    bad = []
    for i, (g, c) in enumerate(cells):
        r = rate.xs((g, c), level=("geo", "channel"))
        missing = r.index[~(r > 0)]
        if may_spend[i] and len(missing):
            bad.append(((g, c), missing))
    if bad:
        detail = "; ".join(f"{g}/{c}: {len(m)} of {H} week(s) from {m[0].date()}" for (g, c), m in bad[:6])
        raise AllocationError(
            f"{label}: no positive cost-per-unit forecast for {len(bad)} cell(s) in the horizon "
            f"{horizon[0].date()}..{horizon[-1].date()} ({detail}); the optimizer cannot convert money to units "
            "without it")
    rate = rate.fillna(1.0).where(rate > 0, 1.0)  # only cells held at 0 spend get this placeholder

    import xarray as xr

    def cell_da(values: np.ndarray, name: str):
        da = xr.DataArray(np.asarray(values, dtype=float).reshape(len(geos), len(channels)),
                          dims=("geo", "channel"), coords={"geo": geos, "channel": channels}, name=name)
        return da.sel(geo=NATIONAL, drop=True) if national else da

    cpu_da = xr.DataArray(rate.to_numpy().reshape(H, len(geos), len(channels)), dims=("date", "geo", "channel"),
                          coords={"date": horizon, "geo": geos, "channel": channels}, name="cost_per_unit")
    if national:
        cpu_da = cpu_da.sel(geo=NATIONAL, drop=True)
    mask = cell_da(np.ones(len(cells)), "mask").astype(bool)

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        opt = mmm.budget_optimizer(horizon[0], horizon[-1], budgets_to_optimize=mask, cost_per_unit=cpu_da,
                                   utility_function=plan_utility(scenario))
        # SLSQP evaluates every posterior draw at every iteration: on 20 geos x 4 channels,
        # 4,000 draws took 196 s. Every k-th draw of each chain (<= max_draws in all)
        # keeps the expected response's Monte Carlo error small at a fraction of the time.
        n_draws = post.sizes["chain"] * post.sizes["draw"]
        if max_draws is not None and n_draws > max_draws:
            every = -(-n_draws // max_draws)
            opt.set_posterior(mmm.idata.isel(draw=slice(None, None, every)))
        if opt.num_periods != H:
            raise AllocationError(f"{label}: the optimizer window has {opt.num_periods} decision weeks, "
                                  f"expected {H} (start {horizon[0].date()})")
        from pymc_marketing.mmm.budget_optimizer import MinimizeException

        tol = _BOUND_TOL * max(budget_w, 1.0)

        def optimize(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, bool, str]:
            bounds_da = xr.concat([cell_da(lo, "low"), cell_da(hi, "high")], dim="bound")
            bounds_da = bounds_da.assign_coords(bound=["low", "high"]).transpose(*mask.dims, "bound")
            x0 = _project(np.where(cur_w.sum() > 0, cur_w * budget_w / max(cur_w.sum(), 1e-300),
                                   budget_w / len(cells)), lo, hi, budget_w)
            try:
                # SLSQP can stop at its iteration limit next to the optimum; keep its last point
                # and let the invariants below decide whether it is a valid allocation.
                res = opt.allocate_budget(total_budget=budget_w, budget_bounds=bounds_da,
                                          x0=cell_da(x0, "x0"),
                                          minimize_kwargs=minimize_kwargs or OPTIMIZER_MINIMIZE_KWARGS,
                                          return_if_fail=True)
            except MinimizeException as exc:
                raise AllocationError(f"{label}: the optimizer failed: {exc}") from exc
            budgets = res.budgets
            if national:
                w = np.array([float(budgets.sel(channel=c)) for _, c in cells])
            else:
                w = np.array([float(budgets.sel(geo=g, channel=c)) for g, c in cells])
            return checked(w, lo, hi), bool(res.scipy_result.success), str(res.scipy_result.message)

        def checked(w: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
            """The invariants of an optimised plan; the plan clipped to its bounds."""
            if (w < -tol).any():
                worst = int(np.argmin(w))
                raise AllocationError(f"{label}: negative spend {_fmt(w[worst] * H)} for "
                                      f"{cells[worst][0]}/{cells[worst][1]}")
            w = np.maximum(w, 0.0)
            below, above = lo - w, w - hi
            for name, gap in (("lower", below), ("upper", above)):
                if (gap > tol).any():
                    i = int(np.argmax(gap))
                    raise AllocationError(
                        f"{label}: the optimizer broke the {name} bound of {cells[i][0]}/{cells[i][1]} by "
                        f"{_fmt(gap[i] * H)} over the horizon")
            return np.clip(w, lo, hi)

        # -- responses: (plan - zero plan) over carry-in + horizon + carry-over, in KPI units, per draw
        target = mmm.idata.constant_data["target_scale"]

        def response(weekly: np.ndarray):
            return opt.evaluate_response_distribution(cell_da(weekly, "plan"),
                                                      response_variable="channel_contribution")

        zero = response(np.zeros(len(cells)))

        def incremental(weekly: np.ndarray) -> np.ndarray:
            d = ((response(weekly) - zero).sum("date") * target)
            if "geo" not in d.dims:
                d = d.expand_dims(geo=geos)
            d = d.transpose("sample", "geo", "channel")
            return d.sel(geo=geos, channel=channels).to_numpy().reshape(d.sizes["sample"], -1)

        cur_draws = incremental(cur_w)
        if fixed:
            opt_w = np.maximum(plan_w.copy(), 0.0)
            converged, optimizer_message = True, "fixed plan: not optimized"
            for i in np.flatnonzero(bounded):
                if opt_w[i] < lo_w[i] - tol or opt_w[i] > hi_w[i] + tol:
                    lo_f, hi_f = scenario.bound_for(*cells[i])
                    raise AllocationError(
                        f"{label}: fixed_allocation {cells[i][0]}/{cells[i][1]} = {_fmt(opt_w[i] * H)} is outside "
                        f"its bound [{_fmt(lo_w[i] * H)}, {_fmt(hi_w[i] * H)}] ({lo_f:g}..{hi_f:g} x current)")
        else:
            opt_w, converged, optimizer_message = optimize(lo_w, hi_w)
        opt_draws = incremental(opt_w)

        # -- hold what the posterior cannot vouch for (module docstring)
        threshold = 0.0 if fixed else float(scenario.min_probability_of_gain or 0.0)
        d = hold_unconvincing_moves(cur_w, lo_w, hi_w, budget_w, H, threshold, opt_w, opt_draws, cur_draws,
                                    optimize, incremental, tol=tol)
        opt_w, opt_draws, held, moved, p_shown = d.plan, d.plan_draws, d.held, d.moved, d.probability_move_gains
        candidate_gain, p_gain, keep_current = d.candidate_gain, d.probability_of_gain, d.keep_current
        if d.reoptimized:
            converged, optimizer_message = d.converged, d.message
        move_tol = d.move_tolerance
        total = float(opt_w.sum()) * H
        if abs(total - budget) > SUM_TOLERANCE * budget:
            raise AllocationError(
                f"{label}: optimal spend sums to {_fmt(total)}, not total_budget {_fmt(budget)} (off by "
                f"{_fmt(total - budget)}, {100 * (total - budget) / budget:+.3f} %; tolerance 0.1 %)")
    lo_r, hi_r = hdi_bounds(opt_draws, HDI_PROB)
    move = np.where(held, "hold", np.where(moved & (opt_w > cur_w), "increase",
                                           np.where(moved, "decrease", "unchanged")))
    at_bound = [None if fixed or held[i] or lo_w[i] >= hi_w[i] - move_tol[i] else
                "lower" if opt_w[i] <= lo_w[i] + move_tol[i] else
                "upper" if opt_w[i] >= hi_w[i] - move_tol[i] else None for i in range(len(cells))]

    rate_arr = rate.to_numpy().reshape(H, len(cells))            # (week, cell)
    units = (opt_w[None, :] / rate_arr).sum(axis=0)
    eff_rate = H / (1.0 / rate_arr).sum(axis=0)                  # money-weighted (harmonic) mean over the horizon
    out = pd.DataFrame({
        "allocation_id": scenario.allocation_id,
        "market": scenario.market,
        "variant": scenario.variant,
        "geo": [g for g, _ in cells],
        "channel": [c for _, c in cells],
        "current_spend": cur_w * H,
        "optimal_spend": opt_w * H,
        "optimal_units": units,
        "cost_per_unit": eff_rate,
        "expected_response_mean": opt_draws.mean(axis=0),
        "expected_response_hdi_low": lo_r,
        "expected_response_hdi_high": hi_r,
        "current_response_mean": cur_draws.mean(axis=0),
        "extrapolated": opt_w > top_w * (1 + 1e-9),
        "total_budget": budget,
        "horizon_weeks": H,
        "optimized": not fixed,
        "optimizer_converged": converged,
        "optimizer_message": optimizer_message,
        "start_week": horizon[0].date(),
        "optimal_weekly_spend": opt_w,
        "current_weekly_spend": cur_w,
        "max_weekly_spend": top_w,
        "move": move,
        "probability_move_gains": p_shown,
        "at_bound": at_bound,
    })
    out = out[ALLOCATION_COLUMNS]
    if not return_summary:
        return out
    # The plan as a whole, per draw (a sum of per-cell intervals is not the plan's interval).
    summary = {"allocation_id": scenario.allocation_id, "market": scenario.market, "total_budget": budget,
               "horizon_weeks": H,
               "decision": "fixed_plan" if fixed else "move" if moved.any() else "keep_current_mix",
               "probability_of_gain": p_gain, "min_probability_of_gain": threshold or None,
               "utility": utility_label(scenario),
               "held_cells": int(held.sum())}
    for name, draws in (("expected_response", opt_draws.sum(axis=1)), ("current_response", cur_draws.sum(axis=1)),
                        ("gain", (opt_draws - cur_draws).sum(axis=1)), ("candidate_gain", candidate_gain)):
        lo, hi = hdi_bounds(draws[:, None], HDI_PROB)
        summary.update({f"{name}_mean": float(draws.mean()), f"{name}_hdi_low": float(lo[0]),
                        f"{name}_hdi_high": float(hi[0])})
    return out, summary


# --------------------------------------------------------------------------- a scenario's plans


def plan_variant(wanted: str, fits: dict) -> tuple[str, str]:
    """(the variant a plan uses, why it is not `wanted` or ""): the wanted one when it is fitted
    and gated, else a gated other variant; an ungated model plans only when none is gated."""
    if wanted in fits and fits[wanted]["gated"]:
        return wanted, ""
    gated = [v for v in ("calibrated", "uncalibrated") if v in fits and fits[v]["gated"]]
    if gated:
        why = "was not fitted" if wanted not in fits else f"is not gated ({fits[wanted]['gate_reason']})"
        return gated[0], f"the {wanted} model {why}"
    if wanted in fits:
        return wanted, ""
    return "uncalibrated", f"the {wanted} model was not fitted"


def plan_scenario(scenario: Scenario, fits: dict[str, dict], cost_per_unit_forecast: pd.DataFrame,
                  current: pd.DataFrame, *, lift_tests: pd.DataFrame, holdout: pd.DataFrame,
                  log=None) -> tuple[pd.DataFrame, list[dict]]:
    """The scenario's plan with the variant :func:`plan_variant` chooses (`chosen`), and, when that is
    a fallback from a fitted but ungated wanted variant, that variant's own plan beside it
    (`chosen = false`): a fallback is never silent. fits: variant -> {mmm, model_version, gated,
    gate_reason}. Returns (marts.budget_allocation rows, marts.allocation_plan rows)."""
    variant, why = plan_variant(scenario.variant, fits)
    beside = [scenario.variant] if why and scenario.variant in fits else []
    if why and log:
        log.warning(f"{scenario.allocation_id}: {why}; allocating with the {variant} model"
                    + (f" (the {scenario.variant} plan is written beside it, chosen = false)" if beside else ""))
    frames, plans = [], []
    for v in [variant, *beside]:
        fit, chosen = fits[v], v == variant
        if log:
            log.info(f"allocating {scenario.allocation_id} ({v} model, "
                     f"{'gated' if fit['gated'] else 'UNGATED'}): budget {scenario.total_budget}")
        df, plan = allocate(fit["mmm"], scenario, cost_per_unit_forecast, current, max_weekly_spend=current,
                            return_summary=True)
        if log and not df["optimizer_converged"].all():
            log.warning(f"{scenario.allocation_id}: the optimizer stopped before converging "
                        f"({df['optimizer_message'].iloc[0]}); its last point satisfies the budget and the "
                        "bounds and is kept")
        stamp = {"variant": v, "model_version": fit["model_version"], "gated": fit["gated"],
                 "gate_reason": fit["gate_reason"], "chosen": chosen}
        plans.append({**plan, **stamp, "fallback_reason": why if chosen else f"not chosen: {why}"})
        frames.append(lift_test_evidence(df, lift_tests, holdout).assign(**stamp))
    return pd.concat(frames, ignore_index=True), plans


# --------------------------------------------------------------------------- evidence


# |z| of a lift test's held-out prediction beyond which a plan moving against it is flagged
# (marts.lift_test_holdout: z = (measured - predicted) / sqrt(predicted sd^2 + sigma^2)).
CONFLICT_Z = 2.0


def lift_test_evidence(alloc: pd.DataFrame, lift_tests: pd.DataFrame, holdout: pd.DataFrame) -> pd.DataFrame:
    """`alloc` with `lift_tests` (the ids of the tests behind each cell's channel in that geo, national
    tests included; None when none) and `lift_test_conflict` (None, or why the move goes against a
    test the model predicted badly when it was held out: more money where the test measured less
    than predicted, or less money where it measured more, |z| > CONFLICT_Z)."""
    out = alloc.copy()
    tests = lift_tests[["test_id", "channel", "geo"]].drop_duplicates() if len(lift_tests) else \
        pd.DataFrame(columns=["test_id", "channel", "geo"])
    ids = tests.groupby(["geo", "channel"])["test_id"].agg(lambda t: ", ".join(sorted(set(map(str, t)))))
    out["lift_tests"] = [ids.get((g, c)) for g, c in zip(out["geo"], out["channel"])]
    conflicts = []
    scored = holdout.dropna(subset=["z"]) if len(holdout) and "z" in holdout else pd.DataFrame()
    for g, c, move, cell_tests in zip(out["geo"], out["channel"], out["move"], out["lift_tests"]):
        notes = []
        for r in (scored[scored["channel"] == c].itertuples() if len(scored) else ()):
            # a cell without tests is None, or NaN once pandas 3 infers the column as strings
            if not isinstance(cell_tests, str) or str(r.test_id) not in cell_tests.split(", "):
                continue
            if move == "increase" and r.z < -CONFLICT_Z:
                notes.append(f"raises spend although test {r.test_id} measured {r.measured:,.0f}, below the "
                             f"{r.predicted_mean:,.0f} the model predicts without it (z = {r.z:.1f})")
            elif move == "decrease" and r.z > CONFLICT_Z:
                notes.append(f"cuts spend although test {r.test_id} measured {r.measured:,.0f}, above the "
                             f"{r.predicted_mean:,.0f} the model predicts without it (z = {r.z:.1f})")
        conflicts.append("; ".join(notes) or None)
    out["lift_test_conflict"] = conflicts
    return out


# --------------------------------------------------------------------------- plot


def plot_allocation(alloc_df: pd.DataFrame):
    """Current vs optimal spend (top) and response (bottom) per geo x channel, grouped by channel;
    cells whose optimal weekly spend is beyond the largest seen are hatched and starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = alloc_df.sort_values(["channel", "geo"]).reset_index(drop=True)
    labels = [f"{c}\n{g}" for g, c in zip(df["geo"], df["channel"])]
    x = np.arange(len(df))
    w = 0.4
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.75 * len(df) + 2), 7), dpi=80, sharex=True)
    ext = df["extrapolated"].astype(bool).to_numpy()
    for ax, (cur_col, opt_col, title) in zip(axes, (
            ("current_spend", "optimal_spend", "spend over the horizon (money)"),
            ("current_response_mean", "expected_response_mean", "response over the horizon incl. carryover (KPI)"))):
        ax.bar(x - w / 2, df[cur_col], w, color="tab:gray", label="current")
        bars = ax.bar(x + w / 2, df[opt_col], w, color="tab:blue", label="optimal")
        for b, e in zip(bars, ext):
            if e:
                b.set_hatch("//")
                b.set_edgecolor("tab:red")
        if opt_col == "expected_response_mean":
            err = np.vstack([df[opt_col] - df["expected_response_hdi_low"],
                             df["expected_response_hdi_high"] - df[opt_col]])
            ax.errorbar(x + w / 2, df[opt_col], yerr=np.clip(err, 0, None), fmt="none", ecolor="black", lw=0.8)
        ymax = float(np.nanmax(np.r_[df[cur_col].to_numpy(), df[opt_col].to_numpy(), 0.0]))
        for xi, e, v in zip(x, ext, df[opt_col]):
            if e:
                ax.text(xi + w / 2, v + 0.02 * ymax, "*", ha="center", color="tab:red", fontsize=12)
        ax.set_ylabel(title, fontsize=8)
        ax.legend(fontsize=7)
    axes[1].set_xticks(x, labels, fontsize=7)
    first = df.iloc[0] if len(df) else None
    head = f"{first['allocation_id']} - {first['market']} ({first['variant']}), " \
           f"{int(first['horizon_weeks'])} weeks, budget {first['total_budget']:,.0f}" if first is not None else ""
    fig.suptitle(f"Budget allocation {head}\n* hatched: optimal weekly spend above the largest seen (extrapolated)",
                 fontsize=9)
    fig.tight_layout()
    return fig
