"""The encode/decode/inspect/verify commands on all four input formats, through the CLI entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis.cli import main
from analysis.tensor_io import read_tensors, write_tensors
import entropy as C


def _tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    return {
        "layer1.weight": rng.integers(-8, 8, (8, 4, 3, 3)).astype(np.int8),
        "layer1.acts": np.where(rng.random((2, 8, 6, 6)) < 0.85, 0, rng.integers(1, 16, (2, 8, 6, 6))).astype(np.uint8),
        "fc.weight": rng.integers(-100, 100, (10, 32)).astype(np.int16),
        "counter": np.array(7, dtype=np.int64),
        "empty": np.zeros((0, 3), np.int32),
    }


@pytest.mark.parametrize("suffix", [".npz", ".pt", ".safetensors", ".npy"])
def test_encode_decode_verify_round_trip(tmp_path, capsys, suffix):
    t = _tensors()
    if suffix == ".npy":
        t = {"only": t["layer1.acts"]}
    src = tmp_path / f"orig{suffix}"
    write_tensors(src, t)
    hqt = tmp_path / "coded.hqt"
    assert main(["encode", str(src), "-o", str(hqt), "--chunk-size", "128", "--meta", "model=toy"]) == 0
    stored = C.load(hqt)
    if suffix == ".npy":  # a .npy is named after its stem
        stored = {"only": stored.pop("orig")}
    assert sorted(stored) == sorted(t)  # (safetensors sorts names)
    for name, want in t.items():
        got = stored[name]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert C.info(hqt).metadata["model"] == "toy"
    capsys.readouterr()
    assert main(["verify", str(hqt), "--against", str(src)]) == 0
    out = capsys.readouterr().out
    assert out.count("ok ") == len(t)
    back = tmp_path / f"back{suffix}"
    assert main(["decode", str(hqt), "-o", str(back)]) == 0
    again = read_tensors(back)
    if suffix == ".npy":
        again = {"only": again.pop("back")}
    assert sorted(again) == sorted(t)
    for name, want in t.items():
        got = again[name]
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)


def test_state_dict_pt_with_nested_and_non_tensor_entries(tmp_path):
    import torch

    src = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"a": torch.arange(10, dtype=torch.int16)}, "epoch": 3}, src)
    hqt = tmp_path / "ckpt.hqt"
    assert main(["-q", "encode", str(src), "-o", str(hqt), "--share-codebooks", "--group", "1"]) == 0
    assert list(C.load(hqt)) == ["state_dict.a"]


def test_verify_names_the_failing_tensors(tmp_path, capsys):
    t = _tensors()
    src = tmp_path / "orig.npz"
    write_tensors(src, t)
    hqt = tmp_path / "c.hqt"
    C.save(hqt, t)
    changed = dict(t)
    changed["fc.weight"] = t["fc.weight"].copy()
    changed["fc.weight"][0, 0] += 1
    del changed["counter"]
    changed["new"] = np.zeros(3, np.uint8)
    changed["layer1.weight"] = t["layer1.weight"].astype(np.int16)
    other = tmp_path / "other.npz"
    write_tensors(other, changed)
    capsys.readouterr()
    assert main(["verify", str(hqt), "--against", str(other)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    for name, status in (("fc.weight", "mismatch"), ("counter", "extra"), ("new", "missing"), ("layer1.weight", "mismatch")):
        assert f"{name} ({status})" in err
    # a damaged payload is reported by name too
    raw = bytearray(hqt.read_bytes())
    with C.HQTFile(hqt) as f:
        off = f._header.tensor("layer1.acts", str(hqt)).payload_offset
    raw[off] ^= 0xFF
    hqt.write_bytes(bytes(raw))
    assert main(["verify", str(hqt), "--against", str(src), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    status = {x["name"]: x["status"] for x in report["tensors"]}
    assert status["layer1.acts"] == "damaged" and status["fc.weight"] == "ok"


def test_inspect_json_and_table(tmp_path, capsys):
    t = _tensors()
    hqt = tmp_path / "i.hqt"
    C.save(hqt, t, quant={"layer1.weight": {"scale": np.float32(0.1), "zero_point": 0, "bits": 4}})
    capsys.readouterr()
    assert main(["inspect", str(hqt), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["file_bytes"] == hqt.stat().st_size
    rows = {r["name"]: r for r in doc["tensors"]}
    assert list(rows) == list(t)
    for r in doc["tensors"]:
        for key in ("name", "shape", "n_values", "nominal_bits", "entropy_bits", "avg_code_length", "coded_bits_per_value"):
            assert key in r
    assert rows["layer1.weight"]["nominal_bits"] == 4.0
    assert rows["fc.weight"]["shape"] == [10, 32]
    assert main(["inspect", str(hqt)]) == 0
    out = capsys.readouterr().out
    assert "TOTAL" in out and "payload" in out and all(n in out for n in t)


def test_decode_dequantize_reproduces_stored_params(tmp_path):
    rng = np.random.default_rng(6)
    q = rng.integers(0, 16, (6, 4, 3)).astype(np.uint8)
    scale = rng.uniform(0.01, 1.0, 6).astype(np.float32)
    zp = rng.integers(0, 16, 6)
    hqt = tmp_path / "q.hqt"
    C.save(hqt, {"w": q, "raw": np.arange(5, dtype=np.int16)},
           quant={"w": {"scale": scale, "zero_point": zp, "bits": 4, "axis": 0}})
    for suffix in (".npz", ".safetensors"):
        out = tmp_path / f"f{suffix}"
        assert main(["-q", "decode", str(hqt), "-o", str(out), "--dequantize"]) == 0
        got = read_tensors(out)
        want = (q.astype(np.int64) - zp[:, None, None]).astype(np.float32) * scale[:, None, None]
        assert got["w"].dtype == np.float32
        np.testing.assert_array_equal(got["w"], want)
        np.testing.assert_array_equal(got["raw"], np.arange(5, dtype=np.int16))  # no params: as stored
    one = tmp_path / "w.npy"
    assert main(["-q", "decode", str(hqt), "-o", str(one), "--tensor", "w", "--dequantize"]) == 0
    np.testing.assert_array_equal(np.load(one), want)


def test_errors_and_exit_codes(tmp_path, capsys):
    src = tmp_path / "f.npz"
    write_tensors(src, {"x": np.ones(4, np.float32)})
    out = tmp_path / "o.hqt"
    assert main(["encode", str(src), "-o", str(out)]) == 1  # float without --bits
    err = capsys.readouterr().err
    assert "--bits" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    with pytest.raises(SystemExit) as exc:
        main(["encode", str(src), "-o", str(out), "--bits", "4"])  # --bits without --clip
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["encode", "-o", str(out)])  # no input
    assert exc.value.code == 2
    bad = tmp_path / "bad.hqt"
    bad.write_bytes(b"\x89HQT garbage")
    capsys.readouterr()
    assert main(["inspect", str(bad)]) == 1
    assert "FormatError" in capsys.readouterr().err
    C.save(bad, {"a": np.zeros(2, np.uint8), "b": np.zeros(2, np.uint8)})
    with pytest.raises(SystemExit) as exc:
        main(["decode", str(bad), "-o", str(tmp_path / "two.npy")])
    assert exc.value.code == 2
    assert main(["decode", str(bad), "-o", str(tmp_path / "x.npz"), "--tensor", "zzz"]) == 1


def test_float_input_is_quantized_with_stored_params(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.normal(0, 1, (8, 3, 3, 3)).astype(np.float32)
    src = tmp_path / "w.npz"
    write_tensors(src, {"w": x})
    hqt = tmp_path / "w.hqt"
    assert main(["-q", "encode", str(src), "-o", str(hqt), "--bits", "4", "--clip", "minmax", "--per-channel"]) == 0
    meta = C.load_quant(hqt, "w")
    assert {"scale", "zero_point"} <= set(meta)
    deq = C.dequantize(hqt, "w")
    assert deq.shape == x.shape and np.abs(deq - x).max() <= np.max(meta["scale"]) * 0.5 + 1e-6
    out = tmp_path / "deq.npz"
    assert main(["-q", "decode", str(hqt), "-o", str(out), "--dequantize"]) == 0
    np.testing.assert_array_equal(read_tensors(out)["w"], deq)


def test_inspect_json_says_what_the_table_says(tmp_path, capsys):
    """The JSON document holds every field of the file's info (as ``dataclasses.asdict`` would give it) and, for
    every tensor, the same facts as the table's row; one tensor per line."""
    import dataclasses

    import entropy

    t = _tensors()
    t["acts.axis"] = t["layer1.acts"].copy()
    hqt = tmp_path / "i.hqt"
    fi = entropy.save(hqt, t, channel_axis={"acts.axis": 1}, layout={"acts.axis": "cluster2"},
                      quant={"layer1.weight": {"scale": np.float32(0.1), "bits": 4}})
    capsys.readouterr()
    assert main(["inspect", str(hqt), "--json"]) == 0
    text = capsys.readouterr().out
    doc = json.loads(text)
    want = dataclasses.asdict(fi)
    want["path"] = str(hqt)
    assert doc == json.loads(json.dumps(want))  # tuples become lists; nothing missing, nothing added
    tensor_lines = [ln for ln in text.splitlines() if ln.startswith('    {"name": ')]
    assert [json.loads(ln.rstrip(","))["name"] for ln in tensor_lines] == list(t)
    assert main(["inspect", str(hqt)]) == 0
    table = {ln.split()[0]: ln.split() for ln in capsys.readouterr().out.splitlines() if ln.split()
             and ln.split()[0] in t}
    for r in doc["tensors"]:
        row = table[r["name"]]
        layout = r["layout"] if r["channel_axis"] is None else f"{r['layout']}@{r['channel_axis']}"
        shape = "x".join(map(str, r["shape"])) or "()"
        assert row[1:5] == [shape, r["dtype"], layout, str(r["n_codebooks"])]
        assert row[6] == str(r["n_values"])
        assert row[7:11] == [f"{r['nominal_bits']:.2f}", f"{r['entropy_bits']:.3f}", f"{r['avg_code_length']:.3f}",
                             f"{r['coded_bits_per_value']:.3f}"]
