"""The array codec: integer numpy arrays <-> chunked canonical-Huffman bitstreams.

Values of any shape and byte order are flattened in C order and coded as symbols (FORMAT.md §7):

* plain: one value per symbol, base symbol ``v - value_min`` of a window of ``value_range`` values;
* pairs: two consecutive values per symbol ``a * value_range + b`` (an odd count is completed with the
  value ``value_min``, which the decoder checks and drops);
* runs: symbol ``r * V + b`` stands for ``r`` copies of the run value (the most frequent one) and then the
  value of base symbol ``b`` - runs of a sparse map's zeros cost little inside a canonical Huffman code;
* stored: no code, every value ``v - value_min`` in the bits of the window (incompressible data, at copy speed);

and, with escapes, base symbol ``value_range`` is an escape: the value follows raw, so arrays whose values
do not fit a window of 65536 values or a code of ``2**L`` symbols still code compactly. :func:`prepare_encode`
chooses mode, window, escapes and code-length limit by exact total size (:mod:`entropy.codec.modes`).

Symbols are cut into chunks of ``chunk_size`` values; each chunk's payload bits are recorded, so any range of
chunks decodes on its own. Chunk index (``EncodedTensor.index_bytes``): one unsigned big-endian integer per
chunk, its payload bits; 2 bytes per entry when a full chunk can never need more than 65535 bits
(:attr:`CodecParams.index_entry_bytes`), else 4 bytes; none for a stored stream (its chunks' bits follow from
their values).

The payload is MSB-first, chunks concatenated without padding, zero bits up to the next byte. Nothing here
trusts a stream: every inconsistency raises :class:`StreamError` naming the chunk. Every new stream's first
and last chunk are decoded and compared before it is handed out (:func:`check_tail`).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from entropy.codec import small_streams
from entropy.codec.codebook import Codebook
from entropy.errors import CodebookError, EntropyError, StreamError, SymbolError
from entropy.codec.lengths import MAX_ALPHABET
from entropy.codec.measures import shannon_entropy
from entropy.codec.options import CodecOptions, check_int
from entropy.codec.params import MAX_ROW_LENGTH, SUPPORTED_DTYPES, CodecParams
from entropy.codec.modes import (
    RAW_COUNT_MIN_VALUES, RawCounts, StreamPlan, choose_plan, plan_from_counts, stored_plan, stream_histogram,
    symbol_histograms,
)
from entropy.codec.threads import resolve as resolve_threads
from entropy.codec.threads import group_bounds, run_groups
from entropy.codec.threads import using as using_threads

__all__ = [
    "PreparedEncode",
    "prepare_encode",
    "Accounting",
    "EncodedTensor",
    "encode",
    "decode",
    "decode_chunks",
    "decode_parts",
    "check_tail",
    "PAD_BASE_SYMBOL",
]

#: base symbol used to complete the last pair when ``group = 2`` and the value count is odd.
PAD_BASE_SYMBOL = 0


@dataclass(frozen=True, slots=True)
class Accounting:
    """Exact size of an encoded tensor, in bits, and its reference measures."""

    n_values: int
    payload_bits: int  # sum of code lengths of all symbols, escape bits included (no padding)
    codebook_bits: int  # 8 * len(codebook.to_bytes())
    index_bits: int  # bits of the serialized chunk index
    total_bits: int  # payload + codebook + index
    bits_per_value: float  # total_bits / n_values (0.0 for n_values == 0)
    entropy_bits: float  # order-0 Shannon entropy per (ungrouped) value
    avg_code_length: float  # payload bits per coded value (values + pair padding)
    escape_bits: int = 0  # raw bits of escaped values, part of payload_bits


@dataclass(frozen=True, eq=False, slots=True)
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
    def parse_index(buf: bytes, n_chunks: int, params: CodecParams, n_values: int | None = None) -> np.ndarray:
        """Parse and validate a chunk index; returns uint32[n_chunks] (raises StreamError). A stored stream has no
        index (``buf`` is empty): its chunks' bits follow from their value counts, which take ``n_values`` (the
        stream's values)."""
        params.validate()
        w = params.index_entry_bytes
        if n_chunks < 0:
            raise StreamError(f"negative chunk count {n_chunks}")
        if len(buf) != n_chunks * w:
            raise StreamError(f"chunk index is {len(buf)} bytes, expected {n_chunks} chunks x {w} bytes")
        if params.stored:
            if n_values is None or params.n_chunks(n_values) != n_chunks:
                raise StreamError(f"a stored stream of {n_chunks} chunks needs its value count, got {n_values}")
            return params.chunk_bit_bounds(n_values)[0].astype(np.uint32)  # (fewest = most bits)
        arr = np.frombuffer(bytes(buf), dtype=">u2" if w == 2 else ">u4").astype(np.uint32)
        _check_chunk_bits(arr, params)
        return arr


