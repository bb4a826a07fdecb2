"""Shared pieces of the kernels: symbol arithmetic, the bit reader, the decoder's failure report."""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM cttz

_INVALID = np.uint32(0x80)  # flag bit of a table entry for a bit pattern that is no code
_U1 = np.uint64(1)
_U6 = np.uint64(6)
_U63 = np.uint64(63)
_U32 = np.uint64(32)
_M32 = np.uint64(0xFFFFFFFF)
_ESCAPE = np.uint32(0x20)  # flag bit of a run/escape table entry: raw escape bits follow the code


class DecodeFailure(Exception):
    """Raised by the decoders; the codec turns it into a StreamError.

    ``chunk`` is the absolute chunk number, ``kind`` one of "code" (bits that are no code),
    "end" (the chunk did not end exactly on its recorded bit count), "overrun" (a symbol's values
    pass the chunk's value count), "escape" (a raw escaped value outside the escape range).
    """

    def __init__(self, chunk: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.chunk = chunk
        self.kind = kind


@numba.njit(cache=True, nogil=True, inline="always")
def _sym(v, vmin, mask):
    """Base symbol of value v: (v - vmin) modulo 2**bits of the input's unsigned view."""
    return (np.int64(v) - vmin) & mask


def _wrap(x: int, bits: int) -> int:
    """``x`` as the kernels see it: modulo 2**bits (bits < 64), or signed for 64-bit data (int64 arithmetic wraps)."""
    return int(x) if bits == 64 else int(x) % (1 << bits)


def _unsigned(flat: np.ndarray, value_min: int) -> tuple[np.ndarray, int, np.int64]:
    """Unsigned view of ``flat`` with value_min and the bit mask for modular symbol math.

    Kernels are then compiled for 4 unsigned types instead of 7 signed and unsigned ones;
    (v - value_min) mod 2**bits equals the true symbol for every in-alphabet value and stays
    >= value_range for every other value, because the alphabet fits the dtype.
    """
    if not flat.dtype.isnative:  # '>i2' etc.: the modular symbol math needs native-order words
        flat = flat.astype(flat.dtype.newbyteorder("="))
    bits = 8 * flat.dtype.itemsize
    u = flat.view(np.dtype(f"u{flat.dtype.itemsize}"))
    mask = np.int64(-1) if bits == 64 else np.int64((1 << bits) - 1)
    return u, _wrap(value_min, bits), mask


#: names of :func:`spec`'s fields, the integer description of a stream that the run/escape kernels take
SPEC_FIELDS = ("vmin", "mask", "R", "V", "esc", "emin", "erange", "E", "runs", "run_b", "C")


def spec(itemsize: int, params) -> tuple:
    """The run/escape kernels' description of a stream (int64 fields named by :data:`SPEC_FIELDS`).

    ``params`` is an :class:`entropy.codec.params.CodecParams` (only its attributes are read): window ``R`` base symbols
    from ``value_min``; ``V = R + esc`` symbols per run prefix (the escape symbol is ``R``); ``runs`` prefixes
    (0 = no run symbols); escaped raw values ``v - escape_min`` in ``E`` bits below ``erange``.
    """
    bits = 8 * itemsize
    mask = -1 if bits == 64 else (1 << bits) - 1
    esc = 1 if params.escape_range else 0
    return tuple(np.int64(x) for x in (
        _wrap(params.value_min, bits), mask, params.value_range, params.value_range + esc, esc,
        _wrap(params.escape_min, bits), params.escape_range, params.escape_bits, params.runs, params.run_symbol,
        params.chunk_size,
    ))



@intrinsic
def _bswap64(typingctx, x):
    """The byte-reversed uint64 (one ``bswap`` instruction)."""

    def codegen(context, builder, signature, args):
        return builder.bswap(args[0])

    return types.uint64(types.uint64), codegen


# ---- raw memory access ---------------------------------------------------------------------------------------------
# Loads and stores of 2 or 8 bytes at any byte offset of an array's memory, unaligned, with no bounds check and no
# negative-index wrap-around: what the hot loops need (one instruction each) and numba's indexing does not give.
# The callers keep every access inside the array (the buffers carry slack for the widest access).


def _at(context, builder, aryty, ary, off, width: int):
    """Pointer to ``width`` bytes at byte offset ``off`` of the array's data."""
    a = context.make_array(aryty)(context, builder, value=ary)
    base = builder.bitcast(a.data, ir.IntType(8).as_pointer())
    return builder.bitcast(builder.gep(base, [off]), ir.IntType(8 * width).as_pointer())


@intrinsic
def _load_be64(typingctx, arr, off):
    """The 8 bytes of ``arr``'s memory from byte ``off`` on, read as a big-endian uint64 (the payload's order)."""

    def codegen(context, builder, sig, args):
        return builder.bswap(builder.load(_at(context, builder, sig.args[0], args[0], args[1], 8), align=1))

    return types.uint64(arr, off), codegen


def _load_be_n(width: int):
    """An intrinsic: the ``width`` bytes of an array's memory from byte ``off`` on, big-endian, as a uint64."""

    @intrinsic
    def load(typingctx, arr, off):
        def codegen(context, builder, sig, args):
            v = builder.load(_at(context, builder, sig.args[0], args[0], args[1], width), align=1)
            return builder.zext(builder.bswap(v), ir.IntType(64))

        return types.uint64(arr, off), codegen

    return load


def _store_be_n(width: int):
    """An intrinsic: store the low ``width`` bytes of a uint64 big-endian at byte ``off`` of an array's memory."""

    @intrinsic
    def store(typingctx, arr, off, val):
        def codegen(context, builder, sig, args):
            v = builder.trunc(context.cast(builder, args[2], sig.args[2], types.uint64), ir.IntType(8 * width))
            builder.store(builder.bswap(v), _at(context, builder, sig.args[0], args[0], args[1], width), align=1)
            return context.get_dummy_value()

        return types.void(arr, off, val), codegen

    return store


_load_be16 = _load_be_n(2)
_load_be32 = _load_be_n(4)
_store_be16 = _store_be_n(2)
_store_be32 = _store_be_n(4)


@intrinsic
def _load_le16(typingctx, arr, off):
    """The 2 bytes of ``arr``'s memory from byte ``off`` on, as a little-endian uint16 widened to uint64."""

    def codegen(context, builder, sig, args):
        v = builder.load(_at(context, builder, sig.args[0], args[0], args[1], 2), align=1)
        return builder.zext(v, ir.IntType(64))

    return types.uint64(arr, off), codegen


@intrinsic
def _store_be64(typingctx, arr, off, val):
    """Store the uint64 ``val`` big-endian at byte ``off`` of ``arr``'s memory (8 bytes)."""

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[2], sig.args[2], types.uint64)
        builder.store(builder.bswap(v), _at(context, builder, sig.args[0], args[0], args[1], 8), align=1)
        return context.get_dummy_value()

    return types.void(arr, off, val), codegen


