"""Compiled (numba) kernels of the codec, behind one small interface.

Public functions (all single-threaded; numpy arrays in, numpy arrays out):

* :func:`count_symbols` - histogram of grouped symbols, with an alphabet check;
* :func:`encode_symbols` - canonical-Huffman bitstream of the grouped symbols, per-chunk bit counts;
* :func:`decode_symbols` - table-driven decoder of a range of chunks into values
  (it builds its own decode table, so the table layout can change behind it).

Symbols: a value ``v`` is base symbol ``v - value_min`` in ``[0, R)``; with grouping ``k = 2``
the pair ``(a, b)`` of consecutive base symbols is the symbol ``a * R + b``. An odd number of
values is padded with base symbol 0 (the value ``value_min``) to complete the last pair.

Bitstream: MSB-first, chunks of ``chunk_symbols`` symbols concatenated without padding,
zero bits up to the next byte at the end.

The decoder follows the ideas of Huff0 (zstd): a flat table indexed by the next ``T``
bits, a 64-bit window refilled from big-endian 64-bit words, ``64 // T`` lookups per
refill, and several chunks decoded interleaved so the CPU overlaps their independent
dependency chains. Alphabets of at most 256 symbols use a two-symbol table (Huff0's X2
idea: one lookup yields 1 or 2 symbols; ``T = max(L, 11)``, two chunks interleaved) when
``L <= 12``; other codes a one-symbol table (``T = L``, the longest code; four chunks interleaved).

It never trusts the stream: a lookup moves at most ``T`` bits and yields at least one
symbol, a chunk has a fixed symbol count, and the word array is padded for that worst
case, so a damaged stream cannot read out of bounds or loop forever; invalid codes and chunks that do not end on
their recorded bit count are reported by chunk number. This module imports numba, so the
codec imports it lazily (``import entropy`` stays fast); kernels compile on first use and
are cached on disk (``cache=True``).
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

__all__ = ["count_symbols", "encode_symbols", "decode_symbols", "decode_table", "decode_table_x2", "DecodeFailure"]

_INVALID = np.uint32(0x80)  # flag bit of a table entry for a bit pattern that is no code
_U1 = np.uint64(1)
_U6 = np.uint64(6)
_U63 = np.uint64(63)
_U32 = np.uint64(32)
_M32 = np.uint64(0xFFFFFFFF)


class DecodeFailure(Exception):
    """Raised by :func:`decode_symbols`; the codec turns it into a StreamError.

    ``chunk`` is the absolute chunk number, ``kind`` one of "code" (bits that are no code),
    "end" (the chunk did not end exactly on its recorded bit count).
    """

    def __init__(self, chunk: int, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.chunk = chunk
        self.kind = kind


@numba.njit(cache=True, nogil=True, inline="always")
def _sym(v, vmin, mask):
    """Base symbol of value v: (v - vmin) modulo 2**bits of the input's unsigned view."""
    return (np.int64(v) - vmin) & mask


# ---- histogram ----------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _count_k1(values, vmin, mask, R, counts):
    n = values.size
    c4 = np.zeros((4, R), dtype=np.int64)  # 4 sub-histograms avoid store-forwarding stalls on runs
    n4 = n - n % 4
    bad = -1
    uR = np.uint64(R)
    for i in range(0, n4, 4):
        s0 = np.uint64(_sym(values[i], vmin, mask))
        s1 = np.uint64(_sym(values[i + 1], vmin, mask))
        s2 = np.uint64(_sym(values[i + 2], vmin, mask))
        s3 = np.uint64(_sym(values[i + 3], vmin, mask))
        if s0 >= uR or s1 >= uR or s2 >= uR or s3 >= uR:
            bad = i
            break
        c4[0, s0] += 1
        c4[1, s1] += 1
        c4[2, s2] += 1
        c4[3, s3] += 1
    if bad >= 0:
        for j in range(bad, bad + 4):
            if np.uint64(_sym(values[j], vmin, mask)) >= uR:
                return j
    for i in range(n4, n):
        s = np.uint64(_sym(values[i], vmin, mask))
        if s >= uR:
            return i
        c4[0, s] += 1
    for s in range(R):
        counts[s] = c4[0, s] + c4[1, s] + c4[2, s] + c4[3, s]
    return -1


