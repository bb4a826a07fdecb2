"""``clip="auto"``: each layer's activation clipping chosen by what measures best on held-out calibration images.

ACIQ's noise model is derived for a few bits: at 8 bits and above its Laplace fit clips heavy-tailed channels that
rounding would hardly touch. Per-channel ranges estimated from a few images clip unseen images more often than one
range for the whole tensor. Which costs least depends on the layer and on the bit width, so it is measured:

1. the candidates (:data:`CANDIDATES`: ACIQ-Laplace and min/max, per channel and per tensor) get their ranges from
   the statistics of the calibration images but the last ``holdout`` share of them (for the built-in pool, whole
   boxes in both orientations: :mod:`quant.images`);
2. each candidate's quantization error of the layer's output (fused activation applied, the FP32 network, every
   layer alone) is summed over the held-out images, and the smallest wins (ties: the earlier candidate);
3. the final ranges come from the statistics of all calibration images with the chosen method.

The choice (layer -> ``"method/channel"`` or ``"method/tensor"``) is stored with the statistics
(:meth:`quant.calibration.ModelStatistics.add_result`, kind ``"clip"``), so a run with a statistics file needs no
images for it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import torch

from quant.act_quantizers import ActQuantizer, ActSpec, act_params
from quant.calibration import calibrate
from quant.config import QuantConfig
from quant.errors import CalibrationError
from quant.graph import Instrumented

__all__ = ["AUTO", "CANDIDATES", "choose_clipping", "parse_choice"]

log = logging.getLogger(__name__)

AUTO = "auto"
CANDIDATES: tuple[tuple[str, bool], ...] = (
    ("aciq-laplace", True), ("minmax", True), ("minmax", False), ("aciq-laplace", False))


def _label(method: str, per_channel: bool) -> str:
    return f"{method}/{'channel' if per_channel else 'tensor'}"


def parse_choice(label: str) -> tuple[str, bool]:
    """(method, per_channel) of a stored choice such as ``"minmax/tensor"``."""
    method, _, scope = label.partition("/")
    if scope not in ("channel", "tensor") or not method:
        raise CalibrationError(f"stored clipping choice {label!r} is not 'method/channel' or 'method/tensor'")
    return method, scope == "channel"


def _candidate_specs(spec: ActSpec) -> list[ActSpec]:
    out = []
    for method, per_channel in CANDIDATES:
        if per_channel and not spec.per_channel:
            continue  # a layer quantized per tensor anyway (linear outputs)
        out.append(replace(spec, clip=method, per_channel=per_channel, alloc=spec.alloc if per_channel else None))
    return out


def choose_clipping(inst: Instrumented, specs: dict[str, ActSpec], cfg: QuantConfig, images: list[torch.Tensor], *,
                    holdout: float = 0.25, device: torch.device | str = "cpu",
                    batch_size: int = 16) -> dict[str, str]:
    """The clipping of every layer of ``specs`` (layer -> label, see :func:`parse_choice`), measured on ``inst``
    (the float network, no quantizer installed) with the calibration ``images`` (module docstring)."""
    x = torch.cat([b for b in images])
    n_held = int(math.floor(holdout * x.shape[0]))
    if n_held < 1 or n_held >= x.shape[0]:
        raise CalibrationError(f"choosing the clipping needs calibration images to hold out: {x.shape[0]} image(s) "
                               f"give none at a {holdout:.0%} share")
    fit, held = x[:-n_held], x[-n_held:]
    stats = calibrate(inst, [fit[i:i + batch_size] for i in range(0, fit.shape[0], batch_size)], histogram=False,
                      device=device)
    cands: dict[str, list[tuple[str, ActQuantizer]]] = {}
    for name, spec in specs.items():
        cands[name] = [(_label(c.clip, c.per_channel), ActQuantizer(act_params(stats[name], c, cfg), c.ndim, device))
                       for c in _candidate_specs(spec)]
    errors = {name: torch.zeros(len(c), dtype=torch.float64) for name, c in cands.items()}

    def measure(name: str):
        def hook(module: Any, inputs: tuple, out: torch.Tensor) -> None:
            y = out.detach()
            for i, (_, q) in enumerate(cands[name]):
                errors[name][i] += float(torch.linalg.vector_norm((y - q(y)).reshape(-1)).double() ** 2)
        return hook

    handles = [inst.sites[n].register_forward_hook(measure(n)) for n in cands]
    try:
        with torch.no_grad():
            for i in range(0, held.shape[0], batch_size):
                inst(held[i:i + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
    choice = {name: c[int(torch.argmin(errors[name]))][0] for name, c in cands.items()}
    counts: dict[str, int] = {}
    for label in choice.values():
        counts[label] = counts.get(label, 0) + 1
    log.info("clipping chosen on %d held-out images: %s", n_held, counts)
    return choice
