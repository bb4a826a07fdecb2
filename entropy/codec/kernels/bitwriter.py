"""The bit writer of the encoders: MSB-first payload bits, flushed whole bytes at a time.

Its state is ``(acc, nacc, p)``: the ``nacc`` pending bits are the top bits of the 64-bit ``acc`` (first bit in
bit 63), and ``p`` is the payload byte they start at. A code is an *entry*: ``code << (64 - length) | length``
(the code left-aligned, its length in the low byte), so appending it (:func:`_add`) is one shift, one or and one
add, with no dependence on the previous code's value. The length byte is or-ed in too: it lands in ``acc``'s low
byte, which holds no pending bit as long as at most 56 are pending, and a flush clears it. A flush
(:func:`_flush`) stores all 8 bytes of ``acc`` at ``p`` (one unaligned big-endian store; a later store at the
same place completes a partial byte) and drops the whole bytes, leaving fewer than 8 bits pending: up to 49 bits
enter between two flushes, so the hot loops flush once every 2 to 4 codes (2 or 4 pair codes), with no branch on
the fill level. Buffers carry spare bytes for the last store; the hot loops stop where the worst case of their
codes could reach the end of the buffer (one bound per chunk, :func:`_hot_end`), the other loops clamp each
store, so a store never leaves the buffer (an encoder fault shows in the bit count).
"""

from __future__ import annotations

import numba
import numpy as np

from entropy.codec.kernels.common import _store_be64

_LEN = np.uint64(0xFF)  # the length byte of an entry
_CODE = ~np.uint64(0xFF)  # the code bits of an entry (codes of up to 56 bits)
_U3 = np.uint64(3)
_U7 = np.uint64(7)
_U56 = np.uint64(56)
_U64 = np.uint64(64)
_SPARE = 16  # bytes after a buffer's payload: room for the last 8-byte store (and the appender's 8-byte loads)
_HOT_ROOM = 16  # the hot loops' last store (8 bytes) ends this far from the end of the buffer, or further


# ---- the bit writer ------------------------------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True, inline="always")
def _add(acc, nacc, e):
    """Append the entry ``e`` (code left-aligned, length in the low byte); ``nacc`` + its length must stay <= 56
    until the next flush."""
    return acc | (e >> nacc), nacc + (e & _LEN)


@numba.njit(cache=True, nogil=True, inline="always")
def _flush(out, at, acc, nacc, p):
    """Store the pending bits (at most 56) at byte ``at`` of ``out`` (``p``, or ``p`` clamped to the buffer by a loop
    that does not know it has room) and drop the whole bytes: returns the new (acc, nacc < 8, p)."""
    _store_be64(out, at, acc)
    return (acc & _CODE) << (nacc & _U56), nacc & _U7, p + np.int64(nacc >> _U3)


@numba.njit(cache=True, nogil=True, inline="always")
def _add4(out, acc, nacc, p, e0, e1, e2, e3, four):
    """Append four entries and flush: once (``four`` None: they take at most 48 bits) or after each two (at most 24
    bits each). Only in the hot loops: the store is not clamped."""
    acc, nacc = _add(acc, nacc, e0)
    acc, nacc = _add(acc, nacc, e1)
    if four is not None:  # (compile time)
        acc, nacc, p = _flush(out, p, acc, nacc, p)
    acc, nacc = _add(acc, nacc, e2)
    acc, nacc = _add(acc, nacc, e3)
    return _flush(out, p, acc, nacc, p)


@numba.njit(cache=True, nogil=True, inline="always")
def _hot_end(i, i1, p, hot, step, step_bytes):
    """Where a hot loop coding ``step`` values at a time from value ``i`` of a chunk ending at ``i1`` must stop:
    before the buffer's last ``_HOT_ROOM`` bytes, however long the codes (``step_bytes``: the most bytes one step
    writes). One bound per chunk instead of a check per step; the rest of the chunk goes through the clamped loop."""
    if p > hot:
        return i
    return min(i1, i + np.uint64((hot - p) // step_bytes) * np.uint64(step))


@numba.njit(cache=True, nogil=True, inline="always")
def _entry(x, n):
    """The entry of the ``n`` (1..32) low bits of ``x`` (raw escape bits, spliced bits)."""
    return ((np.uint64(x) << (_U64 - np.uint64(n))) & _CODE) | np.uint64(n)


def entries(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Entries (uint64) of a code table: ``code << (64 - length) | length``, 0 for symbols without a code."""
    ln = lengths.astype(np.uint64)
    c = codes.astype(np.uint64)
    has = ln > 0
    return np.where(has, (c << (np.uint64(64) - np.where(has, ln, 1))) | ln, 0).astype(np.uint64)
