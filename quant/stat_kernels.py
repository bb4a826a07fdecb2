"""Compiled per-channel moment kernel for :class:`quant.statistics.TensorStatistics` on CPU float32 data.

One call reads each channel's row twice: pass 1 takes min, max and sum; pass 2 takes Σ(x − c)² and Σ|x − c|
about a centre ``c`` that depends on pass 1. Rows are processed one per thread, so a row of a feature map
(a few thousand to a few hundred thousand values) is still in cache for pass 2: the cost is close to one
streaming pass over the tensor. The ``_LANES`` independent accumulators let LLVM keep min/max in SIMD
registers (a single scalar min/max chain does not vectorize); float32 lane sums are flushed into float64
every ``_LANES * _FLUSH`` values so long rows keep float64-level accuracy. Pass 2 also takes the max and min
of each segment of ``seg`` consecutive values of a row (one segment per image of a batch). The kernel is compiled
without fastmath: with it, the parallel kernel as freshly compiled and as loaded from numba's cache were optimized
differently (cf. numba issue 10617) and summed in different orders, so statistics, clipping ranges and codes
depended on whether the cache was warm. Without reassociation every compilation gives the same sums.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["channel_moments"]

_LANES = 16
_FLUSH = 256  # lane-sum flush period, in groups of _LANES values (4096 values)


@nb.njit(parallel=True, fastmath=False, cache=True, nogil=True)  # no fastmath: see the module docstring
def _moments(x: np.ndarray, prev_mean: np.ndarray, n_prev: float, seg: int, out: np.ndarray,
             seg_max: np.ndarray, seg_min: np.ndarray) -> None:  # pragma: no cover
    C, n = x.shape
    L = _LANES
    nfull = n - n % L
    for c in nb.prange(C):
        row = x[c]
        mxl = np.full(L, row[0])
        mnl = np.full(L, row[0])
        sl = np.zeros(L, np.float32)
        s = 0.0
        for b0 in range(0, nfull, L):
            for j in range(L):
                v = row[b0 + j]
                mxl[j] = max(mxl[j], v)
                mnl[j] = min(mnl[j], v)
                sl[j] += v
            if (b0 // L) % _FLUSH == _FLUSH - 1:
                s += sl.sum()
                sl[:] = 0
        s += sl.sum()
        mx = mxl.max()
        mn = mnl.min()
        for i in range(nfull, n):
            v = row[i]
            s += v
            mx = max(mx, v)
            mn = min(mn, v)
        # centre: the running mean after this batch (see TensorStatistics.update)
        centre = prev_mean[c] * (n_prev / (n_prev + n)) + s / (n_prev + n)
        cf = np.float32(centre)
        sq = 0.0
        ab = 0.0
        for k in range(n // seg):
            smx = row[k * seg]
            smn = row[k * seg]
            for b0 in range(k * seg, (k + 1) * seg, L * _FLUSH):
                b1 = min((k + 1) * seg, b0 + L * _FLUSH)
                sqb = np.float32(0.0)
                abb = np.float32(0.0)
                for i in range(b0, b1):
                    v = row[i]
                    d = v - cf
                    sqb += d * d
                    abb += abs(d)
                    smx = max(smx, v)
                    smn = min(smn, v)
                sq += sqb
                ab += abb
            seg_max[c, k] = smx
            seg_min[c, k] = smn
        out[0, c] = mx
        out[1, c] = mn
        out[2, c] = s
        out[3, c] = np.float32(centre)
        out[4, c] = np.sqrt(sq)
        out[5, c] = ab


def channel_moments(x: np.ndarray, prev_mean: np.ndarray | None, n_prev: float,
                    segment: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row statistics of a C-contiguous float32 array ``x`` of shape (C, n), n >= 1.

    Returns a (6, C) float64 array: max, min, sum, centre, ‖x − centre‖₂ and Σ|x − centre|, where centre is the
    running mean after merging these n values into ``n_prev`` earlier ones of mean ``prev_mean`` (the batch
    mean when ``prev_mean`` is None), rounded to float32 as the subtraction uses it; and the (C, n / segment)
    float32 maxima and minima of each run of ``segment`` values (default n: one segment; n must be a multiple).
    """
    C, n = x.shape
    seg = n if segment is None else int(segment)
    if seg < 1 or n % seg:
        raise ValueError(f"segment length {seg} does not divide the row length {n}")
    pm = np.zeros(C, np.float64) if prev_mean is None else np.ascontiguousarray(prev_mean, dtype=np.float64)
    out = np.empty((6, C), np.float64)
    seg_max = np.empty((C, n // seg), np.float32)
    seg_min = np.empty((C, n // seg), np.float32)
    _moments(x, pm, float(n_prev) if prev_mean is not None else 0.0, seg, out, seg_max, seg_min)
    return out, seg_max, seg_min
