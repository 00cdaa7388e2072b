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
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pandas as pd

from mmm_pipeline.model.data import ModelData

TARGET = "__target__"   # the row of marts.model_scales holding the KPI's scale


@dataclass(frozen=True)
class Scales:
    target: float
    channel: dict[str, float]

    def rows(self) -> pd.DataFrame:
        return pd.DataFrame({"scale_of": [TARGET, *self.channel], "value": [self.target, *self.channel.values()]})


def data_scales(data: ModelData) -> Scales:
    """The scales pymc-marketing's max scaling derives from `data`: the KPI's max and each channel's max
    over weeks and geos (tests/test_scales.py checks them against a fitted model's constant_data)."""
    return Scales(float(data.y.max()) or 1.0, {c: float(data.X[c].max()) or 1.0 for c in data.channels})


def stored_scales(con, market: str) -> pd.DataFrame:
    from mmm_pipeline.warehouse import table_exists

    if not table_exists(con, "marts.model_scales"):
        return pd.DataFrame(columns=["market", "scale_of", "value", "set_by", "set_at"])
    return con.execute("SELECT * FROM marts.model_scales WHERE market = ?", [market]).df()


def market_scales(con, market: str, data: ModelData, set_by: str) -> tuple[Scales, list[str]]:
    """The market's fixed scales: the stored ones, plus (stored now) those of channels or a target not
    stored yet. Returns them and the names newly stored."""
    from mmm_pipeline.warehouse import register, unregister, utcnow

    have = stored_scales(con, market)
    known = dict(zip(have["scale_of"], have["value"].astype(float)))
    fresh = data_scales(data).rows()
    new = fresh[~fresh["scale_of"].isin(list(known))]
    if len(new):
        con.execute("CREATE TABLE IF NOT EXISTS marts.model_scales (market VARCHAR, scale_of VARCHAR, value DOUBLE, "
                    "set_by VARCHAR, set_at TIMESTAMP)")
        register(con, "_new_scales", new.assign(market=market, set_by=set_by, set_at=utcnow()))
        con.execute("INSERT INTO marts.model_scales SELECT market, scale_of, value, set_by, set_at FROM _new_scales")
        unregister(con, "_new_scales")
        known.update(dict(zip(new["scale_of"], new["value"])))
    return Scales(known[TARGET], {c: known[c] for c in data.channels}), new["scale_of"].tolist()


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
