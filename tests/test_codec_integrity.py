"""Silent-corruption regressions: byte order, every code length, the writer's self-check (entropy/codec/streams.py)."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.cli import main
from entropy import Codebook, decode, decode_chunks, encode
import entropy as C
from entropy.codec.streams import check_tail, decode_parts, prepare_encode
from entropy.errors import StreamError
from entropy.codec.lengths import MAX_SUPPORTED_LENGTH, huffman_lengths

# ---- byte order -------------------------------------------------------------------------------------------------

_BYTE_ORDER_CASES = [
    np.array([0, 1, 256, 257], ">i2"),
    np.arange(40, dtype=">i4"),
    np.array([-30000, 5, 5, 30000], ">i4"),
    np.array([1, 65535, 300, 1], ">u2"),
    np.arange(-20, 20, dtype=">i8").reshape(5, 8),
    np.array([2**32 - 60000, 2**32 - 1, 2**32 - 5], ">u4"),
]


def _little(x: np.ndarray) -> np.ndarray:
    return x.astype(x.dtype.newbyteorder("<"))


@pytest.mark.parametrize("x", _BYTE_ORDER_CASES, ids=lambda x: str(x.dtype))
def test_non_native_byte_order_round_trips(x):
    assert not x.dtype.isnative  # the test needs a big-endian input (this machine is little-endian)
    want = _little(x)
    enc = encode(x)
    assert np.array_equal(decode(enc), want)
    assert enc.accounting.payload_bits == encode(want).accounting.payload_bits  # same symbols, same stream
    assert enc.payload == encode(want).payload
    # a decoder asked for a big-endian dtype returns the right values (in native order)
    y = decode_parts(shape=enc.shape, dtype=x.dtype, params=enc.params, codebook=enc.codebook,
                     chunk_bits=enc.chunk_bits, payload=enc.payload)
    assert np.array_equal(y, want)


def test_non_native_byte_order_through_files(tmp_path):
    tensors = {f"t{i}": x for i, x in enumerate(_BYTE_ORDER_CASES)}
    C.save(tmp_path / "api.hqt", tensors)
    back = C.load(tmp_path / "api.hqt")
    for k, x in tensors.items():
        assert back[k].dtype == x.dtype.newbyteorder("=") and np.array_equal(back[k], _little(x))
    C.save(tmp_path / "shared.hqt", tensors, share_codebooks=True)  # the pooled-histogram path
    back = C.load(tmp_path / "shared.hqt")
    for k, x in tensors.items():
        assert np.array_equal(back[k], _little(x))
    # the CLI, from an .npz written with big-endian members
    np.savez(tmp_path / "be.npz", **tensors)
    assert main(["-q", "encode", str(tmp_path / "be.npz"), "-o", str(tmp_path / "be.hqt")]) == 0
    back = C.load(tmp_path / "be.hqt")
    for k, x in tensors.items():
        assert np.array_equal(back[k], _little(x))


# ---- every code length -------------------------------------------------------------------------------------------


def _fibonacci_values(n_symbols: int, order: str, seed: int = 0) -> np.ndarray:
    """Symbols 0..n-1 with Fibonacci counts 1, 1, 2, 3, 5, ...: the optimal (unlimited) code has lengths
    n-1, n-1, n-2, ..., 1, so its longest code is n - 1 bits."""
    fib = [1, 1]
    while len(fib) < n_symbols:
        fib.append(fib[-1] + fib[-2])
    x = np.repeat(np.arange(n_symbols, dtype=np.uint16), fib[:n_symbols])
    if order == "shuffled":
        x = np.random.default_rng(seed).permutation(x)
    # "sorted": rarest (longest) codes first, back to back - the case that overflowed the bit writer
    return x


@pytest.mark.parametrize("L", range(1, MAX_SUPPORTED_LENGTH + 1))
def test_every_code_length_round_trips(L):
    for extra, order in ((1, "sorted"), (1, "shuffled"), (3, "sorted")):
        # extra = 1: the optimal code is exactly L bits long; extra = 3: it would need L + 2 bits, the limit cuts it
        x = _fibonacci_values(L + extra, order, seed=L)
        if L + extra > 2**L:
            continue  # L = 1 only holds 2 symbols
        for mode, chunk in (("plain", 4096), ("plain", 7), ("auto", 4096), ("pairs", 64), ("runs", 4096),
                            ("runs", 7)):
            enc = encode(x, max_code_length=L, mode=mode, chunk_size=chunk)
            if mode == "plain":
                assert enc.codebook.max_length == L  # the stream really uses L-bit codes
            if enc.params.max_code_length == L:
                assert enc.codebook.max_length <= L
            else:  # more symbols than 2**L (pairs, run symbols): the limit was raised just enough
                assert enc.codebook.n_present > 2**L and enc.params.max_code_length == enc.codebook.max_length <= 16
            assert np.array_equal(decode(enc), x)


@pytest.mark.parametrize("L", [9, 12, 13, 16, 17, 20])
def test_every_code_length_with_large_alphabet(L):
    # > 256 symbols: the one-symbol decode table and the generic encoder loop. 300 fillers of count 1 beside a
    # chain of doubled Fibonacci counts, made long enough that the unlimited optimal code is longer than L
    for m in range(L + 2, 2 * L + 4):
        x = np.concatenate([np.repeat(_fibonacci_values(m, "sorted"), 2) + 400, np.arange(300, dtype=np.uint16)])
        if int(huffman_lengths(np.bincount(x)).max()) > L:
            break
    enc = encode(x, max_code_length=L, mode="plain")
    assert enc.codebook.max_length == L
    assert np.array_equal(decode(enc), x)


def test_uniform_16_bit_with_long_codes():
    # the report's reproduction: 300,000 uniform uint16 values with 17-bit codes wrote an unreadable stream
    x = np.random.default_rng(0).integers(0, 65536, 300_000).astype(np.uint16)
    for L in (16, 17, 18, 24):
        enc = encode(x, max_code_length=L, mode="plain")
        assert enc.codebook.max_length >= 16
        assert np.array_equal(decode(enc), x)


def test_cli_every_max_code_length(tmp_path):
    for L in range(1, MAX_SUPPORTED_LENGTH + 1):
        n = min(L + 1, 2**L)
        x = _fibonacci_values(n, "sorted")
        src = tmp_path / f"x{L}.npz"
        np.savez(src, x=x)
        out = tmp_path / f"x{L}.hqt"
        assert main(["-q", "encode", str(src), "-o", str(out), "--max-code-length", str(L), "--group", "1"]) == 0
        ti = C.info(out).tensors[0]
        assert ti.max_code_length == L
        assert Codebook.from_counts(np.bincount(x), max_length=L).max_length == n - 1  # the code reaches L bits
        assert np.array_equal(C.load(out)["x"], x)
        assert main(["-q", "verify", str(out), "--against", str(src)]) == 0


# ---- the writer's self-check -------------------------------------------------------------------------------------


def _flip_in_chunk(monkeypatch, which: str):
    """Make the encoder kernel return a stream with one bit flipped in the first or last chunk."""
    from entropy.codec import kernels

    real = kernels.encode_symbols

    def broken(*args, **kwargs):
        buf, chunk_bits = real(*args, **kwargs)
        bad = buf.copy()
        bit = 0 if which == "first" else int(chunk_bits.astype(np.int64).sum()) - 1
        bad[bit // 8] ^= np.uint8(0x80 >> (bit % 8))
        return bad, chunk_bits

    monkeypatch.setattr(kernels, "encode_symbols", broken)


@pytest.mark.parametrize("which", ["first", "last"])
def test_self_check_refuses_a_wrong_stream(monkeypatch, tmp_path, which):
    x = np.random.default_rng(1).integers(0, 16, 50_000).astype(np.uint8)
    good = encode(x, chunk_size=1000)
    _flip_in_chunk(monkeypatch, which)
    with pytest.raises(StreamError, match="self-check"):
        encode(x, chunk_size=1000)
    with pytest.raises(StreamError, match="self-check"):
        prepare_encode(x, chunk_size=1000).run(sink=lambda view, off: None)
    path = tmp_path / "x.hqt"
    with pytest.raises(StreamError, match="self-check"):
        C.save(path, {"x": x}, chunk_size=1000)
    assert not path.exists()  # nothing written, no temporary left behind
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    check_tail(good, x)  # the public check passes on a good stream ...
    with pytest.raises(StreamError, match="self-check"):
        check_tail(good, np.concatenate([x[:-1], x[-1:] ^ 1]))  # ... and fails when the values differ


def test_encoder_never_writes_past_its_buffer():
    # sizes that do not describe the values (an internal fault) end in an error, never in a write past the buffer
    from entropy.codec import kernels

    rng = np.random.default_rng(2)
    cases = {
        "fused": rng.integers(0, 16, 50_000).astype(np.uint8),
        "long codes": rng.integers(0, 5000, 50_000).astype(np.uint16),
        "pairs": rng.integers(0, 4, 50_000).astype(np.uint8),
        "runs": (rng.integers(1, 16, 50_000) * (rng.random(50_000) < 0.1)).astype(np.uint8),
    }
    modes = {"pairs": "pairs", "runs": "runs"}
    for name, x in cases.items():
        enc = encode(x, mode=modes.get(name, "plain"), max_code_length=16)
        for wrong in (0, 10, enc.accounting.payload_bits // 3):
            with pytest.raises(StreamError, match="plan said"):
                kernels.encode_symbols(x, enc.params, enc.codebook.codes, enc.codebook.lengths, wrong)


def test_longest_codes_with_32_bit_escapes():
    # the run/escape writer and reader at their widest: codes of up to 24 bits followed by 32 raw bits
    from entropy import CodecParams

    rng = np.random.default_rng(3)
    n = 60_000
    x = np.where(rng.random(n) < 0.7, 5, 6).astype(np.uint32)  # run value 5, window {5, 6}
    far = rng.random(n) < 0.1
    x[far] = rng.integers(0, 2**32, int(far.sum()), dtype=np.uint64).astype(np.uint32)
    x[:2] = [0, 2**32 - 1]
    p = CodecParams(group=1, max_code_length=24, chunk_size=999, value_min=5, value_range=2, runs=16, run_symbol=0,
                    escape_min=0, escape_range=2**32)
    assert p.escape_bits == 32 and p.base_symbols == 3
    # a complete code of lengths 1, 2, ..., 24, 24 over the 16 escape symbols (r, ESC) and 9 symbols (r, 6);
    # every other symbol that occurs goes through its escape symbol
    coded = [r * 3 + 2 for r in range(16)] + [r * 3 + 1 for r in range(9)]
    lengths = np.zeros(p.alphabet_size, dtype=np.uint8)
    lengths[coded] = list(range(1, 25)) + [24]
    cb = Codebook.from_lengths(lengths)
    assert cb.max_length == 24
    enc = encode(x, params=p, codebook=cb)
    assert enc.accounting.escape_bits > 0 and np.array_equal(decode(enc), x)
    nc = enc.n_chunks
    assert np.array_equal(decode_chunks(enc, nc // 2, nc), x[(nc // 2) * 999 :])


def test_cli_codes_any_integer_array(tmp_path):
    # any integer array through `huffquant encode` / `verify`: wide alphabets, huge spans, a sparse map
    rng = np.random.default_rng(4)
    tensors = {
        "u16": rng.integers(0, 62_000, 100_000).astype(np.uint16),
        "i32": rng.integers(-(2**31), 2**31 - 1, 20_000, dtype=np.int64).astype(np.int32),
        "u32": np.concatenate([np.zeros(5000, np.uint32), np.array([2**32 - 1], np.uint32)]),
        "sparse": np.where(rng.random((8, 3000)) < 0.05, rng.integers(1, 16, (8, 3000)), 0).astype(np.uint8),
    }
    src = tmp_path / "any.npz"
    np.savez(src, **tensors)
    out = tmp_path / "any.hqt"
    assert main(["-q", "encode", str(src), "-o", str(out)]) == 0
    back = C.load(out)
    for k, v in tensors.items():
        assert np.array_equal(back[k], v)
    assert main(["-q", "verify", str(out), "--against", str(src)]) == 0
    modes = {t.name: {s.mode for s in t.streams} for t in C.info(out).tensors}
    # uniform int32 values: no code beats their 32 bits each
    assert modes["sparse"] == {"runs"} and modes["i32"] == {"stored"}
