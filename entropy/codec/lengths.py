"""Huffman code lengths from symbol counts: optimal unlimited and optimal length-limited.

``counts`` is always a 1-D integer array indexed by symbol. Symbols with count 0 get
length 0 (absent from the code). Edge cases, the same for every function here:

* no symbol present (empty input): all lengths 0;
* one distinct symbol: that symbol gets a 1-bit code (the code is then incomplete,
  which :class:`entropy.codec.codebook.Codebook` accepts only in this case);
* otherwise the lengths form a complete prefix code (Kraft sum exactly 1).

Unlimited lengths use the two-queue Huffman construction on sorted counts (linear after
the sort), compiled with numba (:mod:`entropy.codec.kernels`, imported on first use). Length-limited lengths use package-merge (Larmore and Hirschberg, 1990), compiled: one
merge of sorted arrays per bit of the limit, then the code length of each symbol is the
number of levels whose selected prefix holds that symbol.
"""

from __future__ import annotations

import numpy as np

from entropy.errors import CodebookError

__all__ = [
    "huffman_lengths", "limited_lengths", "code_lengths", "code_lengths_rows", "MAX_SUPPORTED_LENGTH", "MAX_ALPHABET",
]

#: Longest code length the codec's kernels support (bits).
MAX_SUPPORTED_LENGTH = 24
#: Largest alphabet (symbols) the codec supports.
MAX_ALPHABET = 1 << 16


def _check_counts(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1:
        raise CodebookError(f"counts must be 1-D (one count per symbol), got shape {c.shape}")
    if c.size > MAX_ALPHABET:
        raise CodebookError(f"alphabet of {c.size} symbols exceeds the supported {MAX_ALPHABET}")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise CodebookError(f"counts must be integers, got dtype {c.dtype}")
    c = c.astype(np.int64, copy=False)
    if c.size and int(c.min()) < 0:
        raise CodebookError("counts must be non-negative")
    return c


def huffman_lengths(counts: np.ndarray) -> np.ndarray:
    """Optimal (unlimited) Huffman code lengths in bits, uint8 per symbol, 0 for absent symbols.

    Two-queue construction on the stably sorted counts (ties go to the leaf, which keeps the tree
    shallow); compiled in :func:`entropy.codec.kernels.huffman_rows`. Raises CodebookError if the optimal
    code would need codes longer than 255 bits (impossible for counts below 2**64) or the counts are
    malformed.
    """
    c = _check_counts(counts)
    if c.size == 0 or not c.any():
        return np.zeros(c.size, dtype=np.uint8)
    from entropy.codec.kernels import huffman_rows  # numba: imported on first use only

    lens, longest = huffman_rows(c[None, :])
    if int(longest[0]) > 255:
        raise CodebookError("optimal Huffman code longer than 255 bits")
    return lens[0]


def limited_lengths(counts: np.ndarray, max_length: int) -> np.ndarray:
    """Optimal code lengths (bits, uint8 per symbol) with every length <= ``max_length``.

    Package-merge: minimises sum(count * length) over all prefix codes whose lengths are at
    most ``max_length``. Raises CodebookError if more than 2**max_length symbols are present.
    """
    c = _check_counts(counts)
    if not isinstance(max_length, (int, np.integer)) or not 1 <= int(max_length) <= MAX_SUPPORTED_LENGTH:
        raise CodebookError(f"max_length must be an integer in 1..{MAX_SUPPORTED_LENGTH}, got {max_length!r}")
    L = int(max_length)
    out = np.zeros(c.size, dtype=np.uint8)
    present = np.flatnonzero(c)
    n = present.size
    if n == 0:
        return out
    if n == 1:
        out[present[0]] = 1
        return out
    if n > (1 << L):
        raise CodebookError(f"{n} symbols present cannot be coded with codes of at most {L} bits (max {1 << L})")
    from entropy.codec.kernels import package_merge  # numba: imported on first use only

    order = present[np.argsort(c[present], kind="stable")]
    out[order] = package_merge(c[order], L)
    return out


def code_lengths(counts: np.ndarray, max_length: int | None) -> np.ndarray:
    """Optimal code lengths (bits, uint8 per symbol): unlimited if ``max_length`` is None.

    With a limit, the unlimited Huffman lengths are returned when they already fit
    (they are then optimal under the limit too); otherwise package-merge is used.

    >>> import numpy as np, entropy
    >>> entropy.code_lengths(np.array([8, 4, 2, 1, 1]), None).tolist()
    [1, 2, 3, 4, 4]
    >>> entropy.code_lengths(np.array([8, 4, 2, 1, 1]), 3).tolist()  # the best code of at most 3 bits
    [1, 3, 3, 3, 3]
    """
    if max_length is None:
        return huffman_lengths(counts)
    if not isinstance(max_length, (int, np.integer)) or not 1 <= int(max_length) <= MAX_SUPPORTED_LENGTH:
        raise CodebookError(f"max_length must be an integer in 1..{MAX_SUPPORTED_LENGTH}, got {max_length!r}")
    c = _check_counts(counts)
    if np.count_nonzero(c) > (1 << int(max_length)):
        raise CodebookError(
            f"{np.count_nonzero(c)} symbols present cannot be coded with codes of at most {max_length} bits"
        )
    lens = huffman_lengths(c)
    if lens.size == 0 or int(lens.max()) <= int(max_length):
        return lens
    return limited_lengths(c, int(max_length))


def code_lengths_rows(counts: np.ndarray, max_length: int | None) -> np.ndarray:
    """:func:`code_lengths` of every row of a 2-D count array ``[R, K]`` (uint8 bits ``[R, K]``), in one compiled
    pass for the many small alphabets of per-channel codes; rows whose optimal code is too long for
    ``max_length`` go through package-merge."""
    c = np.asarray(counts)
    if c.ndim != 2:
        raise CodebookError(f"counts must be 2-D (one row of counts per code), got shape {c.shape}")
    if c.shape[1] > MAX_ALPHABET:
        raise CodebookError(f"alphabet of {c.shape[1]} symbols exceeds the supported {MAX_ALPHABET}")
    if c.size and not np.issubdtype(c.dtype, np.integer):
        raise CodebookError(f"counts must be integers, got dtype {c.dtype}")
    if c.size and int(c.min()) < 0:
        raise CodebookError("counts must be non-negative")
    if max_length is not None and (
        not isinstance(max_length, (int, np.integer)) or not 1 <= int(max_length) <= MAX_SUPPORTED_LENGTH
    ):
        raise CodebookError(f"max_length must be an integer in 1..{MAX_SUPPORTED_LENGTH}, got {max_length!r}")
    if c.size == 0:
        return np.zeros(c.shape, dtype=np.uint8)
    from entropy.codec.kernels import huffman_rows  # numba: imported on first use only

    lens, longest = huffman_rows(c)
    if max_length is not None:
        for r in np.flatnonzero(longest > int(max_length)):
            lens[r] = code_lengths(c[r], int(max_length))
    elif int(longest.max()) > 255:
        raise CodebookError("optimal Huffman code longer than 255 bits")
    return lens
