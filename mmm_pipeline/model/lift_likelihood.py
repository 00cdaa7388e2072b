"""The lift-test likelihood that models the experiment, inside the model graph.

A lift test (a GeoLift or synthetic-control readout) reports the KPI gained
*during its window* on top of what the channel was doing anyway. The model
implies that number from the **actual spend path** of the test's geo and
channel, through the model's own adstock and saturation (``mmm.adstock.function``
and ``mmm.saturation.function``, the same functions the MMM's mean uses):

* treated path = the factual weekly units of the geo and channel;
* untreated path = the same less the test's extra units over the window's
  weeks (``extra_spend_in_data=True``, the default: the test's money was really
  spent, so it is in the ad reports), or, with ``extra_spend_in_data=False``,
  treated = factual + extra and untreated = factual (data that exclude the
  test's own delivery);
* extra units in week t = delta_spend / window days x (window days in week t)
  / cost per unit of the window (the conversion of ``lift_tests.py``);
* implied lift = sum over weeks of [contribution(treated) - contribution(untreated)]
  x weight, in KPI units, where the weight is the share of the week inside the
  window (days / 7: a partial first or last week counts by its days) for
  ``scope = window``; for ``scope = total`` every week from the first window
  week through ``l_max - 1`` weeks after the last one weighs 1 (the carryover
  is in the readout);
* with ``time_varying_media`` each week's difference is multiplied by the HSGP
  multiplier of that week and geo, as the MMM's channel contribution is.

One likelihood term per test: a test without a geo in a geo model is the sum
of its geos' implied lifts against the reported ``delta_y`` and ``sigma``
(Normal, or StudentT with ``nu``). When the model is one market of several,
the market sees its spend share of a national test (``delta_y x share``) with
``sigma_test`` from the conversion (``sigma x sqrt(share)``, so the market terms
add up to the reported variance, widened by the split's own error:
``mmm_pipeline.model.lift_tests``); a market holding every geo gets the test
unchanged.

The design (paths, weights, indices) is plain numpy built from ``ModelData``
and the converted tests; :func:`add_window_lift_likelihood` adds it to a built
MMM. The design is part of the fit's ``calibration.Calibration``, saved with the posterior, so
``model.load_model`` can re-add the same term to the rebuilt graph.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Literal

import numpy as np
import pandas as pd

LIFT_NAME = "lift_window"
SCOPES = ("window", "total")

# What the design needs per converted row (one row per test x geo).
DESIGN_COLUMNS = ["test_id", "channel", "geo", "start_date", "end_date", "delta_spend",
                  "cost_per_unit_used", "delta_y_test", "sigma_test", "scope"]


@dataclass
class LiftDesign:
    """Numpy design of the window-lift likelihood: R rows (test x geo) feeding K terms (tests)."""

    test_ids: list[str]                 # K
    observed: np.ndarray                # (K,) KPI over the readout, original units
    sigma: np.ndarray                   # (K,)
    scope: list[str]                    # (K,)
    rows: pd.DataFrame                  # R rows: test_id, geo, channel, term
    geo_idx: np.ndarray                 # (R,) index into the model's geos (unused when national)
    channel_idx: np.ndarray             # (R,)
    treated: np.ndarray                 # (T, R) units, original scale
    untreated: np.ndarray               # (T, R)
    weight: np.ndarray                  # (T, R)
    term: np.ndarray                    # (R,) index of the row's test
    skipped: list[dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({
            "test_ids": self.test_ids, "observed": self.observed.tolist(), "sigma": self.sigma.tolist(),
            "scope": self.scope, "rows": self.rows.to_dict("list"), "geo_idx": self.geo_idx.tolist(),
            "channel_idx": self.channel_idx.tolist(), "treated": self.treated.tolist(),
            "untreated": self.untreated.tolist(), "weight": self.weight.tolist(), "term": self.term.tolist(),
        })

    @classmethod
    def from_json(cls, text: str) -> "LiftDesign":
        d = json.loads(text)
        return cls(test_ids=d["test_ids"], observed=np.asarray(d["observed"], float),
                   sigma=np.asarray(d["sigma"], float), scope=d["scope"], rows=pd.DataFrame(d["rows"]),
                   geo_idx=np.asarray(d["geo_idx"], int), channel_idx=np.asarray(d["channel_idx"], int),
                   treated=np.asarray(d["treated"], float), untreated=np.asarray(d["untreated"], float),
                   weight=np.asarray(d["weight"], float), term=np.asarray(d["term"], int))


def window_design(tests: pd.DataFrame, data, l_max: int, *, extra_spend_in_data: bool = True) -> LiftDesign:
    """Build the design from converted tests (``lift_tests.convert_lift_tests`` rows) and ``ModelData``.

    Rows of channels / geos the model lacks are left out; a test whose window
    reaches a week the model does not have (an incomplete last week, say) is
    left out whole and listed in ``skipped``.
    """
    missing = set(DESIGN_COLUMNS) - set(tests.columns)
    if missing:
        raise ValueError(f"lift tests lack column(s) {sorted(missing)} for the window likelihood")
    weeks = pd.DatetimeIndex(pd.to_datetime(data.weeks))
    T = len(weeks)
    week_pos = {w: i for i, w in enumerate(weeks)}
    geo_model = bool(data.dims)
    df = tests[tests["channel"].isin(data.channels)].copy()
    if geo_model:
        df = df[df["geo"].isin(data.geos)]
    X = data.X.copy()
    X["date"] = pd.to_datetime(X["date"])

    rows, treated, untreated, weight, skipped = [], [], [], [], []
    terms: dict[str, dict] = {}
    for test_id, g in df.groupby("test_id", sort=False):
        r0 = g.iloc[0]
        scope = "window" if pd.isna(r0["scope"]) or not str(r0["scope"]).strip() else str(r0["scope"]).strip().lower()
        if scope not in SCOPES:
            raise ValueError(f"lift test {test_id}: scope {r0['scope']!r} must be one of {SCOPES}")
        start, end = pd.Timestamp(r0["start_date"]), pd.Timestamp(r0["end_date"])
        days = pd.date_range(start, end, freq="D")
        day_week = days - pd.to_timedelta(days.weekday, unit="D")
        if not all(w in week_pos for w in day_week.unique()):
            skipped.append({"test_id": test_id, "reason": "window reaches a week the model does not have "
                            "(incomplete or outside the modelled weeks)"})
            continue
        days_in_week = np.zeros(T)
        for w, n in pd.Series(day_week).value_counts().items():
            days_in_week[week_pos[w]] = n
        first, last = int(np.flatnonzero(days_in_week)[0]), int(np.flatnonzero(days_in_week)[-1])
        if scope == "window":
            wt = days_in_week / 7.0
        else:
            wt = np.zeros(T)
            wt[first: min(last + l_max, T)] = 1.0
        for r in g.to_dict("records"):
            if geo_model:
                factual = X.loc[X["geo"] == r["geo"]].set_index("date")[r["channel"]]
            else:
                factual = X.set_index("date")[r["channel"]]
            factual = factual.reindex(weeks).to_numpy(float)
            extra = (float(r["delta_spend"]) / len(days)) * days_in_week / float(r["cost_per_unit_used"])
            if extra_spend_in_data:
                tr, un = factual, np.maximum(factual - extra, 0.0)
            else:
                tr, un = factual + extra, factual
            rows.append({"test_id": test_id, "geo": r["geo"] if geo_model else None, "channel": r["channel"]})
            treated.append(tr)
            untreated.append(un)
            weight.append(wt)
        terms[test_id] = {"observed": float(r0["delta_y_test"]), "sigma": float(r0["sigma_test"]),
                          "scope": scope}
    test_ids = list(terms)
    rows_df = pd.DataFrame(rows, columns=["test_id", "geo", "channel"])
    rows_df["term"] = rows_df["test_id"].map({t: i for i, t in enumerate(test_ids)})
    stack = (lambda a: np.stack(a, axis=1)) if rows else (lambda a: np.zeros((T, 0)))
    return LiftDesign(
        test_ids=test_ids,
        observed=np.array([terms[t]["observed"] for t in test_ids], float),
        sigma=np.array([terms[t]["sigma"] for t in test_ids], float),
        scope=[terms[t]["scope"] for t in test_ids],
        rows=rows_df,
        geo_idx=np.array([data.geos.index(g) if geo_model else 0 for g in rows_df["geo"]], int),
        channel_idx=np.array([data.channels.index(c) for c in rows_df["channel"]], int),
        treated=stack(treated), untreated=stack(untreated), weight=stack(weight),
        term=rows_df["term"].to_numpy(int), skipped=skipped,
    )


def _row_values(var, dims: tuple[str, ...], geo_idx, channel_idx):
    """A (geo, channel) model variable (xtensor) picked per design row, as a plain tensor."""
    t = var.transpose(*dims, "channel").values
    return t[geo_idx, channel_idx] if dims else t[channel_idx]


def _scales(mmm, design: LiftDesign):
    """Per-row channel scale and target scale (numpy) from the model's scalers."""
    ch = mmm.scalers["_channel"]
    tg = mmm.scalers["_target"]
    geos = list(mmm.model.coords.get("geo", []) or [])

    def pick(da, r):
        sel = {}
        if "channel" in da.dims:
            sel["channel"] = r["channel"]
        if "geo" in da.dims:
            sel["geo"] = r["geo"] if r["geo"] is not None else geos[0]
        return float(np.asarray(da.sel(sel)).ravel()[0])

    recs = design.rows.to_dict("records")
    return (np.array([pick(ch, r) for r in recs], float), np.array([pick(tg, r) for r in recs], float))


