"""Clipping ranges [lo, hi] per tensor or per channel, from data or from :class:`TensorStatistics`.

Methods (``CLIP_METHODS``; formulas in METHODS.md):

* ``minmax``: the observed range (no clipping);
* ``aciq-laplace`` / ``aciq-gauss``: α = k(L)·b or k(L)·σ with k solved from the MSE model (:mod:`quant.aciq`),
  one-sided for unsigned ranges; any real level count, per-channel level counts allowed;
* ``<k>sigma`` (e.g. ``2sigma``, ``2.5sigma``): α = k·σ;
* ``percentile:<p>`` (e.g. ``percentile:99.99``): the p-th percentile (and the (100-p)-th for signed);
* ``mse``: the range minimizing the empirical quantization MSE over a grid of shrink factors t·[min, max]
  (then a finer grid around the best), evaluated with the real quantizer;
* ``kl``: TensorRT-style KL calibration of the |x| histogram (:mod:`quant.kl`); nq = levels // 2 quantization
  bins for signed ranges [-T, T], nq = levels for unsigned [0, T].

How α becomes a range (``window``): ``"mean"`` (default) centres [μ − α, μ + α] on the mean and intersects it
with [min, max]; ``"reference"`` is the reference code's ``alpha2DeltaOffset``: lo = max(min, μ − α),
hi = lo + 2α (shifted up, never capped); ``"zero"`` uses [−α, α] ∩ [min, max] (the paper's zero-mean
model). Unsigned: lo = 0, hi = max(μ, 0) + α, capped at max for "mean" and "zero" (uncapped for "reference";
"zero" uses hi = α).

From :class:`TensorStatistics` (offline calibration) the range's ends are the estimated *support* of the
values (``extrapolate=True``, default): the observed extremes pushed out by the gap between the two most extreme
per-sample values (see :mod:`quant.statistics`), because a few calibration images underestimate the range of
unseen images. ``minmax`` returns that support, and every other method is capped by it instead of the observed
[min, max]. From data (weights, dynamic statistics) the observed range is the support.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import numpy as np
import torch

from quant.aciq import alpha_multipliers
from quant.errors import CalibrationError, QuantError
from quant.kl import kl_thresholds
from quant.quantizer import as_tensor, fake_quantize
from quant.statistics import StatView, TensorStatistics

__all__ = ["CLIP_METHODS", "clip_range", "parse_method", "alpha_to_range"]

logger = logging.getLogger(__name__)

CLIP_METHODS = ("minmax", "aciq-laplace", "aciq-gauss", "<k>sigma", "percentile:<p>", "mse", "kl")
WINDOWS = ("mean", "reference", "zero")

_SIGMA = re.compile(r"^([0-9]*\.?[0-9]+)(sigma|std)$")
_PCT = re.compile(r"^percentile:([0-9]*\.?[0-9]+)$")


def parse_method(method: str) -> tuple[str, float | None]:
    """Normalize a method name: returns (kind, parameter), kind one of minmax/laplace/gauss/sigma/percentile/mse/kl."""
    m = method.strip().lower()
    if m in ("minmax", "no", "none"):
        return "minmax", None
    if m in ("aciq-laplace", "laplace", "aciq"):
        return "laplace", None
    if m in ("aciq-gauss", "gauss", "aciq-gaussian", "gaus"):
        return "gauss", None
    if m in ("mse", "kl"):
        return m, None
    g = _SIGMA.match(m)
    if g:
        return "sigma", float(g.group(1))
    g = _PCT.match(m)
    if g:
        p = float(g.group(1))
        if not 0 < p <= 100:
            raise QuantError(f"percentile must be in (0, 100], got {p}")
        return "percentile", p
    raise QuantError(f"unknown clipping method {method!r}; expected one of {CLIP_METHODS}")


def _levels_tensor(levels: Any, n: int | None, device: torch.device) -> torch.Tensor:
    lv = as_tensor(levels).to(device=device, dtype=torch.float64)
    if lv.dim() > 1 or (lv.dim() == 1 and n is None and lv.numel() != 1):
        raise QuantError(f"levels must be a scalar or one value per channel, got shape {tuple(lv.shape)}")
    if lv.dim() == 1 and n is not None and lv.numel() not in (1, n):
        raise QuantError(f"{lv.numel()} level counts for {n} channels")
    if not torch.isfinite(lv).all() or (lv < 1).any():
        raise QuantError(f"levels must be >= 1, got {lv.tolist()}")
    if n is None:
        return lv.reshape(())
    return lv.expand(n).clone() if lv.numel() in (1, n) else lv


def alpha_to_range(alpha: torch.Tensor, v: StatView, signed: bool, window: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """Turn clipping values α (per channel or scalar) into [lo, hi] using the statistics' mean/min/max."""
    if window not in WINDOWS:
        raise QuantError(f"unknown window {window!r}; expected one of {WINDOWS}")
    a = alpha.to(torch.float64)
    if signed:
        if window == "mean":
            lo = torch.maximum(v.mean - a, v.min)
            hi = torch.minimum(v.mean + a, v.max)
        elif window == "reference":
            lo = torch.maximum(v.min, v.mean - a)
            hi = lo + 2 * a
        else:
            lo = torch.maximum(-a, torch.minimum(v.min, torch.zeros_like(a)))
            hi = torch.minimum(a, torch.maximum(v.max, torch.zeros_like(a)))
        return lo, torch.maximum(hi, lo)
    lo = torch.zeros_like(a)
    if window == "zero":
        hi = torch.minimum(a, torch.clamp(v.max, min=0.0))
    else:
        hi = torch.clamp(v.mean, min=0.0) + a
        if window == "mean":
            hi = torch.minimum(hi, torch.clamp(v.max, min=0.0))
    return lo, hi


