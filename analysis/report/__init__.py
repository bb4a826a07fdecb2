"""The bits-per-value report: what each activation and weight of a quantized network really costs.

:func:`report` runs the whole job on a model and images and returns a :class:`Report`;
:func:`analyze_tensors` is the torch-free core that does everything after the export, on integer
tensors and their quantization parameters. Whole-model figures are element-weighted averages over
tensors (totals of bits over totals of values).

Modules, one seam each:

* :mod:`~analysis.report.config` - :class:`ReportConfig`, what a report runs;
* :mod:`~analysis.report.model_pass` - images in, FP32 and quantized passes, integer codes out;
* :mod:`~analysis.report.tensors` - measuring, coding, writing and verifying each tensor;
* :mod:`~analysis.report.summary` - whole-model figures;
* :mod:`~analysis.report.targets` - the targets and their limits;
* :mod:`~analysis.report.figures` - the figures' data and drawing;
* :mod:`~analysis.report.markdown` - report.md;
* :mod:`~analysis.report.document` - :class:`Report`, summary.json and the CSV tables, ``write``;
* :mod:`~analysis.report.run` - the driver, :func:`report`.

The names below are imported on first use (PEP 562), so that importing one module of the package
does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> the module that defines it
_EXPORTS = {
    "ReportConfig": "config",
    "TensorInput": "tensors",
    "TensorResult": "tensors",
    "analyze_tensors": "tensors",
    "closed_form_rates": "tensors",
    "summarize": "summary",
    "mse_alpha_curves": "figures",
    "Report": "document",
    "LAYER_COLUMNS": "document",
    "SWEEP_COLUMNS": "document",
    "report": "run",
}

__all__ = list(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs; never executed
    from analysis.report.config import ReportConfig
    from analysis.report.document import LAYER_COLUMNS, SWEEP_COLUMNS, Report
    from analysis.report.figures import mse_alpha_curves
    from analysis.report.run import report
    from analysis.report.summary import summarize
    from analysis.report.tensors import TensorInput, TensorResult, analyze_tensors, closed_form_rates


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'analysis.report' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
