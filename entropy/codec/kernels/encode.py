"""Canonical-Huffman bit writers: chunked MSB-first payload and per-chunk bit counts."""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from entropy.errors import StreamError
from entropy.codec.kernels.common import _M32, _U1, _U32, _next_mark, _sym, _unsigned, run_marks, run_raw, spec
from entropy.codec.threads import group_bounds, run_groups


# Branch-free flush: the hot loops do not branch on "32 bits or more?" (that branch mispredicts about every other
# time on 2-4 bit codes); every step stores the word being filled and ``w`` advances only when it is full, so a
# store of a partial word is overwritten by a later one, and the final partial word is always stored explicitly.
# (Measured single-thread on the bench's lap4/lap8 data: encode about 1.1-1.2x faster than with the branch.)
_U5 = np.uint64(5)


@numba.njit(cache=True, nogil=True, inline="always")
def _be32(x):
    """The low 32 bits of ``x`` as a word whose bytes in memory are big-endian (the payload's byte order), so that
    finished words need no byte-swapping pass (LLVM makes this one bswap)."""
    v = np.uint32(x & _M32)
    return np.uint32(((v & np.uint32(0xFF)) << np.uint32(24)) | ((v & np.uint32(0xFF00)) << np.uint32(8))
                     | ((v >> np.uint32(8)) & np.uint32(0xFF00)) | (v >> np.uint32(24)))


@numba.njit(cache=True, nogil=True, inline="always")
def _put(acc, nacc, w, out32, code, ln):
    """Append ``ln`` <= 32 bits to the bit writer (nacc <= 31 on entry and on exit)."""
    wlast = out32.size - 1
    acc = (acc << np.uint64(ln)) | np.uint64(code)
    nacc += np.uint64(ln)
    if nacc >= _U32:
        nacc -= _U32
        out32[min(w, wlast)] = _be32(acc >> nacc)
        w += 1
    return acc, nacc, w


@numba.njit(cache=True, nogil=True)
def _encode(values, vmin, mask, R, k, codes, lens, vstart, c_begin, c_end, out32, chunk_bits, twice, acc, nacc, w,
            prev_bits):
    # chunks [c_begin, c_end), chunk c = values [vstart[c], vstart[c+1]); (acc, nacc, w, prev_bits) carry the
    # bit writer from the previous call. Pairs of a chunk with an odd count end with base symbol 0 (the pad).
    # Bit writer invariant: after a flush check nacc <= 31, so at most 33 bits may enter before the next one:
    # one code of <= 24 bits always, two codes only when ``twice`` (codes <= 16 bits: 31 + 32 = 63).
    wlast = out32.size - 1  # a spare last word: an encoder fault cannot write past the buffer
    for c in range(c_begin, c_end):
        i0 = vstart[c]
        i1 = vstart[c + 1]
        if k == 1:
            i = i0
            while twice and i + 1 < i1:
                s = _sym(values[i], vmin, mask)
                t = _sym(values[i + 1], vmin, mask)
                acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
                acc = (acc << np.uint64(lens[t])) | np.uint64(codes[t])
                nacc += np.uint64(lens[s]) + np.uint64(lens[t])
                full = nacc >> _U5  # branch-free flush (see the note above _be32)
                nacc -= full << _U5
                out32[min(w, wlast)] = _be32(acc >> nacc)
                w += np.int64(full)
                i += 2
            while i < i1:
                s = _sym(values[i], vmin, mask)
                acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
                nacc += np.uint64(lens[s])
                full = nacc >> _U5  # branch-free flush (see the note above _be32)
                nacc -= full << _U5
                out32[min(w, wlast)] = _be32(acc >> nacc)
                w += np.int64(full)
                i += 1
        else:
            for i in range(i0, i1 - 1, 2):
                s = _sym(values[i], vmin, mask) * R + _sym(values[i + 1], vmin, mask)
                acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
                nacc += np.uint64(lens[s])
                full = nacc >> _U5  # branch-free flush (see the note above _be32)
                nacc -= full << _U5
                out32[min(w, wlast)] = _be32(acc >> nacc)
                w += np.int64(full)
            if (i1 - i0) % 2:  # an odd count: the last value pairs with the pad, base symbol 0
                s = _sym(values[i1 - 1], vmin, mask) * R
                acc, nacc, w = _put(acc, nacc, w, out32, codes[s], lens[s])
        bits = w * 32 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, w, prev_bits


