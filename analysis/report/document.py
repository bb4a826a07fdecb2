"""The finished report: :class:`Report` and its machine-readable forms (summary.json, layers.csv, sweep.csv).

``to_markdown`` renders through :mod:`analysis.report.markdown`, ``plot`` draws through
:mod:`analysis.report.figures`, and ``write`` saves everything into a folder.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import AnalysisError
from analysis.report.figures import plot_figures
from analysis.report.markdown import render_markdown

__all__ = ["Report", "LAYER_COLUMNS", "SWEEP_COLUMNS"]

#: Columns of layers.csv, in order (documented in the README).
LAYER_COLUMNS = (
    "index", "layer", "kind", "shape", "dtype", "n_values", "n_channels",
    "nominal_bits", "entropy_bits", "channel_entropy_bits",
    "acl_single", "acl_channel", "acl_bitwidth", "acl_cluster",
    "bpv_single", "bpv_channel", "bpv_bitwidth", "bpv_cluster",
    "layout", "n_codebooks", "modes", "avg_code_length", "payload_bits", "codebook_bits", "index_bits",
    "record_bits", "map_bits", "closed_form_bits", "coded_bits", "coded_bits_per_value", "quant_metadata_bits",
    "file_bits_per_value", "zstd_bits_per_value", "zstd_sample_fraction",
    "pack_widest_bpv", "pack_dense_bpv", "pack_huffman_layer_bpv", "pack_huffman_bitwidth_bpv",
    "step_ratio", "fused_activation", "lossless", "sha256",
)

#: Columns of sweep.csv, in order (documented in the README).
SWEEP_COLUMNS = (
    "wbits", "abits", "clip", "allocation", "bias_correction", "recipe", "series", "label",
    "act_nominal_bits", "act_entropy_bits", "act_coded_bits_per_value",
    "weight_nominal_bits", "weight_entropy_bits", "weight_coded_bits_per_value",
    "coded_bits_per_value", "top1_agreement", "top5_overlap", "kl_divergence", "top1", "top5", "pareto",
    "images", "rate_images",
)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


@dataclass
class Report:
    """A finished report. ``to_markdown``/``to_json``/``to_csv`` render it; ``write``/``plot`` save it."""

    header: dict
    summary: dict
    layers: list[dict]
    configs: list[dict] = field(default_factory=list)
    packing: list[dict] = field(default_factory=list)
    sweep: list[dict] | None = None
    targets: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict, repr=False)  # data for plot(), not serialized

    # -- machine-readable
    def to_dict(self) -> dict:
        """The summary.json document."""
        d = {
            "header": self.header,
            "summary": self.summary,
            "targets": self.targets,
            "timing": self.timing,
            "configs": self.configs,
            "files": self.files,
            "layers": self.layers,
            "packing": self.packing,
        }
        if self.sweep is not None:
            d["sweep"] = self.sweep
        return _jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        """The summary.json document as text (no NaN or infinity: those become null)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self, table: str = "layers") -> str:
        """``layers`` (layers.csv), ``sweep`` (sweep.csv) or ``packing`` as CSV text."""
        if table == "layers":
            cols, rows = LAYER_COLUMNS, self.layers
        elif table == "sweep":
            cols, rows = SWEEP_COLUMNS, self.sweep or []
        elif table == "packing":
            rows = self.packing
            cols = tuple(rows[0]) if rows else ("layer",)
        else:
            raise AnalysisError(f"unknown table {table!r}; expected layers, sweep or packing")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in cols})
        return buf.getvalue()

    # -- human-readable
    def to_markdown(self) -> str:
        """The report as Markdown (report.md)."""
        return render_markdown(self)

    # -- files
    def write(self, out_dir: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write report.md, layers.csv, summary.json (and sweep.csv, figures/) into ``out_dir``."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        if plots:
            t = time.perf_counter()
            figs = self.plot(d / "figures")
            self.timing["plots_s"] = time.perf_counter() - t
            self._retime()
            self.figures["written"] = [str(p.relative_to(d)) for p in figs if p.suffix == ".png"]
            written += figs
        for name, text in (("layers.csv", self.to_csv("layers")), ("summary.json", self.to_json()),
                           ("report.md", self.to_markdown())):
            (d / name).write_text(text, encoding="utf-8")
            written.append(d / name)
        if self.sweep is not None:
            (d / "sweep.csv").write_text(self.to_csv("sweep"), encoding="utf-8")
            written.append(d / "sweep.csv")
        return written

    def _retime(self) -> None:
        """Count the figures in the speed ratio: the command's work is the report plus its plots."""
        t = self.timing
        base = t.get("fp32_forward_s", 0.0) + t.get("calibration_s", 0.0)
        if "report_s" not in t or base <= 0:
            return
        t["total_s"] = t["report_s"] + t.get("plots_s", 0.0)
        t["ratio_to_fp32_and_calibration"] = t["total_s"] / base
        if "time" in self.targets:
            self.targets["time"].update(value=t["ratio_to_fp32_and_calibration"],
                                        met=t["ratio_to_fp32_and_calibration"] <= self.targets["time"]["limit"])

    def plot(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write every figure the report has data for (PNG + PDF each); returns the paths."""
        return plot_figures(self, out_dir)


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    if v is None:
        return ""
    return v
