"""The targets the report checks, and their limits.

The coded bits per value of the main configuration, every bit of side information included, should be
at most 0.95 x the pooled (per-layer, reference-style) entropy for activations, whose channels differ
enough for per-channel codes to pay, and at most 1.02 x for weights. The whole report (with figures)
should take at most 4 x the time of an FP32 forward pass plus calibration over the same images.
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["ACTIVATION_ENTROPY_RATIO", "WEIGHT_ENTROPY_RATIO", "TIME_RATIO", "report_targets"]

ACTIVATION_ENTROPY_RATIO = 0.95  # activations: coded bits per value / pooled entropy
WEIGHT_ENTROPY_RATIO = 1.02  # weights: coded bits per value / pooled entropy
TIME_RATIO = 4.0  # report time (with figures) / (FP32 forward + calibration)


def report_targets(summary: Mapping[str, Any], timing: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {description, value, limit, met}}`` for the activations, weights and time targets."""
    targets = {}
    if "activations" in summary:
        v = summary["activations"]["ratio_to_entropy"]
        targets["activations"] = {"description": "activations: coded bpv / pooled entropy", "value": v,
                                  "limit": ACTIVATION_ENTROPY_RATIO,
                                  "met": v is not None and v <= ACTIVATION_ENTROPY_RATIO}
    if "weights" in summary:
        v = summary["weights"]["ratio_to_entropy"]
        targets["weights"] = {"description": "weights: coded bpv / pooled entropy", "value": v,
                              "limit": WEIGHT_ENTROPY_RATIO, "met": v is not None and v <= WEIGHT_ENTROPY_RATIO}
    ratio = timing["ratio_to_fp32_and_calibration"]
    targets["time"] = {"description": "report time (with figures) / (FP32 forward + calibration)",
                       "value": ratio, "limit": TIME_RATIO, "met": ratio is not None and ratio <= TIME_RATIO}
    return targets
