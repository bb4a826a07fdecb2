"""Entropy and code-length measures: the one place the project computes them.

All figures are in bits. ``counts`` is a 1-D array of non-negative integer counts indexed
by symbol; probabilities are ``counts / counts.sum()``.
"""

from __future__ import annotations

import numpy as np

from entropy.errors import EntropyError

__all__ = ["shannon_entropy", "average_code_length", "counts_of", "payload_bits"]


def _as_counts(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1:
        raise EntropyError(f"counts must be 1-D, got shape {c.shape}")
    if c.size and (not np.issubdtype(c.dtype, np.integer) or int(c.min()) < 0):
        raise EntropyError("counts must be non-negative integers")
    return c.astype(np.int64, copy=False)


def shannon_entropy(counts: np.ndarray) -> float:
    """Order-0 Shannon entropy -sum(p log2 p) of the distribution ``counts``, in bits per symbol.

    0.0 for an empty or single-symbol distribution.

    >>> import numpy as np, entropy
    >>> entropy.shannon_entropy(np.array([8, 4, 2, 1, 1]))  # 1/2, 1/4, 1/8, 1/16, 1/16
    1.875
    >>> entropy.shannon_entropy(entropy.counts_of(np.array([3, 3, 3, 3]), alphabet=4))
    0.0
    """
    c = _as_counts(counts)
    total = int(c.sum())
    if total == 0:
        return 0.0
    p = c[c > 0].astype(np.float64) / total
    return float(max(0.0, -np.sum(p * np.log2(p))))


def payload_bits(counts: np.ndarray, lengths: np.ndarray) -> int:
    """Exact number of payload bits sum(count * len) for symbol ``counts`` and code ``lengths``."""
    c = _as_counts(counts)
    lens = np.asarray(lengths)
    if lens.shape != c.shape:
        raise EntropyError(f"counts ({c.size} symbols) and lengths ({lens.size} symbols) differ in size")
    if np.any(c[lens == 0] > 0):
        sym = int(np.flatnonzero((lens == 0) & (c > 0))[0])
        raise EntropyError(f"symbol {sym} occurs but has no code")
    return int(np.dot(c, lens.astype(np.int64)))


def average_code_length(counts: np.ndarray, lengths: np.ndarray) -> float:
    """Average code length sum(p * len) in bits per symbol (0.0 for empty ``counts``)."""
    c = _as_counts(counts)
    total = int(c.sum())
    if total == 0:
        return 0.0
    return payload_bits(c, lengths) / total


def counts_of(values: np.ndarray, alphabet: int, value_min: int = 0) -> np.ndarray:
    """Histogram (int64[alphabet]) of integer ``values``: value v counts at index v - value_min.

    Raises EntropyError if a value lies outside [value_min, value_min + alphabet).
    """
    v = np.asarray(values).ravel()
    if alphabet < 1:
        raise EntropyError(f"alphabet must hold at least 1 symbol, got {alphabet}")
    if v.size == 0:
        return np.zeros(alphabet, dtype=np.int64)
    if not np.issubdtype(v.dtype, np.integer):
        raise EntropyError(f"values must be integers, got dtype {v.dtype}")
    lo, hi = int(v.min()), int(v.max())
    if lo < value_min or hi >= value_min + alphabet:
        raise EntropyError(
            f"values span [{lo}, {hi}], outside the alphabet [{value_min}, {value_min + alphabet - 1}]"
        )
    s = v.astype(np.int64) - value_min if value_min or v.dtype.kind != "u" else v
    return np.bincount(s, minlength=alphabet).astype(np.int64)
