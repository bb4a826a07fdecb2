"""Exhaustive damage detection: every single-byte change and every truncation of a small
.hqt file of several tensors, in every layout, is reported as an EntropyError, never as wrong data."""

from __future__ import annotations

import numpy as np
import pytest

import entropy as C
from entropy.errors import EntropyError


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    rng = np.random.default_rng(7)
    tensors = {
        "w": rng.integers(0, 16, 60).astype(np.uint8),
        "a": np.where(rng.random(45) < 0.8, 0, rng.integers(1, 6, 45)).astype(np.int16),
        "s": np.array(-2, np.int8),
        "e": np.zeros((2, 0), np.uint8),
        "cl": (rng.integers(0, 3, (2, 5, 3)) * np.array([1, 4, 1, 4, 2]).reshape(1, 5, 1)).astype(np.uint8),
        "ch": rng.integers(-2, 2, (3, 4)).astype(np.int8),
        "bw": rng.integers(0, 4, (4, 3)).astype(np.uint8),
    }
    quant = {"w": {"scale": np.float32(0.25), "zero_point": 8, "bits": 4, "axis": None},
             "bw": {"bits": np.array([2, 1, 2, 3], np.uint8)}}
    path = tmp_path_factory.mktemp("damage") / "small.hqt"
    C.save(path, tensors, {"model": "tiny"}, quant=quant, chunk_size=16, channel_axis={"cl": 1, "ch": 0, "bw": 0},
           layout={"cl": "cluster3", "ch": "channel", "bw": "bitwidth"})
    raw = path.read_bytes()
    assert {t.name: t.layout for t in C.info(path).tensors if t.n_codebooks > 1} == {
        "cl": "cluster", "ch": "channel", "bw": "bitwidth"}
    assert len(raw) < 2000  # small enough to damage exhaustively
    return path, raw, tensors


def _load_all(path) -> None:
    with C.HQTFile(path) as f:
        f.read_all()
        for n in f.names:
            f.quant(n)


@pytest.mark.parametrize("pattern", [0xFF, 0x01, 0x80])
def test_every_single_byte_change_is_detected(small_file, tmp_path, pattern):
    path, raw, tensors = small_file
    _load_all(path)  # the intact file reads
    bad = tmp_path / "bad.hqt"
    undetected = []
    for i in range(len(raw)):
        mutated = bytearray(raw)
        mutated[i] ^= pattern
        bad.write_bytes(bytes(mutated))
        try:
            _load_all(bad)
        except EntropyError:
            continue
        undetected.append(i)
    assert undetected == []


def test_every_truncation_is_detected(small_file, tmp_path):
    path, raw, _ = small_file
    bad = tmp_path / "short.hqt"
    for n in range(len(raw)):
        bad.write_bytes(raw[:n])
        with pytest.raises(EntropyError):
            _load_all(bad)
    bad.write_bytes(raw + b"\0")  # appended bytes too
    with pytest.raises(EntropyError):
        _load_all(bad)


def test_damage_error_names_the_tensor(small_file, tmp_path):
    path, raw, _ = small_file
    with C.HQTFile(path) as f:
        e = f._header.tensor("a", str(path))
    for off, what in ((e.payload_offset, "payload"), (e.index_offset, "index")):
        mutated = bytearray(raw)
        mutated[off] ^= 0x04
        bad = tmp_path / "named.hqt"
        bad.write_bytes(bytes(mutated))
        with pytest.raises(EntropyError, match=r"tensor 'a'.*" + what):
            C.load(bad)
        # the other tensors are still readable one by one
        assert C.load_tensor(bad, "w").shape == (60,)
