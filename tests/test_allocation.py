"""Bit allocation (eq. 11) and bin allocation (eq. 10): exact quotas, bounds, and the paper's synthetic test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quant.allocation import allocate_bins, allocate_bits
from quant.errors import QuantError
from quant.quantizer import quantize


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("target", [0.5, 2, 3.3, 4, 7.9])
def test_bits_quota_exact(seed, target):
    g = torch.Generator().manual_seed(seed)
    C = 1 + seed * 37
    s = torch.rand(C, generator=g) ** 3 * 10
    b = allocate_bits(s, target)
    assert b.dtype == torch.int64 and b.shape == (C,)
    assert int(b.sum()) == round(C * target)
    assert int(b.min()) >= 0 and int(b.max()) <= 8
    order = torch.argsort(s)
    assert torch.all(b[order][1:] >= b[order][:-1] - 1)  # larger statistic never gets 2+ bits less


def test_bits_follow_eq11_when_unclamped():
    s = torch.tensor([1.0, 8.0, 64.0])  # s^(2/3) = 1, 4, 16 -> bins ratio 1:4:16 -> bits differ by 2
    b = allocate_bits(s, 4)
    assert b.tolist() == [2, 4, 6]


def test_bits_bounds_and_zero_channels():
    b = allocate_bits(torch.tensor([0.0, 1.0, 1.0, 5.0]), 3, min_bits=0, max_bits=6)
    assert int(b[0]) == 0 and int(b.sum()) == 12
    q = quantize(torch.randn(4, 10), -1.0, 1.0, (2 ** b), axis=0)
    assert torch.all(q.dequantize()[0] == 0)  # 0 bits = 1 level = constant
    assert allocate_bits(torch.zeros(4), 2).tolist() == [2, 2, 2, 2]
    with pytest.raises(QuantError):
        allocate_bits(torch.ones(3), 9)
    with pytest.raises(QuantError):
        allocate_bits(torch.ones(3), 2, min_bits=3)
    with pytest.raises(QuantError):
        allocate_bits(torch.tensor([1.0, -1.0]), 2)
    with pytest.raises(QuantError):
        allocate_bits(torch.tensor([1.0, float("nan")]), 2)
    with pytest.raises(QuantError):
        allocate_bits(torch.empty(0), 2)


@pytest.mark.parametrize("target", [7, 7.5, 8])
def test_bits_zero_channels_near_max_target(target):
    # constant channels rank last, but the quota is still met when every other channel is already at max_bits
    s = torch.tensor([0.0, 2.0, 1.0, 0.0, 3.0])
    b = allocate_bits(s, target, max_bits=8)
    assert int(b.sum()) == round(5 * target)
    assert int(b.max()) <= 8
    nonzero = b[torch.tensor([1, 2, 4])]
    if int(b[0]) > 0 or int(b[3]) > 0:
        assert torch.all(nonzero == 8)


def test_reference_mode_is_approximate():
    g = torch.Generator().manual_seed(3)
    s = torch.rand(100, generator=g) * 4
    b = allocate_bits(s, 4, mode="reference")
    assert abs(float(b.float().mean()) - 4) < 0.1
    assert int(allocate_bits(s, 4, mode="reference", rounding="ceil").sum()) >= 0
    with pytest.raises(QuantError):
        allocate_bits(s, 4, mode="nope")


def test_bins_fractional_target():
    g = torch.Generator().manual_seed(1)
    s = torch.rand(64, generator=g) * 3 + 0.01
    n = allocate_bins(s, 5.3)
    assert int(n.sum()) == round(64 * 2**5.3)
    assert int(n.min()) >= 1
    assert abs(float(n.float().mean()) - 2**5.3) < 0.5
    assert len(torch.unique(n)) > 10  # non-power-of-two level counts
    ref = allocate_bins(s, 5.3, mode="reference")
    assert torch.all((ref - torch.round(64 * 2**5.3 * s ** (2 / 3) / (s ** (2 / 3)).sum())).abs() <= 0)


def _best_fraction(sx: float, sy: float, rng: np.random.Generator) -> float:
    """bit_allocation_synthetic.py: share p of 32 bins to X, mid-tread, no clipping; the MSE-optimal p."""
    X, Y = rng.normal(0, sx, 10_000), rng.normal(0, sy, 10_000)
    ps = np.arange(0.15, 0.85, 0.005)
    err = []
    for p in ps:
        dx = (X.max() - X.min()) / (32 * p)
        dy = (Y.max() - Y.min()) / (32 * (1 - p))
        err.append(np.mean((X - np.round(X / dx) * dx) ** 2) + np.mean((Y - np.round(Y / dy) * dy) ** 2))
    return float(ps[int(np.argmin(err))])


@pytest.mark.parametrize("sx,sy,paper", [(2.828, 1.0, 2 / 3), (1.0, 2.828, 1 / 3), (1.0, 1.0, 1 / 2)])
def test_two_channel_bin_fraction(sx, sy, paper):
    rng = np.random.default_rng(0)
    sim = _best_fraction(sx, sy, rng)
    n = allocate_bins(torch.tensor([sx, sy]), 4)  # 2 channels x 16 = 32 bins
    assert int(n.sum()) == 32
    frac = float(n[0]) / 32
    assert abs(sim - paper) < 0.06
    assert abs(frac - paper) < 1 / 32 + 1e-9
    assert abs(frac - sim) < 0.08


def test_bins_hand_derived_largest_remainder():
    # p = stat^(2/3) = 1, 4, 9; quota = 3 * 2^log2(10) = 30 levels; ideal 30 p / 14 = 2.143, 8.571, 19.286;
    # floors 2, 8, 19 (29): the one level left goes to the largest remainder (0.571, channel 1)
    n = allocate_bins(torch.tensor([1.0, 8.0, 27.0]), math.log2(10))
    assert n.tolist() == [2, 9, 19]
    # quota 11: channel 0 would get 0.786 < 1 level, so it is held at 1; the other two share 10 levels as
    # 4 s + 9 s = 10 (s = 10/13): 3.077, 6.923 -> floors 3, 6 and the left-over level goes to channel 2
    n = allocate_bins(torch.tensor([1.0, 8.0, 27.0]), math.log2(11 / 3))
    assert int(n.sum()) == 11 and n.tolist() == [1, 3, 7]


def test_tie_rule_lower_channel_first():
    # equal remainders: the leftover units go to the lower channel indices
    assert allocate_bins(torch.ones(4), math.log2(1.5)).tolist() == [2, 2, 1, 1]  # 6 levels, 1.5 each
    assert allocate_bits(torch.ones(4), 2.5).tolist() == [3, 3, 2, 2]  # 10 bits, 2.5 each


def test_bits_hand_derived():
    # log2 p = (2/3) log2 stat = 0, 2, 4; bits = log2 p + λ with 3λ + 6 = quota: quota 9 -> λ = 1: 1, 3, 5
    assert allocate_bits(torch.tensor([1.0, 8.0, 64.0]), 3).tolist() == [1, 3, 5]
    # a real shift: quota 10 -> lam = 4/3: 1.333, 3.333, 5.333; floors 1, 3, 5 (9): the tie goes to channel 0
    assert allocate_bits(torch.tensor([1.0, 8.0, 64.0]), 10 / 3).tolist() == [2, 3, 5]


def test_bins_bad_input():
    with pytest.raises(QuantError):
        allocate_bins(torch.ones(4), 1, max_levels=1)  # 8 levels > 4 channels x 1
    with pytest.raises(QuantError):
        allocate_bins(torch.ones(4), -1)
    with pytest.raises(QuantError):
        allocate_bins(torch.ones(4), 2, min_levels=0)
