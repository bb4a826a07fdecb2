"""Stored streams (FORMAT.md 7.5): values in the bits of their window, chosen where no code is smaller."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

import entropy as C
from entropy import Codebook, CodecOptions, CodecParams, decode, decode_chunks, encode
from entropy.codec.streams import decode_parts
from entropy.errors import EntropyError, FormatError, IntegrityError, StreamError, SymbolError
from test_codec_damage import _parts

DTYPES = ["uint8", "int8", "uint16", "int16", "uint32", "int32", "int64"]


def _uniform(rng, dtype, R, n, lo=None):
    """``n`` values spread evenly over ``R`` values of ``dtype`` (from ``lo``, default the dtype's middle), ends
    included."""
    info = np.iinfo(dtype)
    if lo is None:
        lo = max(int(info.min), min(int(info.max) - R + 1, -(R // 2) if info.min < 0 else 0))
    x = lo + rng.integers(0, R, n, dtype=np.int64)
    x[:2] = [lo, lo + R - 1]
    return x.astype(dtype)


def _bits_of(enc) -> str:
    return "".join(f"{b:08b}" for b in enc.payload)


WIDTHS = [(dtype, R) for dtype in DTYPES for R in (2, 5, 256, 1000, 65536, 70001, 2**31 + 3, 2**32)
          if R <= min(2**32, int(np.iinfo(dtype).max) - int(np.iinfo(dtype).min) + 1)]  # windows the dtype holds


@pytest.mark.parametrize("dtype,R", WIDTHS)
def test_round_trips_every_width(dtype, R):
    rng = np.random.default_rng(R % 1000)
    for n in (2, 9, 4099):
        x = _uniform(rng, dtype, R, n)
        enc = encode(x, mode="stored", chunk_size=64)
        W = (R - 1).bit_length()
        assert enc.params.stored and enc.params.stored_bits == W and len(enc.index_bytes()) == 0
        assert enc.accounting.payload_bits == n * W and len(enc.payload) == -(-n * W // 8)
        assert enc.codebook.alphabet_size == 1 and enc.codebook.n_present == 0
        for t in (1, 2):
            y = decode(enc, threads=t)
            assert y.dtype == x.dtype and np.array_equal(y, x)
        # the payload is the values' offsets in W bits, MSB-first (independent of the kernels)
        bits = _bits_of(enc)
        u = [int(bits[i * W : (i + 1) * W], 2) for i in range(n)]
        assert u == [int(v) - int(enc.params.value_min) for v in x] and set(bits[n * W :]) <= {"0"}


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_chunk_ranges_and_threads(chunk):
    rng = np.random.default_rng(chunk)
    x = _uniform(rng, "int16", 3000, 300_007)  # 12 bits per value: not whole bytes
    for threads in (1, 2):
        enc = encode(x, mode="stored", chunk_size=chunk, threads=threads)
        assert enc.payload == encode(x, mode="stored", chunk_size=chunk).payload  # the same bytes for any count
        assert np.array_equal(decode(enc, threads=threads), x)
        n_chunks = enc.n_chunks
        assert n_chunks == -(-x.size // chunk) and np.all(enc.chunk_bits[:-1] == 12 * chunk)
        for a, b in ((0, 1), (n_chunks // 3, n_chunks // 2 + 1), (n_chunks - 1, n_chunks)):
            assert np.array_equal(decode_chunks(enc, a, b, threads=threads), x[a * chunk : b * chunk])


def test_big_endian_inputs_code_like_native():
    rng = np.random.default_rng(3)
    for dtype in ("u2", "i2", "u4", "i4", "i8"):
        x = _uniform(rng, np.dtype(dtype).name, 5000, 10_001)
        big = x.astype(">" + dtype)
        a, b = encode(x, mode="stored"), encode(big, mode="stored")
        assert a.payload == b.payload and a.params == b.params
        y = decode(b)
        assert y.dtype.isnative and np.array_equal(y, x)


def test_chosen_exactly_where_no_code_is_smaller():
    """``auto`` stores a stream exactly when every code the codec weighs costs as much or more (parameter block
    included): checked against the codes it would build without the stored mode."""
    rng = np.random.default_rng(5)
    cases = {
        "uniform4": rng.integers(0, 16, 50_000).astype(np.uint8),
        "uniform16": rng.integers(0, 1 << 16, 200_000).astype(np.uint16),
        "near-uniform": np.where(rng.random(50_000) < 0.9, rng.integers(0, 16, 50_000), 3).astype(np.uint8),
        "peaked": np.clip(np.round(rng.laplace(8, 2, 50_000)), 0, 15).astype(np.uint8),
        "tiny": np.array([3, 1, 2], np.int8),
    }
    for name, x in cases.items():
        auto = encode(x)
        coded = encode(x, mode=("plain", "pairs", "runs"))
        cost = lambda e: e.accounting.total_bits + 8 * e.params.block_bytes  # noqa: E731
        if auto.params.stored:
            assert cost(auto) <= cost(coded), name
            W = (int(x.max()) - int(x.min())).bit_length()
            assert auto.accounting.payload_bits == x.size * W and auto.params.value_min == int(x.min())
        else:
            assert auto.payload == coded.payload and cost(coded) < cost(encode(x, mode="stored")), name
        assert np.array_equal(decode(auto), x)
    assert encode(cases["uniform16"]).params.stored and not encode(cases["peaked"]).params.stored
    # group 1 asks for a code: no stored stream
    assert not encode(cases["uniform4"], group=1).params.stored


def test_incompressible_16_bit_values_cost_their_nominal_bits():
    x = np.random.default_rng(0).integers(0, 1 << 16, 1_000_000).astype(np.uint16)
    enc = encode(x)
    assert enc.params.mode == "stored" and enc.accounting.bits_per_value <= 16 * 1.001
    assert np.frombuffer(enc.payload, ">u2").astype(np.uint16).tobytes() == x.tobytes()  # big-endian words


def test_given_stored_params_check_the_window():
    x = np.arange(-3, 5, dtype=np.int16)
    p = CodecParams(group=1, max_code_length=12, chunk_size=4, value_min=-3, value_range=8, stored=True)
    enc = encode(x, params=p)
    assert enc.params == p and np.array_equal(decode(enc), x)
    with pytest.raises(SymbolError, match="outside the stored window"):
        encode(np.append(x, np.int16(5)), params=p)
    with pytest.raises(EntropyError, match="empty code"):
        encode(x, params=p, codebook=Codebook(np.array([1], np.uint8)))
    with pytest.raises(EntropyError):  # stored streams need the whole window free of run symbols and pairs
        encode(x, params=CodecParams(group=2, max_code_length=12, chunk_size=4, value_min=-3, value_range=8,
                                     stored=True))


def test_damaged_stored_streams_raise_stream_errors():
    rng = np.random.default_rng(7)
    x = _uniform(rng, "int16", 1000, 5000, lo=-300)  # 10 bits per value, 24 unused codes above the window
    enc = encode(x, mode="stored", chunk_size=256)
    assert enc.params.stored and enc.params.value_range == 1000
    # a value of chunk 3 set to 1023 (>= R): outside the window
    bits = list(_bits_of(enc))
    i = 3 * 256 + 17
    bits[10 * i : 10 * i + 10] = "1111111111"
    bad = bytes(int("".join(bits[k : k + 8]), 2) for k in range(0, len(bits), 8))
    with pytest.raises(StreamError, match="chunk 3 of 20: .*outside the window"):
        decode_parts(**_parts(enc, payload=bad))
    assert np.array_equal(decode_chunks(encode(x, mode="stored", chunk_size=256), 0, 3), x[: 3 * 256])
    # the last value's padding bits must be zero
    pad = bytearray(enc.payload)
    if (5000 * 10) % 8:
        pad[-1] |= 1
        with pytest.raises(StreamError, match="padding"):
            decode_parts(**_parts(enc, payload=bytes(pad)))
    with pytest.raises(StreamError, match="payload is"):  # one byte short
        decode_parts(**_parts(enc, payload=enc.payload[:-1]))
    wrong = enc.chunk_bits.copy()
    wrong[2] += 1
    with pytest.raises(StreamError, match="chunk 2"):  # a stored chunk has exactly its values' bits
        decode_parts(**_parts(enc, chunk_bits=wrong))
    with pytest.raises(StreamError, match="empty code"):
        decode_parts(**_parts(enc, codebook=Codebook(np.array([1], np.uint8))))


def _reseal_header(raw: bytearray) -> None:
    hlen = struct.unpack_from("<I", raw, 12)[0]
    struct.pack_into("<I", raw, 28, zlib.crc32(bytes(raw[32 : 32 + hlen]), zlib.crc32(bytes(raw[:28]))))


def test_damaged_stored_file(tmp_path):
    rng = np.random.default_rng(8)
    x = _uniform(rng, "uint16", 1000, 4000, lo=0)
    path = tmp_path / "s.hqt"
    fi = C.save(path, {"x": x})
    ti = fi.tensor("x")
    assert ti.streams[0].mode == "stored" and ti.index_bytes == 0 and ti.payload_bits == 4000 * 10
    raw = bytearray(path.read_bytes())
    start = fi.header_bytes  # no index: the payload follows the header
    raw[start] |= 0xFF  # the first value's top 8 bits set: 1020 or more (>= R)
    raw[start + 1] |= 0xC0
    damaged = tmp_path / "damaged.hqt"
    damaged.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError):  # the payload CRC first
        C.load_tensor(damaged, "x")
    with pytest.raises(IntegrityError):  # a channel-free range read checksums the payload too
        C.HQTFile(damaged).read("x")
    # re-sealed checksums: the reader's window check finds it
    end = start + -(-ti.payload_bits // 8)
    crc_new = zlib.crc32(bytes(raw[start : end + (-end % 8)]))
    hlen = struct.unpack_from("<I", raw, 12)[0]
    at = bytes(raw).find(struct.pack("<I", ti.payload_crc32), 32, 32 + hlen)
    assert at > 0
    struct.pack_into("<I", raw, at, crc_new)
    _reseal_header(raw)
    damaged.write_bytes(bytes(raw))
    with pytest.raises(StreamError, match="outside the window"):
        C.load_tensor(damaged, "x")


def test_a_stored_header_cannot_claim_more_values_than_its_payload(tmp_path):
    x = np.arange(1000, dtype=np.uint16) * 7 % 1000
    path = tmp_path / "s.hqt"
    C.save(path, {"x": x}, channel_axis=None)
    assert C.info(path).tensor("x").streams[0].mode == "stored"
    raw = bytearray(path.read_bytes())
    hlen = struct.unpack_from("<I", raw, 12)[0]
    at = bytes(raw).find(struct.pack("<Q", 1000), 32, 32 + hlen)  # the shape
    struct.pack_into("<Q", raw, at, 1 << 40)
    _reseal_header(raw)
    bad = tmp_path / "bad.hqt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(FormatError, match="payload bits cannot hold"):
        C.info(bad)


def test_channel_layout_with_some_streams_stored(tmp_path):
    """Channels of incompressible values are stored and the others coded, in one channel layout; channel ranges
    read only their streams' values."""
    rng = np.random.default_rng(9)
    C_, M = 8, 5000
    coded = np.clip(np.round(rng.laplace(20, 3, (4, M))), 0, 63)
    stored = rng.integers(0, 64, (4, M))
    x = np.concatenate([coded, stored]).astype(np.uint8)[None].transpose(0, 2, 1)  # (1, M, 8): channel axis 2
    path = tmp_path / "ch.hqt"
    fi = C.save(path, {"x": x}, channel_axis=2, layout="channel", chunk_size=512)
    modes = [s.mode for s in fi.tensor("x").streams]
    assert modes == ["plain"] * 4 + ["stored"] * 4, modes
    assert np.array_equal(C.load_tensor(path, "x"), x)
    for a, b in ((0, 2), (3, 6), (5, 8), (7, 8)):
        assert np.array_equal(C.load_tensor(path, "x", channels=slice(a, b)), x[:, :, a:b])
    # and the clustered layouts keep them apart
    fi = C.save(path, {"x": x}, channel_axis=2, layout="cluster2", chunk_size=512)
    assert sorted(s.mode for s in fi.tensor("x").streams) == ["plain", "stored"]
    assert np.array_equal(C.load_tensor(path, "x", channels=slice(3, 5)), x[:, :, 3:5])


@pytest.mark.parametrize("layout", ["single", "channel", "cluster2"])
def test_only_group_auto_stores_in_a_file(tmp_path, layout):
    """``group=1`` and ``group=2`` ask for a code in every layout of a file, as they do of encode: ``group=2``
    falls back to single-value codes where pairs cannot apply (a window of more than 256 values), never to a
    stored stream; the default stores such incompressible channels."""
    rng = np.random.default_rng(10)
    x = _uniform(rng, "uint16", 1000, 4 * 3000, lo=0).reshape(4, 3000)
    kw = dict(channel_axis=0, layout=layout, clusters=(2,))
    modes = lambda fi: {s.mode for s in fi.tensor("x").streams}  # noqa: E731
    assert modes(C.save(tmp_path / "auto.hqt", {"x": x}, **kw)) == {"stored"}
    for group in (1, 2):
        fi = C.save(tmp_path / f"g{group}.hqt", {"x": x}, group=group, **kw)
        assert modes(fi) <= {"plain", "runs"} and np.array_equal(C.load_tensor(tmp_path / f"g{group}.hqt", "x"), x)


def test_codec_options_allow_the_stored_mode_only_with_group_auto():
    """``CodecOptions`` knows the stored mode: ``auto`` weighs it, it can be asked for alone, and ``group`` 1 or 2
    (a code) leave it out; encode does what the options say."""
    assert CodecOptions().modes == ("plain", "pairs", "runs", "stored")
    assert CodecOptions(mode="stored").modes == ("stored",)
    assert CodecOptions(mode=("runs", "stored")).modes == ("runs", "stored")
    for group in (1, 2):
        assert "stored" not in CodecOptions(group=group).modes
        with pytest.raises(EntropyError, match="leave no symbol mode"):
            CodecOptions(group=group, mode="stored")
    peaked = np.clip(np.round(np.random.default_rng(6).laplace(8, 1, 20_000)), 0, 15).astype(np.uint8)
    assert encode(peaked).params.mode != "stored"  # a code is smaller
    enc = encode(peaked, CodecOptions(mode="stored"))
    assert enc.params.stored and enc.accounting.payload_bits == peaked.size * (int(np.ptp(peaked))).bit_length()
    assert np.array_equal(decode(enc), peaked)
