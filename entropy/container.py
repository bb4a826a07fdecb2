"""The ``.hqt`` file format (version 1): many named, Huffman-coded tensors in one file.

The byte layout is specified in ``entropy/FORMAT.md``; this module is its reference
reader and writer. In short: a 32-byte preamble (magic, version, header length, file
length, header CRC32), a header (file metadata strings, a codebook table, a tensor
table), then per tensor its chunk index and its payload, each 8-byte aligned and each
covered by its own CRC32.

Reading never trusts the file: every count, length and offset is checked against the
file size before anything is allocated, the layout must be exactly the canonical one
(so every byte of the file is covered by a checksum), and every failure is an
:class:`~entropy.errors.EntropyError` naming the tensor. No pickle is used anywhere.

Writing fixes the layout from the codec's exact sizes before any payload bit exists, then streams each
large payload into the file while the codec produces it (a second thread writes, checksums and starts the
disk writeback of each finished piece), so the container adds no copy of the payload; the write is atomic
(temporary file, fsync, rename).

Public API::

    save(path, tensors, metadata=None, *, quant=None, max_code_length=12,
         chunk_size=4096, group="auto", share_codebooks=False, durable=True) -> FileInfo
    load(path) -> dict[str, np.ndarray]
    load_tensor(path, name) -> np.ndarray
    load_quant(path, name) -> dict
    dequantize(path, name) -> np.ndarray          # float32
    info(path) -> FileInfo                        # header only, no decoding
    HQTFile(path)                                 # random-access reader (context manager)
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import math
import mmap
import os
import struct
import threading
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from entropy.atomic import atomic_write
from entropy.codebook import Codebook
from entropy.codec import SUPPORTED_DTYPES, CodecParams, EncodedTensor, PreparedEncode, decode_parts, prepare_encode
from entropy.errors import CodebookError, EntropyError, FormatError, IntegrityError, MissingTensorError
from entropy.lengths import MAX_ALPHABET, MAX_SUPPORTED_LENGTH

logger = logging.getLogger(__name__)

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "ALIGNMENT",
    "TensorInfo",
    "FileInfo",
    "HQTFile",
    "save",
    "load",
    "load_tensor",
    "load_quant",
    "dequantize",
    "info",
]

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


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _pad(n: int) -> bytes:
    return bytes(_align(n) - n)


def _dtype_code(dt: np.dtype) -> int | None:
    dt = np.dtype(dt)
    key = "|b1" if dt.kind == "b" else dt.newbyteorder("<").str
    return _CODE_OF_DTYPE.get(key)


# --------------------------------------------------------------------------- info


@dataclass(frozen=True)
class TensorInfo:
    """What the header says about one tensor (no decoding needed). Sizes in bytes."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    n_values: int
    group: int
    max_code_length: int  # bits
    chunk_size: int  # values
    n_chunks: int
    value_min: int
    value_range: int
    codebook_id: int
    codebook_shared: bool
    nominal_bits: float  # bits per value before coding (quant `bits`, else ceil(log2(value_range)))
    entropy_bits: float  # bits per value, order-0 Shannon entropy (computed by the codec)
    avg_code_length: float  # bits per value
    payload_bits: int
    payload_bytes: int
    index_bytes: int
    codebook_bytes: float  # this tensor's share of its (maybe shared) codebook record
    entry_bytes: int  # its record in the tensor table, metadata arrays included
    metadata_bytes: int  # the metadata-array part of entry_bytes
    padding_bytes: int  # alignment padding after its index and payload
    total_bytes: float  # entry + codebook share + index + payload + padding
    coded_bits_per_value: float  # 8 * total_bytes / n_values (0.0 when empty)
    ratio_to_nominal: float | None  # coded_bits_per_value / nominal_bits
    quant_keys: tuple[str, ...]
    index_crc32: int
    payload_crc32: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["quant_keys"] = list(self.quant_keys)
        return d


