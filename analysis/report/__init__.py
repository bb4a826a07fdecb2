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
"""

from __future__ import annotations

from analysis.report.config import ReportConfig
from analysis.report.document import LAYER_COLUMNS, SWEEP_COLUMNS, Report
from analysis.report.figures import mse_alpha_curves
from analysis.report.run import report
from analysis.report.summary import summarize
from analysis.report.tensors import TensorInput, TensorResult, analyze_tensors, closed_form_rates

__all__ = [
    "ReportConfig", "TensorInput", "TensorResult", "analyze_tensors", "closed_form_rates", "summarize",
    "mse_alpha_curves", "Report", "LAYER_COLUMNS", "SWEEP_COLUMNS", "report",
]
