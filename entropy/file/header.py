"""Parsing a whole ``.hqt`` header (FORMAT.md §3-4): preamble checks, metadata, the codebook table and the tensor
records of every readable version (version 2 here, version 1 in :mod:`entropy.file.format_v1`), then the codebook
checks and the canonical placement of every tensor's data.

Nothing is trusted: every count is checked against the header bytes left before anything is allocated, every
codebook is validated against every stream that uses it, and the data must end exactly at the file's end.
"""

from __future__ import annotations

import zlib

import numpy as np

from entropy.codec.codebook import Codebook
from entropy.codec.params import CodecParams
from entropy.errors import CodebookError, EntropyError, FormatError, IntegrityError
from entropy.format import (
    ALIGNMENT, BITWIDTH, CHANNEL, CLUSTER, LAYOUTS, MAGIC, NO_AXIS, PREAMBLE_SIZE, READABLE_VERSIONS, SINGLE,
    Cursor, Header, StreamRecord,
    TensorRecord, _MIN_STREAM_BYTES, _PREAMBLE, _STREAM_TAIL, _TENSOR_BODY, _TENSOR_HEAD, _U16, _U32,
    _params_of_block, _unpack_map, check_informational, check_stream, check_tensor_dtype, map_bytes,
    parse_arrays, parse_dims, place,
)
from entropy.file.format_v1 import MIN_RECORD_BYTES as _MIN_RECORD_BYTES_V1, parse_record_v1

__all__ = ["parse_header"]


def _parse_params(block: bytes, what: str) -> CodecParams:
    try:
        return _params_of_block(block)
    except EntropyError as exc:
        raise FormatError(f"{what}: {exc}") from exc


def _bitwidth_map(t: TensorRecord, what: str) -> np.ndarray:
    """Layout ``bitwidth``: channel c goes to stream r where bits[c] is the r-th smallest distinct width."""
    bits = t.arrays.get("bits")
    C = t.n_channels
    if bits is None or bits.ndim != 1 or bits.size != C or bits.dtype.kind not in "iuf":
        raise FormatError(f"{what}: layout bitwidth needs a 1-D numeric 'bits' array of {C} entries")
    b = bits.astype(np.float64)
    if not np.isfinite(b).all():
        raise FormatError(f"{what}: 'bits' has non-finite entries")
    widths, inverse = np.unique(b, return_inverse=True)
    if widths.size != len(t.streams):
        raise FormatError(f"{what}: {widths.size} distinct bit widths but {len(t.streams)} streams")
    return inverse.astype(np.int64)