def implied_lift_tensor(mmm, design: LiftDesign):
    """The (K,) implied lift per test in KPI units, as a pytensor expression of the model's variables."""
    import pytensor.tensor as pt
    from pytensor.xtensor import as_xtensor

    model = mmm.model
    dims = tuple(mmm.dims)
    ch_scale, tg_scale = _scales(mmm, design)

    def per_row(transformation):
        # a transformation's own parameters (geometric: alpha; delayed: alpha, theta; logistic: lam, beta;
        # Hill: slope, kappa, beta), one value per design row
        return {short: as_xtensor(_row_values(model[var], dims, design.geo_idx, design.channel_idx),
                                  dims=("_lift_row",))
                for short, var in transformation.variable_mapping.items()}

    ad_params, sat_params = per_row(mmm.adstock), per_row(mmm.saturation)
    row_dims = ("date", "_lift_row")

    def contribution(units):
        x = as_xtensor(pt.as_tensor(units / ch_scale[None, :]), dims=row_dims)
        ad = mmm.adstock.function(x, **ad_params, dim="date")
        sat = mmm.saturation.function(ad, **sat_params, dim="date")
        return sat.transpose(*row_dims).values

    diff = contribution(design.treated) - contribution(design.untreated)  # (T, R), scaled KPI
    if getattr(mmm, "time_varying_media", False):
        mult = model["media_temporal_latent_multiplier"].transpose("date", *dims).values
        diff = diff * (mult[:, design.geo_idx] if dims else mult[:, None])
    per_row = (diff * design.weight).sum(axis=0) * tg_scale  # (R,) KPI units
    A = np.zeros((len(design.test_ids), len(design.rows)))
    A[design.term, np.arange(len(design.rows))] = 1.0
    return pt.dot(pt.as_tensor(A), per_row)


