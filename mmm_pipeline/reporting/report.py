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

from mmm_pipeline.model.config import load_model_config
from mmm_pipeline.paths import path_inside, safe_name
from mmm_pipeline.reporting.charts import (  # noqa: F401  (the formats are this module's API too)
    HDI_LABEL, day, html_table, interval, money, number, pct, plot_average_marginal, plot_contributions, plot_curves,
    plot_fit, plot_headline, plot_lift, plot_plan, plot_returns, plot_shares, plot_waterfall, png_image, ratio,
)
from mmm_pipeline.reporting import health as health_lib
from mmm_pipeline.reporting.wording import (  # noqa: F401
    MONEY_KPI_WORDS, Kpi, describe_gate_failures, gates_text, kpi_is_money, parameter_meaning,
)

TEMPLATE = Path(__file__).with_name("report_template.html.j2")
INDEX_TEMPLATE = Path(__file__).with_name("report_index.html.j2")

SECTIONS = [
    ("health", "1. Can we trust this model?"),
    ("headline", "2. Headline"),
    ("fit", "3. Does the model fit?"),
    ("contributions", "4. What drove the KPI?"),
    ("economics", "5. What does each channel return?"),
    ("shares", "6. Does each channel earn its share of the budget?"),
    ("curves", "7. What happens if we spend more or less?"),
    ("calibration", "8. Do the lift tests agree?"),
    ("held_out", "9. Does the model predict experiments it has not seen?"),
    ("drift", "10. What changed since the previous model?"),
    ("track_record", "11. Do earlier forecasts hold?"),
    ("plan", "12. The budget plan"),
    ("data", "13. The data behind it"),
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
    "family": "marts.model_family_latest",
    "lift_holdout": "marts.lift_test_holdout_latest",
    "consistency": "marts.calibration_consistency_latest",
    "health": "marts.model_health_latest",
    "shares": "marts.channel_share_latest",
    "drift": "marts.refresh_drift_latest",
    "forecast": "marts.kpi_forecast_latest",
    "track_record": "marts.track_record_latest",
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
    # pipeline.yaml `model:` (None: the profiles' defaults): the gates each run's profile was judged by
    model_settings: dict | None = None

    def t(self, name: str) -> pd.DataFrame:
        return self.tables.get(name, pd.DataFrame())

    @property
    def kpi(self) -> Kpi:
        return Kpi(self.kpi_name, self.currency)

    @property
    def kpi_is_money(self) -> bool:
        return self.kpi.is_money

    def gates(self, profile: str):
        """The convergence gates in force for a run of `profile` (its GateConfig)."""
        return load_model_config(profile, self.model_settings).gates


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
                data_docs_index: Path | None = None, today: date | None = None,
                model_settings: dict | None = None) -> ReportInputs:
    """Read one market's marts and the data-quality tables (no model is loaded)."""
    tables = {}
    for key, table in _MARKET_TABLES.items():
        if _table_exists(con, table):
            tables[key] = con.execute(f"SELECT * FROM {table} WHERE market = ?", [market]).df()
    # The plan a report recommends (chosen) apart from a failed variant's plan written beside it.
    for key in ("allocation", "plan"):
        df = tables.get(key)
        if df is not None and "chosen" in df:
            chosen = df["chosen"].fillna(True).astype(bool)
            tables[key], tables[f"{key}_beside"] = df[chosen], df[~chosen]
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
                        validations=latest_validations(data_docs_index) if data_docs_index else pd.DataFrame(),
                        model_settings=model_settings)


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


def _known(row, column: str) -> bool:
    return row is not None and column in row and pd.notna(row[column])


