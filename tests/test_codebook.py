"""Canonical codebooks: codes vs the bitarray oracle, validation, serialization (entropy/codec/codebook.py)."""

from __future__ import annotations

import numpy as np
import pytest
from bitarray.util import canonical_huffman
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy.codec.codebook import Codebook
from entropy.errors import CodebookError


def _bits(code: int, length: int) -> str:
    return format(code, f"0{length}b")


@given(st.dictionaries(st.integers(0, 300), st.integers(1, 10**6), min_size=2, max_size=120))
@settings(max_examples=120, deadline=None)
def test_codes_match_bitarray_canonical_huffman(freq):
    code, count, symbol = canonical_huffman(freq)
    # relabel bitarray's canonical order as symbols 0..n-1: within one length the order is
    # then increasing symbol, i.e. DEFLATE order, so the codes must be bit-identical.
    lens = np.array([len(code[s]) for s in symbol], dtype=np.uint8)
    cb = Codebook.from_lengths(lens)
    for i, s in enumerate(symbol):
        assert _bits(int(cb.codes[i]), int(cb.lengths[i])) == code[s].to01()
    assert [int(x) for x in np.bincount(lens, minlength=len(count))[1:]] == list(count)[1:]


def test_deflate_example():
    # RFC 1951 section 3.2.2 example: lengths (3,3,3,3,3,2,4,4) for A..H
    cb = Codebook.from_lengths(np.array([3, 3, 3, 3, 3, 2, 4, 4]))
    got = [_bits(int(c), int(n)) for c, n in zip(cb.codes, cb.lengths)]
    assert got == ["010", "011", "100", "101", "110", "00", "1110", "1111"]
    assert cb.max_length == 4 and cb.alphabet_size == 8 and cb.n_present == 8


def test_from_counts_and_average_length():
    counts = np.array([10, 0, 5, 5, 20])
    cb = Codebook.from_counts(counts)
    assert cb.lengths.tolist() == [2, 0, 3, 3, 1]
    assert cb.average_length(counts) == pytest.approx((10 * 2 + 5 * 3 + 5 * 3 + 20) / 40)


def test_edge_codebooks():
    empty = Codebook.from_counts(np.zeros(5, dtype=np.int64))
    assert empty.n_present == 0 and empty.max_length == 0
    single = Codebook.from_counts(np.array([0, 9, 0]))
    assert single.lengths.tolist() == [0, 1, 0] and single.codes.tolist() == [0, 0, 0]
    for cb in (empty, single):
        assert Codebook.from_bytes(cb.to_bytes()) == cb


@pytest.mark.parametrize(
    "lengths, what",
    [
        ([1, 1, 1], "over-subscribed"),
        ([1, 2, 3, 3, 3], "over-subscribed"),
        ([1, 2, 0], "incomplete"),
        ([2, 2, 2], "incomplete"),
        ([2, 0, 0], "single-symbol"),
        ([25] + [0] * 3, "exceeds"),
    ],
)
def test_invalid_lengths_rejected(lengths, what):
    with pytest.raises(CodebookError, match=what):
        Codebook.from_lengths(np.array(lengths))


def test_max_length_enforced():
    lens = np.array([1, 2, 3, 4, 4])
    assert Codebook.from_lengths(lens, max_length=4).max_length == 4
    with pytest.raises(CodebookError, match="exceeds"):
        Codebook.from_lengths(lens, max_length=3)
    with pytest.raises(CodebookError):
        Codebook.from_bytes(Codebook.from_lengths(lens).to_bytes(), max_length=3)


@pytest.mark.parametrize("bad", [np.zeros(0), np.zeros((2, 2), dtype=int), np.array([1.0, 1.0]), np.array([-1, 1])])
def test_bad_arrays(bad):
    with pytest.raises(CodebookError):
        Codebook.from_lengths(bad)


def test_sixteen_symbols_in_eight_bytes():
    rng = np.random.default_rng(3)
    for _ in range(50):
        counts = rng.integers(0, 1000, 16) * (rng.random(16) < 0.8)
        if np.count_nonzero(counts) < 2:
            continue
        cb = Codebook.from_counts(counts)
        assert len(cb.to_bytes()) <= 8
        assert cb.serialized_bits == 8 * len(cb.to_bytes())
        assert Codebook.from_bytes(cb.to_bytes()) == cb


@st.composite
def _valid_lengths(draw):
    n = draw(st.integers(1, 600))
    counts = np.array(draw(st.lists(st.integers(0, 10**4), min_size=n, max_size=n)), dtype=np.int64)
    zero_run = draw(st.integers(0, 2000))
    counts = np.concatenate((counts, np.zeros(zero_run, dtype=np.int64), counts[: draw(st.integers(0, n))]))
    L = draw(st.integers(10, 24))
    return Codebook.from_counts(counts, max_length=L)


@given(_valid_lengths())
@settings(max_examples=150, deadline=None)
def test_serialization_round_trip(cb):
    b = cb.to_bytes()
    back = Codebook.from_bytes(b)
    assert back == cb and back.alphabet_size == cb.alphabet_size
    assert np.array_equal(back.codes, cb.codes)
    if cb.max_length <= 15:  # dense nibbles bound the size
        assert len(b) <= cb.alphabet_size // 2 + 2


