"""Compiled (numba) loops of the layout search: value counts of rows, sums of rows, the Lloyd rounds that cluster
channels, the sizes of the codes of sets of rows and of each row's pairs.

Imported on first use only (numba), like the codec's kernels.
"""

from __future__ import annotations

import numba
import numpy as np

from entropy.codec.kernels.huffman import huffman_row
from entropy.codec.kernels.sizes import TOO_MANY, code_lengths_into, size_code, varint_bytes


@numba.njit(cache=True, nogil=True)
def _lloyd(starts, syms, vals, labels, k, A, L, penalty, rounds, fit):  # pragma: no cover - compiled
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
            if fit[r]:
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


def lloyd_labels(csr: tuple[np.ndarray, np.ndarray, np.ndarray], n_symbols: int, labels: np.ndarray, k: int,
                 max_code_length: int, penalty: int, rounds: int, fit: np.ndarray | None = None) -> np.ndarray:
    """At most ``rounds`` Lloyd rounds from ``labels`` (int64 [C], values < k) on per-row histograms of
    ``n_symbols`` symbols given as :func:`csr_rows` (every row non-empty): build each cluster's optimal code of at
    most ``max_code_length`` bits from the rows ``fit`` (default: all) - the unlimited Huffman code for every
    cluster when one has more symbols than such codes hold - then move every row to the code that costs it the
    fewest payload bits (a symbol without a code costs ``penalty`` bits; ties: the lowest cluster). Stops early when
    no row moves. Returns the labels (a new array)."""
    starts, syms, vals = csr
    C = starts.size - 1
    mask = np.ones(C, dtype=bool)
    if fit is not None:
        mask[:] = False
        mask[fit] = True
    return _lloyd(starts, syms, vals, np.array(labels, dtype=np.int64), np.int64(k), np.int64(n_symbols),
                  np.int64(max_code_length), np.int64(penalty), np.int64(rounds), mask)


@numba.njit(cache=True, nogil=True)
def _csr_count(h, starts):  # pragma: no cover - compiled
    C, A = h.shape
    for r in range(C):
        n = 0
        for s in range(A):
            if h[r, s]:
                n += 1
        starts[r + 1] = starts[r] + n


@numba.njit(cache=True, nogil=True)
def _csr_fill(h, starts, syms, vals):  # pragma: no cover - compiled
    C, A = h.shape
    for r in range(C):
        t = starts[r]
        for s in range(A):
            if h[r, s]:
                syms[t] = s
                vals[t] = h[r, s]
                t += 1


