"""Hostile version-2 headers: well-formed-looking files (header CRC re-sealed) with bad layouts, channel axes,
stream counts, channel maps, parameter blocks and stream sizes are rejected by every reader with a message that
says what is wrong, before anything is decoded or allocated."""

from __future__ import annotations

import struct

import numpy as np
import pytest

import entropy as C
from entropy.errors import CodebookError, EntropyError, FormatError
from hqt_bytes import fields, seal


def _fields(raw: bytes) -> dict[str, dict]:
    """Offsets of the fields of every tensor record of a version-2 file (FORMAT.md §4), by tensor name; a
    metadata array by the offset of its name."""
    out = fields(raw)["tensors"]
    for f in out.values():
        f["arrays"] = {k: a["at"] for k, a in f["arrays"].items()}
    return out


def _sealed(raw: bytes | bytearray, edits: list[tuple[int, str, int]]) -> bytes:
    return seal(raw, edits)


@pytest.fixture(scope="module")
def layouts_file(tmp_path_factory):
    rng = np.random.default_rng(21)
    acts = (rng.integers(0, 3, (2, 6, 4)) * np.array([1, 3, 1, 3, 5, 5]).reshape(1, 6, 1)).astype(np.uint8)
    tensors = {"cl": acts, "ch": rng.integers(-3, 3, (3, 5)).astype(np.int8), "bw": acts[0].copy(),
               "one": rng.integers(0, 5, (4, 4)).astype(np.uint16)}
    path = tmp_path_factory.mktemp("hostile") / "layouts.hqt"
    C.save(path, tensors, channel_axis={"cl": 1, "ch": 0, "bw": 0, "one": 1}, chunk_size=8, group=1,
           layout={"cl": "cluster3", "ch": "channel", "bw": "bitwidth", "one": "single"},
           quant={"bw": {"bits": np.array([2, 3, 2, 3, 4, 4], np.uint8)}})
    raw = path.read_bytes()
    f = _fields(raw)
    assert struct.unpack_from("<I", raw, f["cl"]["body"])[0] == 3  # three clusters
    return raw, f, tensors


def _expect(tmp_path, data: bytes, err: type[EntropyError], match: str) -> None:
    p = tmp_path / "bad.hqt"
    p.write_bytes(data)
    for read in (C.info, C.HQTFile, C.load):
        with pytest.raises(err, match=match):
            read(p)


def test_intact_file_reads(layouts_file, tmp_path):
    raw, _, tensors = layouts_file
    p = tmp_path / "ok.hqt"
    p.write_bytes(raw)
    back = C.load(p)
    for k, v in tensors.items():
        assert np.array_equal(back[k], v)


@pytest.mark.parametrize(
    "tensor,field,offset,fmt,value,err,match",
    [
        ("cl", "head", 2, "<B", 4, FormatError, "unknown layout 4"),
        ("cl", "head", 3, "<B", 3, FormatError, "channel axis 3 for 3 dimensions"),
        ("cl", "head", 3, "<B", 255, FormatError, "layout cluster needs a channel axis"),
        ("one", "head", 3, "<B", 9, FormatError, "channel axis 9"),
        ("one", "head", 2, "<B", 1, FormatError, "layout channel with 1 streams for 4 channels"),
        ("cl", "body", 0, "<I", 0, FormatError, "no stream"),
        ("cl", "body", 0, "<I", 2**32 - 1, FormatError, "stream count = 4294967295 cannot fit"),
        ("ch", "body", 0, "<I", 2, FormatError, "layout channel with 2 streams for 3 channels"),
        ("cl", "shape", 8, "<Q", 0, FormatError, "layout cluster of an empty tensor"),
        ("cl", "shape", 8, "<Q", 2, FormatError, "3 clusters for 2 channels"),
        # bitwidth read as cluster: the first bytes of the next field are no canonical map
        ("bw", "head", 2, "<B", 3, FormatError, "channel map entry"),
    ],
)
def test_bad_record_fields(layouts_file, tmp_path, tensor, field, offset, fmt, value, err, match):
    raw, f, _ = layouts_file
    _expect(tmp_path, _sealed(raw, [(f[tensor][field] + offset, fmt, value)]), err, match)


