"""Clipping ranges: each method per tensor and per channel, from data and from statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quant.aciq import alpha_multiplier
from quant.clipping import CLIP_METHODS, clip_range, parse_method
from quant.errors import QuantError
from quant.kl import kl_threshold
from quant.quantizer import fake_quantize
from quant.statistics import TensorStatistics


@pytest.fixture(scope="module")
def act():
    g = torch.Generator().manual_seed(0)
    lap = torch.distributions.Laplace(torch.tensor(0.2), torch.tensor(1.0))
    torch.manual_seed(0)
    return lap.sample((6, 8, 10, 10)) * torch.linspace(0.5, 2, 8).reshape(1, 8, 1, 1)


def _ch(x):
    return x.movedim(1, 0).reshape(x.shape[1], -1).double().numpy()


def test_method_list_and_parsing():
    assert CLIP_METHODS == ("minmax", "aciq-laplace", "aciq-gauss", "<k>sigma", "percentile:<p>", "mse", "kl")
    assert parse_method("2sigma") == ("sigma", 2.0) and parse_method("2.5std") == ("sigma", 2.5)
    assert parse_method("percentile:99.9") == ("percentile", 99.9)
    for bad in ("sigma", "percentile:0", "percentile:101", "foo"):
        with pytest.raises(QuantError):
            parse_method(bad)


def test_minmax(act):
    lo, hi = clip_range(act, "minmax", 16, per_channel=True)
    a = _ch(act)
    assert np.array_equal(lo.numpy(), a.min(1)) and np.array_equal(hi.numpy(), a.max(1))
    lo, hi = clip_range(torch.relu(act), "minmax", 16)
    assert float(lo) == 0.0 and float(hi) == float(act.max())


@pytest.mark.parametrize("per_channel", [False, True])
def test_aciq_laplace_matches_formula(act, per_channel):
    a = _ch(act) if per_channel else act.double().numpy().reshape(1, -1)
    mu = a.mean(1)
    b = np.abs(a - mu[:, None]).mean(1)
    k = alpha_multiplier(16, "laplace")
    lo, hi = clip_range(act, "aciq-laplace", 16, per_channel=per_channel)
    assert np.allclose(np.atleast_1d(lo.numpy()), np.maximum(mu - k * b, a.min(1)), rtol=1e-6)
    assert np.allclose(np.atleast_1d(hi.numpy()), np.minimum(mu + k * b, a.max(1)), rtol=1e-6)
    # reference window: lo = max(min, mu - α), hi = lo + 2α
    lo_r, hi_r = clip_range(act, "aciq-laplace", 16, per_channel=per_channel, window="reference")
    assert np.allclose(np.atleast_1d((hi_r - lo_r).numpy()), 2 * k * b, rtol=1e-6)


def test_aciq_gauss_sigma_and_one_sided(act):
    a = act.double().numpy().reshape(-1)
    s = a.std(ddof=1)
    lo, hi = clip_range(act, "2sigma", 16, signed=True)
    assert np.isclose(float(hi), min(a.mean() + 2 * s, a.max()), rtol=1e-6)
    r = torch.relu(act)
    rr = r.double().numpy().reshape(-1)
    lo, hi = clip_range(r, "aciq-gauss", 16)  # signed inferred False: one-sided multiplier
    assert float(lo) == 0.0
    k1 = alpha_multiplier(16, "gauss", one_sided=True)
    assert np.isclose(float(hi), min(rr.mean() + k1 * rr.std(ddof=1), rr.max()), rtol=1e-6)


def test_per_channel_levels(act):
    lv = torch.tensor([2, 4, 8, 16, 39, 64, 128, 256])
    lo, hi = clip_range(act, "aciq-laplace", lv, per_channel=True, window="zero", signed=True)
    a = _ch(act)
    b = np.abs(a - a.mean(1, keepdims=True)).mean(1)
    k = np.array([alpha_multiplier(int(v)) for v in lv])
    assert np.allclose(hi.numpy(), np.minimum(k * b, a.max(1)), rtol=1e-6)


def test_stats_and_data_agree(act):
    st = TensorStatistics(axis=1, channel_histograms=True)
    st.update(act[:3]).update(act[3:])
    for m in ("minmax", "aciq-laplace", "aciq-gauss", "3sigma"):
        for pc in (False, True):
            a = clip_range(act, m, 16, per_channel=pc)
            b = clip_range(st, m, 16, per_channel=pc, extrapolate=False)  # the data's own (observed) range
            # b differs slightly across batches (one-pass estimator); everything else is exact
            assert torch.allclose(a[0], b[0], rtol=2e-3) and torch.allclose(a[1], b[1], rtol=2e-3), (m, pc)


def test_percentile(act):
    lo, hi = clip_range(act, "percentile:99", 16, per_channel=True)
    a = _ch(act)
    assert np.allclose(hi.numpy(), np.quantile(a, 0.99, axis=1), rtol=1e-9)
    assert np.allclose(lo.numpy(), np.quantile(a, 0.01, axis=1), rtol=1e-9)
    st = TensorStatistics(axis=1, bins=2048, channel_histograms=True).update(act)
    lo2, hi2 = clip_range(st, "percentile:99", 16, per_channel=True)
    w = 2 * st.channel_view().hist_range / 4096
    assert np.all(np.abs(hi2.numpy() - hi.numpy()) <= 2 * w)
    with pytest.raises(QuantError, match="histogram"):
        clip_range(TensorStatistics(axis=1).update(act), "percentile:99", 16, per_channel=True)


def test_mse_beats_minmax_and_aciq(act):
    x = act.reshape(-1)
    def mse(r):
        return float(((fake_quantize(x, r[0], r[1], 16) - x) ** 2).mean())
    best = mse(clip_range(x, "mse", 16))
    assert best <= mse(clip_range(x, "minmax", 16))
    assert best <= mse(clip_range(x, "aciq-laplace", 16)) * 1.0001
    # from the histogram of statistics: close to the data optimum
    st = TensorStatistics(axis=None).update(x)
    assert mse(clip_range(st, "mse", 16)) <= best * 1.05


def test_kl_per_tensor_matches_histogram_calibration(act):
    a = act.double().abs().numpy().reshape(-1)
    h, edges = np.histogram(a.astype(np.float32), bins=2048, range=(0, float(a.max())))
    lo, hi = clip_range(act, "kl", 256, signed=True)
    t = kl_threshold(h, edges, 128)
    assert abs(float(hi) - min(t, act.max().item())) < (edges[1] - edges[0]) * 1.01
    assert float(lo) == -float(hi) or float(lo) == float(act.min())
    lo_u, hi_u = clip_range(torch.relu(act), "kl", 16)
    assert float(lo_u) == 0.0 and 0 < float(hi_u) <= float(act.max())
    st = TensorStatistics(axis=1, channel_histograms=True).update(act)
    lo_c, hi_c = clip_range(st, "kl", 16, per_channel=True)
    assert lo_c.shape == (8,) and torch.all(hi_c > 0)


def test_bad_input(act):
    with pytest.raises(QuantError):
        clip_range(torch.empty(0), "minmax", 16)
    with pytest.raises(QuantError):
        clip_range(torch.tensor([1.0, float("nan")]), "minmax", 16)
    with pytest.raises(QuantError):
        clip_range(act, "aciq-laplace", 0)
    with pytest.raises(QuantError):
        clip_range(act, "aciq-laplace", torch.tensor([4, 4]), per_channel=True)
    with pytest.raises(QuantError):
        clip_range(act, "aciq-laplace", 16, window="middle")
    with pytest.raises(QuantError):
        clip_range(TensorStatistics(axis=None).update(act), "minmax", 16, per_channel=True)
