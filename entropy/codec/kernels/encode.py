"""Canonical-Huffman encoders: chunked MSB-first payload and per-chunk bit counts, through the one bit writer of
:mod:`entropy.codec.kernels.bitwriter` (plain values, pairs, fused pairs of values, run/escape symbols; stored streams
in :mod:`entropy.codec.kernels.stored`)."""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from entropy.errors import StreamError
from entropy.codec.kernels.bitwriter import (
    _CODE, _HOT_ROOM, _LEN, _SPARE, _U56, _add, _add4, _entry, _flush, _hot_end, entries,
)
from entropy.codec.kernels.common import _load_be64, _load_le16, _next_mark, _store_be64, _sym, _unsigned, run_marks, run_raw, spec
from entropy.codec.threads import group_bounds, run_groups

# ---- encoders ------------------------------------------------------------------------------------------------------
# Chunks [c0, c1), chunk c = values [vstart[c], vstart[c + 1]); (acc, nacc, p, prev_bits) carry the bit writer from
# the previous call and come back flushed (nacc < 8). A symbol's table index is ``min((v - vmin) & mask, R)``: the
# tables hold R + 1 entries, the last one empty, so a value outside the window (an encoder fault: the codec checks
# every value first) cannot index outside them. uint8 values come with vmin 0, mask 255, R 256 and a table indexed
# by the raw byte (no arithmetic left).


@numba.njit(cache=True, nogil=True, inline="always")
def _idx(v, vmin, mask, R, raw):
    if raw is None:  # (compile time) 1-byte values: the table is indexed by the raw byte
        return np.uint64(v)
    return min(np.uint64(_sym(v, vmin, mask)), R)


@numba.njit(cache=True, nogil=True)
def _encode_plain(values, vmin, mask, R, raw, ent, four, step_bytes, vstart, c0, c1, out, chunk_bits, acc, nacc, p,
                  prev_bits):
    """One code per value; ``four`` None: codes of at most 12 bits, 4 per flush, else False: 2 per flush (codes of
    up to 24 bits). ``raw``: see :func:`_idx`; ``step_bytes``: see :func:`_hot_end` (4 values)."""
    cap = np.int64(out.size - 8)
    hot = np.int64(out.size - _HOT_ROOM)
    uR = np.uint64(R)
    for c in range(c0, c1):
        i = np.uint64(vstart[c])
        i1 = np.uint64(vstart[c + 1])
        end = _hot_end(i, i1, p, hot, 4, step_bytes)
        while i + np.uint64(4) <= end:
            e0 = ent[_idx(values[i], vmin, mask, uR, raw)]
            e1 = ent[_idx(values[i + np.uint64(1)], vmin, mask, uR, raw)]
            e2 = ent[_idx(values[i + np.uint64(2)], vmin, mask, uR, raw)]
            e3 = ent[_idx(values[i + np.uint64(3)], vmin, mask, uR, raw)]
            acc, nacc, p = _add4(out, acc, nacc, p, e0, e1, e2, e3, four)
            i += np.uint64(4)
        while i < i1:
            acc, nacc = _add(acc, nacc, ent[_idx(values[i], vmin, mask, uR, raw)])
            acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
            i += np.uint64(1)
        bits = p * 8 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, p, prev_bits


@numba.njit(cache=True, nogil=True, inline="always")
def _pair_idx(values, i, vmin, mask, R1, raw):
    """Table index of the values ``i, i + 1``: their 2 raw bytes (``raw`` is None: uint8 values, a 65536-entry
    table indexed by the little-endian pair), else ``a * (R + 1) + b`` of their clamped base symbols."""
    if raw is None:  # (compile time)
        return _load_le16(values, i)
    a = min(np.uint64(_sym(values[i], vmin, mask)), R1 - np.uint64(1))
    b = min(np.uint64(_sym(values[i + np.uint64(1)], vmin, mask)), R1 - np.uint64(1))
    return a * R1 + b


