"""One figure style for every plot of the package: single-column paper width, 8 pt type, Okabe-Ito colours.

Use :func:`figure` to make a figure and :func:`save` to write it as PNG (300 dpi) and vector PDF
(TrueType fonts embedded, so the PDF's text stays editable and prints at any size).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import matplotlib

matplotlib.use("Agg", force=False)  # files only; never opens a window
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["COLUMN_WIDTH", "OKABE_ITO", "COLORS", "MARKERS", "style", "figure", "save"]

#: Single-column width of a two-column paper (inches).
COLUMN_WIDTH = 3.4

#: Okabe & Ito (2008) colour-blind-safe palette.
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}

#: Fixed colour per quantity, the same in every figure.
COLORS = {
    "nominal": "#BBBBBB",
    "entropy": OKABE_ITO["sky"],
    "channel_entropy": OKABE_ITO["green"],
    "huffman": OKABE_ITO["blue"],
    "file": OKABE_ITO["vermillion"],
    "zstd": OKABE_ITO["purple"],
    "aciq": OKABE_ITO["blue"],
    "aciq-laplace": OKABE_ITO["blue"],
    "aciq-gauss": OKABE_ITO["sky"],
    "kl": OKABE_ITO["vermillion"],
    "2sigma": OKABE_ITO["green"],
    "minmax": OKABE_ITO["black"],
    "max": OKABE_ITO["black"],
    "mse": OKABE_ITO["orange"],
    "percentile": OKABE_ITO["purple"],
    "activations": OKABE_ITO["blue"],
    "weights": OKABE_ITO["orange"],
    "pareto": OKABE_ITO["black"],
}
CYCLE = [OKABE_ITO[k] for k in ("blue", "orange", "green", "vermillion", "purple", "sky", "yellow", "black")]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]

_RC = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.5,
    "legend.borderaxespad": 0.3,
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.35,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 2.5,
    "ytick.major.size": 2.5,
    "lines.linewidth": 1.1,
    "lines.markersize": 3.5,
    "patch.linewidth": 0.0,
    "savefig.dpi": 300,
    "figure.dpi": 150,
    "pdf.fonttype": 42,
    "ps.fonttype": 42,
    "svg.fonttype": "none",
    "axes.prop_cycle": matplotlib.cycler(color=CYCLE),
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.h_pad": 0.02,
    "figure.constrained_layout.w_pad": 0.02,
}


@contextmanager
def style() -> Iterator[None]:
    """Temporarily apply the package's rcParams."""
    with plt.rc_context(_RC):
        yield


def figure(height: float = 2.3, width: float = COLUMN_WIDTH, **kw):
    """A new figure (inches) in the package style; call inside :func:`style`."""
    return plt.subplots(figsize=(width, height), **kw)


def save(fig, directory: str | os.PathLike[str], stem: str) -> list[Path]:
    """Write ``stem.png`` (300 dpi) and ``stem.pdf`` (vector) into ``directory``; closes the figure."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    # the PDF backend's font subsetter logs every glyph at INFO level; keep the CLI's log readable
    ft = logging.getLogger("fontTools")
    level = ft.level
    ft.setLevel(max(level, logging.WARNING))
    try:
        for ext in ("png", "pdf"):
            p = d / f"{stem}.{ext}"
            fig.savefig(p, metadata={"Creator": "huffquant"} if ext == "pdf" else None)
            paths.append(p)
    finally:
        ft.setLevel(level)
        plt.close(fig)
    return paths
