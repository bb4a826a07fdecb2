"""The bits-per-value report: what each activation and weight of a quantized network really costs.

:func:`report` runs the whole job on a model and images and returns a :class:`Report` (data);
:func:`write_report` writes it into a folder (report.md, summary.json, layers.csv, sweep.csv, figures), and
:func:`to_json`, :func:`to_csv`, :func:`to_markdown` and :func:`plot_report` render its parts.
:func:`analyze_tensors` is the torch-free core that does everything after the export, on integer tensors and
their quantization parameters. Whole-model figures are element-weighted averages over tensors (totals of bits
over totals of values).

Modules, one seam each (each imports only modules above it in this list):

* :mod:`~analysis.report.config` - :class:`ReportConfig`, what a report runs;
* :mod:`~analysis.report.paths` - how files are named in what the report writes (no machine paths);
* :mod:`~analysis.report.tensors` - measuring, coding, writing and verifying each tensor; closed-form rates;
* :mod:`~analysis.report.summary` - whole-model figures;
* :mod:`~analysis.report.targets` - the targets and their limits;
* :mod:`~analysis.report.figures` - the figures' data;
* :mod:`~analysis.report.model_pass` - images in, FP32 and quantized passes, integer codes out;
* :mod:`~analysis.report.measure` - one setting measured (fidelity, coded bits), as an independent task;
* :mod:`~analysis.report.parallel` - running such tasks on joblib (loky processes, or a Dask cluster);
* :mod:`~analysis.report.learned` - what recipes learn on the calibration images, cached between runs;
* :mod:`~analysis.report.sweep` - the rate-fidelity sweep;
* :mod:`~analysis.report.document` - :class:`Report` and the columns of its tables;
* :mod:`~analysis.report.run` - the driver, :func:`report`, in named stages;
* :mod:`~analysis.report.markdown`, :mod:`~analysis.report.drawing`, :mod:`~analysis.report.writer` -
  rendering a :class:`Report`: report.md, the figures, summary.json, the CSV tables and the folder.
"""

from __future__ import annotations

from analysis.report.config import ReportConfig
from analysis.report.document import HEADLINE_COLUMNS, LAYER_COLUMNS, SWEEP_COLUMNS, Report
from analysis.report.drawing import plot_report
from analysis.report.figures import mse_alpha_curves
from analysis.report.markdown import to_markdown
from analysis.report.run import report
from analysis.report.summary import summarize
from analysis.report.tensors import TensorInput, TensorResult, analyze_tensors, closed_form_rates
from analysis.report.writer import to_csv, to_dict, to_json, write_report

__all__ = [
    "ReportConfig", "TensorInput", "TensorResult", "analyze_tensors", "closed_form_rates", "summarize",
    "mse_alpha_curves", "Report", "LAYER_COLUMNS", "SWEEP_COLUMNS", "HEADLINE_COLUMNS", "report", "write_report",
    "to_dict", "to_json", "to_csv", "to_markdown", "plot_report",
]
