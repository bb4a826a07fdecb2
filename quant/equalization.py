"""Cross-layer equalization and high-bias absorption (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", ICCV 2019), on an instrumented (BN-folded) model.

Equalization. For two consecutive layers where layer 2 is the only reader of layer 1's output (an MBConv's
expand → depthwise → project chain), output channel c of layer 1 is divided by s_c and input channel c of
layer 2 multiplied by s_c, with ``s_c = sqrt(r1_c / r2_c)`` (r1_c: max |weight| of layer 1's output channel c,
r2_c: max |weight| of layer 2's input channel c), so both ranges become sqrt(r1_c·r2_c). This is exact through
ReLU (positive scaling commutes with it) and through no activation. Through ReLU6 it is exact only if the
clamp moves with the channel: ReLU6(x)/s = clamp(x/s, 0, 6/s), so the site of layer 1 clamps channel c at
6/s_c (a per-channel bound; the quantized range of that channel is [0, 6/s_c] anyway). Replacing ReLU6 by ReLU,
which AIMET's maintainers suggest (qualcomm/aimet issue 525), would change the network; this does not.
Pairs are swept in network order until no scale moves by more than ``tol`` (depthwise layers belong to two pairs).

High-bias absorption. A ReLU channel whose pre-activation stays above ``c = max(0, β − 3γ)`` (β, γ: the folded
BatchNorm's shift and scale, i.e. the channel's mean and spread under BN's own statistics, after equalization
scaling) passes ``x − c`` unchanged, so c moves from layer 1's bias into layer 2's: b1 -= c, b2 += W2·c (summed
over the kernel). The ReLU6 bound becomes 6/s − c. This is exact only when layer 2 sees no zero padding (1x1
convolutions, linear layers), so only such pairs absorb (DFQ also absorbs into padded convolutions, where the
border pixels change); and only as far as the 3γ assumption holds on the data. It narrows activation ranges
that do not contain 0 (the quantizer's grid always does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from quant.capture import ACTIVATION_MAX
from quant.graph import Instrumented, LayerInfo

__all__ = ["EqualizationResult", "equalize", "equalization_pairs"]

log = logging.getLogger(__name__)


@dataclass
class EqualizationResult:
    """What :func:`equalize` did: per pair (layer 1, layer 2) the scales s (C,), and the absorbed biases."""

    scales: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
    absorbed: dict[str, torch.Tensor] = field(default_factory=dict)  # layer 1 -> c (C,)
    sweeps: int = 0


def _channels_in(mod: nn.Module) -> int:
    return mod.in_features if isinstance(mod, nn.Linear) else mod.in_channels


def equalization_pairs(inst: Instrumented) -> list[tuple[str, str]]:
    """Consecutive (layer 1, layer 2) pairs that can be equalized: layer 2 is the only reader of layer 1's output,
    no other op in between changes values, layer 1's fused activation is none, ReLU or ReLU6, and the channel
    counts match (a conv feeding a conv, or a linear layer feeding a linear layer). Layers with their own forward
    (:func:`quant.graph.has_own_forward`) are left out: scaling their weights need not scale what they compute."""
    pairs = []
    for name, info in inst.layers.items():
        nxt = info.sole_consumer
        if nxt is None or info.via_hook or info.own_forward or info.activation not in (None, "relu", "relu6"):
            continue
        m1, m2 = inst.modules[name], inst.modules[nxt]
        i2 = inst.layers[nxt]
        if i2.input_layer != name or i2.via_hook or i2.own_forward or \
                isinstance(m1, nn.Linear) != isinstance(m2, nn.Linear):
            continue
        if m1.weight.shape[0] != _channels_in(m2) or name == nxt:
            continue
        pairs.append((name, nxt))
    return pairs


def _out_range(w: torch.Tensor) -> torch.Tensor:
    return w.detach().abs().reshape(w.shape[0], -1).amax(1)


def _in_view(mod: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Layer 2's weight as (G, O/G, C_in/G, rest): input channel c is [c // (C_in/G), :, c % (C_in/G)]."""
    G = getattr(mod, "groups", 1)
    return w.reshape(G, w.shape[0] // G, w.shape[1], -1)


def _in_range(mod: nn.Module, w: torch.Tensor) -> torch.Tensor:
    v = _in_view(mod, w.detach().abs())
    return v.amax(dim=(1, 3)).reshape(-1)  # (G, C_in/G) -> (C_in,)


def _scale_in(mod: nn.Module, s: torch.Tensor) -> None:
    w = mod.weight.data
    v = _in_view(mod, w)
    G, _, cg, _ = v.shape
    v.mul_(s.reshape(G, 1, cg, 1).to(w.dtype))


def _ensure_bias(mod: nn.Module) -> torch.Tensor:
    if mod.bias is None:
        mod.bias = nn.Parameter(torch.zeros(mod.weight.shape[0], dtype=mod.weight.dtype, device=mod.weight.device),
                                requires_grad=False)
    return mod.bias.data


def equalize(inst: Instrumented, original: nn.Module | None = None, *, absorb: bool = True, tol: float = 1e-4,
             max_sweeps: int = 50) -> EqualizationResult:
    """Equalize every pair of :func:`equalization_pairs` of ``inst`` in place (weights, biases and the sites'
    per-channel activation bounds), then absorb high biases using the BatchNorms of ``original`` (the model
    ``inst`` was made from; no absorption without it)."""
    pairs = equalization_pairs(inst)
    res = EqualizationResult()
    total = {p: torch.ones(inst.modules[p[0]].weight.shape[0], dtype=torch.float64,
                           device=inst.modules[p[0]].weight.device) for p in pairs}
    for sweep in range(max_sweeps):
        worst = 0.0
        for p in pairs:
            m1, m2 = inst.modules[p[0]], inst.modules[p[1]]
            r1 = _out_range(m1.weight.data).to(torch.float64)
            r2 = _in_range(m2, m2.weight.data).to(torch.float64)
            ok = (r1 > 0) & (r2 > 0)
            s = torch.where(ok, torch.sqrt(r1 / torch.where(ok, r2, torch.ones_like(r2))), torch.ones_like(r1))
            m1.weight.data.div_(s.reshape(-1, *([1] * (m1.weight.dim() - 1))).to(m1.weight.dtype))
            if m1.bias is not None:
                m1.bias.data.div_(s.to(m1.bias.dtype))
            _scale_in(m2, s)
            total[p] *= s
            worst = max(worst, float((s - 1).abs().max()))
        res.sweeps = sweep + 1
        if worst < tol:
            break
    for p, s in total.items():
        res.scales[p] = s
        info = inst.layers[p[0]]
        hi = ACTIVATION_MAX.get(info.activation or "")
        if hi is not None:
            _set_bound(inst, p[0], hi / s)
    if absorb and original is not None:
        for p, s in total.items():
            c = _absorb(inst, original, p, s)
            if c is not None:
                res.absorbed[p[0]] = c
    log.info("equalized %d layer pairs in %d sweeps; absorbed high biases of %d layers", len(pairs), res.sweeps,
             len(res.absorbed))
    return res


def _set_bound(inst: Instrumented, name: str, hi: torch.Tensor) -> None:
    inst.sites[name].set_activation_bound(hi)


def _absorbable(inst: Instrumented, p: tuple[str, str]) -> bool:
    m2 = inst.modules[p[1]]
    if isinstance(m2, nn.Linear):
        return True
    k = m2.kernel_size
    pad = m2.padding
    no_pad = pad == "valid" or (not isinstance(pad, str) and all(v == 0 for v in pad))
    return all(v == 1 for v in k) and no_pad and not inst.layers[p[1]].input_padded


def _absorb(inst: Instrumented, original: nn.Module, p: tuple[str, str], s: torch.Tensor) -> torch.Tensor | None:
    info: LayerInfo = inst.layers[p[0]]
    if info.folded_bn is None or not _absorbable(inst, p):
        return None
    bn = original.get_submodule(info.folded_bn)
    beta = bn.bias.detach().to(s.device, torch.float64) if bn.bias is not None else torch.zeros_like(s)
    gamma = bn.weight.detach().to(s.device, torch.float64).abs() if bn.weight is not None else torch.ones_like(s)
    c = torch.clamp((beta - 3 * gamma) / s, min=0.0)
    if info.activation is None:
        c = beta / s  # no activation: any shift is exact; centre the channel on BN's mean
    if not bool((c != 0).any()):
        return None
    m1, m2 = inst.modules[p[0]], inst.modules[p[1]]
    b1 = _ensure_bias(m1)
    b1.sub_(c.to(b1.dtype))
    b2 = _ensure_bias(m2)
    w2 = _in_view(m2, m2.weight.data.to(torch.float64)).sum(3)  # (G, O/G, C_in/G)
    G, _, cg = w2.shape
    shift = torch.einsum("goc,gc->go", w2, c.reshape(G, cg)).reshape(-1)
    b2.add_(shift.to(b2.dtype))
    hi = ACTIVATION_MAX.get(info.activation or "")
    if hi is not None:
        _set_bound(inst, p[0], hi / s - c)
    elif info.activation == "relu":
        pass  # unbounded: x - c >= 0 keeps ReLU(x) - c = ReLU(x - c) where the 3γ assumption holds
    return c