@dataclass(frozen=True)
class FileInfo:
    """File-level summary of an .hqt file. Sizes in bytes; bits per value over all tensors."""

    path: str
    version: int
    metadata: dict[str, str]
    tensors: tuple[TensorInfo, ...]
    file_bytes: int
    header_bytes: int  # preamble + header (everything before the first index/payload)
    file_metadata_bytes: int  # the file-level string table, its 4-byte count included
    tensor_table_bytes: int  # all tensor records (with their metadata arrays)
    codebook_bytes: int  # codebook records, 4-byte length + bytes, each stored once (count not included)
    index_bytes: int
    payload_bytes: int
    padding_bytes: int  # alignment padding of indexes and payloads
    n_values: int
    bits_per_value: float  # 8 * file_bytes / n_values (0.0 when empty)
    entropy_bits: float  # value-weighted mean of the tensors' entropies
    header_crc32: int
    n_codebooks: int = 0

    def tensor(self, name: str) -> TensorInfo:
        for t in self.tensors:
            if t.name == name:
                return t
        raise MissingTensorError(f"{self.path}: no tensor named {name!r}")

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "tensors"}
        d["tensors"] = [t.to_dict() for t in self.tensors]
        return d


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
        pos = _align(pos + e.index_length)
        if e.payload_offset != pos:
            raise FormatError(f"{path}: tensor {e.name!r}: payload offset {e.payload_offset}, expected {pos}")
        pos = _align(pos + e.payload_length)
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


# --------------------------------------------------------------------------- reader


def _nominal_bits(e: _Entry) -> float:
    bits = e.arrays.get("bits")
    if bits is not None and bits.size:
        # element-weighted over channels: every channel of an axis has the same size
        return float(np.mean(bits.astype(np.float64)))
    levels = e.arrays.get("levels")
    if levels is not None and levels.size:
        return float(np.mean(np.log2(np.maximum(levels.astype(np.float64), 1.0))))
    return float(math.ceil(math.log2(e.value_range))) if e.value_range > 1 else 0.0


