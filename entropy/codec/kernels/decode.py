"""Table-driven decoders of a range of chunks (one-symbol and two-symbol tables)."""

from __future__ import annotations

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros  # LLVM cttz

from entropy.codec.kernels.common import (
    _INVALID, _chunk_fault, _load_be64, _refill, _store_le64, first_failure, load_words, payload_parts,
    raise_failure,
)
from entropy.codec.threads import group_bounds, run_groups

# ---- decoder ------------------------------------------------------------------------


def decode_table(lengths: np.ndarray, codes_order: np.ndarray, max_length: int) -> np.ndarray:
    """Flat decode table (uint32[2**max_length]) indexed by the next ``max_length`` bits.

    Entry = symbol << 8 | code length; bit patterns that start no code get the invalid flag
    0x80 (length 0). ``codes_order`` = present symbols in canonical order.
    """
    L = max_length
    ls = lengths[codes_order].astype(np.int64)
    entries = (codes_order.astype(np.uint32) << 8) | ls.astype(np.uint32)
    span = np.left_shift(np.int64(1), L - ls)
    table = np.full(1 << L, _INVALID, dtype=np.uint32)
    used = int(span.sum())
    table[:used] = np.repeat(entries, span)  # canonical codes fill the table in order
    return table



@numba.njit(cache=True, nogil=True)
def _decode_one(W, pos, nsym, table, L, B, out, o, v0, v1, k):
    """Decode ``nsym`` symbols of one chunk from bit ``pos``; returns (end pos, OR of entries)."""
    shift = np.uint64(64 - L)
    flag = np.uint32(0)
    done = 0
    while done < nsym:
        m = min(B, nsym - done)  # B lookups per refill; the last block may be short
        win = _refill(W, pos)
        for _j in range(m):
            e = table[win >> shift]
            ln = np.uint64(e & np.uint32(31))
            win <<= ln
            pos += ln
            flag |= e
            s = e >> np.uint32(8)
            out[o] = v0[s]
            if k == 2:
                out[o + 1] = v1[s]
            o += k
        done += m
    return pos, flag


@numba.njit(cache=True, nogil=True, inline="always")
def _four(offs, ostart, c):
    """First bits and first output positions of chunks c..c+3 (decoded interleaved)."""
    return offs[c], offs[c + 1], offs[c + 2], offs[c + 3], ostart[c], ostart[c + 1], ostart[c + 2], ostart[c + 3]


@numba.njit(cache=True, nogil=True)
def _decode_chunks(W, offs, ostart, nsyms, c0, c1, table, L, B, out, v0, v1, k, status):
    """Decode chunks [c0, c1) (chunk c: ``nsyms[c]`` symbols into ``out[ostart[c]:]``); on failure
    status = (chunk, kind) and returns early. Chunks go 4 at a time, in lock-step for their common length."""
    shift = np.uint64(64 - L)
    c = c0
    while c + 4 <= c1:
        p0, p1, p2, p3, o0, o1, o2, o3 = _four(offs, ostart, c)
        f0 = np.uint32(0)
        f1 = np.uint32(0)
        f2 = np.uint32(0)
        f3 = np.uint32(0)
        nb = min(min(nsyms[c], nsyms[c + 1]), min(nsyms[c + 2], nsyms[c + 3])) // B
        for _ in range(nb):
            w0 = _refill(W, p0)
            w1 = _refill(W, p1)
            w2 = _refill(W, p2)
            w3 = _refill(W, p3)
            for _j in range(B):
                e0 = table[w0 >> shift]
                e1 = table[w1 >> shift]
                e2 = table[w2 >> shift]
                e3 = table[w3 >> shift]
                l0 = np.uint64(e0 & np.uint32(31))
                l1 = np.uint64(e1 & np.uint32(31))
                l2 = np.uint64(e2 & np.uint32(31))
                l3 = np.uint64(e3 & np.uint32(31))
                w0 <<= l0
                w1 <<= l1
                w2 <<= l2
                w3 <<= l3
                p0 += l0
                p1 += l1
                p2 += l2
                p3 += l3
                f0 |= e0
                f1 |= e1
                f2 |= e2
                f3 |= e3
                s0 = e0 >> np.uint32(8)
                s1 = e1 >> np.uint32(8)
                s2 = e2 >> np.uint32(8)
                s3 = e3 >> np.uint32(8)
                out[o0] = v0[s0]
                out[o1] = v0[s1]
                out[o2] = v0[s2]
                out[o3] = v0[s3]
                if k == 2:
                    out[o0 + 1] = v1[s0]
                    out[o1 + 1] = v1[s1]
                    out[o2 + 1] = v1[s2]
                    out[o3 + 1] = v1[s3]
                o0 += k
                o1 += k
                o2 += k
                o3 += k
        done = nb * B
        p0, g0 = _decode_one(W, p0, nsyms[c] - done, table, L, B, out, o0, v0, v1, k)
        p1, g1 = _decode_one(W, p1, nsyms[c + 1] - done, table, L, B, out, o1, v0, v1, k)
        p2, g2 = _decode_one(W, p2, nsyms[c + 2] - done, table, L, B, out, o2, v0, v1, k)
        p3, g3 = _decode_one(W, p3, nsyms[c + 3] - done, table, L, B, out, o3, v0, v1, k)
        f0 |= g0
        f1 |= g1
        f2 |= g2
        f3 |= g3
        for j, fj, pj in ((0, f0, p0), (1, f1, p1), (2, f2, p2), (3, f3, p3)):
            kind = _chunk_fault(fj, pj, offs[c + j + 1])
            if kind:
                status[0] = c + j
                status[1] = kind
                return
        c += 4
    while c < c1:
        p, f = _decode_one(W, offs[c], nsyms[c], table, L, B, out, ostart[c], v0, v1, k)
        kind = _chunk_fault(f, p, offs[c + 1])
        if kind:
            status[0] = c
            status[1] = kind
            return
        c += 1
    status[0] = -1
    status[1] = 0


