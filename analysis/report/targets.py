"""The targets the report checks, and their limits.

The coded bits per value of the main configuration, every bit of side information included, should be
at most 0.95 x the pooled (per-layer, reference-style) entropy for activations, whose channels differ
enough for per-channel codes to pay, and at most 1.02 x for weights. The whole report (with figures, without
the sweep) should take at most 2 x the time of an FP32 forward pass over the same images plus calibration (what
the recipes learn on the calibration images counts as calibration).
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["ACTIVATION_ENTROPY_RATIO", "WEIGHT_ENTROPY_RATIO", "TIME_RATIO", "report_targets", "time_ratio"]

ACTIVATION_ENTROPY_RATIO = 0.95  # activations: coded bits per value / pooled entropy
WEIGHT_ENTROPY_RATIO = 1.02  # weights: coded bits per value / pooled entropy
TIME_RATIO = 2.0  # report time (with figures, without the sweep) / (FP32 forward + calibration)


def time_ratio(timing: Mapping[str, Any], seconds: float) -> float | None:
    """``seconds`` over the baseline: the FP32 forward pass plus calibration (statistics and what the recipes
    learn), from ``timing``; None without a baseline."""
    base = sum(float(timing.get(k, 0.0)) for k in ("fp32_forward_s", "calibration_s", "learned_calibration_s"))
    return seconds / base if base > 0 else None


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
    ratio = timing.get("ratio_to_fp32_and_calibration")
    targets["time"] = {"description": "report time (with figures, without the sweep) / (FP32 forward + calibration)",
                       "value": ratio, "limit": TIME_RATIO, "met": ratio is not None and ratio <= TIME_RATIO}
    return targets
