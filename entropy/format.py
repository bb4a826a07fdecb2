"""The ``.hqt`` file format's byte layout (FORMAT.md): constants, type codes, records, the size arithmetic of
every part, the serialization of the header, and the parsing primitives that every record version shares (the
header itself is parsed in :mod:`entropy.file.header`).

Parsing never trusts the file: every count, length and offset is checked against the header or the file size
before anything is allocated, the layout must be exactly the canonical one (so every byte of the file is covered
by a checksum), and every codebook is validated against every stream that uses it. Failures are
:class:`~entropy.errors.EntropyError` subclasses naming the file and the tensor.

The size functions (``align``, ``codebook_record_bytes``, ``tensor_record_bytes``, ``index_bytes``, ...) are the
format's own arithmetic, used by the writer to fix the layout and by anyone who wants a file's exact size without
writing it.
"""

from __future__ import annotations

import functools
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from entropy.codec.codebook import Codebook
from entropy.codec.params import SUPPORTED_DTYPES, CodecParams
from entropy.errors import EntropyError, FormatError, MissingTensorError, StreamError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "ALIGNMENT",
    "PREAMBLE_SIZE",
    "DTYPE_CODES",
    "LAYOUTS",
    "align",
    "codebook_record_bytes",
    "stream_record_bytes",
    "map_bytes",
    "array_record_bytes",
    "tensor_record_bytes",
    "index_bytes",
    "payload_bytes",
    "data_bytes",
    "header_bytes",
    "StreamRecord",
    "TensorRecord",
    "Header",
    "serialize_header",
]

MAGIC = b"\x89HQT\r\n\x1a\n"
FORMAT_VERSION = 2  # written
READABLE_VERSIONS = (1, 2)
ALIGNMENT = 8  # bytes; every tensor's index region and payload region starts at a multiple of this

# magic, version, flags, header_length, file_length, reserved, header_crc32
_PREAMBLE = struct.Struct("<8sHHIQII")
PREAMBLE_SIZE = _PREAMBLE.size  # 32
# version 2 tensor record: dtype code, ndim, layout, axis | shape | n_streams, n_arrays, index_crc32,
# payload_crc32, entropy_bits, avg_code_length | streams | map | arrays
_TENSOR_HEAD = struct.Struct("<BBBB")
_TENSOR_BODY = struct.Struct("<IIIIdd")
_STREAM_TAIL = struct.Struct("<IQ")  # codebook_id, payload_bits (after the u16-prefixed parameter block)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ARRAY_HEAD = struct.Struct("<BB")
_MIN_STREAM_BYTES = _U16.size + _STREAM_TAIL.size

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
TENSOR_DTYPE_CODES = frozenset(c for c, dt in DTYPE_CODES.items() if dt.name in SUPPORTED_DTYPES)
DTYPE_NAMES = {c: dt.name for c, dt in DTYPE_CODES.items()}
_DTYPE_BOUNDS = {c: (int(np.iinfo(dt).min), int(np.iinfo(dt).max)) for c, dt in DTYPE_CODES.items()
                 if c in TENSOR_DTYPE_CODES}

#: Tensor layouts, by code (FORMAT.md §4.2): how a tensor's values are split into coded streams.
LAYOUTS = ("single", "channel", "bitwidth", "cluster")
SINGLE, CHANNEL, BITWIDTH, CLUSTER = range(4)
NO_AXIS = 0xFF

MAX_NDIM = 32
MAX_DIM_PRODUCT = 1 << 48  # product of the non-zero dimensions (values)


def dtype_code(dt: np.dtype) -> int | None:
    """The format's type code of a numpy dtype (any byte order), or None if it cannot be stored."""
    dt = np.dtype(dt)
    key = "|b1" if dt.kind == "b" else dt.newbyteorder("<").str
    return _CODE_OF_DTYPE.get(key)


# --------------------------------------------------------------------------- size arithmetic (public)


