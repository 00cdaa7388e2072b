"""Validation through a file-backed GX context, so every result is a Great Expectations Data Docs page.

`validate(spec, df, gx_root)` runs a :class:`~mmm_pipeline.validation.suites.SuiteSpec`
as GX intends: one stored suite (runtime values kept as suite parameters), one
``ValidationDefinition`` and one ``Checkpoint`` with ``UpdateDataDocsAction``
per check, in the context at ``<gx_root>`` (``MMM_ARTIFACT_DIR/gx``). The run
passes the DataFrame as batch parameter and the week lists, date ranges and
catalogues as expectation parameters, so a new week does not rebuild the
suite. The outcome is the same plain :class:`SuiteOutcome` as
:func:`~mmm_pipeline.validation.run_suite` gives, plus ``data_docs_url``.

Above 1M rows the raw ad-reporting suite is counted in SQL
(:func:`~mmm_pipeline.validation.raw_ad_reporting_sql_outcome`): that outcome is reported as
DuckDB counts in the check's metadata and has no Data Docs page (GX has no public way to store a
result it did not compute).

A file lock beside the context serialises processes (the multiprocess
executor runs checks in parallel, and GX rewrites its index page on each run).
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any

from filelock import FileLock

from mmm_pipeline.paths import safe_name
from mmm_pipeline.validation import runtime
from mmm_pipeline.validation.outcomes import SAMPLE_SIZE, SuiteOutcome, from_gx_result
from mmm_pipeline.validation.suites import SuiteSpec

DATASOURCE = "mmm_pipeline"
SITE = "local_site"
_CONTEXTS: dict[tuple[int, str], Any] = {}
_LOCK = threading.RLock()


def site_index(gx_root: Path) -> Path:
    """The Data Docs home page (exists once a validation ran)."""
    return Path(gx_root) / "uncommitted" / "data_docs" / SITE / "index.html"


def context(gx_root: Path):
    """The file-backed context at `gx_root` (created on first use), one per process and folder."""
    gx = runtime.import_gx()
    gx_root = Path(gx_root)
    key = (os.getpid(), str(gx_root))
    if key not in _CONTEXTS:
        gx_root.parent.mkdir(parents=True, exist_ok=True)
        # project_root_dir is the folder that holds `gx/`
        ctx = gx.get_context(mode="file", project_root_dir=str(gx_root.parent))
        if Path(ctx.root_directory).resolve() != gx_root.resolve():
            raise RuntimeError(f"GX context landed in {ctx.root_directory}, expected {gx_root}")
        ctx.variables.progress_bars = {"globally": False, "metric_calculations": False}
        ctx.variables.save()
        _CONTEXTS[key] = ctx
    return _CONTEXTS[key]


def _get_or_add(getter, adder, name):
    try:
        return getter(name)
    except Exception:  # not there yet (GX raises a different lookup error per store)
        return adder(name)


def validate(spec: SuiteSpec, df, gx_root: Path | None) -> SuiteOutcome:
    """Run `spec` on `df`: through its Checkpoint (and Data Docs) when `gx_root` is set, else ephemerally."""
    if gx_root is None:
        return runtime.run_suite(spec.name, df, spec.expectations())
    gx = runtime.import_gx()
    frame = runtime.normalise_frame(df)
    name = safe_name(spec.name)  # GX stores suites, checkpoints and Data Docs pages as files by this name
    with _LOCK, FileLock(str(Path(gx_root).parent / ".gx.lock"), timeout=600):
        ctx = context(gx_root)
        ds = _get_or_add(ctx.data_sources.get, lambda n: ctx.data_sources.add_pandas(name=n), DATASOURCE)
        asset = _get_or_add(ds.get_asset, lambda n: ds.add_dataframe_asset(name=n), name)
        batch = _get_or_add(asset.get_batch_definition, asset.add_batch_definition_whole_dataframe, "whole")
        suite = ctx.suites.add_or_update(gx.ExpectationSuite(
            name=name, expectations=[runtime.detached_copy(copy, e) for e in spec.template()]))
        vd = ctx.validation_definitions.add_or_update(gx.ValidationDefinition(name=name, data=batch, suite=suite))
        checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
            name=name, validation_definitions=[vd],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[SITE])],
            result_format={"result_format": "BASIC", "partial_unexpected_count": SAMPLE_SIZE}))
        result = checkpoint.run(batch_parameters={"dataframe": frame}, expectation_parameters=spec.parameters)
        (identifier, suite_result), = result.run_results.items()
        url = _url(ctx, identifier)
    return _flatten(spec, suite_result, url)


def _url(ctx, identifier) -> str | None:
    urls = ctx.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE)
    return urls[0]["site_url"] if urls else None


def _flatten(spec: SuiteSpec, suite_result, url: str | None) -> SuiteOutcome:
    # report in the order the suite lists them (GX groups results by domain)
    order = {runtime.config_key(e.configuration): i for i, e in reversed(list(enumerate(spec.expectations())))}
    results = sorted(suite_result.results, key=lambda r: order.get(runtime.config_key(r.expectation_config), len(order)))
    outcomes = [from_gx_result(r) for r in results]
    return SuiteOutcome(suite=spec.name, success=bool(suite_result.success) and all(o.success for o in outcomes),
                          outcomes=outcomes, data_docs_url=url)
