"""Integer execution of one conv or linear layer from stored codes (the rebuttal's int32 argument).

The rebuttal answers a reviewer that per-channel 4-bit layers run as 4-bit x 4-bit integer products,
widened and summed in an int32 accumulator, then rescaled per channel. These functions do exactly that with
integer torch tensors (CPU; CUDA inputs are moved to CPU, where integer matmul exists):

1. ``a = codes_x - zero_point_x`` and ``b = codes_w - zero_point_w`` as int32 (zero padding is integer 0);
2. ``acc = Σ a·b`` over the receptive field in int32 (``torch.matmul`` on int32 tensors; the worst-case
   sum ``max|a|·max|b|·fan_in`` is checked to fit int32 first);
3. rescale: ``y = acc · scale_x · scale_w[o] + bias[o]`` in float64.

Which sums can share one accumulator depends on the activation scales. A per-tensor input scale, or a
depthwise conv (each output reads one input channel), gives one int32 accumulator per output value and one
per-output-channel rescale, as in the rebuttal. With per-channel input scales and several input channels per
group, each input channel's partial sum is its own int32 accumulator, rescaled by ``scale_x[c]·scale_w[o]``
before the cross-channel sum (integer hardware would instead fold ``scale_x`` into the weights and requantize
them; that changes the codes, so it is not what the simulation computes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from quant.errors import QuantError
from quant.quantizer import QuantizedTensor, QuantParams

__all__ = ["integer_conv2d", "integer_linear", "run_layer_integer", "accumulator_bound"]

_INT32_MAX = 2**31 - 1


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _centred(q: QuantizedTensor, expect_axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes - zero_point) as int32 on CPU, and the scale as float64 broadcast vector or scalar."""
    p = q.params
    if p.axis is not None and p.axis != expect_axis:
        raise QuantError(f"expected per-channel parameters along axis {expect_axis}, got axis {p.axis}")
    codes = q.codes.detach().cpu()
    if codes.is_floating_point():
        raise QuantError(f"codes must be an integer tensor, got {codes.dtype}")
    zp = p.zero_point.detach().cpu().to(torch.int64)
    shape = p.shape_for(codes.dim()) if p.axis is not None else [1] * codes.dim()
    centred = codes.to(torch.int64) - zp.reshape(shape)
    if centred.numel() and int(centred.abs().max()) > _INT32_MAX:
        raise QuantError("centred codes do not fit int32")
    return centred.to(torch.int32), p.scale.detach().cpu().to(torch.float64)


def accumulator_bound(x_max: int, w_max: int, fan_in: int) -> int:
    """Largest |Σ a·b| possible with |a| <= x_max, |b| <= w_max over ``fan_in`` terms (int32 needs <= 2**31-1)."""
    return int(x_max) * int(w_max) * int(fan_in)


def _check_bound(a: torch.Tensor, b: torch.Tensor, fan_in: int, what: str) -> None:
    xm = int(a.abs().max()) if a.numel() else 0
    wm = int(b.abs().max()) if b.numel() else 0
    bound = accumulator_bound(xm, wm, fan_in)
    if bound > _INT32_MAX:
        raise QuantError(f"{what}: worst-case accumulator {bound} ({xm} x {wm} x {fan_in}) overflows int32")


