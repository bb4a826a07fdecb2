"""FORMAT.md is enough: an independent decoder written from entropy/FORMAT.md alone (pure Python, no code of
``entropy`` used) decodes what the writer writes, in every layout, and the reference files of version 1."""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import entropy
import entropy as C

TYPES = {1: "<u1", 2: "<i1", 3: "<u2", 4: "<i2", 5: "<u4", 6: "<i4", 7: "<u8", 8: "<i8", 9: "<f2", 10: "<f4",
         11: "<f8", 12: "?"}
DOC = (Path(entropy.__file__).parent / "FORMAT.md").read_text()
V1 = Path(__file__).parent / "data" / "v1"


class _Reader:
    def __init__(self, raw: bytes, pos: int) -> None:
        self.raw, self.pos = raw, pos

    def take(self, fmt: str):
        vals = struct.unpack_from(fmt, self.raw, self.pos)
        self.pos += struct.calcsize(fmt)
        return vals if len(vals) > 1 else vals[0]

    def bytes(self, n: int) -> bytes:
        self.pos += n
        assert self.pos <= len(self.raw)
        return self.raw[self.pos - n : self.pos]

    def text(self, width: str) -> str:
        return self.bytes(self.take(width)).decode()


def _spec_lengths(b: bytes, n: int) -> list[int]:
    """§5: code lengths of an n-symbol codebook."""
    mode = b[0] >> 4
    nib = [x for byte in b for x in (byte >> 4, byte & 15)][1:]
    if mode in (3, 4):  # n explicit nibbles; mode 4 (n even) ends with a zero pad nibble
        assert mode == (3 if n % 2 else 4) and len(nib) == n + (mode == 4) and not any(nib[n:])
        return nib[:n]
    if mode in (1, 2):  # n - 1 nibbles, the last length implied; mode 2 (n odd) ends with a zero pad nibble
        assert mode == (2 if n % 2 else 1) and len(nib) == n - 1 + (mode == 2) and not any(nib[n - 1 :])
        lens = nib[: n - 1]
        rest = 1 - sum(2.0**-x for x in lens if x)
        assert rest == 0 or (rest > 0 and -math.log2(rest) in range(1, 16)), "implied length"
        return lens + [0 if rest == 0 else int(-math.log2(rest))]
    assert mode == 5 and b[0] == 0x50
    pos = 1

    def varint():
        nonlocal pos
        x = shift = 0
        while True:
            x |= (b[pos] & 0x7F) << shift
            pos += 1
            if not b[pos - 1] & 0x80:
                assert b[pos - 1] or not shift, "overlong varint"  # minimal varints (check)
                return x
            shift += 7

    assert varint() == n
    lens: list[int] = []
    while len(lens) < n:
        t = b[pos]
        pos += 1
        if t <= 24:
            lens.append(t)
        elif t == 0x40:
            lens += [0] * (varint() + 2)
        else:
            lens += [lens[-1]] * ((t & 0x7F) + 2)
    assert pos == len(b)
    return lens


