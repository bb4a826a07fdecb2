"""Smoke test of `huffquant bench` at a tiny size (no timing assertions)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import entropy.codec.threads as eth
from analysis.benchmarks import bench_markdown, evaluate_targets
from analysis.benchmarks.codec import METHODS, codec_rows, make_datasets, reference_bits
from analysis.cli import main

ROW_KEYS = {"dataset", "method", "threads", "bits_per_value", "entropy", "encode_MBps", "decode_MBps", "lossless"}


def test_datasets_are_fixed_and_shaped():
    a, b = make_datasets(5000), make_datasets(5000)
    assert set(a) == {"lap4", "relu4", "lap8", "relu4-sparse", "wide-int16", "wide-uint16"}
    for k in a:
        want = {"wide-int16": np.int16, "wide-uint16": np.uint16}.get(k, np.uint8)
        assert np.array_equal(a[k], b[k]) and a[k].dtype == want and a[k].size == 5000
    wide = make_datasets(1_000_000)
    assert np.unique(wide["wide-int16"]).size > 4096  # more values than a 12-bit code can hold
    assert np.unique(wide["wide-uint16"]).size > 50_000
    assert int(a["lap4"].max()) <= 15 and int(a["lap8"].max()) > 15
    big = make_datasets(200_000)
    zeros = {k: float(np.mean(v == 0)) for k, v in big.items()}
    assert 0.50 < zeros["relu4"] < 0.56 and 0.88 < zeros["relu4-sparse"] < 0.94


def test_codec_rows_and_targets():
    ds = make_datasets(3000)
    rows = codec_rows(ds, 1, threads=3)
    # bitarray codes bytes: it runs on the four 1-byte datasets only; huffquant on 1 and 3 threads
    assert len(rows) == len(ds) * (len(METHODS) + 1) - 2
    assert {r["dataset"] for r in rows if r["method"] == "bitarray"} == {"lap4", "relu4", "lap8", "relu4-sparse"}
    for r in rows:
        assert set(r) >= ROW_KEYS
        assert r["lossless"] is True
        assert r["bits_per_value"] > 0
        assert r["threads"] in ((1, 3) if r["method"] == "huffquant" else (1,))
    assert sorted(r["threads"] for r in rows if r["method"] == "huffquant") == [1] * len(ds) + [3] * len(ds)
    refs = {k: reference_bits(v) for k, v in ds.items()}
    hq = {r["dataset"]: r for r in rows if r["method"] == "huffquant" and r["threads"] == 1}
    for k in ds:
        assert hq[k]["entropy"] == pytest.approx(refs[k]["entropy"])
        assert refs[k]["huffman"] >= refs[k]["entropy"]
    targets = evaluate_targets(rows, refs)
    assert {t["dataset"] for t in targets} == set(ds)
    assert all(isinstance(t["met"], bool) for t in targets)
    # all-core against single-thread speed, from the two rows of the same run
    par = [t for t in targets if "single thread" in t["target"]]
    assert {(t["dataset"], t["target"].split()[0]) for t in par} == {
        (d, w) for d in ("lap4", "lap8") for w in ("encode", "decode")}
    for t in par:
        one, many = (next(r for r in rows if r["dataset"] == t["dataset"] and r["method"] == "huffquant"
                          and r["threads"] == n) for n in (1, 3))
        what = t["target"].split()[0]
        ratio = many[f"{what}_MBps"] / one[f"{what}_MBps"]
        assert t["value"] == f"{ratio:.2f}x (3 threads)"
        assert t["met"] == (ratio >= (1.7 if what == "decode" else 1.5))
    single = codec_rows({"lap4": ds["lap4"]}, 1, methods=("huffquant",), threads=1)
    assert [r["threads"] for r in single] == [1]
    assert not [t for t in evaluate_targets(single, refs) if "single thread" in t["target"]]


def test_cli_json_and_report(tmp_path, capsys):
    out = tmp_path / "bench.md"
    assert main(["-q", "bench", "--size", "2000", "--repeats", "1", "--json", "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out)
    rows = doc["rows"]
    methods = {r["method"] for r in rows}
    assert set(METHODS) <= methods
    assert {r["threads"] for r in rows if r["method"].startswith("huffquant")} == {1, eth.available_cores()}
    assert all(set(r) >= ROW_KEYS and r["lossless"] is True for r in rows)
    text = out.read_text()
    assert "| lap4 | huffquant |" in text and "Targets" in text
    assert text == bench_markdown(
        {**doc, "rows": rows, "references": doc["references"], "setup": doc["setup"]}
    )


def test_cli_rejects_bad_size(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--size", "0", "--out", str(tmp_path / "x.md")])
    assert exc.value.code == 2