@numba.njit(cache=True, nogil=True)
def _count_k2(values, vmin, mask, R, counts):
    n = values.size
    npair = n // 2
    A = R * R
    c2 = np.zeros((2, A), dtype=np.int64)
    uR = np.uint64(R)
    for p in range(npair):
        a = np.uint64(_sym(values[2 * p], vmin, mask))
        b = np.uint64(_sym(values[2 * p + 1], vmin, mask))
        if a >= uR:
            return 2 * p
        if b >= uR:
            return 2 * p + 1
        c2[p & 1, a * uR + b] += 1
    if n % 2:
        a = np.uint64(_sym(values[n - 1], vmin, mask))
        if a >= uR:
            return n - 1
        c2[0, a * uR] += 1  # padded with base symbol 0
    for s in range(A):
        counts[s] = c2[0, s] + c2[1, s]
    return -1


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
    # 64 bits: int64 arithmetic already wraps modulo 2**64, keep value_min signed
    return u, int(value_min) if bits == 64 else int(value_min) % (1 << bits), mask


def count_symbols(flat: np.ndarray, value_min: int, value_range: int, group: int) -> tuple[np.ndarray, int]:
    """Histogram of symbols (int64[value_range**group]) and the index of the first value out of
    ``[value_min, value_min + value_range)`` (-1 if none; the histogram is then incomplete)."""
    counts = np.zeros(value_range**group, dtype=np.int64)
    if flat.size == 0:
        return counts, -1
    u, vmin_u, mask = _unsigned(flat, value_min)
    if group == 1:
        bad = _count_k1(u, np.int64(vmin_u), mask, np.int64(value_range), counts)
    else:
        bad = _count_k2(u, np.int64(vmin_u), mask, np.int64(value_range), counts)
    return counts, int(bad)


# ---- encoder ------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _encode(values, vmin, mask, R, k, codes, lens, spc, c_begin, c_end, out32, chunk_bits, twice, acc, nacc, w,
            prev_bits):
    # chunks [c_begin, c_end); (acc, nacc, w, prev_bits) carry the bit writer from the previous call.
    # Bit writer invariant: after a flush check nacc <= 31, so at most 33 bits may enter before the next one:
    # one code of <= 24 bits always, two codes only when ``twice`` (codes <= 16 bits: 31 + 32 = 63).
    n = values.size
    nsym = (n + k - 1) // k
    for c in range(c_begin, c_end):
        i0 = c * spc
        i1 = min(i0 + spc, nsym)
        if k == 1:
            i = i0
            while twice and i + 1 < i1:
                s = _sym(values[i], vmin, mask)
                t = _sym(values[i + 1], vmin, mask)
                acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
                acc = (acc << np.uint64(lens[t])) | np.uint64(codes[t])
                nacc += np.uint64(lens[s]) + np.uint64(lens[t])
                if nacc >= _U32:
                    nacc -= _U32
                    out32[w] = np.uint32((acc >> nacc) & _M32)
                    w += 1
                i += 2
            while i < i1:
                s = _sym(values[i], vmin, mask)
                acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
                nacc += np.uint64(lens[s])
                if nacc >= _U32:
                    nacc -= _U32
                    out32[w] = np.uint32((acc >> nacc) & _M32)
                    w += 1
                i += 1
        else:
            for i in range(i0, i1):
                a = _sym(values[2 * i], vmin, mask)
                if 2 * i + 1 < n:
                    b = _sym(values[2 * i + 1], vmin, mask)
                else:
                    b = 0
                s = a * R + b
                acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
                nacc += np.uint64(lens[s])
                if nacc >= _U32:
                    nacc -= _U32
                    out32[w] = np.uint32((acc >> nacc) & _M32)
                    w += 1
        bits = w * 32 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, w, prev_bits


