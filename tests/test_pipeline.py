"""Simulated quantized inference on small synthetic CNNs: config, statistics, quantizers, export, metrics."""

from __future__ import annotations


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quant.calibration import ModelStatistics, calibrate
from quant.capture import ActivationSite
from quant.errors import CalibrationError, QuantError
from quant.evaluation import FidelityMeter, evaluate
from quant.graph import instrument
from quant.images import Batch
from quant.act_quantizers import ActQuantizer
from quant.config import QuantConfig
from quant.export import quantized_tensors
from quant.preparation import prepare
from quant.quantizer import quant_params, quantize


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.b2 = nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 20)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.b1(self.c1(x)))
        x = F.relu6(self.b2(self.c2(x)))
        x = self.c3(x)
        return self.fc(x.mean((2, 3)))


def make_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = Net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.8, 1.5)
                m.bias.uniform_(0.0, 0.5)
    return net.eval()


def images(n: int = 16, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g)


CALIBRATION_SEED = 101  # calibration images are never the evaluated ones


def run(cfg: QuantConfig, x: torch.Tensor, net: nn.Module | None = None, **kw):
    """Prepare on calibration images disjoint from ``x`` (same distribution), evaluate on ``x``."""
    net = net or make_net()
    qm = prepare(net, cfg, calibration=[images(16, seed=CALIBRATION_SEED)], progress=False, **kw)
    return qm, evaluate(qm, [x[:8], x[8:]], progress=False)


def test_config_validation():
    assert QuantConfig(bit_alloc="weights,activations").bit_alloc == ("weights", "activations")
    assert QuantConfig(bin_alloc="a", abits=5.3).bin_alloc == ("activations",)
    with pytest.raises(QuantError, match="fractional"):
        QuantConfig(abits=5.3)
    with pytest.raises(QuantError, match="both"):
        QuantConfig(bit_alloc="weights", bin_alloc="weights")
    with pytest.raises(QuantError, match="clipping method"):
        QuantConfig(clip="nope")
    with pytest.raises(QuantError, match="stats_mode"):
        QuantConfig(stats_mode="sometimes")
    with pytest.raises(QuantError, match="target"):
        QuantConfig(bit_alloc="gradients")
    assert "W4A4" in QuantConfig().describe()


@pytest.mark.parametrize("mode", ["dynamic", "offline"])
def test_16_bits_with_every_method_off_is_faithful(mode):
    x = images()
    cfg = QuantConfig(wbits=16, abits=16, first_layer_wbits="same", classifier_bits="same", classifier_output_bits="same",
                      stats_mode=mode)
    qm, res = run(cfg, x)
    # offline: ranges from 16 other images clip the rare extremes of these (16-bit rounding alone is ~90 dB per
    # layer, measured 35-47 dB with the clipping); dynamic: no clipping
    floor, act_floor = (50, 30) if mode == "offline" else (60, 60)
    assert res.top1_agreement == 1.0 and res.top5_overlap == 1.0
    assert res.kl_divergence < 1e-6 and res.logit_sqnr_db > floor
    assert all(r.act_sqnr_db > act_floor and r.weight_sqnr_db > 70 for r in res.per_layer)
    assert res.num_images == 16 and res.top1 is None


def test_fewer_bits_lose_fidelity():
    x = images()
    _, r8 = run(QuantConfig(wbits=8, abits=8), x)
    _, r3 = run(QuantConfig(wbits=3, abits=3, first_layer_wbits="same", classifier_bits="same"), x)
    assert r8.logit_sqnr_db > r3.logit_sqnr_db + 10
    assert r8.kl_divergence < r3.kl_divergence
    for a, b in zip(r8.per_layer, r3.per_layer):
        assert a.weight_sqnr_db > b.weight_sqnr_db


