"""What the report measures on one integer tensor: its entropies and the exact sizes of the layouts it can be stored in.

The layouts and their sizes belong to :mod:`entropy`: :func:`entropy.layout_choices` sizes every layout of a
tensor (one code; one per channel; one per group of channels with the same bit width; K clusters of similar
channels; each stream in its best symbol mode) in closed form from per-channel symbol counts, and
:func:`entropy.save` / :func:`entropy.plan_file` pick the smallest the same way. This module only derives the
report's measures from them:

* the pooled entropy (order-0 Shannon entropy of the values over all channels, the reference code's measure) and
  the per-channel (conditional) entropy H(value | channel), in bits per value, from per-channel counts;
* per layout, the average code length (payload bits per value) and the bits per value of the tensor in a file
  without its metadata arrays (the quantization parameters, which every representation needs):
  ``8 * (LayoutChoice.total_bytes - metadata array bytes)``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from analysis.errors import AnalysisError
from entropy import (
    CLUSTER_COUNTS, EntropyError, LayoutChoice, TensorCounts, array_record_bytes, best_layout, channel_entropies,
    channel_payload_bits, layout_choices, metadata_arrays, shannon_entropy,
)
from entropy import tensor_counts as _tensor_counts

__all__ = [
    "CLUSTER_COUNTS",
    "COLUMN_LAYOUTS",
    "TensorCounts",
    "LayoutMeasures",
    "tensor_counts",
    "pooled_entropy",
    "channel_entropy",
    "measure_layouts",
    "stream_modes",
]

#: The layouts the report tabulates (acl_*/bpv_* columns); ``cluster`` is the best of the cluster counts tried.
COLUMN_LAYOUTS = ("single", "channel", "bitwidth", "cluster")


def tensor_counts(codes: np.ndarray, axis: int | None) -> TensorCounts:
    """Per-channel counts of integer ``codes`` along ``axis`` (None: one channel), from
    :func:`entropy.tensor_counts`; raises AnalysisError for input it cannot count."""
    try:
        return _tensor_counts(codes, axis)
    except EntropyError as exc:
        raise AnalysisError(str(exc)) from exc


def pooled_entropy(tc: TensorCounts) -> float:
    """Shannon entropy of the values pooled over all channels (bits per value), as the paper's code."""
    return shannon_entropy(tc.pooled())


def channel_entropy(tc: TensorCounts) -> float:
    """Conditional entropy H(value | channel) in bits per value: the bound for channel-aware codes."""
    return float(np.dot(channel_entropies(tc), tc.counts.sum(axis=1)) / max(tc.n_values, 1))


def stream_modes(choice: LayoutChoice) -> str:
    """The symbol modes of a layout's streams, e.g. ``"pairs:13;plain:3"`` (mode: number of streams)."""
    n = Counter(s.params.mode for s in choice.streams)
    return ";".join(f"{m}:{k}" for m, k in sorted(n.items()))


@dataclass(frozen=True)
class LayoutMeasures:
    """Every layout entropy sized for one tensor, the smallest (what :func:`entropy.save` writes), and the
    bytes of the tensor's metadata arrays (part of every layout's record). Sizes in bits unless named bytes."""

    choices: dict[str, LayoutChoice]
    best: LayoutChoice
    arrays: dict[str, np.ndarray]  # the tensor's metadata as the file stores it (entropy.metadata_arrays)
    arrays_bytes: int
    n_values: int

    def coded_bits(self, choice: LayoutChoice | None = None) -> int:
        """Bits of the tensor in a file with ``choice`` (default the best), metadata arrays excluded: payload,
        codebook records, chunk indexes, the tensor record (streams, map) and alignment padding."""
        c = self.best if choice is None else choice
        return 8 * (c.total_bytes - self.arrays_bytes)

    def bits_per_value(self, choice: LayoutChoice | None = None) -> float:
        return self.coded_bits(choice) / self.n_values if self.n_values else 0.0

    def parts(self) -> dict[str, int]:
        """The best layout's bits by part; they sum to :meth:`coded_bits`. ``record_bits`` holds the tensor record
        without its map and metadata arrays, the alignment padding and the payload's rounding to whole bytes."""
        c = self.best
        payload = c.payload_bits
        parts = {
            "payload_bits": payload,
            "codebook_bits": 8 * c.codebook_bytes,
            "index_bits": 8 * c.index_bytes,
            "map_bits": 8 * c.map_bytes,
        }
        parts["record_bits"] = self.coded_bits() - sum(parts.values())
        return parts

    def columns(self, tc: TensorCounts | None = None, max_code_length: int = 12) -> dict[str, float | None]:
        """``acl_<layout>`` (payload bits per value) and ``bpv_<layout>`` (:meth:`bits_per_value`) for
        :data:`COLUMN_LAYOUTS` (None where the layout was not sized). ``cluster`` is the smallest cluster count.
        With ``tc``, ``acl_channel`` of a channel layout the search skipped (it could not win) is its exact
        payload with one code per channel (singles)."""
        out: dict[str, float | None] = {}
        for col in COLUMN_LAYOUTS:
            cands = [c for n, c in self.choices.items() if n == col or (col == "cluster" and n.startswith("cluster"))]
            c = min(cands, key=lambda c: c.total_bytes) if cands else None
            out[f"acl_{col}"] = c.avg_code_length if c is not None else None
            out[f"bpv_{col}"] = self.bits_per_value(c) if c is not None else None
        if out["acl_channel"] is None and tc is not None and tc.n_channels > 1 and self.n_values:
            out["acl_channel"] = float(channel_payload_bits(tc, max_code_length).sum()) / self.n_values
        return out


def measure_layouts(
    codes: np.ndarray,
    axis: int | None,
    *,
    name: str,
    quant: Mapping[str, Any] | None = None,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    clusters: tuple[int, ...] = CLUSTER_COUNTS,
) -> LayoutMeasures:
    """Size every layout of ``codes`` with :func:`entropy.layout_choices` (arguments as :func:`entropy.save`;
    ``quant``: the tensor's quantization metadata, stored as :func:`entropy.metadata_arrays` converts it; its
    ``bits`` enables the bit-width layout) and pick the smallest, as ``entropy.save`` does. Raises AnalysisError
    when entropy cannot code the tensor or store its metadata."""
    try:
        arrays = metadata_arrays(name, quant, np.ndim(codes))
        choices = layout_choices(codes, name=name, axis=axis, arrays=arrays, max_code_length=max_code_length,
                                 chunk_size=chunk_size, clusters=clusters)
        best = best_layout(choices)
    except (EntropyError, ValueError) as exc:  # (layout_choices raises ValueError for an axis out of range)
        raise AnalysisError(f"{name}: {exc}") from exc
    arrays_bytes = sum(array_record_bytes(k, v) for k, v in arrays.items())
    return LayoutMeasures(choices=choices, best=best, arrays=arrays, arrays_bytes=arrays_bytes,
                          n_values=int(np.size(codes)))
