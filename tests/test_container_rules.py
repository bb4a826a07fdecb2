"""One test per rule that FORMAT.md marks *(check)* where the text used to leave a decoder guessing: each builds a
file that breaks only that rule (bytes edited, CRCs re-sealed) and expects every reader to reject it, and each
shows the files the writer makes of the same kind are accepted by the reader and by the spec decoder."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

import entropy
from entropy.errors import CodebookError, FormatError, IntegrityError, StreamError
from hqt_bytes import fields, regions, seal
from test_container_spec import _spec_decode, _spec_lengths


def _write(tmp_path, data: bytes, name: str = "bad.hqt"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _rejected_on_open(path, err, match) -> None:
    for read in (entropy.info, entropy.HQTFile, entropy.load):
        with pytest.raises(err, match=match):
            read(path)


# --------------------------------------------------------------------------- §4.1: the payload bound


def _pairs_in_rows(P_extra: int = 0):
    """FORMAT.md §4.1's example: pairs with rows, row_length 7, chunk_size 4, L 2, 35 values; every symbol of
    the flat 2-bit code costs 2 bits."""
    x = np.random.default_rng(0).integers(0, 2, 35).astype(np.uint8)
    p = entropy.CodecParams(group=2, max_code_length=2, chunk_size=4, value_min=0, value_range=2, row_length=7)
    return x, entropy.encode(x, params=p, codebook=entropy.Codebook.from_lengths(np.array([2, 2, 2, 2])))


def test_payload_bound_is_summed_chunk_by_chunk(tmp_path):
    x, enc = _pairs_in_rows()
    # the bound from the spec text: 5 rows, each a chunk of 4 values (2 pairs) and one of 3 (2 pairs, one
    # padded), every pair at most L = 2 bits
    rows, per_row = 35 // 7, [4, 3]
    most = rows * sum(math.ceil(m / 2) * 2 for m in per_row)
    whole_stream = math.ceil(35 / 2) * 2
    assert enc.accounting.payload_bits == most == 40 and whole_stream == 36 < most
    path = tmp_path / "pairs_rows.hqt"
    entropy.save(path, {"p": enc}, durable=False)
    assert np.array_equal(entropy.load_tensor(path, "p"), x)
    assert np.array_equal(_spec_decode(path.read_bytes())["p"], x)
    # one bit more than the sum is impossible: rejected when the header is read
    raw = path.read_bytes()
    st = fields(raw)["tensors"]["p"]["streams"][0]
    _rejected_on_open(_write(tmp_path, seal(raw, [(st["bits"], "<Q", most + 1)])), FormatError,
                      "41 payload bits cannot hold 35 values")


# --------------------------------------------------------------------------- §1: zero padding


@pytest.fixture()
def padded_file(tmp_path):
    """A tensor whose index region (3 chunks x 2 bytes) and payload region are both followed by padding."""
    x = np.random.default_rng(1).integers(0, 5, (3, 10)).astype(np.uint8)
    path = tmp_path / "padded.hqt"
    entropy.save(path, {"x": x, "y": x[:1].copy()}, channel_axis={"x": 0}, layout={"x": "single"}, group=1,
                 chunk_size=10, durable=False)
    reg = regions(path)
    i_at, i_len, p_at, p_len = reg["x"]
    assert i_len % 8 and p_len % 8  # there is padding after both
    return path, x, reg


@pytest.mark.parametrize("where", ["index", "payload"])
def test_padding_must_be_zero_even_under_a_matching_crc(padded_file, tmp_path, where):
    path, x, reg = padded_file
    i_at, i_len, p_at, p_len = reg["x"]
    at = i_at + i_len if where == "index" else p_at + p_len
    raw = bytearray(path.read_bytes())
    assert raw[at] == 0
    raw[at] = 0x01
    bad = _write(tmp_path, seal(raw, tensors={"x": reg["x"]}))  # the CRC now covers the non-zero byte
    entropy.info(bad)  # the header is fine
    for read in (lambda: entropy.load(bad), lambda: entropy.load_tensor(bad, "x"),
                 lambda: entropy.load_tensor(bad, "x", channels=slice(1, 2))):
        with pytest.raises(FormatError, match=f"non-zero bytes in the {where} region's padding") as exc:
            read()
        assert not isinstance(exc.value, IntegrityError)
    assert np.array_equal(entropy.load_tensor(bad, "y"), x[:1])  # the other tensor is untouched
    with pytest.raises(AssertionError):
        _spec_decode(bad.read_bytes())
    # damage without the re-sealed CRC is still reported as damage
    raw = bytearray(path.read_bytes())
    raw[at] = 0x01
    with pytest.raises(IntegrityError):
        entropy.load(_write(tmp_path, bytes(raw), "damaged.hqt"))


def test_padding_of_a_large_payload_must_be_zero(tmp_path):
    """The same rule where the payload CRC runs on the I/O thread (payloads of 1 MiB and more)."""
    x = np.random.default_rng(2).integers(0, 256, (2, 700_001)).astype(np.uint8)
    path = tmp_path / "large.hqt"
    entropy.save(path, {"x": x}, group=1, durable=False)
    reg = regions(path)
    _, _, p_at, p_len = reg["x"]
    assert p_len >= 1 << 20 and p_len % 8
    raw = bytearray(path.read_bytes())
    raw[p_at + p_len] = 0x80
    bad = _write(tmp_path, seal(raw, tensors=reg))
    with pytest.raises(FormatError, match="non-zero bytes in the payload region's padding"):
        entropy.load(bad)


# --------------------------------------------------------------------------- §7.5: stored streams


def _stored_file(tmp_path):
    """One stored stream of 333 values in a window of 1000 (W = 10 bits each: 3330 bits, 417 bytes, so 6 bits
    of padding in the last byte and 7 padding bytes after the payload region); no index."""
    x = np.random.default_rng(5).integers(0, 1000, 333).astype(np.uint16)
    path = tmp_path / "stored.hqt"
    t = entropy.save(path, {"x": x}, durable=False).tensor("x")
    assert (t.streams[0].mode, t.streams[0].value_range, t.payload_bits, t.index_bytes) == ("stored", 1000,
                                                                                            333 * 10, 0)
    return path, x


def _edit_payload(raw: bytes, reg, at: int, mask: int) -> bytes:
    b = bytearray(raw)
    b[at] |= mask
    return seal(b, tensors=reg)


STORED_RULES = {  # rule -> (edit of the file, the reader's error, its message)
    "padding bytes after the payload region (§1)": (
        lambda raw, f, reg: _edit_payload(raw, reg, reg["x"][2] + reg["x"][3], 0x01),
        FormatError, "non-zero bytes in the payload region's padding"),
    "padding bits after the last value (§7.5)": (
        lambda raw, f, reg: _edit_payload(raw, reg, reg["x"][2] + reg["x"][3] - 1, 0x01),
        StreamError, "padding bits"),
    "a value outside the window, u >= R (§7.5)": (
        lambda raw, f, reg: _edit_payload(raw, reg, reg["x"][2], 0xFF),  # the first value's top bits: >= 1020
        StreamError, "outside the window of 1000 values"),
    "P = n * W, not one bit more (§4.1)": (
        lambda raw, f, reg: seal(raw, [(f["tensors"]["x"]["streams"][0]["bits"], "<Q", 3331)]),
        FormatError, "3331 payload bits cannot hold 333 values"),
    "P = n * W, not one bit less (§4.1)": (
        lambda raw, f, reg: seal(raw, [(f["tensors"]["x"]["streams"][0]["bits"], "<Q", 3329)]),
        FormatError, "3329 payload bits cannot hold 333 values"),
    "W follows from R (§7.5)": (  # R = 1025 needs 11 bits a value: 3663 bits
        lambda raw, f, reg: seal(raw, [(f["tensors"]["x"]["streams"][0]["params"] + 16, "<Q", 1025)]),
        FormatError, "between 3663 and 3663 bits"),
    "the empty code of one symbol (§5)": (  # `31`: one symbol of length 1, a valid code but not the empty one
        lambda raw, f, reg: seal(raw, [(f["codebooks"][0][0], "<B", 0x31)]),
        CodebookError, "must be the empty code"),
    "k = 1 (§7.1)": (
        lambda raw, f, reg: seal(raw, [(f["tensors"]["x"]["streams"][0]["params"], "<B", 2)]),
        FormatError, "a stored stream takes neither pairs"),
    "L in 1..24 though it plays no part (§7.1)": (
        lambda raw, f, reg: seal(raw, [(f["tensors"]["x"]["streams"][0]["params"] + 1, "<B", 0)]),
        FormatError, "max_code_length 0 outside 1..24"),
    "R >= 2 (§7.1)": (
        lambda raw, f, reg: seal(raw, [(f["tensors"]["x"]["streams"][0]["params"] + 16, "<Q", 1)]),
        FormatError, "value_range 1 of a stored stream outside 2..2\\*\\*32"),
}


@pytest.mark.parametrize("rule", list(STORED_RULES))
def test_stored_stream_rules(tmp_path, rule):
    """Each rule FORMAT.md states for stored streams, broken alone (CRCs re-sealed): the reader refuses the file
    with the package's error, and so does the spec decoder, which reads the intact file."""
    path, x = _stored_file(tmp_path)
    raw = path.read_bytes()
    assert np.array_equal(_spec_decode(raw)["x"], x)
    edit, err, match = STORED_RULES[rule]
    bad = _write(tmp_path, edit(raw, fields(raw), regions(path)))
    with pytest.raises(err, match=match) as exc:
        entropy.load(bad)
    assert not isinstance(exc.value, IntegrityError)  # a rule, not damage: the checksums hold
    with pytest.raises(AssertionError):
        _spec_decode(bad.read_bytes())


