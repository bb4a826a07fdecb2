"""Per-channel bit allocation (paper eq. 11) and bin (level-count) allocation (eq. 10).

Minimizing Σ_c α_c²/B_c² (quantization noise) subject to Σ_c B_c = B gives B_c ∝ α_c^{2/3} (eq. 10), and in
bits M_c = log2(B_c) (eq. 11). ``stat`` is the per-channel α_c, σ_c or b_c (any of them: under a fixed prior
they are proportional).

* :func:`allocate_bins` (eq. 10): integer level counts per channel (any integer, e.g. 39), at least
  ``min_levels`` (1 = a constant channel), with Σ levels == round(C·2^target) exactly.
* :func:`allocate_bits` (eq. 11): integer bits per channel in [min_bits, max_bits] with
  Σ bits == round(C·target) exactly.

Exact quotas ("exact" mode): the ideal real allocation is shifted (bits) or scaled (bins) by the one constant
that makes the clamped sum hit the quota (bisection), then each channel gets the floor of its ideal value and
the leftover units go, one each, to the channels with the largest fractional remainders (ties: lower channel
index first) that are still below the upper bound. The reference code's approximate scheme is ``mode="reference"``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from quant.errors import QuantError
from quant.quantizer import as_tensor

__all__ = ["allocate_bits", "allocate_bins", "allocation_weights"]

_POWER = 2.0 / 3.0


def allocation_weights(stat: Any, power: float = _POWER) -> torch.Tensor:
    """p_c = stat_c ** power (float64, CPU); raises QuantError on negative or non-finite input."""
    s = as_tensor(stat).detach().to(device="cpu", dtype=torch.float64).reshape(-1)
    if s.numel() == 0:
        raise QuantError("bit allocation needs at least one channel")
    if not torch.isfinite(s).all() or (s < 0).any():
        raise QuantError("bit allocation statistic must be finite and >= 0 per channel")
    return s**power


def _largest_remainder(real: torch.Tensor, quota: int, hi: torch.Tensor) -> torch.Tensor:
    """Floor ``real`` and add 1 to the channels with the largest remainders until the sum equals ``quota``."""
    base = torch.floor(real + 1e-12)
    base = torch.minimum(base, hi)
    left = quota - int(base.sum())
    if left < 0:
        raise QuantError("internal allocation error: floors exceed the quota")
    if left > 0:
        rem = torch.where(base < hi, real - base, torch.full_like(real, -math.inf))
        order = torch.argsort(-rem, stable=True)
        if int((base < hi).sum()) < left:
            raise QuantError("quota cannot be met within the bounds")
        base[order[:left]] += 1
    return base.to(torch.int64)


def _solve_shift(f, target: float, lo: float, hi: float) -> float:
    """Bisection for a monotone non-decreasing f(λ) = target."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return hi


def _floors(floor: Any, n: int, what: str) -> torch.Tensor:
    """A lower bound per channel (float64 (n,)) from an int or a per-channel sequence."""
    f = torch.as_tensor(floor, dtype=torch.float64).reshape(-1)
    if f.numel() == 1:
        f = f.expand(n).clone()
    if f.numel() != n or not bool(torch.isfinite(f).all()) or bool((f != torch.round(f)).any()):
        raise QuantError(f"{what} must be one integer or one per channel ({n}), got {floor!r}")
    return f


