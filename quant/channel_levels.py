"""Level counts of a tensor's channels: ``2**bits`` for all, or per channel from bit or bin allocation."""

from __future__ import annotations

from typing import Any

import torch

from quant.allocation import allocate_bins, allocate_bits
from quant.config import QuantConfig

__all__ = ["channel_levels"]


def channel_levels(bits: float, alloc: str | None, stat: torch.Tensor | None, cfg: QuantConfig, *,
                   varies: torch.Tensor | None = None) -> Any:
    """Level count(s) for a mean target of ``bits``: the int ``round(2**bits)``, or per-channel counts (int64 (C,))
    from bit allocation (eq. 11, ``alloc="bits"``) or bin allocation (eq. 10, ``alloc="bins"``) on the per-channel
    statistic ``stat`` (C,), within ``cfg.alloc_min_bits``..``cfg.alloc_max_bits``. ``varies`` (bool (C,)) marks the
    channels that must keep at least 2 levels (1 bit): only the others may become constant."""
    if alloc is None or stat is None or (alloc == "bits" and float(bits) >= cfg.alloc_max_bits):
        # (a target at the cap leaves nothing to move: every channel gets the cap)
        return int(round(2.0 ** float(bits)))
    lowest = cfg.alloc_min_bits
    floor: Any = lowest if varies is None else torch.where(varies.cpu(), max(lowest, 1), lowest)
    if alloc == "bits":
        b = allocate_bits(stat, float(bits), min_bits=floor, max_bits=cfg.alloc_max_bits)
        return torch.pow(2, torch.as_tensor(b).to(torch.int64))
    levels = allocate_bins(stat, float(bits), min_levels=torch.pow(2, torch.as_tensor(floor)),
                           max_levels=2**cfg.alloc_max_bits)
    return torch.as_tensor(levels).to(torch.int64)