# --------------------------------------------------------------------------- §4.3, §4.4: metadata arrays


def test_bool_metadata_is_the_byte_0_or_1(tmp_path):
    path = tmp_path / "flags.hqt"
    flags = np.array([True, False, True])
    entropy.save(path, {"x": np.arange(4, dtype=np.uint8)}, quant={"x": {"flags": flags}}, durable=False)
    assert np.array_equal(entropy.load_quant(path, "x")["flags"], flags)
    raw = path.read_bytes()
    a = fields(raw)["tensors"]["x"]["arrays"]["flags"]
    assert raw[a["code"]] == 12  # FORMAT.md §4.4: bool
    for value in (2, 0xFF):
        bad = _write(tmp_path, seal(raw, [(a["data"] + 1, "<B", value)]))
        _rejected_on_open(bad, FormatError, f"'flags' \\(bool\\) has byte {value} at entry 1")
        with pytest.raises(AssertionError, match="a bool is the byte 0 or 1"):
            _spec_decode(bad.read_bytes())


def test_bitwidth_bits_array_of_bools_is_an_error(tmp_path):
    """§4.2: layout bitwidth needs an integer or float `bits` array; a bool array (type 12) is neither."""
    x = np.random.default_rng(3).integers(0, 4, (4, 6)).astype(np.uint8)
    path = tmp_path / "bw.hqt"
    entropy.save(path, {"x": x}, channel_axis=0, layout="bitwidth", quant={"x": {"bits": np.array([0, 1, 0, 1],
                 np.uint8)}}, durable=False)
    assert entropy.info(path).tensor("x").layout == "bitwidth"
    raw = path.read_bytes()
    a = fields(raw)["tensors"]["x"]["arrays"]["bits"]
    assert raw[a["code"]] == 1  # uint8, the same item size as bool
    bad = _write(tmp_path, seal(raw, [(a["code"], "<B", 12)]))
    _rejected_on_open(bad, FormatError, "layout bitwidth needs a 1-D numeric 'bits' array")


