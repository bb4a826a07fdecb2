"""The fuzzing harness (fuzz/fuzz_reader.py) itself: it reads every seed cleanly, re-seals damaged files so the
reader sees past their checksums, and reports what is not the package's own error. With atheris installed (the
``fuzz`` extra), a short real run of the harness; the long runs are ``make fuzz``, never part of the suite."""

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
    layouts, modes = set(), set()
    for name, data in seed_files.items():
        p.write_bytes(data)
        harness.check_file(str(p))
        entropy.load(p)  # intact: nothing refused
        assert harness.resealed(data, str(tmp_path / "scratch.hqt")) is None, name
        for t in entropy.info(p).tensors:
            layouts.add(t.layout)
            modes.update((s.mode, bool(s.escape_range)) for s in t.streams)
    assert layouts == set(entropy.LAYOUTS)
    assert modes >= {("plain", False), ("pairs", False), ("runs", False), ("plain", True), ("runs", True)}
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
    pytest.importorskip("atheris")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(FUZZ.parent), os.environ.get("PYTHONPATH", "")]))
    res = subprocess.run([sys.executable, str(FUZZ / "fuzz_reader.py"), "--runs", "300", "--work", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Done 300 runs" in res.stderr or "DONE" in res.stderr, res.stderr[-2000:]
    assert not list((tmp_path / "findings").iterdir())
    assert len(list((tmp_path / "seeds").iterdir())) == len(seeds.seed_files())
    x = np.frombuffer((tmp_path / "seeds" / "plain.hqt").read_bytes()[:8], np.uint8)
    assert bytes(x) == b"\x89HQT\r\n\x1a\n"