def _plan_decision(plan_row, beside: pd.DataFrame, main_plan, k) -> dict:
    """What the headline says about the plan's decision: keep the current mix or move (with the
    probability of gain), and a fallback from a failed variant with that variant's plan beside it."""
    out = {"keep": False, "fact": "", "text": "", "beside": None}
    if main_plan is None or plan_row is None:
        return out
    kfmt = k.amount
    p = plan_row["probability_of_gain"] if _known(plan_row, "probability_of_gain") else None
    threshold = plan_row["min_probability_of_gain"] if _known(plan_row, "min_probability_of_gain") else None
    held = int(plan_row["held_cells"]) if _known(plan_row, "held_cells") else 0
    if _known(plan_row, "decision") and plan_row["decision"] == "keep_current_mix":
        out["keep"] = True
        out["fact"] = (f"the best plan found would gain {kfmt(plan_row['candidate_gain_mean'], signed=True)} "
                       f"({HDI_LABEL} {kfmt(plan_row['candidate_gain_hdi_low'])} to "
                       f"{kfmt(plan_row['candidate_gain_hdi_high'])}) with probability {pct(p)} of any gain, "
                       f"below the {pct(threshold)} a move needs")
        out["text"] = (f"Keep the current mix: the model cannot tell that moving the budget pays (the best plan "
                       f"found gains with probability {pct(p)}, below the {pct(threshold)} required). ")
    elif p is not None:
        out["fact"] = (f"; probability of any gain {pct(p)}"
                       + (f"; {held} cell(s) held at current spend where the model could not tell" if held else ""))
        out["text"] = (f"The plan gains with probability {pct(p)}"
                       + (f"; {held} cell(s) it would have moved are held where the model could not tell. "
                          if held else ". "))
    if _known(plan_row, "fallback_reason") and plan_row["fallback_reason"]:
        other = beside[beside["allocation_id"] == plan_row["allocation_id"]] if len(beside) else beside
        note = f"The plan uses the {plan_row['variant']} model because {plan_row['fallback_reason']}. "
        if len(other):
            o = other.iloc[0]
            op = pct(o["probability_of_gain"]) if _known(o, "probability_of_gain") else "unknown"
            out["beside"] = (f"The {o['variant']} model's plan (NOT gated, shown beside)",
                             kfmt(o["gain_mean"], signed=True),
                             f"{HDI_LABEL} {kfmt(o['gain_hdi_low'])} to {kfmt(o['gain_hdi_high'])}; probability "
                             f"of any gain {op}; decision {str(o.get('decision') or 'move').replace('_', ' ')}")
            note += (f"The {o['variant']} model's own plan (not gated) would gain {kfmt(o['gain_mean'], signed=True)} "
                     f"with probability {op}. ")
        out["text"] = note + out["text"]
    return out


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

    k = inp.kpi
    cur, kpi = inp.currency, k.label
    kfmt = k.amount
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
                                                  "failed its convergence gate ("
                                                  + (describe_gate_failures(r.get("gate_failures") or "")
                                                     or "see marts.model_runs") + ")"))
        banner = ("UNGATED MODEL: do not act on these numbers. " + "; ".join(why) + "." if not gated else
                  f"The headline and the plan use the gated {variant} model; " + "; ".join(why) +
                  ": its rows in the marts are marked not gated.")
    # A failed gate blocks the outputs: what the marts then hold comes from an earlier model.
    out_versions = set()
    for key in ("roas", "curves", "allocation"):
        if len(inp.t(key)):
            out_versions |= set(inp.t(key)["model_version"].astype(str))
    earlier = sorted(out_versions - set(runs["model_version"].astype(str)))
    stale_note = (f" The channel returns, curves and budget plan below come from earlier model(s) "
                  f"{', '.join(earlier)}: the newest fit was not allowed to update them." if earlier else "")
    if stale_note:
        banner = (banner or "") + stale_note
    sections: dict[str, dict] = {"health": _health_section(inp, variant)}
    roas = inp.t("roas")
    ch = _channel_totals(roas) if len(roas) else pd.DataFrame()
    chp = ch[ch["variant"] == variant].sort_values("roas", ascending=False) if len(ch) else ch
    contrib = inp.t("contributions")
    contrib_p = contrib[contrib["variant"] == variant] if len(contrib) else contrib
    fit = inp.t("fit")
    fit_p = fit[fit["variant"] == variant] if len(fit) else fit
    weeks = sorted(pd.to_datetime(fit_p["week_start"]).unique()) if len(fit_p) else []
    period = (day(weeks[0]), day(weeks[-1])) if weeks else (None, None)

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
                      f"{pct(all_media['contribution_hdi_high'] / kpi_total)}; {number(media)} of {kfmt(kpi_total)}")
    else:
        share_note = f"{number(media)} of {kfmt(kpi_total)}; the interval of the total is not in the marts for this run"
    # Lead with what a lift test of extra spend can vouch for: the channels ranked by marginal ROAS (the
    # market's own, geos added per draw, where the marts have it; else the spend-weighted geo slopes).
    # Ranked by mROAS descending is ranked by marginal cost ascending: one order for both KPI kinds.
    has_market_mroas = len(mkt) and "mroas_mean" in mkt and mkt["mroas_mean"].notna().any()
    if has_market_mroas:
        ranked = mkt.sort_values("mroas_mean", ascending=False)
        best = pd.Series({"channel": ranked.index[0], "mroas": ranked["mroas_mean"].iloc[0]})
        worst = pd.Series({"channel": ranked.index[-1], "mroas": ranked["mroas_mean"].iloc[-1]})
    elif len(chp):
        ranked = chp.sort_values("mroas", ascending=False)
        best, worst = ranked.iloc[0], ranked.iloc[-1]

    def marginal_range(channel):
        what = (f"{kpi} from the next {cur} at today's weekly spend" if k.is_money else
                f"what the next {k.one} costs at today's weekly spend")
        if has_market_mroas and channel in mkt.index:
            r = mkt.loc[channel]
            return f"{HDI_LABEL} {k.return_interval(r['mroas_hdi_low'], r['mroas_hdi_high'])}: {what}"
        d = geo_roas[geo_roas["channel"] == channel]
        lo, hi = d["mroas_mean"].min(), d["mroas_mean"].max()
        lo, hi = (lo, hi) if k.is_money else (hi, lo)  # the cost falls as mROAS rises
        return f"from {k.return_text(lo)} to {k.return_text(hi)} across geos; no market interval in the marts"

    plan_t = inp.t("plan")
    plan_row = None
    if main_plan and len(plan_t):
        hit = plan_t[plan_t["allocation_id"] == main_plan["id"]]
        plan_row = hit.iloc[0] if len(hit) else None

    facts = [
        ("Spend (training period)", m(spend_total),
         (f"{len(weeks)} weeks, {period[0]} to {period[1]}, " if weeks else "") + f"{len(runs_geos(inp.tables))} geos"),
        (f"{kpi.capitalize()} (training period)", kfmt(kpi_total), "actual, from the modelled weeks"),
        (f"Media-driven share of {kpi}", pct(share), share_note),
    ]
    if best is not None:
        if k.is_money:
            facts.append(("Highest marginal ROAS (mROAS)", f"{best['channel']}: {ratio(best['mroas'])}",
                          marginal_range(best["channel"])))
            facts.append(("Lowest marginal ROAS (mROAS)", f"{worst['channel']}: {ratio(worst['mroas'])}",
                          marginal_range(worst["channel"])))
        else:
            facts.append((f"Lowest {k.marginal_name}", f"{best['channel']}: {k.return_text(best['mroas'])}",
                          marginal_range(best["channel"])))
            facts.append((f"Highest {k.marginal_name}", f"{worst['channel']}: {k.return_text(worst['mroas'])}",
                          marginal_range(worst["channel"])))
    decision = _plan_decision(plan_row, inp.t("plan_beside"), main_plan, k)
    if decision["keep"]:
        facts.append((f"Recommended plan ({main_plan['id']}, {main_plan['weeks']} weeks)", "keep the current mix",
                      decision["fact"]))
    elif main_plan:
        facts.append((f"Recommended plan vs current ({main_plan['id']}, {main_plan['weeks']} weeks)",
                      kfmt(main_plan["gain"], signed=True),
                      (f"{HDI_LABEL} {kfmt(plan_row['gain_hdi_low'])} to {kfmt(plan_row['gain_hdi_high'])}; expected "
                       f"{kfmt(plan_row['expected_response_mean'])} vs {kfmt(plan_row['current_response_mean'])} on the "
                       "current plan" if plan_row is not None else
                       f"expected {kfmt(main_plan['expected'])} vs {kfmt(main_plan['current'])} now; the interval of "
                       "the gain is not in the marts for this run") + decision["fact"]))
    if decision["beside"]:
        facts.append(decision["beside"])
    facts.append(("Model", f"{variant} ({model_version})", "gated: passed its convergence gates" if gated
                  else "NOT gated: " + ("fast profile" if prim.get("profile") != "full" else "failed its gates")))
    if best is None:
        next_money = ""
    elif k.is_money:
        next_money = (f"At today's weekly spend, the next {cur} on {best['channel']} brings the most {kpi} "
                      f"({ratio(best['mroas'])} {cur} per {cur}) and on {worst['channel']} the least "
                      f"({ratio(worst['mroas'])}): what a lift test of extra spend measures. ")
    else:
        next_money = (f"At today's weekly spend, one more {k.one} costs least through {best['channel']} "
                      f"({k.return_text(best['mroas'])}) and most through {worst['channel']} "
                      f"({k.return_text(worst['mroas'])}): what a lift test of extra spend measures. ")
    if decision["keep"]:
        plan_text = decision["text"]
    elif main_plan:
        gain_word = "add" if main_plan["gain"] >= 0 else "lose"
        plan_text = (f"Moving the same budget as recommended is expected to {gain_word} "
                     f"{k.phrase(abs(main_plan['gain']))} over {main_plan['weeks']} weeks"
                     + (f" ({HDI_LABEL} of the change {kfmt(plan_row['gain_hdi_low'])} to "
                        f"{kfmt(plan_row['gain_hdi_high'])}). " if plan_row is not None else ". ")
                     + decision["text"])
    else:
        plan_text = "No budget scenario was run. "
    head_text = (
        f"In market {inp.market}, {m(spend_total)} of media over the training period"
        + (f" ({period[0]} to {period[1]})" if weeks else "")
        + f" brought an estimated {k.phrase(media)} ({pct(share)} of all {kpi}). "
        + next_money + plan_text
        + ("The model passed its gates." if gated else "The model is NOT gated: treat every number as provisional.")
        + stale_note)
    sections["headline"] = {"text": head_text, "facts": facts,
                            "images": [png_image(plot_headline(chp, cur, k.unit, kpi),
                                                 f"spend and incremental {kpi} per channel")] if len(chp) else []}

    # 2. fit
    profiles = [p for p in dict.fromkeys(runs["profile"].astype(str))]
    gates = {p: inp.gates(p) for p in profiles}
    fit_rows = runs[["variant", "model_version", "profile", "chains", "draws", "max_rhat", "min_ess_bulk", "divergences",
                     "r2", "mape", "coverage_94", "passed_gates", "gated"]].copy()
    diag = inp.t("diagnostics")
    diag_html = "<p>Per-parameter diagnostics are not in the marts for this run (marts.model_diagnostics).</p>"
    if len(diag):
        # One row per model part, in words: a part's pooled and per-geo pieces are several parameters inside.
        parts = diag.assign(model_part=diag["parameter"].astype(str).map(parameter_meaning)).groupby(
            ["variant", "model_part"], as_index=False, sort=False).agg(
            max_rhat=("max_rhat", "max"), min_ess_bulk=("min_ess_bulk", "min"), min_ess_tail=("min_ess_tail", "min"))
        parts = parts.sort_values(["variant", "max_rhat"], ascending=[True, False])
        profile_of = runs.set_index("variant")["profile"].astype(str)
        limits = [gates.get(profile_of.get(v, profiles[0]), gates[profiles[0]]) for v in parts["variant"]]
        diag_html = html_table(parts, {"max_rhat": lambda v: number(v, 3), "min_ess_bulk": number, "min_ess_tail": number},
                               flag_rows=pd.Series([r > g.max_rhat or e < g.min_ess_bulk for r, e, g in
                                                    zip(parts["max_rhat"], parts["min_ess_bulk"], limits)]))
    val = inp.t("validation")
    if len(val) and (val["geo"] == "market").any():
        mkt_val = val[val["geo"] == "market"].iloc[0]
        verdict = "beats" if bool(mkt_val["beats_baseline"]) else "does <b>not</b> beat"
        converged = mkt_val.get("fit_passed_gates")
        stuck = ("" if converged is None or pd.isna(converged) or bool(converged) else
                 " <b>The refit did not converge</b> (" + html.escape(describe_gate_failures(
                     str(mkt_val.get("fit_gate_failures") or "its gate failed")))
                 + "): this forecast is not evidence either way.")
        oos = (f"<p>Out-of-sample: refitted without its last {int(mkt_val['holdout_weeks'])} complete weeks "
               f"({day(mkt_val['first_week'])} to {day(mkt_val['last_week'])}), the model forecasts them from their "
               f"media with a market MAPE of {pct(mkt_val['model_mape'])} against {pct(mkt_val['baseline_mape'])} for "
               f"the naive forecast ({html.escape(str(mkt_val['baseline']))}): it {verdict} it; "
               f"{pct(mkt_val['coverage_94'])} of the held-out weeks fall inside its {HDI_LABEL}.{stuck}</p>"
               + html_table(val[["geo", "model_mape", "baseline_mape", "coverage_94", "model_crps", "baseline_crps",
                                 "beats_baseline"]], {"model_mape": pct, "baseline_mape": pct, "coverage_94": pct,
                                                      "model_crps": kfmt, "baseline_crps": kfmt},
                            flag_rows=~val["beats_baseline"].astype(bool)))
        oos += _family_paragraph(inp)
    else:
        oos = \
        "<p class='gap'>Out-of-sample: no out-of-sample validation configured (the marts hold no held-out " \
        "weeks), so only in-sample figures are shown.</p>"
    fit_images = [png_image(plot_fit(fit_p, kpi, k.unit), f"actual vs predicted {kpi} per geo")] if len(fit_p) else []
    gates_said = "; ".join(gates_text(p, g) for p, g in gates.items())
    sections["fit"] = {
        "text": (f"The {variant} model explains {pct(prim['r2'])} of the weekly variation of {kpi} in sample "
                 f"(R-squared), misses by {pct(prim['mape'])} on average (MAPE), and {pct(prim['coverage_94'])} of the "
                 f"weeks fall inside its {HDI_LABEL} (should be near 94%). Convergence gates ({gates_said})."
                 + (" The fast profile's gates only catch a broken fit: its models are never gated."
                    if "fast" in gates else "")
                 + ("" if len(fit_p) else " The weekly fit table is not in the marts for this run.")),
        "html": html_table(fit_rows, {"max_rhat": lambda v: number(v, 3), "min_ess_bulk": number,
                                      "r2": lambda v: number(v, 3), "mape": pct, "coverage_94": pct})
        + oos + "<h3>Worst R-hat and ESS per model part</h3>" + diag_html,
        "images": fit_images}

    # 3. contributions
    if len(contrib_p):
        tot = contrib_p.groupby(["component", "component_type"], as_index=False)["mean"].sum()
        tot["share"] = tot["mean"] / kpi_total if kpi_total else float("nan")
        tot = tot.sort_values("mean", ascending=False).rename(columns={"mean": f"total {kpi}", "share": f"share of {kpi}"})
        no_controls = "control" not in set(contrib_p["component_type"])
        sections["contributions"] = {
            "text": (f"Of {k.phrase(kpi_total)}, the baseline (what would happen without media) is "
                     f"{kfmt(tot.loc[tot['component'] == 'baseline', f'total {kpi}'].sum())}, seasonality "
                     f"{kfmt(tot.loc[tot['component'] == 'seasonality', f'total {kpi}'].sum())}, and media {kfmt(media)}."
                     + (" Controls: no control variables configured." if no_controls else
                        " Controls (measured from their reference level: 0 when the data hold 0, else their "
                        "mean): " + ", ".join(f"{r.component} {kfmt(r.total)}" for r in
                                              tot[tot["component_type"] == "control"].rename(
                                                  columns={f"total {kpi}": "total"}).itertuples()) + ".")
                     + " The marts hold a 94% interval per week and geo, not one for these sums."),
            "html": html_table(tot, {f"total {kpi}": kfmt, f"share of {kpi}": pct}),
            "images": [png_image(plot_waterfall(waterfall_steps(contrib_p), kpi, k.unit), "contribution waterfall"),
                       png_image(plot_contributions(contrib_p, kpi, k.unit), "weekly decomposition")]}
    else:
        sections["contributions"] = {"text": "No decomposition in the marts for this market.", "html": "", "images": []}

    # 4. channel economics
    sections["economics"] = _economics_section(inp, k, ch, variant) if len(roas) else {
        "text": "No channel returns in the marts for this market.", "html": "", "images": []}

    # 5. response curves
    curves = inp.t("curves")
    cp = curves[curves["variant"] == variant] if len(curves) else curves
    if len(cp):
        now = cp.drop_duplicates(["geo", "channel"])[["geo", "channel", "current_weekly_spend", "max_weekly_spend"]]
        sections["curves"] = {
            "text": (f"Weekly {kpi} a channel brings at each weekly spend ({variant} model, {HDI_LABEL} shaded). Dashed: "
                     "today's weekly spend (last 13 weeks); dotted: the largest weekly spend in the data, beyond which "
                     "the curve is extrapolated."),
            "html": html_table(now.rename(columns={"max_weekly_spend": "largest weekly spend seen"}),
                               {"current_weekly_spend": m, "largest weekly spend seen": m}),
            "images": [png_image(plot_curves(cp, cur, kpi, k.unit), "response curves in money")]}
    else:
        sections["curves"] = {"text": "No response curves in the marts for this market.", "html": "", "images": []}

    # 6. calibration
    lf, cal = inp.t("lift_fit"), inp.t("calibration")
    if len(lf):
        lft = lf[["test_id", "variant"] + (["geo"] if "geo" in lf else []) + ["observed", "sigma", "predicted_mean",
                                                                              "predicted_hdi_low", "predicted_hdi_high", "z_score"]].copy()
        changed = ""
        if len(cal) and "precision_improvement_pct" in cal:
            # in words first: two internal parameters may read as one model part (grouped after naming)
            c = cal.assign(parameter=cal["parameter"].map(lambda p: _calibrated_quantity(p, k))).groupby(
                ["channel", "parameter"], as_index=False)["precision_improvement_pct"].mean()
            changed = "<h3>What calibration changed (94% interval narrower by, %, mean over geos)</h3>" + html_table(
                c.pivot(index="channel", columns="parameter", values="precision_improvement_pct").reset_index(),
                {q: (lambda v: number(v, 1)) for q in c["parameter"].unique()})
        if len(ch) and {"uncalibrated", "calibrated"} <= set(ch["variant"]):
            r = ch.pivot(index="channel", columns="variant", values="roas").reset_index()
            for v in ("uncalibrated", "calibrated"):
                r[v] = r[v].map(k.return_value)
            r["change"] = r["calibrated"] - r["uncalibrated"]
            fmt = ratio if k.is_money else k.cost_text
            changed += (f"<h3>{k.return_name[0].upper() + k.return_name[1:]} before and after calibration "
                        f"({k.return_unit})</h3>" + html_table(r, {c_: fmt for c_ in r.columns if c_ != "channel"}))
        sections["calibration"] = {
            "text": (f"Each lift test measured the {kpi} its extra spend brought over its readout (the test window, "
                     f"or the window plus carryover for scope 'total'; black, +/- 1.96 sigma); each model predicts "
                     f"the same readout from the actual spend path ({HDI_LABEL}). A calibrated model should agree "
                     f"with the tests (|z| below 2)."),
            "html": html_table(lft.rename(columns={"observed": f"measured {kpi}"}),
                               {c_: number for c_ in (f"measured {kpi}", "sigma", "predicted_mean",
                                                      "predicted_hdi_low", "predicted_hdi_high")}
                               | {"z_score": lambda v: number(v, 2)}, flag_rows=lft["z_score"].abs() > 2) + changed,
            "images": [png_image(plot_lift(lf, k.unit), "lift tests measured vs predicted")]}
    else:
        sections["calibration"] = {"text": "No calibrated model for this market (no valid lift test), so there is "
                                           "nothing to compare.", "html": "", "images": []}

    # 7. held-out experiments and the calibration consistency check
    sections["held_out"] = _held_out_section(inp.t("lift_holdout"), inp.t("consistency"), k)

    # share of spend vs share of effect, carryover; drift against the previous model
    sections["shares"] = _shares_section(inp.t("shares"), k, variant)
    sections["drift"] = _drift_section(inp.t("drift"), runs, k)

    # 8. budget plan
    if plans:
        parts_, imgs = [], []
        for p in plans:
            a = p["frame"].copy()
            bound = inp.bounds.get(p["id"])
            at_bound = []
            for r in a.itertuples():
                b = bound(r.geo, r.channel) if bound else None
                ratio_ = r.optimal_spend / r.current_spend if r.current_spend else float("nan")
                at_bound.append(bool(b) and any(abs(ratio_ - x) < 1e-3 for x in b))
            if "at_bound" in a and "move" in a:  # the mart's own flags (older rows: recomputed above)
                at_bound = a["at_bound"].notna().tolist()
            a["at_bound"] = at_bound
            a["change"] = a["optimal_spend"] - a["current_spend"]
            a["expected_94"] = [interval(lo, hi, kfmt) for lo, hi in
                                zip(a["expected_response_hdi_low"], a["expected_response_hdi_high"])]
            for col in ("move", "probability_move_gains", "lift_tests", "lift_test_conflict"):
                if col not in a:
                    a[col] = None
            a["p_gain"] = [pct(v) if pd.notna(v) else "" for v in a["probability_move_gains"]]
            a["tests"] = a["lift_tests"].fillna("none")
            conflicts = a[a["lift_test_conflict"].notna()]
            t = a[["geo", "channel", "current_spend", "optimal_spend", "change", "move", "p_gain",
                   "current_response_mean", "expected_response_mean", "expected_94", "at_bound", "extrapolated",
                   "tests"]].rename(columns={
                       "optimal_spend": "recommended spend", "current_response_mean": f"{kpi}, current plan",
                       "expected_response_mean": f"{kpi}, recommended", "expected_94": f"recommended, {HDI_LABEL}",
                       "p_gain": "probability the move gains", "tests": "lift tests behind it"})
            pr = _plan_row(inp, p["id"])
            parts_.append(
                f"<h3>Scenario {html.escape(str(p['id']))}</h3><p>Budget {m(p['budget'])} over {p['weeks']} weeks, "
                f"{p['variant']} model{'' if p['gated'] else ' (UNGATED)'}. Expected {kpi}: {kfmt(p['expected'])} "
                + (f"({HDI_LABEL} {kfmt(pr['expected_response_hdi_low'])} to {kfmt(pr['expected_response_hdi_high'])}) "
                   f"against {kfmt(p['current'])} on the current plan: {kfmt(p['gain'], signed=True)} "
                   f"({HDI_LABEL} {kfmt(pr['gain_hdi_low'])} to {kfmt(pr['gain_hdi_high'])}). "
                   if pr is not None else
                   f"against {kfmt(p['current'])} on the current plan: {kfmt(p['gain'], signed=True)} "
                   "(the plan's interval is not in the marts for this run). ")
                + "Highlighted rows sit at a bound of the scenario (the plan would go further if allowed), beyond "
                "the largest weekly spend seen (extrapolated), or move against a lift test. A cell moves only "
                "where the posterior probability that its move gains reaches the threshold; else it is held "
                "(<code>hold</code>) at its current spend.</p>"
                + html_table(t, {c_: m for c_ in ("current_spend", "recommended spend", "change")}
                             | {c_: kfmt for c_ in (f"{kpi}, current plan", f"{kpi}, recommended")},
                             flag_rows=a["at_bound"] | a["extrapolated"].astype(bool) | a["lift_test_conflict"].notna())
                + ("<p><b>Moves against a lift test:</b></p><ul>" + "".join(
                    f"<li>{html.escape(f'{r.geo}/{r.channel}: {r.lift_test_conflict}')}</li>"
                    for r in conflicts.itertuples()) + "</ul>" if len(conflicts) else ""))
            imgs.append(png_image(plot_plan(a, cur, f"Scenario {p['id']}: spend per channel and geo"), f"plan {p['id']}"))
        sections["plan"] = {"text": (f"Current vs recommended spend over the planning horizon in {cur}, with the "
                                     f"{kpi} each is expected to bring (incl. carryover)."),
                            "html": "".join(parts_), "images": imgs}
    else:
        sections["plan"] = {"text": "No budget scenario in the marts for this market.", "html": "", "images": []}

    sections["track_record"] = _track_record_section(inp, variant)

    # 9. data
    sections["data"] = _data_section(inp)

    env = Environment(autoescape=select_autoescape(["html", "j2"]))
    tpl = env.from_string(TEMPLATE.read_text())
    page = tpl.render(market=inp.market, model_version=model_version, variant=variant, gated=gated, banner=banner,
                      generated_at=inp.generated_at.strftime("%Y-%m-%d %H:%M UTC"), currency=cur, kpi=kpi,
                      period=period if weeks else None,
                      sections=[dict(id=sid, title=title, **sections[sid]) for sid, title in SECTIONS],
                      index_href=index_href)
    summary = "\n".join([f"**{inp.market}** ({variant} model `{model_version}`, "
                         f"{'gated' if gated else '**UNGATED**'})", "", head_text, "",
                         "| | |", "|---|---|", *(f"| {a} | {b} |" for a, b, _ in facts)])
    headline = {"currency": cur, "kpi": kpi, "kpi_is_money": k.is_money, "kpi_unit": k.unit,
                "spend": spend_total, "kpi_total": kpi_total, "media_share": share,
                "period_start": period[0], "period_end": period[1], "weeks": len(weeks),
                "best_channel": None if best is None else str(best["channel"]),
                "worst_channel": None if worst is None else str(worst["channel"]),
                "ranked_by": "mROAS",  # marginal ROAS at today's spend (the economics section)
                "best_mroas": None if best is None else float(best["mroas"]),
                "worst_mroas": None if worst is None else float(worst["mroas"]),
                "plan_id": main_plan["id"] if main_plan else None,
                "plan_weeks": main_plan["weeks"] if main_plan else None,
                "plan_gain": main_plan["gain"] if main_plan else None,
                "plan_gain_low": None if plan_row is None else float(plan_row["gain_hdi_low"]),
                "plan_gain_high": None if plan_row is None else float(plan_row["gain_hdi_high"]),
                "plan_decision": str(plan_row["decision"]) if _known(plan_row, "decision") else None,
                "plan_probability_of_gain": float(plan_row["probability_of_gain"])
                if _known(plan_row, "probability_of_gain") else None}
    return Report(inp.market, model_version, variant, gated, page, summary, [s for s, _ in SECTIONS], headline)


