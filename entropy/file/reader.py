"""Reading ``.hqt`` files: the random-access :class:`HQTFile` and the one-call helpers.

Opening a file checks its preamble, header checksum, layout and codebooks (:mod:`entropy.format`); reading a
tensor touches only that tensor's index and payload and verifies their checksums first. No pickle anywhere.
"""

from __future__ import annotations

import mmap
import os
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from entropy.file import iothread
from entropy.layout.channels import from_rows
from entropy.codec.streams import Accounting, EncodedTensor, decode_chunks, decode_parts
from entropy.errors import EntropyError, FormatError, IntegrityError
from entropy.format import PREAMBLE_SIZE, SINGLE, TensorRecord, align
from entropy.file.header import parse_header
from entropy.file.info import FileInfo, build_info
from entropy.codec import threads as codec_threads
from entropy.codec.threads import resolve as resolve_threads

__all__ = ["HQTFile", "load", "load_tensor", "load_quant", "dequantize", "info"]


class HQTFile:
    """Random-access reader of one .hqt file (memory-mapped; use as a context manager).

    Opening checks the preamble, the header checksum, the whole layout and every codebook; reading a tensor
    touches only that tensor's index and payload regions, and verifies their checksums before returning.
    ``max_decoded_bytes`` (optional) bounds what one call may return: a read whose values would take more bytes
    (values x item size; the sum over tensors for :meth:`read_all`) raises :class:`FormatError` before anything
    is decoded.

    >>> import numpy as np, entropy
    >>> w = np.arange(24, dtype=np.int16).reshape(4, 6) % 5
    >>> _ = entropy.save("w.hqt", {"w": w, "b": np.array([1, -1], np.int8)}, channel_axis={"w": 0})
    >>> with entropy.HQTFile("w.hqt") as f:
    ...     f.names, f.read("w", channels=slice(1, 3)).tolist()
    (['w', 'b'], [[1, 2, 3, 4, 0, 1], [2, 3, 4, 0, 1, 2]])
    """

    def __init__(self, path: str | os.PathLike[str], *, max_decoded_bytes: int | None = None) -> None:
        self.path = os.fspath(path)
        self.max_decoded_bytes = _check_limit(max_decoded_bytes)
        self._mm: mmap.mmap | None = None
        with open(self.path, "rb") as fh:
            self._map(fh.fileno())

    @classmethod
    def _of_descriptor(cls, fd: int, label: str, max_decoded_bytes: int | None = None) -> HQTFile:
        """A reader of an open (readable) file descriptor, e.g. a file being written; ``label`` names it."""
        self = cls.__new__(cls)
        self.path = label
        self.max_decoded_bytes = _check_limit(max_decoded_bytes)
        self._mm = None
        self._map(fd)
        return self

    def _map(self, fd: int) -> None:
        size = os.fstat(fd).st_size
        if size < PREAMBLE_SIZE:
            raise FormatError(f"{self.path}: {size} bytes is too short for an .hqt file (preamble is 32 bytes)")
        self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        try:
            view = memoryview(self._mm)
            try:
                self._header = parse_header(view, size, self.path)
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
        return [t.name for t in self._header.tensors]

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self._header.metadata)

    @property
    def version(self) -> int:
        """The file's format version."""
        return self._header.version

    def info(self) -> FileInfo:
        return build_info(self.path, self._header)

    def quant(self, name: str) -> dict[str, Any]:
        """Quantization metadata of ``name``: arrays; 0-d ones as Python int/float."""
        t = self._header.tensor(name, self.path)
        out: dict[str, Any] = {}
        for k, a in t.arrays.items():
            out[k] = a.item() if a.ndim == 0 else a.copy()
        return out

    # -- decoding
    def _region(self, offset: int, length: int) -> memoryview:
        if self._mm is None:
            raise FormatError(f"{self.path}: file is closed")
        return memoryview(self._mm)[offset : offset + length]

    def _channel_range(self, t: TensorRecord, channels: slice | None) -> tuple[int, int] | None:
        if channels is None:
            return None
        if t.axis is None:
            raise FormatError(f"{self.path}: tensor {t.name!r} is stored without a channel axis; read it whole")
        if not isinstance(channels, slice) or channels.step not in (None, 1):
            raise EntropyError(f"channels must be a slice with step 1, got {channels!r}")
        c0, c1, _ = channels.indices(t.n_channels)
        return c0, max(c0, c1)

    def decoded_bytes(self, name: str, *, dequantize: bool = False, channels: slice | None = None) -> int:
        """Bytes that reading ``name`` (or its ``channels``) returns: values x item size (float32 when
        ``dequantize`` and the tensor has a stored scale)."""
        t = self._header.tensor(name, self.path)
        itemsize = 4 if dequantize and "scale" in t.arrays else t.dtype.itemsize
        rng = self._channel_range(t, channels)
        n = t.n_values if rng is None else (rng[1] - rng[0]) * t.row_length
        return n * itemsize

    def check_decoded_bytes(self, names: list[str], *, dequantize: bool = False,
                            channels: slice | None = None) -> None:
        """Raise FormatError if ``names`` together would decode to more than ``max_decoded_bytes`` bytes."""
        if self.max_decoded_bytes is None:
            return
        need = sum(self.decoded_bytes(n, dequantize=dequantize, channels=channels) for n in names)
        if need > self.max_decoded_bytes:
            what = f"tensor {names[0]!r}" if len(names) == 1 else f"{len(names)} tensors"
            raise FormatError(
                f"{self.path}: {what} would decode to {need} bytes, above the limit of "
                f"{self.max_decoded_bytes} bytes (max_decoded_bytes)"
            )

    def read(self, name: str, *, channels: slice | None = None, threads: int | None = None) -> np.ndarray:
        """Decode tensor ``name`` (same shape and dtype as written), verifying its checksums.

        ``channels=slice(a, b)``: only channels ``a..b-1`` along the tensor's channel axis (the result's axis has
        ``b - a`` entries); only the chunks holding them are decoded. Needs a tensor stored with a channel axis.
        ``threads``: None (default) decodes the chunks of a large stream on every core of the process, 1 on the
        calling thread only, N on up to N threads (as :func:`entropy.decode`); the result does not depend on it.
        """
        nt = resolve_threads(threads)
        self.check_decoded_bytes([name], channels=channels)
        t = self._header.tensor(name, self.path)
        return self._decode(t, self._channel_range(t, channels), nt)

    def _crc(self, offset: int, length: int) -> int:
        region = self._region(offset, length)
        try:
            return zlib.crc32(region)
        finally:
            region.release()

    def _decode(self, t: TensorRecord, channels: tuple[int, int] | None = None, threads: int = 1) -> np.ndarray:
        """Decode one tensor (or a channel range) on ``threads`` threads; every error names the file and the
        tensor (once)."""
        what = f"{self.path}: tensor {t.name!r}"
        try:
            return self._decode_checked(t, channels, threads)
        except EntropyError as exc:
            raise type(exc)(f"{what}: {exc}") from exc
        except (ValueError, IndexError, OverflowError, TypeError) as exc:  # codec given hostile data
            raise FormatError(f"{what}: cannot decode ({type(exc).__name__}: {exc})") from exc

    def _zero_padding(self, t: TensorRecord) -> None:
        """The padding after the tensor's index and payload regions (at most 7 bytes each) must be zero
        (FORMAT.md §1): the CRCs cover it, but a writer that left garbage there and checksummed it is still wrong."""
        for label, end, length in (("index", t.index_offset + t.index_length, t.index_length),
                                   ("payload", t.payload_offset + t.payload_length, t.payload_length)):
            region = self._region(end, align(length) - length)
            try:
                if any(region):
                    raise FormatError(f"non-zero bytes in the {label} region's padding at offset {end}")
            finally:
                region.release()

    def _decode_checked(self, t: TensorRecord, channels: tuple[int, int] | None, threads: int) -> np.ndarray:
        crc = self._crc(t.index_offset, t.payload_offset - t.index_offset)
        if crc != t.index_crc32:
            raise IntegrityError(f"chunk index checksum mismatch (stored {t.index_crc32:08x}, computed {crc:08x})")
        plen_padded = align(t.payload_length)
        # A large payload's CRC runs on the I/O thread while the codec decodes (both release the GIL); the result
        # is returned only once the CRC matches. The codec never trusts its input, so decoding damaged bytes is
        # safe, merely wasted.
        pending = None
        if plen_padded >= iothread.PARALLEL_CRC_BYTES:
            pending = iothread.io_pool().submit(self._crc, t.payload_offset, plen_padded)
        else:
            _check_payload_crc(t, self._crc(t.payload_offset, plen_padded))
        try:
            self._zero_padding(t)  # (after the CRCs: a damaged byte there is reported as damage)
            out = self._decode_streams(t, channels, threads)
        except BaseException as exc:
            if pending is not None:
                _check_payload_crc(t, pending.result(), cause=exc)
            raise
        if pending is not None:
            _check_payload_crc(t, pending.result())
        return out

    def _decode_streams(self, t: TensorRecord, channels: tuple[int, int] | None, threads: int) -> np.ndarray:
        if t.axis is None:  # one stream of the values in C order
            return self._stream_values(t, 0, 0, t.n_values, threads).reshape(t.shape)
        C, M = t.n_channels, t.row_length
        c0, c1 = (0, C) if channels is None else channels
        shape = t.shape[: t.axis] + (c1 - c0,) + t.shape[t.axis + 1 :]
        if t.layout == SINGLE:  # one stream of the channel rows in channel order
            rows = self._stream_values(t, 0, c0 * M, c1 * M, threads).reshape(c1 - c0, M)
        else:
            rows = np.empty((c1 - c0, M), dtype=t.dtype)
            parts = []
            for j in range(len(t.streams)):
                ch = t.stream_channels(j)
                a, b = int(np.searchsorted(ch, c0)), int(np.searchsorted(ch, c1))
                if a < b:  # the stream's rows a..b-1 are channels ch[a:b]
                    parts.append((j, ch[a:b], a, b))
            # streams too small to be cut into groups of chunks are decoded side by side, one thread each (an
            # error names the lowest failing stream, as one after the other would)
            sizes = [(b - a) * M for _, _, a, b in parts]
            side = len(parts) > 1 and max(sizes) < 2 * codec_threads.PARALLEL_MIN_VALUES <= sum(sizes)

            def one(i: int) -> None:
                j, ch, a, b = parts[i]
                rows[ch - c0] = self._stream_values(t, j, a * M, b * M, 1 if side else threads).reshape(b - a, M)

            codec_threads.run_groups(one, len(parts), threads if side else 1)
        return from_rows(rows, shape, t.axis)

    def _stream_values(self, t: TensorRecord, j: int, v0: int, v1: int, threads: int) -> np.ndarray:
        """Values ``v0..v1-1`` of stream ``j`` (flat); only the chunks that hold them are decoded."""
        s = t.streams[j]
        try:
            codebook = self._header.books[s.codebook_id]  # validated against the stream when the header was read
            index = self._region(s.index_offset, s.index_length)
            try:
                chunk_bits = EncodedTensor.parse_index(index, s.n_chunks, s.params, s.n_values)
            finally:
                index.release()
            total = int(np.sum(chunk_bits, dtype=np.uint64))
            if total != s.payload_bits:
                raise FormatError(f"chunk index adds up to {total} bits, the header says {s.payload_bits}")
            payload = self._region(s.payload_offset, s.payload_length)  # zero-copy view of the map
            try:
                if v0 == 0 and v1 == s.n_values:
                    return decode_parts(shape=(s.n_values,), dtype=t.dtype.name, params=s.params, codebook=codebook,
                                        chunk_bits=chunk_bits, payload=payload, threads=threads)
                starts = s.params.chunk_starts(s.n_values)  # the codec's chunking (rows of row_length, if any)
                first = int(np.searchsorted(starts, v0, side="right")) - 1
                stop = int(np.searchsorted(starts, v1, side="left"))
                base = int(starts[first])
                enc = EncodedTensor(
                    shape=(s.n_values,), dtype=t.dtype.name, params=s.params, codebook=codebook,
                    chunk_bits=chunk_bits, payload=payload,  # type: ignore[arg-type]  # any byte buffer decodes
                    accounting=Accounting(s.n_values, s.payload_bits, 0, 0, s.payload_bits, 0.0, 0.0, 0.0),
                )
                return decode_chunks(enc, first, stop, threads=threads)[v0 - base : v1 - base]
            finally:
                payload.release()
        except EntropyError as exc:
            if len(t.streams) > 1:
                raise type(exc)(f"stream {j}: {exc}") from exc
            raise

    def read_all(self, *, threads: int | None = None) -> dict[str, np.ndarray]:
        """Decode every tensor (file order); ``max_decoded_bytes`` bounds their sum. ``threads``: as in
        :meth:`read`."""
        nt = resolve_threads(threads)
        self.check_decoded_bytes(self.names)
        return {t.name: self._decode(t, None, nt) for t in self._header.tensors}

    def dequantize(self, name: str, *, threads: int | None = None) -> np.ndarray:
        """(q - zero_point) * scale as float32, broadcast along the stored ``axis``. ``threads``: as in
        :meth:`read`."""
        nt = resolve_threads(threads)
        self.check_decoded_bytes([name], dequantize=True)
        q = self._decode(self._header.tensor(name, self.path), None, nt)
        return _dequantize(q, self.quant(name), f"{self.path}: tensor {name!r}")


