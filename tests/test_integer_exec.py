"""Integer execution (int32 accumulation) of conv and linear layers from codes equals fake quantization."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from quant.errors import QuantError
from quant.integer_exec import _pad_between, integer_conv2d, integer_linear, run_layer_integer
from quant.quantizer import quantize


def _q(x, bits, axis, signed=True):
    lv = 2**bits
    if axis is None:
        lo, hi = (float(x.min()) if signed else 0.0), float(x.max())
    else:
        dims = [d for d in range(x.dim()) if d != axis]
        lo = x.amin(dims) if signed else torch.zeros(x.shape[axis])
        hi = x.amax(dims)
    return quantize(x, lo, hi, lv, axis=axis)


@pytest.mark.parametrize(
    "x_axis,groups,cin,cout,stride,padding,dilation",
    [
        (None, 1, 6, 5, 1, 1, 1),  # per-tensor input: one int32 accumulator per output
        (1, 1, 6, 5, 2, 0, 1),  # per-channel input: per-channel int32 partial sums
        (1, 6, 6, 6, 1, 1, 1),  # depthwise, per-channel input
        (1, 6, 6, 12, 1, 2, 2),  # depthwise multiplier 2, dilation
        (1, 2, 6, 4, 1, 1, 1),  # grouped
        (None, 3, 6, 6, 2, 1, 1),
    ],
)
def test_integer_conv_matches_float_conv_of_dequantized_values(x_axis, groups, cin, cout, stride, padding, dilation):
    torch.manual_seed(0)
    x = torch.relu(torch.randn(2, cin, 9, 9))
    w = torch.randn(cout, cin // groups, 3, 3)
    b = torch.randn(cout)
    xq, wq = _q(x, 4, x_axis, signed=False), _q(w, 4, 0)
    y = integer_conv2d(xq, wq, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    ref = F.conv2d(xq.dequantize().double(), wq.dequantize().double(), b.double(), stride, padding, dilation, groups)
    assert y.dtype == torch.float64 and y.shape == ref.shape
    # the reference multiplies float32-rounded dequantized values: agreement to float32 rounding
    assert torch.allclose(y, ref, rtol=1e-6, atol=1e-6 * float(ref.abs().max()))


@pytest.mark.parametrize("x_axis,w_axis", [(None, 0), (1, 0), (None, None)])
def test_integer_linear(x_axis, w_axis):
    torch.manual_seed(1)
    x, w, b = torch.randn(3, 20), torch.randn(7, 20), torch.randn(7)
    xq, wq = _q(x, 4, x_axis), _q(w, 4, w_axis)
    y = integer_linear(xq, wq, b)
    ref = F.linear(xq.dequantize().double(), wq.dequantize().double(), b.double())
    assert torch.allclose(y, ref, rtol=1e-6, atol=1e-6 * float(ref.abs().max()))


def test_accumulator_overflow_is_refused():
    x = quantize(torch.full((1, 2, 1, 1), 1.0), 0.0, 1.0, 2**16)  # codes up to 65535
    w = quantize(torch.full((1, 2, 1, 1), 1.0), -1.0, 1.0, 2**16)
    with pytest.raises(QuantError, match="overflows int32"):
        integer_conv2d(x, w)


def test_real_layers_of_the_default_model_match_fake_quantization():
    from quant.images import builtin_images, iter_batches
    from quant.models import load_model
    from quant.config import QuantConfig
    from quant.export import quantized_tensors
    from quant.preparation import prepare

    lm = load_model()
    x = next(iter(iter_batches(builtin_images(lm.preprocessing, 2), 2))).images
    cfg = QuantConfig(wbits=4, abits=4, clip="aciq-laplace", bit_alloc="weights,activations", stats_mode="offline")
    qm = prepare(lm.model, cfg, calibration=[x], progress=False)
    # a stride-2 depthwise conv behind TF "same" padding, and the 1x1 projection after it
    for name in ("_blocks.1._depthwise_conv", "_blocks.1._project_conv"):
        src = qm.layers[name].info.input_layer
        assert src is not None
        xq = quantized_tensors(qm, [x], num_images=2, layers=[src], progress=False)[src].activation
        y = run_layer_integer(qm, name, xq)
        mod = qm.quant.modules[name]
        with torch.no_grad():
            fake = mod(F.pad(xq.dequantize(), _pad_between(qm, name)))  # the simulated (fake-quant) layer
        scale = fake.abs().max()
        assert torch.allclose(y.float(), fake, rtol=1e-5, atol=1e-5 * float(scale)), name
    assert _pad_between(qm, "_blocks.1._depthwise_conv") == (0, 1, 0, 1)
    bc = prepare(lm.model, QuantConfig(wbits=4, abits=None, bias_correction="mean"), progress=False)
    with pytest.raises(QuantError, match="bias-corrected"):
        run_layer_integer(bc, "_blocks.1._project_conv", xq)
