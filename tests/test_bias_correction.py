"""Weight bias / variance correction (eqs. 12-13), paper and reference forms."""

from __future__ import annotations

import pytest
import torch

from quant.bias_correction import correct_weights, correction_terms
from quant.errors import QuantError
from quant.quantizer import fake_quantize


@pytest.fixture(scope="module")
def weights():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 8, 3, 3, generator=g, dtype=torch.float64) * torch.linspace(0.1, 1, 16).reshape(16, 1, 1, 1)
    w = w + torch.linspace(-0.05, 0.05, 16, dtype=torch.float64).reshape(16, 1, 1, 1)
    r = w.reshape(16, -1)
    wq = fake_quantize(w, r.amin(1), r.amax(1), 4, axis=0).to(torch.float64)  # 2 bits: visible mean shift
    return w, wq


def _m(t):
    return t.reshape(t.shape[0], -1).mean(1)


def _s(t):
    return t.reshape(t.shape[0], -1).std(1)


def test_quantization_shifts_the_mean(weights):
    w, wq = weights
    assert float((_m(wq) - _m(w)).abs().max()) > 1e-3


@pytest.mark.parametrize("form", ["paper", "reference"])
def test_mean_correction_removes_shift(weights, form):
    w, wq = weights
    c = correct_weights(w, wq, mode="mean", form=form)
    assert torch.allclose(_m(c), _m(w), atol=1e-12)
    assert torch.allclose(_s(c), _s(wq), atol=1e-12)  # spread unchanged


def test_variance_correction_restores_std(weights):
    w, wq = weights
    for form in ("paper", "reference"):
        c = correct_weights(w, wq, mode="variance", form=form)
        assert torch.allclose(_s(c), _s(w), rtol=1e-6)
    ref = correct_weights(w, wq, mode="variance", form="reference")
    assert torch.allclose(_m(ref), _m(wq), atol=1e-12)  # reference keeps the quantized mean


def test_both_forms(weights):
    w, wq = weights
    ref = correct_weights(w, wq, mode="both", form="reference")
    assert torch.allclose(_m(ref), _m(w), atol=1e-12) and torch.allclose(_s(ref), _s(w), rtol=1e-6)
    pap = correct_weights(w, wq, mode="both", form="paper")
    xi, mu = correction_terms(w, wq, form="paper")
    assert torch.allclose(_s(pap), _s(w), rtol=1e-9)
    assert torch.allclose(_m(pap), xi * _m(w), atol=1e-12)  # eq. 13 also rescales the mean
    assert torch.allclose(pap, xi.reshape(-1, 1, 1, 1) * (wq + mu.reshape(-1, 1, 1, 1)))


def test_axis_and_dtype(weights):
    w, wq = weights
    c0 = correct_weights(w, wq, mode="both", form="reference")
    c1 = correct_weights(w.transpose(0, 1), wq.transpose(0, 1), axis=1, mode="both", form="reference")
    assert torch.allclose(c0, c1.transpose(0, 1))
    assert correct_weights(w.float(), wq.float()).dtype == torch.float32


def test_constant_quantized_channel_stays_finite():
    w = torch.tensor([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]])
    wq = torch.tensor([[0.0, 0.0, 0.0], [1.0, -1.0, 0.5]])
    c = correct_weights(w, wq, mode="both", form="paper")
    assert torch.isfinite(c).all()
    assert torch.allclose(c[0], torch.full((3,), 0.2))


def test_bad_input(weights):
    w, wq = weights
    with pytest.raises(QuantError):
        correct_weights(w, wq[:8])
    with pytest.raises(QuantError):
        correct_weights(w, wq, mode="median")
    with pytest.raises(QuantError):
        correct_weights(w, wq, form="other")
    bad = wq.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(QuantError):
        correct_weights(w, bad)
    with pytest.raises(QuantError):
        correct_weights(torch.empty(0, 3), torch.empty(0, 3))