@numba.njit(cache=True, nogil=True)
def _encode_fused(values, vmin, mask, R, codes, lens, code2, len2, spc, c_begin, c_end, out32, chunk_bits, twice,
                  acc, nacc, w, prev_bits):
    """Group-1 encoder that looks up two values at once in a fused (pair) code table.

    ``code2[a * R + b]`` is code(a) followed by code(b), ``len2`` its length (<= 24 bits);
    with ``twice`` (pair codes <= 16 bits) two pairs go in per flush check. Chunks and carried state as
    in ``_encode``.
    """
    n = values.size
    for c in range(c_begin, c_end):
        i0 = c * spc
        i1 = min(i0 + spc, n)
        i = i0
        if twice:
            while i + 3 < i1:
                s = (_sym(values[i], vmin, mask)) * R + (_sym(values[i + 1], vmin, mask))
                t = (_sym(values[i + 2], vmin, mask)) * R + (_sym(values[i + 3], vmin, mask))
                acc = (acc << np.uint64(len2[s])) | np.uint64(code2[s])
                acc = (acc << np.uint64(len2[t])) | np.uint64(code2[t])
                nacc += np.uint64(len2[s]) + np.uint64(len2[t])
                if nacc >= _U32:
                    nacc -= _U32
                    out32[w] = np.uint32((acc >> nacc) & _M32)
                    w += 1
                i += 4
        while i + 1 < i1:
            s = (_sym(values[i], vmin, mask)) * R + (_sym(values[i + 1], vmin, mask))
            acc = (acc << np.uint64(len2[s])) | np.uint64(code2[s])
            nacc += np.uint64(len2[s])
            if nacc >= _U32:
                nacc -= _U32
                out32[w] = np.uint32((acc >> nacc) & _M32)
                w += 1
            i += 2
        if i < i1:
            s = _sym(values[i], vmin, mask)
            acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
            nacc += np.uint64(lens[s])
            if nacc >= _U32:
                nacc -= _U32
                out32[w] = np.uint32((acc >> nacc) & _M32)
                w += 1
        bits = w * 32 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, w, prev_bits


