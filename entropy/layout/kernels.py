"""Compiled (numba) loops of the layout search: the Lloyd rounds that cluster channels, and sums of rows.

Imported on first use only (numba), like the codec's kernels.
"""

from __future__ import annotations

import numba
import numpy as np

from entropy.codec.kernels.huffman import huffman_row
from entropy.codec.kernels.sizes import TOO_MANY, code_lengths_into, size_code


@numba.njit(cache=True, nogil=True)
def _lloyd(starts, syms, vals, labels, k, A, L, penalty, rounds):  # pragma: no cover - compiled
    C = starts.size - 1
    sums = np.zeros((k, A), np.int64)
    lens = np.zeros((k, A), np.uint8)
    cost_len = np.empty((A, k), np.int64)
    scratch = np.empty((6, A), np.int64)
    cost = np.empty(k, np.int64)
    new = np.empty(C, np.int64)
    for _ in range(rounds):
        sums[:] = 0
        for r in range(C):
            j = labels[r]
            for t in range(starts[r], starts[r + 1]):
                sums[j, syms[t]] += vals[t]
        too_many = False
        for j in range(k):
            if code_lengths_into(sums, j, L, lens, scratch) == TOO_MANY:
                too_many = True
        if too_many:  # more symbols than codes of L bits: the unlimited Huffman lengths guide as well
            for j in range(k):
                huffman_row(sums, j, lens, scratch)
        for j in range(k):
            empty = True
            for s in range(A):
                if sums[j, s]:
                    empty = False
                    break
            for s in range(A):
                if empty:
                    cost_len[s, j] = 1 << 24  # an empty cluster is never chosen
                else:
                    cost_len[s, j] = lens[j, s] if lens[j, s] > 0 else penalty
        changed = False
        for r in range(C):
            cost[:] = 0
            for t in range(starts[r], starts[r + 1]):
                v = vals[t]
                s = syms[t]
                for j in range(k):
                    cost[j] += v * cost_len[s, j]
            best = 0
            for j in range(1, k):
                if cost[j] < cost[best]:
                    best = j
            new[r] = best
            if best != labels[r]:
                changed = True
        if not changed:
            break
        labels[:] = new
    return labels


def lloyd_labels(h: np.ndarray, labels: np.ndarray, k: int, max_code_length: int, penalty: int,
                 rounds: int) -> np.ndarray:
    """At most ``rounds`` Lloyd rounds from ``labels`` (int64 [C], values < k) on the per-row histograms ``h``
    (int64 [C, A], every row non-empty): build each cluster's optimal code of at most ``max_code_length`` bits (the
    unlimited Huffman code for every cluster when one has more symbols than such codes hold), then move every row
    to the code that costs it the fewest payload bits (a symbol without a code costs ``penalty`` bits; ties: the
    lowest cluster). Stops early when no row moves. Returns the labels (a new array)."""
    rows, syms = np.nonzero(h)
    vals = h[rows, syms].astype(np.int64)
    starts = np.zeros(h.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=h.shape[0]), out=starts[1:])
    return _lloyd(starts, syms.astype(np.int64), vals, np.array(labels, dtype=np.int64), np.int64(k),
                  np.int64(h.shape[1]), np.int64(max_code_length), np.int64(penalty), np.int64(rounds))


@numba.njit(cache=True, nogil=True)
def _group_sums(per_row, rows, dest, out):  # pragma: no cover - compiled
    A = per_row.shape[1]
    for i in range(rows.size):
        r = rows[i]
        d = dest[i]
        for s in range(A):
            out[d, s] += per_row[r, s]


def group_sums(per_row: np.ndarray, rows: np.ndarray, dest: np.ndarray, n_out: int) -> np.ndarray:
    """``out[dest[i]] += per_row[rows[i]]`` for every ``i``: int64 ``[n_out, A]`` sums of rows of ``per_row``
    (int64 ``[C, A]``)."""
    out = np.zeros((n_out, per_row.shape[1]), np.int64)
    _group_sums(np.ascontiguousarray(per_row, dtype=np.int64), np.asarray(rows, np.int64),
                np.asarray(dest, np.int64), out)
    return out


