"""Weight bias and variance correction per output channel (paper eqs. 12-13), paper and reference forms.

With W_c the float weights of output channel c and W_c^q their quantized values (over all fan-in elements):

* μ_c = E[W_c] − E[W_c^q]  and  ξ_c = ||W_c − E[W_c]||₂ / ||W_c^q − E[W_c^q]||₂  (eq. 12; equal to the ratio
  of standard deviations; taken as 1 where W_c^q is constant, to keep the channel finite).
* ``form="paper"`` (eq. 13, ŵ = ξ_c·(w_q + μ_c)):  mean: w_q + μ_c;  variance: ξ_c·w_q;  both: ξ_c·(w_q + μ_c).
  "both" restores the std exactly but scales the mean to ξ_c·E[W_c].
* ``form="reference"`` (the reference code's ``-bcw``/``-vcw``):  mean: w_q − E[w_q] + E[w];
  variance: ξ_c·(w_q − E[w_q]) + E[w_q], ξ_c = std(W_c)/(std(W_c^q) + 1e-8);  both: ξ_c·(w_q − E[w_q]) + E[w].
  "both" restores mean and std exactly.

The corrected weights are floats off the integer grid: ξ_c can be folded into the channel's scale
(:func:`correction_terms` returns ξ_c and μ_c for that), the additive term cannot be stored in integer codes.

Empirical bias correction (:func:`empirical_bias_correction`; Nagel et al. 2019, "Data-Free Quantization",
section 4.2, measured on data): the mean *output* of every layer of the quantized network (after its fused
activation and its activation quantizer: what the next layers read) is moved to the layer's mean output in the
float network by adding a per-channel shift d_c to its bias. Weight rounding and upstream activation quantization
(clipping and the ReLU of a noisier input are biased) all shift these means. DFQ matches the mean before the
activation; after a ReLU with a noisy input the two differ (the positive part of a wider distribution has a
larger mean), and at 4-bit activations matching the pre-activation mean made EfficientNet-Lite0 worse (W8A4:
0.63 -> 0.46 top-1 agreement) while matching the output mean helps. The output mean is monotone in d, so d is
found by bisection. A layer's shift must be measured with every layer upstream already corrected, so it runs as
one forward pass of the quantized network over all the images as a single batch, in which each activation site
finds and applies its shift as it goes: one pass gives the exact sequential correction. Memory: the activations
of ``max_images`` images at once. The corrections are additions to the biases, which a deployment stores (as
float or int32) anyway.
"""

from __future__ import annotations

from typing import Any

import torch

from quant.errors import QuantError
from quant.quantizer import as_tensor

__all__ = ["correct_weights", "correction_terms", "empirical_bias_correction", "MODES", "FORMS"]

MODES = ("mean", "variance", "both")
FORMS = ("paper", "reference")


def _rows(w: torch.Tensor, axis: int) -> torch.Tensor:
    if w.dim() == 0:
        raise QuantError("bias correction needs a tensor with an output-channel axis")
    if not -w.dim() <= axis < w.dim():
        raise QuantError(f"axis {axis} out of range for weights of shape {tuple(w.shape)}")
    return w.movedim(axis, 0).reshape(w.shape[axis], -1)


