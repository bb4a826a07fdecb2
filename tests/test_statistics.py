"""TensorStatistics: exact moments against numpy on concatenated data, b estimator, histogram, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quant.clipping import clip_range
from quant.errors import CalibrationError, QuantError
from quant.quantizer import quantize
from quant.statistics import TensorStatistics


def _batches(seed=0, n=3, shift=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(n):
        x = torch.randn(4, 6, 5, 5, generator=g) * torch.linspace(0.5, 3, 6).reshape(1, 6, 1, 1)
        out.append(x + (0.3 * k if shift else 0.0) + 1.0)
    return out


def _np_channels(batches):
    a = np.concatenate([b.numpy() for b in batches], axis=0)  # N C H W
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1).astype(np.float64)


def test_single_batch_exact():
    x = _batches(n=1)[0]
    st = TensorStatistics(axis=1).update(x)
    a = _np_channels([x])
    v = st.channel_view()
    assert np.allclose(v.mean.numpy(), a.mean(1), rtol=1e-6)
    assert np.allclose(v.std.numpy(), a.std(1, ddof=1), rtol=1e-6)
    assert np.allclose(v.b.numpy(), np.abs(a - a.mean(1, keepdims=True)).mean(1), rtol=1e-6)
    assert np.array_equal(v.min.numpy(), a.min(1)) and np.array_equal(v.max.numpy(), a.max(1))
    t = st.tensor_view()
    flat = a.reshape(-1)
    assert np.isclose(float(t.mean), flat.mean(), rtol=1e-6)
    assert np.isclose(float(t.std), flat.std(ddof=1), rtol=1e-6)
    assert np.isclose(float(t.b), np.abs(flat - flat.mean()).mean(), rtol=1e-6)
    assert float(t.min) == flat.min() and float(t.max) == flat.max()


def test_multi_batch_moments_and_b():
    bs = _batches(n=4)
    st = TensorStatistics(axis=1)
    for b in bs:
        st.update(b)
    a = _np_channels(bs)
    v = st.channel_view()
    assert np.allclose(v.mean.numpy(), a.mean(1), rtol=1e-6)
    assert np.allclose(v.std.numpy(), a.std(1, ddof=1), rtol=1e-6)
    b_true = np.abs(a - a.mean(1, keepdims=True)).mean(1)
    # documented bound: batch k is centred on the running mean m_k after it; |error| <= Σ n_k |μ - m_k| / n
    mu = a.mean(1)
    bound = np.zeros_like(mu)
    for k in range(1, len(bs) + 1):
        m_k = _np_channels(bs[:k]).mean(1)
        bound += _np_channels([bs[k - 1]]).shape[1] * np.abs(mu - m_k)
    bound /= a.shape[1]
    err = np.abs(v.b.numpy() - b_true)
    assert np.all(err <= bound + 1e-9)
    # stationary batches (same distribution): the one-pass b is within 1% of the exact value
    same = _batches(seed=1, n=4, shift=False)
    st2 = TensorStatistics(axis=1, histogram=False)
    for b in same:
        st2.update(b)
    a2 = _np_channels(same)
    assert np.allclose(st2.b.numpy(), np.abs(a2 - a2.mean(1, keepdims=True)).mean(1), rtol=0.01)
    st.refine_mad(bs)
    assert np.allclose(st.channel_view().b.numpy(), b_true, rtol=1e-6)
    flat = a.reshape(-1)
    assert np.isclose(float(st.tensor_view().b), np.abs(flat - flat.mean()).mean(), rtol=1e-6)


def test_weights_axis0_and_per_tensor():
    w = torch.randn(8, 3, 3, 3)
    st = TensorStatistics(axis=0, histogram=False).update(w)
    a = w.reshape(8, -1).double().numpy()
    assert np.allclose(st.std.numpy(), a.std(1, ddof=1), rtol=1e-6)
    pt = TensorStatistics(axis=None).update(w)
    assert pt.mean.dim() == 0
    assert np.isclose(float(pt.b), np.abs(a - a.mean()).mean(), rtol=1e-6)
    with pytest.raises(CalibrationError):
        pt.view(per_channel=True)


def test_histogram_grows_and_rebins_exactly():
    g = torch.Generator().manual_seed(5)
    x1 = torch.rand(1, 2, 1000, generator=g) * 2 - 1  # |x| < 1 -> R = 1
    x2 = (torch.rand(1, 2, 1000, generator=g) * 2 - 1) * 5  # R grows to 8
    st = TensorStatistics(axis=1, bins=64, channel_histograms=True).update(x1).update(x2)
    v = st.tensor_view()
    assert v.hist_range == 8.0
    allx = torch.cat([x1, x2], 2).reshape(-1).double().numpy()
    ref = np.histogram(allx, bins=128, range=(-8, 8))[0]
    assert np.array_equal(v.hist.numpy(), ref)
    assert np.array_equal(v.abs_hist().numpy(), np.histogram(np.abs(allx), bins=64, range=(0, 8))[0])
    pos = v.positive_hist().numpy()
    assert pos.sum() == allx.size and pos[0] == np.sum(allx < 8 / 64)
    ch = st.channel_view().hist
    assert ch.shape == (2, 128) and np.array_equal(ch.sum(0).numpy(), ref)


@pytest.mark.parametrize("suffix", [".json", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    st = TensorStatistics(axis=1, bins=32, channel_histograms=True, name="conv1")
    for b in _batches(n=2):
        st.update(b)
    path = tmp_path / f"s{suffix}"
    st.save(path)
    back = TensorStatistics.load(path)
    for view in ("channel_view", "tensor_view"):
        a, b = getattr(st, view)(), getattr(back, view)()
        for f in ("count", "min", "max", "mean", "b", "std", "hist"):
            assert torch.allclose(getattr(a, f), getattr(b, f), rtol=0, atol=0), f
    lo1, hi1 = clip_range(st, "aciq-laplace", 16, per_channel=True)
    lo2, hi2 = clip_range(back, "aciq-laplace", 16, per_channel=True)
    assert torch.equal(lo1, lo2) and torch.equal(hi1, hi2)
    if suffix == ".npz":
        np.load(path, allow_pickle=False).close()


def test_bad_input():
    with pytest.raises(CalibrationError):
        TensorStatistics().update(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(CalibrationError):
        TensorStatistics().update(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(QuantError):
        TensorStatistics().update(torch.empty(0, 3))
    with pytest.raises(CalibrationError):
        TensorStatistics().finalize()
    st = TensorStatistics(axis=1).update(torch.zeros(2, 3, 4))
    with pytest.raises(CalibrationError):
        st.update(torch.zeros(2, 4, 4))
    with pytest.raises(QuantError):
        TensorStatistics(axis=3).update(torch.zeros(2, 3))
    with pytest.raises(CalibrationError):
        TensorStatistics.from_dict({"format": "nope"})


def test_zero_variance_channel_is_exact():
    x = torch.randn(2, 3, 4, 4)
    x[:, 1] = 0.75
    st = TensorStatistics(axis=1).update(x)
    assert float(st.std[1]) == 0 and float(st.b[1]) == 0
    lo, hi = clip_range(st, "aciq-laplace", 16, per_channel=True)
    assert float(lo[1]) == float(hi[1]) == 0.75
    q = quantize(x, lo, hi, 16, axis=1)
    assert torch.all(q.dequantize()[:, 1] == 0.75)


def test_per_tensor_b_not_collected():
    x = torch.randn(2, 3, 4, 4)
    st = TensorStatistics(axis=1, tensor_stats=False).update(x)
    lo, hi = clip_range(st, "minmax", 16, extrapolate=False)
    assert float(lo) == float(x.min()) and float(hi) == float(x.max())
    with pytest.raises(CalibrationError, match="tensor_stats"):
        clip_range(st, "aciq-laplace", 16)
    assert torch.isfinite(clip_range(st, "aciq-gauss", 16)[1])


@pytest.mark.parametrize("shape", [(1, 5, 7, 9), (3, 4, 5000), (2, 3, 17)])
def test_compiled_kernel_matches_float64_torch_path(shape):
    # float32 CPU input takes the numba kernel, float64 input the torch reductions: same statistics
    g = torch.Generator().manual_seed(7)
    batches = [torch.randn(shape, generator=g) * 2.5 + 0.75 for _ in range(3)]
    fast = TensorStatistics(axis=1, histogram=False)
    ref = TensorStatistics(axis=1, histogram=False)
    for b in batches:
        fast.update(b)
        ref.update(b.to(torch.float64))
    f, r = fast.channel_view(), ref.channel_view()
    for field in ("min", "max", "mean", "b", "std"):
        assert torch.allclose(getattr(f, field), getattr(r, field), rtol=1e-5, atol=1e-6), field
    assert torch.equal(f.count, r.count)


def test_support_extends_by_the_gap_between_the_two_largest_per_image_extremes():
    # three batches of images; per image and channel the max and min, then m1 + k (m1 - m2) by hand (k = 4)
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(n, 4, 6, 6, generator=g) * torch.tensor([0.5, 1.0, 2.0, 4.0]).view(1, 4, 1, 1)
               for n in (3, 1, 5)]
    for dtype in (torch.float32, torch.float64):  # compiled kernel and torch reductions
        st = TensorStatistics(axis=1, histogram=False)
        for b in batches:
            st.update(b.to(dtype))
        x = torch.cat(batches).to(torch.float64)
        pmax = x.amax((2, 3)).sort(0, descending=True).values  # (images, C)
        pmin = x.amin((2, 3)).sort(0).values
        v = st.channel_view()
        assert st.n_samples == 9
        assert torch.allclose(v.support_max, pmax[0] + 4 * (pmax[0] - pmax[1]))
        assert torch.allclose(v.support_min, pmin[0] - 4 * (pmin[1] - pmin[0]))
        assert torch.equal(v.max, pmax[0]) and torch.equal(v.min, pmin[0])  # observed extremes unchanged
        tmax = x.amax((1, 2, 3)).sort(descending=True).values
        assert torch.isclose(st.tensor_view().support_max, tmax[0] + 4 * (tmax[0] - tmax[1]))
        lo, hi = clip_range(st, "minmax", 256, per_channel=True, signed=True)
        assert torch.allclose(hi, v.support_max) and torch.allclose(lo, v.support_min)
        lo, hi = clip_range(st, "minmax", 256, per_channel=True, signed=True, extrapolate=False)
        assert torch.equal(hi, v.max) and torch.equal(lo, v.min)


def test_support_of_one_image_is_the_observed_range(tmp_path):
    x = torch.randn(1, 3, 5, 5)
    st = TensorStatistics(axis=1).update(x)
    v = st.channel_view()
    assert torch.equal(v.support_max, v.max) and torch.equal(v.support_min, v.min)
    st.update(x * 0.5)
    again = TensorStatistics.load(st.save(tmp_path / "s.npz") or tmp_path / "s.npz")
    assert again.n_samples == 2
    assert torch.equal(again.channel_view().support_max, st.channel_view().support_max)
    d = st.to_dict()
    for k in ("n_samples", "sample_max", "sample_min", "tensor_sample_max", "tensor_sample_min"):
        d.pop(k)
    old = TensorStatistics.from_dict(d)  # a file of an earlier version: no per-image extremes
    assert torch.equal(old.channel_view().support_max, old.channel_view().max)