def encode_symbols(
    flat: np.ndarray,
    value_min: int,
    value_range: int,
    group: int,
    codes: np.ndarray,
    lengths: np.ndarray,
    chunk_symbols: int,
    total_bits: int,
    *,
    sink: Callable[[memoryview, int], None] | None = None,
    piece_chunks: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``flat`` values (all inside the alphabet, every symbol with a code).

    Returns the MSB-first payload (uint8[``ceil(total_bits / 8)``]) and the payload bits of
    each chunk (uint32). ``total_bits`` must be the exact payload size (sum count * len).

    With ``sink``, the payload is also streamed while it is coded: after every
    ``piece_chunks`` chunks, ``sink(view, offset)`` receives the finished bytes and their byte
    offset in the payload, so a writer can store and checksum them while the rest is coded.
    The views stay valid and unchanged after the call; the last one ends the payload.
    """
    n = flat.size
    nsym = -(-n // group)
    n_chunks = -(-nsym // chunk_symbols)
    out32 = np.zeros(total_bits // 32 + 2, dtype=np.uint32)
    chunk_bits = np.zeros(n_chunks, dtype=np.uint32)
    nbytes = (total_bits + 7) // 8
    if n == 0:
        return np.zeros(0, dtype=np.uint8), chunk_bits
    u, vmin_u, mask = _unsigned(flat, value_min)
    lens8 = lengths.astype(np.uint8, copy=False)
    codes32 = codes.astype(np.uint32, copy=False)
    max_len = int(lens8.max())
    if group == 1 and value_range * value_range <= 1 << 16 and max_len <= 12:
        # fused pair table: one lookup and one shift per two values
        l64 = lens8.astype(np.uint32)
        len2 = (l64[:, None] + l64[None, :]).astype(np.uint8).ravel()
        code2 = ((codes32[:, None] << l64[None, :]) | codes32[None, :]).astype(np.uint32).ravel()

        def run(c0, c1, state):
            return _encode_fused(
                u, np.int64(vmin_u), mask, np.int64(value_range), codes32, lens8, code2, len2,
                np.int64(chunk_symbols), np.int64(c0), np.int64(c1), out32, chunk_bits, max_len <= 8, *state,
            )
    else:

        def run(c0, c1, state):
            return _encode(
                u, np.int64(vmin_u), mask, np.int64(value_range), np.int64(group), codes32, lens8,
                np.int64(chunk_symbols), np.int64(c0), np.int64(c1), out32, chunk_bits, max_len <= 16, *state,
            )

    state = (np.uint64(0), np.uint64(0), np.int64(0), np.int64(0))  # bit buffer, its fill, words out, bits out
    bytes_out = out32.view(np.uint8)
    done_words = 0
    step = n_chunks if sink is None else max(1, int(piece_chunks))
    for c0 in range(0, n_chunks, step):
        c1 = min(n_chunks, c0 + step)
        acc, nacc, w, written = run(c0, c1, state)
        # numba hands back Python ints; keep the argument types fixed (unsigned bit buffer, one compilation)
        state = (np.uint64(acc), np.uint64(nacc), np.int64(w), np.int64(written))
        if c1 == n_chunks:
            if written != total_bits:  # pragma: no cover - internal consistency
                raise AssertionError(f"encoder wrote {written} bits, expected {total_bits}")
            if nacc > 0:  # the last partial word, zero bits up to the byte boundary
                out32[w] = np.uint32((int(acc) << (32 - int(nacc))) & 0xFFFFFFFF)
                w += 1
        out32[done_words:w].byteswap(inplace=True)
        if sink is not None:
            stop = min(4 * int(w), nbytes)
            sink(memoryview(bytes_out[4 * done_words : stop]), 4 * done_words)
        done_words = int(w)
    return bytes_out[:nbytes], chunk_bits


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


@numba.njit(cache=True, nogil=True, inline="always")
def _refill(W, pos):
    wi = pos >> _U6
    r = pos & _U63
    return (W[wi] << r) | ((W[wi + _U1] >> _U1) >> (_U63 - r))


@numba.njit(cache=True, nogil=True, inline="always")
def _chunk_fault(flag, pos, end):
    """0 if a chunk decoded cleanly, 1 if it hit a bit pattern that is no code, 2 if it did not end at ``end``."""
    if flag & _INVALID:
        return 1
    if pos != end:
        return 2
    return 0


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


@numba.njit(cache=True, nogil=True)
def _decode_chunks(W, offs, c0, c1, spc, nsym_total, table, L, B, out, v0, v1, k, status):
    """Decode chunks [c0, c1) into ``out``; on failure status = (chunk, kind) and returns early."""
    shift = np.uint64(64 - L)
    vpc = spc * k  # values per chunk
    # the last chunk of the tensor may be short; full chunks are decoded 4 at a time
    last_full = c1
    if c1 * spc > nsym_total:
        last_full = c1 - 1
    c = c0
    while c + 4 <= last_full:
        p0 = offs[c]
        p1 = offs[c + 1]
        p2 = offs[c + 2]
        p3 = offs[c + 3]
        o0 = (c - c0) * vpc
        o1 = o0 + vpc
        o2 = o1 + vpc
        o3 = o2 + vpc
        f0 = np.uint32(0)
        f1 = np.uint32(0)
        f2 = np.uint32(0)
        f3 = np.uint32(0)
        nb = spc // B
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
        rem = spc - nb * B
        if rem:
            p0, g0 = _decode_one(W, p0, rem, table, L, B, out, o0, v0, v1, k)
            p1, g1 = _decode_one(W, p1, rem, table, L, B, out, o1, v0, v1, k)
            p2, g2 = _decode_one(W, p2, rem, table, L, B, out, o2, v0, v1, k)
            p3, g3 = _decode_one(W, p3, rem, table, L, B, out, o3, v0, v1, k)
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
        ns = min(spc, nsym_total - c * spc)
        p, f = _decode_one(W, offs[c], ns, table, L, B, out, (c - c0) * vpc, v0, v1, k)
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


@numba.njit(cache=True, nogil=True, inline="always")
def _put_x2(out, o, e, v0, v1, k):
    s1 = (e >> np.uint32(8)) & np.uint32(255)
    s2 = (e >> np.uint32(16)) & np.uint32(255)
    if k == 1:
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
    while rem >= 2 * B:
        win = _refill(W, pos)
        for _j in range(B):
            e = table[win >> shift]
            ln = np.uint64(e & np.uint32(31))
            ns = np.int64((e >> np.uint32(5)) & np.uint32(3))
            win <<= ln
            pos += ln
            flag |= e
            _put_x2(out, o, e, v0, v1, k)
            o += ns * k
            rem -= ns
    pos, f = _tail_x2(W, pos, rem, table, T, out, o, v0, v1, k)
    return pos, flag | f


@numba.njit(cache=True, nogil=True)
def _decode_chunks_x2(W, offs, c0, c1, spc, nsym_total, table, T, out, v0, v1, k, status):
    """Like _decode_chunks, with the two-symbol table; 2 chunks interleaved (4 would spill registers)."""
    shift = np.uint64(64 - T)
    B = 64 // T
    vpc = spc * k
    last_full = c1
    if c1 * spc > nsym_total:
        last_full = c1 - 1
    c = c0
    while c + 2 <= last_full:
        p0 = offs[c]
        p1 = offs[c + 1]
        o0 = (c - c0) * vpc
        o1 = o0 + vpc
        r0 = spc
        r1 = spc
        f0 = np.uint32(0)
        f1 = np.uint32(0)
        while min(r0, r1) >= 2 * B:
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
                n0 = np.int64((e0 >> np.uint32(5)) & np.uint32(3))
                n1 = np.int64((e1 >> np.uint32(5)) & np.uint32(3))
                o0 += n0 * k
                o1 += n1 * k
                r0 -= n0
                r1 -= n1
        p0, g0 = _one_x2(W, p0, r0, table, T, out, o0, v0, v1, k)
        p1, g1 = _one_x2(W, p1, r1, table, T, out, o1, v0, v1, k)
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
        ns = min(spc, nsym_total - c * spc)
        p, f = _one_x2(W, offs[c], ns, table, T, out, (c - c0) * vpc, v0, v1, k)
        kind = _chunk_fault(f, p, offs[c + 1])
        if kind:
            status[0] = c
            status[1] = kind
            return
        c += 1
    status[0] = -1
    status[1] = 0


def decode_symbols(
    payload: bytes | np.ndarray,
    offsets: np.ndarray,
    start: int,
    stop: int,
    chunk_symbols: int,
    n_symbols: int,
    lengths: np.ndarray,
    codes_order: np.ndarray,
    max_length: int,
    value_of_symbol: tuple[np.ndarray, np.ndarray | None],
    group: int,
    out: np.ndarray,
) -> None:
    """Decode chunks ``[start, stop)`` into ``out`` (1-D, ``group`` values per symbol).

    ``offsets`` (uint64[n_chunks + 1]) are validated chunk bit offsets with
    ``offsets[-1] <= 8 * len(payload)``; ``lengths`` / ``codes_order`` / ``max_length`` describe
    a valid canonical code with at least one symbol; ``value_of_symbol`` maps each symbol to
    its first (and second) value in ``out``'s dtype. Alphabets of at most 256 symbols use a
    two-symbol table. Raises :class:`DecodeFailure` naming the first bad chunk.
    """
    if stop <= start:
        return
    L = int(max_length)
    # the two-symbol table is built with ~10 temporaries of 2**T entries: keep T small
    x2 = lengths.size <= X2_MAX_ALPHABET and L <= X2_MAX_TABLE_BITS
    T = max(L, X2_MIN_TABLE_BITS) if x2 else L
    # Word array padded so that any walk of at most chunk_symbols * T bits past any chunk
    # start stays inside it (damaged streams included): no bounds checks in the hot loop.
    # Only the bytes of chunks [start, stop) are copied; offsets are rebased to them.
    buf = np.frombuffer(payload, dtype=np.uint8)
    b0 = int(offsets[start]) >> 3
    b1 = min(buf.size, (int(offsets[stop]) + 7) >> 3)
    nbytes = b1 - b0
    pad_words = (chunk_symbols * T) // 64 + 4
    words = np.zeros(nbytes // 8 + 1 + pad_words, dtype=np.uint64)
    words.view(np.uint8)[:nbytes] = buf[b0:b1]
    words.byteswap(inplace=True)
    local = offsets[start : stop + 1].astype(np.uint64) - np.uint64(8 * b0)
    udt = np.dtype(f"u{out.dtype.itemsize}")  # compile for unsigned types only
    v0, v1 = value_of_symbol
    if v1 is None:
        v1 = v0
    v0, v1, out = v0.view(udt), v1.view(udt), out.view(udt)
    status = np.zeros(2, dtype=np.int64)
    args_head = (words, local, np.int64(0), np.int64(stop - start), np.int64(chunk_symbols),
                 np.int64(n_symbols - start * chunk_symbols))
    if x2:
        table = decode_table_x2(lengths, codes_order, L, T)
        _decode_chunks_x2(*args_head, table, np.int64(T), out, v0, v1, np.int64(group), status)
    else:
        table = decode_table(lengths, codes_order, L)
        _decode_chunks(*args_head, table, np.int64(L), np.int64(64 // L), out, v0, v1, np.int64(group), status)
    if status[0] >= 0:
        c = int(status[0]) + start
        if status[1] == 1:
            raise DecodeFailure(c, "code", f"chunk {c}: bits that are not a code of the codebook")
        lo, hi = int(offsets[c]), int(offsets[c + 1])
        raise DecodeFailure(
            c, "end", f"chunk {c}: decoded symbols do not end at the chunk's recorded {hi - lo} bits"
        )


@numba.njit(cache=True, nogil=True)
def _huffman_rows(counts, out):  # pragma: no cover - compiled
    # Two-queue Huffman on the stably sorted counts of each row; ties go to the leaf (a shallower tree).
    R, K = counts.shape
    idx = np.empty(K, np.int64)
    keys = np.empty(K, np.int64)
    node_w = np.empty(K, np.int64)
    node_parent = np.empty(K, np.int64)
    leaf_parent = np.empty(K, np.int64)
    depth = np.empty(K, np.int64)
    longest = np.zeros(R, np.int64)
    for r in range(R):
        n = 0
        for s in range(K):
            out[r, s] = 0
            if counts[r, s] > 0:
                idx[n] = s
                n += 1
        if n == 0:
            continue
        if n == 1:
            out[r, idx[0]] = 1
            longest[r] = 1
            continue
        for t in range(n):
            keys[t] = counts[r, idx[t]]
        order = np.argsort(keys[:n], kind="mergesort")
        i = 0
        j = 0
        for k in range(n - 1):
            s = 0
            for _ in range(2):
                if i < n and (j >= k or keys[order[i]] <= node_w[j]):
                    leaf_parent[i] = k
                    s += keys[order[i]]
                    i += 1
                else:
                    node_parent[j] = k
                    s += node_w[j]
                    j += 1
            node_w[k] = s
        depth[n - 2] = 0
        for k in range(n - 3, -1, -1):
            depth[k] = depth[node_parent[k]] + 1
        m = 0
        for t in range(n):
            ln = depth[leaf_parent[t]] + 1
            m = max(m, ln)
            out[r, idx[order[t]]] = min(ln, 255)
        longest[r] = m
    return longest


def huffman_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Optimal Huffman code lengths of every row of a 2-D int64 count array: ``(lengths uint8 [R, K],
    longest code per row int64 [R])``; absent symbols get 0, a lone symbol 1 bit."""
    c = np.ascontiguousarray(counts, dtype=np.int64)
    out = np.empty(c.shape, np.uint8)
    longest = _huffman_rows(c, out)
    return out, longest


@numba.njit(cache=True, nogil=True)
def _package_merge(leaves, L):  # pragma: no cover - compiled
    # leaves: ascending counts of the n >= 2 present symbols; returns each one's code length (<= L bits).
    # Level 1 holds the leaves (denomination 2**-L); each higher level merges the leaves with the pair
    # sums (packages) of the level below, a package after leaves of equal weight. leaf_prefix[level, j]
    # = leaves among the first j items of that level.
    n = leaves.size
    cap = 2 * n
    leaf_prefix = np.zeros((L, cap + 1), np.int64)
    cur = np.empty(cap, np.int64)
    nxt = np.empty(cap, np.int64)
    for j in range(n):
        cur[j] = leaves[j]
        leaf_prefix[0, j + 1] = j + 1
    size = n
    for level in range(1, L):
        m = size // 2
        i = 0
        j = 0
        t = 0
        while i < n or j < m:
            if j >= m or (i < n and leaves[i] <= cur[2 * j] + cur[2 * j + 1]):
                nxt[t] = leaves[i]
                leaf_prefix[level, t + 1] = leaf_prefix[level, t] + 1
                i += 1
            else:
                nxt[t] = cur[2 * j] + cur[2 * j + 1]
                leaf_prefix[level, t + 1] = leaf_prefix[level, t]
                j += 1
            t += 1
        size = t
        cur, nxt = nxt, cur
    # take the first 2n - 2 items of the top level and walk down
    lens = np.zeros(n + 1, np.int64)
    take = 2 * n - 2
    for level in range(L - 1, -1, -1):
        nleaf = leaf_prefix[level, take]
        lens[0] += 1
        lens[nleaf] -= 1  # leaves of rank < nleaf get one more bit
        take = 2 * (take - nleaf)
    out = np.empty(n, np.uint8)
    acc = 0
    for r in range(n):
        acc += lens[r]
        out[r] = acc
    return out


def package_merge(sorted_counts: np.ndarray, max_length: int) -> np.ndarray:
    """Optimal length-limited code lengths (uint8, <= ``max_length`` bits) of ``sorted_counts`` (ascending,
    all > 0, at least 2 and at most 2**max_length of them), in the same order."""
    return _package_merge(np.ascontiguousarray(sorted_counts, dtype=np.int64), int(max_length))