STATUS_WORDS = {"green": "OK", "amber": "CHECK", "red": "FAILED"}


def _family_paragraph(inp: ReportInputs) -> str:
    """How the curve family was chosen, when pipeline.yaml asks for a choice (model.family_candidates)."""
    fam = inp.t("family")
    if not len(fam) or not (inp.model_settings or {}).get("family_candidates"):
        return ""
    chosen = fam[fam["chosen"].astype(bool)]
    said = html.escape(str(chosen["reason"].iloc[0])) if len(chosen) else "no family was chosen"
    t = pd.DataFrame({"family": fam["candidate"], "held-out CRPS / KPI": fam["relative_crps"],
                      "difference to the default": fam["diff_vs_default"], "standard error": fam["diff_se"],
                      "refit converged": fam["refit_passed_gates"].astype(bool), "chosen": fam["chosen"].astype(bool)})
    fmt = lambda v: number(v, 4)  # noqa: E731
    return (f"<p>Curve family: each candidate was refitted without the same weeks and scored by how well it "
            f"forecast them (CRPS per week and geo over the geo's mean KPI; lower is better); {said}.</p>"
            + html_table(t, {"held-out CRPS / KPI": fmt, "difference to the default": fmt, "standard error": fmt}))


def _health_section(inp: ReportInputs, variant: str) -> dict:
    """The health card: marts.model_health (written by the report asset before it renders; computed from
    the same marts here when the warehouse predates it), one row per check, green / amber / red."""
    rows = inp.t("health")
    if not len(rows):
        rows = health_lib.from_inputs(inp)
    order = {c: i for i, c in enumerate(health_lib.CHECK_TITLES)}
    rows = rows.assign(_o=rows["check_name"].map(order).fillna(99), _v=(rows["variant"] != variant)).sort_values(
        ["_o", "_v"])
    counts = rows["status"].value_counts()
    worst = rows[rows["status"] == "red"]
    worst = worst if len(worst) else rows[rows["status"] == "amber"]
    text = (f"{len(rows)} checks of the models and their data (the headline uses the {variant} model): {int(counts.get('green', 0))} green, "
            f"{int(counts.get('amber', 0))} amber, {int(counts.get('red', 0))} red. "
            + ("Every check passed." if not len(worst) else
               f"First to look at: {health_lib.CHECK_TITLES.get(worst['check_name'].iloc[0], worst['check_name'].iloc[0]).lower()}"
               f" ({worst['variant'].iloc[0]}): {worst['sentence'].iloc[0]}"))
    body = "".join(
        f"<tr class='health-{html.escape(r.status)}'><td><span class='status {html.escape(r.status)}'>"
        f"{STATUS_WORDS.get(r.status, r.status)}</span></td>"
        f"<td>{html.escape(health_lib.CHECK_TITLES.get(r.check_name, r.check_name))}</td><td>{html.escape(str(r.variant))}</td>"
        f"<td>{html.escape(r.sentence)}</td><td>{html.escape(str(r.threshold))}</td></tr>"
        for r in rows.itertuples())
    table = ("<table class='health'><thead><tr><th>status</th><th>check</th><th>model</th><th>what it says</th>"
             f"<th>threshold</th></tr></thead><tbody>{body}</tbody></table>")
    return {"text": text, "html": table, "images": []}