def test_large_sparse_alphabet_is_compact():
    counts = np.zeros(65536, dtype=np.int64)
    counts[1000:1300] = np.arange(1, 301)
    cb = Codebook.from_counts(counts, max_length=16)
    assert len(cb.to_bytes()) < 400
    assert Codebook.from_bytes(cb.to_bytes()) == cb


@pytest.mark.parametrize(
    "buf, what",
    [
        (b"", "empty"),
        (b"\x00\x00", "mode"),
        (b"\xf0", "mode"),
        (b"\x31\x11", "over-subscribed"),  # explicit lengths 1,1,1 -> Kraft 1.5
        (b"\x31\x20", "incomplete"),  # explicit lengths 1,2,0
        (b"\x11\x11\x11\x11", "over-subscribed"),
        (b"\x12\x00", "not a power of two"),  # lengths 2,0 -> rest 3/4
        (b"\x50", "truncated"),
        (b"\x50\x80", "truncated"),
        (b"\x50\x03\x01", "truncated"),
        (b"\x50\x02\x01\x01\x00", "trailing"),
        (b"\x50\x02\x40\x05", "passes"),
        (b"\x50\x02\x81", "without a previous"),
        (b"\x50\x02\x01\x81", "passes"),
        (b"\x50\x02\x20\x01", "invalid token"),
        (b"\x50\x00", "alphabet size"),
        (b"\x50\x81\x80\x80\x80\x01", "alphabet size|too long"),
        (b"\x50\x02\x19\x01", "invalid token"),
    ],
)
def test_from_bytes_rejects_malformed(buf, what):
    with pytest.raises(CodebookError, match=what):
        Codebook.from_bytes(buf)


@given(st.binary(min_size=0, max_size=64))
@settings(max_examples=300, deadline=None)
def test_from_bytes_fuzz_never_crashes(buf):
    try:
        cb = Codebook.from_bytes(buf)
    except CodebookError:
        return
    # whatever parses is a valid code that round-trips
    assert Codebook.from_bytes(cb.to_bytes()) == cb


def test_from_bytes_rejects_non_bytes():
    with pytest.raises(CodebookError):
        Codebook.from_bytes(12345)


def test_immutable():
    cb = Codebook.from_lengths(np.array([1, 1]))
    with pytest.raises(ValueError):
        cb.lengths[0] = 2
    with pytest.raises(ValueError):
        cb.codes[0] = 1


def _rle_tokens_for_run(length: int, m: int) -> list[int]:
    """Mode-5 tokens of a run of ``m`` equal non-zero lengths, by hand: one literal, then repeats of at most
    129 (token 0x80 | (r - 2) for r in 2..129), and a last single literal if exactly one is left."""
    out, left = [length], m - 1
    while left >= 2:
        r = min(left, 129)
        out.append(0x80 | (r - 2))
        left -= r
    if left == 1:
        out.append(length)
    return out


@pytest.mark.parametrize("m", [1, 2, 3, 129, 130, 131, 132, 258, 259, 260, 261, 1000])
def test_rle_repeat_token_cap(m):
    from entropy.codec.codebook import _decode_rle, _encode_rle, _varint

    lengths = np.array([5] * m + [3], dtype=np.uint8)
    want = bytes([0x50]) + _varint(m + 1) + bytes(_rle_tokens_for_run(5, m) + [3])
    got = _encode_rle(lengths)
    assert got == want
    assert max(got[1 + len(_varint(m + 1)):]) <= 0xFF  # no repeat token above 0x80 | 127
    assert np.array_equal(_decode_rle(got), lengths)


def test_rle_repeat_token_limits_on_decode():
    from entropy.codec.codebook import _decode_rle

    # 0xFF = the longest repeat, 129 more copies: 1 + 129 = 130 lengths exactly
    assert np.array_equal(_decode_rle(bytes([0x50, 0x82, 0x01, 0x07, 0xFF])), np.full(130, 7, np.uint8))
    with pytest.raises(CodebookError, match="passes"):  # one length short of the run
        _decode_rle(bytes([0x50, 0x81, 0x01, 0x07, 0xFF]))
    # zero runs: 0x40 + varint r means r + 2 zeros (a LEB128 varint, here 128 -> 130 zeros)
    assert np.array_equal(_decode_rle(bytes([0x50, 0x83, 0x01, 0x40, 0x80, 0x01, 0x01])),
                          np.array([0] * 130 + [1], np.uint8))
    with pytest.raises(CodebookError, match="without a previous"):  # a repeat right after a zero run
        _decode_rle(bytes([0x50, 0x05, 0x40, 0x00, 0x80]))


def test_rle_round_trips_through_whole_codebooks():
    # 256 symbols of 8 bits: dense nibbles need 128 bytes, run-length bytes 6: 0x50, varint 256, 8, 129 + 126 repeats
    cb = Codebook.from_lengths(np.full(256, 8))
    assert cb.to_bytes() == bytes([0x50, 0x80, 0x02, 0x08, 0xFF, 0x80 | 124])
    assert Codebook.from_bytes(cb.to_bytes()) == cb
