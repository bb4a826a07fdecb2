"""One measurement of a quantized setting, as an independent task: quantize, run the images, size the codes.

A :class:`Measure` says what to measure; :func:`measure` does it on a :class:`MeasureContext` (the model, its
statistics, the images and their FP32 logits, shipped once per worker by :mod:`analysis.report.parallel`) and
returns a :class:`Measured`: fidelity to FP32 (on all the task's images and on the first ``prefix_images``),
and the coded bits per value of the activations of the first ``rate_images`` images and of the weights, each
tensor in the smallest of entropy's layouts (:func:`analysis.report.tensors.closed_form_rates`). The compared
recipes and the sweep points are such tasks.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from analysis.report.figures import channel_bits
from analysis.report.model_pass import run_quantized, tensor_inputs
from analysis.report.tensors import TensorInput, closed_form_rates

__all__ = ["MeasureContext", "Measure", "Measured", "measure", "first_images", "weight_digest", "add_seconds",
           "inference_bits_per_value", "fidelity_columns"]


@dataclass
class MeasureContext:
    """What every measurement needs: the FP32 model, statistics by name, the image batches (images, labels or
    None) and their FP32 logits, and the coding parameters."""

    name: str
    module: Any
    statistics: dict[str, Any]
    batches: list
    refs: list
    device: str = "cpu"
    max_code_length: int = 12
    chunk_size: int = 4096


@dataclass(frozen=True)
class Measure:
    """What to measure: ``config`` (a QuantConfig) on the statistics named ``statistics``; fidelity on the first
    ``images`` images (None: all; 0: no pass, weights only) and on the first ``prefix_images``; the activations of
    the first ``rate_images`` sized (0: not sized); the weights sized when ``weights``."""

    config: Any
    statistics: str
    images: int | None = None
    rate_images: int | None = 16
    prefix_images: int | None = None
    weights: bool = True


@dataclass
class Measured:
    """A measurement: fidelity dicts (as :class:`quant.evaluation.FidelityMeter` gives them), per kind the
    closed-form rates (``n_values``, ``coded_bits_per_value``, ``nominal_bits``, ``entropy_bits``), how many
    images were evaluated and sized, the weights' digest and seconds per stage."""

    fidelity: dict | None
    prefix_fidelity: dict | None
    rates: dict[str, dict[str, float]]
    images: int
    rate_images: int
    weight_digest: str
    seconds: dict[str, float] = field(default_factory=dict)
    channel_bits: dict[str, Any] = field(default_factory=dict)  # per kind, nominal bits per channel (figures)


def add_seconds(timing: dict[str, float], prefix: str, measured: list[Measured]) -> None:
    """Add the measurements' seconds per stage into ``timing`` as ``<prefix>.<stage>`` (summed over tasks: worker
    time, not wall time)."""
    for m in measured:
        for k, v in m.seconds.items():
            timing[f"{prefix}.{k}"] = timing.get(f"{prefix}.{k}", 0.0) + v


def first_images(batches: list, refs: list, limit: int | None) -> tuple[list, list]:
    """The batches and FP32 logits of the first ``limit`` images (all when None)."""
    if limit is None:
        return batches, refs
    out_b, out_r, n = [], [], 0
    for (x, labels), r in zip(batches, refs):
        if n >= limit:
            break
        k = min(int(x.shape[0]), limit - n)
        out_b.append((x[:k], None if labels is None else labels[:k]))
        out_r.append(r[:k])
        n += k
    return out_b, out_r


def inference_bits_per_value(rates: Mapping[str, Mapping[str, float]], rate_images: int) -> float | None:
    """Coded bits per value of one inference: one image's activations (their values over the ``rate_images``
    sized images, per image) and every weight, from per-kind ``closed_form_rates``; None without either."""
    act, w = rates.get("activations") or {}, rates.get("weights") or {}
    n_act = act.get("n_values", 0.0) / rate_images if act and rate_images else 0.0
    n_w = w.get("n_values", 0.0) if w else 0.0
    if not n_act or not n_w:
        return None
    return (act["coded_bits_per_value"] * n_act + w["coded_bits_per_value"] * n_w) / (n_act + n_w)


