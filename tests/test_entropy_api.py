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


# ---- examples in the docs --------------------------------------------------------------------------------------

#: the public entry points whose docstrings must show an example (run below, so that none can rot)
EXAMPLED = (
    "encode", "decode", "save", "load", "load_tensor", "info", "plan_file", "write_plan", "layout_choices",
    "choose_layout", "HQTFile", "code_lengths", "shannon_entropy", "tensor_counts", "atomic_write", "CodecOptions",
    "FileOptions",
)


def test_the_main_entry_points_show_an_example():
    assert [n for n in EXAMPLED if ">>>" not in (getattr(entropy, n).__doc__ or "")] == []


def test_the_examples_in_entropys_docstrings_run(tmp_path, monkeypatch):
    """Every ``>>>`` example in entropy's modules runs and prints what its docstring says (in a scratch folder:
    the file examples write files)."""
    import doctest

    monkeypatch.chdir(tmp_path)
    attempted, failed, where = 0, [], set()
    for name in _entropy_modules():
        module = importlib.import_module(name)
        finder = doctest.DocTestFinder(exclude_empty=True)
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in finder.find(module, name):
            if test.examples:
                where.add(test.name.rpartition(".")[2])
            result = runner.run(test, out=lambda s: failed.append(s))
            attempted += result.attempted
    assert failed == []
    assert set(EXAMPLED) <= where and attempted >= 3 * len(EXAMPLED)


# ---- the options objects ---------------------------------------------------------------------------------------

import dataclasses  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from entropy import CodecOptions, EntropyError, FileOptions, FormatError, SymbolError  # noqa: E402

_CODEC_FIELDS = {f.name for f in dataclasses.fields(CodecOptions) if f.init}
_FILE_FIELDS = {f.name for f in dataclasses.fields(FileOptions)}


@pytest.mark.parametrize("fn, fields", [
    (entropy.encode, _CODEC_FIELDS), (entropy.codec.streams.prepare_encode, _CODEC_FIELDS),
    (entropy.layout_choices, _CODEC_FIELDS), (entropy.plan_file, _CODEC_FIELDS | _FILE_FIELDS),
    (entropy.save, _CODEC_FIELDS | _FILE_FIELDS), (entropy.write_plan, _CODEC_FIELDS | _FILE_FIELDS),
])
def test_entry_points_take_one_options_object_not_copies_of_its_fields(fn, fields):
    params = inspect.signature(fn).parameters
    assert "options" in params and not set(params) & fields
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())  # the fields, as keywords


def test_keywords_and_options_objects_code_the_same_bytes(tmp_path):
    rng = np.random.default_rng(3)
    x = np.clip(np.round(rng.laplace(0, 3, (8, 300))), -20, 20).astype(np.int16)
    fields = dict(max_code_length=7, chunk_size=100, group=1, mode=("plain", "runs"), escape=False)
    a, b = entropy.encode(x, CodecOptions(**fields)), entropy.encode(x, **fields)
    assert (a.params, a.payload, a.codebook.to_bytes()) == (b.params, b.payload, b.codebook.to_bytes())
    assert a.params.max_code_length <= 7 and a.params.chunk_size == 100 and a.params.group == 1
    # keywords on top of an object replace its fields
    c = entropy.encode(x, CodecOptions(max_code_length=5, chunk_size=100), max_code_length=7, group=1,
                       mode=("plain", "runs"), escape=False)
    assert c.payload == a.payload
    file_fields = dict(channel_axis=0, layout="cluster", clusters=(2,), share_codebooks=True, verify=True)
    opts = FileOptions(codec=CodecOptions(max_code_length=9, chunk_size=128), **file_fields)
    entropy.save(tmp_path / "o.hqt", {"x": x}, options=opts)
    entropy.save(tmp_path / "k.hqt", {"x": x}, max_code_length=9, chunk_size=128, **file_fields)
    assert (tmp_path / "o.hqt").read_bytes() == (tmp_path / "k.hqt").read_bytes()
    assert entropy.info(tmp_path / "o.hqt").tensor("x").layout == "cluster"
    plan = entropy.plan_file({"x": x}, options=opts)
    assert plan.options == opts and plan.file_bytes == (tmp_path / "o.hqt").stat().st_size