def csr_rows(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-zero entries of a 2-D int64 array by row: (row starts [C + 1], columns, values), in row order."""
    h = np.ascontiguousarray(h, dtype=np.int64)
    starts = np.zeros(h.shape[0] + 1, np.int64)
    _csr_count(h, starts)
    syms = np.empty(int(starts[-1]), np.int64)
    vals = np.empty(int(starts[-1]), np.int64)
    _csr_fill(h, starts, syms, vals)
    return starts, syms, vals


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
        f, Rs = first[s], R[s]
        if s != prev:  # the set's histogram in the tensor's window: the sum of its rows' (where the set has values)
            acc[:] = 0
            for i in range(set_ptr[s], set_ptr[s + 1]):
                r = set_rows[i]
                if mode == 0:
                    for t in range(f, f + Rs):
                        acc[t] += per_row[r, t]
                elif mode == 1:  # pair symbols a * T + b of the set's values (a pad: b = 0)
                    for a in range(f, f + Rs):
                        if f > 0:
                            acc[a * T] += per_row[r, a * T]
                        for t in range(a * T + f, a * T + f + Rs):
                            acc[t] += per_row[r, t]
                else:  # run symbols z * T + b
                    for z in range(runs):
                        for t in range(z * T + f, z * T + f + Rs):
                            acc[t] += per_row[r, t]
            prev = s
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


@numba.njit(cache=True, nogil=True)
def _zeros_tokens(g):  # pragma: no cover - compiled
    """Run-length tokens of ``g`` absent symbols in a row (codebook mode 5): none, one zero, or 0x40 and a varint."""
    if g <= 0:
        return 0
    return 1 if g == 1 else 1 + varint_bytes(g - 2)


@numba.njit(cache=True, nogil=True)
def _row_floors(rows, vmin, counts, first, R, run_sym, pairs, runs, clog, L, pair_bits, pair_table, pair_sig,
                pair_longest, runs_bits):  # pragma: no cover - compiled
    C, M = rows.shape
    stamp = np.zeros(1 << 16, np.int64)  # the row that last touched a pair symbol (no clearing between rows)
    cnt = np.zeros(1 << 16, np.int64)
    P = M // 2 + 1
    touched = np.empty(P, np.int64)
    hist = np.zeros((1, P), np.int64)
    lens = np.zeros((1, P), np.uint8)
    scratch = np.empty((6, P), np.int64)
    for r in range(C):
        f, Rr = first[r], R[r]
        if runs[r]:  # run symbols: every value other than the run value ends a symbol (entropy of those values)
            n_nr = 0
            s_clog = 0.0
            for v in range(f, f + Rr):
                if v != run_sym:
                    c = counts[r, v]
                    n_nr += c
                    s_clog += clog[c]
            runs_bits[r] = max(np.int64(np.floor((clog[n_nr] - s_clog) * (1 - 1e-12))), 0)
        n = Rr * Rr
        if not pairs[r] or n > stamp.size:  # (pairs need a window of at most 256 values)
            continue
        lo = vmin + f
        tag = r + 1
        p = 0
        for i in range(0, M, 2):
            a = np.int64(rows[r, i]) - lo
            b = np.int64(rows[r, i + 1]) - lo if i + 1 < M else 0  # (an odd row ends with the pad, base symbol 0)
            code = a * Rr + b
            if stamp[code] != tag:
                stamp[code] = tag
                cnt[code] = 0
                touched[p] = code
                p += 1
            cnt[code] += 1
        codes = np.sort(touched[:p])
        h = np.uint64(0)
        for t in range(p):
            hist[0, t] = cnt[codes[t]]
            h += (np.uint64(codes[t]) + np.uint64(0x9E3779B97F4A7C15)) * np.uint64(0xBF58476D1CE4E5B9)
        pair_sig[r] = h ^ np.uint64(p)  # (which pair symbols occur: equal tables have equal ones)
        longest = code_lengths_into(hist[:, :p], 0, L, lens[:, :p], scratch) if p <= (1 << L) else TOO_MANY
        pair_longest[r] = longest
        tokens = _zeros_tokens(codes[0]) + _zeros_tokens(n - 1 - codes[p - 1])
        if longest != TOO_MANY:  # the code of the row's pairs, exactly (its lengths in symbol order, compacted)
            bits = 0
            for t in range(p):
                bits += hist[0, t] * np.int64(lens[0, t])
            t = 0
            while t < p:  # runs of equal lengths on consecutive symbols, and the zeros between them
                k = 1
                while t + k < p and codes[t + k] == codes[t + k - 1] + 1 and lens[0, t + k] == lens[0, t]:
                    k += 1
                tokens += 1 + (k - 1) // 129 + (1 if (k - 1) % 129 else 0)
                if t + k < p:
                    tokens += _zeros_tokens(codes[t + k] - codes[t + k - 1] - 1)
                t += k
            table = 1 + varint_bytes(n) + tokens
            if longest <= 15:
                table = min(table, (n + 2) // 2)
                if p >= 2 and n >= 2:
                    table = min(table, (n + 1) // 2)
            pair_bits[r] = bits
            pair_table[r] = table
            continue
        # more pair symbols than codes of L bits: floors - their entropy, and the fewest tokens their presence needs
        s_clog = 0.0
        for t in range(p):
            s_clog += clog[hist[0, t]]
            if t and codes[t] != codes[t - 1] + 1:
                tokens += _zeros_tokens(codes[t] - codes[t - 1] - 1)
            if t == 0 or codes[t] != codes[t - 1] + 1:  # a run of present symbols: all of one length, at best
                k = 1
                while t + k < p and codes[t + k] == codes[t + k - 1] + 1:
                    k += 1
                tokens += 1 + (k - 1) // 129 + (1 if (k - 1) % 129 else 0)
        n_pairs = (M + 1) // 2
        pair_bits[r] = max(np.int64(np.floor((clog[n_pairs] - s_clog) * (1 - 1e-12))), 0)
        pair_table[r] = min(1 + varint_bytes(n) + tokens, (n + 1) // 2)


def row_floors(rows: np.ndarray, value_min: int, counts: np.ndarray, first: np.ndarray, R: np.ndarray,
               run_symbol: int, pairs: np.ndarray, runs: np.ndarray, max_code_length: int) -> dict[str, np.ndarray]:
    """Sizes of one stream per row where the rows' histograms of pairs and run symbols are not kept (too many
    symbols), in one pass over the rows ``[C, M]`` (integers; ``counts``: their value counts ``[C, T]``, from the
    tensor's smallest value ``value_min``; row ``r``'s window: ``R[r]`` values from ``value_min + first[r]``):

    * for rows with ``pairs``, the code of the row's pair symbols (FORMAT.md §7: the row one stream, its pairs from
      its first value, an odd row padded) of at most ``max_code_length`` bits: ``pair_bits``, its payload, and
      ``pair_table``, its table's bytes, exactly (``pair_longest``: its longest length); where more pair symbols
      occur than such codes hold (``pair_longest`` < 0), floors: their entropy, rounded down, and the fewest bytes
      a table of them takes (all present lengths equal). ``pair_sig``: a hash of which pair symbols occur (equal
      tables have equal ones);
    * ``runs_bits`` (for rows with ``runs``): the entropy of the row's values other than the run value (base
      symbol ``run_symbol`` of the tensor's window), in bits, rounded down: each of them ends a run symbol of its
      own, and run symbols say at least which value ends them.
    """
    C, M = rows.shape
    clog = np.zeros(max(M, 1) + 2)
    c = np.arange(1, clog.size)
    clog[1:] = c * np.log2(c)
    out = {k: np.zeros(C, np.int64) for k in ("pair_bits", "pair_table", "pair_longest", "runs_bits")}
    out["pair_sig"] = np.zeros(C, np.uint64)
    _row_floors(np.ascontiguousarray(rows), np.int64(value_min), np.ascontiguousarray(counts, dtype=np.int64),
                np.asarray(first, np.int64), np.asarray(R, np.int64), np.int64(run_symbol), np.asarray(pairs, bool),
                np.asarray(runs, bool), clog, np.int64(max_code_length), out["pair_bits"], out["pair_table"],
                out["pair_sig"], out["pair_longest"], out["runs_bits"])
    return out


@numba.njit(cache=True, nogil=True)
def _value_counts(words, flip, M, K, starts, syms, vals, span):  # pragma: no cover - compiled
    """Counts of every row of ``M`` values (``words``: 1-D unsigned; their order-preserving keys ``word ^ flip``, of
    ``K`` possible keys), flushed as each row's non-zeros in key order; the smallest and largest key into ``span``."""
    C = starts.size - 1
    sub = np.zeros((2, K), np.int64)  # two sub-histograms: neighbours of one value do not wait on one counter
    M2 = M - M % 2
    t = 0
    lo_all = K
    hi_all = -1
    for r in range(C):
        a = r * M
        lo = K
        hi = -1
        for i in range(a, a + M2, 2):
            k0 = np.int64(words[i] ^ flip)
            k1 = np.int64(words[i + 1] ^ flip)
            sub[0, k0] += 1
            sub[1, k1] += 1
            lo = min(lo, min(k0, k1))
            hi = max(hi, max(k0, k1))
        if M2 < M:
            k0 = np.int64(words[a + M - 1] ^ flip)
            sub[0, k0] += 1
            lo = min(lo, k0)
            hi = max(hi, k0)
        for v in range(lo, hi + 1):  # (only the row's span)
            c = sub[0, v] + sub[1, v]
            if c:
                syms[t] = v
                vals[t] = c
                sub[0, v] = 0
                sub[1, v] = 0
                t += 1
        starts[r + 1] = t
        lo_all = min(lo_all, lo)
        hi_all = max(hi_all, hi)
    span[0] = lo_all
    span[1] = hi_all