def waterfall_steps(contrib: pd.DataFrame) -> pd.DataFrame:
    """The contribution waterfall's bars from marts.contributions (one model): baseline, controls, the
    other non-media components (seasonality, trend), then each channel by its size; columns label,
    value (KPI over the period, summed over weeks and geos), kind."""
    tot = contrib.groupby(["component", "component_type"], as_index=False)["mean"].sum()
    kind = tot["component_type"].map(lambda t: t if t in ("media", "control") else "other")
    kind = kind.where(tot["component"] != "baseline", "baseline")
    tot = tot.assign(kind=kind, _o=kind.map({"baseline": 0, "control": 1, "other": 2, "media": 3}))
    tot = tot.sort_values(["_o", "mean"], ascending=[True, False])
    return pd.DataFrame({"label": tot["component"].astype(str).str.replace("_", " ").values,
                         "value": tot["mean"].astype(float).values, "kind": tot["kind"].values})


def _shares_section(shares: pd.DataFrame, k: Kpi, variant: str) -> dict:
    """marts.channel_share: share of spend beside share of the media effect, and the carryover share."""
    d = shares[shares["variant"] == variant] if len(shares) else shares
    if not len(d):
        return {"text": "The share of spend vs share of effect is not in the marts for this run "
                        "(marts.channel_share is written by channel_roas).", "html": "", "images": []}
    d = d.assign(ratio=d["effect_share_mean"] / d["spend_share"].where(d["spend_share"] > 0)).sort_values(
        "effect_share_mean", ascending=False)
    over = d.sort_values("ratio", ascending=False).iloc[0]
    under = d.sort_values("ratio").iloc[0]
    text = (f"Each channel's share of the media budget beside its share of what media brought ({variant} model, "
            f"per posterior draw, {HDI_LABEL}). {over['channel']} brings {pct(over['effect_share_mean'])} of the "
            f"media effect on {pct(over['spend_share'])} of the spend; {under['channel']} "
            f"{pct(under['effect_share_mean'])} on {pct(under['spend_share'])}. A channel above its spend share "
            f"returns more than the media average over the training period (not at the margin: see the "
            f"{k.marginal_name}).")
    has_carry = d["carryover_share_mean"].notna().any()
    if has_carry:
        slow = d.sort_values("carryover_share_mean", ascending=False).iloc[0]
        lmax = d["l_max"].dropna()
        text += (f" Carryover: of one week's effect, the share that arrives in the following weeks (from the "
                 f"posterior adstock{f', over {int(lmax.iloc[0])} weeks' if len(lmax) else ''}); "
                 f"highest for {slow['channel']} ({pct(slow['carryover_share_mean'])}, {HDI_LABEL} "
                 f"{pct(slow['carryover_share_hdi_low'])} to {pct(slow['carryover_share_hdi_high'])}). A channel "
                 "with a large carryover is undervalued by anything that reads its effect in the week of the spend.")
    t = pd.DataFrame({"channel": d["channel"], "share of spend": d["spend_share"],
                      "share of effect": d["effect_share_mean"],
                      f"share of effect, {HDI_LABEL}": [interval(lo, hi, pct) for lo, hi in
                                                        zip(d["effect_share_hdi_low"], d["effect_share_hdi_high"])],
                      "effect share / spend share": d["ratio"]})
    if has_carry:
        t["carryover share"] = d["carryover_share_mean"]
        t[f"carryover share, {HDI_LABEL}"] = [interval(lo, hi, pct) for lo, hi in
                                              zip(d["carryover_share_hdi_low"], d["carryover_share_hdi_high"])]
    return {"text": text,
            "html": html_table(t, {"share of spend": pct, "share of effect": pct, "carryover share": pct,
                                   "effect share / spend share": ratio}),
            "images": [png_image(plot_shares(d), "share of spend vs share of effect")]}


