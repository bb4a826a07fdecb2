"""The fuzzing harness (fuzz/fuzz_reader.py) itself: it reads every seed cleanly, re-seals damaged files so the
reader sees past their checksums, and reports what is not the package's own error; and a short real run of the
harness (atheris is in the ``test`` extra, so it always runs); the long runs are ``make fuzz``, never part of the
suite."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import entropy
from entropy.errors import EntropyError, FormatError, IntegrityError

FUZZ = Path(__file__).resolve().parent.parent / "fuzz"


def _module(name: str):
    sys.path.insert(0, str(FUZZ))
    try:
        spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(FUZZ))


harness = _module("fuzz_reader")
seeds = _module("seeds")


@pytest.fixture(scope="module")
def seed_files():
    return seeds.seed_files()


def test_every_seed_reads_cleanly_and_needs_no_resealing(seed_files, tmp_path):
    p = tmp_path / "seed.hqt"
    layouts, modes, stored = set(), set(), []
    for name, data in seed_files.items():
        p.write_bytes(data)
        harness.check_file(str(p))
        entropy.load(p)  # intact: nothing refused
        assert harness.resealed(data, str(tmp_path / "scratch.hqt")) is None, name
        for t in entropy.info(p).tensors:
            layouts.add(t.layout)
            modes.update((s.mode, bool(s.escape_range)) for s in t.streams)
            stored += [(name, t.layout, s) for s in t.streams if s.mode == "stored"]
    assert layouts == set(entropy.LAYOUTS)
    assert modes >= {("plain", False), ("pairs", False), ("runs", False), ("plain", True), ("runs", True),
                     ("stored", False)}
    # stored streams (FORMAT.md §7.5): the incompressible 16-bit seed, one beside coded streams in a channel
    # layout, one in rows (more chunks than whole chunk_size runs of its values), one of 32-bit values
    assert any(n == "incompressible.hqt" and s.value_range > 2**15 for n, _, s in stored)
    assert any(lay == "channel" for _, lay, _ in stored)
    assert any(s.n_chunks > -(-s.n_values // s.chunk_size) for _, _, s in stored)
    assert any(s.value_range > 2**31 for _, _, s in stored)
    assert any(n.startswith("v1_") for n in seed_files)


def test_resealed_damage_reaches_the_checks_behind_the_checksums(seed_files, tmp_path):
    raw = bytearray(seed_files["plain.hqt"])
    raw[-9] ^= 0x5A  # a payload byte
    p = tmp_path / "bad.hqt"
    p.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):
        entropy.load(p)
    harness.check_file(str(p))  # refused with the package's error: accepted
    again = harness.resealed(bytes(raw), str(tmp_path / "scratch.hqt"))
    assert again is not None and len(again) == len(raw)
    p.write_bytes(again)
    try:
        entropy.load(p)
    except IntegrityError:
        pytest.fail("the re-sealed file still fails a checksum")
    except EntropyError:
        pass  # a check behind the CRCs refused it: what re-sealing is for
    raw = bytearray(seed_files["layouts.hqt"])
    raw[10] = 0x01  # the preamble's flags, under the header CRC
    again = harness.resealed(bytes(raw), str(tmp_path / "scratch.hqt"))
    p.write_bytes(again)
    with pytest.raises(FormatError, match="unknown flags") as exc:
        entropy.info(p)
    assert not isinstance(exc.value, IntegrityError)


def test_the_harness_reports_other_errors_and_the_last_resort(seed_files, tmp_path, monkeypatch):
    p = tmp_path / "seed.hqt"
    p.write_bytes(seed_files["plain.hqt"])

    def crash(self, name, **kw):
        raise IndexError("index 9 is out of bounds")

    monkeypatch.setattr(entropy.HQTFile, "read", crash)
    with pytest.raises(IndexError):
        harness.check_file(str(p))

    def last_resort(self, name, **kw):
        try:
            raise IndexError("index 9 is out of bounds")
        except IndexError as exc:
            raise FormatError(f"{p}: tensor {name!r}: cannot decode (IndexError: {exc})") from exc

    monkeypatch.setattr(entropy.HQTFile, "read", last_resort)
    with pytest.raises(harness.MissingCheck):
        harness.check_file(str(p))

    def refused(self, name, **kw):
        raise FormatError("bad")

    monkeypatch.setattr(entropy.HQTFile, "read", refused)
    harness.check_file(str(p))


def test_short_fuzzing_run(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FUZZ.parent), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, str(FUZZ / "fuzz_reader.py"), "--runs", "300", "--work", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done 300 runs" in res.stderr or "DONE" in res.stderr, res.stderr[-2000:]
    assert not list((tmp_path / "findings").iterdir())
    assert len(list((tmp_path / "seeds").iterdir())) == len(seeds.seed_files())
    x = np.frombuffer((tmp_path / "seeds" / "plain.hqt").read_bytes()[:8], np.uint8)
    assert bytes(x) == b"\x89HQT\r\n\x1a\n"


def test_every_kernel_module_is_left_uninstrumented():
    """atheris excludes exact module names (not a package with its submodules), and instrumenting a numba kernel
    would keep it from compiling: the harness names every module of the kernels package."""
    import pkgutil

    import entropy.codec.kernels as kernels

    want = {kernels.__name__} | {m.name for m in pkgutil.walk_packages(kernels.__path__, kernels.__name__ + ".")}
    assert len(want) > 1 and set(harness._kernel_modules()) == want


# --------------------------------------------------------------------------- findings, one regression test each


@pytest.mark.parametrize("zero_point,ok", [(2, True), (2.0, True), (np.float32(-3), True), (True, True),
                                           (2.5, False), (float("nan"), False), (1e300, False),
                                           (np.uint64(2**64 - 1), False)])
def test_finding_dequantize_with_extreme_metadata_warns_nothing(tmp_path, zero_point, ok):
    """Found while replaying mutated corpus files: a float64 scale beyond float32's range made numpy warn
    ("overflow encountered in cast"), and a float zero point of NaN or 1e300 made it warn ("invalid value") and
    gave garbage. Now: the scale becomes inf without a warning (as float32 arithmetic does), and a zero point
    that is not an integer of the int64 range is refused (FORMAT.md §4.3)."""
    import warnings

    x = np.arange(6, dtype=np.uint8)
    p = tmp_path / "meta.hqt"
    entropy.save(p, {"x": x}, quant={"x": {"scale": 1e300, "zero_point": zero_point}}, durable=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if ok:
            got = entropy.dequantize(p, "x")
            zp = int(zero_point)
            want = np.where(x.astype(np.int64) == zp, np.nan, np.where(x.astype(np.int64) > zp, np.inf, -np.inf))
            np.testing.assert_array_equal(got, want.astype(np.float32))
        else:
            with pytest.raises(FormatError, match="zero_point .* (is not an integer|is beyond) .*int64 range"):
                entropy.dequantize(p, "x")
        harness.check_file(str(p))


def test_finding_the_compare_hook_guard(monkeypatch):
    """atheris's comparison hook leaked memory on numpy operands (RSS grew ~1.5 KB per input until the memory
    limit stopped the run): the harness compares numpy values itself and sends the rest to the hook."""
    calls = []

    class FakeAtheris:
        @staticmethod
        def _trace_cmp(left, right, op, counter, left_is_const):
            calls.append((left, right))
            return left == right

    guard = harness._ArrayCompareGuard(FakeAtheris)
    guard.ensure()
    assert FakeAtheris._trace_cmp is guard.guard
    import dis

    lt = dis.cmp_op.index("<") << getattr(sys.modules.get("atheris.version_dependent"), "CMP_OP_SHIFT_AMOUNT", 0)
    eq = dis.cmp_op.index("==") << getattr(sys.modules.get("atheris.version_dependent"), "CMP_OP_SHIFT_AMOUNT", 0)
    got = FakeAtheris._trace_cmp(np.array([1, 5]), 3, lt, 0, False)
    assert got.tolist() == [True, False] and calls == []
    assert FakeAtheris._trace_cmp(np.int64(3), 3, eq, 0, False) and calls == []
    assert FakeAtheris._trace_cmp("a", "a", eq, 0, False) is True and calls == [("a", "a")]
