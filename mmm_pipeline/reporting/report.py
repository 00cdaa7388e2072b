"""One self-contained HTML report per market and model version, and an index of all of them.

The report is a reader of what the pipeline already wrote: the `marts.*_latest`
views of one market, the load log and quarantine, and the Data Docs site. It
fits nothing and recomputes no posterior quantity (a market renders in about a
second); where the marts hold no figure for a question (no out-of-sample
validation, no control variables, an interval of a sum across geos) the section
says so in words instead of inventing a number.

The HTML has no external reference: plots are PNG data URIs, styles are inline,
so the file opens from disk or as an e-mail attachment. Beside each report a
`<model_version>.json` sidecar holds what `index.html` lists.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Callable

import pandas as pd

from mmm_pipeline.paths import path_inside, safe_name
from mmm_pipeline.reporting.charts import (  # noqa: F401  (the formats are this module's API too)
    HDI_LABEL, MONEY_KPI_WORDS, html_table, interval, money, pct, plot_contributions, plot_curves, plot_fit,
    plot_headline, plot_lift, plot_plan, plot_roas, png_image, ratio,
)

TEMPLATE = Path(__file__).with_name("report_template.html.j2")
INDEX_TEMPLATE = Path(__file__).with_name("report_index.html.j2")

SECTIONS = [
    ("headline", "1. Headline"),
    ("fit", "2. Does the model fit?"),
    ("contributions", "3. What drove the KPI?"),
    ("economics", "4. What does each channel return?"),
    ("curves", "5. What happens if we spend more or less?"),
    ("calibration", "6. Do the lift tests agree?"),
    ("held_out", "7. Does the model predict experiments it has not seen?"),
    ("plan", "8. The budget plan"),
    ("data", "9. The data behind it"),
]

# Every query reads one market's rows; the market is always a bound parameter.
_MARKET_TABLES = {
    "runs": "marts.model_runs_latest",
    "fit": "marts.model_fit_latest",
    "diagnostics": "marts.model_diagnostics_latest",
    "contributions": "marts.contributions_latest",
    "roas": "marts.channel_roas_latest",
    "roas_market": "marts.channel_roas_market_latest",
    "roas_total": "marts.channel_roas_market_total_latest",
    "plan": "marts.allocation_plan_latest",
    "curves": "marts.response_curves_latest",
    "allocation": "marts.budget_allocation_latest",
    "calibration": "marts.calibration_report_latest",
    "lift_fit": "marts.lift_test_fit_latest",
    "lift_tests": "marts.lift_tests_latest",
    "validation": "marts.model_validation_latest",
    "lift_holdout": "marts.lift_test_holdout_latest",
    "consistency": "marts.calibration_consistency_latest",
}


class ReportError(RuntimeError):
    """The marts do not hold what a report needs (e.g. no fitted model for the market)."""


@dataclass
class ReportInputs:
    market: str
    currency: str
    kpi_name: str
    tables: dict[str, pd.DataFrame]
    load_log: pd.DataFrame
    quarantine: pd.DataFrame
    imputed: pd.DataFrame
    freshness: pd.DataFrame
    freshness_days: int = 8
    bounds: dict[str, Callable[[str, str], tuple[float, float] | None]] = field(default_factory=dict)
    data_docs_index: Path | None = None
    validations: pd.DataFrame = field(default_factory=pd.DataFrame)
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))

    def t(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    @property
    def kpi_is_money(self) -> bool:
        return any(w in self.kpi_name.lower() for w in MONEY_KPI_WORDS)


@dataclass
class Report:
    market: str
    model_version: str
    variant: str
    gated: bool
    html: str
    summary_markdown: str
    sections: list[str]
    headline: dict


# --------------------------------------------------------------------------- reading


def _table_exists(con, qualified: str) -> bool:
    schema, name = qualified.split(".")
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? "
                            "AND table_name = ?", [schema, name]).fetchone()[0])


def load_inputs(con, market: str, *, currency: str, freshness_days: int = 8, bounds=None,
                data_docs_index: Path | None = None, today: date | None = None) -> ReportInputs:
    """Read one market's marts and the data-quality tables (no model is loaded)."""
    tables = {}
    for key, table in _MARKET_TABLES.items():
        if _table_exists(con, table):
            tables[key] = con.execute(f"SELECT * FROM {table} WHERE market = ?", [market]).df()
    runs = tables.get("runs", pd.DataFrame())
    if runs.empty:
        raise ReportError(f"market {market!r} has no fitted model in marts.model_runs_latest")
    kpi = con.execute("SELECT any_value(kpi_name) FROM raw.kpi").fetchone()[0] or "KPI"
    load_log = con.execute(
        "SELECT kind, source_file, event, rows_read, rows_loaded, rows_quarantined, logged_at FROM raw.load_log "
        "QUALIFY row_number() OVER (PARTITION BY kind, source_file ORDER BY logged_at DESC) = 1 "
        "ORDER BY kind, source_file").df()
    quarantine = con.execute(
        "SELECT kind, reason, count(*) AS rows FROM raw.quarantine WHERE kind NOT LIKE 'lift_test_conversion:%' "
        "OR kind = ? GROUP BY 1, 2 ORDER BY 3 DESC", [f"lift_test_conversion:{market}"]).df()
    geos = sorted(set(runs_geos(tables)))
    imputed = pd.DataFrame()
    if _table_exists(con, "marts.cost_per_unit_latest") and geos:
        imputed = con.execute(
            "SELECT channel, geo, count(*) FILTER (WHERE imputed) AS imputed_weeks, count(*) AS weeks, "
            "string_agg(DISTINCT imputation, ', ') FILTER (WHERE imputed) AS how "
            "FROM marts.cost_per_unit_latest WHERE list_contains(?::VARCHAR[], geo) GROUP BY 1, 2 ORDER BY 1, 2",
            [geos]).df()
    today = today or date.today()
    fresh = []
    for what, table in (("ad reporting", "raw.ad_reporting_current"), ("KPI", "raw.kpi_current")):
        newest = con.execute(f"SELECT max(date_day) FROM {table}").fetchone()[0] if _table_exists(con, table) else None
        age = (today - newest).days if newest else None
        fresh.append({"source": what, "newest_day": newest, "age_days": age,
                      "fresh": age is not None and age <= freshness_days})
    return ReportInputs(market=market, currency=currency, kpi_name=kpi, tables=tables, load_log=load_log,
                        quarantine=quarantine, imputed=imputed, freshness=pd.DataFrame(fresh),
                        freshness_days=freshness_days, bounds=bounds or {}, data_docs_index=data_docs_index,
                        validations=latest_validations(data_docs_index) if data_docs_index else pd.DataFrame())


