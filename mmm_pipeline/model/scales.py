"""Refresh-stable scaling: a market's channel and target scales, fixed once and reused by every refit.

pymc-marketing divides each channel's units and the KPI by a scale before
fitting; the parameters (``saturation_lam``, ``saturation_beta``) and their
priors are in those units. With data-derived scales (the max over weeks), a
week with a new maximum silently changes what every parameter means, so a
weekly refit's ROAS moves for a reason that has nothing to do with the data's
message. Here the scales are computed once per market as the library would
(the max over weeks and the market's geos: ``DataDerivedScaling("max",
dims=("geo",))``), stored in ``marts.model_scales`` and passed to every later
fit of the market (both variants and the out-of-sample refit) as
``FixedScaling``, until a user resets them::

    python -m mmm_pipeline.model.scales reset [MARKET] [--warehouse data/warehouse.duckdb]

A channel that appears later gets its scale from the data of the fit that first
sees it; the stored ones do not change.

Geo size (``geos.csv``, :mod:`mmm_pipeline.ingestion.geos`): with a population per geo the
scales are per capita (``basis = per_capita``): the stored values are the max over weeks
and geos of KPI / population and units / population, and each geo's FixedScaling is that
value times the geo's population (pymc-marketing takes an ``xarray.DataArray`` over geo, and
over geo x channel). The model then sees every geo's data per person, its pooled priors mean
the same effect per person, and the library multiplies back by the geo's scale, so every
reported number is in totals. Stored scales of the other basis are not reused: adding or
removing ``geos.csv`` sets the market's scales anew.

Without ``geos.csv`` (``model.geo_scaling: size``, the default) each geo's size is its own mean
weekly KPI over the first fit's weeks (``basis = per_kpi_mean``): the same per-capita
construction with "people" replaced by "the geo's usual KPI", so a geo 10x the size of another
gets a 10x ceiling and saturation point a priori, and the data move it from there. Unlike
populations these sizes come from the data, so they are stored with the scales (rows
``size:<geo>``) and reused by every refit until reset: a refit keeps parameter meaning.
``model.geo_scaling: market`` keeps one scale per market and channel (``basis = total``), for
data whose geo effects do not grow with geo size.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pandas as pd

from mmm_pipeline.model.data import ModelData
from mmm_pipeline.schema import Units

TARGET = "__target__"   # the row of marts.model_scales holding the KPI's scale
TOTAL, PER_CAPITA, PER_KPI_MEAN = "total", "per_capita", "per_kpi_mean"
SIZE_PREFIX = "size:"   # marts.model_scales rows holding a geo's mean-KPI size (basis per_kpi_mean)
POPULATION_PREFIX = "population:"  # rows hashed into the model version only: populations come from geos.csv


@dataclass(frozen=True)
class Scales:
    target: float
    channel: dict[str, float]
    # geo -> size (population, or the geo's mean KPI) when each geo is scaled by its size; None: one
    # scale per market for all geos
    geo_size: dict[str, float] | None = None
    size_from_kpi: bool = False  # sizes are the geos' mean KPI (no geos.csv)

    @property
    def basis(self) -> str:
        if not self.geo_size:
            return TOTAL
        return PER_KPI_MEAN if self.size_from_kpi else PER_CAPITA

    @property
    def size_prefix(self) -> str:
        return SIZE_PREFIX if self.size_from_kpi else POPULATION_PREFIX

    def rows(self) -> pd.DataFrame:
        """The scales as stored (and hashed into the model version), geo sizes included."""
        sizes = self.geo_size or {}
        return pd.DataFrame({"scale_of": [TARGET, *self.channel, *(f"{self.size_prefix}{g}" for g in sizes)],
                             "value": [self.target, *self.channel.values(), *sizes.values()]})

    def target_value(self, geos: list[str]):
        """pymc-marketing FixedScaling value of the target: a float, or a DataArray over geo."""
        if not self.geo_size:
            return float(self.target)
        import xarray as xr

        return xr.DataArray([self.target * self.geo_size[g] for g in geos], dims=("geo",), coords={"geo": geos})

    def channel_value(self, geos: list[str], channels: list[str]):
        """FixedScaling value of the channels: {channel: scale}, or a DataArray over geo x channel."""
        if not self.geo_size:
            return {c: float(self.channel[c]) for c in channels}
        import xarray as xr

        return xr.DataArray([[self.channel[c] * self.geo_size[g] for c in channels] for g in geos],
                            dims=("geo", "channel"), coords={"geo": geos, "channel": channels})


def kpi_sizes(data: ModelData) -> dict[str, float]:
    """Each geo's mean weekly KPI: its size when geos.csv gives no population."""
    mean = data.y.groupby(data.X["geo"].to_numpy()).mean()
    return {g: float(mean[g]) if mean[g] > 0 else 1.0 for g in data.geos}


def scale_basis(data: ModelData, population: dict[str, float] | None, by_size: bool) -> str:
    """Which scales a market gets: per capita with populations, per mean KPI with `by_size` alone,
    one total scale otherwise (and always for a single geo)."""
    if not data.dims or not (population or by_size):
        return TOTAL
    return PER_CAPITA if population else PER_KPI_MEAN