def _index_bytes(chunk_bits: np.ndarray, params: CodecParams) -> bytes:
    if params.stored:
        return b""
    return np.asarray(chunk_bits).astype(">u2" if params.index_entry_bytes == 2 else ">u4").tobytes()



def _check_chunk_bits(arr: np.ndarray, params: CodecParams) -> None:
    bound = params.chunk_symbols * params.max_symbol_bits
    if arr.size and int(arr.max()) > bound:
        c = int(np.argmax(arr))
        raise StreamError(f"chunk {c}: index says {int(arr[c])} bits, more than the possible {bound}")


@functools.lru_cache(maxsize=None)  # (a handful of dtypes; np.iinfo is slow for the many calls of small arrays)
def _dtype_bounds(dt: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dt)
    return int(info.min), int(info.max)


_NATIVE: dict[np.dtype, np.dtype] = {}  # supported dtype -> its native-order dtype
_NAMES: dict[np.dtype, str] = {}  # native dtype -> its name (np.dtype.name is slow for many small arrays)


def _check_dtype(dtype: object, err: type[EntropyError]) -> np.dtype:
    known = _NATIVE.get(dtype) if isinstance(dtype, np.dtype) else None
    if known is not None:
        return known
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise err(f"unknown dtype {dtype!r}") from exc
    if dt.name not in SUPPORTED_DTYPES:
        raise err(f"dtype {dt.name} not supported; use one of {', '.join(SUPPORTED_DTYPES)}")
    # the kernels work on native-order memory: '>i2' and '<i2' are both int16 here, converted once at the entry
    native = _NATIVE[dt] = dt.newbyteorder("=")
    _NAMES[native] = native.name
    return native


def _native_flat(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.dtype]:
    arr = np.asarray(values)
    dt = _check_dtype(arr.dtype, EntropyError)
    return arr, np.ascontiguousarray(arr, dtype=dt).reshape(-1), dt  # native byte order, C order


def prepare_encode(
    values: np.ndarray,
    options: CodecOptions | None = None,
    *,
    codebook: Codebook | None = None,
    params: CodecParams | None = None,
    value_min: int | None = None,
    value_range: int | None = None,
    row_length: int = 0,
    threads: int | None = None,
    **option_fields: object,
) -> PreparedEncode:
    """Everything :func:`encode` decides before it writes a bit: mode, alphabet, codebook and exact sizes.

    Takes the arguments of :func:`encode` and raises its errors; :meth:`PreparedEncode.run` then writes the
    payload, or streams it to a file while coding (:func:`entropy.save`). ``threads`` is used for the
    histograms here and kept as the default of :meth:`PreparedEncode.run`.
    """
    opts = CodecOptions.of(options, **option_fields)
    with using_threads(threads):
        return _prepare_encode(values, opts, codebook, value_min, value_range, params, row_length, threads)


