"""AdaRound: learned up/down rounding of quantized weights (Nagel et al., "Up or Down? Adaptive Rounding for
Post-Training Quantization", ICML 2020).

For each layer, every weight ``w`` on the grid of step ``s`` (the layer's per-channel quantizer) is rounded to
``floor(w/s)`` or ``floor(w/s) + 1`` instead of to the nearest code. The choice is relaxed to
``h(V) = clamp(sigmoid(V)·(ζ − γ) + γ, 0, 1)`` (ζ = 1.1, γ = −0.1) and learned with Adam to minimise the layer's
output error on calibration data,

    ‖ f(W x + b) − f(Ŵ(V) x̃ + b) ‖² / E_RTN  +  λ · mean (1 − |2h(V) − 1|^β),

where ``x`` is the layer's input in the FP32 network, ``x̃`` its input in the quantized network (upstream weights
and activations quantized; the paper's "asymmetric" reconstruction), ``f`` the fused ReLU/ReLU6 (identity for
other layers), and β anneals from 20 to 2 after a warm-up of 20% of the iterations without the regulariser.
Finally ``h >= 0.5`` rounds up. Codes stay inside the channel's ``[qmin, qmax]``. Unlike the paper (raw sums,
λ = 0.01), both terms are normalised (the output error by round-to-nearest's, E_RTN; the regulariser by the
number of weights), so one λ (10) suits every layer: with the paper's scaling most weights of
EfficientNet-Lite0's layers stayed undecided near h = 0.5 and the final rounding lost nearly all of the gain.

Inputs, layer by layer. The layers are learned in the order the network runs them, inside ONE forward pass of the
quantized network over all calibration images at once: a forward pre-hook on each layer receives its input x̃ from
the network as it is at that moment (every upstream layer already rounded as learned, every activation quantized),
learns the layer's rounding, installs it, and lets the pass go on. So every layer sees the learned rounding of
every layer before it (the paper's sequential, asymmetric reconstruction), and the network runs once, not once
per layer. The FP32 targets come from one pass of the float network.

Cost on a CPU. The output error is measured on sampled output positions, not whole feature maps: for each layer,
the input patches of ``positions`` random output positions per image (im2col of those positions only; a linear
layer uses every image), the same positions in both passes. Every iteration takes a random mini-batch of
``batch`` patches: a (batch x K) @ (K x C_out) product in float32 (grouped and depthwise convolutions: one small
product per group).

Held-out images and the fall-back to round to nearest. The last ``holdout`` share of the calibration images
(for the built-in pool: whole boxes, both orientations, see :mod:`quant.images`) is not learned on; each layer's
output error is measured there for the learned rounding and for round to nearest, and a layer whose learned
rounding is not better there keeps round to nearest, and so does a layer with fewer sampled outputs than inputs
per output (a classifier sees one row per image: 108 rows cannot determine the rounding of 1280 inputs per class).

Settings (iterations, learning rate, batch, positions) were chosen on the calibration images: the loss ratio
(AdaRound / round to nearest) per layer stops improving by more than a few percent with more iterations (see
``quant/PIPELINE.md``). Layers of more than ``max_bits`` bits per weight keep round to nearest.

The result (:class:`AdaRoundResult`) is one bit per weight ("round up") per layer plus the settings it was learned
for; :meth:`AdaRoundResult.to_arrays` / :meth:`AdaRoundResult.from_arrays` store it in a statistics file
(:class:`quant.calibration.ModelStatistics`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from quant.errors import CalibrationError, QuantError
from quant.graph import has_own_forward
from quant.quantizer import QuantizedTensor, clamp_codes, grid
from quant.recipes import ADAROUND_ITERATIONS

__all__ = ["AdaRoundSettings", "AdaRoundResult", "adaround_layers", "rounding_codes", "nearest_up", "sample_patches",
           "sample_positions", "output_grid"]

log = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class AdaRoundSettings:
    """Hyper-parameters (defaults: the paper's λ, β schedule and warm-up; sizes chosen for 2 CPU cores on the
    calibration images, see the module docstring)."""

    iterations: int = ADAROUND_ITERATIONS  # Adam steps per layer
    batch: int = 512  # patches per step
    positions: int = 24  # sampled output positions per image and layer
    lr: float = 1e-2
    reg: float = 10.0  # λ, on the normalised losses (see _learn)
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    seed: int = 0
    max_bits: float = 8.0  # layers with more bits per weight keep round to nearest (see adaround_layers)
    holdout: float = 0.25  # share of the calibration images (the last ones) kept to check each layer

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch < 1 or self.positions < 1:
            raise QuantError(f"AdaRound settings must be positive: {self}")
        if not 0.0 <= self.holdout < 1.0:
            raise QuantError(f"AdaRound holdout must be a share in [0, 1), got {self.holdout}")


@dataclass
class AdaRoundResult:
    """Learned rounding of every layer: ``up[layer]`` is a bool tensor shaped like the weight (True: round up)."""

    key: str  # what the rounding was learned for (the weight grid and the network it sees; see pipeline)
    up: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    # layer -> (round-to-nearest loss, AdaRound loss) on the learned images, then the same on the held-out ones
    loss: dict[str, tuple[float, ...]] = field(default_factory=dict)
    kept_nearest: list[str] = field(default_factory=list)  # layers whose learned rounding lost on held-out images
    skipped_underdetermined: list[str] = field(default_factory=list)  # fewer sampled outputs than inputs: not learned
    seconds: float = 0.0

    def loss_ratios(self) -> dict[str, float]:
        """AdaRound's output error over round to nearest's, per layer, on the held-out images where there are
        some (else on the learned ones); below 1 is better. A layer that kept round to nearest reads 1."""
        out = {}
        for n, v in self.loss.items():
            rtn, ada = (v[2], v[3]) if len(v) >= 4 else (v[0], v[1])
            out[n] = 1.0 if n in self.kept_nearest else (ada / rtn if rtn > 0 else 1.0)
        return out

    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-ready meta, arrays) for a statistics file; arrays are bit-packed (1 bit per weight)."""
        meta = {"key": self.key, "settings": self.settings, "seconds": self.seconds,
                "layers": {n: list(t.shape) for n, t in self.up.items()},
                "loss": {n: list(v) for n, v in self.loss.items()}, "kept_nearest": list(self.kept_nearest),
                "skipped_underdetermined": list(self.skipped_underdetermined)}
        arrays = {f"{prefix}/{n}": np.packbits(t.cpu().numpy().astype(np.uint8).reshape(-1)) for n, t in self.up.items()}
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str) -> "AdaRoundResult":
        """Inverse of :meth:`to_arrays`; raises :class:`CalibrationError` on missing or misshaped layers."""
        up = {}
        for name, shape in meta["layers"].items():
            key = f"{prefix}/{name}"
            if key not in arrays:
                raise CalibrationError(f"AdaRound rounding of layer {name!r} is missing from the statistics file")
            n = int(np.prod(shape))
            bits = np.unpackbits(arrays[key])
            if bits.size < n or bits.size > n + 7:
                raise CalibrationError(f"AdaRound rounding of layer {name!r} has {bits.size} bits, expected {n}")
            up[name] = torch.from_numpy(bits[:n].astype(bool).reshape(shape))
        return cls(key=str(meta["key"]), up=up, settings=dict(meta.get("settings", {})),
                   loss={n: tuple(v) for n, v in meta.get("loss", {}).items()},
                   kept_nearest=list(meta.get("kept_nearest", [])),
                   skipped_underdetermined=list(meta.get("skipped_underdetermined", [])),
                   seconds=float(meta.get("seconds", 0.0)))