def data_scales(data: ModelData, population: dict[str, float] | None = None, by_size: bool = False,
                sizes: dict[str, float] | None = None) -> Scales:
    """The scales pymc-marketing's max scaling derives from `data`: the KPI's max and each channel's max
    over weeks and geos (tests/test_scales.py checks them against a fitted model's constant_data).
    With `population` (geo -> people) the same maxima of the per-capita values; without it but with
    `by_size`, the same with each geo's mean KPI as its size (or `sizes`, stored by an earlier fit)."""
    if scale_basis(data, population, by_size) == TOTAL:
        return Scales(float(data.y.max()) or 1.0, {c: float(data.X[c].max()) or 1.0 for c in data.channels})
    size = dict(population) if population else {**kpi_sizes(data), **(sizes or {})}
    per = data.X["geo"].map(size).to_numpy(float)
    return Scales(float((data.y.to_numpy() / per).max()) or 1.0,
                  {c: float((data.X[c].to_numpy() / per).max()) or 1.0 for c in data.channels},
                  geo_size={g: float(size[g]) for g in data.geos}, size_from_kpi=not population)


def stored_scales(con, market: str) -> pd.DataFrame:
    from mmm_pipeline.warehouse import table_exists

    if not table_exists(con, "marts.model_scales"):
        return pd.DataFrame(columns=["market", "scale_of", "value", "set_by", "set_at", "basis"])
    _ensure_basis_column(con)
    return con.execute("SELECT * FROM marts.model_scales WHERE market = ?", [market]).df()


def _ensure_basis_column(con) -> None:
    # Warehouses from before geo sizes hold market-wide (total) scales only.
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                      "table_schema = 'marts' AND table_name = 'model_scales'").fetchall()}
    if "basis" not in cols:
        con.execute(f"ALTER TABLE marts.model_scales ADD COLUMN basis VARCHAR DEFAULT '{TOTAL}'")


def market_scales(con, market: str, data: ModelData, set_by: str,
                  population: dict[str, float] | None = None, by_size: bool = False,
                  units: Units | None = None) -> tuple[Scales, list[str]]:
    """The market's fixed scales: the stored ones of the basis `population` and `by_size` imply (per
    capita with a population, per mean KPI with `by_size` alone, total otherwise), plus (stored now)
    those of channels, geos or a target not stored yet. Populations come from geos.csv on every fit;
    mean-KPI sizes are stored like scales; `units` fills their `currency`, `kpi_name` and `kpi_unit`.
    Returns the scales and the names newly stored."""
    from mmm_pipeline.warehouse import ensure_table, quote_ident, register, unregister, utcnow

    basis = scale_basis(data, population, by_size)
    have = stored_scales(con, market)
    have = have[have["basis"] == basis] if len(have) else have
    known = dict(zip(have["scale_of"], have["value"].astype(float)))
    # per mean KPI, the stored sizes define the units: a refit divides by the first fit's sizes
    stored_sizes = {k.removeprefix(SIZE_PREFIX): v for k, v in known.items() if k.startswith(SIZE_PREFIX)}
    derived = data_scales(data, population, by_size, sizes=stored_sizes)
    fresh = derived.rows()
    if derived.basis == PER_CAPITA:
        fresh = fresh[~fresh["scale_of"].str.startswith(POPULATION_PREFIX)]
    new = fresh[~fresh["scale_of"].isin(list(known))]
    if len(new):
        ensure_table(con, "marts.model_scales")  # after stored_scales gave older rows their basis
        rows = new.assign(market=market, set_by=set_by, set_at=utcnow(), basis=derived.basis,
                          **(units._asdict() if units else {}))
        cols = ", ".join(quote_ident(c) for c in rows.columns)
        register(con, "_new_scales", rows)
        con.execute(f"INSERT INTO marts.model_scales ({cols}) SELECT {cols} FROM _new_scales")
        unregister(con, "_new_scales")
        known.update(dict(zip(new["scale_of"], new["value"])))
    return (Scales(known[TARGET], {c: known[c] for c in data.channels}, derived.geo_size, derived.size_from_kpi),
            new["scale_of"].tolist())


def reset_scales(con, market: str | None = None) -> int:
    """Forget the stored scales (of one market, or all): the next fit derives them from its data."""
    from mmm_pipeline.warehouse import table_exists

    if not table_exists(con, "marts.model_scales"):
        return 0
    where, params = ("WHERE market = ?", [market]) if market else ("", [])
    n = con.execute(f"SELECT count(*) FROM marts.model_scales {where}", params).fetchone()[0]
    con.execute(f"DELETE FROM marts.model_scales {where}", params)
    return int(n)


def main(argv=None) -> int:
    from mmm_pipeline import warehouse
    from mmm_pipeline.settings import RunSettings

    p = argparse.ArgumentParser(prog="python -m mmm_pipeline.model.scales",
                                description="Reset the fixed model scales of a market (or all markets).")
    p.add_argument("action", choices=["reset", "show"])
    p.add_argument("market", nargs="?")
    p.add_argument("--warehouse", default=str(RunSettings.from_env().warehouse))
    args = p.parse_args(argv)
    with warehouse.connect(args.warehouse) as con:
        if args.action == "show":
            print((stored_scales(con, args.market) if args.market else con.execute(
                "SELECT * FROM marts.model_scales ORDER BY ALL").df()).to_string(index=False))
        else:
            n = reset_scales(con, args.market)
            print(f"removed {n} stored scale(s){' of market ' + args.market if args.market else ''}; "
                  "the next fit derives them from its data")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
