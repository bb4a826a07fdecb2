"""Per-channel symbol histograms of one integer tensor, for the exact sizes of its layouts (compiled; numba).

A tensor is viewed as channel rows (:mod:`entropy.channels`). One pass counts the values of every row; a second
one, for rows spanning at most ``PAIR_RANGE`` levels, counts the pairs of consecutive values. From these counts
:func:`stream_histogram` gives the exact symbol histogram the codec forms on any set of rows concatenated in
channel order, singles or pairs, without touching the data again (the pairs that straddle two rows and the
codec's padding of an odd count are included).

This is the histogram source of the layout search (:mod:`entropy.layouts`); a codec function giving per-row
histograms for more symbol modes plugs in at :func:`stream_histogram`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np

from entropy.codec import PAD_BASE_SYMBOL
from entropy.errors import EntropyError
from entropy.lengths import code_lengths_rows
from entropy.measures import shannon_entropy

__all__ = [
    "PAIR_RANGE",
    "TensorCounts",
    "tensor_counts",
    "stream_histogram",
    "channel_entropies",
    "channel_payload_bits",
]

#: Widest per-channel value span (levels) counted in pairs: 32 levels -> at most 1024 pair symbols per row.
PAIR_RANGE = 32


@dataclass(frozen=True)
class TensorCounts:
    """Per-channel counts of one integer tensor. All counts are numbers of values (or pairs).

    ``counts[c, v - value_min]``: occurrences of value ``v`` in channel ``c``.
    ``pair_even[c, a * PAIR_RANGE + b]``: pairs ``(x[2i], x[2i+1])`` of row ``c``, both values relative to the
    row's minimum ``row_min[c]``; ``pair_odd``: pairs ``(x[2i+1], x[2i+2])`` (only when the row length is odd:
    then every second row of a concatenation starts at an odd offset). ``first``/``last``: first and last value
    of each row (pairs straddling two rows). Pairs are counted only for rows spanning at most ``PAIR_RANGE``
    levels (``pair_ok``).
    """

    counts: np.ndarray
    value_min: int
    row_length: int
    row_min: np.ndarray
    row_max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    pair_ok: np.ndarray
    pair_even: np.ndarray | None = None
    pair_odd: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    axis: int | None = None
    dtype: str = "uint8"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_channels(self) -> int:
        return int(self.counts.shape[0])

    @property
    def value_range(self) -> int:
        return int(self.counts.shape[1])

    @property
    def n_values(self) -> int:
        return self.n_channels * self.row_length

    @property
    def has_pairs(self) -> bool:
        return self.pair_even is not None

    def pooled(self) -> np.ndarray:
        """Counts of the whole tensor pooled over its channels (int64 [R])."""
        return self.counts.sum(axis=0)


@numba.njit(cache=True, nogil=True)
def _count_rows(x3, vmin, R, want_pairs, want_odd, P):  # pragma: no cover - compiled
    # x3: [A, C, B]; row c is x3[0, c, :], x3[1, c, :], ... (its memory order)
    A, C, B = x3.shape
    counts = np.zeros((C, R), np.int64)
    rmin = np.zeros(C, np.int64)
    rmax = np.zeros(C, np.int64)
    for c in range(C):
        lo = np.int64(1) << 62
        hi = -lo
        for a in range(A):
            for b in range(B):
                v = np.int64(x3[a, c, b])
                counts[c, v - vmin] += 1
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
        rmin[c] = lo
        rmax[c] = hi
    pe = np.zeros((C if want_pairs else 1, P * P), np.int64)
    po = np.zeros((C if want_odd else 1, P * P), np.int64)
    if want_pairs:
        for c in range(C):
            if rmax[c] - rmin[c] >= P:
                continue
            lo = rmin[c]
            pos = 0
            prev = np.int64(0)
            for a in range(A):
                for b in range(B):
                    v = np.int64(x3[a, c, b]) - lo
                    if pos & 1:
                        pe[c, prev * P + v] += 1
                    elif pos > 0 and want_odd:
                        po[c, prev * P + v] += 1
                    prev = v
                    pos += 1
    return counts, rmin, rmax, pe, po


def tensor_counts(
    values: np.ndarray,
    axis: int | None,
    *,
    pairs: bool = True,
    value_min: int | None = None,
    value_max: int | None = None,
) -> TensorCounts:
    """Count the values of integer ``values`` per channel along ``axis`` (None: one channel).

    ``value_min``/``value_max`` fix the alphabet (default: the observed extremes). One pass over the data, a
    second one for ``pairs`` (compiled, releases the GIL); no copy when ``values`` is C-contiguous and in native
    byte order. Raises EntropyError for non-integer or empty input and alphabets above 65536 values.
    """
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        raise EntropyError(f"values must be integers, got dtype {a.dtype}")
    if a.size == 0:
        raise EntropyError(f"cannot count an empty tensor of shape {a.shape}")
    a = np.ascontiguousarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if axis is None or a.ndim == 0:
        x3 = a.reshape(1, 1, -1)
        ax = None
    else:
        ax = axis % a.ndim
        x3 = a.reshape(math.prod(a.shape[:ax]), a.shape[ax], math.prod(a.shape[ax + 1 :]))
    lo = int(a.min()) if value_min is None else int(value_min)
    hi = int(a.max()) if value_max is None else int(value_max)
    if value_min is not None or value_max is not None:
        if int(a.min()) < lo or int(a.max()) > hi:
            raise EntropyError(f"values span [{int(a.min())}, {int(a.max())}], outside the alphabet [{lo}, {hi}]")
    R = hi - lo + 1
    if R > (1 << 16):
        raise EntropyError(f"alphabet of {R} values exceeds 65536; per-channel counts need at most 16 bits")
    M = int(x3.shape[0] * x3.shape[2])
    want_odd = bool(pairs and M % 2 == 1)
    counts, rmin, rmax, pe, po = _count_rows(x3, np.int64(lo), R, bool(pairs), want_odd, PAIR_RANGE)
    return TensorCounts(
        counts=counts,
        value_min=lo,
        row_length=M,
        row_min=rmin,
        row_max=rmax,
        first=x3[0, :, 0].astype(np.int64),
        last=x3[-1, :, -1].astype(np.int64),
        pair_ok=(rmax - rmin < PAIR_RANGE) if pairs else np.zeros(counts.shape[0], dtype=bool),
        pair_even=pe if pairs else None,
        pair_odd=po if want_odd else None,
        shape=tuple(int(d) for d in a.shape),
        axis=ax,
        dtype=a.dtype.name,
    )


def _trim(counts: np.ndarray) -> tuple[int, int]:
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        return 0, 1
    return int(nz[0]), int(nz[-1] - nz[0] + 1)


def stream_histogram(tc: TensorCounts, rows: np.ndarray, group: int) -> tuple[np.ndarray, int, int] | None:
    """The codec's symbol histogram of the rows ``rows`` (increasing channel numbers) concatenated in that order.

    Returns ``(counts, value_min, value_range)``: the alphabet is trimmed to the values present; ``counts`` has
    ``value_range ** group`` entries. ``group`` 2 (pairs of consecutive values, the last one padded with the
    alphabet's smallest value when the count is odd) is available only for rows spanning at most ``PAIR_RANGE``
    levels; otherwise None.
    """
    single = tc.counts[rows].sum(axis=0)
    first, R = _trim(single)
    lo_abs = tc.value_min + first
    if group == 1:
        return single[first : first + R], lo_abs, R
    if group != 2 or not tc.has_pairs or R > PAIR_RANGE or not bool(np.all(tc.pair_ok[rows])):
        return None
    P = PAIR_RANGE
    M = tc.row_length
    k = rows.size
    out = np.zeros((R, R), dtype=np.int64)
    if M % 2 == 0:
        phase_rows = [(rows, tc.pair_even)]
    else:
        phase_rows = [(rows[0::2], tc.pair_even), (rows[1::2], tc.pair_odd)]
    for rr, table in phase_rows:
        if rr.size == 0:
            continue
        offs = tc.row_min[rr] - lo_abs
        for o in np.unique(offs):
            s = table[rr[offs == o]].sum(axis=0).reshape(P, P)
            w = R - int(o)
            out[o:, o:] += s[:w, :w]
    if M % 2 == 1:
        # row j at an even position leaves its last value to pair with row j+1's first value
        a = tc.last[rows[0:-1:2]] - lo_abs
        b = tc.first[rows[1::2]] - lo_abs
        np.add.at(out, (a, b), 1)
        if k % 2 == 1:  # odd total: the codec pads the last value with base symbol 0
            out[tc.last[rows[-1]] - lo_abs, PAD_BASE_SYMBOL] += 1
    return out.ravel(), lo_abs, R


def channel_entropies(tc: TensorCounts) -> np.ndarray:
    """Shannon entropy of each channel's values (bits per value), float64 [C] (computed once per counts)."""
    cached = tc._cache.get("channel_entropies")
    if cached is None:
        cached = np.array([shannon_entropy(row) for row in tc.counts], dtype=np.float64)
        cached.setflags(write=False)
        tc._cache["channel_entropies"] = cached
    return cached


def channel_payload_bits(tc: TensorCounts, max_code_length: int = 12) -> np.ndarray:
    """Payload bits of each channel coded with its own Huffman code of singles (int64 [C]); no table, no record."""
    key = ("channel_payload_bits", max_code_length)
    out = tc._cache.get(key)
    if out is None:
        lens = code_lengths_rows(tc.counts, max_code_length)
        out = np.einsum("ij,ij->i", tc.counts.astype(np.int64), lens.astype(np.int64))
        out.setflags(write=False)
        tc._cache[key] = out
    return out