def latest_validations(site_index: Path) -> pd.DataFrame:
    """The newest GX validation result of every suite: suite, run time, success, counts, its Data Docs page.

    Read from the context's stored results (`gx/uncommitted/validations/<suite>/<run>/<time>/<batch>.json`);
    the page is the same path under the site's `validations/`.
    """
    site = Path(site_index).parent
    store = site.parents[1] / "validations"
    newest: dict[str, tuple] = {}
    for f in store.glob("*/*/*/*.json"):
        suite, _, run_time, _ = f.relative_to(store).parts
        if suite not in newest or run_time > newest[suite][0]:
            newest[suite] = (run_time, f)
    rows = []
    for suite, (run_time, f) in sorted(newest.items()):
        try:
            res = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        st = res.get("statistics", {})
        page = site / "validations" / f.relative_to(store).with_suffix(".html")
        rows.append({"suite": suite, "validated_at": run_time, "success": bool(res.get("success")),
                     "expectations": st.get("evaluated_expectations"),
                     "failed": st.get("unsuccessful_expectations"), "page": page if page.exists() else None})
    return pd.DataFrame(rows)


def runs_geos(tables: dict[str, pd.DataFrame]) -> list[str]:
    for key in ("roas", "fit", "contributions"):
        df = tables.get(key)
        if df is not None and len(df) and "geo" in df:
            return sorted(df["geo"].astype(str).unique())
    return []


# --------------------------------------------------------------------------- the report


def _primary(runs: pd.DataFrame) -> pd.Series:
    """The variant the headline and the plan speak for: calibrated when it was fitted, unless it is
    ungated and the uncalibrated model is gated (as budget_allocation's default plan chooses)."""
    by = runs.set_index("variant")
    gated = [v for v in ("calibrated", "uncalibrated") if v in by.index and bool(by.loc[v, "gated"])]
    if gated:
        return by.loc[gated[0]]
    return by.loc["calibrated"] if "calibrated" in by.index else by.iloc[0]


def _plan_row(inp: "ReportInputs", allocation_id: str):
    plans = inp.t("plan")
    hit = plans[plans["allocation_id"] == allocation_id] if len(plans) else plans
    return hit.iloc[0] if len(hit) else None


def _channel_totals(roas: pd.DataFrame) -> pd.DataFrame:
    g = roas.groupby(["variant", "channel"], as_index=False)[["spend", "contribution_mean"]].sum()
    g["roas"] = g["contribution_mean"] / g["spend"]
    g["cost_per_incremental_kpi"] = g["spend"] / g["contribution_mean"]
    w = roas.assign(_w=roas["current_weekly_spend"] * roas["mroas_mean"])
    m = w.groupby(["variant", "channel"], as_index=False)[["_w", "current_weekly_spend"]].sum()
    m["mroas"] = m["_w"] / m["current_weekly_spend"]
    return g.merge(m[["variant", "channel", "mroas"]], on=["variant", "channel"])


