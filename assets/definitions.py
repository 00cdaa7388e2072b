"""The code location: one `Definitions` object (workspace.yaml points here)."""

from __future__ import annotations

import dagster as dg

from assets import checks, costs, ingestion, staging
from resources import build_resources

ALL_ASSETS = dg.load_assets_from_modules([ingestion, staging, costs])
ALL_CHECKS = dg.load_asset_checks_from_modules([checks])

# The whole graph, checks included: blocking checks stop what is downstream of them.
mmm_job = dg.define_asset_job(
    "mmm_job",
    selection=dg.AssetSelection.all(),
    description="Ingest, validate, stage and price the input folder (MMM_INPUT_DIR).",
)

defs = dg.Definitions(
    assets=ALL_ASSETS,
    asset_checks=ALL_CHECKS,
    jobs=[mmm_job],
    resources=build_resources(),
)
