"""Model input of one market: staging tables pivoted to the wide, complete-week frame pymc-marketing fits.

``prepare_model_data`` turns ``staging.media_weekly`` / ``staging.kpi_weekly`` (and
``marts.cost_per_unit``, controls) into :class:`ModelData`; ``lift_tests_for_model``
picks the converted lift-test rows a model of that data can use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from mmm_pipeline.model.config import NATIONAL, ModelError



@dataclass
class ModelData:
    """Wide, complete-week model input of one market."""

    X: pd.DataFrame            # date, [geo], channels..., controls...
    y: pd.Series               # KPI, aligned with X
    cost_per_unit: pd.DataFrame  # date, [geo], channels (money per unit, > 0)
    channels: list[str]
    geos: list[str]
    kpi_name: str
    dims: tuple[str, ...]
    weeks: list[pd.Timestamp]
    dropped_weeks: list[pd.Timestamp]
    control_scales: dict[str, float] = field(default_factory=dict)
    # the level each control's contribution is measured from (0, or its mean when it is never 0)
    control_references: dict[str, float] = field(default_factory=dict)


def _to_ts(s: pd.Series) -> pd.Series:
    return pd.to_datetime(s).astype("datetime64[ns]")


def prepare_model_data(
    media_weekly: pd.DataFrame,
    kpi_weekly: pd.DataFrame,
    cost_per_unit: pd.DataFrame | None = None,
    *,
    geos: Sequence[str] | None = None,
    control_columns: Sequence[str] = (),
    controls: pd.DataFrame | None = None,
    control_transform: tuple[dict[str, float], dict[str, float]] | None = None,
) -> ModelData:
    """Pivot staging tables to the model's wide frame, complete weeks only.

    A week is modelled when it is complete in both media and KPI (the
    `incomplete_week` flags) and every geo has a KPI value for it; the grid
    must be rectangular (every geo x week x channel), otherwise ModelError.
    `control_transform` = (references, scales) of an earlier fit, so held-out weeks are scaled as the
    weeks that model was fitted on.
    """
    media = media_weekly.copy()
    kpi = kpi_weekly.copy()
    for df, name in ((media, "media_weekly"), (kpi, "kpi_weekly")):
        missing = {"week_start", "geo"} - set(df.columns)
        if missing:
            raise ModelError(f"{name} lacks column(s) {sorted(missing)}")
        df["week_start"] = _to_ts(df["week_start"])
    if geos is not None:
        geos = list(geos)
        media = media[media["geo"].isin(geos)]
        kpi = kpi[kpi["geo"].isin(geos)]
        absent = sorted(set(geos) - set(media["geo"]) | set(geos) - set(kpi["geo"]))
        if absent:
            raise ModelError(f"geo(s) {absent} have no media or KPI rows")
    if media.empty or kpi.empty:
        raise ModelError("no media or KPI rows to model")
    kpi_names = kpi["kpi_name"].dropna().unique().tolist() if "kpi_name" in kpi else []
    if len(kpi_names) > 1:
        raise ModelError(f"kpi_weekly holds several KPIs {kpi_names}; model one at a time")
    kpi_name = kpi_names[0] if kpi_names else "kpi"

    bad_weeks = set()
    if "incomplete_week" in media:
        bad_weeks |= set(media.loc[media["incomplete_week"].astype(bool), "week_start"])
    if "incomplete_week" in kpi:
        bad_weeks |= set(kpi.loc[kpi["incomplete_week"].astype(bool), "week_start"])
    all_weeks = sorted(set(media["week_start"]) | set(kpi["week_start"]))
    media = media[~media["week_start"].isin(bad_weeks)]
    kpi = kpi[~kpi["week_start"].isin(bad_weeks)]

    wide = media.pivot_table(index=["week_start", "geo"], columns="channel", values="units",
                             aggfunc="sum")
    channels = sorted(wide.columns.tolist())
    for reserved in ("date", "geo", "channel", "control", kpi_name):
        if reserved in channels:
            raise ModelError(f"channel name {reserved!r} is reserved")
    y = kpi.groupby(["week_start", "geo"])["kpi_value"].sum()
    geo_list = sorted(set(wide.index.get_level_values("geo")))
    weeks = sorted(set(wide.index.get_level_values("week_start")) & set(y.index.get_level_values("week_start")))
    if len(weeks) < 10:
        raise ModelError(f"only {len(weeks)} complete weeks with both media and KPI; need >= 10")
    grid = pd.MultiIndex.from_product([weeks, geo_list], names=["week_start", "geo"])
    missing_media = grid.difference(wide.index)
    missing_kpi = grid.difference(y.index)
    if len(missing_kpi):
        raise ModelError(f"KPI missing for {len(missing_kpi)} week x geo cells, e.g. {list(missing_kpi[:3])}")
    if len(missing_media):
        raise ModelError(f"media missing for {len(missing_media)} week x geo cells, e.g. {list(missing_media[:3])}")
    wide = wide.reindex(grid)
    if wide.isna().any().any():
        cols = wide.columns[wide.isna().any()].tolist()
        raise ModelError(f"media units missing (NaN) for channel(s) {cols}")
    if (wide < 0).any().any():
        raise ModelError("negative media units")
    y = y.reindex(grid).astype(float)
    if not np.isfinite(y.to_numpy()).all():
        raise ModelError("KPI has non-finite values")

    national = geo_list == [NATIONAL]
    dims: tuple[str, ...] = () if national else ("geo",)
    X = wide.reset_index().rename(columns={"week_start": "date"})
    X.columns.name = None
    X = X[["date", "geo", *channels]]

    control_scales: dict[str, float] = {}
    control_references: dict[str, float] = {}
    if control_columns:
        if controls is None:
            raise ModelError(f"control columns {list(control_columns)} configured but no controls given")
        c = controls.copy()
        c["week_start"] = _to_ts(c["week_start"])
        missing = set(control_columns) - set(c.columns)
        if missing:
            raise ModelError(f"controls lack column(s) {sorted(missing)}")
        keys = ["week_start", "geo"] if "geo" in c.columns else ["week_start"]
        c = c[[*keys, *control_columns]].rename(columns={"week_start": "date"})
        X = X.merge(c, on=["date", "geo"] if "geo" in keys else ["date"], how="left")
        gaps = X[list(control_columns)].isna()
        if gaps.any().any():
            cols = gaps.columns[gaps.any()].tolist()
            first = X.loc[gaps.any(axis=1), ["date", "geo"]].head(3).astype(str).values.tolist()
            raise ModelError(f"control(s) {cols} missing for {int(gaps.any(axis=1).sum())} modelled week x geo "
                             f"cells, e.g. {first} (see the staging_controls_weekly_contract check)")
        for col in control_columns:
            # A control's contribution is measured from a reference level: 0 when the data hold 0 (promotion
            # days, a holiday flag: "no promotion" is a real state), else its mean (a price or a temperature,
            # whose 0 is never seen; measured from 0, its "contribution" would be a copy of the intercept).
            values = X[col].astype(float)
            if control_transform is not None:
                reference, scale = control_transform[0][col], control_transform[1][col]
            else:
                reference = 0.0 if (values == 0).any() else float(values.mean())
                scale = float(np.abs(values - reference).max()) or 1.0
            control_references[col] = reference
            control_scales[col] = scale
            X[col] = (values - reference) / scale

    cpu_wide = None
    if cost_per_unit is not None:
        cpu = cost_per_unit.copy()
        cpu["week_start"] = _to_ts(cpu["week_start"])
        cpu = cpu[cpu["geo"].isin(geo_list)]
        cpu_wide = cpu.pivot_table(index=["week_start", "geo"], columns="channel",
                                   values="cost_per_unit", aggfunc="mean").reindex(grid)
        cpu_wide = cpu_wide.reindex(columns=channels)
        if cpu_wide.isna().any().any() or (cpu_wide <= 0).any().any():
            bad = cpu_wide.columns[(cpu_wide.isna() | (cpu_wide <= 0)).any()].tolist()
            raise ModelError(f"cost_per_unit missing or not > 0 for channel(s) {bad} in modelled weeks")
        cpu_wide = cpu_wide.reset_index().rename(columns={"week_start": "date"})
        cpu_wide.columns.name = None
        if national:
            cpu_wide = cpu_wide.drop(columns="geo")
    if national:
        X = X.drop(columns="geo")
    y = pd.Series(y.to_numpy(), name=kpi_name)
    return ModelData(
        X=X.reset_index(drop=True), y=y, cost_per_unit=cpu_wide, channels=channels, geos=geo_list,
        kpi_name=kpi_name, dims=dims, weeks=list(weeks),
        dropped_weeks=sorted(w for w in all_weeks if w in bad_weeks), control_scales=control_scales,
        control_references=control_references,
    )



def lift_columns(likelihood: Literal["window", "steady_state"], geo_model: bool) -> list[str]:
    """The columns of a converted lift test that the likelihood reads: the window design's
    (`lift_likelihood.DESIGN_COLUMNS`), or pymc-marketing's lift measurements (geo only in a geo model)."""
    if likelihood == "window":
        from mmm_pipeline.model.lift_likelihood import DESIGN_COLUMNS

        return list(DESIGN_COLUMNS)
    return ["channel", "geo", "x", "delta_x", "delta_y", "sigma"] if geo_model else ["channel", "x", "delta_x", "delta_y", "sigma"]