def build_report(inp: ReportInputs, *, index_href: str = "../../index.html") -> Report:
    from jinja2 import Environment, select_autoescape

    cur, kpi = inp.currency, inp.kpi_name
    kfmt = (lambda v: money(v, cur)) if inp.kpi_is_money else (lambda v: f"{v:,.0f} {kpi}")
    m = lambda v: money(v, cur)  # noqa: E731
    runs = inp.t("runs")
    prim = _primary(runs)
    variant, model_version = str(prim.name), str(prim["model_version"])
    gated = bool(prim["gated"])
    ungated_variants = sorted(runs.loc[~runs["gated"].astype(bool), "variant"])
    banner = None
    if ungated_variants:
        why = []
        for r in runs.to_dict("records"):
            if not r["gated"]:
                why.append(f"{r['variant']}: " + (f"fitted in the {r['profile']} profile, gates not enforced"
                                                  if r.get("profile") != "full" else
                                                  f"failed its convergence gate ({r.get('gate_failures') or 'see model_runs'})"))
        banner = ("UNGATED MODEL: do not act on these numbers. " + "; ".join(why) + "." if not gated else
                  f"The headline and the plan use the gated {variant} model; " + "; ".join(why) +
                  ": its rows in the marts say gated = false.")
    # A failed gate blocks the outputs: what the marts then hold comes from an earlier model.
    out_versions = set()
    for key in ("roas", "curves", "allocation"):
        if len(inp.t(key)):
            out_versions |= set(inp.t(key)["model_version"].astype(str))
    earlier = sorted(out_versions - set(runs["model_version"].astype(str)))
    stale_note = (f" The ROAS, curves and budget plan below come from earlier model(s) {', '.join(earlier)}: the "
                  "newest fit was not allowed to update them." if earlier else "")
    if stale_note:
        banner = (banner or "") + stale_note
    sections: dict[str, dict] = {}
    roas = inp.t("roas")
    ch = _channel_totals(roas) if len(roas) else pd.DataFrame()
    chp = ch[ch["variant"] == variant].sort_values("roas", ascending=False) if len(ch) else ch
    contrib = inp.t("contributions")
    contrib_p = contrib[contrib["variant"] == variant] if len(contrib) else contrib
    fit = inp.t("fit")
    fit_p = fit[fit["variant"] == variant] if len(fit) else fit

    # 1. headline
    spend_total = float(roas.loc[roas["variant"] == variant, "spend"].sum()) if len(roas) else float("nan")
    kpi_total = float(fit_p["actual"].sum()) if len(fit_p) else float("nan")
    media = float(contrib_p.loc[contrib_p["component_type"] == "media", "mean"].sum()) if len(contrib_p) else float("nan")
    share = media / kpi_total if kpi_total else float("nan")
    alloc = inp.t("allocation")
    plans = []
    for aid, a in (alloc.groupby("allocation_id", sort=False) if len(alloc) else []):
        plans.append({"id": aid, "gain": float((a["expected_response_mean"] - a["current_response_mean"]).sum()),
                      "expected": float(a["expected_response_mean"].sum()), "current": float(a["current_response_mean"].sum()),
                      "low": float(a["expected_response_hdi_low"].sum()), "high": float(a["expected_response_hdi_high"].sum()),
                      "budget": float(a["total_budget"].iloc[0]), "weeks": int(a["horizon_weeks"].iloc[0]),
                      "variant": a["variant"].iloc[0], "gated": bool(a["gated"].all()), "frame": a})
    main_plan = next((p for p in plans if p["id"] == "default"), plans[0] if plans else None)
    best = chp.iloc[0] if len(chp) else None
    worst = chp.iloc[-1] if len(chp) else None
    geo_roas = roas[roas["variant"] == variant] if len(roas) else roas

    mkt = inp.t("roas_market")
    mkt = mkt[mkt["variant"] == variant].set_index("channel") if len(mkt) else mkt
    total = inp.t("roas_total")
    total = total[total["variant"] == variant] if len(total) else total
    all_media = total.iloc[0] if len(total) else None
    if all_media is not None and kpi_total:
        media = float(all_media["contribution_mean"])
        share = media / kpi_total
        share_note = (f"{HDI_LABEL} {pct(all_media['contribution_hdi_low'] / kpi_total)} to "
                      f"{pct(all_media['contribution_hdi_high'] / kpi_total)}; {kfmt(media)} of {kfmt(kpi_total)}")
    else:
        share_note = f"{kfmt(media)} of {kfmt(kpi_total)}; the interval of the total is not in the marts for this run"
    # Lead with what a lift test of extra spend can vouch for: the channels ranked by marginal ROAS (the
    # market's own, geos added per draw, where the marts have it; else the spend-weighted geo slopes).
    has_market_mroas = len(mkt) and "mroas_mean" in mkt and mkt["mroas_mean"].notna().any()
    if has_market_mroas:
        ranked = mkt.sort_values("mroas_mean", ascending=False)
        best = pd.Series({"channel": ranked.index[0], "mroas": ranked["mroas_mean"].iloc[0]})
        worst = pd.Series({"channel": ranked.index[-1], "mroas": ranked["mroas_mean"].iloc[-1]})
    elif len(chp):
        ranked = chp.sort_values("mroas", ascending=False)
        best, worst = ranked.iloc[0], ranked.iloc[-1]

    def mroas_range(channel):
        if has_market_mroas and channel in mkt.index:
            r = mkt.loc[channel]
            return (f"{HDI_LABEL} {ratio(r['mroas_hdi_low'])} to {ratio(r['mroas_hdi_high'])}: {kpi} from the next "
                    f"{cur} at today's weekly spend")
        d = geo_roas[geo_roas["channel"] == channel]
        return f"geo mROAS from {ratio(d['mroas_mean'].min())} to {ratio(d['mroas_mean'].max())}; no market interval in the marts"

    plan_t = inp.t("plan")
    plan_row = None
    if main_plan and len(plan_t):
        hit = plan_t[plan_t["allocation_id"] == main_plan["id"]]
        plan_row = hit.iloc[0] if len(hit) else None

    facts = [
        ("Spend (training period)", m(spend_total), f"{len(fit_p['week_start'].unique()) if len(fit_p) else '?'} weeks, "
         f"{len(runs_geos(inp.tables))} geos"),
        (f"{kpi} (training period)", kfmt(kpi_total), "actual, from the modelled weeks"),
        (f"Media-driven share of {kpi}", pct(share), share_note),
    ]
    if best is not None:
        facts.append(("Highest marginal ROAS (mROAS)", f"{best['channel']}: {ratio(best['mroas'])}",
                      mroas_range(best["channel"])))
        facts.append(("Lowest marginal ROAS (mROAS)", f"{worst['channel']}: {ratio(worst['mroas'])}",
                      mroas_range(worst["channel"])))
    if main_plan:
        facts.append((f"Recommended plan vs current ({main_plan['id']}, {main_plan['weeks']} weeks)",
                      f"{'+' if main_plan['gain'] >= 0 else ''}{kfmt(main_plan['gain'])}",
                      (f"{HDI_LABEL} {kfmt(plan_row['gain_hdi_low'])} to {kfmt(plan_row['gain_hdi_high'])}; expected "
                       f"{kfmt(plan_row['expected_response_mean'])} vs {kfmt(plan_row['current_response_mean'])} on the "
                       "current plan" if plan_row is not None else
                       f"expected {kfmt(main_plan['expected'])} vs {kfmt(main_plan['current'])} now; the interval of "
                       "the gain is not in the marts for this run")))
    facts.append(("Model", f"{variant} ({model_version})", "gated: passed its convergence gates" if gated
                  else "NOT gated: " + ("fast profile" if prim.get("profile") != "full" else "failed its gates")))
    head_text = (
        f"In market {inp.market}, {m(spend_total)} of media over the training period brought an estimated "
        f"{kfmt(media)} of {kpi} ({pct(share)} of it). "
        + (f"At today's weekly spend, the next {cur} on {best['channel']} brings the most {kpi} "
           f"({ratio(best['mroas'])} per {cur}) and on {worst['channel']} the least ({ratio(worst['mroas'])}): what a "
           "lift test of extra spend measures. " if best is not None else "")
        + (f"Moving the same budget as recommended is expected to change {kpi} by {kfmt(main_plan['gain'])} over "
           f"{main_plan['weeks']} weeks"
           + (f" ({HDI_LABEL} {kfmt(plan_row['gain_hdi_low'])} to {kfmt(plan_row['gain_hdi_high'])}). "
              if plan_row is not None else ". ") if main_plan else "No budget scenario was run. ")
        + ("The model passed its gates." if gated else "The model is NOT gated: treat every number as provisional.")
        + stale_note)
    sections["headline"] = {"text": head_text, "facts": facts,
                            "images": [png_image(plot_headline(chp, cur, kpi), "spend and incremental KPI per channel")]
                            if len(chp) else []}

    # 2. fit
    fit_rows = runs[["variant", "model_version", "profile", "chains", "draws", "max_rhat", "min_ess_bulk", "divergences",
                     "r2", "mape", "coverage_94", "passed_gates", "gated"]].copy()
    diag = inp.t("diagnostics")
    diag_html = "<p>Per-parameter diagnostics are not in the marts for this run (marts.model_diagnostics).</p>"
    if len(diag):
        d = diag.sort_values(["variant", "max_rhat"], ascending=[True, False])[
            ["variant", "parameter", "max_rhat", "min_ess_bulk", "min_ess_tail"]]
        diag_html = html_table(d, {"max_rhat": lambda v: f"{v:.4f}", "min_ess_bulk": lambda v: f"{v:,.0f}",
                               "min_ess_tail": lambda v: f"{v:,.0f}"},
                           flag_rows=(d["max_rhat"] > 1.01) | (d["min_ess_bulk"] < 400))
    val = inp.t("validation")
    if len(val) and (val["geo"] == "market").any():
        mkt_val = val[val["geo"] == "market"].iloc[0]
        verdict = "beats" if bool(mkt_val["beats_baseline"]) else "does <b>not</b> beat"
        oos = (f"<p>Out-of-sample: refitted without its last {int(mkt_val['holdout_weeks'])} complete weeks "
               f"({mkt_val['first_week']} to {mkt_val['last_week']}), the model forecasts them from their media "
               f"with a market MAPE of {pct(mkt_val['model_mape'])} against {pct(mkt_val['baseline_mape'])} for "
               f"the naive forecast ({mkt_val['baseline']}): it {verdict} it; {pct(mkt_val['coverage_94'])} of "
               f"the held-out weeks fall inside its {HDI_LABEL}.</p>"
               + html_table(val[["geo", "model_mape", "baseline_mape", "coverage_94", "model_crps", "baseline_crps",
                                 "beats_baseline"]], {"model_mape": pct, "baseline_mape": pct, "coverage_94": pct,
                                                      "model_crps": kfmt, "baseline_crps": kfmt},
                            flag_rows=~val["beats_baseline"].astype(bool)))
    else:
        oos = \
        "<p class='gap'>Out-of-sample: no out-of-sample validation configured (the marts hold no held-out " \
        "weeks), so only in-sample figures are shown.</p>"
    fit_images = [png_image(plot_fit(fit_p, kpi, cur), "actual vs predicted KPI per geo")] if len(fit_p) else []
    sections["fit"] = {
        "text": (f"The {variant} model explains {pct(prim['r2'])} of the weekly variation of {kpi} in sample "
                 f"(R-squared), misses by {pct(prim['mape'])} on average (MAPE), and {pct(prim['coverage_94'])} of the "
                 f"weeks fall inside its {HDI_LABEL} (should be near 94%). Gates: max R-hat <= 1.01, bulk ESS >= 400, "
                 "no divergences." + ("" if len(fit_p) else " The weekly fit table is not in the marts for this run.")),
        "html": html_table(fit_rows, {"max_rhat": lambda v: f"{v:.4f}", "min_ess_bulk": lambda v: f"{v:,.0f}",
                                  "r2": lambda v: f"{v:.3f}", "mape": pct, "coverage_94": pct})
        + oos + "<h3>Worst R-hat and ESS per parameter group</h3>" + diag_html,
        "images": fit_images}

    # 3. contributions
    if len(contrib_p):
        tot = contrib_p.groupby(["component", "component_type"], as_index=False)["mean"].sum()
        tot["share_of_kpi"] = tot["mean"] / kpi_total if kpi_total else float("nan")
        tot = tot.sort_values("mean", ascending=False).rename(columns={"mean": f"total_{kpi}"})
        no_controls = "control" not in set(contrib_p["component_type"])
        sections["contributions"] = {
            "text": (f"Of {kfmt(kpi_total)} of {kpi}, the baseline (what would happen without media) is "
                     f"{kfmt(tot.loc[tot['component'] == 'baseline', f'total_{kpi}'].sum())}, seasonality "
                     f"{kfmt(tot.loc[tot['component'] == 'seasonality', f'total_{kpi}'].sum())}, and media {kfmt(media)}."
                     + (" Controls: no control variables configured." if no_controls else
                        " Controls (measured from their reference level: 0 when the data hold 0, else their "
                        "mean): " + ", ".join(f"{r.component} {kfmt(getattr(r, f'total_{kpi}'))}"
                                              for r in tot[tot["component_type"] == "control"].itertuples()) + ".")
                     + " The marts hold a 94% interval per week and geo, not one for these sums."),
            "html": html_table(tot, {f"total_{kpi}": kfmt, "share_of_kpi": pct}),
            "images": [png_image(plot_contributions(contrib_p, kpi, cur), "weekly decomposition")]}
    else:
        sections["contributions"] = {"text": "No decomposition in the marts for this market.", "html": "", "images": []}

    # 4. channel economics
    if len(roas):
        # one row per channel, the two variants side by side; short headers so it fits a page
        short = {"uncalibrated": "uncal.", "calibrated": "cal."}
        mk = inp.t("roas_market")
        side = ch[ch["variant"] == variant][["channel", "spend"]].copy()
        fm = {"spend": m}
        horizon = int(roas["planning_horizon_weeks"].dropna().iloc[0]) \
            if "planning_horizon_weeks" in roas and roas["planning_horizon_weeks"].notna().any() else None
        plus10 = f"+10% spend, {horizon} wk" if horizon else "+10% spend"
        intervals = {"mroas_94": ("mroas_hdi_low", "mroas_hdi_high", ratio),
                     "plus10_94": ("response_plus_10pct_hdi_low", "response_plus_10pct_hdi_high", kfmt),
                     "roas_94": ("roas_hdi_low", "roas_hdi_high", ratio)}
        for col, label, f in (("mroas", "mROAS", ratio), ("mroas_94", f"mROAS {HDI_LABEL}", None),
                              ("plus10", f"{kpi}, {plus10}", kfmt), ("plus10_94", f"{plus10} {HDI_LABEL}", None),
                              ("roas", "avg ROAS vs zero", ratio), ("roas_94", f"avg ROAS {HDI_LABEL}", None),
                              ("cost_per_incremental_kpi", f"{cur} per incr. {kpi}", lambda v: money(v, cur, 2))):
            for v in (x for x in ("uncalibrated", "calibrated") if x in set(ch["variant"])):
                name = f"{label} ({short[v]})"
                d = mk[mk["variant"] == v].set_index("channel") if len(mk) else mk
                if col in intervals:
                    lo, hi, fmt = intervals[col]
                    if not len(d) or lo not in d:
                        continue
                    side[name] = side["channel"].map(
                        {c: interval(r[lo], r[hi], fmt) for c, r in d.iterrows()})
                    continue
                if col == "plus10":
                    if not len(d) or "response_plus_10pct_mean" not in d:
                        continue
                    side[name] = side["channel"].map(d["response_plus_10pct_mean"])
                else:
                    side[name] = side["channel"].map(ch[ch["variant"] == v].set_index("channel")[col])
                fm[name] = f
        geo_cols = ["variant", "geo", "channel", "spend", "mroas_mean"]
        if "mroas_hdi_low" in roas:
            geo_cols += ["mroas_hdi_low", "mroas_hdi_high", "response_plus_10pct_mean"]
        per_geo = roas[geo_cols + ["roas_mean", "roas_hdi_low", "roas_hdi_high", "cost_per_incremental_kpi"]
                       ].sort_values(["channel", "geo", "variant"]).copy()
        if "mroas_hdi_low" in per_geo:
            per_geo.insert(per_geo.columns.get_loc("mroas_hdi_low"), "mroas_94", [
                interval(lo, hi, ratio) for lo, hi in zip(per_geo["mroas_hdi_low"], per_geo["mroas_hdi_high"])])
            per_geo = per_geo.drop(columns=["mroas_hdi_low", "mroas_hdi_high"])
        per_geo.insert(per_geo.columns.get_loc("roas_hdi_low"), "roas_94", [
            interval(lo, hi, ratio) for lo, hi in zip(per_geo["roas_hdi_low"], per_geo["roas_hdi_high"])])
        per_geo = per_geo.drop(columns=["roas_hdi_low", "roas_hdi_high"])
        per_geo = per_geo.rename(columns={"mroas_mean": "mROAS", "mroas_94": f"mROAS {HDI_LABEL}",
                                          "response_plus_10pct_mean": f"{kpi}, {plus10}",
                                          "roas_mean": "avg ROAS vs zero", "roas_94": f"avg ROAS {HDI_LABEL}",
                                          "cost_per_incremental_kpi": f"{cur} per incr. {kpi}"})
        sections["economics"] = {
            "text": (f"Act on the first columns. Marginal ROAS (mROAS) is the {kpi} the next {cur} brings at today's "
                     f"weekly spend (the last 13 weeks' mean), and the response to +10% is the extra {kpi} from "
                     f"raising that spend by a tenth for {horizon or 'the planning horizon in'} weeks: what a lift test "
                     f"of extra spend measures, so experiments can check them. Average ROAS is everything a channel "
                     f"did against zero spend over the training period, per {cur} spent: no experiment measures this, "
                     f"and a channel can have a high average ROAS and a low mROAS once it saturates. Cost per "
                     f"incremental {kpi} is in {cur}. The market table adds the geos per posterior draw (so its "
                     f"{HDI_LABEL}s are the market's own); the per-geo table has each geo's. Uncalibrated and "
                     "calibrated side by side."),
            "html": html_table(side, fm) + "<h3>Per geo</h3>" + html_table(
                per_geo, {"spend": m, "avg ROAS vs zero": ratio, "mROAS": ratio, f"{kpi}, {plus10}": kfmt,
                           f"{cur} per incr. {kpi}": lambda v: money(v, cur, 2)}),
            "images": [png_image(plot_roas(roas), "ROAS per channel and geo")]}
    else:
        sections["economics"] = {"text": "No ROAS in the marts for this market.", "html": "", "images": []}

    # 5. response curves
    curves = inp.t("curves")
    cp = curves[curves["variant"] == variant] if len(curves) else curves
    if len(cp):
        now = cp.drop_duplicates(["geo", "channel"])[["geo", "channel", "current_weekly_spend", "max_weekly_spend"]]
        sections["curves"] = {
            "text": (f"Weekly {kpi} a channel brings at each weekly spend ({variant} model, {HDI_LABEL} shaded). Dashed: "
                     "today's weekly spend (last 13 weeks); dotted: the largest weekly spend in the data, beyond which "
                     "the curve is extrapolated."),
            "html": html_table(now, {"current_weekly_spend": m, "max_weekly_spend": m}),
            "images": [png_image(plot_curves(cp, cur, kpi), "response curves in money")]}
    else:
        sections["curves"] = {"text": "No response curves in the marts for this market.", "html": "", "images": []}

    # 6. calibration
    lf, cal = inp.t("lift_fit"), inp.t("calibration")
    if len(lf):
        lft = lf[["test_id", "variant"] + (["geo"] if "geo" in lf else []) + ["observed", "sigma", "predicted_mean",
                                                                              "predicted_hdi_low", "predicted_hdi_high", "z_score"]].copy()
        changed = ""
        if len(cal) and "precision_improvement_pct" in cal:
            c = cal.groupby(["channel", "parameter"], as_index=False)["precision_improvement_pct"].mean()
            changed = "<h3>What calibration changed (HDI narrower by, %, mean over geos)</h3>" + html_table(
                c.pivot(index="channel", columns="parameter", values="precision_improvement_pct").reset_index(),
                {k: (lambda v: f"{v:.1f}") for k in c["parameter"].unique()})
        if len(ch) and {"uncalibrated", "calibrated"} <= set(ch["variant"]):
            r = ch.pivot(index="channel", columns="variant", values="roas").reset_index()
            r["change"] = r["calibrated"] - r["uncalibrated"]
            changed += "<h3>ROAS before and after calibration</h3>" + html_table(r, {k: ratio for k in r.columns if k != "channel"})
        sections["calibration"] = {
            "text": (f"Each lift test measured the KPI its extra spend brought over its readout (the test window, or "
                     f"the window plus carryover for scope 'total'; black, +/- 1.96 sigma); each model predicts the "
                     f"same readout from the actual spend path ({HDI_LABEL}). A calibrated model should agree with "
                     f"the tests (|z| below 2)."),
            "html": html_table(lft, {k: (lambda v: f"{v:,.0f}") for k in
                                 ("observed", "sigma", "predicted_mean", "predicted_hdi_low", "predicted_hdi_high")}
                           | {"z_score": lambda v: f"{v:.2f}"}, flag_rows=lft["z_score"].abs() > 2) + changed,
            "images": [png_image(plot_lift(lf), "lift tests measured vs predicted")]}
    else:
        sections["calibration"] = {"text": "No calibrated model for this market (no valid lift test), so there is "
                                           "nothing to compare.", "html": "", "images": []}

    # 7. held-out experiments and the calibration consistency check
    sections["held_out"] = _held_out_section(inp.t("lift_holdout"), inp.t("consistency"), kpi)

    # 8. budget plan
    if plans:
        parts, imgs = [], []
        for p in plans:
            a = p["frame"].copy()
            bound = inp.bounds.get(p["id"])
            at_bound = []
            for r in a.itertuples():
                b = bound(r.geo, r.channel) if bound else None
                ratio_ = r.optimal_spend / r.current_spend if r.current_spend else float("nan")
                at_bound.append(bool(b) and any(abs(ratio_ - x) < 1e-3 for x in b))
            a["at_bound"] = at_bound
            a["change"] = a["optimal_spend"] - a["current_spend"]
            a["expected_94"] = [interval(lo, hi, kfmt) for lo, hi in
                                zip(a["expected_response_hdi_low"], a["expected_response_hdi_high"])]
            t = a[["geo", "channel", "current_spend", "optimal_spend", "change", "current_response_mean",
                   "expected_response_mean", "expected_94", "at_bound", "extrapolated"]]
            parts.append(
                f"<h3>Scenario {html.escape(str(p['id']))}</h3><p>Budget {m(p['budget'])} over {p['weeks']} weeks, "
                f"{p['variant']} model{'' if p['gated'] else ' (UNGATED)'}. Expected {kpi}: {kfmt(p['expected'])} "
                + (f"({HDI_LABEL} {kfmt(pr['expected_response_hdi_low'])} to {kfmt(pr['expected_response_hdi_high'])}) "
                   f"against {kfmt(p['current'])} on the current plan: {'+' if p['gain'] >= 0 else ''}{kfmt(p['gain'])} "
                   f"({HDI_LABEL} {kfmt(pr['gain_hdi_low'])} to {kfmt(pr['gain_hdi_high'])}). "
                   if (pr := _plan_row(inp, p['id'])) is not None else
                   f"against {kfmt(p['current'])} on the current plan: {'+' if p['gain'] >= 0 else ''}{kfmt(p['gain'])} "
                   "(the plan's interval is not in the marts for this run). ")
                + "Highlighted rows sit at a bound of the scenario or beyond the largest weekly spend seen "
                "(extrapolated).</p>"
                + html_table(t, {k: m for k in ("current_spend", "optimal_spend", "change")}
                         | {k: kfmt for k in ("current_response_mean", "expected_response_mean")},
                         flag_rows=a["at_bound"] | a["extrapolated"].astype(bool)))
            imgs.append(png_image(plot_plan(a, cur, f"Scenario {p['id']}: spend per channel and geo"), f"plan {p['id']}"))
        sections["plan"] = {"text": (f"Current vs recommended spend over the planning horizon in {cur}, with the "
                                     f"{kpi} each is expected to bring (incl. carryover)."),
                            "html": "".join(parts), "images": imgs}
    else:
        sections["plan"] = {"text": "No budget scenario in the marts for this market.", "html": "", "images": []}

    # 8. data
    q = inp.quarantine
    imp = inp.imputed
    fresh = inp.freshness
    stale = fresh[~fresh["fresh"]] if len(fresh) else fresh
    docs = ""
    if inp.data_docs_index is not None:
        docs = ("<h3>Data-quality checks</h3><p>Every validation is a page of the <a href='"
                f"{html.escape(inp.data_docs_index.as_uri())}'>Great Expectations Data Docs</a>; the newest "
                "result of each suite:</p>")
        val = inp.validations
        if len(val):
            rows = "".join(
                f"<tr{'' if r.success else ' class=\'flag\''}><td>{html.escape(r.suite)}</td>"
                f"<td>{html.escape(r.validated_at)}</td><td>{'passed' if r.success else 'FAILED'}</td>"
                f"<td class='num'>{r.expectations}</td><td class='num'>{r.failed}</td><td>"
                + (f"<a class='data-docs' href='{html.escape(r.page.as_uri())}'>result page</a>" if r.page else "")
                + "</td></tr>" for r in val.itertuples())
            docs += ("<table><thead><tr><th>suite</th><th>validated</th><th>result</th><th>expectations</th>"
                     f"<th>failed</th><th>Data Docs</th></tr></thead><tbody>{rows}</tbody></table>")
    sections["data"] = {
        "text": (f"{int((inp.load_log['event'] == 'loaded').sum()) if len(inp.load_log) else 0} input files loaded, "
                 f"{int(q['rows'].sum()) if len(q) else 0} rows quarantined, "
                 f"{int(imp['imputed_weeks'].sum()) if len(imp) else 0} cost-per-unit weeks imputed in this market. "
                 + ("Every source is fresh (newest day within "
                    f"{inp.freshness_days} days)." if stale.empty else
                    f"Stale: {', '.join(f'{r.source} (newest {r.newest_day}, {r.age_days} days old)' for r in stale.itertuples())}"
                    f" against a limit of {inp.freshness_days} days.")),
        "html": "<h3>Input files</h3>" + html_table(inp.load_log) + "<h3>Quarantined rows by reason</h3>"
        + (html_table(q) if len(q) else "<p>Nothing quarantined.</p>")
        + "<h3>Imputed cost-per-unit weeks</h3>" + (html_table(imp[imp["imputed_weeks"] > 0]) if len(imp) and
                                                     (imp["imputed_weeks"] > 0).any() else "<p>None imputed.</p>")
        + "<h3>Freshness</h3>" + html_table(fresh, flag_rows=~fresh["fresh"]) + docs,
        "images": []}

    env = Environment(autoescape=select_autoescape(["html", "j2"]))
    tpl = env.from_string(TEMPLATE.read_text())
    page = tpl.render(market=inp.market, model_version=model_version, variant=variant, gated=gated, banner=banner,
                      generated_at=inp.generated_at.strftime("%Y-%m-%d %H:%M UTC"), currency=cur, kpi=kpi,
                      sections=[dict(id=sid, title=title, **sections[sid]) for sid, title in SECTIONS],
                      index_href=index_href)
    summary = "\n".join([f"**{inp.market}** ({variant} model `{model_version}`, "
                         f"{'gated' if gated else '**UNGATED**'})", "", head_text, "",
                         "| | |", "|---|---|", *(f"| {a} | {b} |" for a, b, _ in facts)])
    headline = {"currency": cur, "kpi": kpi, "kpi_is_money": inp.kpi_is_money, "spend": spend_total, "kpi_total": kpi_total, "media_share": share,
                "best_channel": None if best is None else str(best["channel"]),
                "worst_channel": None if worst is None else str(worst["channel"]),
                "ranked_by": "mROAS",  # marginal ROAS at today's spend (the economics section)
                "best_mroas": None if best is None else float(best["mroas"]),
                "worst_mroas": None if worst is None else float(worst["mroas"]),
                "plan_gain": main_plan["gain"] if main_plan else None}
    return Report(inp.market, model_version, variant, gated, page, summary, [s for s, _ in SECTIONS], headline)


