"""Confidence interval of top-1 agreement (Wilson score interval), checked against hand-derived values."""

from __future__ import annotations

import math

import pytest
import torch

from quant.errors import QuantError
from quant.evaluation import FidelityMeter, binomial_ci


def test_wilson_interval_hand_derived():
    z2 = 1.959963984540054 ** 2
    # 0 of 10: [0, z²/(n + z²)]
    lo, hi = binomial_ci(0, 10)
    assert lo == 0.0 and hi == pytest.approx(z2 / (10 + z2), rel=1e-12)
    # 10 of 10: the mirror image
    lo, hi = binomial_ci(10, 10)
    assert hi == 1.0 and lo == pytest.approx(10 / (10 + z2), rel=1e-12)
    # 5 of 10: symmetric about 1/2, half-width z·sqrt(1/40 + z²/400)/(1 + z²/10)
    lo, hi = binomial_ci(5, 10)
    half = math.sqrt(z2) * math.sqrt(0.25 / 10 + z2 / 400) / (1 + z2 / 10)
    assert lo == pytest.approx(0.5 - half) and hi == pytest.approx(0.5 + half)
    # published example (Newcombe 1998, table I): 81 of 263 -> 0.2553 to 0.3662
    lo, hi = binomial_ci(81, 263)
    assert round(lo, 4) == 0.2553 and round(hi, 4) == 0.3662
    # wider at 99%, narrower with more trials
    assert binomial_ci(81, 263, 0.99)[0] < lo
    assert binomial_ci(810, 2630)[1] - binomial_ci(810, 2630)[0] < hi - lo
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(QuantError):
            binomial_ci(*bad)


def test_meter_reports_the_interval_of_its_count():
    ref = torch.eye(4)[[0, 1, 2, 3, 0, 1]] * 5
    quant = ref.clone()
    quant[5] = torch.eye(4)[3] * 5  # one decision of six changes
    m = FidelityMeter()
    m.update(ref, quant)
    s = m.summary()
    assert s["top1_agreement"] == 5 / 6
    assert s["top1_agreement_ci"] == binomial_ci(5, 6)


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 6, 3, padding=1)
        self.fc = torch.nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _labelled_folder(root, n: int = 11):
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        d = root / str(i % 4)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(d / f"im{i:02d}.png")
    (root / "0" / "broken.png").write_bytes(b"not an image")
    return root


