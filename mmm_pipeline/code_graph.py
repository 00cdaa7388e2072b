"""The project's own import graph and normalised source, read from the files (nothing is imported).

Two users: code versions (an asset's version hashes the normalised source of every project
module its code reaches, so a change there refits and a docstring edit does not) and the test
that the graph has no cycle. Every import counts, those inside functions included: a lazy import
still runs when the asset does.

Edges: ``import a.b`` -> ``a.b``; ``from a import b`` -> ``a`` (its ``__init__`` runs and its
namespace is read) and ``a.b`` when that is a module. Imports under ``if TYPE_CHECKING:`` never
run and are left out. Ancestor packages reached only because a
submodule is imported are not edges (Python imports them first, they do not compute anything).
"""

from __future__ import annotations

import ast
import hashlib
import textwrap
from functools import lru_cache
from pathlib import Path

PROJECT_PACKAGES = ("mmm_pipeline", "assets", "resources")
# Modules no code version hashes (their imports are still followed): the table declarations, whose
# description edits must not refit every model (the warehouse applies a type change in place).
UNVERSIONED = frozenset({"mmm_pipeline.schema"})
ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the project packages under `root`: dotted name -> file."""
    out = {}
    for pkg in PROJECT_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    if not level:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def _type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None) if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of `tree` except the bodies of ``if TYPE_CHECKING:`` (their ``else`` runs)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        todo.extend(node.orelse if _type_checking(node) else ast.iter_child_nodes(node))


def imports(module: str, root: Path = ROOT) -> set[str]:
    """The project modules `module` imports anywhere in its file."""
    modules = project_modules(root)
    path = modules[module]
    found = set()
    for target, names in _import_statements(path.read_text(), module, path.name == "__init__.py"):
        found.add(target)
        found.update(f"{target}.{n}" for n in names if f"{target}.{n}" in modules)
    return {m for m in found if m in modules and m != module}


@lru_cache(maxsize=1024)  # keyed on the text: a project's files are parsed once per content
def _import_statements(text: str, module: str, is_package: bool) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out = []
    for node in _runtime_nodes(ast.parse(text)):
        if isinstance(node, ast.Import):
            out += [(a.name, ()) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((_resolve(module, is_package, node.level, node.module), tuple(a.name for a in node.names)))
    return tuple(out)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    return {m: imports(m, root) for m in project_modules(root)}


def reached(*modules: str, root: Path = ROOT) -> list[str]:
    """`modules` and every project module they import, transitively (sorted)."""
    seen, todo = set(), list(modules)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imports(m, root))
    return sorted(seen)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth: the graph's longest import chain (tens)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def normalised_source(path: Path) -> str:
    """The file's code without comments, docstrings or layout (its AST, unparsed)."""
    return normalise(Path(path).read_text())


@lru_cache(maxsize=1024)
def normalise(text: str) -> str:
    """Python source without comments, docstrings or layout (also used to pin a library's code)."""
    tree = ast.parse(textwrap.dedent(text))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def source_version(*modules: str, own: tuple[str, ...] = (), root: Path = ROOT) -> str:
    """A hash of the normalised source of `modules` and every project module they reach, and of
    the `own` modules' files alone (their imports not followed)."""
    h = hashlib.sha256()
    files = project_modules(root)
    for m in sorted({*reached(*modules, root=root), *own} - UNVERSIONED):
        h.update(m.encode() + b"\0" + normalised_source(files[m]).encode() + b"\0")
    return h.hexdigest()[:12]
