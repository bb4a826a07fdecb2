"""Symbol modes (run symbols, escapes), any integer alphabet, and the histogram/size API (entropy/codec/modes.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy import CodecParams, decode, decode_chunks, encode, plan_from_counts, shannon_entropy, symbol_histograms
import entropy as C
from entropy.codec.params import SUPPORTED_DTYPES
from entropy.errors import EntropyError, SymbolError

# ---- an independent parser of run/escape symbols (the spec of FORMAT.md section 7, written plainly) ---------------


def _reference_symbols(values, p: CodecParams, coded=None) -> list[tuple[int, int, int | None]]:
    """(run prefix r, base symbol b, raw value or None) of every symbol, chunk by chunk, greedy runs.

    ``coded(r, b)`` says whether a symbol has a code (default: every in-window symbol has one)."""
    v = [int(a) for a in np.asarray(values).ravel()]
    R, runs = p.value_range, p.runs
    run_value = p.value_min + p.run_symbol
    coded = coded or (lambda r, b: True)
    out = []

    def emit(r, value):
        b = value - p.value_min
        if 0 <= b < R and coded(r, b):
            out.append((r, b, None))
        else:
            assert p.escape_range and 0 <= value - p.escape_min < p.escape_range
            out.append((r, R, value - p.escape_min))

    for c0 in range(0, len(v), p.chunk_size):
        z = 0
        for value in v[c0 : c0 + p.chunk_size]:
            if runs and value == run_value:
                z += 1
                if z == runs:
                    emit(runs - 1, run_value)
                    z = 0
                continue
            emit(z, value)
            z = 0
        if z:
            emit(z - 1, run_value)
    return out


def _reference_histogram(values, p: CodecParams) -> np.ndarray:
    h = np.zeros(p.alphabet_size, dtype=np.int64)
    V = p.base_symbols
    for r, b, _ in _reference_symbols(values, p):
        h[r * V + b] += 1
    return h


def _runs_params(R=16, run_symbol=0, runs=16, chunk=4096, value_min=0, **kw) -> CodecParams:
    return CodecParams(group=1, max_code_length=12, chunk_size=chunk, value_min=value_min, value_range=R, runs=runs,
                       run_symbol=run_symbol, **kw)


# ---- run symbols ----------------------------------------------------------------------------------------------------


def test_run_symbols_by_hand():
    p = _runs_params(R=8, chunk=6)
    V = 8
    # [0 0 0 5 | 0 0]: three zeros then 5 -> (3, 5); the chunk ends in a run of 2 zeros -> (1, 0)
    h = symbol_histograms(np.array([0, 0, 0, 5, 0, 0], np.uint8), p)[0]
    assert np.flatnonzero(h).tolist() == sorted([3 * V + 5, 1 * V + 0]) and h.sum() == 2
    # 40 zeros then 1 in one chunk: (15, 0) twice = 32 zeros, then (8, 1)
    p = _runs_params(R=8, chunk=64)
    h = symbol_histograms(np.array([0] * 40 + [1], np.uint8), p)[0]
    assert h[15 * V] == 2 and h[8 * V + 1] == 1 and h.sum() == 3
    # runs never cross chunk boundaries: 10 zeros in chunks of 4 -> (3, 0), (3, 0), (1, 0)
    p = _runs_params(R=8, chunk=4)
    h = symbol_histograms(np.zeros(10, np.uint8), p)[0]
    assert h[3 * V] == 2 and h[1 * V] == 1 and h.sum() == 3


@given(st.data())
@settings(max_examples=80, deadline=None)
def test_run_histograms_match_the_reference_parser(data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = data.draw(st.integers(0, 2000))
    R = data.draw(st.sampled_from([2, 5, 16, 100]))
    density = data.draw(st.sampled_from([0.01, 0.1, 0.5, 0.95]))
    run_symbol = data.draw(st.integers(0, R - 1))
    x = np.where(rng.random(n) < density, rng.integers(0, R, n), run_symbol).astype(np.int16) - 3
    p = _runs_params(R=R, run_symbol=run_symbol, runs=data.draw(st.sampled_from([2, 3, 16, 256 // max(1, R // 50)])),
                     chunk=data.draw(st.sampled_from([1, 7, 64, 4096])), value_min=-3)
    h = symbol_histograms(x, p)
    assert np.array_equal(h[0], _reference_histogram(x, p))
    enc = encode(x, params=p)
    assert np.array_equal(decode(enc), x)
    assert enc.accounting.payload_bits == int(np.dot(h[0], enc.codebook.lengths.astype(np.int64)))


def test_sparse_map_near_its_entropy_and_run_value_not_zero():
    rng = np.random.default_rng(3)
    n = 400_000
    x = np.where(rng.random(n) < 0.08, rng.integers(-8, 8, n), 7).astype(np.int8)  # the common value is 7
    enc = encode(x)
    assert enc.params.mode == "runs" and enc.params.value_min + enc.params.run_symbol == 7
    assert np.array_equal(decode(enc), x)
    H = enc.accounting.entropy_bits
    assert H == pytest.approx(shannon_entropy(np.unique(x, return_counts=True)[1]))
    assert enc.accounting.bits_per_value <= 1.05 * H  # plain symbols cannot go below 1 bit per value here
    plain = encode(x, mode="plain")
    assert plain.accounting.payload_bits >= n and enc.accounting.total_bits < 0.6 * plain.accounting.total_bits


def test_dense_data_keeps_plain_or_pairs():
    rng = np.random.default_rng(4)
    lap = np.clip(np.round(rng.laplace(0, 2, 200_000)), -8, 7).astype(np.int8)
    assert encode(lap).params.mode in ("plain", "pairs")
    uni = rng.integers(0, 16, 200_000).astype(np.uint8)
    assert encode(uni, mode=("plain", "pairs", "runs")).params.mode == "plain"
    assert encode(uni).params.mode == "stored"  # 4 bits per value, and no codebook or chunk index


def test_run_symbols_are_tried_exactly_from_the_public_share_gate():
    """``may_try_runs`` (what the layout search applies per row) is the codec's own gate: one run value fewer than
    its threshold keeps plain symbols, at the threshold run symbols win (data where they clearly pay)."""
    from entropy.codec.modes import may_try_runs

    n = 4000
    k = int(np.argmax(may_try_runs(np.arange(n + 1), n)))  # fewest run values that pass the gate
    assert 0 < k < n and may_try_runs(k, n) and not may_try_runs(k - 1, n)
    rest = np.random.default_rng(9).integers(1, 5, n).astype(np.uint8)  # each below the run value's count
    for zeros, mode in ((k - 1, "plain"), (k, "runs")):
        x = rest.copy()
        x[:zeros] = 0  # one long run: run symbols cost almost nothing for it
        enc = encode(x, mode=("plain", "runs"))
        assert enc.params.mode == mode and np.array_equal(decode(enc), x)


def test_forced_modes_and_errors():
    x = np.random.default_rng(5).integers(0, 40_000, 1000).astype(np.uint16)
    x[::3] = 777
    with pytest.raises(EntropyError, match="run symbols need"):  # 16 prefixes x 40,000 values: too many symbols
        encode(x, mode="runs", escape=False)
    # with escapes the run symbols get a window of 4095 values around the run value, the rest is escaped
    enc = encode(x, mode="runs")
    p = enc.params
    assert p.mode == "runs" and p.value_range == 4095 and p.value_min + p.run_symbol == 777
    assert p.escape_range == int(x.max()) - int(x.min()) + 1 and np.array_equal(decode(enc), x)
    assert encode(x, mode=("plain", "runs")).params.mode == "plain"
    y = np.array([3, 3, 3, 1], np.uint8)
    for m in ("plain", "pairs", "runs"):
        enc = encode(y, mode=m)
        assert enc.params.mode == m and np.array_equal(decode(enc), y)


# ---- any integer alphabet --------------------------------------------------------------------------------------------


def test_62000_distinct_uint16_at_default_settings(tmp_path):
    rng = np.random.default_rng(6)
    x = rng.permutation(np.concatenate([np.arange(62_000), rng.integers(0, 62_000, 200_000)])).astype(np.uint16)
    x = (x + 1000).astype(np.uint16)
    assert np.unique(x).size == 62_000 > 2**12
    enc = encode(x)
    assert np.array_equal(decode(enc), x)
    assert enc.params.max_code_length <= 16 and enc.codebook.max_length <= enc.params.max_code_length
    # the file path too (format version 1 stores plain streams: a raised limit)
    C.save(tmp_path / "w.hqt", {"x": x})
    assert np.array_equal(C.load(tmp_path / "w.hqt")["x"], x)


@pytest.mark.parametrize("dtype", ["uint32", "int32", "int64"])
def test_huge_spans(dtype):
    rng = np.random.default_rng(7)
    info = np.iinfo(dtype)
    lo, hi = (int(info.min), int(info.max)) if dtype != "int64" else (-(2**31), 2**31 - 1)
    n = 50_000
    uniform = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64).astype(dtype)
    uniform[:2] = [lo, hi]  # the whole range
    peaked = np.clip(np.round(rng.laplace(0, 2e5, n)) + (lo + hi) // 2, lo, hi).astype(dtype)
    for x in (uniform, peaked, np.concatenate([np.zeros(n, dtype), uniform[:50]])):
        enc = encode(x)
        assert np.array_equal(decode(enc), x)
        p = enc.params
        if p.stored:  # the values' span in its bits, where no code is smaller
            assert p.value_min == int(x.min()) and p.value_range == int(x.max()) - int(x.min()) + 1
            assert enc.accounting.payload_bits == x.size * p.stored_bits == x.size * (p.value_range - 1).bit_length()
            continue
        assert p.escape_range == int(x.max()) - int(x.min()) + 1 and p.escape_bits == math.ceil(math.log2(p.escape_range))
        a = enc.accounting
        assert a.escape_bits % p.escape_bits == 0 and a.escape_bits <= a.payload_bits
        fewest, most = p.payload_bit_bounds(x.size)  # each symbol: 1 .. L + E bits, 1 .. runs values
        assert fewest <= a.payload_bits <= most == x.size * p.max_symbol_bits
    assert encode(uniform).accounting.bits_per_value < 32.01  # stored: 32 bits per value
    assert encode(uniform, mode=("plain", "pairs", "runs")).accounting.bits_per_value < 33.1  # escape code + 32 raw
    assert encode(peaked).accounting.bits_per_value < 0.85 * 32


def test_int64_beyond_32_bit_span_is_refused_clearly():
    x = np.array([0, 2**40], np.int64)
    with pytest.raises(SymbolError, match="2\\*\\*32"):
        encode(x)


_DTYPE_SPANS = {"uint8": 8, "int8": 8, "uint16": 16, "int16": 16, "uint32": 32, "int32": 32, "int64": 32}


@st.composite
def _any_array(draw):
    dtype = np.dtype(draw(st.sampled_from(SUPPORTED_DTYPES)))
    info = np.iinfo(dtype)
    span = min(2 ** draw(st.integers(0, _DTYPE_SPANS[dtype.name])), int(info.max) - int(info.min) + 1)
    lo = draw(st.integers(int(info.min), int(info.max) - span + 1)) if dtype.itemsize < 8 else \
        draw(st.integers(-(2**40), 2**40))
    n = draw(st.integers(0, 3000))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "peaked", "sparse", "two-clusters"]))
    if kind == "uniform":
        off = rng.integers(0, span, n, dtype=np.int64)
    elif kind == "peaked":
        off = np.clip(np.round(rng.laplace(span / 2, max(1.0, span / 50), n)), 0, span - 1).astype(np.int64)
    elif kind == "sparse":
        off = np.where(rng.random(n) < 0.1, rng.integers(0, span, n, dtype=np.int64), 0)
    else:
        off = np.where(rng.random(n) < 0.5, rng.integers(0, min(span, 30), n, dtype=np.int64),
                       span - 1 - rng.integers(0, min(span, 30), n, dtype=np.int64))
    return (off + lo).astype(dtype)


@given(_any_array(), st.sampled_from([1, 8, 12, 16]), st.sampled_from([3, 64, 4096]))
@settings(max_examples=150, deadline=None)
def test_any_integer_array_round_trips(x, L, chunk):
    enc = encode(x, max_code_length=L, chunk_size=chunk)
    y = decode(enc)
    assert y.dtype == x.dtype and np.array_equal(y, x)
    a, p = enc.accounting, enc.params
    assert a.total_bits == a.payload_bits + a.codebook_bits + a.index_bits
    assert a.payload_bits == int(enc.chunk_bits.sum()) and a.escape_bits <= a.payload_bits
    assert a.index_bits == 8 * len(enc.index_bytes()) and a.codebook_bits == 8 * len(enc.codebook.to_bytes())
    if not p.escape_range:
        assert a.escape_bits == 0
    if p.max_code_length != L:  # only raised, and only when the code could not hold every symbol
        assert L < p.max_code_length <= 16 and enc.codebook.n_present > 2**L
    if x.size:
        assert a.entropy_bits == pytest.approx(shannon_entropy(np.unique(x, return_counts=True)[1]))
        nc = enc.n_chunks
        assert np.array_equal(decode_chunks(enc, nc - 1, nc), x[(nc - 1) * chunk :])


# ---- histograms and sizes for a layout search -------------------------------------------------------------------------


def _layout_params():
    return {
        "plain": CodecParams(group=1, max_code_length=12, chunk_size=256, value_min=-8, value_range=16),
        "pairs": CodecParams(group=2, max_code_length=12, chunk_size=256, value_min=-8, value_range=16),
        "runs": _runs_params(R=16, run_symbol=8, chunk=256, value_min=-8),
        "escape": CodecParams(group=1, max_code_length=6, chunk_size=256, value_min=-8, value_range=16,
                              escape_min=-300, escape_range=601),
        "runs-escape": _runs_params(R=16, run_symbol=8, chunk=256, value_min=-8, escape_min=-300, escape_range=601),
    }


def _channels(rng, n_rows=12, row_length=1000):
    """Rows of different sparsity, a few values outside the window (for the escape modes)."""
    rows = []
    for r in range(n_rows):
        dens = [0.05, 0.3, 0.9][r % 3]
        row = np.where(rng.random(row_length) < dens, rng.integers(-8, 8, row_length), 0)
        row[rng.random(row_length) < 0.003] = rng.integers(-300, 301)
        rows.append(row)
    return np.array(rows, dtype=np.int16)


@pytest.mark.parametrize("mode", list(_layout_params()))
def test_row_histograms_and_exact_sizes(mode):
    rng = np.random.default_rng(8)
    v = _channels(rng)
    p = _layout_params()[mode]
    if not p.escape_range:
        v = np.clip(v, -8, 7).astype(np.int16)
    rows = symbol_histograms(v, p)
    assert rows.shape == (v.shape[0], p.alphabet_size)
    for r in range(v.shape[0]):  # each row parsed as its own stream, as the reference does
        if p.mode == "pairs":
            a = v[r].astype(np.int64) + 8
            assert np.array_equal(rows[r], np.bincount(a[0::2] * 16 + a[1::2], minlength=256))
        else:
            assert np.array_equal(rows[r], _reference_histogram(v[r], p))
    for subset in ([0, 3, 6, 9], [1, 2], list(range(v.shape[0]))):
        counts = rows[subset].sum(axis=0)
        n_chunks = sum(p.n_chunks(v.shape[1]) for _ in subset)
        plan = plan_from_counts(counts, p, n_chunks)
        # encode each row with the set's code: the sizes add up to the plan's, exactly
        encs = [encode(v[r], params=plan.params, codebook=plan.codebook) for r in subset]
        assert sum(e.accounting.payload_bits for e in encs) == plan.payload_bits
        assert sum(e.accounting.escape_bits for e in encs) == plan.escape_bits
        assert sum(e.accounting.index_bits for e in encs) == plan.index_bits
        assert plan.codebook_bits == 8 * len(plan.codebook.to_bytes())
        assert plan.total_bits == plan.payload_bits + plan.codebook_bits + plan.index_bits
        for r, e in zip(subset, encs):
            assert np.array_equal(decode(e), v[r])
        # the sizes of a given code, from histograms alone
        again = plan_from_counts(counts, plan.params, n_chunks, codebook=plan.codebook)
        assert (again.payload_bits, again.escape_bits) == (plan.payload_bits, plan.escape_bits)


def test_escape_choice_is_by_exact_size():
    rng = np.random.default_rng(9)
    # a peaked core and 5% singletons spread wide: coding each singleton costs a codebook entry as well
    x = np.round(rng.laplace(0, 3, 100_000)).astype(np.int16)
    wide = rng.random(x.size) < 0.05
    x[wide] = rng.integers(-20_000, 20_000, int(wide.sum()))
    p = CodecParams(group=1, max_code_length=8, chunk_size=4096, value_min=int(x.min()),
                    value_range=int(x.max()) - int(x.min()) + 1, escape_min=int(x.min()) - 5,
                    escape_range=int(x.max()) - int(x.min()) + 11)
    counts = symbol_histograms(x, p)[0]
    plan = plan_from_counts(counts, p, p.n_chunks(x.size))
    # the alternatives it weighed: every value coded with a raised limit, or fewer escapes
    from dataclasses import replace

    from entropy import Codebook

    p16 = replace(p, max_code_length=16)
    raised = plan_from_counts(counts, p16, p.n_chunks(x.size), codebook=Codebook.from_counts(counts, 16))
    assert plan.total_bits <= raised.total_bits
    enc = encode(x, params=plan.params, codebook=plan.codebook)
    assert enc.accounting.total_bits == plan.total_bits and np.array_equal(decode(enc), x)
    # escaped symbols are exactly the present in-window ones without a code; they are the rarest
    lens = plan.codebook.lengths
    esc = np.flatnonzero((counts[: p.value_range] > 0) & (lens[: p.value_range] == 0))
    kept = np.flatnonzero(lens[: p.value_range] > 0)
    assert esc.size > 1000 and plan.params.max_code_length == 8  # escapes won here
    assert counts[esc].max() <= counts[kept].min()
    assert plan.escape_bits == int(counts[esc].sum()) * p.escape_bits


def test_histogram_api_rejects_bad_input():
    p = _layout_params()["plain"]
    with pytest.raises(SymbolError, match="row 1, column 2"):
        symbol_histograms(np.array([[0, 0, 0], [0, 0, 50]], np.int16), p)
    with pytest.raises(EntropyError):
        symbol_histograms(np.zeros((2, 2), np.float32), p)
    with pytest.raises(EntropyError):
        plan_from_counts(np.zeros(3, np.int64), p, 1)
    with pytest.raises(EntropyError):
        plan_from_counts(-np.ones(16, np.int64), p, 1)


def test_run_value_is_a_window_value_when_most_values_escape():
    # found by the property test: the escape symbol's count must not be taken for the most frequent value
    x = np.array([131047, 21, 18, 16, 131046, 131055, 131070], dtype=np.uint32)
    for mode in ("auto", "runs"):
        enc = encode(x, max_code_length=1, chunk_size=3, mode=mode)
        assert np.array_equal(decode(enc), x)


# ---- rows: a set of channels coded as one stream, each row starting a new chunk ---------------------------------------


@pytest.mark.parametrize("M", [1, 7, 100, 256, 1000])
@pytest.mark.parametrize("mode", ["plain", "pairs", "runs"])
def test_rows_round_trip_and_row_ranges(mode, M):
    rng = np.random.default_rng(M)
    rows = 13
    x = np.where(rng.random(rows * M) < 0.2, rng.integers(-8, 8, rows * M), 0).astype(np.int8)
    enc = encode(x, row_length=M, chunk_size=256, mode=mode)
    p = enc.params
    assert p.mode == mode and p.row_length == M
    assert enc.n_chunks == rows * -(-M // 256)
    assert np.array_equal(decode(enc), x)
    starts = p.chunk_starts(x.size)
    assert set(range(0, x.size, M)) <= set(starts.tolist())  # every row starts a chunk
    per_row = -(-M // 256)
    for r0, r1 in ((0, 1), (3, 7), (rows - 1, rows)):  # a range of rows is a range of chunks
        assert np.array_equal(decode_chunks(enc, r0 * per_row, r1 * per_row), x[r0 * M : r1 * M])
    with pytest.raises(EntropyError, match="whole rows"):
        encode(x[:-1], row_length=M) if M > 1 else encode(x, row_length=x.size + 1)


@pytest.mark.parametrize("mode", list(_layout_params()))
def test_row_histograms_add_up_to_the_stream_of_a_set_of_rows(mode):
    """What a layout search relies on: the histogram of any set of rows coded as ONE stream with row_length is
    the sum of the rows' histograms, so its exact sizes come from plan_from_counts without encoding."""
    from dataclasses import replace

    rng = np.random.default_rng(10)
    v = _channels(rng, n_rows=9, row_length=301)  # odd rows: pairs pad each row
    p = _layout_params()[mode]
    if not p.escape_range:
        v = np.clip(v, -8, 7).astype(np.int16)
    rows = symbol_histograms(v, replace(p, row_length=v.shape[1]))
    for subset in ([0, 4, 8], [2, 3, 5, 6, 7]):
        ps = replace(p, row_length=v.shape[1])
        stream = v[subset].reshape(-1)
        plan = plan_from_counts(rows[subset].sum(axis=0), ps, ps.n_chunks(stream.size))
        enc = encode(stream, params=plan.params, codebook=plan.codebook)
        assert enc.accounting.payload_bits == plan.payload_bits == int(enc.chunk_bits.sum())
        assert enc.accounting.index_bits == plan.index_bits and enc.accounting.escape_bits == plan.escape_bits
        assert np.array_equal(decode(enc), stream)
        assert np.array_equal(symbol_histograms(stream, ps), rows[subset])  # 1-D: rows of row_length