def test_first_layer_and_classifier_stay_at_8_bits_by_default():
    qm, _ = run(QuantConfig(wbits=4, abits=4), images())
    bits = {n: lq.weight_bits for n, lq in qm.layers.items()}
    assert bits == {"c1": 8.0, "c2": 4.0, "c3": 4.0, "fc": 8.0}
    assert qm.layers["fc"].act_bits is None and qm.layers["c2"].act_bits == 4.0  # the logits stay FP32
    qm, _ = run(QuantConfig(wbits=4, abits=4, first_layer_wbits="same", classifier_bits="same"), images())
    assert all(lq.weight_bits == 4.0 for lq in qm.layers.values())


def _logits_and_classifier_output(qm, x):
    """The quantized model's logits and the classifier module's own output in the same pass."""
    seen = []
    h = qm.quant.modules["fc"].register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
    try:
        with torch.no_grad():
            out = qm(x)
    finally:
        h.remove()
    return out, seen[0]


def test_logits_stay_fp32_by_default_and_the_option_quantizes_them():
    x = images()
    qm, _ = run(QuantConfig(wbits=4, abits=4), x)
    assert qm.sites["fc"].quantizer is None and qm.layers["fc"].act_bits is None
    assert qm.layers["fc"].weight_bits == 8.0  # --classifier-bits is the weights' alone
    assert "classifier=W8AFP" in qm.config.describe()
    out, fc = _logits_and_classifier_output(qm, x)
    assert torch.equal(out, fc)  # the network's output is the classifier's FP32 output, untouched
    assert quantized_tensors(qm, [x], num_images=len(x))["fc"].activation is None  # nothing to code

    q8, _ = run(QuantConfig(wbits=4, abits=4, classifier_output_bits=8), x)
    p = q8.layers["fc"].act_params
    assert q8.layers["fc"].act_bits == 8.0 and p.axis is None and int(p.levels) == 256
    out, fc = _logits_and_classifier_output(q8, x)
    lo, hi = float(fc.min()), float(fc.max())
    assert lo < 0 < hi
    # per-tensor min/max over the calibration logits: the evaluated logits land on that 8-bit grid
    assert torch.equal(out, ActQuantizer(p, 2)(fc))
    assert not torch.equal(out, fc) and torch.equal(torch.round(out / p.scale) * p.scale, out)

    same, _ = run(QuantConfig(wbits=4, abits=4, clip="aciq-laplace", classifier_output_bits="same"), x)
    assert same.layers["fc"].act_bits == 4.0 and same.layers["fc"].act_spec.clip == "aciq-laplace"
    with pytest.raises(QuantError, match="classifier_output_bits"):
        QuantConfig(classifier_output_bits=0)


def test_classifier_output_bits_from_the_command_line():
    import argparse

    from analysis.cli.evaluate import add_config_arguments, config_from_args

    def cfg(*argv):
        p = argparse.ArgumentParser()
        add_config_arguments(p)
        return config_from_args(p.parse_args(["--recipe", "paper", *argv]))

    assert cfg().classifier_output_bits is None and cfg().classifier_bits == 8
    assert cfg("--classifier-output-bits", "8").classifier_output_bits == 8
    assert cfg("--classifier-output-bits", "same").classifier_output_bits == "same"
    assert cfg("--classifier-output-bits", "fp", "--classifier-bits", "6").classifier_output_bits is None
    assert cfg("--classifier-bits", "6").classifier_bits == 6 and cfg("--classifier-bits", "6").classifier_output_bits is None


def test_activation_quantizer_matches_quantize_bit_for_bit():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 5, 5) * torch.linspace(0.1, 3.0, 6).view(1, 6, 1, 1)
    lo, hi = x.amin((0, 2, 3)) * 0.7, x.amax((0, 2, 3)) * 0.6
    levels = torch.tensor([2, 3, 16, 39, 1, 256])
    for axis, a, b, lv in ((1, lo, hi, levels), (None, float(lo.min()), float(hi.max()), 15)):
        ref = quantize(x, a, b, lv, axis=axis)
        aq = ActQuantizer(quant_params(a, b, lv, axis=axis, n_channels=6 if axis else None), 4)
        assert torch.equal(aq(x), ref.dequantize())
        assert torch.equal(aq.quantize(x).codes, ref.codes)
        y = x.clone()
        assert torch.equal(aq(y, inplace=True), ref.dequantize())


