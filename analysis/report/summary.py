"""Whole-model figures of the report: element-weighted averages over tensors (totals of bits over totals of values)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from analysis.report.tensors import KINDS

__all__ = ["summarize"]


def _wavg(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    vals = [(r[key], r["n_values"]) for r in rows if r.get(key) is not None]
    if not vals:
        return None
    n = sum(w for _, w in vals)
    return float(sum(v * w for v, w in vals) / n) if n else None


def summarize(rows: Sequence[Mapping[str, Any]], files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Element-weighted whole-model figures per kind (``summary.activations``/``summary.weights``)."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        n = sum(r["n_values"] for r in rs)
        s: dict[str, Any] = {"n_layers": len(rs), "n_values": n}
        for key in ("nominal_bits", "entropy_bits", "channel_entropy_bits", "avg_code_length",
                    "acl_single", "bpv_single", "zstd_bits_per_value", "pack_widest_bpv", "pack_dense_bpv",
                    "pack_huffman_layer_bpv", "pack_huffman_bitwidth_bpv"):
            s[key] = _wavg(rs, key)
        if all(r.get("coded_bits") is not None for r in rs):
            s["coded_bits_per_value"] = sum(r["coded_bits"] for r in rs) / n
        else:  # closed form only (no file written)
            s["coded_bits_per_value"] = sum(r["closed_form_bits"] for r in rs) / n
        s["closed_form_bits_per_value"] = sum(r["closed_form_bits"] for r in rs) / n
        if files and kind in files:
            # the whole file counts: its preamble and file-level strings too
            s["layers_coded_bits_per_value"] = s["coded_bits_per_value"]
            s["coded_bits_per_value"] = files[kind]["coded_bits_per_value"]
            s["file_bits_per_value"] = files[kind]["file_bits_per_value"]
            s["file_bytes"] = files[kind]["file_bytes"]
        coded = s["coded_bits_per_value"]
        s["ratio_to_entropy"] = coded / s["entropy_bits"] if s["entropy_bits"] else None
        s["ratio_to_channel_entropy"] = coded / s["channel_entropy_bits"] if s["channel_entropy_bits"] else None
        s["reduction_vs_nominal"] = s["nominal_bits"] / coded if coded else None
        s["reduction_vs_8bit"] = 8.0 / coded if coded else None
        s["bandwidth_saved_vs_nominal"] = 1.0 - coded / s["nominal_bits"] if s["nominal_bits"] else None
        s["bandwidth_saved_vs_8bit"] = 1.0 - coded / 8.0
        s["lossless"] = all(bool(r.get("lossless", False)) for r in rs)
        s["layouts"] = {c: sum(1 for r in rs if r["layout"] == c) for c in sorted({r["layout"] for r in rs})}
        sr = [r for r in rs if r.get("step_ratio") is not None and math.isfinite(r["step_ratio"])]
        if sr:
            s["step_ratio_mean"] = float(np.mean([r["step_ratio"] for r in sr]))
            plain = [r["step_ratio"] for r in sr if r.get("fused_activation", "none") == "none"]
            s["step_ratio_mean_no_activation"] = float(np.mean(plain)) if plain else None
        out[kind] = s
    if len(out) == 2:
        n = out["activations"]["n_values"] + out["weights"]["n_values"]
        tot = sum(out[k]["coded_bits_per_value"] * out[k]["n_values"] for k in KINDS)
        nom = sum(out[k]["nominal_bits"] * out[k]["n_values"] for k in KINDS)
        out["model"] = {"n_values": n, "coded_bits_per_value": tot / n, "nominal_bits": nom / n,
                        "reduction_vs_nominal": nom / tot if tot else None,
                        "reduction_vs_8bit": 8 * n / tot if tot else None}
    return out
