"""The model-pipeline commands: calibrate, evaluate, encode --model (run in-process)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from analysis.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _evaluate(capsys, *argv: str) -> dict:
    code, out, _ = _run(capsys, "evaluate", "--num-images", "4", "--num-calib", "9", "--batch-size", "4",
                        "--json", *argv)
    assert code == 0
    return json.loads(out)


def test_evaluate_json_on_builtin_images(capsys):
    doc = _evaluate(capsys, "--wbits", "8", "--abits", "8", "--clip", "aciq-laplace", "--bit-alloc",
                    "weights,activations", "--bias-correction")
    low = _evaluate(capsys, "--wbits", "3", "--abits", "3", "--first-layer-bits", "same", "--classifier-bits", "same")
    assert doc["model"] == "efficientnet-lite0" and doc["num_images"] == 4 and doc["top1"] is None
    # more bits, more fidelity (the same 4 images)
    assert doc["logit_sqnr_db"] > low["logit_sqnr_db"] + 10 and doc["kl_divergence"] < low["kl_divergence"]
    from quant.evaluation import binomial_ci

    for d in (doc, low):
        agree = round(d["top1_agreement"] * 4)
        assert d["top1_agreement"] * 4 == agree
        assert d["top1_agreement_ci"] == list(binomial_ci(agree, 4))
    layers = doc["per_layer"]
    assert len(layers) == 50 and layers[0]["name"] == "_conv_stem" and layers[-1]["name"] == "_fc"
    assert doc["layers_quantized"] == doc["conv_linear_modules"] == 50 and doc["kept_fp32"] == []
    # first layer and classifier at 8 bits by default, at the rest's 3 bits with 'same'
    assert layers[0]["weight_bits"] == layers[-1]["weight_bits"] == 8.0
    assert layers[-1]["act_bits"] is None  # the logits stay FP32
    assert low["per_layer"][0]["weight_bits"] == low["per_layer"][-1]["weight_bits"] == 3.0
    assert all(r["weight_sqnr_db"] > 30 for r in layers)  # 8-bit weights
    assert all(r["weight_sqnr_db"] < 25 for r in low["per_layer"])  # 3-bit weights
    assert doc["config"]["bias_correction"] == "both" and doc["config"]["bit_alloc"] == ["weights", "activations"]
    assert doc["config"]["stats_mode"] == "offline"


def test_calibrate_then_evaluate_with_stats_and_labels(tmp_path, capsys):
    import torch

    stats = tmp_path / "s.npz"
    code, out, _ = _run(capsys, "calibrate", "--num-images", "2", "--batch-size", "2", "-o", str(stats), "--json")
    assert code == 0 and json.loads(out)["layers"] == 50 and stats.exists()
    # an ImageNet-style folder: class 285 (Egyptian cat) holds the cat photo, plus one unreadable file
    from quant.images import builtin_photos
    from quant.models import load_model

    (tmp_path / "val" / "285").mkdir(parents=True)
    Image.fromarray(builtin_photos()["chelsea"]).save(tmp_path / "val" / "285" / "cat.png")
    (tmp_path / "val" / "285" / "broken.png").write_bytes(b"\x89PNG broken")
    code, out, _ = _run(capsys, "evaluate", "--stats", str(stats), "--imagenet", str(tmp_path / "val"),
                        "--wbits", "8", "--abits", "8", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["config"]["stats_mode"] == "offline" and doc["num_images"] == 1 and doc["num_skipped"] == 1
    # the label is the folder's class, not the model's answer: the expectation from the original model here
    lm = load_model()
    with torch.no_grad():
        logits = lm.model(lm.preprocessing(Image.open(tmp_path / "val" / "285" / "cat.png"))[None])[0]
    assert doc["fp32_top1"] == float(int(logits.argmax()) == 285)
    assert doc["fp32_top5"] == float(285 in logits.topk(5).indices.tolist())
    if doc["top1_agreement"] == 1.0:
        assert doc["top1"] == doc["fp32_top1"]
    else:
        assert doc["top1"] == 0.0 or doc["fp32_top1"] == 0.0


def test_encode_model_and_decode_dequantized(tmp_path, capsys):
    hqt = tmp_path / "m.hqt"
    code, out, _ = _run(capsys, "encode", "--model", "efficientnet-lite0", "--wbits", "4", "--abits", "4",
                        "--activations", "--num-images", "1", "--num-calib", "2", "-o", str(hqt), "--json")
    assert code == 0
    assert json.loads(out)["tensors"] == 50 + 49  # every layer's weights, every output but the FP32 logits
    npz = tmp_path / "m.npz"
    assert _run(capsys, "decode", str(hqt), "-o", str(npz), "--dequantize")[0] == 0
    z = np.load(npz)
    w = z["_blocks.2._project_conv/weight"]
    a = z["_blocks.2._depthwise_conv/activation"]
    assert w.dtype == np.float32 and w.shape == (24, 144, 1, 1) and a.shape == (1, 144, 56, 56)
    assert a.min() >= 0 and len(np.unique(a[0, 0])) <= 16  # fused ReLU6, 4-bit codes per channel
    assert all(len(np.unique(row)) <= 16 for row in w.reshape(24, -1))


@pytest.mark.parametrize("argv,message", [
    (["evaluate", "--model", "nonet"], "unknown model 'nonet'"),
    (["evaluate", "--wbits", "0"], "wbits must be in (0, 16]"),
    (["evaluate", "--abits", "17"], "abits must be in (0, 16]"),
    (["evaluate", "--clip", "median"], "unknown clipping method"),
    (["evaluate", "--recipe", "fastest"], "unknown recipe 'fastest'"),
    (["calibrate", "--model", "nonet", "-o", "x.npz"], "unknown model 'nonet'"),
    (["calibrate", "--adaround", "--wbits", "fp", "-o", "x.npz"], "AdaRound rounds weights"),
    (["encode", "--model", "nonet", "-o", "x.hqt"], "unknown model 'nonet'"),
    (["encode", "--model", "efficientnet-lite0", "--first-layer-bits", "99", "-o", "x.hqt"], "first_layer_wbits"),
    (["evaluate", "--model", "no/such/file.py:build"], "not found"),
    (["report", "--wbits", "0"], "wbits must be in (0, 16]"),
    (["report", "--clip", "median"], "unknown clipping method"),
    (["report", "--model", "nonet"], "unknown model 'nonet'"),
    (["evaluate", "--model", "no_such_module_xyz:build"], "no module named"),
])
def test_configuration_errors_exit_2_before_loading_the_model(capsys, monkeypatch, argv, message):
    import quant.models

    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the configuration was checked")

    monkeypatch.setattr(quant.models, "load_model", refuse)
    with pytest.raises(SystemExit) as info:
        main(["-q", *argv])
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_usage_errors(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["-q", "evaluate", "--abits", "5.3"])
    assert info.value.code == 2
    assert "bin allocation" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["-q", "evaluate", "--images", str(tmp_path), "--imagenet", str(tmp_path)])
    code, _, err = _run(capsys, "evaluate", "--images", str(tmp_path), "--num-images", "1")
    assert code == 1 and "no image files" in err


@pytest.mark.parametrize("function", ["traceable", "untraceable"])
def test_model_function_in_every_command(tmp_path, capsys, function):
    from test_models import _MODEL_FILE

    path = tmp_path / "nets.py"
    path.write_text(_MODEL_FILE)
    spec = f"{path}:{function}"
    stats = tmp_path / "s.npz"
    code, out, _ = _run(capsys, "calibrate", "--model", spec, "--num-images", "18", "-o", str(stats), "--json")
    assert code == 0 and json.loads(out)["layers"] == 3 and json.loads(out)["model"] == spec
    code, out, _ = _run(capsys, "evaluate", "--model", spec, "--stats", str(stats), "--num-images", "9",
                        "--wbits", "8", "--abits", "8", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["num_images"] == 9 and [r["name"] for r in doc["per_layer"]] == ["conv", "dw", "fc"]
    hqt = tmp_path / "m.hqt"
    code, out, _ = _run(capsys, "encode", "--model", spec, "--stats", str(stats), "--activations",
                        "--num-images", "2", "-o", str(hqt), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["tensors"] == 3 + 2 and hqt.exists()  # no tensor for the FP32 logits
    # the function's preprocessing (32x32 inputs) reached the pipeline: per image 8·16·16 values out of conv and of
    # dw, plus the 8·3·3·3 + 8·3·3 + 10·8 weights
    assert doc["n_values"] == 2 * (2 * 8 * 16 * 16) + (8 * 27 + 8 * 9 + 10 * 8)
    out_dir = tmp_path / "rep"
    code, out, _ = _run(capsys, "report", "--model", spec, "--num-images", "6", "--num-calibration", "6",
                        "--batch-size", "6", "--activation-images", "2", "--no-plots", "--json", "--out", str(out_dir))
    doc = json.loads(out)
    assert code == 0 and doc["header"]["model"] == spec and (out_dir / "layers.csv").exists()
    with open(out_dir / "layers.csv", newline="") as f:
        assert {row["layer"] for row in csv.DictReader(f)} == {"conv", "dw", "fc"}


def test_adaround_is_saved_by_calibrate_and_reused_by_evaluate(tmp_path, capsys, monkeypatch):
    from test_models import _MODEL_FILE

    import quant.preparation

    path = tmp_path / "nets.py"
    path.write_text(_MODEL_FILE)
    spec = f"{path}:traceable"
    stats = tmp_path / "ada.npz"
    common = ("--model", spec, "--wbits", "3", "--abits", "8", "--first-layer-bits", "same",
              "--classifier-bits", "same")
    # no -q, no --json: the CLI shows AdaRound's progress bar (on stderr), one step per layer
    code = main(["calibrate", *common, "--adaround", "40", "--num-images", "18", "-o", str(stats)])
    out, err = capsys.readouterr()
    assert code == 0 and "adaround" in out and "AdaRound (40 it/layer)" in err and "3/3" in err

    def refuse(*a, **k):
        raise AssertionError("AdaRound ran again instead of reusing the stored rounding")

    monkeypatch.setattr(quant.preparation, "adaround_layers", refuse)
    doc = _evaluate_model(capsys, *common, "--adaround", "40", "--stats", str(stats))
    rtn = _evaluate_model(capsys, *common, "--stats", str(stats))
    assert doc["config"]["adaround"] == 40 and rtn["config"]["adaround"] == 0
    # the stored rounding changed the weights (a rounding bit per weight, not round-to-nearest)
    assert [r["weight_sqnr_db"] for r in doc["per_layer"]] != [r["weight_sqnr_db"] for r in rtn["per_layer"]]
    # another iteration count is another configuration: not in the file, so it would need AdaRound to run
    # (the CLI reports the failure in one line and exits 1)
    code, _, err = _run(capsys, "evaluate", *common, "--adaround", "41", "--stats", str(stats), "--num-images", "9")
    assert code == 1 and "AdaRound ran again" in err


def _evaluate_model(capsys, *argv: str) -> dict:
    code, out, _ = _run(capsys, "evaluate", "--num-images", "9", "--json", *argv)
    assert code == 0
    return json.loads(out)
