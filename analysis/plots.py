"""Paper-ready figures of the report, each written as PNG and vector PDF (see :mod:`analysis.plot_style`).

Every function takes plain data (numbers, arrays, lists of dicts), writes ``<stem>.png`` and
``<stem>.pdf`` into ``out_dir`` and returns the two paths. Nothing here computes a measure: the
numbers come from :mod:`analysis.report` and its sweep (:mod:`analysis.report.sweep`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from analysis import plot_style as ps
from analysis.errors import AnalysisError

__all__ = [
    "plot_clipping_histogram",
    "plot_layer_bits",
    "plot_rate_fidelity",
    "plot_mse_alpha",
    "plot_bit_allocation",
    "plot_step_ratio",
]

_THRESHOLD_STYLE = {  # label -> (colour key, line style)
    "ACIQ": ("aciq", "-"),
    "KL": ("kl", "--"),
    "2σ": ("2sigma", "-."),
    "max": ("max", ":"),
    "ReLU6": ("nominal", (0, (1, 1))),
}


def plot_clipping_histogram(
    values: np.ndarray | None,
    thresholds: Mapping[str, float],
    out_dir: str | os.PathLike[str],
    *,
    histogram: tuple[np.ndarray, np.ndarray] | None = None,
    layer: str = "",
    xlabel: str | None = None,
    stem: str = "clipping_histogram",
    bins: int = 160,
) -> list[Path]:
    """Histogram (log count) of one layer's FP32 activations with clipping thresholds drawn over it.

    Pass raw ``values`` or a ready ``histogram=(counts, edges)``. ``thresholds``: label -> upper clipping
    value (same units as the values), e.g. ACIQ, KL, 2σ, max.
    """
    if histogram is not None:
        counts = np.asarray(histogram[0], dtype=np.float64)
        edges = np.asarray(histogram[1], dtype=np.float64)
        if counts.size + 1 != edges.size or counts.sum() <= 0:
            raise AnalysisError("histogram needs counts and one more edge than counts, with some counts")
        lo = float(edges[0])
    else:
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise AnalysisError("no finite values to draw a histogram of")
        hi = max([float(v.max())] + [float(t) for t in thresholds.values() if np.isfinite(t)])
        lo = min(float(v.min()), 0.0)
        counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    with ps.style():
        fig, ax = ps.figure(2.2)
        ax.stairs(np.maximum(counts, 0.8), edges, fill=True, color=ps.COLORS["nominal"], baseline=0.8, label="values")
        ax.set_yscale("log")
        ax.set_ylim(0.8, counts.max() * 3)
        for i, (label, t) in enumerate(thresholds.items()):
            key, ls = _THRESHOLD_STYLE.get(label, (None, "-"))
            color = ps.COLORS.get(key, ps.CYCLE[i % len(ps.CYCLE)]) if key else ps.CYCLE[i % len(ps.CYCLE)]
            if label == "ReLU6":
                color = "#555555"
            ax.axvline(float(t), color=color, linestyle=ls, linewidth=1.2, label=f"{label} = {float(t):.3g}")
        ax.set_xlabel(xlabel or ("activation value (FP32, after fused ReLU)" if lo >= 0 else "activation value (FP32)"))
        ax.set_ylabel("count (log scale)")
        ax.grid(axis="x", visible=False)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncols=3, columnspacing=0.9,
                   title=f"layer {layer}" if layer else None, title_fontsize=7)
        return ps.save(fig, out_dir, stem)


def plot_layer_bits(
    layers: Sequence[Mapping[str, object]],
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "layer_bits",
) -> list[Path]:
    """Per-layer bars: nominal vs pooled entropy vs Huffman average code length vs bits in the file.

    ``layers``: dicts with ``kind`` ("activations"/"weights"), ``nominal_bits``, ``entropy_bits``,
    ``avg_code_length`` and ``file_bits_per_value`` (bits per value), in network order.
    """
    kinds = [k for k in ("activations", "weights") if any(r.get("kind") == k for r in layers)]
    if not kinds:
        raise AnalysisError("no layer rows to plot")
    with ps.style():
        fig, axes = ps.figure(1.45 * len(kinds) + 0.45, nrows=len(kinds), squeeze=False, sharex=False)
        for ax, kind in zip(axes[:, 0], kinds):
            rows = [r for r in layers if r.get("kind") == kind]
            x = np.arange(1, len(rows) + 1)
            get = lambda key: np.array([float(r[key]) for r in rows])  # noqa: E731
            ax.bar(x, get("nominal_bits"), width=0.9, color=ps.COLORS["nominal"], label="nominal")
            ax.bar(x, get("entropy_bits"), width=0.5, color=ps.COLORS["entropy"], label="entropy (pooled)")
            ax.plot(x, get("avg_code_length"), linestyle="none", marker="_", markersize=5, markeredgewidth=1.4,
                    color=ps.COLORS["huffman"], label="Huffman avg. length")
            ax.plot(x, get("file_bits_per_value"), linestyle="none", marker="o", markersize=2.2,
                    color=ps.COLORS["file"], label="file (all side info)")
            ax.set_ylabel(f"{kind}\nbits per value")
            ax.set_xlim(0.3, len(rows) + 0.7)
            top = max(float(get("nominal_bits").max()), float(get("file_bits_per_value").max()))
            ax.set_ylim(0, top * 1.12 + 0.1)
            ax.grid(axis="x", visible=False)
            ax.xaxis.set_major_locator(_int_locator(len(rows)))
        axes[-1, 0].set_xlabel("layer index (network order)")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        wanted = ("nominal", "entropy (pooled)", "Huffman avg. length", "file (all side info)")
        order = [labels.index(k) for k in wanted]
        fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside upper center", ncols=2)
        return ps.save(fig, out_dir, stem)


def _int_locator(n: int):
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=min(n, 10), integer=True, min_n_ticks=1)


def pareto_front(rate: Sequence[float], fidelity: Sequence[float]) -> np.ndarray:
    """Boolean mask of points no other point beats (lower or equal rate and higher or equal fidelity, one strictly)."""
    r = np.asarray(rate, dtype=np.float64)
    f = np.asarray(fidelity, dtype=np.float64)
    n = r.size
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        better = (r <= r[i]) & (f >= f[i]) & ((r < r[i]) | (f > f[i]))
        if better.any():
            mask[i] = False
    return mask


def plot_rate_fidelity(
    points: Sequence[Mapping[str, object]],
    out_dir: str | os.PathLike[str],
    *,
    x: str = "coded_bits_per_value",
    y: str = "top1_agreement",
    color_by: str = "clip",
    interval: tuple[str, str] | None = None,
    xlabel: str = "coded bits per value (weights + activations)",
    ylabel: str = "top-1 agreement with FP32 (%)",
    stem: str = "rate_fidelity",
) -> list[Path]:
    """Rate-fidelity scatter, one colour per ``color_by`` value, Pareto front as a black step line.

    Each point is a dict with ``x``, ``y`` (fractions in [0, 1] are shown in %), ``color_by`` and
    optionally ``pareto`` (bool; computed here when absent). ``interval``: the keys of each point's lower and
    upper bound of ``y`` (e.g. its 95% Wilson interval), drawn as a vertical whisker where both are present.
    """
    if not points:
        raise AnalysisError("no sweep points to plot")
    xs = np.array([float(p[x]) for p in points])
    ys = np.array([float(p[y]) for p in points])
    scale = 100.0 if ys.max() <= 1.0 else 1.0
    ys = ys * scale
    lo = hi = None
    if interval is not None:
        def bound(key: str) -> np.ndarray:
            return np.array([np.nan if p.get(key) is None else float(p[key]) for p in points]) * scale

        lo, hi = bound(interval[0]), bound(interval[1])
    if all("pareto" in p for p in points):
        front = np.array([bool(p["pareto"]) for p in points])
    else:
        front = pareto_front(xs, ys)
    groups = list(dict.fromkeys(str(p.get(color_by, "")) for p in points))
    with ps.style():
        fig, ax = ps.figure(2.6)
        for i, g in enumerate(groups):
            sel = np.array([str(p.get(color_by, "")) == g for p in points])
            color = ps.COLORS.get(g, ps.CYCLE[i % len(ps.CYCLE)])
            if lo is not None and hi is not None:
                ok = sel & np.isfinite(lo) & np.isfinite(hi)
                if ok.any():
                    ax.errorbar(xs[ok], ys[ok], yerr=np.vstack([ys[ok] - lo[ok], hi[ok] - ys[ok]]),
                                fmt="none", ecolor=color, elinewidth=0.5, capsize=1.2, capthick=0.5, alpha=0.55,
                                zorder=2.5)
            ax.scatter(xs[sel], ys[sel], s=11, marker=ps.MARKERS[i % len(ps.MARKERS)], color=color,
                       label=g, linewidths=0, alpha=0.9, zorder=3)
        order = np.argsort(xs[front])
        fx, fy = xs[front][order], ys[front][order]
        ax.step(fx, fy, where="post", color=ps.COLORS["pareto"], linewidth=0.9, zorder=2, label="Pareto front")
        ax.scatter(fx, fy, s=24, facecolors="none", edgecolors=ps.COLORS["pareto"], linewidths=0.7, zorder=4)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if scale == 100.0:
            ax.set_ylim(-2, 102)
        handles, labels = ax.get_legend_handles_labels()
        if lo is not None:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], color="#555555", linewidth=0.6, marker="_", markersize=4))
            labels.append("95% interval")
        fig.legend(handles, labels, loc="outside upper center", ncols=3, columnspacing=0.9)
        return ps.save(fig, out_dir, stem)


def plot_mse_alpha(
    curves: Sequence[Mapping[str, object]],
    out_dir: str | os.PathLike[str],
    *,
    stem: str = "mse_alpha",
    scale_label: str = "b",
) -> list[Path]:
    """Clipping MSE against α: analytical curves (lines) and simulation (markers), one per bit width.

    Each curve: ``bits``, ``alpha`` (array, in units of the Laplace scale b), ``analytical``, ``simulated``
    (arrays of MSE per value, in b² units) and optionally ``alpha_opt``.
    """
    with ps.style():
        fig, ax = ps.figure(2.3)
        for i, c in enumerate(curves):
            color = ps.CYCLE[i % len(ps.CYCLE)]
            a = np.asarray(c["alpha"], dtype=np.float64)
            ax.plot(a, np.asarray(c["analytical"]), color=color, label=f"{c['bits']} bit")
            ax.plot(a, np.asarray(c["simulated"]), linestyle="none", marker=ps.MARKERS[i % len(ps.MARKERS)],
                    markersize=2.5, color=color)
            if c.get("alpha_opt") is not None:
                ax.axvline(float(c["alpha_opt"]), color=color, linewidth=0.7, linestyle=":")
        ax.set_yscale("log")
        ax.set_xlabel(f"clipping value α (units of the Laplace scale {scale_label})")
        ax.set_ylabel(f"MSE per value ({scale_label}²)")
        from matplotlib.lines import Line2D

        handles, labels = ax.get_legend_handles_labels()
        handles += [Line2D([], [], color="black"), Line2D([], [], color="black", marker="o", linestyle="none",
                                                          markersize=2.5)]
        labels += ["analytical (eq. 5)", "simulated"]
        fig.legend(handles, labels, loc="outside upper center", ncols=3, columnspacing=0.9)
        return ps.save(fig, out_dir, stem)


def plot_bit_allocation(
    bits: Mapping[str, Sequence[float]],
    out_dir: str | os.PathLike[str],
    *,
    label: str | None = None,
    stem: str = "bit_allocation",
) -> list[Path]:
    """Histograms of per-channel bit widths after allocation, one panel per tensor kind.

    ``bits``: kind ("activations", "weights") -> every channel's allocated bits (may be fractional); ``label``:
    whose allocation it is (e.g. "paper recipe"), in the panel titles.
    """
    kinds = [k for k, v in bits.items() if len(v)]
    if not kinds:
        raise AnalysisError("no per-channel bit widths to plot")
    with ps.style():
        fig, axes = ps.figure(1.9, ncols=len(kinds), squeeze=False, sharey=False)
        for ax, kind in zip(axes[0], kinds):
            b = np.asarray(bits[kind], dtype=np.float64)
            integral = np.allclose(b, np.round(b))
            if integral:
                edges = np.arange(np.floor(b.min()) - 0.5, np.ceil(b.max()) + 1.0, 1.0)
            else:
                edges = np.linspace(b.min(), b.max() + 1e-9, 21)
            ax.hist(b, bins=edges, color=ps.COLORS.get(kind, ps.CYCLE[0]), rwidth=0.85 if integral else 1.0)
            mean = float(b.mean())
            ax.axvline(mean, color="black", linewidth=0.8, linestyle="--")
            ax.set_title(f"{kind}: mean {mean:.2f} bits", fontsize=7)
            ax.set_xlabel("bits per channel")
            ax.grid(axis="x", visible=False)
            if integral:
                from matplotlib.ticker import MaxNLocator

                # an integer tick either side of a lone bar (none below 0 bits)
                ax.set_xlim(max(edges[0] - 0.5, -0.5), edges[-1] + 0.5)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0, 0].set_ylabel("channels")
        if label:
            fig.suptitle(label, fontsize=8)
        return ps.save(fig, out_dir, stem)


def plot_step_ratio(
    rho: Sequence[float],
    out_dir: str | os.PathLike[str],
    *,
    groups: Sequence[str] | None = None,
    band: tuple[float, float] | None = (0.81, 0.86),
    stem: str = "step_ratio",
) -> list[Path]:
    """ρ = Δ_ACIQ / Δ_KL per layer (network order) on a log axis, one colour and one mean line per group
    (e.g. layers with and without a fused activation), and the rebuttal's reported range as a band."""
    r = np.asarray(rho, dtype=np.float64)
    if r.size == 0:
        raise AnalysisError("no step ratios to plot")
    g = list(groups) if groups is not None else ["per layer"] * r.size
    if len(g) != r.size:
        raise AnalysisError(f"{len(g)} group labels for {r.size} step ratios")
    x = np.arange(1, r.size + 1)
    ok = np.isfinite(r) & (r > 0)
    with ps.style():
        fig, ax = ps.figure(2.2)
        if band is not None:
            ax.axhspan(band[0], band[1], color=ps.OKABE_ITO["yellow"], alpha=0.6, linewidth=0,
                       label=f"rebuttal {band[0]:.2f}–{band[1]:.2f}")
        for i, name in enumerate(dict.fromkeys(g)):
            sel = np.array([gi == name for gi in g]) & ok
            color = [ps.OKABE_ITO["blue"], ps.OKABE_ITO["orange"], ps.OKABE_ITO["green"]][i % 3]
            ax.bar(x[sel], r[sel], width=0.7, color=color, label=name)
            if sel.any():
                mean = float(np.mean(r[sel]))
                ax.axhline(mean, color=color, linestyle="--", linewidth=0.9, label=f"mean {mean:.2f}")
        ax.set_yscale("log")
        ax.set_xlabel("layer index (network order)")
        ax.set_ylabel("ρ = Δ$_{ACIQ}$ / Δ$_{KL}$ (log scale)")
        ax.set_xlim(0.3, r.size + 0.7)
        if ok.any():
            ax.set_ylim(min(0.5, float(r[ok].min()) * 0.8), max(2.0, float(r[ok].max()) * 1.5))
        ax.grid(axis="x", visible=False)
        ax.xaxis.set_major_locator(_int_locator(r.size))
        fig.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncols=3, columnspacing=0.8)
        return ps.save(fig, out_dir, stem)
