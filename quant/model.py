"""The quantized model: one instrumented (BN-folded) copy of a network holding three states of its parameters
(original FP32, the float network the quantizer starts from, and quantized), with what was done to each layer.

:func:`quant.preparation.prepare` builds a :class:`QuantizedModel`; calling it runs the quantized network
(quantized weights, activation quantizers in the sites), :meth:`QuantizedModel.reference` the FP32 one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from quant.act_quantizers import ActSpec
from quant.calibration import ModelStatistics
from quant.capture import ActivationSite, check_finite_logits
from quant.config import QuantConfig
from quant.graph import Instrumented, LayerInfo, instrument
from quant.quantizer import QuantizedTensor, QuantParams
from quant.sqnr import tensor_sqnr_db
from quant.weight_quant import corrected_weight

__all__ = ["QuantizedModel", "LayerQuant", "LayerParams", "snapshot"]


@dataclass
class LayerQuant:
    """What was done to one layer."""

    info: LayerInfo
    weight: QuantizedTensor | None  # weight codes + params (None: FP32 weights)
    weight_bits: float | None  # mean bits per weight (log2 of the level count, averaged over channels)
    weight_sqnr_db: float | None  # SQNR of the final (corrected) weights against the folded FP32 weights
    act_bits: float | None  # mean bits per activation value (offline: over channels; dynamic: target)
    act_params: QuantParams | None  # offline activation parameters (None when dynamic or FP32)
    act_spec: ActSpec | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.info.name


@dataclass
class LayerParams:
    """Weight, bias and per-channel ends of the fused activation of one layer in one state of the network."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    act_lo: torch.Tensor | None  # None: the activation's usual lower end (0)
    act_hi: torch.Tensor | None  # None: its usual upper end (6 for ReLU6, none for ReLU)


def snapshot(inst: Instrumented) -> dict[str, LayerParams]:
    """A copy of every layer's current weight, bias and activation ends."""
    out = {}
    for name, mod in inst.modules.items():
        b = mod.bias.detach().clone() if mod.bias is not None else None
        site = inst.sites[name]
        lo, hi = site.act_lo, site.act_hi
        out[name] = LayerParams(mod.weight.detach().clone(), b, None if lo is None else lo.clone(),
                                None if hi is None else hi.clone())
    return out


@dataclass
class QuantizedModel:
    """The FP32 reference and the quantized copy of one model, with per-layer details.

    One instrumented graph holds three states of every layer's parameters: the *original* folded FP32 network
    (the reference every metric compares with), the *float* network the quantizer starts from (the original,
    or its equalized version: the same function up to float rounding), and the
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
    original: dict[str, LayerParams] = field(default_factory=dict, repr=False)
    floating: dict[str, LayerParams] = field(default_factory=dict, repr=False)
    quantized: dict[str, LayerParams] = field(default_factory=dict, repr=False)
    adaround: Any = field(default=None, repr=False)  # quant.adaround.AdaRoundResult when AdaRound ran
    bias_deltas: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)  # empirical corrections
    timing: dict[str, float] = field(default_factory=dict)  # seconds per preparation step

    def load(self, state: dict[str, LayerParams]) -> None:
        """Put ``state``'s parameters (some or all layers) into the instrumented graph."""
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
            self.quant.sites[name].set_activation_bounds(p.act_lo, p.act_hi)

    def _run(self, x: torch.Tensor, state: dict[str, LayerParams], sites_on: bool) -> torch.Tensor:
        sites = self.sites
        try:
            if state is not self.quantized:
                self.load(state)
            if not sites_on:
                for s in sites.values():
                    s.active = False
            return self.quant(x.to(self.device))
        finally:
            if state is not self.quantized:
                self.load(self.quantized)
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
        w_hat = corrected_weight(w, codes, self.config)
        self.quantized[name].weight = w_hat.to(self.device)
        self.quant.modules[name].weight.data = self.quantized[name].weight
        lq.weight = QuantizedTensor(codes.codes.to(self.device), codes.params.to(self.device))
        lq.weight_sqnr_db = tensor_sqnr_db(w, w_hat)

    def add_bias(self, name: str, delta: torch.Tensor) -> None:
        """Add ``delta`` (C_out,) to layer ``name``'s bias in the quantized network (created if missing)."""
        p = self.quantized[name]
        d = delta.to(device=self.device, dtype=p.weight.dtype)
        p.bias = d.clone() if p.bias is None else p.bias + d
        self.load({name: p})

    def check_reference(self, x: torch.Tensor, logits: torch.Tensor) -> None:
        """Raise a :class:`QuantError` naming the first FP32 layer with NaN/Inf output if ``logits`` are not finite."""
        if bool(torch.isfinite(logits).all()):
            return
        probe = instrument(self.fp32, ActivationSite, keep_fp32=self.config.keep_fp32).to(self.device)
        check_finite_logits(probe, x.to(self.device), logits)
