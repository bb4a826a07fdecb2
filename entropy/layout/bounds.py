"""Every way the codec may code the streams of candidate layouts, sized from counts: lower bounds that tell which
layouts cannot be the smallest, and the exact stream where the smallest way is certain.

A layout codes sets of channel rows as streams (:func:`entropy.layout.row_sets.set_stream`): each set in the symbol
mode, with or without row structure and with the run-prefix count whose plan is smallest
(:func:`entropy.codec.modes.best_plan`). :class:`SetBatch` lists these ways for every set of a batch of layouts and
sizes them all at once from the sets' histograms - the sums of their rows' histograms, counted once per tensor
(:mod:`entropy.layout.channel_counts`) - with the codec's own code lengths and table sizes (compiled,
:func:`entropy.layout.kernels.size_sets`): exactly where the code fits the length limit, and where it does not, or
where a mode's histograms are not counted, a floor (the payload of the optimal unlimited code, which no prefix code
of those symbols beats, escapes and raised limits included; or nothing).

* :meth:`SetBatch.floors`: the fewest bytes each set's stream can take in a file - at most the bytes of the stream
  the search would build, and usually equal to them. A layout whose floor is not below the best size found so
  far is not built.
* :meth:`SetBatch.streams`: the stream of a set when its smallest way is certain - exactly sized, strictly smaller
  than every other way the codec may take, and one the codec tries (run symbols only where its gates let them,
  :func:`entropy.codec.modes.runs_may_pay`) - so the search builds it without planning it again; None otherwise.

Codebooks: identical codes are stored once per file, so a set's codebook record enters its floor only when no other
set of the layout can end up with the same code - when no other set has a way whose table has the same alphabet
size and is unknown, or known and the same. Every layout stores one codebook at least (:func:`layout_floor`).
"""

from __future__ import annotations

import numpy as np

from dataclasses import replace

from entropy.codec.codebook import Codebook
from entropy.codec.lengths import MAX_ALPHABET
from entropy.codec.modes import may_try_runs, pairs_tried, run_prefix_table, runs_may_pay
from entropy.codec.params import MAX_STORED_RANGE, CodecParams
from entropy.format import codebook_record_bytes, stream_record_bytes
from entropy.layout.channel_counts import MAX_COUNT_CELLS, TensorCounts, row_histograms, set_histogram

__all__ = ["SetBatch", "layout_floor", "NO_STREAM", "MIN_CODEBOOK_BYTES"]

#: the floor of a set that no mode can code (the layout does not exist)
NO_STREAM = np.iinfo(np.int64).max // 4
#: the smallest codebook record (a one-byte table)
MIN_CODEBOOK_BYTES = codebook_record_bytes(b"\0")
#: most sets whose histograms are counted set by set when their rows' histograms are not kept
_PER_SET_COUNTS = 64
_PLAIN, _PAIRS, _RUNS, _STORED = 0, 1, 2, 3
#: the source of a way that only marks an alphabet (not a way of coding)
_MARK = -2
#: the source of one row's pair code sized from the rows themselves (row_floors)
_ROW_PAIRS = -3
#: the source of a stored stream (no code: its sizes follow from the window, entropy.codec.modes.stored_plan)
_STORED_SRC = -4
#: kinds of ways: sized exactly (a known table); a floor whose table floor holds for the tables of one set of symbols
#: (pair symbols of one row, not counted per row); a floor of any table of its alphabet
_EXACT, _SUPPORT, _ANY = 0, 1, 2
#: columns of the kernel's sizes (entropy.codec.kernels.sizes.SIZE_FIELDS)
_PAY, _TAB, _LONG, _PRES, _FLOOR, _ENT, _TOTAL = range(7)
#: a gate of the codec decided within this many bits is not trusted to a float computed another way
_GATE_MARGIN_BITS = 4


def _bit_length(x: np.ndarray) -> np.ndarray:
    """``int.bit_length`` of each entry of an array of integers in ``[0, 2**53]`` (exact in float64)."""
    return np.frexp(np.asarray(x, np.float64))[1].astype(np.int64)


def layout_floor(floors: np.ndarray, bare: np.ndarray) -> int:
    """Fewest bytes the streams of a layout take together, codebooks included, from its sets'
    :meth:`SetBatch.floors` (every layout stores one codebook at least)."""
    return max(int(floors.sum()), int(bare.sum()) + MIN_CODEBOOK_BYTES)


def _others(key: np.ndarray, sets: np.ndarray, among: np.ndarray) -> np.ndarray:
    """For each entry: whether an entry of ``among`` (a mask) with the same key belongs to another set."""
    out = np.zeros(key.size, dtype=bool)
    if not among.any():
        return out
    uniq, inv = np.unique(key[among], return_inverse=True)
    pos = np.minimum(np.searchsorted(uniq, key), uniq.size - 1)
    found = uniq[pos] == key
    lo = np.full(uniq.size, np.iinfo(np.int64).max)
    hi = np.full(uniq.size, -1)
    np.minimum.at(lo, inv.reshape(-1), sets[among])
    np.maximum.at(hi, inv.reshape(-1), sets[among])
    return found & ((lo[pos] != sets) | (hi[pos] != sets))


