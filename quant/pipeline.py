"""Simulated quantized inference (WxAy) of a whole model, and the integer tensors it produces.

``QuantConfig`` says what to do; :func:`prepare` turns a model (+ offline statistics) into a
:class:`QuantizedModel`, which holds two instrumented copies of the network with BN folded:

* ``fp32``: the FP32 reference (sites are identities);
* ``quant``: weights replaced by their (bias-corrected) quantized values, and every layer output passed
  through its activation quantizer (fake quantization: round/clamp/rescale in float32, vectorised per
  channel, bit-identical to :func:`quant.quantizer.quantize` followed by ``dequantize``).

Per layer (names are stable qualified module names):

* weights: per output channel (axis 0) or per tensor; ``weight_clip`` (reference: min/max, never clipped);
  bit allocation (eq. 11, statistic σ_c of the weights) or bin allocation (eq. 10) to the mean target
  ``wbits``; the first layer(s) (no layer before them) use ``first_layer_wbits`` and the classifier(s) (no
  layer after them) ``classifier_bits``; optional bias correction (eq. 12/13, ``"paper"`` or the
  reference code's form);
* activations: unsigned when a ReLU/ReLU6 is fused ([0, hi] and one-sided ACIQ); per channel along axis 1
  for conv outputs (per tensor for linear outputs, as the reference); clipping ``clip`` from offline
  statistics (FP32 calibration images) or dynamically from each batch (``stats_mode="dynamic"``, the
  reference default); bit or bin allocation to ``abits`` (statistic: b_c for Laplace clipping, σ_c
  otherwise); classifier outputs at ``classifier_bits`` per tensor with min/max.

The reference code's activation "bias correction" (``-bca``) uses the FP32 outputs of the batch being
evaluated, an oracle, and is not provided.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from quant.calibration import ModelStatistics, calibrate
from quant.capture import ACTIVATION_MAX, ActivationSite, CodeRecorder, check_finite_logits
from quant.clipping import clip_range, parse_method
from quant.errors import CalibrationError, QuantError
from quant.graph import Instrumented, LayerInfo, instrument
from quant.quantizer import QuantizedTensor, QuantParams, pack_codes, quant_params, quantize
from quant.statistics import TensorStatistics

__all__ = [
    "QuantConfig",
    "SAME",
    "calibrate_model",
    "needs_calibration",
    "adaround_key",
    "bias_key",
    "QuantizedModel",
    "LayerQuant",
    "LayerTensors",
    "ActQuantizer",
    "DynamicActQuantizer",
    "prepare",
    "quantized_tensors",
    "run_export",
    "ALLOC_TARGETS",
    "BIAS_CORRECTION_MODES",
]

log = logging.getLogger(__name__)

ALLOC_TARGETS = ("weights", "activations")
BIAS_CORRECTION_MODES = ("mean", "variance", "both")
STATS_MODES = ("offline", "dynamic")


def _targets(value: Any, what: str) -> tuple[str, ...]:
    if value in (None, "", False):
        return ()
    if value is True:
        return ALLOC_TARGETS
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for item in items:
        item = str(item).strip().lower()
        item = {"w": "weights", "weight": "weights", "a": "activations", "act": "activations",
                "activation": "activations", "both": "both", "all": "both"}.get(item, item)
        if item == "both":
            out.extend(ALLOC_TARGETS)
        elif item in ALLOC_TARGETS:
            out.append(item)
        elif item:
            raise QuantError(f"{what}: unknown target {item!r}; use 'weights', 'activations' or both")
    return tuple(t for t in ALLOC_TARGETS if t in out)


SAME = "same"  # first_layer_* / classifier_bits: the same bits as the rest of the network
WEIGHT_BIAS_CORRECTIONS = BIAS_CORRECTION_MODES  # analytical, on the weights (paper eqs. 12-13)
BIAS_CORRECTIONS = (*BIAS_CORRECTION_MODES, "empirical")


def _check_bits(name: str, v: Any, *, same_ok: bool) -> None:
    if v is None or (same_ok and v == SAME):
        return
    if isinstance(v, str) or isinstance(v, bool):
        raise QuantError(f"{name} must be a number of bits, None (FP32)" + (" or 'same'" if same_ok else "")
                         + f", got {v!r}")
    if not (0 < float(v) <= 16):
        raise QuantError(f"{name} must be in (0, 16] bits, got {v}")


@dataclass(frozen=True)
class QuantConfig:
    """What the quantized run does (defaults: W4A4, naive per-channel min/max, offline statistics).

    Bits are mean bits per value; ``None`` leaves that tensor kind in FP32. A fractional target (e.g. 5.3)
    needs bin allocation for that kind (levels need not be powers of two). The first layer(s) and the
    classifier(s) have their own bits: a number, ``None`` (FP32) or ``"same"`` (as the rest of the network).
    Recipes (:mod:`quant.recipes`) are presets of these fields.
    """

    wbits: float | None = 4
    abits: float | None = 4
    clip: str = "minmax"  # activation clipping (quant.clipping.CLIP_METHODS)
    weight_clip: str = "minmax"  # weight clipping (the reference never clips weights)
    clip_window: str = "mean"  # how ACIQ's alpha becomes a range (quant.clipping.alpha_to_range)
    per_channel_weights: bool = True
    per_channel_activations: bool = True
    bit_alloc: tuple[str, ...] = ()  # subset of ("weights", "activations"): eq. 11 per-channel bits
    bin_alloc: tuple[str, ...] = ()  # subset of ("weights", "activations"): eq. 10 per-channel level counts
    alloc_min_bits: int = 0
    alloc_max_bits: int = 8
    bias_correction: str | None = None  # None, "mean", "variance", "both" (weights, eqs. 12-13) or "empirical"
    bias_correction_form: str = "paper"  # "paper" (eq. 13) or "reference" (the reference code)
    first_layer_wbits: float | str | None = 8  # "same": as wbits; None: FP32
    first_layer_abits: float | str | None = SAME  # output of the first layer(s); "same": as abits; None: FP32
    classifier_bits: float | str | None = 8  # weights and output of the classifier; "same": as wbits/abits
    stats_mode: str = "offline"  # "offline" (calibration statistics) or "dynamic" (each batch, reference default)
    equalize: bool = False  # cross-layer equalization + high-bias absorption (quant.equalization)
    adaround: int = 0  # AdaRound iterations per layer (0: round to nearest; quant.adaround)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bit_alloc", _targets(self.bit_alloc, "bit_alloc"))
        object.__setattr__(self, "bin_alloc", _targets(self.bin_alloc, "bin_alloc"))
        both = set(self.bit_alloc) & set(self.bin_alloc)
        if both:
            raise QuantError(f"bit and bin allocation both requested for {sorted(both)}; choose one")
        _check_bits("wbits", self.wbits, same_ok=False)
        _check_bits("abits", self.abits, same_ok=False)
        for name in ("first_layer_wbits", "first_layer_abits", "classifier_bits"):
            _check_bits(name, getattr(self, name), same_ok=True)
        for kind, bits in (("weights", self.wbits), ("activations", self.abits)):
            if bits is not None and kind not in self.bin_alloc and float(bits) != int(bits):
                raise QuantError(
                    f"{kind}: {bits} bits is fractional; fractional targets need bin allocation "
                    f"(bin_alloc=('{kind}',), --bin-alloc {kind})"
                )
        parse_method(self.clip)
        parse_method(self.weight_clip)
        if self.clip_window not in ("mean", "reference", "zero"):
            raise QuantError(f"clip_window must be 'mean', 'reference' or 'zero', got {self.clip_window!r}")
        if self.bias_correction not in (None, *BIAS_CORRECTIONS):
            raise QuantError(f"bias_correction must be one of {BIAS_CORRECTIONS} or None, "
                             f"got {self.bias_correction!r}")
        if self.bias_correction_form not in ("paper", "reference"):
            raise QuantError(f"bias_correction_form must be 'paper' or 'reference', got {self.bias_correction_form!r}")
        if self.stats_mode not in STATS_MODES:
            raise QuantError(f"stats_mode must be one of {STATS_MODES}, got {self.stats_mode!r}")
        if not 0 <= self.alloc_min_bits <= self.alloc_max_bits <= 16:
            raise QuantError(f"allocation bit bounds must satisfy 0 <= min <= max <= 16, "
                             f"got {self.alloc_min_bits}, {self.alloc_max_bits}")
        if isinstance(self.adaround, bool) or int(self.adaround) != self.adaround or self.adaround < 0:
            raise QuantError(f"adaround must be a number of iterations >= 0, got {self.adaround!r}")
        needs_data = self.adaround or self.bias_correction == "empirical"
        if needs_data and self.stats_mode == "dynamic":
            raise QuantError("AdaRound and empirical bias correction learn from calibration images: they need "
                             "stats_mode='offline'")
        if self.adaround and self.wbits is None:
            raise QuantError("AdaRound rounds weights: it needs quantized weights (wbits is None)")

    @classmethod
    def naive(cls, wbits: float | None = 4, abits: float | None = 4, **kw: Any) -> "QuantConfig":
        """The baseline: per-channel min/max, no allocation, no correction."""
        return cls(wbits=wbits, abits=abits, clip="minmax", **kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        d = asdict(self)
        d["bit_alloc"] = list(self.bit_alloc)
        d["bin_alloc"] = list(self.bin_alloc)
        return d

    def describe(self) -> str:
        """One line, e.g. ``W4A4 aciq-laplace per-channel bit-alloc=weights,activations bias-corr=mean``."""
        w = "FP" if self.wbits is None else f"{self.wbits:g}"
        a = "FP" if self.abits is None else f"{self.abits:g}"
        parts = [f"W{w}A{a}", self.clip, "per-channel" if self.per_channel_activations else "per-layer"]
        if self.weight_clip != "minmax":
            parts.append(f"weight-clip={self.weight_clip}")
        if self.bit_alloc:
            parts.append("bit-alloc=" + ",".join(self.bit_alloc))
        if self.bin_alloc:
            parts.append("bin-alloc=" + ",".join(self.bin_alloc))
        if self.equalize:
            parts.append("equalize")
        if self.adaround:
            parts.append(f"adaround={self.adaround}")
        if self.bias_correction == "empirical":
            parts.append("bias-corr=empirical")
        elif self.bias_correction:
            parts.append(f"bias-corr={self.bias_correction}({self.bias_correction_form})")
        fmt = lambda v: "FP" if v is None else ("same" if v == SAME else f"{v:g}")  # noqa: E731
        parts.append(f"first=W{fmt(self.first_layer_wbits)}A{fmt(self.first_layer_abits)}")
        parts.append(f"classifier={fmt(self.classifier_bits)}")
        parts.append(f"stats={self.stats_mode}")
        return " ".join(parts)


# ---------------------------------------------------------------------------------------------- quantizers
class ActQuantizer:
    """Fake quantization with fixed parameters, per channel along axis 1 or per tensor.

    ``x -> clamp(round(x / scale), qmin, qmax) * scale`` in float32, the same operations as
    :func:`quant.quantizer.quantize` so that codes and fake-quantized values agree bit for bit.
    ``inplace=True`` overwrites ``x`` (the sites own their input: the graph gives them its only use).
    """

    def __init__(self, params: QuantParams, ndim: int, device: torch.device | str = "cpu") -> None:
        self.params = params.to(device)
        self.ndim = ndim
        p = self.params
        scale = p.scale.to(torch.float32)
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        qmin = p.qmin.to(torch.float32)
        qmax = p.qmax.to(torch.float32)
        if p.axis is None:
            # per tensor: 0-d tensors on the device (a Python scalar divisor may become a multiplication by
            # its reciprocal, which would round differently from quantize())
            self._scale, self._safe = scale.reshape(()), safe.reshape(())
            self._qmin, self._qmax = float(qmin), float(qmax)
        else:
            shape = p.shape_for(ndim)
            self._scale, self._safe = scale.reshape(shape), safe.reshape(shape)
            # a bound shared by every channel is a scalar: clamping against a tensor is several times slower
            self._qmin = float(qmin[0]) if bool((qmin == qmin[0]).all()) else qmin.reshape(shape)
            self._qmax = float(qmax[0]) if bool((qmax == qmax[0]).all()) else qmax.reshape(shape)

    def to(self, device: torch.device | str) -> "ActQuantizer":
        return ActQuantizer(self.params, self.ndim, device)

    def _codes(self, x: torch.Tensor, inplace: bool) -> torch.Tensor:
        if self.params.axis is not None and x.dim() != self.ndim:
            raise QuantError(f"activation quantizer built for {self.ndim}-D tensors got shape {tuple(x.shape)}")
        if inplace and x.dtype == torch.float32:
            q = x.div_(self._safe)
        else:
            q = torch.div(x.to(torch.float32), self._safe)
        q.round_()
        lo, hi = self._qmin, self._qmax
        if isinstance(lo, float) and isinstance(hi, float):
            return q.clamp_(lo, hi)
        if isinstance(lo, float):
            q.clamp_(min=lo)
        else:
            torch.maximum(q, lo, out=q)
        if isinstance(hi, float):
            q.clamp_(max=hi)
        else:
            torch.minimum(q, hi, out=q)
        return q

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


@dataclass
class _ActSpec:
    """How one layer's activations are quantized (resolved from the config)."""

    bits: float
    clip: str
    per_channel: bool
    signed: bool
    alloc: str | None  # None, "bits" or "bins"
    ndim: int
    act_max: float | torch.Tensor | None = None  # bound of the fused activation (6 for ReLU6; per channel (C,))


