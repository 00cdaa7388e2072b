"""Metadata helpers shared by the assets: row counts, schema, preview, plots."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import dagster as dg
import pandas as pd

from mmm_pipeline import code_graph
from mmm_pipeline.paths import safe_name

OWNERS = ["team:marketing-analytics"]


def source_version(*modules: str, glue: str | None = None) -> str:
    """An asset's `code_version`: the normalised source (no comments, docstrings or layout) of the
    `mmm_pipeline` modules that compute it and every project module they import, lazily or not
    (`mmm_pipeline.code_graph`), plus `glue`, the asset's own module, by its own source only
    (following its imports would reach every asset's code in that module).

    It changes whenever that code does (no constant to forget to bump), so Dagster shows the old
    materializations as stale and the asset's data version, which includes it, appends new
    history rows; a docstring or comment edit changes nothing. Nothing is imported (the model
    stack is slow to import when the code location loads).
    """
    return code_graph.source_version(*modules, own=(glue,) if glue else ())


def table_metadata(df: pd.DataFrame, table: str, preview_rows: int = 10) -> dict:
    return {
        "table": dg.MetadataValue.text(table),
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()]
        ),
        "preview": dg.MetadataValue.md(df.head(preview_rows).to_markdown(index=False)),
    }


def figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    """The UI renders markdown images from data URIs, so the plot shows in place."""
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})")


def plots_metadata(artifacts, figures: dict, folder: str | tuple[str, ...], file_prefix: str = "") -> dict:
    """Save each figure as `<folder>/<file_prefix><key>.png` and show it in the UI as `plot_<key>`.

    `folder` is one component or a tuple of them (`("curves", market)`); each, and the file stem, goes
    through `safe_name`: keys and folders carry channel, market and scenario names from the input.
    """
    folder_parts = [safe_name(p) for p in ((folder,) if isinstance(folder, str) else folder)]
    meta = {}
    for key, fig in figures.items():
        png = figure_png(fig)
        path = artifacts.write_bytes(str(Path(*folder_parts, f"{safe_name(f'{file_prefix}{key}')}.png")), png)
        meta[f"plot_{key}"] = png_markdown(png, f"{file_prefix}{key}")
        meta[f"plot_{key}_path"] = dg.MetadataValue.path(str(path))
    return meta
