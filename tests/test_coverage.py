"""Every conv/linear module that runs is quantized, or the run fails and names it.

Models whose convolutions subclass ``nn.Conv2d`` with their own ``forward`` (the static "same" padding of
EfficientNet ports and timm) were traced into, so their convolutions became functional calls: no layer was found
and a W4A4 run read as FP32. They are layers now; and a conv/linear module that runs where the pipeline cannot
quantize it (inside a module that runs as a whole) fails the run unless the user keeps it in FP32 by name.
"""

from __future__ import annotations

import json

import pytest
import torch

from analysis.cli import main
from quant import QuantConfig, evaluate, instrument, load_model, prepare, run_export
from quant.adaround import supported
from quant.capture import ActivationSite
from quant.equalization import equalization_pairs
from quant.errors import ModelError
from quant.graph import find_layers, has_own_forward
from quant.images import builtin_images, iter_batches

MODEL_FILE = '''
import math

import torch
import torch.nn.functional as F
from torch import nn

print("Loaded pretrained weights for the test networks")  # at import, as some model packages do


class Conv2dStaticSamePadding(nn.Conv2d):
    """TF 'SAME' padding for a fixed image size, applied in forward before F.conv2d (as EfficientNet ports do)."""

    def __init__(self, cin, cout, k, stride=1, groups=1, image_size=32):
        super().__init__(cin, cout, k, stride, padding=0, groups=groups, bias=False)
        pad = max((math.ceil(image_size / stride) - 1) * stride + k - image_size, 0)
        self.static_padding = nn.ZeroPad2d((pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))

    def forward(self, x):
        x = self.static_padding(x)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class SamePadNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Conv2dStaticSamePadding(3, 16, 3, stride=2, image_size=32)
        self.bn0 = nn.BatchNorm2d(16)
        self.dw = Conv2dStaticSamePadding(16, 16, 3, groups=16, image_size=16)
        self.bn1 = nn.BatchNorm2d(16)
        self.pw = Conv2dStaticSamePadding(16, 24, 1, image_size=16)
        self.bn2 = nn.BatchNorm2d(24)
        self.head = Conv2dStaticSamePadding(24, 32, 1, image_size=16)
        self.bn3 = nn.BatchNorm2d(32)
        self.act = nn.ReLU6()
        self.fc = nn.Linear(32, 100)

    def forward(self, x):
        x = self.act(self.bn0(self.stem(x)))
        x = self.act(self.bn1(self.dw(x)))
        x = self.bn2(self.pw(x))
        x = self.act(self.bn3(self.head(x)))
        return self.fc(x.mean((2, 3)))


class GatedConv(nn.Conv2d):
    """A convolution whose forward also runs a 1x1 gate convolution, a child the pipeline cannot reach."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, padding=k // 2)
        self.gate = nn.Conv2d(cout, cout, 1)

    def forward(self, x):
        y = super().forward(x)
        return y * torch.sigmoid(self.gate(y))


class GatedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = GatedConv(8, 8, 3)
        self.unused = nn.Linear(8, 8)  # never runs: no reason to fail
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.block(x))
        return self.fc(x.mean((2, 3)))


PREP = {"input_size": 32, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}


def samepad():
    torch.manual_seed(0)
    net = SamePadNet()
    # BatchNorm statistics from smooth random images (train-mode passes), so that features and classes differ
    # from image to image as in a trained network
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for _ in range(4):
            net(F.interpolate(torch.randn(32, 3, 4, 4), size=32, mode="bilinear", align_corners=False))
        net.fc.bias.zero_()
    print("Loaded pretrained weights for samepad")  # a user's function that prints while it builds the model
    return net.eval(), PREP


def gated():
    torch.manual_seed(0)
    return GatedNet().eval(), PREP
'''


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "convnets.py"
    path.write_text(MODEL_FILE)
    return path


@pytest.fixture(scope="module")
def samepad(model_file):
    return load_model(f"{model_file}:samepad")


def _batches(lm, n: int, split: str) -> list[torch.Tensor]:
    return [b.images for b in iter_batches(builtin_images(lm.preprocessing, n, split=split), 32)]


def test_conv_subclasses_with_their_own_forward_are_layers(samepad):
    model = samepad.model
    inst = instrument(model, ActivationSite)
    assert sorted(i.module_name for i in inst.layers.values()) == sorted(find_layers(model))  # all 5 of them
    L = inst.layers
    assert [L[n].own_forward for n in L] == [True, True, True, True, False]
    assert [L[n].folded_bn for n in L] == ["bn0", "bn1", "bn2", "bn3", None]  # BN folds into the leaf
    assert [L[n].activation for n in L] == ["relu6", "relu6", None, "relu6", None]  # ReLU6 fuses after it
    x = _batches(samepad, 8, "evaluation")[0]
    with torch.no_grad():  # the folded leaf (its own padding, the folded weight) computes the original function
        torch.testing.assert_close(inst(x), model(x), rtol=1e-4, atol=1e-5)
    assert inst.coverage().layers_quantized == inst.coverage().conv_linear_modules == 5
    # steps that need the convolution's geometry leave these layers alone (their padding is in their forward)
    assert equalization_pairs(inst) == []
    assert [supported(inst.modules[n]) for n in L] == [False, False, False, False, True]