X2_MAX_ALPHABET = 256  # multi-symbol table: symbols fit 8 bits
X2_MIN_TABLE_BITS = 11  # 2**11 uint32 entries = 8 KiB, stays in L1
X2_MAX_TABLE_BITS = 12  # longer codes use the one-symbol table
X2_MIN_SYMBOLS = 8192  # fewer symbols to decode: the one-symbol table (cheaper to build)


def decode_table_x2(lengths: np.ndarray, codes_order: np.ndarray, max_length: int, table_bits: int) -> np.ndarray:
    """Two-symbol decode table (uint32[2**table_bits]), Huff0 X2-style, alphabets <= 256.

    Entry bits: 0-4 bits consumed (both symbols), 5-6 symbols decoded (1 or 2), 7 invalid
    flag (the first symbol's bits are no code), 8-15 first symbol, 16-23 second symbol,
    24-28 first symbol's length (for single-symbol decoding at chunk ends).
    """
    T = table_bits
    if T < max_length or lengths.size > X2_MAX_ALPHABET:
        raise ValueError(f"two-symbol table needs table_bits >= {max_length} and <= 256 symbols")
    single = decode_table(lengths, codes_order, T)
    idx = np.arange(1 << T, dtype=np.uint32)
    e1 = single
    l1 = e1 & np.uint32(31)
    inv1 = (e1 & _INVALID) != 0
    rest = (idx << l1) & np.uint32((1 << T) - 1)
    e2 = single[rest]
    l2 = e2 & np.uint32(31)
    two = (~inv1) & ((e2 & _INVALID) == 0) & (l1 + l2 <= T)
    total = np.where(two, l1 + l2, l1)
    nsym = np.where(two, 2, 1).astype(np.uint32)
    s1 = (e1 >> np.uint32(8)) & np.uint32(255)
    s2 = np.where(two, (e2 >> np.uint32(8)) & np.uint32(255), 0).astype(np.uint32)
    out = (total | (nsym << np.uint32(5)) | (s1 << np.uint32(8)) | (s2 << np.uint32(16)) | (l1 << np.uint32(24)))
    out = out.astype(np.uint32)
    out[inv1] = _INVALID | np.uint32(1 << 5)  # 0 bits, "1 symbol" so loops always progress
    return out


def bake_x2(table: np.ndarray, v0: np.ndarray) -> np.ndarray:
    """The two-symbol table with its symbol fields (bits 8-15, 16-23) replaced by the symbols' 1-byte values
    ``v0[s]``: a decoder of single values into a 1-byte array then stores them without a lookup."""
    vals = np.asarray(v0).view(np.uint8).astype(np.uint32)
    s1 = (table >> np.uint32(8)) & np.uint32(255)
    s2 = (table >> np.uint32(16)) & np.uint32(255)
    return (table & np.uint32(0xFF0000FF)) | (vals[s1] << np.uint32(8)) | (vals[s2] << np.uint32(16))


