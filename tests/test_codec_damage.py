"""Damaged streams and inconsistent parts: always our own exception, never a crash or hang."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy import Codebook, decode, decode_chunks, encode
from entropy.codec.params import CodecParams
from entropy.codec.streams import EncodedTensor, decode_parts
from entropy.errors import StreamError


#: the streams the damage tests cover: symbol mode, and whether values are escaped
MODES = ("plain", "pairs", "runs", "escape", "runs-escape")


def _enc(n=20_000, chunk=512, group=1, seed=0, R=16, mode=None):
    """A stream of ``mode`` (default: plain for group 1, pairs for group 2) and the values it codes."""
    rng = np.random.default_rng(seed)
    mode = mode or ("plain" if group == 1 else "pairs")
    if mode in ("plain", "pairs"):
        x = np.minimum(rng.geometric(0.35, n) - 1, R - 1).astype(np.uint8)
        return x, encode(x, chunk_size=chunk, mode=mode, value_min=0, value_range=R)
    if mode == "runs":  # a sparse map: runs of zeros between values
        x = (np.minimum(rng.geometric(0.35, n), R - 1) * (rng.random(n) < 0.15)).astype(np.uint8)
        return x, encode(x, chunk_size=chunk, mode="runs", value_min=0, value_range=R)
    # wide values: a window of common values, the rest escaped raw
    x = np.round(rng.laplace(0, 20, n)).astype(np.int32)
    x[::97] = rng.integers(-(2**20), 2**20, x[::97].size)
    runs = 16 if mode == "runs-escape" else 0
    if runs:
        x[rng.random(n) < 0.6] = 0
    lo, hi = min(int(x.min()), -R // 2), max(int(x.max()), -R // 2 + R - 1)
    p = CodecParams(group=1, max_code_length=12, chunk_size=chunk, value_min=-R // 2, value_range=R, runs=runs,
                    run_symbol=R // 2 if runs else 0, escape_min=lo, escape_range=hi - lo + 1)
    return x, encode(x, params=p)


def _parts(enc, **over):
    d = dict(shape=enc.shape, dtype=enc.dtype, params=enc.params, codebook=enc.codebook,
             chunk_bits=enc.chunk_bits, payload=enc.payload)
    d.update(over)
    return d


def test_truncated_payload():
    x, enc = _enc()
    for cut in (1, 7, len(enc.payload) // 2, len(enc.payload)):
        with pytest.raises(StreamError, match="payload is"):
            decode_parts(**_parts(enc, payload=enc.payload[:-cut]))
    with pytest.raises(StreamError, match="payload is"):
        decode_parts(**_parts(enc, payload=enc.payload + b"\0"))


def test_index_inconsistent_with_payload():
    x, enc = _enc()
    cb = enc.chunk_bits.copy()
    cb[3] += 1
    cb[4] -= 1  # same total: chunk 3 cannot end on its recorded count
    with pytest.raises(StreamError, match="chunk 3"):
        decode_parts(**_parts(enc, chunk_bits=cb))
    cb = enc.chunk_bits.copy()
    cb[-1] += 8  # total now exceeds the payload
    with pytest.raises(StreamError, match="payload is"):
        decode_parts(**_parts(enc, chunk_bits=cb))
    with pytest.raises(StreamError, match="chunks"):
        decode_parts(**_parts(enc, chunk_bits=enc.chunk_bits[:-1]))
    cb = enc.chunk_bits.copy()
    cb[0] = 10**6
    with pytest.raises(StreamError, match="chunk 0"):
        decode_parts(**_parts(enc, chunk_bits=cb))
    with pytest.raises(StreamError, match="negative"):
        decode_parts(**_parts(enc, chunk_bits=enc.chunk_bits.astype(np.int64) * -1))


def test_parse_index_rejects_bad_buffers():
    x, enc = _enc()
    idx = enc.index_bytes()
    with pytest.raises(StreamError, match="bytes"):
        EncodedTensor.parse_index(idx[:-1], enc.n_chunks, enc.params)
    with pytest.raises(StreamError, match="bytes"):
        EncodedTensor.parse_index(idx, enc.n_chunks + 1, enc.params)
    with pytest.raises(StreamError, match="possible"):
        EncodedTensor.parse_index(b"\xff\xff" + idx[2:], enc.n_chunks, enc.params)


def test_inconsistent_parameters():
    x, enc = _enc()
    p = enc.params
    bad = [
        CodecParams(group=3, max_code_length=12, chunk_size=512, value_min=0, value_range=16),
        CodecParams(group=2, max_code_length=12, chunk_size=511, value_min=0, value_range=16),
        CodecParams(group=1, max_code_length=0, chunk_size=512, value_min=0, value_range=16),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=17),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=250, value_range=16),
        CodecParams(group=1, max_code_length=12, chunk_size=1024, value_min=0, value_range=16),
        CodecParams(group=1, max_code_length=2, chunk_size=512, value_min=0, value_range=16),
        CodecParams(group=1, max_code_length=12, chunk_size=0, value_min=0, value_range=16),
    ]
    for q in bad:
        with pytest.raises(StreamError):
            decode_parts(**_parts(enc, params=q))
    for kw in (dict(shape=(enc.n_values + 1,)), dict(shape=(-1,)), dict(dtype="float32"), dict(codebook="x"),
               dict(payload=123), dict(params=None)):
        with pytest.raises(StreamError):
            decode_parts(**_parts(enc, **kw))
    empty_cb = Codebook.from_lengths(np.zeros(16, dtype=np.uint8))
    with pytest.raises(StreamError, match="no code"):
        decode_parts(**_parts(enc, codebook=empty_cb))
    assert p.group == 1


def test_invalid_code_in_incomplete_single_symbol_table():
    x = np.zeros(100, dtype=np.uint8)
    enc = encode(x, value_range=4, chunk_size=10, mode="plain")
    assert enc.codebook.n_present == 1 and enc.payload == bytes(13)
    bad = bytearray(enc.payload)
    bad[5] = 0x10  # a '1' bit is no code of the single-symbol table
    with pytest.raises(StreamError, match="chunk 4 of 10: .*not a code"):
        decode_parts(**_parts(enc, payload=bytes(bad)))


def test_nonzero_padding_bits():
    x, enc = _enc(n=1001)
    if enc.accounting.payload_bits % 8 == 0:
        pytest.skip("no padding bits in this stream")
    bad = bytearray(enc.payload)
    bad[-1] |= 1
    with pytest.raises(StreamError, match="padding"):
        decode_parts(**_parts(enc, payload=bytes(bad)))


def test_group_padding_checked():
    x = np.array([1, 2, 3], dtype=np.uint8)
    enc = encode(x, group=2, value_min=0, value_range=4, chunk_size=4)
    # re-encode the same pairs but with a wrong pad value (1 instead of 0): decoder must refuse
    forged = encode(np.array([1, 2, 3, 1], dtype=np.uint8), group=2, value_min=0, value_range=4, chunk_size=4)
    with pytest.raises(StreamError, match="padding"):
        decode_parts(**_parts(forged, shape=(3,)))
    assert np.array_equal(decode(enc), x)


@pytest.mark.parametrize("mode", MODES)
def test_single_bit_flips(mode):
    x, enc = _enc(n=6000, chunk=256, mode=mode, seed=len(mode))
    rng = np.random.default_rng(len(mode))
    positions = rng.choice(len(enc.payload) * 8, size=300, replace=False)
    caught = 0
    for bit in positions:
        bad = bytearray(enc.payload)
        bad[bit // 8] ^= 0x80 >> (bit % 8)
        try:
            y = decode_parts(**_parts(enc, payload=bytes(bad)))
        except StreamError as exc:
            assert "chunk" in str(exc)
            caught += 1
            continue
        # undetectable by the codec alone (the file format's CRC covers it): shape must be right
        assert y.shape == x.shape and y.dtype == x.dtype
    # Huffman codes resynchronise, so many flips keep every chunk's bit count and decode to
    # wrong values silently; only the file format's CRC catches those. Some must be caught.
    assert caught > 0


@given(st.data())
@settings(max_examples=200, deadline=None)
def test_random_damage_never_crashes(data):
    mode = data.draw(st.sampled_from(MODES))
    x, enc = _enc(n=data.draw(st.integers(1, 3000)), chunk=data.draw(st.sampled_from([2, 64, 1000])), mode=mode,
                  seed=data.draw(st.integers(0, 1000)), R=data.draw(st.sampled_from([2, 16, 200])))
    payload = bytearray(enc.payload)
    for _ in range(data.draw(st.integers(1, 8))):
        if payload:
            i = data.draw(st.integers(0, len(payload) - 1))
            payload[i] = data.draw(st.integers(0, 255))
    cb = enc.chunk_bits.copy()
    if data.draw(st.booleans()) and cb.size:
        j = data.draw(st.integers(0, cb.size - 1))
        cb[j] = data.draw(st.integers(0, int(enc.params.chunk_symbols * enc.params.max_symbol_bits)))
    try:
        y = decode_parts(**_parts(enc, payload=bytes(payload), chunk_bits=cb))
    except StreamError:
        return
    assert y.shape == x.shape and y.dtype == x.dtype


def test_slice_decode_checks_only_its_chunks():
    x, enc = _enc(n=10_000, chunk=1000)
    bad = bytearray(enc.payload)
    off = int(enc.chunk_offsets()[7]) // 8 + 2
    bad[off] ^= 0xFF
    damaged = EncodedTensor(enc.shape, enc.dtype, enc.params, enc.codebook, enc.chunk_bits, bytes(bad), enc.accounting)
    assert np.array_equal(decode_chunks(damaged, 0, 7), x[:7000])
    with pytest.raises(StreamError, match="chunk 7"):
        decode_chunks(damaged, 5, 9)


def test_chunk_with_fewer_bits_than_symbols():
    x, enc = _enc(n=5000, chunk=1000)
    cb = enc.chunk_bits.copy()
    cb[2] = 999  # 1000 symbols need at least 1000 bits
    with pytest.raises(StreamError, match="chunk 2: .*fewer than the 1000 its values need"):
        decode_parts(**_parts(enc, chunk_bits=cb))


def test_zero_copy_payload_views():
    x, enc = _enc(n=5000, chunk=1000)
    for view in (memoryview(enc.payload), bytearray(enc.payload), np.frombuffer(enc.payload, dtype=np.uint8)):
        assert np.array_equal(decode_parts(**_parts(enc, payload=view)), x)


def _hand_parts(params, lengths, chunk_bits, payload, n, dtype="uint8"):
    return dict(shape=(n,), dtype=dtype, params=params, codebook=Codebook.from_lengths(np.array(lengths)),
                chunk_bits=np.array(chunk_bits, dtype=np.uint32), payload=bytes(payload))


def test_run_symbol_that_overruns_its_chunk():
    # runs=16, values {0, 1}, run value 0: symbol r*2 + b. Code: symbol 1 = (0 runs, value 1) -> '0',
    # symbol 30 = (15 runs, value 0) = 16 zeros -> '1'
    p = CodecParams(group=1, max_code_length=12, chunk_size=4, value_min=0, value_range=2, runs=16, run_symbol=0)
    lengths = np.zeros(32, dtype=np.uint8)
    lengths[[1, 30]] = 1
    # '0000': four times value 1
    assert decode_parts(**_hand_parts(p, lengths, [4], [0x00], 4)).tolist() == [1, 1, 1, 1]
    # '1': 16 values into a chunk of 4
    with pytest.raises(StreamError, match="chunk 0 of 1: .*run past"):
        decode_parts(**_hand_parts(p, lengths, [1], [0x80], 4))
    # '0' '1': the second symbol passes the end of the last, shorter chunk (5 values: chunks of 4 and 1)
    with pytest.raises(StreamError, match="chunk 1 of 2: .*run past"):
        decode_parts(**_hand_parts(p, lengths, [4, 1], [0x08], 5))


def test_escaped_raw_value_outside_its_range():
    # window {0, 1} + escape symbol 2; escape range [0, 5) in 3 raw bits. Code: 0 -> '0', 1 -> '10', escape -> '11'
    p = CodecParams(group=1, max_code_length=12, chunk_size=4, value_min=0, value_range=2, escape_min=0,
                    escape_range=5)
    lengths = [1, 2, 2]
    assert decode_parts(**_hand_parts(p, lengths, [5], [0b11100000], 1)).tolist() == [4]  # escape, raw 4
    assert decode_parts(**_hand_parts(p, lengths, [5], [0b11001000], 1)).tolist() == [1]  # an in-window value raw
    with pytest.raises(StreamError, match="chunk 0 of 1: .*escape range"):
        decode_parts(**_hand_parts(p, lengths, [5], [0b11111000], 1))  # raw 7 >= 5
    with pytest.raises(StreamError, match="chunk 0"):  # the raw bits run past the chunk's recorded end
        decode_parts(**_hand_parts(p, lengths, [4, 5], [0b11100111, 0b00000000], 5))


def test_inconsistent_run_and_escape_parameters():
    x, enc = _enc(mode="runs")
    p = enc.params
    assert p.mode == "runs"
    bad = [
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, runs=16, run_symbol=16),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, runs=1),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, runs=257),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, run_symbol=3),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, runs=15),
        CodecParams(group=2, max_code_length=12, chunk_size=512, value_min=0, value_range=4, runs=16),
        # escape range not covering the window, not fitting uint8, too small, or set without a range
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=15, runs=16,
                    escape_min=1, escape_range=100),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=15, runs=16,
                    escape_min=0, escape_range=300),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=1, escape_min=0,
                    escape_range=1),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, escape_min=5),
        CodecParams(group=1, max_code_length=12, chunk_size=512, value_min=0, value_range=16, escape_min=0,
                    escape_range=2**32 + 1),
    ]
    for q in bad:
        with pytest.raises(StreamError):
            decode_parts(**_parts(enc, params=q))
    assert np.array_equal(decode_parts(**_parts(enc)), x)


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_round_trips_and_slices(mode):
    x, enc = _enc(n=5000, chunk=300, mode=mode)
    want_mode = {"escape": "plain", "runs-escape": "runs"}.get(mode, mode)
    assert enc.params.mode == want_mode and bool(enc.params.escape_range) == ("escape" in mode)
    if "escape" in mode:
        assert enc.accounting.escape_bits > 0
    assert np.array_equal(decode(enc), x)
    for a, b in ((0, 1), (3, 9), (enc.n_chunks - 1, enc.n_chunks)):
        assert np.array_equal(decode_chunks(enc, a, b), x[a * 300 : b * 300])


def test_pair_padding_checked_in_every_row():
    # rows of 3 values coded as pairs: each row ends with a pad (value_min). A stream of rows of 4 values whose
    # 4th value is not value_min, read as rows of 3, has a wrong pad in every row
    forged = encode(np.array([1, 2, 3, 1, 1, 2, 3, 1], np.uint8), mode="pairs", value_min=0, value_range=4,
                    chunk_size=4, row_length=4)
    p3 = CodecParams(group=2, max_code_length=12, chunk_size=4, value_min=0, value_range=4, row_length=3)
    with pytest.raises(StreamError, match="chunk 0: group padding"):
        decode_parts(**_parts(forged, shape=(6,), params=p3))
    good = encode(np.array([1, 2, 3, 1, 2, 3], np.uint8), mode="pairs", value_min=0, value_range=4, chunk_size=4,
                  row_length=3)
    assert decode(good).tolist() == [1, 2, 3, 1, 2, 3]
    with pytest.raises(StreamError, match="whole rows"):  # a value count that is not whole rows
        decode_parts(**_parts(good, shape=(5,)))


def test_one_symbol_code_of_a_large_byte_stream_rejects_bits_that_are_no_code():
    """A one-symbol code has bit patterns that are no code ('1'); a large 1-byte stream's multi-value decoder,
    whose table assumes a complete code, hands such a code to the decoder that checks every lookup."""
    x = np.full(20_000, 7, np.uint8)
    enc = encode(x, mode="plain")
    assert enc.codebook.n_present == 1 and enc.payload == bytes(2500)
    assert np.array_equal(decode(enc), x)
    bad = bytearray(enc.payload)
    bad[1000] |= 0x10  # bit 8004: value 8004, in chunk 1
    with pytest.raises(StreamError, match="chunk 1 of 5: .*not a code"):
        decode_parts(**_parts(enc, payload=bytes(bad)))
