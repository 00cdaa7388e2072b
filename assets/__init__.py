"""Dagster assets and asset checks: thin wrappers over `mmm_pipeline`.

The code location's single `Definitions` object is `assets.definitions.defs`.
"""
