"""BN folding into conv (groups 1, grouped, depthwise) and linear layers."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from quant.bn_fold import fold_conv_bn
from quant.errors import ModelError


def _randomize_bn(bn: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    n = bn.num_features
    with torch.no_grad():
        bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(n, generator=g))
        bn.running_mean.copy_(torch.randn(n, generator=g))
        bn.running_var.copy_(torch.rand(n, generator=g) + 0.1)
    bn.eval()


@pytest.mark.parametrize("groups,bias", [(1, True), (1, False), (2, True), (8, False)])
def test_conv_fold_preserves_output(groups, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=groups, bias=bias)
    bn = nn.BatchNorm2d(8)
    _randomize_bn(bn, groups)
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        want = bn(conv(x))
        folded = copy.deepcopy(conv)
        fold_conv_bn(folded, bn)
        assert folded.bias is not None
        assert torch.allclose(folded(x), want, atol=1e-5)


def test_depthwise_multiplier_and_linear():
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 8, 3, groups=4)  # depthwise with channel multiplier 2
    bn = nn.BatchNorm2d(8)
    _randomize_bn(bn, 3)
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        want = bn(conv(x))
        fold_conv_bn(conv, bn)
        assert torch.allclose(conv(x), want, atol=1e-5)
    lin, bn1 = nn.Linear(5, 3, bias=False), nn.BatchNorm1d(3)
    _randomize_bn(bn1, 4)
    z = torch.randn(7, 5)
    with torch.no_grad():
        want = bn1(lin(z))
        fold_conv_bn(lin, bn1, reset=True)
        assert torch.allclose(lin(z), want, atol=1e-5)
        assert torch.allclose(bn1(lin(z)), want, atol=1e-5)  # reset BN is the identity


def test_errors():
    with pytest.raises(ModelError):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(5))
    with pytest.raises(ModelError):
        fold_conv_bn(nn.ReLU(), nn.BatchNorm2d(4))
    with pytest.raises(ModelError):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.LayerNorm(4))
    with pytest.raises(ModelError):
        fold_conv_bn(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4, track_running_stats=False))