def _prepare_encode(values, opts: CodecOptions, codebook, value_min, value_range, params, row_length,
                    threads) -> PreparedEncode:
    arr, flat, dt = _native_flat(values)
    n = flat.size
    L, C, group, modes, escape = opts.max_code_length, opts.chunk_size, opts.group, opts.modes, opts.escape
    M = check_int("row_length", row_length, 0, MAX_ROW_LENGTH)
    if M and n % M:
        raise EntropyError(f"{n} values are not whole rows of row_length {M}")
    dlo, dhi = _dtype_bounds(dt)
    if params is not None or codebook is not None:
        p = _shared_params(codebook, params, L, C, group, value_min, value_range, M)
        try:
            p.check_dtype(dlo, dhi, f"dtype {dt.name}")
            p.rows(n)
        except StreamError as exc:
            raise EntropyError(str(exc)) from None
        if p.stored:
            plan, H = _stored_encode(flat, p, codebook)
        else:
            counts = stream_histogram(flat, p)
            try:
                plan = plan_from_counts(counts, p, p.n_chunks(n), codebook=codebook)
            except SymbolError as exc:
                raise SymbolError(f"{exc} in the {'shared codebook' if codebook is not None else 'code'}") from None
            H = _value_entropy(flat, p, counts)
    else:
        small = flat.tolist() if n <= small_streams.SMALL_VALUES else None  # (Python ints: faster for a few)
        raw = None
        if small is not None:
            lo, hi = (min(small), max(small)) if small else (0, 0)
        elif dt.itemsize <= 2 and not M and n >= RAW_COUNT_MIN_VALUES:  # span and histograms from one count
            raw = RawCounts(flat, pairs="pairs" in modes and C % 2 == 0, max_code_length=L)
            lo, hi = raw.span()
        else:
            lo, hi = _value_span(flat, resolve_threads(threads))
        if value_min is not None or value_range is not None:
            vmin = lo if value_min is None else int(value_min)
            R = max(1, hi - vmin + 1) if value_range is None else check_int("value_range", value_range, 1, MAX_ALPHABET)
            if R > MAX_ALPHABET:
                raise SymbolError(f"values span {R} symbols [{vmin}, {vmin + R - 1}], above the supported {MAX_ALPHABET}")
            if vmin < dlo or vmin + R - 1 > dhi:
                raise EntropyError(f"alphabet [{vmin}, {vmin + R - 1}] does not fit dtype {dt.name}")
            window = {"value_min": vmin, "value_range": R}
        else:
            window = {}
        if "pairs" in modes and len(modes) == 1 and (C % 2 or (value_range or hi - lo + 1) ** 2 > MAX_ALPHABET):
            raise EntropyError(f"group 2 needs an even chunk_size and value_range**2 <= {MAX_ALPHABET}")
        memo = None if window or small is None else small_streams.key(small, lo, hi, (L, C, modes, bool(escape), M))
        got = small_streams.plan(memo, lo)
        if got is None:
            plan, H = choose_plan(flat, max_code_length=L, chunk_size=C, modes=modes, escape=bool(escape), lo=lo,
                                  hi=hi, row_length=M, raw_counts=raw, **window)
            got = plan.params, plan.codebook, _accounting(plan, n, H)
            small_streams.remember_plan(memo, lo, *got)
        params, codebook, accounting = got
        return PreparedEncode(shape=arr.shape, dtype=_NAMES[dt], params=params, codebook=codebook,
                              accounting=accounting, _flat=flat, _memo=memo, threads=threads)
    return PreparedEncode(shape=tuple(int(s) for s in arr.shape), dtype=dt.name, params=plan.params,
                          codebook=plan.codebook, accounting=_accounting(plan, n, H), _flat=flat, threads=threads)


def _value_span(flat: np.ndarray, threads: int = 1) -> tuple[int, int]:
    """Smallest and largest value of ``flat`` ((0, 0) when empty); a large array on up to ``threads`` threads
    (numpy's reductions release the GIL)."""
    if flat.size == 0:
        return 0, 0
    bounds = group_bounds(flat.size, flat.size, threads, per_thread=1)
    spans = run_groups(lambda g: (flat[bounds[g] : bounds[g + 1]].min(), flat[bounds[g] : bounds[g + 1]].max()),
                       bounds.size - 1, threads)
    return min(int(lo) for lo, _ in spans), max(int(hi) for _, hi in spans)


def _shared_params(codebook, params, L, C, group, value_min, value_range, M) -> CodecParams:
    """The stream parameters of an encode with a given codebook and/or parameters."""
    if codebook is not None and not isinstance(codebook, Codebook):
        raise EntropyError(f"codebook must be a Codebook, got {type(codebook).__name__}")
    if params is not None:
        if not isinstance(params, CodecParams):
            raise EntropyError(f"params must be CodecParams, got {type(params).__name__}")
        try:
            params.validate()
        except StreamError as exc:
            raise EntropyError(f"invalid params: {exc}") from None
        if M and M != params.row_length:
            raise EntropyError(f"row_length {M} differs from the params' {params.row_length}")
        if codebook is not None and codebook.alphabet_size != params.alphabet_size:
            raise EntropyError(f"codebook has {codebook.alphabet_size} symbols, the params need {params.alphabet_size}")
        return params
    A = codebook.alphabet_size
    vmin = 0 if value_min is None else int(value_min)
    if value_range is not None:
        R = check_int("value_range", value_range, 1, MAX_ALPHABET)
        if R == A and group in (1, "auto"):
            k = 1
        elif R * R == A and group in (2, "auto"):
            k = 2
        else:
            raise EntropyError(f"value_range {R} with group {group!r} does not match the codebook's {A} symbols")
    elif group == 2:
        R = math.isqrt(A)
        if R * R != A:
            raise EntropyError(f"group 2 needs a codebook of R**2 symbols, got {A}")
        k = 2
    else:
        R, k = A, 1
    if k == 2 and C % 2:
        raise EntropyError("group 2 needs an even chunk_size")
    if codebook.max_length > L:
        raise CodebookError(f"shared codebook has {codebook.max_length}-bit codes, above max_code_length {L}")
    return CodecParams(group=k, max_code_length=L, chunk_size=C, value_min=vmin, value_range=R, row_length=M)


