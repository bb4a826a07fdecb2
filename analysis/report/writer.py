"""Rendering a :class:`~analysis.report.document.Report` into files: summary.json, layers.csv, sweep.csv, and the
whole output folder (with report.md from :mod:`analysis.report.markdown` and the figures from
:mod:`analysis.report.drawing`).

Paths in the report are named relative to the output folder (:mod:`analysis.report.paths`): nothing it writes
holds a path of the machine it ran on.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from analysis.errors import AnalysisError
from analysis.report.document import LAYER_COLUMNS, SWEEP_COLUMNS, Report
from analysis.report.drawing import plot_report
from analysis.report.markdown import to_markdown
from analysis.report.paths import portable_path
from analysis.report.targets import time_ratio

__all__ = ["to_dict", "to_json", "to_csv", "write_report"]


def _jsonable(x: Any, base: Path | None) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v, base) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v, base) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist(), base)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, Path):
        return portable_path(x, base)
    return x


def to_dict(rep: Report, out_dir: str | os.PathLike[str] | None = None) -> dict:
    """The summary.json document; file paths relative to ``out_dir`` (the report's folder)."""
    d = {
        "header": rep.header,
        "headline": rep.headline,
        "summary": rep.summary,
        "targets": rep.targets,
        "timing": rep.timing,
        "configs": rep.configs,
        "files": rep.files,
        "layers": rep.layers,
        "packing": rep.packing,
    }
    if rep.sweep is not None:
        d["sweep"] = rep.sweep
    return _jsonable(d, None if out_dir is None else Path(out_dir))


def to_json(rep: Report, out_dir: str | os.PathLike[str] | None = None, indent: int | None = 2) -> str:
    """The summary.json document as text (no NaN or infinity: those become null)."""
    return json.dumps(to_dict(rep, out_dir), indent=indent, allow_nan=False)


def _csv_value(v: Any) -> Any:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    if v is None:
        return ""
    return v


def to_csv(rep: Report, table: str = "layers") -> str:
    """``layers`` (layers.csv), ``sweep`` (sweep.csv) or ``packing`` as CSV text."""
    if table == "layers":
        cols, rows = LAYER_COLUMNS, rep.layers
    elif table == "sweep":
        cols, rows = SWEEP_COLUMNS, rep.sweep or []
    elif table == "packing":
        rows = rep.packing
        cols = tuple(rows[0]) if rows else ("layer",)
    else:
        raise AnalysisError(f"unknown table {table!r}; expected layers, sweep or packing")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _csv_value(r.get(k)) for k in cols})
    return buf.getvalue()


def _count_plots(rep: Report, seconds: float) -> None:
    """The command's work is the report plus its figures: count them in the speed ratio and its target."""
    t = rep.timing
    t["plots_s"] = seconds
    if "report_s" not in t:
        return
    t["total_s"] = t["report_s"] + seconds
    ratio = time_ratio(t, t["total_s"])
    t["ratio_to_fp32_and_calibration"] = ratio
    if "time" in rep.targets and ratio is not None:
        rep.targets["time"].update(value=ratio, met=ratio <= rep.targets["time"]["limit"])


def write_report(rep: Report, out_dir: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
    """Write report.md, layers.csv, summary.json (and sweep.csv, figures/) into ``out_dir``; returns the paths."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if plots:
        t = time.perf_counter()
        figs = plot_report(rep, d / "figures")
        _count_plots(rep, time.perf_counter() - t)
        rep.figures["written"] = [p.relative_to(d).as_posix() for p in figs if p.suffix == ".png"]
        written += figs
    for name, text in (("layers.csv", to_csv(rep, "layers")), ("summary.json", to_json(rep, d)),
                       ("report.md", to_markdown(rep, d))):
        (d / name).write_text(text, encoding="utf-8")
        written.append(d / name)
    if rep.sweep is not None:
        (d / "sweep.csv").write_text(to_csv(rep, "sweep"), encoding="utf-8")
        written.append(d / "sweep.csv")
    return written
