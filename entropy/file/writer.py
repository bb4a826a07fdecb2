"""Writing ``.hqt`` files: :func:`save`, and :func:`write_plan` for a plan made by :func:`entropy.plan_file`.

The file is planned first (:mod:`entropy.file.plan`: every layout and size fixed from exact closed forms, before any
payload bit exists); each large payload is then streamed into the file while the codec produces it (the I/O
thread writes, checksums and starts the disk writeback of each finished piece), so the writer adds no copy of the
payload. Small pieces are gathered and written in few system calls. The header goes in last. The write is atomic
(temporary file, fdatasync, rename; :mod:`entropy.file.atomic`).

What the writer always checks: that the codec's payload and index sizes of every stream equal the plan (so the
layout in the header is the layout on disk), and that the header it wrote parses. ``verify=True`` adds a full
decode of the written file, compared value by value with the input, before it replaces the target.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from entropy.file import iothread
from entropy.file.atomic import atomic_write
from entropy.codec.streams import PreparedEncode, decode
from entropy.errors import FormatError, IntegrityError
from entropy.format import (
    LAYOUTS, PREAMBLE_SIZE, StreamRecord, TensorRecord, pad, place, preamble,
    serialize_header, serialize_record,
)
from entropy.file.header import parse_header
from entropy.file.info import FileInfo, build_info
from entropy.layout.search import prepare_streams
from entropy.file.options import FileOptions
from entropy.file.plan import FilePlan, TensorPlan, plan_file
from entropy.codec.threads import using as using_threads

__all__ = ["save", "write_plan"]

logger = logging.getLogger(__name__)

_SMALL = 1 << 16  # pieces below this are gathered and written inline; larger ones go to the I/O thread
_GATHER = 1 << 20  # bytes of small pieces gathered before one write


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


class _DataWriter:
    """Writes pieces at their offsets; checksums the pieces put with ``crc=True`` in the order they were put.

    Pieces of 64 KiB or more go to the single I/O thread (pwrite and zlib release the GIL); smaller ones are
    checksummed inline once the thread has caught up (so the CRC runs over the bytes in file order) and gathered
    into one buffer while they are contiguous.
    """

    def __init__(self, fd: int, durable: bool) -> None:
        self.fd = fd
        self.durable = durable
        self.crc = 0
        self.pending: list[concurrent.futures.Future] = []
        self.buf = bytearray()
        self.buf_at = 0

    def _write_large(self, data: Any, offset: int, crc: bool) -> None:
        _pwrite_all(self.fd, data, offset)
        if crc:
            self.crc = zlib.crc32(data, self.crc)
        if self.durable:
            _start_writeback(self.fd, offset, len(data))

    def put(self, data: Any, offset: int, *, crc: bool = True) -> None:
        if len(data) >= _SMALL:
            self.pending.append(iothread.io_pool().submit(self._write_large, data, offset, crc))
            return
        if crc:
            self._drain()
            self.crc = zlib.crc32(data, self.crc)
        if self.buf and (offset != self.buf_at + len(self.buf) or len(self.buf) >= _GATHER):
            self.flush()
        if not self.buf:
            self.buf_at = offset
        self.buf += data

    def flush(self) -> None:
        if self.buf:
            _pwrite_all(self.fd, self.buf, self.buf_at)
            self.buf = bytearray()

    def _drain(self) -> None:
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        concurrent.futures.wait(pending)  # all of them, even when one failed, before the file is closed
        for f in pending:
            f.result()  # re-raises a write error here

    def finish(self) -> int:
        """The CRC32 of everything put with ``crc=True`` since the last call (all of it written or gathered)."""
        self._drain()
        crc, self.crc = self.crc, 0
        return crc

    def close(self) -> None:
        self._drain()
        self.flush()


def _records(plan: FilePlan) -> list[TensorRecord]:
    ids = {b: i for i, b in enumerate(plan.codebooks)}
    out = []
    for p in plan.tensors:
        c = p.choice
        streams = [StreamRecord(s.params, ids[s.codebook.to_bytes()], s.payload_bits, s.n_values) for s in c.streams]
        out.append(TensorRecord(
            p.name, p.dtype_code, p.shape, LAYOUTS.index(c.layout), c.axis, streams, p.arrays, float(c.entropy_bits),
            float(c.avg_code_length), channel_map=c.channel_map,
        ))
    return out


def _write_tensor(out: _DataWriter, p: TensorPlan, rec: TensorRecord) -> None:
    """Code and write one tensor's streams at their places; sets the record's CRCs."""
    sources = prepare_streams(p.values, p.choice) if p.values is not None else [s.source for s in p.choice.streams]
    done = []
    for src, s in zip(sources, rec.streams):
        if isinstance(src, PreparedEncode):
            if s.payload_length >= iothread.PARALLEL_CRC_BYTES:
                # large payloads are written and checksummed on the I/O thread, piece by piece, while the codec
                # produces the next piece: no copy of the payload, and its disk writeback starts early
                base = s.payload_offset
                src = src.run(sink=lambda view, off, base=base: out.put(view, base + off))
            else:
                src = src.run()
        if src.accounting.payload_bits != s.payload_bits or src.n_chunks != s.n_chunks:
            raise FormatError(f"tensor {p.name!r}: the codec's stream differs from the plan")
        if src.payload:
            out.put(src.payload, s.payload_offset)
        done.append(src)
    out.put(pad(rec.payload_length), rec.payload_offset + rec.payload_length)
    index = b"".join(e.index_bytes() for e in done)
    index += pad(len(index))
    out.put(index, rec.index_offset, crc=False)
    rec.index_crc32 = zlib.crc32(index)
    rec.payload_crc32 = out.finish()


def _verify(fd: int, path: str, plan: FilePlan) -> None:
    """Decode the written file from ``fd`` and compare every tensor with its input (IntegrityError if not)."""
    from entropy.file.reader import HQTFile

    with HQTFile._of_descriptor(fd, path) as f:
        for p in plan.tensors:
            got = f.read(p.name)
            # a tensor given already encoded is compared with its in-memory stream
            want = p.values if p.values is not None else decode(p.choice.streams[0].source)
            if got.dtype != want.dtype or got.shape != want.shape or not np.array_equal(got, want):
                bad = int(np.count_nonzero(got != want)) if got.shape == want.shape else want.size
                raise IntegrityError(f"{path}: tensor {p.name!r}: the written file decodes to other values "
                                     f"({bad} of {want.size} differ); not written")


def write_plan(plan: FilePlan, path: str | os.PathLike[str], *, options: FileOptions | None = None,
               threads: int | None = None, **option_fields: Any) -> FileInfo:
    """Write ``plan`` atomically to ``path``; returns the written file's FileInfo (see :func:`save`).

    ``options`` (default: the plan's, :attr:`FilePlan.options`) or its fields as keyword arguments: ``durable``
    and ``verify`` apply here, the rest were the plan's. The file is exactly ``plan.file_bytes`` long.

    >>> import os, numpy as np, entropy
    >>> plan = entropy.plan_file({"x": np.arange(100, dtype=np.uint8) % 7})
    >>> entropy.write_plan(plan, "x.hqt").file_bytes == plan.file_bytes == os.path.getsize("x.hqt")
    True
    """
    opts = FileOptions.of(plan.options if options is None else options, **option_fields)
    with using_threads(threads):  # the codec's encodes (and the verify's decodes) follow it
        return _write_plan(plan, path, opts.durable, opts.verify)


def _write_plan(plan: FilePlan, path: str | os.PathLike[str], durable: bool, verify: bool) -> FileInfo:
    records = _records(plan)
    path_s = os.fspath(path)
    header_length = plan.header_bytes - PREAMBLE_SIZE
    end = place(records, plan.header_bytes)
    if end != plan.file_bytes:
        raise FormatError(f"{path_s}: planned {plan.file_bytes} bytes, the layout gives {end}")
    with atomic_write(path, size=end, durable=durable) as fh:
        out = _DataWriter(fh.fileno(), durable)
        try:
            for p, rec in zip(plan.tensors, records):
                _write_tensor(out, p, rec)
        finally:
            out.close()
        header = serialize_header(plan.metadata, plan.codebooks, [serialize_record(r) for r in records])
        if len(header) != header_length:
            raise FormatError(f"{path_s}: header is {len(header)} bytes, planned {header_length}")
        pre = preamble(header, end)
        _pwrite_all(fh.fileno(), pre + header, 0)
        info = build_info(path_s, parse_header(memoryview(pre + header), end, path_s))
        if verify:
            _verify(fh.fileno(), path_s, plan)
        fh.seek(end)  # so that the final size check sees the whole file
    return info


def save(
    path: str | os.PathLike[str],
    tensors: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    *,
    options: FileOptions | None = None,
    quant: Mapping[str, Mapping[str, Any]] | None = None,
    threads: int | None = None,
    **option_fields: Any,
) -> FileInfo:
    """Code ``tensors`` (integer numpy arrays, or ready :class:`EncodedTensor`) into one .hqt file.

    ``metadata``: file-level strings (model, method...; ``tool`` is added when missing).
    ``options``: how the file is planned and written, a :class:`~entropy.FileOptions` (channel axis, layout, codec
    options, codebook sharing, durability, verification); its fields and those of its
    :class:`~entropy.CodecOptions` may be given as keyword arguments instead, or on top
    (``save(path, tensors, channel_axis=1, max_code_length=10)``).
    ``quant``: per tensor name, numeric quantization metadata (``scale``, ``zero_point``, ``bits``, ``levels``,
    ``axis``, or any other named numeric array; ``None`` values are skipped).
    ``threads``: None (default) uses every core of the process for the histograms of large tensors and the coding
    of large streams, 1 the calling thread only, N up to N threads (see :func:`entropy.encode`); the file is the
    same bytes whatever it is.

    The write is atomic (temporary file + rename). Returns the file's :class:`FileInfo`; its size is what
    :func:`entropy.plan_file` predicts.

    >>> import os, numpy as np, entropy
    >>> codes = np.array([[0, 1, 1, 0], [3, 3, 2, 3]], dtype=np.int8)
    >>> fi = entropy.save("codes.hqt", {"layer1": codes}, {"model": "toy"}, channel_axis=0)
    >>> fi.file_bytes == os.path.getsize("codes.hqt"), fi.tensor("layer1").shape
    (True, (2, 4))
    >>> np.array_equal(entropy.load("codes.hqt")["layer1"], codes)
    True
    >>> opts = entropy.FileOptions(channel_axis=0, codec=entropy.CodecOptions(max_code_length=8), verify=True)
    >>> _ = entropy.save("a.hqt", {"layer1": codes}, options=opts)
    >>> _ = entropy.save("b.hqt", {"layer1": codes}, channel_axis=0, max_code_length=8, verify=True)
    >>> open("a.hqt", "rb").read() == open("b.hqt", "rb").read()
    True
    """
    opts = FileOptions.of(options, **option_fields)
    with using_threads(threads):  # the layout search's histograms and the codec follow it
        plan = plan_file(tensors, metadata, options=opts, quant=quant)
        return write_plan(plan, path)
