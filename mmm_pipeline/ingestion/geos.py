"""Geo sizes: the optional `geos.csv` of the input folder (`geo, population`, optional `market`).

With a population per geo, a market is modelled per capita (Meridian's convention): each
geo's KPI and media are divided by the geo's population times one market-wide per-capita
scale (:mod:`mmm_pipeline.model.scales`), so the pooled priors on a channel's ceiling and
saturation mean "the same effect per person" and a geo ten times larger gets a ten times
larger ceiling unless its data say otherwise. Every number reported stays in totals,
because pymc-marketing multiplies back by the per-geo scale.

A bad file is an error that names the file, the row and the column; nothing is
half-read. The optional `market` column is informational here (markets come from
`pipeline.yaml`); a geo of the data that the file lacks is named when its market is fitted.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

FILE = "geos.csv"


class GeoFileError(ValueError):
    pass


def read_geo_populations(input_dir) -> dict[str, float] | None:
    """geo -> population from `geos.csv` (None when the file is absent)."""
    path = Path(input_dir) / FILE
    if not path.is_file():
        return None
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as e:  # an unreadable file is named, not a pandas traceback
        raise GeoFileError(f"{path}: cannot be read as CSV ({e})") from e
    df.columns = [c.strip() for c in df.columns]
    missing = {"geo", "population"} - set(df.columns)
    if missing:
        raise GeoFileError(f"{path}: missing column(s) {sorted(missing)}; expected geo, population[, market]")
    out: dict[str, float] = {}
    for i, r in enumerate(df.to_dict("records"), start=2):  # row 1 is the header
        geo, raw = r["geo"].strip(), r["population"].strip()
        if not geo:
            raise GeoFileError(f"{path}: row {i}: column geo is empty")
        try:
            pop = float(raw)
        except ValueError:
            raise GeoFileError(f"{path}: row {i}: column population {raw!r} is not a number") from None
        if not math.isfinite(pop) or pop <= 0:
            raise GeoFileError(f"{path}: row {i}: column population must be a positive number, got {raw!r}")
        if geo in out:
            raise GeoFileError(f"{path}: row {i}: geo {geo!r} appears twice")
        out[geo] = pop
    if not out:
        raise GeoFileError(f"{path}: no rows; delete the file to model without populations")
    return out


def market_populations(populations: dict[str, float] | None, geos: list[str]) -> dict[str, float] | None:
    """The populations of a market's geos (None without a file, or for a national model, which has one
    geo and nothing to compare its size with). Fails naming the geos the file lacks."""
    if populations is None or len(geos) < 2:
        return None
    absent = [g for g in geos if g not in populations]
    if absent:
        raise GeoFileError(f"{FILE} has no population for geo(s) {absent}; every modelled geo needs one")
    return {g: populations[g] for g in geos}
