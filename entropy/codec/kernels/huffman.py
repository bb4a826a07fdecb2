"""Code lengths: batched unlimited Huffman, package-merge (length-limited), run-length serialization."""

from __future__ import annotations

import numba
import numpy as np


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


@numba.njit(cache=True, nogil=True)
def _huffman_cost(w):  # pragma: no cover - compiled
    # Two-queue Huffman on the sorted weights: the payload is the sum of the merged nodes' weights.
    n = w.size
    nodes = np.empty(max(n - 1, 1), np.int64)
    i = 0
    j = 0
    total = 0
    for k in range(n - 1):
        s = 0
        for _ in range(2):
            if i < n and (j >= k or w[i] <= nodes[j]):
                s += w[i]
                i += 1
            else:
                s += nodes[j]
                j += 1
        nodes[k] = s
        total += s
    return total


def huffman_cost(counts: np.ndarray) -> int:
    """Payload bits of the optimal (unlimited) prefix code of the int64 ``counts``: the fewest any code of them
    takes (a lone symbol: 1 bit per occurrence). One sort and one linear pass, without the code lengths."""
    w = np.sort(counts[counts > 0])
    if w.size <= 1:
        return int(w.sum())
    return int(_huffman_cost(w.astype(np.int64)))


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


@numba.njit(cache=True, nogil=True)
def _rle_tokens(lengths, out):  # pragma: no cover - compiled
    # mode-5 tokens of entropy.codec.codebook (without the header): see its module docstring
    n = lengths.size
    t = 0
    i = 0
    while i < n:
        v = lengths[i]
        j = i + 1
        while j < n and lengths[j] == v:
            j += 1
        run = j - i
        if v == 0:
            if run >= 2:
                out[t] = 0x40
                t += 1
                x = run - 2
                while True:  # LEB128 varint
                    byte = x & 0x7F
                    x >>= 7
                    if x:
                        out[t] = byte | 0x80
                        t += 1
                    else:
                        out[t] = byte
                        t += 1
                        break
            else:
                out[t] = 0
                t += 1
        else:
            out[t] = v
            t += 1
            left = run - 1
            while left >= 2:
                r = min(left, 129)
                out[t] = 0x80 | (r - 2)
                t += 1
                left -= r
            if left == 1:
                out[t] = v
                t += 1
        i = j
    return t


def rle_tokens(lengths: np.ndarray) -> bytes:
    """The run-length tokens of a code-length table (mode 5 of :mod:`entropy.codec.codebook`, without its header)."""
    lens = np.ascontiguousarray(lengths, dtype=np.uint8)
    out = np.empty(2 * lens.size + 8, dtype=np.uint8)  # at most one literal + one repeat per length, + a varint
    return out[: _rle_tokens(lens, out)].tobytes()
