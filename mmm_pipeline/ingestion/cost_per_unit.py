"""Cost per unit: money per delivery unit, per week x geo x channel, and its forecast.

`cost_per_unit = spend / units` (1.0 for spend channels, whose unit is money).
pymc-marketing rejects a zero or missing rate anywhere, so weeks where it is
undefined (zero units or zero spend) are *imputed*, in this order:
  1. the spend-weighted rate (sum spend / sum units) of the observed weeks within
     +/- `window` weeks of the same geo and channel;
  2. the geo and channel's spend-weighted rate over all observed weeks;
  3. the channel's spend-weighted rate over all geos.
A channel with no week having both spend and units has no rate at all and
raises ValueError naming it.

Forecast for the planning horizon (starts the Monday after the last complete
week): the level is the spend-weighted rate of the trailing `trailing` complete
observed weeks; when at least one year plus that trailing window of history
exists, each horizon week is multiplied by last year's seasonal ratio: the
rate in the +/-2 weeks around the same week a year earlier divided by the
trailing-window rate a year earlier (method `trailing_seasonal`); otherwise the
level is used flat (method `trailing`).
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

CPU_COLUMNS = [
    "week_start", "geo", "channel", "unit", "units", "spend", "cost_per_unit", "cpm", "imputed",
    "imputation",
]
FORECAST_COLUMNS = ["week_start", "geo", "channel", "unit", "cost_per_unit", "method"]


def _rate(spend: np.ndarray, units: np.ndarray) -> float:
    u = units.sum()
    return float(spend.sum() / u) if u > 0 and spend.sum() > 0 else np.nan


def compute_cost_per_unit(media_weekly: pd.DataFrame, window: int = 4) -> pd.DataFrame:
    df = media_weekly.sort_values(["channel", "geo", "week_start"]).reset_index(drop=True).copy()
    observed = (df["units"] > 0) & (df["spend"] > 0)
    df["cost_per_unit"] = np.where(observed, df["spend"] / df["units"].where(observed, 1.0), np.nan)
    df["imputed"] = False
    df["imputation"] = None

    spend_obs = df["spend"].where(observed, 0.0)
    units_obs = df["units"].where(observed, 0.0)
    channel_rates = {
        ch: _rate(spend_obs[idx].to_numpy(), units_obs[idx].to_numpy())
        for ch, idx in df.groupby("channel").groups.items()
    }
    for (geo, channel), idx in df.groupby(["geo", "channel"]).groups.items():
        idx = np.asarray(idx)
        if df.loc[idx[0], "unit"] == "spend":
            df.loc[idx, "cost_per_unit"] = 1.0
            continue
        missing = idx[~observed[idx].to_numpy()]
        if not len(missing):
            continue
        s = spend_obs[idx].rolling(2 * window + 1, center=True, min_periods=1).sum().to_numpy()
        u = units_obs[idx].rolling(2 * window + 1, center=True, min_periods=1).sum().to_numpy()
        local = pd.Series(np.where(u > 0, s / np.where(u > 0, u, 1.0), np.nan), index=idx)
        geo_rate = _rate(spend_obs[idx].to_numpy(), units_obs[idx].to_numpy())
        for i in missing:
            if np.isfinite(local[i]) and local[i] > 0:
                value, how = local[i], f"window_{window}w"
            elif np.isfinite(geo_rate):
                value, how = geo_rate, "geo_channel_mean"
            elif np.isfinite(channel_rates[channel]):
                value, how = channel_rates[channel], "channel_mean"
            else:
                raise ValueError(
                    f"channel {channel!r}: no week has both spend and units, so its cost per unit "
                    "cannot be derived; check the channel's unit in channels.csv"
                )
            df.loc[i, ["cost_per_unit", "imputed", "imputation"]] = [value, True, how]
    df["cpm"] = np.where(df["unit"] == "impressions", 1000.0 * df["cost_per_unit"], np.nan)
    out = df.sort_values(["week_start", "geo", "channel"]).reset_index(drop=True)
    return out[CPU_COLUMNS]


def forecast_cost_per_unit(
    cpu: pd.DataFrame, complete_weeks: list[date], horizon_weeks: int, trailing: int = 8
) -> pd.DataFrame:
    if not complete_weeks:
        raise ValueError("no complete week in the data: cannot forecast cost per unit")
    last = max(complete_weeks)
    horizon = [last + timedelta(weeks=h + 1) for h in range(horizon_weeks)]
    complete = cpu[cpu["week_start"].isin(set(complete_weeks))]
    rows = []
    for (geo, channel), g in complete.groupby(["geo", "channel"]):
        unit = g["unit"].iloc[0]
        if unit == "spend":
            rows += [(w, geo, channel, unit, 1.0, "spend_unit") for w in horizon]
            continue
        g = g.set_index("week_start").sort_index()
        obs = g[(g["units"] > 0) & (g["spend"] > 0)]

        def rate_between(lo: date, hi: date) -> float:
            sel = obs[(obs.index >= lo) & (obs.index <= hi)]
            return _rate(sel["spend"].to_numpy(), sel["units"].to_numpy())

        trail_lo = last - timedelta(weeks=trailing - 1)
        level = rate_between(trail_lo, last)
        if not np.isfinite(level):
            level = _rate(obs["spend"].to_numpy(), obs["units"].to_numpy())
        if not np.isfinite(level):
            level = float(g["cost_per_unit"].mean())  # every week imputed: use the imputed rates
        year = timedelta(weeks=52)
        base_last_year = rate_between(trail_lo - year, last - year)
        seasonal = g.index.min() <= trail_lo - year and np.isfinite(base_last_year)
        for w in horizon:
            factor = 1.0
            if seasonal:
                same = rate_between(w - year - timedelta(weeks=2), w - year + timedelta(weeks=2))
                if np.isfinite(same):
                    factor = same / base_last_year
            rows.append((w, geo, channel, unit, level * factor,
                         "trailing_seasonal" if seasonal else "trailing"))
    return pd.DataFrame(rows, columns=FORECAST_COLUMNS).sort_values(
        ["week_start", "geo", "channel"]).reset_index(drop=True)


def plot_cost_per_unit(cpu: pd.DataFrame, forecast: pd.DataFrame | None, channel: str):
    """One figure per channel: weekly rate per geo, imputed weeks marked, forecast dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = cpu[cpu["channel"] == channel]
    unit = data["unit"].iloc[0]
    fig, ax = plt.subplots(figsize=(9, 4), dpi=90)
    for geo, g in data.groupby("geo"):
        line, = ax.plot(pd.to_datetime(g["week_start"]), g["cost_per_unit"], lw=1.2, label=geo)
        imp = g[g["imputed"]]
        ax.scatter(pd.to_datetime(imp["week_start"]), imp["cost_per_unit"], s=12, marker="x",
                   color=line.get_color())
        if forecast is not None:
            f = forecast[(forecast["channel"] == channel) & (forecast["geo"] == geo)]
            ax.plot(pd.to_datetime(f["week_start"]), f["cost_per_unit"], ls="--", color=line.get_color())
    ylabel = {"impressions": "cost per impression", "clicks": "cost per click", "spend": "money per money"}[unit]
    ax.set_title(f"{channel}: weekly {ylabel} (x = imputed, dashed = forecast)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig
