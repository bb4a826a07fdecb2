"""entropy's public API: what it exports, what its docs say, and what analysis may use of it."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import entropy
import entropy.errors

ROOT = Path(__file__).resolve().parents[1]
_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data|exc|obj):`~?([\w.]+?)(?:\(\))?`")


def _entropy_modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / "entropy").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _lookup(obj: object, attrs: list[str]) -> bool:
    for a in attrs:
        fields = getattr(obj, "__dataclass_fields__", {})
        if hasattr(obj, a):
            obj = getattr(obj, a)
        elif a in fields:
            obj = None  # a dataclass field without a default (documented, not a class attribute)
        else:
            return False
    return True


def _resolves(name: str, module: object) -> bool:
    """Whether a Sphinx-style reference in ``module``'s docs names something real: a dotted path from a module, or a
    name relative to the module, one of its classes (methods), its package or ``entropy``."""
    parts = name.split(".")
    if parts[0] == "entropy":
        for i in range(len(parts), 0, -1):
            try:
                base = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            return _lookup(base, parts[i:])
        return False
    package = importlib.import_module(module.__name__.rpartition(".")[0] or "entropy")
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return any(_lookup(base, parts) for base in [module, *classes, package, entropy])


def test_every_error_type_is_exported():
    types = {n for n, c in vars(entropy.errors).items()
             if isinstance(c, type) and issubclass(c, entropy.errors.EntropyError)}
    assert set(entropy.errors.__all__) == types
    assert len(entropy.errors.__all__) == len(types)


def test_doc_references_name_real_modules_functions_and_methods():
    """``:func:`` / ``:class:`` / ``:meth:`` / ``:mod:`` references in entropy's docstrings point at something that
    exists (a moved module or a method that never existed is caught here)."""
    bad = []
    for name, path in _entropy_modules().items():
        module = importlib.import_module(name)
        bad += [f"{name}: {ref}" for ref in _ROLE.findall(path.read_text(encoding="utf-8")) if not _resolves(ref, module)]
    assert bad == []


def test_the_reference_check_sees_a_wrong_reference():
    import entropy.file.writer as writer

    assert _resolves("entropy.write_plan", writer) and _resolves("FilePlan", writer)
    assert _resolves("HQTFile.read", importlib.import_module("entropy.file.reader"))
    assert not _resolves("FilePlan.write", writer)
    assert not _resolves("entropy.codec.CodecParams", writer)
