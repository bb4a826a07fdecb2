"""Histograms of symbols, with the alphabet check: plain values, pairs, and run/escape symbols.

The run/escape histograms parse the values exactly as the encoder does (see :mod:`entropy.codec.kernels`), chunk by
chunk: a run never crosses a chunk boundary, so histograms of streams (or of rows that each start a new
stream) add up.
"""

from __future__ import annotations

import numba
import numpy as np

from entropy.codec.kernels.common import _load_le16, _next_mark, _sym, _unsigned, run_marks, run_raw, spec
from entropy.codec.threads import group_bounds, resolve, run_groups



@numba.njit(cache=True, nogil=True)
def _count_k1(values, vmin, mask, R, counts):
    n = values.size
    uR = np.uint64(R)
    if R > 4096:  # a wide alphabet: 4 sub-histograms would not stay in cache, and runs of one value are rare
        for i in range(n):
            s = np.uint64(_sym(values[i], vmin, mask))
            if s >= uR:
                return i
            counts[s] += 1
        return -1
    c4 = np.zeros((4, R), dtype=np.int64)  # 4 sub-histograms avoid store-forwarding stalls on runs
    n4 = n - n % 4
    bad = -1
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



@numba.njit(cache=True, nogil=True)
def _count_raw_pairs(values, a, b, out):
    """Add the counts of the little-endian 2-byte words at ``values[a:b]`` (1-byte values, ``b - a`` even) to
    ``out`` (int64[65536], indexed by ``first | second << 8``): one load and one increment per pair (one table:
    measured faster than sub-tables, whose sweep and cache footprint cost more than the increments they overlap),
    drained before a count could overflow."""
    sub = np.zeros(1 << 16, dtype=np.uint32)
    i = np.uint64(a)
    end = np.uint64(b)
    while i < end:
        stop = min(end, i + np.uint64(1 << 32))  # 2**31 pairs per drain at most
        while i + np.uint64(8) <= stop:
            sub[_load_le16(values, i)] += 1
            sub[_load_le16(values, i + np.uint64(2))] += 1
            sub[_load_le16(values, i + np.uint64(4))] += 1
            sub[_load_le16(values, i + np.uint64(6))] += 1
            i += np.uint64(8)
        while i < stop:
            sub[_load_le16(values, i)] += 1
            i += np.uint64(2)
        for k in range(1 << 16):
            out[k] += np.int64(sub[k])
            sub[k] = 0


@numba.njit(cache=True, nogil=True)
def _count_raw_bytes(values, out):
    """Add the counts of the byte values of ``values`` to ``out`` (int64[256]): 8 sub-histograms of uint32 (a run of
    one value does not wait on its own increments), drained before they could overflow."""
    sub = np.zeros((8, 256), dtype=np.uint32)
    n = np.uint64(values.size)
    i = np.uint64(0)
    while i < n:
        stop = min(n, i + np.uint64(1 << 31))
        while i + np.uint64(8) <= stop:
            for j in range(8):
                sub[j, values[i + np.uint64(j)]] += 1
            i += np.uint64(8)
        while i < stop:
            sub[0, values[i]] += 1
            i += np.uint64(1)
        for k in range(256):
            for j in range(8):
                out[k] += np.int64(sub[j, k])
                sub[j, k] = 0


@numba.njit(cache=True, nogil=True)
def _distinct_pairs(values, n):
    """Distinct little-endian 2-byte words among the aligned pairs of ``values[:n]`` (``n`` even)."""
    seen = np.zeros(1 << 16, dtype=np.uint8)
    d = 0
    for i in range(0, n, 2):
        w = _load_le16(values, np.uint64(i))
        d += 1 - np.int64(seen[w])
        seen[w] = 1
    return d


def distinct_pairs(u: np.ndarray, n: int) -> int:
    """How many distinct pairs ``(u[2i], u[2i + 1])`` the first ``n`` values (rounded down to even) of the
    1-byte array ``u`` hold: a lower bound of the pair symbols of a stream of whole pairs that starts with them."""
    n = min(int(n), u.size) // 2 * 2
    return int(_distinct_pairs(u, np.int64(n))) if n else 0