def integer_conv2d(
    x: QuantizedTensor,
    w: QuantizedTensor,
    bias: torch.Tensor | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``conv2d(dequant(x), dequant(w)) + bias`` through int32 accumulation (float64 result, CPU).

    ``x``: (N, C_in, H, W) codes, per tensor or per channel along axis 1; ``w``: (C_out, C_in/groups, kh, kw)
    codes, per tensor or per channel along axis 0; ``padding`` is symmetric zero padding (pixels).
    """
    a, sx = _centred(x, 1)
    b, sw = _centred(w, 0)
    if a.dim() != 4 or b.dim() != 4:
        raise QuantError(f"integer_conv2d needs 4-D codes, got {tuple(a.shape)} and {tuple(b.shape)}")
    N, Cin, H, W = a.shape
    Cout, Cin_g, kh, kw = b.shape
    G = int(groups)
    if Cin != Cin_g * G or Cout % G:
        raise QuantError(f"channel mismatch: input {Cin}, weight {tuple(b.shape)}, groups {G}")
    sh, sw_ = _pair(stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    _check_bound(a, b, Cin_g * kh * kw, "integer_conv2d")
    a = F.pad(a, (pw, pw, ph, ph))  # integer 0 = real 0 after removing the zero point
    # receptive fields: (N, Cin, OH, OW, (kh-1)dh+1, (kw-1)dw+1) -> dilated taps
    cols = a.unfold(2, (kh - 1) * dh + 1, sh).unfold(3, (kw - 1) * dw + 1, sw_)[..., ::dh, ::dw]
    OH, OW = cols.shape[2], cols.shape[3]
    L, K = OH * OW, kh * kw
    Cout_g = Cout // G
    # (N, G, Cin_g, K, L)
    cols = cols.permute(0, 1, 4, 5, 2, 3).reshape(N, G, Cin_g, K, L)
    wk = b.reshape(G, Cout_g, Cin_g, K)
    per_channel_x = x.params.axis is not None and sx.numel() > 1
    if not per_channel_x or Cin_g == 1:
        # one int32 accumulator per output value
        acc = torch.matmul(wk.reshape(G, Cout_g, Cin_g * K), cols.reshape(N, G, Cin_g * K, L))  # int32
        y = acc.to(torch.float64).reshape(N, Cout, L)
        if per_channel_x:  # depthwise: output o reads input channel o // (Cout/Cin)
            y = y * sx.repeat_interleave(Cout // Cin)[None, :, None]
        else:
            y = y * sx.reshape(())
    else:
        # per input channel: int32 accumulators over the kernel window, rescaled before the channel sum
        y = torch.zeros((N, G, Cout_g, L), dtype=torch.float64)
        sxg = sx.reshape(G, Cin_g)
        for g in range(G):  # groups > 1 with per-channel inputs and Cin_g > 1 are rare (grouped convs)
            part = torch.matmul(wk[g].permute(1, 0, 2)[None], cols[:, g])  # (N, Cin_g, Cout_g, L) int32
            y[:, g] = torch.einsum("ncol,c->nol", part.to(torch.float64), sxg[g])
        y = y.reshape(N, Cout, L)
    y = y * (sw.reshape(-1)[None, :, None] if sw.numel() > 1 else sw.reshape(()))
    if bias is not None:
        y = y + bias.detach().cpu().to(torch.float64)[None, :, None]
    return y.reshape(N, Cout, OH, OW)


def integer_linear(x: QuantizedTensor, w: QuantizedTensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``linear(dequant(x), dequant(w)) + bias`` through int32 accumulation (float64 result, CPU).

    ``x``: (N, F_in) codes per tensor (or per feature along axis 1); ``w``: (F_out, F_in) per tensor or per
    row (axis 0).
    """
    a, sx = _centred(x, 1)
    b, sw = _centred(w, 0)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise QuantError(f"integer_linear needs (N, F) and (F_out, F) codes, got {tuple(a.shape)}, {tuple(b.shape)}")
    _check_bound(a, b, a.shape[1], "integer_linear")
    if x.params.axis is not None and sx.numel() > 1:
        part = a[:, None, :].to(torch.int32) * b[None, :, :]  # (N, F_out, F_in) int32 products
        y = (part.to(torch.float64) * sx[None, None, :]).sum(-1)
    else:
        y = torch.matmul(a, b.t()).to(torch.float64) * sx.reshape(())
    y = y * (sw.reshape(-1)[None, :] if sw.numel() > 1 else sw.reshape(()))
    if bias is not None:
        y = y + bias.detach().cpu().to(torch.float64)[None, :]
    return y


def _pad_between(qm: object, name: str) -> tuple[int, int, int, int]:
    """Explicit zero padding (left, right, top, bottom) between a layer's input site and the layer, if any."""
    from torch import fx

    gm = qm.quant.model  # type: ignore[attr-defined]
    if not isinstance(gm, fx.GraphModule):
        return (0, 0, 0, 0)
    mods = dict(gm.named_modules())
    info = qm.layers[name].info  # type: ignore[attr-defined]
    for node in gm.graph.nodes:
        if node.op == "call_module" and node.target == info.module_name:
            src = node.args[0]
            pad = [0, 0, 0, 0]
            while isinstance(src, fx.Node) and not str(src.target).startswith("_hq_sites."):
                m = mods.get(str(src.target)) if src.op == "call_module" else None
                if isinstance(m, (nn.ZeroPad2d, nn.ConstantPad2d)):
                    if isinstance(m, nn.ConstantPad2d) and m.value != 0:
                        raise QuantError(f"{name}: non-zero constant padding before the layer")
                    pad = [p + q for p, q in zip(pad, m.padding)]
                src = src.args[0] if src.args else None
            return tuple(pad)  # type: ignore[return-value]
    return (0, 0, 0, 0)


def run_layer_integer(qm: object, name: str, x: QuantizedTensor) -> torch.Tensor:
    """Output (before the fused activation) of layer ``name`` of a prepared quantized model, from input codes.

    ``x`` holds the codes feeding the layer (e.g. the ``activation`` of its ``input_layer`` from
    :func:`quant.export.quantized_tensors`); explicit zero-padding modules between that site and the
    layer (EfficientNet's static "same" padding) are applied in the integer domain. The weights are the
    layer's stored codes, so bias correction (which moves weights off the grid) is refused.
    """
    layers = qm.layers  # type: ignore[attr-defined]
    if name not in layers:
        raise QuantError(f"unknown layer {name!r}")
    lq = layers[name]
    if lq.weight is None:
        raise QuantError(f"layer {name} has FP32 weights: nothing to run in integers")
    if qm.config.bias_correction:  # type: ignore[attr-defined]
        raise QuantError("bias-corrected weights are not on the integer grid; run without bias correction")
    mod = qm.quant.modules[name]  # type: ignore[attr-defined]
    if lq.info.own_forward:
        raise QuantError(f"{name}: {type(mod).__name__} computes its own forward (its padding or weight transform "
                         f"is not in its attributes); integer execution needs a plain Conv2d or Linear")
    if isinstance(mod, nn.Linear):
        return integer_linear(x, lq.weight, mod.bias)
    if not isinstance(mod, nn.Conv2d):
        raise QuantError(f"integer execution supports Conv2d and Linear, not {type(mod).__name__}")
    if mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        raise QuantError(f"{name}: only explicit zero padding is supported")
    left, right, top, bottom = _pad_between(qm, name)
    if (left, right, top, bottom) != (0, 0, 0, 0):
        # pad in the centred domain (integer 0 = real 0), then carry zero_point 0
        centred, _ = _centred(x, 1)
        p = x.params
        zp = p.zero_point.to(torch.int64)
        p0 = QuantParams(scale=p.scale, zero_point=torch.zeros_like(zp), qmin=p.qmin - zp, qmax=p.qmax - zp,
                         axis=p.axis)
        x = QuantizedTensor(F.pad(centred, (left, right, top, bottom)), p0)
    return integer_conv2d(x, lq.weight, mod.bias, stride=mod.stride, padding=mod.padding,
                          dilation=mod.dilation, groups=mod.groups)
