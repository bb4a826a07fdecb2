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
from quant.pipeline import ActQuantizer, QuantConfig, prepare, quantized_tensors
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


def run(cfg: QuantConfig, x: torch.Tensor, net: nn.Module | None = None, **kw):
    net = net or make_net()
    qm = prepare(net, cfg, calibration=[x], progress=False, **kw)
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
    cfg = QuantConfig(wbits=16, abits=16, first_layer_wbits=None, classifier_bits=None, stats_mode=mode)
    qm, res = run(cfg, x)
    assert res.top1_agreement == 1.0 and res.top5_overlap == 1.0
    assert res.kl_divergence < 1e-8 and res.logit_sqnr_db > 60
    assert all(r.act_sqnr_db > 60 and r.weight_sqnr_db > 70 for r in res.per_layer)
    assert res.num_images == 16 and res.top1 is None


def test_fewer_bits_lose_fidelity():
    x = images()
    _, r8 = run(QuantConfig(wbits=8, abits=8), x)
    _, r3 = run(QuantConfig(wbits=3, abits=3, first_layer_wbits=None, classifier_bits=None), x)
    assert r8.logit_sqnr_db > r3.logit_sqnr_db + 10
    assert r8.kl_divergence < r3.kl_divergence
    for a, b in zip(r8.per_layer, r3.per_layer):
        assert a.weight_sqnr_db > b.weight_sqnr_db


def test_first_layer_and_classifier_stay_at_8_bits_by_default():
    qm, _ = run(QuantConfig(wbits=4, abits=4), images())
    bits = {n: lq.weight_bits for n, lq in qm.layers.items()}
    assert bits == {"c1": 8.0, "c2": 4.0, "c3": 4.0, "fc": 8.0}
    assert qm.layers["fc"].act_bits == 8.0 and qm.layers["c2"].act_bits == 4.0
    qm, _ = run(QuantConfig(wbits=4, abits=4, first_layer_wbits=None, classifier_bits=None), images())
    assert all(lq.weight_bits == 4.0 for lq in qm.layers.values())


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
                            first_layer_wbits=None, classifier_bits=None), x, net=net)
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
    assert tensors["fc"].activation.params.axis is None
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
    x = images(8)
    qm = prepare(make_net(), QuantConfig(wbits=8, abits=8, stats_mode="dynamic"), progress=False)
    with torch.no_grad():
        labels = qm.reference(x).argmax(1)
    res = evaluate(qm, [Batch(x, labels, [str(i) for i in range(8)], ["bad.jpg"])], progress=False)
    assert res.fp32_top1 == 1.0 and res.top1 == res.top1_agreement
    d = res.to_dict()
    assert d["num_skipped"] == 1 and d["per_layer"][0]["name"] == "c1"
    assert {"top1_agreement", "top5_overlap", "kl_divergence", "top1", "top5", "timing"} <= set(d)
