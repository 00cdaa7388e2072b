"""Lift tests converted to the model's units (pure pandas).

The calibrated model's default likelihood (``mmm_pipeline.model.lift_likelihood``)
models the experiment on the actual spend path and needs from here, per test
and geo, the window, ``delta_spend`` (the geo's share for a national test),
``cost_per_unit_used`` and ``scope`` (``window`` default, or ``total``; a
``scope`` column of lift_tests.csv, reason ``invalid_scope`` otherwise), and per
test and market one term: ``delta_y_test`` = delta_y x market_share and
``sigma_test`` = sqrt(sigma^2 x s + (delta_y x s x (1 - s) x tau)^2), where
``s = market_share`` is the market's share of the test's window spend (1 for a
geo test and for a national test in a one-market run: sigma unchanged). The
first part makes the markets' terms add up to the reported variance; the second
is the uncertainty of the split itself: the market's share of the *lift* equals
its share of the spend only if its ROAS equals the other markets'. With their
log ROAS ratio ~ N(0, tau^2) the lift share is s +/- s (1 - s) tau to first order
(``national_split_log_sd`` = tau, default 0.5; 0 gives the plain spend split).
The weekly steady-state conversion below is what the ``calibration.likelihood:
steady_state`` option (pymc-marketing's ``add_lift_test_measurements``) reads.

Marketers report a lift test as money added over a window (``delta_spend``,
USD), the KPI lift over that window (``delta_y``) and its standard error
(``sigma``). The MMM is fitted on weekly *delivery units* (impressions,
clicks, or money for spend channels) and weekly KPI, and pymc-marketing's
``add_lift_test_measurements`` compares ``saturation(x + delta_x) -
saturation(x)`` with ``delta_y``. A test is therefore converted to one row
per geo, in the model's weekly units:

* ``weeks_in_window`` n = (end_date - start_date + 1 day) / 7 (fractional
  allowed: a 10-day test is 1.43 weeks);
* ``x`` = the geo's mean weekly units of the channel over the
  ``baseline_weeks`` weeks (7 x baseline_weeks days) before ``start_date``,
  i.e. the level the test was added on top of. When the data start inside
  that baseline, the available days are used (sum / (days / 7));
* ``cost_per_unit_used`` cpu = sum(spend) / sum(units) over the test's own
  window days, geo and channel (1 for a spend channel, whose unit is money);
* ``delta_x`` = (delta_spend / n) / cpu: the extra weekly units bought;
* ``delta_y`` = delta_y / n and ``sigma`` = sigma / n: weekly lift and its
  standard error; ``delta_y_window`` keeps the reported window total (of the
  geo's share for a national test).

``baseline="window"`` instead takes ``x`` = the window's own weekly units
less ``delta_x`` (the level that ran during the test without the added
units). That is the operating point the test actually measured; the
pre-period mean can be far from it when the budget moved at the test's start
(in the sample, LT-2025-04's pre-period is a low-budget stretch: its
pre-period x is 0.44 x the window's level, so the pre-period convention
tells the model the lift happened much lower on the saturation curve).

Since the model's adstock is normalised (weights sum to 1), a sustained weekly
increment ``delta_x`` moves the adstocked input by ``delta_x`` at steady state,
which is what the lift-test likelihood assumes. Carry-over after the window is
not in ``delta_y``, so short tests understate the steady-state lift slightly.

National tests (``geo`` empty) ran in every geo. They are split across geos
by each geo's share of the channel's spend in the window, over *all* geos of
the data (so a market receives only its geos' shares): ``delta_spend``,
``delta_y`` and ``sigma`` are each multiplied by the geo's share
(``geo_share``). Splitting sigma proportionally keeps every geo row's
relative error equal to the test's; because the rows then enter the
likelihood as independent measurements, the implied precision of the total is
somewhat higher than reported (sd of the sum = sigma * sqrt(sum share^2)).
Pass ``national_sigma_split="sqrt_share"`` to use sigma * sqrt(share)
instead, which keeps the variance of the total exactly sigma^2 under
independence.

Rejected tests (returned with a ``reason`` and a ``detail`` text):
``unknown_channel`` (the channel is not in the media data),
``unknown_geo`` (the geo is not in the media data),
``window_outside_data`` (start before the first or end after the last day of
data), ``invalid_window`` (end before start, or a missing date),
``invalid_values`` (missing delta_spend / delta_y, or sigma <= 0),
``no_baseline`` (no media day before the window to measure x on) and
``no_delivery_in_window`` (no units or no spend in the window, so no cost
per unit). Tests of another market's geos are not this market's: they are
neither converted nor rejected.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

CONVERTED_COLUMNS = [
    "test_id", "market", "channel", "geo", "x", "delta_x", "delta_y", "sigma", "delta_y_window",
    "weeks_in_window", "cost_per_unit_used",
    # provenance
    "start_date", "end_date", "unit", "delta_spend", "geo_share", "national",
    # the window likelihood's term (mmm_pipeline.model.lift_likelihood): one per test and market
    "scope", "delta_y_test", "sigma_test", "market_share",
]
REJECTED_COLUMNS = [
    "test_id", "market", "channel", "geo", "start_date", "end_date", "delta_spend", "delta_y", "sigma",
    "reason", "detail",
]
REASONS = (
    "unknown_channel", "unknown_geo", "window_outside_data", "invalid_window", "invalid_values",
    "no_baseline", "no_delivery_in_window", "invalid_scope",
)
SCOPES = ("window", "total")
UNIT_COLUMNS = ("impressions", "clicks", "spend")


def _daily_units(daily_media: pd.DataFrame) -> pd.DataFrame:
    """date_day, geo, channel, unit, units, spend: one row per day x geo x channel."""
    df = daily_media.copy()
    missing = {"date_day", "geo", "channel", "spend"} - set(df.columns)
    if missing:
        raise ValueError(f"daily media lacks column(s) {sorted(missing)}")
    if "units" not in df.columns:
        if "unit" not in df.columns:
            raise ValueError("daily media needs a `units` column or a `unit` column naming it")
        bad = set(df["unit"].dropna().unique()) - set(UNIT_COLUMNS)
        if bad:
            raise ValueError(f"unknown unit(s) {sorted(bad)}; expected one of {UNIT_COLUMNS}")
        df["units"] = np.select(
            [df["unit"] == u for u in UNIT_COLUMNS],
            [pd.to_numeric(df[u], errors="coerce") if u in df.columns else np.nan for u in UNIT_COLUMNS],
            default=np.nan,
        )
    if "unit" not in df.columns:
        df["unit"] = None
    df["date_day"] = pd.to_datetime(df["date_day"]).dt.normalize().astype("datetime64[ns]")
    df["units"] = pd.to_numeric(df["units"], errors="coerce").fillna(0.0)
    df["spend"] = pd.to_numeric(df["spend"], errors="coerce").fillna(0.0)
    df = df[df["geo"].notna()]
    out = df.groupby(["date_day", "geo", "channel"], as_index=False).agg(
        units=("units", "sum"), spend=("spend", "sum"), unit=("unit", "first"))
    return out


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or \
        (isinstance(value, str) and not value.strip()) or value is pd.NA or value is pd.NaT


def convert_lift_tests(
    tests: pd.DataFrame,
    daily_media: pd.DataFrame,
    market_geos: list[str],
    *,
    baseline_weeks: int = 8,
    market: str | None = None,
    national_sigma_split: Literal["proportional", "sqrt_share"] = "proportional",
    baseline: Literal["pre_period", "window"] = "pre_period",
    national_split_log_sd: float = 0.5,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert `tests` (raw.lift_tests) for one market; returns (converted, rejected).

    `daily_media` is daily ad reporting (date_day, geo, channel, unit,
    clicks, impressions, spend -- raw.ad_reporting_current) or already has a
    `units` column. `market_geos` are the market's geos; `market` only
    labels the output. See the module docstring for the convention.
    """
    if baseline_weeks < 1:
        raise ValueError("baseline_weeks must be >= 1")
    if national_sigma_split not in ("proportional", "sqrt_share"):
        raise ValueError("national_sigma_split must be 'proportional' or 'sqrt_share'")
    if baseline not in ("pre_period", "window"):
        raise ValueError("baseline must be 'pre_period' or 'window'")
    if not (np.isfinite(national_split_log_sd) and national_split_log_sd >= 0):
        raise ValueError("national_split_log_sd must be a finite number >= 0")
    daily = _daily_units(daily_media)
    market_geos = list(market_geos)
    data_geos = set(daily["geo"])
    data_channels = set(daily["channel"])
    first_day = daily["date_day"].min() if len(daily) else pd.NaT
    last_day = daily["date_day"].max() if len(daily) else pd.NaT
    by_channel = {ch: g.set_index("date_day").sort_index() for ch, g in daily.groupby("channel")}

    converted: list[dict] = []
    rejected: list[dict] = []

    for rec in tests.to_dict("records"):
        test_id = rec.get("test_id")
        channel = rec.get("channel")
        geo = None if _blank(rec.get("geo")) else str(rec.get("geo")).strip()
        start = pd.to_datetime(rec.get("start_date"), errors="coerce")
        end = pd.to_datetime(rec.get("end_date"), errors="coerce")
        base = {"test_id": test_id, "market": market, "channel": channel, "geo": geo,
                "start_date": start.date() if pd.notna(start) else None,
                "end_date": end.date() if pd.notna(end) else None,
                "delta_spend": rec.get("delta_spend"), "delta_y": rec.get("delta_y"),
                "sigma": rec.get("sigma")}

        def reject(reason: str, detail: str) -> None:
            rejected.append({**base, "reason": reason, "detail": detail})

        # Another market's geo is simply not ours (checked before anything else
        # about the test, so a bad test of another market is that market's rejection).
        if geo is not None and geo in data_geos and geo not in market_geos:
            continue
        if channel not in data_channels:
            reject("unknown_channel", f"channel {channel!r} is not in the media data "
                                      f"(channels: {sorted(data_channels)})")
            continue
        if geo is not None and geo not in data_geos:
            reject("unknown_geo", f"geo {geo!r} is not in the media data (geos: {sorted(data_geos)})")
            continue
        if pd.isna(start) or pd.isna(end) or end < start:
            reject("invalid_window", f"window {base['start_date']} .. {base['end_date']} is not a "
                                     "valid date range")
            continue
        start, end = start.normalize(), end.normalize()
        if start < first_day or end > last_day:
            reject("window_outside_data", f"window {start.date()} .. {end.date()} is outside the data's "
                                          f"dates {first_day.date()} .. {last_day.date()}")
            continue
        try:
            d_spend = float(rec.get("delta_spend"))
            d_y = float(rec.get("delta_y"))
            sig = float(rec.get("sigma"))
        except (TypeError, ValueError):
            reject("invalid_values", "delta_spend, delta_y and sigma must be numbers")
            continue
        if not (np.isfinite(d_spend) and np.isfinite(d_y) and np.isfinite(sig)) or sig <= 0:
            reject("invalid_values", f"delta_spend={d_spend}, delta_y={d_y}, sigma={sig}: need finite "
                                     "values and sigma > 0")
            continue
        scope = "window" if _blank(rec.get("scope")) else str(rec.get("scope")).strip().lower()
        if scope not in SCOPES:
            reject("invalid_scope", f"scope {rec.get('scope')!r} must be one of {SCOPES} (empty = window)")
            continue

        ch = by_channel[channel]
        window = ch.loc[start:end]
        n_weeks = ((end - start).days + 1) / 7.0
        base_start = start - pd.Timedelta(days=7 * baseline_weeks)
        pre = ch.loc[base_start: start - pd.Timedelta(days=1)]
        base_days = (start - max(base_start, first_day)).days

        if geo is None:
            spend_by_geo = window.groupby("geo")["spend"].sum()
            total = float(spend_by_geo.sum())
            if total <= 0:
                reject("no_delivery_in_window", f"no {channel} spend in any geo in the window: "
                                                "cannot split the national test")
                continue
            shares = {g: float(spend_by_geo.get(g, 0.0)) / total for g in sorted(spend_by_geo.index)}
            # a geo without spend in the window had nothing added: it gets no row
            targets = [(g, s) for g, s in shares.items() if g in market_geos and s > 0]
            if not targets:
                reject("no_delivery_in_window", f"no {channel} spend in this market's geos in the "
                                                "window: no share of the national test")
                continue
            national = True
        else:
            targets = [(geo, 1.0)]
            national = False

        rows: list[dict] = []
        problem: tuple[str, str] | None = None
        for g, share in targets:
            w = window[window["geo"] == g]
            units, spend = float(w["units"].sum()), float(w["spend"].sum())
            unit = w["unit"].dropna().iloc[0] if w["unit"].notna().any() else (
                ch["unit"].dropna().iloc[0] if ch["unit"].notna().any() else None)
            if unit == "spend":
                cpu = 1.0
            elif units > 0 and spend > 0:
                cpu = spend / units
            else:
                problem = ("no_delivery_in_window", f"geo {g}: units={units:g}, spend={spend:g} in the "
                                                    "window, so no cost per unit")
                break
            delta_x = (d_spend * share / n_weeks) / cpu
            if baseline == "window":
                # the window's own level without the test: its weekly units less the added ones
                x = max(units / n_weeks - delta_x, 0.0)
            elif base_days <= 0:
                problem = ("no_baseline", f"no data before {start.date()} to measure the baseline level")
                break
            else:
                b = pre[pre["geo"] == g]
                x = float(b["units"].sum()) / (base_days / 7.0)
            sigma_share = share if national_sigma_split == "proportional" else np.sqrt(share)
            rows.append({
                "test_id": test_id, "market": market, "channel": channel, "geo": g,
                "x": x,
                "delta_x": delta_x,
                "delta_y": d_y * share / n_weeks,
                "sigma": sig * sigma_share / n_weeks,
                "delta_y_window": d_y * share,
                "weeks_in_window": n_weeks,
                "cost_per_unit_used": cpu,
                "start_date": start.date(), "end_date": end.date(), "unit": unit,
                "delta_spend": d_spend * share, "geo_share": share, "national": national,
            })
        if problem is not None:
            reject(*problem)
            continue
        # One likelihood term per test and market: the market's spend share of a national test's
        # readout, with sigma x sqrt(share) so the markets' terms add up to the reported variance,
        # widened by the split's own error (the market's lift share differs from its spend share
        # as far as its ROAS differs from the other markets'; measured in the recovery bench: up to
        # 0.48 in log ROAS, where a spend split alone put a market's term 1.8 sigma off its true lift).
        market_share = float(sum(r["geo_share"] for r in rows))
        split_sd = abs(d_y) * market_share * (1.0 - market_share) * national_split_log_sd
        sigma_test = float(np.sqrt(sig ** 2 * market_share + split_sd ** 2))
        for r in rows:
            r.update(scope=scope, delta_y_test=d_y * market_share, sigma_test=sigma_test,
                     market_share=market_share)
        converted.extend(rows)

    conv = pd.DataFrame(converted, columns=CONVERTED_COLUMNS)
    for c in ["x", "delta_x", "delta_y", "sigma", "delta_y_window", "weeks_in_window",
              "cost_per_unit_used", "delta_spend", "geo_share", "delta_y_test", "sigma_test", "market_share"]:
        conv[c] = conv[c].astype(float)
    conv["national"] = conv["national"].astype(bool)
    rej = pd.DataFrame(rejected, columns=REJECTED_COLUMNS)
    return conv.reset_index(drop=True), rej.reset_index(drop=True)


def with_scope(tests: pd.DataFrame, csv_path) -> pd.DataFrame:
    """`tests` with the optional `scope` column of lift_tests.csv joined by test_id.

    For lift-test frames read without ingestion (the benchmarks read the CSVs with pandas);
    raw.lift_tests carries `scope` itself and passes through unchanged. A missing file or
    column means every test is `window`. An invalid value is rejected by :func:`convert_lift_tests`.
    """
    from pathlib import Path

    out = tests.copy()
    if "scope" in out.columns:
        return out
    out["scope"] = None
    path = Path(csv_path)
    if not path.is_file():
        return out
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception:  # unreadable here means ingestion already failed on it
        return out
    if "scope" not in raw.columns or "test_id" not in raw.columns:
        return out
    scope = raw.assign(test_id=raw["test_id"].str.strip()).drop_duplicates("test_id").set_index("test_id")["scope"]
    out["scope"] = out["test_id"].map(scope).where(lambda s: s.notna() & (s.str.strip() != ""), None)
    return out