def test_offline_statistics_roundtrip_through_a_file(tmp_path):
    x = images()
    net = make_net()
    stats = calibrate(instrument(net, ActivationSite), [x], model_name="net", progress=False)
    path = stats.save(tmp_path / "stats.npz")
    loaded = ModelStatistics.load(path)
    assert list(loaded.layers) == ["c1", "c2", "c3", "fc"] and loaded.model == "net"
    cfg = QuantConfig(clip="aciq-laplace", stats_mode="offline")
    a = prepare(net, cfg, stats=stats, progress=False)
    b = prepare(net, cfg, stats=loaded, progress=False)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    other = ModelStatistics(layers={"c1": loaded["c1"]})
    with pytest.raises(CalibrationError, match="lack 3 layer"):
        prepare(net, cfg, stats=other, progress=False)
    with pytest.raises(CalibrationError, match="needs statistics"):
        prepare(net, cfg, progress=False)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(CalibrationError):
        ModelStatistics.load(tmp_path / "junk.npz")


def test_prepare_leaves_the_model_unchanged():
    net = make_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    run(QuantConfig(wbits=2, abits=2, bias_correction="both"), images(), net=net)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_bit_allocation_meets_the_mean_and_varies_per_channel():
    qm, _ = run(QuantConfig(wbits=4, abits=4, clip="aciq-laplace", bit_alloc="weights,activations",
                            stats_mode="offline"), images())
    for name in ("c2", "c3"):
        w = qm.layers[name].weight.params.bits
        assert float(w.mean()) == pytest.approx(4.0)
        a = qm.layers[name].act_params.bits if name == "c2" else None
        if a is not None:
            assert float(a.mean()) == pytest.approx(4.0) and len(set(a.tolist())) > 1


def test_bin_allocation_with_fractional_target():
    qm, res = run(QuantConfig(wbits=8, abits=5.3, bin_alloc="activations", clip="aciq-laplace",
                              stats_mode="offline"), images())
    levels = qm.layers["c2"].act_params.levels
    assert int(levels.sum()) == round(16 * 2**5.3)
    assert res.kl_divergence < 0.05


def test_bias_correction_restores_channel_means():
    x = images()
    net = make_net()
    fp = instrument(net, ActivationSite).modules["c3"].weight.detach()
    qm, _ = run(QuantConfig(wbits=3, abits=None, bias_correction="mean", bias_correction_form="reference",
                            first_layer_wbits="same", classifier_bits="same"), x, net=net)
    w = qm.quant.modules["c3"].weight.detach()
    plain = qm.layers["c3"].weight.dequantize()
    assert torch.allclose(w.mean((1, 2, 3)), fp.mean((1, 2, 3)), atol=1e-6)
    assert not torch.allclose(plain.mean((1, 2, 3)), fp.mean((1, 2, 3)), atol=1e-6)


def test_quantized_tensors_are_the_codes_of_the_run():
    x = images(6)
    qm = prepare(make_net(), QuantConfig(clip="aciq-laplace", stats_mode="offline"), calibration=[x], progress=False)
    tensors = quantized_tensors(qm, [x[:4], x[4:]], num_images=6, progress=False)
    assert list(tensors) == ["c1", "c2", "c3", "fc"]
    t = tensors["c2"]
    assert t.activation.codes.shape == (6, 16, 8, 8) and t.activation.params.axis == 1
    assert t.activation.codes.dtype == torch.uint8  # fused ReLU6: unsigned codes
    assert t.weight.codes.shape == (16, 1, 3, 3) and t.weight.params.axis == 0
    assert tensors["fc"].activation is None  # the logits are FP32: not a coded tensor
    # the codes dequantize to exactly what the quantized model computed
    sites = qm.sites
    from quant.capture import CodeRecorder

    sites["c2"].recorder = CodeRecorder(6)
    with torch.no_grad():
        qm(x)
    codes = sites["c2"].recorder.result()
    sites["c2"].recorder = None
    assert torch.equal(codes, t.activation.codes)
    assert torch.equal(qm.quant.modules["c3"].weight, tensors["c3"].weight.dequantize())
    lo, hi = t.activation.params.qmin.view(1, -1, 1, 1), t.activation.params.qmax.view(1, -1, 1, 1)
    c = t.activation.codes.to(torch.int64)
    assert bool(((c >= lo) & (c <= hi)).all())
    dyn = prepare(make_net(), QuantConfig(stats_mode="dynamic"), progress=False)
    with pytest.raises(QuantError, match="offline"):
        quantized_tensors(dyn, [x], num_images=6, progress=False)
    assert quantized_tensors(dyn, [], num_images=0, activations=False)["c1"].weight is not None


