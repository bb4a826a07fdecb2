"""The data behind the report's figures: from the calibration statistics, the coded tensors and the ACIQ model.

:mod:`analysis.report.drawing` draws them.
"""

from __future__ import annotations

import logging
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from analysis.errors import AnalysisError
from analysis.report.tensors import KINDS, TensorResult

__all__ = ["figure_data", "histogram_data", "mse_alpha_curves", "channel_bits"]

log = logging.getLogger(__name__)


def figure_data(results: Sequence[TensorResult], qmodel: Any, stats: Any, *, hist_layer: str | None,
                abits: float) -> dict[str, Any]:
    """The data behind the figures: the clipping histogram of ``hist_layer`` (default: the largest activation
    tensor outside the first layer and the classifier), the MSE-vs-α curves and the per-channel bit widths."""
    figures: dict[str, Any] = {}
    act_rows = [r.row for r in results if r.row["kind"] == "activations"]
    layer_info = {n: lq.info for n, lq in qmodel.layers.items()}
    hist_name = hist_layer
    if hist_name is None and act_rows:
        cands = [r for r in act_rows if not layer_info[r["layer"]].first and not layer_info[r["layer"]].classifier]
        hist_name = max(cands or act_rows, key=lambda r: r["n_values"])["layer"]
    if hist_name is not None:
        if hist_name not in layer_info:
            raise AnalysisError(
                f"--hist-layer {hist_name!r} is not a layer; layers: {', '.join(list(layer_info)[:8])}..."
            )
        bits = qmodel.layers[hist_name].act_bits or abits
        h = histogram_data(stats, layer_info[hist_name], hist_name, float(bits))
        if h is not None:
            figures["histogram"] = {"values": None, **h}
    figures["mse_curves"] = mse_alpha_curves()
    figures["channel_bits"] = channel_bits([(r.row["layer"], r.row["kind"], r.channel_bits) for r in results],
                                           layer_info)
    return figures


def channel_bits(tensors: Iterable[tuple[str, str, np.ndarray]], layer_info: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Per kind, the nominal bits of every channel (``(layer, kind, bits per channel)`` triples) of the layers
    at the network's bit width: the first layer and the classifier, which keep their own bits, left out."""
    out: dict[str, np.ndarray] = {}
    for kind in KINDS:
        b = [bits for layer, k, bits in tensors
             if k == kind and not layer_info[layer].first and not layer_info[layer].classifier]
        if b:
            out[kind] = np.concatenate(b)
    return out


def histogram_data(stats: Any, info: Any, name: str, bits: float) -> dict | None:
    """Histogram of one layer's FP32 outputs (from the calibration statistics) and its clipping thresholds."""
    from quant.clipping import clip_range

    try:
        view = stats[name].tensor_view()
    except Exception as exc:  # noqa: BLE001
        log.debug("no histogram for %s: %s", name, exc)
        return None
    if view.hist is None:
        return None
    hist = view.hist.double().cpu().numpy()
    R = float(view.hist_range)
    B = hist.size // 2
    edges_full = np.linspace(-R, R, hist.size + 1)
    levels = 2.0 ** bits
    th = {}
    for label, method in (("ACIQ", "aciq-laplace"), ("KL", "kl"), ("2σ", "2sigma"), ("max", "minmax")):
        try:
            lo, hi = clip_range(stats[name], method, levels, signed=info.signed, per_channel=False)
            th[label] = float(hi)
        except Exception as exc:  # noqa: BLE001
            log.debug("threshold %s of %s not computed: %s", method, name, exc)
    if getattr(info, "activation", None) == "relu6":
        th["ReLU6"] = 6.0
    top = max([float(view.max)] + list(th.values())) * 1.04
    if not info.signed:
        counts, edges = hist[B:], edges_full[B:]
    else:
        counts, edges = hist, edges_full
    keep = edges[1:] <= top + (edges[1] - edges[0])
    counts, edges = counts[keep], edges[: keep.sum() + 1]
    # merge into about 150 bins for a readable figure
    f = max(1, counts.size // 150)
    m = counts.size // f * f
    counts = counts[:m].reshape(-1, f).sum(axis=1)
    edges = edges[: m + 1 : f]
    act = getattr(info, "activation", None)
    xlabel = (f"FP32 output before the fused {'ReLU6' if act == 'relu6' else 'ReLU'} (negatives at 0)"
              if not info.signed else "FP32 output")
    return {"layer": name, "histogram": (counts, edges), "thresholds": th, "xlabel": xlabel}


def mse_alpha_curves(bits: Sequence[int] = (2, 3, 4), *, n: int = 100_000, seed: int = 0) -> list[dict]:
    """Clipping MSE of a Laplace(0, b=1) variable against α: the analytical model (quant.aciq, eq. 5) and a
    Monte-Carlo simulation of the quantizer the model describes (clip to [-α, α], 2**bits equal bins of width
    2α/2**bits, values rounded to their bin centre) on ``n`` seeded samples. MSE in b² units."""
    from quant.aciq import alpha_multiplier, laplace_mse

    rng = np.random.default_rng(seed)
    x = rng.laplace(0.0, 1.0, n)
    a = np.linspace(0.5, 12.0, 47)
    out = []
    for m in bits:
        L = 2 ** int(m)
        sim = np.empty(a.size)
        for i, al in enumerate(a):
            step = 2.0 * al / L
            k = np.clip(np.floor((x + al) / step), 0, L - 1)
            sim[i] = float(np.mean((x - (-al + (k + 0.5) * step)) ** 2))
        out.append({"bits": int(m), "alpha": a, "analytical": laplace_mse(a, 1.0, L), "simulated": sim,
                    "alpha_opt": alpha_multiplier(L)})
    return out