@numba.njit(cache=True, nogil=True)
def _size_sets(per_row, set_ptr, set_rows, sets, mode, T, first, R, runs, L, res, hashes, keep,
               entropy):  # pragma: no cover - compiled
    W = sets.size
    A_T = per_row.shape[1]
    Amax = 1
    for w in range(W):
        Rs = R[sets[w]]
        Amax = max(Amax, Rs if mode == 0 else (Rs * Rs if mode == 1 else runs * Rs))
    acc = np.zeros(A_T, np.int64)
    hist = np.zeros((1, Amax), np.int64)
    out2 = np.zeros((1, Amax), np.uint8)
    scratch = np.empty((6, Amax), np.int64)
    prev = -1
    for w in range(W):
        s = sets[w]
        if s != prev:  # the set's histogram in the tensor's window: the sum of its rows'
            acc[:] = 0
            for i in range(set_ptr[s], set_ptr[s + 1]):
                r = set_rows[i]
                for t in range(A_T):
                    acc[t] += per_row[r, t]
            prev = s
        f, Rs = first[s], R[s]
        if mode == 0:  # cut to the set's window (FORMAT: base symbol v - value_min)
            n = Rs
            for b in range(Rs):
                hist[0, b] = acc[f + b]
        elif mode == 1:  # pairs a * R + b; pads (base symbol 0 of the tensor's window) to the set's base symbol 0
            n = Rs * Rs
            for a in range(Rs):
                for b in range(Rs):
                    hist[0, a * Rs + b] = acc[(f + a) * T + f + b]
                if f > 0:
                    hist[0, a * Rs] += acc[(f + a) * T]
        else:  # run symbols z * R + b
            n = runs * Rs
            for z in range(runs):
                for b in range(Rs):
                    hist[0, z * Rs + b] = acc[z * T + f + b]
        hashes[w] = size_code(hist, n, L, out2, scratch, res[w], entropy)
        if keep.shape[0]:
            keep[w, :n] = out2[0, :n]


def size_sets(per_row: np.ndarray, set_ptr: np.ndarray, set_rows: np.ndarray, sets: np.ndarray, mode: int, T: int,
              first: np.ndarray, R: np.ndarray, runs: int, max_code_length: int, keep_lengths: bool = False,
              entropy: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Sizes of the optimal code (:func:`entropy.codec.kernels.sizes.size_code`) of the streams ``sets`` (indices
    into the sets ``set_rows[set_ptr[s]:set_ptr[s + 1]]``, rows of ``per_row``; consecutive equal sets summed once)
    in symbol mode ``mode`` (0 plain, 1 pairs, 2 run symbols with ``runs`` prefixes): each set's histogram is the
    sum of its rows' (``per_row``, int64, in the tensor's window of ``T`` values), cut to the set's window of
    ``R[s]`` values starting ``first[s]`` values in. Returns the sizes (int64 ``[len(sets), 7]``, the columns of
    :data:`~entropy.codec.kernels.sizes.SIZE_FIELDS`; the entropy only with ``entropy``), the hashes of the code
    lengths, and (``keep_lengths``) the code lengths (uint8, one row per stream)."""
    W = np.size(sets)
    res = np.zeros((W, 7), np.int64)
    hashes = np.zeros(W, np.uint64)
    sets = np.asarray(sets, np.int64)
    if keep_lengths and W:
        Rw = np.asarray(R)[sets]
        A = Rw if mode == 0 else (Rw * Rw if mode == 1 else runs * Rw)
        keep = np.zeros((W, int(A.max())), np.uint8)
    else:
        keep = np.zeros((0, 0), np.uint8)
    if W:
        _size_sets(np.ascontiguousarray(per_row, dtype=np.int64), np.asarray(set_ptr, np.int64),
                   np.asarray(set_rows, np.int64), sets, np.int64(mode), np.int64(T), np.asarray(first, np.int64),
                   np.asarray(R, np.int64), np.int64(runs), np.int64(max_code_length), res, hashes, keep, bool(entropy))
    return res, hashes, (keep if keep_lengths else None)
