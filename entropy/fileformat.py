"""The ``.hqt`` file format's byte layout (FORMAT.md): constants, type codes, records, and the serialization
and parsing of the header.

Parsing never trusts the file: every count, length and offset is checked against the header or the file size
before anything is allocated, the layout must be exactly the canonical one (so every byte of the file is covered
by a checksum), and every codebook is validated. Failures are :class:`~entropy.errors.EntropyError` subclasses
naming the file and the tensor.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from entropy.codebook import Codebook
from entropy.codec import SUPPORTED_DTYPES
from entropy.errors import CodebookError, FormatError, IntegrityError, MissingTensorError
from entropy.lengths import MAX_ALPHABET, MAX_SUPPORTED_LENGTH

__all__ = ["MAGIC", "FORMAT_VERSION", "ALIGNMENT", "PREAMBLE_SIZE", "DTYPE_CODES", "align"]

MAGIC = b"\x89HQT\r\n\x1a\n"
FORMAT_VERSION = 1
ALIGNMENT = 8  # bytes; every index and payload starts at a multiple of this

# magic, version, flags, header_length, file_length, reserved, header_crc32
_PREAMBLE = struct.Struct("<8sHHIQII")
PREAMBLE_SIZE = _PREAMBLE.size  # 32
# dtype code, ndim, group, max_code_length, chunk_size
_ENTRY_A = struct.Struct("<BBBBI")
# value_min, value_range, payload_bits, index_offset, index_length, payload_offset,
# payload_length, codebook_id, index_crc32, payload_crc32, n_arrays, entropy, avg length
_ENTRY_B = struct.Struct("<qQQQQQQIIIIdd")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ARRAY_HEAD = struct.Struct("<BB")

# Closed set of element types (FORMAT.md, "Type codes"). Tensors use the integer ones.
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<i1"),
    3: np.dtype("<u2"),
    4: np.dtype("<i2"),
    5: np.dtype("<u4"),
    6: np.dtype("<i4"),
    7: np.dtype("<u8"),
    8: np.dtype("<i8"),
    9: np.dtype("<f2"),
    10: np.dtype("<f4"),
    11: np.dtype("<f8"),
    12: np.dtype("bool"),
}
_CODE_OF_DTYPE = {dt.str if dt.kind != "b" else "|b1": code for code, dt in DTYPE_CODES.items()}
# integer types the codec restores (uint64 is not one of them)
_TENSOR_DTYPE_CODES = frozenset(c for c, dt in DTYPE_CODES.items() if dt.name in SUPPORTED_DTYPES)

MAX_NDIM = 32
MAX_DIM_PRODUCT = 1 << 48  # product of the non-zero dimensions (values)
MAX_GROUP = 2
MAX_CODE_LENGTH = MAX_SUPPORTED_LENGTH  # 24 bits
MAX_CHUNK_SIZE = 1 << 24  # values
MAX_VALUE_RANGE = MAX_ALPHABET  # 65536 base symbols


def align(n: int) -> int:
    """``n`` bytes rounded up to the format's alignment (8)."""
    return -(-n // ALIGNMENT) * ALIGNMENT


def _pad(n: int) -> bytes:
    return bytes(align(n) - n)


def _dtype_code(dt: np.dtype) -> int | None:
    dt = np.dtype(dt)
    key = "|b1" if dt.kind == "b" else dt.newbyteorder("<").str
    return _CODE_OF_DTYPE.get(key)



# --------------------------------------------------------------------------- header model


@dataclass
class _Entry:
    name: str
    dtype_code: int
    shape: tuple[int, ...]
    group: int
    max_code_length: int
    chunk_size: int
    value_min: int
    value_range: int
    codebook_id: int
    payload_bits: int
    index_length: int
    payload_length: int
    entropy_bits: float
    avg_code_length: float
    arrays: dict[str, np.ndarray]
    index_offset: int = 0
    payload_offset: int = 0
    index_crc32: int = 0
    payload_crc32: int = 0
    entry_bytes: int = 0
    arrays_bytes: int = 0

    @property
    def n_values(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return DTYPE_CODES[self.dtype_code]


@dataclass
class _Header:
    version: int
    file_length: int
    header_length: int
    header_crc32: int
    metadata: dict[str, str]
    metadata_bytes: int
    codebooks: list[bytes]
    entries: list[_Entry]
    books: list[Codebook]  # the parsed (validated) codebooks, by id

    def entry(self, name: str, path: str) -> _Entry:
        by_name = self.__dict__.get("_by_name")
        if by_name is None:  # built on first lookup; names are unique (checked when parsed)
            by_name = self.__dict__["_by_name"] = {e.name: e for e in self.entries}
        e = by_name.get(name)
        if e is None:
            raise MissingTensorError(f"{path}: no tensor named {name!r} (has {len(self.entries)} tensors)")
        return e


# --------------------------------------------------------------------------- serialization


def _str16(s: str, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFF:
        raise FormatError(f"{what} is {len(b)} bytes of UTF-8; at most 65535 can be stored")
    return _U16.pack(len(b)) + b


def _str32(s: str, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > 0xFFFFFFFF:
        raise FormatError(f"{what} is too long to store")
    return _U32.pack(len(b)) + b


def _serialize_entry(e: _Entry) -> bytes:
    parts = [
        _str16(e.name, f"tensor name {e.name[:40]!r}"),
        _ENTRY_A.pack(e.dtype_code, len(e.shape), e.group, e.max_code_length, e.chunk_size),
        b"".join(_U64.pack(d) for d in e.shape),
        _ENTRY_B.pack(
            e.value_min, e.value_range, e.payload_bits, e.index_offset, e.index_length,
            e.payload_offset, e.payload_length, e.codebook_id, e.index_crc32, e.payload_crc32,
            len(e.arrays), e.entropy_bits, e.avg_code_length,
        ),
    ]
    for key, arr in e.arrays.items():
        code = _dtype_code(arr.dtype)
        parts.append(_str16(key, f"metadata array name {key!r} of tensor {e.name!r}"))
        parts.append(_ARRAY_HEAD.pack(code, arr.ndim))
        parts.append(b"".join(_U64.pack(d) for d in arr.shape))
        parts.append(np.asarray(arr, dtype=DTYPE_CODES[code]).tobytes(order="C"))
    return b"".join(parts)


def _serialize_header(metadata: Mapping[str, str], codebooks: list[bytes], entries: list[_Entry]) -> bytes:
    parts = [_U32.pack(len(metadata))]
    for k, v in metadata.items():
        parts.append(_str16(k, f"metadata key {k[:40]!r}"))
        parts.append(_str32(v, f"metadata value of {k!r}"))
    parts.append(_U32.pack(len(codebooks)))
    for cb in codebooks:
        parts.append(_U32.pack(len(cb)))
        parts.append(cb)
    parts.append(_U32.pack(len(entries)))
    parts.extend(_serialize_entry(e) for e in entries)
    body = b"".join(parts)
    return body + _pad(PREAMBLE_SIZE + len(body))


class _Cursor:
    """Bounds-checked little-endian reader over a buffer (the header)."""

    def __init__(self, buf: memoryview, start: int, end: int) -> None:
        self.buf, self.pos, self.end = buf, start, end

    def take(self, n: int, what: str) -> int:
        if n < 0 or self.pos + n > self.end:
            raise FormatError(
                f"header truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"header ends at {self.end}"
            )
        p = self.pos
        self.pos += n
        return p

    def unpack(self, st: struct.Struct, what: str) -> tuple:
        return st.unpack_from(self.buf, self.take(st.size, what))

    def str_(self, width: struct.Struct, what: str) -> str:
        (n,) = self.unpack(width, what)
        p = self.take(n, what)
        try:
            return bytes(self.buf[p : p + n]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what} at offset {p} is not valid UTF-8") from exc

    def count(self, what: str, min_item_bytes: int) -> int:
        (n,) = self.unpack(_U32, what)
        if n * min_item_bytes > self.end - self.pos:
            raise FormatError(f"{what} = {n} cannot fit in the {self.end - self.pos} header bytes left")
        return n


def _parse_dims(cur: _Cursor, ndim: int, what: str) -> tuple[int, ...]:
    if ndim > MAX_NDIM:
        raise FormatError(f"{what}: {ndim} dimensions (at most {MAX_NDIM})")
    p = cur.take(8 * ndim, f"{what} shape")
    dims = struct.unpack_from(f"<{ndim}Q", cur.buf, p)
    if math.prod(max(d, 1) for d in dims) > MAX_DIM_PRODUCT:
        raise FormatError(f"{what}: shape {dims} is beyond the format's limit of 2**48 values")
    return tuple(dims)


def _parse_entry(cur: _Cursor, n_codebooks: int) -> _Entry:
    start = cur.pos
    name = cur.str_(_U16, "tensor name")
    what = f"tensor {name!r}"
    code, ndim, group, max_len, chunk_size = cur.unpack(_ENTRY_A, f"{what} record")
    if code not in _TENSOR_DTYPE_CODES:
        raise FormatError(f"{what}: unknown or non-integer dtype code {code}")
    shape = _parse_dims(cur, ndim, what)
    (vmin, vrange, payload_bits, ioff, ilen, poff, plen, cb_id, icrc, pcrc, n_arrays, ent, avg) = cur.unpack(
        _ENTRY_B, f"{what} record"
    )
    e = _Entry(name, code, shape, group, max_len, chunk_size, vmin, vrange, cb_id, payload_bits, ilen, plen,
               ent, avg, {}, ioff, poff, icrc, pcrc)
    _check_entry(e, n_codebooks)
    if n_arrays * (_U16.size + _ARRAY_HEAD.size) > cur.end - cur.pos:
        raise FormatError(f"{what}: {n_arrays} metadata arrays cannot fit in the header")
    arrays_start = cur.pos
    for _ in range(n_arrays):
        key = cur.str_(_U16, f"{what} metadata array name")
        acode, andim = cur.unpack(_ARRAY_HEAD, f"{what} metadata array {key!r}")
        if acode not in DTYPE_CODES:
            raise FormatError(f"{what}: metadata array {key!r} has unknown type code {acode}")
        dims = _parse_dims(cur, andim, f"{what} metadata array {key!r}")
        dt = DTYPE_CODES[acode]
        count = math.prod(dims)
        p = cur.take(count * dt.itemsize, f"{what} metadata array {key!r} data")  # checked before allocating
        if key in e.arrays:
            raise FormatError(f"{what}: metadata array {key!r} appears twice")
        e.arrays[key] = np.frombuffer(cur.buf, dtype=dt, count=count, offset=p).reshape(dims).copy()
    e.arrays_bytes = cur.pos - arrays_start
    e.entry_bytes = cur.pos - start
    return e


def _check_entry(e: _Entry, n_codebooks: int) -> None:
    """Consistency checks that need no payload access (FORMAT.md, "Limits")."""
    what = f"tensor {e.name!r}"
    if not 1 <= e.group <= MAX_GROUP:
        raise FormatError(f"{what}: group {e.group} not in 1..{MAX_GROUP}")
    if not 1 <= e.max_code_length <= MAX_CODE_LENGTH:
        raise FormatError(f"{what}: max code length {e.max_code_length} not in 1..{MAX_CODE_LENGTH}")
    if not 1 <= e.chunk_size <= MAX_CHUNK_SIZE or e.chunk_size % e.group:
        raise FormatError(f"{what}: chunk size {e.chunk_size} invalid for group {e.group}")
    if not 1 <= e.value_range <= MAX_VALUE_RANGE:
        raise FormatError(f"{what}: value range {e.value_range} not in 1..{MAX_VALUE_RANGE}")
    if e.value_range**e.group > MAX_ALPHABET:
        raise FormatError(f"{what}: alphabet value_range**group = {e.value_range**e.group} above {MAX_ALPHABET}")
    info = np.iinfo(e.dtype)
    if e.value_min < info.min or e.value_min + e.value_range - 1 > info.max:
        raise FormatError(
            f"{what}: values {e.value_min}..{e.value_min + e.value_range - 1} do not fit dtype {e.dtype.name}"
        )
    if e.codebook_id >= n_codebooks:
        raise FormatError(f"{what}: codebook {e.codebook_id} does not exist ({n_codebooks} stored)")
    n_symbols = -(-e.n_values // e.group)
    # Every symbol costs at least 1 bit and at most max_code_length bits: this bounds
    # the number of values by the payload size, hence by the file size.
    if not n_symbols <= e.payload_bits <= n_symbols * e.max_code_length:
        raise FormatError(
            f"{what}: {e.payload_bits} payload bits cannot hold {n_symbols} symbols "
            f"of 1..{e.max_code_length} bits"
        )
    if e.payload_length != -(-e.payload_bits // 8):
        raise FormatError(f"{what}: payload length {e.payload_length} bytes != ceil({e.payload_bits} bits / 8)")
    for label, v in (("entropy", e.entropy_bits), ("average code length", e.avg_code_length)):
        if not (math.isfinite(v) and 0.0 <= v <= 64.0):
            raise FormatError(f"{what}: {label} {v!r} out of range")


def _parse_header(buf: memoryview, file_size: int, path: str) -> _Header:
    if file_size < PREAMBLE_SIZE:
        raise FormatError(f"{path}: {file_size} bytes is too short for an .hqt file (preamble is 32 bytes)")
    magic, version, flags, hlen, flen, reserved, hcrc = _PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError(f"{path}: not an .hqt file (bad magic {bytes(magic)!r})")
    if version != FORMAT_VERSION:
        raise FormatError(f"{path}: unsupported .hqt format version {version} (this reader knows {FORMAT_VERSION})")
    if flags or reserved:
        raise FormatError(f"{path}: unknown flags 0x{flags:04x} / reserved 0x{reserved:08x} (must be 0 in version 1)")
    if flen != file_size:
        raise FormatError(f"{path}: file is {file_size} bytes but its header says {flen} (truncated or appended to)")
    if hlen % ALIGNMENT or PREAMBLE_SIZE + hlen > file_size:
        raise FormatError(f"{path}: header length {hlen} invalid for a {file_size}-byte file")
    crc = zlib.crc32(buf[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen], zlib.crc32(buf[:28]))
    if crc != hcrc:
        raise IntegrityError(f"{path}: header checksum mismatch (stored {hcrc:08x}, computed {crc:08x}): header damaged")
    end = PREAMBLE_SIZE + hlen
    cur = _Cursor(buf, PREAMBLE_SIZE, end)
    n_meta = cur.count("metadata count", _U16.size + _U32.size)
    metadata: dict[str, str] = {}
    for _ in range(n_meta):
        k = cur.str_(_U16, "metadata key")
        v = cur.str_(_U32, f"metadata value of {k!r}")
        if k in metadata:
            raise FormatError(f"{path}: metadata key {k!r} appears twice")
        metadata[k] = v
    meta_bytes = cur.pos - PREAMBLE_SIZE
    n_cb = cur.count("codebook count", _U32.size)
    codebooks = []
    for i in range(n_cb):
        (n,) = cur.unpack(_U32, f"codebook {i} length")
        p = cur.take(n, f"codebook {i}")
        codebooks.append(bytes(buf[p : p + n]))
    n_t = cur.count("tensor count", _U16.size + _ENTRY_A.size + _ENTRY_B.size)
    entries = []
    names: set[str] = set()
    for _ in range(n_t):
        e = _parse_entry(cur, n_cb)
        if e.name in names:
            raise FormatError(f"{path}: tensor name {e.name!r} appears twice")
        names.add(e.name)
        entries.append(e)
    if any(buf[cur.pos : end]):
        raise FormatError(f"{path}: non-zero bytes in header padding at offset {cur.pos}")
    if end - cur.pos >= ALIGNMENT:
        raise FormatError(f"{path}: {end - cur.pos} bytes of header padding (at most {ALIGNMENT - 1})")
    used = {e.codebook_id for e in entries}
    if len(used) != n_cb:
        raise FormatError(f"{path}: codebooks {sorted(set(range(n_cb)) - used)} are used by no tensor")
    # Every codebook is validated when the header is read, so that what `info` reports is what decode accepts.
    books = []
    for i, raw in enumerate(codebooks):
        try:
            books.append(Codebook.from_bytes(raw))
        except CodebookError as exc:
            raise CodebookError(f"{path}: codebook {i}: {exc}") from exc
    for e in entries:
        _check_codebook(e, books[e.codebook_id], f"{path}: tensor {e.name!r}")
    # Canonical layout: blocks follow the header in table order with nothing in between,
    # so every byte of the file lies under exactly one checksum.
    pos = end
    for e in entries:
        if e.index_offset != pos:
            raise FormatError(f"{path}: tensor {e.name!r}: index offset {e.index_offset}, expected {pos}")
        pos = align(pos + e.index_length)
        if e.payload_offset != pos:
            raise FormatError(f"{path}: tensor {e.name!r}: payload offset {e.payload_offset}, expected {pos}")
        pos = align(pos + e.payload_length)
        if pos > file_size:
            raise FormatError(f"{path}: tensor {e.name!r}: data ends at byte {pos}, beyond the file ({file_size})")
    if pos != file_size:
        raise FormatError(f"{path}: {file_size - pos} unexplained bytes after the last tensor")
    return _Header(version, flen, hlen, hcrc, metadata, meta_bytes, codebooks, entries, books)


def _check_codebook(e: _Entry, codebook: Codebook, what: str) -> None:
    """A tensor's codebook must cover exactly its alphabet and respect its code-length limit."""
    if codebook.alphabet_size != e.value_range**e.group:
        raise CodebookError(
            f"{what}: codebook {e.codebook_id} has {codebook.alphabet_size} symbols, "
            f"expected value_range**group = {e.value_range**e.group}"
        )
    if codebook.max_length > e.max_code_length:
        raise CodebookError(
            f"{what}: codebook {e.codebook_id} has {codebook.max_length}-bit codes, limit {e.max_code_length}"
        )

