"""Uniform quantizer: float tensor + range [lo, hi] + level count -> integer codes and dequantization params.

Code convention (see METHODS.md, "Quantizer"):

* the grid of a channel is ``{q * scale : qmin <= q <= qmax}``; ``zero_point`` is 0, so the integer code 0 is the
  real value 0 (zero is exactly representable) and the codes are *signed* wherever the range holds negative
  values: a symmetric range gives an alphabet centred on 0 (e.g. 16 levels -> -8..7, 39 levels -> -19..19);
  an unsigned (ReLU) range ``[0, hi]`` gives codes ``0..levels-1``;
* exception: when those centred codes of a range with <= 256 levels do not fit int8/uint8 (an asymmetric
  signed range, e.g. 8-bit codes -139..116), they are stored offset as ``0..levels-1`` (uint8) with
  ``zero_point = -qmin`` per channel; dequantization is always ``(code - zero_point) * scale``;
* the range is first widened to contain 0, ``scale = (max(hi,0) - min(lo,0)) / (levels - 1)`` and
  ``qmin = round(min(lo,0) / scale)``, ``qmax = qmin + levels - 1`` (any level count >= 2, powers of two or not);
* one level, or a degenerate range ``lo == hi``: the channel is the constant ``c = clamp(0, lo, hi)``, stored
  as one level with ``scale = |c|`` and code ``sign(c)`` (``scale = 0``, code 0 for ``c == 0``): exact;
* rounding is ``torch.round``: round half to even (2.5 -> 2, 3.5 -> 4), the behaviour of the reference code's
  torch path (its CUDA path rounds half away from zero);
* codes are clamped to ``[qmin, qmax]`` (saturation; +-inf saturate too); NaN input raises :class:`QuantError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from quant.errors import QuantError

__all__ = ["QuantParams", "QuantizedTensor", "quantize", "fake_quantize", "quant_params", "pack_codes", "code_dtype",
           "as_tensor", "grid", "round_clamp", "clamp_codes"]

logger = logging.getLogger(__name__)

_MAX_LEVELS = 2**31  # codes must fit int32 (int64 is never needed for a tensor we can store)


def as_tensor(x: Any, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Return ``x`` as a torch tensor (numpy arrays and Python numbers are converted, tensors kept as they are)."""
    if isinstance(x, torch.Tensor):
        t = x
    elif isinstance(x, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(x))
    else:
        t = torch.as_tensor(x)
    if dtype is not None or device is not None:
        t = t.to(dtype=dtype or t.dtype, device=device or t.device)
    return t


def code_dtype(qmin: int, qmax: int) -> torch.dtype:
    """Smallest integer dtype holding every code in ``[qmin, qmax]`` (uint8, int8, int16 or int32)."""
    if qmin >= 0 and qmax <= 255:
        return torch.uint8
    if qmin >= -128 and qmax <= 127:
        return torch.int8
    if qmin >= -32768 and qmax <= 32767:
        return torch.int16
    if qmin >= -(2**31) and qmax <= 2**31 - 1:
        return torch.int32
    raise QuantError(f"codes [{qmin}, {qmax}] do not fit int32")


@dataclass(frozen=True)
class QuantParams:
    """Parameters that turn integer codes back into values: ``(code - zero_point) * scale``.

    Every tensor field has shape ``()`` (per tensor) or ``(C,)`` (per channel along ``axis``).
    """

    scale: torch.Tensor  # step Δ (float32, values per code)
    zero_point: torch.Tensor  # int64 code that represents real 0 (0 in this package's convention)
    qmin: torch.Tensor  # int64 smallest code
    qmax: torch.Tensor  # int64 largest code
    axis: int | None  # channel axis, None = per tensor

    @property
    def levels(self) -> torch.Tensor:
        """Number of codes per channel, ``qmax - qmin + 1`` (int64)."""
        return self.qmax - self.qmin + 1

    @property
    def bits(self) -> torch.Tensor:
        """``log2(levels)`` per channel (float64; fractional for non-power-of-two level counts; 0 for 1 level)."""
        return torch.log2(self.levels.to(torch.float64))

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def shape_for(self, ndim: int) -> list[int]:
        """Broadcast shape of the per-channel fields against a tensor of ``ndim`` dimensions."""
        if self.axis is None:
            return [1] * ndim
        shape = [1] * ndim
        shape[self.axis] = -1
        return shape

    def to(self, device: torch.device | str) -> "QuantParams":
        """The same parameters on another device."""
        return QuantParams(self.scale.to(device), self.zero_point.to(device), self.qmin.to(device),
                           self.qmax.to(device), self.axis)