@pytest.mark.parametrize("make, error, match", [
    (lambda: CodecOptions(max_code_length=0), EntropyError, "max_code_length must be in 1..24"),
    (lambda: CodecOptions(chunk_size=2.5), EntropyError, "chunk_size must be an integer"),
    (lambda: CodecOptions(group=3), EntropyError, "group must be 1, 2 or 'auto'"),
    (lambda: CodecOptions(mode="fast"), EntropyError, "mode must be 'auto' or among"),
    (lambda: CodecOptions(group=1, mode="pairs"), EntropyError, "leave no symbol mode"),
    (lambda: CodecOptions.of(max_length=3), TypeError, "max_length"),
    (lambda: FileOptions(layout="cluster0x"), FormatError, "unknown layout"),
    (lambda: FileOptions(layout={"a": "rows"}), FormatError, "unknown layout 'rows'"),
    (lambda: FileOptions(clusters=(4, 0)), FormatError, "cluster counts"),
    (lambda: FileOptions(channel_axis="1"), FormatError, "channel_axis must be"),
    (lambda: FileOptions(channel_axis={"a": 1.0}), FormatError, "channel_axis maps"),
    (lambda: FileOptions(codec={"max_code_length": 9}), EntropyError, "codec must be CodecOptions"),
    (lambda: FileOptions.of(channel_axes=1), TypeError, "channel_axes"),
    (lambda: entropy.save("never.hqt", {}, chunk_size=0), EntropyError, "chunk_size must be in"),
    (lambda: entropy.encode(np.zeros(3, np.uint8), durable=False), TypeError, "durable"),
])
def test_bad_options_are_refused_when_made(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_options_are_frozen_and_checked_values_replace_the_given_ones():
    o = FileOptions(channel_axis={"a": np.int64(1)}, clusters=[3, np.int32(5)], codec=CodecOptions(mode=["runs"]))
    assert o.clusters == (3, 5) and o.codec.mode == ("runs",) and o.codec.modes == ("runs",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.verify = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.channel_axis["b"] = 0  # type: ignore[index]


def test_the_file_honours_every_codec_option(tmp_path):
    """``mode`` and ``escape`` restrict every stream of every layout, as they restrict encode."""
    rng = np.random.default_rng(5)
    x = (rng.random((6, 400)) < 0.15).astype(np.uint8) * rng.integers(1, 4, (6, 400)).astype(np.uint8)
    x[3] = np.arange(400) % 4  # a dense channel among sparse ones
    free = entropy.layout_choices(x, axis=0, clusters=(2,), prune=False)
    assert {s.params.mode for c in free.values() for s in c.streams} - {"plain"}  # pairs or runs win somewhere
    for mode in ("plain", "pairs", "runs"):
        got = entropy.layout_choices(x, axis=0, mode=mode, clusters=(2,), prune=False)
        assert {s.params.mode for c in got.values() for s in c.streams} == {mode}
        fi = entropy.save(tmp_path / f"{mode}.hqt", {"x": x, "y": x[1], "z": x[2]}, channel_axis={"x": 0},
                          mode=mode, share_codebooks=True)  # (y and z: a pooled code where the mode allows one)
        assert {s.mode for t in fi.tensors for s in t.streams} == {mode}
        shared = fi.tensor("y").streams[0].codebook_id == fi.tensor("z").streams[0].codebook_id
        assert shared == (mode != "runs")
        assert np.array_equal(entropy.load_tensor(tmp_path / f"{mode}.hqt", "x"), x)
    wide = rng.integers(0, 1 << 20, 1000).astype(np.int32)
    assert entropy.encode(wide).params.mode == "stored"  # uniform values: no code is smaller
    assert entropy.encode(wide, group=1).params.escape_range  # escapes are how a code takes a span this wide
    with pytest.raises(SymbolError, match="escapes are off"):
        entropy.save(tmp_path / "wide.hqt", {"w": wide}, escape=False)


def test_write_plan_writes_as_the_plan_was_planned_unless_told_otherwise(tmp_path, monkeypatch):
    import entropy.file.writer as writer

    verified = []
    real = writer._verify
    monkeypatch.setattr(writer, "_verify", lambda fd, path, plan: verified.append(path) or real(fd, path, plan))
    t = {"t": np.arange(50, dtype=np.uint8) % 3}
    entropy.write_plan(entropy.plan_file(t), tmp_path / "a.hqt")
    entropy.write_plan(entropy.plan_file(t, verify=True), tmp_path / "b.hqt")
    entropy.write_plan(entropy.plan_file(t, verify=True), tmp_path / "c.hqt", verify=False)
    entropy.write_plan(entropy.plan_file(t), tmp_path / "d.hqt", options=FileOptions(verify=True))
    entropy.save(tmp_path / "e.hqt", t, verify=True)
    assert [p.rpartition("/")[2] for p in verified] == ["b.hqt", "d.hqt", "e.hqt"]
