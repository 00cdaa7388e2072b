"""The truth figures of a generated dataset (issue 27, item 3), one definition each.

Per geo x channel, from the true process and the observed paths:

* ``roas``: contribution over the training periods / spend over them, the contribution being the
  KPI of the actual path minus the KPI with that cell's spend set to zero over the training periods
  (anything before them, such as a burn-in, kept); carryover after the last training period is not
  counted (as the pipeline's ``channel_roas``, which sums the fitted weeks);
* ``current_weekly_spend``: the mean weekly spend of the last 13 training weeks;
  ``cost_per_unit_used``: their spend / their units (1 for a spend channel);
* ``mroas``: d(steady-state weekly response)/d(weekly spend) at the current weekly spend;
* ``response_plus10``: (R(1.1 S) - R(S)) x horizon weeks; ``response_current``: R(S) per week.
"""

from __future__ import annotations

import numpy as np

from mmm_pipeline.sample.offfamily.process import MediaProcess

RECENT_WEEKS = 13


def cell_figures(proc: MediaProcess, units: np.ndarray, spend: np.ndarray, train: slice, horizon_weeks: int,
                 spend_channel: np.ndarray) -> dict:
    """units, spend: (T, G, C) per period over the whole simulated path; `train` the training periods
    (whole weeks); `spend_channel` (C,) booleans. Returns arrays (G, C) keyed by figure."""
    P = proc.periods_per_week
    actual = proc.contributions(units)
    cf_units = units.copy()
    cf_units[train] = 0.0
    counterfactual = proc.contributions(cf_units)
    contrib = (actual[train] - counterfactual[train]).sum(axis=0)
    spend_train = spend[train].sum(axis=0)
    t1 = train.stop
    recent = slice(t1 - RECENT_WEEKS * P, t1)
    cur = spend[recent].sum(axis=0) / RECENT_WEEKS
    u_recent = units[recent].sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        cpu = np.where(u_recent > 0, spend[recent].sum(axis=0) / np.maximum(u_recent, 1e-300), np.nan)
    cpu = np.where(spend_channel[None, :], 1.0, cpu)
    r_cur = proc.steady_weekly_response(cur, cpu)
    r_up = proc.steady_weekly_response(1.1 * cur, cpu)
    with np.errstate(divide="ignore", invalid="ignore"):
        roas = np.where(spend_train > 0, contrib / spend_train, np.nan)
    return {"spend": spend_train, "contribution": contrib, "roas": roas, "current_weekly_spend": cur,
            "cost_per_unit_used": cpu, "mroas": proc.steady_weekly_slope(cur, cpu),
            "response_current": r_cur, "response_plus10": (r_up - r_cur) * horizon_weeks}


def cells_json(proc: MediaProcess, figs: dict, units_of: dict[str, str]) -> list[dict]:
    out = []
    for g, geo in enumerate(proc.geos):
        for c, ch in enumerate(proc.channels):
            row = {"geo": geo, "channel": ch, "unit": units_of[ch]}
            row.update({k: float(v[g, c]) for k, v in figs.items()})
            out.append(row)
    return out


def lift_truth(proc: MediaProcess, units_with: np.ndarray, units_without: np.ndarray, window: slice,
               geo_idx: list[int], end: int) -> dict:
    """A test's true lift by re-simulation: KPI with the test's extra spend minus without, over the
    window's periods and after it (to `end`, the last simulated period of the data)."""
    diff = (proc.contributions(units_with) - proc.contributions(units_without)).sum(axis=2)[:, geo_idx]
    w = float(diff[window].sum())
    after = float(diff[window.stop:end].sum())
    return {"true_delta_y_window": w, "true_delta_y_after_window": after, "true_delta_y_total": w + after,
            "true_delta_y_window_by_geo": {proc.geos[g]: float(diff[window, k].sum()) for k, g in enumerate(geo_idx)},
            "true_delta_y_total_by_geo": {proc.geos[g]: float(diff[window.start:end, k].sum())
                                          for k, g in enumerate(geo_idx)}}


def sigma_fraction(weeks: float) -> float:
    """The readouts' fixed design: sigma = 15% of the true lift for a 2-week test falling linearly to
    10% for an 8-week one (longer tests read out more precisely)."""
    w = min(max(float(weeks), 2.0), 8.0)
    return 0.15 - 0.05 * (w - 2.0) / 6.0