def value_counts(rows: np.ndarray) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], int, int]:
    """How often each value occurs in every row of the 2-D integers ``rows`` (at least one value each; values of at
    most 2 bytes, or spanning at most 65536 values), in one pass: ``(row starts [C + 1], value - smallest value,
    count)``, the non-zero counts of each row in value order, and the smallest and largest value."""
    C, M = rows.shape
    rows = np.ascontiguousarray(rows)
    if rows.dtype.itemsize <= 2:  # counted by order-preserving unsigned key: no first pass for the smallest value
        bits = 8 * rows.dtype.itemsize
        words = rows.view(f"u{rows.dtype.itemsize}").reshape(-1)
        shift = (1 << (bits - 1)) if rows.dtype.kind == "i" else 0  # (signed: the sign bit flipped)
        flip, K = words.dtype.type(shift), 1 << bits
    else:
        lo = int(rows.min())
        words = (rows.reshape(-1) - rows.dtype.type(lo)).astype(np.uint32)
        flip, K, shift = np.uint32(0), int(rows.max()) - lo + 1, -lo
    starts = np.zeros(C + 1, np.int64)
    nnz = min(C * M, C * K)
    syms = np.empty(nnz, np.int64)
    vals = np.empty(nnz, np.int64)
    span = np.zeros(2, np.int64)
    _value_counts(words, flip, np.int64(M), np.int64(K), starts, syms, vals, span)
    n = int(starts[-1])
    lo_key = int(span[0])
    syms = syms[:n] - lo_key
    return (starts, syms, vals[:n].copy()), lo_key - shift, int(span[1]) - shift


@numba.njit(cache=True, nogil=True)
def _csr_group_sums(starts, syms, vals, rows, dest, out):  # pragma: no cover - compiled
    for i in range(rows.size):
        r = rows[i]
        d = dest[i]
        for t in range(starts[r], starts[r + 1]):
            out[d, syms[t]] += vals[t]


def csr_group_sums(csr: tuple[np.ndarray, np.ndarray, np.ndarray], n_symbols: int, rows: np.ndarray,
                   dest: np.ndarray, n_out: int) -> np.ndarray:
    """``out[dest[i]] += row rows[i]`` of histograms given as :func:`csr_rows` (``n_symbols`` columns): int64
    ``[n_out, n_symbols]`` sums of rows, the work of their non-zero entries only."""
    starts, syms, vals = csr
    out = np.zeros((n_out, n_symbols), np.int64)
    _csr_group_sums(starts, syms, vals, np.asarray(rows, np.int64), np.asarray(dest, np.int64), out)
    return out
