"""Speed of the quantization methods against their direct references (``huffquant bench``).

Rows ``{"name", "fast_s", "reference_s", "ratio", "target", "meets_target"}``:

* ``kl-calibration``: :func:`quant.kl.kl_threshold` on one 2048-bin |x| histogram (128 quantization bins, the
  TensorRT int8 setting) against :func:`kl_threshold_reference`, the direct per-threshold loop below that
  computes the same result; ratio = reference / fast, target >= 20.
* ``aciq-stats-per-channel``: :class:`quant.statistics.TensorStatistics` per-channel ACIQ statistics (min, max,
  mean, b, std; no histogram, no per-tensor b) of a [1, 256, 56, 56] float32 activation batch against one
  ``torch.std(x)`` pass over the whole tensor (a single reduction); ratio = stats / std, target <= 2.
* ``aciq-stats-vs-std-per-channel`` (information): the same statistics against the per-channel
  ``torch.std(x, dim=(0, 2, 3))`` (much slower than the whole-tensor std in torch on CPU), no target.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

__all__ = ["kl_threshold_reference", "kl_divergence_reference", "kl_histogram", "quant_rows"]


def _smooth(p: np.ndarray, eps: float) -> np.ndarray:
    zeros = p == 0
    n_zero = int(zeros.sum())
    n_nonzero = p.size - n_zero
    if n_nonzero == 0:
        raise ValueError("all-zero distribution")
    return np.where(zeros, eps, p - eps * n_zero / n_nonzero)


def kl_divergence_reference(hist: np.ndarray, nq: int, i: int, eps: float = 1e-4) -> float:
    """KL(p‖q) of keeping the first ``i`` bins with ``nq`` quantization bins, built directly (slow oracle)."""
    from scipy.stats import entropy

    hist = np.asarray(hist, dtype=np.float64)
    sliced = hist[:i]
    p = sliced.copy()
    p[i - 1] += hist[i:].sum()
    nonzero = p != 0
    m = i // nq
    q = np.zeros(i)
    for j in range(nq):
        start = j * m
        stop = i if j == nq - 1 else start + m
        total = sliced[start:stop].sum()
        norm = nonzero[start:stop].sum()
        if norm:
            q[start:stop] = total / norm
    q[~nonzero] = 0.0
    p = _smooth(p, eps)
    try:
        q = _smooth(q, eps)
    except ValueError:
        return float("inf")
    return float(entropy(p, q))


def kl_threshold_reference(hist: np.ndarray, bin_width: float, nq: int, eps: float = 1e-4) -> float:
    """Direct per-threshold KL calibration: one histogram slice, p, q and divergence per candidate."""
    hist = np.asarray(hist, dtype=np.float64)
    n = hist.size
    if nq > n:
        return n * bin_width
    best_i, best = n, float("inf")
    for i in range(nq, n + 1):
        d = kl_divergence_reference(hist, nq, i, eps)
        if d < best:
            best_i, best = i, d
    return best_i * bin_width


def _time(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # warm up
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _row(name: str, fast: float, ref: float, ratio: float, target: str, ok: bool | None,
         threads: int = 1) -> dict[str, Any]:
    """One row; ``threads``: the threads both timings ran on (torch's intra-op threads for torch code)."""
    return {"name": name, "threads": threads, "fast_s": fast, "reference_s": ref, "ratio": ratio,
            "target": target, "meets_target": ok}


def kl_histogram(seed: int = 0, n: int = 1_000_000, bins: int = 2048) -> tuple[np.ndarray, float]:
    """A Laplace-like activation's |x| histogram (bins over [0, max|x|]) and its bin width."""
    rng = np.random.default_rng(seed)
    x = np.abs(rng.laplace(0.0, 1.0, n))
    hist, edges = np.histogram(x, bins=bins, range=(0.0, float(x.max())))
    return hist.astype(np.float64), float(edges[1] - edges[0])


def quant_rows(repeats: int = 3) -> list[dict[str, Any]]:
    """Benchmark rows of the quantization methods (see the module docstring)."""
    import torch

    from quant.kl import kl_threshold
    from quant.statistics import TensorStatistics

    rows = []
    hist, w = kl_histogram()
    fast = _time(lambda: kl_threshold(hist, w, 128), repeats)
    ref = _time(lambda: kl_threshold_reference(hist, w, 128), 1)
    same = kl_threshold(hist, w, 128) == kl_threshold_reference(hist, w, 128)
    ratio = ref / fast
    rows.append(_row("kl-calibration" + ("" if same else " (RESULTS DIFFER)"), fast, ref, ratio, ">= 20",
                     bool(ratio >= 20 and same)))

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 56, 56, generator=gen) * 2.0 + 0.5

    def stats() -> None:
        TensorStatistics(axis=1, histogram=False, tensor_stats=False).update(x).channel_view()

    n = max(repeats, 5) * 10  # sub-millisecond timings: best of many runs
    t_stats = _time(stats, n)
    t_all = _time(lambda: torch.std(x), n)
    r = t_stats / t_all
    nt = torch.get_num_threads()
    rows.append(_row("aciq-stats-per-channel", t_stats, t_all, r, "<= 2", bool(r <= 2), nt))
    t_ch = _time(lambda: torch.std(x, dim=(0, 2, 3)), n)
    rows.append(_row("aciq-stats-vs-std-per-channel", t_stats, t_ch, t_stats / t_ch, "info", None, nt))
    return rows