def _alloc_stat(view: Any, clip: str) -> torch.Tensor:
    kind, _ = parse_method(clip)
    return view.b if kind == "laplace" else view.std


def _levels_for(spec_bits: float, alloc: str | None, stat: torch.Tensor | None, cfg: QuantConfig) -> Any:
    """Level count(s): 2**bits, or per-channel counts from bit/bin allocation on ``stat`` (shape (C,))."""
    if alloc is None or stat is None or (alloc == "bits" and float(spec_bits) >= cfg.alloc_max_bits):
        # (a target at the cap leaves nothing to move: every channel gets the cap)
        return int(round(2.0 ** float(spec_bits)))
    from quant import allocation

    if alloc == "bits":
        bits = allocation.allocate_bits(stat, float(spec_bits), min_bits=cfg.alloc_min_bits,
                                        max_bits=cfg.alloc_max_bits)
        return torch.pow(2, torch.as_tensor(bits).to(torch.int64))
    levels = allocation.allocate_bins(stat, float(spec_bits), min_levels=max(1, 2**cfg.alloc_min_bits),
                                      max_levels=2**cfg.alloc_max_bits)
    return torch.as_tensor(levels).to(torch.int64)


def _act_params(source: Any, spec: _ActSpec, cfg: QuantConfig) -> QuantParams:
    """Quantization parameters of an activation from statistics or from the tensor itself."""
    if isinstance(source, TensorStatistics):
        stats = source
    else:
        stats = TensorStatistics(axis=1, histogram=_needs_hist(spec.clip), tensor_stats=not spec.per_channel)
        stats.update(source)
    stat = None
    if spec.alloc is not None and spec.per_channel:
        stat = _alloc_stat(stats.channel_view(), spec.clip)
    levels = _levels_for(spec.bits, spec.alloc, stat, cfg)
    # offline statistics: cap at the estimated support (unseen images exceed the calibration range); a batch's
    # own statistics (dynamic mode): the observed range is exact
    lo, hi = clip_range(stats, spec.clip, levels, signed=spec.signed, per_channel=spec.per_channel,
                        window=cfg.clip_window, extrapolate=stats is source)
    if spec.act_max is not None:  # ReLU6: nothing above the bound reaches the quantizer
        bound = torch.as_tensor(spec.act_max).to(device=hi.device, dtype=torch.float64)
        hi = torch.minimum(hi, bound if spec.per_channel or bound.dim() == 0 else bound.max())
        lo = torch.minimum(lo, hi)
    if spec.per_channel:
        return quant_params(lo, hi, levels, axis=1, n_channels=int(lo.shape[0]))
    return quant_params(lo, hi, levels, axis=None)


