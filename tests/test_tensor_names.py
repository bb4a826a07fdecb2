"""Tensor names never become paths: decode refuses names that are not plain, for every named output format."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import entropy
from analysis.cli import main
from analysis.errors import TensorNameError
from analysis.tensor_io import name_problem, read_tensors, write_tensors

NAMED_FORMATS = [".npz", ".safetensors", ".pt"]


def _tree(root) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files}


@pytest.fixture()
def evil(tmp_path, monkeypatch):
    """An .hqt file with a tensor named ../../x, and a working folder two levels down (so ../../x lands in tmp_path)."""
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    src = work / "evil.hqt"
    entropy.save(src, {"fine": np.arange(4, dtype=np.uint8), "../../x": np.arange(3, dtype=np.int16)})
    return tmp_path, src


@pytest.mark.parametrize("suffix", NAMED_FORMATS)
def test_decode_refuses_a_name_that_climbs(evil, capsys, suffix):
    root, src = evil
    before = _tree(root)
    out = f"out{suffix}"
    assert main(["decode", str(src), "-o", out]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TensorNameError" in err[0] and "'../../x'" in err[0] and "'..'" in err[0]
    assert _tree(root) == before  # neither the output nor anything at ../../x was written
    # asking for the plain tensor alone works
    assert main(["-q", "decode", str(src), "-o", out, "--tensor", "fine"]) == 0
    got = read_tensors(out)
    assert list(got) == ["fine"] and np.array_equal(got["fine"], np.arange(4, dtype=np.uint8))


def test_decode_to_npy_takes_such_a_tensor_out(evil, capsys):
    root, src = evil
    before = _tree(root)
    assert main(["-q", "decode", str(src), "-o", "x.npy", "--tensor", "../../x"]) == 0
    assert _tree(root) - before == {os.path.join("a", "b", "x.npy")}
    assert np.array_equal(np.load("x.npy"), np.arange(3, dtype=np.int16))


@pytest.mark.parametrize("suffix", NAMED_FORMATS)
@pytest.mark.parametrize("name", ["../../x", "..", "/etc/x", "C:x", "a//b", "a/./b", "a/", "", "a\x00b", "a\\b", "a\nb"])
def test_write_tensors_refuses_every_unplain_name(tmp_path, suffix, name):
    out = tmp_path / f"t{suffix}"
    with pytest.raises(TensorNameError) as exc:
        write_tensors(out, {"ok": np.zeros(2, np.uint8), name: np.zeros(2, np.uint8)})
    assert repr(name) in str(exc.value)
    assert not out.exists() and _tree(tmp_path) == set()


@pytest.mark.parametrize("name", ["layer1/weight", "a.b", "..a", "a..b", "...", "features.0:0", "x y"])
def test_plain_names_round_trip_inside_the_file(tmp_path, name):
    assert name_problem(name) is None
    for suffix in NAMED_FORMATS:
        out = tmp_path / f"t{suffix}"
        write_tensors(out, {name: np.arange(3, dtype=np.int8)})
        back = read_tensors(out)
        assert list(back) == [name] and np.array_equal(back[name], np.arange(3, dtype=np.int8))
    with zipfile.ZipFile(tmp_path / "t.npz") as zf:  # the member stays inside the archive
        (member,) = zf.namelist()
        assert member == f"{name}.npy" and not os.path.isabs(member) and ".." not in member.split("/")
