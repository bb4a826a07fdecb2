"""Array codec: round trips, bitarray oracle, grouping, accounting (entropy/codec/streams.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from bitarray import bitarray
from bitarray.util import canonical_decode, canonical_huffman
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy import Codebook, decode, decode_chunks, encode, shannon_entropy
from entropy.codec.params import SUPPORTED_DTYPES, CodecParams
from entropy.codec.streams import PAD_BASE_SYMBOL, EncodedTensor, decode_parts
from entropy.errors import CodebookError, EntropyError, SymbolError
from entropy.codec.measures import counts_of


def _distinct_symbols(x, group):
    """Distinct symbols of ``x`` with grouping 1 or 2 (pairs padded with the minimum), counted independently."""
    v = x.astype(np.int64).ravel() - int(x.min())
    if group == 1:
        return np.unique(v).size
    R = int(v.max()) + 1
    v = np.append(v, np.zeros(v.size % 2, dtype=np.int64))
    return np.unique(v[0::2] * R + v[1::2]).size


def _pair_counts(x):
    """Histogram of the pair symbols a * R + b of ``x`` (R = max + 1, pad with 0), counted independently."""
    v = x.astype(np.int64).ravel()
    R = int(v.max()) + 1
    v = np.append(v, np.zeros(v.size % 2, dtype=np.int64))
    return np.bincount(v[0::2] * R + v[1::2], minlength=R * R)


def _roundtrip(x, **kw):
    enc = encode(x, **kw)
    y = decode(enc)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.array_equal(x, y)
    return enc


@st.composite
def _arrays(draw):
    dtype = np.dtype(draw(st.sampled_from(SUPPORTED_DTYPES)))
    info = np.iinfo(dtype)
    n = draw(st.integers(0, 3000))
    R = draw(st.integers(1, min(300, int(info.max) - int(info.min) + 1)))
    lo = draw(st.integers(max(int(info.min), -(2**40)), min(int(info.max), 2**40) - R + 1))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(R, draw(st.sampled_from([0.05, 0.5, 5.0]))))
    x = (rng.choice(R, size=n, p=p) + lo).astype(dtype)
    return x


@given(
    _arrays(),
    st.sampled_from([1, 2, "auto"]),
    st.sampled_from([2, 4, 10, 64, 4096, 100000]),
    st.sampled_from([8, 12, 16, 24]),
)
@settings(max_examples=150, deadline=None)
def test_round_trip_random(x, group, chunk, L):
    R = int(x.max()) - int(x.min()) + 1 if x.size else 1
    if group == 2 and R * R > 65536:
        with pytest.raises(EntropyError):
            encode(x, group=group, chunk_size=chunk, max_code_length=L)
        return
    try:
        enc = _roundtrip(x, group=group, chunk_size=chunk, max_code_length=L)
    except CodebookError:
        # only legitimate when more symbols occur than 2**L codes exist
        ks = [1, 2] if group == "auto" else [group]
        assert min(_distinct_symbols(x, k) for k in ks) > 2**L
        return
    a = enc.accounting
    assert a.n_values == x.size
    assert a.total_bits == a.payload_bits + a.codebook_bits + a.index_bits
    assert a.payload_bits == int(enc.chunk_bits.sum())
    assert len(enc.payload) == (a.payload_bits + 7) // 8
    assert a.index_bits == 8 * len(enc.index_bytes())
    assert a.codebook_bits == 8 * len(enc.codebook.to_bytes())
    assert enc.n_chunks == math.ceil(x.size / chunk)
    if x.size:
        assert a.bits_per_value == a.total_bits / x.size
        H = shannon_entropy(counts_of(x, R, int(x.min())))
        assert a.entropy_bits == pytest.approx(H)
        k = enc.params.group
        padded = -(-x.size // k) * k  # values including the group padding
        assert a.avg_code_length * padded == pytest.approx(a.payload_bits)
        # pairs can beat the order-0 entropy only slightly (odd padding), run symbols by far; plain symbols never
        if enc.params.mode == "plain":
            assert a.avg_code_length >= H - 1e-9


@pytest.mark.parametrize("dtype", SUPPORTED_DTYPES)
def test_dtypes_full_range_edges(dtype):
    info = np.iinfo(dtype)
    lo = max(int(info.min), -(2**31))
    hi = min(int(info.max), 2**31 - 1)
    for base in (lo, hi - 15, 0 if lo <= 0 else lo):
        x = (np.arange(101) % 16 + base).astype(dtype)
        for g in (1, 2, "auto"):
            _roundtrip(x, group=g)


def test_edge_cases():
    # empty, in several shapes
    for shape in [(0,), (3, 0), (0, 5, 2)]:
        enc = _roundtrip(np.zeros(shape, dtype=np.uint8))
        assert enc.accounting.bits_per_value == 0.0 and enc.n_chunks == 0 and enc.payload == b""
    # 0-d scalar
    enc = _roundtrip(np.array(7, dtype=np.int16))
    assert enc.shape == ()
    # single distinct symbol: 1 bit per value as plain symbols
    enc = _roundtrip(np.full(1000, 3, dtype=np.uint8), mode="plain")
    assert enc.accounting.payload_bits == 1000
    # ... and 63 bits as run symbols of 16 prefixes: 62 x 16 values, then a run of 8 ends the chunk; two
    # symbols, 1 bit each; 16 bits with 64 prefixes (15 x 64 + a run of 40)
    p16 = CodecParams(group=1, max_code_length=12, chunk_size=4096, value_min=3, value_range=1, runs=16)
    enc16 = _roundtrip(np.full(1000, 3, dtype=np.uint8), params=p16)
    assert enc16.accounting.payload_bits == 63
    enc64 = _roundtrip(np.full(1000, 3, dtype=np.uint8), params=CodecParams(**{**p16.__dict__, "runs": 64}))
    assert enc64.accounting.payload_bits == 16
    enc = _roundtrip(np.full(1000, 3, dtype=np.uint8))  # the smallest total of those the codec weighs
    assert enc.params.mode == "runs" and enc.accounting.total_bits <= enc64.accounting.total_bits
    enc = _roundtrip(np.full(1001, -5, dtype=np.int8))
    # every symbol of a 16-bit alphabet present
    x = np.random.default_rng(0).permutation(np.arange(65536)).astype(np.uint16)
    enc = _roundtrip(x, max_code_length=16, mode="plain")
    assert enc.codebook.n_present == 65536
    # ... a code of them is no smaller than 16 bits per value: stored
    enc = _roundtrip(x, max_code_length=16)
    assert enc.params.mode == "stored" and enc.accounting.payload_bits == 16 * x.size
    # shapes
    x = np.random.default_rng(1).integers(-8, 8, size=(3, 5, 7, 11)).astype(np.int8)
    _roundtrip(x, chunk_size=6)
    _roundtrip(np.asfortranarray(x))
    _roundtrip(x[:, ::2])


@pytest.mark.parametrize("n", [1, 2, 3, 4095, 4096, 4097, 8191])
@pytest.mark.parametrize("chunk", [2, 4, 4096])
def test_odd_sizes_with_pairs(n, chunk):
    x = np.random.default_rng(n).integers(3, 12, size=n).astype(np.uint8)
    enc = _roundtrip(x, group=2, chunk_size=chunk)
    assert enc.params.group == 2
    if n > 1:
        _roundtrip(x, group=2, chunk_size=chunk, value_min=0, value_range=16)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100, 4096, 10**6])
def test_chunk_sizes_and_slices(chunk):
    x = np.random.default_rng(chunk).geometric(0.3, size=20_001).astype(np.int32)
    for g in (1, 2, "auto"):
        if g == 2 and chunk % 2:
            with pytest.raises(EntropyError):
                encode(x, group=2, chunk_size=chunk)
            continue
        enc = _roundtrip(x, group=g, chunk_size=chunk)
        nc = enc.n_chunks
        for a, b in [(0, nc), (0, 1), (nc - 1, nc), (nc // 3, 2 * nc // 3), (nc // 2, nc // 2)]:
            got = decode_chunks(enc, a, b)
            assert np.array_equal(got, x[a * chunk : b * chunk])
    with pytest.raises(EntropyError):
        decode_chunks(enc, 0, nc + 1)
    with pytest.raises(EntropyError):
        decode_chunks(enc, 2, 1)


def test_auto_grouping_picks_smaller_total():
    rng = np.random.default_rng(5)
    sparse = (rng.random(50_000) < 0.1) * rng.integers(1, 16, 50_000)
    sparse = sparse.astype(np.uint8)
    e1, e2, er, ea = (encode(sparse, mode=m) for m in ("plain", "pairs", "runs", "auto"))
    assert [e.params.mode for e in (e1, e2, er)] == ["plain", "pairs", "runs"]
    assert ea.accounting.total_bits == min(e.accounting.total_bits for e in (e1, e2, er))
    assert er.accounting.total_bits < e2.accounting.total_bits < e1.accounting.total_bits
    assert ea.params.mode == "runs"
    assert encode(sparse, group=2).params.mode == "pairs"
    uniform = rng.integers(0, 256, 50_000).astype(np.uint8)  # pairs: 65536 symbols do not fit 12 bits
    ea = encode(uniform)
    assert ea.params.group == 1
    pairs = uniform[0::2].astype(np.int64) * 256 + uniform[1::2]
    distinct = np.unique(pairs).size
    assert distinct > 2**12  # more pair symbols occur than 12-bit codes exist: forced pairs raise the limit
    e2 = _roundtrip(uniform, group=2)
    assert e2.params.max_code_length >= math.ceil(math.log2(distinct)) and e2.codebook.n_present == distinct
    tiny = np.arange(16, dtype=np.uint8)  # pair codebook would cost more than it saves
    assert encode(tiny).params.group == 1


def test_payload_matches_bitarray_oracle():
    rng = np.random.default_rng(11)
    for trial in range(30):
        n_sym = int(rng.integers(2, 200))
        freq = {int(s): int(rng.integers(1, 1000)) for s in rng.choice(1000, size=n_sym, replace=False)}
        code, count, symbol = canonical_huffman(freq)
        # relabel: bitarray's canonical order -> 0..n-1 makes it DEFLATE order
        lens = np.array([len(code[s]) for s in symbol], dtype=np.uint8)
        cb = Codebook.from_lengths(lens)
        data_idx = rng.integers(0, n_sym, size=int(rng.integers(1, 5000)))
        data_sym = [symbol[i] for i in data_idx]
        ref = bitarray(endian="big")
        ref.encode(code, data_sym)
        x = data_idx.astype(np.uint16)
        enc = encode(x, codebook=cb, max_code_length=24, group=1, chunk_size=int(rng.integers(1, 3000)))
        assert enc.accounting.payload_bits == len(ref)
        assert enc.payload == ref.tobytes()  # bitarray pads with zeros too
        # and bitarray's canonical decoder reads our stream with our code's tables
        ours = bitarray(endian="big")
        ours.frombytes(enc.payload)
        del ours[enc.accounting.payload_bits :]
        counts = np.bincount(lens, minlength=int(lens.max()) + 1).tolist()
        counts[0] = 0
        assert list(canonical_decode(ours, counts, list(range(n_sym)))) == data_idx.tolist()


def test_pairs_are_first_value_major():
    x = np.array([1, 2, 2, 1, 3], dtype=np.uint8)
    enc = encode(x, group=2, value_min=0, value_range=4)
    counts = np.zeros(16, dtype=np.int64)
    for a, b in [(1, 2), (2, 1), (3, PAD_BASE_SYMBOL)]:
        counts[a * 4 + b] += 1
    assert enc.codebook.n_present == 3
    assert np.array_equal(enc.codebook.lengths > 0, counts > 0)


def test_shared_codebook():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 16, 10_000).astype(np.uint8)
    b = rng.integers(0, 16, 7_000).astype(np.uint8)
    cb = Codebook.from_counts(np.bincount(np.concatenate([a, b]), minlength=16))
    for x in (a, b):
        enc = _roundtrip(x, codebook=cb)
        assert enc.codebook is cb and enc.params.value_range == 16 and enc.params.value_min == 0
        assert enc.accounting.codebook_bits == cb.serialized_bits
    pair_cb = Codebook.from_counts(np.ones(256, dtype=np.int64))
    enc = _roundtrip(a, codebook=pair_cb, group=2)
    assert enc.params.group == 2
    missing = Codebook.from_counts(np.bincount(a[a < 15], minlength=16))
    with pytest.raises(SymbolError, match="no code"):
        encode(a, codebook=missing)
    with pytest.raises(EntropyError):
        encode(a, codebook=cb, value_range=5)


def test_accounting_against_independent_huffman():
    rng = np.random.default_rng(8)
    x = np.clip(np.round(rng.laplace(0, 2, 200_000)), -7, 8).astype(np.int8)
    enc = encode(x, group=1)
    counts = counts_of(x, 16, -7)
    freq = {i: int(c) for i, c in enumerate(counts) if c}
    code, _, _ = canonical_huffman(freq)
    huff_bits = sum(freq[s] * len(code[s]) for s in freq)
    assert enc.accounting.payload_bits == huff_bits  # 12-bit limit is not binding here
    assert enc.accounting.entropy_bits == pytest.approx(shannon_entropy(counts))
    H = enc.accounting.entropy_bits
    assert H <= enc.accounting.avg_code_length < H + 1
    assert enc.accounting.index_bits == 16 * enc.n_chunks


def test_bad_inputs():
    x = np.arange(10, dtype=np.uint8)
    with pytest.raises(SymbolError, match="outside"):
        encode(x, value_min=2)
    with pytest.raises(SymbolError, match="outside"):
        encode(x, value_min=0, value_range=5, group=1)
    with pytest.raises(EntropyError):
        encode(x.astype(np.float32))
    with pytest.raises(EntropyError):
        encode(x, group=3)
    with pytest.raises(EntropyError):
        encode(x, max_code_length=25)
    with pytest.raises(EntropyError):
        encode(x, chunk_size=0)
    with pytest.raises(EntropyError):
        encode(x, value_min=250, value_range=10)  # alphabet does not fit uint8
    with pytest.raises(SymbolError, match="escapes are off"):
        encode(np.array([0, 100_000], dtype=np.int32), escape=False)  # span above 2**16
    with pytest.raises(EntropyError, match="mode"):
        encode(x, mode="triples")
    with pytest.raises(EntropyError, match="no symbol mode"):
        encode(x, group=2, mode="runs")


def test_index_round_trip_and_parts():
    x = np.random.default_rng(4).integers(0, 200, 100_000).astype(np.uint8)
    enc = encode(x, chunk_size=1000)
    idx = enc.index_bytes()
    assert len(idx) == 2 * enc.n_chunks
    parsed = EncodedTensor.parse_index(idx, enc.n_chunks, enc.params)
    assert np.array_equal(parsed, enc.chunk_bits)
    offs = enc.chunk_offsets()
    assert offs[0] == 0 and offs[-1] == enc.accounting.payload_bits and offs.dtype == np.uint64
    y = decode_parts(
        shape=enc.shape, dtype=enc.dtype, params=enc.params, codebook=Codebook.from_bytes(enc.codebook.to_bytes()),
        chunk_bits=parsed, payload=enc.payload,
    )
    assert np.array_equal(y, x)
    big = CodecParams(group=1, max_code_length=24, chunk_size=1 << 16, value_min=0, value_range=256)
    assert big.index_entry_bytes == 4


@pytest.mark.parametrize("L", [4, 8, 12, 13, 16, 24])
def test_long_and_short_code_limits(L):
    # geometric frequencies: the optimal code is as long as the limit allows
    counts = 2 ** np.arange(20)[::-1]
    x = np.repeat(np.arange(20, dtype=np.uint8), counts // 64 + 1)
    x = np.random.default_rng(L).permutation(x)
    for mode, g in (("plain", 1), ("pairs", 2)):
        enc = _roundtrip(x, max_code_length=L, mode=mode, chunk_size=1000)
        distinct = _distinct_symbols(x, g)
        if distinct > 2**L:  # the code cannot hold every symbol within L bits: raise the limit, or escape
            raised = _roundtrip(x, max_code_length=L, mode=mode, chunk_size=1000, escape=False)
            # the raised limit: the optimal code of at most 16 bits, which must hold every symbol
            assert math.ceil(math.log2(distinct)) <= raised.params.max_code_length == raised.codebook.max_length <= 16
            assert not raised.params.escape_range
            want = Codebook.from_counts(np.bincount(x) if g == 1 else _pair_counts(x), max_length=16)
            assert raised.accounting.payload_bits == int(np.dot(want.lengths.astype(np.int64),
                                                                np.bincount(x) if g == 1 else _pair_counts(x)))
            if enc.params.escape_range:  # escapes chosen: at the asked limit, and not larger than raising it
                assert enc.params.max_code_length == L and enc.accounting.escape_bits > 0
                assert enc.accounting.total_bits <= raised.accounting.total_bits
            else:
                assert enc.accounting.total_bits == raised.accounting.total_bits
        else:
            assert enc.params.max_code_length == L
        assert enc.codebook.max_length <= enc.params.max_code_length
        if g == 1:
            want = min(enc.params.max_code_length, int(Codebook.from_counts(np.bincount(x), None).max_length))
            assert enc.codebook.max_length == want


def test_import_is_light():
    # numba is imported lazily by the first encode/decode; torch never
    import subprocess
    import sys

    code = "import sys, entropy; print('numba' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


def test_stream_parameter_block_round_trips_and_rejects_damage():
    from entropy.codec.params import CodecParams
    from entropy.errors import StreamError

    for p in (
        CodecParams(group=2, max_code_length=12, chunk_size=4096, value_min=-3, value_range=16),
        CodecParams(group=1, max_code_length=12, chunk_size=4096, value_min=0, value_range=16, runs=16, run_symbol=3),
        CodecParams(group=1, max_code_length=16, chunk_size=64, value_min=-40, value_range=65535, escape_min=-2**31,
                    escape_range=2**32),
        CodecParams(group=2, max_code_length=9, chunk_size=64, value_min=0, value_range=16, row_length=1001),
        CodecParams(group=1, max_code_length=12, chunk_size=4096, value_min=-2**31, value_range=2**32, stored=True),
        CodecParams(group=1, max_code_length=9, chunk_size=64, value_min=-5, value_range=100, runs=64, run_symbol=5,
                    escape_min=-9, escape_range=300, row_length=7),
    ):
        block = p.to_bytes()
        # a 24-byte base, then 4 bytes with run symbols, 16 with escapes, 8 with rows (FORMAT.md section 7.1)
        want = 24 + 4 * bool(p.runs) + 16 * bool(p.escape_range) + 8 * bool(p.row_length)
        assert len(block) == want == p.block_bytes and CodecParams.from_bytes(block) == p
    plain = CodecParams(group=1, max_code_length=12, chunk_size=4096, value_min=0, value_range=16).to_bytes()
    assert plain == bytes([1, 12, 0, 0]) + (4096).to_bytes(4, "little") + bytes(8) + (16).to_bytes(8, "little")
    with pytest.raises(StreamError, match="reserved"):  # flag bits 4..15
        CodecParams.from_bytes(block[:2] + b"\x10\x00" + block[4:])
    stored = plain[:2] + b"\x08\x00" + plain[4:]  # flag bit 3: the same window stored, 4 bits per value
    assert CodecParams.from_bytes(stored).stored and CodecParams.from_bytes(stored).stored_bits == 4
    with pytest.raises(StreamError, match="stored"):  # a stored stream takes no run symbols
        CodecParams.from_bytes(plain[:2] + b"\x09\x00" + plain[4:] + (16).to_bytes(2, "little") + bytes(2))
    with pytest.raises(StreamError, match="stored"):  # nor a window of fewer than 2 values (0 bits per value)
        CodecParams.from_bytes(stored[:16] + (1).to_bytes(8, "little"))
    with pytest.raises(StreamError, match="flags"):  # an extension missing or one too many
        CodecParams.from_bytes(block[:-1])
    with pytest.raises(StreamError, match="flags"):
        CodecParams.from_bytes(plain + bytes(4))
    with pytest.raises(StreamError, match="base"):
        CodecParams.from_bytes(plain[:-1])
    with pytest.raises(StreamError, match="group"):
        CodecParams.from_bytes(bytes([3]) + block[1:])
    with pytest.raises(StreamError, match="runs"):  # bytes 24..25: runs (2..256)
        CodecParams.from_bytes(block[:24] + b"\x01\x00" + block[26:])
    with pytest.raises(StreamError, match="row_length"):  # the last 8 bytes: row_length, at most 2**48
        CodecParams.from_bytes(block[:-8] + (2**49).to_bytes(8, "little"))
    with pytest.raises(StreamError, match="flag is set"):
        CodecParams.from_bytes(block[:-8] + bytes(8))


def test_run_symbols_may_code_below_the_order0_entropy():
    """208 values, one of them 1: run symbols code it in 2 payload bits (hypothesis found it), below the
    208 x H0 = 9.1 bits a code of single values needs at least; the accounting still adds up."""
    x = np.zeros(208, np.uint8)
    x[22] = 1
    enc = _roundtrip(x, group=1, chunk_size=4096, max_code_length=8)
    H = shannon_entropy(counts_of(x, 2, 0))
    assert enc.params.runs and enc.accounting.entropy_bits == pytest.approx(H)
    assert enc.accounting.payload_bits < x.size * H
    assert enc.accounting.total_bits == enc.accounting.payload_bits + enc.accounting.codebook_bits + enc.accounting.index_bits
