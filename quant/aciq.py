"""ACIQ analytical clipping (Banner et al. 2019, eqs. 5-6): the MSE model and its numerically solved optimum.

The model of the mean squared error of clipping a distribution to a range of ``levels`` uniform codes:

* two-sided, range [-α, α], step Δ = 2α/L:
  ``E(α) = 2·T(α) + Δ²/12``  with Δ²/12 = α²/(3L²)  (= α²/(3·4^M) for L = 2^M, eq. 5);
* one-sided (fused ReLU), range [0, α], step Δ = α/L; the negative half maps exactly to 0, so only one tail is
  clipped and only half of the mass is rounded:  ``E₁(α) = T(α) + ½·Δ²/12 = T(α) + α²/(24L²)``;
* clipping tails: Laplace(b) ``T(α) = b²·e^{-α/b}``; Gauss(σ)
  ``T(α) = ½[(σ²+α²)·erfc(α/(σ√2)) − √(2/π)·α·σ·e^{−α²/(2σ²)}]``.

``E₁(α; L) = E(α; 2L) / 2``, so the one-sided optimum at M bits equals the two-sided optimum at M+1 bits — a
consequence of the formulas, not a table lookup. The optimum solves dE/dα = 0 (eq. 6 for Laplace) by bracketing
root finding on the derivative; L may be any real > 0 (fractional bits: L = 2**bits).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.special import erfc

from quant.errors import QuantError

__all__ = ["DISTRIBUTIONS", "alpha_multiplier", "alpha_multipliers", "laplace_mse", "gauss_mse", "aciq_mse", "aciq_table"]

DISTRIBUTIONS = ("laplace", "gauss")

_SQRT2 = math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _check_levels(levels: float) -> float:
    lv = float(levels)
    if not math.isfinite(lv) or lv <= 0:
        raise QuantError(f"levels must be a finite number > 0, got {levels!r}")
    return lv


def _check_dist(distribution: str) -> str:
    d = distribution.lower()
    if d in ("gaussian", "normal", "gaus"):
        d = "gauss"
    if d not in DISTRIBUTIONS:
        raise QuantError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")
    return d


def _tail(alpha: np.ndarray, scale: np.ndarray, dist: str) -> np.ndarray:
    """Clipping MSE of one tail beyond α (values², per element of the whole distribution)."""
    if dist == "laplace":
        return scale**2 * np.exp(-alpha / scale)
    r = alpha / scale
    return 0.5 * ((scale**2 + alpha**2) * erfc(r / _SQRT2) - _SQRT_2_OVER_PI * alpha * scale * np.exp(-0.5 * r**2))


def aciq_mse(alpha: Any, scale: Any, levels: Any, distribution: str = "laplace", *, one_sided: bool = False) -> np.ndarray:
    """Analytical MSE (values²) of clipping to α and rounding to ``levels`` codes; ``scale`` is b or σ."""
    dist = _check_dist(distribution)
    a = np.asarray(alpha, dtype=np.float64)
    s = np.asarray(scale, dtype=np.float64)
    L = np.asarray(levels, dtype=np.float64)
    if np.any(L <= 0):
        raise QuantError("levels must be > 0")
    if one_sided:
        return _tail(a, s, dist) + a**2 / (24.0 * L**2)
    return 2.0 * _tail(a, s, dist) + a**2 / (3.0 * L**2)


def laplace_mse(alpha: Any, b: Any, levels: Any, *, one_sided: bool = False) -> np.ndarray:
    """Eq. 5: ``2b²e^{-α/b} + α²/(3L²)`` (two-sided) or ``b²e^{-α/b} + α²/(24L²)`` (one-sided), values²."""
    return aciq_mse(alpha, b, levels, "laplace", one_sided=one_sided)


def gauss_mse(alpha: Any, sigma: Any, levels: Any, *, one_sided: bool = False) -> np.ndarray:
    """Gaussian counterpart of eq. 5 (two-sided or one-sided), values²."""
    return aciq_mse(alpha, sigma, levels, "gauss", one_sided=one_sided)


def _dmse(alpha: float, L: float, dist: str, one_sided: bool) -> float:
    """dE/dα for unit scale (b = 1 or σ = 1)."""
    if dist == "laplace":
        dtail = -math.exp(-alpha)
    else:  # dT/dα = α·erfc(α/√2) − √(2/π)·e^{−α²/2}, from T above
        dtail = alpha * math.erfc(alpha / _SQRT2) - _SQRT_2_OVER_PI * math.exp(-0.5 * alpha * alpha)
    if one_sided:
        return dtail + alpha / (12.0 * L * L)
    return 2.0 * dtail + 2.0 * alpha / (3.0 * L * L)


@lru_cache(maxsize=4096)
def _solve(L: float, dist: str, one_sided: bool) -> float:
    lo, hi = 1e-9, 4.0
    while _dmse(hi, L, dist, one_sided) < 0:  # expand the bracket (α grows ~ log L)
        hi *= 2.0
        if hi > 1e6:
            raise QuantError(f"no ACIQ optimum found for levels={L}")
    return float(brentq(_dmse, lo, hi, args=(L, dist, one_sided), xtol=1e-14, rtol=1e-14, maxiter=500))


def alpha_multiplier(levels: float, distribution: str = "laplace", one_sided: bool = False) -> float:
    """Optimal clipping α/b (Laplace) or α/σ (Gauss) for ``levels`` codes (any real > 0; bits M -> 2**M).

    Solved numerically from the MSE model (module docstring); e.g. Laplace 16 levels -> 5.0286.
    """
    return _solve(_check_levels(levels), _check_dist(distribution), bool(one_sided))


def alpha_multipliers(levels: Any, distribution: str = "laplace", one_sided: bool = False) -> np.ndarray:
    """:func:`alpha_multiplier` for an array of level counts (solved once per distinct value)."""
    L = np.asarray(levels, dtype=np.float64)
    flat = L.reshape(-1)
    uniq, inv = np.unique(flat, return_inverse=True)
    vals = np.array([alpha_multiplier(float(u), distribution, one_sided) for u in uniq], dtype=np.float64)
    return vals[inv].reshape(L.shape)


def aciq_table(bits: Any = (1, 2, 3, 4, 5, 6, 7, 8), levels: Any = ()) -> list[dict[str, float | int]]:
    """Rows ``{"bits", "levels", "laplace", "gauss", "laplace_one_sided", "gauss_one_sided"}`` (4 decimals).

    One row per bit width (levels = 2**bits) then one per level count (bits = log2(levels)); integer-valued
    bits/levels are reported as ints.
    """
    pairs = [(float(b), 2.0 ** float(b)) for b in bits] + [(math.log2(float(v)), float(v)) for v in levels]
    rows = []
    for b, L in pairs:
        rows.append({
            "bits": int(b) if float(b).is_integer() else round(b, 6),
            "levels": int(L) if float(L).is_integer() else round(L, 6),
            "laplace": round(alpha_multiplier(L, "laplace"), 4),
            "gauss": round(alpha_multiplier(L, "gauss"), 4),
            "laplace_one_sided": round(alpha_multiplier(L, "laplace", True), 4),
            "gauss_one_sided": round(alpha_multiplier(L, "gauss", True), 4),
        })
    return rows
