"""The report end to end on a tiny model and tiny images: real invariants, real files, valid outputs."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from torch import nn

import entropy
from analysis import report as R
from analysis.cli import main
from analysis.errors import AnalysisError
from entropy import HQTFile

ROOT = Path(__file__).resolve().parents[1]


class TinyNet(nn.Module):
    """Conv-BN-ReLU stem, a depthwise and a pointwise conv, and a classifier (random init)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.b1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.b2 = nn.BatchNorm2d(8)
        self.c3 = nn.Conv2d(8, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.b1(self.c1(x)))
        x = torch.relu(self.b2(self.c2(x)))
        x = torch.relu(self.c3(x))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyNet().eval()
    with torch.no_grad():  # non-trivial BN statistics so folding matters
        for bn in (model.b1, model.b2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    images = torch.randn(10, 3, 20, 20)
    files = tmp_path_factory.mktemp("files")
    cfg = R.ReportConfig(batch_size=4, progress=False, files_dir=str(files), verify_huffman_packing=True,
                         zstd_sample_bytes=256, adaround=10)
    rep = R.report(model, images, cfg)
    out = tmp_path_factory.mktemp("out")
    written = R.write_report(rep, out)
    return rep, out, files, written


def test_invariants_per_tensor(tiny_report):
    rep, _, _, _ = tiny_report
    kinds = {r["kind"] for r in rep.layers}
    assert kinds == {"activations", "weights"}
    assert len(rep.layers) == 4 + 3  # 4 layers' weights, and the outputs of all but the classifier (FP32 logits)
    assert rep.header["coded_tensors"] == {"weights": 4, "activations": 3, "fp32_outputs": ["fc"],
                                           "fp32_logits": ["fc"]}
    assert rep.header["layers_quantized"] == rep.header["conv_linear_modules"] == 4  # every one that ran
    assert rep.header["kept_fp32"] == []
    for r in rep.layers:
        h, hc = r["entropy_bits"], r["channel_entropy_bits"]
        assert hc <= h + 1e-12
        if r.get("acl_channel") is not None and r["modes"] == f"plain:{r['n_codebooks']}" and r["layout"] == "channel":
            assert hc <= r["acl_channel"] + 1e-12 and r["acl_channel"] < hc + 1  # per-channel singles codes
        assert r["coded_bits"] >= r["payload_bits"]  # file bits >= payload bits
        assert r["payload_bits"] == pytest.approx(r["avg_code_length"] * r["n_values"])
        parts = ("payload_bits", "codebook_bits", "index_bits", "record_bits", "map_bits")
        assert sum(r[k] for k in parts) == r["closed_form_bits"] and min(r[k] for k in parts) >= 0
        assert r["coded_bits"] <= r["closed_form_bits"]  # equal unless a codebook is shared across layers
        assert r["lossless"] is True and r["sha256"] == r["decoded_sha256"]
        assert r["file_bits_per_value"] >= r["coded_bits_per_value"]
        assert r["nominal_bits"] > 0
        assert r["n_codebooks"] >= 1 and sum(int(p.split(":")[1]) for p in r["modes"].split(";")) == r["n_codebooks"]
        # the picked layout is the smallest of those sized
        others = [r[k] for k in ("bpv_single", "bpv_channel", "bpv_bitwidth", "bpv_cluster") if r.get(k) is not None]
        assert r["closed_form_bits"] / r["n_values"] == pytest.approx(min(others), abs=1e-12)


def test_packing_rows_are_exact_and_lossless(tiny_report):
    rep, _, _, _ = tiny_report
    assert len(rep.packing) == len(rep.layers)
    for p in rep.packing:
        assert p["lossless"] is True
        assert p["widest_bits"] == p["n_values"] * p["widest_width"]
        assert p["dense_bits"] <= p["widest_bits"]
        # dense packing at ceil(log2 levels) bits never beats the nominal log2(levels)
        assert p["dense_bpv"] >= p["nominal_bits"] - 1e-12


def test_files_hold_one_tensor_per_layer(tiny_report):
    """Done when (a): each kind's file holds exactly one tensor per layer, in the layer's shape, dtype and layout,
    and it decodes to the codes the report measured."""
    rep, _, _, _ = tiny_report
    for kind in ("activations", "weights"):
        rows = {r["layer"]: r for r in rep.layers if r["kind"] == kind}
        f = rep.files[kind]
        with HQTFile(f["path"]) as h:
            info = h.info()
            assert info.file_bytes == f["file_bytes"]
            assert sorted(h.names) == sorted(rows)
            for name in h.names:
                r, t = rows[name], info.tensor(name)
                back = h.read(name)
                assert "x".join(map(str, back.shape)) == r["shape"] and str(back.dtype) == r["dtype"]
                assert hashlib.sha256(np.ascontiguousarray(back).data).hexdigest() == r["sha256"]
                assert (t.layout, t.n_codebooks) == (r["layout"].rstrip("0123456789"), r["n_codebooks"])
                # channels along axis 1 (activations) or 0 (weights), also for per-tensor parameters (no axis)
                assert t.channel_axis == (1 if kind == "activations" else 0)
                assert h.quant(name).get("axis") in (None, t.channel_axis)
    for kind in ("activations", "weights"):
        total_coded = sum(r["coded_bits"] for r in rep.layers if r["kind"] == kind)
        s = rep.summary[kind]
        assert s["layers_coded_bits_per_value"] == pytest.approx(total_coded / s["n_values"])
        # the whole file: every layer's tensor plus the preamble and file-level strings
        f = rep.files[kind]
        expect = (8 * f["file_bytes"] - 8 * f["quant_metadata_bytes"]) / s["n_values"]
        assert s["coded_bits_per_value"] == pytest.approx(expect) and expect > s["layers_coded_bits_per_value"]


def test_closed_form_bits_equal_the_files(tiny_report):
    """Done when (c): a layer's closed-form bits are its bytes in the written file; a codebook shared with
    another tensor is counted whole in the closed form (the tensor alone) and as a share in the file."""
    rep, _, _, _ = tiny_report
    for kind in ("activations", "weights"):
        info = entropy.info(rep.files[kind]["path"])
        record = {}  # codebook id -> its whole record: the shares of all its users add up to it
        for t in info.tensors:
            for st in t.streams:
                record[st.codebook_id] = record.get(st.codebook_id, 0.0) + st.codebook_bytes
        for r in (r for r in rep.layers if r["kind"] == kind):
            t = info.tensor(r["layer"])
            alone = t.entry_bytes - t.metadata_bytes + t.index_bytes + t.payload_bytes + t.padding_bytes + sum(
                record[i] for i in {st.codebook_id for st in t.streams})
            assert r["closed_form_bits"] == pytest.approx(8 * alone, abs=1e-6)
            assert r["coded_bits"] == pytest.approx(8 * (t.total_bytes - t.metadata_bytes))
            if not t.codebook_shared:
                assert r["coded_bits"] == r["closed_form_bits"]
            assert r["quant_metadata_bits"] == 8 * t.metadata_bytes
            assert r["payload_bits"] == t.payload_bits


def test_cli_decode_gives_the_layer_tensors(tiny_report, tmp_path):
    """``huffquant decode`` of the report's activations file gives each layer's tensor, in its shape and dtype,
    bit-exact to the codes the report measured."""
    rep, _, _, _ = tiny_report
    out = tmp_path / "acts.npz"
    assert main(["-q", "decode", str(rep.files["activations"]["path"]), "-o", str(out)]) == 0
    rows = {r["layer"]: r for r in rep.layers if r["kind"] == "activations"}
    with np.load(out) as z:
        assert sorted(z.files) == sorted(rows)
        for name in z.files:
            a = z[name]
            assert "x".join(map(str, a.shape)) == rows[name]["shape"] and str(a.dtype) == rows[name]["dtype"]
            assert hashlib.sha256(np.ascontiguousarray(a).data).hexdigest() == rows[name]["sha256"]


def test_users_save_reaches_the_reports_coded_bits(tiny_report, tmp_path):
    """Done when (b): ``entropy.save(path, {layer: codes}, channel_axis=1)`` on a layer's activation codes takes
    the report's coded bits for that layer (its closed form; equal to the file's coded bits unless a codebook
    is shared with another layer). With the layer's quantization metadata (its per-channel ``bits`` allow the
    bit-width layout) it gives the report's tensor byte for byte, its metadata arrays aside."""
    rep, _, _, _ = tiny_report
    path = rep.files["activations"]["path"]
    report_info = entropy.info(path)
    plain_checked = 0
    for r in (r for r in rep.layers if r["kind"] == "activations"):
        name = r["layer"]
        codes = entropy.load_tensor(path, name)
        mine = report_info.tensor(name)
        with_meta = entropy.save(tmp_path / "q.hqt", {name: codes}, channel_axis=1,
                                 quant={name: entropy.load_quant(path, name)}).tensor(name)
        assert with_meta.layout == mine.layout and with_meta.n_codebooks == mine.n_codebooks
        assert 8 * (with_meta.total_bytes - with_meta.metadata_bytes) == r["closed_form_bits"]
        if not mine.codebook_shared:
            assert 8 * (with_meta.total_bytes - with_meta.metadata_bytes) == r["coded_bits"]
            assert with_meta.payload_bits == mine.payload_bits and with_meta.entry_bytes - with_meta.metadata_bytes \
                == mine.entry_bytes - mine.metadata_bytes
        if r["layout"] != "bitwidth":  # a bare call has no per-channel bits, so no bit-width layout
            bare = entropy.save(tmp_path / "b.hqt", {name: codes}, channel_axis=1).tensor(name)
            assert bare.metadata_bytes == 0 and 8 * bare.total_bytes == r["closed_form_bits"]
            plain_checked += 1
    assert plain_checked


def test_summary_and_outputs(tiny_report):
    rep, out, _, written = tiny_report
    doc = json.loads((out / "summary.json").read_text())
    for kind in ("activations", "weights"):
        s = doc["summary"][kind]
        for key in ("nominal_bits", "entropy_bits", "channel_entropy_bits", "avg_code_length",
                    "coded_bits_per_value"):
            assert isinstance(s[key], float) and math.isfinite(s[key]), key
        rows = [r for r in doc["layers"] if r["kind"] == kind]
        n = sum(r["n_values"] for r in rows)
        assert s["entropy_bits"] == pytest.approx(sum(r["entropy_bits"] * r["n_values"] for r in rows) / n)
        assert s["lossless"] is True
    assert all(r["lossless"] is True for r in doc["layers"])
    assert doc == json.loads(R.to_json(rep, out))
    # the main setting is the best recipe; the other recipes (the paper's among them) are compared
    assert [(c["role"], c["recipe"]) for c in doc["configs"]] == [("main", "best"), ("naive", "naive"),
                                                                   ("paper", "paper")]
    from quant.recipes import recipe_config

    for c in doc["configs"]:  # each row is its recipe at the main setting's bits, with its own fidelity and rates
        want = recipe_config(c["recipe"], 4, 4, stats_mode="offline").to_dict()
        if c["recipe"] == "best":
            assert want["adaround"] > 0
            want["adaround"] = 10  # ReportConfig.adaround replaces the recipe's iterations
        assert c["config"] == want
        lo, hi = c["top1_agreement_ci"]
        assert lo <= c["top1_agreement"] <= hi
        assert c["act_coded_bits_per_value"] > 0 and c["weight_coded_bits_per_value"] > 0
    _check_headline(doc)
    assert "## Recipes side by side" in (out / "report.md").read_text()
    assert doc["timing"]["ratio_to_fp32_and_calibration"] > 0
    table = list(csv.DictReader(io.StringIO((out / "layers.csv").read_text())))
    assert tuple(table[0]) == R.LAYER_COLUMNS and len(table) == len(rep.layers)
    md = (out / "report.md").read_text()
    assert md.index("## Bits per value and fidelity, per recipe") < md.index("|")  # the first table: the headline
    for needle in ("# huffquant report: TinyNet", "package", "date", "W4A4 aciq-laplace", "whole model (element-weighted",
                   "## Bits per value and fidelity, per recipe", "## Mixed-precision channel packing", "Step ratio",
                   "weights of 4 layers, outputs of 3 layers; FP32 outputs, not coded: fc (the logits)",
                   "| layers quantized | 4 of the 4 conv/linear modules that ran |"):
        assert needle in md
    assert "issue" not in md.lower() and "issue" not in R.to_json(rep).lower()  # no tracker numbers for users
    pngs = [p for p in written if p.suffix == ".png"]
    pdfs = [p for p in written if p.suffix == ".pdf"]
    assert {p.stem for p in pngs} == {p.stem for p in pdfs} >= {"layer_bits", "mse_alpha", "bit_allocation",
                                                                   "step_ratio", "clipping_histogram"}
    for p in pngs:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and mpimg.imread(p).ndim == 3
    for p in pdfs:
        b = p.read_bytes()
        assert b.startswith(b"%PDF-") and b.rstrip().endswith(b"%%EOF")


def _check_headline(doc):
    """The headline pairs each recipe's coded bits with its fidelity, all measured the same way."""
    head = doc["headline"]
    assert [h["recipe"] for h in head] == ["naive", "paper", "best"]
    assert [h["main"] for h in head] == [False, False, True]
    configs = {c["recipe"]: c for c in doc["configs"]}
    acts = [r for r in doc["layers"] if r["kind"] == "activations"]
    images = int(acts[0]["shape"].split("x")[0])  # the main setting's coded images
    per_image = sum(r["n_values"] for r in acts) / images
    n_weights = sum(r["n_values"] for r in doc["layers"] if r["kind"] == "weights")
    for h in head:
        c = configs[h["recipe"]]
        for key in ("top1_agreement", "top1_agreement_ci", "logit_sqnr_db", "top1"):
            assert h[key] == c[key], key
        assert h["images"] == c["images"] == 10 and h["rate_images"] == images
        a, w = h["act_coded_bits_per_value"], h["weight_coded_bits_per_value"]
        assert h["coded_bits_per_value"] == pytest.approx((a * per_image + w * n_weights) / (per_image + n_weights))
        if not h["main"]:
            assert (a, w) == (c["act_coded_bits_per_value"], c["weight_coded_bits_per_value"])
    # the main setting's headline bits: the same images as its files, each tensor in the smallest layout without
    # clusters, so between the files' best layout (clusters allowed) and the smallest non-cluster layout sized
    main = head[-1]
    for kind, key in (("activations", "act_coded_bits_per_value"), ("weights", "weight_coded_bits_per_value")):
        rows = [r for r in doc["layers"] if r["kind"] == kind]
        n = sum(r["n_values"] for r in rows)
        best = sum(r["closed_form_bits"] for r in rows) / n
        plain = sum(min(r[f"bpv_{x}"] for x in ("single", "channel", "bitwidth") if r[f"bpv_{x}"] is not None)
                    * r["n_values"] for r in rows) / n
        assert best - 1e-12 <= main[key] <= plain + 1e-12, kind


def test_analyze_tensors_rejects_bad_kind():
    with pytest.raises(AnalysisError, match="kind"):
        R.TensorInput("x", "biases", np.zeros((2, 2), np.uint8), 0, 4, 0)


def test_cli_report_names_no_machine_path(tmp_path, capsys):
    """A report written under a temporary folder names its files relative to it: no text output holds that
    folder, the home directory or the repository's path."""
    out = tmp_path / "rep"
    # the best recipe chooses each layer's clipping on held-out calibration images (4 readable ones hold one out);
    # min/max weight ranges instead of its MSE search over every ResNet-18 weight (minutes of CPU)
    code = main(["-q", "report", "--model", "resnet18", "--random-init", "--num-images", "5",
                 "--num-calibration", "4", "--batch-size", "2", "--adaround", "2", "--weight-clip", "minmax",
                 "--compare", "naive",
                 "--jobs", "1", "--keep-files", "--json", "--images", str(_image_dir(tmp_path, 4)), "--out", str(out)])
    assert code == 0
    stdout = capsys.readouterr().out
    doc = json.loads(stdout)
    assert doc["header"]["model"] == "resnet18" and doc["header"]["recipe"] == "custom"  # best, weight clipping changed
    assert doc["summary"]["activations"]["lossless"] is True and doc["summary"]["weights"]["lossless"] is True
    assert doc["header"]["calibration_files"] == {"written": ["calibration/equalized.npz"], "reused": []}
    assert (out / "calibration" / "equalized.npz").is_file()
    for kind in ("activations", "weights"):
        assert doc["files"][kind]["path"] == f"files/{kind}.hqt" and (out / "files" / f"{kind}.hqt").is_file()
    assert doc["header"]["images"].startswith("imgs/ (5 files), 1 unreadable skipped (4 evaluated)")
    assert "--out ." in doc["header"]["command"]
    texts = {"stdout": stdout}
    texts.update({p.name: p.read_text() for p in out.rglob("*") if p.suffix in (".md", ".json", ".csv")})
    assert {"report.md", "summary.json", "layers.csv"} <= set(texts)
    for needle in (str(tmp_path), str(Path.home()), str(ROOT), os.getcwd()):
        for name, text in texts.items():
            assert needle not in text, (needle, name)


def test_portable_paths(tmp_path):
    from analysis.report.paths import portable_command, portable_path
    from quant.models.efficientnet_lite import weights_path

    out = tmp_path / "out"
    assert portable_path(out / "calibration" / "x.npz", out) == "calibration/x.npz"
    assert portable_path(out, out) == "."
    assert portable_path(tmp_path / "elsewhere" / "w.pth", out) == "w.pth"
    installed = Path(weights_path())  # a file of an installed package: its package folder and its name
    # the deepest folder on sys.path holding it (a virtualenv inside a checkout has the checkout above it too)
    site = max((Path(p) for p in sys.path if p and Path(p) in installed.parents), key=lambda p: len(p.parts))
    assert portable_path(installed, out) == f"{installed.relative_to(site).parts[0]}/{installed.name}"
    cmd = portable_command(["report", "--out", str(out), f"--weights={tmp_path / 'w.pth'}", "--sweep"], out)
    assert cmd == "report --out . --weights=w.pth --sweep"


def test_cli_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["report", "--num-images", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["report", "--images", "a", "--imagenet", "b"])
    assert exc.value.code == 2
    for bad in (["--compare", "naive,fastest"], ["--sweep-recipes", "nope"], ["--wbits", "0"], ["--clip", "what"]):
        with pytest.raises(SystemExit) as exc:  # refused before the model loads
            main(["report", *bad, "--out", str(tmp_path)])
        assert exc.value.code == 2, bad
    assert not any(tmp_path.iterdir())


def test_learned_calibration_is_cached_and_checked(tmp_path):
    """The best recipe's learned calibration is written once, reused by a second run (same numbers), and learned
    again when the calibration images differ."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    images = torch.randn(8, 3, 20, 20)
    cache = tmp_path / "calibration"

    def run(imgs):
        cfg = R.ReportConfig(recipe="naive", batch_size=4, zstd_sample_bytes=256, adaround=5, compare=("best",),
                             calibration_dir=str(cache), num_calibration=4, jobs=1)
        return R.report(model, imgs, cfg)

    first = run(images)
    assert first.header["calibration_files"] == {"written": [cache / "equalized.npz"], "reused": []}
    stamp = (cache / "equalized.npz").stat().st_mtime_ns
    second = run(images)
    assert second.header["calibration_files"] == {"written": [], "reused": [cache / "equalized.npz"]}
    assert (cache / "equalized.npz").stat().st_mtime_ns == stamp
    best1, best2 = first.configs[1], second.configs[1]
    assert best1["recipe"] == best2["recipe"] == "best"
    for key in ("top1_agreement", "kl_divergence", "act_coded_bits_per_value", "weight_coded_bits_per_value"):
        assert best1[key] == best2[key], key
    assert second.timing["learned_calibration_s"] < first.timing["learned_calibration_s"]
    other = images.clone()
    other[0] += 1.0  # a calibration image changed: the cache no longer applies
    third = run(other)
    assert third.header["calibration_files"]["reused"] == []
    assert third.header["calibration_files"]["written"] == [cache / "equalized.npz"]


def _image_dir(tmp_path, n: int = 2):
    from PIL import Image

    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(d / f"im{i}.png")
    (d / "broken.jpg").write_bytes(b"not an image")
    return d


def test_shared_codebooks_are_counted_once_in_the_file(tmp_path):
    """Two layers with the same codes get the same codebooks, stored once: each layer's closed form counts them
    whole (the tensor alone, as entropy.save writes it), the file's coded bits count its share."""
    rng = np.random.default_rng(0)
    x = np.clip(np.round(np.maximum(rng.laplace(0, 2, (2, 6, 10, 10)), 0)), 0, 15).astype(np.uint8)
    ins = [R.TensorInput(n, "activations", x.copy(), 1, 16, 0) for n in ("a", "b")]
    results, files = R.analyze_tensors(ins, files_dir=tmp_path, zstd_sample_bytes={"activations": 256})
    a, b = (r.row for r in results)
    info = entropy.info(files["activations"]["path"])
    assert info.tensor("a").codebook_shared and info.tensor("b").codebook_shared
    assert a["closed_form_bits"] == b["closed_form_bits"] and a["lossless"] and b["lossless"]
    stored_once = a["closed_form_bits"] + b["closed_form_bits"] - a["coded_bits"] - b["coded_bits"]
    assert stored_once == 8 * info.codebook_bytes > 0
    alone = entropy.save(tmp_path / "alone.hqt", {"a": x}, channel_axis=1).tensor("a")
    assert 8 * alone.total_bytes == a["closed_form_bits"]


def test_a_main_setting_that_chooses_its_clipping_learns_it_on_the_calibration_images():
    """clip="auto" alone (no equalization, AdaRound or empirical correction) still needs calibration images: the
    report learns the choice before the main pass, as for the other learned parts."""
    from analysis.report.learned import learns
    from quant.recipes import recipe_config

    assert learns(recipe_config("naive", 4, 4, clip="auto"))
    assert not learns(recipe_config("naive", 4, None, clip="auto"))  # no activation to clip
    assert not learns(recipe_config("paper", 4, 4))
    torch.manual_seed(0)
    cfg = R.ReportConfig(recipe="naive", settings={"clip": "auto"}, compare=(), batch_size=4, zstd_sample_bytes=256,
                         jobs=1, clusters=())
    rep = R.report(TinyNet().eval(), torch.randn(8, 3, 20, 20), cfg)
    assert rep.header["settings"].startswith("W4A4 auto") and rep.header["recipe"] == "custom"
    assert rep.summary["activations"]["lossless"] is True
