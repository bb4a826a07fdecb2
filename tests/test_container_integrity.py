"""Integrity checks that each have a test of their own: a reserved preamble field, the CRC of a payload large
enough to be checksummed on the I/O thread, the payload CRC of a channel-range read, and the byte order of a
stream record, field by field as FORMAT.md §4.1 and §7.1 write it. Each test fails when its check is removed."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import entropy
from entropy.errors import FormatError, IntegrityError
from hqt_bytes import fields, regions, seal


def _readers(path):
    """Every way to open and read a whole file."""
    return (entropy.info, entropy.HQTFile, entropy.load)


@pytest.mark.parametrize("value", [1, 0x80000000])
def test_reserved_preamble_field_must_be_zero(tmp_path, value):
    path = tmp_path / "ok.hqt"
    entropy.save(path, {"x": np.arange(10, dtype=np.uint8)}, durable=False)
    raw = path.read_bytes()
    assert struct.unpack_from("<I", raw, 24)[0] == 0  # FORMAT.md §3: bytes 24..27, reserved
    bad = tmp_path / "reserved.hqt"
    bad.write_bytes(seal(raw, [(24, "<I", value)]))  # header CRC recomputed: only the rule can catch it
    for read in _readers(bad):
        with pytest.raises(FormatError, match="reserved") as exc:
            read(bad)
        assert not isinstance(exc.value, IntegrityError)


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    """A tensor whose payload is over 1 MiB (checksummed on the I/O thread while it decodes), coded with a flat
    8-bit code: every byte pattern decodes, so damage inside it decodes without any stream error."""
    rng = np.random.default_rng(3)
    x = rng.permutation(np.repeat(np.arange(256, dtype=np.uint8), 6000)).reshape(48, -1)
    path = tmp_path_factory.mktemp("large") / "large.hqt"
    fi = entropy.save(path, {"big": x}, channel_axis=0, layout="single", group=1, durable=False)
    t = fi.tensor("big")
    assert t.payload_bytes >= 1 << 20 and {s.mode for s in t.streams} == {"plain"}
    assert t.avg_code_length == 8.0  # the flat code
    return path, x


def test_damaged_large_payload_is_an_integrity_error(large_file, tmp_path):
    path, x = large_file
    raw = bytearray(path.read_bytes())
    (_, _, p_at, p_len) = regions(path)["big"]
    at = p_at + p_len // 2
    raw[at] ^= 0xFF
    # the same damage with the CRC re-sealed decodes without error, to other values: only the CRC can catch it
    resealed = tmp_path / "resealed.hqt"
    resealed.write_bytes(seal(raw, tensors=regions(path)))
    got = entropy.load_tensor(resealed, "big")
    assert got.shape == x.shape and int(np.count_nonzero(got != x)) == 1
    bad = tmp_path / "damaged.hqt"
    bad.write_bytes(bytes(raw))
    entropy.info(bad)  # the header is intact
    for read in (lambda: entropy.load(bad), lambda: entropy.load_tensor(bad, "big", threads=1),
                 lambda: entropy.load_tensor(bad, "big", channels=slice(0, 2))):
        with pytest.raises(IntegrityError, match="payload checksum mismatch"):
            read()


@pytest.mark.parametrize("layout", ["single", "channel", "cluster2"])
def test_channel_range_read_verifies_the_whole_payload(tmp_path, layout):
    """FORMAT.md §8: a range read checksums the tensor's whole payload region, the chunks it does not decode
    included."""
    rng = np.random.default_rng(5)
    x = (rng.integers(0, 4, (2, 6, 50)) * np.array([1, 1, 2, 2, 3, 3]).reshape(1, 6, 1)).astype(np.uint8)
    path = tmp_path / "ok.hqt"
    entropy.save(path, {"a": x}, channel_axis=1, layout=layout, group=1, chunk_size=16, durable=False)
    assert np.array_equal(entropy.load_tensor(path, "a", channels=slice(0, 2)), x[:, 0:2])
    raw = bytearray(path.read_bytes())
    (_, _, p_at, p_len) = regions(path)["a"]
    raw[p_at + p_len - 1] ^= 0x01  # the last payload byte: a chunk of the last channels, never read below
    bad = tmp_path / "bad.hqt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="payload checksum mismatch"):
        entropy.load_tensor(bad, "a", channels=slice(0, 2))
    raw = bytearray(path.read_bytes())
    (i_at, _, _, _) = regions(path)["a"]
    raw[i_at + 1] ^= 0x01
    bad.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError, match="chunk index checksum mismatch"):
        entropy.load_tensor(bad, "a", channels=slice(4, 6))


def test_stream_record_bytes_are_the_spec_fields(tmp_path):
    """Every field of a stream record (FORMAT.md §4.1) and of its parameter block (§7.1), built here from the
    spec's tables, little-endian: a writer and reader that agreed on another byte order would fail this."""
    rng = np.random.default_rng(8)
    x = np.where(rng.random(2000) < 0.6, 3, rng.integers(-300, 300, 2000)).astype(np.int16)
    p = entropy.CodecParams(group=1, max_code_length=11, chunk_size=100, value_min=-7, value_range=20, runs=16,
                            run_symbol=10, escape_min=-300, escape_range=600, row_length=400)
    path = tmp_path / "record.hqt"
    fi = entropy.save(path, {"s": entropy.encode(x, params=p)}, durable=False)
    P = fi.tensor("s").payload_bits
    raw = path.read_bytes()
    st = fields(raw)["tensors"]["s"]["streams"][0]
    want = b"".join([
        (52).to_bytes(2, "little"),  # params_length: 24 + 4 (runs) + 16 (escapes) + 8 (rows)
        (1).to_bytes(1, "little"), (11).to_bytes(1, "little"),  # group, max_code_length
        (0b111).to_bytes(2, "little"),  # flags: run symbols, escapes, rows
        (100).to_bytes(4, "little"),  # chunk_size
        (-7).to_bytes(8, "little", signed=True), (20).to_bytes(8, "little"),  # value_min, value_range
        (16).to_bytes(2, "little"), (10).to_bytes(2, "little"),  # runs, run_symbol
        (-300).to_bytes(8, "little", signed=True), (600).to_bytes(8, "little"),  # escape_min, escape_range
        (400).to_bytes(8, "little"),  # row_length
        (0).to_bytes(4, "little"),  # codebook_id
        P.to_bytes(8, "little"),  # payload_bits
    ])
    assert st["plen"] + len(want) == st["bits"] + 8
    assert raw[st["plen"] : st["bits"] + 8] == want
    assert np.array_equal(entropy.load_tensor(path, "s"), x)
