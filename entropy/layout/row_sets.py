"""Sets of channel rows coded as one stream: the best stream of any set, and the clustering of channels into K
shared codes (lower bounds on any set's stream: :mod:`entropy.layout.bounds`).

A set of channel rows is coded as one stream of its rows concatenated in channel order, each row starting its own
chunks (``row_length``), so its symbol histogram in any mode is the sum of its rows' (:mod:`entropy.layout.channel_counts`)
and :func:`entropy.codec.modes.best_plan` chooses its mode, escapes and code by exact size, as it does for a whole array.
Compiled counting only (numba, through the codec); everything here works on histograms (the clustering's rounds are
compiled, :mod:`entropy.layout.kernels`).
"""

from __future__ import annotations

import numpy as np

from entropy.codec.modes import StreamPlan, best_plan
from entropy.codec.options import CodecOptions
from entropy.codec.params import CodecParams
from entropy.layout.channel_counts import (TensorCounts, channel_entropies, csr_entropies, row_histograms,
                                          set_histogram)

__all__ = ["set_params", "set_stream", "cluster_labels", "mode_histograms", "group_modes"]

_LLOYD_ROUNDS = 5
#: of more channels, the clustering fits its codes on this many (evenly spread) and assigns the rest once
SAMPLE_ROWS = 2048


def set_params(tc: TensorCounts, channels: np.ndarray, *, max_code_length: int, chunk_size: int,
               rows: bool = True) -> CodecParams:
    """Plain stream parameters of the rows ``channels``: the window of their values, and ``row_length`` = the row
    length with ``rows`` when the set has several rows whose chunks the rows would cut differently (0 otherwise:
    one row, or rows of a whole number of chunks, where both chunkings agree and the parameter block is 8 bytes
    shorter)."""
    present = np.flatnonzero(tc.counts_of(channels).sum(axis=0))
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
    bits). Of more than :data:`SAMPLE_ROWS` channels, the codes are fitted on that many channels evenly spread
    over the tensor, and every channel then goes to the code that costs it the fewest bits (the work stays that of
    one round over the channels). Labels are renumbered in order of first appearance (the format's canonical
    order); empty clusters disappear.
    """
    from entropy.layout.kernels import lloyd_labels  # numba: imported on first use only

    C = tc.n_channels
    fit, order, csr = _fit_rows(tc, counts)
    width = tc.value_range if counts is None else counts.shape[1]
    labels = np.empty(fit.size, dtype=np.int64)
    labels[order] = np.arange(fit.size) * k // fit.size
    labels = lloyd_labels(csr, width, labels, k, max_code_length, max_code_length + 4, _LLOYD_ROUNDS)
    if fit.size < C:  # every channel to the cheapest of the fitted codes
        everyone = np.zeros(C, np.int64)
        everyone[fit] = labels
        labels = lloyd_labels(tc.nonzero(counts), width, everyone, k, max_code_length, max_code_length + 4, 1,
                              fit=fit)
    _, first_idx = np.unique(labels, return_index=True)
    remap = np.empty(k, dtype=np.int64)
    remap[labels[np.sort(first_idx)]] = np.arange(first_idx.size)
    return remap[labels]


def _fit_rows(tc: TensorCounts, counts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The channels the clustering fits its codes on (all, or :data:`SAMPLE_ROWS` evenly spread), their order by
    entropy and mean value, and their histograms' non-zeros (``counts``: None for the value counts); made once
    per histograms, whatever the cluster count."""
    from entropy.layout.kernels import csr_rows  # numba: imported on first use only

    key = ("fit", id(counts))
    got = tc._cache.get(key)
    if got is not None and got[0] is counts:
        return got[1]
    C, R = tc.n_channels, tc.value_range
    fit = np.arange(C) if C <= SAMPLE_ROWS else np.unique(np.linspace(0, C - 1, SAMPLE_ROWS).round().astype(np.int64))
    vc = tc.csr if fit.size == C else tc.csr_of(fit)  # (the fitted rows' value counts, without a dense array)
    starts, syms, vals = vc
    tot = np.maximum(np.add.reduceat(vals, starts[:-1]), 1)  # (every row holds a value)
    mean = np.add.reduceat(syms * vals, starts[:-1]) / tot
    order = np.lexsort((mean, channel_entropies(tc) if fit.size == C else csr_entropies(vc)))
    csr = vc if counts is None else (tc.nonzero(counts) if fit.size == C else csr_rows(counts[fit]))
    tc._cache[key] = (counts, (fit, order, csr))
    return fit, order, csr


def group_modes(options: CodecOptions) -> list[tuple[str, ...]]:
    """The symbol modes a stream of a file may use, in the order tried: those ``options`` allow; ``group=2`` asks
    for pairs and falls back to the single-value codes its ``mode`` allows (those of ``group=1``: never a stored
    stream) where pairs cannot apply."""
    if options.group == 2:
        single = CodecOptions(group=1).modes
        rest = tuple(m for m in CodecOptions(mode=options.mode).modes if m in single)
        return [("pairs",), rest] if rest else [("pairs",)]
    return [options.modes]

