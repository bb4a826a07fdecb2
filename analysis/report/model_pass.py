"""The model side of the report: images in, FP32 and quantized passes, integer codes out as TensorInputs.

:func:`resolve_inputs` turns the caller's model and images into batches; :func:`run_quantized` runs one
quantized pass (fidelity to the FP32 logits, and the integer codes of every quantized layer);
:func:`tensor_inputs` turns a pass's codes and weights into :class:`~analysis.report.tensors.TensorInput`.
Used by the report's measurements (:mod:`analysis.report.measure`). torch is imported inside the functions.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from analysis.errors import AnalysisError
from analysis.report.config import ReportConfig
from analysis.report.paths import portable_text
from analysis.report.tensors import TensorInput

__all__ = ["ReportInputs", "QuantizedPass", "resolve_inputs", "run_quantized", "tensor_inputs"]

log = logging.getLogger(__name__)


@dataclass
class ReportInputs:
    """The model and the image batches (evaluation with labels or None, calibration) a report runs on."""

    name: str
    module: Any
    description: str
    eval_batches: list  # (images, labels or None)
    calib_batches: list  # images
    labelled: bool
    preprocessing: Any = None
    weights: str | Path = ""  # a file (named portably in what the report writes) or what the weights are


def _image_folders(images: Any) -> dict[str, str]:
    """The folder of an image set read from files (absolute path -> its name with a slash), for naming it in a
    description without the machine's path."""
    for rel, source, _ in getattr(images, "items", [])[:1]:
        if isinstance(source, (str, os.PathLike)):
            src, rel_path = Path(source), Path(rel)
            root = Path(*src.parts[: len(src.parts) - len(rel_path.parts)])
            return {str(root): f"{root.name}/"}
    return {}


def _weights_source(wsrc: Any) -> str | Path:
    p = Path(wsrc) if isinstance(wsrc, (str, os.PathLike)) and str(wsrc) else None
    return p if p is not None and p.is_file() else str(wsrc)


def resolve_inputs(model: Any, images: Any, calibration_images: Any, cfg: ReportConfig) -> ReportInputs:
    """The model and image batches a report runs on: ``model`` a name, LoadedModel or nn.Module; ``images`` and
    ``calibration_images`` None (built-in photos), a folder, an ImageSet or an image tensor (see
    :func:`analysis.report.report`). Image files are read by ``cfg.image_workers`` DataLoader workers."""
    import torch

    from quant.images import ImageSet, builtin_images, folder_images, iter_batches
    from quant.models import LoadedModel, load_model

    if isinstance(model, str):
        model = load_model(model)
    if isinstance(model, LoadedModel):
        name, module, prep, wsrc = model.name, model.model, model.preprocessing, model.weights
    elif isinstance(model, torch.nn.Module):
        name, module, prep, wsrc = type(model).__name__, model, None, "caller's module"
    else:
        raise AnalysisError(f"model must be a name, a LoadedModel or an nn.Module, got {type(model).__name__}")

    def batches_of(src: Any, limit: int | None, split: str) -> tuple[list, str, bool]:
        if src is None:
            if prep is None:
                raise AnalysisError("pass images= for a plain nn.Module (its preprocessing is unknown)")
            src = builtin_images(prep, limit, split=split)
        elif isinstance(src, (str, os.PathLike)):
            if prep is None:
                raise AnalysisError("an image folder needs a named model (its preprocessing)")
            src = folder_images(src, prep, limit=limit)
        if isinstance(src, torch.Tensor):
            x = src if limit is None else src[:limit]
            bs = cfg.batch_size
            return [(x[i:i + bs], None) for i in range(0, x.shape[0], bs)], f"tensor of {x.shape[0]} images", False
        if isinstance(src, ImageSet):
            if limit is not None and len(src) > limit:
                src = src.subset(0, limit)
            out = []
            skipped = 0
            for b in iter_batches(src, cfg.batch_size, num_workers=cfg.image_workers):
                skipped += len(b.skipped)
                if b.images.numel():
                    out.append((b.images, b.labels if src.labelled else None))
            if skipped:
                log.warning("%d unreadable image(s) skipped", skipped)
            if not out:
                raise AnalysisError(f"no readable image in {src.description}")
            desc = portable_text(src.description, _image_folders(src))
            return out, desc + (f", {skipped} unreadable skipped" if skipped else ""), src.labelled
        raise AnalysisError(f"images must be None, a folder, an ImageSet or a tensor, got {type(src).__name__}")

    ev, desc, labelled = batches_of(images, cfg.num_images, "evaluation")
    if calibration_images is None and images is not None:
        # calibrate on the first images of the caller's set (the reference code's default of 32)
        calib, left = [], 32 if cfg.num_calibration is None else cfg.num_calibration
        for x, _ in ev:
            if left <= 0:
                break
            calib.append(x[:left])
            left -= int(calib[-1].shape[0])
        cdesc = "the first report images"
    else:
        cb, cdesc, _ = batches_of(calibration_images, cfg.num_calibration, "calibration")
        calib = [x for x, _ in cb]
    n_eval = sum(int(x.shape[0]) for x, _ in ev)
    n_cal = sum(int(x.shape[0]) for x in calib)
    return ReportInputs(name, module, f"{desc} ({n_eval} evaluated); calibration: {cdesc} ({n_cal})", ev, calib,
                        labelled, prep, _weights_source(wsrc))


