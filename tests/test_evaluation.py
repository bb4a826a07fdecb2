"""Confidence interval of top-1 agreement (Wilson score interval), checked against hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from quant.errors import QuantError
from quant.evaluation import FidelityMeter, binomial_ci


def test_wilson_interval_hand_derived():
    z2 = 1.959963984540054 ** 2
    # 0 of 10: [0, z²/(n + z²)]
    lo, hi = binomial_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), rel=1e-12)
    # 10 of 10: the mirror image
    lo, hi = binomial_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2), rel=1e-12)
    # 5 of 10: symmetric about 1/2, half-width z·sqrt(1/40 + z²/400)/(1 + z²/10)
    lo, hi = binomial_ci(5, 10)
    half = math.sqrt(z2) * math.sqrt(0.25 / 10 + z2 / 400) / (1 + z2 / 10)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)
    # published example (Newcombe 1998, table I): 81 of 263 -> 0.2553 to 0.3662
    lo, hi = binomial_ci(81, 263)
    assert round(lo, 4) == 0.2553 and round(hi, 4) == 0.3662
    # wider at 99%, narrower with more trials
    assert binomial_ci(81, 263, 0.99)[0] < lo
    assert binomial_ci(810, 2630)[1] - binomial_ci(810, 2630)[0] < hi - lo
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(QuantError):
            binomial_ci(*bad)


def test_meter_reports_the_interval_of_its_count():
    ref = torch.eye(4)[[0, 1, 2, 3, 0, 1]] * 5
    quant = ref.clone()
    quant[5] = torch.eye(4)[3] * 5  # one decision of six changes
    m = FidelityMeter()
    m.update(ref, quant)
    s = m.summary()
    assert s["top1_agreement"] == 5 / 6
    assert s["top1_agreement_ci"] == binomial_ci(5, 6)
