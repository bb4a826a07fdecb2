"""Small arrays planned and coded once per content: a remembered plan and payload for arrays of a few values.

Saving tens of thousands of tiny tensors (biases, scalars, per-tensor parameters) spends its time on what every
array costs whatever its size - choosing a mode, building a code, dispatching the compiled kernels, the
self-check - not on coding. An array of at most :data:`SMALL_VALUES` values is described by its values relative
to its smallest one and the coding options; the plan of that description (mode, window, code, exact sizes) and
its payload do not depend on where the window lies (a value's symbol is its offset in the window; an escaped
value's raw bits are its offset in the escape range), so they are remembered: the first array of a description
is planned, coded and self-checked as usual, the next ones take its plan, moved to their window, and its payload.
Both tables are bounded (cleared when full). Thread-safe: a race stores equal entries.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from entropy.codec.params import MAX_ESCAPE_RANGE, CodecParams

__all__ = ["SMALL_VALUES", "key", "plan", "remember_plan", "payload", "remember_payload"]

#: Arrays of at most this many values are remembered.
SMALL_VALUES = 64
_MAX_ENTRIES = 1 << 12

_plans: dict[tuple, tuple] = {}
_payloads: dict[tuple, tuple[np.ndarray, bytes]] = {}


def key(values: list[int], lo: int, hi: int, options: tuple) -> tuple | None:
    """The description of an array whose values (C order, as Python ints) are ``values``, in [lo, hi], coded with
    ``options`` (hashable); None when it is not small."""
    if len(values) > SMALL_VALUES or hi - lo >= MAX_ESCAPE_RANGE:
        return None
    return tuple(v - lo for v in values), options


def _moved(p: CodecParams, by: int) -> CodecParams:
    if not by:
        return p
    return replace(p, value_min=p.value_min + by, escape_min=p.escape_min + by if p.escape_range else 0)


def plan(k: tuple | None, lo: int) -> tuple | None:
    """The remembered ``(params, codebook, accounting)`` of description ``k`` for an array whose smallest value is
    ``lo``, or None."""
    got = _plans.get(k) if k is not None else None
    if got is None:
        return None
    params, codebook, accounting = got
    return _moved(params, lo), codebook, accounting


def remember_plan(k: tuple | None, lo: int, params: CodecParams, codebook, accounting) -> None:
    """Remember the plan of description ``k`` (made for an array whose smallest value is ``lo``)."""
    if k is None:
        return
    if len(_plans) >= _MAX_ENTRIES:
        _plans.clear()
    _plans[k] = (_moved(params, -lo), codebook, accounting)


def payload(k: tuple | None) -> tuple[np.ndarray, bytes] | None:
    """The remembered ``(chunk bits, payload)`` of description ``k`` coded with its remembered plan, or None."""
    got = _payloads.get(k) if k is not None else None
    return None if got is None else (got[0].copy(), got[1])


def remember_payload(k: tuple | None, chunk_bits: np.ndarray, data: bytes) -> None:
    """Remember the self-checked payload of description ``k``."""
    if k is None:
        return
    if len(_payloads) >= _MAX_ENTRIES:
        _payloads.clear()
    _payloads[k] = (np.array(chunk_bits, copy=True), bytes(data))