def _build_info(path: str, h: _Header) -> FileInfo:
    # one pass for the users of each codebook (linear in the number of tensors)
    n_users = [0] * len(h.codebooks)
    users_values = [0] * len(h.codebooks)
    for e in h.entries:
        n_users[e.codebook_id] += 1
        users_values[e.codebook_id] += e.n_values
    cb_record = [_U32.size + len(cb) for cb in h.codebooks]
    tensors = []
    for e in h.entries:
        i = e.codebook_id
        total_n = users_values[i]
        share = cb_record[i] * (e.n_values / total_n if total_n else 1.0 / n_users[i])
        padding = (_align(e.index_length) - e.index_length) + (_align(e.payload_length) - e.payload_length)
        total = e.entry_bytes + share + e.index_length + e.payload_length + padding
        n = e.n_values
        bpv = 8.0 * total / n if n else 0.0
        nominal = _nominal_bits(e)
        tensors.append(
            TensorInfo(
                name=e.name, shape=e.shape, dtype=e.dtype.name, n_values=n, group=e.group,
                max_code_length=e.max_code_length, chunk_size=e.chunk_size,
                n_chunks=-(-n // e.chunk_size), value_min=e.value_min, value_range=e.value_range,
                codebook_id=e.codebook_id, codebook_shared=n_users[i] > 1, nominal_bits=nominal,
                entropy_bits=e.entropy_bits, avg_code_length=e.avg_code_length,
                payload_bits=e.payload_bits, payload_bytes=e.payload_length, index_bytes=e.index_length,
                codebook_bytes=share, entry_bytes=e.entry_bytes, metadata_bytes=e.arrays_bytes,
                padding_bytes=padding, total_bytes=total, coded_bits_per_value=bpv,
                ratio_to_nominal=(bpv / nominal if nominal and n else None),
                quant_keys=tuple(e.arrays), index_crc32=e.index_crc32, payload_crc32=e.payload_crc32,
            )
        )
    n_all = sum(t.n_values for t in tensors)
    return FileInfo(
        path=path, version=h.version, metadata=dict(h.metadata), tensors=tuple(tensors),
        file_bytes=h.file_length, header_bytes=PREAMBLE_SIZE + h.header_length,
        file_metadata_bytes=h.metadata_bytes, tensor_table_bytes=sum(e.entry_bytes for e in h.entries),
        codebook_bytes=sum(cb_record), index_bytes=sum(e.index_length for e in h.entries),
        payload_bytes=sum(e.payload_length for e in h.entries),
        padding_bytes=sum(t.padding_bytes for t in tensors), n_values=n_all,
        bits_per_value=8.0 * h.file_length / n_all if n_all else 0.0,
        entropy_bits=(sum(t.entropy_bits * t.n_values for t in tensors) / n_all if n_all else 0.0),
        header_crc32=h.header_crc32, n_codebooks=len(h.codebooks),
    )


_PARALLEL_CRC_BYTES = 1 << 20  # payloads at least this large are streamed (write) or checked (read) on a second thread
_POOL: concurrent.futures.ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _crc_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hqt-crc")
        return _POOL


def _forget_pool_after_fork() -> None:
    # a forked child has no copy of the pool's thread: start a fresh pool there
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


class HQTFile:
    """Random-access reader of one .hqt file (memory-mapped; use as a context manager).

    Opening checks the preamble, the header checksum, the whole layout and every codebook;
    reading a tensor touches only that tensor's index and payload, and verifies their
    checksums. ``max_decoded_bytes`` (optional) bounds what one call may return: a read
    whose values would take more bytes (values x item size; the sum over tensors for
    :meth:`read_all`) raises :class:`FormatError` before anything is decoded.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_decoded_bytes: int | None = None) -> None:
        self.path = os.fspath(path)
        self.max_decoded_bytes = _check_limit(max_decoded_bytes)
        self._mm: mmap.mmap | None = None
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < PREAMBLE_SIZE:
                raise FormatError(f"{self.path}: {size} bytes is too short for an .hqt file (preamble is 32 bytes)")
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            view = memoryview(self._mm)
            try:
                self._header = _parse_header(view, size, self.path)
            finally:
                view.release()
        except BaseException:
            self.close()
            raise

    # -- lifecycle
    def close(self) -> None:
        mm, self._mm = self._mm, None
        if mm is not None:
            try:
                mm.close()
            except BufferError:  # an exported view is still alive; the GC unmaps later
                pass

    def __enter__(self) -> HQTFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- header-only queries
    @property
    def names(self) -> list[str]:
        return [e.name for e in self._header.entries]

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._header.metadata)

    def info(self) -> FileInfo:
        return _build_info(self.path, self._header)

    def quant(self, name: str) -> dict[str, Any]:
        """Quantization metadata of ``name``: arrays; 0-d ones as Python int/float."""
        e = self._header.entry(name, self.path)
        out: dict[str, Any] = {}
        for k, a in e.arrays.items():
            out[k] = a.item() if a.ndim == 0 else a.copy()
        return out

    # -- decoding
    def _region(self, offset: int, length: int) -> memoryview:
        if self._mm is None:
            raise FormatError(f"{self.path}: file is closed")
        return memoryview(self._mm)[offset : offset + length]

    def decoded_bytes(self, name: str, *, dequantize: bool = False) -> int:
        """Bytes that reading ``name`` returns: values x item size (float32 when ``dequantize`` and the tensor
        has a stored scale)."""
        e = self._header.entry(name, self.path)
        itemsize = e.dtype.itemsize
        if dequantize and "scale" in e.arrays:
            itemsize = 4
        return e.n_values * itemsize

    def check_decoded_bytes(self, names: list[str], *, dequantize: bool = False) -> None:
        """Raise FormatError if ``names`` together would decode to more than ``max_decoded_bytes`` bytes."""
        if self.max_decoded_bytes is None:
            return
        need = sum(self.decoded_bytes(n, dequantize=dequantize) for n in names)
        if need > self.max_decoded_bytes:
            what = f"tensor {names[0]!r}" if len(names) == 1 else f"{len(names)} tensors"
            raise FormatError(
                f"{self.path}: {what} would decode to {need} bytes, above the limit of "
                f"{self.max_decoded_bytes} bytes (max_decoded_bytes)"
            )

    def read(self, name: str) -> np.ndarray:
        """Decode tensor ``name`` (same shape and dtype as written); verifies its checksums."""
        self.check_decoded_bytes([name])
        return self._decode(self._header.entry(name, self.path))

    def _crc(self, offset: int, length: int) -> int:
        region = self._region(offset, length)
        try:
            return zlib.crc32(region)
        finally:
            region.release()

    def _decode(self, e: _Entry) -> np.ndarray:
        """Decode one tensor; every error names the file and the tensor (once)."""
        what = f"{self.path}: tensor {e.name!r}"
        try:
            return self._decode_checked(e)
        except EntropyError as exc:
            raise type(exc)(f"{what}: {exc}") from exc
        except (ValueError, IndexError, OverflowError, TypeError) as exc:  # codec given hostile data
            raise FormatError(f"{what}: cannot decode ({type(exc).__name__}: {exc})") from exc

    def _decode_checked(self, e: _Entry) -> np.ndarray:
        crc = self._crc(e.index_offset, e.payload_offset - e.index_offset)
        if crc != e.index_crc32:
            raise IntegrityError(f"chunk index checksum mismatch (stored {e.index_crc32:08x}, computed {crc:08x})")
        plen_padded = _align(e.payload_length)
        # A large payload's CRC runs on a second thread while the codec decodes (both
        # release the GIL); the result is returned only once the CRC matches. The codec
        # never trusts its input, so decoding damaged bytes is safe, merely wasted.
        pending = None
        if plen_padded >= _PARALLEL_CRC_BYTES:
            pending = _crc_pool().submit(self._crc, e.payload_offset, plen_padded)
        else:
            _check_payload_crc(e, self._crc(e.payload_offset, plen_padded))
        try:
            out = self._decode_stream(e)
        except BaseException as exc:
            if pending is not None:
                _check_payload_crc(e, pending.result(), cause=exc)
            raise
        if pending is not None:
            _check_payload_crc(e, pending.result())
        return out

    def _decode_stream(self, e: _Entry) -> np.ndarray:
        assert self._mm is not None
        codebook = self._header.books[e.codebook_id]  # validated against the tensor when the header was read
        params = CodecParams(
            group=e.group, max_code_length=e.max_code_length, chunk_size=e.chunk_size,
            value_min=e.value_min, value_range=e.value_range,
        )
        n_chunks = -(-e.n_values // e.chunk_size)
        index = self._region(e.index_offset, e.index_length)
        try:
            chunk_bits = EncodedTensor.parse_index(index, n_chunks, params)
        finally:
            index.release()
        if int(np.sum(chunk_bits, dtype=np.uint64)) != e.payload_bits:
            raise FormatError(f"chunk index adds up to {int(np.sum(chunk_bits))} bits, header says {e.payload_bits}")
        payload = self._region(e.payload_offset, e.payload_length)  # zero-copy view of the map
        try:
            return decode_parts(
                shape=e.shape, dtype=e.dtype.name, params=params, codebook=codebook,
                chunk_bits=chunk_bits, payload=payload,
            )
        finally:
            payload.release()

    def read_all(self) -> dict[str, np.ndarray]:
        """Decode every tensor (file order); ``max_decoded_bytes`` bounds their sum."""
        self.check_decoded_bytes(self.names)
        return {e.name: self._decode(e) for e in self._header.entries}

    def dequantize(self, name: str) -> np.ndarray:
        """(q - zero_point) * scale as float32, broadcast along the stored ``axis``."""
        self.check_decoded_bytes([name], dequantize=True)
        q = self._decode(self._header.entry(name, self.path))
        return _dequantize(q, self.quant(name), f"{self.path}: tensor {name!r}")


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise FormatError(f"max_decoded_bytes must be a non-negative integer or None, got {limit!r}")
    return int(limit)


def _check_payload_crc(e: _Entry, crc: int, cause: BaseException | None = None) -> None:
    if crc != e.payload_crc32:
        raise IntegrityError(
            f"payload checksum mismatch (stored {e.payload_crc32:08x}, computed {crc:08x})"
        ) from cause


def _dequantize(q: np.ndarray, meta: Mapping[str, Any], what: str) -> np.ndarray:
    if "scale" not in meta:
        raise FormatError(f"{what}: no quantization scale stored; cannot dequantize")
    scale = np.asarray(meta["scale"], dtype=np.float32)
    zp = np.asarray(meta.get("zero_point", 0), dtype=np.int64)
    axis = meta.get("axis")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
        raise FormatError(f"{what}: stored channel axis {axis!r} is not an integer")
    if scale.ndim > 1 or zp.ndim > 1:
        raise FormatError(f"{what}: scale/zero_point must be scalars or 1-D per-channel arrays")
    if scale.ndim == 1 or zp.ndim == 1:
        if axis is None:
            if scale.size == 1 and zp.size == 1:
                scale, zp = scale.reshape(()), zp.reshape(())
            else:
                raise FormatError(f"{what}: per-channel parameters but no channel axis stored")
        else:
            ax = int(axis)
            if not -q.ndim <= ax < q.ndim:
                raise FormatError(f"{what}: channel axis {ax} out of range for shape {q.shape}")
            ax %= q.ndim
            c = q.shape[ax]
            bshape = [1] * q.ndim
            bshape[ax] = c
            for label, arr in (("scale", scale), ("zero_point", zp)):
                if arr.ndim == 1 and arr.size not in (1, c):
                    raise FormatError(f"{what}: {label} has {arr.size} entries, axis {ax} has {c} channels")
            scale = scale.reshape(bshape) if scale.size == c else scale.reshape(())
            zp = zp.reshape(bshape) if zp.size == c else zp.reshape(())
    # integer subtraction is exact; one float32 rounding in the product (as quant does)
    return (q.astype(np.int64) - zp).astype(np.float32) * scale


# --------------------------------------------------------------------------- writer


@functools.lru_cache(maxsize=1)
def _tool_name() -> str:
    """``huffquant <version>`` (read once: the package metadata lookup parses files)."""
    try:
        from importlib.metadata import version

        return f"huffquant {version('huffquant')}"
    except Exception:  # not installed as a distribution
        return "huffquant"


def _as_metadata(metadata: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise FormatError(f"file metadata must map str to str; got {k!r}: {type(v).__name__}")
        out[k] = v
    if "tool" not in out:
        out["tool"] = _tool_name()
    return out


def _as_arrays(name: str, meta: Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in (meta or {}).items():
        if v is None:  # e.g. axis=None for per-tensor parameters: absent means None
            continue
        if hasattr(v, "detach"):  # a torch tensor, without importing torch
            v = v.detach().cpu().numpy()
        if isinstance(v, bool):
            a = np.asarray(v, dtype=np.bool_)
        elif isinstance(v, int):
            a = np.asarray(v, dtype=np.int64)
        elif isinstance(v, float):
            a = np.asarray(v, dtype=np.float64)
        else:
            a = np.asarray(v)
        code = _dtype_code(a.dtype)
        if code is None:
            raise FormatError(
                f"tensor {name!r}: metadata {k!r} has dtype {a.dtype}, not one of the storable types "
                f"({', '.join(dt.name for dt in DTYPE_CODES.values())})"
            )
        if a.ndim > MAX_NDIM:
            raise FormatError(f"tensor {name!r}: metadata {k!r} has too many dimensions")
        out[str(k)] = np.array(a, dtype=DTYPE_CODES[code], order="C")  # keeps 0-d arrays 0-d
    return out


def _encode_all(
    tensors: Mapping[str, Any], *, max_code_length: int, chunk_size: int, group: int | str, share_codebooks: bool
) -> dict[str, EncodedTensor | PreparedEncode]:
    encoded: dict[str, EncodedTensor | PreparedEncode] = {}
    arrays: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise FormatError(f"tensor names must be str, got {name!r}")
        if isinstance(t, EncodedTensor):
            encoded[name] = t
            continue
        if hasattr(t, "detach"):
            t = t.detach().cpu().numpy()
        a = np.asarray(t)
        if a.dtype.kind not in "iu" or _dtype_code(a.dtype) not in _TENSOR_DTYPE_CODES:
            raise FormatError(
                f"tensor {name!r} has dtype {a.dtype}; only integer tensors can be coded "
                "(quantize floats first, e.g. with quant.arrays.quantize_array)"
            )
        arrays[name] = a
    if share_codebooks and len(arrays) > 1:
        encoded.update(_encode_shared(arrays, max_code_length=max_code_length, chunk_size=chunk_size, group=group))
    else:
        for name, a in arrays.items():
            encoded[name] = _encode_one(name, a, max_code_length=max_code_length, chunk_size=chunk_size, group=group)
    return {name: encoded[name] for name in tensors}  # keep the caller's order


def _encode_one(
    name: str, a: np.ndarray, *, max_code_length: int, chunk_size: int, group: int | str
) -> PreparedEncode:
    """Codec plan of one tensor (sizes and code; the payload is written later); an explicit group 2 falls back
    to 1 where it cannot apply."""
    if group == 2 and a.size and ((int(a.max()) - int(a.min()) + 1) ** 2 > MAX_ALPHABET or chunk_size % 2):
        logger.info("tensor %r: group 2 impossible (alphabet or odd chunk size), using 1", name)
        group = 1
    try:
        return prepare_encode(a, max_code_length=max_code_length, chunk_size=chunk_size, group=group)
    except EntropyError as exc:
        raise type(exc)(f"tensor {name!r}: {exc}") from exc


def _padded_crc(blob: bytes) -> int:
    """CRC32 of a block and its zero padding up to the alignment."""
    return zlib.crc32(_pad(len(blob)), zlib.crc32(blob))


def _encode_shared(
    arrays: Mapping[str, np.ndarray], *, max_code_length: int, chunk_size: int, group: int | str
) -> dict[str, PreparedEncode]:
    """Code tensors of equal dtype and equal bit width (ceil(log2(range))) with one pooled codebook.

    The pool's alphabet is the union of the members' value ranges; its code is built from
    the summed symbol counts; ``group="auto"`` picks, per pool, the grouping with the fewer
    payload + codebook bits. Pools that cannot share (alphabet too large) and empty
    tensors are coded on their own.
    """
    from entropy import kernels  # numba; only needed here
    from entropy.measures import payload_bits

    pools: dict[tuple[str, int], list[str]] = {}
    out: dict[str, PreparedEncode] = {}
    spans: dict[str, tuple[int, int]] = {}
    for name, a in arrays.items():
        if a.size == 0:
            out[name] = _encode_one(name, a, max_code_length=max_code_length, chunk_size=chunk_size, group=group)
            continue
        lo, hi = int(a.min()), int(a.max())
        spans[name] = (lo, hi)
        pools.setdefault((a.dtype.name, (hi - lo).bit_length()), []).append(name)
    for names in pools.values():
        lo = min(spans[n][0] for n in names)
        R = max(spans[n][1] for n in names) - lo + 1
        ks = [1, 2] if group == "auto" else [int(group)]
        ks = [k for k in ks if R**k <= MAX_ALPHABET and chunk_size % k == 0]
        if len(names) == 1 or not ks:
            for n in names:
                out[n] = _encode_one(n, arrays[n], max_code_length=max_code_length, chunk_size=chunk_size, group=group)
            continue
        best = None
        for k in ks:
            counts = sum(
                kernels.count_symbols(np.ascontiguousarray(arrays[n]).reshape(-1), lo, R, k)[0] for n in names
            )
            cb = Codebook.from_counts(counts, max_length=max_code_length)
            bits = payload_bits(counts, cb.lengths) + cb.serialized_bits
            if best is None or bits < best[0]:
                best = (bits, k, cb)
        _, k, cb = best
        for n in names:
            try:
                out[n] = prepare_encode(
                    arrays[n], max_code_length=max_code_length, chunk_size=chunk_size, group=k,
                    codebook=cb, value_min=lo, value_range=R,
                )
            except EntropyError as exc:
                raise type(exc)(f"tensor {n!r}: {exc}") from exc
    return out


def _pwrite_all(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


_SYNC_FILE_RANGE_WRITE = 2  # Linux: start writeback of the range, do not wait
_writeback: Any = None


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now (Linux ``sync_file_range``), so the final fsync has
    less left to wait for. A no-op where the call does not exist."""
    global _writeback
    if _writeback is None:
        _writeback = False
        try:
            import ctypes

            f = ctypes.CDLL(None, use_errno=True).sync_file_range
            f.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
            _writeback = f
        except (OSError, AttributeError):
            pass
    if _writeback:
        _writeback(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


class _PayloadWriter:
    """Writes one tensor's payload pieces at their offsets and checksums them in order.

    Pieces of 64 KiB or more go to the single I/O thread (pwrite and zlib release the GIL); smaller ones are
    written inline once the thread has caught up, so the CRC always runs over the bytes in file order.
    """

    def __init__(self, fd: int, durable: bool) -> None:
        self.fd = fd
        self.durable = durable
        self.crc = 0
        self.pending: list[concurrent.futures.Future] = []

    def _write(self, data: Any, offset: int) -> None:
        _pwrite_all(self.fd, data, offset)
        self.crc = zlib.crc32(data, self.crc)
        if self.durable and len(data) >= 1 << 16:
            _start_writeback(self.fd, offset, len(data))

    def put(self, data: Any, offset: int) -> None:
        if len(data) >= 1 << 16:
            self.pending.append(_crc_pool().submit(self._write, data, offset))
        else:
            self._drain()
            self._write(data, offset)

    def _drain(self) -> None:
        pending, self.pending = self.pending, []
        concurrent.futures.wait(pending)  # all of them, even when one failed, before the file is closed
        for f in pending:
            f.result()  # re-raises a write error here

    def finish(self) -> int:
        """The CRC32 of everything put since the last call (after all of it is written)."""
        self._drain()
        crc, self.crc = self.crc, 0
        return crc


def save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    *,
    quant: Mapping[str, Mapping[str, Any]] | None = None,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    group: int | str = "auto",
    share_codebooks: bool = False,
    durable: bool = True,
) -> FileInfo:
    """Code ``tensors`` (integer numpy arrays or ready :class:`EncodedTensor`) into one .hqt file.

    ``metadata``: file-level strings (model, method...; ``tool`` is added when missing).
    ``quant``: per tensor name, numeric quantization metadata (``scale``, ``zero_point``,
    ``bits``, ``levels``, ``axis``, or any other named numeric array; ``None`` values are
    skipped). ``max_code_length`` (bits), ``chunk_size`` (values) and ``group`` go to the
    codec; ``share_codebooks`` codes tensors with a common pooled codebook stored once.
    ``group=2`` falls back to 1 for tensors whose alphabet squared exceeds 65536 symbols.
    Identical codebooks are always stored once. The write is atomic (temporary file +
    rename); ``durable=False`` skips the fsyncs (still atomic if the process dies, but not
    across a power loss). Returns the file's
    :class:`FileInfo`.
    """
    quant = dict(quant or {})
    unknown = set(quant) - set(tensors)
    if unknown:
        raise FormatError(f"quantization metadata given for unknown tensors: {sorted(unknown)}")
    meta = _as_metadata(metadata)
    encoded = _encode_all(
        tensors, max_code_length=max_code_length, chunk_size=chunk_size, group=group,
        share_codebooks=share_codebooks,
    )
    codebooks: list[bytes] = []
    cb_ids: dict[bytes, int] = {}
    entries: list[_Entry] = []
    for name, enc in encoded.items():
        cb = enc.codebook.to_bytes()
        cb_id = cb_ids.setdefault(cb, len(codebooks))
        if cb_id == len(codebooks):
            codebooks.append(cb)
        p = enc.params
        code = _dtype_code(np.dtype(enc.dtype))
        if code not in _TENSOR_DTYPE_CODES:
            raise FormatError(f"tensor {name!r}: dtype {enc.dtype} cannot be stored")
        pending = isinstance(enc, PreparedEncode)
        e = _Entry(
            name=name, dtype_code=code, shape=tuple(int(d) for d in enc.shape), group=p.group,
            max_code_length=p.max_code_length, chunk_size=p.chunk_size, value_min=int(p.value_min),
            value_range=int(p.value_range), codebook_id=cb_id, payload_bits=int(enc.accounting.payload_bits),
            index_length=enc.index_length if pending else len(enc.index_bytes()),
            payload_length=enc.payload_length if pending else len(enc.payload),
            entropy_bits=float(enc.accounting.entropy_bits), avg_code_length=float(enc.accounting.avg_code_length),
            arrays=_as_arrays(name, quant.get(name)),
        )
        try:
            _check_entry(e, len(codebooks))
            if len(e.shape) > MAX_NDIM:
                raise FormatError(f"tensor {name!r}: {len(e.shape)} dimensions (at most {MAX_NDIM})")
        except FormatError as exc:
            raise FormatError(f"cannot store: {exc}") from exc
        entries.append(e)
    # Every size is known before a payload bit is written, so the layout is fixed first; the header (whose
    # size depends on neither offsets nor CRCs) goes in last.
    header_length = len(_serialize_header(meta, codebooks, entries))
    pos = PREAMBLE_SIZE + header_length
    for e in entries:
        e.index_offset = pos
        pos = _align(pos + e.index_length)
        e.payload_offset = pos
        pos = _align(pos + e.payload_length)
    with atomic_write(path, size=pos, durable=durable) as fh:
        out = _PayloadWriter(fh.fileno(), durable)
        for e, enc in zip(entries, encoded.values()):
            if isinstance(enc, PreparedEncode):
                if e.payload_length >= _PARALLEL_CRC_BYTES:
                    # large payloads are written and checksummed on a second thread, piece by piece, while the
                    # codec produces the next piece: no copy of the payload, and its disk writeback starts early
                    base = e.payload_offset
                    enc = enc.run(sink=lambda view, off, base=base: out.put(view, base + off))
                else:
                    enc = enc.run()
            if enc.payload:
                out.put(enc.payload, e.payload_offset)
            out.put(_pad(e.payload_length), e.payload_offset + e.payload_length)
            index = enc.index_bytes()
            _pwrite_all(fh.fileno(), index + _pad(len(index)), e.index_offset)
            e.index_crc32 = _padded_crc(index)
            e.payload_crc32 = out.finish()
        header = _serialize_header(meta, codebooks, entries)
        assert len(header) == header_length
        pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, header_length, pos, 0, 0)
        pre = pre[:28] + _U32.pack(zlib.crc32(header, zlib.crc32(pre[:28])))
        _pwrite_all(fh.fileno(), pre + header, 0)
        fh.seek(pos)  # so that the final size check sees the whole file
    path_s = os.fspath(path)
    return _build_info(path_s, _parse_header(memoryview(pre + header), pos, path_s))


