"""KL-divergence calibration (TensorRT / MXNet style), vectorized over all candidate thresholds.

Input: a histogram of |x| (or of max(x, 0)) in N equal bins over [0, N·w]. For each candidate i = nq..N
(threshold T_i = i·w, nq = number of quantization bins over [0, T]):

* p = the first i bins, with every count beyond bin i added to bin i-1 (the clipped outliers);
* the first i bins (without outliers) are merged into nq groups of ⌊i/nq⌋ bins, the last group taking the
  remainder up to bin i (MXNet's port stops the last group one bin early — an inherited off-by-one that this
  implementation does not copy); each group's count is spread evenly over the bins where p is non-zero: q;
* both are smoothed (zeros get ε = 1e-4, non-zeros lose ε·n_zero/n_nonzero) and scored by KL(p‖q) after
  normalization (scipy.stats.entropy). The threshold with the smallest divergence wins (first one on ties).

All candidates are evaluated with prefix sums and [candidates × bins] arrays in chunks, no per-candidate loop.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quant.errors import QuantError

__all__ = ["kl_threshold", "kl_divergences", "kl_thresholds"]

_EPS = 1e-4


def _check_hist(hist: Any) -> np.ndarray:
    h = np.asarray(hist.detach().cpu().numpy() if hasattr(hist, "detach") else hist, dtype=np.float64)
    if h.ndim != 1 or h.size == 0:
        raise QuantError(f"histogram must be a non-empty 1-D array, got shape {h.shape}")
    if not np.all(np.isfinite(h)) or np.any(h < 0):
        raise QuantError("histogram counts must be finite and >= 0")
    return h


def _bin_width(bin_width_or_edges: Any, n: int) -> float:
    e = np.asarray(bin_width_or_edges, dtype=np.float64)
    if e.ndim == 0:
        w = float(e)
    else:
        if e.size != n + 1:
            raise QuantError(f"{e.size} histogram edges for {n} bins (expected {n + 1})")
        if abs(e[0]) > 1e-12 * max(1.0, abs(e[-1])):
            raise QuantError("KL calibration expects a histogram of |x| starting at 0")
        w = float(e[-1] - e[0]) / n
    if not np.isfinite(w) or w <= 0:
        raise QuantError(f"bin width must be > 0, got {w}")
    return w


def kl_divergences(hist: Any, nq: int, *, eps: float = _EPS, chunk: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """KL divergence of every candidate: returns ``(i, kl)`` with i = nq..N bins kept (inf where q is all 0)."""
    h = _check_hist(hist)
    nq = int(nq)
    if nq < 1:
        raise QuantError(f"number of quantization bins must be >= 1, got {nq}")
    N = h.size
    if nq > N:
        return np.array([N]), np.array([0.0])
    C = np.concatenate(([0.0], np.cumsum(h)))
    nzh = h != 0
    Z = np.concatenate(([0], np.cumsum(nzh)))
    total = C[-1]
    cand = np.arange(nq, N + 1)
    out = np.empty(cand.size)
    g = np.arange(nq)
    for a in range(0, cand.size, chunk):
        I = cand[a:a + chunk]
        Ic = I[:, None]
        Ii = I.astype(np.float64)
        outl = total - C[I]  # clipped counts, added to bin i-1 of p
        h_end = h[I - 1]
        p_end = h_end + outl
        end_fix = (p_end != 0).astype(np.int64) - (h_end != 0).astype(np.int64)
        # groups of q: [start, stop) per candidate, the last one running to bin i
        m = (I // nq)[:, None]
        gs = g[None, :] * m
        ge = np.where(g[None, :] == nq - 1, Ic, gs + m)
        qsum = C[ge] - C[gs]  # sliced-histogram counts per group (no outliers)
        nzg = Z[ge] - Z[gs]
        nzg[:, -1] += end_fix  # non-zero bins of p per group
        psum = qsum.copy()
        psum[:, -1] += outl  # p mass per group
        qpos = (qsum > 0) & (nzg > 0)
        n_p = nzg.sum(1)
        n_q = np.where(qpos, nzg, 0).sum(1)
        eps_p = eps * (Ii - n_p) / np.maximum(n_p, 1)
        eps_q = eps * (Ii - n_q) / np.maximum(n_q, 1)
        # bins where p == 0 have p~ = q~ = eps and add nothing; the rest:
        #   Σ p~ log p~  -  Σ_groups log q~_g · Σ_{k in g, p_k != 0} p~_k
        K = int(I[-1]) - 1
        hk = h[:K]
        body = (np.arange(K)[None, :] < (Ic - 1)) & (hk != 0)[None, :]  # bins k < i-1 with p_k = h_k != 0
        D = np.where(body, hk[None, :] - eps_p[:, None], 1.0)
        plogp = (D * np.log(D)).sum(1)
        pe = p_end - eps_p
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = plogp + np.where(p_end != 0, pe * np.log(np.where(p_end != 0, pe, 1.0)), 0.0)
            qt = np.where(qpos, qsum / np.maximum(nzg, 1) - eps_q[:, None], eps)
            cross = (np.log(qt) * (psum - nzg * eps_p[:, None])).sum(1, where=nzg > 0)
            P = total
            Q = C[I]
            kl = (plogp - cross) / P + np.log(Q / P)
        out[a:a + chunk] = np.where((n_q == 0) | (n_p == 0), np.inf, kl)
    return cand, out


def kl_threshold(hist: Any, bin_width_or_edges: Any, levels: int, *, eps: float = _EPS) -> float:
    """Threshold T (values) minimizing KL(p‖q) for ``levels`` quantization bins over [0, T].

    ``hist``: counts of |x| (signed data) or max(x, 0) (unsigned) in N bins over [0, N·w]; ``bin_width_or_edges``
    is w or the N+1 edges (starting at 0). TensorRT's int8 setting is N = 2048, levels = 128. If levels > N the
    whole range is kept. An all-zero histogram gives 0.
    """
    h = _check_hist(hist)
    w = _bin_width(bin_width_or_edges, h.size)
    if h.sum() == 0:
        return 0.0
    cand, kl = kl_divergences(h, levels, eps=eps)
    if not np.isfinite(kl).any():
        return float(h.size * w)
    return float(cand[int(np.argmin(kl))] * w)


def kl_thresholds(hists: Any, bin_width: float, levels: Any, *, eps: float = _EPS) -> np.ndarray:
    """:func:`kl_threshold` for each row of a [C, N] histogram array (per channel), levels scalar or per row."""
    H = np.asarray(hists.detach().cpu().numpy() if hasattr(hists, "detach") else hists, dtype=np.float64)
    if H.ndim != 2:
        raise QuantError(f"expected a [channels, bins] histogram array, got shape {H.shape}")
    lv = np.broadcast_to(np.asarray(levels), (H.shape[0],))
    return np.array([kl_threshold(H[c], bin_width, int(lv[c]), eps=eps) for c in range(H.shape[0])])
