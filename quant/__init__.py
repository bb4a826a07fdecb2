"""quant: post-training quantization (ACIQ, bit/bin allocation, bias correction) with integer codes out.

The public names below are imported lazily (PEP 562): ``import quant`` costs nothing, and
``quant.errors`` or ``quant.aciq`` can be used without importing torch. The first access to
a name such as ``quant.quantize`` imports its module (and torch, where that module needs it).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# public name -> the submodule that defines it
_EXPORTS = {
    "alpha_multiplier": "aciq",
    "gauss_mse": "aciq",
    "laplace_mse": "aciq",
    "allocate_bins": "allocation",
    "allocate_bits": "allocation",
    "quantize_array": "arrays",
    "correct_weights": "bias_correction",
    "fold_conv_bn": "bn_fold",
    "ModelStatistics": "calibration",
    "calibrate": "calibration",
    "CLIP_METHODS": "clipping",
    "clip_range": "clipping",
    "QuantConfig": "config",
    "evaluate": "evaluation",
    "evaluate_model": "evaluation",
    "LayerTensors": "export",
    "quantized_tensors": "export",
    "run_export": "export",
    "instrument": "graph",
    "kl_threshold": "kl",
    "QuantizedModel": "model",
    "load_model": "models",
    "calibrate_model": "preparation",
    "needs_calibration": "preparation",
    "prepare": "preparation",
    "QuantizedTensor": "quantizer",
    "QuantParams": "quantizer",
    "fake_quantize": "quantizer",
    "quantize": "quantizer",
    "TensorStatistics": "statistics",
    "step_ratio": "step_ratio",
    "step_size": "step_ratio",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from quant.aciq import alpha_multiplier, gauss_mse, laplace_mse
    from quant.allocation import allocate_bins, allocate_bits
    from quant.arrays import quantize_array
    from quant.bias_correction import correct_weights
    from quant.bn_fold import fold_conv_bn
    from quant.calibration import ModelStatistics, calibrate
    from quant.clipping import CLIP_METHODS, clip_range
    from quant.config import QuantConfig
    from quant.evaluation import evaluate, evaluate_model
    from quant.export import LayerTensors, quantized_tensors, run_export
    from quant.graph import instrument
    from quant.kl import kl_threshold
    from quant.model import QuantizedModel
    from quant.models import load_model
    from quant.preparation import calibrate_model, needs_calibration, prepare
    from quant.quantizer import QuantizedTensor, QuantParams, fake_quantize, quantize
    from quant.statistics import TensorStatistics
    from quant.step_ratio import step_ratio, step_size


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'quant' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"quant.{module}"), name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``quant.step_ratio`` the function (as the eager package had it), not the submodule
    that importing ``quant.step_ratio`` would otherwise bind to the same attribute."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
