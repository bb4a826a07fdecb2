"""Running statistics of a tensor over calibration batches: per channel and per tensor min, max, mean, mean
absolute deviation b, std, and a histogram for KL calibration. Clipping works from these without the data.

Estimators (see METHODS.md, "Statistics"):

* mean and variance are merged exactly across batches (Chan et al. pairwise update, float64 accumulators);
  each batch's second moment is taken about a centre close to its mean (two-pass within the batch), so there is
  no ``E[x²] − E[x]²`` cancellation. ``std`` is the unbiased (n − 1) standard deviation, as in the reference code.
* ``b = E|x − μ|`` (mean absolute deviation about the mean, as the reference code). It cannot be merged exactly
  in one pass, so each batch adds ``Σ|x − m_k|`` with ``m_k`` the running mean *after* that batch. With one batch
  this is exact; with several, each term is off by at most ``|μ − m_k|`` per value (usually a small fraction
  of b once a few batches are in). Call :meth:`TensorStatistics.refine_mad` with the same batches again for
  the exact two-pass value.
* the histogram covers ``[-R, R]`` with ``2·bins`` equal bins (0 is a bin edge), R a power of two
  ``>= max|x|`` of the first batch; when a batch exceeds R, R doubles and pairs of bins merge (exact, because
  edges align), so every value ever seen is counted exactly once. ``abs_histogram()`` folds it to ``bins`` bins
  of |x| over [0, R] (TensorRT-style KL input); ``positive_histogram()`` keeps x >= 0 and counts negatives in
  the first bin (the values a fused ReLU maps to 0).
* the *support* of a channel (``StatView.support_min``/``support_max``): N calibration images underestimate the
  range of unseen ones, most for channels that are rarely active. Each sample (an image: the leading dimensions
  before the channel axis) gives its own max and min; the two largest per-sample maxima m₁ ≥ m₂ give the upper
  end ``m₁ + k·(m₁ − m₂)`` with ``k = SUPPORT_GAPS`` (4), and likewise below. With k = 1 this is the
  Robson–Whitlock estimator of a bounded distribution's end point from its top two order statistics; activations
  are not bounded, and new images go further: on the built-in calibration pool, split into the images learned
  from and its held-out quarter (:mod:`quant.images`), the held-out images exceed ``m₁ + (m₁ − m₂)`` of the rest
  in 17% of the channels and ``m₁ + 4(m₁ − m₂)`` in 9% (the median exceedance is below 0, the 90th percentile
  3.3 gaps). k = 4 keeps 16-bit ranges from clipping unseen images (W16A16 keeps the decisions) at a cost of
  2 bits of resolution only where the gap is as large as the range. With fewer than two samples the support is
  the observed [min, max].
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from quant.errors import CalibrationError, QuantError
from quant.quantizer import as_tensor
from quant.stat_kernels import channel_moments

__all__ = ["TensorStatistics", "StatView"]

logger = logging.getLogger(__name__)

_FORMAT = "huffquant.tensor_statistics.v1"


@dataclass(frozen=True)
class StatView:
    """Finished statistics at one granularity (tensors of shape (C,) per channel, () per tensor; float64)."""

    count: torch.Tensor
    min: torch.Tensor
    max: torch.Tensor
    mean: torch.Tensor
    b: torch.Tensor  # mean absolute deviation about the mean
    std: torch.Tensor  # unbiased
    hist: torch.Tensor | None  # counts over [-R, R], 2*bins bins (shape (2B,) or (C, 2B)); None if not kept
    hist_range: float  # R
    support_min: torch.Tensor | None = None  # estimated lower end of the range (None: min)
    support_max: torch.Tensor | None = None  # estimated upper end of the range (None: max)

    @property
    def per_channel(self) -> bool:
        return self.mean.dim() == 1

    def with_support(self) -> "StatView":
        """This view with ``min``/``max`` replaced by the estimated support (see the module docstring)."""
        lo = self.min if self.support_min is None else self.support_min
        hi = self.max if self.support_max is None else self.support_max
        return replace(self, min=lo, max=hi)

    def abs_hist(self) -> torch.Tensor:
        """Counts of |x| in ``bins`` bins over [0, R] (last dimension)."""
        if self.hist is None:
            raise CalibrationError("no histogram was collected (histogram=False)")
        B = self.hist.shape[-1] // 2
        return self.hist[..., B:] + self.hist[..., :B].flip(-1)

    def positive_hist(self) -> torch.Tensor:
        """Counts of max(x, 0) in ``bins`` bins over [0, R] (negatives go to the first bin)."""
        if self.hist is None:
            raise CalibrationError("no histogram was collected (histogram=False)")
        B = self.hist.shape[-1] // 2
        h = self.hist[..., B:].clone()
        h[..., 0] += self.hist[..., :B].sum(-1)
        return h


def _pow2_ceil(v: float) -> float:
    if v <= 0 or not math.isfinite(v):
        return 1.0
    return float(2.0 ** math.ceil(math.log2(v)))


SUPPORT_GAPS = 4.0  # k of the support m₁ + k·(m₁ − m₂) (module docstring)


def _support(mn: torch.Tensor, mx: torch.Tensor, smin: torch.Tensor | None,
             smax: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Estimated ends of the range: m₁ + k·(m₁ − m₂) from the two most extreme per-sample values (module
    docstring)."""
    if smax is None or smin is None:
        return mn, mx
    second_max, second_min = smax[..., 1], smin[..., 1]
    hi = torch.where(torch.isfinite(second_max), mx + SUPPORT_GAPS * (mx - second_max), mx)
    lo = torch.where(torch.isfinite(second_min), mn - SUPPORT_GAPS * (second_min - mn), mn)
    return lo, hi


