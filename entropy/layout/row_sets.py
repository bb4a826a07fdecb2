"""Sets of channel rows coded as one stream: the best stream of any set, a lower bound on one stream per channel,
and the clustering of channels into K shared codes.

A set of channel rows is coded as one stream of its rows concatenated in channel order, each row starting its own
chunks (``row_length``), so its symbol histogram in any mode is the sum of its rows' (:mod:`entropy.layout.channel_counts`)
and :func:`entropy.codec.modes.best_plan` chooses its mode, escapes and code by exact size, as it does for a whole array.
Compiled counting only (numba, through the codec); everything here works on histograms.
"""

from __future__ import annotations

import numpy as np

from entropy.layout.channel_counts import MAX_COUNT_CELLS, TensorCounts, channel_entropies, row_histograms, set_histogram
from entropy.errors import CodebookError, StreamError
from entropy.format import codebook_record_bytes, index_bytes, stream_record_bytes
from entropy.codec.lengths import MAX_ALPHABET, code_lengths_rows
from entropy.codec.options import CodecOptions
from entropy.codec.params import CodecParams
from entropy.codec.modes import RUN_PREFIXES, StreamPlan, best_plan, may_try_runs, symbol_histograms

__all__ = ["set_params", "set_stream", "channel_layout_lower_bound", "cluster_labels", "mode_histograms"]

_LLOYD_ROUNDS = 5
#: widest alphabet whose per-channel floor is the optimal Huffman payload (wider: the entropy bound)
_HUFFMAN_FLOOR_SYMBOLS = 4096


def set_params(tc: TensorCounts, channels: np.ndarray, *, max_code_length: int, chunk_size: int,
               rows: bool = True) -> CodecParams:
    """Plain stream parameters of the rows ``channels``: the window of their values, and ``row_length`` = the row
    length with ``rows`` when the set has several rows whose chunks the rows would cut differently (0 otherwise:
    one row, or rows of a whole number of chunks, where both chunkings agree and the parameter block is 8 bytes
    shorter)."""
    present = np.flatnonzero(tc.counts[channels].sum(axis=0))
    first = int(present[0]) if present.size else 0
    span = int(present[-1]) - first + 1 if present.size else 1
    M = tc.row_length
    M = M if rows and np.size(channels) > 1 and M % chunk_size else 0
    return CodecParams(group=1, max_code_length=max_code_length, chunk_size=chunk_size,
                       value_min=tc.value_min + first, value_range=span, row_length=M)


def set_stream(tc: TensorCounts, channels: np.ndarray, *, modes: tuple[str, ...], max_code_length: int,
               chunk_size: int, run_value: int | None, escapes: bool = True) -> StreamPlan | None:
    """The smallest stream of the rows ``channels`` (increasing) over ``modes`` (:func:`entropy.codec.modes.best_plan`: plain
    symbols with rare values escaped where that pays, pairs, run symbols of ``run_value`` with 16, 64 or 256
    prefixes), or None when no mode applies. Exact: the codec codes these rows with the plan's params and codebook
    to exactly its payload bits.

    Each row starts its own chunks (``row_length``), so that the set's histogram is the sum of its rows' in every
    mode; that costs an index entry per row and chunk, a lot for short rows (a few weights per channel). So the
    rows are also tried concatenated without row structure, in the modes whose histogram still follows from the
    rows' there (:func:`entropy.layout.channel_counts.set_histogram`): plain symbols, pairs and stored values.
    ``escapes``: rare values may be escaped when the code cannot hold them all (else the code-length limit is
    raised)."""
    plans = []
    n = int(np.size(channels)) * tc.row_length
    tries = [(True, modes)]
    if np.size(channels) > 1 and tc.row_length % chunk_size:
        flat_modes = tuple(m for m in modes if m in ("plain", "pairs", "stored"))
        if flat_modes:
            tries.append((False, flat_modes))
    for rows, ms in tries:
        base = set_params(tc, channels, max_code_length=max_code_length, chunk_size=chunk_size, rows=rows)
        lo, hi = base.value_min, base.value_min + base.value_range - 1
        plan, _ = best_plan(lambda p: set_histogram(tc, channels, p), base, n, modes=ms, rare_escapes=escapes,
                            narrow_runs=False, lo=lo, hi=hi, run_value=run_value)
        if plan is not None:
            plans.append(plan)
    return min(plans, key=lambda p: p.cost_bits) if plans else None


