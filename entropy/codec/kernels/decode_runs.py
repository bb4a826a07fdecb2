"""Table-driven decoder of run/escape streams (symbols that stand for a run of the run value and a value).

Table entry (uint32, indexed by the next ``L`` bits): bits 0-4 the code length, bit 5 "raw escape bits follow",
bit 7 "no code", bits 8-15 the run prefix ``r`` (run values before the value), bits 16-31 the value's base
symbol. A chunk's output is first filled with the run value, so a symbol only writes its one value, ``r``
places further on: no branch on the run length.

Never trusts the stream: every symbol advances the output by at least one value and the chunk stops at its
value count, so a chunk decodes at most ``chunk_size`` symbols of at most ``L + E`` bits (the word array is
padded for that walk); a symbol that passes the chunk's value count, bits that are no code, a raw value
outside the escape range and a chunk that does not end on its recorded bit count are reported by chunk.
"""

from __future__ import annotations

import numba
import numpy as np

from entropy.codec.kernels.common import (
    _ESCAPE, _INVALID, SPEC_FIELDS, _refill, first_failure, load_words, raise_failure, run_raw, spec,
)
from entropy.codec.threads import group_bounds, run_groups

_FLAGS = _INVALID | _ESCAPE


def decode_table_runs(lengths: np.ndarray, codes_order: np.ndarray, max_length: int, V: int, R: int,
                      escape: bool) -> np.ndarray:
    """Run/escape decode table (uint32[2**max_length]); symbol ``s`` = ``r * V + b``, ``b == R`` the escape."""
    L = max_length
    s = codes_order.astype(np.int64)
    ls = lengths[s].astype(np.int64)
    r, b = s // V, s % V
    esc = (b == R) if escape else np.zeros(s.size, dtype=bool)
    entries = (ls | (esc.astype(np.int64) << 5) | (r << 8) | (b << 16)).astype(np.uint32)
    span = np.left_shift(np.int64(1), L - ls)
    table = np.full(1 << L, _INVALID, dtype=np.uint32)
    table[: int(span.sum())] = np.repeat(entries, span)  # canonical codes fill the table in order
    return table


@numba.njit(cache=True, nogil=True)
def _decode_runs(W, offs, vstart, c0, c1, table, L, vals, run_val, runs, emin, erange, E, mask, out, status):
    """Decode chunks [c0, c1) (chunk c: values ``out[vstart[c]:vstart[c + 1]]``); on failure
    status = (chunk - c0, kind) and returns early."""
    shift = np.uint64(64 - L)
    B = 64 // L
    uE = np.uint64(erange)
    eshift = np.uint64(64 - E)
    for c in range(c0, c1):
        o = vstart[c]
        end = vstart[c + 1]
        if runs > 0:
            out[o:end] = run_val
        pos = offs[c]
        fault = 0
        while o < end and fault == 0:
            win = _refill(W, pos)
            for _j in range(B):
                e = table[win >> shift]
                ln = np.uint64(e & np.uint32(31))
                if e & _FLAGS:
                    if e & _INVALID:
                        fault = 1
                        break
                    # escape: the raw value follows the code; the window is stale afterwards
                    pos += ln
                    raw = _refill(W, pos) >> eshift
                    pos += np.uint64(E)
                    o2 = o + np.int64((e >> np.uint32(8)) & np.uint32(255))
                    if o2 >= end:
                        fault = 3
                    elif raw >= uE:
                        fault = 4
                    else:
                        out[o2] = (emin + np.int64(raw)) & mask
                        o = o2 + 1
                    break
                win <<= ln
                pos += ln
                o2 = o + np.int64((e >> np.uint32(8)) & np.uint32(255))
                if o2 >= end:
                    fault = 3
                    break
                out[o2] = vals[e >> np.uint32(16)]
                o = o2 + 1
                if o == end:
                    break
        if fault == 0 and pos != offs[c + 1]:
            fault = 2
        if fault != 0:
            status[0] = c - c0
            status[1] = fault
            return
    status[0] = -1
    status[1] = 0


def decode_runs(payload, offsets: np.ndarray, start: int, stop: int, cvals: np.ndarray, lengths: np.ndarray,
                codes_order: np.ndarray, max_length: int, params, out: np.ndarray, threads: int = 1) -> None:
    """Decode chunks ``[start, stop)`` of a run/escape stream into ``out`` (1-D, their values, chunk after chunk).

    ``offsets`` (uint64[n_chunks + 1]) are validated chunk bit offsets inside the payload; ``cvals``
    (int64[stop - start]) the values of each chunk of the range (``out`` holds their sum); ``lengths`` /
    ``codes_order`` / ``max_length`` a valid canonical code with at least one symbol; ``params`` the stream's
    :class:`entropy.codec.params.CodecParams` (window and escape range checked against ``out``'s dtype). ``threads``: as
    for :func:`entropy.codec.kernels.decode_symbols`. Raises :class:`DecodeFailure` naming the first bad chunk.
    """
    if stop <= start:
        return
    L = int(max_length)
    E = params.escape_bits
    cvals = np.ascontiguousarray(cvals, dtype=np.int64)
    walk = int(cvals.max()) * (L + E)
    vstart = np.zeros(cvals.size + 1, dtype=np.int64)
    np.cumsum(cvals, out=vstart[1:])
    udt = np.dtype(f"u{out.dtype.itemsize}")  # compile for unsigned types only
    uout = out.view(udt)
    sp = dict(zip(SPEC_FIELDS, spec(udt.itemsize, params)))
    R, V = int(sp["R"]), int(sp["V"])
    vals = ((np.arange(R, dtype=np.int64) + int(sp["vmin"])) & int(sp["mask"])).astype(udt)
    table = decode_table_runs(lengths, codes_order, L, V, R, bool(params.escape_range))
    run_val = udt.type(run_raw(udt.itemsize, params))
    bounds = group_bounds(cvals.size, int(vstart[-1]), threads)

    def run(g: int) -> np.ndarray:
        a, b = int(bounds[g]), int(bounds[g + 1])
        words, local = load_words(payload, offsets, start + a, start + b, walk)
        status = np.zeros(2, dtype=np.int64)
        _decode_runs(words, local, vstart[a : b + 1] - vstart[a], np.int64(0), np.int64(b - a), table, np.int64(L),
                     vals, run_val, sp["runs"], sp["emin"], sp["erange"], sp["E"], sp["mask"],
                     uout[vstart[a] : vstart[b]], status)
        return status

    statuses = run_groups(run, bounds.size - 1, threads)
    raise_failure(first_failure(bounds, statuses), start, offsets)