# --------------------------------------------------------------------------- convenience


def load(path: str | os.PathLike[str], *, max_decoded_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Decode every tensor of an .hqt file (in file order), verifying all checksums.

    ``max_decoded_bytes``: refuse (FormatError) a file whose tensors would decode to more bytes than this.
    """
    with HQTFile(path, max_decoded_bytes=max_decoded_bytes) as f:
        return f.read_all()


def load_tensor(path: str | os.PathLike[str], name: str, *, max_decoded_bytes: int | None = None) -> np.ndarray:
    """Decode one tensor by name; the other tensors' data is never read. ``max_decoded_bytes`` as in :func:`load`."""
    with HQTFile(path, max_decoded_bytes=max_decoded_bytes) as f:
        return f.read(name)


def load_quant(path: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """The quantization metadata stored with tensor ``name`` (``{}`` if none); no decoding."""
    with HQTFile(path) as f:
        return f.quant(name)


def dequantize(path: str | os.PathLike[str], name: str, *, max_decoded_bytes: int | None = None) -> np.ndarray:
    """Tensor ``name`` as float32: ``(q - zero_point) * scale`` broadcast along ``axis``.

    ``max_decoded_bytes`` bounds the float32 result's bytes."""
    with HQTFile(path, max_decoded_bytes=max_decoded_bytes) as f:
        return f.dequantize(name)


def info(path: str | os.PathLike[str]) -> FileInfo:
    """Sizes, bits per value and statistics of every tensor, from the header alone."""
    with HQTFile(path) as f:
        return f.info()
