"""Metadata helpers shared by the assets: row counts, schema, preview, plots."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import io
from pathlib import Path

import dagster as dg
import pandas as pd

from mmm_pipeline.paths import safe_name

OWNERS = ["team:marketing-analytics"]


def hash_sources(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(Path(path).read_bytes())
    return h.hexdigest()[:12]


def module_sources(module: str) -> list[Path]:
    """The source files of a module (``a.b.c`` -> ``a/b/c.py``) or of a package and everything
    below it (``a/b/**/*.py``, sorted), found from the top package's folder without importing
    anything below it (``find_spec`` of a submodule would import its parent packages)."""
    top, *rest = module.split(".")
    base = Path(importlib.util.find_spec(top).submodule_search_locations[0]).joinpath(*rest)
    if base.is_dir():
        return sorted(base.rglob("*.py"))
    path = base.with_suffix(".py")
    if not path.is_file():
        raise ModuleNotFoundError(f"no source for {module} ({path})")
    return [path]


def source_version(*modules: str) -> str:
    """An asset's `code_version`: a hash of the source of the `mmm_pipeline` modules that compute it.

    It changes whenever that code does (no constant to forget to bump), so Dagster
    shows the old materializations as stale and the asset's data version, which
    includes it, appends new history rows. A package stands for all its modules
    (``mmm_pipeline.model``). Modules are found without importing them (the model
    stack is slow to import when the code location loads).
    """
    return hash_sources([path for m in modules for path in module_sources(m)])


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