def align(n_bytes: int) -> int:
    """``n_bytes`` rounded up to the format's alignment (8 bytes)."""
    return -(-n_bytes // ALIGNMENT) * ALIGNMENT


def pad(n_bytes: int) -> bytes:
    """The zero bytes that follow ``n_bytes`` bytes up to the alignment."""
    return bytes(align(n_bytes) - n_bytes)


def codebook_record_bytes(codebook: Codebook | bytes) -> int:
    """Bytes of one codebook-table record: a u32 length and the serialized code lengths."""
    n = len(codebook) if isinstance(codebook, (bytes, bytearray)) else len(codebook.to_bytes())
    return _U32.size + n


@functools.lru_cache(maxsize=4096)
def params_block(params: CodecParams) -> bytes:
    """The stored parameter block of a stream (``CodecParams.to_bytes``; tensors often share equal parameters)."""
    return params.to_bytes()


@functools.lru_cache(maxsize=4096)
def _params_of_block(block: bytes) -> CodecParams:
    return CodecParams.from_bytes(block)


def stream_record_bytes(params: CodecParams) -> int:
    """Bytes of one stream record inside a tensor record: u16 length, parameter block, codebook id, payload bits."""
    return _U16.size + params.block_bytes + _STREAM_TAIL.size


def map_width(n_streams: int) -> int:
    """Bits per entry of a stored channel map: ceil(log2(n_streams)), at least 1."""
    return max(1, (n_streams - 1).bit_length())


def map_bytes(layout: str, n_channels: int, n_streams: int) -> int:
    """Bytes of the channel -> stream map a tensor record stores; only ``cluster`` stores one (the other
    layouts' maps follow from the channel count or from the tensor's ``bits`` array)."""
    if layout != "cluster":
        return 0
    return -(-n_channels * map_width(n_streams) // 8)


def array_record_bytes(name: str, array: np.ndarray) -> int:
    """Bytes of one metadata array in a tensor record: name, type code, ndim, shape, data."""
    a = np.asarray(array)
    return _U16.size + len(name.encode("utf-8")) + _ARRAY_HEAD.size + 8 * a.ndim + a.size * a.dtype.itemsize


def tensor_record_bytes(
    name: str,
    ndim: int,
    streams: Sequence[CodecParams],
    *,
    layout: str = "single",
    n_channels: int = 0,
    arrays: Mapping[str, np.ndarray] | None = None,
) -> int:
    """Bytes of a tensor's record in the tensor table (version 2), its streams, map and metadata arrays included.

    ``streams``: the parameters of each coded stream (one per codebook of the tensor).
    """
    n = _U16.size + len(name.encode("utf-8")) + _TENSOR_HEAD.size + 8 * ndim + _TENSOR_BODY.size
    n += sum(stream_record_bytes(p) for p in streams)
    n += map_bytes(layout, n_channels, len(streams))
    n += sum(array_record_bytes(k, v) for k, v in (arrays or {}).items())
    return n


def index_bytes(params: CodecParams, n_values: int) -> int:
    """Bytes of a stream's chunk index: one entry of ``params.index_entry_bytes`` per chunk (the codec's
    chunking, :meth:`CodecParams.n_chunks`)."""
    return params.index_bytes(params.n_chunks(n_values))


def payload_bytes(payload_bits: int) -> int:
    """Bytes of a stream's payload (its bits rounded up to a byte)."""
    return -(-payload_bits // 8)


def data_bytes(index_length: int, payload_length: int) -> int:
    """Bytes of a tensor's data block: its index region and its payload region, each padded to the alignment."""
    return align(index_length) + align(payload_length)


def header_bytes(metadata: Mapping[str, str], codebooks: Sequence[bytes], record_lengths: Sequence[int]) -> int:
    """Bytes of the preamble and the header (padded): file metadata, codebook table, tensor records."""
    n = _U32.size + sum(_U16.size + len(k.encode()) + _U32.size + len(v.encode()) for k, v in metadata.items())
    n += _U32.size + sum(codebook_record_bytes(cb) for cb in codebooks)
    n += _U32.size + sum(record_lengths)
    return align(PREAMBLE_SIZE + n)


# --------------------------------------------------------------------------- records


@dataclass
class StreamRecord:
    """One coded stream of a tensor: its parameters, codebook and payload size; offsets are absolute."""

    params: CodecParams
    codebook_id: int
    payload_bits: int
    n_values: int = 0
    index_offset: int = 0
    payload_offset: int = 0
    _n_chunks: int | None = field(default=None, repr=False)
    _index_length: int | None = field(default=None, repr=False)

    # computed once (n_values is final by the time it is first asked for: the layout is placed after parsing;
    # a plain attribute, not functools.cached_property, whose lock costs a lot on files of many small tensors)
    @property
    def n_chunks(self) -> int:
        if self._n_chunks is None:
            try:
                self._n_chunks = self.params.n_chunks(self.n_values)  # the codec's chunking (rows, if any)
            except StreamError as exc:
                raise FormatError(f"stream of {self.n_values} values: {exc}") from None
        return self._n_chunks

    @property
    def index_length(self) -> int:
        if self._index_length is None:
            self._index_length = self.n_chunks * self.params.index_entry_bytes
        return self._index_length

    @property
    def payload_length(self) -> int:
        return -(-self.payload_bits // 8)


@dataclass
class TensorRecord:
    """One tensor of the tensor table (both versions). Offsets are absolute; lengths exclude padding."""

    name: str
    dtype_code: int
    shape: tuple[int, ...]
    layout: int
    axis: int | None
    streams: list[StreamRecord]
    arrays: dict[str, np.ndarray]
    entropy_bits: float
    avg_code_length: float
    channel_map: np.ndarray | None = None  # stream of each channel (layouts other than single)
    index_crc32: int = 0
    payload_crc32: int = 0
    index_offset: int = 0
    payload_offset: int = 0
    record_bytes: int = 0
    arrays_bytes: int = 0
    map_bytes: int = 0
    stored_offsets: tuple[int, int, int, int] | None = None  # version 1: index offset/length, payload offset/length
    _channels: dict[int, np.ndarray] | None = field(default=None, repr=False)  # (made when first needed)

    @property
    def n_values(self) -> int:
        return math.prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return DTYPE_CODES[self.dtype_code]

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.dtype_code]

    @property
    def layout_name(self) -> str:
        return LAYOUTS[self.layout]

    @property
    def n_channels(self) -> int:
        """Channels along the channel axis (1 without an axis)."""
        return 1 if self.axis is None else self.shape[self.axis]

    @property
    def row_length(self) -> int:
        """Values per channel."""
        c = self.n_channels
        return self.n_values // c if c else 0

    @property
    def index_length(self) -> int:
        return sum(s.index_length for s in self.streams)

    @property
    def payload_length(self) -> int:
        return sum(s.payload_length for s in self.streams)

    def stream_channels(self, j: int) -> np.ndarray:
        """Channels of stream ``j`` in increasing order (int64)."""
        if self._channels is None:
            self._channels = {}
        got = self._channels.get(j)
        if got is None:
            if self.channel_map is None:
                got = np.arange(self.n_channels, dtype=np.int64)
            else:
                got = np.flatnonzero(self.channel_map == j).astype(np.int64)
            self._channels[j] = got
        return got


@dataclass
class Header:
    """Everything the header says, parsed and checked."""

    version: int
    file_length: int
    header_length: int
    header_crc32: int
    metadata: dict[str, str]
    metadata_bytes: int
    codebooks: list[bytes]
    books: list[Codebook]  # the parsed (validated) codebooks, by id
    tensors: list[TensorRecord]
    _by_name: dict[str, TensorRecord] | None = field(default=None, repr=False)

    def tensor(self, name: str, path: str) -> TensorRecord:
        if self._by_name is None:  # names are unique (checked when parsed)
            self._by_name = {t.name: t for t in self.tensors}
        t = self._by_name.get(name)
        if t is None:
            raise MissingTensorError(f"{path}: no tensor named {name!r} (has {len(self.tensors)} tensors)")
        return t


# --------------------------------------------------------------------------- serialization (version 2)


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


def pack_map(channel_map: np.ndarray, n_streams: int) -> bytes:
    """A channel -> stream map as ``map_width`` bits per channel, MSB-first, zero bits up to a byte."""
    w = map_width(n_streams)
    m = np.asarray(channel_map, dtype=np.uint64)
    bits = ((m[:, None] >> np.arange(w - 1, -1, -1, dtype=np.uint64)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bits).tobytes()


def _unpack_map(buf: bytes, n_channels: int, n_streams: int) -> np.ndarray:
    w = map_width(n_streams)
    bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8))
    if bits[n_channels * w :].any():
        raise FormatError("non-zero padding bits after the channel map")
    groups = bits[: n_channels * w].reshape(n_channels, w).astype(np.uint64)
    return (groups << np.arange(w - 1, -1, -1, dtype=np.uint64)).sum(axis=1).astype(np.int64)


def serialize_record(t: TensorRecord) -> bytes:
    """A version-2 tensor record (FORMAT.md §4.1)."""
    parts = [
        _str16(t.name, f"tensor name {t.name[:40]!r}"),
        _TENSOR_HEAD.pack(t.dtype_code, len(t.shape), t.layout, NO_AXIS if t.axis is None else t.axis),
        b"".join(_U64.pack(d) for d in t.shape),
        _TENSOR_BODY.pack(len(t.streams), len(t.arrays), t.index_crc32, t.payload_crc32, t.entropy_bits,
                          t.avg_code_length),
    ]
    for s in t.streams:
        block = params_block(s.params)
        parts += [_U16.pack(len(block)), block, _STREAM_TAIL.pack(s.codebook_id, s.payload_bits)]
    if t.layout == CLUSTER:
        parts.append(pack_map(t.channel_map, len(t.streams)))
    for key, arr in t.arrays.items():
        code = dtype_code(arr.dtype)
        parts.append(_str16(key, f"metadata array name {key!r} of tensor {t.name!r}"))
        parts.append(_ARRAY_HEAD.pack(code, arr.ndim))
        parts.append(b"".join(_U64.pack(d) for d in arr.shape))
        parts.append(np.asarray(arr, dtype=DTYPE_CODES[code]).tobytes(order="C"))
    return b"".join(parts)


def serialize_header(metadata: Mapping[str, str], codebooks: list[bytes], records: list[bytes]) -> bytes:
    """The header (after the preamble), padded: file metadata, codebook table, the serialized tensor records."""
    parts = [_U32.pack(len(metadata))]
    for k, v in metadata.items():
        parts.append(_str16(k, f"metadata key {k[:40]!r}"))
        parts.append(_str32(v, f"metadata value of {k!r}"))
    parts.append(_U32.pack(len(codebooks)))
    for cb in codebooks:
        parts.append(_U32.pack(len(cb)))
        parts.append(cb)
    parts.append(_U32.pack(len(records)))
    parts.extend(records)
    body = b"".join(parts)
    return body + pad(PREAMBLE_SIZE + len(body))


def preamble(header: bytes, file_length: int) -> bytes:
    """The 32-byte preamble of a version-2 file whose header is ``header``."""
    pre = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(header), file_length, 0, 0)
    return pre[:28] + _U32.pack(zlib.crc32(header, zlib.crc32(pre[:28])))


# --------------------------------------------------------------------------- parsing


class Cursor:
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

    def bytes_(self, n: int, what: str) -> bytes:
        p = self.take(n, what)
        return bytes(self.buf[p : p + n])

    def str_(self, width: struct.Struct, what: str) -> str:
        (n,) = self.unpack(width, what)
        p = self.take(n, what)
        try:
            return bytes(self.buf[p : p + n]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what} at offset {p} is not valid UTF-8") from exc

    def count(self, what: str, min_item_bytes: int, n: int | None = None) -> int:
        if n is None:
            (n,) = self.unpack(_U32, what)
        if n * min_item_bytes > self.end - self.pos:
            raise FormatError(f"{what} = {n} cannot fit in the {self.end - self.pos} header bytes left")
        return n


def parse_dims(cur: Cursor, ndim: int, what: str) -> tuple[int, ...]:
    if ndim > MAX_NDIM:
        raise FormatError(f"{what}: {ndim} dimensions (at most {MAX_NDIM})")
    p = cur.take(8 * ndim, f"{what} shape")
    dims = struct.unpack_from(f"<{ndim}Q", cur.buf, p)
    if math.prod(max(d, 1) for d in dims) > MAX_DIM_PRODUCT:
        raise FormatError(f"{what}: shape {dims} is beyond the format's limit of 2**48 values")
    return tuple(dims)


def parse_arrays(cur: Cursor, n_arrays: int, what: str) -> dict[str, np.ndarray]:
    """The metadata arrays of a tensor record (FORMAT.md §4.3); sizes checked before anything is allocated."""
    cur.count(f"{what}: metadata array count", _U16.size + _ARRAY_HEAD.size, n_arrays)
    arrays: dict[str, np.ndarray] = {}
    for _ in range(n_arrays):
        key = cur.str_(_U16, f"{what} metadata array name")
        acode, andim = cur.unpack(_ARRAY_HEAD, f"{what} metadata array {key!r}")
        if acode not in DTYPE_CODES:
            raise FormatError(f"{what}: metadata array {key!r} has unknown type code {acode}")
        dims = parse_dims(cur, andim, f"{what} metadata array {key!r}")
        dt = DTYPE_CODES[acode]
        count = math.prod(dims)
        p = cur.take(count * dt.itemsize, f"{what} metadata array {key!r} data")  # checked before allocating
        if key in arrays:
            raise FormatError(f"{what}: metadata array {key!r} appears twice")
        if dt.kind == "b" and count:  # a bool is the byte 0 or 1 (FORMAT.md §4.4), not any byte
            raw = np.frombuffer(cur.buf, dtype=np.uint8, count=count, offset=p)
            if (raw > 1).any():
                bad = int(np.flatnonzero(raw > 1)[0])
                raise FormatError(f"{what}: metadata array {key!r} (bool) has byte {int(raw[bad])} at entry {bad} "
                                  "(a bool is 0 or 1)")
        arrays[key] = np.frombuffer(cur.buf, dtype=dt, count=count, offset=p).reshape(dims).copy()
    return arrays


def check_tensor_dtype(code: int, what: str) -> None:
    if code not in TENSOR_DTYPE_CODES:
        raise FormatError(f"{what}: unknown or non-integer dtype code {code}")


def check_stream(t: TensorRecord, j: int, s: StreamRecord, n_codebooks: int) -> None:
    """Checks of one stream that need no payload access: alphabet within the dtype, codebook id, and a payload
    size that can hold its values (this bounds the values by the file size before anything is allocated)."""

    def where() -> str:  # (formatted on errors only: files may hold tens of thousands of streams)
        return f"tensor {t.name!r}" + (f" stream {j}" if len(t.streams) > 1 else "")

    p = s.params
    lo, hi = _DTYPE_BOUNDS[t.dtype_code]
    if p.value_min < lo or p.value_min + p.value_range - 1 > hi:
        raise FormatError(
            f"{where()}: values {p.value_min}..{p.value_min + p.value_range - 1} do not fit dtype {t.dtype_name}"
        )
    if s.codebook_id >= n_codebooks:
        raise FormatError(f"{where()}: codebook {s.codebook_id} does not exist ({n_codebooks} stored)")
    try:
        lo_bits, hi_bits = payload_bits_bounds(p, s.n_values)
    except StreamError as exc:  # e.g. a value count that is not whole rows of the stream's row length
        raise FormatError(f"{where()}: {exc}") from None
    if not lo_bits <= s.payload_bits <= hi_bits:
        raise FormatError(
            f"{where()}: {s.payload_bits} payload bits cannot hold {s.n_values} values "
            f"(between {lo_bits} and {hi_bits} bits)"
        )


def payload_bits_bounds(params: CodecParams, n_values: int) -> tuple[int, int]:
    """Fewest and most payload bits a stream of ``n_values`` values can have: the codec's rule
    (:meth:`CodecParams.payload_bit_bounds`, FORMAT.md §6)."""
    return params.payload_bit_bounds(n_values)


def check_informational(t: TensorRecord) -> None:
    for label, v in (("entropy", t.entropy_bits), ("average code length", t.avg_code_length)):
        if not (math.isfinite(v) and 0.0 <= v <= 64.0):
            raise FormatError(f"tensor {t.name!r}: {label} {v!r} out of range")


def place(tensors: list[TensorRecord], pos: int, path: str = "") -> int:
    """Assign every tensor's and stream's offsets from the canonical layout (FORMAT.md §2), starting after the
    header at ``pos``; returns where the data ends (the file's length). Data blocks follow the header in table
    order with nothing in between, so every byte lies under exactly one checksum. Version-1 records' stored
    offsets must be exactly these."""
    for t in tensors:
        t.index_offset = pos
        for s in t.streams:
            s.index_offset = pos
            pos += s.index_length
        index_end = pos
        pos = t.payload_offset = align(pos)
        for s in t.streams:
            s.payload_offset = pos
            pos += s.payload_length
        payload_end = pos
        pos = align(pos)
        if t.stored_offsets is not None and t.stored_offsets != (
            t.index_offset, index_end - t.index_offset, t.payload_offset, payload_end - t.payload_offset
        ):
            raise FormatError(
                f"{path}: tensor {t.name!r}: stored index/payload offsets and lengths {t.stored_offsets} are not the "
                f"canonical ({t.index_offset}, {index_end - t.index_offset}, {t.payload_offset}, "
                f"{payload_end - t.payload_offset})"
            )
    return pos