def _payload_floor(h: np.ndarray) -> np.ndarray:
    """Per row of the histograms ``h`` [C, A]: fewest payload bits any prefix code of those symbols takes -
    length-limited codes and escapes (an escape code plus raw bits is a prefix code too) included (int64 [C]).
    The optimal (unlimited) Huffman payload (one compiled pass), or for wide alphabets, where that costs more
    time than it saves, the entropy bound."""
    if h.shape[1] <= _HUFFMAN_FLOOR_SYMBOLS:
        return np.einsum("ij,ij->i", h, code_lengths_rows(h, None).astype(np.int64))
    rows, syms = np.nonzero(h)
    c = h[rows, syms].astype(np.float64)
    tot = h.sum(axis=1).astype(np.float64)
    bits = np.bincount(rows, weights=-c * np.log2(c / tot[rows]), minlength=h.shape[0])
    return np.maximum(np.floor(bits * (1 - 1e-9) - 1e-6), 0).astype(np.int64)  # (float error: round down)


def _row_payload_floors(tc: TensorCounts, key: CodecParams) -> np.ndarray | None:
    """:func:`_payload_floor` of every row coded with ``key`` (a tensor window), from the kept per-row histograms,
    or counted in blocks of rows when they are too many to keep; None when the mode cannot be counted."""
    h = row_histograms(tc, key)
    if h is not None:
        return _payload_floor(h)
    try:
        key.validate()
    except StreamError:
        return None
    block = max(1, MAX_COUNT_CELLS // key.alphabet_size)
    return np.concatenate([_payload_floor(symbol_histograms(tc.rows[r : r + block], key))
                           for r in range(0, tc.n_channels, block)])


def channel_layout_lower_bound(tc: TensorCounts, *, modes: tuple[str, ...], max_code_length: int, chunk_size: int,
                               run_value: int) -> tuple[np.ndarray, int]:
    """Fewest bytes the ``channel`` layout (one stream per channel, :func:`set_stream`) can take beyond the tensor
    record's fixed part: per channel (int64 [C]: its payload, stream record and index), and for the whole (one
    codebook record).

    Every channel's payload is at least the optimal Huffman payload of its histogram in the mode it uses, so at
    least the smallest of those over the modes it may use, where they are counted per row (0 bits for a channel that may use
    a mode that is not: pairs of a wide tensor, run symbols with fewer prefixes than counted); every stream adds a
    stream record and an index - but a stored stream, which has no index, and whose payload is the bits of the
    channel's span per value; one codebook record at least."""
    M, T = tc.row_length, tc.value_range
    bound = _payload_floor(tc.counts)  # plain symbols (a mode more in the minimum only lowers the bound)
    free = np.zeros(tc.n_channels, dtype=bool)  # channels that may use a mode not counted per row
    if "pairs" in modes and chunk_size % 2 == 0:
        f = _row_payload_floors(tc, tc.window(group=2, chunk_size=chunk_size)) if T * T <= MAX_ALPHABET else None
        if f is None:  # a channel of at most 256 values may pair them
            free |= tc.row_max - tc.row_min < 256
        else:
            bound = np.minimum(bound, f)
    if "runs" in modes:
        may_run = may_try_runs(tc.counts[:, run_value - tc.value_min], M)  # best_plan's gate
        if may_run.any():
            exact = RUN_PREFIXES[-1] * T <= MAX_ALPHABET  # else a set may use fewer prefixes than these
            for r in RUN_PREFIXES:
                f = None
                if exact:
                    f = _row_payload_floors(tc, tc.window(chunk_size=chunk_size, runs=r,
                                                          run_symbol=run_value - tc.value_min))
                if f is None:
                    free |= may_run
                    break
                bound = np.minimum(bound, f)
    bound[free] = 0
    smallest = CodecParams(group=1, max_code_length=max_code_length, chunk_size=chunk_size, value_min=0,
                           value_range=1)
    per_channel = -(-bound // 8) + index_bytes(smallest, M)
    if "stored" in modes:  # a stored channel: the bits of its own span per value, and no index
        span = tc.row_max - tc.row_min + 1
        bits = np.array([(int(s) - 1).bit_length() for s in span], dtype=np.int64)
        per_channel = np.where(span >= 2, np.minimum(per_channel, -(-(bits * M) // 8)), per_channel)
    return per_channel + stream_record_bytes(smallest), codebook_record_bytes(b"\0")


def mode_histograms(tc: TensorCounts, params: CodecParams) -> np.ndarray | None:
    """Per-row histograms of the symbols of ``params``'s mode (pairs, or run symbols of its run value) in the
    tensor's window, to cluster channels on what that mode codes; None for plain symbols (the value counts are
    those), escapes, or a mode not counted per row."""
    if params.mode == "plain" or params.escape_range:
        return None
    run_value = params.value_min + params.run_symbol
    if params.runs and not 0 <= run_value - tc.value_min < tc.value_range:
        return None
    key = tc.window(group=params.group, chunk_size=params.chunk_size, runs=params.runs,
                    run_symbol=run_value - tc.value_min if params.runs else 0)
    return row_histograms(tc, key)


def cluster_labels(tc: TensorCounts, k: int, max_code_length: int, counts: np.ndarray | None = None) -> np.ndarray:
    """Assign channels to at most ``k`` shared codes (Lloyd iterations on exact payload bits).

    ``counts``: the per-row symbol histograms to cluster on, ``[C, A]`` (default: the value counts, i.e. plain
    symbols; :func:`mode_histograms` gives pairs or run symbols). Start from ``k`` equal slices of the channels
    sorted by entropy and mean value; then alternately build each cluster's Huffman code and move every channel to
    the code that costs it the fewest payload bits (a symbol absent from a code is charged ``max_code_length + 4``
    bits). Labels are renumbered in order of first appearance (the format's canonical order); empty clusters
    disappear.
    """
    C, R = tc.counts.shape
    h = tc.counts if counts is None else counts
    A = h.shape[1]
    # the histograms as (row, symbol, count) triples: per-row histograms of pairs or run symbols are sparse
    rows, syms = np.nonzero(h)
    vals = h[rows, syms]
    starts = np.searchsorted(rows, np.arange(C))  # every row has a symbol (rows are never empty)
    tot = np.maximum(tc.counts.sum(axis=1), 1)
    mean = (tc.counts @ np.arange(R, dtype=np.int64)) / tot
    order = np.lexsort((mean, channel_entropies(tc)))
    labels = np.empty(C, dtype=np.int64)
    labels[order] = np.arange(C) * k // C
    penalty = max_code_length + 4
    for _ in range(_LLOYD_ROUNDS):
        # integer sums (bincount's float64 weights hold these counts exactly)
        sums = np.bincount(labels[rows] * A + syms, weights=vals, minlength=k * A).reshape(k, A).astype(np.int64)
        try:
            lens = code_lengths_rows(sums, max_code_length).astype(np.int64).T  # [A, k]
        except CodebookError:  # more symbols than codes of max_code_length: the Huffman lengths guide as well
            lens = code_lengths_rows(sums, None).astype(np.int64).T
        cost_len = np.where(lens > 0, lens, penalty)
        cost_len[:, sums.sum(axis=1) == 0] = 1 << 24  # empty cluster: never chosen, no overflow
        cost = np.add.reduceat(vals[:, None] * cost_len[syms], starts, axis=0)  # [C, k] payload bits
        new = np.argmin(cost, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
    _, first_idx = np.unique(labels, return_index=True)
    remap = np.empty(k, dtype=np.int64)
    remap[labels[np.sort(first_idx)]] = np.arange(first_idx.size)
    return remap[labels]


def group_modes(options: CodecOptions) -> list[tuple[str, ...]]:
    """The symbol modes a stream of a file may use, in the order tried: those ``options`` allow; ``group=2`` asks
    for pairs and falls back to the single-value codes its ``mode`` allows (those of ``group=1``: never a stored
    stream) where pairs cannot apply."""
    if options.group == 2:
        single = CodecOptions(group=1).modes
        rest = tuple(m for m in CodecOptions(mode=options.mode).modes if m in single)
        return [("pairs",), rest] if rest else [("pairs",)]
    return [options.modes]

