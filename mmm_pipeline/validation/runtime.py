"""The Great Expectations runtime, imported lazily: the module, one ephemeral context per process,
and :func:`run_suite`, which validates a DataFrame in it (tests and ad-hoc checks; the asset checks
go through the file-backed context of :mod:`mmm_pipeline.validation.data_docs`).

The helpers both contexts need are public here: :func:`import_gx`, :func:`gx_expectations`,
:func:`normalise_frame`, :func:`detached_copy`, :func:`config_key`.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any

from mmm_pipeline.paths import safe_name
from mmm_pipeline.validation.outcomes import SAMPLE_SIZE, SuiteOutcome, from_gx_result

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Serialises use of the ephemeral context (GX contexts are not thread safe).
LOCK = threading.RLock()
_STATE: dict[str, Any] = {}  # "pid", "context", "datasource"
_DATASOURCE_NAME = "mmm_pipeline_pandas"


def import_gx():
    """``great_expectations``, imported with analytics off and its import warnings silenced (first call takes seconds)."""
    import sys

    if "great_expectations" not in sys.modules:
        os.environ["GX_ANALYTICS_ENABLED"] = "false"
        import warnings

        with warnings.catch_warnings():
            # GX's dependencies import deprecated stdlib modules (sre_constants, ...)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            import great_expectations  # noqa: F401
            import great_expectations.expectations  # noqa: F401
    import great_expectations as gx

    return gx


def gx_expectations():
    """``great_expectations.expectations`` (the expectation classes), imported as :func:`import_gx` does."""
    import_gx()
    import great_expectations.expectations as gxe

    return gxe


def ephemeral_datasource():
    """The per-process ephemeral context's pandas datasource, created on first use (call under :data:`LOCK`)."""
    if _STATE.get("pid") == os.getpid() and "datasource" in _STATE:
        return _STATE["datasource"]
    gx = import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    no_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=no_bars,
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = no_bars  # belt and braces
    datasource = context.data_sources.add_pandas(name=_DATASOURCE_NAME)
    _STATE.clear()
    _STATE.update(pid=os.getpid(), context=context, datasource=datasource)
    return datasource


def normalise_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Convert object columns of ``datetime.date`` values to datetime64 (copy only if needed), so
    date expectations compare like with like (DuckDB DATE columns arrive as datetime64)."""
    import pandas as pd

    converted: dict[str, Any] = {}
    for col in df.columns:
        s = df[col]
        if s.dtype != object:
            continue
        idx = s.first_valid_index()
        if idx is None:
            continue
        v = s.loc[idx]
        if isinstance(v, pd.Series):  # duplicate index labels
            v = v.iloc[0]
        if isinstance(v, _dt.date) and not isinstance(v, _dt.datetime):
            try:
                converted[col] = pd.to_datetime(s)
            except (TypeError, ValueError):
                pass
    if not converted:
        return df
    out = df.copy(deep=False)
    for col, values in converted.items():
        out[col] = values
    return out


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------


def run_suite(suite_name: str, df: pd.DataFrame, expectations: list) -> SuiteOutcome:
    """Validate ``df`` against GX 1.x ``expectations`` and flatten the result.

    ``expectations`` are ``great_expectations.expectations`` objects (e.g. from
    the builders below).  They are copied, so the same list can be reused for
    several runs.  Identical expectations are evaluated once (an
    ExpectationSuite is set-like).  An expectation that errors (e.g. missing
    column) is reported as failed with ``observed="error: ..."``.
    """
    import copy

    gx = import_gx()
    frame = normalise_frame(df)
    result_format = {"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}

    with LOCK:
        datasource = ephemeral_datasource()
        asset_name = f"{safe_name(suite_name)}-{uuid.uuid4().hex}"
        asset = datasource.add_dataframe_asset(name=asset_name)
        try:
            batch_def = asset.add_batch_definition_whole_dataframe("whole")
            batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
            suite = gx.ExpectationSuite(
                name=safe_name(suite_name),
                expectations=[detached_copy(copy, e) for e in expectations],
            )
            result = batch.validate(suite, result_format=result_format)
        finally:
            try:
                datasource.delete_asset(asset_name)
            except Exception:  # pragma: no cover - best effort cleanup
                pass

    # GX groups results by domain; report them in the order they were given.
    order = {config_key(e.configuration): i for i, e in reversed(list(enumerate(expectations)))}
    results = sorted(
        result.results,
        key=lambda r: order.get(config_key(r.expectation_config), len(order)),
    )
    outcomes = [from_gx_result(r) for r in results]
    return SuiteOutcome(
        suite=suite_name,
        success=bool(result.success) and all(o.success for o in outcomes),
        outcomes=outcomes,
    )


def detached_copy(copy_mod, expectation):
    """A copy of a GX expectation without its suite id, so one list can feed several suites."""
    e = copy_mod.copy(expectation)
    if getattr(e, "id", None):
        e.id = None
    return e


def config_key(cfg) -> tuple[str, str]:
    """(type, kwargs) of an expectation configuration without batch ids: matches results to the
    expectations they came from (GX reorders results by domain)."""
    kwargs = {k: v for k, v in (cfg.kwargs or {}).items() if k != "batch_id"}
    return str(cfg.type), repr(sorted(kwargs.items(), key=lambda kv: kv[0]))



def ephemeral_context_and_datasource() -> tuple[Any, Any]:
    """(context, datasource) of this process's ephemeral GX context, created on first use; the same
    objects on every call in one process (``run_suite`` reuses them)."""
    with LOCK:
        ephemeral_datasource()
        return _STATE["context"], _STATE["datasource"]