def _check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 0:
        raise FormatError(f"max_decoded_bytes must be a non-negative integer or None, got {limit!r}")
    return int(limit)


def _check_payload_crc(t: TensorRecord, crc: int, cause: BaseException | None = None) -> None:
    if crc != t.payload_crc32:
        raise IntegrityError(
            f"payload checksum mismatch (stored {t.payload_crc32:08x}, computed {crc:08x})"
        ) from cause


def _zero_point(value: Any, what: str) -> np.ndarray:
    """The stored zero point(s) as int64; FormatError unless every entry is an integer of the int64 range (an
    integer type, or a float type holding whole numbers: FORMAT.md §4.3)."""
    a = np.asarray(value)
    if a.dtype.kind == "f":
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(a) & (a == np.round(a)) & (np.abs(a) < 2.0**63)
        if not whole.all():
            bad = float(a.reshape(-1)[int(np.argmin(whole.reshape(-1)))])
            raise FormatError(f"{what}: zero_point {bad!r} is not an integer of the int64 range")
    elif a.dtype.kind == "u" and a.size and int(a.max()) > np.iinfo(np.int64).max:
        raise FormatError(f"{what}: zero_point {int(a.max())} is beyond the int64 range")
    elif a.dtype.kind not in "iub":
        raise FormatError(f"{what}: zero_point of type {a.dtype} is not a number")
    return a.astype(np.int64)