def _drift_section(drift: pd.DataFrame, runs: pd.DataFrame, k: Kpi) -> dict:
    """marts.refresh_drift of the current models (rows of an older comparison are not this model's)."""
    current = set(zip(runs["variant"].astype(str), runs["model_version"].astype(str)))
    d = drift[[(str(v), str(m)) in current for v, m in zip(drift["variant"], drift["model_version"])]] \
        if len(drift) else drift
    if not len(d):
        return {"text": "No previous gated model of this market to compare with (the first gated fit, or every "
                        "earlier fit was ungated), so nothing to say about drift yet.", "html": "", "images": []}
    parts = []
    for v, g in d.groupby("variant", sort=False):
        flagged = g[g["flagged"].astype(bool)]
        prev = str(g["previous_model_version"].iloc[0])
        said = (f"The {v} model moved against the previous gated one ({prev}) in {len(flagged)} of {len(g)} "
                "geo x channel cells beyond the drift threshold")
        if len(flagged):
            big = flagged.reindex(flagged["roas_change"].abs().sort_values(ascending=False).index).head(5)
            if k.is_money:
                moves = [f"{r.geo} {r.channel}: ROAS {ratio(r.roas_previous)} to {ratio(r.roas_current)} "
                         f"({r.roas_change:+.0%})" for r in big.itertuples()]
            else:
                moves = [f"{r.geo} {r.channel}: cost per {k.one} {k.return_text(r.roas_previous)} to "
                         f"{k.return_text(r.roas_current)}" for r in big.itertuples()]
            said += ": " + "; ".join(moves) + ". Check what changed in the data before acting on the new figures."
        else:
            said += ": the answer is stable."
        parts.append(said)
    t = d[["variant", "geo", "channel", "previous_model_version", "roas_previous", "roas_current", "roas_change",
           "share_previous", "share_current", "share_change_pp", "flagged"]].copy()
    if not k.is_money:
        t["roas_previous"], t["roas_current"] = t["roas_previous"].map(k.return_value), t["roas_current"].map(k.return_value)
        t = t.rename(columns={"roas_previous": f"cost per {k.one}, previous", "roas_current": f"cost per {k.one}, now",
                              "roas_change": "ROAS change"})
    fm = {c: (ratio if k.is_money else k.cost_text) for c in t.columns if c.startswith(("roas_p", "roas_c", "cost per"))}
    fm |= {"roas_change": pct, "ROAS change": pct, "share_previous": pct, "share_current": pct,
           "share_change_pp": lambda v: number(v, 1)}
    return {"text": " ".join(parts) + " Shares are of the media contribution; changes in percentage points.",
            "html": html_table(t, fm, flag_rows=t["flagged"].astype(bool)), "images": []}


