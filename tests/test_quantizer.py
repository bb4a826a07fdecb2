"""Uniform quantizer: codes, dtypes, zero exactness, level counts, rounding, constants, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from quant.errors import QuantError
from quant.quantizer import QuantizedTensor, code_dtype, fake_quantize, quant_params, quantize


def _grid_values(q: QuantizedTensor) -> torch.Tensor:
    return q.dequantize()


def test_round_trip_codes_are_stable():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=g) * 3
    q = quantize(x, -4.0, 5.0, 16)
    y = q.dequantize()
    q2 = quantize(y, -4.0, 5.0, 16)
    assert torch.equal(q.codes, q2.codes)
    assert torch.equal(y, q2.dequantize())
    assert torch.equal(fake_quantize(x, -4.0, 5.0, 16), y)


@pytest.mark.parametrize("lo,hi,levels", [(-1.0, 1.0, 16), (-0.3, 2.7, 7), (-5.0, 0.1, 39), (0.0, 6.0, 256),
                                          (-1e-3, 1e3, 255), (2.0, 5.0, 8), (-7.0, -3.0, 5)])
def test_zero_is_exact(lo, hi, levels):
    x = torch.tensor([0.0, lo, hi, 0.0])
    q = quantize(x, lo, hi, levels)
    assert q.dequantize()[0].item() == 0.0 and q.dequantize()[3].item() == 0.0
    assert int(q.params.zero_point) == 0
    assert int(q.params.levels) == levels


def test_symmetric_codes_are_centred():
    q39 = quantize(torch.linspace(-2, 2, 1001), -2.0, 2.0, 39)
    assert int(q39.params.qmin) == -19 and int(q39.params.qmax) == 19
    assert q39.codes.dtype == torch.int8
    assert int(q39.codes.min()) == -19 and int(q39.codes.max()) == 19
    q16 = quantize(torch.linspace(-2, 2, 1001), -2.0, 2.0, 16)
    assert (int(q16.params.qmin), int(q16.params.qmax)) == (-8, 7)
    assert len(torch.unique(quantize(torch.linspace(-2.2, 2.2, 1001), -2.0, 2.0, 16).codes)) == 16


def test_unsigned_codes():
    x = torch.linspace(0, 6, 500)
    q = quantize(x, 0.0, 6.0, 256)
    assert q.codes.dtype == torch.uint8
    assert int(q.codes.min()) == 0 and int(q.codes.max()) == 255
    assert abs(float(q.params.scale) - 6.0 / 255) < 1e-7


@pytest.mark.parametrize("qmin,qmax,dtype", [(0, 255, torch.uint8), (-128, 127, torch.int8), (0, 256, torch.int16),
                                             (-129, 0, torch.int16), (0, 40000, torch.int32), (-5, 2**31 - 1, torch.int32)])
def test_code_dtype(qmin, qmax, dtype):
    assert code_dtype(qmin, qmax) == dtype


def test_dtype_follows_levels():
    x = torch.linspace(-1, 1, 2000)
    assert quantize(x, -1.0, 1.0, 1000).codes.dtype == torch.int16
    assert quantize(x, 0.0, 1.0, 70000).codes.dtype == torch.int32


def test_round_half_to_even():
    x = torch.tensor([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5])
    q = quantize(x, -10.0, 10.0, 21)  # step exactly 1.0
    assert float(q.params.scale) == 1.0
    assert q.codes.tolist() == [0, 2, 2, 4, 0, -2, -2]


def test_saturation_and_inf():
    x = torch.tensor([-100.0, 100.0, float("inf"), float("-inf")])
    q = quantize(x, -1.0, 1.0, 5)
    assert q.dequantize().tolist() == [-1.0, 1.0, 1.0, -1.0]


def test_per_channel_levels_and_axis():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, generator=g)
    levels = torch.tensor([2, 39, 256, 1000, 7])
    lo = x.amin(dim=(0, 1))
    hi = x.amax(dim=(0, 1))
    q = quantize(x, lo, hi, levels, axis=-1)
    assert q.params.axis == 2
    assert q.params.levels.tolist() == levels.tolist()
    assert q.codes.dtype == torch.int16
    for c in range(5):
        cq = q.codes[..., c].to(torch.int64)
        assert int(cq.min()) >= int(q.params.qmin[c]) and int(cq.max()) <= int(q.params.qmax[c])
    # per-channel result equals quantizing each channel alone
    for c in range(5):
        single = quantize(x[..., c], lo[c], hi[c], int(levels[c]))
        assert torch.equal(single.dequantize(), q.dequantize()[..., c])
    bits = q.params.bits
    assert abs(float(bits[1]) - np.log2(39)) < 1e-12 and float(bits[2]) == 8.0


@settings(max_examples=60, deadline=None)
@given(lo=st.floats(-100, 100), width=st.floats(1e-3, 200), levels=st.integers(2, 600), seed=st.integers(0, 1000))
def test_error_bound_and_level_count(lo, width, levels, seed):
    hi = lo + width
    g = torch.Generator().manual_seed(seed)
    x = lo + torch.rand(300, generator=g, dtype=torch.float64) * width
    q = quantize(x, lo, hi, levels)
    d = float(q.params.scale)
    err = (q.dequantize().to(torch.float64) - x).abs().max().item()
    assert err <= d * (1 + 1e-4) + 1e-6 * max(abs(lo), abs(hi))
    assert int(q.params.levels) == levels
    assert len(torch.unique(q.codes)) <= levels
    assert quantize(torch.zeros(1), lo, hi, levels).dequantize().item() == 0.0


def test_one_level_is_constant_zero_step():
    x = torch.randn(50)
    q = quantize(x, -1.0, 1.0, 1)
    assert float(q.params.scale) == 0.0
    assert torch.all(q.dequantize() == 0)
    assert int(q.params.levels) == 1


def test_constant_channel_stays_exact():
    x = torch.full((10,), 0.37)
    q = quantize(x, 0.37, 0.37, 16)
    assert torch.all(q.dequantize() == torch.tensor(0.37))
    assert int(q.params.levels) == 1
    z = quantize(torch.zeros(4), 0.0, 0.0, 16)
    assert float(z.params.scale) == 0.0 and torch.all(z.dequantize() == 0)
    # per channel: one constant channel among normal ones
    w = torch.stack([torch.linspace(-1, 1, 8), torch.full((8,), -2.5)])
    qw = quantize(w, w.amin(1), w.amax(1), 16, axis=0)
    assert torch.all(qw.dequantize()[1] == -2.5)
    assert qw.params.levels.tolist() == [16, 1]


def test_empty_tensor():
    q = quantize(torch.empty(0, 3), -1.0, 1.0, 4, axis=1)
    assert q.codes.shape == (0, 3)
    assert q.dequantize().shape == (0, 3)


def test_metadata_round_trip():
    x = torch.randn(4, 6)
    q = quantize(x, x.amin(1), x.amax(1), torch.tensor([3, 4, 16, 39]), axis=0)
    meta = q.metadata()
    assert set(meta) >= {"scale", "zero_point", "qmin", "qmax", "bits", "axis"}
    assert meta["axis"] == 0 and meta["scale"].dtype == np.float32
    assert np.allclose(np.asarray(meta["bits"], np.float64), np.log2([3, 4, 16, 39]))
    back = QuantizedTensor.from_metadata(q.codes.numpy(), meta)
    assert torch.equal(back.dequantize(), q.dequantize())
    assert torch.equal(back.params.levels, q.params.levels)


def test_metadata_is_compact():
    # equal per-channel integers collapse to one value in the smallest dtype; the round trip is unchanged
    x = torch.randn(64, 9)
    q = quantize(x, -x.abs().amax(1), x.abs().amax(1), 16, axis=0)
    meta = q.metadata()
    for key in ("zero_point", "qmin", "qmax", "bits"):
        assert meta[key].shape == (1,) and meta[key].itemsize == 1, key
    back = QuantizedTensor.from_metadata(q.codes.numpy(), meta)
    assert torch.equal(back.dequantize(), q.dequantize())
    assert torch.equal(back.params.qmin, q.params.qmin) and back.params.qmin.shape == (64,)
    per_tensor = quantize(x, -1.0, 1.0, 4).metadata()
    assert per_tensor["axis"] is None and per_tensor["scale"].shape == ()


def test_numpy_input():
    x = np.linspace(-1, 1, 11).astype(np.float32)
    q = quantize(x, -1.0, 1.0, 11)
    assert np.allclose(q.dequantize().numpy(), x, atol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(lo=1.0, hi=-1.0, levels=4), dict(lo=-1.0, hi=1.0, levels=0),
                                    dict(lo=-1.0, hi=1.0, levels=2.5), dict(lo=float("nan"), hi=1.0, levels=4),
                                    dict(lo=-1.0, hi=float("inf"), levels=4), dict(lo=-1.0, hi=1.0, levels=2**40)])
def test_bad_parameters(kwargs):
    with pytest.raises(QuantError):
        quantize(torch.zeros(3), kwargs["lo"], kwargs["hi"], kwargs["levels"])


def test_nan_input_and_bad_axis():
    with pytest.raises(QuantError, match="NaN"):
        quantize(torch.tensor([0.0, float("nan")]), -1.0, 1.0, 4)
    with pytest.raises(QuantError):
        quantize(torch.zeros(2, 3), torch.zeros(4), torch.ones(4), 4, axis=1)
    with pytest.raises(QuantError):
        quantize(torch.zeros(2, 3), -1.0, 1.0, 4, axis=5)
    with pytest.raises(QuantError):
        quant_params(torch.zeros(3), torch.ones(3), 4)  # per-channel values without an axis


def test_quantize_array():
    from quant.arrays import quantize_array

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 50)).astype(np.float32)
    q = quantize_array(x, bits=4)
    assert int(q.params.levels) == 16 and q.codes.dtype == torch.int8
    qc = quantize_array(x, bits=3, clip="aciq-laplace", axis=0)
    assert qc.params.levels.tolist() == [8] * 4 and qc.params.scale.shape == (4,)
    r = quantize_array(np.abs(x), bits=8)  # unsigned inferred
    assert r.codes.dtype == torch.uint8 and int(r.params.qmin) == 0
    s8 = quantize_array(x, bits=8, signed=True)  # asymmetric 8-bit range: offset codes in uint8
    assert s8.codes.dtype == torch.uint8 and int(s8.params.zero_point) > 128
    lo, hi = float(x.min()), float(x.max())
    assert torch.equal(s8.dequantize(), fake_quantize(torch.from_numpy(x), lo, hi, 256))
    z = quantize(torch.zeros(1), lo, hi, 256)
    assert z.codes.dtype == torch.uint8 and z.dequantize().item() == 0.0
    for bad in (0, 17, float("nan")):
        with pytest.raises(QuantError):
            quantize_array(x, bits=bad)
    with pytest.raises(QuantError):
        quantize_array(np.array([1.0, np.inf]), bits=4)
    with pytest.raises(QuantError):
        quantize_array(np.zeros(0, dtype=np.float32), bits=4)
    with pytest.raises(QuantError):
        quantize_array(np.arange(4), bits=4)


def test_per_channel_offset_codes_round_trip():
    g = torch.Generator().manual_seed(7)
    w = torch.randn(5, 40, generator=g) + torch.linspace(-0.8, 0.8, 5).reshape(5, 1)
    q = quantize(w, w.amin(1), w.amax(1), 256, axis=0)
    assert q.codes.dtype == torch.uint8
    assert q.params.qmin.tolist() == [0] * 5 and q.params.qmax.tolist() == [255] * 5
    assert torch.equal(q.dequantize(), fake_quantize(w, w.amin(1), w.amax(1), 256, axis=0))
    back = QuantizedTensor.from_metadata(q.codes.numpy(), q.metadata())
    assert torch.equal(back.dequantize(), q.dequantize())
