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

Cost on a CPU: the output error is measured on sampled output positions, not whole feature maps. One pass of the
FP32 and of the quantized network over the images records, for each layer, the input patches of
``positions`` random output positions per image (im2col of those positions only; a linear layer uses every
image). Every iteration then takes a random mini-batch of ``batch`` patches: a (batch x K) @ (K x C_out) product
in float32 (grouped and depthwise convolutions: one small product per group). The inputs ``x̃`` are refreshed
from the partially rounded network ``refresh`` times (layers are split into that many consecutive groups), so
later layers see the rounding of earlier ones.

Layers of more than ``max_bits`` (7) bits per weight keep round-to-nearest. Defaults (300 iterations, Adam lr
3e-2, λ = 10 on normalised losses, 24 positions per image, 4 refreshes) were chosen on EfficientNet-Lite0: on its
first depthwise layer they reach the optimum of an exhaustive search over the 2^9 roundings of each channel
(output error 29.0 -> 2.2; the best rounding gives 2.1).

The result (:class:`AdaRoundResult`) is one bit per weight ("round up") per layer plus the settings it was learned
for; :meth:`AdaRoundResult.to_arrays` / :meth:`AdaRoundResult.from_arrays` store it in a statistics file
(:class:`quant.calibration.ModelStatistics`).
"""

from __future__ import annotations

import json
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

__all__ = ["AdaRoundSettings", "AdaRoundResult", "adaround_layers", "rounding_codes", "sample_patches"]

log = logging.getLogger(__name__)

ZETA, GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class AdaRoundSettings:
    """Hyper-parameters (defaults: the paper's λ, β schedule and warm-up; sizes chosen for 2 CPU cores)."""

    iterations: int = 300  # Adam steps per layer
    batch: int = 512  # patches per step
    positions: int = 24  # sampled output positions per image and layer
    refresh: int = 4  # passes of the quantized network that refresh x̃ (layer groups)
    lr: float = 3e-2
    reg: float = 10.0  # λ, on the normalised losses (see _learn)
    beta: tuple[float, float] = (20.0, 2.0)
    warmup: float = 0.2
    seed: int = 0
    max_bits: float = 7.0  # layers with more bits per weight keep round to nearest (see adaround_layers)

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.batch < 1 or self.positions < 1 or self.refresh < 1:
            raise QuantError(f"AdaRound settings must be positive: {self}")


@dataclass
class AdaRoundResult:
    """Learned rounding of every layer: ``up[layer]`` is a bool tensor shaped like the weight (True: round up)."""

    key: str  # what the rounding was learned for (the weight grid and the network it sees; see pipeline)
    up: dict[str, torch.Tensor] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    loss: dict[str, tuple[float, float]] = field(default_factory=dict)  # layer -> (RTN loss, AdaRound loss)
    seconds: float = 0.0

    def to_arrays(self, prefix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-ready meta, arrays) for a statistics file; arrays are bit-packed (1 bit per weight)."""
        meta = {"key": self.key, "settings": self.settings, "seconds": self.seconds,
                "layers": {n: list(t.shape) for n, t in self.up.items()},
                "loss": {n: list(v) for n, v in self.loss.items()}}
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
                   loss={n: tuple(v) for n, v in meta.get("loss", {}).items()}, seconds=float(meta.get("seconds", 0.0)))


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


def sample_patches(mod: nn.Module, x: torch.Tensor, positions: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Input patches of ``positions`` random output positions per image of a Conv2d (or every row of a Linear).

    Returns ``(patches, index)``: patches (P, G, K) with G the groups and K = C_in/G · kh · kw (Linear: G = 1,
    K = in_features), and the sampled positions (P, 3) as (image, row, column) (Linear: (P, 1) images).
    """
    if isinstance(mod, nn.Linear):
        flat = x.reshape(-1, x.shape[-1])
        return flat[:, None, :], torch.arange(flat.shape[0], device=x.device)[:, None]
    k, s, pad4, d = _conv_geometry(mod)
    if mod.padding_mode != "zeros" and any(pad4):
        raise QuantError(f"AdaRound supports zero padding only, not {mod.padding_mode!r}")
    xp = F.pad(x, pad4) if any(pad4) else x
    N, C, H, W = xp.shape
    ho = (H - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (W - d[1] * (k[1] - 1) - 1) // s[1] + 1
    per = min(positions, ho * wo)
    idx = torch.stack([torch.randperm(ho * wo, generator=generator)[:per] for _ in range(N)]).to(x.device)  # (N, per)
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
           gen: torch.Generator) -> tuple[torch.Tensor, float, float]:
    """Learn one layer's rounding; returns (up mask, RTN loss, AdaRound loss) (losses on all patches)."""
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

    def loss_of(w_hat: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        xs, ts = (xq, target) if rows is None else (xq[rows], target[rows])
        diff = act(_layer_out(xs, _group_weight(mod, w_hat), b)) - ts
        return diff.pow(2).sum(1).mean()

    P = x.shape[0]
    warm = int(st.warmup * st.iterations)
    # scale-free losses: the output error relative to round-to-nearest's, the regulariser averaged over weights
    # (the paper's λ = 0.01 on raw sums left most weights undecided: their rounding at h = 0.5 then lost
    # nearly all of the gain, e.g. 29.0 -> 28.7 instead of -> 2.2 on EfficientNet-Lite0's first depthwise layer)
    with torch.no_grad():
        ref = float(loss_of(wq(torch.round(frac))))
    ref = ref if ref > 0 else 1.0
    n_w = float(v.numel())
    for it in range(st.iterations):
        rows = torch.randint(0, P, (min(st.batch, P),), generator=gen).to(x.device)
        hv = _h(v)
        rec = loss_of(wq(hv), rows) / ref
        if it >= warm:
            t = (it - warm) / max(1, st.iterations - warm)
            beta = st.beta[1] + 0.5 * (st.beta[0] - st.beta[1]) * (1 + math.cos(t * math.pi))
            rec = rec + st.reg * (1 - (2 * hv - 1).abs().pow(beta)).sum() / n_w
        opt.zero_grad(set_to_none=True)
        rec.backward()
        opt.step()
    with torch.no_grad():
        up = _h(v) >= 0.5
        rtn_loss = float(loss_of(wq(torch.round(frac))))
        ada_loss = float(loss_of(wq(up.to(torch.float32))))
    return up, rtn_loss, ada_loss


class _Capture:
    """Forward pre-hook that samples input patches of one layer (same positions in the FP32 and quantized pass)."""

    def __init__(self, mod: nn.Module, positions: int, seed: int) -> None:
        self.mod = mod
        self.positions = positions
        self.seed = seed
        self.batch = 0
        self.parts: list[torch.Tensor] = []

    def __call__(self, module: nn.Module, inputs: tuple) -> None:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.batch)  # same positions in both passes
        self.batch += 1
        x = inputs[0].detach().to(torch.float32)
        patches, _ = sample_patches(self.mod, x, self.positions, gen)
        self.parts.append(patches)

    def result(self) -> torch.Tensor:
        return torch.cat(self.parts) if self.parts else torch.empty(0)


class _Stop(Exception):
    """Raised by a hook to end a forward pass once the layers of interest have run."""


def _stop_hook(module: nn.Module, inputs: tuple, output: Any) -> None:
    raise _Stop


def _collect(model_call: Callable[[torch.Tensor], Any], modules: dict[str, nn.Module], names: list[str],
             seeds: dict[str, int], batches: list[torch.Tensor], positions: int,
             stop_after: str | None = None) -> dict[str, torch.Tensor]:
    """Input patches of layers ``names`` over ``batches`` (same positions for the same seed); the pass ends after
    layer ``stop_after`` runs (the rest of the network is not needed)."""
    caps = {n: _Capture(modules[n], positions, seeds[n]) for n in names}
    handles = [modules[n].register_forward_pre_hook(caps[n]) for n in names]
    if stop_after is not None:
        handles.append(modules[stop_after].register_forward_hook(_stop_hook))
    try:
        with torch.no_grad():
            for xb in batches:
                try:
                    model_call(xb)
                except _Stop:
                    pass
    finally:
        for h in handles:
            h.remove()
    return {n: c.result() for n, c in caps.items()}


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

    The model's weights are replaced by the learned ones as each layer finishes (so later layers see them).
    ``progress`` is called with the layer name after each layer. Returns the :class:`AdaRoundResult`.
    """
    import time

    t0 = time.perf_counter()
    batches = [b.to(qmodel.device) for b in batches]
    if not batches:
        raise CalibrationError("AdaRound needs calibration images")
    mods = qmodel.quant.modules
    # 8-bit layers (by default the first layer and the classifier) keep round to nearest: their rounding error is
    # small already, and the 1.3M weights of a 1000-class classifier would cost more time than the rest together
    names = [n for n, lq in qmodel.layers.items() if lq.weight is not None and supported(mods[n])
             and lq.weight_bits is not None and lq.weight_bits <= settings.max_bits]
    skipped = [n for n, lq in qmodel.layers.items() if lq.weight is not None and not supported(mods[n])]
    if skipped:
        log.info("AdaRound skips %d layer(s) of unsupported type or with their own forward (round to nearest): %s",
                 len(skipped), skipped[:3])
    result = AdaRoundResult(key=key, settings={k: v for k, v in settings.__dict__.items()})
    gen = torch.Generator().manual_seed(settings.seed)
    seeds = {n: settings.seed + 7919 * (i + 1) for i, n in enumerate(names)}
    # the float network's inputs do not change: one pass for every layer
    fp = _collect(qmodel.float_forward, mods, names, seeds, batches, settings.positions)
    groups = np.array_split(np.arange(len(names)), min(settings.refresh, max(1, len(names))))
    for idx in groups:
        group = [names[i] for i in idx]
        if not group:
            continue
        # the quantized network's inputs, with the rounding of the layers done so far
        qx = _collect(qmodel.__call__, mods, group, seeds, batches, settings.positions, stop_after=group[-1])
        for name in group:
            lq = qmodel.layers[name]
            mod = mods[name]
            w, bias = qmodel.float_params(name)
            act = qmodel.sites[name].activation_fn()
            with torch.enable_grad():
                up, l_rtn, l_ada = _learn(w, lq.weight, mod, bias, fp[name], qx[name], act, settings, gen)
            result.loss[name] = (l_rtn, l_ada)
            result.up[name] = up.cpu()
            qmodel.set_weight_codes(name, rounding_codes(w, lq.weight, up))
            if progress is not None:
                progress(name)
            log.debug("AdaRound %s: loss %.4g -> %.4g", name, l_rtn, l_ada)
            del fp[name], qx[name]
    result.seconds = time.perf_counter() - t0
    return result


def key_of(parts: dict[str, Any]) -> str:
    """Canonical key string of the settings an AdaRound result depends on."""
    return json.dumps(parts, sort_keys=True, separators=(",", ":"))
