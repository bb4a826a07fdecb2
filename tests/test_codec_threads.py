"""Parallel coding and decoding: the same bytes and values whatever the thread count, the lowest bad chunk named
whatever the thread timing, small work kept on the calling thread, and ``threads`` checked everywhere."""

from __future__ import annotations

import numpy as np
import pytest

import entropy.codec.threads as eth
from entropy import CodecParams, decode, decode_chunks, encode, load, load_tensor, save
from entropy.codec import kernels
from entropy.codec.streams import decode_parts, prepare_encode
from entropy.errors import EntropyError, StreamError
from entropy.codec.modes import symbol_histograms
from entropy.file.reader import HQTFile
from entropy.codec.threads import group_bounds, resolve, run_groups, using

#: a low hand-over threshold: small arrays then cut into many groups (the real one needs arrays of 262,144 values)
SMALL_GROUPS = 700


@pytest.fixture
def small_groups(monkeypatch):
    monkeypatch.setattr(eth, "PARALLEL_MIN_VALUES", SMALL_GROUPS)


def _values(mode: str, n: int, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Values of ``n`` and the encode arguments that give a stream of ``mode``."""
    rng = np.random.default_rng(seed)
    if mode in ("plain", "pairs"):
        x = np.minimum(rng.geometric(0.3, n) - 1, 15).astype(np.uint8)
        return x, {"mode": mode}
    if mode == "plain-long":  # 12-bit codes: the one-symbol table, 4 chunks interleaved
        x = np.clip(np.round(rng.laplace(128, 12, n)), 0, 255).astype(np.uint8)
        return x, {"mode": "plain"}
    if mode == "runs":
        x = (np.minimum(rng.geometric(0.35, n), 15) * (rng.random(n) < 0.12)).astype(np.uint8)
        return x, {"mode": "runs"}
    if mode == "escapes":  # a wide int32 span: a window of common values, the rest escaped raw
        x = np.round(rng.laplace(0, 30, n)).astype(np.int32)
        x[::101] = rng.integers(-(2**22), 2**22, x[::101].size)
        return x, {}
    if mode == "rows":  # pairs in rows of an odd length: every row's last chunk ends with a pad
        x = np.minimum(rng.geometric(0.3, n) - 1, 7).astype(np.int16)
        return x, {"mode": "pairs", "row_length": 777}
    raise AssertionError(mode)


MODES = ("plain", "pairs", "plain-long", "runs", "escapes", "rows")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("n", "chunk"), [(20_979, 512), (15_541, 1000), (8_191, 64)])
def test_parallel_encode_is_byte_identical_and_decodes(small_groups, mode, n, chunk):
    x, kw = _values(mode, n - (n % 777) if mode == "rows" else n)
    if chunk % 2 and kw.get("mode") == "pairs":
        chunk += 1
    one = encode(x, chunk_size=chunk, threads=1, **kw)
    want = {"plain-long": "plain", "escapes": "plain", "rows": "pairs"}.get(mode, mode)
    assert one.params.mode == want
    assert bool(one.params.escape_range) == (mode == "escapes")
    assert (one.params.row_length != 0) == (mode == "rows")
    assert one.n_chunks >= 8  # several groups of the lowered threshold
    for t in (2, 3, 5, 8):
        many = encode(x, chunk_size=chunk, threads=t, **kw)
        assert many.payload == one.payload
        assert np.array_equal(many.chunk_bits, one.chunk_bits)
        assert many.accounting == one.accounting
        got = decode(one, threads=t)
        assert got.dtype == x.dtype and np.array_equal(got, x)
        a, b = 1, one.n_chunks - 2
        starts = one.params.chunk_starts(x.size)
        assert np.array_equal(decode_chunks(one, a, b, threads=t), x[starts[a] : starts[b]])


@pytest.mark.parametrize("mode", ["plain", "pairs", "runs", "escapes"])
def test_real_threshold_codes_in_parallel(mode, monkeypatch):
    # above 2 * PARALLEL_MIN_VALUES the work really is cut into groups (no lowered threshold)
    x, kw = _values(mode, 2 * eth.PARALLEL_MIN_VALUES + 4097)
    calls = []
    real = eth._pool
    monkeypatch.setattr(eth, "_pool", lambda workers: calls.append(workers) or real(workers))
    one = encode(x, threads=1, **kw)
    assert calls == []
    many = encode(x, threads=2, **kw)
    assert calls  # histograms and groups of chunks went to another thread
    assert many.payload == one.payload and np.array_equal(many.chunk_bits, one.chunk_bits)
    assert np.array_equal(decode(one, threads=2), x)


def test_small_work_stays_on_the_calling_thread(monkeypatch):
    def no_pool(workers):
        raise AssertionError("a small call handed work to another thread")

    monkeypatch.setattr(eth, "_pool", no_pool)
    x, _ = _values("plain", 2 * eth.PARALLEL_MIN_VALUES - 1)
    enc = encode(x, threads=8)
    assert np.array_equal(decode(enc, threads=8), x)
    big, _ = _values("plain", 4 * eth.PARALLEL_MIN_VALUES)
    enc = encode(big, threads=1)  # threads=1: never a hand-over, whatever the size
    assert np.array_equal(decode(enc, threads=1), big)


@pytest.mark.parametrize("mode", ["plain", "runs"])
def test_streamed_pieces_in_parallel(small_groups, mode):
    x, kw = _values(mode, 40_000, seed=3)
    whole = encode(x, chunk_size=256, threads=1, **kw)
    cb = whole.codebook
    pieces = []
    buf, bits = kernels.encode_symbols(x, whole.params, cb.codes, cb.lengths, whole.accounting.payload_bits,
                                       sink=lambda view, off: pieces.append((off, bytes(view))), piece_chunks=8,
                                       threads=3)
    assert buf.tobytes() == whole.payload and np.array_equal(bits, whole.chunk_bits)
    assert len(pieces) == -(-whole.n_chunks // (8 * 3))  # one piece per round of 8 chunks per thread
    pos = 0
    for off, data in pieces:  # contiguous, in order, together the whole payload
        assert off == pos
        pos += len(data)
    assert b"".join(d for _, d in pieces) == whole.payload


def test_histograms_in_parallel(small_groups):
    x, _ = _values("runs", 30_000, seed=5)
    for p in (CodecParams(group=1, max_code_length=12, chunk_size=300, value_min=0, value_range=16),
              CodecParams(group=2, max_code_length=12, chunk_size=300, value_min=0, value_range=16),
              CodecParams(group=1, max_code_length=12, chunk_size=300, value_min=0, value_range=16, runs=16),
              CodecParams(group=1, max_code_length=12, chunk_size=300, value_min=0, value_range=16, runs=16,
                          row_length=1000)):
        with using(1):
            one = symbol_histograms(x, p)
        for t in (2, 4):
            with using(t):
                assert np.array_equal(symbol_histograms(x, p), one)
    # the first value out of the window is named, whatever the groups
    y = x.copy()
    y[[25_000, 1_234]] = 200
    p = CodecParams(group=1, max_code_length=12, chunk_size=300, value_min=0, value_range=16)
    for t in (1, 3):
        counts, bad = kernels.count_rows(y.reshape(1, -1), p, threads=t)
        assert bad == 1_234
        counts, bad = kernels.count_rows(y.reshape(30, -1), p, threads=t)
        assert bad == 1_234


def _chunk_fails(enc, payload, c) -> bool:
    try:
        decode_chunks(enc.__class__(enc.shape, enc.dtype, enc.params, enc.codebook, enc.chunk_bits, payload,
                                    enc.accounting), c, c + 1, threads=1)
    except StreamError:
        return True
    return False


def _damage(enc, c: int) -> bytes:
    """The payload with every byte inside chunk ``c`` inverted (a fault in that chunk alone)."""
    off = enc.chunk_offsets()
    lo, hi = -(-int(off[c]) // 8), int(off[c + 1]) // 8  # bytes wholly inside the chunk
    assert hi > lo
    buf = bytearray(enc.payload)
    for i in range(lo, hi):
        buf[i] ^= 0xFF
    return bytes(buf)


@pytest.mark.parametrize("mode", ["plain", "pairs", "plain-long", "runs", "escapes"])
def test_the_lowest_bad_chunk_is_named_whatever_the_threads(small_groups, mode):
    x, kw = _values(mode, 40_000, seed=7)
    enc = encode(x, chunk_size=500, **kw)
    n = enc.n_chunks
    # a bad chunk early (first group) and one late (last group); each alone is detected
    lo = next(c for c in range(2, n // 4) if _chunk_fails(enc, _damage(enc, c), c))
    hi = next(c for c in range(n - 2, n // 2, -1) if _chunk_fails(enc, _damage(enc, c), c))
    both = bytearray(_damage(enc, lo))
    late = _damage(enc, hi)
    off = enc.chunk_offsets()
    a, b = -(-int(off[hi]) // 8), int(off[hi + 1]) // 8
    both[a:b] = late[a:b]
    parts = dict(shape=enc.shape, dtype=enc.dtype, params=enc.params, codebook=enc.codebook,
                 chunk_bits=enc.chunk_bits)
    for t in (1, 2, 3, 8, 8, 8):
        with pytest.raises(StreamError, match=rf"^chunk {lo} of {n}:"):
            decode_parts(**parts, payload=bytes(both), threads=t)
        with pytest.raises(StreamError, match=rf"^chunk {hi} of {n}:"):
            decode_parts(**parts, payload=late, threads=t)


def test_a_bad_pad_before_a_bad_chunk_is_named_first(small_groups):
    # rows of 4 values coded as pairs, read as rows of 3: a row whose 4th value is not value_min has a bad pad. A
    # bit moved from chunk k to chunk k + 1 in the index makes chunk k end off its recorded count.
    rows = 400
    x = np.tile(np.array([1, 2, 3, 0], np.uint8), rows)
    for pad_row, bad_chunk in ((17, 300), (350, 60)):
        y = x.copy()
        y[4 * pad_row + 3] = 2
        enc = encode(y, mode="pairs", value_min=0, value_range=4, chunk_size=4, row_length=4)
        p3 = CodecParams(group=2, max_code_length=enc.params.max_code_length, chunk_size=4, value_min=0,
                         value_range=4, row_length=3)
        cb = enc.chunk_bits.astype(np.int64)
        cb[bad_chunk] += 1
        cb[bad_chunk + 1] -= 1
        first = min(pad_row, bad_chunk)
        for t in (1, 2, 4):
            with pytest.raises(StreamError, match=rf"^chunk {first}\b"):
                decode_parts(shape=(3 * rows,), dtype=enc.dtype, params=p3, codebook=enc.codebook, chunk_bits=cb,
                             payload=enc.payload, threads=t)


def test_files_are_the_same_bytes_and_read_back(tmp_path, small_groups):
    rng = np.random.default_rng(11)
    tensors = {
        "w": np.minimum(rng.geometric(0.3, (64, 300)) - 1, 15).astype(np.int8),
        "acts": (np.minimum(rng.geometric(0.35, (4, 16, 200)), 15) * (rng.random((4, 16, 200)) < 0.2)).astype(np.uint8),
        "flat": np.round(rng.laplace(0, 40, 50_000)).astype(np.int32),
    }
    paths = []
    for t in (1, 3, 8):
        path = tmp_path / f"t{t}.hqt"
        save(path, tensors, channel_axis={"w": 0, "acts": 1}, chunk_size=256, threads=t, verify=True)
        paths.append(path)
    assert all(p.read_bytes() == paths[0].read_bytes() for p in paths[1:])
    for t in (1, 2, 5, 8):
        back = load(paths[0], threads=t)
        assert all(np.array_equal(back[k], v) for k, v in tensors.items())
        part = load_tensor(paths[0], "w", channels=slice(7, 50), threads=t)
        assert np.array_equal(part, tensors["w"][7:50])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_threads_must_be_a_positive_integer(tmp_path, bad):
    x = np.arange(100, dtype=np.uint8)
    enc = encode(x)
    path = tmp_path / "x.hqt"
    save(path, {"x": x})
    for call in (lambda: encode(x, threads=bad), lambda: decode(enc, threads=bad),
                 lambda: decode_chunks(enc, 0, 1, threads=bad), lambda: prepare_encode(x, threads=bad),
                 lambda: save(tmp_path / "y.hqt", {"x": x}, threads=bad), lambda: load(path, threads=bad),
                 lambda: load_tensor(path, "x", threads=bad)):
        with pytest.raises(EntropyError, match="threads must be"):
            call()
    with HQTFile(path) as f:
        for call in (lambda: f.read("x", threads=bad), lambda: f.read_all(threads=bad),
                     lambda: f.dequantize("x", threads=bad)):
            with pytest.raises(EntropyError, match="threads must be"):
                call()
    assert not (tmp_path / "y.hqt").exists()


def test_thread_defaults_and_groups(monkeypatch):
    assert resolve(None) == eth.available_cores() >= 1
    assert resolve(3) == 3
    with using(2):
        assert resolve(None) == 2 and resolve(5) == 5
        with using(None):
            assert resolve(None) == eth.available_cores()
        assert resolve(None) == 2
    assert resolve(None) == eth.available_cores()
    monkeypatch.setattr(eth.os, "sched_getaffinity", lambda pid: {0, 3, 5})
    assert eth.available_cores() == 3
    m = eth.PARALLEL_MIN_VALUES
    assert group_bounds(100, 2 * m - 1, 8).tolist() == [0, 100]  # too little work: one group
    assert group_bounds(100, 10 * m, 1).tolist() == [0, 100]
    b = group_bounds(100, 10 * m, 2)
    assert b[0] == 0 and b[-1] == 100 and np.all(np.diff(b) > 0) and 2 < b.size - 1 <= 8
    assert group_bounds(3, 100 * m, 4).size - 1 == 3  # never more groups than items


def test_run_groups_waits_for_every_group_then_raises_the_first():
    done = []

    def fn(g):
        if g in (5, 2):
            raise ValueError(f"group {g}")
        done.append(g)
        return g * g

    with pytest.raises(ValueError, match="group 2"):
        run_groups(fn, 12, 4)
    assert sorted(done) == [g for g in range(12) if g not in (2, 5)]
    assert run_groups(lambda g: g + 1, 7, 3) == list(range(1, 8))
    assert run_groups(lambda g: g, 4, 1) == [0, 1, 2, 3]


def test_cli_threads(tmp_path, capsys, small_groups):
    from analysis.cli import main

    rng = np.random.default_rng(2)
    src = tmp_path / "x.npz"
    np.savez(src, a=np.minimum(rng.geometric(0.3, 30_000) - 1, 15).astype(np.uint8),
             b=np.round(rng.laplace(0, 9, (40, 500))).astype(np.int16))
    outs = []
    for t in ("1", "3"):
        out = tmp_path / f"x{t}.hqt"
        assert main(["-q", "encode", str(src), "-o", str(out), "--threads", t, "--verify"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    assert main(["-q", "verify", str(tmp_path / "x1.hqt"), "--against", str(src), "--threads", "2"]) == 0
    assert main(["-q", "decode", str(tmp_path / "x1.hqt"), "-o", str(tmp_path / "y.npz"), "--threads", "4"]) == 0
    with np.load(src) as want, np.load(tmp_path / "y.npz") as got:
        assert all(np.array_equal(want[k], got[k]) for k in ("a", "b"))
    capsys.readouterr()
    for argv in (["encode", str(src), "-o", str(tmp_path / "z.hqt")], ["decode", str(tmp_path / "x1.hqt"), "-o",
                 str(tmp_path / "z.npz")], ["verify", str(tmp_path / "x1.hqt"), "--against", str(src)],
                 ["bench", "--size", "1000", "--out", str(tmp_path / "b.md")]):
        for bad in ("0", "-2"):
            with pytest.raises(SystemExit) as exc:
                main([*argv, "--threads", bad])
            assert exc.value.code == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and f"--threads must be >= 1, got {bad}" in err[0]
    assert not (tmp_path / "z.hqt").exists() and not (tmp_path / "z.npz").exists()
    for cmd in ("encode", "decode", "verify", "bench"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "--threads N" in capsys.readouterr().out


def test_small_streams_of_a_tensor_decode_side_by_side(tmp_path, small_groups, monkeypatch):
    import time

    rng = np.random.default_rng(4)
    w = np.round(rng.laplace(0, 1 + np.arange(48)[:, None] / 8, (48, 400))).astype(np.int8)
    path = tmp_path / "w.hqt"
    save(path, {"w": w}, channel_axis=0, layout="channel")
    for t in (1, 3):
        assert np.array_equal(load(path, threads=t)["w"], w)
        assert np.array_equal(load_tensor(path, "w", channels=slice(5, 31), threads=t), w[5:31])
    real = HQTFile._stream_values
    seen = []

    def flaky(self, t, j, v0, v1, threads):
        seen.append(threads)
        if j in (3, 40):
            if j == 3:
                time.sleep(0.05)  # the lower stream fails last
            raise StreamError(f"stream {j} is bad")
        return real(self, t, j, v0, v1, threads)

    monkeypatch.setattr(HQTFile, "_stream_values", flaky)
    for t in (1, 4):
        seen.clear()
        with pytest.raises(StreamError, match="stream 3 is bad"):
            load(path, threads=t)
        assert set(seen) == {1}  # each stream on one thread (side by side when t > 1)
        assert len(seen) == (4 if t == 1 else 48)  # one after the other stops at the first failure