@pytest.mark.parametrize("what", ["tensor", "array"])
def test_shape_with_a_zero_and_a_huge_dimension_is_an_error(tmp_path, what):
    """§4.1, §4.3: the product of the non-zero dimensions is at most 2^48, for tensors and metadata arrays alike:
    (0, 2^63) holds no value but is not a legal shape."""
    path = tmp_path / "empty.hqt"
    entropy.save(path, {"e": np.zeros((0, 5), np.int8)}, quant={"e": {"m": np.zeros((0, 5), np.float32)}},
                 durable=False)
    raw = path.read_bytes()
    f = fields(raw)["tensors"]["e"]
    at = f["shape"] + 8 if what == "tensor" else f["arrays"]["m"]["shape"] + 8
    assert struct.unpack_from("<Q", raw, at)[0] == 5
    ok = _write(tmp_path, seal(raw, [(at, "<Q", 2**48)]), "ok.hqt")  # (0, 2^48): at the limit
    assert entropy.load(ok)["e"].shape == ((0, 2**48) if what == "tensor" else (0, 5))
    bad = _write(tmp_path, seal(raw, [(at, "<Q", 2**63)]))
    _rejected_on_open(bad, FormatError, "beyond the format's limit of 2\\*\\*48 values")
    with pytest.raises(AssertionError):
        _spec_decode(bad.read_bytes())


# --------------------------------------------------------------------------- §4.2: empty tensors


SHAPES = [((2, 0, 3), 1), ((2, 3, 0), 1), ((0, 4), 1), ((0,), 0), ((3, 0), -1)]


