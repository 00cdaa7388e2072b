"""ROAS / CPA target terms of models saved before `roas_targets.csv` became window lifts.

The pipeline now loads `roas_targets.csv` rows as lift tests (the return on an experiment's extra
spend over its window: ``ingestion.ingest.roas_targets_spec``), so new fits add no term here. A model
saved with target terms re-adds them on load (``model.calibration``); ``build_model(roas_targets=...)``
keeps the library path for the benchmark. What follows describes those terms.

Some teams' experiments come back as "iROAS 2.4 +/- 0.5 for social", not as a KPI
lift over a window. Those calibrate through pymc-marketing's
``MMM.add_cost_per_target_calibration``: an observed Normal on the model's
ratio over the fitted weeks, mean(contribution) / mean(spend) for ROAS
(``target_per_cost=True``) or mean(spend) / mean(contribution) for CPA.

File (optional, in the input folder)::

    channel,geo,metric,value,sigma
    social,US-TX,roas,0.95,0.20
    search,,cpa,0.70,0.15

``metric`` is ``roas`` (KPI per unit of money) or ``cpa`` (money per unit of
KPI), ``sigma`` its standard error (> 0). ``geo`` empty in a geo model means the
channel's ratio in every geo of the market, each geo a term with
``sigma x sqrt(n_geos)``, so that together they carry the reported precision once.
Rows of other geos are not this market's; an unknown channel, a bad metric or a
non-positive sigma is rejected with a reason.

The library's ratio is over the whole fitted window, and the spend is the
model's own ``channel_data x cost_per_unit``. The calibration is not saved by
pymc-marketing, so the rows are part of the fit's ``calibration.Calibration`` and
re-added by ``model.load_model``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["channel", "geo", "metric", "value", "sigma"]
METRICS = {"roas": ("roas_target", True), "cpa": ("cpa_target", False)}


def read_roas_targets(input_dir) -> pd.DataFrame | None:
    """`roas_targets.csv` of the input folder as a frame (None when absent)."""
    path = Path(input_dir) / "roas_targets.csv"
    if not path.is_file():
        return None
    df = pd.read_csv(path, dtype={"channel": str, "geo": str, "metric": str}, keep_default_na=True)
    missing = {"channel", "metric", "value", "sigma"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; expected {COLUMNS}")
    if "geo" not in df:
        df["geo"] = None
    return df[COLUMNS]


def targets_for_model(targets: pd.DataFrame, channels: list[str], geos: list[str], geo_model: bool,
                      ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usable rows expanded to the model's cells, rejected rows with a reason)."""
    used, rejected = [], []
    for r in targets.to_dict("records"):
        geo = r.get("geo")
        geo = None if geo is None or (isinstance(geo, float) and np.isnan(geo)) or not str(geo).strip() \
            else str(geo).strip()
        metric = str(r.get("metric") or "").strip().lower()
        value, sigma = pd.to_numeric(r.get("value"), errors="coerce"), pd.to_numeric(r.get("sigma"), errors="coerce")
        if geo is not None and geo_model and geo not in geos:
            continue  # another market's geo
        if r.get("channel") not in channels:
            rejected.append({**r, "reason": f"unknown channel {r.get('channel')!r}"})
        elif metric not in METRICS:
            rejected.append({**r, "reason": f"metric {r.get('metric')!r} must be one of {sorted(METRICS)}"})
        elif not (np.isfinite(value) and value > 0 and np.isfinite(sigma) and sigma > 0):
            rejected.append({**r, "reason": "value and sigma must be positive numbers"})
        elif not geo_model or geo is not None:
            used.append({"channel": r["channel"], "geo": geo, "metric": metric, "value": float(value),
                         "sigma": float(sigma)})
        else:
            used += [{"channel": r["channel"], "geo": g, "metric": metric, "value": float(value),
                      "sigma": float(sigma) * np.sqrt(len(geos))} for g in geos]
    return pd.DataFrame(used, columns=COLUMNS), pd.DataFrame(rejected)


def add_roas_targets(mmm, targets: pd.DataFrame, spend: pd.DataFrame) -> int:
    """Add one pymc-marketing cost-per-target term per row of `targets` (already for this model).

    `spend`: the training X with money instead of units in the channel columns.
    Returns the number of rows added.
    """
    if targets is None or not len(targets):
        return 0
    dims = list(mmm.dims)
    for metric, (prefix, per_cost) in METRICS.items():
        rows = targets[targets["metric"] == metric]
        if not len(rows):
            continue
        cal = rows.rename(columns={"value": metric})[["channel", *dims, metric, "sigma"]]
        mmm.add_cost_per_target_calibration(spend, cal.reset_index(drop=True), name_prefix=prefix,
                                            target_column=metric, target_per_cost=per_cost)
    return len(targets)


def spend_frame(mmm_or_data) -> pd.DataFrame:
    """Training X with the channel columns in money, from ModelData (X x cost_per_unit)."""
    data = mmm_or_data
    X = data.X.copy()
    if data.cost_per_unit is not None:
        keys = ["date", "geo"] if data.dims else ["date"]
        cpu = data.cost_per_unit.set_index(keys)[data.channels]
        X = X.set_index(keys)
        X[data.channels] = X[data.channels] * cpu.reindex(X.index)
        X = X.reset_index()
    return X


def saved_spend(mmm) -> pd.DataFrame:
    """Training X in money of a fitted MMM, from its saved `channel_spend` (what a reload adds the
    targets against)."""
    sp = mmm.idata.constant_data["channel_spend"].to_dataframe(name="s")["s"].unstack("channel").reset_index()
    sp.columns = [str(c) for c in sp.columns]
    return sp
