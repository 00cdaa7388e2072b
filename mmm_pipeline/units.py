"""What the marts' money and KPI columns are in: the reporting currency, the KPI's name and its unit
(the values of every mart's `currency`, `kpi_name` and `kpi_unit` columns, `mmm_pipeline.schema`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmm_pipeline.schema import Units

if TYPE_CHECKING:
    from mmm_pipeline.settings import PipelineConfig

# KPI names that are money, so they are in the reporting currency (anything else is a count).
MONEY_KPI_WORDS = ("revenue", "sales", "gmv", "value", "turnover", "income")
COUNT = "count"


def kpi_is_money(kpi_name: str) -> bool:
    return any(w in kpi_name.lower() for w in MONEY_KPI_WORDS)


def kpi_unit(kpi_name: str, currency: str) -> str:
    return currency if kpi_is_money(kpi_name) else COUNT


def reporting_currency(con, configured: str | None) -> str:
    """pipeline.yaml `reporting_currency`, else the channel catalogue's only currency ("?" when it has
    several: ingestion fails then, naming them)."""
    if configured:
        return configured.upper()
    found = [c for (c,) in con.execute("SELECT DISTINCT upper(currency) FROM raw.channels ORDER BY 1").fetchall()]
    return found[0] if len(found) == 1 else "?"


def run_units(con, config: "PipelineConfig") -> Units:
    """The run's units: the reporting currency, and the KPI of the newest staging.kpi_weekly (None
    before it exists: tables with KPI columns then refuse to be written)."""
    currency = reporting_currency(con, config.reporting_currency)
    has_kpi = con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = 'staging' "
                          "AND view_name = 'kpi_weekly_latest'").fetchone()[0]
    row = con.execute("SELECT any_value(kpi_name) FROM staging.kpi_weekly_latest").fetchone() if has_kpi else None
    kpi = row[0] if row and row[0] else None
    return Units(currency, kpi, kpi_unit(kpi, currency) if kpi else None)