@numba.njit(cache=True, nogil=True, inline="always")
def _put_x2(out, o, e, v0, v1, k):
    s1 = (e >> np.uint32(8)) & np.uint32(255)
    s2 = (e >> np.uint32(16)) & np.uint32(255)
    if v0 is None:  # (compile time) the entry holds the 1-byte values (:func:`bake_x2`): two stores, no lookup
        out[o] = s1
        out[o + 1] = s2
    elif k == 1:
        out[o] = v0[s1]
        out[o + 1] = v0[s2]
    else:
        out[o] = v0[s1]
        out[o + 1] = v1[s1]
        out[o + 2] = v0[s2]
        out[o + 3] = v1[s2]


@numba.njit(cache=True, nogil=True)
def _tail_x2(W, pos, rem, table, T, out, o, v0, v1, k):
    """Finish a chunk one symbol at a time (first-symbol fields of the X2 entries)."""
    shift = np.uint64(64 - T)
    flag = np.uint32(0)
    B = 64 // T
    while rem > 0:
        win = _refill(W, pos)
        m = min(B, rem)
        for _j in range(m):
            e = table[win >> shift]
            ln = np.uint64((e >> np.uint32(24)) & np.uint32(31))
            win <<= ln
            pos += ln
            flag |= e
            s = (e >> np.uint32(8)) & np.uint32(255)
            if v0 is None:
                out[o] = s
            else:
                out[o] = v0[s]
                if k == 2:
                    out[o + 1] = v1[s]
            o += k
        rem -= m
    return pos, flag


