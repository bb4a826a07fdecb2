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
    assert {"analysis.report.run", "analysis.report.sweep", "entropy.file.writer"} <= set(graph)
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


# entropy's layers, bottom up: each module imports entropy modules of its own layer or below, never above
ENTROPY_LAYERS = (
    ("entropy.errors",),  # the exception types
    ("entropy.codec",),  # one array <-> one stream
    ("entropy.format",),  # the file's byte layout and size arithmetic (FORMAT.md)
    ("entropy.layout",),  # how a tensor is split into streams, sized with the format's arithmetic
    ("entropy.file",),  # planning, writing and reading whole files
)


def _layer(module: str) -> int | None:
    """The layer of an entropy module (an index into ENTROPY_LAYERS), None for the package's front door."""
    for i, prefixes in enumerate(ENTROPY_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    return None


def test_entropy_layers_import_downwards_only():
    mods = _modules()
    entropy_mods = [m for m in mods if m.partition(".")[0] == "entropy"]
    # every module but the front door belongs to a layer, and each layer has modules
    assert [m for m in entropy_mods if _layer(m) is None] == ["entropy"]
    assert {_layer(m) for m in entropy_mods} >= set(range(len(ENTROPY_LAYERS)))
    wrong = []
    for m in entropy_mods:
        own = _layer(m)
        if own is None:
            continue
        for n in _imports(mods[m]):
            if n.partition(".")[0] != "entropy":
                continue
            other = _layer(n)
            if other is None or other > own:
                wrong.append(f"{m} imports {n}")
    assert wrong == []


def test_entropy_subpackage_inits_import_nothing():
    """``import entropy.codec.params`` must not load the rest of the codec (lazy numba, fast startup)."""
    for pkg in ("codec", "layout", "file"):
        assert _imports(ROOT / "entropy" / pkg / "__init__.py") == set(), pkg


def test_the_layer_check_sees_an_upward_import():
    assert _layer("entropy.codec.streams") < _layer("entropy.format") < _layer("entropy.layout.search") \
        < _layer("entropy.file.writer")
    assert _layer("entropy") is None and _layer("entropy.codecs") is None


def test_the_format_needs_only_the_codecs_parameters_and_codebooks():
    """The byte layout describes streams (CodecParams, Codebook); it never runs the coder or the kernels."""
    graph = _graph()
    for m in ("entropy.format", "entropy.file.header", "entropy.file.format_v1"):
        codec = {n for n in graph[m] if n.startswith("entropy.codec")}
        assert codec <= {"entropy.codec.params", "entropy.codec.codebook"}, (m, codec)


def _entropy_imports(path: Path) -> list[str]:
    """How a file imports entropy: the module named by each ``import``/``from ... import`` of it, and
    ``entropy.X`` for each ``from entropy import X`` (TYPE_CHECKING blocks included: they name modules too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.partition(".")[0] == "entropy"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.partition(".")[0] == "entropy":
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _behind_the_front_door(names: list[str], mods: dict[str, Path]) -> list[str]:
    """The names that reach into entropy: a module inside it (``entropy.file``, ``entropy.codec.streams``...)."""
    return [n for n in names if n != "entropy" and (n in mods or n.rpartition(".")[0] != "entropy")]


def test_analysis_and_quant_use_only_entropys_front_door():
    """analysis (and quant) import ``entropy`` itself, never a module inside it: what they need is public there."""
    mods = _modules()
    wrong = [f"{m}: {n}" for m, path in mods.items() if m.partition(".")[0] in ("analysis", "quant")
             for n in _behind_the_front_door(_entropy_imports(path), mods)]
    assert wrong == []
    assert any(_entropy_imports(p) for m, p in mods.items() if m.startswith("analysis"))  # (the check sees them)


def test_the_front_door_check_sees_a_submodule(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import entropy.codec.streams\nfrom entropy.file import reader\nfrom entropy import save, format\n")
    assert _behind_the_front_door(_entropy_imports(bad), _modules()) == [
        "entropy.codec.streams", "entropy.file", "entropy.file.reader", "entropy.format"]
