"""Great Expectations 1.x validation of the pipeline's tables: suites, runner, outcomes, Data Docs.

The Dagster asset checks read a table from DuckDB into pandas, pick one of the
suites below (a :class:`SuiteSpec`: expectations with their runtime values as
suite parameters) and run it through :func:`mmm_pipeline.validation.data_docs.validate`
(a file-backed context with a Checkpoint per check, so every result is a Data
Docs page); :func:`run_suite` runs the same expectations in an ephemeral
context (tests, no files). Either returns :class:`SuiteOutcome`, plain data
(no GX objects) that the checks turn into check metadata (``summary()`` and
``to_markdown()``, plus ``data_docs_url``).

Design notes
------------
* ``great_expectations`` is imported lazily (inside functions): importing it
  costs seconds, and this module is imported by the Dagster code location.
  ``GX_ANALYTICS_ENABLED=false`` is set before the first import, and the
  context is created with analytics and progress bars off, so validation
  prints nothing.
* For :func:`run_suite`, one ephemeral (in-memory) GX context and one pandas
  datasource are created per process and reused.  Every :func:`run_suite` call registers a dataframe
  asset under a unique name (``<suite>-<uuid>``) and deletes it again
  afterwards, so calls never collide.  A process-wide lock serialises runs
  (the GX context is not thread safe).
* ``dagster-ge`` is not used: it pins GX < 1.

Dates
-----
DuckDB ``DATE`` columns arrive in pandas as ``datetime64`` (pandas Timestamps),
and pandas refuses to compare a Timestamp with a ``datetime.date``.  The
builders therefore turn every date parameter into a ``pandas.Timestamp``, and
:func:`run_suite` converts object columns holding ``datetime.date`` values to
``datetime64`` before validating, so either representation works.

Nullable key parts
------------------
``ad_group_id`` and ``ad_id`` of the raw ad reporting table are nullable but
part of its natural key.  The uniqueness expectation expects callers to
coalesce them to ``''`` first (as the SQL natural key does); GX's pandas
engine would also treat two nulls as equal (``DataFrame.duplicated``), but
other engines would not, so do not rely on it.

Modules: ``suites`` (the :class:`SuiteSpec` builders and the SQL twin of the raw
suite), ``runtime`` (lazy GX import, the ephemeral context, :func:`run_suite`),
``outcomes`` (the plain result types), ``data_docs`` (the file-backed context
the asset checks use).
"""

from mmm_pipeline.validation.outcomes import ExpectationOutcome, SuiteOutcome
from mmm_pipeline.validation.runtime import run_suite
from mmm_pipeline.validation.suites import (
    COST_PER_UNIT_KEY, COST_UNITS, KPI_WEEKLY_KEY, MEDIA_WEEKLY_KEY, RAW_AD_REPORTING_KEY, SuiteSpec,
    CONTROLS_WEEKLY_KEY, controls_weekly_suite, cost_per_unit_expectations, cost_per_unit_suite, kpi_weekly_expectations, kpi_weekly_suite,
    lift_tests_expectations, lift_tests_suite, media_weekly_expectations, media_weekly_suite,
    raw_ad_reporting_expectations, raw_ad_reporting_sql_outcome, raw_ad_reporting_suite,
)

__all__ = [
    "ExpectationOutcome", "SuiteOutcome", "SuiteSpec", "run_suite",
    "raw_ad_reporting_suite", "media_weekly_suite", "kpi_weekly_suite", "cost_per_unit_suite", "lift_tests_suite",
    "controls_weekly_suite", "CONTROLS_WEEKLY_KEY",
    "raw_ad_reporting_expectations", "media_weekly_expectations", "kpi_weekly_expectations",
    "cost_per_unit_expectations", "lift_tests_expectations", "raw_ad_reporting_sql_outcome",
    "RAW_AD_REPORTING_KEY", "MEDIA_WEEKLY_KEY", "KPI_WEEKLY_KEY", "COST_PER_UNIT_KEY", "COST_UNITS",
]
