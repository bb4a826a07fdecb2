"""Code lengths: optimality, limits, edge cases (entropy/codec/lengths.py)."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from entropy.errors import CodebookError
from entropy.codec.lengths import code_lengths, code_lengths_rows, huffman_lengths, limited_lengths
from entropy.codec.measures import shannon_entropy


def _kraft(lens: np.ndarray) -> float:
    return float(np.sum(2.0 ** -lens[lens > 0].astype(np.float64)))


def _heap_huffman_cost(counts: list[int]) -> int:
    """Independent oracle: optimal total cost = sum of all merged weights (heap Huffman)."""
    w = [c for c in counts if c > 0]
    if len(w) <= 1:
        return sum(w)  # a single symbol costs 1 bit per occurrence
    heapq.heapify(w)
    cost = 0
    while len(w) > 1:
        a, b = heapq.heappop(w), heapq.heappop(w)
        cost += a + b
        heapq.heappush(w, a + b)
    return cost


def _brute_force_limited_cost(counts: list[int], L: int) -> int:
    """Smallest sum(count*len) over all length vectors in 1..L with Kraft sum <= 1."""
    present = [c for c in counts if c > 0]
    best = None
    for lens in itertools.product(range(1, L + 1), repeat=len(present)):
        if sum(2.0**-x for x in lens) <= 1.0 + 1e-12:
            cost = sum(c * x for c, x in zip(present, lens))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("fn", [huffman_lengths, lambda c: limited_lengths(c, 12)])
def test_edge_cases(fn):
    assert fn(np.zeros(0, dtype=np.int64)).size == 0
    assert np.all(fn(np.zeros(7, dtype=np.int64)) == 0)
    single = fn(np.array([0, 0, 5, 0]))
    assert single.tolist() == [0, 0, 1, 0]
    two = fn(np.array([3, 0, 1]))
    assert two.tolist() == [1, 0, 1]


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=300))
@settings(max_examples=150, deadline=None)
def test_huffman_optimal_and_bounds(counts):
    c = np.array(counts, dtype=np.int64)
    lens = huffman_lengths(c)
    assert lens.dtype == np.uint8
    assert np.all((lens > 0) == (c > 0))
    n_present = int(np.count_nonzero(c))
    if n_present >= 2:
        assert _kraft(lens) == pytest.approx(1.0, abs=0)
    cost = int(np.dot(c, lens.astype(np.int64)))
    assert cost == _heap_huffman_cost(counts)
    if n_present >= 2:
        total = c.sum()
        avg = cost / total
        H = shannon_entropy(c)
        assert H - 1e-9 <= avg < H + 1


@given(
    st.lists(st.integers(1, 1000), min_size=2, max_size=6),
    st.integers(1, 5),
)
@settings(max_examples=120, deadline=None)
def test_limited_optimal_vs_brute_force(counts, L):
    c = np.array(counts, dtype=np.int64)
    if len(counts) > 2**L:
        with pytest.raises(CodebookError):
            limited_lengths(c, L)
        return
    lens = limited_lengths(c, L)
    assert int(lens.max()) <= L
    assert _kraft(lens) == pytest.approx(1.0, abs=0)
    assert int(np.dot(c, lens.astype(np.int64))) == _brute_force_limited_cost(counts, L)


@given(st.lists(st.integers(0, 10**5), min_size=1, max_size=400), st.integers(1, 16))
@settings(max_examples=150, deadline=None)
def test_limited_respects_limit_and_is_complete(counts, L):
    c = np.array(counts, dtype=np.int64)
    n_present = int(np.count_nonzero(c))
    if n_present > 2**L:
        with pytest.raises(CodebookError):
            code_lengths(c, L)
        return
    lens = code_lengths(c, L)
    assert np.all((lens > 0) == (c > 0))
    if n_present:
        assert int(lens.max()) <= L
    if n_present >= 2:
        assert _kraft(lens) == 1.0
        # never better than unlimited Huffman; equal when Huffman already fits
        h = huffman_lengths(c)
        cost_l = int(np.dot(c, lens.astype(np.int64)))
        cost_h = int(np.dot(c, h.astype(np.int64)))
        assert cost_l >= cost_h
        if int(h.max()) <= L:
            assert cost_l == cost_h
        assert cost_l == int(np.dot(c, limited_lengths(c, L).astype(np.int64)))


def test_geometric_counts_are_limited():
    c = 2 ** np.arange(30, dtype=np.int64)  # unlimited Huffman needs 29-bit codes
    assert int(huffman_lengths(c).max()) == 29
    lens = limited_lengths(c, 12)
    assert int(lens.max()) == 12 and _kraft(lens) == 1.0


def test_full_16bit_alphabet():
    rng = np.random.default_rng(1)
    c = (rng.pareto(1.2, 65536) * 100).astype(np.int64) + 1  # every symbol present
    for L in (16, 20, 24):
        lens = code_lengths(c, L)
        assert np.all(lens > 0) and int(lens.max()) <= L and _kraft(lens) == 1.0
    with pytest.raises(CodebookError):
        code_lengths(c, 15)  # 65536 symbols need codes of 16 bits at least
    h = code_lengths(c, None)
    assert int(np.dot(c, h.astype(np.int64))) == _heap_huffman_cost(c.tolist())


@pytest.mark.parametrize(
    "bad",
    [np.array([[1, 2]]), np.array([1.5, 2.0]), np.array([-1, 3]), np.zeros(65537, dtype=np.int64)],
)
def test_bad_counts(bad):
    with pytest.raises(CodebookError):
        huffman_lengths(bad)
    with pytest.raises(CodebookError):
        limited_lengths(bad, 8)


@pytest.mark.parametrize("L", [0, 25, 2.5, None])
def test_bad_limit(L):
    with pytest.raises(CodebookError):
        limited_lengths(np.array([1, 2, 3]), L)


@pytest.mark.parametrize("max_length", [None, 12, 5])
def test_code_lengths_rows_equal_row_by_row(max_length):
    # the compiled batch version must give exactly the per-row lengths (same tie-breaking, same limit fallback)
    rng = np.random.default_rng(3)
    K = 24
    c = (rng.pareto(0.7, size=(300, K)) * 5).astype(np.int64)
    c[rng.random((300, K)) < 0.4] = 0
    c[0] = 0  # empty row
    c[1] = 0
    c[1, 7] = 9  # one symbol
    c[2] = 2 ** np.arange(K)  # skewed: the unlimited code is deeper than 12 bits
    got = code_lengths_rows(c, max_length)
    want = np.stack([code_lengths(row, max_length) for row in c])
    assert got.dtype == np.uint8 and np.array_equal(got, want)
    if max_length is not None:
        assert int(got.max()) <= max_length


def test_code_lengths_rows_bad_input():
    with pytest.raises(CodebookError):
        code_lengths_rows(np.ones(4, dtype=np.int64), 12)
    with pytest.raises(CodebookError):
        code_lengths_rows(-np.ones((2, 4), dtype=np.int64), 12)
    with pytest.raises(CodebookError):
        code_lengths_rows(np.ones((2, 40), dtype=np.int64), 5)  # 40 symbols cannot fit in 5-bit codes