@numba.njit(cache=True, nogil=True)
def _encode_fused(values, vmin, mask, R, codes, lens, code2, len2, vstart, c_begin, c_end, out32, chunk_bits, twice,
                  acc, nacc, w, prev_bits):
    """Group-1 encoder that looks up two values at once in a fused (pair) code table.

    ``code2[a * R + b]`` is code(a) followed by code(b), ``len2`` its length (<= 24 bits);
    with ``twice`` (pair codes <= 16 bits) two pairs go in per flush check. Chunks and carried state as
    in ``_encode``.
    """
    wlast = out32.size - 1  # a spare last word: an encoder fault cannot write past the buffer
    for c in range(c_begin, c_end):
        i0 = vstart[c]
        i1 = vstart[c + 1]
        i = i0
        if twice:
            while i + 3 < i1:
                s = (_sym(values[i], vmin, mask)) * R + (_sym(values[i + 1], vmin, mask))
                t = (_sym(values[i + 2], vmin, mask)) * R + (_sym(values[i + 3], vmin, mask))
                acc = (acc << np.uint64(len2[s])) | np.uint64(code2[s])
                acc = (acc << np.uint64(len2[t])) | np.uint64(code2[t])
                nacc += np.uint64(len2[s]) + np.uint64(len2[t])
                full = nacc >> _U5  # branch-free flush (see the note above _be32)
                nacc -= full << _U5
                out32[min(w, wlast)] = _be32(acc >> nacc)
                w += np.int64(full)
                i += 4
        while i + 1 < i1:
            s = (_sym(values[i], vmin, mask)) * R + (_sym(values[i + 1], vmin, mask))
            acc = (acc << np.uint64(len2[s])) | np.uint64(code2[s])
            nacc += np.uint64(len2[s])
            full = nacc >> _U5  # branch-free flush (see the note above _be32)
            nacc -= full << _U5
            out32[min(w, wlast)] = _be32(acc >> nacc)
            w += np.int64(full)
            i += 2
        if i < i1:
            s = _sym(values[i], vmin, mask)
            acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
            nacc += np.uint64(lens[s])
            full = nacc >> _U5  # branch-free flush (see the note above _be32)
            nacc -= full << _U5
            out32[min(w, wlast)] = _be32(acc >> nacc)
            w += np.int64(full)
        bits = w * 32 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, w, prev_bits