def _stored_encode(flat: np.ndarray, p: CodecParams, codebook: Codebook | None) -> tuple[StreamPlan, float]:
    """The plan of coding ``flat`` as the given stored stream ``p`` (every value must lie in its window), and the
    order-0 entropy of the values."""
    if codebook is not None and codebook.n_present:
        raise EntropyError("a stored stream's codebook must be the empty code (it has none)")
    lo, hi = _value_span(flat)
    if flat.size and (lo < p.value_min or hi > p.value_min + p.value_range - 1):
        bad = int(np.flatnonzero((flat < p.value_min) | (flat > p.value_min + p.value_range - 1))[0])
        raise SymbolError(f"value {int(flat[bad])} at flat index {bad} is outside the stored window "
                          f"[{p.value_min}, {p.value_min + p.value_range - 1}]")
    if p.value_range <= MAX_ALPHABET:
        H = shannon_entropy(stream_histogram(flat, replace(p, stored=False, row_length=0)))
    else:
        H = shannon_entropy(np.unique(flat, return_counts=True)[1]) if flat.size else 0.0
    return stored_plan(p, flat.size), H


def _value_entropy(flat: np.ndarray, p: CodecParams, counts: np.ndarray) -> float:
    """Order-0 entropy of the values (bits/value) for an encode with given parameters."""
    if p.mode == "plain" and not p.escape_range:
        return shannon_entropy(counts)
    if p.mode == "pairs":
        sq = counts.reshape(p.value_range, p.value_range)
        c1 = sq.sum(axis=1) + sq.sum(axis=0)
        c1[PAD_BASE_SYMBOL] -= int(np.count_nonzero(p.chunk_values(flat.size) % 2))  # pads of odd chunks
        return shannon_entropy(c1)
    if not p.escape_range:
        return shannon_entropy(symbol_histograms(flat, CodecParams(
            group=1, max_code_length=p.max_code_length, chunk_size=p.chunk_size, value_min=p.value_min,
            value_range=p.value_range))[0])
    return shannon_entropy(np.unique(flat, return_counts=True)[1])


