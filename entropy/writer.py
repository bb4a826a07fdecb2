"""Writing ``.hqt`` files: :func:`save`.

The layout is fixed from the codec's exact sizes before any payload bit exists; each large payload is then
streamed into the file while the codec produces it (the I/O thread writes, checksums and starts the disk
writeback of each finished piece), so the writer adds no copy of the payload. The write is atomic (temporary
file, fdatasync, rename; :mod:`entropy.atomic`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from entropy import iothread
from entropy.atomic import atomic_write
from entropy.codebook import Codebook
from entropy.codec import EncodedTensor, PreparedEncode, prepare_encode
from entropy.errors import EntropyError, FormatError
from entropy.fileformat import (
    _PREAMBLE, _TENSOR_DTYPE_CODES, _U32, DTYPE_CODES, FORMAT_VERSION, MAGIC, MAX_NDIM,
    PREAMBLE_SIZE, _check_entry, _dtype_code, _Entry, _pad, _parse_header, _serialize_header, align,
)
from entropy.fileinfo import FileInfo, build_info
from entropy.lengths import MAX_ALPHABET

__all__ = ["save"]

logger = logging.getLogger(__name__)

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
            self.pending.append(iothread.io_pool().submit(self._write, data, offset))
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
        pos = align(pos + e.index_length)
        e.payload_offset = pos
        pos = align(pos + e.payload_length)
    with atomic_write(path, size=pos, durable=durable) as fh:
        out = _PayloadWriter(fh.fileno(), durable)
        for e, enc in zip(entries, encoded.values()):
            if isinstance(enc, PreparedEncode):
                if e.payload_length >= iothread.PARALLEL_CRC_BYTES:
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
    return build_info(path_s, _parse_header(memoryview(pre + header), pos, path_s))