@numba.njit(cache=True, nogil=True)
def _encode_gen(values, vmin, mask, R, V, esc, emin, erange, E, runs, run_b, C, rv, words, codes, lens, vstart,
                c_begin, c_end, out32, chunk_bits, acc, nacc, w, prev_bits):
    """Run/escape symbols (see :mod:`entropy.codec.kernels`), chunks [c_begin, c_end); carried state as in ``_encode``.

    Runs of the run value ``rv`` (as stored; ``words`` = :func:`run_marks`) are cut greedily: ``runs`` of them make the symbol
    (runs - 1, run value); the rest joins the next value as (r, value), or ends the chunk as (r - 1, run value).
    Values outside the window, and symbols without a code, are escaped (needs ``esc``; the codec guarantees it).
    """
    # (the emission is spelled out at each place: a helper returning the writer state from two branches made
    # numba's code 3x slower)
    wlast = out32.size - 1  # a spare last word: an encoder fault cannot write past the buffer
    uR = np.uint64(R)
    zrl = (runs - 1) * V + run_b
    rv_raw = np.uint64(_sym(rv, emin, mask)) if esc != 0 else np.uint64(0)
    for c in range(c_begin, c_end):
        i0 = vstart[c]
        i1 = vstart[c + 1]
        i = i0
        while i < i1:
            z = 0
            if runs > 0:
                j = _next_mark(words, i, i1)
                z = j - i
                while z >= runs:
                    s = zrl
                    if lens[s] == 0:  # no code: its escape symbol, then the run value raw
                        s = (s // V) * V + R
                        acc, nacc, w = _put(acc, nacc, w, out32, codes[s], lens[s])
                        acc, nacc, w = _put(acc, nacc, w, out32, rv_raw, E)
                    else:
                        acc, nacc, w = _put(acc, nacc, w, out32, codes[s], lens[s])
                    z -= runs
                if j == i1:
                    if z > 0:
                        s = (z - 1) * V + run_b
                        if lens[s] == 0:
                            s = (s // V) * V + R
                            acc, nacc, w = _put(acc, nacc, w, out32, codes[s], lens[s])
                            acc, nacc, w = _put(acc, nacc, w, out32, rv_raw, E)
                        else:
                            acc, nacc, w = _put(acc, nacc, w, out32, codes[s], lens[s])
                    break
                i = j
            b = np.uint64(_sym(values[i], vmin, mask))
            s = z * V + R
            escaped = True  # outside the window: always escaped
            if b < uR:
                s = z * V + np.int64(b)
                escaped = lens[s] == 0
                if escaped:
                    s = z * V + R
            # (spelled out: through _put this hot path ran 1.4x slower)
            acc = (acc << np.uint64(lens[s])) | np.uint64(codes[s])
            nacc += np.uint64(lens[s])
            full = nacc >> _U5  # branch-free flush (see the note above _be32)
            nacc -= full << _U5
            out32[min(w, wlast)] = _be32(acc >> nacc)
            w += np.int64(full)
            if escaped:
                acc, nacc, w = _put(acc, nacc, w, out32, np.uint64(_sym(values[i], emin, mask)), E)
            i += 1
        bits = w * 32 + np.int64(nacc)
        chunk_bits[c] = bits - prev_bits
        prev_bits = bits
    return acc, nacc, w, prev_bits


@numba.njit(cache=True, nogil=True)
def _append(out32, acc, nacc, w, src, nbits):
    """Append the first ``nbits`` bits of ``src`` (big-endian words, as the encoders write them) to the bit
    writer (acc, nacc, w) of ``out32``: one shift and one or per word (a chunk group coded on its own spliced in
    after the groups before it)."""
    wlast = out32.size - 1
    nfull = nbits // 32
    room = max(0, min(nfull, wlast - w))  # an encoder fault cannot write past the buffer (the count tells)
    s = nacc
    if s == 0:
        out32[w : w + room] = src[:room]
    else:
        rs = _U32 - s
        low = (_U1 << s) - _U1
        prev = acc & low
        for i in range(room):
            v = np.uint64(_be32(src[i]))
            out32[w + i] = _be32((prev << rs) | (v >> s))
            prev = v & low
        acc = prev
    w += nfull
    rem = nbits - 32 * nfull
    if rem:
        acc, nacc, w = _put(acc, nacc, w, out32, np.uint64(_be32(src[nfull])) >> np.uint64(32 - rem), rem)
    return acc, nacc, w


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
    """Encode ``flat`` values as the stream ``params`` (a :class:`entropy.codec.params.CodecParams`) describes.

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
    n = flat.size
    vstart = params.chunk_starts(n)
    n_chunks = vstart.size - 1
    out32 = np.zeros(total_bits // 32 + 2, dtype=np.uint32)  # + the last partial word + a spare
    chunk_bits = np.zeros(n_chunks, dtype=np.uint32)
    nbytes = (total_bits + 7) // 8
    if n == 0:
        return np.zeros(0, dtype=np.uint8), chunk_bits
    u, vmin_u, mask = _unsigned(flat, params.value_min)
    lens8 = lengths.astype(np.uint8, copy=False)
    codes32 = codes.astype(np.uint32, copy=False)
    max_len = int(lens8.max())
    value_range, group = params.value_range, params.group
    if params.runs or params.escape_range:
        sp = spec(u.itemsize, params)
        rv = u.dtype.type(run_raw(u.itemsize, params))
        words = run_marks(u, rv) if params.runs else np.zeros(1, np.uint64)

        def run(c0, c1, state, buf):
            return _encode_gen(u, *sp, rv, words, codes32, lens8, vstart, np.int64(c0), np.int64(c1), buf,
                               chunk_bits, *state)
    elif group == 1 and value_range * value_range <= 1 << 16 and max_len <= 12:
        # fused pair table: one lookup and one shift per two values
        l64 = lens8.astype(np.uint32)
        len2 = (l64[:, None] + l64[None, :]).astype(np.uint8).ravel()
        code2 = ((codes32[:, None] << l64[None, :]) | codes32[None, :]).astype(np.uint32).ravel()

        def run(c0, c1, state, buf):
            return _encode_fused(
                u, np.int64(vmin_u), mask, np.int64(value_range), codes32, lens8, code2, len2,
                vstart, np.int64(c0), np.int64(c1), buf, chunk_bits, max_len <= 8, *state,
            )
    else:

        def run(c0, c1, state, buf):
            return _encode(
                u, np.int64(vmin_u), mask, np.int64(value_range), np.int64(group), codes32, lens8,
                vstart, np.int64(c0), np.int64(c1), buf, chunk_bits, max_len <= 16, *state,
            )

    zero = (np.uint64(0), np.uint64(0), np.int64(0), np.int64(0))  # bit buffer, its fill, words out, bits out
    state = zero
    most_bits = params.max_symbol_bits * params.chunk_symbols  # of one chunk

    def own_buffer(c0: int, c1: int) -> tuple[np.ndarray, int]:
        """A group coded into its own buffer (sized for the worst case; untouched pages cost nothing)."""
        buf = np.empty(min(total_bits, (c1 - c0) * most_bits) // 32 + 2, dtype=np.uint32)
        acc, nacc, w, bits = run(c0, c1, zero, buf)
        if nacc > 0 and w < buf.size:  # the partial last word, MSB-aligned
            buf[w] = _be32(np.uint64(acc) << np.uint64(32 - int(nacc)))
        return buf, int(bits)

    bytes_out = out32.view(np.uint8)
    done_words = 0
    step = n_chunks if sink is None else max(1, int(piece_chunks)) * max(1, threads)
    for r0 in range(0, n_chunks, step):
        r1 = min(n_chunks, r0 + step)
        bounds = r0 + group_bounds(r1 - r0, int(vstart[r1] - vstart[r0]), threads)

        def code(g: int, state=state, bounds=bounds):
            c0, c1 = int(bounds[g]), int(bounds[g + 1])
            return run(c0, c1, state, out32) if g == 0 else own_buffer(c0, c1)

        parts = run_groups(code, bounds.size - 1, threads)
        acc, nacc, w, written = parts[0]
        for buf, bits in parts[1:]:
            acc, nacc, w = _append(out32, np.uint64(acc), np.uint64(nacc), np.int64(w), buf, np.int64(bits))
            written += bits
        # numba hands back Python ints; keep the argument types fixed (unsigned bit buffer, one compilation)
        state = (np.uint64(acc), np.uint64(nacc), np.int64(w), np.int64(written))
        if r1 == n_chunks:
            if written != total_bits:  # an encoder fault (the sizes did not describe these values)
                raise StreamError(f"encoder wrote {written} bits where the plan said {total_bits}; nothing valid was written")
            if nacc > 0:  # the last partial word, zero bits up to the byte boundary
                out32[w] = _be32(np.uint64(acc) << np.uint64(32 - int(nacc)))
                w += 1
        if sink is not None:
            stop = min(4 * int(w), nbytes)
            sink(memoryview(bytes_out[4 * done_words : stop]), 4 * done_words)
        done_words = int(w)
    return bytes_out[:nbytes], chunk_bits
