"""Which curve family a market's model uses, chosen by the held-out fit of its KPI (`model.family_candidates`).

Each candidate (an adstock x saturation pair, ``CurveFamily``) is refitted without the last
``model.validation.holdout_weeks`` complete weeks exactly as the out-of-sample validation refits
(:func:`mmm_pipeline.model.market.run_validation`: the market's config with that family, no lift tests,
the refit's own gate and retry ladder) and forecasts them. The score of a candidate is the CRPS of each
held-out (week, geo) point divided by that geo's mean held-out KPI (so one large geo does not decide
alone), averaged over the points: lower is better.

The first candidate is the default. Another replaces it only when its refit passed its gate and its mean
relative CRPS is lower than the default's by more than ``SE_MARGIN`` standard errors of the paired
per-point difference (the rule ArviZ's ``compare`` suggests for ELPD differences): a family is not
swapped on the noise of a few held-out weeks. Among several such, the lowest score wins. When the
default's own refit failed its gate, the converged candidate with the lowest score is taken.

The lift tests take no part: the choice rests on the KPI alone, so the experiments stay evidence
about the chosen model (its held-out lift tests, its calibration) rather than a criterion it was
picked by.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import CurveFamily, ModelConfig, config_hash
from mmm_pipeline.warehouse import fingerprint, table_exists

SE_MARGIN = 2.0
TABLE = "marts.model_family"
COLUMNS = ["market", "candidate", "adstock", "saturation", "is_default", "holdout_weeks", "points",
           "relative_crps", "diff_vs_default", "diff_se", "refit_passed_gates", "refit_max_rhat", "chosen",
           "reason", "selection_key"]


def selection_key(market: str, data_version: str, cfg: ModelConfig) -> str:
    """What a choice was made for: the market, its data and its (unresolved) model settings."""
    return fingerprint("family", market, data_version, config_hash(cfg))


def relative_points(forecast: pd.DataFrame) -> pd.Series:
    """Each held-out (week, geo) point's CRPS over its geo's mean held-out KPI, indexed by (week, geo)."""
    f = forecast[forecast["geo"] != "market"]
    scale = f.groupby("geo")["actual"].transform(lambda a: float(np.mean(np.abs(a))) or 1.0)
    return pd.Series((f["crps"] / scale).to_numpy(), index=pd.MultiIndex.from_frame(f[["week_start", "geo"]]))


def choose(points: dict[str, pd.Series], converged: dict[str, bool], default: str) -> tuple[str, pd.DataFrame, str]:
    """(chosen label, per candidate: relative_crps, diff_vs_default, diff_se, points, and the reason).

    `points`: label -> relative_points of its forecast; `converged`: label -> its refit passed its gate."""
    base = points[default]
    rows = {}
    for label, p in points.items():
        d = (p - base.reindex(p.index)).dropna()
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        rows[label] = {"relative_crps": float(p.mean()), "diff_vs_default": float(d.mean()) if len(d) else 0.0,
                       "diff_se": se if label != default else 0.0, "points": int(len(p))}
    table = pd.DataFrame.from_dict(rows, orient="index")
    if converged.get(default, False):
        better = [lb for lb in points if lb != default and converged.get(lb, False)
                  and table.loc[lb, "diff_vs_default"] < -SE_MARGIN * table.loc[lb, "diff_se"]]
        if not better:
            return default, table, (f"the default {default} kept: no other family forecast the held-out weeks "
                                    f"better by more than {SE_MARGIN:g} standard errors")
        chosen = min(better, key=lambda lb: table.loc[lb, "relative_crps"])
        t = table.loc[chosen]
        return chosen, table, (f"{chosen} chosen: held-out relative CRPS {t['relative_crps']:.4f} against the "
                               f"default's {table.loc[default, 'relative_crps']:.4f} (difference "
                               f"{t['diff_vs_default']:+.4f}, {abs(t['diff_vs_default']) / t['diff_se']:.1f} "
                               "standard errors)")
    usable = [lb for lb in points if converged.get(lb, False)]
    if not usable:
        return default, table, (f"the default {default} kept: no candidate's refit passed its gate, so the "
                                "held-out scores are not evidence")
    chosen = min(usable, key=lambda lb: table.loc[lb, "relative_crps"])
    return chosen, table, (f"{chosen} chosen: the default's refit did not pass its gate; lowest held-out "
                           f"relative CRPS ({table.loc[chosen, 'relative_crps']:.4f}) of the converged candidates")


@dataclass(frozen=True)
class Selection:
    """A market's family choice: the marts.model_family rows (reason and key among them) and, per
    candidate, what its refit gave."""

    table: pd.DataFrame
    chosen: CurveFamily
    validations: dict  # label -> (market.Validation, weekly forecast) of that candidate's refit


def selection_rows(market: str, cands: tuple[CurveFamily, ...], table: pd.DataFrame, converged: dict[str, bool],
                   max_rhat: dict[str, float], chosen: str, reason: str, key: str, holdout_weeks: int) -> pd.DataFrame:
    """marts.model_family rows (COLUMNS) of one choice: `table` from :func:`choose`."""
    default = cands[0].label
    rows = [{"market": market, "candidate": f.label, "adstock": f.adstock, "saturation": f.saturation,
             "is_default": f.label == default, "holdout_weeks": int(holdout_weeks),
             "points": int(table.loc[f.label, "points"]), "relative_crps": float(table.loc[f.label, "relative_crps"]),
             "diff_vs_default": float(table.loc[f.label, "diff_vs_default"]),
             "diff_se": float(table.loc[f.label, "diff_se"]), "refit_passed_gates": bool(converged[f.label]),
             "refit_max_rhat": float(max_rhat[f.label]), "chosen": f.label == chosen, "reason": reason,
             "selection_key": key} for f in cands]
    return pd.DataFrame(rows, columns=COLUMNS)


def read_choice(con, market: str, key: str) -> tuple[CurveFamily, str] | None:
    """The stored choice for `key` (the latest), or None."""
    if not table_exists(con, TABLE):
        return None
    row = con.execute("SELECT adstock, saturation, reason FROM marts.model_family WHERE market = ? "
                      "AND selection_key = ? AND chosen ORDER BY materialized_at DESC LIMIT 1", [market, key]).fetchone()
    if row is None:
        return None
    return CurveFamily(adstock=row[0], saturation=row[1]), str(row[2])


def read_selection(con, market: str, version: str) -> pd.DataFrame:
    """The stored marts.model_family rows of the choice `version` (empty when it was never made)."""
    if not table_exists(con, TABLE):
        return pd.DataFrame(columns=COLUMNS)
    return con.execute("SELECT * FROM marts.model_family WHERE market = ? AND data_version = ?",
                       [market, version]).df()
