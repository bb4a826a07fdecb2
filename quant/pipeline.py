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


@dataclass(frozen=True)
class QuantConfig:
    """What the quantized run does (defaults: W4A4, naive per-channel min/max, offline statistics).

    Bits are mean bits per value; ``None`` leaves that tensor kind in FP32. A fractional target (e.g. 5.3)
    needs bin allocation for that kind (levels need not be powers of two).
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
    bias_correction: str | None = None  # None, "mean", "variance" or "both" (weights)
    bias_correction_form: str = "paper"  # "paper" (eq. 13) or "reference" (the reference code)
    first_layer_wbits: float | None = 8  # None: same as wbits
    first_layer_abits: float | None = None  # None: same as abits
    classifier_bits: float | None = 8  # weights and output of the classifier; None: same as wbits/abits
    stats_mode: str = "offline"  # "offline" (calibration statistics) or "dynamic" (each batch, reference default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bit_alloc", _targets(self.bit_alloc, "bit_alloc"))
        object.__setattr__(self, "bin_alloc", _targets(self.bin_alloc, "bin_alloc"))
        both = set(self.bit_alloc) & set(self.bin_alloc)
        if both:
            raise QuantError(f"bit and bin allocation both requested for {sorted(both)}; choose one")
        for name in ("wbits", "abits", "first_layer_wbits", "first_layer_abits", "classifier_bits"):
            v = getattr(self, name)
            if v is not None and not (0 < float(v) <= 16):
                raise QuantError(f"{name} must be in (0, 16] bits, got {v}")
        for kind, bits in (("weights", self.wbits), ("activations", self.abits)):
            if bits is not None and kind not in self.bin_alloc and float(bits) != int(bits):
                raise QuantError(
                    f"{kind}: {bits} bits is fractional; fractional targets need bin allocation "
                    f"(bin_alloc=('{kind}',), --bin-alloc {kind})"
                )
        parse_method(self.clip)
        parse_method(self.weight_clip)
        if self.bias_correction not in (None, *BIAS_CORRECTION_MODES):
            raise QuantError(f"bias_correction must be one of {BIAS_CORRECTION_MODES} or None, "
                             f"got {self.bias_correction!r}")
        if self.bias_correction_form not in ("paper", "reference"):
            raise QuantError(f"bias_correction_form must be 'paper' or 'reference', got {self.bias_correction_form!r}")
        if self.stats_mode not in STATS_MODES:
            raise QuantError(f"stats_mode must be one of {STATS_MODES}, got {self.stats_mode!r}")
        if not 0 <= self.alloc_min_bits <= self.alloc_max_bits <= 16:
            raise QuantError(f"allocation bit bounds must satisfy 0 <= min <= max <= 16, "
                             f"got {self.alloc_min_bits}, {self.alloc_max_bits}")

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
        if self.bit_alloc:
            parts.append("bit-alloc=" + ",".join(self.bit_alloc))
        if self.bin_alloc:
            parts.append("bin-alloc=" + ",".join(self.bin_alloc))
        if self.bias_correction:
            parts.append(f"bias-corr={self.bias_correction}({self.bias_correction_form})")
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
    act_max: float | None = None  # upper bound of the fused activation (6 for ReLU6)


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
    if spec.act_max is not None:  # ReLU6: nothing above 6 reaches the quantizer
        hi = torch.clamp(hi, max=spec.act_max)
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
class QuantizedModel:
    """The FP32 reference and the quantized copy of one model, with per-layer details."""

    config: QuantConfig
    fp32: nn.Module  # the original model (eval mode, on ``device``), used to locate NaN/Inf
    quant: Instrumented
    layers: dict[str, LayerQuant]
    stats: ModelStatistics | None
    device: torch.device
    prepare_s: float = 0.0

    fp32_weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # folded FP32 weights
    quant_weights: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # weights in use

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """FP32 logits of the BN-folded model (the quantized graph with FP32 weights and sites bypassed).

        Folding is exact up to float rounding (about 1e-6 relative), and the folded graph is faster than the
        original model, so the reference pass costs less than the original forward.
        """
        mods = self.quant.modules
        sites = self.sites
        try:
            for name, w in self.fp32_weights.items():
                mods[name].weight.data = w
            for s in sites.values():
                s.active = False
            return self.quant(x.to(self.device))
        finally:
            for name, w in self.quant_weights.items():
                mods[name].weight.data = w
            for s in sites.values():
                s.active = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the quantized model."""
        return self.quant(x.to(self.device))

    @property
    def sites(self) -> dict[str, ActivationSite]:
        return self.quant.sites  # type: ignore[return-value]

    def check_reference(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        """Raise a :class:`QuantError` naming the first FP32 layer with NaN/Inf output if ``logits`` are not finite."""
        if bool(torch.isfinite(logits).all()):
            return
        probe = instrument(self.fp32, ActivationSite).to(self.device)
        check_finite_logits(probe, x.to(self.device), logits)


def _layer_bits(info: LayerInfo, base: float | None, first: float | None, classifier: float | None) -> float | None:
    if base is None:
        return None
    if info.classifier and classifier is not None:
        return classifier
    if info.first and first is not None:
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
) -> QuantizedModel:
    """Fold BN, quantize weights and install activation quantizers; returns a :class:`QuantizedModel`.

    Offline mode needs ``stats`` (from :func:`quant.calibration.calibrate` or ``ModelStatistics.load``)
    or ``calibration`` batches (image tensors) to compute them. Raises :class:`ModelError` for a model with
    no conv/linear layer and :class:`CalibrationError` for statistics that do not match the model.
    """
    t0 = time.perf_counter()
    dev = torch.device(device)
    cfg = config
    quant = instrument(model, ActivationSite).to(dev)  # a copy: ``model`` itself is not modified
    fp32 = model.eval()  # kept only to locate NaN/Inf layers of the original (QuantizedModel.check_reference)
    if cfg.abits is not None and cfg.stats_mode == "offline":
        if stats is None:
            if calibration is None:
                raise CalibrationError("offline statistics mode needs statistics (--stats FILE) or calibration images")
            # calibrate the FP32 (folded, not yet quantized) copy; only the statistics this config uses
            per_tensor = lambda info: not (cfg.per_channel_activations and info.kind == "conv")  # noqa: E731
            stats = calibrate(quant, calibration, model_name=model_name, device=dev, progress=progress,
                              histogram=_needs_hist(cfg.clip), tensor_stats=per_tensor, total=calibration_batches)
        stats.check_layers(quant.layers)
    layers: dict[str, LayerQuant] = {}
    fp32_weights: dict[str, torch.Tensor] = {}
    quant_weights: dict[str, torch.Tensor] = {}
    for name, info in quant.layers.items():
        mod = quant.modules[name]
        # weights
        wq = None
        w_bits = _layer_bits(info, cfg.wbits, cfg.first_layer_wbits, cfg.classifier_bits)
        w_sqnr = None
        mean_wbits = None
        if w_bits is not None:
            w = mod.weight.detach()
            overridden = w_bits != cfg.wbits
            alloc = None
            if not overridden:
                alloc = "bits" if "weights" in cfg.bit_alloc else ("bins" if "weights" in cfg.bin_alloc else None)
            wq = _quantize_weight(name, w, w_bits, alloc, cfg)
            w_hat = wq.dequantize().to(w.dtype)
            if cfg.bias_correction:
                from quant.bias_correction import correct_weights

                w_hat = correct_weights(w, w_hat, axis=0, mode=cfg.bias_correction,
                                        form=cfg.bias_correction_form).to(w.dtype)
            w_sqnr = _sqnr_db(w, w_hat)
            fp32_weights[name] = w.clone()
            with torch.no_grad():
                mod.weight.copy_(w_hat)
            quant_weights[name] = mod.weight.data
            mean_wbits = float(wq.params.bits.mean())
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
            if info.classifier and cfg.classifier_bits is not None:
                per_channel, clip = False, "minmax"
            elif a_bits == cfg.abits and per_channel:
                alloc = "bits" if "activations" in cfg.bit_alloc else (
                    "bins" if "activations" in cfg.bin_alloc else None)
            st = stats[name] if stats is not None and cfg.stats_mode == "offline" else None
            spec = _ActSpec(bits=float(a_bits), clip=clip, per_channel=per_channel, signed=info.signed,
                            alloc=alloc, ndim=ndim, act_max=ACTIVATION_MAX.get(info.activation or ""))
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
    return QuantizedModel(config=cfg, fp32=fp32, quant=quant, layers=layers, stats=stats, device=dev,
                          prepare_s=time.perf_counter() - t0, fp32_weights=fp32_weights,
                          quant_weights=quant_weights)


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

    if not activations:
        config = replace(config, abits=None)  # weights do not depend on activation statistics
    elif config.abits is not None and config.stats_mode != "offline":
        log.info("export uses offline activation statistics (stats_mode='offline')")
        config = replace(config, stats_mode="offline")
    if isinstance(model, LoadedModel):
        name, module, prep = model.name, model.model, model.preprocessing
    else:
        name, module, prep = type(model).__name__, model, None
    need_calib = config.abits is not None and stats is None
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
