"""Many small tensors: plans and payloads of small arrays are remembered per content relative to their smallest value
(entropy.codec.small_streams), exactly as a fresh encode makes them, and a file of 50,000 two-value arrays saves and
inspects in seconds."""

from __future__ import annotations

import numpy as np
import pytest

import entropy
from analysis.cli import main
from entropy.codec import small_streams
from entropy.codec.streams import decode, encode


def _fresh(x, **kw):
    small_streams._plans.clear()
    small_streams._payloads.clear()
    return encode(x, **kw)


def _same_stream(a, b, shift=0):
    assert a.params.value_min == b.params.value_min + shift
    assert a.params.escape_min == (b.params.escape_min + shift if b.params.escape_range else 0)
    for f in ("group", "max_code_length", "chunk_size", "value_range", "runs", "run_symbol", "escape_range",
              "row_length"):
        assert getattr(a.params, f) == getattr(b.params, f), f
    assert np.array_equal(a.codebook.lengths, b.codebook.lengths)
    assert np.array_equal(a.chunk_bits, b.chunk_bits) and a.payload == b.payload
    assert a.accounting == b.accounting


@pytest.mark.parametrize("dtype,values", [
    (np.uint8, [0, 1]), (np.int8, [-128, 127]), (np.int16, [5, 5, 5, 7, -3]), (np.uint16, [0, 40000, 65535]),
    (np.int32, [-2**31, 2**31 - 1, 0]),  # a span above 65536: escapes
    (np.int64, [3] * 40 + [4]),  # a run
    (np.uint8, list(range(64))),  # the largest remembered array
])
@pytest.mark.parametrize("opts", [{}, {"group": 1}, {"group": 2}, {"max_code_length": 2}, {"chunk_size": 2}])
def test_remembered_small_streams_are_what_a_fresh_encode_makes(dtype, values, opts):
    x = np.array(values, dtype=dtype)
    if opts.get("group") == 2 and np.ptp(x.astype(np.int64)) >= 256:
        return  # pairs impossible: an error either way
    want = _fresh(x, **opts)
    assert np.array_equal(decode(want), x)
    again = encode(x, **opts)  # remembered: the same stream, bit for bit
    _same_stream(again, want)
    again.chunk_bits[:] = 0  # a caller may change what it got: the remembered stream is not shared
    _same_stream(encode(x, **opts), want)
    # the same values at another place of another dtype: the plan and the payload moved with the window
    lo = int(x.min())
    for shift, dt in ((7, np.int64), (-lo, np.uint32 if int(x.max()) - lo < 2**32 else np.int64)):
        y = (x.astype(np.int64) + shift).astype(dt)
        got = encode(y, **opts)
        _same_stream(got, _fresh(y, **opts))
        _same_stream(got, want, shift)
        assert np.array_equal(decode(got), y)
    small_streams._plans.clear()
    small_streams._payloads.clear()


def test_only_small_arrays_are_remembered_and_the_tables_stay_bounded(monkeypatch):
    small_streams._plans.clear()
    small_streams._payloads.clear()
    encode(np.arange(small_streams.SMALL_VALUES + 1, dtype=np.uint8))
    assert not small_streams._plans and not small_streams._payloads
    monkeypatch.setattr(small_streams, "_MAX_ENTRIES", 3)
    for v in range(10):
        x = np.array([0, v + 1], np.uint16)
        assert np.array_equal(decode(encode(x)), x)
        assert len(small_streams._plans) <= 3 and len(small_streams._payloads) <= 3


@pytest.mark.slow
def test_fifty_thousand_two_value_arrays_save_and_inspect(tmp_path, capsys):
    """Raw arrays, default options: every array is planned (single layout), coded and self-checked; identical
    contents up to an offset reuse the first one's plan and payload. Seconds, not minutes (0.9 ms per array
    before)."""
    rng = np.random.default_rng(12)
    n = 50_000
    dtypes = [np.uint8, np.int8, np.int16, np.uint16, np.int32]
    tensors = {f"t{i}": rng.integers(0, 100, 2).astype(dtypes[i % 5]) + (i % 7) for i in range(n)}
    path = tmp_path / "many.hqt"
    fi = entropy.save(path, tensors, durable=False)
    assert len(fi.tensors) == n and {t.layout for t in fi.tensors} == {"single"}
    assert fi.file_bytes == path.stat().st_size
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    named = {line.split()[0] for line in out.splitlines() if line.startswith("t")}
    assert len(named) == n
    with entropy.HQTFile(path) as f:
        for i in rng.choice(n, 300, replace=False):
            got = f.read(f"t{i}")
            assert got.dtype == tensors[f"t{i}"].dtype and np.array_equal(got, tensors[f"t{i}"])


@pytest.mark.parametrize("opts", [{}, {"group": 1, "max_code_length": 3, "chunk_size": 8}, {"group": 2}])
def test_files_of_many_small_tensors_are_the_same_bytes_without_the_memo(tmp_path, monkeypatch, opts):
    """The memo is only a cache: distinct random small tensors (every dtype, 0..64 values, small and wide
    alphabets, runs), repeated and shifted copies among them, and ``channel_axis`` tensors give the same file,
    byte for byte, as with the memo switched off."""
    rng = np.random.default_rng(31)
    dtypes = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64]
    tensors = {}
    for i in range(400):
        dt = np.dtype(dtypes[i % len(dtypes)])
        info = np.iinfo(dt)
        m = int(rng.integers(0, small_streams.SMALL_VALUES + 1))
        k = int(rng.choice([1, 2, 3, 5, 16, 200, 70000]))
        v = rng.integers(0, k, m) * (1 if i % 3 else int(rng.integers(1, 5)))
        if i % 4 == 0 and m:
            v[: m // 2] = v[0]  # a run
        lo = int(rng.integers(max(info.min, -1000), min(info.max, 1000) + 1))
        tensors[f"t{i}"] = np.clip(v + lo, info.min, info.max).astype(dt)
        if i % 5 == 0:  # the same content again, and moved
            tensors[f"c{i}"] = tensors[f"t{i}"].copy()
            tensors[f"s{i}"] = np.clip(tensors[f"t{i}"].astype(np.int64) + 3, info.min, info.max).astype(dt)
    tensors["m"] = rng.integers(0, 3, (4, 8)).astype(np.int8)
    small_streams._plans.clear()
    small_streams._payloads.clear()
    with_memo = tmp_path / "memo.hqt"
    entropy.save(with_memo, tensors, channel_axis={"m": 0}, durable=False, **opts)
    assert small_streams._plans  # (the memo was used)
    monkeypatch.setattr(small_streams, "key", lambda *a, **k: None)
    without = tmp_path / "plain.hqt"
    entropy.save(without, tensors, channel_axis={"m": 0}, durable=False, **opts)
    assert with_memo.read_bytes() == without.read_bytes()
    with entropy.HQTFile(with_memo) as f:
        for name, x in tensors.items():
            got = f.read(name)
            assert got.dtype == x.dtype and np.array_equal(got, x), name