def _spec_chunk_values(s: dict) -> list[int]:
    """§6: the values of each chunk (rows of row_length values cut on their own when row_length > 0)."""
    n, chunk, row = s["n"], s["chunk_size"], s.get("row_length", 0)
    if not row:
        return [min(chunk, n - c * chunk) for c in range(-(-n // chunk))]
    assert n % row == 0
    return [min(chunk, row - j * chunk) for _ in range(n // row) for j in range(-(-row // chunk))]


def _spec_width(s: dict) -> int:
    """§6: bytes per chunk-index entry (none for a stored stream)."""
    if s.get("stored"):
        return 0
    E = (s["erange"] - 1).bit_length() if s.get("erange") else 0
    return 2 if (s["chunk_size"] // s["k"]) * (s["L"] + E) <= 0xFFFF else 4


def _spec_payload_bounds(s: dict) -> tuple[int, int]:
    """§4.1: fewest and most payload bits, summed chunk by chunk (§6); a stored stream's are both n * W (§7.5)."""
    counts = _spec_chunk_values(s)
    if s.get("stored"):
        W = (s["R"] - 1).bit_length()  # ceil(log2(R))
        return sum(m * W for m in counts), sum(m * W for m in counts)
    E = (s["erange"] - 1).bit_length() if s.get("erange") else 0
    vmax = s.get("runs") or s["k"]
    return sum(-(-m // vmax) for m in counts), sum(-(-m // s["k"]) * (s["L"] + E) for m in counts)


def _spec_stream(raw: bytes, stream: dict, books: list[bytes], index_at: int, payload_at: int) -> list[int]:
    """§6, §7: the n values of one stream (plain, pairs or run symbols; escapes; rows)."""
    k, L, vmin, R, P, n = (stream[x] for x in ("k", "L", "vmin", "R", "P", "n"))
    runs, run_sym, emin, erange = (stream.get(x, 0) for x in ("runs", "run_sym", "emin", "erange"))
    if stream.get("stored"):  # §7.5: no code, W bits per value, MSB-first; §5: the empty code; §6: no index
        assert k == 1 and not runs and not erange and 2 <= R <= 2**32  # §7.1
        assert _spec_lengths(books[stream["cb"]], 1) == [0]
        W = (R - 1).bit_length()  # ceil(log2(R))
        lo, hi = _spec_payload_bounds(stream)  # §4.1: both n * W
        assert lo == hi == n * W and P == n * W, f"payload bits {P}, not {n} values of {W} bits"
        bits = "".join(f"{b:08b}" for b in raw[payload_at : payload_at + -(-P // 8)])
        assert set(bits[P:]) <= {"0"}
        us = [int(bits[i * W : (i + 1) * W], 2) for i in range(n)]
        assert all(u < R for u in us)
        return [vmin + u for u in us]
    V = R + (1 if erange else 0)
    E = (erange - 1).bit_length() if erange else 0
    A = runs * V if runs else V**k
    lengths = _spec_lengths(books[stream["cb"]], A)
    assert len(lengths) == A and max(lengths, default=0) <= L
    table = {}  # canonical codes: by (length, symbol)
    code = prev = 0
    for s in sorted((s for s in range(len(lengths)) if lengths[s]), key=lambda s: (lengths[s], s)):
        code <<= lengths[s] - prev
        prev = lengths[s]
        table[(lengths[s], code)] = s
        code += 1
    counts = _spec_chunk_values(stream)
    lo, hi = _spec_payload_bounds(stream)
    assert lo <= P <= hi, f"payload bits {P} outside [{lo}, {hi}]"
    width = _spec_width(stream)
    chunk_bits = [int.from_bytes(raw[index_at + i * width : index_at + (i + 1) * width], "big") for i in range(len(counts))]
    assert sum(chunk_bits) == P
    bits = "".join(f"{b:08b}" for b in raw[payload_at : payload_at + -(-P // 8)])
    values, at = [], 0
    for cbits, want in zip(chunk_bits, counts):
        end = at + cbits
        got: list[int] = []
        while at < end:
            ln, code = 0, 0
            while (ln, code) not in table:
                code = (code << 1) | int(bits[at])
                ln += 1
                at += 1
            sym = table[(ln, code)]
            if k == 2:
                got += [vmin + sym // R, vmin + sym % R]
                continue
            r, b = divmod(sym, V) if runs else (0, sym)
            if erange and b == R:  # §7.3: the escape symbol, then E raw bits
                value = emin + int(bits[at : at + E], 2)
                assert int(bits[at : at + E], 2) < erange
                at += E
            else:
                value = vmin + b
            got += [vmin + run_sym] * r + [value]
        assert at == end
        if k == 2 and want % 2:  # §7.2: the pad of a chunk of an odd count
            assert got[-1] == vmin
            got = got[:-1]
        assert len(got) == want
        values += got
    assert at == P and set(bits[P:]) <= {"0"}
    return values


def _spec_shape(r: _Reader, ndim: int) -> list[int]:
    """§4.1, §4.3: ndim u64 dimensions whose non-zero ones multiply to at most 2^48."""
    assert ndim <= 32
    dims = [r.take("<Q") for _ in range(ndim)]
    assert math.prod(d for d in dims if d) <= 2**48
    return dims


def _spec_decode(raw: bytes) -> dict[str, np.ndarray]:
    """Every tensor of an .hqt file (version 1 or 2), decoded by following FORMAT.md."""
    assert raw[:8] == b"\x89HQT\r\n\x1a\n"
    version, flags, hlen, flen, reserved, hcrc = struct.unpack_from("<HHIQII", raw, 8)
    assert version in (1, 2) and (flags, reserved, flen) == (0, 0, len(raw))
    assert zlib.crc32(raw[32 : 32 + hlen], zlib.crc32(raw[:28])) == hcrc
    r = _Reader(raw, 32)
    for _ in range(r.take("<I")):
        r.text("<H"), r.text("<I")
    books = [r.bytes(r.take("<I")) for _ in range(r.take("<I"))]
    tensors = []
    for _ in range(r.take("<I")):
        t = {"name": r.text("<H")}
        if version == 1:
            t["dtype"], ndim, k, L, chunk = r.take("<BBBBI")
            t["shape"] = _spec_shape(r, ndim)
            (vmin, R, P, ioff, ilen, poff, plen, cb, t["icrc"], t["pcrc"], n_arrays, _, _) = r.take("<qQQQQQQIIIIdd")
            t["layout"], t["axis"], t["offsets"] = 0, 255, (ioff, poff)
            t["streams"] = [dict(k=k, L=L, chunk_size=chunk, vmin=vmin, R=R, P=P, cb=cb)]
        else:
            t["dtype"], ndim, t["layout"], t["axis"] = r.take("<BBBB")
            t["shape"] = _spec_shape(r, ndim)
            K, n_arrays, t["icrc"], t["pcrc"], _, _ = r.take("<IIIIdd")
            t["streams"] = []
            for _ in range(K):
                block = r.bytes(r.take("<H"))
                k, L, flags, chunk, vmin, R = struct.unpack_from("<BBHIqQ", block)  # §7.1
                assert flags & ~15 == 0 and k in (1, 2) and 1 <= L <= 24 and 1 <= chunk <= 2**24 and chunk % k == 0
                st = dict(k=k, L=L, chunk_size=chunk, vmin=vmin, R=R, stored=bool(flags & 8))
                at = 24
                if flags & 1:
                    st["runs"], st["run_sym"] = struct.unpack_from("<HH", block, at)
                    at += 4
                if flags & 2:
                    st["emin"], st["erange"] = struct.unpack_from("<qQ", block, at)
                    at += 16
                if flags & 4:
                    (st["row_length"],) = struct.unpack_from("<Q", block, at)
                    at += 8
                assert at == len(block)
                st["cb"], st["P"] = r.take("<IQ")
                t["streams"].append(st)
            if t["layout"] == 3:
                n_ch = t["shape"][t["axis"]]
                w = max(1, (K - 1).bit_length())
                mbits = "".join(f"{b:08b}" for b in r.bytes(-(-n_ch * w // 8)))
                t["map"] = [int(mbits[i * w : (i + 1) * w], 2) for i in range(n_ch)]
                assert set(mbits[n_ch * w :]) <= {"0"}
        t["arrays"] = {}
        for _ in range(n_arrays):
            key = r.text("<H")
            acode, andim = r.take("<BB")
            adims = _spec_shape(r, andim)
            count = math.prod(adims)
            data = r.bytes(count * np.dtype(TYPES[acode]).itemsize)
            assert acode != 12 or max(data, default=0) <= 1, "a bool is the byte 0 or 1"  # §4.4 (check)
            t["arrays"][key] = np.frombuffer(data, TYPES[acode], count)
        tensors.append(t)
    assert r.pos + (-r.pos % 8) == 32 + hlen and not any(raw[r.pos : 32 + hlen])
    out = {}
    pos = 32 + hlen
    for t in tensors:
        n = math.prod(t["shape"])
        axis = t["axis"]
        n_ch = t["shape"][axis] if axis != 255 else 1
        M = n // n_ch if n_ch else 0
        # which channels each stream holds (§4.2)
        if t["layout"] == 0:
            members = [list(range(n_ch))]
        elif t["layout"] == 1:
            members = [[c] for c in range(n_ch)]
        elif t["layout"] == 2:
            assert t["arrays"]["bits"].dtype.kind in "iuf"  # §4.2: an integer or float array, not bool
            widths = sorted(set(float(b) for b in t["arrays"]["bits"]))
            members = [[c for c in range(n_ch) if float(t["arrays"]["bits"][c]) == w] for w in widths]
        else:
            members = [[c for c in range(n_ch) if t["map"][c] == j] for j in range(len(t["streams"]))]
        for s, chans in zip(t["streams"], members):
            s["n"] = n if t["layout"] == 0 else len(chans) * M
        # the data block (§2; version 1: stored offsets, Appendix A)
        index_at = t["offsets"][0] if version == 1 else pos
        index_len = sum(len(_spec_chunk_values(s)) * _spec_width(s) for s in t["streams"])
        payload_at = t["offsets"][1] if version == 1 else -(-(index_at + index_len) // 8) * 8
        payload_len = sum(-(-s["P"] // 8) for s in t["streams"])
        end = -(-(payload_at + payload_len) // 8) * 8
        assert zlib.crc32(raw[index_at:payload_at]) == t["icrc"]
        assert zlib.crc32(raw[payload_at:end]) == t["pcrc"]
        # §1: the padding after the index region and after the payload region is zero (check)
        assert not any(raw[index_at + index_len : payload_at]) and not any(raw[payload_at + payload_len : end])
        pos = end
        rows = [None] * n_ch
        flat: list[int] = []
        for s, chans in zip(t["streams"], members):
            vals = _spec_stream(raw, s, books, index_at, payload_at)
            index_at += len(_spec_chunk_values(s)) * _spec_width(s)
            payload_at += -(-s["P"] // 8)
            if axis == 255:
                flat = vals
            else:
                for i, c in enumerate(chans):
                    rows[c] = vals[i * M : (i + 1) * M]
        dt = TYPES[t["dtype"]]
        if axis == 255:
            arr = np.array(flat, dtype=np.int64).astype(dt).reshape(t["shape"])
        else:
            other = [d for i, d in enumerate(t["shape"]) if i != axis]
            arr = np.array([v for row in rows for v in row], dtype=np.int64).astype(dt).reshape([n_ch] + other)
            arr = np.moveaxis(arr, 0, axis)
        out[t["name"]] = arr
    assert pos == len(raw)
    return out


def _assert_same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and got[k].shape == v.shape and np.array_equal(got[k], v), k


@pytest.mark.parametrize("group", [1, 2])
def test_independent_decoder_from_the_spec(tmp_path, group):
    rng = np.random.default_rng(9)
    t = {
        "w4": rng.integers(0, 16, 301).astype(np.uint8),
        "sparse": np.where(rng.random(999) < 0.9, 0, rng.integers(-3, 4, 999)).astype(np.int8),
        "wide": np.round(rng.laplace(0, 30, 700)).astype(np.int16),  # RLE-mode codebook
        "s": np.array([[5]], np.int32),
        "e": np.zeros(0, np.int64),
    }
    path = tmp_path / "spec.hqt"
    C.save(path, t, {"model": "spec"}, quant={"w4": {"scale": np.float32(0.1)}}, group=group, chunk_size=64)
    _assert_same(_spec_decode(path.read_bytes()), t)


def _channel_data(rng, shape, axis, levels):
    C = shape[axis]
    scale = rng.uniform(0.2, 3.0, C).reshape([C if i == axis else 1 for i in range(len(shape))])
    x = np.maximum(rng.laplace(-0.3, 1.0, shape), 0) * scale
    return np.clip(np.round(x), 0, levels - 1)


@pytest.mark.parametrize("group", ["auto", 1, 2])
def test_independent_decoder_decodes_every_layout(tmp_path, group):
    rng = np.random.default_rng(10)
    acts = _channel_data(rng, (2, 6, 5, 7), 1, 16).astype(np.uint8)  # odd row length: pairs straddle rows
    w = (_channel_data(rng, (5, 3, 3, 3), 0, 8) - 3).astype(np.int8)
    deep = _channel_data(rng, (3, 4, 10), 2, 30).astype(np.int16)  # channel axis last
    bits = np.array([2, 4, 2, 3, 4, 3], np.uint8)
    tensors = {"single": acts, "channel": w, "bitwidth": acts.copy(), "cluster": deep, "cluster3": acts.copy(),
               "plain": w.copy(), "axis2single": deep.copy()}
    axes = {"single": 1, "channel": 0, "bitwidth": 1, "cluster": 2, "cluster3": 1, "axis2single": 2}
    layouts = {"single": "single", "channel": "channel", "bitwidth": "bitwidth", "cluster": "cluster",
               "cluster3": "cluster3", "axis2single": "single"}
    path = tmp_path / "layouts.hqt"
    fi = C.save(path, tensors, channel_axis=axes, layout=layouts, quant={"bitwidth": {"bits": bits}},
                group=group, chunk_size=16)
    assert {t.name: t.layout for t in fi.tensors} == {
        "single": "single", "channel": "channel", "bitwidth": "bitwidth", "cluster": "cluster",
        "cluster3": "cluster", "plain": "single", "axis2single": "single"}
    assert fi.tensor("cluster3").n_codebooks == 3 and fi.tensor("channel").n_codebooks == 5
    assert fi.tensor("bitwidth").n_codebooks == 3
    _assert_same(_spec_decode(path.read_bytes()), tensors)
    _assert_same(C.load(path), tensors)


def test_independent_decoder_reads_4_byte_index_entries(tmp_path):
    # (chunk_size / group) * L = 8192 * 12 > 65535: every chunk-index entry is 4 bytes (FORMAT.md §6)
    rng = np.random.default_rng(12)
    x = np.clip(np.round(rng.laplace(0, 3, 20000)), -20, 20).astype(np.int8)
    y = x.reshape(4, 5000)
    path = tmp_path / "wide_index.hqt"
    fi = C.save(path, {"x": x, "y": y}, channel_axis={"y": 0}, layout={"y": "cluster2"}, chunk_size=8192, group=1)
    t = fi.tensor("x")
    assert t.n_chunks == 3 and t.index_bytes == 4 * t.n_chunks
    assert fi.tensor("y").index_bytes == 4 * fi.tensor("y").n_chunks
    _assert_same(_spec_decode(path.read_bytes()), {"x": x, "y": y})


def test_index_byte_order_is_pinned_by_the_spec_decoder(tmp_path, monkeypatch):
    """A writer and reader that agreed on the wrong byte order for the chunk index would still round-trip;
    the spec decoder (and only it) must catch that."""
    import entropy.codec.streams as codec

    def le_index(chunk_bits, params):
        return np.asarray(chunk_bits).astype("<u2" if params.index_entry_bytes == 2 else "<u4").tobytes()

    def le_parse(buf, n_chunks, params, n_values=None):
        w = params.index_entry_bytes
        arr = np.frombuffer(bytes(buf), dtype="<u2" if w == 2 else "<u4").astype(np.uint32)
        assert arr.size == n_chunks
        return arr

    monkeypatch.setattr(codec, "_index_bytes", le_index)
    monkeypatch.setattr(codec.EncodedTensor, "parse_index", staticmethod(le_parse))
    rng = np.random.default_rng(13)
    x = np.clip(np.round(rng.laplace(0, 3, 20000)), -20, 20).astype(np.int8)
    for chunk_size in (8192, 1024):  # 4-byte and 2-byte entries
        path = tmp_path / f"swapped{chunk_size}.hqt"
        C.save(path, {"x": x}, chunk_size=chunk_size, group=1)
        assert np.array_equal(C.load_tensor(path, "x"), x)  # the swapped pair agrees with itself
        try:
            caught = not np.array_equal(_spec_decode(path.read_bytes())["x"], x)
        except (AssertionError, IndexError, KeyError, ValueError):
            caught = True
        assert caught, f"chunk_size {chunk_size}: a little-endian chunk index went unnoticed"


def test_independent_decoder_reads_the_version_1_reference_files():
    manifest = json.loads((V1 / "manifest.json").read_text())
    with np.load(V1 / "expected.npz") as z:
        expected = {k: z[k] for k in z.files}
    for fname, entry in manifest.items():
        got = _spec_decode((V1 / fname).read_bytes())
        _assert_same(got, {t["name"]: expected[t["key"]] for t in entry["tensors"]})


def _documented_dump(section: str, end: str) -> bytes:
    dump = DOC.split(section, 1)[1].split(end, 1)[0]
    lines = [ln for ln in dump.splitlines() if len(ln) > 10 and ln[8:10] == ": " and ln[:8].isalnum()]
    return bytes.fromhex("".join(ln[10:49].replace(" ", "") for ln in lines))


def test_format_md_example_is_what_the_writer_writes(tmp_path):
    documented = _documented_dump("## 12. Worked example", "## 13.")
    x = np.array([[[0, 0, 1], [2, 3, 3], [0, 1, 0], [3, 2, 3]]], np.uint8)
    path = tmp_path / "example.hqt"
    C.save(path, {"act": x}, {"tool": "huffquant 0.1.0"}, channel_axis=1, layout="cluster2", group=1, chunk_size=4)
    assert path.read_bytes() == documented
    assert np.array_equal(_spec_decode(documented)["act"], x)
    ti = C.info(path).tensor("act")
    assert (ti.layout, ti.n_codebooks, ti.channel_axis) == ("cluster", 2, 1)
    assert np.array_equal(C.load_tensor(path, "act", channels=slice(2, 4)), x[:, 2:4])


def test_format_md_version_1_example_still_reads(tmp_path):
    documented = _documented_dump("### A.2 Worked example (version 1)", "\n## ")
    path = tmp_path / "example_v1.hqt"
    path.write_bytes(documented)
    want = np.array([[-1, 0, 0], [1, 0, -1]], np.int8)
    assert np.array_equal(_spec_decode(documented)["x"], want)
    assert C.info(path).version == 1
    assert np.array_equal(C.load_tensor(path, "x"), want)
    np.testing.assert_array_equal(C.dequantize(path, "x"), np.float32([[-0.5, 0, 0], [0.5, 0, -0.5]]))


def test_independent_decoder_reads_run_escape_and_row_streams(tmp_path):
    """The spec decoder (§6, §7 as written) reads every symbol mode the codec writes: run symbols, escapes,
    rows, pairs padded per row, stored values, and their combinations."""
    from entropy.codec.params import CodecParams
    from entropy.codec.streams import encode

    rng = np.random.default_rng(21)
    sparse = np.where(rng.random((6, 700)) < 0.08, rng.integers(1, 16, (6, 700)), 0).astype(np.uint8)
    wide = np.round(rng.laplace(0, 3e4, 5000)).astype(np.int32)
    wide[::50] = rng.integers(-(2**31), 2**31 - 1, wide[::50].size)
    rows_pairs = rng.integers(0, 6, (9, 7)).astype(np.int8)
    mixed = np.where(rng.random(4000) < 0.7, 3, rng.integers(-500, 500, 4000)).astype(np.int16)
    stored = rng.integers(-300, 700, 3001).astype(np.int16)  # 10 bits per value
    tensors = {
        "sparse": sparse,
        "wide": encode(wide, mode=("plain", "pairs", "runs"), chunk_size=512),  # (stored is smaller here)
        "rows_pairs": encode(rows_pairs.reshape(-1), mode="pairs", chunk_size=4, row_length=7),
        "stored": stored,
        "stored_rows": encode(stored[:3000], params=CodecParams(group=1, max_code_length=12, chunk_size=64,
                                                                value_min=-300, value_range=1000, row_length=100,
                                                                stored=True)),
        "runs_escape_rows": encode(mixed, chunk_size=256, row_length=400, params=CodecParams(
            group=1, max_code_length=12, chunk_size=256, value_min=-20, value_range=40, runs=16, run_symbol=23,
            escape_min=-500, escape_range=1000, row_length=400)),
    }
    path = tmp_path / "modes.hqt"
    C.save(path, tensors, chunk_size=512)
    modes = {t.name: {(st.mode, bool(st.escape_range)) for st in t.streams} for t in C.info(path).tensors}
    assert ("runs", False) in modes["sparse"] and ("plain", True) in modes["wide"]
    assert modes["rows_pairs"] == {("pairs", False)} and modes["runs_escape_rows"] == {("runs", True)}
    assert modes["stored"] == modes["stored_rows"] == {("stored", False)}
    got = _spec_decode(path.read_bytes())
    want = {"sparse": sparse, "wide": wide, "rows_pairs": rows_pairs.reshape(-1), "stored": stored,
            "stored_rows": stored[:3000], "runs_escape_rows": mixed}
    for k, v in want.items():
        assert np.array_equal(got[k].reshape(-1), v.reshape(-1)), k
    for k, v in C.load(path).items():
        assert np.array_equal(v.reshape(-1), want[k].reshape(-1))