def _flat_channels(x: torch.Tensor, per_channel: bool, axis: int) -> torch.Tensor:
    """Data as [C, n] (C = 1 per tensor)."""
    if not per_channel:
        return x.reshape(1, -1)
    if not -x.dim() <= axis < x.dim():
        raise QuantError(f"axis {axis} out of range for shape {tuple(x.shape)}")
    return x.movedim(axis, 0).reshape(x.shape[axis], -1)


def _percentile_data(x2: torch.Tensor, q: float) -> torch.Tensor:
    xs = x2.to(torch.float64)
    if xs.numel() <= 16_000_000:
        return torch.quantile(xs, q, dim=1).cpu()
    return torch.from_numpy(np.quantile(xs.cpu().numpy(), q, axis=1))


def _percentile_hist(hist: torch.Tensor, R: float, q: float) -> torch.Tensor:
    """q-quantile from [.., 2B] counts over [-R, R] (linear inside the bin)."""
    h = hist.to(torch.float64)
    if h.dim() == 1:
        h = h[None]
    n2 = h.shape[1]
    w = 2 * R / n2
    cum = torch.cumsum(h, 1)
    tot = cum[:, -1:]
    target = q * tot
    k = torch.searchsorted(cum, target).clamp(max=n2 - 1)
    prev = torch.where(k > 0, torch.gather(cum, 1, (k - 1).clamp(min=0)), torch.zeros_like(target))
    cnt = torch.gather(h, 1, k)
    frac = torch.where(cnt > 0, (target - prev) / cnt, torch.zeros_like(cnt)).clamp(0, 1)
    return (-R + (k.to(torch.float64) + frac) * w).reshape(-1)


