"""The model-pipeline commands: calibrate, evaluate, encode --model (run in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from analysis.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_json_on_builtin_images(capsys):
    code, out, _ = _run(capsys, "evaluate", "--num-images", "2", "--num-calib", "2", "--batch-size", "2", "--wbits", "8",
                        "--abits", "8", "--clip", "aciq-laplace", "--bit-alloc", "weights,activations",
                        "--bias-correction", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["model"] == "efficientnet-lite0" and doc["num_images"] == 2
    assert 0.0 <= doc["top1_agreement"] <= 1.0 and 0.0 <= doc["top5_overlap"] <= 1.0
    from quant.evaluation import binomial_ci

    assert doc["top1_agreement_ci"] == list(binomial_ci(round(doc["top1_agreement"] * 2), 2))
    assert doc["kl_divergence"] >= 0.0 and doc["top1"] is None
    assert len(doc["per_layer"]) == 50 and doc["per_layer"][0]["name"] == "_conv_stem"
    assert {"weight_sqnr_db", "act_sqnr_db", "weight_bits", "act_bits"} <= set(doc["per_layer"][1])
    assert doc["config"]["bias_correction"] == "both" and doc["config"]["bit_alloc"] == ["weights", "activations"]
    assert doc["config"]["stats_mode"] == "offline"


def test_calibrate_then_evaluate_with_stats_and_labels(tmp_path, capsys):
    stats = tmp_path / "s.npz"
    code, out, _ = _run(capsys, "calibrate", "--num-images", "2", "--batch-size", "2", "-o", str(stats), "--json")
    assert code == 0 and json.loads(out)["layers"] == 50 and stats.exists()
    # an ImageNet-style folder: class 285 (Egyptian cat) holds the cat photo, plus one unreadable file
    from quant.images import builtin_photos

    (tmp_path / "val" / "285").mkdir(parents=True)
    Image.fromarray(builtin_photos()["chelsea"]).save(tmp_path / "val" / "285" / "cat.png")
    (tmp_path / "val" / "285" / "broken.png").write_bytes(b"\x89PNG broken")
    code, out, _ = _run(capsys, "evaluate", "--stats", str(stats), "--imagenet", str(tmp_path / "val"),
                        "--wbits", "8", "--abits", "8", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["config"]["stats_mode"] == "offline" and doc["num_images"] == 1 and doc["num_skipped"] == 1
    assert doc["top1"] is not None and doc["fp32_top5"] is not None


def test_encode_model_and_decode_dequantized(tmp_path, capsys):
    hqt = tmp_path / "m.hqt"
    code, out, _ = _run(capsys, "encode", "--model", "efficientnet-lite0", "--wbits", "4", "--abits", "4",
                        "--activations", "--num-images", "1", "--num-calib", "2", "-o", str(hqt), "--json")
    assert code == 0
    assert json.loads(out)["tensors"] == 100
    npz = tmp_path / "m.npz"
    assert _run(capsys, "decode", str(hqt), "-o", str(npz), "--dequantize")[0] == 0
    z = np.load(npz)
    w = z["_blocks.2._project_conv/weight"]
    a = z["_blocks.2._depthwise_conv/activation"]
    assert w.dtype == np.float32 and w.shape == (24, 144, 1, 1) and a.shape == (1, 144, 56, 56)
    assert a.min() >= 0 and len(np.unique(a[0, 0])) <= 16  # fused ReLU6, 4-bit codes per channel
    assert all(len(np.unique(row)) <= 16 for row in w.reshape(24, -1))


def test_unknown_model_is_reported(capsys):
    code, _, err = _run(capsys, "evaluate", "--model", "nonet")
    assert code == 1 and "unknown model 'nonet'" in err and "efficientnet-lite0" in err


def test_usage_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["-q", "evaluate", "--abits", "5.3"])
    assert info.value.code == 2
    assert "bin allocation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["-q", "evaluate", "--images", str(tmp_path), "--imagenet", str(tmp_path)])
    code, _, err = _run(capsys, "evaluate", "--images", str(tmp_path), "--num-images", "1")
    assert code == 1 and "no image files" in err
