"""Exact sizes of many codes at once, from their histograms: code lengths, payload bits and table bytes.

A layout search compares thousands of candidate streams (one per channel, per cluster, per symbol mode); building
a :class:`entropy.codec.codebook.Codebook` and serializing it for each costs far more than the arithmetic. These
kernels compute, for every row of a 2-D histogram array, what :func:`entropy.codec.lengths.code_lengths` and
``Codebook.to_bytes`` would give - the same lengths (two-queue Huffman on the stably sorted counts, package-merge
when a code is longer than the limit) and the exact serialized size - without any Python object per row.
"""

from __future__ import annotations

import numba
import numpy as np

from entropy.codec.kernels.huffman import _package_merge, huffman_row, rle_token_bytes

#: :func:`size_rows` result for a row whose present symbols do not fit ``2**L`` codes (no code of that limit)
TOO_MANY = -1


@numba.njit(cache=True, nogil=True)
def varint_bytes(x):  # pragma: no cover - compiled
    """Bytes of the LEB128 varint of ``x`` (>= 0)."""
    n = 1
    while x >= 128:
        x >>= 7
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def table_bytes(lengths, n, longest, n_present):  # pragma: no cover - compiled
    """``len(Codebook(lengths[:n]).to_bytes())``: the shortest of the run-length mode (always possible) and, for
    codes of at most 15 bits, the dense nibble modes (all lengths explicit, or the last one implied when the code
    is complete, i.e. two symbols or more)."""
    best = 1 + varint_bytes(n) + rle_token_bytes(lengths, n, np.empty(0, np.uint8))  # (counted only)
    if longest <= 15:
        best = min(best, (n + 2) // 2)  # mode nibble + n nibbles, padded to a byte
        if n_present >= 2 and n >= 2:
            best = min(best, (n + 1) // 2)  # mode nibble + n - 1 nibbles
    return best


@numba.njit(cache=True, nogil=True)
def code_lengths_into(counts, r, L, out, scratch):  # pragma: no cover - compiled
    """The optimal code lengths of at most ``L`` bits of row ``r`` of the histograms ``counts`` (2-D int64) into row
    ``r`` of ``out`` (2-D uint8), as :func:`entropy.codec.lengths.code_lengths` computes them; returns the longest
    length, or :data:`TOO_MANY` when more than ``2**L`` symbols are present (``out`` then holds the unlimited Huffman
    lengths). ``scratch``: int64 ``[6, K]`` work space (``K``: the row's symbols)."""
    longest = huffman_row(counts, r, out, scratch)
    if longest <= L:
        return longest
    n = 0
    present = scratch[0]
    for s in range(counts.shape[1]):
        if counts[r, s] > 0:
            present[n] = s
            n += 1
    if n > (1 << L):
        return TOO_MANY
    keys = np.empty(n, np.int64)
    for t in range(n):
        keys[t] = counts[r, present[t]]
    order = np.argsort(keys, kind="mergesort")  # stable: ties by symbol, as limited_lengths sorts
    lens = _package_merge(keys[order], L)
    longest = 0
    for t in range(n):
        out[r, present[order[t]]] = lens[t]
        longest = max(longest, np.int64(lens[t]))
    return longest


@numba.njit(cache=True, nogil=True)
def lengths_hash(lengths, n):  # pragma: no cover - compiled
    """FNV-1a hash of the code lengths ``lengths[:n]`` and ``n``: equal tables have equal hashes."""
    h = np.uint64(14695981039346656037) ^ np.uint64(n)
    for s in range(n):
        h = (h ^ np.uint64(lengths[s])) * np.uint64(1099511628211)
    return h


@numba.njit(cache=True, nogil=True)
def size_code(hist, n, L, out2, scratch, sizes, entropy):  # pragma: no cover - compiled
    """Size the optimal code of at most ``L`` bits of the histogram ``hist`` (int64, shape ``(1, >= n)``; its first
    ``n`` symbols) into ``sizes`` (int64 [7]: payload bits, table bytes, longest length, present symbols, a payload
    floor, entropy bits (with ``entropy``, else 0), symbols); its lengths into ``out2[0, :n]`` (``scratch``: int64
    ``[6, >= n]``); returns the FNV-1a hash of the lengths. Where more than ``2**L`` symbols are present no code is
    built: payload, table and longest are :data:`TOO_MANY` and the floor is the entropy (no code of those symbols
    has a shorter payload), else the floor is the payload. The entropy is ``sum(c * log2(total / c))``, rounded
    down."""
    row = hist[0, :n]
    npres = 0
    total = np.int64(0)
    for s in range(n):
        if row[s] > 0:
            npres += 1
            total += row[s]
    sizes[3] = npres
    sizes[6] = total
    ent = 0.0
    if entropy or npres > (1 << L):
        for s in range(n):
            if row[s] > 0:
                ent += row[s] * np.log2(total / row[s])
    sizes[5] = np.int64(ent)
    if npres > (1 << L):  # no code of L bits: the entropy bounds every code's payload (no code is built)
        sizes[0] = TOO_MANY
        sizes[1] = TOO_MANY
        sizes[2] = TOO_MANY
        sizes[4] = max(np.int64(np.floor(ent * (1 - 1e-12))) - 1, 0)
        return np.uint64(0)
    lo = code_lengths_into(hist[:, :n], 0, L, out2[:, :n], scratch)
    out = out2[0]
    bits = 0
    for s in range(n):
        bits += row[s] * np.int64(out[s])
    sizes[4] = bits
    sizes[2] = lo
    sizes[0] = bits
    sizes[1] = table_bytes(out, n, lo, npres)
    return lengths_hash(out, n)


@numba.njit(cache=True, nogil=True)
def _size_rows(hist, offsets, sizes, L, res, hashes, keep):  # pragma: no cover - compiled
    S, A = hist.shape
    out2 = np.empty((1, A), np.uint8)
    scratch = np.empty((6, A), np.int64)
    for r in range(S):
        n = sizes[r]
        o = offsets[r]
        hashes[r] = size_code(hist[r : r + 1, o : o + n], n, L, out2, scratch, res[r], True)
        if keep.shape[0]:
            keep[r, :n] = out2[0, :n]


#: the columns of :func:`size_rows`'s sizes, in the order :func:`size_code` writes them
SIZE_FIELDS = ("payload", "table", "longest", "present", "floor", "entropy", "total")


def size_rows(hist: np.ndarray, sizes: np.ndarray, max_code_length: int, offsets: np.ndarray | None = None, *,
              keep_lengths: bool = False) -> dict[str, np.ndarray]:
    """Sizes of the optimal code of at most ``max_code_length`` bits of every row of ``hist`` (int64 ``[S, A]``;
    row ``r`` is the histogram of an alphabet of ``sizes[r]`` symbols starting at column ``offsets[r]`` (default
    0), the rest of the row ignored).

    Returns int64 arrays of ``S`` (:data:`SIZE_FIELDS`): ``payload`` (bits, sum count x length), ``table`` (bytes of
    the serialized code lengths), ``longest`` (bits), ``present`` (symbols with a count), ``floor`` (the payload of
    the code, or where no code of that limit exists the entropy: no prefix code of these symbols beats it),
    ``entropy`` (bits, rounded down) and ``total`` (symbols); and ``hash`` (uint64, of the code lengths: equal
    tables have equal hashes). Rows with more than ``2**max_code_length`` present symbols have no such code: their
    ``payload``, ``table`` and ``longest`` are :data:`TOO_MANY`.
    """
    h = np.ascontiguousarray(hist, dtype=np.int64)
    S = h.shape[0]
    res = np.zeros((S, len(SIZE_FIELDS)), np.int64)
    hashes = np.zeros(S, np.uint64)
    sizes = np.ascontiguousarray(sizes, dtype=np.int64)
    keep = np.zeros((S, int(sizes.max()) if keep_lengths and S else 0), np.uint8)
    if S:
        off = np.zeros(S, np.int64) if offsets is None else np.ascontiguousarray(offsets, dtype=np.int64)
        _size_rows(h, off, sizes, np.int64(max_code_length), res, hashes, keep if keep_lengths else _NO_LENGTHS)
    out = {k: res[:, i] for i, k in enumerate(SIZE_FIELDS)}
    out["hash"] = hashes
    if keep_lengths:
        out["lengths"] = keep
    return out


_NO_LENGTHS = np.zeros((0, 0), np.uint8)


def code_size(counts: np.ndarray, max_code_length: int) -> tuple[np.ndarray, int, int, int]:
    """The optimal code of at most ``max_code_length`` bits of one histogram (1-D int64, more than 0 and at most
    ``2**max_code_length`` symbols present): its code lengths (uint8), payload bits, table bytes and longest
    length, as :func:`size_rows` sizes them."""
    c = np.ascontiguousarray(counts, dtype=np.int64).reshape(1, -1)
    lens = np.zeros(c.shape, np.uint8)
    res = np.zeros((1, len(SIZE_FIELDS)), np.int64)
    _size_rows(c, np.zeros(1, np.int64), np.array([c.shape[1]], np.int64), np.int64(max_code_length), res,
               np.zeros(1, np.uint64), lens)
    return lens[0], int(res[0, 0]), int(res[0, 1]), int(res[0, 2])