def _calibrated_quantity(parameter: str, k: Kpi) -> str:
    """A calibration-report quantity (marts.calibration_report.parameter) in words."""
    named = {"roas": "average return (ROAS)" if k.is_money else "average return",
             "response_at_current_spend": "response at today's spend"}
    return named.get(parameter) or parameter_meaning(parameter).split(" (")[0]


def _economics_section(inp: ReportInputs, k: Kpi, ch: pd.DataFrame, variant: str) -> dict:
    """What each channel returns: first what a lift test of extra spend measures (the marginal figure
    and the response to +10%), then the average against zero spend; uncalibrated and calibrated side by
    side. For a money KPI the figures are ROAS (break-even 1), for a count the cost per incremental KPI."""
    cur, kpi, roas = k.currency, k.label, inp.t("roas")
    m = lambda v: money(v, cur)  # noqa: E731
    short = {"uncalibrated": "uncal.", "calibrated": "cal."}
    mk = inp.t("roas_market")
    side = ch[ch["variant"] == variant][["channel", "spend"]].copy()
    fm: dict = {"spend": m}
    horizon = int(roas["planning_horizon_weeks"].dropna().iloc[0]) \
        if "planning_horizon_weeks" in roas and roas["planning_horizon_weeks"].notna().any() else None
    plus10 = f"+10% spend, {horizon} wk" if horizon else "+10% spend"
    marginal, average = ("mROAS", "avg ROAS vs zero") if k.is_money else \
        (f"marginal cost per {k.one}", f"avg cost per {k.one}")
    value = k.return_text  # ROAS as a ratio, or the cost of one more unit of the KPI in money
    columns = (("mroas", marginal, "mroas_hdi_low", "mroas_hdi_high"),
               ("plus10", f"{kpi}, {plus10}", "response_plus_10pct_hdi_low", "response_plus_10pct_hdi_high"),
               ("roas", average, "roas_hdi_low", "roas_hdi_high"))
    for col, label, lo, hi in columns:
        for v in (x for x in ("uncalibrated", "calibrated") if x in set(ch["variant"])):
            d = mk[mk["variant"] == v].set_index("channel") if len(mk) else mk
            if col == "plus10":
                if not len(d) or "response_plus_10pct_mean" not in d:
                    continue
                side[f"{label} ({short[v]})"] = side["channel"].map(d["response_plus_10pct_mean"])
                fm[f"{label} ({short[v]})"] = k.amount
                side[f"{plus10}, {HDI_LABEL} ({short[v]})"] = side["channel"].map(
                    {c: interval(r[lo], r[hi], k.amount) for c, r in d.iterrows()})
                continue
            side[f"{label} ({short[v]})"] = side["channel"].map(ch[ch["variant"] == v].set_index("channel")[col])
            fm[f"{label} ({short[v]})"] = value
            if len(d) and lo in d:
                side[f"{label}, {HDI_LABEL} ({short[v]})"] = side["channel"].map(
                    {c: k.return_interval(r[lo], r[hi]) for c, r in d.iterrows()})
    per_geo = roas[["variant", "geo", "channel", "spend"]].copy()
    per_geo[marginal] = roas["mroas_mean"]
    if "mroas_hdi_low" in roas:
        per_geo[f"{marginal}, {HDI_LABEL}"] = [k.return_interval(lo, hi) for lo, hi in
                                               zip(roas["mroas_hdi_low"], roas["mroas_hdi_high"])]
        per_geo[f"{kpi}, {plus10}"] = roas["response_plus_10pct_mean"]
    per_geo[average] = roas["roas_mean"]
    per_geo[f"{average}, {HDI_LABEL}"] = [k.return_interval(lo, hi) for lo, hi in
                                          zip(roas["roas_hdi_low"], roas["roas_hdi_high"])]
    per_geo = per_geo.sort_values(["channel", "geo", "variant"])
    if k.is_money:
        text = (f"Act on the first columns. Marginal ROAS (mROAS) is the {kpi} in {cur} the next {cur} brings at "
                f"today's weekly spend (the last 13 weeks' mean), and the response to +10% is the extra {kpi} from "
                f"raising that spend by a tenth for {horizon or 'the planning horizon in'} weeks: what a lift test "
                f"of extra spend measures, so experiments can check them. Below 1 the next {cur} brings back less "
                f"than it costs. Average ROAS is everything a channel did against zero spend over the training "
                f"period, per {cur} spent: no experiment measures this, and a channel can have a high average ROAS "
                f"and a low mROAS once it saturates.")
        returns = roas.assign(mean=roas["roas_mean"], low=roas["roas_hdi_low"], high=roas["roas_hdi_high"])
        plot = plot_returns(returns, f"ROAS ({cur} of {kpi} per {cur} spent)",
                            f"ROAS per channel, one point per geo, {HDI_LABEL} (dashed: break-even, 1)", 1.0)
    else:
        text = (f"{kpi.capitalize()} are a count, not money, so a channel's return is what one more {k.one} costs "
                f"in {cur} (lower is better; whether it pays depends on what one {k.one} is worth). Act on the "
                f"first columns. The marginal cost per {k.one} is what the next {k.one} costs at today's weekly "
                f"spend (the last 13 weeks' mean), and the response to +10% is the extra {kpi} from raising that "
                f"spend by a tenth for {horizon or 'the planning horizon in'} weeks: what a lift test of extra spend "
                f"measures, so experiments can check them. The average cost per {k.one} is spend over incremental "
                f"{kpi} against zero spend over the training period: no experiment measures this, and a channel "
                f"can have a low average cost and a high marginal cost once it saturates.")
        low = roas["roas_hdi_high"].map(k.return_value)
        high = roas["roas_hdi_low"].map(k.return_value)
        returns = roas.assign(mean=roas["roas_mean"].map(k.return_value), low=low, high=high)
        plot = plot_returns(returns, f"{cur} per incremental {k.one}",
                            f"Average cost per incremental {k.one}, one point per geo ({HDI_LABEL}; lower is better)",
                            None)
    text += (f" The market table adds the geos per posterior draw (so its {HDI_LABEL}s are the market's own); the "
             "per-geo table has each geo's. Uncalibrated and calibrated side by side.")
    images = [png_image(plot, f"{k.return_name} per channel and geo")]
    beside = average_beside_marginal(mk, variant, k)
    if len(beside):
        images.insert(0, png_image(plot_average_marginal(
            beside, f"{cur} of {kpi} per {cur}" if k.is_money else f"{cur} per incremental {k.one}",
            (f"Average ROAS beside marginal ROAS per channel, market, {variant} model ({HDI_LABEL})" if k.is_money
             else f"Average beside marginal cost per incremental {k.one}, market, {variant} model ({HDI_LABEL}; "
                  "lower is better)"), 1.0 if k.is_money else None), f"average beside marginal {k.return_name}"))
    return {"text": text,
            "html": html_table(side, fm) + "<h3>Per geo</h3>" + html_table(
                per_geo, {"spend": m, marginal: value, average: value, f"{kpi}, {plus10}": k.amount}),
            "images": images}


