"""Refresh drift (mart `refresh_drift`): how a refit's ROAS and contribution share moved against the
previous gated model of the same market and variant.

A weekly refit should move an answer when the data moved it. With fixed scales
(mmm_pipeline.model.scales) the parameters keep their meaning, so a large change
is worth a look before anyone acts on it: per geo and channel, the ROAS change
(relative), the contribution share change (the channel's share of the media
contribution, in percentage points) and a `flagged` column above the threshold
(`model.refresh_drift_threshold`, default 0.2: ROAS moved by more than 20 %, or the
share by more than 20 % of its previous value).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = ["geo", "channel", "previous_model_version", "roas_previous", "roas_current", "roas_change",
           "share_previous", "share_current", "share_change_pp", "flagged"]


def _shares(df: pd.DataFrame) -> pd.Series:
    total = df.groupby("geo")["contribution_mean"].transform("sum")
    return (df["contribution_mean"] / total.where(total != 0)).fillna(0.0)


def refresh_drift(current: pd.DataFrame, previous: pd.DataFrame, previous_version: str,
                  threshold: float = 0.2) -> pd.DataFrame:
    """`current` and `previous`: channel_roas rows (geo, channel, contribution_mean, roas_mean) of two
    models; one row per geo and channel the two share."""
    cur = current.assign(share=_shares(current))[["geo", "channel", "roas_mean", "share"]]
    prev = previous.assign(share=_shares(previous))[["geo", "channel", "roas_mean", "share"]]
    m = cur.merge(prev, on=["geo", "channel"], suffixes=("_current", "_previous"))
    out = pd.DataFrame({
        "geo": m["geo"], "channel": m["channel"], "previous_model_version": previous_version,
        "roas_previous": m["roas_mean_previous"], "roas_current": m["roas_mean_current"],
        "share_previous": m["share_previous"], "share_current": m["share_current"]})
    out["roas_change"] = out["roas_current"] / out["roas_previous"].where(out["roas_previous"] != 0) - 1
    out["share_change_pp"] = 100 * (out["share_current"] - out["share_previous"])
    share_rel = (out["share_current"] - out["share_previous"]).abs() / out["share_previous"].where(
        out["share_previous"] > 0)
    out["flagged"] = (out["roas_change"].abs() > threshold) | (share_rel > threshold)
    out["flagged"] = out["flagged"].fillna(False).astype(bool)
    return out[COLUMNS].replace([np.inf, -np.inf], np.nan)