def rounding_codes(weight: torch.Tensor, qt: QuantizedTensor, up: torch.Tensor) -> QuantizedTensor:
    """The codes of ``weight`` on the grid of ``qt`` (its params) rounded down, or up where ``up`` is True."""
    p = qt.params
    if up.shape != weight.shape:
        raise QuantError(f"rounding mask of shape {tuple(up.shape)} for a weight of shape {tuple(weight.shape)}")
    _, step, qmin, qmax = grid(p, weight.dim(), device=weight.device)
    zp = p.zero_point.to(device=weight.device, dtype=torch.float32).reshape(step.shape)
    c = torch.floor(weight.detach().to(torch.float32) / step + zp) + up.to(device=weight.device, dtype=torch.float32)
    return QuantizedTensor(clamp_codes(c, qmin, qmax).to(qt.codes.dtype), p)


# ------------------------------------------------------------------------------------------ patches
def _conv_geometry(mod: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int], tuple[int, int]]:
    k = tuple(mod.kernel_size)
    s = tuple(mod.stride)
    d = tuple(mod.dilation)
    pad = mod.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad4 = (0, 0, 0, 0)
        else:  # "same" (stride 1): PyTorch puts the extra pixel after
            tot = [d[i] * (k[i] - 1) for i in range(2)]
            pad4 = (tot[1] // 2, tot[1] - tot[1] // 2, tot[0] // 2, tot[0] - tot[0] // 2)
    else:
        pad4 = (pad[1], pad[1], pad[0], pad[0])
    return k, s, pad4, d


def output_grid(mod: nn.Module, height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of a Conv2d's output for an input of ``height`` x ``width`` pixels."""
    k, s, pad4, d = _conv_geometry(mod)
    H, W = height + pad4[2] + pad4[3], width + pad4[0] + pad4[1]
    return (H - d[0] * (k[0] - 1) - 1) // s[0] + 1, (W - d[1] * (k[1] - 1) - 1) // s[1] + 1


def sample_positions(n_images: int, n_positions: int, per: int, generator: torch.Generator) -> torch.Tensor:
    """``min(per, n_positions)`` distinct random output positions (flat indices) per image: (n_images, per)."""
    per = min(per, n_positions)
    return torch.stack([torch.randperm(n_positions, generator=generator)[:per] for _ in range(n_images)])


def sample_patches(mod: nn.Module, x: torch.Tensor, positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Input patches of a Conv2d at the given output positions of each image (or every row of a Linear).

    ``positions`` (N, P) are flat output positions (row * columns + column) per image of ``x`` (None for a Linear).
    Returns ``(patches, index)``: patches (N·P, G, K) with G the groups and K = C_in/G · kh · kw (Linear: G = 1,
    K = in_features), and the positions (N·P, 3) as (image, row, column) (Linear: (rows, 1) images).
    """
    if isinstance(mod, nn.Linear):
        flat = x.reshape(-1, x.shape[-1])
        return flat[:, None, :], torch.arange(flat.shape[0], device=x.device)[:, None]
    k, s, pad4, d = _conv_geometry(mod)
    if mod.padding_mode != "zeros" and any(pad4):
        raise QuantError(f"AdaRound supports zero padding only, not {mod.padding_mode!r}")
    xp = F.pad(x, pad4) if any(pad4) else x
    N, C, _, _ = xp.shape
    _, wo = output_grid(mod, x.shape[2], x.shape[3])
    idx = positions.to(x.device)
    per = idx.shape[1]
    n_idx = torch.arange(N, device=x.device)[:, None].expand(N, per).reshape(-1)
    oi, oj = (idx // wo).reshape(-1), (idx % wo).reshape(-1)
    da = (torch.arange(k[0], device=x.device) * d[0]).repeat_interleave(k[1])  # kernel offsets, row-major
    db = (torch.arange(k[1], device=x.device) * d[1]).repeat(k[0])
    rows = oi[:, None] * s[0] + da[None, :]  # (P, kh*kw)
    cols = oj[:, None] * s[1] + db[None, :]
    g = xp.permute(0, 2, 3, 1)[n_idx[:, None], rows, cols]  # one gather: (P, kh*kw, C)
    G = mod.groups
    patches = g.transpose(1, 2).reshape(-1, G, C // G * k[0] * k[1])  # channel-major, then kernel
    return patches, torch.stack([n_idx, oi, oj], dim=1)


def _group_weight(mod: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Weight as (G, C_out/G, K) to match :func:`sample_patches`."""
    G = getattr(mod, "groups", 1)
    return w.reshape(G, w.shape[0] // G, -1)


def _layer_out(patches: torch.Tensor, wg: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """(P, C_out) outputs of grouped patches (P, G, K) and grouped weights (G, O, K)."""
    if wg.shape[0] == 1:
        out = patches[:, 0, :] @ wg[0].t()
    elif wg.shape[1] == 1:  # depthwise: one output per group
        out = (patches * wg[:, 0, :]).sum(-1)
    else:
        out = torch.einsum("pgk,gok->pgo", patches, wg).reshape(patches.shape[0], -1)
    return out if bias is None else out + bias


# ------------------------------------------------------------------------------------------ optimisation
def _h(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def _learn(w: torch.Tensor, qt: QuantizedTensor, mod: nn.Module, bias: torch.Tensor | None, x: torch.Tensor,
           xq: torch.Tensor, act: Callable[[torch.Tensor], torch.Tensor], st: AdaRoundSettings,
           gen: torch.Generator, held: int = 0) -> tuple[torch.Tensor, tuple[float, ...]]:
    """Learn one layer's rounding on the patches ``x`` (float network) / ``xq`` (quantized network) but the last
    ``held`` (held-out images). Returns (up mask, losses): round to nearest's and AdaRound's output error on the
    learned patches, then on the held-out ones when there are some."""
    p = qt.params
    shape = p.shape_for(w.dim())
    scale = p.scale.to(torch.float32).reshape(shape)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    zp = p.zero_point.to(torch.float32).reshape(shape)
    qmin = p.qmin.to(torch.float32).reshape(shape)
    qmax = p.qmax.to(torch.float32).reshape(shape)
    u = w.detach().to(torch.float32) / safe + zp
    base = torch.floor(u)
    frac = (u - base).clamp(0.0, 1.0)
    rest = (frac - GAMMA) / (ZETA - GAMMA)
    v = torch.log(rest / (1 - rest)).clamp(-12, 12).detach().requires_grad_(True)  # h(v) = frac at the start
    opt = torch.optim.Adam([v], lr=st.lr)
    b = None if bias is None else bias.detach().to(torch.float32)
    with torch.no_grad():
        target = act(_layer_out(x, _group_weight(mod, w.to(torch.float32)), b))

    def wq(hv: torch.Tensor) -> torch.Tensor:
        return (torch.clamp(base + hv, qmin, qmax) - zp) * scale

    def loss_of(w_hat: torch.Tensor, rows: Any) -> torch.Tensor:
        diff = act(_layer_out(xq[rows], _group_weight(mod, w_hat), b)) - target[rows]
        return diff.pow(2).sum(1).mean()

    P = x.shape[0] - held
    learned, heldout = slice(0, P), slice(P, x.shape[0])
    objective = _gram_objective(mod, w, b, x[learned], xq[learned], act, st.batch)

    def train_loss(w_hat: torch.Tensor) -> torch.Tensor:
        if objective is not None:
            return objective(w_hat)
        rows = torch.randint(0, P, (min(st.batch, P),), generator=gen).to(x.device)
        return loss_of(w_hat, rows)

    warm = int(st.warmup * st.iterations)
    # scale-free losses: the output error relative to round-to-nearest's, the regulariser averaged over weights
    # (the paper's λ = 0.01 on raw sums left most weights undecided: their rounding at h = 0.5 then lost
    # nearly all of the gain, e.g. 29.0 -> 28.7 instead of -> 2.2 on EfficientNet-Lite0's first depthwise layer)
    with torch.no_grad():
        ref = float(loss_of(wq(torch.round(frac)), learned) if objective is None else objective(wq(torch.round(frac))))
    ref = ref if ref > 0 else 1.0
    n_w = float(v.numel())
    for it in range(st.iterations):
        hv = _h(v)
        rec = train_loss(wq(hv)) / ref
        if it >= warm:
            t = (it - warm) / max(1, st.iterations - warm)
            beta = st.beta[1] + 0.5 * (st.beta[0] - st.beta[1]) * (1 + math.cos(t * math.pi))
            rec = rec + st.reg * (1 - (2 * hv - 1).abs().pow(beta)).sum() / n_w
        opt.zero_grad(set_to_none=True)
        rec.backward()
        opt.step()
    with torch.no_grad():
        up = _h(v) >= 0.5
        w_rtn, w_ada = wq(torch.round(frac)), wq(up.to(torch.float32))
        losses = [float(loss_of(w_rtn, learned)), float(loss_of(w_ada, learned))]
        if held:
            losses += [float(loss_of(w_rtn, heldout)), float(loss_of(w_ada, heldout))]
    return up, tuple(losses)


GRAM_BYTES = 1 << 29  # largest per-output-channel quadratic form (C x K x K float32) a layer may keep: 512 MiB


def _gram_objective(mod: nn.Module, w: torch.Tensor, b: torch.Tensor | None, x: torch.Tensor, xq: torch.Tensor,
                    act: Callable[[torch.Tensor], torch.Tensor],
                    batch: int) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The output error over ALL the sampled patches as a quadratic form per output channel, or None where a
    mini-batch step is cheaper.

    Output c reads K inputs x̃ (its group's), so (1/P) Σ_p m_pc (ŵ_c·x̃_p + b_c − t_pc)² = ŵ_cᵀ A_c ŵ_c + 2 ŵ_c·β_c +
    γ_c with A_c = (1/P) Σ m x̃ x̃ᵀ (K x K), β_c = (1/P) Σ m x̃ (b_c − t_pc), γ_c = (1/P) Σ m (b_c − t_pc)². Computed
    once, it makes a step cost C·K² multiply-adds instead of 2·batch·K·C (a 5x5 depthwise layer of 1152 channels:
    0.7 M instead of 30 M), and every step sees every patch instead of a mini-batch. t is the float network's
    pre-activation output; m_pc = 1 where the fused activation passes it unchanged: the loss of the activated output
    read where the target is in the activation's linear range (elsewhere both outputs are mostly clamped alike).
    Used for depthwise layers and for dense layers with K <= 2·batch inputs whose forms fit in ``GRAM_BYTES``."""
    G = getattr(mod, "groups", 1)
    C = w.shape[0]
    P, _, K = x.shape
    depthwise = isinstance(mod, nn.Conv2d) and G > 1 and C == G
    if not depthwise and (G != 1 or K > 2 * batch or C * K * K * 4 > GRAM_BYTES):
        return None
    with torch.no_grad():
        wf = w.detach().to(torch.float32).reshape(C, K)
        bias = torch.zeros(C) if b is None else b
        if depthwise:
            t = (x * wf).sum(-1) + bias  # (P, C)
        else:
            t = x[:, 0, :] @ wf.t() + bias
        m = (act(t) == t).to(torch.float32)  # (P, C)
        r = (bias - t) * m
        gamma = (r * (bias - t)).sum(0) / P
        if depthwise:
            A = torch.einsum("pgk,pgl->gkl", xq * m[:, :, None], xq) / P
            beta = torch.einsum("pgk,pg->gk", xq, r) / P
        else:
            xs = xq[:, 0, :]  # (P, K)
            beta = (r.t() @ xs) / P  # (C, K)
            if bool((m == 1).all()):
                A = (xs.t() @ xs / P).expand(C, K, K)  # one form shared by every output
            else:
                A = torch.empty(C, K, K)
                step = max(1, (1 << 25) // max(P * K, 1))  # channels per chunk: about 128 MiB of masked inputs
                for c0 in range(0, C, step):
                    mc = m[:, c0:c0 + step]  # (P, cc)
                    xm = (mc.t()[:, :, None] * xs[None]).reshape(-1, K)  # (cc*P, K)
                    A[c0:c0 + step] = (xm.reshape(mc.shape[1], P, K).transpose(1, 2) @ xs) / P

    def objective(w_hat: torch.Tensor) -> torch.Tensor:
        wg = w_hat.reshape(C, K)
        return (torch.einsum("ck,ckl,cl->c", wg, A, wg) + 2 * (wg * beta).sum(-1) + gamma).sum()

    return objective


class _Patches:
    """Forward pre-hook that samples a layer's input patches at fixed output positions per image (the same ones in
    the float pass, which may come in several batches, and in the quantized pass)."""

    def __init__(self, mod: nn.Module, positions: int, seed: int) -> None:
        self.mod = mod
        self.positions = positions
        self.seed = seed
        self.where: torch.Tensor | None = None  # (images, positions) flat output positions; a prefix never changes
        self.offset = 0  # images seen so far in this pass
        self.parts: list[torch.Tensor] = []

    def take(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(torch.float32)
        if isinstance(self.mod, nn.Linear):
            return sample_patches(self.mod, x, None)[0]
        n = x.shape[0]
        need = self.offset + n
        if self.where is None or self.where.shape[0] < need:
            ho, wo = output_grid(self.mod, x.shape[2], x.shape[3])
            gen = torch.Generator().manual_seed(self.seed)
            self.where = sample_positions(need, ho * wo, self.positions, gen)
        patches, _ = sample_patches(self.mod, x, self.where[self.offset:need])
        self.offset = need
        return patches

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        self.parts.append(self.take(inputs[0]))

    def result(self) -> torch.Tensor:
        out = torch.cat(self.parts) if self.parts else torch.empty(0)
        self.parts, self.offset = [], 0
        return out


def supported(mod: nn.Module) -> bool:
    """True for the layer types AdaRound handles here (Conv2d and Linear; others keep round-to-nearest). A subclass
    with its own forward is not: its padding (or weight transform) is not in its attributes, so the patches
    :func:`sample_patches` takes would not be the ones it convolves."""
    return isinstance(mod, (nn.Conv2d, nn.Linear)) and not has_own_forward(mod)


def adaround_layers(
    qmodel: Any,
    batches: Iterable[torch.Tensor],
    settings: AdaRoundSettings,
    *,
    key: str,
    progress: Callable[[str], None] | None = None,
) -> AdaRoundResult:
    """Learn the rounding of every quantized weight of ``qmodel`` (a :class:`quant.model.QuantizedModel` with
    round-to-nearest weights and its activation quantizers installed) on the calibration ``batches``.

    Layers are learned in the order the network runs them, in one pass of the quantized network over all the
    images (module docstring); each layer's weights are replaced by the learned ones before the pass goes on.
    ``progress`` is called with the layer name after each layer. Returns the :class:`AdaRoundResult`.
    """
    import time

    t0 = time.perf_counter()
    batches = [b.to(qmodel.device) for b in batches]
    if not batches:
        raise CalibrationError("AdaRound needs calibration images")
    mods = qmodel.quant.modules
    # layers above max_bits (by default none at 8 bits; 16-bit layers) keep round to nearest: nothing to gain
    names = [n for n, lq in qmodel.layers.items() if lq.weight is not None and supported(mods[n])
             and lq.weight_bits is not None and lq.weight_bits <= settings.max_bits and "@" not in n]
    skipped = [n for n, lq in qmodel.layers.items() if lq.weight is not None and not supported(mods[n])]
    if skipped:
        log.info("AdaRound skips %d layer(s) of unsupported type or with their own forward (round to nearest): %s",
                 len(skipped), skipped[:3])
    result = AdaRoundResult(key=key, settings={k: v for k, v in settings.__dict__.items()})
    if not names:
        return result  # nothing at or below max_bits: no pass needed
    gen = torch.Generator().manual_seed(settings.seed)
    n_images = sum(int(b.shape[0]) for b in batches)
    held_images = int(math.floor(settings.holdout * n_images))
    seeds = {n: settings.seed + 7919 * (i + 1) for i, n in enumerate(names)}
    caps = {n: _Patches(mods[n], settings.positions, seeds[n]) for n in names}
    # the float network's inputs do not depend on any rounding: one pass, in batches
    handles = [mods[n].register_forward_pre_hook(caps[n]) for n in names]
    try:
        with torch.no_grad():
            for xb in batches:
                qmodel.float_forward(xb)
    finally:
        for h in handles:
            h.remove()
    fp = {n: caps[n].result() for n in names}

    def learn(module: nn.Module, inputs: tuple) -> None:
        name = by_module[id(module)]
        if name not in fp:
            return  # a module the network calls again: learned at its first call
        xq = caps[name].take(inputs[0])
        caps[name].offset = 0
        x = fp.pop(name)
        per_image = x.shape[0] // max(n_images, 1)
        lq = qmodel.layers[name]
        if x.shape[0] - per_image * held_images < x.shape[-1]:
            # fewer sampled outputs than inputs per output (a classifier sees one row per image): the output error
            # does not determine the rounding, so the layer keeps round to nearest
            result.skipped_underdetermined.append(name)
            log.info("AdaRound keeps round to nearest for %s: %d sampled outputs for %d inputs per output", name,
                     x.shape[0] - per_image * held_images, x.shape[-1])
            return
        w, bias = qmodel.float_params(name)
        act = qmodel.sites[name].activation_fn()
        with torch.enable_grad():
            up, losses = _learn(w, lq.weight, module, bias, x, xq, act, settings, gen, held=per_image * held_images)
        if len(losses) == 4 and losses[3] >= losses[2]:
            result.kept_nearest.append(name)  # not better on images it did not learn from: round to nearest
            up = nearest_up(w, lq.weight)
        result.loss[name] = losses
        result.up[name] = up.cpu()
        qmodel.set_weight_codes(name, rounding_codes(w, lq.weight, up))
        if progress is not None:
            progress(name)
        log.debug("AdaRound %s: loss %s", name, ", ".join(f"{v:.4g}" for v in losses))

    # the quantized network's inputs, layer after layer: one pass over all the images at once, learning as it goes
    by_module = {id(mods[n]): n for n in names}
    handles = [mods[n].register_forward_pre_hook(learn) for n in names]
    try:
        with torch.no_grad():
            qmodel(torch.cat(batches))
    finally:
        for h in handles:
            h.remove()
    result.seconds = time.perf_counter() - t0
    return result


def nearest_up(weight: torch.Tensor, qt: QuantizedTensor) -> torch.Tensor:
    """The "round up" mask that gives back the round-to-nearest codes ``qt`` of ``weight``
    (:func:`rounding_codes` of it equals ``qt``)."""
    p = qt.params
    shape = p.shape_for(weight.dim())
    scale = p.scale.to(torch.float32).reshape(shape)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    u = weight.detach().to(torch.float32) / safe + p.zero_point.to(torch.float32).reshape(shape)
    return qt.codes.to(device=u.device, dtype=torch.float32) > torch.floor(u)