@dataclass
class QuantizedPass:
    """What one quantized pass measured: fidelity to the FP32 logits on every image, on the first ``prefix``
    images (None when not asked), and the integer codes of every quantized layer's activations (layer ->
    (codes, QuantParams)) of the first recorded images."""

    fidelity: dict
    prefix_fidelity: dict | None
    codes: dict
    recorded_images: int
    images: int


def run_quantized(qmodel: Any, batches: list, refs: list, *, record: bool, progress: bool, desc: str,
                  record_images: int | None = None, prefix_images: int | None = None) -> QuantizedPass:
    """One quantized pass over ``batches``: fidelity to the FP32 logits ``refs`` (and on the first
    ``prefix_images`` images alone) and, with ``record``, the codes of the first ``record_images`` images (all
    when None)."""
    import torch
    from tqdm.auto import tqdm

    from quant.capture import CodeRecorder, check_finite_logits
    from quant.evaluation import FidelityMeter

    sizes = [int(x.shape[0]) for x, _ in batches]
    total = sum(sizes)
    n_rec = total if record_images is None else min(int(record_images), total)
    sites = qmodel.sites
    recs = {}
    if record and n_rec:
        for name, s in sites.items():
            if s.quantizer is not None:
                # a recorder holds whole batches; the codes are trimmed to n_rec images at the end
                recs[name] = s.recorder = CodeRecorder(_whole_batches(sizes, n_rec))
    meter = FidelityMeter()
    prefix = FidelityMeter() if prefix_images else None
    seen = 0
    try:
        with torch.no_grad():
            for (x, labels), ref in tqdm(list(zip(batches, refs)), desc=desc, unit="batch", disable=not progress):
                if recs and seen >= n_rec:
                    for s in sites.values():
                        s.recorder = None
                out = qmodel(x.to(qmodel.device))
                check_finite_logits(qmodel.quant, x, out)
                meter.update(ref, out, labels)
                if prefix is not None and seen < prefix_images:
                    k = min(int(x.shape[0]), prefix_images - seen)
                    prefix.update(ref[:k], out[:k], None if labels is None else labels[:k])
                seen += int(x.shape[0])
    finally:
        for s in sites.values():
            s.recorder = None
    codes = {name: (r.result()[:n_rec], r.params) for name, r in recs.items()}
    return QuantizedPass(meter.summary(), None if prefix is None else prefix.summary(), codes,
                         n_rec if codes else 0, total)


def _whole_batches(sizes: list[int], n: int) -> int:
    """The images of the first batches that hold the first ``n`` images."""
    acc = 0
    for k in sizes:
        if acc >= n:
            break
        acc += k
    return acc


def tensor_inputs(qmodel: Any, codes: Mapping[str, Any], stats: Any, cfg_abits: float | None) -> list[TensorInput]:
    """TensorInputs for every quantized layer (activations then weights per layer, network order)."""
    out: list[TensorInput] = []
    for name, lq in qmodel.layers.items():
        if name in codes:
            c, p = codes[name]
            levels = p.levels.cpu().numpy().reshape(-1)
            rho = None
            if stats is not None and lq.act_bits is not None:
                try:
                    rho = _step_ratio(stats[name], float(lq.act_bits), lq.info)
                except Exception as exc:  # noqa: BLE001 - a missing histogram must not stop the report
                    log.debug("step ratio of %s not computed: %s", name, exc)
            meta = {k: v for k, v in _meta(c, p).items()}
            out.append(TensorInput(name, "activations", c.numpy(), p.axis, levels,
                                   p.qmin.cpu().numpy().reshape(-1), meta, step_ratio=rho,
                                   fused_activation=lq.info.activation or "none",
                                   channel_axis=1 if c.dim() >= 2 else None))
        if lq.weight is not None:
            w = lq.weight
            p = w.params
            out.append(TensorInput(name, "weights", w.codes.cpu().numpy(), p.axis, p.levels.cpu().numpy().reshape(-1),
                                   p.qmin.cpu().numpy().reshape(-1), dict(w.metadata()),
                                   fused_activation=lq.info.activation or "none",
                                   channel_axis=0 if w.codes.dim() >= 1 else None))
    return out


def _step_ratio(stats: Any, bits: float, info: Any) -> float:
    """ρ = Δ_ACIQ / Δ_KL of one layer's activations at ``bits`` (per tensor, from FP32 calibration statistics),
    with both ranges capped at 6 for a fused ReLU6 (the quantizer never uses a wider range there)."""
    from quant.capture import ACTIVATION_MAX
    from quant.step_ratio import step_size

    levels = 2.0 ** bits
    a = float(step_size(stats, "aciq-laplace", levels, info.signed))
    k = float(step_size(stats, "kl", levels, info.signed))
    cap = ACTIVATION_MAX.get(info.activation) if info.activation else None
    if cap is not None and not info.signed:
        a, k = min(a, cap / (levels - 1)), min(k, cap / (levels - 1))
    return a / k if k > 0 else math.nan


def _meta(codes: Any, params: Any) -> dict:
    from quant.quantizer import QuantizedTensor

    return dict(QuantizedTensor(codes, params).metadata())