def _needs_hist(clip: str) -> bool:
    return parse_method(clip)[0] in ("kl", "percentile", "mse")


class DynamicActQuantizer:
    """Statistics, clipping and allocation from the batch being quantized (the reference's default mode)."""

    def __init__(self, spec: _ActSpec, cfg: QuantConfig, name: str) -> None:
        self.spec = spec
        self.cfg = cfg
        self.name = name
        self.last: ActQuantizer | None = None

    def fit(self, x: torch.Tensor) -> ActQuantizer:
        """Parameters from this batch's pre-activation values (the site calls it before the activation)."""
        try:
            params = _act_params(x.detach(), self.spec, self.cfg)
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


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class LayerQuant:
    """What was done to one layer."""

    info: LayerInfo
    weight: QuantizedTensor | None  # weight codes + params (None: FP32 weights)
    weight_bits: float | None  # mean bits per weight (log2 of the level count, averaged over channels)
    weight_sqnr_db: float | None  # SQNR of the final (corrected) weights against the folded FP32 weights
    act_bits: float | None  # mean bits per activation value (offline: over channels; dynamic: target)
    act_params: QuantParams | None  # offline activation parameters (None when dynamic or FP32)
    act_spec: _ActSpec | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.info.name


@dataclass
class _Params:
    """Weight, bias and fused-activation bound of one layer in one state of the network."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    act_hi: torch.Tensor | None


@dataclass
class QuantizedModel:
    """The FP32 reference and the quantized copy of one model, with per-layer details.

    One instrumented graph holds three states of every layer's parameters: the *original* folded FP32 network
    (the reference every metric compares with), the *float* network the quantizer starts from (the original,
    or its equalized version: the same function up to float rounding and the high-bias assumption), and the
    *quantized* network (quantized weights, corrected biases). :meth:`reference`, :meth:`float_forward` and
    calling the model run them.
    """

    config: QuantConfig
    fp32: nn.Module  # the original model (eval mode, on ``device``), used to locate NaN/Inf
    quant: Instrumented
    layers: dict[str, LayerQuant]
    stats: ModelStatistics | None
    device: torch.device
    prepare_s: float = 0.0
    original: dict[str, _Params] = field(default_factory=dict, repr=False)
    floating: dict[str, _Params] = field(default_factory=dict, repr=False)
    quantized: dict[str, _Params] = field(default_factory=dict, repr=False)
    adaround: Any = field(default=None, repr=False)  # quant.adaround.AdaRoundResult when AdaRound ran
    bias_deltas: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # empirical corrections
    timing: dict[str, float] = field(default_factory=dict)  # seconds per preparation step

    @property
    def fp32_weights(self) -> dict[str, torch.Tensor]:
        """Folded FP32 weights of the original network, by layer."""
        return {n: p.weight for n, p in self.original.items()}

    @property
    def quant_weights(self) -> dict[str, torch.Tensor]:
        """Weights in use in the quantized network, by layer."""
        return {n: p.weight for n, p in self.quantized.items()}

    def _load(self, state: dict[str, _Params]) -> None:
        mods = self.quant.modules
        for name, p in state.items():
            mod = mods[name]
            mod.weight.data = p.weight
            if p.bias is not None:
                if mod.bias is None:
                    mod.bias = nn.Parameter(p.bias, requires_grad=False)
                else:
                    mod.bias.data = p.bias
            elif mod.bias is not None:
                mod.bias.data = torch.zeros_like(mod.bias.data)
            self.quant.sites[name].set_activation_bound(p.act_hi)

    def _run(self, x: torch.Tensor, state: dict[str, _Params], sites_on: bool) -> torch.Tensor:
        sites = self.sites
        try:
            if state is not self.quantized:
                self._load(state)
            if not sites_on:
                for s in sites.values():
                    s.active = False
            return self.quant(x.to(self.device))
        finally:
            if state is not self.quantized:
                self._load(self.quantized)
            for s in sites.values():
                s.active = True

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """FP32 logits of the BN-folded original model (the quantized graph with FP32 parameters, sites bypassed).

        Folding is exact up to float rounding (about 1e-6 relative), and the folded graph is faster than the
        original model, so the reference pass costs less than the original forward.
        """
        return self._run(x, self.original, sites_on=False)

    def float_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the float network the quantizer starts from (equalized when ``config.equalize``)."""
        return self._run(x, self.floating, sites_on=False)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the quantized model."""
        return self.quant(x.to(self.device))

    @property
    def sites(self) -> dict[str, ActivationSite]:
        return self.quant.sites  # type: ignore[return-value]

    def float_params(self, name: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(weight, bias) of layer ``name`` in the float network the quantizer starts from."""
        p = self.floating[name]
        return p.weight, p.bias

    def set_weight_codes(self, name: str, codes: QuantizedTensor) -> None:
        """Use ``codes`` (on the layer's grid) as layer ``name``'s weights: dequantize, apply the config's weight
        bias correction, and update the layer's record (codes, SQNR)."""
        lq = self.layers[name]
        w = self.floating[name].weight
        w_hat = _corrected_weight(w, codes, self.config)
        self.quantized[name].weight = w_hat.to(self.device)
        self.quant.modules[name].weight.data = self.quantized[name].weight
        lq.weight = QuantizedTensor(codes.codes.to(self.device), codes.params.to(self.device))
        lq.weight_sqnr_db = _sqnr_db(w, w_hat)

    def add_bias(self, name: str, delta: torch.Tensor) -> None:
        """Add ``delta`` (C_out,) to layer ``name``'s bias in the quantized network (created if missing)."""
        p = self.quantized[name]
        d = delta.to(device=self.device, dtype=p.weight.dtype)
        p.bias = d.clone() if p.bias is None else p.bias + d
        self._load({name: p})

    def check_reference(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        """Raise a :class:`QuantError` naming the first FP32 layer with NaN/Inf output if ``logits`` are not finite."""
        if bool(torch.isfinite(logits).all()):
            return
        probe = instrument(self.fp32, ActivationSite).to(self.device)
        check_finite_logits(probe, x.to(self.device), logits)


def _layer_bits(info: LayerInfo, base: float | None, first: Any, classifier: Any) -> float | None:
    """Bits of a layer: the classifier's, the first layer's, or ``base`` ("same" defers to ``base``; a kind
    left in FP32 (base None) stays FP32 everywhere)."""
    if base is None:
        return None
    if info.classifier and classifier != SAME:
        return classifier
    if info.first and first != SAME:
        return first
    return base


def _sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    sig = float(torch.sum(ref.to(torch.float64) ** 2))
    noise = float(torch.sum((ref.to(torch.float64) - approx.to(torch.float64)) ** 2))
    if noise == 0.0:
        return math.inf
    if sig == 0.0:
        return -math.inf
    return 10.0 * math.log10(sig / noise)


def _quantize_weight(name: str, w: torch.Tensor, bits: float, alloc: str | None, cfg: QuantConfig) -> QuantizedTensor:
    per_channel = cfg.per_channel_weights and w.dim() > 1
    try:
        if per_channel:
            flat = w.detach().reshape(w.shape[0], -1).to(torch.float64)
            std = flat.std(dim=1) if flat.shape[1] > 1 else flat.abs()[:, 0]
            levels = _levels_for(bits, alloc, std, cfg)
        else:
            levels = _levels_for(bits, None, None, cfg)
        lo, hi = clip_range(w.detach(), cfg.weight_clip, levels, signed=True, per_channel=per_channel, axis=0,
                            window=cfg.clip_window)
        return quantize(w.detach(), lo, hi, levels, axis=0 if per_channel else None)
    except QuantError as exc:
        raise QuantError(f"layer {name} weights: {exc}") from exc


def _corrected_weight(w: torch.Tensor, codes: QuantizedTensor, cfg: QuantConfig) -> torch.Tensor:
    """Dequantized weights with the config's analytical weight bias correction (eqs. 12-13) applied."""
    w_hat = codes.dequantize().to(device=w.device, dtype=w.dtype)
    if cfg.bias_correction in WEIGHT_BIAS_CORRECTIONS:
        from quant.bias_correction import correct_weights

        w_hat = correct_weights(w, w_hat, axis=0, mode=cfg.bias_correction,
                                form=cfg.bias_correction_form).to(w.dtype)
    return w_hat


def _snapshot(inst: Instrumented) -> dict[str, _Params]:
    out = {}
    for name, mod in inst.modules.items():
        b = mod.bias.detach().clone() if mod.bias is not None else None
        hi = inst.sites[name].act_hi
        out[name] = _Params(mod.weight.detach().clone(), b, None if hi is None else hi.clone())
    return out


def adaround_key(cfg: QuantConfig, stats: ModelStatistics | None = None) -> str:
    """What an AdaRound result depends on: the weight grids, the quantized network it was learned in (every
    field except the bias corrections, which come after it) and the statistics' calibration images."""
    from quant.adaround import key_of

    d = cfg.to_dict()
    for k in ("bias_correction", "bias_correction_form", "stats_mode"):
        d.pop(k, None)
    if stats is not None:
        d["calibration"] = [stats.model, stats.num_images, stats.source]
    return key_of(d)


def bias_key(cfg: QuantConfig, stats: ModelStatistics | None = None) -> str:
    """What empirical bias corrections depend on: the whole configuration and the calibration images."""
    from quant.adaround import key_of

    d = cfg.to_dict()
    d.pop("stats_mode", None)
    if stats is not None:
        d["calibration"] = [stats.model, stats.num_images, stats.source]
    return key_of(d)


def calibrate_model(
    model: nn.Module,
    config: QuantConfig,
    batches: Iterable[torch.Tensor],
    *,
    model_name: str = "",
    source: str = "",
    channel_histograms: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
    adaround_settings: Any = None,
) -> ModelStatistics:
    """Offline statistics of ``model`` for ``config`` (what ``huffquant calibrate`` saves).

    Every statistic is collected (histograms too, so any clipping method can use the file), on the equalized
    network when ``config.equalize``. If ``config`` uses AdaRound or empirical bias correction, they are learned
    on the same ``batches`` and kept in the returned statistics (:meth:`ModelStatistics.result`), so
    :func:`prepare` with these statistics and the same ``config`` reuses them.
    """
    dev = torch.device(device)
    data = [b for b in batches]
    inst = instrument(model, ActivationSite).to(dev)
    if config.equalize:
        from quant.equalization import equalize

        equalize(inst, model)
    stats = calibrate(inst, data, model_name=model_name, source=source, channel_histograms=channel_histograms,
                      device=dev, progress=progress, total=total)
    stats.extra["equalized"] = bool(config.equalize)
    del inst
    if config.stats_mode == "offline" and (config.adaround or config.bias_correction == "empirical"):
        prepare(model, config, stats=stats, calibration=data, device=dev, model_name=model_name, progress=progress,
                adaround_settings=adaround_settings)
    return stats


def needs_calibration(cfg: QuantConfig, stats: ModelStatistics | None) -> bool:
    """True when :func:`prepare` needs calibration images for ``cfg`` given ``stats`` (None: no file): to collect
    offline statistics, or to learn AdaRound / empirical bias corrections not stored in ``stats``."""
    if cfg.stats_mode != "offline":
        return False
    if stats is None:
        return cfg.abits is not None or bool(cfg.adaround) or cfg.bias_correction == "empirical"
    if cfg.adaround and stats.result("adaround", adaround_key(cfg, stats)) is None:
        return True
    return cfg.bias_correction == "empirical" and stats.result("bias", bias_key(cfg, stats)) is None


def prepare(
    model: nn.Module,
    config: QuantConfig,
    *,
    stats: ModelStatistics | None = None,
    calibration: Iterable[torch.Tensor] | None = None,
    calibration_batches: int | None = None,
    device: str | torch.device = "cpu",
    model_name: str = "",
    progress: bool = False,
    adaround_settings: Any = None,
) -> QuantizedModel:
    """Fold BN, quantize weights and install activation quantizers; returns a :class:`QuantizedModel`.

    Offline mode needs ``stats`` (from :func:`quant.calibration.calibrate` or ``ModelStatistics.load``)
    or ``calibration`` batches (image tensors) to compute them. ``config.equalize`` equalizes the network first
    (the statistics must come from the equalized network: calibrate with the same ``equalize``).
    ``config.adaround`` and empirical bias correction learn on the ``calibration`` batches, unless ``stats``
    already holds their result for this configuration (:meth:`ModelStatistics.add_result`); what they learn is
    added to ``stats`` (so saving it caches them). ``progress`` shows bars for calibration and AdaRound.
    Raises :class:`ModelError` for a model with no conv/linear layer and :class:`CalibrationError` for
    statistics that do not match the model.
    """
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    dev = torch.device(device)
    cfg = config
    quant = instrument(model, ActivationSite).to(dev)  # a copy: ``model`` itself is not modified
    fp32 = model.eval()  # kept only to locate NaN/Inf layers of the original (QuantizedModel.check_reference)
    original = _snapshot(quant)
    if cfg.equalize:
        from quant.equalization import equalize

        t = time.perf_counter()
        equalize(quant, model)
        timing["equalize_s"] = time.perf_counter() - t
    floating = _snapshot(quant) if cfg.equalize else original
    needs_images = (cfg.adaround or cfg.bias_correction == "empirical") and cfg.stats_mode == "offline"
    calib_list: list[torch.Tensor] | None = None
    if calibration is not None and needs_calibration(cfg, stats):
        calib_list = [b for b in calibration]
    if needs_images and cfg.abits is None and stats is None:
        # nothing to calibrate; an empty record keeps what AdaRound / bias correction learn
        stats = ModelStatistics(layers={}, model=model_name, num_images=sum(int(b.shape[0]) for b in calib_list or []),
                                extra={"equalized": bool(cfg.equalize)})
    if cfg.abits is not None and cfg.stats_mode == "offline":
        if stats is None:
            if calib_list is None:
                raise CalibrationError("offline statistics mode needs statistics (--stats FILE) or calibration images")
            # calibrate the FP32 (folded, equalized, not yet quantized) copy; only the statistics this config uses
            per_tensor = lambda info: not (cfg.per_channel_activations and info.kind == "conv")  # noqa: E731
            t = time.perf_counter()
            stats = calibrate(quant, calib_list, model_name=model_name, device=dev, progress=progress,
                              histogram=_needs_hist(cfg.clip), tensor_stats=per_tensor, total=calibration_batches)
            stats.extra["equalized"] = bool(cfg.equalize)
            timing["calibration_s"] = time.perf_counter() - t
        stats.check_layers(quant.layers)
    if stats is not None and cfg.stats_mode == "offline" and cfg.abits is not None:
        if bool(stats.extra.get("equalized", False)) != bool(cfg.equalize):
            raise CalibrationError(
                "the statistics were collected " + ("with" if stats.extra.get("equalized") else "without")
                + " cross-layer equalization, but this configuration " + ("uses" if cfg.equalize else "does not use")
                + " it; calibrate with the same --equalize setting")
    layers: dict[str, LayerQuant] = {}
    quantized: dict[str, _Params] = {}
    for name, info in quant.layers.items():
        mod = quant.modules[name]
        fl = floating[name]
        # weights
        wq = None
        w_bits = _layer_bits(info, cfg.wbits, cfg.first_layer_wbits, cfg.classifier_bits)
        w_sqnr = None
        mean_wbits = None
        w_use = fl.weight
        if w_bits is not None:
            w = fl.weight
            alloc = None
            if w_bits == cfg.wbits:  # layers at their own bits (first, classifier) are not allocated
                alloc = "bits" if "weights" in cfg.bit_alloc else ("bins" if "weights" in cfg.bin_alloc else None)
            wq = _quantize_weight(name, w, w_bits, alloc, cfg)
            w_use = _corrected_weight(w, wq, cfg)
            w_sqnr = _sqnr_db(w, w_use)
            mean_wbits = float(wq.params.bits.mean())
        quantized[name] = _Params(w_use.clone() if w_use is fl.weight else w_use,
                                  None if fl.bias is None else fl.bias.clone(), fl.act_hi)
        with torch.no_grad():
            mod.weight.data = quantized[name].weight
        # activations
        a_bits = _layer_bits(info, cfg.abits, cfg.first_layer_abits, cfg.classifier_bits)
        spec = None
        a_params = None
        mean_abits = None
        site = quant.sites[name]
        if a_bits is not None:
            ndim = mod.weight.dim() if info.kind == "conv" else 2  # conv: N, C + spatial dims
            per_channel = cfg.per_channel_activations and info.kind == "conv"
            clip = cfg.clip
            alloc = None
            if info.classifier and cfg.classifier_bits != SAME:
                per_channel, clip = False, "minmax"
            elif a_bits == cfg.abits and per_channel:
                alloc = "bits" if "activations" in cfg.bit_alloc else (
                    "bins" if "activations" in cfg.bin_alloc else None)
            st = stats[name] if stats is not None and cfg.stats_mode == "offline" else None
            act_max = fl.act_hi if fl.act_hi is not None else ACTIVATION_MAX.get(info.activation or "")
            spec = _ActSpec(bits=float(a_bits), clip=clip, per_channel=per_channel, signed=info.signed,
                            alloc=alloc, ndim=ndim, act_max=act_max)
            if cfg.stats_mode == "offline":
                try:
                    a_params = _act_params(st, spec, cfg)
                except (QuantError, CalibrationError) as exc:
                    raise CalibrationError(f"layer {name}: {exc}") from exc
                site.quantizer = ActQuantizer(a_params, ndim, dev)
                mean_abits = float(a_params.bits.mean())
            else:
                site.quantizer = DynamicActQuantizer(spec, cfg, name)
                mean_abits = float(a_bits)
        layers[name] = LayerQuant(info=info, weight=wq, weight_bits=mean_wbits, weight_sqnr_db=w_sqnr,
                                  act_bits=mean_abits, act_params=a_params, act_spec=spec)
    qm = QuantizedModel(config=cfg, fp32=fp32, quant=quant, layers=layers, stats=stats, device=dev,
                        original=original, floating=floating, quantized=quantized, timing=timing)
    qm._load(quantized)
    if cfg.adaround:
        _apply_adaround(qm, calib_list, adaround_settings, progress)
    if cfg.bias_correction == "empirical":
        _apply_empirical_bias(qm, calib_list, progress)
    qm.prepare_s = time.perf_counter() - t0
    return qm


def _apply_adaround(qm: QuantizedModel, calib: list[torch.Tensor] | None, settings: Any, progress: bool) -> None:
    from quant.adaround import AdaRoundSettings, adaround_layers, rounding_codes

    cfg = qm.config
    st = settings if settings is not None else AdaRoundSettings(iterations=int(cfg.adaround))
    if st.iterations != cfg.adaround:
        st = replace(st, iterations=int(cfg.adaround))
    key = adaround_key(cfg, qm.stats)
    cached = qm.stats.result("adaround", key) if qm.stats is not None else None
    t = time.perf_counter()
    if cached is not None:
        for name, up in cached.up.items():
            if name not in qm.layers or qm.layers[name].weight is None:
                raise CalibrationError(f"stored AdaRound rounding names layer {name!r}, which this model does not "
                                       f"quantize")
            w, _ = qm.float_params(name)
            lq = qm.layers[name]
            qm.set_weight_codes(name, rounding_codes(w, lq.weight, up.to(w.device)))
        qm.adaround = cached
        log.info("AdaRound: reused the rounding stored with the statistics")
    else:
        if not calib:
            raise CalibrationError("AdaRound needs calibration images (the statistics hold no rounding learned for "
                                   "this configuration)")
        names = [n for n, lq in qm.layers.items() if lq.weight is not None]
        bar = tqdm(total=len(names), desc=f"AdaRound ({st.iterations} it/layer)", unit="layer", disable=not progress)
        try:
            res = adaround_layers(qm, calib, st, key=key, progress=lambda _n: bar.update(1))
        finally:
            bar.close()
        qm.adaround = res
        if qm.stats is not None:
            qm.stats.add_result("adaround", key, res)
    qm.timing["adaround_s"] = time.perf_counter() - t


def _apply_empirical_bias(qm: QuantizedModel, calib: list[torch.Tensor] | None, progress: bool) -> None:
    from quant.bias_correction import empirical_bias_correction

    key = bias_key(qm.config, qm.stats)
    cached = qm.stats.result("bias", key) if qm.stats is not None else None
    t = time.perf_counter()
    if cached is not None:
        deltas = cached
        for name, d in deltas.items():
            qm.add_bias(name, d)
        log.info("empirical bias correction: reused the corrections stored with the statistics")
    else:
        if not calib:
            raise CalibrationError("empirical bias correction needs calibration images (the statistics hold no "
                                   "correction for this configuration)")
        deltas = empirical_bias_correction(qm, calib)
        if qm.stats is not None:
            qm.stats.add_result("bias", key, deltas)
    qm.bias_deltas = dict(deltas)
    qm.timing["bias_correction_s"] = time.perf_counter() - t


# ---------------------------------------------------------------------------------------------- export
@dataclass
class LayerTensors:
    """Integer tensors of one layer of a quantized run."""

    name: str
    info: LayerInfo
    weight: QuantizedTensor | None  # codes (C_out, ...) + params (axis 0 per channel)
    activation: QuantizedTensor | None  # codes (N, C, ...) over the images, axis 1 per channel


def quantized_tensors(
    qmodel: QuantizedModel,
    batches: Iterable[torch.Tensor],
    *,
    num_images: int,
    layers: Sequence[str] | None = None,
    activations: bool = True,
    weights: bool = True,
    progress: bool = False,
) -> dict[str, LayerTensors]:
    """Per layer, the weight codes and the activation codes of the quantized run over ``batches``.

    ``num_images`` is the total number of images in ``batches`` (codes are stored in one preallocated CPU
    tensor per layer: memory = images x values per image x 1 byte for <= 8-bit codes). ``layers`` selects
    layers (default: all). Activation codes need fixed (offline) parameters.
    """
    names = list(qmodel.layers) if layers is None else list(layers)
    unknown = [n for n in names if n not in qmodel.layers]
    if unknown:
        raise QuantError(f"unknown layer(s) {unknown[:5]}; the model's layers are {list(qmodel.layers)[:5]}...")
    out = {n: LayerTensors(n, qmodel.layers[n].info, qmodel.layers[n].weight if weights else None, None)
           for n in names}
    if not activations:
        return out
    if qmodel.config.abits is not None and qmodel.config.stats_mode == "dynamic":
        raise QuantError("activation codes need offline statistics: with stats_mode='dynamic' every batch "
                         "has its own parameters")
    sites = qmodel.sites
    recs = {}
    for n in names:
        if sites[n].quantizer is None:
            continue  # FP32 activations: nothing to export
        recs[n] = sites[n].recorder = CodeRecorder(num_images)
    try:
        with torch.no_grad():
            for xb in tqdm(batches, desc="export", unit="batch", disable=not progress):
                xb = xb.to(qmodel.device)
                check_finite_logits(qmodel.quant, xb, qmodel(xb))
    finally:
        for n in recs:
            sites[n].recorder = None
    for n, rec in recs.items():
        params = rec.params
        out[n].activation = QuantizedTensor(rec.result(), params.to("cpu"))
    return out


def run_export(
    model: Any,
    config: QuantConfig,
    *,
    images: Any = None,
    calibration_images: Any = None,
    stats: ModelStatistics | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    layers: Sequence[str] | None = None,
    activations: bool = True,
    weights: bool = True,
    progress: bool = False,
    num_workers: int = 0,
) -> tuple[QuantizedModel, dict[str, LayerTensors]]:
    """Calibrate (unless ``stats``), prepare and collect integer tensors in one call.

    ``model``: a :class:`quant.models.LoadedModel` (or an ``nn.Module`` with ``images`` and
    ``calibration_images``/``stats`` given). Activations always use offline statistics here (a dynamic
    config is switched to offline: exported codes need one set of parameters). Defaults: calibration on the
    32 built-in calibration crops, activations over the built-in evaluation crops.
    """
    from quant.images import DEFAULT_CALIBRATION_IMAGES, builtin_images, iter_batches
    from quant.models import LoadedModel

    if not activations and not (config.adaround or config.bias_correction == "empirical"):
        config = replace(config, abits=None)  # weights do not depend on activation statistics
    elif config.abits is not None and config.stats_mode != "offline":
        log.info("export uses offline activation statistics (stats_mode='offline')")
        config = replace(config, stats_mode="offline")
    if isinstance(model, LoadedModel):
        name, module, prep = model.name, model.model, model.preprocessing
    else:
        name, module, prep = type(model).__name__, model, None
    need_calib = needs_calibration(config, stats)
    if prep is None and ((activations and images is None) or (need_calib and calibration_images is None)):
        raise QuantError("pass images= and calibration_images= (or stats=) for a plain nn.Module")
    if images is None and activations:
        images = builtin_images(prep, None, split="evaluation")
    calib = None
    n_cal = None
    if need_calib:
        if calibration_images is None:
            calibration_images = builtin_images(prep, DEFAULT_CALIBRATION_IMAGES, split="calibration")
        calib = (b.images for b in iter_batches(calibration_images, batch_size, num_workers=num_workers)
                 if b.images.numel())
        n_cal = math.ceil(len(calibration_images) / batch_size)
    qm = prepare(module, config, stats=stats, calibration=calib, calibration_batches=n_cal, device=device,
                 model_name=name, progress=progress)
    if not activations:
        return qm, quantized_tensors(qm, [], num_images=0, layers=layers, activations=False, weights=weights)
    batches = (b.images for b in iter_batches(images, batch_size, num_workers=num_workers) if b.images.numel())
    tensors = quantized_tensors(qm, batches, num_images=len(images), layers=layers, activations=True,
                                weights=weights, progress=progress)
    return qm, tensors
