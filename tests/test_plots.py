"""Figures: every plot writes a valid PNG and a valid vector PDF; the Pareto front is right."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from analysis import plots
from analysis.errors import AnalysisError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def check_png_pdf(paths: list[Path]) -> None:
    """Assert that ``paths`` holds one readable PNG and one complete PDF with the same stem."""
    by_ext = {p.suffix: p for p in paths}
    assert set(by_ext) == {".png", ".pdf"} and by_ext[".png"].stem == by_ext[".pdf"].stem
    png = by_ext[".png"].read_bytes()
    assert png[:8] == PNG_SIGNATURE
    img = mpimg.imread(by_ext[".png"])
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 600  # 300 dpi at ~3.4 in
    pdf = by_ext[".pdf"].read_bytes()
    assert pdf.startswith(b"%PDF-")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert b"/Type /Page" in pdf or b"/Type/Page" in pdf


def test_every_plot_writes_png_and_pdf(tmp_path):
    rng = np.random.default_rng(0)
    v = np.maximum(rng.laplace(0.1, 0.5, 20_000), 0)
    check_png_pdf(plots.plot_clipping_histogram(v, {"ACIQ": 2.0, "KL": 1.5, "2σ": 1.1, "max": float(v.max())},
                                                tmp_path, layer="blocks.1.conv"))
    counts, edges = np.histogram(v, bins=50)
    check_png_pdf(plots.plot_clipping_histogram(None, {"ACIQ": 2.0}, tmp_path, histogram=(counts, edges),
                                                stem="hist2"))
    layers = [dict(kind=k, nominal_bits=4.0, entropy_bits=2.0 + 0.1 * i, avg_code_length=2.05 + 0.1 * i,
                   file_bits_per_value=2.0 + 0.1 * i) for k in ("activations", "weights") for i in range(12)]
    check_png_pdf(plots.plot_layer_bits(layers, tmp_path))
    pts = [dict(coded_bits_per_value=float(r), top1_agreement=float(a), clip=c)
           for r, a, c in zip(rng.uniform(1, 6, 20), rng.uniform(0, 1, 20), ["minmax", "kl"] * 10)]
    check_png_pdf(plots.plot_rate_fidelity(pts, tmp_path))
    a = np.linspace(1, 8, 30)
    curves = [dict(bits=b, alpha=a, analytical=np.exp(-a) + a**2 / 4**b, simulated=np.exp(-a) + a**2 / 4**b,
                   alpha_opt=3.0) for b in (2, 4)]
    check_png_pdf(plots.plot_mse_alpha(curves, tmp_path))
    check_png_pdf(plots.plot_bit_allocation({"activations": rng.integers(0, 9, 100), "weights": [4.0] * 10},
                                            tmp_path))
    check_png_pdf(plots.plot_step_ratio(rng.uniform(0.6, 1.0, 15), tmp_path))


def test_pareto_front_against_brute_force():
    rng = np.random.default_rng(1)
    r = rng.integers(0, 10, 60).astype(float)
    f = rng.integers(0, 10, 60).astype(float)
    mask = plots.pareto_front(r, f)
    for i in range(r.size):
        dominated = any((r[j] <= r[i] and f[j] >= f[i] and (r[j] < r[i] or f[j] > f[i])) for j in range(r.size))
        assert mask[i] == (not dominated)
    assert mask[np.argmin(r + 1e-3 * -f)]  # the cheapest point with the best fidelity at that rate is on the front


def test_plot_errors(tmp_path):
    with pytest.raises(AnalysisError):
        plots.plot_layer_bits([], tmp_path)
    with pytest.raises(AnalysisError):
        plots.plot_clipping_histogram(np.array([np.nan]), {}, tmp_path)
    with pytest.raises(AnalysisError):
        plots.plot_rate_fidelity([], tmp_path)


def test_rate_fidelity_draws_each_points_interval_as_a_whisker(tmp_path, monkeypatch):
    """Each point with both bounds gets a vertical segment from its lower to its upper bound (in %), at its rate;
    a point without bounds gets none."""
    from matplotlib.collections import LineCollection

    from analysis import plot_style

    figs = []
    real_save = plot_style.save
    monkeypatch.setattr(plot_style, "save", lambda fig, d, stem: (figs.append(fig), real_save(fig, d, stem))[1])
    pts = [dict(coded_bits_per_value=1.0 + i, top1_agreement=0.2 * i, lo=0.2 * i - 0.05, hi=0.2 * i + 0.1,
                clip="minmax" if i % 2 else "kl") for i in range(4)]
    pts.append(dict(coded_bits_per_value=6.0, top1_agreement=0.9, lo=None, hi=None, clip="kl"))
    check_png_pdf(plots.plot_rate_fidelity(pts, tmp_path, interval=("lo", "hi")))
    ax = figs[0].axes[0]
    segments = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    got = sorted((round(s[0][0], 9), round(min(s[:, 1]), 9), round(max(s[:, 1]), 9)) for s in segments)
    want = sorted((p["coded_bits_per_value"], round(100 * p["lo"], 9), round(100 * p["hi"], 9)) for p in pts[:4])
    assert got == want