def _collapse(a: np.ndarray) -> np.ndarray:
    """One value (shape (1,)) when every entry of a per-channel array agrees, else the array."""
    a = np.asarray(a).reshape(-1) if np.ndim(a) else np.asarray(a)
    if a.ndim == 1 and a.size > 1 and np.all(a == a[0]):
        return a[:1].copy()
    return a


def _compact(t: torch.Tensor) -> np.ndarray:
    """An integer per-channel parameter in the smallest fitting numpy dtype, collapsed when constant."""
    a = t.detach().cpu().numpy().astype(np.int64)
    lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
    for dt in (np.uint8, np.int8, np.uint16, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            a = a.astype(dt)
            break
    return _collapse(a)


@dataclass(frozen=True)
class QuantizedTensor:
    """Integer codes (smallest fitting dtype) plus the :class:`QuantParams` that dequantize them."""

    codes: torch.Tensor
    params: QuantParams

    def dequantize(self) -> torch.Tensor:
        """Float32 values ``(codes - zero_point) * scale`` broadcast along the channel axis."""
        p = self.params
        shape = p.shape_for(self.codes.dim())
        if self.codes.element_size() <= 2 and int(p.zero_point.abs().max()) < (1 << 23):
            # codes and zero points below 2**17 are exact in float32, so this equals the int64 path bit for bit
            q = self.codes.to(torch.float32) - p.zero_point.reshape(shape).to(torch.float32)
            return q.mul_(p.scale.reshape(shape))
        q = self.codes.to(torch.int64) - p.zero_point.reshape(shape)
        return q.to(torch.float32) * p.scale.reshape(shape)

    def metadata(self) -> dict[str, np.ndarray | int]:
        """Arrays a file needs to dequantize: ``scale`` (float32 per channel), ``zero_point``, ``qmin``, ``qmax``
        (integers), ``bits`` (log2 of the level count; integers when every channel has a power-of-two count),
        and ``axis`` (None for per-tensor parameters: a file stores no axis then).

        Stored compactly, since a file carries them for every channel: integer arrays take the smallest
        fitting dtype, and an integer or bits array whose channels all agree is stored as one value
        (shape (1,); :meth:`from_metadata` and the file reader broadcast it). Level counts are
        ``qmax - qmin + 1``.
        """
        p = self.params
        bits = p.bits.detach().cpu().numpy().astype(np.float64).reshape(-1)
        if np.all(bits == np.round(bits)) and bits.size and 0 <= bits.min() and bits.max() <= 255:
            bits = bits.astype(np.uint8)
        else:
            bits = bits.astype(np.float32)
        return {
            "scale": p.scale.detach().cpu().numpy().astype(np.float32),
            "zero_point": _compact(p.zero_point),
            "qmin": _compact(p.qmin),
            "qmax": _compact(p.qmax),
            "bits": _collapse(bits),
            "axis": None if p.axis is None else int(p.axis),
        }

    @staticmethod
    def from_metadata(codes: Any, meta: dict[str, Any]) -> "QuantizedTensor":
        """Rebuild from codes and :meth:`metadata` (e.g. after reading a file)."""
        codes_t = as_tensor(codes)
        axis = int(meta["axis"]) if meta.get("axis") is not None else -1
        scale = as_tensor(np.asarray(meta["scale"], dtype=np.float32))
        n = int(scale.numel()) if scale.dim() else None

        def ints(key: str) -> torch.Tensor:
            t = as_tensor(np.asarray(meta[key], dtype=np.int64))
            if axis >= 0 and n is not None and t.dim() == 1 and t.numel() == 1 and n != 1:
                t = t.expand(n).clone()  # one value stored for all channels
            elif axis < 0 and t.dim() == 1 and t.numel() == 1:
                t = t.reshape(())
            return t

        p = QuantParams(scale=scale, zero_point=ints("zero_point"), qmin=ints("qmin"), qmax=ints("qmax"),
                        axis=None if axis < 0 else axis)
        return QuantizedTensor(codes_t, p)

    @property
    def shape(self) -> torch.Size:
        return self.codes.shape


def _channel_arg(v: Any, name: str, n_channels: int | None, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    t = as_tensor(v).to(device=device, dtype=dtype)
    if t.dim() > 1:
        raise QuantError(f"{name} must be a scalar or a 1-D per-channel tensor, got shape {tuple(t.shape)}")
    if t.dim() == 1:
        if n_channels is None:
            if t.numel() != 1:
                raise QuantError(f"{name} has {t.numel()} values but axis=None (per tensor)")
            t = t.reshape(())
        elif t.numel() == 1:
            t = t.expand(n_channels).clone()
        elif t.numel() != n_channels:
            raise QuantError(f"{name} has {t.numel()} values, expected {n_channels} channels")
    elif n_channels is not None:
        t = t.expand(n_channels).clone()
    return t


def _norm_axis(axis: int | None, ndim: int) -> int | None:
    if axis is None:
        return None
    if not -ndim <= axis < ndim:
        raise QuantError(f"axis {axis} out of range for a tensor with {ndim} dimensions")
    return axis % ndim


def quant_params(lo: Any, hi: Any, levels: Any, *, axis: int | None = None, n_channels: int | None = None,
                 device: torch.device | str | None = None) -> QuantParams:
    """Quantization parameters of the range ``[lo, hi]`` (values) with ``levels`` codes (int >= 1).

    ``lo``/``hi``/``levels`` are scalars or per-channel tensors (``n_channels`` long, along ``axis``).
    The range is widened to contain 0 so that 0 is exact (see the module docstring).
    """
    dev = torch.device(device) if device is not None else (lo.device if isinstance(lo, torch.Tensor) else torch.device("cpu"))
    if axis is not None and n_channels is None:
        for v in (lo, hi, levels):
            if isinstance(v, (torch.Tensor, np.ndarray)) and np.ndim(v) == 1:
                n_channels = int(v.shape[0])
                break
    nc = n_channels if axis is not None else None
    lo_t = _channel_arg(lo, "lo", nc, dev, torch.float64)
    hi_t = _channel_arg(hi, "hi", nc, dev, torch.float64)
    lv_f = _channel_arg(levels, "levels", nc, dev, torch.float64)
    if not (torch.isfinite(lo_t).all() and torch.isfinite(hi_t).all()):
        raise QuantError(f"range must be finite, got lo={lo_t.tolist()} hi={hi_t.tolist()}")
    if (lo_t > hi_t).any():
        raise QuantError("range has lo > hi in some channel")
    if not torch.isfinite(lv_f).all() or (lv_f != torch.round(lv_f)).any():
        raise QuantError(f"levels must be integers, got {lv_f.tolist()}")
    if (lv_f < 1).any() or (lv_f > _MAX_LEVELS).any():
        raise QuantError(f"levels must be in [1, 2**31], got {lv_f.tolist()}")
    lv = lv_f.to(torch.int64)
    lo0 = torch.clamp(lo_t, max=0.0)
    hi0 = torch.clamp(hi_t, min=0.0)
    const = (lv == 1) | (lo_t == hi_t)
    steps = torch.clamp(lv - 1, min=1).to(torch.float64)
    scale = ((hi0 - lo0) / steps).to(torch.float32).to(torch.float64)  # the step actually stored (float32)
    # position of lo in steps from the exact float64 ratio (so a symmetric range ties exactly at k + 0.5,
    # which rounds to even: 16 levels -> -8..7, 256 -> -128..127)
    width = hi0 - lo0
    pos = lo0 / torch.where(width > 0, width, torch.ones_like(width)) * steps
    qmin = torch.where(scale > 0, torch.round(pos), torch.zeros_like(scale)).to(torch.int64)
    qmax = qmin + (lv - 1)
    # constant channels: one level holding clamp(0, lo, hi)
    c = torch.clamp(torch.zeros_like(lo_t), lo_t, hi_t)
    scale = torch.where(const, c.abs(), scale)
    qc = torch.sign(c).to(torch.int64)
    qmin = torch.where(const, qc, qmin)
    qmax = torch.where(const, qc, qmax)
    return QuantParams(scale=scale.to(torch.float32), zero_point=torch.zeros_like(qmin), qmin=qmin, qmax=qmax,
                       axis=axis)


def _prepare(x: Any, axis: int | None) -> tuple[torch.Tensor, int | None, int | None]:
    xt = as_tensor(x)
    if not (xt.is_floating_point()):
        xt = xt.to(torch.float32)
    ax = _norm_axis(axis, xt.dim()) if axis is not None else None
    if axis is not None and xt.dim() == 0:
        raise QuantError("per-channel quantization needs a tensor with at least one dimension")
    nc = int(xt.shape[ax]) if ax is not None else None
    if xt.numel() and torch.isnan(xt).any():
        raise QuantError("input contains NaN")
    return xt, ax, nc


def grid(p: QuantParams, ndim: int, *, device: torch.device | str | None = None,
         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(scale, step, qmin, qmax)`` of ``p`` in ``dtype``, shaped to broadcast against a tensor of ``ndim``
    dimensions (per channel: ``-1`` at the channel axis; per tensor: 0-d, which broadcasts against any tensor).

    ``step`` is the divisor of :func:`round_clamp`: the scale, with 1 where the scale is 0 (a constant-zero channel,
    whose codes the clamp then pins to its single level)."""
    dev = device if device is not None else p.scale.device
    shape: list[int] = [] if p.axis is None else p.shape_for(ndim)
    scale = p.scale.to(device=dev, dtype=dtype).reshape(shape)
    step = torch.where(scale > 0, scale, torch.ones_like(scale))
    qmin = p.qmin.to(dev).to(dtype).reshape(shape)
    qmax = p.qmax.to(dev).to(dtype).reshape(shape)
    return scale, step, qmin, qmax


def clamp_codes(q: torch.Tensor, qmin: float | torch.Tensor, qmax: float | torch.Tensor) -> torch.Tensor:
    """Clamp float codes ``q`` to ``[qmin, qmax]`` in place (bounds: Python floats, or tensors broadcasting
    against ``q``; a float bound is several times faster than a tensor one). Returns ``q``."""
    if isinstance(qmin, float) and isinstance(qmax, float):
        return q.clamp_(qmin, qmax)
    if isinstance(qmin, float):
        q.clamp_(min=qmin)
    else:
        torch.maximum(q, qmin, out=q)
    if isinstance(qmax, float):
        q.clamp_(max=qmax)
    else:
        torch.minimum(q, qmax, out=q)
    return q


def round_clamp(x: torch.Tensor, step: torch.Tensor, qmin: float | torch.Tensor, qmax: float | torch.Tensor, *,
                inplace: bool = False) -> torch.Tensor:
    """The codes of ``x`` on a uniform grid, as floats: ``clamp(round(x / step), qmin, qmax)``.

    The one rounding of the package: :func:`quantize`, :func:`fake_quantize` and the activation quantizers all call
    it, so codes and fake-quantized values agree bit for bit. ``step`` is a tensor (a Python scalar divisor may
    become a multiplication by its reciprocal, which rounds differently), broadcast against ``x`` (see :func:`grid`);
    rounding is half to even; ``inplace`` overwrites ``x`` (same dtype as the result)."""
    q = x.div_(step) if inplace else torch.div(x, step)
    q.round_()
    return clamp_codes(q, qmin, qmax)


def quantize(x: Any, lo: Any, hi: Any, levels: Any, *, axis: int | None = None) -> QuantizedTensor:
    """Quantize ``x`` uniformly on ``[lo, hi]`` with ``levels`` codes; codes in the smallest fitting dtype.

    ``lo``, ``hi`` (values) and ``levels`` (int >= 1) are scalars or per-channel tensors along ``axis``
    (``None`` = per tensor). Use ``lo = 0`` for unsigned (ReLU) ranges. Values outside the range saturate,
    rounding is half to even, NaN raises :class:`QuantError`. Empty tensors give empty codes.
    """
    xt, ax, nc = _prepare(x, axis)
    p = quant_params(lo, hi, levels, axis=ax, n_channels=nc, device=xt.device)
    # float32 holds integers exactly only up to 2**24; larger alphabets go through float64
    wide = bool(p.qmin.numel()) and max(int(p.qmax.abs().max()), int(p.qmin.abs().max())) > 2**24
    dt = torch.float64 if wide else torch.float32
    _, step, qmin, qmax = grid(p, xt.dim(), device=xt.device, dtype=dt)
    return pack_codes(round_clamp(xt.to(dt), step, qmin, qmax), p)


def pack_codes(q: torch.Tensor, p: QuantParams) -> QuantizedTensor:
    """Store float-valued codes ``q`` (already rounded and clamped to the centred grid of ``p``) as integers.

    The dtype is the smallest that holds [min qmin, max qmax]; if that is int16/int32 for a range of at most 256
    levels (an asymmetric signed range), the codes are offset to ``0..levels-1`` (uint8) with
    ``zero_point = -qmin`` per channel. Used by :func:`quantize`; other fast paths call it to get the same codes.
    """
    dt = code_dtype(int(p.qmin.min()), int(p.qmax.max())) if p.qmin.numel() else torch.uint8
    if dt in (torch.int16, torch.int32) and int(p.levels.max()) <= 256 and int(p.zero_point.abs().max()) == 0:
        shape = p.shape_for(q.dim())
        q = q - p.qmin.to(q.device).reshape(shape).to(q.dtype)
        p = QuantParams(scale=p.scale, zero_point=-p.qmin, qmin=torch.zeros_like(p.qmin), qmax=p.qmax - p.qmin,
                        axis=p.axis)
        dt = torch.uint8
    return QuantizedTensor(codes=q.to(dt), params=p)


def fake_quantize(x: Any, lo: Any, hi: Any, levels: Any, *, axis: int | None = None) -> torch.Tensor:
    """``quantize(x, lo, hi, levels, axis=axis).dequantize()`` without materializing integer codes (float32)."""
    xt, ax, nc = _prepare(x, axis)
    p = quant_params(lo, hi, levels, axis=ax, n_channels=nc, device=xt.device)
    scale, step, qmin, qmax = grid(p, xt.dim(), device=xt.device)
    return round_clamp(xt.to(torch.float32), step, qmin, qmax).mul_(scale)
