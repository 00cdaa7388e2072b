"""What the report's numbers are called: the KPI's unit, the per-channel return figure, model parts.

A report speaks of one KPI. When it is money (revenue) a channel's return is ROAS, money per
money with break-even at 1; when it is a count (orders, conversions) money per count has no
break-even, so the return is the cost per incremental KPI (spend / incremental KPI, in the
currency). Every sentence, table header and axis of the report asks this module, so the two
never mix (issue 29: "867,514 orders of orders", ROAS "EUR of orders per EUR").
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mmm_pipeline.reporting.charts import money, number, ratio
# which KPI is money: one rule for the marts' kpi_unit and the report's wording
from mmm_pipeline.units import MONEY_KPI_WORDS, kpi_is_money



@dataclass(frozen=True)
class Kpi:
    """The KPI as the report words it: `name` (the KPI column) in `currency` when it is money."""

    name: str
    currency: str

    @property
    def is_money(self) -> bool:
        return kpi_is_money(self.name)

    @property
    def label(self) -> str:
        return self.name.replace("_", " ")

    @property
    def one(self) -> str:
        """One unit of a count KPI ("order" of "orders"), for "cost per incremental order"."""
        w = self.label
        return w[:-1] if w.endswith("s") and not w.endswith("ss") else w

    @property
    def unit(self) -> str:
        """What an axis or a column of KPI amounts is in."""
        return self.currency if self.is_money else self.label

    def amount(self, v, *, signed: bool = False) -> str:
        """An amount with its unit: "1,234 EUR" or "1,234 orders"; `signed` writes a gain's "+"."""
        if number(v) == "n/a":
            return "n/a"
        text = money(v, self.currency) if self.is_money else f"{number(v)} {self.label}"
        return f"+{text}" if signed and not text.startswith("-") and number(v) != "0" else text

    def phrase(self, v, *, signed: bool = False) -> str:
        """An amount that names the KPI once: "1,234 EUR of revenue" or "1,234 orders"."""
        text = self.amount(v, signed=signed)
        return f"{text} of {self.label}" if self.is_money and text != "n/a" else text

    # ---- the per-channel return: ROAS for money, cost per incremental KPI for a count

    @property
    def return_name(self) -> str:
        return "ROAS" if self.is_money else f"cost per incremental {self.one}"

    @property
    def marginal_name(self) -> str:
        return "marginal ROAS (mROAS)" if self.is_money else f"marginal cost per incremental {self.one}"

    @property
    def return_unit(self) -> str:
        return f"{self.currency} of {self.label} per {self.currency} spent" if self.is_money else \
            f"{self.currency} per incremental {self.one}"

    def return_value(self, roas) -> float:
        """A ROAS-type figure (KPI per unit of money) in this KPI's terms (the cost for a count)."""
        if self.is_money or roas is None or roas != roas:
            return roas
        return 1.0 / roas if roas > 0 else float("inf")

    def return_text(self, roas) -> str:
        if self.is_money:
            return ratio(roas)
        cost = self.return_value(roas)
        if cost is None or cost != cost:
            return "n/a"
        if cost == float("inf"):
            return "no incremental " + self.label
        return self.cost_text(cost)

    def cost_text(self, cost) -> str:
        """Money per unit of the KPI: cents, or three significant digits under one unit of money
        (0.0123 EUR, not 0.01 EUR)."""
        if cost is None or cost != cost:
            return "n/a"
        digits = 2 if abs(cost) >= 1 or cost == 0 else min(6, 2 - math.floor(math.log10(abs(cost))))
        return money(cost, self.currency, digits)

    def return_interval(self, lo, hi) -> str:
        """The interval of a ROAS-type figure from its bounds; for a count the bounds swap (1/x falls),
        and a lower bound at or below zero leaves the cost without an upper end."""
        if lo is None or hi is None or lo != lo or hi != hi:
            return "interval not stored"
        if self.is_money:
            return f"{ratio(lo)} to {ratio(hi)}"
        if hi <= 0:
            return "no incremental " + self.label
        return f"{self.return_text(hi)} to " + (self.return_text(lo) if lo > 0 else "no upper bound")


# --------------------------------------------------------------------------- model parameters

# Internal parameter name (its start) -> what it is, for the convergence table. Checked in order.
_PARAMETER_MEANINGS = (
    ("adstock_alpha", "carryover (how much of a week's effect comes in later weeks)"),
    ("adstock_theta", "carryover delay (weeks until a week's effect peaks)"),
    ("saturation_lam", "saturation (how fast extra spend stops paying)"),
    ("saturation_slope", "saturation shape (how S-shaped the curve is)"),
    ("saturation_kappa", "saturation point (the spend at half the channel's largest effect)"),
    ("saturation_relative_kappa", "saturation point (the spend at half the channel's largest effect)"),
    ("saturation_beta", "channel effect size (largest weekly contribution)"),
    ("saturation_relative_roi", "channel effect size (return in a typical week)"),
    ("saturation_roi", "channel effect size (return in a typical week)"),
    ("intercept", "baseline (the KPI without media)"),
    ("trend", "baseline trend"),
    ("gamma_fourier", "seasonality"),
    ("fourier", "seasonality"),
    ("gamma_control", "control variables"),
    ("media_temporal", "media effect changing over time"),
    ("lift", "lift-test terms"),
    ("y_sigma", "noise (weekly variation the model does not explain)"),
)


def parameter_meaning(name: str) -> str:
    """What an internal parameter (`saturation_relative_roi_channel_raw`) is, in words; its
    pooled (per-channel) and per-geo pieces are one model part."""
    for prefix, meaning in _PARAMETER_MEANINGS:
        if name.startswith(prefix):
            return meaning
    return "other model terms"


def describe_gate_failures(text: str) -> str:
    """A gate failure (`max R-hat 1.04 > 1.01 (parameters: saturation_lam; worst: ...)`) with the
    model parts it concerns in words instead of parameter names."""
    def parts(m: re.Match) -> str:
        names = [n.strip() for n in m.group(1).split(",") if n.strip() and n.strip() != "?"]
        meanings = list(dict.fromkeys(parameter_meaning(n).split(" (")[0] for n in names))
        return f"(in: {', '.join(meanings)})" if meanings else ""
    return re.sub(r"\s*\(parameters: ([^;)]*)(?:; worst: [^)]*)?\)", lambda m: " " + parts(m), text).strip()


def gates_text(profile: str, gates) -> str:
    """The convergence gates of a profile in words, from its GateConfig (the thresholds in force)."""
    div = ("no divergent transitions" if not gates.max_divergence_share else
           f"divergent transitions at most {100 * gates.max_divergence_share:g}% of draws")
    return (f"{profile} profile: max R-hat at most {gates.max_rhat:g}, bulk ESS at least {gates.min_ess_bulk:g}, "
            f"{div}")


__all__ = ["Kpi", "MONEY_KPI_WORDS", "describe_gate_failures", "gates_text", "kpi_is_money", "parameter_meaning"]
