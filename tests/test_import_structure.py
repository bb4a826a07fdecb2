"""The packages' import graph: dependencies point one way and no modules import each other in a circle.

Every ``import`` counts, at module level or inside a function (a lazy import still ties two modules
together); imports under ``if TYPE_CHECKING:`` do not (they never run), except inside ``analysis.report``, where a
type-only import back into the package is a circle in the design all the same (the report is data; its writers
depend on it, not the other way round).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("entropy", "quant", "analysis")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _imports(path: Path, type_checking: bool = False) -> set[str]:
    """Every module name imported by the file (the submodule itself for ``from pkg import submodule``); with
    ``type_checking``, also those imported only for type checkers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if not type_checking and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _graph(type_checking: str = "") -> dict[str, set[str]]:
    """Module -> the project modules it imports; type-only imports count in modules under ``type_checking``."""
    mods = _modules()
    graph = {}
    for m, path in mods.items():
        imported = _imports(path, bool(type_checking) and m.startswith(type_checking))
        # 'from pkg import sub' depends on pkg.sub, not on pkg's __init__ and everything it imports
        subs = {n for n in imported if n in mods and n.rpartition(".")[0] in imported}
        graph[m] = {n for n in imported if n in mods and n != m and not any(s.startswith(n + ".") for s in subs)}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    graph = _graph()
    assert {"analysis.report.run", "analysis.report.sweep", "entropy.container"} <= set(graph)
    assert "analysis.report.measure" in graph["analysis.report.sweep"]  # the sweep uses the report's measurement
    assert "analysis.report.sweep" in graph["analysis.report.run"]
    assert _cycles(graph) == []


def test_no_circle_inside_the_report_package_even_for_type_checkers():
    graph = _graph(type_checking="analysis.report")
    report = {m: {n for n in deps if n.startswith("analysis.report")} for m, deps in graph.items()
              if m.startswith("analysis.report")}
    assert _cycles(report) == []
    # the report is data: its writers import it, it imports none of them
    assert "analysis.report.document" in report["analysis.report.writer"]
    assert not report["analysis.report.document"]


def test_the_cycle_finder_sees_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_dependencies_point_one_way():
    for m, path in _modules().items():
        top = {n.partition(".")[0] for n in _imports(path)}
        if m.startswith("entropy"):
            assert not top & {"torch", "quant", "analysis"}, m
        if m.startswith("quant"):
            assert "analysis" not in top, m