@pytest.mark.parametrize("shape,axis", SHAPES)
@pytest.mark.parametrize("layout", ["auto", "single", "channel", "bitwidth", "cluster", "cluster2"])
def test_empty_tensors_in_every_layout(tmp_path, shape, axis, layout):
    """A zero-length channel axis (or another zero dimension): the writer stores layout single with the axis it
    was given (M = 0 values per channel), or refuses a layout that needs values; the readers give back the empty
    array, whole or by a channel range."""
    x = np.zeros(shape, np.int16)
    C = shape[axis]
    quant = {"x": {"bits": np.full(C, 4, np.uint8)}} if layout == "bitwidth" else None
    path = tmp_path / "empty.hqt"
    if layout not in ("auto", "single"):
        with pytest.raises(FormatError, match=f"layout {layout} impossible: empty tensor"):
            entropy.save(path, {"x": x}, channel_axis=axis, layout=layout, quant=quant, durable=False)
        assert not path.exists()
        return
    fi = entropy.save(path, {"x": x}, channel_axis=axis, layout=layout, durable=False)
    t = fi.tensor("x")
    assert (t.layout, t.channel_axis, t.n_codebooks, t.n_chunks, t.payload_bits) == ("single", axis % x.ndim, 1,
                                                                                     0, 0)
    for got in (entropy.load(path)["x"], _spec_decode(path.read_bytes())["x"]):
        assert got.shape == shape and got.dtype == x.dtype
    for a, b in ((0, C), (0, 1), (1, 3)):
        want = np.take(x, range(*slice(a, b).indices(C)), axis=axis)
        got = entropy.load_tensor(path, "x", channels=slice(a, b))
        assert got.shape == want.shape and got.dtype == x.dtype


def test_empty_stream_claims_no_payload_bits(tmp_path):
    path = tmp_path / "empty.hqt"
    entropy.save(path, {"x": np.zeros((2, 0, 3), np.uint8)}, channel_axis=1, durable=False)
    raw = path.read_bytes()
    st = fields(raw)["tensors"]["x"]["streams"][0]
    _rejected_on_open(_write(tmp_path, seal(raw, [(st["bits"], "<Q", 1)])), FormatError,
                      "1 payload bits cannot hold 0 values")


# --------------------------------------------------------------------------- §4.3: the `axis` array


def test_writer_stores_axis_non_negative_and_per_tensor_as_absent(tmp_path):
    x = np.arange(24, dtype=np.int8).reshape(2, 3, 4)
    scale = np.array([0.5, 1.0, 2.0, 4.0], np.float32)
    path = tmp_path / "axis.hqt"
    entropy.save(path, {"last": x, "none": x, "mid": x},
                 quant={"last": {"scale": scale, "axis": -1}, "none": {"scale": 0.5, "axis": None},
                        "mid": {"scale": scale[:3], "axis": np.int8(1)}}, durable=False)
    assert entropy.load_quant(path, "last")["axis"] == 2
    assert "axis" not in entropy.load_quant(path, "none")
    assert entropy.load_quant(path, "mid")["axis"] == 1
    np.testing.assert_array_equal(entropy.dequantize(path, "last"), x.astype(np.float32) * scale)
    np.testing.assert_array_equal(entropy.dequantize(path, "mid"),
                                  x.astype(np.float32) * scale[:3].reshape(1, 3, 1))
    for bad, match in ((3, "out of range for 3 dimensions"), (-4, "out of range"), (1.0, "one integer"),
                       (np.array([0, 1]), "one integer"), (True, "one integer")):
        with pytest.raises(FormatError, match=match):
            entropy.save(tmp_path / "no.hqt", {"x": x}, quant={"x": {"scale": 1.0, "axis": bad}})
    assert not (tmp_path / "no.hqt").exists()


def test_a_stored_negative_axis_still_reads(tmp_path):
    """Older files store axis -1 with per-tensor parameters: read as the last axis, one-entry parameters
    dequantize the same. A non-integer stored axis is refused when dequantizing."""
    x = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "old.hqt"
    entropy.save(path, {"x": x}, quant={"x": {"scale": np.float32(0.25), "zero_point": 2, "axis": 1}},
                 durable=False)
    raw = path.read_bytes()
    a = fields(raw)["tensors"]["x"]["arrays"]["axis"]
    assert raw[a["code"]] == 8 and a["dims"] == ()  # int64, 0-d
    old = _write(tmp_path, seal(raw, [(a["data"], "<q", -1)]), "old_axis.hqt")
    assert entropy.load_quant(old, "x")["axis"] == -1
    np.testing.assert_array_equal(entropy.dequantize(old, "x"), (x.astype(np.float32) - 2) * np.float32(0.25))
    bad = _write(tmp_path, seal(raw, [(a["code"], "<B", 11)]))  # the same 8 bytes read as float64
    with pytest.raises(FormatError, match="axis .* is not an integer"):
        entropy.dequantize(bad, "x")
    out = _write(tmp_path, seal(raw, [(a["data"], "<q", -3)]), "out.hqt")
    with pytest.raises(FormatError, match="channel axis -3 out of range"):
        entropy.dequantize(out, "x")


