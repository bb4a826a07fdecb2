"""The channel-rows view of a tensor: row ``c`` holds every value of channel ``c`` along a channel axis, in the
order of the tensor's other dimensions (C order). Streams of a tensor with a channel axis are made of whole rows.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["channel_rows", "from_rows", "normalize_axis"]


def normalize_axis(axis: int, ndim: int, what: str = "tensor") -> int:
    """``axis`` in ``0..ndim-1`` (negative counts from the end); raises ValueError when out of range."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"{what}: channel axis must be an integer, got {axis!r}")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(f"{what}: channel axis {axis} out of range for {ndim} dimensions")
    return int(axis) % ndim


def channel_rows(values: np.ndarray, axis: int | None) -> np.ndarray:
    """The tensor as channel rows ``[C, M]`` (a view when already channel-major, else one copy); ``axis=None``
    (or a 0-d tensor): one row."""
    a = np.asarray(values)
    if axis is None or a.ndim == 0:
        return np.ascontiguousarray(a).reshape(1, -1)
    ax = int(axis) % a.ndim
    M = math.prod(d for i, d in enumerate(a.shape) if i != ax)  # (explicit: -1 is ambiguous for 0 channels)
    if ax == 0:
        return np.ascontiguousarray(a).reshape(a.shape[0], M)
    return np.ascontiguousarray(np.moveaxis(a, ax, 0)).reshape(a.shape[ax], M)


def from_rows(rows: np.ndarray, shape: tuple[int, ...], axis: int | None) -> np.ndarray:
    """Inverse of :func:`channel_rows`: the C-contiguous tensor of ``shape`` with channels along ``axis``."""
    if axis is None or len(shape) == 0:
        return rows.reshape(shape)
    ax = int(axis) % len(shape)
    moved = rows.reshape((shape[ax],) + tuple(d for i, d in enumerate(shape) if i != ax))
    return np.ascontiguousarray(np.moveaxis(moved, 0, ax)) if ax else moved