def _parse_record_v2(cur: Cursor, n_codebooks: int) -> TensorRecord:
    start = cur.pos
    name = cur.str_(_U16, "tensor name")
    what = f"tensor {name!r}"
    code, ndim, layout, axis = cur.unpack(_TENSOR_HEAD, f"{what} record")
    check_tensor_dtype(code, what)
    if layout >= len(LAYOUTS):
        raise FormatError(f"{what}: unknown layout {layout}")
    shape = parse_dims(cur, ndim, what)
    if axis == NO_AXIS:
        axis_ = None
        if layout != SINGLE:
            raise FormatError(f"{what}: layout {LAYOUTS[layout]} needs a channel axis")
    elif axis < ndim:
        axis_ = axis
    else:
        raise FormatError(f"{what}: channel axis {axis} for {ndim} dimensions")
    n_streams, n_arrays, icrc, pcrc, ent, avg = cur.unpack(_TENSOR_BODY, f"{what} record")
    cur.count(f"{what}: stream count", _MIN_STREAM_BYTES, n_streams)
    if n_streams < 1:
        raise FormatError(f"{what}: no stream (at least one is needed)")
    streams = []
    for j in range(n_streams):
        (plen,) = cur.unpack(_U16, f"{what} stream {j}")
        params = _parse_params(cur.bytes_(plen, f"{what} stream {j} parameters"), f"{what} stream {j}")
        cb_id, bits = cur.unpack(_STREAM_TAIL, f"{what} stream {j}")
        streams.append(StreamRecord(params, cb_id, bits))
    t = TensorRecord(name, code, shape, layout, axis_, streams, {}, ent, avg, index_crc32=icrc, payload_crc32=pcrc)
    C, n = t.n_channels, t.n_values
    if layout != SINGLE and n == 0:
        raise FormatError(f"{what}: layout {LAYOUTS[layout]} of an empty tensor")
    map_start = cur.pos
    if layout == SINGLE:
        if n_streams != 1:
            raise FormatError(f"{what}: layout single with {n_streams} streams")
    elif layout == CHANNEL:
        if n_streams != C:
            raise FormatError(f"{what}: layout channel with {n_streams} streams for {C} channels")
        t.channel_map = np.arange(C, dtype=np.int64)
    elif layout == CLUSTER:
        if n_streams > C:
            raise FormatError(f"{what}: {n_streams} clusters for {C} channels")
        buf = cur.bytes_(map_bytes("cluster", C, n_streams), f"{what} channel map")  # bounded by the header
        try:
            m = _unpack_map(buf, C, n_streams)
        except FormatError as exc:
            raise FormatError(f"{what}: {exc}") from None
        # canonical: streams are numbered in order of their first channel, so each is used and each number
        # is at most one more than every number before it
        first_new = np.maximum.accumulate(np.concatenate(([-1], m[:-1])))
        if int(m.max()) != n_streams - 1 or (m > first_new + 1).any():
            bad = int(np.flatnonzero(m > first_new + 1)[0]) if (m > first_new + 1).any() else int(np.argmax(m))
            raise FormatError(
                f"{what}: channel map entry {bad} = {int(m[bad])} is out of order or range for {n_streams} streams"
            )
        t.channel_map = m
    t.map_bytes = cur.pos - map_start
    arrays_start = cur.pos
    t.arrays = parse_arrays(cur, n_arrays, what)
    t.arrays_bytes = cur.pos - arrays_start
    t.record_bytes = cur.pos - start
    if layout == BITWIDTH:
        t.channel_map = _bitwidth_map(t, what)
    M = t.row_length
    for j, s in enumerate(streams):
        s.n_values = n if layout == SINGLE else int(t.stream_channels(j).size) * M
        check_stream(t, j, s, n_codebooks)
    check_informational(t)
    return t


def check_codebook(t: TensorRecord, books: list[Codebook], what: str) -> None:
    """Each stream's codebook must cover exactly its alphabet and respect its code-length limit."""
    for j, s in enumerate(t.streams):
        cb = books[s.codebook_id]
        p = s.params
        where = f"{what}" + (f" stream {j}" if len(t.streams) > 1 else "")
        if cb.alphabet_size != p.alphabet_size:
            raise CodebookError(
                f"{where}: codebook {s.codebook_id} has {cb.alphabet_size} symbols, "
                f"expected value_range**group = {p.value_range}**{p.group} = {p.alphabet_size}"
            )
        if cb.max_length > p.max_code_length:
            raise CodebookError(
                f"{where}: codebook {s.codebook_id} has {cb.max_length}-bit codes, limit {p.max_code_length}"
            )
        if p.stored and cb.n_present:
            raise CodebookError(f"{where}: a stored stream's codebook {s.codebook_id} must be the empty code")