class TensorStatistics:
    """Accumulates statistics of a tensor over batches.

    ``axis`` is the channel axis (1 for NCHW activations, 0 for weights, None for per tensor only). Batches may
    live on any device; the accumulated statistics (and the views) are float64 CPU tensors.
    ``histogram`` keeps the per-tensor KL histogram (``bins`` bins of |x|); ``channel_histograms`` also keeps one
    per channel (needed for per-channel KL / percentile / MSE from statistics). ``tensor_stats`` also computes the
    per-tensor mean absolute deviation when ``axis`` is set (one extra pass over each batch).
    """

    def __init__(self, axis: int | None = 1, *, bins: int = 2048, histogram: bool = True,
                 channel_histograms: bool = False, tensor_stats: bool = True, name: str = "") -> None:
        if bins < 2:
            raise QuantError(f"bins must be >= 2, got {bins}")
        self.axis = axis
        self.bins = int(bins)
        self.histogram = bool(histogram)
        self.channel_histograms = bool(channel_histograms) and axis is not None
        self.tensor_stats = bool(tensor_stats)
        self.name = name
        self.n_batches = 0
        self._ndim: int | None = None
        # per-channel accumulators (float64, shape (C,))
        self._n: torch.Tensor | None = None
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._abs: torch.Tensor | None = None
        self._min: torch.Tensor | None = None
        self._max: torch.Tensor | None = None
        # per-tensor accumulators for b (the rest is merged from channels)
        self._t_n = 0.0
        self._t_mean = 0.0
        self._t_abs = 0.0
        self._hist: torch.Tensor | None = None
        self._chist: torch.Tensor | None = None
        self._range = 0.0
        # the two most extreme per-sample maxima / minima: per channel (C, 2) and per tensor (2,), float64
        self.n_samples = 0
        self._smax: torch.Tensor | None = None
        self._smin: torch.Tensor | None = None
        self._t_smax: torch.Tensor | None = None
        self._t_smin: torch.Tensor | None = None

    # ------------------------------------------------------------------ accumulation
    def _view3(self, x: torch.Tensor) -> torch.Tensor:
        if self.axis is None:
            return x.reshape(1, 1, -1)
        ax = self.axis % x.dim() if -x.dim() <= self.axis < x.dim() else None
        if ax is None:
            raise QuantError(f"{self.name or 'tensor'}: axis {self.axis} out of range for shape {tuple(x.shape)}")
        C = x.shape[ax]
        pre = math.prod(x.shape[:ax])
        return x.reshape(pre, C, -1)

    def update(self, x: Any) -> "TensorStatistics":
        """Add one batch (tensor or array; the channel axis as configured). Returns self."""
        xt = as_tensor(x)
        if not xt.is_floating_point() or xt.dtype in (torch.float16, torch.bfloat16):
            xt = xt.to(torch.float32)  # half-precision sums would overflow / lose the mean
        where = self.name or "tensor"
        if xt.numel() == 0:
            raise QuantError(f"{where}: empty batch, shape {tuple(xt.shape)}")
        if self.axis is not None and xt.dim() == 0:
            raise QuantError(f"{where}: per-channel statistics need a tensor with dimensions")
        x3 = self._view3(xt.detach())
        pre, C, post = x3.shape
        if self._n is not None and C != self._n.shape[0]:
            raise CalibrationError(f"{where}: batch has {C} channels, earlier batches had {self._n.shape[0]}")
        if pre == 1:
            x2 = x3[0]  # (C, post): contiguous, the fast reduction path
        else:
            x2 = x3.transpose(0, 1).reshape(C, -1)  # one copy; reductions over a contiguous last dim are fastest
        n_b = x2.shape[1]
        if x2.device.type == "cpu" and x2.dtype == torch.float32 and C > 1:
            # compiled two-pass kernel: one thread per row, pass 2 reads the row from cache
            arr = np.ascontiguousarray(x2.numpy())
            prev = None if self._n is None else self._mean.numpy()
            n_prev = 0.0 if self._n is None else float(self._n[0])
            moments, seg_max, seg_min = channel_moments(arr, prev, n_prev, segment=post)
            r = torch.from_numpy(moments)
            s_max, s_min = torch.from_numpy(seg_max), torch.from_numpy(seg_min)
        else:
            s_max, s_min = x3.amax(dim=2).t(), x3.amin(dim=2).t()  # (C, samples)
            mx = x2.amax(dim=1)
            mn = x2.amin(dim=1)
            s_b = x2.sum(dim=1)
            # centre of the second pass: the running mean after this batch, in the data's dtype on its device
            if self._n is None:
                centre = s_b / n_b
            else:
                n_prev = float(self._n[0])
                prev = self._mean.to(device=x2.device, dtype=x2.dtype)
                centre = prev * (n_prev / (n_prev + n_b)) + s_b / (n_prev + n_b)
            d = x2 - centre[:, None]
            sq = torch.linalg.vector_norm(d, 2, dim=1)
            d.abs_()
            ab = d.sum(dim=1)
            # one transfer of the per-channel results; the merge runs on (C,) float64 CPU tensors
            r = torch.stack([mx, mn, s_b, centre, sq, ab]).to(device="cpu", dtype=torch.float64)
        mx64, mn64, s64, c64, sq64, ab64 = r.unbind(0)
        if not bool(torch.isfinite(r).all()):
            raise CalibrationError(f"{where}: batch contains NaN or Inf")
        mu_b = s64 / n_b
        if self._n is None:
            z = torch.zeros(C, dtype=torch.float64)
            self._n, self._mean, self._m2, self._abs = z.clone(), z.clone(), z.clone(), z.clone()
            self._min, self._max = mn64, mx64
            self._ndim = xt.dim()
        else:
            self._min = torch.minimum(self._min, mn64)
            self._max = torch.maximum(self._max, mx64)
        n_new = self._n + n_b
        delta = mu_b - self._mean
        mean_new = self._mean + delta * (n_b / n_new)
        off = mu_b - c64
        m2_b = torch.clamp(sq64 * sq64 - n_b * off * off, min=0.0)  # Σ(x-c)² = M2_b + n_b (μ_b - c)²
        self._m2 = self._m2 + m2_b + delta * delta * (self._n * n_b / n_new)
        self._abs = self._abs + ab64
        self._mean = mean_new
        self._n = n_new
        if self.axis is not None and self.tensor_stats:
            tot_b = float(n_b * C)
            t_n_new = self._t_n + tot_b
            t_mean_new = self._t_mean + (float(s64.sum()) / tot_b - self._t_mean) * (tot_b / t_n_new)
            self._t_abs += float((x2 - t_mean_new).abs_().sum(dtype=torch.float64))
            self._t_n, self._t_mean = t_n_new, t_mean_new
        if self.histogram or self.channel_histograms:
            self._update_hist(x2, float(torch.maximum(mx64.abs().max(), mn64.abs().max())))
        self._update_extremes(s_max.to(device="cpu", dtype=torch.float64), s_min.to(device="cpu", dtype=torch.float64))
        self.n_batches += 1
        return self

    def _update_extremes(self, s_max: torch.Tensor, s_min: torch.Tensor) -> None:
        """Merge per-sample maxima/minima (C, samples) into the two most extreme ones seen so far."""
        C = s_max.shape[0]
        if self._smax is None:
            self._smax = torch.full((C, 2), -math.inf, dtype=torch.float64)
            self._smin = torch.full((C, 2), math.inf, dtype=torch.float64)
            self._t_smax = torch.full((2,), -math.inf, dtype=torch.float64)
            self._t_smin = torch.full((2,), math.inf, dtype=torch.float64)
        self._smax = torch.cat([self._smax, s_max], dim=1).topk(2, dim=1).values
        self._smin = -torch.cat([-self._smin, -s_min], dim=1).topk(2, dim=1).values
        self._t_smax = torch.cat([self._t_smax, s_max.amax(dim=0)]).topk(2).values
        self._t_smin = -torch.cat([-self._t_smin, -s_min.amin(dim=0)]).topk(2).values
        self.n_samples += int(s_max.shape[1])

    def _update_hist(self, x2: torch.Tensor, amax: float) -> None:
        B = self.bins
        if self._range == 0.0:
            self._range = _pow2_ceil(amax)
        grow = 0
        while amax > self._range:
            self._range *= 2.0
            grow += 1
        if grow:
            self._hist = self._rebin(self._hist, grow)
            self._chist = self._rebin(self._chist, grow)
        R = self._range
        w = R / B
        C = x2.shape[0]
        idx = torch.floor((x2 + R) / w).to(torch.int64).clamp_(0, 2 * B - 1)
        if self.channel_histograms:
            off = (torch.arange(C, device=x2.device) * (2 * B))[:, None]
            ch = torch.bincount((idx + off).reshape(-1), minlength=2 * B * C).reshape(C, 2 * B)
            ch = ch.to(device="cpu", dtype=torch.float64)  # histograms live on the CPU with the other statistics
            self._chist = ch if self._chist is None else self._chist + ch
            h = ch.sum(0)
        else:
            h = torch.bincount(idx.reshape(-1), minlength=2 * B).to(device="cpu", dtype=torch.float64)
        if self.histogram:
            self._hist = h if self._hist is None else self._hist + h

    def _rebin(self, h: torch.Tensor | None, times: int) -> torch.Tensor | None:
        if h is None:
            return None
        B2 = h.shape[-1]
        for _ in range(times):
            merged = h.reshape(*h.shape[:-1], B2 // 2, 2).sum(-1)  # bins of double width over the old range
            out = torch.zeros_like(h)
            out[..., B2 // 4: B2 // 4 + B2 // 2] = merged
            h = out
        return h

    def refine_mad(self, batches: Any) -> "TensorStatistics":
        """Second pass: recompute b exactly about the final mean from the same batches (iterable of tensors)."""
        if self._n is None:
            raise CalibrationError(f"{self.name or 'tensor'}: no statistics collected")
        acc = torch.zeros_like(self._abs)
        t_acc = 0.0
        t_mean = self.tensor_view().mean
        for x in batches:
            x3 = self._view3(as_tensor(x).detach())
            pre, C, _ = x3.shape
            x2 = x3[0] if pre == 1 else x3.transpose(0, 1).reshape(C, -1)
            acc += (x2 - self._mean.to(x2.dtype)[:, None]).abs_().sum(1).to(torch.float64)
            if self.axis is not None and self.tensor_stats:
                t_acc += float((x2 - float(t_mean)).abs_().sum(dtype=torch.float64))
        self._abs = acc
        self._t_abs = t_acc
        return self

    def finalize(self) -> "TensorStatistics":
        """Check that statistics exist and are finite; returns self (accumulation may continue afterwards)."""
        if self._n is None:
            raise CalibrationError(f"{self.name or 'tensor'}: no statistics collected (no batch was added)")
        return self

    # ------------------------------------------------------------------ results
    @property
    def n_channels(self) -> int:
        self.finalize()
        return int(self._n.shape[0])

    def channel_view(self) -> StatView:
        """Per-channel statistics, tensors of shape (C,) (C = 1 when axis is None)."""
        self.finalize()
        n = self._n
        std = torch.sqrt(self._m2 / torch.clamp(n - 1, min=1.0))
        lo, hi = _support(self._min, self._max, self._smin, self._smax)
        return StatView(count=n, min=self._min, max=self._max, mean=self._mean, b=self._abs / n, std=std,
                        hist=self._chist, hist_range=self._range, support_min=lo, support_max=hi)

    def tensor_view(self) -> StatView:
        """Per-tensor statistics (scalars), merged exactly from the channels (b from its own pass)."""
        self.finalize()
        n_c, mu_c = self._n, self._mean
        n = n_c.sum()
        mean = (n_c * mu_c).sum() / n
        m2 = self._m2.sum() + (n_c * (mu_c - mean) ** 2).sum()
        std = torch.sqrt(m2 / torch.clamp(n - 1, min=1.0))
        if self.axis is None:
            b = self._abs[0] / n
        elif self.tensor_stats:
            b = torch.tensor(self._t_abs, dtype=torch.float64, device=n.device) / n
        else:  # not collected (tensor_stats=False): NaN, and ACIQ-Laplace per tensor refuses it
            b = torch.tensor(float("nan"), dtype=torch.float64)
        mn, mx = self._min.min(), self._max.max()
        lo, hi = _support(mn, mx, self._t_smin, self._t_smax)
        return StatView(count=n, min=mn, max=mx, mean=mean, b=b, std=std, hist=self._hist, hist_range=self._range,
                        support_min=lo, support_max=hi)

    def view(self, per_channel: bool) -> StatView:
        """:meth:`channel_view` or :meth:`tensor_view`."""
        if per_channel and self.axis is None:
            raise CalibrationError(f"{self.name or 'tensor'}: per-channel view of per-tensor statistics (axis=None)")
        return self.channel_view() if per_channel else self.tensor_view()

    # convenience accessors (per channel when axis is set, else per tensor)
    def _v(self) -> StatView:
        return self.channel_view() if self.axis is not None else self.tensor_view()

    @property
    def min(self) -> torch.Tensor:
        return self._v().min

    @property
    def max(self) -> torch.Tensor:
        return self._v().max

    @property
    def mean(self) -> torch.Tensor:
        return self._v().mean

    @property
    def b(self) -> torch.Tensor:
        return self._v().b

    mad = b

    @property
    def std(self) -> torch.Tensor:
        return self._v().std

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        """Plain arrays and scalars (numpy / Python) describing the accumulated state."""
        self.finalize()
        cpu = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
        return {
            "format": _FORMAT, "name": self.name, "axis": -1 if self.axis is None else int(self.axis),
            "bins": self.bins, "histogram": self.histogram, "channel_histograms": self.channel_histograms,
            "tensor_stats": self.tensor_stats, "n_batches": self.n_batches,
            "n": cpu(self._n), "mean": cpu(self._mean), "m2": cpu(self._m2), "abs_sum": cpu(self._abs),
            "min": cpu(self._min), "max": cpu(self._max),
            "t_n": self._t_n, "t_mean": self._t_mean, "t_abs": self._t_abs,
            "hist": cpu(self._hist), "channel_hist": cpu(self._chist), "hist_range": self._range,
            "n_samples": self.n_samples, "sample_max": cpu(self._smax), "sample_min": cpu(self._smin),
            "tensor_sample_max": cpu(self._t_smax), "tensor_sample_min": cpu(self._t_smin),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TensorStatistics":
        """Inverse of :meth:`to_dict` (arrays may be lists, as read from JSON)."""
        if d.get("format") != _FORMAT:
            raise CalibrationError(f"not a TensorStatistics record (format={d.get('format')!r})")
        axis = int(d["axis"])
        s = cls(None if axis < 0 else axis, bins=int(d["bins"]), histogram=bool(d["histogram"]),
                channel_histograms=bool(d["channel_histograms"]), tensor_stats=bool(d["tensor_stats"]),
                name=str(d.get("name", "")))
        t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, dtype=np.float64))  # noqa: E731
        s._n, s._mean, s._m2, s._abs = t(d["n"]), t(d["mean"]), t(d["m2"]), t(d["abs_sum"])
        s._min, s._max = t(d["min"]), t(d["max"])
        s._t_n, s._t_mean, s._t_abs = float(d["t_n"]), float(d["t_mean"]), float(d["t_abs"])
        s._hist, s._chist, s._range = t(d.get("hist")), t(d.get("channel_hist")), float(d["hist_range"])
        s.n_batches = int(d["n_batches"])
        # per-sample extremes (absent from files of earlier versions: the support is then the observed range)
        s.n_samples = int(d.get("n_samples", 0) or 0)
        s._smax, s._smin = t(d.get("sample_max")), t(d.get("sample_min"))
        s._t_smax, s._t_smin = t(d.get("tensor_sample_max")), t(d.get("tensor_sample_min"))
        if s._smax is not None and (s._smax.shape != (s._n.shape[0], 2) or s._smin is None
                                    or s._smin.shape != s._smax.shape):
            raise CalibrationError(f"statistics record {s.name!r}: per-sample extremes misshaped")
        for k in ("_n", "_mean", "_m2", "_abs", "_min", "_max"):
            v = getattr(s, k)
            if v is None or v.dim() != 1 or v.shape != s._n.shape or not torch.isfinite(v).all():
                raise CalibrationError(f"statistics record {s.name!r}: field {k[1:]} missing, misshaped or not finite")
        return s

    def save(self, path: str | Path) -> None:
        """Write to ``.json`` (text) or ``.npz`` (numpy, no pickle), chosen by the suffix."""
        p = Path(path)
        d = self.to_dict()
        if p.suffix == ".json":
            p.write_text(json.dumps({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}))
        else:
            arrays = {k: v for k, v in d.items() if isinstance(v, np.ndarray)}
            meta = {k: v for k, v in d.items() if not isinstance(v, np.ndarray)}
            np.savez(p, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "TensorStatistics":
        """Read a file written by :meth:`save`."""
        p = Path(path)
        if p.suffix == ".json":
            try:
                return cls.from_dict(json.loads(p.read_text()))
            except (ValueError, KeyError) as exc:
                raise CalibrationError(f"{p}: bad statistics JSON ({exc})") from exc
        try:
            with np.load(p, allow_pickle=False) as z:
                d = json.loads(bytes(z["__meta__"]).decode())
                for k in z.files:
                    if k != "__meta__":
                        d[k] = z[k]
        except (ValueError, KeyError, OSError) as exc:
            raise CalibrationError(f"{p}: bad statistics file ({exc})") from exc
        for k in ("hist", "channel_hist", "sample_max", "sample_min", "tensor_sample_max", "tensor_sample_min"):
            d.setdefault(k, None)
        return cls.from_dict(d)