def _held_out_section(holdout: pd.DataFrame, consistency: pd.DataFrame, kpi: str) -> dict:
    """Each lift test predicted by the calibrated model without it (marts.lift_test_holdout), beside the
    uncalibrated model's prediction, and the calibration consistency check in words."""
    if not len(holdout):
        return {"text": "No calibrated model with lift tests for this market, so no experiment to hold out.",
                "html": "", "images": []}
    scored = holdout[holdout["method"].isin(["reweighted", "needs_refit"])]
    num = lambda v: "" if pd.isna(v) else f"{v:,.0f}"  # noqa: E731
    t = holdout[["test_id", "channel", "geo", "scope", "measured", "sigma", "predicted_mean", "predicted_hdi_low",
                 "predicted_hdi_high", "z", "uncal_predicted_mean", "uncal_z", "pareto_k", "method"]].copy()
    t["covered"] = [("" if pd.isna(lo) else ("yes" if lo <= y <= hi else "no"))
                    for y, lo, hi in zip(t["measured"], t["predicted_hdi_low"], t["predicted_hdi_high"])]
    if len(scored):
        inside = ((scored["measured"] >= scored["predicted_hdi_low"]) & (scored["measured"] <= scored["predicted_hdi_high"]))
        closer = (scored["z"].abs() < scored["uncal_z"].abs())
        text = (f"Each lift test is predicted by the calibrated model fitted without it (the other tests kept: "
                f"leave-one-test-out importance weights on its draws), beside the uncalibrated model. Of "
                f"{len(scored)} test(s) with another test of the same channel in the market, {int(inside.sum())} "
                f"measured {kpi} fall(s) inside the held-out prediction's {HDI_LABEL}, and {int(closer.sum())} "
                "is/are predicted closer (smaller |z|) than by the uncalibrated model. A test without a sibling "
                "is not scored: without it the model knows nothing experimental about that channel. "
                "needs_refit: the test pulls the model too far for the reweighting (Pareto k-hat >= 0.7); "
                "the benchmark refits those.")
    else:
        text = ("No test has another test of the same channel in this market, so none can be predicted from "
                "the others: add a second test per channel to check the model against experiments it has not seen.")
    if len(consistency):
        k = float(consistency["pareto_k"].iloc[0])
        bad = consistency[consistency["verdict"] == "inconsistent"]
        if k >= 0.7:
            text += (f" Consistency: the experiments disagree with what the data alone suggested (Pareto k-hat "
                     f"{k:.2f}): they move the model further than its uncertainty without them allows, so the "
                     "calibrated and uncalibrated answers cannot both be right; trust the experiments' channels "
                     "less than their intervals suggest until more tests agree.")
        elif len(bad):
            text += (f" Consistency check FAILED for {len(bad)} quantity(ies): the calibrated fit does not equal the "
                     "uncalibrated one updated by the tests (a fitting problem): see marts.calibration_consistency.")
        else:
            text += (" Consistency: the calibrated fit equals the uncalibrated one updated by the tests, for every "
                     f"test's lift and tested cell's ROAS and mROAS (Pareto k-hat {k:.2f}).")
    fm = {c: num for c in ("measured", "sigma", "predicted_mean", "predicted_hdi_low", "predicted_hdi_high",
                           "uncal_predicted_mean")} | {c: (lambda v: "" if pd.isna(v) else f"{v:.2f}")
                                                        for c in ("z", "uncal_z", "pareto_k")}
    return {"text": text, "html": html_table(t, fm, flag_rows=t["covered"] == "no"), "images": []}


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; reports are meant to be shared
    os.replace(tmp, path)
    return path


