"""Plain results of a validation (no GX objects): :class:`ExpectationOutcome`, :class:`SuiteOutcome`,
and :func:`from_gx_result`, which flattens one GX 1.x expectation result into an outcome."""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

#: Values shown in ExpectationOutcome.observed (and asked of GX as partial_unexpected_count).
SAMPLE_SIZE = 5
_OBSERVED_MAX_CHARS = 200



@dataclass(frozen=True)
class ExpectationOutcome:
    """Result of one expectation, flattened from GX's validation result."""

    expectation: str  # e.g. "expect_column_values_to_not_be_null"
    column: str | None  # column or comma-joined columns, None for table-level
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: str | None  # observed value / partial unexpected list (<= 5 values)


@dataclass(frozen=True)
class SuiteOutcome:
    """Result of :func:`run_suite`."""

    suite: str
    success: bool
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    # file:// URL of this result's Data Docs page (runs through mmm_pipeline.validation.data_docs only)
    data_docs_url: str | None = None

    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def to_markdown(self) -> str:
        """Markdown table of the failed expectations.

        ``"All N expectations passed."`` when none failed.  Expectations that
        passed only thanks to ``mostly`` (unexpected_count > 0) are listed on
        a short "Tolerated" line below, so flagged rows stay visible.
        """
        failed = self.failed()
        lines: list[str] = []
        if not failed:
            lines.append(f"All {len(self.outcomes)} expectations passed.")
        else:
            lines.append(
                f"{len(failed)} of {len(self.outcomes)} expectations failed "
                f"in suite `{_md_cell(self.suite)}`:"
            )
            lines.append("")
            lines.append("| expectation | column | unexpected | % | sample |")
            lines.append("|---|---|---:|---:|---|")
            for o in failed:
                lines.append(
                    "| "
                    + " | ".join(
                        [
                            _md_cell(o.expectation),
                            _md_cell(o.column or "(table)"),
                            "" if o.unexpected_count is None else str(o.unexpected_count),
                            _fmt_pct(o.unexpected_percent),
                            _md_cell(o.observed or ""),
                        ]
                    )
                    + " |"
                )
        tolerated = [o for o in self.outcomes if o.success and (o.unexpected_count or 0) > 0]
        if tolerated:
            parts = [
                f"{o.expectation}({o.column or 'table'}): {o.unexpected_count} unexpected"
                f" ({_fmt_pct(o.unexpected_percent)}%)"
                for o in tolerated
            ]
            lines.append("")
            lines.append("Tolerated (within `mostly`): " + _md_cell("; ".join(parts)))
        return "\n".join(lines)

    def summary(self) -> dict:
        return {"suite": self.suite, "evaluated": len(self.outcomes), "failed": len(self.failed())}


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _fmt_pct(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.2f}" if p >= 0.01 or p == 0 else f"{p:.2g}"



def from_gx_result(r) -> ExpectationOutcome:
    """One GX expectation validation result as an :class:`ExpectationOutcome` (errors as failures)."""
    cfg = r.expectation_config
    kwargs = dict(cfg.kwargs or {})
    res = dict(r.result or {})
    exc = _exception_message(r.exception_info)

    if kwargs.get("column") is not None:
        column: str | None = str(kwargs["column"])
    elif kwargs.get("column_list"):
        column = ",".join(map(str, kwargs["column_list"]))
    elif kwargs.get("column_A") is not None:
        column = f"{kwargs['column_A']},{kwargs['column_B']}"
    else:
        column = None

    if exc is not None:
        observed: str | None = f"error: {exc}"
    elif "observed_value" in res:
        observed = _fmt_value(res["observed_value"])
        if column is None and "value" in kwargs:
            observed += f" (expected {_fmt_value(kwargs['value'])})"
        elif column is None and ("min_value" in kwargs or "max_value" in kwargs):
            lo, hi = kwargs.get("min_value"), kwargs.get("max_value")
            lo_s = "" if lo is None else _fmt_value(lo)
            hi_s = "" if hi is None else _fmt_value(hi)
            observed += f" (expected {lo_s}..{hi_s})"
    elif res.get("partial_unexpected_list"):
        observed = ", ".join(_fmt_value(v) for v in res["partial_unexpected_list"][:SAMPLE_SIZE])
    else:
        observed = None
    if observed is not None and len(observed) > _OBSERVED_MAX_CHARS:
        observed = observed[: _OBSERVED_MAX_CHARS - 1] + "…"

    return ExpectationOutcome(
        expectation=str(cfg.type),
        column=column,
        success=bool(r.success) and exc is None,
        element_count=_int_or_none(res.get("element_count")),
        unexpected_count=_int_or_none(res.get("unexpected_count")),
        unexpected_percent=_float_or_none(res.get("unexpected_percent")),
        observed=observed,
    )


def _exception_message(info) -> str | None:
    """GX 1.x: either {raised_exception, exception_message, ...} or {metric_id: {...}}."""
    if not info:
        return None
    if "raised_exception" in info:
        if info.get("raised_exception"):
            return str(info.get("exception_message") or "exception")
        return None
    for sub in info.values():
        if isinstance(sub, dict) and sub.get("raised_exception"):
            return str(sub.get("exception_message") or "exception")
    return None


def _int_or_none(v) -> int | None:
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _float_or_none(v) -> float | None:
    try:
        f = None if v is None else float(v)
    except (TypeError, ValueError):
        return None
    return None if f is None or math.isnan(f) else f


def _fmt_value(v) -> str:
    if isinstance(v, dict):
        return "(" + ", ".join(_fmt_value(x) for x in v.values()) + ")"
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(_fmt_value(x) for x in v) + ")"
    if v is None:
        return "null"
    try:  # NaN / NaT / pd.NA; np.datetime64 -> Timestamp
        import numpy as np
        import pandas as pd

        if pd.isna(v):
            return "null"
        if isinstance(v, np.datetime64):
            v = pd.Timestamp(v)
        elif isinstance(v, np.generic):
            v = v.item()
    except (TypeError, ValueError):
        pass
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, _dt.datetime):
        if (v.hour, v.minute, v.second, v.microsecond) == (0, 0, 0, 0):
            return v.date().isoformat()
        return v.isoformat()
    if isinstance(v, _dt.date):
        return v.isoformat()
    text = str(v)
    if text.endswith("T00:00:00") and len(text) == 19:  # GX-serialised midnight datetimes
        return text[:10]
    return text