def _mse_search(vals: torch.Tensor, weights: torch.Tensor | None, mn: torch.Tensor, mx: torch.Tensor,
                levels: torch.Tensor, signed: bool, n_grid: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row range minimizing Σ w·(x − Q(x))² over shrink factors t of [min(mn,0), max(mx,0)]."""
    dev = vals.device
    mn, mx, levels = mn.to(dev), mx.to(dev), levels.to(dev)
    lo0 = torch.clamp(mn, max=0.0) if signed else torch.zeros_like(mn)
    hi0 = torch.clamp(mx, min=0.0)
    lv = torch.round(levels).to(torch.int64)

    def err(t: torch.Tensor) -> torch.Tensor:
        fq = fake_quantize(vals, lo0 * t, hi0 * t, lv, axis=0)
        d = (vals - fq).to(torch.float64) ** 2
        return (d * weights).sum(1) if weights is not None else d.sum(1)

    C = vals.shape[0]
    best_t = torch.ones(C, dtype=torch.float64, device=vals.device)
    best_e = err(best_t)
    grid = torch.linspace(1.0 / n_grid, 1.0, n_grid, dtype=torch.float64)  # Python floats below
    for t in grid[:-1]:
        tt = torch.full((C,), float(t), dtype=torch.float64, device=vals.device)
        e = err(tt)
        better = e < best_e
        best_e = torch.where(better, e, best_e)
        best_t = torch.where(better, tt, best_t)
    step = 1.0 / n_grid
    for f in torch.linspace(-1.0, 1.0, 21, dtype=torch.float64):  # finer grid around each channel's best
        tt = torch.clamp(best_t + float(f) * step, min=step / 10, max=1.0)
        e = err(tt)
        better = e < best_e
        best_e = torch.where(better, e, best_e)
        best_t = torch.where(better, tt, best_t)
    return (lo0 * best_t).cpu(), (hi0 * best_t).cpu()


def _kl_data_hist(x2: torch.Tensor, signed: bool, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row histogram of |x| (signed) or max(x, 0) (unsigned) over [0, max] and the bin widths."""
    a = x2.abs() if signed else torch.clamp(x2, min=0.0)
    top = a.amax(1).to(torch.float64)
    w = torch.where(top > 0, top / bins, torch.ones_like(top))
    idx = torch.floor(a.to(torch.float64) / w[:, None]).to(torch.int64).clamp_(0, bins - 1)
    C = x2.shape[0]
    off = (torch.arange(C, device=x2.device) * bins)[:, None]
    h = torch.bincount((idx + off).reshape(-1), minlength=C * bins).reshape(C, bins)
    return h, w


def clip_range(source: Any, method: str, levels: Any, *, signed: bool | None = None, per_channel: bool = False,
               axis: int = 1, window: str = "mean", kl_bins: int = 2048,
               extrapolate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipping range ``(lo, hi)`` (values, float64 tensors: shape () per tensor, (C,) per channel).

    ``source`` is a tensor/array (``axis`` = its channel axis when ``per_channel``; 1 for NCHW activations,
    0 for weights) or a :class:`TensorStatistics` (its own axis is used). ``levels`` (codes per channel,
    scalar or per channel) sets the ACIQ multiplier, the KL bin count and the MSE quantizer. ``signed=None``
    infers it (unsigned when min >= 0); unsigned gives lo = 0 and the one-sided ACIQ model. ``window``: see the
    module docstring. Histogram-based methods from statistics use the collected histogram (per-channel ones
    need ``channel_histograms=True``). ``extrapolate``: from statistics, cap at the estimated support rather than
    the observed [min, max] (module docstring).
    """
    kind, param = parse_method(method)
    is_stats = isinstance(source, TensorStatistics)
    x2: torch.Tensor | None = None
    if is_stats:
        if per_channel and source.axis is None:
            raise QuantError("per-channel clipping needs statistics collected with a channel axis")
        v = source.view(per_channel)
        if signed is None:
            signed = bool((v.min < 0).any())  # from what was seen, not from the extrapolated support
        if extrapolate:
            v = v.with_support()
    else:
        x = as_tensor(source)
        if not x.is_floating_point():
            x = x.to(torch.float32)
        if x.numel() == 0:
            raise QuantError(f"cannot compute a clipping range of an empty tensor (shape {tuple(x.shape)})")
        x2 = _flat_channels(x, per_channel, axis)
        st = TensorStatistics(axis=0, histogram=False, tensor_stats=False).update(x2)
        cv = st.channel_view()
        v = cv if per_channel else StatView(*(t[0] if isinstance(t, torch.Tensor) else t for t in
                                              (cv.count, cv.min, cv.max, cv.mean, cv.b, cv.std)), None, 0.0)
    n = int(v.mean.shape[0]) if per_channel else None
    lv = _levels_tensor(levels, n, v.mean.device)
    if signed is None:
        signed = bool((v.min < 0).any())
    if kind == "minmax":
        lo = v.min.clone() if signed else torch.zeros_like(v.min)
        hi = v.max.clone() if signed else torch.clamp(v.max, min=0.0)
        return lo, hi
    if kind in ("laplace", "gauss"):
        k = torch.from_numpy(alpha_multipliers(lv.cpu().numpy(), kind, one_sided=not signed)).to(v.mean.device)
        scale = v.b if kind == "laplace" else v.std
        if not bool(torch.isfinite(scale).all()):
            raise CalibrationError("mean absolute deviation b is missing (statistics collected with "
                                   "tensor_stats=False) or not finite")
        a = k * scale
        return alpha_to_range(a, v, signed, window)
    if kind == "sigma":
        return alpha_to_range(param * v.std, v, signed, window)
    if kind == "percentile":
        q = param / 100.0
        if x2 is not None:
            hi = _percentile_data(x2, q)
            lo = _percentile_data(x2, 1.0 - q) if signed else None
        else:
            if v.hist is None:
                raise QuantError("percentile clipping from statistics needs a histogram"
                                 + (" per channel (channel_histograms=True)" if per_channel else ""))
            hi = _percentile_hist(v.hist, v.hist_range, q)
            lo = _percentile_hist(v.hist, v.hist_range, 1.0 - q) if signed else None
        if not per_channel:
            hi = hi.reshape(())
            lo = lo.reshape(()) if lo is not None else None
        if not signed:
            hi = torch.minimum(torch.clamp(hi, min=0.0), torch.clamp(v.max, min=0.0))
            return torch.zeros_like(hi), hi
        lo = torch.maximum(lo, v.min)
        hi = torch.minimum(hi, v.max)
        return torch.minimum(lo, hi), hi
    if kind == "mse":
        if x2 is not None:
            vals, wts = x2, None
            mn = v.min.reshape(-1)
            mx = v.max.reshape(-1)
        else:
            if v.hist is None:
                raise QuantError("mse clipping from statistics needs a histogram"
                                 + (" per channel (channel_histograms=True)" if per_channel else ""))
            h = v.hist.reshape(-1, v.hist.shape[-1]).to(torch.float64)
            nb = h.shape[1]
            centers = -v.hist_range + (torch.arange(nb, dtype=torch.float64) + 0.5) * (2 * v.hist_range / nb)
            vals, wts = centers.expand(h.shape[0], nb).to(torch.float32).contiguous(), h
            mn = v.min.reshape(-1)
            mx = v.max.reshape(-1)
        lo, hi = _mse_search(vals, wts, mn, mx, lv.reshape(-1).expand(vals.shape[0]), signed)
        if not per_channel:
            lo, hi = lo.reshape(()), hi.reshape(())
        return lo, hi
    # kl
    lvn = torch.round(lv.reshape(-1)).to(torch.int64).cpu().numpy()
    nq = np.maximum(lvn // 2, 1) if signed else lvn
    if x2 is not None:
        h, w = _kl_data_hist(x2, signed, kl_bins)
        w_np = w.cpu().numpy()
    else:
        if v.hist is None:
            raise QuantError("kl clipping from statistics needs a histogram"
                             + (" per channel (channel_histograms=True)" if per_channel else ""))
        h = v.abs_hist() if signed else v.positive_hist()
        h = h.reshape(-1, h.shape[-1])
        w_np = np.full(h.shape[0], v.hist_range / h.shape[1])
    nq = np.broadcast_to(nq, (h.shape[0],))
    t = torch.from_numpy(kl_thresholds(h, 1.0, nq) * w_np).to(v.mean.device)
    if not per_channel:
        t = t.reshape(())
    if signed:
        return torch.maximum(-t, torch.minimum(v.min, torch.zeros_like(t))), torch.minimum(t, torch.clamp(v.max, min=0.0))
    return torch.zeros_like(t), torch.minimum(t, torch.clamp(v.max, min=0.0))