@numba.njit(cache=True, nogil=True)
def _count_raw_words(values, out):
    """Add the counts of the 2-byte values of ``values`` to ``out`` (int64[65536]); uint32 counts (a 256 KiB table)
    drained before they could overflow."""
    sub = np.zeros(1 << 16, dtype=np.uint32)
    n = np.uint64(values.size)
    i = np.uint64(0)
    while i < n:
        stop = min(n, i + np.uint64(1 << 31))
        while i + np.uint64(4) <= stop:
            sub[values[i]] += 1
            sub[values[i + np.uint64(1)]] += 1
            sub[values[i + np.uint64(2)]] += 1
            sub[values[i + np.uint64(3)]] += 1
            i += np.uint64(4)
        while i < stop:
            sub[values[i]] += 1
            i += np.uint64(1)
        for k in range(1 << 16):
            out[k] += np.int64(sub[k])
            sub[k] = 0


def raw_counts(u: np.ndarray, pairs: bool = False, threads: int | None = None) -> np.ndarray:
    """Counts of the raw values of the 1- or 2-byte unsigned array ``u`` (int64[256] or [65536]), or with
    ``pairs`` (1-byte values) of its aligned pairs ``(u[2i], u[2i + 1])`` (int64[65536], index
    ``u[2i] | u[2i + 1] << 8``; an odd last value is left out). Window-free: a value's symbol follows from its raw
    bits (modulo 2**bits). ``threads``: a large array is counted in groups on up to this many threads."""
    nt = resolve(threads)
    even = u.size - u.size % 2
    bounds = group_bounds(even // 2, even, nt, per_thread=2) * 2
    size = 1 << 16 if pairs or u.itemsize == 2 else 256

    def one(g: int) -> np.ndarray:
        a, b = int(bounds[g]), int(bounds[g + 1])
        b = u.size if g == bounds.size - 2 and not pairs else b  # (the odd last value)
        c = np.zeros(size, dtype=np.int64)
        if pairs:
            _count_raw_pairs(u, np.int64(a), np.int64(b), c)
        elif u.itemsize == 2:
            _count_raw_words(u[a:b], c)
        else:
            _count_raw_bytes(u[a:b], c)
        return c

    parts = run_groups(one, bounds.size - 1, nt)
    return parts[0] if len(parts) == 1 else np.sum(parts, axis=0)


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


@numba.njit(cache=True, nogil=True)
def _count_gen(values, start, stop, vmin, mask, R, V, esc, emin, erange, E, runs, run_b, C, words, counts):
    """Run/escape symbols of values[start:stop] coded as one stream (chunks of C values from ``start``).

    ``words``: :func:`run_marks` of the values (unused without runs). Returns the index of the first
    value that is neither in the window nor (with escapes) in the escape range, or -1.
    """
    uR = np.uint64(R)
    uE = np.uint64(erange)
    zrl = (runs - 1) * V + run_b
    for c0 in range(start, stop, C):
        c1 = min(c0 + C, stop)
        i = c0
        while i < c1:
            z = 0
            if runs > 0:
                j = _next_mark(words, i, c1)
                z = j - i
                if z >= runs:
                    counts[zrl] += z // runs
                    z = z % runs
                if j == c1:
                    if z > 0:
                        counts[(z - 1) * V + run_b] += 1
                    break
                i = j
            b = np.uint64(_sym(values[i], vmin, mask))
            if b < uR:
                counts[z * V + np.int64(b)] += 1
            elif esc != 0 and np.uint64(_sym(values[i], emin, mask)) < uE:
                counts[z * V + R] += 1
            else:
                return i
            i += 1
    return -1


@numba.njit(cache=True, nogil=True)
def _count_rows(rows, flat, r0, r1, k, vmin, mask, R, V, esc, emin, erange, E, runs, run_b, C, words, generic, counts):
    """Histogram of rows ``r0..r1-1`` of ``rows`` (2-D, C order; ``flat`` is the same memory, 1-D), each row its
    own stream. Row views keep the plain and pair counters on contiguous arrays (2x faster than slices)."""
    n_rows, row_len = rows.shape
    for r in range(r0, r1):
        a = r * row_len
        if generic:
            bad = _count_gen(flat, a, a + row_len, vmin, mask, R, V, esc, emin, erange, E, runs, run_b, C, words,
                             counts[r])
            if bad >= 0:
                return bad
        elif k == 1:
            bad = _count_k1(rows[r], vmin, mask, R, counts[r])
            if bad >= 0:
                return a + bad
        else:
            bad = _count_k2(rows[r], vmin, mask, R, counts[r])
            if bad >= 0:
                return a + bad
    return -1


def count_rows(values: np.ndarray, params, threads: int | None = None) -> tuple[np.ndarray, int]:
    """Symbol histogram of every row of the 2-D array ``values`` (int64 ``[rows, params.alphabet_size]``), each
    row coded as its own stream with ``params`` (a :class:`entropy.codec.params.CodecParams`), and the flat index of the
    first value the stream cannot code (-1 if none; the histograms are then incomplete).

    In-window values are counted as their own symbols even when a codebook may later escape them; values
    outside the window count as escape symbols. ``threads`` (None: the default of :mod:`entropy.codec.threads`): a
    large array is counted in groups on up to this many threads (groups of rows, or of whole chunks of one row)
    and the groups' histograms added.
    """
    v = np.asarray(values)
    if v.ndim != 2:
        raise ValueError(f"values must be 2-D (rows, row length), got shape {v.shape}")
    if params.stored:
        raise ValueError("a stored stream has no symbols to count")
    n_rows, row_len = v.shape
    counts = np.zeros((n_rows, params.alphabet_size), dtype=np.int64)
    if v.size == 0:
        return counts, -1
    nt = resolve(threads)
    flat = np.ascontiguousarray(v).reshape(-1)
    u, _, _ = _unsigned(flat, 0)
    sp = spec(u.itemsize, params)
    generic = bool(params.runs or params.escape_range)
    if params.runs:
        words = run_marks(u, u.dtype.type(run_raw(u.itemsize, params)), nt)
    else:
        words = np.zeros(1, np.uint64)
    if n_rows == 1:
        # one stream: groups of whole chunks (pairs and runs never cross a chunk), each with its own histogram
        C = params.chunk_size
        n_chunks = -(-row_len // C)
        bounds = np.minimum(group_bounds(n_chunks, row_len, nt, per_thread=2) * C, row_len)

        def one(g: int) -> tuple[np.ndarray, int]:
            a, b = int(bounds[g]), int(bounds[g + 1])
            c = counts[0] if g == 0 else np.zeros(params.alphabet_size, dtype=np.int64)
            if generic:
                bad = _count_gen(u, np.int64(a), np.int64(b), *sp, words, c)
            else:
                bad = (_count_k1 if params.group == 1 else _count_k2)(u[a:b], sp[0], sp[1], sp[2], c)
                bad = a + bad if bad >= 0 else -1
            return c, int(bad)

        parts = run_groups(one, bounds.size - 1, nt)
        for c, _ in parts[1:]:
            counts[0] += c
        return counts, next((bad for _, bad in parts if bad >= 0), -1)
    bounds = group_bounds(n_rows, v.size, nt, per_thread=2)
    rows = u.reshape(n_rows, row_len)

    def some_rows(g: int) -> int:
        return int(_count_rows(rows, u, np.int64(bounds[g]), np.int64(bounds[g + 1]), np.int64(params.group), *sp,
                               words, generic, counts))

    bads = run_groups(some_rows, bounds.size - 1, nt)
    return counts, next((bad for bad in bads if bad >= 0), -1)


@numba.njit(cache=True, nogil=True)
def _count_buckets(values, a, last, bw, counts):
    for i in range(values.size):
        v = np.int64(values[i])
        if a <= v <= last:
            counts[(v - a) // bw] += 1


def count_buckets(flat: np.ndarray, a: int, last: int, width: int, n_buckets: int) -> tuple[np.ndarray, int]:
    """How many of the values (any codec dtype; int64 arithmetic) fall in each bucket ``[a + i*width, a +
    (i+1)*width)`` of ``[a, last]``: int64[n_buckets], and the number of values in [a, last]."""
    counts = np.zeros(n_buckets, dtype=np.int64)
    _count_buckets(flat, np.int64(a), np.int64(last), np.int64(width), counts)
    return counts, int(counts.sum())