# --------------------------------------------------------------------------- §5: codebook tables


def test_overlong_varint_is_an_error(tmp_path):
    """§5: varints are minimal; the alphabet size 101 as `e5 00` instead of `65` is rejected, in a codebook
    table and in a file (the extra byte taken from the header's padding, so nothing else moves)."""
    x = np.array([0, 100] * 20, np.uint8)
    enc = entropy.encode(x, group=1)
    table = enc.codebook.to_bytes()
    assert table[:2] == bytes([0x50, 101])
    overlong = table[:1] + bytes([0x80 | 101, 0x00]) + table[2:]
    with pytest.raises(CodebookError, match="overlong alphabet size varint"):
        entropy.Codebook.from_bytes(overlong)
    assert np.array_equal(entropy.Codebook.from_bytes(table).lengths, enc.codebook.lengths)
    for meta in range(8):  # a file whose header has padding
        path = tmp_path / "rle.hqt"
        entropy.save(path, {"x": enc}, {"m": "x" * meta}, durable=False)
        raw = path.read_bytes()
        f = fields(raw)
        hlen = struct.unpack_from("<I", raw, 12)[0]
        if f["header_end"] < 32 + hlen:
            break
    (cb_at, cb_len), = f["codebooks"]
    assert raw[cb_at : cb_at + cb_len] == table
    edited = (raw[: cb_at - 4] + struct.pack("<I", cb_len + 1) + overlong + raw[cb_at + cb_len : f["header_end"]]
              + raw[f["header_end"] + 1 :])
    assert len(edited) == len(raw)
    _rejected_on_open(_write(tmp_path, seal(edited)), CodebookError, "codebook 0: .*overlong")
    with pytest.raises(AssertionError, match="overlong varint"):
        _spec_decode(seal(edited))


def _tokens_from_the_spec(lengths: list[int]) -> bytes:
    """§5's description of what the writer emits in mode 5, followed literally."""
    out = bytearray([0x50])
    n = len(lengths)
    while True:  # LEB128
        out.append((n & 0x7F) | (0x80 if n >> 7 else 0))
        n >>= 7
        if not n:
            break
    i = 0
    while i < len(lengths):
        j = i
        while j < len(lengths) and lengths[j] == lengths[i]:
            j += 1
        m = j - i
        if lengths[i] == 0:
            if m == 1:
                out.append(0x00)
            else:
                out.append(0x40)
                r = m - 2
                while True:
                    out.append((r & 0x7F) | (0x80 if r >> 7 else 0))
                    r >>= 7
                    if not r:
                        break
        else:
            out.append(lengths[i])
            out += bytes([0xFF]) * ((m - 1) // 129)
            t = (m - 1) % 129
            if t >= 2:
                out.append(0x80 | (t - 2))
            elif t == 1:
                out.append(lengths[i])
        i = j
    return bytes(out)


@pytest.mark.parametrize("lengths", [
    [1, 0, 2, 0, 0, 3] + [0] * 200 + list(range(4, 17)) + [16],  # zero runs of 1, 2 and 200; lengths up to 16
    [8] * 131 + [0] + [8] * 125,  # a run of 131 equal lengths (literal, 0xFF, literal), then 125 (literal, 0xFA)
    [0] * 300 + [1, 1] + [0] * 2,
])
def test_run_length_tables_are_written_as_the_spec_says(lengths):
    cb = entropy.Codebook.from_lengths(np.array(lengths))
    assert cb.to_bytes() == _tokens_from_the_spec(lengths)


def test_odd_alphabet_writes_mode_3_and_mode_2_still_reads():
    """§5: for an odd alphabet, modes 2 and 3 take the same bytes; the writer writes mode 3, readers take both."""
    lengths = [2, 1, 2]
    mode3 = bytes([0x32, 0x12])  # mode 3, then 2 1 2: all explicit, no pad
    mode2 = bytes([0x22, 0x10])  # mode 2, then 2 1 (the last length implied), then the zero pad nibble
    assert entropy.Codebook.from_lengths(np.array(lengths)).to_bytes() == mode3
    for table in (mode3, mode2):
        assert entropy.Codebook.from_bytes(table).lengths.tolist() == lengths
    with pytest.raises(CodebookError, match="pad nibble"):
        entropy.Codebook.from_bytes(bytes([0x22, 0x11]))
    for table in (mode3, mode2):  # the spec decoder too, and it refuses the same non-zero pad
        assert _spec_lengths(table, 3) == lengths
    with pytest.raises(AssertionError):
        _spec_lengths(bytes([0x22, 0x11]), 3)