def test_fidelity_meter_on_known_logits():
    ref = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    quant = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    m = FidelityMeter()
    m.update(ref, quant, torch.tensor([0, 0]))
    s = m.summary()
    assert s["top1_agreement"] == 0.5
    assert s["top5_overlap"] == pytest.approx((1.0 + 4 / 5) / 2)
    p = torch.softmax(ref[1].double(), 0)
    kl1 = float((p * (torch.log(p) - torch.log_softmax(quant[1].double(), 0))).sum())
    assert s["kl_divergence"] == pytest.approx(kl1 / 2)
    assert s["top1"] == 1.0 and s["fp32_top1"] == 0.5 and s["top5"] == 1.0 and s["fp32_top5"] == 0.5


def test_evaluate_with_labels_and_json():
    # labels fixed in advance (not the FP32 model's answers); expected accuracies from the unfolded original
    # network and from the quantized network's own logits, counted here
    x = images(24, seed=3)
    labels = torch.arange(24) % 20
    net = make_net()
    qm = prepare(net, QuantConfig(wbits=4, abits=4), calibration=[images(16, seed=CALIBRATION_SEED)], progress=False)
    batches = [Batch(x[:10], labels[:10], [str(i) for i in range(10)], ["bad.jpg"]),
               Batch(x[10:], labels[10:], [str(i) for i in range(10, 24)], [])]
    res = evaluate(qm, batches, progress=False)
    with torch.no_grad():
        fp, q = net(x), qm(x)
    top5 = lambda z: (z.topk(5, 1).indices == labels[:, None]).any(1).float().mean().item()  # noqa: E731
    assert res.fp32_top1 == pytest.approx((fp.argmax(1) == labels).float().mean().item())
    assert res.top1 == pytest.approx((q.argmax(1) == labels).float().mean().item())
    assert res.fp32_top5 == pytest.approx(top5(fp)) and res.top5 == pytest.approx(top5(q))
    assert res.top1_agreement == pytest.approx((fp.argmax(1) == q.argmax(1)).float().mean().item())
    assert 0 < res.fp32_top1 < 1  # the fixed labels agree with the model on some images only
    d = res.to_dict()
    assert d["num_skipped"] == 1 and d["num_images"] == 24 and d["per_layer"][0]["name"] == "c1"
    assert {"top1_agreement", "top1_agreement_ci", "top5_overlap", "kl_divergence", "top1", "top5", "timing"} <= set(d)


class Identity4(nn.Module):
    """A 1x1 conv that passes 4 input channels through unchanged (no BN, no ReLU), then a classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1, bias=False)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(4).view(4, 4, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def shaped_channels(n: int, seed: int) -> torch.Tensor:
    """Channels whose b and σ rank differently: sparse spikes, uniform, Gaussian, Laplace."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, 1, 16, 16)
    spikes = (torch.rand(shape, generator=g) < 0.01).float() * 40.0  # σ ≈ 4, b ≈ 0.8
    uniform = (torch.rand(shape, generator=g) * 2 - 1) * 4.0  # σ ≈ 2.3, b = 2
    gauss = torch.randn(shape, generator=g) * 0.3
    lap = torch.distributions.Laplace(0.0, 0.05).sample(shape)
    return torch.cat([spikes, uniform, gauss, lap], dim=1)


def _grid_width(params) -> torch.Tensor:
    """The width of the range each channel's grid covers (0 included), from its quantization parameters."""
    return (params.scale.double() * (params.qmax - params.qmin).double()).reshape(-1)