@intrinsic
def _store_le64(typingctx, arr, off, val):
    """Store the uint64 ``val`` little-endian at byte ``off`` of ``arr``'s memory (8 bytes)."""

    def codegen(context, builder, sig, args):
        v = context.cast(builder, args[2], sig.args[2], types.uint64)
        builder.store(v, _at(context, builder, sig.args[0], args[0], args[1], 8), align=1)
        return context.get_dummy_value()

    return types.void(arr, off, val), codegen


@numba.njit(cache=True, nogil=True, inline="always")
def _refill(W, pos):
    """The 64 payload bits from bit ``pos`` on; ``W`` holds the payload's raw bytes (:func:`load_words`), so each
    word is byte-swapped as it is read (MSB-first payload on a little-endian host, the only kind numba targets)."""
    wi = pos >> _U6
    r = pos & _U63
    return (_bswap64(W[wi]) << r) | ((_bswap64(W[wi + _U1]) >> _U1) >> (_U63 - r))


@numba.njit(cache=True, nogil=True, inline="always")
def _chunk_fault(flag, pos, end):
    """0 if a chunk decoded cleanly, 1 if it hit a bit pattern that is no code, 2 if it did not end at ``end``."""
    if flag & _INVALID:
        return 1
    if pos != end:
        return 2
    return 0


def run_raw(itemsize: int, params) -> int:
    """The run value as the kernels store it (unsigned view of ``value_min + run_symbol``); 0 without runs."""
    if not params.runs:
        return 0
    return (int(params.value_min) + int(params.run_symbol)) & ((1 << (8 * itemsize)) - 1)