@numba.njit(cache=True, nogil=True)
def _encode_pairs(values, vmin, mask, R, raw, ent2, four, step_bytes, pad, ent1, vstart, c0, c1, out, chunk_bits,
                  acc, nacc, p, prev_bits):
    """Two values per lookup in the pair table ``ent2`` (``four`` None: pair codes of at most 12 bits, 4 per flush,
    else False: 2, of up to 24 bits). Pair symbols (group 2) and group-1 values coded through the table of their
    codes' concatenations alike; a chunk's odd last value is the pair (value, base symbol 0) with ``pad`` (pair
    symbols), else its own code in ``ent1`` (R + 1 entries). Indexing: :func:`_pair_idx` (``raw``: None or
    False); ``step_bytes``: see :func:`_hot_end` (8 values)."""
    cap = np.int64(out.size - 8)
    hot = np.int64(out.size - _HOT_ROOM)
    uR = np.uint64(R)
    R1 = uR + np.uint64(1)
    for c in range(c0, c1):
        i = np.uint64(vstart[c])
        i1 = np.uint64(vstart[c + 1])
        end = _hot_end(i, i1, p, hot, 8, step_bytes)
        while i + np.uint64(8) <= end:
            e0 = ent2[_pair_idx(values, i, vmin, mask, R1, raw)]
            e1 = ent2[_pair_idx(values, i + np.uint64(2), vmin, mask, R1, raw)]
            e2 = ent2[_pair_idx(values, i + np.uint64(4), vmin, mask, R1, raw)]
            e3 = ent2[_pair_idx(values, i + np.uint64(6), vmin, mask, R1, raw)]
            acc, nacc, p = _add4(out, acc, nacc, p, e0, e1, e2, e3, four)
            i += np.uint64(8)
        while i + np.uint64(2) <= i1:
            acc, nacc = _add(acc, nacc, ent2[_pair_idx(values, i, vmin, mask, R1, raw)])
            acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
            i += np.uint64(2)
        if i < i1:  # an odd count
            s = min(np.uint64(_sym(values[i], vmin, mask)), uR)
            if pad:  # the pair (value, base symbol 0)
                if raw is None:
                    e = ent2[np.uint64(values[i]) | (np.uint64(vmin & 0xFF) << np.uint64(8))]
                else:
                    e = ent2[s * R1]
            else:
                e = ent1[s]
            acc, nacc = _add(acc, nacc, e)
            acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
        bits = p * 8 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, p, prev_bits


@numba.njit(cache=True, nogil=True)
def _encode_gen(values, vmin, mask, R, V, esc, emin, erange, E, runs, run_b, C, rv, words, ent, vstart,
                c0, c1, out, chunk_bits, acc, nacc, p, prev_bits):
    """Run/escape symbols (see :mod:`entropy.codec.kernels`), chunks [c0, c1); ``ent`` holds the entries of the
    symbols (0 = no code). Carried state as for the other encoders.

    Runs of the run value ``rv`` (as stored; ``words`` = :func:`run_marks`) are cut greedily: ``runs`` of them make the
    symbol (runs - 1, run value); the rest joins the next value as (r, value), or ends the chunk as (r - 1, run value).
    Values outside the window, and symbols without a code, are escaped (needs ``esc``; the codec guarantees it).
    """
    cap = np.int64(out.size - 8)
    uR = np.uint64(R)
    zrl = (runs - 1) * V + run_b
    Eb = max(E, 1)  # (no escapes: E = 0, and no raw bits are ever written)
    rv_raw = _entry(np.uint64(_sym(rv, emin, mask)) if esc != 0 else np.uint64(0), Eb)
    for c in range(c0, c1):
        i0 = vstart[c]
        i1 = vstart[c + 1]
        i = i0
        while i < i1:
            z = 0
            if runs > 0:
                j = _next_mark(words, i, i1)
                z = j - i
                while z >= runs:
                    acc, nacc, p = _run_symbol(out, cap, ent, zrl, V, R, rv_raw, acc, nacc, p)
                    z -= runs
                if j == i1:
                    if z > 0:
                        acc, nacc, p = _run_symbol(out, cap, ent, (z - 1) * V + run_b, V, R, rv_raw, acc, nacc, p)
                    break
                i = j
            b = np.uint64(_sym(values[i], vmin, mask))
            e = np.uint64(0)
            if b < uR:
                e = ent[np.uint64(z * V) + b]
            if e == 0:  # outside the window, or no code: the escape symbol of its run prefix, then the value raw
                acc, nacc = _add(acc, nacc, ent[z * V + R])
                acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
                e = _entry(np.uint64(_sym(values[i], emin, mask)), Eb)
            acc, nacc = _add(acc, nacc, e)
            acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
            i += 1
        bits = p * 8 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, p, prev_bits


