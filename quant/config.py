"""What a quantized run does: :class:`QuantConfig`, its checks, and the bits each layer gets from it.

Bits are mean bits per value; ``None`` leaves a tensor kind in FP32. The first layer(s) and the classifier(s)
have their own bits (a number, ``None`` for FP32, or :data:`SAME` for the rest of the network's). Recipes
(:mod:`quant.recipes`) are presets of these fields; :func:`quant.preparation.prepare` carries a config out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from quant.clipping import parse_method
from quant.errors import QuantError

if TYPE_CHECKING:
    from quant.graph import LayerInfo

__all__ = [
    "QuantConfig",
    "SAME",
    "ALLOC_TARGETS",
    "BIAS_CORRECTION_MODES",
    "WEIGHT_BIAS_CORRECTIONS",
    "BIAS_CORRECTIONS",
    "STATS_MODES",
    "layer_bits",
]

ALLOC_TARGETS = ("weights", "activations")
BIAS_CORRECTION_MODES = ("mean", "variance", "both")
STATS_MODES = ("offline", "dynamic")
SAME = "same"  # first_layer_* / classifier_*: the same bits as the rest of the network
WEIGHT_BIAS_CORRECTIONS = BIAS_CORRECTION_MODES  # analytical, on the weights (paper eqs. 12-13)
BIAS_CORRECTIONS = (*BIAS_CORRECTION_MODES, "empirical")


def _targets(value: Any, what: str) -> tuple[str, ...]:
    """An allocation target list (``"weights,activations"``, ``("w",)``, True, ...) as a tuple of ALLOC_TARGETS."""
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


def _names(value: Any, what: str) -> tuple[str, ...]:
    """Module names from ``"a,b"`` or an iterable of names (order kept, duplicates dropped)."""
    if value in (None, "", ()):
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items]
    if any(not n for n in names):
        raise QuantError(f"{what}: empty module name in {value!r}")
    return tuple(dict.fromkeys(names))


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
    The classifier's output is the network's output (the logits), not a stored feature map: FP32 unless
    ``classifier_output_bits`` says otherwise (quantized logits tie, and ``topk`` breaks ties arbitrarily).
    ``keep_fp32`` names conv/linear modules (qualified module names) to leave in FP32: not quantized, and allowed
    to run where the pipeline cannot quantize them; any other conv/linear module that runs unquantized fails the
    run (:class:`quant.errors.ModelError`).
    Recipes (:mod:`quant.recipes`) are presets of these fields.
    """

    wbits: float | None = 4
    abits: float | None = 4
    clip: str = "minmax"  # activation clipping (quant.clipping.CLIP_METHODS, or "auto": quant.clip_choice)
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
    classifier_bits: float | str | None = 8  # weights of the classifier; "same": as wbits; None: FP32
    classifier_output_bits: float | str | None = None  # the logits: None FP32; a number: per tensor min/max;
    # "same": as abits and clip, like any other layer output
    stats_mode: str = "offline"  # "offline" (calibration statistics) or "dynamic" (each batch, reference default)
    equalize: bool = False  # cross-layer equalization + high-bias absorption (quant.equalization)
    adaround: int = 0  # AdaRound iterations per layer (0: round to nearest; quant.adaround)
    keep_fp32: tuple[str, ...] = ()  # conv/linear modules left in FP32 (qualified module names)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bit_alloc", _targets(self.bit_alloc, "bit_alloc"))
        object.__setattr__(self, "bin_alloc", _targets(self.bin_alloc, "bin_alloc"))
        object.__setattr__(self, "keep_fp32", _names(self.keep_fp32, "keep_fp32"))
        both = set(self.bit_alloc) & set(self.bin_alloc)
        if both:
            raise QuantError(f"bit and bin allocation both requested for {sorted(both)}; choose one")
        _check_bits("wbits", self.wbits, same_ok=False)
        _check_bits("abits", self.abits, same_ok=False)
        for name in ("first_layer_wbits", "first_layer_abits", "classifier_bits", "classifier_output_bits"):
            _check_bits(name, getattr(self, name), same_ok=True)
        for kind, bits in (("weights", self.wbits), ("activations", self.abits)):
            if bits is not None and kind not in self.bin_alloc and float(bits) != int(bits):
                raise QuantError(
                    f"{kind}: {bits} bits is fractional; fractional targets need bin allocation "
                    f"(bin_alloc=('{kind}',), --bin-alloc {kind})"
                )
        if self.clip != "auto":
            parse_method(self.clip)
        elif self.stats_mode == "dynamic":
            raise QuantError("clip='auto' chooses each layer's clipping on held-out calibration images: it needs "
                             "stats_mode='offline'")
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
        for k in ("bit_alloc", "bin_alloc", "keep_fp32"):
            d[k] = list(getattr(self, k))
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
        parts.append(f"classifier=W{fmt(self.classifier_bits)}A{fmt(self.classifier_output_bits)}")
        parts.append(f"stats={self.stats_mode}")
        if self.keep_fp32:
            parts.append("keep-fp32=" + ",".join(self.keep_fp32))
        return " ".join(parts)


def layer_bits(info: "LayerInfo", base: float | None, first: Any, classifier: Any) -> float | None:
    """Bits of one layer's weights or output: the classifier's (``classifier``), the first layer's (``first``), or
    ``base`` (``"same"`` defers to ``base``; a kind left in FP32, ``base`` None, stays FP32 everywhere)."""
    if base is None:
        return None
    if info.classifier and classifier != SAME:
        return classifier
    if info.first and first != SAME:
        return first
    return base