def _dequantize(q: np.ndarray, meta: Mapping[str, Any], what: str) -> np.ndarray:
    if "scale" not in meta:
        raise FormatError(f"{what}: no quantization scale stored; cannot dequantize")
    with np.errstate(over="ignore"):  # a stored float64 scale beyond float32's range is inf, as below
        scale = np.asarray(meta["scale"], dtype=np.float32)
    zp = _zero_point(meta.get("zero_point", 0), what)
    axis = meta.get("axis")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, (int, np.integer))):
        raise FormatError(f"{what}: stored channel axis {axis!r} is not an integer")
    if axis is not None and not -q.ndim <= int(axis) < q.ndim:  # (FORMAT.md §4.3: negative = from the end)
        raise FormatError(f"{what}: channel axis {int(axis)} out of range for shape {q.shape}")
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
    with np.errstate(over="ignore", invalid="ignore"):
        return (q.astype(np.int64) - zp).astype(np.float32) * scale


def load(path: str | os.PathLike[str], *, max_decoded_bytes: int | None = None,
         threads: int | None = None) -> dict[str, np.ndarray]:
    """Decode every tensor of an .hqt file (in file order), verifying all checksums.

    ``max_decoded_bytes``: refuse (FormatError) a file whose tensors would decode to more bytes than this.
    ``threads``: None (default) decodes large tensors on every core, 1 on the calling thread only, N on up to N
    threads (see :meth:`HQTFile.read`).

    >>> import numpy as np, entropy
    >>> _ = entropy.save("ab.hqt", {"a": np.arange(6, dtype=np.uint8), "b": np.zeros((2, 2), np.int32)})
    >>> {name: (a.dtype.name, a.shape) for name, a in entropy.load("ab.hqt").items()}
    {'a': ('uint8', (6,)), 'b': ('int32', (2, 2))}
    """
    with HQTFile(path, max_decoded_bytes=max_decoded_bytes) as f:
        return f.read_all(threads=threads)


