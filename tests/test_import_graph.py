"""The project's modules import each other one way: no cycle, lazy imports inside functions included."""

from __future__ import annotations

import textwrap

from mmm_pipeline import code_graph


def test_the_project_import_graph_has_no_cycle():
    graph = code_graph.import_graph()
    assert len(graph) > 50 and graph["assets.models"]  # the walk found the project
    assert code_graph.cycles(graph) == []


def _project(tmp_path, files: dict[str, str]):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    code_graph.project_modules.cache_clear()
    return tmp_path


def test_a_cycle_through_a_lazy_import_or_a_package_init_is_found(tmp_path):
    root = _project(tmp_path, {
        "mmm_pipeline/__init__.py": "",
        "mmm_pipeline/model/__init__.py": "from mmm_pipeline.model.fit import fit\n",
        "mmm_pipeline/model/fit.py": "def fit():\n    from mmm_pipeline.model import build\n",
        "mmm_pipeline/model/build.py": "from typing import TYPE_CHECKING\n"
                                       "if TYPE_CHECKING:\n    from mmm_pipeline.model.fit import fit\n",
        "mmm_pipeline/a.py": "def f():\n    from . import b\n",
        "mmm_pipeline/b.py": "import mmm_pipeline.a\n",
        "assets/__init__.py": "", "resources/__init__.py": "",
    })
    try:
        graph = code_graph.import_graph(root)
        assert graph["mmm_pipeline.model.build"] == set()  # TYPE_CHECKING never runs
        assert code_graph.cycles(graph) == [["mmm_pipeline.a", "mmm_pipeline.b"],
                                            ["mmm_pipeline.model", "mmm_pipeline.model.fit"]]
    finally:
        code_graph.project_modules.cache_clear()