def test_w4a4_on_same_padding_convolutions_is_not_fp32(samepad):
    calib = _batches(samepad, 32, "calibration")
    images = _batches(samepad, 64, "evaluation")
    hi = evaluate(prepare(samepad.model, QuantConfig(wbits=16, abits=16), calibration=calib), images)
    qm = prepare(samepad.model, QuantConfig(wbits=4, abits=4), calibration=calib)
    lo = evaluate(qm, images)
    assert [r.weight_bits for r in lo.per_layer] == [8.0, 4.0, 4.0, 4.0, 8.0]  # every convolution's weights
    assert all(r.act_bits is not None for r in lo.per_layer[:-1])  # and every feature map
    assert lo.layers_quantized == lo.conv_linear_modules == 5
    w = qm.quant.modules["dw"].weight
    assert torch.unique(w[0]).numel() <= 16  # the leaf runs with the 4-bit weights
    # the quantization is felt at the output: far from the 16-bit run (which keeps the decisions)
    assert hi.top1_agreement >= 0.9 and lo.top1_agreement < hi.top1_agreement
    assert lo.logit_sqnr_db < hi.logit_sqnr_db - 20


def test_a_module_that_escapes_fails_the_run_and_can_be_kept(model_file):
    lm = load_model(f"{model_file}:gated")
    calib = _batches(lm, 8, "calibration")
    assert has_own_forward(lm.model.block) and not has_own_forward(lm.model.block.gate)
    with pytest.raises(ModelError, match=r"1 conv/linear module\(s\) ran without being quantized: block\.gate"):
        prepare(lm.model, QuantConfig(), calibration=calib)  # the calibration pass finds it
    kept = prepare(lm.model, QuantConfig(keep_fp32=("block.gate",)), calibration=calib)
    res = evaluate(kept, _batches(lm, 8, "evaluation"))
    assert (res.layers_quantized, res.conv_linear_modules, res.kept_fp32) == (3, 4, ["block.gate"])
    with pytest.raises(ModelError, match="not a conv/linear module"):
        prepare(lm.model, QuantConfig(keep_fp32=("block.gat",)), calibration=calib)
    # an instrumented layer named by keep_fp32 stays FP32 too
    fp_stem = prepare(lm.model, QuantConfig(keep_fp32=("block.gate", "stem")), calibration=calib)
    assert fp_stem.layers["stem"].weight is None and fp_stem.layers["stem"].act_bits is None
    assert fp_stem.layers["block"].weight is not None
    # a weights-only export has no pass of its own: it runs one image to check
    with pytest.raises(ModelError, match="block.gate"):
        run_export(lm, QuantConfig(), activations=False)
    _, tensors = run_export(lm, QuantConfig(keep_fp32="block.gate"), activations=False)
    assert sorted(tensors) == ["block", "fc", "stem"]


class _Functional(torch.nn.Module):
    """A parent that computes with its convolution's weight instead of calling the module."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.skip = torch.nn.Conv2d(3, 8, 1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.skip.weight.shape[-1]  # reading a shape is no computation
        y = torch.nn.functional.conv2d(x, self.conv.weight, self.conv.bias, padding=k)
        return self.fc(torch.relu(y).mean((2, 3)))


def test_a_weight_used_by_a_functional_call_fails_at_instrumentation():
    net = _Functional().eval()
    with pytest.raises(ModelError, match=r"functional call on their weight.*: conv; .*--keep-fp32 conv\)"):
        instrument(net, ActivationSite)
    inst = instrument(net, ActivationSite, keep_fp32=("conv",))
    assert list(inst.layers) == ["fc"]
    with torch.no_grad():
        inst(torch.randn(2, 3, 8, 8))
    cov = inst.coverage()
    assert (cov.layers_quantized, cov.conv_linear_modules, cov.kept_fp32) == (1, 2, ("conv",))


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_counts_layers_and_names_what_escapes(model_file, capsys, tmp_path):
    spec = f"{model_file}:samepad"
    # the function prints while it builds the model: stdout stays one JSON document
    code, out, err = _run(capsys, "evaluate", "--model", spec, "--num-images", "16", "--num-calib", "16",
                          "--wbits", "4", "--abits", "4", "--json")
    doc = json.loads(out)
    assert code == 0 and "Loaded pretrained weights for samepad" in err
    assert doc["layers_quantized"] == doc["conv_linear_modules"] == 5 and len(doc["per_layer"]) == 5
    assert doc["kept_fp32"] == []
    code, out, _ = _run(capsys, "calibrate", "--model", spec, "--num-images", "8", "-o", str(tmp_path / "s.npz"),
                        "--json")
    doc = json.loads(out)
    assert code == 0 and doc["layers_quantized"] == doc["conv_linear_modules"] == 5

    spec = f"{model_file}:gated"
    code, out, err = _run(capsys, "evaluate", "--model", spec, "--num-images", "4", "--num-calib", "4")
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1
    assert "block.gate" in lines[0] and "--keep-fp32 block.gate" in lines[0]
    code, out, err = _run(capsys, "encode", "--model", spec, "-o", str(tmp_path / "w.hqt"))  # weights only
    assert code == 1 and "block.gate" in err and not (tmp_path / "w.hqt").exists()
    code, out, _ = _run(capsys, "evaluate", "--model", spec, "--num-images", "4", "--num-calib", "4",
                        "--keep-fp32", "block.gate", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["kept_fp32"] == ["block.gate"] and doc["config"]["keep_fp32"] == ["block.gate"]
    assert (doc["layers_quantized"], doc["conv_linear_modules"]) == (3, 4)
    code, out, err = _run(capsys, "evaluate", "--model", spec, "--keep-fp32", "nothing.here", "--num-images", "4")
    assert code == 1 and "nothing.here" in err and "not a conv/linear module" in err