def load_tensor(
    path: str | os.PathLike[str], name: str, *, channels: slice | None = None, max_decoded_bytes: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Decode one tensor by name (or only its ``channels``, see :meth:`HQTFile.read`); the other tensors' data is
    never read. ``max_decoded_bytes`` and ``threads`` as in :func:`load`.

    >>> import numpy as np, entropy
    >>> x = np.arange(12, dtype=np.int8).reshape(3, 4)
    >>> _ = entropy.save("x.hqt", {"x": x, "y": np.ones(1000, np.uint8)}, channel_axis=0)
    >>> entropy.load_tensor("x.hqt", "x", channels=slice(2, 3)).tolist()
    [[8, 9, 10, 11]]
    """
    with HQTFile(path, max_decoded_bytes=max_decoded_bytes) as f:
        return f.read(name, channels=channels, threads=threads)


def load_quant(path: str | os.PathLike[str], name: str) -> dict[str, Any]:
    """The quantization metadata stored with tensor ``name`` (``{}`` if none); no decoding."""
    with HQTFile(path) as f:
        return f.quant(name)


def dequantize(path: str | os.PathLike[str], name: str, *, max_decoded_bytes: int | None = None,
               threads: int | None = None) -> np.ndarray:
    """Tensor ``name`` as float32: ``(q - zero_point) * scale`` broadcast along ``axis``.

    ``max_decoded_bytes`` bounds the float32 result's bytes; ``threads`` as in :func:`load`."""
    with HQTFile(path, max_decoded_bytes=max_decoded_bytes) as f:
        return f.dequantize(name, threads=threads)


def info(path: str | os.PathLike[str]) -> FileInfo:
    """Sizes, bits per value and statistics of every tensor, from the header alone.

    >>> import numpy as np, entropy
    >>> _ = entropy.save("z.hqt", {"z": np.zeros(1000, np.uint8)}, {"model": "toy"})
    >>> fi = entropy.info("z.hqt")
    >>> fi.metadata["model"], fi.tensor("z").n_values, fi.tensor("z").entropy_bits
    ('toy', 1000, 0.0)
    """
    with HQTFile(path) as f:
        return f.info()

