"""Per-channel counts of one integer tensor, for the exact sizes of its layouts and for measures.

A tensor is viewed as channel rows (:mod:`entropy.layout.channels`). :func:`tensor_counts` counts the values of every row
(the histogram the measures use: channel entropies, the clustering of channels). The symbol histograms of the other
modes (pairs, run symbols) come on demand, per row, from the codec's own counting
(:func:`entropy.codec.modes.symbol_histograms`, one pass per mode) and are kept: a set of rows coded as one stream, each row
starting its own chunks (``row_length``), has the sum of its rows' histograms (:func:`set_histogram`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from entropy.layout.channels import channel_rows
from entropy.errors import EntropyError, StreamError
from entropy.codec.lengths import MAX_ALPHABET, code_lengths_rows
from entropy.codec.measures import shannon_entropy
from entropy.codec.params import CodecParams

__all__ = [
    "MAX_COUNT_CELLS",
    "TensorCounts",
    "tensor_counts",
    "row_histograms",
    "set_histogram",
    "channel_entropies",
    "channel_payload_bits",
]

#: Most cells (rows x symbols) of the per-row histograms of one mode; a mode needing more is not counted per row.
MAX_COUNT_CELLS = 1 << 23


@dataclass(frozen=True, eq=False)
class TensorCounts:
    """Per-channel counts of one integer tensor (all counts are numbers of values).

    ``rows``: the values as channel rows ``[C, M]`` (native byte order, C-contiguous).
    ``counts[c, v - value_min]``: occurrences of value ``v`` in channel ``c`` (the plain symbol histogram of every
    row in the window ``[value_min, value_min + value_range)``).
    """

    rows: np.ndarray
    counts: np.ndarray
    value_min: int
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
    def row_length(self) -> int:
        return int(self.rows.shape[1])

    @property
    def n_values(self) -> int:
        return self.n_channels * self.row_length

    @property
    def row_min(self) -> np.ndarray:
        """Smallest value of each row (int64 [C])."""
        return self.value_min + np.argmax(self.counts > 0, axis=1)

    @property
    def row_max(self) -> np.ndarray:
        """Largest value of each row (int64 [C])."""
        return self.value_min + self.value_range - 1 - np.argmax(self.counts[:, ::-1] > 0, axis=1)

    def pooled(self) -> np.ndarray:
        """Counts of the whole tensor pooled over its channels (int64 [R])."""
        return self.counts.sum(axis=0)

    def window(self, **mode) -> CodecParams:
        """Stream parameters of the tensor's window with the symbol mode ``mode`` (CodecParams fields: ``group``,
        ``chunk_size``, ``runs``, ``run_symbol``); the key of :func:`row_histograms`."""
        fields = dict(group=1, max_code_length=1, chunk_size=1 << 12, value_min=self.value_min,
                      value_range=self.value_range)
        fields.update(mode)
        return CodecParams(**fields)


def tensor_counts(values: np.ndarray, axis: int | None, *, value_min: int | None = None,
                  value_max: int | None = None) -> TensorCounts:
    """Count the values of integer ``values`` per channel along ``axis`` (None: one channel).

    ``value_min``/``value_max`` fix the alphabet (default: the observed extremes). One pass over the data (the
    codec's counting), after one copy when the channel axis is not the first. Raises EntropyError for non-integer
    or empty input and alphabets above 65536 values.

    >>> import numpy as np, entropy
    >>> tc = entropy.tensor_counts(np.array([[0, 0, 1, 1], [2, 2, 2, 2]], np.uint8), 0)
    >>> tc.counts.tolist(), entropy.channel_entropies(tc).tolist()
    ([[2, 2, 0], [0, 0, 4]], [1.0, 0.0])
    """
    a = np.asarray(values)
    if a.dtype.kind not in "iu":
        raise EntropyError(f"values must be integers, got dtype {a.dtype}")
    if a.size == 0:
        raise EntropyError(f"cannot count an empty tensor of shape {a.shape}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    ax = None if axis is None or a.ndim == 0 else axis % a.ndim
    rows = channel_rows(a, ax)
    lo = int(a.min()) if value_min is None else int(value_min)
    hi = int(a.max()) if value_max is None else int(value_max)
    if value_min is not None or value_max is not None:
        if int(a.min()) < lo or int(a.max()) > hi:
            raise EntropyError(f"values span [{int(a.min())}, {int(a.max())}], outside the alphabet [{lo}, {hi}]")
    R = hi - lo + 1
    if R > MAX_ALPHABET:
        raise EntropyError(f"alphabet of {R} values exceeds {MAX_ALPHABET}; per-channel counts need at most 16 bits")
    from entropy.codec.modes import symbol_histograms

    tc = TensorCounts(rows=rows, counts=np.empty((rows.shape[0], R), np.int64), value_min=lo,
                      shape=tuple(int(d) for d in a.shape), axis=ax, dtype=a.dtype.name)
    plain = tc.window()
    try:
        counts = symbol_histograms(rows, plain)
    except StreamError as exc:  # the window does not fit the dtype
        raise EntropyError(str(exc)) from None
    object.__setattr__(tc, "counts", counts)
    tc._cache[(plain, False)] = counts
    return tc


def row_histograms(tc: TensorCounts, key: CodecParams, *, skip_first: bool = False) -> np.ndarray | None:
    """The symbol histogram of every row coded with ``key`` (a :meth:`TensorCounts.window` of the tensor), int64
    ``[C, key.alphabet_size]``; counted once (one pass over the rows), then kept. ``skip_first``: of every row
    without its first value. None when the mode's alphabet is larger than 65536 symbols or the rows x symbols
    exceed :data:`MAX_COUNT_CELLS`."""
    ck = (key, skip_first)
    got = tc._cache.get(ck)
    if got is None and ck not in tc._cache:
        try:
            key.validate()
            ok = tc.n_channels * key.alphabet_size <= MAX_COUNT_CELLS and tc.row_length > int(skip_first)
        except StreamError:
            ok = False
        if ok:
            from entropy.codec.modes import symbol_histograms

            got = symbol_histograms(tc.rows[:, 1:] if skip_first else tc.rows, key)
        tc._cache[ck] = got
    return got


def set_histogram(tc: TensorCounts, channels: np.ndarray, params: CodecParams) -> np.ndarray:
    """The symbol histogram of the stream of the rows ``channels`` (increasing) coded with ``params``, from the
    rows' histograms (:func:`row_histograms` in the tensor's window), cut to the stream's window (no escapes; a
    window inside the tensor's that holds every value of those rows); when the tensor's window has too many symbols
    of that mode to keep per row, by counting the set's stream itself.

    Exact for every mode when each row starts its own chunks (``params.row_length`` set, or one row, or rows of
    whole chunks): the sum of the rows' histograms. Rows concatenated without row structure: plain symbols are
    the same sum; pairs too for rows of even length, and for odd lengths every second row starts at an odd
    offset (its pairs are those of the row without its first value) and the last value of the row before pairs
    with its first (even chunk sizes: no chunk boundary falls inside a pair). Run symbols need row structure.
    Raises EntropyError when values of the rows lie outside the window."""
    if params.escape_range:
        raise EntropyError("sets of rows are counted without escapes")
    off = params.value_min - tc.value_min
    R, T, M = params.value_range, tc.value_range, tc.row_length
    if off < 0 or off + R > T:
        raise EntropyError(f"window [{params.value_min}, {params.value_min + R - 1}] is not inside the tensor's "
                           f"[{tc.value_min}, {tc.value_min + T - 1}]")
    channels = np.asarray(channels)
    whole_rows = params.row_length or channels.size == 1 or M % params.chunk_size == 0
    if params.runs and not whole_rows:
        raise EntropyError("run symbols of a set of rows need each row to start its own chunks (row_length)")
    # plain symbols do not depend on the chunking (the counts of every row are kept under the default chunk size)
    chunked = params.group == 2 or params.runs
    key = tc.window(group=params.group, chunk_size=params.chunk_size if chunked else 1 << 12, runs=params.runs,
                    run_symbol=params.run_symbol + off if params.runs else 0)
    per_row = row_histograms(tc, key)
    if per_row is None:  # too many symbols in the tensor's window to keep per row: count this set's stream itself
        from entropy.codec.modes import stream_histogram

        return stream_histogram(tc.rows[channels], params)
    if params.group == 2 and not whole_rows and M % 2:
        tails = row_histograms(tc, key, skip_first=True)
        if tails is None:
            return None
        even, odd = channels[0::2], channels[1::2]  # rows starting at an even / odd offset of the stream
        full = per_row[even].sum(axis=0) + tails[odd].sum(axis=0)
        sq = full.reshape(T, T)
        a = tc.rows[even[: odd.size], -1].astype(np.int64) - tc.value_min  # their last value pairs with ...
        b = tc.rows[odd, 0].astype(np.int64) - tc.value_min  # ... the next row's first, not with the pad
        np.add.at(sq, (a, 0), -1)
        np.add.at(sq, (a, b), 1)
    else:
        full = per_row[channels].sum(axis=0)
    if params.group == 2:
        sq = full.reshape(T, T)
        out = sq[off : off + R, off : off + R].copy()
        if off:  # no value of these rows is the tensor's smallest: its column holds the pads of odd chunks only
            out[:, 0] += sq[off : off + R, 0]
        out = out.reshape(-1)
    elif params.runs:
        out = full.reshape(params.runs, T)[:, off : off + R].reshape(-1)
    else:
        out = full[off : off + R]
    if int(out.sum()) != int(full.sum()):
        raise EntropyError(f"values of the channels lie outside the window [{params.value_min}, "
                           f"{params.value_min + R - 1}]")
    return out


def channel_entropies(tc: TensorCounts) -> np.ndarray:
    """Shannon entropy of each channel's values (bits per value), float64 [C] (computed once per counts)."""
    cached = tc._cache.get("channel_entropies")
    if cached is None:
        # (per row as shannon_entropy computes it, to the last bit: the clustering sorts channels by it)
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
