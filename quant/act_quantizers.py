"""Activation quantizers: the objects a site (:class:`quant.capture.ActivationSite`) calls on a layer's output.

* :class:`ActQuantizer`: fixed parameters (offline statistics), fake quantization in float32 per channel along
  axis 1 or per tensor, bit-identical to :func:`quant.quantizer.quantize` followed by ``dequantize`` (both call
  :func:`quant.quantizer.round_clamp`);
* :class:`DynamicActQuantizer`: parameters from each batch (the reference code's default mode);
* :func:`act_params`: the parameters of a layer's output from statistics (or from a tensor) and its
  :class:`ActSpec` (bits, clipping, per channel or not, allocation, the fused activation's bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from quant.channel_levels import channel_levels
from quant.clipping import clip_range, parse_method
from quant.config import QuantConfig
from quant.errors import CalibrationError, QuantError
from quant.quantizer import QuantizedTensor, QuantParams, grid, pack_codes, quant_params, round_clamp
from quant.statistics import TensorStatistics

__all__ = ["ActSpec", "ActQuantizer", "DynamicActQuantizer", "act_params", "needs_histogram"]


@dataclass
class ActSpec:
    """How one layer's activations are quantized (resolved from the config)."""

    bits: float
    clip: str
    per_channel: bool
    signed: bool
    alloc: str | None  # None, "bits" or "bins"
    ndim: int
    act_max: float | torch.Tensor | None = None  # bound of the fused activation (6 for ReLU6; per channel (C,))


def _uniform(bound: torch.Tensor) -> float | torch.Tensor:
    """A bound shared by every channel as a Python float (clamping against a tensor is several times slower)."""
    flat = bound.reshape(-1)
    return float(flat[0]) if bool((flat == flat[0]).all()) else bound


class ActQuantizer:
    """Fake quantization with fixed parameters, per channel along axis 1 or per tensor.

    ``x -> clamp(round(x / scale), qmin, qmax) * scale`` in float32 (:func:`quant.quantizer.round_clamp`, the
    rounding of :func:`quant.quantizer.quantize`), so codes and fake-quantized values agree bit for bit.
    ``inplace=True`` overwrites ``x`` (the sites own their input: the graph gives them its only use).
    """

    def __init__(self, params: QuantParams, ndim: int, device: torch.device | str = "cpu") -> None:
        self.params = params.to(device)
        self.ndim = ndim
        self._scale, self._step, qmin, qmax = grid(self.params, ndim)
        self._qmin, self._qmax = _uniform(qmin), _uniform(qmax)

    def to(self, device: torch.device | str) -> "ActQuantizer":
        return ActQuantizer(self.params, self.ndim, device)

    def _codes(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if self.params.axis is not None and x.dim() != self.ndim:
            raise QuantError(f"activation quantizer built for {self.ndim}-D tensors got shape {tuple(x.shape)}")
        own = inplace and x.dtype == torch.float32
        return round_clamp(x if own else x.to(torch.float32), self._step, self._qmin, self._qmax,
                           inplace=own)

    def __call__(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return self._codes(x, inplace).mul_(self._scale)

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        """Integer codes stored exactly as :func:`quant.quantizer.quantize` stores them."""
        return pack_codes(self._codes(x, False), self.params)

    def quantize_with_values(self, x: torch.Tensor) -> tuple[QuantizedTensor, torch.Tensor]:
        """:meth:`quantize` and the fake-quantized values (equal to its ``dequantize()``) from one rounding pass."""
        q = self._codes(x, False)
        qt = pack_codes(q, self.params)  # a new tensor: q stays the float codes
        return qt, q.mul_(self._scale)


def needs_histogram(clip: str) -> bool:
    """True when clipping method ``clip`` reads histograms from the statistics."""
    return clip != "auto" and parse_method(clip)[0] in ("kl", "percentile", "mse")


def _clip(stats: TensorStatistics, spec: ActSpec, cfg: QuantConfig, levels: Any,
          extrapolate: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The range [lo, hi] of each channel's grid (or the tensor's) for ``levels``, capped by the fused activation."""
    lo, hi = clip_range(stats, spec.clip, levels, signed=spec.signed, per_channel=spec.per_channel,
                        window=cfg.clip_window, extrapolate=extrapolate)
    if spec.act_max is not None:  # ReLU6: nothing above the bound reaches the quantizer
        bound = torch.as_tensor(spec.act_max).to(device=hi.device, dtype=torch.float64)
        hi = torch.minimum(hi, bound if spec.per_channel or bound.dim() == 0 else bound.max())
        lo = torch.minimum(lo, hi)
    return lo, hi


def act_params(source: Any, spec: ActSpec, cfg: QuantConfig) -> QuantParams:
    """Quantization parameters of an activation from its :class:`TensorStatistics` (offline) or from the tensor
    itself (dynamic: one batch of pre-activation values).

    Bit or bin allocation (eqs. 10-11) gets, per channel, the width of the range its grid covers at the mean bit
    width: for a fused ReLU/ReLU6 that is the clipped, post-activation range [0, min(hi, 6)], not the spread of the
    pre-activation values (a channel never positive on the calibration images covers nothing and gets the fewest
    bits; a saturated ReLU6 channel covers [0, 6]). A channel whose range is not empty keeps at least 1 bit: only a
    channel that is constant on the calibration images becomes constant."""
    if isinstance(source, TensorStatistics):
        stats = source
    else:
        stats = TensorStatistics(axis=1, histogram=needs_histogram(spec.clip), tensor_stats=not spec.per_channel)
        stats.update(source)
    # offline statistics: cap at the estimated support (unseen images exceed the calibration range); a batch's
    # own statistics (dynamic mode): the observed range is exact
    extrapolate = stats is source
    levels: Any = int(round(2.0 ** float(spec.bits)))
    if spec.alloc is not None and spec.per_channel:
        lo, hi = _clip(stats, spec, cfg, levels, extrapolate)
        width = torch.clamp(hi, min=0.0) - torch.clamp(lo, max=0.0)  # the grid always contains 0
        levels = channel_levels(spec.bits, spec.alloc, width, cfg, varies=width > 0)
    lo, hi = _clip(stats, spec, cfg, levels, extrapolate)
    if spec.per_channel:
        return quant_params(lo, hi, levels, axis=1, n_channels=int(lo.shape[0]))
    return quant_params(lo, hi, levels, axis=None)


class DynamicActQuantizer:
    """Statistics, clipping and allocation from the batch being quantized (the reference's default mode)."""

    def __init__(self, spec: ActSpec, cfg: QuantConfig, name: str) -> None:
        self.spec = spec
        self.cfg = cfg
        self.name = name
        self.last: ActQuantizer | None = None

    def fit(self, x: torch.Tensor) -> ActQuantizer:
        """Parameters from this batch's pre-activation values (the site calls it before the activation)."""
        try:
            params = act_params(x.detach(), self.spec, self.cfg)
        except (QuantError, CalibrationError) as exc:
            raise CalibrationError(f"layer {self.name}: {exc}") from exc
        self.last = ActQuantizer(params, self.spec.ndim, x.device)
        return self.last

    def _current(self, x: torch.Tensor) -> ActQuantizer:
        return self.last if self.last is not None else self.fit(x)

    def __call__(self, x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
        return self._current(x)(x, inplace)

    def quantize(self, x: torch.Tensor) -> QuantizedTensor:
        return self._current(x).quantize(x)
