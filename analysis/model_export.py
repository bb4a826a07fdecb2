"""Write the integer weights (and activations) of a quantized model run to an ``.hqt`` file.

Tensor names: ``"<layer>/weight"`` (codes of shape (C_out, ...)) and ``"<layer>/activation"`` (codes of
shape (N, C, ...) over the exported images). Each carries its quantization metadata (``scale``,
``zero_point``, ``qmin``, ``qmax``, ``bits``, ``axis``; axis absent = per tensor; see
:meth:`quant.quantizer.QuantizedTensor.metadata`), so
``huffquant decode --dequantize`` gives back the float values the simulation used: ``(code - zero_point) *
scale``. With bias correction the stored weight codes are those before the correction (the corrected weights
are off the integer grid); the file metadata says so.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from analysis.errors import AnalysisError

if TYPE_CHECKING:
    from entropy import FileOptions

__all__ = ["export_tensors", "export_model", "tensor_name"]

log = logging.getLogger(__name__)


def tensor_name(layer: str, kind: str) -> str:
    """File tensor name of a layer's ``"weight"`` or ``"activation"`` codes."""
    return f"{layer}/{kind}"


def export_tensors(
    path: str | os.PathLike[str],
    tensors: dict[str, Any],
    *,
    metadata: dict[str, str] | None = None,
    options: FileOptions | None = None,
) -> Any:
    """Write :class:`quant.LayerTensors` (per layer) with :func:`entropy.save`; returns FileInfo.

    ``options``: an :class:`entropy.FileOptions` (codec, codebook sharing, ``verify`` to decode the written file
    and compare it with the codes before it replaces ``path``...); None: the defaults."""
    from entropy import save

    arrays: dict[str, np.ndarray] = {}
    quant: dict[str, dict[str, Any]] = {}
    for layer, lt in tensors.items():
        for kind, qt in (("weight", lt.weight), ("activation", lt.activation)):
            if qt is None:
                continue
            name = tensor_name(layer, kind)
            arrays[name] = qt.codes.detach().cpu().numpy()
            quant[name] = qt.metadata()
    if not arrays:
        raise AnalysisError("nothing to export: every layer is FP32")
    return save(path, arrays, metadata, options=options, quant=quant)


def export_model(
    path: str | os.PathLike[str],
    model: Any,
    config: Any,
    *,
    activations: bool = False,
    images: Any = None,
    calibration_images: Any = None,
    stats: Any = None,
    layers: Sequence[str] | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    progress: bool = False,
    metadata: dict[str, str] | None = None,
    options: FileOptions | None = None,
) -> Any:
    """Quantize ``model`` (a :class:`quant.models.LoadedModel`) with ``config`` and write its codes to ``path``.

    ``activations`` adds the feature maps over ``images`` (default: the built-in evaluation crops; offline
    statistics from ``stats`` or ``calibration_images``, default the 32 built-in calibration crops).
    ``options``: as for :func:`export_tensors`. Returns the written file's FileInfo.
    """
    from quant import run_export

    qm, tensors = run_export(model, config, images=images, calibration_images=calibration_images, stats=stats,
                             batch_size=batch_size, device=device, layers=layers, activations=activations,
                             progress=progress)
    meta = {
        "model": getattr(model, "name", type(model).__name__),
        "config": config.describe() if activations else config.describe() + " (weights only)",
        "weights": "codes before bias correction" if qm.config.bias_correction else "codes",
    }
    if activations and images is not None and hasattr(images, "description"):
        meta["images"] = images.description
    elif activations:
        meta["images"] = "built-in evaluation crops"
    meta.update(metadata or {})
    return export_tensors(path, tensors, metadata=meta, options=options)
