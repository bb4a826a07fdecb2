"""Instrumentation: layer discovery, BN folding, ReLU fusion, sites, fallbacks and bad models."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quant.calibration import calibrate
from quant.capture import ActivationSite, capture_fp32, check_finite_logits
from quant.errors import CalibrationError, ModelError, QuantError
from quant.graph import instrument


class SmallNet(nn.Module):
    """conv-BN-ReLU6 (shared module), depthwise conv-BN-ReLU6, 1x1 conv-BN + residual, functional ReLU, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pw = nn.Conv2d(8, 8, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 16, 3, padding=1)
        self.act = nn.ReLU6()  # shared by two layers
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn0(self.stem(x)))
        y = self.act(self.bn1(self.dw(x)))
        x = x + self.bn2(self.pw(y))
        x = F.relu(self.conv3(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = SmallNet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_layers_folding_fusion_and_flags():
    net = make_net()
    inst = instrument(net, ActivationSite)
    assert inst.traced and list(inst.layers) == ["stem", "dw", "pw", "conv3", "fc"]
    L = inst.layers
    assert [L[n].folded_bn for n in L] == ["bn0", "bn1", "bn2", None, None]
    assert [L[n].activation for n in L] == ["relu6", "relu6", None, "relu", None]
    assert [L[n].signed for n in L] == [False, False, True, False, True]
    assert [n for n in L if L[n].first] == ["stem"] and [n for n in L if L[n].classifier] == ["fc"]
    assert L["dw"].input_layer == "stem" and L["pw"].input_layer == "dw" and L["conv3"].input_layer is None
    # the BN modules are gone from the instrumented graph, the original model is untouched
    assert not any(isinstance(m, nn.BatchNorm2d) for m in inst.model.modules())
    assert isinstance(net.bn0, nn.BatchNorm2d) and net.stem.bias is None


def test_folding_preserves_fp32_outputs():
    net = make_net(1)
    inst = instrument(net, ActivationSite)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref, out = net(x), inst(x)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert inst.modules["stem"].bias is not None  # created by folding


def test_sites_see_pre_activation_values_and_output_the_activation():
    net = make_net(2)
    inst = instrument(net, ActivationSite)
    x = torch.randn(2, 3, 16, 16)
    got = capture_fp32(inst, [x], num_images=2, layers=["stem", "pw"])
    with torch.no_grad():
        stem_pre = F.conv2d(x, inst.modules["stem"].weight, inst.modules["stem"].bias, stride=2, padding=1)
    assert torch.allclose(got["stem"].activation, stem_pre.clamp(0, 6), atol=1e-6)
    assert got["stem"].activation.min() >= 0 and got["pw"].activation.min() < 0
    stats = calibrate(inst, [x], progress=False)
    assert float(stats["stem"].tensor_view().min) < 0  # statistics of the values before the ReLU6
    assert float(stats["stem"].tensor_view().min) == pytest.approx(float(stem_pre.min()), rel=1e-6)


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return self.conv(x)
        return -self.conv(x)


class WithOpaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.block = Untraceable()
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.a(x))
        x = self.block(x)
        return self.fc(x.mean((2, 3)))


def test_untraceable_submodule_is_opaque_and_still_instrumented():
    torch.manual_seed(0)
    net = WithOpaque().eval()
    inst = instrument(net, ActivationSite)
    assert inst.traced and "block" in inst.opaque
    assert set(inst.layers) == {"a", "fc", "block.conv"}
    assert inst.layers["block.conv"].via_hook and inst.layers["block.conv"].signed
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(inst(x), net(x), atol=1e-6)
    stats = calibrate(inst, [x], progress=False)
    assert stats["block.conv"].n_batches == 1


class RootUntraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for _ in range(int(x.abs().sum() > 0) + 1):
            x = x * 1.0
        return self.fc(self.conv(x).mean((2, 3)))


def test_untraceable_root_falls_back_to_hooks():
    torch.manual_seed(0)
    net = RootUntraceable().eval()
    inst = instrument(net, ActivationSite)
    assert not inst.traced and list(inst.layers) == ["conv", "fc"]
    assert inst.layers["conv"].first and inst.layers["fc"].classifier
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(inst(x), net(x))


def test_model_without_layers_is_a_clear_error():
    with pytest.raises(ModelError, match="no Conv1d/Conv2d/Conv3d or Linear layer"):
        instrument(nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1)), ActivationSite)
    with pytest.raises(ModelError, match="nn.Module"):
        instrument(lambda x: x, ActivationSite)  # type: ignore[arg-type]


def test_nan_in_an_activation_names_the_layer():
    net = make_net(3)
    with torch.no_grad():
        net.pw.weight[0, 0, 0, 0] = float("nan")
    inst = instrument(net, ActivationSite)
    x = torch.randn(2, 3, 16, 16)
    with pytest.raises(CalibrationError, match="layer pw"):
        calibrate(inst, [x], progress=False)
    with torch.no_grad():
        out = inst(x)
    with pytest.raises(CalibrationError, match="layer pw: its output holds"):
        check_finite_logits(inst, x, out)
    with pytest.raises(QuantError, match="input images"):
        check_finite_logits(inst, torch.full_like(x, float("inf")), out)
