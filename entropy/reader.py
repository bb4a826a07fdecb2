"""Reading ``.hqt`` files: the random-access :class:`HQTFile` and the one-call helpers.

Opening a file checks its preamble, header checksum, layout and codebooks (:mod:`entropy.fileformat`); reading a
tensor touches only that tensor's index and payload and verifies their checksums first. No pickle anywhere.
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from entropy.codec import CodecParams, EncodedTensor, decode_parts
from entropy.errors import EntropyError, FormatError, IntegrityError
from entropy.fileformat import PREAMBLE_SIZE, _Entry, _parse_header, align
from entropy import iothread
from entropy.fileinfo import FileInfo, build_info

__all__ = ["HQTFile", "load", "load_tensor", "load_quant", "dequantize", "info"]

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
        return build_info(self.path, self._header)

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
        plen_padded = align(e.payload_length)
        # A large payload's CRC runs on a second thread while the codec decodes (both
        # release the GIL); the result is returned only once the CRC matches. The codec
        # never trusts its input, so decoding damaged bytes is safe, merely wasted.
        pending = None
        if plen_padded >= iothread.PARALLEL_CRC_BYTES:
            pending = iothread.io_pool().submit(self._crc, e.payload_offset, plen_padded)
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
    # integer subtraction is exact; one float32 rounding in the product (as quant does); a huge stored scale
    # gives inf, as float32 arithmetic does, without a warning
    with np.errstate(over="ignore"):
        return (q.astype(np.int64) - zp).astype(np.float32) * scale


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