def add_window_lift_likelihood(mmm, design: LiftDesign, *,
                               likelihood: Literal["normal", "studentt"] = "normal",
                               nu: float = 5.0, name: str = LIFT_NAME) -> None:
    """Add the implied-lift Deterministic ``<name>_implied`` (KPI units, dims ``lift_test``) and one
    observed term per test to a built MMM."""
    import pymc as pm

    if not len(design.test_ids):
        return
    model = mmm.model
    # The likelihood works on the model's target scale, like the MMM's own likelihood.
    ref = float(np.asarray(mmm.scalers["_target"]).ravel().mean())
    with model:
        model.add_coord("lift_test", design.test_ids)
        implied = pm.Deterministic(f"{name}_implied", implied_lift_tensor(mmm, design), dims="lift_test")
        if likelihood == "studentt":
            pm.StudentT(f"{name}_obs", nu=nu, mu=implied / ref, sigma=design.sigma / ref,
                        observed=design.observed / ref, dims="lift_test")
        else:
            pm.Normal(f"{name}_obs", mu=implied / ref, sigma=design.sigma / ref,
                      observed=design.observed / ref, dims="lift_test")


def implied_lift_draws(mmm, design: LiftDesign) -> np.ndarray:
    """Posterior draws (samples, K) of each test's implied lift in KPI units, for any fitted MMM
    (with or without the term): the same expression evaluated on the posterior."""
    import pytensor

    post = mmm.idata.posterior
    names = [*mmm.adstock.variable_mapping.values(), *mmm.saturation.variable_mapping.values()]
    if getattr(mmm, "time_varying_media", False):
        names.append("media_temporal_latent_multiplier")
    model = mmm.model
    inputs = [model[n] for n in names]
    # Replace the parameters by plain inputs so the expression is a function of posterior values.
    ins = [v.type() for v in inputs]
    expr = implied_lift_tensor(mmm, design)
    expr = pytensor.graph.graph_replace(expr, dict(zip(inputs, ins)), strict=False)
    f = pytensor.function(ins, expr, on_unused_input="ignore")
    stacked = {}
    for n, v in zip(names, inputs):
        da = post[n].stack(sample=("chain", "draw"))
        stacked[n] = da.transpose("sample", *v.dims).to_numpy()
    n_samples = next(iter(stacked.values())).shape[0]
    out = np.empty((n_samples, len(design.test_ids)))
    for s in range(n_samples):
        out[s] = f(*[stacked[n][s] for n in names])
    return out


def model_data_of(mmm) -> SimpleNamespace:
    """The ModelData fields `lift_likelihood.window_design` reads, from a fitted (or loaded) MMM."""
    units = mmm.idata.constant_data["channel_data"]
    dims = tuple(mmm.dims)
    weeks = list(pd.to_datetime(units.coords["date"].values))
    channels = [str(c) for c in units.coords["channel"].values]
    if dims:
        X = units.to_dataframe(name="u")["u"].unstack("channel").reset_index()
        geos = [str(g) for g in units.coords["geo"].values]
    else:
        X = units.to_pandas().reset_index()
        geos = ["national"]
    X.columns = [str(c) for c in X.columns]
    return SimpleNamespace(X=X, weeks=weeks, geos=geos, channels=channels, dims=dims)
