"""The integer tensors of a quantized run: every layer's weight codes and its activation codes over images.

:func:`quantized_tensors` records them from a prepared :class:`~quant.model.QuantizedModel`; :func:`run_export`
calibrates, prepares and records in one call (what ``huffquant encode --model`` writes to a file).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from quant.calibration import ModelStatistics
from quant.capture import CodeRecorder, check_finite_logits
from quant.config import QuantConfig
from quant.errors import QuantError
from quant.graph import LayerInfo
from quant.images import DEFAULT_CALIBRATION_IMAGES, builtin_images, iter_batches
from quant.model import QuantizedModel
from quant.models import LoadedModel
from quant.preparation import needs_calibration, prepare
from quant.quantizer import QuantizedTensor

__all__ = ["LayerTensors", "quantized_tensors", "run_export"]

log = logging.getLogger(__name__)


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


def _coverage_pass(qm: QuantizedModel, images: Any) -> None:
    """One image through the model, so that a conv/linear module running unquantized fails the export (the
    weights-only export has no pass of its own)."""
    if images is None:
        log.warning("no image to check that every conv/linear module that runs is quantized (pass images=)")
        return
    first = next((b.images[:1] for b in iter_batches(images, 1) if b.images.numel()), None)
    if first is not None:
        with torch.no_grad():
            qm.reference(first)


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
    built-in calibration crops, activations over the built-in evaluation crops.
    """
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
        if qm.quant.needs_coverage_pass:
            _coverage_pass(qm, images if images is not None else
                           (builtin_images(prep, 1, split="evaluation") if prep is not None else None))
        return qm, quantized_tensors(qm, [], num_images=0, layers=layers, activations=False, weights=weights)
    batches = (b.images for b in iter_batches(images, batch_size, num_workers=num_workers) if b.images.numel())
    tensors = quantized_tensors(qm, batches, num_images=len(images), layers=layers, activations=True,
                                weights=weights, progress=progress)
    return qm, tensors
