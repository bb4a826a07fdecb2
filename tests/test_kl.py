"""KL calibration: the vectorized search agrees with the direct per-threshold reference."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.benchmarks.quant import kl_divergence_reference, kl_threshold_reference
from quant.errors import QuantError
from quant.kl import kl_divergences, kl_threshold, kl_thresholds


def _hists():
    rng = np.random.default_rng(0)
    lap = np.histogram(np.abs(rng.laplace(0, 1, 50_000)), bins=512)[0]
    gau = np.histogram(np.abs(rng.normal(0, 1, 20_000)), bins=300)[0]
    sparse = rng.poisson(0.3, 257).astype(float)
    relu = np.histogram(np.maximum(rng.normal(0.2, 1, 20_000), 0), bins=400)[0]  # big first bin
    holes = lap.copy()
    holes[100:140] = 0
    holes[-1] = 0
    return {"laplace": lap, "gauss": gau, "sparse": sparse, "relu": relu, "holes": holes}


@pytest.mark.parametrize("name", ["laplace", "gauss", "sparse", "relu", "holes"])
@pytest.mark.parametrize("nq", [1, 7, 8, 32])
def test_divergences_match_reference(name, nq):
    h = _hists()[name]
    cand, kl = kl_divergences(h, nq)
    ref = np.array([kl_divergence_reference(h, nq, int(i)) for i in cand])
    assert np.array_equal(np.isinf(kl), np.isinf(ref))
    fin = np.isfinite(ref)
    assert np.allclose(kl[fin], ref[fin], rtol=1e-9, atol=1e-12)
    assert kl_threshold(h, 0.25, nq) == kl_threshold_reference(h, 0.25, nq)


def test_tensorrt_setting_2048_bins():
    rng = np.random.default_rng(3)
    x = np.abs(rng.laplace(0, 1, 200_000))
    h, edges = np.histogram(x, bins=2048, range=(0, x.max()))
    t = kl_threshold(h, edges, 128)
    assert t == kl_threshold_reference(h, edges[1] - edges[0], 128)
    assert 0 < t < x.max()


def test_edge_cases():
    h = np.array([5.0, 3.0, 1.0, 0.0])
    assert kl_threshold(h, 1.0, 10) == 4.0  # more quantization bins than histogram bins: keep everything
    assert kl_threshold(np.zeros(10), 1.0, 2) == 0.0
    with pytest.raises(QuantError):
        kl_threshold(np.array([1.0, -1.0]), 1.0, 1)
    with pytest.raises(QuantError):
        kl_threshold(np.array([1.0, np.nan]), 1.0, 1)
    with pytest.raises(QuantError):
        kl_threshold(np.ones((2, 2)), 1.0, 1)
    with pytest.raises(QuantError):
        kl_threshold(np.ones(4), 0.0, 1)
    with pytest.raises(QuantError):
        kl_threshold(np.ones(4), np.arange(4.0), 1)  # wrong number of edges
    with pytest.raises(QuantError):
        kl_threshold(np.ones(4), 1.0, 0)


def test_per_row():
    hs = _hists()
    H = np.stack([hs["laplace"][:300], hs["gauss"]])
    t = kl_thresholds(H, 0.5, [8, 16])
    assert t.tolist() == [kl_threshold(H[0], 0.5, 8), kl_threshold(H[1], 0.5, 16)]
