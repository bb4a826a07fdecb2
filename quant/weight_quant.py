"""Quantized weights of one layer: the grid (per channel or per tensor, clipping, allocation) and the analytical
bias correction of the paper (eqs. 12-13) applied to the dequantized weights."""

from __future__ import annotations

import torch

from quant.bias_correction import correct_weights
from quant.channel_levels import channel_levels
from quant.clipping import clip_range
from quant.config import WEIGHT_BIAS_CORRECTIONS, QuantConfig
from quant.errors import QuantError
from quant.quantizer import QuantizedTensor, quantize

__all__ = ["quantize_weight", "corrected_weight"]


def quantize_weight(name: str, w: torch.Tensor, bits: float, alloc: str | None, cfg: QuantConfig) -> QuantizedTensor:
    """Codes of layer ``name``'s weight ``w`` (C_out, ...) at ``bits`` mean bits: per output channel (axis 0) when
    ``cfg.per_channel_weights``, range from ``cfg.weight_clip``, per-channel levels from ``alloc`` (None, "bits" or
    "bins"; statistic: each channel's standard deviation). Errors name the layer."""
    per_channel = cfg.per_channel_weights and w.dim() > 1
    try:
        if per_channel:
            flat = w.detach().reshape(w.shape[0], -1).to(torch.float64)
            std = flat.std(dim=1) if flat.shape[1] > 1 else flat.abs()[:, 0]
            levels = channel_levels(bits, alloc, std, cfg)
        else:
            levels = channel_levels(bits, None, None, cfg)
        lo, hi = clip_range(w.detach(), cfg.weight_clip, levels, signed=True, per_channel=per_channel, axis=0,
                            window=cfg.clip_window)
        return quantize(w.detach(), lo, hi, levels, axis=0 if per_channel else None)
    except QuantError as exc:
        raise QuantError(f"layer {name} weights: {exc}") from exc


def corrected_weight(w: torch.Tensor, codes: QuantizedTensor, cfg: QuantConfig) -> torch.Tensor:
    """Dequantized weights with the config's analytical weight bias correction (eqs. 12-13) applied."""
    w_hat = codes.dequantize().to(device=w.device, dtype=w.dtype)
    if cfg.bias_correction in WEIGHT_BIAS_CORRECTIONS:
        w_hat = correct_weights(w, w_hat, axis=0, mode=cfg.bias_correction,
                                form=cfg.bias_correction_form).to(w.dtype)
    return w_hat
