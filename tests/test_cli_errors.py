"""One-line error messages (the details under --debug) and global options on either side of the command."""

from __future__ import annotations

import argparse
import pickle

import numpy as np
import pytest
import torch
import torchvision

import analysis.cli as cli
from analysis.cli import build_parser, main
from analysis.errors import InputFormatError
from analysis.tensor_io import read_tensors, write_tensors
from quant.errors import ModelError
from quant.models import load_model
from quant.torch_files import state_dict_mismatch


def _one_error_line(capsys) -> str:
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def bad_weights(tmp_path_factory):
    """squeezenet1_1's state dict with two tensors of the wrong shape (one mismatch per ~100 lines of torch)."""
    path = tmp_path_factory.mktemp("weights") / "squeeze_bad.pth"
    state = torchvision.models.squeezenet1_1().state_dict()
    state["features.0.weight"] = torch.zeros(64, 3, 5, 5)  # the model has 3x3 kernels
    state["features.3.squeeze.weight"] = torch.zeros(16, 64, 3, 3)
    torch.save(state, path)
    return path


@pytest.mark.parametrize("command", [["evaluate"], ["calibrate", "-o", "never.npz"], ["encode", "-o", "never.hqt"]])
def test_weights_shape_mismatch_is_one_line(tmp_path, capsys, bad_weights, command):
    argv = [*command, "--model", "squeezenet1_1", "--weights", str(bad_weights)]
    argv = [a if not a.startswith("never") else str(tmp_path / a) for a in argv]
    assert main(argv) == 1
    line = _one_error_line(capsys)
    assert "ModelError" in line and str(bad_weights) in line
    assert "2 shape mismatches" in line and "'features.0.weight' is [64, 3, 5, 5] in the file, [64, 3, 3, 3]" in line
    assert not (tmp_path / "never.npz").exists() and not (tmp_path / "never.hqt").exists()
    # the whole story under --debug
    with pytest.raises(ModelError) as exc:
        main(["--debug", *argv])
    assert "size mismatch" in str(exc.value.__cause__)


def test_state_dict_mismatch_counts_every_kind():
    want = {"a": torch.zeros(2, 3), "b": torch.zeros(4), "c": torch.zeros(1)}
    got = {"a": torch.zeros(3, 2), "b": torch.zeros(4), "x": torch.zeros(1), "y": torch.zeros(1)}
    assert state_dict_mismatch(want, got) == (
        "1 shape mismatch (first: 'a' is [3, 2] in the file, [2, 3] in the model), "
        "1 missing key (first: 'c'), 2 unexpected keys (first: 'x')"
    )
    assert state_dict_mismatch(want, dict(want)) is None
    assert "not a state dict" in state_dict_mismatch(want, [1, 2])


def test_builtin_model_weights_mismatch_is_one_line(tmp_path):
    state = load_model().model.state_dict()
    state["_fc.weight"] = torch.zeros(10, 1280)
    path = tmp_path / "lite.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as exc:
        load_model(weights=path)
    msg = str(exc.value)
    assert "\n" not in msg and "1 shape mismatch (first: '_fc.weight' is [10, 1280] in the file, [1000, 1280]" in msg


class Opaque:  # a pickled object that is not a tensor (module level, so that it pickles)
    pass


@pytest.fixture()
def pickled_pt(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save({"w": torch.zeros(3), "extra": Opaque()}, path)
    return path


def test_pickled_pt_input_is_one_line(tmp_path, capsys, pickled_pt):
    assert main(["encode", str(pickled_pt), "-o", str(tmp_path / "x.hqt")]) == 1
    line = _one_error_line(capsys)
    assert str(pickled_pt) in line and "pickled Python objects" in line and "weights_only=True" in line
    assert "Opaque" in line and "\x1b[" not in line  # torch's message names the class, colour codes removed
    assert not (tmp_path / "x.hqt").exists()
    with pytest.raises(InputFormatError) as exc:
        read_tensors(pickled_pt)
    assert isinstance(exc.value.__cause__, pickle.UnpicklingError)


def test_pickled_pt_weights_are_one_line(capsys, pickled_pt):
    assert main(["evaluate", "--weights", str(pickled_pt)]) == 1
    line = _one_error_line(capsys)
    assert "cannot read EfficientNet-Lite0 weights" in line and "pickled Python objects" in line


def test_directory_as_input_or_output_says_so(tmp_path, capsys):
    d = tmp_path / "folder.npz"  # even with a tensor-file extension
    d.mkdir()
    plain = tmp_path / "plain"
    plain.mkdir()
    write_tensors(tmp_path / "t.npz", {"a": np.arange(5, dtype=np.int8)})
    hqt = tmp_path / "t.hqt"
    assert main(["-q", "encode", str(tmp_path / "t.npz"), "-o", str(hqt)]) == 0
    for argv in (["encode", str(plain), "-o", str(tmp_path / "x.hqt")],
                 ["encode", str(d), "-o", str(tmp_path / "x.hqt")],
                 ["verify", str(hqt), "--against", str(plain)],
                 ["decode", str(hqt), "-o", str(plain)]):
        assert main(argv) == 1, argv
        line = _one_error_line(capsys)
        assert "is a directory" in line and "(none)" not in line, line
    assert main(["inspect", str(plain)]) == 1
    line = _one_error_line(capsys)
    assert f"{plain}: Is a directory" in line


def test_global_options_before_and_after_the_command():
    parser = build_parser()
    for argv in (["-q", "calibrate", "-o", "s.npz"], ["calibrate", "-o", "s.npz", "-q"],
                 ["calibrate", "--quiet", "-o", "s.npz"]):
        args = parser.parse_args(argv)
        assert args.quiet is True and args.debug is False, argv
    args = parser.parse_args(["calibrate", "-o", "s.npz"])
    assert args.quiet is False and args.debug is False
    args = parser.parse_args(["--debug", "inspect", "f.hqt", "-q"])
    assert args.debug is True and args.quiet is True
    args = parser.parse_args(["-q", "inspect", "f.hqt", "--debug"])  # after the command does not reset -q
    assert args.debug is True and args.quiet is True


def test_quiet_after_the_command_silences_it(tmp_path, capsys):
    write_tensors(tmp_path / "t.npz", {"a": np.arange(5, dtype=np.int8)})
    assert main(["encode", str(tmp_path / "t.npz"), "-o", str(tmp_path / "a.hqt")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["encode", str(tmp_path / "t.npz"), "-o", str(tmp_path / "b.hqt"), "-q"]) == 0
    assert capsys.readouterr().out == ""


def test_debug_after_the_command_shows_the_traceback(tmp_path):
    with pytest.raises(InputFormatError):
        main(["encode", str(tmp_path / "missing.npz"), "-o", str(tmp_path / "x.hqt"), "--debug"])


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys):
    def boom(args: argparse.Namespace) -> int:
        raise RuntimeError("first line\nsecond line\nthird line")

    monkeypatch.setattr(cli, "_load_commands", lambda: [_FakeCommand(boom)])
    assert main(["fake"]) == 1
    line = _one_error_line(capsys)
    assert line == "huffquant fake: unexpected RuntimeError: first line (rerun with --debug for the details)"
    with pytest.raises(RuntimeError):
        main(["fake", "--debug"])


class _FakeCommand:
    COMMAND = "fake"
    HELP = "a command that fails"

    def __init__(self, run):
        self.run = run

    @staticmethod
    def register(parser: argparse.ArgumentParser) -> None:
        pass
