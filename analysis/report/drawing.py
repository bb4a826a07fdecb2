"""Drawing every figure a :class:`~analysis.report.document.Report` has data for, through :mod:`analysis.plots`."""

from __future__ import annotations

import os
from pathlib import Path

from analysis.report.document import Report

__all__ = ["plot_report"]


def plot_report(rep: Report, out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every figure ``rep`` has data for (PNG + PDF each) into ``out_dir``; returns the paths."""
    from analysis import plots

    f = rep.figures
    paths: list[Path] = []
    if f.get("histogram"):
        h = f["histogram"]
        paths += plots.plot_clipping_histogram(h.get("values"), h["thresholds"], out_dir,
                                               histogram=h.get("histogram"), layer=h.get("layer", ""),
                                               xlabel=h.get("xlabel"))
    paths += plots.plot_layer_bits(
        [{**r, "file_bits_per_value": r.get("coded_bits_per_value", r["closed_form_bits"] / r["n_values"])}
         for r in rep.layers], out_dir)
    if rep.sweep:
        labelled = all(p.get("top1") is not None for p in rep.sweep)
        y = "top1" if labelled else "top1_agreement"
        paths += plots.plot_rate_fidelity(
            rep.sweep, out_dir, y=y, color_by="series", interval=(f"{y}_ci_low", f"{y}_ci_high"),
            xlabel="coded bits per value (every weight + one image's activations)",
            ylabel="top-1 accuracy (%)" if labelled else "top-1 agreement with FP32 (%)")
    if f.get("mse_curves"):
        paths += plots.plot_mse_alpha(f["mse_curves"], out_dir)
    cb = f.get("channel_bits") or {}
    if any(len(v) for v in cb.values()):
        recipe = f.get("channel_bits_recipe")
        paths += plots.plot_bit_allocation(cb, out_dir, label=f"{recipe} recipe" if recipe else None)
    sr = [r for r in rep.layers if r["kind"] == "activations" and r.get("step_ratio") is not None]
    if sr:
        groups = ["no activation" if r.get("fused_activation", "none") == "none" else
                  f"fused {r['fused_activation'].replace('relu', 'ReLU')}" for r in sr]
        paths += plots.plot_step_ratio([r["step_ratio"] for r in sr], out_dir, groups=groups)
    return paths
