"""How to code a stream, decided by exact sizes: symbol histograms, codes, escapes, code-length limits.

The public part is what a layout search needs to compare ways of coding a tensor without encoding it:

* :func:`symbol_histograms` - per-row symbol histograms of a 2-D array for given :class:`CodecParams`
  (compiled); each row is coded as its own stream, so the histogram of a set of rows is the sum of theirs;
  :func:`stream_histogram` - the (summed) histogram of one stream;
* :func:`plan_from_counts` - the best code for a histogram and the exact payload, codebook and index sizes;
  :func:`stored_plan` - the exact sizes of a stream stored without a code, in the bits of its window;
* :func:`may_try_runs` - the codec's gate for run symbols, which a layout search applies per row.

:func:`best_plan` picks the mode, escapes and code of a stream from any source of its histograms (:data:`Histograms`):
:func:`choose_plan` (used by :func:`entropy.codec.streams.prepare_encode`) for one array, with its window; the layout search
(:mod:`entropy.layout.search`) for sets of channel rows, from per-row histograms.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from entropy.codec.codebook import Codebook
from entropy.errors import CodebookError, EntropyError, SymbolError
from entropy.codec.lengths import MAX_ALPHABET, code_lengths
from entropy.codec.measures import shannon_entropy
from entropy.codec.params import MAX_ESCAPE_RANGE, MAX_STORED_RANGE, MODES, CodecParams

__all__ = ["StreamPlan", "Histograms", "symbol_histograms", "stream_histogram", "plan_from_counts", "best_plan", "choose_plan", "DEFAULT_RUNS",
           "RUN_PREFIXES", "MAX_RAISED_LENGTH", "may_try_runs", "STORED_CODEBOOK", "stored_plan"]

#: run prefixes of run symbols: a symbol stands for up to 16 values (r = 0..15 run values, then a value); 64 and
#: 256 prefixes are tried too on data whose mean run reaches a quarter of that
DEFAULT_RUNS = 16
#: the run-prefix counts tried
RUN_PREFIXES = (DEFAULT_RUNS, 64, 256)
#: longest code length the codec raises a limit to when a code cannot hold the alphabet (a 256 KiB decode table)
MAX_RAISED_LENGTH = 16
#: run symbols are considered when the most frequent value has at least this share ...
_RUNS_MIN_SHARE = 0.3
#: ... and the plain code spends at least this fraction more than the entropy bound it could approach
_RUNS_MIN_GAIN = 0.01
#: ... and at least this many bits (what a small run-symbol codebook costs): tiny arrays keep plain symbols
_RUNS_MIN_GAIN_BITS = 64
#: cells (rows x symbols) of per-row histograms counted at once when a row-structured stream's rows are summed
_ROW_BLOCK_CELLS = 1 << 20
#: escapes of rare values within a span of at most 65536 are tried when some value occurs fewer times than this
_ESCAPE_MAX_RARE = 32


@dataclass(frozen=True)
class StreamPlan:
    """One way of coding a stream, with its exact sizes (bits).

    params: the stream's parameters (their ``max_code_length`` may be above the one asked for: raised so that
        the code holds the alphabet). codebook: its code (escaped symbols have length 0).
    payload_bits: sum over symbols of their code lengths, plus ``escape_bits``.
    escape_bits: raw bits of escaped values inside the payload. codebook_bits: 8 * len(codebook.to_bytes()).
    index_bits: 8 * chunk index bytes.
    """

    params: CodecParams
    codebook: Codebook
    payload_bits: int
    escape_bits: int
    codebook_bits: int
    index_bits: int

    @property
    def total_bits(self) -> int:
        """payload + codebook + index bits."""
        return self.payload_bits + self.codebook_bits + self.index_bits

    @property
    def cost_bits(self) -> int:
        """What the stream costs where ways of coding it differ: ``total_bits`` plus its parameter block (which
        grows with run symbols, escapes and rows). Plans are compared by this."""
        return self.total_bits + 8 * self.params.block_bytes


# ---- histograms ----------------------------------------------------------------------------------------------------


def symbol_histograms(values: np.ndarray, params: CodecParams) -> np.ndarray:
    """Symbol histogram of every row of ``values`` coded with ``params``: int64 ``[rows, params.alphabet_size]``.

    ``values``: a 2-D integer array ``[rows, row_length]`` (any byte order and memory order), or 1-D (one row, or
    rows of ``params.row_length``). Each row is parsed as its own stream (its chunks start at the row's first
    value and never cross into the next row), exactly as the encoder parses it, so the histogram of a set of rows
    is the sum of their rows - for a set coded as one stream with ``row_length`` (rows concatenated, each
    starting a new chunk), as for one stream per row. Escapes are not decided here: a value inside the window counts as its own symbol,
    one outside the window as the escape symbol of its run prefix; :func:`plan_from_counts` decides which
    in-window symbols the code escapes. Compiled; one pass over the values.

    Raises SymbolError naming the first value the stream cannot code (outside the window and the escape range).
    """
    from entropy.codec import kernels  # numba: imported on first use only

    params.validate()
    v = np.asarray(values)
    if v.ndim == 1:
        rows, M = params.rows(v.size) if params.row_length else (1, v.size)
        v = v.reshape(rows, M)
    if v.ndim != 2 or v.dtype.kind not in "iu":
        raise EntropyError(f"values must be a 1-D or 2-D integer array, got {v.ndim}-D {v.dtype}")
    if params.row_length and v.shape[1] != params.row_length:
        raise EntropyError(f"rows of {v.shape[1]} values, the params say row_length {params.row_length}")
    info = np.iinfo(v.dtype)
    params.check_dtype(int(info.min), int(info.max), str(v.dtype))
    counts, bad = kernels.count_rows(v, params)
    if bad >= 0:
        row, col = divmod(bad, v.shape[1])
        raise SymbolError(f"value {int(v[row, col])} at row {row}, column {col} is outside {_alphabet_text(params)}")
    return counts


def _alphabet_text(p: CodecParams) -> str:
    text = f"the window [{p.value_min}, {p.value_min + p.value_range - 1}]"
    if p.escape_range:
        text += f" and the escape range [{p.escape_min}, {p.escape_min + p.escape_range - 1}]"
    return text


# ---- codes and sizes from histograms -------------------------------------------------------------------------------


def _escape_symbols(params: CodecParams) -> np.ndarray:
    """Indices of the escape symbols (one per run prefix)."""
    V = params.base_symbols
    return np.arange(max(params.runs, 1), dtype=np.int64) * V + params.value_range


def _sizes(counts: np.ndarray, lengths: np.ndarray, params: CodecParams, n_chunks: int,
           codebook: Codebook) -> StreamPlan:
    """Exact sizes of coding ``counts`` with ``codebook`` (symbols without a code escaped); raises SymbolError
    when a symbol occurs that has neither a code nor an escape symbol with a code."""
    c = counts
    lens = lengths.astype(np.int64)
    payload = int(np.dot(c, lens))
    n_esc = int(c[_escape_symbols(params)].sum()) if params.escape_range else 0
    missing = np.flatnonzero((c > 0) & (lens == 0))
    if missing.size:
        V, R = params.base_symbols, params.value_range
        esc = (missing // V) * V + R
        bad = (missing % V == R) | (lens[esc] == 0) if params.escape_range else np.ones(missing.size, dtype=bool)
        if bad.any():
            raise SymbolError(f"symbol {int(missing[bad][0])} occurs but has no code (and no escape with a code)")
        payload += int(np.dot(c[missing], lens[esc]))
        n_esc += int(c[missing].sum())
    esc_bits = n_esc * params.escape_bits
    return StreamPlan(
        params=params, codebook=codebook, payload_bits=payload + esc_bits, escape_bits=esc_bits,
        codebook_bits=codebook.serialized_bits, index_bits=8 * params.index_bytes(n_chunks),
    )


def _fold_escapes(counts: np.ndarray, params: CodecParams, escaped: np.ndarray) -> np.ndarray:
    """Counts after moving the ``escaped`` in-window symbols to the escape symbol of their run prefix."""
    out = counts.copy()
    if escaped.size:
        V, R = params.base_symbols, params.value_range
        np.add.at(out, (escaped // V) * V + R, counts[escaped])
        out[escaped] = 0
    return out


def _limit_for(n_present: int) -> int:
    """Shortest code-length limit whose codes can hold ``n_present`` symbols."""
    return max(1, (max(n_present, 1) - 1).bit_length())


#: the codebook of every stored stream: the empty code of one symbol (a stored stream has no code)
STORED_CODEBOOK = Codebook(np.zeros(1, dtype=np.uint8))


def stored_plan(params: CodecParams, n_values: int) -> StreamPlan | None:
    """A stream of ``n_values`` values stored in the bits of a window, with its exact sizes: ``params`` itself when
    it is a stored stream, else the stored stream of its window (of its escape range when it has escapes), without
    rows (a stored stream reads any range of values directly); None when that window holds fewer than 2 or more
    than 2**32 values."""
    if not params.stored:
        lo, R = (params.escape_min, params.escape_range) if params.escape_range else (params.value_min, params.value_range)
        if not 2 <= R <= MAX_STORED_RANGE:
            return None
        params = CodecParams(group=1, max_code_length=params.max_code_length, chunk_size=params.chunk_size,
                             value_min=lo, value_range=R, stored=True)
    return StreamPlan(params=params, codebook=STORED_CODEBOOK, payload_bits=int(n_values) * params.stored_bits,
                      escape_bits=0, codebook_bits=STORED_CODEBOOK.serialized_bits, index_bits=0)


def plan_from_counts(counts: np.ndarray, params: CodecParams, n_chunks: int, *,
                     codebook: Codebook | None = None) -> StreamPlan:
    """The smallest way to code a stream whose symbol histogram is ``counts`` (int64 ``[params.alphabet_size]``,
    e.g. a sum of rows of :func:`symbol_histograms`) in ``n_chunks`` chunks, with exact sizes.

    With ``codebook`` the sizes of that code (symbols without a code go through their escape symbol when
    ``params`` has escapes; else SymbolError). Without, the optimal code within ``params.max_code_length``
    bits, choosing by exact total size among:

    * all present symbols coded; when more symbols occur than ``2**max_code_length`` codes exist, with the
      optimal code of at most 16 bits instead (the plan's params carry the limit that code reaches);
    * with escapes in ``params``: the rarest in-window symbols escaped (given no code; each occurrence then costs
      its escape symbol's code and ``escape_bits`` raw bits), for several cut-offs, at the asked limit.

    Deterministic: the same counts and params give the same plan. Sizes: ``payload_bits`` =
    sum(count x length) + escaped occurrences x ``escape_bits``; ``codebook_bits`` = 8 x len(codebook.to_bytes());
    ``index_bits`` = 8 x n_chunks x ``params.index_entry_bytes``. (A stored stream has no code: :func:`stored_plan`.)
    """
    params.validate()
    if params.stored:
        raise EntropyError("a stored stream has no code to plan from counts (see stored_plan)")
    c = np.asarray(counts)
    if c.shape != (params.alphabet_size,) or not np.issubdtype(c.dtype, np.integer):
        raise EntropyError(f"counts must be an integer array of {params.alphabet_size} symbols, got {c.dtype} {c.shape}")
    c = c.astype(np.int64, copy=False)
    if c.size and int(c.min()) < 0:
        raise EntropyError("counts must be non-negative")
    if codebook is not None:
        if codebook.alphabet_size != params.alphabet_size:
            raise EntropyError(f"codebook has {codebook.alphabet_size} symbols, the stream needs {params.alphabet_size}")
        if codebook.max_length > params.max_code_length:
            raise CodebookError(
                f"codebook has {codebook.max_length}-bit codes, above max_code_length {params.max_code_length}"
            )
        return _sizes(c, codebook.lengths, params, n_chunks, codebook)
    cands = []
    L = params.max_code_length
    n_present = int(np.count_nonzero(c))
    if n_present <= 1 << L:
        cands.append(_plan_lengths(c, params, n_chunks))
    elif _limit_for(n_present) <= max(L, MAX_RAISED_LENGTH):
        # raised limit: the optimal code within 16 bits (the minimal limit that holds the symbols would force a
        # nearly flat code, far from the entropy on peaked data); the params carry the limit the code reaches
        cb = Codebook(code_lengths(c, MAX_RAISED_LENGTH), max_length=MAX_RAISED_LENGTH)
        cands.append(_sizes(c, cb.lengths, replace(params, max_code_length=cb.max_length), n_chunks, cb))
    if params.escape_range:
        cands += _escape_candidates(c, params, n_chunks, skip_none=n_present <= 1 << L)
    if not cands:
        raise CodebookError(
            f"{n_present} symbols present cannot be coded with codes of at most {max(L, MAX_RAISED_LENGTH)} bits "
            f"(max {1 << max(L, MAX_RAISED_LENGTH)}) and the stream has no escapes"
        )
    return min(cands, key=lambda p: p.cost_bits)


def _plan_lengths(c: np.ndarray, params: CodecParams, n_chunks: int) -> StreamPlan:
    cb = Codebook(code_lengths(c, params.max_code_length), max_length=params.max_code_length)
    return _sizes(c, cb.lengths, params, n_chunks, cb)


def _escape_candidates(c: np.ndarray, params: CodecParams, n_chunks: int, skip_none: bool) -> list[StreamPlan]:
    """Plans that escape the rarest in-window symbols, for growing count cut-offs, while the total shrinks
    (``skip_none``: the plan escaping nothing is made elsewhere)."""
    L = params.max_code_length
    esc_idx = _escape_symbols(params)
    inwin = np.ones(c.size, dtype=bool)
    inwin[esc_idx] = False
    present = np.flatnonzero(inwin & (c > 0))
    order = present[np.argsort(c[present], kind="stable")]  # rarest first, ties by symbol
    sorted_counts = c[order]
    # the fewest to escape so that what stays (plus the escape symbols then used) fits 2**L codes
    n_esc_syms = int(np.count_nonzero(c[esc_idx]))
    t_min = max(0, order.size + max(n_esc_syms, 1) - (1 << L))
    if t_min > order.size:
        return []
    out: list[StreamPlan] = []
    tried: set[int] = {0} if skip_none else set()
    cutoffs = [t_min] + [max(t_min, int(np.searchsorted(sorted_counts, k, side="right"))) for k in (1, 2, 4, 8, 16, 32)]
    best = None
    worse = 0
    for t in cutoffs:
        if t in tried:
            continue
        tried.add(t)
        folded = _fold_escapes(c, params, order[:t])
        if int(np.count_nonzero(folded)) > 1 << L:  # escape symbols of other run prefixes appeared
            continue
        plan = _plan_lengths(folded, params, n_chunks)
        out.append(plan)
        if best is not None and plan.total_bits >= best:
            worse += 1
            if worse >= 2:
                break
        else:
            best, worse = plan.total_bits, 0
    return out


# ---- choosing how to code a stream ---------------------------------------------------------------------------------

#: A source of one stream's symbol histograms: for the stream's parameters (mode, window, run value), its symbol
#: histogram (int64 ``[params.alphabet_size]``, the rows of a row-structured stream summed), or None when the
#: source cannot count that mode (the caller then leaves the mode out).
Histograms = Callable[[CodecParams], "np.ndarray | None"]


def _entropy_of_values(flat: np.ndarray, counts1: np.ndarray | None) -> float:
    if counts1 is not None:
        return shannon_entropy(counts1)
    _, cnt = np.unique(flat, return_counts=True)
    return shannon_entropy(cnt)


def _window(flat: np.ndarray, lo: int, hi: int, width: int) -> int:
    """Start of a window of ``width`` values inside [lo, hi] holding about the most values: coarse histograms,
    narrowed to the densest bucket until a window spans several buckets, then the densest run of buckets."""
    from entropy.codec import kernels

    a, last = lo, hi  # search range [a, last]
    while last - a + 1 > width:
        nb = 4096
        bw = -(-(last - a + 1) // nb)  # bucket width (values)
        counts, _ = kernels.count_buckets(flat, a, last, bw, nb)
        per = width // bw  # whole buckets a window spans
        if per >= 2:
            sums = np.convolve(counts, np.ones(per, dtype=np.int64), mode="valid")
            a = a + int(np.argmax(sums)) * bw
            break
        k = int(np.argmax(counts))
        a, last = a + k * bw, min(last, a + (k + 1) * bw - 1)
    return max(lo, min(a, hi + 1 - width))


def stream_histogram(values: np.ndarray, params: CodecParams) -> np.ndarray:
    """Symbol histogram of the one stream ``params`` makes of ``values`` (native integers, coded flat in C order;
    with ``row_length``, the sum of its rows' histograms): int64 ``[params.alphabet_size]``, as the encoder parses
    it. Compiled; one pass, and a few histograms of memory however many rows (:func:`symbol_histograms` keeps one
    per row). Raises SymbolError naming the first value the stream cannot code."""
    from entropy.codec import kernels

    flat = np.asarray(values).reshape(-1)
    n_rows, M = params.rows(flat.size)
    simple = not (params.runs or params.escape_range)
    one = replace(params, row_length=0)
    if n_rows <= 1 or (simple and (params.group == 1 or M % 2 == 0)):
        # plain symbols do not depend on the chunking, nor pairs of even rows (even chunks: no pair crosses one)
        rows, offsets = [flat.reshape(1, -1)], [0]
    elif simple:  # pairs of odd rows: each row's pairs, and its last value paired with the pad (base symbol 0)
        body = np.ascontiguousarray(flat.reshape(n_rows, M)[:, :-1]).reshape(1, -1)
        last = flat[M - 1 :: M].astype(np.int64) - params.value_min
        out_of = np.flatnonzero((last < 0) | (last >= params.value_range))
        if out_of.size:
            i = int(out_of[0]) * M + M - 1
            raise SymbolError(f"value {int(flat[i])} at flat index {i} is outside {_alphabet_text(params)}")
        counts = np.bincount(last * params.value_range, minlength=params.alphabet_size)
        body_counts, bad = kernels.count_rows(body, one)
        if bad >= 0:
            i = bad // (M - 1) * M + bad % (M - 1)
            raise SymbolError(f"value {int(flat[i])} at flat index {i} is outside {_alphabet_text(params)}")
        return counts + body_counts[0]
    else:  # run symbols or escapes: each row its own stream, counted in blocks of rows
        block = max(1, _ROW_BLOCK_CELLS // params.alphabet_size)
        grid = flat.reshape(n_rows, M)
        rows = [grid[r : r + block] for r in range(0, n_rows, block)]
        offsets = [r * M for r in range(0, n_rows, block)]
    total = np.zeros(params.alphabet_size, dtype=np.int64)
    for part, at in zip(rows, offsets):
        counts, bad = kernels.count_rows(part, params)
        if bad >= 0:
            raise SymbolError(f"value {int(flat[at + bad])} at flat index {at + bad} is outside "
                              f"{_alphabet_text(params)}")
        total += counts[0] if counts.shape[0] == 1 else counts.sum(axis=0)
    return total


#: 1- and 2-byte streams without rows of at least this many values are counted once by raw value (or byte pair)
#: (:class:`RawCounts`): their span and their histograms of any window from one pass
RAW_COUNT_MIN_VALUES = 1 << 16
#: values whose distinct pairs tell whether a pair code could be chosen at all
_PAIR_PROBE_VALUES = 1 << 16


class RawCounts:
    """One raw count of a 1- or 2-byte stream without rows, for its span and its plain (and pair) histograms of any
    window: one pass over the values where a min, a max and a histogram would each read them.

    1-byte values are counted by byte pair (``(v[2i], v[2i + 1])``: 65536 counts, the byte counts follow) when a
    pair code could be chosen, else by byte: pairs are left out when the first values already hold more distinct
    pairs than ``2**max_code_length`` codes (then :func:`best_plan` never builds a pair code:
    ``pairs_excluded``), and counted later only if asked for. 2-byte values are counted by value (65536
    counts); their pairs are counted the ordinary way.
    """

    def __init__(self, flat: np.ndarray, *, pairs: bool, max_code_length: int) -> None:
        from entropy.codec import kernels

        self._u = flat.view(f"u{flat.dtype.itemsize}")
        self._bits = 8 * flat.dtype.itemsize
        self._signed = flat.dtype.kind == "i"
        self._pairs = self._values = None
        self.pairs_excluded = False
        if self._bits == 8 and pairs:
            self.pairs_excluded = kernels.distinct_pairs(self._u, _PAIR_PROBE_VALUES) > 1 << max_code_length
        if self._bits == 8 and pairs and not self.pairs_excluded:
            self._pairs = kernels.raw_counts(self._u, pairs=True)
        else:
            self._values = kernels.raw_counts(self._u)

    def _value_counts(self) -> np.ndarray:
        if self._values is None:
            sq = self._pairs.reshape(256, 256)  # [second, first]
            self._values = sq.sum(axis=0) + sq.sum(axis=1)
            if self._u.size % 2:
                self._values[self._u[-1]] += 1
        return self._values

    def span(self) -> tuple[int, int]:
        """Smallest and largest value ((0, 0) when empty)."""
        present = np.flatnonzero(self._value_counts())
        if present.size == 0:
            return 0, 0
        half = 1 << (self._bits - 1)
        vals = ((present + half) & (2 * half - 1)) - half if self._signed else present
        return int(vals.min()), int(vals.max())

    def _window(self, value_min: int, value_range: int) -> np.ndarray:
        return (int(value_min) + np.arange(value_range)) & ((1 << self._bits) - 1)

    def top_count(self, value_min: int, value_range: int) -> int:
        """How often the most frequent value of the window occurs (0 when empty)."""
        return int(self._value_counts()[self._window(value_min, value_range)].max()) if self._u.size else 0

    def histogram(self, p: CodecParams) -> np.ndarray | None:
        """The symbol histogram of ``p`` when it is plain symbols (or, of 1-byte values, pairs) without rows,
        escapes and runs, and every value lies in its window; else None."""
        if p.runs or p.escape_range or p.row_length or p.stored or (p.group == 2 and self._bits != 8):
            return None
        from entropy.codec import kernels

        n, R = self._u.size, p.value_range
        v = self._window(p.value_min, R)
        if p.group == 1:
            got = self._value_counts()[v]
            return got if int(got.sum()) == n else None
        if self._pairs is None:
            self._pairs = kernels.raw_counts(self._u, pairs=True)
        got = self._pairs[v[:, None] | (v[None, :] << 8)].reshape(-1)
        if n % 2:  # the last value, paired with base symbol 0
            s = (int(self._u[-1]) - int(p.value_min)) & 255
            if s >= R:
                return None
            got[s * R] += 1
        return got if int(got.sum()) == -(-n // 2) else None


def choose_plan(
    flat: np.ndarray,
    *,
    max_code_length: int,
    chunk_size: int,
    modes: Iterable[str],
    escape: bool,
    lo: int,
    hi: int,
    value_min: int | None = None,
    value_range: int | None = None,
    row_length: int = 0,
    raw_counts: RawCounts | None = None,
) -> tuple[StreamPlan, float]:
    """The smallest plan for the native-order 1-D array ``flat`` (values in [lo, hi]) over the allowed
    ``modes`` (:func:`best_plan`), and the order-0 entropy of its values (bits/value).

    With ``value_min``/``value_range`` the window is fixed and nothing is escaped. ``row_length``: see
    :class:`CodecParams`. Otherwise the window is the values' span when it holds at most 65536 values, else (with
    ``escape``) a 65535-wide window of the densest values with the whole span as escape range. ``raw_counts``: the
    raw counts of a 1- or 2-byte ``flat`` without rows, where the histograms come from when they can.
    """
    n = flat.size
    L, C = max_code_length, chunk_size
    fixed = value_min is not None
    if fixed:
        vmin, R = int(value_min), int(value_range)
        esc_min = esc_range = 0
    else:
        span = hi - lo + 1
        if span <= MAX_ALPHABET or not escape:
            if span > MAX_ALPHABET:
                raise SymbolError(f"values span {span} symbols [{lo}, {hi}], above the supported {MAX_ALPHABET} "
                                  "(and escapes are off)")
            vmin, R, esc_min, esc_range = lo, span, 0, 0
        else:
            if span > MAX_ESCAPE_RANGE:
                raise SymbolError(f"values span {span} values [{lo}, {hi}], above the 2**32 an escaped value can take")
            R = MAX_ALPHABET - 1
            vmin, esc_min, esc_range = _window(flat, lo, hi, R), lo, span
    base = CodecParams(group=1, max_code_length=L, chunk_size=C, value_min=vmin, value_range=R,
                       escape_min=esc_min, escape_range=esc_range, row_length=row_length)
    modes = tuple(m for m in MODES if m in set(modes))
    free = escape and not fixed
    def histograms(p: CodecParams) -> np.ndarray | None:
        if raw_counts is not None:
            if (p.group == 2 and raw_counts.pairs_excluded and modes != ("pairs",)
                    and not ("runs" in modes and may_try_runs(raw_counts.top_count(vmin, R), n))):
                # more distinct pairs than codes: best_plan would not build a pair code, and the run symbols are
                # not judged by the pairs' entropy
                return None
            got = raw_counts.histogram(p)
            if got is not None:
                return got
        return stream_histogram(flat, p)

    best, counts1 = best_plan(histograms, base, n, modes=modes, rare_escapes=free, narrow_runs=free, lo=lo, hi=hi)
    if best is None:
        raise EntropyError(f"none of the modes {', '.join(modes)} can code these values")
    # entropy of the values: from the window histogram unless values lie outside it
    return best, _entropy_of_values(flat, counts1 if not esc_range else None)


def best_plan(
    histograms: Histograms,
    base: CodecParams,
    n_values: int,
    *,
    modes: tuple[str, ...],
    rare_escapes: bool,
    narrow_runs: bool,
    lo: int,
    hi: int,
    run_value: int | None = None,
) -> tuple[StreamPlan | None, np.ndarray]:
    """The smallest plan (fewest :attr:`StreamPlan.cost_bits`) of a stream of ``n_values`` values in ``[lo, hi]``
    whose plain parameters are ``base`` (window, escapes, chunking, rows), over ``modes``; and the histogram of its
    plain symbols. ``histograms`` gives the stream's symbol histogram of any mode (:data:`Histograms`).

    The candidates, each with the best code for its histogram (:func:`plan_from_counts`): plain symbols, and with
    ``rare_escapes`` the rare values escaped when they do not fit ``2**L`` codes; pairs when the window has at most
    256 values, the chunk size is even and there are 2 values or more; run symbols of ``run_value`` (default: the
    most frequent value) when it is common and the plain code is measurably above the entropy it could approach
    (or when runs are the only mode), with 16 prefixes and, on very sparse data, 64 and 256. ``narrow_runs``: a
    window too wide for 16 prefixes is narrowed around the run value, the rest escaped; else the prefixes are
    fewer. None when no mode applies (e.g. only pairs asked for and pairs impossible).
    """
    n = n_values
    R, C = base.value_range, base.chunk_size
    n_chunks = base.n_chunks(n)
    pairs_ok = ("pairs" in modes and not base.escape_range and R * R <= MAX_ALPHABET and C % 2 == 0
                and (n >= 2 or modes == ("pairs",)))
    counts2 = histograms(replace(base, group=2)) if pairs_ok else None
    if counts2 is not None:
        sq = counts2.reshape(R, R)
        counts1 = sq.sum(axis=1) + sq.sum(axis=0)
        counts1[0] -= int(np.count_nonzero(base.chunk_values(n) % 2))  # the pad of each chunk of an odd count
    else:
        counts1 = histograms(base)
    # the stored stream first: a code that is not smaller loses to it
    stored = stored_plan(base, n) if "stored" in modes and n else None
    cands: list[StreamPlan] = [stored] if stored is not None else []
    plain_plan = None
    if "plain" in modes or "runs" in modes:  # runs are judged against the plain code
        # no plain code can beat a stored stream below its floor (nor run symbols, unless they are judged against it)
        run = _run_of(counts1, base, run_value) if "runs" in modes else None
        if stored is None or not _stored_wins(counts1, base, n_chunks, stored) or (
                run is not None and may_try_runs(run[1], n)):
            plain_plan = _plain_plans(counts1, base, n_chunks, rare_escapes)
            if "plain" in modes:
                cands.append(plain_plan)
    # pairs that need a raised limit are tried only when asked for alone (a 65536-symbol code costs time, and
    # plain symbols of such data are as good)
    if counts2 is not None and (modes == ("pairs",) or int(np.count_nonzero(counts2)) <= 1 << base.max_code_length):
        p2 = replace(base, group=2)
        if _cost_floor(counts2, p2, n_chunks) < _best_cost(cands):
            cands.append(plan_from_counts(counts2, p2, n_chunks))
    if "runs" in modes and n:
        runs_plan = _runs_plan(histograms, counts1, counts2, base, n, n_chunks, plain_plan, forced=modes == ("runs",),
                               narrow=narrow_runs, lo=lo, hi=hi, run_value=run_value, to_beat=_best_cost(cands))
        if runs_plan is not None:
            cands.append(runs_plan)
    return (min(cands, key=lambda p: p.cost_bits) if cands else None), counts1


def _best_cost(plans: list[StreamPlan]) -> float:
    return min((p.cost_bits for p in plans), default=float("inf"))


def _fixed_floor(params: CodecParams, n_chunks: int) -> int:
    """Bits every coded stream of ``params`` takes besides its payload: a 1-byte codebook at least, the index and the
    parameter block."""
    return 8 + 8 * params.index_bytes(n_chunks) + 8 * params.block_bytes


def _cost_floor(counts: np.ndarray, params: CodecParams, n_chunks: int) -> float:
    """Fewer :attr:`StreamPlan.cost_bits` than any code of the symbol histogram ``counts`` can take with ``params``
    (no escapes): the entropy bound on the payload, a 1-byte codebook, the index and the parameter block. A plan
    whose floor is not below the best so far cannot win (ties keep the earlier plan), so it is not built."""
    payload = shannon_entropy(counts) * int(counts.sum())
    return payload * (1 - 1e-9) - 1e-6 + _fixed_floor(params, n_chunks)


def _stored_wins(counts1: np.ndarray, base: CodecParams, n_chunks: int, stored: StreamPlan) -> bool:
    """Whether no plain code of ``counts1`` (limited, raised or with escapes: each is a prefix code of the values)
    can cost fewer bits than the ``stored`` plan: by the entropy bound, else by the optimal prefix code's payload
    (one sort, no code lengths), each with the fixed part of the smallest parameters a plain code has."""
    if _cost_floor(counts1, base, n_chunks) >= stored.cost_bits:
        return True
    from entropy.codec import kernels

    return kernels.huffman_cost(counts1) + _fixed_floor(base, n_chunks) >= stored.cost_bits


def _plain_plans(counts1: np.ndarray, base: CodecParams, n_chunks: int, escape: bool) -> StreamPlan:
    """Plain symbols: the code at the limit or a raised limit, and (with escapes allowed, when the values do not
    fit ``2**L`` codes) the rare values escaped, whichever is smaller."""
    plans = [plan_from_counts(counts1, base, n_chunks)]
    R = base.value_range
    present = counts1[counts1 > 0]
    # (a speed heuristic: when every value occurs often, escaping one costs more raw bits than its code and its
    # codebook entry save, so the escape plans are not built)
    if (escape and not base.escape_range and R >= 2 and present.size > 1 << base.max_code_length
            and int(present.min()) < _ESCAPE_MAX_RARE):
        # the escape symbol needs a slot: a full 65536-value span leaves its rarer end value to the escapes
        lo, W, win = base.value_min, R, counts1
        if R + 1 > MAX_ALPHABET:
            W = R - 1
            lo, win = (lo + 1, counts1[1:]) if counts1[0] < counts1[-1] else (lo, counts1[:-1])
        p = replace(base, value_min=lo, value_range=W, escape_min=base.value_min, escape_range=R)
        plans.append(plan_from_counts(np.append(win, int(counts1.sum() - win.sum())), p, n_chunks))
    return min(plans, key=lambda p: p.cost_bits)


def may_try_runs(run_count: int | np.ndarray, n_values: int | np.ndarray) -> bool | np.ndarray:
    """Whether the codec tries run symbols, unforced, on a stream of ``n_values`` values in which the run value
    occurs ``run_count`` times: the run value must take a large enough share of the values (elementwise on arrays).

    This is the first of :func:`best_plan`'s gates for run symbols (and so for building the plain code they are
    judged against where a stored stream beats every plain code), the one a layout search can apply to each row
    from its counts; the others depend on the plain plan."""
    return run_count >= _RUNS_MIN_SHARE * n_values


def _run_of(counts1: np.ndarray, base: CodecParams, run_value: int | None) -> tuple[int, int] | None:
    """The run value (``run_value``, or by default the most frequent value of the window) and its count in the plain
    histogram ``counts1``; None when ``run_value`` lies outside the window."""
    window = counts1[: base.value_range]  # (without the escape symbol's count)
    if run_value is None:
        run_value = base.value_min + int(np.argmax(window))
    elif not 0 <= run_value - base.value_min < base.value_range:
        return None
    return run_value, int(window[run_value - base.value_min])


def _runs_plan(histograms: Histograms, counts1, counts2, base: CodecParams, n: int, n_chunks: int,
               plain_plan: StreamPlan | None, forced: bool, narrow: bool, lo: int, hi: int,
               run_value: int | None, to_beat: float = float("inf")) -> StreamPlan | None:
    """Run symbols of the run value (default: the most frequent), if they can pay (or are forced); None when not
    tried, or when none can cost fewer bits than ``to_beat`` (the best other plan).

    ``DEFAULT_RUNS`` prefixes need a window of at most 4095 values (with its escape symbol: ``16 * 4096`` symbols);
    a wider one is narrowed around the run value with escapes for the rest (``narrow``), else the prefixes
    are fewer."""
    run = _run_of(counts1, base, run_value)
    if run is None:
        return None  # the run value does not occur in this stream
    run_value, run_count = run
    if not forced:
        if not may_try_runs(run_count, n) or plain_plan is None:
            return None
        # the entropy bound the plain code could approach: of pairs when known (captures some clustering)
        H = shannon_entropy(counts2) / 2 if counts2 is not None else shannon_entropy(counts1)
        if plain_plan.payload_bits - n * H <= max(_RUNS_MIN_GAIN * plain_plan.payload_bits, _RUNS_MIN_GAIN_BITS):
            return None
    p = base
    if DEFAULT_RUNS * base.base_symbols > MAX_ALPHABET and narrow and hi > lo:
        W = min(MAX_ALPHABET // DEFAULT_RUNS - 1, hi - lo + 1)
        start = max(lo, min(run_value - W // 2, hi + 1 - W))
        p = replace(base, value_min=start, value_range=W, escape_min=lo, escape_range=hi - lo + 1)
    most = MAX_ALPHABET // p.base_symbols
    if most < 2:
        if forced:
            raise EntropyError(
                f"run symbols need a window of at most {MAX_ALPHABET // 2 - 1} values, got {base.value_range}"
            )
        return None
    # longer run prefixes pay on very sparse data (a run of the mean length in few symbols): tried, by exact size,
    # when the mean run between other values reaches them
    mean_run = run_count / max(1, n - run_count)
    plans = []
    for runs in sorted({min(r, most) for r in RUN_PREFIXES if r == DEFAULT_RUNS or mean_run >= r / 4}):
        q = replace(p, runs=runs, run_symbol=run_value - p.value_min)
        counts = histograms(q)
        if counts is not None and (q.escape_range or _cost_floor(counts, q, n_chunks) < min(to_beat, _best_cost(plans))):
            plans.append(plan_from_counts(counts, q, n_chunks))
    return min(plans, key=lambda q: q.cost_bits) if plans else None