def lift_tests_for_model(lift_tests: pd.DataFrame, data: ModelData, *, keep_extra: bool = False,
                         likelihood: Literal["window", "steady_state"] = "window") -> pd.DataFrame:
    """The rows of converted lift tests that this model can use.

    `likelihood="window"` (the default): the columns the window likelihood needs
    (`lift_likelihood.DESIGN_COLUMNS`: test_id, channel, geo, window dates,
    delta_spend, cost_per_unit_used, delta_y_test, sigma_test, scope), one row per test and geo.
    `"steady_state"`: pymc-marketing's shape, channel, geo, x, delta_x, delta_y,
    sigma (weekly, in the model's original units; pymc-marketing scales them); a
    national model the same without geo. `keep_extra` keeps the other columns
    (test_id, ...) of the rows used.
    """
    nums = (["delta_spend", "cost_per_unit_used", "delta_y_test", "sigma_test"] if likelihood == "window"
            else ["x", "delta_x", "delta_y", "sigma"])
    need = lift_columns(likelihood, True)
    missing = set(need) - set(lift_tests.columns) - ({"geo"} if likelihood == "steady_state" else set())
    if missing:
        raise ModelError(f"lift tests lack column(s) {sorted(missing)} for the {likelihood} likelihood "
                         "(re-materialize lift_tests_model_units)")
    df = lift_tests[lift_tests["channel"].isin(data.channels)]
    if data.dims:
        df = df[df["geo"].isin(data.geos)]
    cols = lift_columns(likelihood, bool(data.dims))
    df = (df if keep_extra else df[cols]).copy().reset_index(drop=True)
    for c in nums:
        df[c] = df[c].astype(float)
    sig = "sigma_test" if likelihood == "window" else "sigma"
    df = df[(df[sig] > 0) & np.isfinite(df[nums]).all(axis=1)]
    if likelihood == "window":
        df = df[df["cost_per_unit_used"] > 0]
    return df.reset_index(drop=True)