def test_shards_merge_into_the_result_of_one_run(tmp_path):
    """Every part of a sharded evaluation, merged, gives the whole run's result: the same counts, the same
    sums up to the order of float additions, every image once."""
    from quant.evaluation import EvaluationResult, evaluate_model, merge_results
    from quant.images import Preprocessing, imagenet_folder
    from quant import QuantConfig, prepare

    torch.manual_seed(0)
    model = _Tiny().eval()
    images = imagenet_folder(_labelled_folder(tmp_path / "val"), Preprocessing(size=16))
    calib = torch.randn(8, 3, 16, 16)
    cfg = QuantConfig(wbits=4, abits=4)
    stats = prepare(model, cfg, calibration=[calib]).stats  # the same statistics for every part
    # one image per batch: each image's logits do not depend on which part it is in (a batch's composition moves
    # the float rounding of the convolutions), so the sums differ only in the order they are added
    run = dict(images=images, stats=stats, batch_size=1, num_workers=0)
    whole = evaluate_model(model, cfg, **run)
    parts = [evaluate_model(model, cfg, shard=(k, 3), **run) for k in (1, 2, 3)]
    assert [p.shard for p in parts] == ["1/3", "2/3", "3/3"] and sum(p.num_images for p in parts) == 11
    merged = merge_results([p.to_dict() for p in reversed(parts)])  # any order, from their JSON documents
    assert merged.num_images == whole.num_images == 11 and merged.shard is None
    assert len(merged.skipped) == len(whole.skipped) == 1
    for key in ("top1_agreement", "top1_agreement_ci", "top5_overlap", "top1", "top5", "fp32_top1", "fp32_top5"):
        assert getattr(merged, key) == getattr(whole, key), key
    for key in ("kl_divergence", "logit_sqnr_db"):
        assert getattr(merged, key) == pytest.approx(getattr(whole, key), rel=1e-12), key
    assert merged.totals["n"] == whole.totals["n"] and merged.totals["correct"] == whole.totals["correct"]
    for a, b in zip(merged.per_layer, whole.per_layer):
        assert a.name == b.name and a.weight_sqnr_db == b.weight_sqnr_db
        assert (a.act_clip, a.adaround_loss_ratio) == (b.act_clip, b.adaround_loss_ratio)
        if b.act_sqnr_db is None:  # an output left in FP32 (the logits, by default)
            assert a.act_sqnr_db is None and b.act_bits is None
        else:
            assert a.act_sqnr_db == pytest.approx(b.act_sqnr_db, rel=1e-12)
    assert [b.act_sqnr_db is not None for b in whole.per_layer] == [True, False]  # the conv measured, the logits FP32
    assert (merged.layers_quantized, merged.conv_linear_modules, merged.kept_fp32) == \
        (whole.layers_quantized, whole.conv_linear_modules, whole.kept_fp32)
    assert merged.layers_quantized == len(whole.per_layer)
    # a JSON document round-trips
    assert EvaluationResult.from_dict(whole.to_dict()).to_dict() == whole.to_dict()
    # every part exactly once
    with pytest.raises(QuantError, match="exactly once"):
        merge_results(parts[:2])
    with pytest.raises(QuantError, match="exactly once"):
        merge_results(parts + parts[:1])
    # parts whose layers were clipped differently were not quantized alike: no merge
    odd = [p.to_dict() for p in parts]
    odd[1]["per_layer"][0]["act_clip"] = "kl/tensor"
    with pytest.raises(QuantError, match="clipped"):
        merge_results(odd)


def test_cli_shards_and_merge(tmp_path, capsys):
    """``evaluate --shard K/N`` on each part, then ``--merge``, as on several machines."""
    import json

    from analysis.cli import main

    folder = _labelled_folder(tmp_path / "val", n=5)
    stats = tmp_path / "s.npz"
    common = ["--model", "resnet18", "--random-init", "--batch-size", "1", "--wbits", "8", "--abits", "8"]
    assert main(["-q", "calibrate", *common, "--num-images", "2", "-o", str(stats)]) == 0
    capsys.readouterr()
    docs = []
    for k in (1, 2):
        assert main(["-q", "evaluate", *common, "--imagenet", str(folder), "--stats", str(stats),
                     "--shard", f"{k}/2", "--workers", "2", "--json", "--no-layer-sqnr"]) == 0
        docs.append(json.loads(capsys.readouterr().out))
        (tmp_path / f"part{k}.json").write_text(json.dumps(docs[-1]))
    assert [d["shard"] for d in docs] == ["1/2", "2/2"] and [d["num_images"] for d in docs] == [2, 3]
    assert main(["-q", "evaluate", *common, "--imagenet", str(folder), "--stats", str(stats), "--json",
                 "--no-layer-sqnr"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert main(["-q", "evaluate", "--merge", str(tmp_path / "part2.json"), str(tmp_path / "part1.json"),
                 "--json"]) == 0
    merged = json.loads(capsys.readouterr().out)
    assert merged["num_images"] == whole["num_images"] == 5 and merged["num_skipped"] == 1
    for key in ("top1_agreement", "top5_overlap", "top1", "top5"):
        assert merged[key] == whole[key], key
    assert merged["kl_divergence"] == pytest.approx(whole["kl_divergence"], rel=1e-12)
    assert main(["-q", "evaluate", "--merge", str(tmp_path / "part1.json")]) == 1  # a part is missing
    assert "exactly once" in capsys.readouterr().err
