"""Byte surgery on .hqt files for tests: where each field of a version-2 header lies (found by following
FORMAT.md §3-§4, not the reader), where each tensor's data lies, and re-sealing the CRCs after an edit, so that a
test can build a well-formed-looking file that breaks exactly one rule."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import entropy

ITEMSIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 8, 8: 8, 9: 2, 10: 4, 11: 8, 12: 1}  # FORMAT.md §4.4


def fields(raw: bytes) -> dict:
    """Offsets of the header's fields: ``codebooks`` (offset of each codebook's bytes and its length) and
    ``tensors`` (by name: ``head`` = dtype code, ``shape``, ``body`` = n_streams, ``icrc``, ``pcrc``, ``streams``
    (``plen``, ``params``, ``cb``, ``bits`` each), ``map``, ``arrays`` (by name: ``at`` = the name's u16,
    ``code``, ``shape``, ``data``, ``dims``), ``end``); ``header_end`` = where the records end (padding
    follows)."""
    pos = 32

    def u(fmt: str) -> int:
        nonlocal pos
        v = struct.unpack_from(fmt, raw, pos)[0]
        pos += struct.calcsize(fmt)
        return v

    for _ in range(u("<I")):  # metadata pairs
        n = u("<H")
        pos += n
        n = u("<I")
        pos += n
    codebooks = []
    for _ in range(u("<I")):
        n = u("<I")
        codebooks.append((pos, n))
        pos += n
    tensors = {}
    for _ in range(u("<I")):
        n = u("<H")
        name = raw[pos : pos + n].decode()
        pos += n
        f: dict = {"head": pos}
        _, ndim, layout, axis = struct.unpack_from("<BBBB", raw, pos)
        pos += 4
        f["shape"] = pos
        shape = struct.unpack_from(f"<{ndim}Q", raw, pos)
        pos += 8 * ndim
        f["body"], f["icrc"], f["pcrc"] = pos, pos + 8, pos + 12
        K, n_arrays = struct.unpack_from("<II", raw, pos)
        pos += 32
        f["streams"] = []
        for _ in range(K):
            st = {"plen": pos}
            plen = u("<H")
            st["params"] = pos
            pos += plen
            st["cb"], st["bits"] = pos, pos + 4
            pos += 12
            f["streams"].append(st)
        f["map"] = pos
        if layout == 3:
            pos += -(-shape[axis] * max(1, (K - 1).bit_length()) // 8)
        f["arrays"] = {}
        for _ in range(n_arrays):
            a = {"at": pos}
            n = u("<H")
            key = raw[pos : pos + n].decode()
            pos += n
            a["code"] = pos
            code, andim = struct.unpack_from("<BB", raw, pos)
            pos += 2
            a["shape"] = pos
            a["dims"] = struct.unpack_from(f"<{andim}Q", raw, pos)
            pos += 8 * andim
            a["data"] = pos
            count = 1
            for d in a["dims"]:
                count *= d
            pos += count * ITEMSIZE[code]
            f["arrays"][key] = a
        f["end"] = pos
        tensors[name] = f
    return {"codebooks": codebooks, "tensors": tensors, "header_end": pos}


def regions(path: str | Path) -> dict[str, tuple[int, int, int, int]]:
    """(index offset, index bytes, payload offset, payload bytes) of every tensor, by name (canonical layout,
    FORMAT.md §2; lengths without padding)."""
    fi = entropy.info(path)
    out = {}
    pos = fi.header_bytes
    for t in fi.tensors:
        payload_at = entropy.align(pos + t.index_bytes)
        out[t.name] = (pos, t.index_bytes, payload_at, t.payload_bytes)
        pos = entropy.align(payload_at + t.payload_bytes)
    return out


def seal(raw: bytes | bytearray, edits: list[tuple[int, str, int]] = (), *,
         tensors: dict[str, tuple[int, int, int, int]] | None = None) -> bytes:
    """``raw`` with ``edits`` (offset, struct format, value) applied, the index and payload CRCs of ``tensors``
    (name -> :func:`regions` entry) recomputed, then the header CRC."""
    out = bytearray(raw)
    for at, fmt, value in edits:
        struct.pack_into(fmt, out, at, value)
    if tensors:
        f = fields(bytes(out))["tensors"]
        for name, (i_at, i_len, p_at, p_len) in tensors.items():
            struct.pack_into("<I", out, f[name]["icrc"], zlib.crc32(bytes(out[i_at:p_at])))
            p_end = entropy.align(p_at + p_len)
            struct.pack_into("<I", out, f[name]["pcrc"], zlib.crc32(bytes(out[p_at:p_end])))
    hlen = struct.unpack_from("<I", out, 12)[0]
    struct.pack_into("<I", out, 28, zlib.crc32(bytes(out[32 : 32 + hlen]), zlib.crc32(bytes(out[:28]))))
    return bytes(out)
