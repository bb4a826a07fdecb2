"""Recipes and the methods beyond the paper: equalization, AdaRound, empirical bias correction (small nets)."""

from __future__ import annotations

import argparse
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from quant.adaround import (AdaRoundSettings, _group_weight, _layer_out, nearest_up, output_grid, rounding_codes,
                            sample_patches, sample_positions)
from quant.calibration import ModelStatistics, calibrate
from quant.capture import ActivationSite
from quant.equalization import absorb, absorption_shifts, equalization_pairs, equalize
from quant.errors import CalibrationError, QuantError
from quant.evaluation import evaluate
from quant.graph import instrument
from quant.config import QuantConfig
from quant.preparation import adaround_key, clip_key, prepare
from quant.quantizer import quantize
from quant.recipes import ADAROUND_ITERATIONS, RECIPES, check_settings, recipe_config


class Block(nn.Module):
    """expand 1x1 (BN, ReLU6) -> depthwise 3x3 (BN, ReLU6) -> project 1x1 (BN) -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.b0 = nn.BatchNorm2d(8)
        self.expand = nn.Conv2d(8, 16, 1, bias=False)
        self.b1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.b2 = nn.BatchNorm2d(16)
        self.project = nn.Conv2d(16, 8, 1, bias=False)
        self.b3 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.b0(self.stem(x)))
        x = F.relu6(self.b1(self.expand(x)))
        x = F.relu6(self.b2(self.dw(x)))
        x = self.b3(self.project(x))
        return self.fc(x.mean((2, 3)))


def make_block(seed: int = 0, high_bias: bool = False) -> nn.Module:
    torch.manual_seed(seed)
    net = Block()
    with torch.no_grad():
        # unbalanced channel ranges: what equalization is for
        net.dw.weight.mul_(torch.logspace(-1.5, 1.5, 16).view(16, 1, 1, 1))
        for bn in (net.b0, net.b1, net.b2, net.b3):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(0.0, 0.5)
        if high_bias:  # depthwise channels whose BN output stays far above 0: absorbable
            net.b2.bias[:8] = 3.0
            net.b2.weight[:8] = 0.2
    return net.eval()


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- recipes
def test_recipes_are_presets_that_fields_override():
    assert set(RECIPES) == {"naive", "paper", "best"}
    naive = recipe_config("naive", 4, 4)
    assert naive == QuantConfig(wbits=4, abits=4)  # the naive recipe is the plain default configuration
    paper = recipe_config("paper", 4, 4)
    assert (paper.clip, paper.bit_alloc, paper.bias_correction) == ("aciq-laplace", ("weights", "activations"), "mean")
    best = recipe_config("best", 4, 8)
    assert best.equalize and best.adaround > 0 and best.bias_correction == "empirical"
    assert recipe_config("best", 4, 8, equalize=False, adaround=0).equalize is False
    assert recipe_config("paper", 8, 4, bias_correction=None).bias_correction is None
    for cfg in (naive, paper, best):  # the first layer and the classifier's weights at 8 bits, the logits FP32
        assert cfg.first_layer_wbits == 8 and cfg.classifier_bits == 8 and cfg.classifier_output_bits is None
    with pytest.raises(QuantError, match="unknown recipe"):
        recipe_config("fastest")
    with pytest.raises(QuantError, match="wbits"):
        check_settings(recipe="best", wbits=0)


def _cli_config(*argv: str):
    from analysis.cli.evaluate import add_config_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_config_arguments(p)
    return config_from_args(p.parse_args(list(argv)))


def test_cli_flags_compose_with_the_recipe():
    assert _cli_config() == recipe_config("naive", 4, 4)
    assert _cli_config("--recipe", "paper") == recipe_config("paper", 4, 4)
    cfg = _cli_config("--recipe", "best", "--wbits", "8", "--abits", "4", "--no-equalize", "--adaround", "0")
    assert cfg == recipe_config("best", 8, 4, equalize=False, adaround=0)
    cfg = _cli_config("--recipe", "paper", "--bias-correction", "none", "--bit-alloc", "none", "--equalize")
    assert cfg.bias_correction is None and cfg.bit_alloc == () and cfg.equalize and cfg.clip == "aciq-laplace"
    cfg = _cli_config("--adaround", "--bias-correction", "empirical", "--clip", "aciq-gauss")
    assert cfg.adaround == ADAROUND_ITERATIONS and cfg.bias_correction == "empirical" and cfg.clip == "aciq-gauss"
    cfg = _cli_config("--first-layer-bits", "fp", "--classifier-bits", "same")
    assert cfg.first_layer_wbits is None and cfg.classifier_bits == "same"


def test_first_layer_and_classifier_fp_same_and_bits():
    x = images(16, 1)
    net = make_block()
    fp = prepare(net, QuantConfig(wbits=4, abits=4, first_layer_wbits=None, classifier_bits=None), calibration=[x])
    same = prepare(net, QuantConfig(wbits=4, abits=4, first_layer_wbits="same", classifier_bits="same",
                                    classifier_output_bits="same"), calibration=[x])
    eight = prepare(net, QuantConfig(wbits=4, abits=4), calibration=[x])
    assert fp.layers["stem"].weight is None and fp.layers["fc"].weight is None and fp.layers["fc"].act_bits is None
    assert fp.layers["stem"].act_bits == 4.0  # --first-layer-bits is about weights; the output follows --abits
    assert same.layers["stem"].weight_bits == 4.0 and same.layers["fc"].weight_bits == 4.0
    assert same.layers["fc"].act_bits == 4.0
    assert eight.layers["stem"].weight_bits == 8.0 and eight.layers["fc"].weight_bits == 8.0
    assert eight.layers["fc"].act_bits is None and eight.layers["dw"].weight_bits == 4.0  # FP32 logits
    with torch.no_grad():  # FP32 ends leave those layers exactly as the float network computes them
        assert torch.equal(fp.quant.modules["fc"].weight, fp.floating["fc"].weight)


# ----------------------------------------------------------------------------------------------- equalization
def _ranges(inst, a: str, b: str) -> tuple[torch.Tensor, torch.Tensor]:
    w1 = inst.modules[a].weight.detach()
    w2 = inst.modules[b].weight.detach()
    r1 = w1.abs().reshape(w1.shape[0], -1).amax(1)
    g = inst.modules[b].groups
    if g == 1:
        r2 = w2.abs().transpose(0, 1).reshape(w2.shape[1], -1).amax(1)
    else:  # depthwise: input channel c is output channel c's kernel
        r2 = w2.abs().reshape(w2.shape[0], -1).amax(1)
    return r1, r2


def test_equalization_is_exact_through_relu6_and_balances_ranges():
    net = make_block()
    x = images(8, 2) * 3  # large inputs: many ReLU6 channels saturate at 6, which scaling must respect
    inst = instrument(net, ActivationSite)
    with torch.no_grad():
        y0 = inst(x)
    pairs = equalization_pairs(inst)
    assert pairs == [("stem", "expand"), ("expand", "dw"), ("dw", "project")]
    before = {p: _ranges(inst, *p) for p in pairs}
    res = equalize(inst)
    with torch.no_grad():
        y1 = inst(x)
    assert torch.allclose(y0, y1, rtol=1e-4, atol=1e-5)  # the same function
    for p in pairs:
        r1, r2 = _ranges(inst, *p)
        assert torch.allclose(r1, r2, rtol=1e-3)  # DFQ: both layers' channel ranges equal sqrt(r1·r2)
    r1, r2 = before[("dw", "project")]
    assert float((r1 / r1.mean()).std()) > 1.0  # it was unbalanced
    s = res.scales[("dw", "project")]
    assert torch.allclose(inst.sites["dw"].act_hi.double(), 6.0 / s, rtol=1e-5)  # the ReLU6 bound moved
    # replacing the per-channel bound by 6 (what plain scaling through ReLU6 would do) changes the output
    inst.sites["dw"].set_activation_bounds(None, None)
    with torch.no_grad():
        assert not torch.allclose(y0, inst(x), rtol=1e-3, atol=1e-3)


def test_high_bias_absorption_moves_what_calibration_shows_and_keeps_the_function():
    net = make_block(high_bias=True)
    inst, ref = instrument(net, ActivationSite), instrument(net, ActivationSite)
    equalize(inst)
    equalize(ref)
    x = images(16, 3)
    pre = calibrate(inst, [x], histogram=False, tensor_stats=False)
    shifts = absorption_shifts(inst, {n: st.channel_view() for n, st in pre.layers.items()})
    # c: the estimated lower end of each ReLU6 channel's pre-activation values where it is above 0 (the support end
    # from the two smallest per-image minima: m1 - 4 (m2 - m1)), at most the channel's upper end
    v = pre["dw"].channel_view()
    smallest = v.min.double()
    low = smallest - 4 * (torch.as_tensor(pre["dw"].to_dict()["sample_min"])[:, 1] - smallest)  # support, k = 4
    expect = torch.minimum(torch.clamp(low, min=0), inst.sites["dw"].act_hi.double())
    assert torch.allclose(shifts["dw"], expect)
    assert bool((shifts["dw"][:8] > 0).all())  # the high-bias channels stay above 0 on every image
    assert "expand" not in shifts  # the depthwise layer after it pads its input: not exact, not absorbed
    absorb(inst, shifts)
    assert not torch.equal(inst.modules["dw"].bias, ref.modules["dw"].bias)
    # the same function for every input: also where the pre-activations fall below c (far outside the calibration
    # data), which DFQ's beta - 3 gamma rule did not keep
    with torch.no_grad():
        for xx in (x, images(8, 5) * 10, -images(8, 6) * 10, images(8, 7) * 0.01):
            assert torch.allclose(ref(xx), inst(xx), rtol=1e-4, atol=1e-4)


def test_statistics_must_match_the_equalization_setting():
    x = images(16, 4)
    net = make_block()
    qm = prepare(net, QuantConfig(wbits=8, abits=8, equalize=True), calibration=[x])
    assert qm.stats.extra["equalized"] is True and qm.stats.extra["absorbed"]
    # the statistics reproduce the absorption without images
    again = prepare(net, QuantConfig(wbits=8, abits=8, equalize=True), stats=qm.stats)
    assert all(torch.equal(again.floating[n].bias, qm.floating[n].bias) for n in qm.layers)
    with pytest.raises(CalibrationError, match="equalization"):
        prepare(net, QuantConfig(wbits=8, abits=8), stats=qm.stats)
    # the reference is the original network, the float network the equalized one: the same function
    with torch.no_grad():
        assert torch.allclose(qm.reference(x), qm.float_forward(x), rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------- AdaRound
@pytest.mark.parametrize("conv,size", [
    (nn.Conv2d(8, 6, 3, stride=2, padding=1), 11),
    (nn.Conv2d(8, 8, 5, padding=2, groups=8), 9),
    (nn.Conv2d(8, 4, 3, padding=(1, 0), dilation=(1, 2), groups=2), 12),
    (nn.Conv2d(8, 16, 1), 7),
])
def test_sampled_patches_reproduce_the_convolution(conv, size):
    x = torch.randn(3, 8, size, size)
    ho, wo = output_grid(conv, size, size)
    with torch.no_grad():
        assert conv(x).shape[2:] == (ho, wo)
    patches, idx = sample_patches(conv, x, sample_positions(3, ho * wo, 10, torch.Generator().manual_seed(0)))
    with torch.no_grad():
        y = conv(x)
        got = _layer_out(patches, _group_weight(conv, conv.weight), conv.bias)
    assert torch.allclose(got, y[idx[:, 0], :, idx[:, 1], idx[:, 2]], atol=1e-5)
    assert len({tuple(r) for r in idx.tolist()}) == idx.shape[0]  # distinct positions


def test_adaround_finds_the_best_rounding_of_a_small_layer():
    # a 2 x 4 linear layer: 2^4 roundings per output, searched exhaustively for the expectation
    torch.manual_seed(0)
    lin = nn.Linear(4, 2)
    x = torch.randn(256, 4) * torch.tensor([1.0, 3.0, 0.5, 2.0])
    w = lin.weight.detach()
    qt = quantize(w, w.amin(1), w.amax(1), 4, axis=0)  # 2 bits per weight: rounding matters

    def loss(up: torch.Tensor) -> float:
        wh = rounding_codes(w, qt, up).dequantize()
        return float(((x @ w.t() - x @ wh.t()) ** 2).sum(1).mean())

    best = min(loss(torch.tensor([list(a), list(b)], dtype=torch.bool))
               for a in itertools.product([False, True], repeat=4) for b in itertools.product([False, True], repeat=4))
    from quant.adaround import _learn

    up, (l_rtn, l_ada) = _learn(w, qt, lin, None, x[:, None, :], x[:, None, :], lambda t: t,
                                AdaRoundSettings(iterations=300, batch=256, lr=3e-2), torch.Generator().manual_seed(0))
    assert l_rtn == pytest.approx(loss(torch.round(w / qt.params.scale[:, None] - torch.floor(
        w / qt.params.scale[:, None])).bool()), rel=1e-4)
    assert l_ada == pytest.approx(loss(up), rel=1e-4)
    assert l_ada <= l_rtn and l_ada <= best * 1.05
    codes = rounding_codes(w, qt, up).codes.to(torch.int64)
    floor = torch.floor(w / qt.params.scale[:, None]).to(torch.int64)
    assert bool(((codes - floor) >= 0).all() and ((codes - floor) <= 1).all())
    # the mask that gives back round to nearest (the fall-back of a layer that loses on held-out images)
    assert torch.equal(rounding_codes(w, qt, nearest_up(w, qt)).codes, qt.codes)


def test_adaround_improves_the_network_and_is_reused_from_the_statistics_file(tmp_path):
    net = make_block()
    calib, test = images(32, 5), images(32, 6)
    cfg = QuantConfig(wbits=3, abits=8, first_layer_wbits="same", classifier_bits="same")
    rtn = prepare(net, cfg, calibration=[calib])
    ada_cfg = QuantConfig(wbits=3, abits=8, first_layer_wbits="same", classifier_bits="same", adaround=200)
    ada = prepare(net, ada_cfg, calibration=[calib[:16], calib[16:]])
    r_rtn, r_ada = evaluate(rtn, [test]), evaluate(ada, [test])  # images never seen in calibration
    assert r_ada.logit_sqnr_db > r_rtn.logit_sqnr_db + 1.0
    assert all(v[1] <= v[0] for v in ada.adaround.loss.values())
    # a layer kept at round to nearest is one that lost on the held-out images
    for name, v in ada.adaround.loss.items():
        assert len(v) == 4 and (name in ada.adaround.kept_nearest) == (v[3] >= v[2])
        if name in ada.adaround.kept_nearest:
            assert torch.equal(ada.layers[name].weight.codes, rtn.layers[name].weight.codes)
    # the evaluation's per-layer rows (and so --json) carry AdaRound's loss ratio on the held-out images
    ratios = {row.name: row.adaround_loss_ratio for row in r_ada.per_layer}
    for name, v in ada.adaround.loss.items():
        assert ratios[name] == pytest.approx(1.0 if name in ada.adaround.kept_nearest else v[3] / v[2])
    assert all(row.adaround_loss_ratio is None for row in r_rtn.per_layer)
    # saved with the statistics and reused: identical network, no calibration images needed
    path = ada.stats.save(tmp_path / "s.npz")
    loaded = ModelStatistics.load(path)
    key = adaround_key(ada_cfg, loaded)
    assert loaded.result("adaround", key) is not None
    again = prepare(net, ada_cfg, stats=loaded)
    with torch.no_grad():
        assert torch.equal(again(test), ada(test))
    for name, lq in ada.layers.items():
        assert torch.equal(again.layers[name].weight.codes, lq.weight.codes)
    # another configuration is not served from the cache: it needs images
    with pytest.raises(CalibrationError, match="AdaRound needs calibration images"):
        prepare(net, QuantConfig(wbits=4, abits=8, first_layer_wbits="same", classifier_bits="same", adaround=200),
                stats=loaded)


# ----------------------------------------------------------------------------------------------- bias correction
def _site_means(qm, x: torch.Tensor, float_net: bool) -> dict[str, torch.Tensor]:
    means = {}

    def hook(name):
        def f(mod, inp, out):
            means[name] = out.detach().double().mean(dim=[d for d in range(out.dim()) if d != 1])
        return f

    handles = [s.register_forward_hook(hook(n)) for n, s in qm.sites.items()]
    with torch.no_grad():
        (qm.float_forward if float_net else qm)(x)
    for h in handles:
        h.remove()
    return means


def test_empirical_bias_correction_matches_output_means():
    net = make_block()
    x = images(32, 7)
    plain = prepare(net, QuantConfig(wbits=3, abits=4), calibration=[x])
    corr = prepare(net, QuantConfig(wbits=3, abits=4, bias_correction="empirical"), calibration=[x])
    ref = _site_means(corr, x, float_net=True)
    got, before = _site_means(corr, x, float_net=False), _site_means(plain, x, float_net=False)
    for name in ("expand", "dw", "project", "fc"):
        err_before = float((before[name] - ref[name]).abs().max())
        err_after = float((got[name] - ref[name]).abs().max())
        assert err_after < 0.2 * err_before, name
    # the corrections are bias additions, reused from the statistics they are stored with
    assert set(corr.bias_deltas) == set(corr.layers)
    for name, d in corr.bias_deltas.items():
        assert torch.allclose(corr.quantized[name].bias, plain.quantized[name].bias + d.float(), atol=1e-6)
    again = prepare(net, QuantConfig(wbits=3, abits=4, bias_correction="empirical"), stats=corr.stats)
    with torch.no_grad():
        assert torch.equal(again(x), corr(x))
    assert evaluate(corr, [images(32, 8)]).kl_divergence < evaluate(plain, [images(32, 8)]).kl_divergence


# ----------------------------------------------------------------------------------------------- recipes on a net
@pytest.mark.parametrize("off", [None, "equalize", "adaround", "bias_correction"])
def test_best_recipe_runs_every_part_and_each_flag_turns_its_part_off(off):
    net = make_block(high_bias=True)
    calib, test = images(24, 11), images(24, 12)
    override = {"equalize": False, "adaround": 0, "bias_correction": None}
    fields = {"adaround": 30}
    if off is not None:
        fields[off] = override[off]
    cfg = recipe_config("best", 3, 8, **fields)
    qm = prepare(net, cfg, calibration=[calib])
    equalized = stats_equalized = bool(qm.stats.extra["equalized"])
    if equalized:  # the float network the quantizer starts from has other weights than the folded original
        equalized = any(not torch.equal(qm.floating[n].weight, qm.original[n].weight) for n in qm.layers)
    assert equalized is stats_equalized is (off != "equalize")
    assert (qm.adaround is not None) is (off != "adaround")
    assert bool(qm.bias_deltas) is (off != "bias_correction")
    if off is None:  # every part learned, none of it from the test images; the result still tracks FP32
        naive = prepare(net, recipe_config("naive", 3, 8), calibration=[calib])
        assert evaluate(qm, [test]).logit_sqnr_db > evaluate(naive, [test]).logit_sqnr_db


# ----------------------------------------------------------------------------------------------- clip="auto"
class TwoPaths(nn.Module):
    """Input channels 0-1 (Laplace) through one identity 1x1 conv, channels 2-3 (sparse spikes) through another."""

    def __init__(self) -> None:
        super().__init__()
        self.lap = nn.Conv2d(2, 2, 1, bias=False)
        self.spiky = nn.Conv2d(2, 2, 1, bias=False)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.lap.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
            self.spiky.weight.copy_(torch.eye(2).view(2, 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.lap(x[:, :2]), self.spiky(x[:, 2:])
        return self.fc(torch.cat([a, b], 1).mean((2, 3)))


def _two_path_images(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 4.0]).view(1, 2, 1, 1)  # channels of different spread: per channel wins
    lap = torch.distributions.Laplace(0.0, 1.0).sample((n, 2, 16, 16)) * scale
    sign = torch.where(torch.rand(n, 2, 16, 16, generator=g) < 0.5, -1.0, 1.0)
    spikes = (torch.rand(n, 2, 16, 16, generator=g) < 0.02).float() * sign * 10 * scale  # zeros and rare +-10
    return torch.cat([lap, spikes], 1)


@pytest.mark.parametrize("bits", [3, 8])
def test_auto_clipping_takes_what_measures_best_on_held_out_images(bits):
    torch.manual_seed(0)
    net = TwoPaths().eval()
    x = _two_path_images(40, 1)
    cfg = QuantConfig(wbits=8, abits=bits, clip="auto", first_layer_abits="same")
    qm = prepare(net, cfg, calibration=[x[:20], x[20:]])
    choice = qm.stats.result("clip", clip_key(cfg, qm.stats))
    # theory: Laplace values are best clipped by ACIQ (its MSE model is exact for them); sparse spikes by their range
    # (their small mean absolute deviation makes ACIQ clip every spike; a min/max grid holds 0 and +-10 exactly)
    assert choice["lap"] == "aciq-laplace/channel"
    assert choice["spiky"] == "minmax/channel"
    assert qm.layers["lap"].act_spec.clip == "aciq-laplace" and qm.layers["spiky"].act_spec.clip == "minmax"
    # stored with the statistics: the same network from them, no images needed
    again = prepare(net, cfg, stats=qm.stats)
    probe = _two_path_images(8, 2)
    with torch.no_grad():
        assert torch.equal(again(probe), qm(probe))
    with pytest.raises(QuantError, match="offline"):
        QuantConfig(clip="auto", stats_mode="dynamic")


def test_adaround_keeps_round_to_nearest_where_the_outputs_cannot_determine_the_rounding():
    # 8 images, 2 held out: the classifier (8 inputs per output) sees 6 rows, fewer than its inputs
    net = make_block()
    calib = images(8, 13)
    cfg = QuantConfig(wbits=3, abits=8, first_layer_wbits="same", classifier_bits="same")
    rtn = prepare(net, cfg, calibration=[calib])
    ada = prepare(net, QuantConfig(wbits=3, abits=8, first_layer_wbits="same", classifier_bits="same", adaround=50),
                  calibration=[calib])
    assert ada.adaround.skipped_underdetermined == ["fc"]
    assert "fc" not in ada.adaround.up and "dw" in ada.adaround.up  # convolutions: 6 images x 24 positions
    assert torch.equal(ada.layers["fc"].weight.codes, rtn.layers["fc"].weight.codes)


@pytest.mark.parametrize("mod,relu6", [
    (nn.Conv2d(16, 16, 5, groups=16), True),  # depthwise: one form per channel over its own inputs
    (nn.Conv2d(12, 20, 1), True),  # dense with a fused activation: one masked form per output
    (nn.Conv2d(12, 20, 1), False),  # dense without: one form shared by every output
    (nn.Linear(10, 6), True),
])
def test_adaround_quadratic_form_is_the_masked_output_error_over_every_patch(mod, relu6):
    from quant.adaround import _gram_objective

    torch.manual_seed(0)
    act = (lambda t: torch.clamp(t, 0.0, 6.0)) if relu6 else (lambda t: t)
    w, b = mod.weight.detach(), torch.randn(mod.weight.shape[0])
    G, K = getattr(mod, "groups", 1), mod.weight[0].numel()
    x = torch.randn(300, G, K) * 2
    xq = x + 0.1 * torch.randn_like(x)
    objective = _gram_objective(mod, w, b, x, xq, act, batch=512)
    w_hat = w + 0.05 * torch.randn_like(w)
    target = _layer_out(x, _group_weight(mod, w), b)  # pre-activation
    err = (_layer_out(xq, _group_weight(mod, w_hat), b) - target) ** 2
    counted = (act(target) == target).float()  # where the target is in the activation's linear range
    assert float(objective(w_hat)) == pytest.approx(float((err * counted).sum(1).mean()), rel=1e-4)
    if relu6:
        assert 0 < float(counted.mean()) < 1  # the mask matters in this test


def test_learned_results_are_found_whatever_the_type_of_the_bit_width():
    """A calibration file made with --wbits 4 (a float from the CLI) serves a Python caller's wbits=4 (an int):
    the keys of clipping choices, AdaRound roundings and bias corrections do not depend on the number's type."""
    from quant.preparation import adaround_key, bias_key, clip_key

    for key in (clip_key, adaround_key, bias_key):
        a = key(recipe_config("best", 4, 8))
        assert a == key(recipe_config("best", 4.0, 8.0))
        assert a != key(recipe_config("best", 4, 4))  # the activations' bits still count