def test_channel_map_checks(layouts_file, tmp_path):
    raw, f, _ = layouts_file
    at = f["cl"]["map"]
    # K = 3: 2 bits per channel, 6 channels = 12 bits in 2 bytes
    original = raw[at : at + 2]
    bits = "".join(f"{b:08b}" for b in original)
    entries = [int(bits[2 * i : 2 * i + 2], 2) for i in range(6)]
    assert entries[0] == 0 and max(entries) == 2

    def with_map(e, pad="0000"):
        s = "".join(f"{x:02b}" for x in e) + pad
        return _sealed(raw, [(at, ">H", int(s, 2))])

    _expect(tmp_path, with_map([3] + entries[1:]), FormatError, "out of order or range")  # entry >= K
    out_of_order = [1 - x if x < 2 else x for x in entries]  # streams 0 and 1 swapped: first channel in stream 1
    _expect(tmp_path, with_map(out_of_order), FormatError, "out of order")
    _expect(tmp_path, with_map([0] * 6), FormatError, "out of order or range")  # streams 1, 2 get no channel
    _expect(tmp_path, with_map(entries, pad="0001"), FormatError, "padding bits after the channel map")


def test_bitwidth_needs_its_bits_array(layouts_file, tmp_path):
    raw, f, _ = layouts_file
    key_at = f["bw"]["arrays"]["bits"] + 2
    _expect(tmp_path, _rename(raw, key_at), FormatError, "needs a 1-D numeric 'bits' array")
    # one more distinct width than streams
    data_at = key_at + 4 + 2 + 8  # name "bits", type code and ndim, one dimension
    _expect(tmp_path, _sealed(raw, [(data_at, "<B", 7)]), FormatError, "4 distinct bit widths but 3 streams")


def _rename(raw: bytes, key_at: int) -> bytes:
    out = bytearray(raw)
    out[key_at : key_at + 4] = b"bitz"
    return _sealed(out, [])


def test_stream_parameter_and_size_checks(layouts_file, tmp_path):
    raw, f, _ = layouts_file
    s0 = f["cl"]["streams"][0]
    _expect(tmp_path, _sealed(raw, [(s0["params"] + 2, "<B", 0x80)]), FormatError, "reserved")  # an unknown flag
    _expect(tmp_path, _sealed(raw, [(s0["params"] + 2, "<B", 1)]), FormatError, "flags 0x1 say 28")  # no extension
    _expect(tmp_path, _sealed(raw, [(s0["params"], "<B", 3)]), FormatError, "group must be 1 or 2")
    _expect(tmp_path, _sealed(raw, [(s0["params"] + 1, "<B", 25)]), FormatError, "max_code_length 25")
    _expect(tmp_path, _sealed(raw, [(s0["params"] + 8, "<q", 255)]), FormatError, "do not fit dtype uint8")
    _expect(tmp_path, _sealed(raw, [(s0["bits"], "<Q", 2**40)]), FormatError, "payload bits cannot hold")
    _expect(tmp_path, _sealed(raw, [(s0["bits"], "<Q", 1)]), FormatError, "payload bits cannot hold")
    _expect(tmp_path, _sealed(raw, [(s0["cb"], "<I", 99)]), FormatError, "codebook 99 does not exist")
    # a codebook of the wrong alphabet size for the stream (value_range changed, still fits the dtype)
    _expect(tmp_path, _sealed(raw, [(s0["params"] + 16, "<Q", 7)]), CodebookError, "stream 0: codebook")
    _expect(tmp_path, _sealed(raw, [(s0["plen"], "<H", 23)]), FormatError, "parameter block is 23 bytes")


def test_channel_reads_check_their_range(layouts_file, tmp_path):
    raw, _, tensors = layouts_file
    p = tmp_path / "ok.hqt"
    p.write_bytes(raw)
    with C.HQTFile(p) as f:
        for name, axis in (("cl", 1), ("ch", 0), ("bw", 0), ("one", 1)):
            x = tensors[name]
            n = x.shape[axis]
            for a, b in ((0, n), (1, n - 1), (n - 1, n), (2, 2), (-2, None)):
                want = np.take(x, range(*slice(a, b).indices(n)), axis=axis)
                got = f.read(name, channels=slice(a, b))
                assert got.shape == want.shape and np.array_equal(got, want), (name, a, b)
        with pytest.raises(EntropyError, match="step 1"):
            f.read("cl", channels=slice(0, 4, 2))