def load_words(payload, offsets: np.ndarray, start: int, stop: int, walk_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of chunks [start, stop) as 64-bit words (raw bytes: :func:`_refill` reads them big-endian), and the
    chunks' offsets rebased to them.

    The word array is zero-padded so that a walk of up to ``walk_bits`` bits past any chunk start stays inside it
    (damaged streams included): decoders need no bounds checks in their hot loops. One copy, no byte-swapping pass.
    """
    buf = np.frombuffer(payload, dtype=np.uint8)
    b0 = int(offsets[start]) >> 3
    b1 = min(buf.size, (int(offsets[stop]) + 7) >> 3)
    nbytes = b1 - b0
    words = np.zeros(nbytes // 8 + 1 + walk_bits // 64 + 4, dtype=np.uint64)
    words.view(np.uint8)[:nbytes] = buf[b0:b1]
    local = offsets[start : stop + 1] - np.uint64(8 * b0)
    return words, local


def payload_parts(payload, offsets: np.ndarray, start: int, stop: int,
                  walk_bits: int) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
    """Chunks [start, stop) cut into at most two parts ``(bytes, chunk offsets rebased to them, first chunk, end
    chunk)``: the chunks whose walk of ``walk_bits`` bits (and an 8-byte load after it) stays inside the payload
    are read in place (no copy), the last few from a padded copy (:func:`load_words`). For decoders that read the
    payload with :func:`_load_be64` at byte offsets."""
    buf = np.frombuffer(payload, dtype=np.uint8)
    limit = 8 * buf.size - walk_bits - 128
    m = start if limit < 0 else min(stop, start + int(np.searchsorted(offsets[start:stop], limit, side="right")))
    parts = []
    if m > start:
        parts.append((buf, offsets[start : m + 1], start, m))
    if stop > m:
        words, local = load_words(payload, offsets, m, stop, walk_bits)
        parts.append((words, local, m, stop))
    return parts


def first_failure(bounds: np.ndarray, statuses: list[np.ndarray]) -> np.ndarray:
    """One decoder status for chunk groups decoded separately: the lowest failing chunk (relative to the first
    group's start; -1 if none), whatever order the groups ran in. ``statuses[g]`` is group ``g``'s status, its
    chunk relative to ``bounds[g]``."""
    out = np.array([-1, 0], dtype=np.int64)
    for g, st in enumerate(statuses):
        if st[0] >= 0:  # groups are in chunk order, and each reports its first failing chunk
            out[0] = int(bounds[g]) + int(st[0])
            out[1] = st[1]
            break
    return out


_FAULTS = {
    1: ("code", "bits that are not a code of the codebook"),
    3: ("overrun", "a symbol's values run past the chunk's value count"),
    4: ("escape", "an escaped raw value outside the escape range"),
}


def raise_failure(status: np.ndarray, start: int, offsets: np.ndarray) -> None:
    """Raise :class:`DecodeFailure` for a decoder's ``status`` = (chunk relative to ``start`` or -1, fault kind)."""
    if status[0] < 0:
        return
    c = int(status[0]) + start
    kind = int(status[1])
    if kind in _FAULTS:
        name, what = _FAULTS[kind]
        raise DecodeFailure(c, name, f"chunk {c}: {what}")
    lo, hi = int(offsets[c]), int(offsets[c + 1])
    raise DecodeFailure(c, "end", f"chunk {c}: decoded symbols do not end at the chunk's recorded {hi - lo} bits")


def run_marks(u: np.ndarray, rv, threads: int = 1) -> np.ndarray:
    """Where the values are not the run value ``rv``: bit ``i & 63`` of word ``i >> 6`` is set when value ``i`` is
    not ``rv`` (uint64 words, zero-padded by a word). One vectorised compare and pack (numpy releases the GIL for
    both: groups of 64-value blocks run on up to ``threads`` threads); the run kernels then find the next value
    that ends a run with a count-trailing-zeros, whatever the run length."""
    from entropy.codec.threads import group_bounds, run_groups

    n = u.size
    padded = np.zeros(8 * (n // 64 + 2), dtype=np.uint8)
    bounds = group_bounds(-(-n // 64), n, threads, per_thread=2) * 64

    def pack(g: int) -> None:
        a, b = int(bounds[g]), min(n, int(bounds[g + 1]))
        packed = np.packbits(u[a:b] != rv, bitorder="little")
        padded[a // 8 : a // 8 + packed.size] = packed

    run_groups(pack, bounds.size - 1, threads)
    words = padded.view(np.dtype("<u8"))
    return words if words.dtype.isnative else words.astype(np.uint64)


_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _next_mark(words, i, end):
    """First index in [i, end) whose value is not the run value (its bit in :func:`run_marks` is set), else ``end``."""
    wi = i >> 6
    w = words[wi] & (_ALL << np.uint64(i & 63))
    while w == 0:
        wi += 1
        if wi << 6 >= end:
            return end
        w = words[wi]
    return min((wi << 6) + np.int64(trailing_zeros(w)), end)
