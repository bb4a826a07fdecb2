"""Stored streams: every value ``v`` as ``v - value_min`` in ``W`` bits, MSB-first, one after the other.

``W`` is the bit length of ``value_range - 1`` (1..32). No code, no chunk index: chunk ``c`` is bits
``W * chunk_starts[c]`` up to ``W * chunk_starts[c + 1]`` of the payload, so any range of values is read directly.
Widths of whole bytes (8, 16, 32) are big-endian words: numpy's byte-swapping copies, at memory speed; other
widths go through the encoders' bit writer (:mod:`entropy.codec.kernels.bitwriter`) and a 64-bit window per value. The decoder checks every value against
the window (a stored value ``>= value_range`` is damage) when the window does not fill its ``W`` bits.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from entropy.codec.kernels.common import DecodeFailure, _load_be64, _sym, _unsigned
from entropy.codec.kernels.bitwriter import _SPARE, _add, _entry, _flush
from entropy.codec.threads import group_bounds, run_groups

_U3 = np.uint64(3)
_U7 = np.uint64(7)
_U8 = np.uint64(8)
_U56 = np.uint64(56)
_U64 = np.uint64(64)


@numba.njit(cache=True, nogil=True)
def _pack(values, vmin, mask, W, i0, i1, out):
    """Store ``values[i0:i1]`` (``i0 * W`` a multiple of 8) as bits ``[i0 * W, i1 * W)`` of ``out``, writing only
    the bytes those bits touch (pieces packed side by side never write each other's bytes)."""
    uW = np.uint64(W)
    b = np.uint64(i1)
    i = np.uint64(i0)
    p = np.int64((i * uW) >> _U3)
    end = np.int64((b * uW + _U7) >> _U3)  # bytes of this piece
    k = np.uint64(48 // W)  # values per flush
    acc = np.uint64(0)
    nacc = np.uint64(0)
    while i + k <= b and p + 8 <= end:  # the 8-byte store stays inside the piece
        for j in range(k):
            acc, nacc = _add(acc, nacc, _entry(_sym(values[i + np.uint64(j)], vmin, mask), W))
        acc, nacc, p = _flush(out, p, acc, nacc, p)
        i += k
    while i < b:  # the piece's last bytes one by one
        acc |= (np.uint64(_sym(values[i], vmin, mask)) << (_U64 - uW)) >> nacc
        nacc += uW
        while nacc >= _U8:
            out[p] = np.uint8(acc >> _U56)
            acc <<= _U8
            nacc -= _U8
            p += 1
        i += np.uint64(1)
    if nacc > 0:  # the stream's last bits, zero-padded
        out[p] = np.uint8(acc >> _U56)


@numba.njit(cache=True, nogil=True)
def _unpack(buf, vmin, mask, W, i0, i1, out):
    """Values ``i0..i1-1`` of a stored stream in ``buf`` into ``out[0:i1 - i0]`` (``buf`` readable 8 bytes past the
    last value's first byte); returns the largest stored value seen (for the window check)."""
    uW = np.uint64(W)
    a = np.uint64(i0)
    shift = _U64 - uW
    top = np.uint64(0)
    for i in range(a, np.uint64(i1)):
        pos = i * uW
        v = (_load_be64(buf, pos >> _U3) << (pos & _U7)) >> shift
        top = max(top, v)
        out[i - a] = (vmin + np.int64(v)) & mask
    return top


def _pieces(n: int, threads: int) -> np.ndarray:
    """Bounds of groups of ``n`` values for ``threads`` threads, at multiples of 8 values (byte boundaries)."""
    return np.minimum(group_bounds(-(-n // 8), n, threads) * 8, n)


def encode_stored(flat: np.ndarray, params, total_bits: int, *, sink: Callable[[memoryview, int], None] | None = None,
                  piece_values: int = 1 << 20, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The payload (uint8[``ceil(total_bits / 8)``]) and per-chunk bits (uint32) of ``flat`` as the stored stream
    ``params``; ``total_bits`` must be ``n * stored_bits``. ``sink`` and ``threads`` as for
    :func:`entropy.codec.kernels.encode_symbols` (pieces of about ``piece_values`` values); the same bytes whatever
    ``threads``."""
    n = flat.size
    W = params.stored_bits
    if n * W != total_bits:
        raise ValueError(f"{n} values of {W} bits are not {total_bits} bits")
    nbytes = (total_bits + 7) // 8
    out = np.zeros(nbytes + _SPARE, dtype=np.uint8)
    chunk_bits = params.chunk_bit_bounds(n)[0].astype(np.uint32)  # (fewest = most bits)
    u, vmin, mask = _unsigned(flat, params.value_min)
    if W % 8 == 0 and W != 24:  # whole big-endian words: (v - value_min) modulo 2**W, one numpy pass
        words = out[:nbytes].view(f">u{W // 8}")
        shift = u.dtype.type(int(vmin) % (1 << (8 * u.itemsize)))

        def piece(a: int, b: int) -> None:
            if shift:
                np.subtract(u[a:b], shift, out=words[a:b], casting="unsafe")
            else:
                np.copyto(words[a:b], u[a:b], casting="unsafe")
    else:

        def piece(a: int, b: int) -> None:
            _pack(u, np.int64(vmin), mask, np.int64(W), np.int64(a), np.int64(b), out)

    step = 8 * max(1, int(piece_values) // 8) if sink is not None else max(8, n)
    done = 0
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        bounds = r0 + _pieces(r1 - r0, threads)
        run_groups(lambda g, bounds=bounds: piece(int(bounds[g]), int(bounds[g + 1])), bounds.size - 1, threads)
        if sink is not None:
            stop = nbytes if r1 == n else (r1 * W) // 8
            sink(memoryview(out[done:stop]), done)
            done = stop
    return out[:nbytes], chunk_bits


def decode_stored(payload, params, n_values: int, start: int, stop: int, out: np.ndarray, threads: int = 1) -> None:
    """Values of chunks ``[start, stop)`` of the stored stream ``params`` of ``n_values`` values into ``out`` (1-D,
    their count, any codec dtype); ``payload`` holds the whole stream (``ceil(n_values * stored_bits / 8)`` bytes,
    checked by the caller). Raises :class:`DecodeFailure` naming the chunk of the first value outside the window."""
    starts = params.chunk_starts(n_values)
    v0, v1 = int(starts[start]), int(starts[stop])
    if v1 <= v0:
        return
    W, R = params.stored_bits, params.value_range
    buf = np.frombuffer(payload, dtype=np.uint8)
    uout = out.view(f"u{out.dtype.itemsize}")
    _, vmin, mask = _unsigned(np.zeros(0, dtype=out.dtype), params.value_min)
    if W % 8 == 0 and W != 24:  # whole big-endian words: one numpy pass (and one for the window check)
        words = np.frombuffer(buf, dtype=f">u{W // 8}", count=v1 - v0, offset=v0 * W // 8)
        shift = uout.dtype.type(int(vmin) % (1 << (8 * uout.itemsize)))

        def piece(a: int, b: int) -> int:
            w = words[a - v0 : b - v0]
            if shift:
                np.add(w, shift, out=uout[a - v0 : b - v0], casting="unsafe")
            else:
                np.copyto(uout[a - v0 : b - v0], w, casting="unsafe")
            return int(w.max()) if R < 1 << W else 0  # (a full window holds every stored value)
    else:
        # 8 bytes are read per value: the last few values come from a padded copy of the payload's end
        safe = min(v1, max(v0, ((buf.size - 8) * 8) // W))

        def piece(a: int, b: int) -> int:
            top = 0
            if a < safe:
                m = min(b, safe)
                top = int(_unpack(buf, np.int64(vmin), mask, np.int64(W), np.int64(a), np.int64(m), uout[a - v0 : m - v0]))
                a = m
            if a < b:
                t = a - a % 8  # a value on a byte boundary
                first = t * W // 8
                tail = np.zeros(buf.size - first + 16, dtype=np.uint8)
                tail[: buf.size - first] = buf[first:]
                top = max(top, int(_unpack(tail, np.int64(vmin), mask, np.int64(W), np.int64(a - t), np.int64(b - t),
                                           uout[a - v0 : b - v0])))
            return top

    bounds = v0 + _pieces(v1 - v0, threads)
    tops = run_groups(lambda g: piece(int(bounds[g]), int(bounds[g + 1])), bounds.size - 1, threads)
    if max(tops) >= R:  # damage: the first value outside the window
        bad = v0 + int(np.flatnonzero(((uout.astype(np.int64) - vmin) & mask) >= R)[0])
        c = int(np.searchsorted(starts, bad, side="right")) - 1
        raise DecodeFailure(c, "window", f"chunk {c}: stored value {bad - int(starts[c])} of the chunk is outside "
                                         f"the window of {R} values")