@pytest.mark.parametrize("clip", ["aciq-laplace", "aciq-gauss"])
def test_activation_bits_are_allocate_bits_of_the_range_each_grid_covers(clip):
    from quant.allocation import allocate_bits

    torch.manual_seed(0)
    net = Identity4().eval()
    cfg = QuantConfig(wbits=8, abits=3, clip=clip, bit_alloc="activations", first_layer_abits="same")
    qm = prepare(net, cfg, calibration=[shaped_channels(32, seed=1)])
    # the ranges the grids cover at the mean bit width, read from the run without allocation
    flat = prepare(net, QuantConfig(wbits=8, abits=3, clip=clip, first_layer_abits="same"), stats=qm.stats)
    width = _grid_width(flat.layers["conv"].act_params)
    expected = allocate_bits(width, 3, min_bits=1, max_bits=cfg.alloc_max_bits)  # no channel here is constant
    bits = qm.layers["conv"].act_params.bits
    assert torch.equal(bits.round().to(torch.int64), expected) and torch.equal(bits, bits.round())
    # the test tells the width from b and σ, and from a reversed channel order
    v = qm.stats["conv"].channel_view()
    assert not torch.equal(allocate_bits(v.b, 3, min_bits=1), expected) or not torch.equal(
        allocate_bits(v.std, 3, min_bits=1), expected)
    assert not torch.equal(expected.flip(0), expected)
    assert bits[width.argmax()] == bits.max() > bits.min() == bits[width.argmin()]


class Relu6Channels(nn.Module):
    """A 1x1 conv with a fused ReLU6 whose 4 channels are: never positive, saturated at 6 on every position, a
    low-spread channel active on every position, and a wide one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([1.0, 0.05, 0.02, 3.0]).view(4, 1, 1, 1))
            self.conv.bias.copy_(torch.tensor([-50.0, 9.0, 2.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu6(self.conv(x)).mean((2, 3)))


def test_allocation_on_fused_relu6_channels_uses_the_post_activation_range():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    cfg = QuantConfig(wbits=8, abits=2, clip="aciq-laplace", bit_alloc="activations", first_layer_abits="same")
    qm = prepare(Relu6Channels().eval(), cfg, calibration=[x])
    bits = qm.layers["conv"].act_params.bits.round().to(torch.int64).tolist()
    assert sum(bits) == 4 * 2  # the quota is exact
    never, saturated, low, wide = bits
    assert never == 0  # constant (0) on every calibration image: no levels wasted on it
    assert saturated >= 1 and low >= 1  # active everywhere: never made constant
    assert wide == max(bits)
    # the saturated channel still outputs 6, not 0, and the low-spread one is not flattened to 0
    with torch.no_grad():
        site_out = {}
        h = qm.sites["conv"].register_forward_hook(lambda m, i, o: site_out.setdefault("y", o.clone()))
        qm(torch.randn(4, 1, 8, 8))
        h.remove()
    y = site_out["y"]
    assert torch.allclose(y[:, 1], torch.full_like(y[:, 1], 6.0), atol=1e-5)
    assert bool((y[:, 2] > 0).all())


def test_weight_bits_are_allocate_bits_of_the_weight_std():
    from quant.allocation import allocate_bits

    net = make_net()
    with torch.no_grad():  # rows of very different spread, so that the allocation is not uniform
        net.c3.weight.mul_(torch.logspace(-1.5, 1.5, 24).view(24, 1, 1, 1)[torch.randperm(24)])
    qm, _ = run(QuantConfig(wbits=4, abits=None, bit_alloc="weights"), images(), net=net)
    for name in ("c3",):
        w = qm.floating[name].weight.detach().double().reshape(qm.floating[name].weight.shape[0], -1)
        expected = allocate_bits(w.std(dim=1), 4)
        got = qm.layers[name].weight.params.bits
        assert torch.equal(got.round().to(torch.int64), expected), name
        sd = w.std(dim=1)
        assert got[sd.argmax()] == got.max() and got[sd.argmin()] == got.min()  # the order of the channels
        assert len(set(expected.tolist())) > 3