def parse_header(buf: memoryview, file_size: int, path: str) -> Header:
    """Parse and check the preamble, the header and the layout of a file of ``file_size`` bytes."""
    if file_size < PREAMBLE_SIZE:
        raise FormatError(f"{path}: {file_size} bytes is too short for an .hqt file (preamble is 32 bytes)")
    magic, version, flags, hlen, flen, reserved, hcrc = _PREAMBLE.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError(f"{path}: not an .hqt file (bad magic {bytes(magic)!r})")
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f"{path}: unsupported .hqt format version {version} (this reader knows "
            f"{', '.join(map(str, READABLE_VERSIONS))})"
        )
    if flags or reserved:
        raise FormatError(f"{path}: unknown flags 0x{flags:04x} / reserved 0x{reserved:08x} (must be 0)")
    if flen != file_size:
        raise FormatError(f"{path}: file is {file_size} bytes but its header says {flen} (truncated or appended to)")
    if hlen % ALIGNMENT or PREAMBLE_SIZE + hlen > file_size:
        raise FormatError(f"{path}: header length {hlen} invalid for a {file_size}-byte file")
    crc = zlib.crc32(buf[PREAMBLE_SIZE : PREAMBLE_SIZE + hlen], zlib.crc32(buf[:28]))
    if crc != hcrc:
        raise IntegrityError(f"{path}: header checksum mismatch (stored {hcrc:08x}, computed {crc:08x}): header damaged")
    end = PREAMBLE_SIZE + hlen
    cur = Cursor(buf, PREAMBLE_SIZE, end)
    try:
        n_meta = cur.count("metadata count", _U16.size + _U32.size)
        metadata: dict[str, str] = {}
        for _ in range(n_meta):
            k = cur.str_(_U16, "metadata key")
            v = cur.str_(_U32, f"metadata value of {k!r}")
            if k in metadata:
                raise FormatError(f"metadata key {k!r} appears twice")
            metadata[k] = v
        meta_bytes = cur.pos - PREAMBLE_SIZE
        n_cb = cur.count("codebook count", _U32.size)
        codebooks = []
        for i in range(n_cb):
            (n,) = cur.unpack(_U32, f"codebook {i} length")
            codebooks.append(cur.bytes_(n, f"codebook {i}"))
        if version == 1:
            parse_record, MIN_RECORD_BYTES = parse_record_v1, _MIN_RECORD_BYTES_V1
        else:
            parse_record, MIN_RECORD_BYTES = _parse_record_v2, _U16.size + _TENSOR_HEAD.size + _TENSOR_BODY.size
        n_t = cur.count("tensor count", MIN_RECORD_BYTES)
        tensors: list[TensorRecord] = []
        names: set[str] = set()
        for _ in range(n_t):
            t = parse_record(cur, n_cb)
            if t.name in names:
                raise FormatError(f"tensor name {t.name!r} appears twice")
            names.add(t.name)
            tensors.append(t)
    except FormatError as exc:
        raise type(exc)(f"{path}: {exc}") from exc
    if any(buf[cur.pos : end]):
        raise FormatError(f"{path}: non-zero bytes in header padding at offset {cur.pos}")
    if end - cur.pos >= ALIGNMENT:
        raise FormatError(f"{path}: {end - cur.pos} bytes of header padding (at most {ALIGNMENT - 1})")
    used = {s.codebook_id for t in tensors for s in t.streams}
    if len(used) != n_cb:
        raise FormatError(f"{path}: codebooks {sorted(set(range(n_cb)) - used)[:10]} are used by no stream")
    # Every codebook is validated when the header is read, so that what `info` reports is what decode accepts.
    books = []
    for i, raw in enumerate(codebooks):
        try:
            books.append(Codebook.from_bytes(raw))
        except CodebookError as exc:
            raise CodebookError(f"{path}: codebook {i}: {exc}") from exc
    for t in tensors:
        check_codebook(t, books, f"{path}: tensor {t.name!r}")
    pos = place(tensors, end, path)
    if pos != file_size:
        raise FormatError(f"{path}: {file_size - pos} unexplained bytes after the last tensor" if pos < file_size
                          else f"{path}: the tensors' data ends at byte {pos}, beyond the file ({file_size})")
    return Header(version, flen, hlen, hcrc, metadata, meta_bytes, codebooks, books, tensors)