def average_beside_marginal(market: pd.DataFrame, variant: str, k: Kpi) -> pd.DataFrame:
    """Per channel of marts.channel_roas_market (one variant, no all-media row): the average figure and
    the marginal one with their intervals, in the KPI's terms (ROAS for money, else the cost per
    incremental KPI, whose bounds swap); columns channel, avg, avg_low, avg_high, marg, marg_low, marg_high."""
    if not len(market) or "mroas_mean" not in market:
        return pd.DataFrame()
    d = market[market["variant"] == variant]
    out = pd.DataFrame({"channel": d["channel"].values})
    for key, col in (("avg", "roas"), ("marg", "mroas")):
        mean, lo, hi = (d[f"{col}_{x}"].astype(float).values for x in ("mean", "hdi_low", "hdi_high"))
        if k.is_money:
            out[key], out[f"{key}_low"], out[f"{key}_high"] = mean, lo, hi
        else:
            f = k.return_value
            out[key] = [f(v) for v in mean]
            out[f"{key}_low"] = [f(v) for v in hi]
            out[f"{key}_high"] = [f(v) for v in lo]
    return out


def _validated_at(run_time: str) -> str:
    """A GX run time (`20261206T232734.433174Z`) as a reader writes it."""
    try:
        return datetime.strptime(run_time[:15], "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return run_time


def _track_record_section(inp: ReportInputs, variant: str) -> dict:
    """Each earlier model's forecast of the weeks that have since arrived, and its posterior re-evaluated on
    the spend that happened, against the KPI that came (marts.track_record); else what this run forecast."""
    from mmm_pipeline.model import track_record as tr

    k = inp.kpi
    rec, fc = inp.t("track_record"), inp.t("forecast")
    intro = ("Each run stores its model's forecast of the coming weeks under the spend it expects. When later "
             "data bring those weeks, the earlier model is re-evaluated on the spend that actually happened and "
             "both are compared with the KPI that came: whether the model's forward predictions hold is worth "
             "knowing before acting on its plans. ")
    if len(rec):
        rows = []
        for (v, mv), g in rec.groupby(["variant", "model_version"], sort=False):
            sm = tr.summary(g)
            m = g[g["geo"] == tr.MARKET]
            rows.append({"variant": v, "model": mv, "weeks": sm["weeks"],
                         "from": day(pd.to_datetime(m["week_start"]).min()), "to": day(pd.to_datetime(m["week_start"]).max()),
                         "forecast MAPE": pct(sm["forecast_mape"]), "forecast 94% coverage": pct(sm["forecast_coverage"]),
                         "on actual spend: MAPE": pct(sm["rescored_mape"]),
                         "on actual spend: 94% coverage": pct(sm["rescored_coverage"])})
        table = pd.DataFrame(rows)
        worst = table.iloc[0]
        text = intro + (f"{len(table)} earlier model(s) scored; the {worst['variant']} model {worst['model']} "
                        f"forecast {worst['weeks']} week(s) of the market's {k.label} with MAPE {worst['forecast MAPE']} "
                        f"({worst['forecast 94% coverage']} of weeks inside its 94% interval) and, re-evaluated on "
                        f"the spend that happened, MAPE {worst['on actual spend: MAPE']} "
                        f"({worst['on actual spend: 94% coverage']} covered).")
        return {"text": text, "html": html_table(table), "images": []}
    text = intro + "No earlier model's forecast weeks have arrived yet: the first comparison comes with a run whose data reach them."
    mine = fc[(fc["variant"] == variant) & (fc["geo"] == tr.MARKET)] if len(fc) else fc
    if len(mine):
        t = mine.sort_values("week_start")[["week_start", "forecast_mean", "forecast_hdi_low", "forecast_hdi_high"]]
        t = t.assign(week_start=[day(w) for w in t["week_start"]],
                     interval=[interval(lo, hi, k.amount) for lo, hi in zip(t["forecast_hdi_low"], t["forecast_hdi_high"])])
        t = t[["week_start", "forecast_mean", "interval"]].rename(columns={
            "week_start": "week", "forecast_mean": f"forecast {k.label}", "interval": HDI_LABEL})
        text += f" This run's forecast of the market's {k.label} ({variant} model), to be scored then:"
        return {"text": text, "html": html_table(t, {f"forecast {k.label}": k.amount}), "images": []}
    return {"text": text, "html": "", "images": []}


def _data_section(inp: ReportInputs) -> dict:
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
                f"<td>{html.escape(_validated_at(r.validated_at))}</td><td>{'passed' if r.success else 'FAILED'}</td>"
                f"<td class='num'>{number(r.expectations)}</td><td class='num'>{number(r.failed)}</td><td>"
                + (f"<a class='data-docs' href='{html.escape(r.page.as_uri())}'>result page</a>" if r.page else "")
                + "</td></tr>" for r in val.itertuples())
            docs += ("<table><thead><tr><th>suite</th><th>validated</th><th>result</th><th>expectations</th>"
                     f"<th>failed</th><th>Data Docs</th></tr></thead><tbody>{rows}</tbody></table>")
    return {
        "text": (f"{int((inp.load_log['event'] == 'loaded').sum()) if len(inp.load_log) else 0} input files loaded, "
                 f"{int(q['rows'].sum()) if len(q) else 0} rows quarantined, "
                 f"{int(imp['imputed_weeks'].sum()) if len(imp) else 0} cost-per-unit weeks imputed in this market. "
                 + ("Every source is fresh (newest day within "
                    f"{inp.freshness_days} days)." if stale.empty else
                    "Stale: " + ", ".join(f"{r.source} (newest {day(r.newest_day)}, {r.age_days} days old)"
                                          for r in stale.itertuples())
                    + f" against a limit of {inp.freshness_days} days.")),
        "html": "<h3>Input files</h3>" + html_table(inp.load_log) + "<h3>Quarantined rows by reason</h3>"
        + (html_table(q) if len(q) else "<p>Nothing quarantined.</p>")
        + "<h3>Imputed cost-per-unit weeks</h3>" + (html_table(imp[imp["imputed_weeks"] > 0]) if len(imp) and
                                                     (imp["imputed_weeks"] > 0).any() else "<p>None imputed.</p>")
        + "<h3>Freshness</h3>" + html_table(fresh, flag_rows=~fresh["fresh"]) + docs,
        "images": []}