def correction_terms(w: Any, w_q: Any, *, axis: int = 0, form: str = "paper") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (ξ_c, μ_c) of eq. 12 (float64, shape (C,)); ``form`` picks the paper's ξ or the reference's."""
    wt = as_tensor(w).to(torch.float64)
    qt = as_tensor(w_q).to(device=wt.device, dtype=torch.float64)
    if wt.shape != qt.shape:
        raise QuantError(f"weights {tuple(wt.shape)} and quantized weights {tuple(qt.shape)} differ in shape")
    if wt.numel() == 0:
        raise QuantError("bias correction of an empty tensor")
    if not (torch.isfinite(wt).all() and torch.isfinite(qt).all()):
        raise QuantError("bias correction input contains NaN or Inf")
    a, b = _rows(wt, axis), _rows(qt, axis)
    mu = a.mean(1) - b.mean(1)
    if form == "paper":
        na = torch.linalg.vector_norm(a - a.mean(1, keepdim=True), dim=1)
        nb = torch.linalg.vector_norm(b - b.mean(1, keepdim=True), dim=1)
        xi = torch.where(nb > 0, na / torch.where(nb > 0, nb, torch.ones_like(nb)), torch.ones_like(nb))
    elif form == "reference":
        if a.shape[1] > 1:
            xi = a.std(1) / (b.std(1) + 1e-8)
        else:
            xi = torch.ones_like(mu)
    else:
        raise QuantError(f"form must be one of {FORMS}, got {form!r}")
    return xi, mu


def correct_weights(w: Any, w_q: Any, *, axis: int = 0, mode: str = "mean", form: str = "paper") -> torch.Tensor:
    """Corrected weights (float, same shape and dtype as ``w``; see the module docstring for each mode/form)."""
    if mode not in MODES:
        raise QuantError(f"mode must be one of {MODES}, got {mode!r}")
    wt = as_tensor(w)
    out_dtype = wt.dtype if wt.is_floating_point() else torch.float32
    xi, mu = correction_terms(wt, w_q, axis=axis, form=form)
    qt = as_tensor(w_q).to(device=wt.device, dtype=torch.float64)
    ax = axis % qt.dim()
    shape = [1] * qt.dim()
    shape[ax] = -1
    xi_b, mu_b = xi.reshape(shape), mu.reshape(shape)
    if form == "paper":
        if mode == "mean":
            out = qt + mu_b
        elif mode == "variance":
            out = xi_b * qt
        else:
            out = xi_b * (qt + mu_b)
    else:
        mq = _rows(qt, ax).mean(1).reshape(shape)
        mw = mq + mu_b  # E[w]
        if mode == "mean":
            out = qt - mq + mw
        elif mode == "variance":
            out = xi_b * (qt - mq) + mq
        else:
            out = xi_b * (qt - mq) + mw
    return out.to(out_dtype)


class _MeanHook:
    """Forward hook on an activation site: accumulates the per-channel sum of its output (float64)."""

    def __init__(self) -> None:
        self.sum: torch.Tensor | None = None
        self.count = 0

    def __call__(self, module: Any, inputs: tuple, output: torch.Tensor) -> None:
        x = output.detach()
        dims = [d for d in range(x.dim()) if d != 1]
        s = x.to(torch.float64).sum(dim=dims)
        self.sum = s if self.sum is None else self.sum + s
        self.count += x.numel() // x.shape[1]

    def mean(self) -> torch.Tensor:
        return self.sum / max(self.count, 1)


def empirical_bias_correction(qmodel: Any, batches: list[torch.Tensor], *, max_images: int = 64,
                              batch_size: int = 32) -> dict[str, torch.Tensor]:
    """Per-layer bias corrections (C_out,) of a :class:`quant.model.QuantizedModel`, applied to its biases.

    Uses the first ``max_images`` images of ``batches``: their float-network means (in batches of
    ``batch_size``), then one quantized pass over all of them at once (module docstring). Returns the
    corrections added, by layer.
    """
    if not batches:
        raise QuantError("empirical bias correction needs calibration images")
    x = torch.cat([b.to(qmodel.device) for b in batches])[:max_images]
    sites = qmodel.sites
    hooks = {n: _MeanHook() for n in sites}
    handles = [sites[n].register_forward_hook(h) for n, h in hooks.items()]
    try:
        with torch.no_grad():
            for i in range(0, x.shape[0], batch_size):
                qmodel.float_forward(x[i:i + batch_size])
    finally:
        for h in handles:
            h.remove()
    for n, h in hooks.items():
        if h.sum is not None:
            sites[n].mean_target = h.mean()
    try:
        with torch.no_grad():
            qmodel(x)
        deltas = {n: s.mean_shift for n, s in sites.items() if s.mean_shift is not None}
    finally:
        for s in sites.values():
            s.mean_target = None
            s.mean_shift = None
    for n, d in deltas.items():
        qmodel.add_bias(n, d)
    return deltas