def _accounting(plan: StreamPlan, n: int, H: float) -> Accounting:
    p = plan.params
    coded = n if p.runs else -(-n // p.group) * p.group  # values incl. the pad value of an odd pair
    return Accounting(
        n_values=n,
        payload_bits=plan.payload_bits,
        codebook_bits=plan.codebook_bits,
        index_bits=plan.index_bits,
        total_bits=plan.total_bits,
        bits_per_value=plan.total_bits / n if n else 0.0,
        entropy_bits=H,
        avg_code_length=plan.payload_bits / coded if coded else 0.0,
        escape_bits=plan.escape_bits,
    )


@dataclass(frozen=True, slots=True)
class PreparedEncode:
    """An encode whose sizes are known and whose payload is not written yet (see :func:`prepare_encode`)."""

    shape: tuple[int, ...]
    dtype: str
    params: CodecParams
    codebook: Codebook
    accounting: Accounting
    _flat: np.ndarray
    threads: int | None = None  # the default of run(): None = the enclosing entropy.codec.threads.using(), else all cores
    _memo: tuple | None = None  # a small array's description (entropy.codec.small_streams)

    @property
    def payload_length(self) -> int:
        """Payload size in bytes (``ceil(payload_bits / 8)``)."""
        return -(-self.accounting.payload_bits // 8)

    @property
    def index_length(self) -> int:
        """Chunk index size in bytes."""
        return self.accounting.index_bits // 8

    def run(self, sink: Callable[[memoryview, int], None] | None = None, *,
            threads: int | None = None) -> EncodedTensor:
        """Write the payload. Without ``sink`` the result holds it; with ``sink`` it is streamed piece by piece
        as ``sink(bytes, byte offset)`` while later chunks are coded, and the result's payload is empty.
        ``threads``: as for :func:`encode` (default: the one given to :func:`prepare_encode`).

        Before returning, the first and the last chunk of the new stream are decoded and compared with the
        values (:func:`check_tail`); a mismatch raises StreamError, so a writer that calls this never stores a
        stream that does not decode to its input.
        """
        from entropy.codec import kernels  # numba: imported on first use only

        cb, p = self.codebook, self.params
        nt = resolve_threads(self.threads if threads is None else threads)
        known = small_streams.payload(self._memo) if sink is None else None
        if known is not None:  # a small array coded (and self-checked) before: the same bits
            chunk_bits, data = known
            return EncodedTensor(shape=self.shape, dtype=self.dtype, params=p, codebook=cb, chunk_bits=chunk_bits,
                                 payload=data, accounting=self.accounting)
        buf, chunk_bits = kernels.encode_symbols(
            self._flat, p, cb.codes, cb.lengths, self.accounting.payload_bits, sink=sink, threads=nt,
        )
        _self_check(self._flat, np.dtype(self.dtype), p, cb, chunk_bits, buf)
        if sink is None:
            small_streams.remember_payload(self._memo, chunk_bits, buf)
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
    starts = params.chunk_starts(n)
    for c in sorted({0, n_chunks - 1}):
        try:
            got = _decode_range(n, dt, params, codebook, offsets, payload, c, c + 1)
        except StreamError as exc:
            raise StreamError(f"self-check of the new stream failed (an encoder fault; nothing valid was written): {exc}") from None
        want = flat[starts[c] : starts[c + 1]]
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
    _, flat, _ = _native_flat(values)
    if flat.size != enc.n_values:
        raise EntropyError(f"{flat.size} values given for a stream of {enc.n_values}")
    n, dt, offsets, buf = _prepare(enc.shape, enc.dtype, enc.params, enc.codebook, enc.chunk_bits, enc.payload)
    _self_check(flat, dt, enc.params, enc.codebook, enc.chunk_bits, buf)


def encode(values: np.ndarray, options: CodecOptions | None = None, **kwargs: Any) -> EncodedTensor:
    """Encode an integer array into a chunked canonical-Huffman stream.

    values: any shape, any byte order, dtype in SUPPORTED_DTYPES. Every array of up to 32-bit values codes
        (int64 too when its values span at most 2**32).
    options: how to code it, a :class:`CodecOptions` (code-length limit, chunk size, symbol modes, escapes);
        its fields may be given as keyword arguments instead, or on top (``encode(x, max_code_length=10)``).
    codebook: a shared code to use instead of building one; value_min then defaults to 0
        and value_range to its alphabet size (group 1) or its square root (group 2), unless ``params``
        (any mode) is given.
    value_min, value_range: a fixed window (no escapes); default: chosen from the data.
    params: full stream parameters to code with (with or without ``codebook``); the window, run value and
        escape range are then fixed.
    row_length: 0, or M: the values are rows of M values (C order: ``values.reshape(-1, M)``), each row cut into
        its own chunks - no chunk, pair or run crosses from one row into the next, so a range of rows decodes as a
        range of chunks (:meth:`CodecParams.chunk_starts`) and a set of rows' histogram is the sum of theirs.
    threads: None (default) codes large arrays on every core of the process (histograms and groups of chunks;
        see :mod:`entropy.codec.threads`), 1 on the calling thread only, N on up to N threads. Arrays below about
        262,144 values always code on the calling thread. The stream is the same bytes whatever ``threads``.

    Raises SymbolError for a value the given window, params or codebook cannot code, CodebookError when a
    given codebook's codes are longer than ``max_code_length``, EntropyError for bad arguments.

    >>> import numpy as np, entropy
    >>> x = np.array([0, 0, 0, 1, 0, 2, 0, 0], dtype=np.int8)
    >>> enc = entropy.encode(x, chunk_size=4, mode="plain")  # one code per value
    >>> enc.n_chunks, enc.accounting.payload_bits  # 0 takes 1 bit, 1 and 2 take 2 bits each
    (2, 10)
    >>> np.array_equal(entropy.decode(enc), x)
    True
    >>> auto = entropy.encode(x, chunk_size=4)  # so few values cost less stored: no code and no chunk index
    >>> auto.params.mode, auto.accounting.payload_bits  # 2 bits for each value of the window [0, 2]
    ('stored', 16)
    """
    return prepare_encode(values, options, **kwargs).run()


encode.__signature__ = inspect.signature(prepare_encode).replace(  # (help() shows the real parameters)
    return_annotation=EncodedTensor)


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
            f"codebook has {codebook.alphabet_size} symbols, the {params.mode} stream needs {params.alphabet_size}"
        )
    if codebook.max_length > params.max_code_length:
        raise StreamError(f"codebook has {codebook.max_length}-bit codes, above the stream's limit {params.max_code_length}")
    params.check_dtype(*_dtype_bounds(dt), dt.name)
    cb_arr = np.asarray(chunk_bits)
    if cb_arr.ndim != 1 or (cb_arr.size and not np.issubdtype(cb_arr.dtype, np.integer)):
        raise StreamError("chunk bit counts must be a 1-D integer array")
    if cb_arr.size and int(cb_arr.min()) < 0:
        raise StreamError("negative chunk bit count")
    n_chunks = params.n_chunks(n)
    if cb_arr.size != n_chunks:
        raise StreamError(f"chunk index has {cb_arr.size} chunks, {n} values in chunks of {params.chunk_size} need {n_chunks}")
    cb_arr = cb_arr.astype(np.uint32)
    _check_chunk_bits(cb_arr, params)
    if n_chunks:
        # every symbol takes 1 bit or more and stands for a bounded number of values: the payload size bounds
        # how many values a stream can make us allocate
        fewest, most = params.chunk_bit_bounds(n)
        short = np.flatnonzero(cb_arr < fewest)
        if short.size:
            c = int(short[0])
            raise StreamError(
                f"chunk {c}: index says {int(cb_arr[c])} bits, fewer than the {int(fewest[c])} its values need"
            )
        long = np.flatnonzero(cb_arr > most)
        if long.size:
            c = int(long[0])
            raise StreamError(f"chunk {c}: index says {int(cb_arr[c])} bits, more than the possible {int(most[c])}")
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
    if params.stored:  # (its chunks' bits were checked exactly above: fewest = most)
        if codebook.n_present:
            raise StreamError("a stored stream's codebook must be the empty code")
    elif n and codebook.n_present == 0:
        raise StreamError(f"{n} values to decode but the codebook has no code")
    return n, dt, offsets, buf


def _decode_range(n, dt, params, codebook, offsets, payload, start, stop, threads: int = 1) -> np.ndarray:
    """Values of chunks [start, stop) (flat), pair padding checked and dropped; on ``threads`` threads."""
    from entropy.codec import kernels

    k, R = params.group, params.value_range
    n_chunks = offsets.size - 1
    starts = params.chunk_starts(n)[start : stop + 1]
    cvals = np.diff(starts)
    if starts[-1] <= starts[0]:
        return np.empty(0, dtype=dt)
    if params.stored:
        out = np.empty(int(starts[-1] - starts[0]), dtype=dt)
        try:
            kernels.decode_stored(payload, params, n, start, stop, out, threads)
        except kernels.DecodeFailure as exc:
            raise StreamError(f"chunk {exc.chunk} of {n_chunks}: {exc}") from None
        return out
    if params.runs or params.escape_range:
        out = np.empty(int(starts[-1] - starts[0]), dtype=dt)
        try:
            kernels.decode_runs(payload, offsets, start, stop, cvals, codebook.lengths, codebook.canonical_order(),
                                codebook.max_length, params, out, threads)
        except kernels.DecodeFailure as exc:
            raise StreamError(f"chunk {exc.chunk} of {n_chunks}: {exc}") from None
        return out
    nsyms = -(-cvals // k)
    out = np.empty(int(nsyms.sum()) * k, dtype=dt)
    syms = np.arange(params.alphabet_size, dtype=np.int64)
    if k == 1:
        maps = ((syms + params.value_min).astype(dt), None)
    else:
        maps = ((syms // R + params.value_min).astype(dt), (syms % R + params.value_min).astype(dt))
    try:
        kernels.decode_symbols(
            payload, offsets, start, stop, nsyms, codebook.lengths, codebook.canonical_order(),
            codebook.max_length, maps, k, out, threads,
        )
    except kernels.DecodeFailure as exc:
        # a bad pad in an earlier chunk (all of them decoded) is the first fault
        _check_pads(out, cvals, nsyms, params, start, stop=exc.chunk - start)
        raise StreamError(f"chunk {exc.chunk} of {n_chunks}: {exc}") from None
    odd = _check_pads(out, cvals, nsyms, params, start, stop=cvals.size)
    if odd.size:  # a chunk of an odd count of values ends with a padded pair: drop the pad values
        pads = np.cumsum(nsyms * k)[odd] - 1
        out = out[:-1] if odd.size == 1 and odd[0] == cvals.size - 1 else np.delete(out, pads)
    return out


def _check_pads(out: np.ndarray, cvals: np.ndarray, nsyms: np.ndarray, params: CodecParams, start: int,
                stop: int) -> np.ndarray:
    """Check the pad value of every odd chunk among the first ``stop`` chunks of a decoded range of pairs
    (StreamError naming the first bad one); returns the odd chunks (relative to ``start``)."""
    if params.group == 1:
        return np.zeros(0, dtype=np.int64)
    odd = np.flatnonzero(cvals[:stop] % 2)
    if odd.size:
        pads = np.cumsum(nsyms * 2)[odd] - 1
        bad = np.flatnonzero(out[pads] != params.value_min + PAD_BASE_SYMBOL)
        if bad.size:
            c = start + int(odd[bad[0]])
            raise StreamError(f"chunk {c}: group padding value is {int(out[pads[bad[0]]])}, expected {params.value_min}")
    return odd


def decode_parts(*, shape, dtype, params: CodecParams, codebook: Codebook, chunk_bits, payload,
                 threads: int | None = None) -> np.ndarray:
    """Decode from the parts a file stores; returns the array (shape, dtype). Raises StreamError.

    ``threads``: as for :func:`decode`.
    """
    nt = resolve_threads(threads)
    n, dt, offsets, buf = _prepare(shape, dtype, params, codebook, chunk_bits, payload)
    flat = _decode_range(n, dt, params, codebook, offsets, buf, 0, offsets.size - 1, nt)
    return flat.reshape(tuple(int(s) for s in shape))


def decode(enc: EncodedTensor, *, threads: int | None = None) -> np.ndarray:
    """Decode an EncodedTensor to an array of its shape and dtype. Raises StreamError on damage.

    ``threads``: None (default) decodes groups of chunks on every core of the process (see
    :mod:`entropy.codec.threads`), 1 on the calling thread only, N on up to N threads; small streams (below about
    ``2 * PARALLEL_MIN_VALUES`` = 262,144 values) always decode on the calling thread. The result, and the chunk
    an error names (the lowest bad one), do not depend on it.

    >>> import numpy as np, entropy
    >>> x = np.array([[5, 5, 7], [5, 6, 5]], dtype=np.uint16)
    >>> y = entropy.decode(entropy.encode(x))
    >>> y.dtype.name, y.tolist()
    ('uint16', [[5, 5, 7], [5, 6, 5]])
    """
    return decode_parts(
        shape=enc.shape,
        dtype=enc.dtype,
        params=enc.params,
        codebook=enc.codebook,
        chunk_bits=enc.chunk_bits,
        payload=enc.payload,
        threads=threads,
    )


def decode_chunks(enc: EncodedTensor, start: int, stop: int, *, threads: int | None = None) -> np.ndarray:
    """Flat values of chunks [start, stop) only (values ``params.chunk_starts(n)[start]`` up to
    ``params.chunk_starts(n)[stop]``; without rows, start*chunk_size .. min(stop*chunk_size, n)).

    Only those chunks are read and checked. Raises StreamError on damage, EntropyError for a
    bad range. ``threads``: as for :func:`decode`.
    """
    nt = resolve_threads(threads)
    n, dt, offsets, buf = _prepare(enc.shape, enc.dtype, enc.params, enc.codebook, enc.chunk_bits, enc.payload)
    n_chunks = offsets.size - 1
    if isinstance(start, bool) or isinstance(stop, bool) or not (0 <= int(start) <= int(stop) <= n_chunks):
        raise EntropyError(f"chunk range [{start}, {stop}) outside 0..{n_chunks}")
    return _decode_range(n, dt, enc.params, enc.codebook, offsets, buf, int(start), int(stop), nt)