class SetBatch:
    """The sets of a batch of layouts of one tensor and every way the codec may code each (module docstring).

    ``layouts``: ``(labels, k)`` per layout: its sets are the channels ``labels == j``, ``j < k``, none empty (a
    batch of one layout whose labels are the channels themselves is one stream per channel). The other arguments
    are :func:`entropy.layout.row_sets.set_stream`'s (``mode_lists``: the symbol modes in the order tried,
    :func:`~entropy.layout.row_sets.group_modes`)."""

    def __init__(self, tc: TensorCounts, layouts: list[tuple[np.ndarray, int]], *, mode_lists: list[tuple[str, ...]],
                 max_code_length: int, chunk_size: int, run_value: int, escapes: bool) -> None:
        self.tc, self.mode_lists, self.run_value, self.escapes = tc, mode_lists, int(run_value), bool(escapes)
        self.L, self.Cc = int(max_code_length), int(chunk_size)
        C, M, T = tc.n_channels, tc.row_length, tc.value_range
        self.Ks = [int(k) for _, k in layouts]
        K = self.K = sum(self.Ks)
        self.layout_of = np.repeat(np.arange(len(layouts)), self.Ks)
        self.set_base = np.concatenate([[0], np.cumsum(self.Ks)])
        self.identity = len(layouts) == 1 and self.Ks[0] == C and np.array_equal(layouts[0][0], np.arange(C))
        if self.identity:  # one stream per channel: the rows' histograms are the sets'
            self.set_rows = np.arange(C)
            sizes = np.ones(C, np.int64)
        else:
            self.set_rows = np.concatenate([np.argsort(np.asarray(lab, np.int64), kind="stable") for lab, _ in layouts])
            sizes = np.concatenate([np.bincount(np.asarray(lab, np.int64), minlength=k) for lab, k in layouts])
        self.set_ptr = np.zeros(K + 1, np.int64)
        np.cumsum(sizes, out=self.set_ptr[1:])
        if self.identity:
            H1 = tc.counts
        else:
            H1 = _set_sums(tc, layouts, self.set_base, K)
        self.H1 = H1  # the value counts of each set
        present = H1 > 0
        self.first = np.argmax(present, axis=1)
        self.R = T - np.argmax(present[:, ::-1], axis=1) - self.first
        self.n = sizes * M
        self.sizes = sizes
        self.rowflag = (sizes > 1) & (M % self.Cc != 0)  # several rows that the chunks would cut differently
        self.chunks_rows = np.where(self.rowflag, sizes * -(-M // self.Cc), -(-self.n // self.Cc))
        self.chunks_flat = -(-self.n // self.Cc)
        self.run_counts = H1[:, self.run_value - tc.value_min] if 0 <= self.run_value - tc.value_min < T \
            else np.zeros(K, np.int64)
        # the ways, as added: (sets, mode, runs, flat, sizes, hashes, alphabet, src, list, kind)
        self._parts: list[tuple] = []
        self._part_counts = None  # (members, set starts, set parts, kept histograms) of _per_part
        self._sources: list = []
        # run symbols that the codec tries only past its gate (runs_may_pay): the entropy of the plain and pair ways
        # is measured with them, for _tried
        self._runs_gated = any("runs" in ms and ms != ("runs",) for ms in mode_lists)
        self._size_all()
        self._arrays = self._collect()

    # -- the ways ----------------------------------------------------------------------------------------------------

    def _params(self, **kw) -> CodecParams:
        return CodecParams(max_code_length=self.L, chunk_size=self.Cc, value_min=0, **kw)

    def _add(self, sets, mode, runs, flat, res, hashes, alphabet, src, li, kind=None) -> None:
        """Record the ways of coding ``sets`` in ``mode`` (``res``: their kernel sizes, or None: not counted;
        ``kind``: :data:`_SUPPORT` for floors whose table floor holds for the tables of one set of symbols, the hash
        of that set in ``hashes``)."""
        if np.size(sets):
            self._parts.append((np.asarray(sets, np.int64), mode, runs, flat, res, hashes,
                                np.broadcast_to(np.asarray(alphabet, np.int64), np.size(sets)), src, li, kind))

    def _collect(self) -> dict[str, np.ndarray]:
        """The ways as arrays (one entry per way), with their index and parameter-block bytes."""
        parts = self._parts
        if not parts:
            return {"set": np.zeros(0, np.int64)}
        sizes = [p[0].size for p in parts]
        rep = (lambda i, dt: np.repeat(np.array([p[i] for p in parts], dtype=dt), sizes))
        a = {"set": np.concatenate([p[0] for p in parts]), "mode": rep(1, np.int64), "runs": rep(2, np.int64),
             "flat": rep(3, bool), "src": rep(7, np.int64), "list": rep(8, np.int64),
             "alphabet": np.concatenate([p[6] for p in parts])}
        none = np.zeros((1, 7), np.int64)
        none[0, _PAY] = -1  # not counted: no exact size, a floor of nothing
        res = np.concatenate([p[4] if p[4] is not None else np.repeat(none, p[0].size, axis=0) for p in parts])
        a["hash"] = np.concatenate([p[5] if p[5] is not None else np.zeros(p[0].size, np.uint64) for p in parts])
        a["exact"] = res[:, _PAY] >= 0
        support = np.repeat(np.array([p[9] == _SUPPORT for p in parts], dtype=bool), sizes)
        a["kind"] = np.where(support, _SUPPORT, np.where(a["exact"], _EXACT, _ANY))
        a["bits"] = np.where(a["exact"], res[:, _PAY], res[:, _FLOOR])
        a["bits"][a["src"] == _MARK] = NO_STREAM
        a["table"] = np.where(a["kind"] != _ANY, res[:, _TAB], 0)
        a["entropy"], a["total"] = res[:, _ENT], res[:, _TOTAL]
        s, pairs, runs = a["set"], a["mode"] == _PAIRS, a["mode"] == _RUNS
        entry1 = self._params(group=1, value_range=1).index_entry_bytes
        entry2 = self._params(group=2, value_range=1).index_entry_bytes if self.Cc % 2 == 0 else entry1
        stored = a["mode"] == _STORED  # (no index: its chunks' sizes follow from their value counts)
        a["index"] = np.where(stored, 0, np.where(a["flat"], self.chunks_flat[s], self.chunks_rows[s])
                              * np.where(pairs, entry2, entry1))
        base = self._params(group=1, value_range=2)
        rows_extra = self._params(group=1, value_range=2, row_length=1).block_bytes - base.block_bytes
        runs_extra = self._params(group=1, value_range=2, runs=2).block_bytes - base.block_bytes
        rows = self.rowflag[s] & ~a["flat"] & ~stored
        a["block"] = np.where(stored, getattr(self, "_stored_block", 0),
                              base.block_bytes + runs_extra * runs + rows_extra * rows)
        return a

    def _measure(self, src: int, sets: np.ndarray, keep: bool = False, entropy: bool = False):
        """Kernel sizes of the ways of source ``src`` for ``sets`` (and their code lengths; their entropy only with
        ``entropy``)."""
        from entropy.layout.kernels import size_sets  # numba: imported on first use only
        from entropy.codec.kernels.sizes import SIZE_FIELDS, size_rows

        kind, mode, runs, data = self._sources[src]
        if kind == "rows":  # the rows' histograms in the tensor's window: summed and cut by the kernel
            per_row, pos = data
            if per_row is None:
                per_row, pos = self._per_row(mode, runs)
                self._sources[src] = (kind, mode, runs, (per_row, pos))
            return size_sets(per_row, self.set_ptr, pos[self.set_rows], sets, mode, self.tc.value_range, self.first,
                             self.R, runs, self.L, keep_lengths=keep, entropy=entropy)
        if kind == "plain":  # the sets' value counts (kept whole): cut to their windows by offsets
            got = size_rows(self.H1[sets], self.R[sets], self.L, self.first[sets], keep_lengths=keep)
            res = np.stack([got[f] for f in SIZE_FIELDS], axis=1)
            return res, got["hash"], got.get("lengths")
        if kind == "parts":
            per_part, starts, set_parts = data
            return size_sets(per_part, starts, set_parts, sets, mode, self.tc.value_range, self.first, self.R, runs,
                             self.L, keep_lengths=keep, entropy=entropy)
        hists, index = data  # each set's histogram in its window, counted set by set
        got = size_rows(hists[index[sets]], self._alphabet(mode, runs, sets), self.L, keep_lengths=keep)
        return np.stack([got[f] for f in SIZE_FIELDS], axis=1), got["hash"], got.get("lengths")

    def _alphabet(self, mode: int, runs: int, sets: np.ndarray) -> np.ndarray:
        R = self.R[sets]
        return R if mode == _PLAIN else (R * R if mode == _PAIRS else runs * R)

    def _key(self, mode: int, runs: int) -> CodecParams:
        if mode == _PLAIN:
            return self.tc.window()
        if mode == _PAIRS:
            return self.tc.window(group=2, chunk_size=self.Cc)
        return self.tc.window(chunk_size=self.Cc, runs=runs, run_symbol=self.run_value - self.tc.value_min)

    def _per_row(self, mode: int, runs: int, sets: np.ndarray | None = None):
        """The rows' histograms of a mode (only those of ``sets``' rows are counted) and each row's position in
        them; (None, None) when not counted per row."""
        C = self.tc.n_channels
        rows = None
        if sets is not None:
            mine = np.zeros(C, dtype=bool)
            mine[self.set_rows[np.repeat(np.isin(np.arange(self.K), sets), np.diff(self.set_ptr))]] = True
            rows = None if mine.all() else np.flatnonzero(mine)
        h = row_histograms(self.tc, self._key(mode, runs), rows=rows)
        if h is None:
            return None, None
        if rows is None:
            return h, np.arange(C)
        pos = np.zeros(C, np.int64)
        pos[rows] = np.arange(rows.size)
        return h, pos

    def _per_part(self, mode: int, runs: int, sets: np.ndarray):
        """Histograms in the tensor's window of the parts of the batch's sets (the channels that share a set in
        every layout of the batch: each set is a union of parts), for a mode not kept per row: the parts of
        ``sets`` counted, each once, in one pass over their rows. Returns (per-part histograms, and each set's
        parts as ``(starts, parts)``), or None for sets of one stream per channel (not parted: their rows are sized
        by :meth:`_floor_ways`) or too many parts x symbols."""
        parted = np.array([k != self.tc.n_channels for k in self.Ks])  # (one stream per channel: not parted)
        if self.identity or not parted[self.layout_of[sets]].all():
            return None
        if self._part_counts is None:
            C = self.tc.n_channels
            set_of_row = np.repeat(np.arange(self.K), np.diff(self.set_ptr))
            key = np.zeros(C, np.int64)  # the sets of a channel in every layout, as one number (mixed radix)
            for li, k in enumerate(self.Ks):
                if not parted[li]:  # a layout of one channel per stream: its sets are sized from the rows themselves
                    continue
                mine = (set_of_row >= self.set_base[li]) & (set_of_row < self.set_base[li + 1])
                part = np.zeros(C, np.int64)
                part[self.set_rows[mine]] = set_of_row[mine] - self.set_base[li]
                key = key * k + part
                _, key = np.unique(key, return_inverse=True)  # (renumbered: no overflow however many layouts)
            part_of = key.reshape(-1)
            set_parts = [np.unique(part_of[self.set_rows[self.set_ptr[s]: self.set_ptr[s + 1]]]) for s in range(self.K)]
            starts = np.zeros(self.K + 1, np.int64)
            np.cumsum([p.size for p in set_parts], out=starts[1:])
            order = np.argsort(part_of, kind="stable")
            members = np.split(order, np.cumsum(np.bincount(part_of))[:-1])
            self._part_counts = (members, starts, np.concatenate(set_parts), {})
        members, starts, set_parts, kept = self._part_counts
        key = self._key(mode, runs)
        if len(members) * key.alphabet_size > MAX_COUNT_CELLS:
            return None
        if key not in kept:
            kept[key] = (np.zeros((len(members), key.alphabet_size), np.int64), np.zeros(len(members), bool))
        hist, done = kept[key]
        need = np.unique(np.concatenate([set_parts[starts[s]: starts[s + 1]] for s in sets]))
        need = need[~done[need]]
        if need.size:
            from entropy.codec.kernels import count_groups  # numba: imported on first use only

            M = self.tc.row_length
            rows = np.concatenate([members[p] for p in need])
            dest = np.repeat(np.arange(need.size), [members[p].size for p in need])
            got, _ = count_groups(self.tc.rows, key if M <= 1 else replace(key, row_length=M), rows, dest, need.size)
            hist[need] = got  # (each row its own stream: its chunks, pairs and runs start at its first value)
            done[need] = True
        return hist, starts, set_parts

    def _source(self, mode: int, runs: int, sets: np.ndarray, flat: bool = False) -> int | None:
        """A source of the histograms of ``sets`` in a mode: the rows' (kept per row), or each set's counted set by
        set; None when neither."""
        T = self.tc.value_range
        if mode == _PLAIN:  # plain symbols do not depend on the chunking: with or without row structure
            self._sources.append(("plain", mode, runs, None))
            return len(self._sources) - 1
        wide = (T * T if mode == _PAIRS else runs * T) > MAX_ALPHABET
        if not flat and not wide:
            per_row, pos = self._per_row(mode, runs, sets)
            if per_row is not None:
                self._sources.append(("rows", mode, runs, (per_row, pos)))
                return len(self._sources) - 1
            got = self._per_part(mode, runs, sets)
            if got is not None:
                self._sources.append(("parts", mode, runs, got))
                return len(self._sources) - 1
        if sets.size > _PER_SET_COUNTS:
            return None
        M, vmin = self.tc.row_length, self.tc.value_min
        hs = []
        for s in sets:
            s = int(s)
            lo = vmin + int(self.first[s])
            p = CodecParams(group=2 if mode == _PAIRS else 1, max_code_length=self.L, chunk_size=self.Cc,
                            value_min=lo, value_range=int(self.R[s]), runs=runs if mode == _RUNS else 0,
                            run_symbol=self.run_value - lo if mode == _RUNS else 0,
                            row_length=M if self.rowflag[s] and not flat else 0)
            h = set_histogram(self.tc, np.sort(self.set_rows[self.set_ptr[s]: self.set_ptr[s + 1]]), p)
            if h is None:
                return None
            hs.append(h)
        width = max(h.size for h in hs)
        hists = np.zeros((self.K, width), np.int64)
        index = np.zeros(self.K, np.int64)
        for i, (s, h) in enumerate(zip(sets, hs)):
            hists[i, : h.size] = h
            index[s] = i
        self._sources.append(("sets", mode, runs, (hists, index)))
        return len(self._sources) - 1

    def _way(self, mode: int, runs: int, sets: np.ndarray, li: int, flat_too: bool = True) -> np.ndarray:
        """Size and record the ways of ``sets`` in a mode: with row structure (where it applies) and, for plain
        symbols and pairs, without (sets of several rows whose chunks the rows would cut differently). Returns
        whether each set's way is exactly sized. Sets of one row and of several are sized apart (their histograms
        come from different places where the rows' are not kept)."""
        if not sets.size:
            return np.zeros(0, dtype=bool)
        one = self.sizes[sets] == 1
        kept = mode == _PLAIN or self.tc.n_channels * self._key(mode, runs).alphabet_size <= MAX_COUNT_CELLS
        if not kept and one.any() and not one.all():
            exact = np.zeros(sets.size, dtype=bool)
            exact[one] = self._way(mode, runs, sets[one], li, flat_too)
            exact[~one] = self._way(mode, runs, sets[~one], li, flat_too)
            return exact
        A = self._alphabet(mode, runs, sets)
        src = self._source(mode, runs, sets)
        exact = np.zeros(sets.size, dtype=bool)
        if src is None:
            exact = self._floor_ways(mode, runs, sets, A, li)
        else:
            res, hashes, _ = self._measure(src, sets, entropy=mode != _RUNS and self._runs_gated)
            exact = res[:, _PAY] >= 0
            self._add_tried(sets, mode, runs, False, res, hashes, A, src, li)
        fl = sets[self.rowflag[sets]] if flat_too else sets[:0]
        if not fl.size:
            return exact
        same = mode == _PLAIN or self.tc.row_length % 2 == 0  # the same symbols: rows of whole pairs
        if same and src is not None:
            pick = self.rowflag[sets]
            self._add_tried(fl, mode, runs, True, res[pick], hashes[pick], A[pick], src, li)
            return exact
        fsrc = self._source(mode, runs, fl, flat=True)
        if fsrc is None:
            self._add(fl, mode, runs, True, None, None, self._alphabet(mode, runs, fl), -1, li)
        else:
            res, hashes, _ = self._measure(fsrc, fl)
            self._add_tried(fl, mode, runs, True, res, hashes, self._alphabet(mode, runs, fl), fsrc, li)
        return exact

    def _add_tried(self, sets, mode, runs, flat, res, hashes, A, src, li) -> None:
        """:meth:`_add` of the sized ways the codec tries: not pairs whose code needs a raised limit
        (:func:`~entropy.codec.modes.pairs_tried`)."""
        if mode == _PAIRS:
            tried = pairs_tried(res[:, _PRES], self.L, self.mode_lists[li])
            sets, res, hashes, A = sets[tried], res[tried], hashes[tried], A[tried]
        self._add(sets, mode, runs, flat, res, hashes, A, src, li)

    def _floor_ways(self, mode: int, runs: int, sets: np.ndarray, A: np.ndarray, li: int) -> np.ndarray:
        """Ways of sets of one row whose histograms are not counted per row, from one pass over those rows
        (:func:`entropy.layout.kernels.row_floors`): each row's pair code sized exactly (floors where it does not
        fit the limit), floors of run symbols; nothing for sets of several rows. Returns whether each way is exact."""
        one = self.sizes[sets] == 1
        if mode == _PLAIN or not one.any():
            self._add(sets, mode, runs, False, None, None, A, -1, li)
            return np.zeros(sets.size, dtype=bool)
        from entropy.layout.kernels import row_floors  # numba: imported on first use only

        self._add(sets[~one], mode, runs, False, None, None, A[~one], -1, li)
        sets, A = sets[one], A[one]
        rows = self.set_rows[self.set_ptr[sets]]  # the row of each set
        want = np.zeros(self.tc.n_channels, dtype=bool)
        want[rows] = True
        first = np.zeros(self.tc.n_channels, np.int64)
        R = np.ones(self.tc.n_channels, np.int64)
        first[rows], R[rows] = self.first[sets], self.R[sets]
        no = np.zeros(self.tc.n_channels, dtype=bool)
        f = row_floors(self.tc.rows, self.tc.value_min, self.tc.counts_of(None) if self.identity else
                       self._row_counts(rows), first, R, self.run_value - self.tc.value_min,
                       want if mode == _PAIRS else no, want if mode == _RUNS else no, self.L)
        res = np.zeros((sets.size, 7), np.int64)
        res[:, _PAY] = -1
        exact = np.zeros(one.size, dtype=bool)
        if mode == _PAIRS:
            got = f["pair_longest"][rows] >= 0
            if self.mode_lists[li] != ("pairs",):  # (no code of the limit: the codec does not try these pairs)
                sets, A, rows, res, one[one] = sets[got], A[got], rows[got], res[got], got
                got = got[got]
            res[:, _FLOOR], res[:, _TAB], res[:, _LONG] = f["pair_bits"][rows], f["pair_table"][rows], \
                f["pair_longest"][rows]
            res[got, _PAY] = res[got, _FLOOR]
            # (a table of one set of pair symbols: its hash says which occur, not their lengths)
            self._add(sets, mode, runs, False, res, f["pair_sig"][rows], A, _ROW_PAIRS, li, kind=_SUPPORT)
            exact[one] = got
            return exact
        res[:, _FLOOR] = f["runs_bits"][rows]
        self._add(sets, mode, runs, False, res, None, A, -1, li)
        return exact

    def _row_counts(self, rows: np.ndarray) -> np.ndarray:
        """Value counts ``[C, T]`` with the rows ``rows`` filled (the others zero), for
        :func:`~entropy.layout.kernels.row_floors`."""
        out = np.zeros((self.tc.n_channels, self.tc.value_range), np.int64)
        out[rows] = self.tc.counts_of(rows)
        return out

    def _stored_plan(self, s: int):
        """The stored stream of set ``s`` (the codec's ``entropy.codec.modes.stored_plan`` of its window)."""
        from entropy.codec.modes import stored_plan

        lo = self.tc.value_min + int(self.first[s])
        return stored_plan(CodecParams(group=1, max_code_length=self.L, chunk_size=self.Cc, value_min=lo,
                                       value_range=int(self.R[s])), int(self.n[s]))

    def _stored_ways(self, sets: np.ndarray, li: int) -> np.ndarray:
        """The stored streams of ``sets`` (where the codec's modes hold them): the values in the bits of the set's
        window, no code (every stored stream shares the empty codebook), no index. Returns the sets that have one."""
        from entropy.codec.kernels.sizes import lengths_hash  # numba: imported on first use only

        R = self.R[sets]
        sets = sets[(R >= 2) & (R <= MAX_STORED_RANGE) & (self.n[sets] > 0)]  # (stored_plan: None outside)
        if not sets.size:
            return sets
        plan = self._stored_plan(int(sets[0]))  # the parts every stored stream shares: its code, its block
        bits = _bit_length(self.R[sets] - 1)  # stored_bits: those of value_range - 1
        res = np.zeros((sets.size, 7), np.int64)
        res[:, _PAY] = res[:, _FLOOR] = self.n[sets] * bits
        res[:, _TAB] = plan.codebook_bits // 8
        self._stored_block = plan.params.block_bytes
        lens = plan.codebook.lengths
        self._add(sets, _STORED, 0, False, res, np.full(sets.size, lengths_hash(lens, lens.size), np.uint64),
                  np.ones(sets.size), _STORED_SRC, li)
        return sets

    def _size_all(self) -> None:
        K, Cc = self.K, self.Cc
        sure = np.zeros(K, dtype=bool)  # sets a mode list before surely codes
        for li, ms in enumerate(self.mode_lists):
            todo = np.flatnonzero(~sure)
            if not todo.size:
                break
            if "stored" in ms:  # (the codec tries the stored stream first: a code that is not smaller loses to it)
                sure[self._stored_ways(todo, li)] = True
            if "plain" in ms:
                exact = self._way(_PLAIN, 0, todo, li)
                if self.escapes:  # a code with rare values escaped: the escape symbol widens the window
                    esc = todo[~exact]
                    self._mark(esc, self.R[esc] + 1, li)
                sure[todo] = True
            if "pairs" in ms and Cc % 2 == 0:
                ok = (self.R[todo] ** 2 <= MAX_ALPHABET) & ((self.n[todo] >= 2) | (ms == ("pairs",)))
                if ms == ("pairs",):
                    sure[todo[ok]] = True
                self._way(_PAIRS, 0, todo[ok], li)
            if "runs" in ms:
                b = self.run_value - self.tc.value_min - self.first[todo]
                forced = ms == ("runs",)
                R = self.R[todo]
                ok = (self.n[todo] > 0) & (b >= 0) & (b < R) & (MAX_ALPHABET // np.maximum(R, 1) >= 2)
                if not forced:
                    ok &= may_try_runs(self.run_counts[todo], self.n[todo])
                sel = todo[ok]
                if forced:
                    sure[sel] = True
                tried, counts = run_prefix_table(self.run_counts[sel], self.n[sel], self.R[sel])
                for r in sorted({int(c) for c in counts[tried]}):
                    self._way(_RUNS, r, sel[(tried & (counts == r)).any(axis=0)], li, flat_too=False)
        self.sure = sure

    def _mark(self, sets: np.ndarray, alphabet: np.ndarray, li: int) -> None:
        """Mark alphabets whose tables a set may have without them being a way of their own (escapes)."""
        self._add(sets, _PLAIN, 0, False, None, None, alphabet, _MARK, li)

    # -- results -----------------------------------------------------------------------------------------------------

    def _costs(self) -> tuple[np.ndarray, np.ndarray]:
        """Per way: bytes in a file without the codebook record, and the codebook record counted in the floor."""
        a = self._arrays
        if not a["set"].size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        record = a["block"] + (stream_record_bytes(self._params(group=1, value_range=1))
                               - self._params(group=1, value_range=1).block_bytes)
        cost = np.where(a["bits"] >= NO_STREAM, NO_STREAM, -(-a["bits"] // 8) + a["index"] + record)
        kind = a["kind"]
        layout = self.layout_of[a["set"]].astype(np.uint64)
        by_alpha = (layout << np.uint64(32)) | a["alphabet"].astype(np.uint64)
        by_table = (a["hash"] ^ (by_alpha * np.uint64(0x9E3779B97F4A7C15))) + kind.astype(np.uint64)
        exact, support = kind == _EXACT, kind == _SUPPORT
        # another set's way of the same alphabet: any table; a table of the other kind (not comparable); the same
        clash = (_others(by_alpha, a["set"], kind == _ANY) | (exact & _others(by_alpha, a["set"], support))
                 | (support & _others(by_alpha, a["set"], exact)) | _others(by_table, a["set"], kind != _ANY))
        return cost, np.where((kind != _ANY) & ~clash, codebook_record_bytes(b"") + a["table"], 0)

    def floors(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per layout, two int64 arrays of its ``k`` sets (:data:`NO_STREAM` for a set no mode can code): ``floors``,
        the fewest bytes of the set's stream - payload, chunk index and stream record, and its codebook record where
        no other set of the layout can share it - and ``bare``, the same without any codebook record."""
        cost, record = self._costs()
        s = self._arrays["set"]
        floors = np.full(self.K, NO_STREAM, dtype=np.int64)
        np.minimum.at(floors, s, np.minimum(cost + record, NO_STREAM))
        bare = np.full(self.K, NO_STREAM, dtype=np.int64)
        np.minimum.at(bare, s, cost)
        cut = self.set_base[1:-1]
        return list(zip(np.split(floors, cut), np.split(bare, cut)))

    def streams(self, layout: int) -> list[tuple[CodecParams, Codebook, int] | None]:
        """For each set of a layout: its stream's (params, codebook, payload bits) when the smallest way is certain
        (module docstring), else None (the set is then planned by :func:`~entropy.layout.row_sets.set_stream`)."""
        a = self._arrays
        lo, hi = int(self.set_base[layout]), int(self.set_base[layout + 1])
        out: list = [None] * (hi - lo)
        if not a["set"].size:
            return out
        idx = np.flatnonzero((a["set"] >= lo) & (a["set"] < hi) & (a["bits"] < NO_STREAM))
        if not idx.size:
            return out
        exact, sets = a["exact"][idx], a["set"][idx]
        # best_plan's measure: payload, codebook, index and parameter block (a floor for a way not sized exactly)
        cost_bits = a["bits"][idx] + 8 * (np.maximum(a["table"][idx], 1) + a["index"][idx] + a["block"][idx])
        order = np.lexsort((cost_bits, sets))
        so, co = sets[order], cost_bits[order]
        smallest = np.r_[True, so[1:] != so[:-1]]
        tie = np.r_[(so[1:] == so[:-1]) & (co[1:] <= co[:-1]), False]  # the next way of the set costs no more
        w = idx[order[smallest & ~tie]]
        lists = a["list"][idx]
        lmin = np.full(hi, np.iinfo(np.int64).max)
        lmax = np.full(hi, -1)
        np.minimum.at(lmin, sets, lists)
        np.maximum.at(lmax, sets, lists)
        ws = a["set"][w]
        ok = a["exact"][w] & ((a["src"][w] >= 0) | np.isin(a["src"][w], (_ROW_PAIRS, _STORED_SRC))) & (
            lmin[ws] == lmax[ws])
        w = w[ok]
        w = [int(x) for x in w[self._tried(w)]]
        by_src: dict[int, list[int]] = {}
        for x in w:
            by_src.setdefault(int(a["src"][x]), []).append(x)
        M, vmin = self.tc.row_length, self.tc.value_min
        for x in by_src.pop(_STORED_SRC, []):
            s = int(a["set"][x])
            plan = self._stored_plan(s)
            out[s - lo] = (plan.params, plan.codebook, plan.payload_bits)
        for src, ws in by_src.items():
            ws = sorted(ws, key=lambda x: int(a["set"][x]))
            res, _, lens = (self._row_pairs(a["set"][ws]) if src == _ROW_PAIRS else
                            self._measure(src, a["set"][ws], keep=True))
            for i, x in enumerate(ws):
                s = int(a["set"][x])
                if res[i, _PAY] != a["bits"][x]:  # (sized twice the same way: never differs)
                    continue
                mode, runs, lo_v = int(a["mode"][x]), int(a["runs"][x]), vmin + int(self.first[s])
                A = int(a["alphabet"][x])
                params = CodecParams(group=2 if mode == _PAIRS else 1, max_code_length=self.L, chunk_size=self.Cc,
                                     value_min=lo_v, value_range=int(self.R[s]), runs=runs,
                                     run_symbol=self.run_value - lo_v if mode == _RUNS else 0,
                                     row_length=M if self.rowflag[s] and not a["flat"][x] else 0)
                cb = Codebook._built(lens[i, :A].copy(), int(res[i, _LONG]), int(res[i, _TAB]))
                out[s - lo] = (params, cb, int(res[i, _PAY]))
        return out

    def _row_pairs(self, sets: np.ndarray):
        """Sizes and code lengths of the pair codes of one-row sets (rows whose pairs are not counted per row),
        each row's pairs counted again, in its own window (what :func:`_measure` gives for other sources)."""
        from entropy.codec.kernels.sizes import SIZE_FIELDS, size_rows

        vmin = self.tc.value_min
        hs = [set_histogram(self.tc, np.array([int(s)]), CodecParams(
            group=2, max_code_length=self.L, chunk_size=self.Cc, value_min=vmin + int(self.first[s]),
            value_range=int(self.R[s]))) for s in sets]
        A = np.array([h.size for h in hs], np.int64)
        h = np.zeros((len(hs), int(A.max())), np.int64)
        for i, x in enumerate(hs):
            h[i, : x.size] = x
        got = size_rows(h, A, self.L, keep_lengths=True)
        return np.stack([got[f] for f in SIZE_FIELDS], axis=1), got["hash"], got["lengths"]

    def _tried(self, ws: np.ndarray) -> np.ndarray:
        """Whether the codec tries each way of ``ws`` (one way per set): plain symbols and pairs always (where they
        are a way); run symbols where the plain code of the rows spends measurably more than the entropy bound (the
        codec's gate, :func:`~entropy.codec.modes.runs_may_pay`), decided here with a margin."""
        a = self._arrays
        ok = np.ones(ws.size, dtype=bool)
        forced = np.array([ms == ("runs",) for ms in self.mode_lists])
        gated = np.flatnonzero((a["mode"][ws] == _RUNS) & ~forced[a["list"][ws]])
        if not gated.size:
            return ok
        # each set's first plain way sized exactly, and its first pair way (rows kept: not flat; a way at all)
        usable = ~a["flat"] & (a["bits"] < NO_STREAM)
        none = np.iinfo(np.int64).max
        first_plain = np.full(self.K, none)
        first_pairs = np.full(self.K, none)
        at = np.flatnonzero(usable & (a["mode"] == _PLAIN) & a["exact"])
        np.minimum.at(first_plain, a["set"][at], at)
        at = np.flatnonzero(usable & (a["mode"] == _PAIRS))
        np.minimum.at(first_pairs, a["set"][at], at)
        for i in gated:
            s = int(a["set"][ws[i]])
            plain, pairs = int(first_plain[s]), int(first_pairs[s])
            if plain == none:
                ok[i] = False
                continue
            n = int(self.n[s])
            bound = pairs if pairs != none else plain  # the entropy the gate compares with
            ent, total = int(a["entropy"][bound]), int(a["total"][bound])  # (measured with the way: _runs_gated)
            if a["src"][bound] < 0 or not total:
                ok[i] = False
                continue
            H = ent / total / (2 if pairs != none else 1)
            pay = int(a["bits"][plain])
            slack = (_GATE_MARGIN_BITS + n / total) / max(n, 1)  # (the entropy is rounded down to a bit)
            ok[i] = runs_may_pay(pay, n, H + slack) and runs_may_pay(pay, n, max(H - slack, 0.0))
        return ok


def _set_sums(tc: TensorCounts, layouts: list[tuple[np.ndarray, int]], set_base: np.ndarray, K: int) -> np.ndarray:
    """The value counts of every set of ``layouts`` (int64 ``[K, value_range]``): the rows summed once into the
    parts that share a set in every layout, the parts then into the sets - not each row once per layout - where
    the parts are fewer than half the rows."""
    from entropy.layout.kernels import csr_group_sums  # numba: imported on first use only

    C, T = tc.n_channels, tc.value_range
    labels = [np.asarray(lab, np.int64) for lab, _ in layouts]

    def by_rows() -> np.ndarray:
        sets = np.concatenate([set_base[li] + lab for li, lab in enumerate(labels)])
        return csr_group_sums(tc.nonzero(), T, np.tile(np.arange(C), len(labels)), sets, K)

    if len(labels) == 1 or C < 256:  # (few rows, or one layout: nothing to share)
        return by_rows()
    key = np.zeros(C, np.int64)  # the sets of a channel in every layout, as one number (mixed radix, renumbered)
    for lab, (_, k) in zip(labels, layouts):
        _, key = np.unique(key * k + lab, return_inverse=True)
        key = key.reshape(-1)
        if 2 * (int(key.max()) + 1) > C:  # (as many parts as rows, nearly: sum the rows into every set)
            return by_rows()
    P = int(key.max()) + 1
    per_part = csr_group_sums(tc.nonzero(), T, np.arange(C), key, P)
    first = np.zeros(P, np.int64)
    first[key[::-1]] = np.arange(C)[::-1]  # (a row of each part: its sets are the part's)
    out = np.zeros((K, T), np.int64)
    for li, lab in enumerate(labels):
        np.add.at(out, set_base[li] + lab[first], per_part)
    return out
