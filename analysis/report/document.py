"""The finished report as data: :class:`Report` and the columns of its tables.

A :class:`Report` holds numbers, rows and file facts and renders nothing itself: :mod:`analysis.report.writer`
turns it into summary.json, layers.csv and sweep.csv and writes the folder, :mod:`analysis.report.markdown` into
report.md and :mod:`analysis.report.drawing` into the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Report", "LAYER_COLUMNS", "SWEEP_COLUMNS", "HEADLINE_COLUMNS"]

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
    "coded_bits_per_value", "top1_agreement", "top1_agreement_ci_low", "top1_agreement_ci_high", "top5_overlap",
    "kl_divergence", "logit_sqnr_db", "top1", "top1_ci_low", "top1_ci_high", "top5", "pareto",
    "images", "rate_images",
)

#: Keys of a headline row (``summary.json``'s ``headline``; the first table of report.md).
HEADLINE_COLUMNS = (
    "recipe", "main", "settings", "act_coded_bits_per_value", "weight_coded_bits_per_value",
    "coded_bits_per_value", "top1_agreement", "top1_agreement_ci", "logit_sqnr_db", "top1", "top1_ci",
    "images", "rate_images",
)


@dataclass
class Report:
    """A finished report (:func:`analysis.report.report`); render it with :func:`analysis.report.write_report`,
    :func:`~analysis.report.to_json`, :func:`~analysis.report.to_csv` and :func:`~analysis.report.to_markdown`.

    ``headline``: per recipe, coded bits per value next to fidelity (:data:`HEADLINE_COLUMNS`); ``configs``: the
    same runs in full; ``figures``: the data behind the figures (not serialized). File paths are kept as
    :class:`pathlib.Path` and named portably when rendered (:mod:`analysis.report.paths`).
    """

    header: dict
    summary: dict
    layers: list[dict]
    headline: list[dict] = field(default_factory=list)
    configs: list[dict] = field(default_factory=list)
    packing: list[dict] = field(default_factory=list)
    sweep: list[dict] | None = None
    targets: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict, repr=False)