def test_very_sparse_maps_take_longer_run_prefixes():
    rng = np.random.default_rng(12)
    n = 400_000
    x = np.where(rng.random(n) < 0.995, 0, rng.integers(1, 16, n)).astype(np.uint8)
    enc = encode(x)
    assert enc.params.mode == "runs" and enc.params.runs > 16
    short = encode(x, params=_runs_params(R=16, runs=16))
    assert enc.accounting.total_bits < short.accounting.total_bits
    assert np.array_equal(decode(enc), x)
    H = enc.accounting.entropy_bits
    assert enc.accounting.payload_bits / n < 1.2 * H  # (measured: 64 prefixes 1.06 x H, 16 prefixes 1.64 x H)


@given(st.integers(0, 2**20), st.sampled_from([0, 1, 7, 300]), st.sampled_from([1, 2, 64, 4096]),
       st.sampled_from(["plain", "pairs", "runs", "escape"]))
@settings(max_examples=200, deadline=None)
def test_payload_bounds_closed_form_equals_per_chunk_sums(n, M, C, mode):
    kw = {"plain": {}, "pairs": {"group": 2}, "runs": {"runs": 16}, "escape": {"escape_min": 0, "escape_range": 1000}}
    if mode == "pairs" and C % 2:
        C *= 2
    p = CodecParams(**{"group": 1, "max_code_length": 12, "chunk_size": C, "value_min": 0, "value_range": 16,
                       "row_length": M, **kw[mode]})
    if M and n % M:
        n -= n % M
    lo, hi = p.chunk_bit_bounds(n)
    assert p.payload_bit_bounds(n) == (int(lo.sum()), int(hi.sum()))
    assert p.n_chunks(n) == lo.size == p.chunk_starts(n).size - 1


def test_payload_bounds_of_a_huge_claim_allocate_nothing():
    p = CodecParams(group=1, max_code_length=12, chunk_size=1, value_min=0, value_range=16, runs=256)
    assert p.payload_bit_bounds(2**48) == (2**48, 2**48 * 12)  # chunks of 1 value: one symbol each
    p = CodecParams(group=1, max_code_length=12, chunk_size=4096, value_min=0, value_range=16, runs=256)
    assert p.payload_bit_bounds(2**48)[0] == 2**48 // 256
