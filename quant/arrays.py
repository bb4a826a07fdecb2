"""One call from a float array to integer codes: clipping + uniform quantization (used by ``huffquant encode``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from quant.clipping import clip_range
from quant.errors import QuantError
from quant.quantizer import QuantizedTensor, as_tensor, quantize

__all__ = ["quantize_array"]


def quantize_array(x: Any, *, bits: float, clip: str = "minmax", axis: int | None = None,
                   signed: bool | None = None, levels: int | None = None) -> QuantizedTensor:
    """Quantize a float array to ``round(2**bits)`` levels (or ``levels``) with clipping method ``clip``.

    ``axis`` = channel axis for per-channel ranges (None = per tensor). ``signed=None`` infers the range type
    from the data (unsigned [0, hi] when no value is negative). Bits must be in (0, 16].
    """
    xt = as_tensor(x)
    if not xt.is_floating_point():
        raise QuantError(f"quantize_array expects floating-point input, got {xt.dtype}")
    if levels is None:
        if not (isinstance(bits, (int, float)) and math.isfinite(bits) and 0 < bits <= 16):
            raise QuantError(f"bits must be in (0, 16], got {bits!r}")
        levels = int(round(2.0**bits))
    if levels < 1:
        raise QuantError(f"levels must be >= 1, got {levels}")
    if xt.numel() == 0:
        raise QuantError(f"cannot quantize an empty array (shape {tuple(xt.shape)})")
    if not torch.isfinite(xt).all():
        raise QuantError("input contains NaN or Inf")
    per_channel = axis is not None
    lo, hi = clip_range(xt, clip, levels, signed=signed, per_channel=per_channel, axis=axis if per_channel else 1)
    return quantize(xt, lo, hi, levels, axis=axis)
