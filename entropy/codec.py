"""The array codec: integer numpy arrays <-> chunked canonical-Huffman bitstreams.

Values ``v`` of any shape are flattened in C order and mapped to base symbols
``v - value_min`` in ``[0, value_range)``. With ``group = 2`` two consecutive values form
one symbol ``a * value_range + b``; an odd count is completed with the value
``value_min`` (base symbol 0), which the decoder checks and drops. Symbols are cut into
chunks of ``chunk_size / group`` symbols; each chunk's payload bits are recorded, so any
range of chunks decodes on its own.

Chunk index (``EncodedTensor.index_bytes``): one unsigned big-endian integer per chunk,
the chunk's payload bits; 2 bytes per entry when ``(chunk_size / group) * max_code_length
<= 65535``, else 4 bytes. A chunk can never need more bits than that bound, so the width
follows from :class:`CodecParams` alone.

The payload is MSB-first, chunks concatenated without padding, zero bits up to the next
byte. Nothing here trusts a stream: every inconsistency raises :class:`StreamError`
naming the chunk.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from entropy.codebook import Codebook
from entropy.errors import CodebookError, EntropyError, StreamError, SymbolError
from entropy.lengths import MAX_ALPHABET, MAX_SUPPORTED_LENGTH
from entropy.measures import average_code_length, payload_bits, shannon_entropy

__all__ = [
    "CodecParams",
    "PreparedEncode",
    "prepare_encode",
    "Accounting",
    "EncodedTensor",
    "encode",
    "decode",
    "decode_chunks",
    "decode_parts",
    "check_tail",
    "SUPPORTED_DTYPES",
    "PAD_BASE_SYMBOL",
]

#: dtypes the codec accepts and restores.
SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "int64")
#: base symbol used to complete the last pair when ``group = 2`` and the value count is odd.
PAD_BASE_SYMBOL = 0


@dataclass(frozen=True)
class CodecParams:
    """Stream parameters.

    group: k consecutive values coded as one symbol (1 or 2).
    max_code_length: L, the code-length limit used to build the code (bits).
    chunk_size: values per chunk (multiple of group).
    value_min: smallest value of the alphabet; value v -> base symbol v - value_min.
    value_range: number of base symbols R (alphabet = R**group symbols).
    """

    group: int
    max_code_length: int
    chunk_size: int
    value_min: int
    value_range: int

    @property
    def alphabet_size(self) -> int:
        """Number of symbols after grouping (R**group)."""
        return self.value_range**self.group

    @property
    def chunk_symbols(self) -> int:
        """Symbols per chunk."""
        return self.chunk_size // self.group

    @property
    def index_entry_bytes(self) -> int:
        """Bytes per chunk-index entry (2 or 4)."""
        return 2 if self.chunk_symbols * self.max_code_length <= 0xFFFF else 4

    #: Layout of :meth:`to_bytes` (little-endian): group u8, max_code_length u8, 2 zero bytes, chunk_size u32,
    #: value_min i64, value_range u64. The codec owns this block; the container stores it opaquely.
    _BLOCK = struct.Struct("<BBxxIqQ")

    def to_bytes(self) -> bytes:
        """The stream-parameter block that a file stores for this stream (bytes; see ``_BLOCK``)."""
        self.validate()
        return self._BLOCK.pack(self.group, self.max_code_length, self.chunk_size, self.value_min, self.value_range)

    @classmethod
    def from_bytes(cls, buf: bytes | memoryview) -> CodecParams:
        """Parse and validate a stream-parameter block written by :meth:`to_bytes`. Raises StreamError."""
        if len(buf) != cls._BLOCK.size:
            raise StreamError(f"stream parameter block is {len(buf)} bytes, expected {cls._BLOCK.size}")
        group, max_len, chunk, vmin, vrange = cls._BLOCK.unpack(bytes(buf))
        if bytes(buf)[2:4] != b"\0\0":
            raise StreamError("stream parameter block has non-zero reserved bytes")
        params = cls(group=group, max_code_length=max_len, chunk_size=chunk, value_min=vmin, value_range=vrange)
        params.validate()
        return params

    def validate(self) -> None:
        """Raise StreamError if the parameters are inconsistent."""
        for name in ("group", "max_code_length", "chunk_size", "value_min", "value_range"):
            if not isinstance(getattr(self, name), (int, np.integer)) or isinstance(getattr(self, name), bool):
                raise StreamError(f"codec parameter {name} must be an integer, got {getattr(self, name)!r}")
        if self.group not in (1, 2):
            raise StreamError(f"codec parameter group must be 1 or 2, got {self.group}")
        if not 1 <= self.max_code_length <= MAX_SUPPORTED_LENGTH:
            raise StreamError(f"max_code_length {self.max_code_length} outside 1..{MAX_SUPPORTED_LENGTH}")
        if self.chunk_size < 1 or self.chunk_size % self.group:
            raise StreamError(f"chunk_size {self.chunk_size} must be a positive multiple of group {self.group}")
        if self.chunk_size > 1 << 24:
            raise StreamError(f"chunk_size {self.chunk_size} exceeds 2**24 values")
        if not 1 <= self.value_range <= MAX_ALPHABET:
            raise StreamError(f"value_range {self.value_range} outside 1..{MAX_ALPHABET}")
        if self.alphabet_size > MAX_ALPHABET:
            raise StreamError(f"alphabet of {self.alphabet_size} symbols exceeds {MAX_ALPHABET}")


@dataclass(frozen=True)
class Accounting:
    """Exact size of an encoded tensor, in bits, and its reference measures."""

    n_values: int
    payload_bits: int  # sum of code lengths of all symbols (no padding)
    codebook_bits: int  # 8 * len(codebook.to_bytes())
    index_bits: int  # bits of the serialized chunk index
    total_bits: int  # payload + codebook + index
    bits_per_value: float  # total_bits / n_values (0.0 for n_values == 0)
    entropy_bits: float  # order-0 Shannon entropy per (ungrouped) value
    avg_code_length: float  # sum p*len per value (per-symbol average / group)


@dataclass(frozen=True, eq=False)
class EncodedTensor:
    """An encoded array: parameters, codebook, chunk index and MSB-first payload."""

    shape: tuple[int, ...]
    dtype: str
    params: CodecParams
    codebook: Codebook
    chunk_bits: np.ndarray  # uint32 per chunk: payload bits
    payload: bytes
    accounting: Accounting

    @property
    def n_values(self) -> int:
        """Number of values (product of the shape)."""
        return math.prod(self.shape)

    @property
    def n_chunks(self) -> int:
        """Number of chunks."""
        return int(self.chunk_bits.size)

    def chunk_offsets(self) -> np.ndarray:
        """Bit offset of each chunk in the payload, plus the total: uint64[n_chunks + 1]."""
        out = np.zeros(self.n_chunks + 1, dtype=np.uint64)
        np.cumsum(self.chunk_bits, dtype=np.uint64, out=out[1:])
        return out

    def index_bytes(self) -> bytes:
        """The serialized chunk index (big-endian uint16 or uint32 per chunk; see module doc)."""
        return _index_bytes(self.chunk_bits, self.params)

    @staticmethod
    def parse_index(buf: bytes, n_chunks: int, params: CodecParams) -> np.ndarray:
        """Parse and validate a chunk index; returns uint32[n_chunks] (raises StreamError)."""
        params.validate()
        w = params.index_entry_bytes
        if n_chunks < 0:
            raise StreamError(f"negative chunk count {n_chunks}")
        if len(buf) != n_chunks * w:
            raise StreamError(f"chunk index is {len(buf)} bytes, expected {n_chunks} chunks x {w} bytes")
        arr = np.frombuffer(bytes(buf), dtype=">u2" if w == 2 else ">u4").astype(np.uint32)
        _check_chunk_bits(arr, params)
        return arr


def _index_bytes(chunk_bits: np.ndarray, params: CodecParams) -> bytes:
    return np.asarray(chunk_bits).astype(">u2" if params.index_entry_bytes == 2 else ">u4").tobytes()


def _check_chunk_bits(arr: np.ndarray, params: CodecParams) -> None:
    bound = params.chunk_symbols * params.max_code_length
    if arr.size and int(arr.max()) > bound:
        c = int(np.argmax(arr))
        raise StreamError(f"chunk {c}: index says {int(arr[c])} bits, more than the possible {bound}")


def _dtype_bounds(dt: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


def _check_dtype(dtype: object, err: type[EntropyError]) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise err(f"unknown dtype {dtype!r}") from exc
    if dt.name not in SUPPORTED_DTYPES:
        raise err(f"dtype {dt.name} not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    # the kernels work on native-order memory: '>i2' and '<i2' are both int16 here, converted once at the entry
    return dt.newbyteorder("=")


def _int_arg(name: str, x: object, lo: int, hi: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise EntropyError(f"{name} must be an integer, got {x!r}")
    if not lo <= int(x) <= hi:
        raise EntropyError(f"{name} must be in {lo}..{hi}, got {x}")
    return int(x)


def prepare_encode(
    values: np.ndarray,
    *,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    group: int | str = "auto",
    codebook: Codebook | None = None,
    value_min: int | None = None,
    value_range: int | None = None,
) -> PreparedEncode:
    """Everything :func:`encode` decides before it writes a bit: alphabet, grouping, codebook and exact sizes.

    Takes the arguments of :func:`encode` and raises its errors; :meth:`PreparedEncode.run` then writes the
    payload, or streams it to a file while coding (:func:`entropy.container.save`).
    """
    arr = np.asarray(values)
    dt = _check_dtype(arr.dtype, EntropyError)
    flat = np.ascontiguousarray(arr, dtype=dt).reshape(-1)  # native byte order, C order
    n = flat.size
    L = _int_arg("max_code_length", max_code_length, 1, MAX_SUPPORTED_LENGTH)
    C = _int_arg("chunk_size", chunk_size, 1, 1 << 24)
    if group not in (1, 2, "auto"):
        raise EntropyError(f"group must be 1, 2 or 'auto', got {group!r}")
    dlo, dhi = _dtype_bounds(dt)

    if codebook is not None:
        if not isinstance(codebook, Codebook):
            raise EntropyError(f"codebook must be a Codebook, got {type(codebook).__name__}")
        A = codebook.alphabet_size
        vmin = 0 if value_min is None else int(value_min)
        if value_range is not None:
            R = _int_arg("value_range", value_range, 1, MAX_ALPHABET)
            if R == A and group in (1, "auto"):
                ks = [1]
            elif R * R == A and group in (2, "auto"):
                ks = [2]
            else:
                raise EntropyError(f"value_range {R} with group {group!r} does not match the codebook's {A} symbols")
        elif group == 2:
            R = math.isqrt(A)
            if R * R != A:
                raise EntropyError(f"group 2 needs a codebook of R**2 symbols, got {A}")
            ks = [2]
        else:
            R, ks = A, [1]
        if codebook.max_length > L:
            raise CodebookError(f"shared codebook has {codebook.max_length}-bit codes, above max_code_length {L}")
    else:
        lo = int(flat.min()) if n else 0
        hi = int(flat.max()) if n else 0
        vmin = lo if value_min is None else int(value_min)
        if value_range is None:
            R = max(1, hi - vmin + 1)
        else:
            R = _int_arg("value_range", value_range, 1, MAX_ALPHABET)
        if R > MAX_ALPHABET:
            raise SymbolError(f"values span {R} symbols [{vmin}, {vmin + R - 1}], above the supported {MAX_ALPHABET}")
        if group == "auto":
            ks = [1]
            if R * R <= MAX_ALPHABET and C % 2 == 0 and n >= 2:
                ks.append(2)
        else:
            ks = [int(group)]
    if 2 in ks and (C % 2 or R * R > MAX_ALPHABET):
        raise EntropyError(f"group 2 needs an even chunk_size and value_range**2 <= {MAX_ALPHABET}")
    if vmin < dlo or vmin + R - 1 > dhi:
        raise EntropyError(f"alphabet [{vmin}, {vmin + R - 1}] does not fit dtype {dt.name}")

    from entropy import kernels  # numba: imported on first use only

    # histograms: pair counts give the single counts too
    counts_by_k: dict[int, np.ndarray] = {}
    k_hist = max(ks)
    counts, bad = kernels.count_symbols(flat, vmin, R, k_hist)
    if bad >= 0:
        raise SymbolError(
            f"value {int(flat[bad])} at flat index {bad} is outside the alphabet [{vmin}, {vmin + R - 1}]"
        )
    counts_by_k[k_hist] = counts
    if k_hist == 2:
        sq = counts.reshape(R, R)
        c1 = sq.sum(axis=1) + sq.sum(axis=0)
        if n % 2:
            c1[PAD_BASE_SYMBOL] -= 1
        counts_by_k[1] = c1
    counts1 = counts_by_k[1]  # ungrouped counts: the entropy is always per value

    best = None
    errors = []
    for k in ks:
        ck = counts_by_k[k]
        params = CodecParams(group=k, max_code_length=L, chunk_size=C, value_min=vmin, value_range=R)
        if codebook is not None:
            cb = codebook
        else:
            try:
                cb = Codebook.from_counts(ck, max_length=L)
            except CodebookError as exc:
                errors.append(exc)
                continue
        try:
            pbits = payload_bits(ck, cb.lengths)
        except EntropyError as exc:
            raise SymbolError(f"group {k}: {exc} in the shared codebook") from exc
        n_chunks = -(-n // C)
        ibits = 8 * n_chunks * params.index_entry_bytes
        total = pbits + cb.serialized_bits + ibits
        if best is None or total < best[0]:
            best = (total, k, params, cb, pbits, ibits)
    if best is None:
        raise errors[0]
    total, k, params, cb, pbits, ibits = best

    acct = Accounting(
        n_values=n,
        payload_bits=pbits,
        codebook_bits=cb.serialized_bits,
        index_bits=ibits,
        total_bits=total,
        bits_per_value=total / n if n else 0.0,
        entropy_bits=shannon_entropy(counts1),
        avg_code_length=average_code_length(counts_by_k[k], cb.lengths) / k,
    )
    return PreparedEncode(
        shape=tuple(int(s) for s in arr.shape), dtype=dt.name, params=params, codebook=cb, accounting=acct,
        _flat=flat,
    )


@dataclass(frozen=True)
class PreparedEncode:
    """An encode whose sizes are known and whose payload is not written yet (see :func:`prepare_encode`)."""

    shape: tuple[int, ...]
    dtype: str
    params: CodecParams
    codebook: Codebook
    accounting: Accounting
    _flat: np.ndarray

    @property
    def payload_length(self) -> int:
        """Payload size in bytes (``ceil(payload_bits / 8)``)."""
        return -(-self.accounting.payload_bits // 8)

    @property
    def index_length(self) -> int:
        """Chunk index size in bytes."""
        return self.accounting.index_bits // 8

    def run(self, sink: Callable[[memoryview, int], None] | None = None) -> EncodedTensor:
        """Write the payload. Without ``sink`` the result holds it; with ``sink`` it is streamed piece by piece
        as ``sink(bytes, byte offset)`` while later chunks are coded, and the result's payload is empty.

        Before returning, the first and the last chunk of the new stream are decoded and compared with the
        values (:func:`check_tail`); a mismatch raises StreamError, so a writer that calls this never stores a
        stream that does not decode to its input.
        """
        from entropy import kernels  # numba: imported on first use only

        cb, p = self.codebook, self.params
        buf, chunk_bits = kernels.encode_symbols(
            self._flat, p.value_min, p.value_range, p.group, cb.codes, cb.lengths, p.chunk_symbols,
            self.accounting.payload_bits, sink=sink,
        )
        _self_check(self._flat, np.dtype(self.dtype), p, cb, chunk_bits, buf)
        return EncodedTensor(
            shape=self.shape, dtype=self.dtype, params=p, codebook=cb, chunk_bits=chunk_bits,
            payload=b"" if sink is not None else buf.tobytes(), accounting=self.accounting,
        )


def _self_check(flat: np.ndarray, dt: np.dtype, params: CodecParams, codebook: Codebook, chunk_bits: np.ndarray,
                payload: np.ndarray) -> None:
    """Decode the first and the last chunk of a freshly written stream and compare them with ``flat``."""
    n_chunks = int(chunk_bits.size)
    if n_chunks == 0:
        return
    n = flat.size
    offsets = np.zeros(n_chunks + 1, dtype=np.uint64)
    np.cumsum(chunk_bits, dtype=np.uint64, out=offsets[1:])
    C = params.chunk_size
    for c in sorted({0, n_chunks - 1}):
        try:
            got = _decode_range(n, dt, params, codebook, offsets, payload, c, c + 1)
        except StreamError as exc:
            raise StreamError(f"self-check of the new stream failed (an encoder fault; nothing valid was written): {exc}") from None
        want = flat[c * C : min((c + 1) * C, n)]
        if got.shape != want.shape or not np.array_equal(got, want):
            raise StreamError(
                f"self-check of the new stream failed (an encoder fault; nothing valid was written): chunk {c} of "
                f"{n_chunks} decodes to other values than were encoded"
            )


def check_tail(enc: EncodedTensor, values: np.ndarray) -> None:
    """Decode the first and the last chunk of ``enc`` and compare them with ``values`` (what was encoded).

    The cheap check every :meth:`PreparedEncode.run` does (cost: two chunks' decoding, at most
    ``2 * chunk_size`` values); raises StreamError on a mismatch or a stream that does not decode. ``enc`` must
    hold its payload (not a streamed one).
    """
    arr = np.asarray(values)
    dt = _check_dtype(arr.dtype, EntropyError)
    flat = np.ascontiguousarray(arr, dtype=dt).reshape(-1)
    if flat.size != enc.n_values:
        raise EntropyError(f"{flat.size} values given for a stream of {enc.n_values}")
    n, dt, offsets, buf = _prepare(enc.shape, enc.dtype, enc.params, enc.codebook, enc.chunk_bits, enc.payload)
    _self_check(flat, dt, enc.params, enc.codebook, enc.chunk_bits, buf)


def encode(
    values: np.ndarray,
    *,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    group: int | str = "auto",
    codebook: Codebook | None = None,
    value_min: int | None = None,
    value_range: int | None = None,
) -> EncodedTensor:
    """Encode an integer array into a chunked canonical-Huffman stream.

    values: any shape, dtype in SUPPORTED_DTYPES; every value in
        [value_min, value_min + value_range).
    max_code_length: code-length limit L in bits (1..24; 12 keeps the decode table 16 KiB).
    chunk_size: values per chunk (a multiple of the group).
    group: 1, 2 or "auto" (the one giving the smaller total bits; 2 is considered only
        when value_range**2 <= 65536 and chunk_size is even).
    codebook: a shared code to use instead of building one; value_min then defaults to 0
        and value_range to its alphabet size (group 1) or its square root (group 2).
    value_min, value_range: the alphabet; default: the data's minimum and max - min + 1.

    Raises SymbolError for a value outside the alphabet or without a code, CodebookError
    when no code within ``max_code_length`` exists, EntropyError for bad arguments.
    """
    return prepare_encode(
        values, max_code_length=max_code_length, chunk_size=chunk_size, group=group, codebook=codebook,
        value_min=value_min, value_range=value_range,
    ).run()


def _prepare(shape, dtype, params, codebook, chunk_bits, payload):
    """Validate everything a decoder needs; returns (n, dtype, offsets, payload as uint8 array)."""
    if not isinstance(params, CodecParams):
        raise StreamError(f"params must be CodecParams, got {type(params).__name__}")
    params.validate()
    if not isinstance(codebook, Codebook):
        raise StreamError(f"codebook must be a Codebook, got {type(codebook).__name__}")
    dt = _check_dtype(dtype, StreamError)
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError as exc:
        raise StreamError(f"shape must be a tuple of integers, got {shape!r}") from exc
    if any(s < 0 for s in shp):
        raise StreamError(f"negative dimension in shape {shp}")
    n = math.prod(shp)
    if codebook.alphabet_size != params.alphabet_size:
        raise StreamError(
            f"codebook has {codebook.alphabet_size} symbols, the parameters need "
            f"{params.value_range}**{params.group} = {params.alphabet_size}"
        )
    if codebook.max_length > params.max_code_length:
        raise StreamError(f"codebook has {codebook.max_length}-bit codes, above the stream's limit {params.max_code_length}")
    dlo, dhi = _dtype_bounds(dt)
    if params.value_min < dlo or params.value_min + params.value_range - 1 > dhi:
        raise StreamError(f"alphabet [{params.value_min}, {params.value_min + params.value_range - 1}] does not fit {dt.name}")
    cb_arr = np.asarray(chunk_bits)
    if cb_arr.ndim != 1 or (cb_arr.size and not np.issubdtype(cb_arr.dtype, np.integer)):
        raise StreamError("chunk bit counts must be a 1-D integer array")
    if cb_arr.size and int(cb_arr.min()) < 0:
        raise StreamError("negative chunk bit count")
    n_chunks = -(-n // params.chunk_size)
    if cb_arr.size != n_chunks:
        raise StreamError(f"chunk index has {cb_arr.size} chunks, {n} values in chunks of {params.chunk_size} need {n_chunks}")
    cb_arr = cb_arr.astype(np.uint32)
    _check_chunk_bits(cb_arr, params)
    if n_chunks:
        # every code has at least 1 bit: a chunk needs at least as many bits as symbols,
        # so the payload size bounds how many values a stream can make us allocate
        nsym = -(-n // params.group)
        need_sym = np.full(n_chunks, params.chunk_symbols, dtype=np.int64)
        need_sym[-1] = nsym - (n_chunks - 1) * params.chunk_symbols
        short = np.flatnonzero(cb_arr < need_sym)
        if short.size:
            c = int(short[0])
            raise StreamError(f"chunk {c}: index says {int(cb_arr[c])} bits, fewer than its {int(need_sym[c])} symbols need")
    offsets = np.zeros(n_chunks + 1, dtype=np.uint64)
    np.cumsum(cb_arr, dtype=np.uint64, out=offsets[1:])
    total = int(offsets[-1])
    if not isinstance(payload, (bytes, bytearray, memoryview, np.ndarray)):
        raise StreamError(f"payload must be bytes-like, got {type(payload).__name__}")
    try:
        buf = np.frombuffer(payload, dtype=np.uint8)  # zero-copy view (bytes, mmap slices)
    except (ValueError, TypeError) as exc:
        raise StreamError(f"payload is not a contiguous byte buffer: {exc}") from None
    need = (total + 7) // 8
    if buf.size != need:
        raise StreamError(f"payload is {buf.size} bytes, the chunk index says {total} bits = {need} bytes")
    if total % 8 and int(buf[-1]) & ((1 << (8 - total % 8)) - 1):
        raise StreamError(f"chunk {n_chunks - 1}: nonzero padding bits after the payload's last code")
    if n and codebook.n_present == 0:
        raise StreamError(f"{n} values to decode but the codebook has no code")
    return n, dt, offsets, buf


def _decode_range(n, dt, params, codebook, offsets, payload, start, stop) -> np.ndarray:
    """Values of chunks [start, stop) (flat), padding checked and dropped."""
    from entropy import kernels

    C, k, R = params.chunk_size, params.group, params.value_range
    n_chunks = offsets.size - 1
    v_lo, v_hi = start * C, min(stop * C, n)
    if v_hi <= v_lo:
        return np.empty(0, dtype=dt)
    nsym = -(-n // k)
    spc = params.chunk_symbols
    sym_hi = min(stop * spc, nsym)
    out = np.empty((sym_hi - start * spc) * k, dtype=dt)
    syms = np.arange(params.alphabet_size, dtype=np.int64)
    if k == 1:
        maps = ((syms + params.value_min).astype(dt), None)
    else:
        maps = ((syms // R + params.value_min).astype(dt), (syms % R + params.value_min).astype(dt))
    try:
        kernels.decode_symbols(
            payload, offsets, start, stop, spc, nsym, codebook.lengths, codebook.canonical_order(),
            codebook.max_length, maps, k, out,
        )
    except kernels.DecodeFailure as exc:
        raise StreamError(f"chunk {exc.chunk} of {n_chunks}: {exc}") from None
    if out.size > v_hi - v_lo:  # group padding of an odd count
        if int(out[-1]) != params.value_min + PAD_BASE_SYMBOL:
            raise StreamError(
                f"chunk {n_chunks - 1}: group padding value is {int(out[-1])}, expected {params.value_min}"
            )
        out = out[: v_hi - v_lo]
    return out


def decode_parts(*, shape, dtype, params: CodecParams, codebook: Codebook, chunk_bits, payload) -> np.ndarray:
    """Decode from the parts a file stores; returns the array (shape, dtype). Raises StreamError."""
    n, dt, offsets, buf = _prepare(shape, dtype, params, codebook, chunk_bits, payload)
    flat = _decode_range(n, dt, params, codebook, offsets, buf, 0, offsets.size - 1)
    return flat.reshape(tuple(int(s) for s in shape))


def decode(enc: EncodedTensor) -> np.ndarray:
    """Decode an EncodedTensor to an array of its shape and dtype. Raises StreamError on damage."""
    return decode_parts(
        shape=enc.shape,
        dtype=enc.dtype,
        params=enc.params,
        codebook=enc.codebook,
        chunk_bits=enc.chunk_bits,
        payload=enc.payload,
    )


def decode_chunks(enc: EncodedTensor, start: int, stop: int) -> np.ndarray:
    """Flat values of chunks [start, stop) only (values start*chunk_size .. min(stop*chunk_size, n)).

    Only those chunks are read and checked. Raises StreamError on damage, EntropyError for a
    bad range.
    """
    n, dt, offsets, buf = _prepare(enc.shape, enc.dtype, enc.params, enc.codebook, enc.chunk_bits, enc.payload)
    n_chunks = offsets.size - 1
    if isinstance(start, bool) or isinstance(stop, bool) or not (0 <= int(start) <= int(stop) <= n_chunks):
        raise EntropyError(f"chunk range [{start}, {stop}) outside 0..{n_chunks}")
    return _decode_range(n, dt, enc.params, enc.codebook, offsets, buf, int(start), int(stop))