@numba.njit(cache=True, nogil=True)
def _one_x2(W, pos, rem, table, T, out, o, v0, v1, k):
    """Decode ``rem`` symbols of one chunk with the two-symbol table; (end pos, OR of entries)."""
    shift = np.uint64(64 - T)
    B = 64 // T
    flag = np.uint32(0)
    last = o + (rem - 2 * B) * k  # blocks of B lookups (<= 2B symbols) start at or before this value
    while o <= last:
        win = _refill(W, pos)
        for _j in range(B):
            e = table[win >> shift]
            ln = np.uint64(e & np.uint32(31))
            win <<= ln
            pos += ln
            flag |= e
            _put_x2(out, o, e, v0, v1, k)
            o += np.int64((e >> np.uint32(5)) & np.uint32(3)) * k
    pos, f = _tail_x2(W, pos, (last - o) // k + 2 * B, table, T, out, o, v0, v1, k)
    return pos, flag | f


@numba.njit(cache=True, nogil=True)
def _decode_chunks_x2(W, offs, ostart, nsyms, c0, c1, table, T, out, v0, v1, k, status):
    """Like _decode_chunks, with the two-symbol table; 2 chunks interleaved (4 gained little: registers).
    The loops count output positions only (a block may start while 2B symbols remain): no symbol counters."""
    shift = np.uint64(64 - T)
    B = 64 // T
    c = c0
    while c + 2 <= c1:
        p0 = offs[c]
        p1 = offs[c + 1]
        o0 = ostart[c]
        o1 = ostart[c + 1]
        last0 = o0 + (nsyms[c] - 2 * B) * k
        last1 = o1 + (nsyms[c + 1] - 2 * B) * k
        f0 = np.uint32(0)
        f1 = np.uint32(0)
        while o0 <= last0 and o1 <= last1:
            w0 = _refill(W, p0)
            w1 = _refill(W, p1)
            for _j in range(B):
                e0 = table[w0 >> shift]
                e1 = table[w1 >> shift]
                l0 = np.uint64(e0 & np.uint32(31))
                l1 = np.uint64(e1 & np.uint32(31))
                w0 <<= l0
                w1 <<= l1
                p0 += l0
                p1 += l1
                f0 |= e0
                f1 |= e1
                _put_x2(out, o0, e0, v0, v1, k)
                _put_x2(out, o1, e1, v0, v1, k)
                o0 += np.int64((e0 >> np.uint32(5)) & np.uint32(3)) * k
                o1 += np.int64((e1 >> np.uint32(5)) & np.uint32(3)) * k
        p0, g0 = _one_x2(W, p0, (last0 - o0) // k + 2 * B, table, T, out, o0, v0, v1, k)
        p1, g1 = _one_x2(W, p1, (last1 - o1) // k + 2 * B, table, T, out, o1, v0, v1, k)
        f0 |= g0
        f1 |= g1
        for j, fj, pj in ((0, f0, p0), (1, f1, p1)):
            kind = _chunk_fault(fj, pj, offs[c + j + 1])
            if kind:
                status[0] = c + j
                status[1] = kind
                return
        c += 2
    while c < c1:
        p, f = _one_x2(W, offs[c], nsyms[c], table, T, out, ostart[c], v0, v1, k)
        kind = _chunk_fault(f, p, offs[c + 1])
        if kind:
            status[0] = c
            status[1] = kind
            return
        c += 1
    status[0] = -1
    status[1] = 0


# ---- bytes decoder: up to 5 one-byte values per lookup, 4 chunks interleaved ----------------------------------------
# Entry (uint64) of the table indexed by the next T bits: bits 0-7 the bits of the codes decoded (<= T), bits 8-15
# how many (1..5), bits 16-55 their values (one byte each, first value lowest), bits 56-62 the first code's length
# (for one value at a time near a chunk's end), bit 63 "no code" (the first code's bits are none; then 0 bits, 1
# value). A lookup stores all 8 bytes from bit 16 on at the output position (one unaligned store) and advances by
# the count: the bytes past the count are overwritten by the next lookup, and a lookup only runs while 8 bytes of its
# chunk's output remain, so no chunk writes into another's.

MULTI_MAX = 5  # values per lookup
_MULTI_BAD = np.uint64(1) << np.uint64(63)
_U3 = np.uint64(3)
_U7 = np.uint64(7)
_U8 = np.uint64(8)
_U16 = np.uint64(16)
_U63 = np.uint64(63)
_U56 = np.uint64(56)
_UFF = np.uint64(0xFF)
_U7F = np.uint64(0x7F)


def decode_table_bytes(lengths: np.ndarray, codes_order: np.ndarray, max_length: int, table_bits: int,
                       values: np.ndarray) -> np.ndarray:
    """The table of :func:`_decode_bytes` (uint64[2**table_bits]): ``values`` (uint8[alphabet]) are the symbols'
    one-byte values; the entry of a bit pattern decodes the codes that lie wholly inside its ``table_bits`` bits,
    up to :data:`MULTI_MAX` of them."""
    T = table_bits
    if T < max_length:
        raise ValueError(f"table_bits {T} < the longest code {max_length}")
    single = decode_table(lengths, codes_order, T)
    vals = np.asarray(values).view(np.uint8).astype(np.uint64)
    idx = np.arange(1 << T, dtype=np.uint64)
    full = np.uint64((1 << T) - 1)
    used = np.zeros(1 << T, dtype=np.uint64)
    count = np.zeros(1 << T, dtype=np.uint64)
    out = np.zeros(1 << T, dtype=np.uint64)
    alive = np.ones(1 << T, dtype=bool)
    for k in range(MULTI_MAX):
        e = single[(idx << used) & full].astype(np.uint64)
        ln = e & np.uint64(31)
        ok = alive & ((e & np.uint64(_INVALID)) == 0) & (used + ln <= np.uint64(T))
        sym = (e >> np.uint64(8)).astype(np.int64)
        out |= np.where(ok, vals[sym] << np.uint64(16 + 8 * k), np.uint64(0))
        if k == 0:
            out |= np.where(ok, ln << _U56, np.uint64(0))
        used += np.where(ok, ln, np.uint64(0))
        count += ok
        alive &= ok
    bad = count == 0
    out |= used | (np.maximum(count, 1) << _U8)
    out[bad] = _MULTI_BAD | (np.uint64(1) << _U8)
    return out


BYTES_TABLE_BITS = 12  # the bytes decoder's table: 4096 entries (32 KiB, in L1); codes of at most 12 bits
_SHIFT = np.uint64(64 - BYTES_TABLE_BITS)
_BLOCK = 4  # lookups per refill: a refill holds 56 bits, a lookup takes at most 12
_SPAN = MULTI_MAX * _BLOCK + 3  # output a block may touch: its values, and the last store's 8 bytes
_LOW = ~np.uint64(0xFF)
_MARK = np.uint64(0x80)


@numba.njit(cache=True, nogil=True, inline="always")
def _window(Wb, p):
    """The 56 payload bits from bit ``p`` on, in the top of a word, and a marker bit below them (bit 7): the bits
    consumed since are then ``trailing zeros - 7`` (no position to keep up to date per lookup)."""
    return ((_load_be64(Wb, p >> _U3) << (p & _U7)) & _LOW) | _MARK


@numba.njit(cache=True, nogil=True, inline="always")
def _consumed(w):
    return np.uint64(trailing_zeros(w)) - _U7


@numba.njit(cache=True, nogil=True, inline="always")
def _lookup(table, w, out, o):
    """One lookup: its values stored at ``out[o:]``, the window and the position advanced."""
    e = table[w >> _SHIFT]
    _store_le64(out, o, e >> _U16)
    return w << (e & _U63), o + np.int64((e >> _U8) & _UFF)


@numba.njit(cache=True, nogil=True)
def _bytes_one(Wb, p, o, end, table, out):
    """Finish one chunk: blocks of lookups while 8 bytes of its output remain after them, then one value at a time
    (the first code of each entry). Returns the end bit."""
    last = end - np.int64(_SPAN)
    while o <= last:
        w = _window(Wb, p)
        w, o = _lookup(table, w, out, o)
        w, o = _lookup(table, w, out, o)
        w, o = _lookup(table, w, out, o)
        w, o = _lookup(table, w, out, o)
        p += _consumed(w)
    while o < end:
        w = _window(Wb, p)
        for _j in range(min(_BLOCK, end - o)):
            e = table[w >> _SHIFT]
            w <<= (e >> _U56) & _U7F
            out[o] = np.uint8((e >> _U16) & _UFF)
            o += 1
        p += _consumed(w)
    return p


@numba.njit(cache=True, nogil=True)
def _decode_bytes(Wb, offs, ostart, c0, c1, table, out, status):
    """Decode chunks [c0, c1) of 1-byte values with the table of :func:`decode_table_bytes` (chunk c: values
    ``out[ostart[c]:ostart[c + 1]]``, bits from ``offs[c]``); 4 chunks interleaved while all of them have a block
    left (their dependency chains - window, lookup, shift - overlap). On failure status = (chunk, kind) of the first
    bad chunk and returns early."""
    c = c0
    span = np.int64(_SPAN)
    while c + 4 <= c1:
        p0, p1, p2, p3, o0, o1, o2, o3 = _four(offs, ostart, c)
        l0 = o1 - span
        l1 = o2 - span
        l2 = o3 - span
        l3 = ostart[c + 4] - span
        while o0 <= l0 and o1 <= l1 and o2 <= l2 and o3 <= l3:
            w0 = _window(Wb, p0)
            w1 = _window(Wb, p1)
            w2 = _window(Wb, p2)
            w3 = _window(Wb, p3)
            for _j in range(_BLOCK):
                w0, o0 = _lookup(table, w0, out, o0)
                w1, o1 = _lookup(table, w1, out, o1)
                w2, o2 = _lookup(table, w2, out, o2)
                w3, o3 = _lookup(table, w3, out, o3)
            p0 += _consumed(w0)
            p1 += _consumed(w1)
            p2 += _consumed(w2)
            p3 += _consumed(w3)
        p0 = _bytes_one(Wb, p0, o0, ostart[c + 1], table, out)
        p1 = _bytes_one(Wb, p1, o1, ostart[c + 2], table, out)
        p2 = _bytes_one(Wb, p2, o2, ostart[c + 3], table, out)
        p3 = _bytes_one(Wb, p3, o3, ostart[c + 4], table, out)
        if p0 != offs[c + 1] or p1 != offs[c + 2] or p2 != offs[c + 3] or p3 != offs[c + 4]:
            break  # a fault in one of these chunks: decoded again one by one below, to name the first
        c += 4
    while c < c1:
        p = _bytes_one(Wb, offs[c], ostart[c], ostart[c + 1], table, out)
        if p != offs[c + 1]:
            status[0] = c
            status[1] = 2
            return
        c += 1
    status[0] = -1
    status[1] = 0


def decode_symbols(
    payload: bytes | np.ndarray,
    offsets: np.ndarray,
    start: int,
    stop: int,
    nsyms: np.ndarray,
    lengths: np.ndarray,
    codes_order: np.ndarray,
    max_length: int,
    value_of_symbol: tuple[np.ndarray, np.ndarray | None],
    group: int,
    out: np.ndarray,
    threads: int = 1,
) -> None:
    """Decode chunks ``[start, stop)`` into ``out`` (1-D, ``group`` values per symbol, chunk after chunk).

    ``offsets`` (uint64[n_chunks + 1]) are validated chunk bit offsets with
    ``offsets[-1] <= 8 * len(payload)``; ``nsyms`` (int64[stop - start]) the symbols of each chunk of the range,
    ``out`` holds ``group * nsyms.sum()`` values; ``lengths`` / ``codes_order`` / ``max_length`` describe
    a valid canonical code with at least one symbol; ``value_of_symbol`` maps each symbol to
    its first (and second) value in ``out``'s dtype. Alphabets of at most 256 symbols use a
    two-symbol table. ``threads``: groups of chunks are decoded on up to this many threads (each into its own
    slice of ``out``) when the range is large enough. Raises :class:`DecodeFailure` naming the first bad chunk
    (the lowest, whatever the threads).
    """
    if stop <= start:
        return
    L = int(max_length)
    nsyms = np.ascontiguousarray(nsyms, dtype=np.int64)
    # the two-symbol table is built with ~10 temporaries of 2**T entries: keep T small, and build it only when
    # there are enough symbols to pay for it (a chunk or two of a small tensor decodes faster without)
    x2 = lengths.size <= X2_MAX_ALPHABET and L <= X2_MAX_TABLE_BITS and int(nsyms.sum()) >= X2_MIN_SYMBOLS
    baked = x2 and group == 1 and out.dtype.itemsize == 1  # 1-byte values: the bytes decoder
    T = BYTES_TABLE_BITS if baked else max(L, X2_MIN_TABLE_BITS) if x2 else L
    walk = int(nsyms.max()) * T
    ostart = np.zeros(nsyms.size + 1, dtype=np.int64)
    np.cumsum(nsyms * group, out=ostart[1:])
    udt = np.dtype(f"u{out.dtype.itemsize}")  # compile for unsigned types only
    v0, v1 = value_of_symbol
    if v1 is None:
        v1 = v0
    v0, v1, out = v0.view(udt), v1.view(udt), out.view(udt)
    if baked:
        table = decode_table_bytes(lengths, codes_order, L, T, v0)
        if (table & _MULTI_BAD).any():  # an incomplete code (one symbol): bit patterns that are no code
            baked, T = False, max(L, X2_MIN_TABLE_BITS)
            walk = int(nsyms.max()) * T
    if baked:
        pass
    elif x2:
        table = decode_table_x2(lengths, codes_order, L, T)
    else:
        table = decode_table(lengths, codes_order, L)
    bounds = group_bounds(nsyms.size, int(ostart[-1]), threads)

    def run(g: int) -> np.ndarray:
        a, b = int(bounds[g]), int(bounds[g + 1])
        status = np.zeros(2, dtype=np.int64)
        if baked:  # the payload read in place where a damaged chunk's walk cannot leave it
            for W, local, lo, hi in payload_parts(payload, offsets, start + a, start + b, walk):
                lo, hi = lo - start, hi - start
                _decode_bytes(W, local, ostart[lo : hi + 1] - ostart[lo], np.int64(0), np.int64(hi - lo), table,
                              out[ostart[lo] : ostart[hi]], status)
                if status[0] >= 0:
                    status[0] += lo - a
                    break
            return status
        words, local = load_words(payload, offsets, start + a, start + b, walk)
        head = (words, local, ostart[a:b] - ostart[a], nsyms[a:b], np.int64(0), np.int64(b - a))
        o = out[ostart[a] : ostart[b]]
        if x2:
            _decode_chunks_x2(*head, table, np.int64(T), o, v0, v1, np.int64(group), status)
        else:
            _decode_chunks(*head, table, np.int64(L), np.int64(64 // L), o, v0, v1, np.int64(group), status)
        return status

    statuses = run_groups(run, bounds.size - 1, threads)
    raise_failure(first_failure(bounds, statuses), start, offsets)
