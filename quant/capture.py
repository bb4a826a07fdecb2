"""Activation sites: the module inserted after every conv/linear layer (see :mod:`quant.graph`).

A site sees the layer's output after BN folding, *before* its fused ReLU/ReLU6 (which the site applies
itself, see :mod:`quant.graph`). Depending on what the pipeline switched on, it

* accumulates :class:`~quant.statistics.TensorStatistics` of the pre-activation values (calibration; the
  reference code's ACIQ statistics; unsigned clipping then uses the range [0, hi]),
* applies the fused activation,
* replaces the tensor by its fake-quantized version (``site.quantizer``),
* accumulates the signal and noise energy of that quantization (per-layer SQNR),
* records the tensor (FP32 capture) or its integer codes (export),
* checks that the tensor is finite, naming the layer when it is not.

:func:`capture_fp32` is the public entry point for raw FP32 feature maps and folded weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

import torch
from torch import nn

from quant.errors import CalibrationError, QuantError
from quant.graph import Instrumented, LayerInfo, instrument
from quant.quantizer import QuantizedTensor
from quant.statistics import TensorStatistics

__all__ = ["ActivationSite", "clamp_channels", "SiteQuantizer", "CodeRecorder", "capture_fp32", "check_finite_logits", "ACTIVATION_MAX"]

# upper bound of each fused activation (None: unbounded)
ACTIVATION_MAX: dict[str, float | None] = {"relu": None, "relu6": 6.0}

log = logging.getLogger(__name__)


class SiteQuantizer(Protocol):
    """What a site needs from an activation quantizer."""

    def __call__(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:  # fake-quantized x
        ...

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:  # integer codes of x
        ...


class CodeRecorder:
    """Collects a layer's codes (or FP32 values) batch by batch into one preallocated CPU tensor.

    ``total`` is the number of images that will pass; the first batch fixes the per-image shape and dtype.
    """

    def __init__(self, total: int) -> None:
        self.total = int(total)
        self.filled = 0
        self.data: torch.Tensor | None = None
        self.params: Any = None

    def add(self, values: torch.Tensor, params: Any = None) -> None:
        n = values.shape[0]
        if self.data is None:
            self.data = torch.empty((self.total, *values.shape[1:]), dtype=values.dtype)
            self.params = params
        if self.filled + n > self.total:
            raise QuantError(f"recorder for {self.total} images received {self.filled + n}")
        if values.dtype != self.data.dtype:
            # a later batch needed a wider code type (cannot happen with fixed offline params)
            self.data = self.data.to(torch.promote_types(self.data.dtype, values.dtype))
        self.data[self.filled:self.filled + n] = values.detach().to("cpu", self.data.dtype)
        self.filled += n

    def result(self) -> torch.Tensor:
        if self.data is None:
            raise QuantError("no batch was recorded")
        return self.data[: self.filled]


def clamp_channels(x: torch.Tensor, lo: Any, hi: Any, *, inplace: bool) -> torch.Tensor:
    """``x`` clamped to ``[lo, hi]``; each end a float, a tensor broadcast against ``x`` (per channel), or None
    (unbounded). ``inplace`` overwrites ``x`` (not allowed while autograd records ``x``)."""
    if not isinstance(lo, torch.Tensor) and not isinstance(hi, torch.Tensor):
        return x.clamp_(lo, hi) if inplace else torch.clamp(x, lo, hi)
    if inplace:
        if isinstance(lo, torch.Tensor):
            torch.maximum(x, lo, out=x)
        elif lo is not None:
            x.clamp_(min=lo)
        if isinstance(hi, torch.Tensor):
            torch.minimum(x, hi, out=x)
        elif hi is not None:
            x.clamp_(max=hi)
        return x
    y = torch.maximum(x, lo) if isinstance(lo, torch.Tensor) else (x if lo is None else torch.clamp(x, min=lo))
    return torch.minimum(y, hi) if isinstance(hi, torch.Tensor) else (y if hi is None else torch.clamp(y, max=hi))


class ActivationSite(nn.Module):
    """Identity by default; observes, quantizes, measures and records a layer's output when switched on."""

    def __init__(self, info: LayerInfo) -> None:
        super().__init__()
        self.info = info
        self.stats: TensorStatistics | None = None
        self.quantizer: SiteQuantizer | None = None
        self.measure = False
        self.check_finite = False
        self.recorder: CodeRecorder | None = None
        self.active = True  # False: the quantizer is bypassed (FP32 reference pass through the same graph)
        self.act_lo: torch.Tensor | None = None  # per-channel lower end of the fused activation (absorption)
        self.act_hi: torch.Tensor | None = None  # per-channel upper end of the fused activation (equalization)
        self.mean_target: torch.Tensor | None = None  # empirical bias correction: the float output means
        self.mean_shift: torch.Tensor | None = None  # ... and the shift applied (float64, per channel)
        self._shaped: Any = None  # the ends shaped for the last input's rank and device
        self.signal = torch.zeros((), dtype=torch.float64)  # Σ x² of the quantizer input
        self.noise = torch.zeros((), dtype=torch.float64)  # Σ (x - q(x))²

    @property
    def name(self) -> str:
        return self.info.name

    def reset_measure(self) -> None:
        """Zero the SQNR accumulators."""
        self.signal = torch.zeros((), dtype=torch.float64)
        self.noise = torch.zeros((), dtype=torch.float64)

    def _check(self, x: torch.Tensor) -> None:
        if not bool(torch.isfinite(x).all()):
            n_nan = int(torch.isnan(x).sum())
            n_inf = int(torch.isinf(x).sum())
            raise CalibrationError(
                f"layer {self.info.name}: its output holds {n_nan} NaN and {n_inf} Inf values "
                f"(shape {tuple(x.shape)})"
            )

    def set_activation_bounds(self, lo: torch.Tensor | None, hi: torch.Tensor | None) -> None:
        """Clamp channel c of the fused activation to ``[lo[c], hi[c]]`` instead of its usual ``[0, bound]`` (6 for
        ReLU6, none for ReLU); None keeps that end as usual. Cross-layer equalization divides a ReLU6 channel by s_c,
        and its upper end with it (6/s_c); high-bias absorption moves c_c out of a channel, and both its ends with it
        (``[-c_c, 6/s_c - c_c]``): the network stays the same function for every input."""
        if (lo is not None or hi is not None) and self.info.activation is None:
            raise QuantError(f"layer {self.info.name} has no fused activation to bound")
        self.act_lo = None if lo is None else lo.detach().to(torch.float32)
        self.act_hi = None if hi is None else hi.detach().to(torch.float32)
        self._shaped = None

    def _bounds(self, x: torch.Tensor) -> tuple[Any, Any]:
        """(lower, upper) end of the fused activation for ``x``: per-channel tensors shaped for ``x`` or floats."""
        usual = (0.0, ACTIVATION_MAX.get(self.info.activation or ""))
        if self.act_lo is None and self.act_hi is None:
            return usual
        if self._shaped is None or self._shaped[0] != (x.dim(), x.device):
            shape = [1] * x.dim()
            shape[1] = -1
            ends = tuple(usual[i] if t is None else t.to(x.device).reshape(shape)
                         for i, t in enumerate((self.act_lo, self.act_hi)))
            self._shaped = ((x.dim(), x.device), ends)
        return self._shaped[1]

    def _activation(self, x: torch.Tensor) -> torch.Tensor:
        """The fused ReLU/ReLU6 (in place when autograd is off: the site owns ``x``)."""
        if self.info.activation is None:
            return x
        return clamp_channels(x, *self._bounds(x), inplace=not torch.is_grad_enabled())

    def activation_fn(self) -> Any:
        """The fused activation as a function of a (rows, channels) or (N, C, ...) tensor (identity if none)."""
        if self.info.activation is None:
            return lambda t: t
        usual = (0.0, ACTIVATION_MAX.get(self.info.activation or ""))
        ends = [usual[i] if t is None else t.detach().cpu() for i, t in enumerate((self.act_lo, self.act_hi))]

        def f(t: torch.Tensor) -> torch.Tensor:
            shape = [1] * t.dim()
            shape[1] = -1
            lo, hi = (e.to(t.device).reshape(shape) if isinstance(e, torch.Tensor) else e for e in ends)
            return clamp_channels(t, lo, hi, inplace=False)

        return f

    def _shift_to_target(self, x: torch.Tensor) -> torch.Tensor:
        """Empirical bias correction (quant.bias_correction): shift each channel of ``x`` (the pre-activation values of
        the whole data set in one batch) by the d_c that moves the channel's mean *output* (fused activation, then
        the activation quantizer) to ``mean_target``; d is what the layer's bias must gain. The output mean is
        monotone in d, so d is found by bisection, on at most 256 positions per image and channel."""
        dims = [d for d in range(x.dim()) if d != 1]
        sample = x.detach()
        if sample.dim() > 2:
            flat = sample.flatten(2)
            if flat.shape[2] > 256:
                idx = torch.linspace(0, flat.shape[2] - 1, 256, device=x.device).round().long()
                flat = flat[:, :, idx]
            sample = flat.reshape(*flat.shape[:2], flat.shape[2], *([1] * (x.dim() - 3)))
        q = self.quantizer if self.active else None
        act = self.activation_fn()

        def out_mean(d: torch.Tensor) -> torch.Tensor:
            shape = [1] * sample.dim()
            shape[1] = -1
            y = act(sample + d.to(sample.dtype).reshape(shape))
            if q is not None:
                y = q(y)
            return y.to(torch.float64).mean(dim=dims)

        target = self.mean_target.to(device=x.device, dtype=torch.float64)
        span = sample.abs().amax(dim=dims).to(torch.float64) + target.abs() + 1.0
        lo, hi = -span, span.clone()
        g_lo, g_hi = out_mean(lo), out_mean(hi)
        flat_out = g_hi <= g_lo  # the output does not depend on d (a constant channel): no shift
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            below = out_mean(mid) < target
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        d = torch.where(flat_out, torch.zeros_like(lo), 0.5 * (lo + hi))
        self.mean_shift = d
        shape = [1] * x.dim()
        shape[1] = -1
        return x + d.to(x.dtype).reshape(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean_target is not None:
            x = self._shift_to_target(x)
        if self.check_finite:
            self._check(x)
        if self.stats is not None:
            try:
                self.stats.update(x)  # pre-activation values, as the reference code's statistics
            except CalibrationError as exc:
                self._check(x)
                raise CalibrationError(f"layer {self.info.name}: {exc}") from exc
        q = self.quantizer if self.active else None
        if q is not None and hasattr(q, "fit"):
            q.fit(x)  # dynamic parameters from the pre-activation batch
        x = self._activation(x)
        if q is None:
            if self.recorder is not None:
                self.recorder.add(x)
            return x
        if self.recorder is not None:
            if hasattr(q, "quantize_with_values"):
                qt, xq = q.quantize_with_values(x)
            else:
                qt = q.quantize(x)
                xq = qt.dequantize()
            self.recorder.add(qt.codes, qt.params)
        elif self.measure or torch.is_grad_enabled():
            xq = q(x)
        else:
            return q(x, inplace=True)  # the site is the only user of x (see quant.graph)
        if self.measure:
            # float32 norms (a float64 copy of the tensor would cost more than the layer), summed in float64
            self.signal = self.signal.to(x.device) + torch.linalg.vector_norm(x).double() ** 2
            x = x.sub_(xq) if not torch.is_grad_enabled() else x - xq
            self.noise = self.noise.to(x.device) + torch.linalg.vector_norm(x).double() ** 2
        return xq


def check_finite_logits(inst: Instrumented, x: torch.Tensor, logits: torch.Tensor) -> None:
    """If ``logits`` are not finite, rerun ``x`` with finiteness checks on and name the first bad layer."""
    if bool(torch.isfinite(logits).all()):
        return
    if not bool(torch.isfinite(x).all()):
        raise QuantError("the input images hold NaN or Inf values")
    sites = [s for s in inst.sites.values() if isinstance(s, ActivationSite)]
    for s in sites:
        s.check_finite = True
    try:
        with torch.no_grad():
            inst(x)
    finally:
        for s in sites:
            s.check_finite = False
    raise QuantError("the network output holds NaN or Inf values, but no conv/linear output does")


@dataclass
class Captured:
    """FP32 output of one layer (after folding and fused ReLU) over the images, and its folded weight."""

    info: LayerInfo
    activation: torch.Tensor | None  # (N, C, ...) float32 on CPU
    weight: torch.Tensor  # folded weight, float32 on CPU
    bias: torch.Tensor | None


def capture_fp32(
    model: nn.Module | Instrumented,
    batches: Iterable[torch.Tensor],
    *,
    num_images: int,
    layers: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, Captured]:
    """Record FP32 outputs of the selected layers (default: all) over ``batches`` (N images in all).

    Memory: ``num_images`` x the layer's per-image size x 4 bytes for every selected layer.
    """
    inst = model if isinstance(model, Instrumented) else instrument(model, ActivationSite)
    names = list(inst.layers) if layers is None else list(layers)
    unknown = [n for n in names if n not in inst.layers]
    if unknown:
        raise QuantError(f"unknown layer(s) {unknown}; the model's layers are {list(inst.layers)}")
    inst.to(device)
    for n in names:
        inst.sites[n].recorder = CodeRecorder(num_images)
    try:
        with torch.no_grad():
            for xb in batches:
                xb = xb.to(device)
                check_finite_logits(inst, xb, inst(xb))
        out = {}
        for n in names:
            mod = inst.modules[n]
            out[n] = Captured(
                info=inst.layers[n],
                activation=inst.sites[n].recorder.result(),
                weight=mod.weight.detach().cpu().clone(),
                bias=None if mod.bias is None else mod.bias.detach().cpu().clone(),
            )
        return out
    finally:
        for n in names:
            inst.sites[n].recorder = None


