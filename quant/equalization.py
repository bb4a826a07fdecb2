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

High-bias absorption. A channel of layer 1 whose values on the calibration images never fall below some c_c > 0
wastes the quantizer's levels between 0 and c_c (its grid always contains 0). Absorption moves c_c from layer 1's
bias into layer 2's: b1 -= c, b2 += W2·c (summed over the kernel), and moves both ends of the fused activation with
it: ReLU6(x) - c = clamp(x - c, -c, 6/s - c), ReLU(x) - c = max(x - c, -c) (per-channel ends of the site,
:meth:`quant.capture.ActivationSite.set_activation_bounds`). The float network is then the same function for every
input, not only where an assumption about the data holds (DFQ's c = max(0, β − 3γ) from the BatchNorm changed the
outputs of the 0.2-2% of the values below it). c comes from data: the estimated lower end of the channel's
pre-activation values on the calibration images (:func:`absorption_shifts`; 0 where that end is not above 0), or,
for a layer with no activation, the channel's mean (any shift is exact there, and centring the channel narrows its
signed range). The gain is in the quantizer: unsigned codes cover [0, hi - c] instead of [0, hi]; an unseen value
below c is clipped to 0 by the quantizer (quantization error, not a change of the float network). Only pairs where
layer 2 sees no zero padding absorb (1x1 convolutions, linear layers): a padded border would not receive W2·c.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from quant.capture import ACTIVATION_MAX
from quant.errors import QuantError
from quant.graph import Instrumented, LayerInfo

__all__ = ["EqualizationResult", "equalize", "equalization_pairs", "absorbable_pairs", "absorption_shifts", "absorb"]

log = logging.getLogger(__name__)


@dataclass
class EqualizationResult:
    """What :func:`equalize` did: per pair (layer 1, layer 2) the scales s (C,), and the number of sweeps."""

    scales: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict)
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


def equalize(inst: Instrumented, *, tol: float = 1e-4, max_sweeps: int = 50) -> EqualizationResult:
    """Equalize every pair of :func:`equalization_pairs` of ``inst`` in place (weights, biases and the sites'
    per-channel upper ends of ReLU6). Data-free; :func:`absorb` is the separate, data-driven second step."""
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
        hi = ACTIVATION_MAX.get(inst.layers[p[0]].activation or "")
        if hi is not None:
            site = inst.sites[p[0]]
            site.set_activation_bounds(site.act_lo, hi / s)
    log.info("equalized %d layer pairs in %d sweeps", len(pairs), res.sweeps)
    return res


def absorbable_pairs(inst: Instrumented) -> list[tuple[str, str]]:
    """The pairs of :func:`equalization_pairs` whose layer 2 sees no zero padding (1x1 convolutions without padding,
    linear layers), where moving a constant from layer 1 into layer 2's bias is exact."""
    return [p for p in equalization_pairs(inst) if _absorbable(inst, p)]


def absorption_shifts(inst: Instrumented, views: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The constant c (C,) (float64) to move out of each absorbable layer 1, from per-channel calibration statistics
    of its pre-activation values (``views[layer]``: a :class:`quant.statistics.StatView` of the network as it is,
    equalized): the estimated lower end of the channel where it is above 0 (fused ReLU/ReLU6; capped at the
    channel's upper end), the channel mean for a layer with no activation. Layers with nothing to move are left out."""
    out = {}
    for p in absorbable_pairs(inst):
        info: LayerInfo = inst.layers[p[0]]
        if p[0] not in views:
            continue
        v = views[p[0]]
        if info.activation is None:
            c = v.mean.to(torch.float64).clone()
        else:
            low = v.min if v.support_min is None else v.support_min
            c = torch.clamp(low.to(torch.float64), min=0.0)
            site = inst.sites[p[0]]
            top = site.act_hi if site.act_hi is not None else ACTIVATION_MAX.get(info.activation)
            if top is not None:
                c = torch.minimum(c, torch.as_tensor(top, dtype=torch.float64))
        if bool((c != 0).any()):
            out[p[0]] = c
    return out


def absorb(inst: Instrumented, shifts: dict[str, torch.Tensor]) -> None:
    """Move ``shifts[layer]`` (C,) out of each layer into the bias of its sole consumer, and move the ends of the
    layer's fused activation with it (module docstring): the network stays the same function."""
    pairs = dict(absorbable_pairs(inst))
    for name, c in shifts.items():
        if name not in pairs:
            raise QuantError(f"layer {name} cannot absorb a shift: its output is not read by one unpadded "
                             f"1x1 convolution or linear layer")
        m1, m2 = inst.modules[name], inst.modules[pairs[name]]
        c = c.to(device=m1.weight.device, dtype=torch.float64)
        if c.shape != (m1.weight.shape[0],):
            raise QuantError(f"layer {name}: shift of shape {tuple(c.shape)} for {m1.weight.shape[0]} channels")
        b1 = _ensure_bias(m1)
        b1.sub_(c.to(b1.dtype))
        b2 = _ensure_bias(m2)
        w2 = _in_view(m2, m2.weight.data.to(torch.float64)).sum(3)  # (G, O/G, C_in/G)
        G, _, cg = w2.shape
        b2.add_(torch.einsum("goc,gc->go", w2, c.reshape(G, cg)).reshape(-1).to(b2.dtype))
        info = inst.layers[name]
        if info.activation is not None:
            site = inst.sites[name]
            top = site.act_hi if site.act_hi is not None else ACTIVATION_MAX.get(info.activation)
            lo = site.act_lo.to(torch.float64) if site.act_lo is not None else torch.zeros_like(c)
            hi = None if top is None else torch.as_tensor(top, dtype=torch.float64, device=c.device) - c
            site.set_activation_bounds(lo - c, hi)


def _absorbable(inst: Instrumented, p: tuple[str, str]) -> bool:
    m2 = inst.modules[p[1]]
    if isinstance(m2, nn.Linear):
        return True
    k = m2.kernel_size
    pad = m2.padding
    no_pad = pad == "valid" or (not isinstance(pad, str) and all(v == 0 for v in pad))
    return all(v == 1 for v in k) and no_pad and not inst.layers[p[1]].input_padded