def write_report(report: Report, reports_dir: Path, *, run_id: str | None = None) -> Path:
    """`<reports_dir>/<market>/<model_version>.html` plus its JSON sidecar; then the index."""
    from filelock import FileLock

    folder = path_inside(reports_dir, safe_name(report.market))  # the market name comes from the input
    path = _write_atomic(folder / f"{report.model_version}.html", report.html)
    # Markets render in parallel (multiprocess executor): one writer at a time lists the sidecars and
    # rewrites the index, so no market's newest report is left out of it.
    Path(reports_dir).mkdir(parents=True, exist_ok=True)
    with FileLock(str(Path(reports_dir) / ".index.lock"), timeout=120):
        _write_atomic(folder / f"{report.model_version}.json", json.dumps({
            "market": report.market, "model_version": report.model_version, "variant": report.variant,
            "gated": report.gated, "run_id": run_id, "file": path.relative_to(Path(reports_dir).resolve()).as_posix(),
            "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "headline": report.headline,
        }, default=str))
        write_index(reports_dir)
    return path


def list_reports(reports_dir: Path) -> list[dict]:
    out = []
    for side in sorted(Path(reports_dir).glob("*/*.json")):
        try:
            entry = json.loads(side.read_text())
        except (OSError, ValueError):
            continue
        if (Path(reports_dir) / entry.get("file", "")).exists():
            out.append(entry)
    return sorted(out, key=lambda e: (e["market"], e["generated_at"]), reverse=False)


def write_index(reports_dir: Path) -> Path:
    """`index.html`: every market, newest report first, then its earlier runs."""
    from jinja2 import Environment, select_autoescape

    entries = list_reports(reports_dir)
    markets: dict[str, list] = {}
    for e in entries:
        markets.setdefault(e["market"], []).append(e)
    for runs in markets.values():
        runs.sort(key=lambda e: e["generated_at"], reverse=True)
    env = Environment(autoescape=select_autoescape(["html", "j2"]))
    page = env.from_string(INDEX_TEMPLATE.read_text()).render(
        markets=markets, any_ungated=any(not runs[0]["gated"] for runs in markets.values()),
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), fmt_money=lambda v, c="": (
            "n/a" if v is None else f"{v:,.0f} {c}".strip()), fmt_pct=lambda v: "n/a" if v is None else f"{100 * v:.1f}%")
    return _write_atomic(Path(reports_dir) / "index.html", page)