def fidelity_columns(fid: Mapping[str, Any], images: int) -> dict[str, Any]:
    """The fidelity columns of a sweep row from a :class:`quant.evaluation.FidelityMeter` summary over ``images``
    images: top-1 agreement and its 95% Wilson interval, top-5 overlap, KL, logit SQNR, and with labels top-1 (with
    its interval) and top-5."""
    from quant.evaluation import binomial_ci

    lo, hi = fid["top1_agreement_ci"]
    out = {"top1_agreement": fid["top1_agreement"], "top1_agreement_ci_low": lo, "top1_agreement_ci_high": hi,
           "top5_overlap": fid["top5_overlap"], "kl_divergence": fid["kl_divergence"],
           "logit_sqnr_db": fid.get("logit_sqnr_db"), "top1": fid.get("top1"), "top1_ci_low": None,
           "top1_ci_high": None, "top5": fid.get("top5")}
    if fid.get("top1") is not None and images:
        out["top1_ci_low"], out["top1_ci_high"] = binomial_ci(round(fid["top1"] * images), images)
    return out


def weight_digest(inputs: list[TensorInput]) -> str:
    """SHA-256 of everything that sizes the weight tensors of ``inputs``: names, codes, levels, minimum codes and
    stored metadata. Two settings with equal digests have equal weight rates."""
    h = hashlib.sha256()
    for t in inputs:
        if t.kind != "weights":
            continue
        h.update(t.layer.encode())
        h.update(f"{t.codes.dtype}{t.codes.shape}{t.channel_axis}".encode())
        h.update(t.codes.tobytes())
        h.update(t.levels.tobytes())
        h.update(t.qmin.tobytes())
        h.update(repr(sorted((k, repr(v)) for k, v in t.quant.items())).encode())
    return h.hexdigest()


def measure(ctx: MeasureContext, task: Measure) -> Measured:
    """Run ``task`` on ``ctx`` (see :class:`Measure`); deterministic for a given number of torch threads."""
    from quant import prepare

    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    qm = prepare(ctx.module, task.config, stats=ctx.statistics[task.statistics], device=ctx.device,
                 model_name=ctx.name, progress=False)
    t1 = time.perf_counter()
    seconds["prepare_s"] = t1 - t0
    fidelity = prefix = None
    codes: dict = {}
    images = rate_images = 0
    if task.images != 0:
        batches, refs = first_images(ctx.batches, ctx.refs, task.images)
        qp = run_quantized(qm, batches, refs, record=task.rate_images != 0, progress=False, desc="measure",
                           record_images=task.rate_images, prefix_images=task.prefix_images)
        fidelity, prefix, codes = qp.fidelity, qp.prefix_fidelity, qp.codes
        images, rate_images = qp.images, qp.recorded_images
    t2 = time.perf_counter()
    seconds["pass_s"] = t2 - t1
    inputs = tensor_inputs(qm, codes, None, task.config.abits)
    bits = channel_bits([(t.layer, t.kind, np.log2(t.levels.astype(np.float64))) for t in inputs],
                        {n: lq.info for n, lq in qm.layers.items()})
    del codes, qm
    digest = weight_digest(inputs)
    sized = [t for t in inputs if t.kind == "activations" or task.weights]
    t3 = time.perf_counter()
    seconds["inputs_s"] = t3 - t2
    rates = closed_form_rates(sized, max_code_length=ctx.max_code_length, chunk_size=ctx.chunk_size, clusters=(),
                              threads=1)
    seconds["rates_s"] = time.perf_counter() - t3
    return Measured(fidelity, prefix, rates, images, rate_images, digest, seconds, bits)