@numba.njit(cache=True, nogil=True, inline="always")
def _run_symbol(out, cap, ent, s, V, R, rv_raw, acc, nacc, p):
    """Write the run symbol ``s`` (run values only): its code, or its prefix's escape and the run value raw."""
    e = ent[s]
    if e == 0:
        acc, nacc = _add(acc, nacc, ent[(s // V) * V + R])
        acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
        e = rv_raw
    acc, nacc = _add(acc, nacc, e)
    return _flush(out, min(p, cap), acc, nacc, p)


@numba.njit(cache=True, nogil=True)
def _append(out, acc, nacc, p, src, nbits):
    """Append the first ``nbits`` bits of ``src`` (a payload as the encoders write it, with its spare bytes) to the
    bit writer (acc, nacc < 8, p) of ``out``: a group of chunks coded on its own, spliced in after the groups before
    it. Whole bytes go 7 at a time (one load, one shift, one store), or as one copy when ``nacc`` is 0."""
    cap = np.int64(out.size - 8)
    nbytes = nbits >> 3
    if nacc == 0:
        room = max(0, min(nbytes, cap - p))  # an encoder fault cannot write past the buffer (the count tells)
        out[p : p + room] = src[:room]
        p += nbytes
    else:
        j = 0
        while j + 7 <= nbytes:
            acc |= (_load_be64(src, j) & _CODE) >> nacc  # 7 bytes, below the pending bits
            _store_be64(out, min(p, cap), acc)
            acc <<= _U56
            p += 7
            j += 7
        while j < nbytes:
            acc, nacc = _add(acc, nacc, _entry(src[j], 8))
            acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
            j += 1
    rem = nbits & 7
    if rem:
        acc, nacc = _add(acc, nacc, _entry(np.uint64(src[nbytes]) >> np.uint64(8 - rem), rem))
        acc, nacc, p = _flush(out, min(p, cap), acc, nacc, p)
    return acc, nacc, p


@numba.njit(cache=True, nogil=True)
def _pair_table(ent, R, fuse, vmin, raw):
    """The pair table of :func:`_encode_pairs`: with ``fuse`` the entries of two values' codes one after the other
    (``ent``: R entries of values), else the entries of pair symbols (``ent``: R * R). Indexed as
    :func:`_pair_idx`: by the two raw bytes (``raw``: 65536 entries), else by ``a * (R + 1) + b`` (the entries
    of the clamp index R empty)."""
    tab = np.zeros((1 << 16) if raw else (R + 1) * (R + 1), dtype=np.uint64)
    for a in range(R):
        for b in range(R):
            if fuse:
                ea = ent[a]
                eb = ent[b]
                la = ea & _LEN
                lb = eb & _LEN
                e = ((ea & _CODE) | ((eb & _CODE) >> la) | (la + lb)) if la != 0 and lb != 0 else np.uint64(0)
            else:
                e = ent[a * R + b]
            if raw:
                tab[((vmin + a) & 0xFF) | (((vmin + b) & 0xFF) << 8)] = e
            else:
                tab[a * (R + 1) + b] = e
    return tab


#: pair tables (two values per lookup) for group-1 streams, and pair tables indexed by raw bytes, for streams of at
#: least this many values: the table has 65536 entries for 1-byte values, more than a small stream pays back
FUSED_MIN_VALUES = 1 << 16


def _value_tables(params, ent: np.ndarray, itemsize: int, vmin: int, mask: int) -> tuple[np.ndarray, int, int, int]:
    """The entry table of base symbols as :func:`_idx` indexes it, with its (vmin, mask, R): for 1-byte values
    indexed by the raw byte (vmin 0, mask 255, R 256), else by the base symbol (R + 1 entries)."""
    R = params.value_range
    if itemsize == 1:
        tab = np.zeros(257, dtype=np.uint64)
        tab[(int(params.value_min) + np.arange(R)) & 0xFF] = ent[:R]
        return tab, 0, 0xFF, 256
    return np.append(ent[:R], np.uint64(0)), vmin, mask, R


def encode_symbols(
    flat: np.ndarray,
    params,
    codes: np.ndarray,
    lengths: np.ndarray,
    total_bits: int,
    *,
    sink: Callable[[memoryview, int], None] | None = None,
    piece_chunks: int = 256,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Encode ``flat`` values as the stream ``params`` (a :class:`entropy.codec.params.CodecParams`) describes (a stored
    stream: :func:`entropy.codec.kernels.stored.encode_stored`; ``codes`` and ``lengths`` are then unused).

    Every value must be codable: inside the window or, with escapes, the escape range; every symbol without a
    code must have an escape symbol with a code (the codec guarantees both).

    Returns the MSB-first payload (uint8[``ceil(total_bits / 8)``]) and the payload bits of
    each chunk (uint32). ``total_bits`` must be the exact payload size (sum count * len, escape bits included).

    With ``sink``, the payload is also streamed while it is coded: after every
    ``piece_chunks`` chunks (``piece_chunks * threads`` with several threads), ``sink(view, offset)`` receives
    the finished bytes and their byte offset in the payload, so a writer can store and checksum them while the
    rest is coded. The views stay valid and unchanged after the call; the last one ends the payload.

    ``threads``: large ranges of chunks are cut into groups coded on up to this many threads; the first group of
    each range continues the bit writer, the others are coded into their own buffers and appended bit-exactly
    after it (:func:`_append`), so the payload is the same bytes whatever the thread count.
    """
    if params.stored:
        from entropy.codec.kernels.stored import encode_stored

        return encode_stored(flat, params, total_bits, sink=sink, piece_values=piece_chunks * params.chunk_size,
                             threads=threads)
    n = flat.size
    vstart = params.chunk_starts(n)
    n_chunks = vstart.size - 1
    nbytes = (total_bits + 7) // 8
    out = np.zeros(nbytes + _SPARE, dtype=np.uint8)
    chunk_bits = np.zeros(n_chunks, dtype=np.uint32)
    if n == 0:
        return out[:0], chunk_bits
    u, vmin_u, mask = _unsigned(flat, params.value_min)
    ent = entries(codes, lengths)
    max_len = int(lengths.max())
    R, group = params.value_range, params.group
    if params.runs or params.escape_range:
        sp = spec(u.itemsize, params)
        rv = u.dtype.type(run_raw(u.itemsize, params))
        words = run_marks(u, rv) if params.runs else np.zeros(1, np.uint64)

        def run(c0, c1, state, buf):
            return _encode_gen(u, *sp, rv, words, ent, vstart, np.int64(c0), np.int64(c1), buf, chunk_bits, *state)
    else:
        if group == 2 or (R * R <= 1 << 16 and max_len <= 12 and n >= FUSED_MIN_VALUES):
            # a pair per lookup: pair symbols, or the concatenated codes of two values (one lookup, one shift)
            raw = None if u.itemsize == 1 and n >= FUSED_MIN_VALUES else False  # (the raw table: 65536 entries)
            tab2 = _pair_table(ent, np.int64(R), group == 1, np.int64(params.value_min), raw is None)
            pair_len = 2 * max_len if group == 1 else max_len
            four = None if pair_len <= 12 else False
            tab1 = np.append(ent[:R], np.uint64(0))
            step_bytes = np.int64(-(-4 * pair_len // 8) + 1)

            def run(c0, c1, state, buf):
                return _encode_pairs(u, np.int64(vmin_u), mask, np.int64(R), raw, tab2, four, step_bytes, group == 2,
                                     tab1, vstart, np.int64(c0), np.int64(c1), buf, chunk_bits, *state)
        else:
            tab1, vmin, msk, R_idx = _value_tables(params, ent, u.itemsize, vmin_u, mask)

            def run(c0, c1, state, buf):
                return _encode_plain(u, np.int64(vmin), np.int64(msk), np.int64(R_idx), None if u.itemsize == 1 else False,
                                     tab1, None if max_len <= 12 else False, np.int64(-(-4 * max_len // 8) + 1), vstart,
                                     np.int64(c0), np.int64(c1), buf, chunk_bits, *state)

    zero = (np.uint64(0), np.uint64(0), np.int64(0), np.int64(0))  # pending bits, their count, bytes out, bits out
    state = zero
    most_bits = params.max_symbol_bits * params.chunk_symbols  # of one chunk

    def own_buffer(c0: int, c1: int) -> tuple[np.ndarray, int]:
        """A group coded into its own buffer (sized for the worst case; untouched pages cost nothing)."""
        buf = np.empty(min(total_bits, (c1 - c0) * most_bits) // 8 + _SPARE, dtype=np.uint8)
        bits = run(c0, c1, zero, buf)[3]
        return buf, int(bits)

    done = 0
    step = n_chunks if sink is None else max(1, int(piece_chunks)) * max(1, threads)
    for r0 in range(0, n_chunks, step):
        r1 = min(n_chunks, r0 + step)
        bounds = r0 + group_bounds(r1 - r0, int(vstart[r1] - vstart[r0]), threads)

        def code(g: int, state=state, bounds=bounds):
            c0, c1 = int(bounds[g]), int(bounds[g + 1])
            return run(c0, c1, state, out) if g == 0 else own_buffer(c0, c1)

        parts = run_groups(code, bounds.size - 1, threads)
        acc, nacc, p, written = parts[0]
        for buf, bits in parts[1:]:
            acc, nacc, p = _append(out, np.uint64(acc), np.uint64(nacc), np.int64(p), buf, np.int64(bits))
            written += bits
        # numba hands back Python ints; keep the argument types fixed (one compilation)
        state = (np.uint64(acc), np.uint64(nacc), np.int64(p), np.int64(written))
        if r1 == n_chunks and written != total_bits:  # an encoder fault (the sizes did not describe these values)
            raise StreamError(f"encoder wrote {written} bits where the plan said {total_bits}; nothing valid was written")
        if sink is not None:
            stop = nbytes if r1 == n_chunks else min(int(p), nbytes)
            sink(memoryview(out[done:stop]), done)
            done = stop
    return out[:nbytes], chunk_bits