def _held_out_section(holdout: pd.DataFrame, consistency: pd.DataFrame, k: Kpi) -> dict:
    """Each lift test predicted by the calibrated model without it (marts.lift_test_holdout), beside the
    uncalibrated model's prediction, and the calibration consistency check in words."""
    kpi = k.label
    if not len(holdout):
        return {"text": "No calibrated model with lift tests for this market, so no experiment to hold out.",
                "html": "", "images": []}
    scored = holdout[holdout["method"].isin(["reweighted", "needs_refit"])]
    t = holdout[["test_id", "channel", "geo", "scope", "measured", "sigma", "predicted_mean", "predicted_hdi_low",
                 "predicted_hdi_high", "z", "uncal_predicted_mean", "uncal_z", "pareto_k", "method"]].copy()
    t["covered"] = [("" if pd.isna(lo) else ("yes" if lo <= y <= hi else "no"))
                    for y, lo, hi in zip(t["measured"], t["predicted_hdi_low"], t["predicted_hdi_high"])]
    t["method"] = t["method"].astype(str).str.replace("_", " ")
    t = t.rename(columns={"measured": f"measured {kpi}"})
    if len(scored):
        inside = ((scored["measured"] >= scored["predicted_hdi_low"]) & (scored["measured"] <= scored["predicted_hdi_high"]))
        closer = (scored["z"].abs() < scored["uncal_z"].abs())
        text = (f"Each lift test is predicted by the calibrated model fitted without it (the other tests kept: "
                f"leave-one-test-out importance weights on its draws), beside the uncalibrated model. Of "
                f"{len(scored)} test(s) with another test of the same channel in the market, {int(inside.sum())} "
                f"measured {kpi} fall(s) inside the held-out prediction's {HDI_LABEL}, and {int(closer.sum())} "
                "is/are predicted closer (smaller |z|) than by the uncalibrated model. A test without a sibling "
                "is not scored: without it the model knows nothing experimental about that channel. "
                "Needs refit: the test pulls the model too far for the reweighting (Pareto k-hat 0.7 or more); "
                "the benchmark refits those.")
    else:
        text = ("No test has another test of the same channel in this market, so none can be predicted from "
                "the others: add a second test per channel to check the model against experiments it has not seen.")
    if len(consistency):
        pk = float(consistency["pareto_k"].iloc[0])
        bad = consistency[consistency["verdict"] == "inconsistent"]
        if pk >= 0.7:
            text += (f" Consistency: the experiments disagree with what the data alone suggested (Pareto k-hat "
                     f"{pk:.2f}): they move the model further than its uncertainty without them allows, so the "
                     "calibrated and uncalibrated answers cannot both be right; trust the experiments' channels "
                     "less than their intervals suggest until more tests agree.")
        elif len(bad):
            text += (f" Consistency check FAILED for {len(bad)} quantity(ies): the calibrated fit does not equal the "
                     "uncalibrated one updated by the tests (a fitting problem): see marts.calibration_consistency.")
        else:
            text += (" Consistency: the calibrated fit equals the uncalibrated one updated by the tests, for every "
                     f"test's lift and tested cell's {'ROAS and mROAS' if k.is_money else 'average and marginal cost'} "
                     f"(Pareto k-hat {pk:.2f}).")
    fm = {c: number for c in (f"measured {kpi}", "sigma", "predicted_mean", "predicted_hdi_low", "predicted_hdi_high",
                              "uncal_predicted_mean")} | {c: (lambda v: number(v, 2)) for c in ("z", "uncal_z", "pareto_k")}
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


def write_report(report: Report, reports_dir: Path, *, run_id: str | None = None,
                 dagster_ui_url: str | None = None) -> Path:
    """`<reports_dir>/<market>/<model_version>.html` plus its JSON sidecar; then the index (whose runs
    link to `<dagster_ui_url>/runs/<run_id>` when a Dagster UI is configured)."""
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
        write_index(reports_dir, dagster_ui_url=dagster_ui_url)
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


def _index_row(entry: dict, dagster_ui_url: str | None) -> dict:
    """One run of the index in words. Sidecars written before a field existed lack it: "n/a"."""
    h = entry.get("headline") or {}
    k = Kpi(h.get("kpi") or "KPI", h.get("currency") or "")
    period = (f"{h['period_start']} to {h['period_end']} ({h.get('weeks')} weeks)"
              if h.get("period_start") and h.get("period_end") else "n/a")

    def at_margin(channel, mroas) -> str:
        if channel is None:
            return "n/a"
        if mroas is None:
            return channel
        return f"{channel} (mROAS {ratio(mroas)})" if k.is_money else f"{channel} ({k.return_text(mroas)} per {k.one})"

    gain = h.get("plan_gain")
    plan = "n/a" if gain is None else k.amount(gain, signed=True) + (
        f" ({HDI_LABEL} {k.amount(h['plan_gain_low'])} to {k.amount(h['plan_gain_high'])})"
        if h.get("plan_gain_low") is not None and h.get("plan_gain_high") is not None else " (no interval stored)")
    if h.get("plan_weeks"):
        plan += f" over {h['plan_weeks']} weeks"
    if h.get("plan_decision") == "keep_current_mix":
        plan = "keep the current mix" + (f" (the best plan found gains with probability "
                                         f"{pct(h['plan_probability_of_gain'])})"
                                         if h.get("plan_probability_of_gain") is not None else "")
    elif h.get("plan_probability_of_gain") is not None and gain is not None:
        plan += f", probability of gain {pct(h['plan_probability_of_gain'])}"
    run_id = entry.get("run_id") or ""
    return {**entry, "generated": entry["generated_at"][:16].replace("T", " ") + " UTC", "period": period,
            "spend": money(h.get("spend"), k.currency).strip(), "media_share": pct(h.get("media_share")),
            "kpi": k.label, "best": at_margin(h.get("best_channel"), h.get("best_mroas")),
            "worst": at_margin(h.get("worst_channel"), h.get("worst_mroas")), "plan": plan,
            "run_short": run_id[:8],
            "run_url": f"{dagster_ui_url.rstrip('/')}/runs/{run_id}" if dagster_ui_url and run_id else None}


def write_index(reports_dir: Path, *, dagster_ui_url: str | None = None) -> Path:
    """`index.html`: every market, newest report first, then its earlier runs; each run links to its
    page in the Dagster UI when `dagster_ui_url` (MMM_DAGSTER_UI_URL) is set."""
    from jinja2 import Environment, select_autoescape

    entries = list_reports(reports_dir)
    markets: dict[str, list] = {}
    for e in entries:
        markets.setdefault(e["market"], []).append(e)
    for market, runs in markets.items():
        runs.sort(key=lambda e: e["generated_at"], reverse=True)
        markets[market] = [_index_row(e, dagster_ui_url) for e in runs]
    env = Environment(autoescape=select_autoescape(["html", "j2"]))
    page = env.from_string(INDEX_TEMPLATE.read_text()).render(
        markets=markets, any_ungated=any(not runs[0]["gated"] for runs in markets.values()),
        generated_at=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), ui_configured=bool(dagster_ui_url))
    return _write_atomic(Path(reports_dir) / "index.html", page)