def allocate_bits(stat: Any, target_bits: float, *, min_bits: Any = 0, max_bits: int = 8, mode: str = "exact",
                  rounding: str = "round", power: float = _POWER) -> torch.Tensor:
    """Integer bits per channel from eq. 11 (int64 tensor, CPU).

    ``min_bits`` is one floor for every channel or one per channel (e.g. 0 for a constant channel, 1 for the others:
    no channel that varies is made constant); ``mode="reference"`` takes one floor only.

    ``mode="exact"``: Σ bits == round(C·target_bits); bits_c = clamp(log2 p_c + λ, min, max) with λ set so the
    real sum is the quota, then largest-remainder rounding. ``mode="reference"``: the reference code's loop —
    M_c = round (or ceil, ``rounding="ceil"``) of log2(C·2^t·p_c/Σp), clamped, with t nudged 10 times by half the
    gap between the target and the mean of M (stops at |gap| <= 0.01); the mean only approximates the target.
    """
    p = allocation_weights(stat, power)
    C = p.numel()
    floor = _floors(min_bits, C, "min_bits")
    lowest = float(floor.min())
    if not (0 <= lowest and float(floor.max()) <= max_bits <= 31):
        raise QuantError(f"need 0 <= min_bits <= max_bits <= 31, got [{min_bits}, {max_bits}]")
    t = float(target_bits)
    if not math.isfinite(t) or not (lowest <= t <= max_bits):
        raise QuantError(f"target {target_bits} bits outside [{lowest:g}, {max_bits}]")
    if mode == "reference":
        if float(floor.max()) != lowest:
            raise QuantError("the reference allocation takes one min_bits for every channel")
        min_bits = int(lowest)
        if rounding not in ("round", "ceil"):
            raise QuantError(f"rounding must be 'round' or 'ceil', got {rounding!r}")
        rnd = torch.round if rounding == "round" else torch.ceil
        tot = p.sum()
        cur = t
        M = torch.full((C,), float(min_bits), dtype=torch.float64)
        for _ in range(10):
            with torch.no_grad():
                bins = C * 2.0**cur * p / tot if tot > 0 else torch.full((C,), 2.0**cur, dtype=torch.float64)
                M = torch.clamp(rnd(torch.log2(bins)), min_bits, max_bits)
            gap = t - float(M.mean())
            if abs(gap) <= 0.01:
                break
            cur += gap / 2
        return M.to(torch.int64)
    if mode != "exact":
        raise QuantError(f"mode must be 'exact' or 'reference', got {mode!r}")
    quota = int(round(C * t))
    if quota < float(floor.sum()):
        raise QuantError(f"{quota} bits cannot give {C} channels their floors ({float(floor.sum()):g} bits)")
    if p.max() == 0:
        p = torch.ones_like(p)  # all channels constant: spread evenly
    logp = torch.log2(p)
    finite = logp[torch.isfinite(logp)]
    # A constant (zero-statistic) channel ranks below every other channel: it stays at its floor until all others
    # are at max_bits, and only then takes bits, so a quota near C·max_bits is still met exactly.
    logp = torch.where(torch.isfinite(logp), logp, finite.min() - float(max_bits - lowest) - 1.0)
    span_lo = float(lowest - logp.max()) - 1.0
    span_hi = float(max_bits - logp.min()) + 1.0
    top = torch.full_like(floor, float(max_bits))

    def real(lam: float) -> torch.Tensor:
        return torch.minimum(torch.maximum(logp + lam, floor), top)

    lam = _solve_shift(lambda v: float(real(v).sum()), float(quota), span_lo, span_hi)
    r = real(lam)
    return _largest_remainder(r, quota, top)


def allocate_bins(stat: Any, target_bits: float, *, min_levels: Any = 1, max_levels: int | None = None,
                  mode: str = "exact", power: float = _POWER) -> torch.Tensor:
    """Integer level counts per channel from eq. 10 (int64 tensor, CPU); average 2**target_bits may be fractional.

    ``mode="exact"``: Σ levels == round(C·2^target_bits), levels_c ∈ [min_levels, max_levels], proportional to
    p_c (scaled so the clamped real sum is the quota, then largest remainder). ``mode="reference"``: the
    reference code's ω_c = round(C·2^T·p_c/Σp) — no quota, may give 0 (which it treats as "zero the channel";
    here 0 is raised to ``min_levels``). ``min_levels``: one floor for every channel or one per channel.
    """
    t = float(target_bits)
    if not math.isfinite(t) or t < 0 or t > 31:
        raise QuantError(f"target bits must be in [0, 31], got {target_bits}")
    p = allocation_weights(stat, power)
    C = p.numel()
    floor = _floors(min_levels, C, "min_levels")
    if float(floor.min()) < 1:
        raise QuantError(f"min_levels must be >= 1, got {min_levels}")
    total = C * 2.0**t
    if mode == "reference":
        tot = p.sum()
        w = torch.round(total * p / tot) if tot > 0 else torch.full((C,), round(2.0**t), dtype=torch.float64)
        w = torch.maximum(w, floor)
        if max_levels is not None:
            w = torch.clamp(w, max=max_levels)
        return w.to(torch.int64)
    if mode != "exact":
        raise QuantError(f"mode must be 'exact' or 'reference', got {mode!r}")
    quota = int(round(total))
    mx = float(max_levels) if max_levels is not None else float(quota)
    if quota < float(floor.sum()) or quota > C * mx or float(floor.max()) > mx:
        raise QuantError(f"{quota} levels cannot be split over {C} channels within [{min_levels}, {mx:g}]")
    if p.max() == 0:
        p = torch.ones_like(p)
    top = torch.full_like(floor, mx)

    def real(s: float) -> torch.Tensor:
        return torch.minimum(torch.maximum(p * s, floor), top)

    s = _solve_shift(lambda v: float(real(v).sum()), float(quota), 0.0, quota / float(p[p > 0].min()) + 1.0)
    r = real(s)
    return _largest_remainder(r, quota, top)
