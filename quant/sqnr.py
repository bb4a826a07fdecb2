"""Signal-to-quantization-noise ratio in dB, from energies or from a tensor and its approximation."""

from __future__ import annotations

import math

import torch

__all__ = ["sqnr_db", "tensor_sqnr_db"]


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """10·log10(signal / noise) in dB (inf when there is no noise, -inf when there is no signal)."""
    if noise_energy <= 0.0:
        return math.inf
    if signal_energy <= 0.0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)


def tensor_sqnr_db(ref: torch.Tensor, approx: torch.Tensor) -> float:
    """SQNR of ``approx`` against ``ref`` in dB: Σ ref² / Σ (ref − approx)², summed in float64."""
    r = ref.detach().to(torch.float64)
    return sqnr_db(float(torch.sum(r * r)), float(torch.sum((r - approx.detach().to(torch.float64)) ** 2)))
