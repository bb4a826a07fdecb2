"""Commands that need no model never import torch (and the light ones not numba either).

Each case runs in a fresh interpreter, calls ``analysis.cli.main`` and prints the top-level
packages in ``sys.modules`` at exit, so that an import anywhere on the command's path shows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.cli import _COMMAND_MODULES
from analysis.tensor_io import write_tensors

ROOT = Path(__file__).resolve().parents[1]

# Runs each argv of sys.argv[1] (a JSON list of argv lists) through main(), then prints the
# exit codes and the imported top-level packages as JSON on the last stdout line.
_WRAPPER = """
import json, sys
from analysis.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        codes.append(main(argv))
    except SystemExit as exc:
        codes.append(exc.code)
print(json.dumps({"codes": codes, "modules": sorted({m.partition(".")[0] for m in sys.modules})}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _run(argvs: list[list[str]], cwd: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, json.dumps(argvs)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _imports(code: str) -> set[str]:
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return {m.partition(".")[0] for m in proc.stdout.split()}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("startup")
    rng = np.random.default_rng(0)
    t = {"a": rng.integers(-8, 8, (4, 5)).astype(np.int8), "b": np.arange(30, dtype=np.uint16)}
    write_tensors(d / "t.npz", t)
    write_tensors(d / "t.safetensors", t)
    write_tensors(d / "one.npy", {"one": t["a"]})
    import entropy

    entropy.save(d / "t.hqt", t)
    return d


# (argv, may it import numba?) for every command that needs no model
CASES = [
    (["inspect", "t.hqt"], False),
    (["inspect", "t.hqt", "--json"], False),
    (["aciq", "--bits", "2", "4"], False),
    (["encode", "t.npz", "-o", "e1.hqt"], True),
    (["encode", "t.safetensors", "-o", "e2.hqt"], True),
    (["encode", "one.npy", "-o", "e3.hqt"], True),
    (["decode", "t.hqt", "-o", "d.npz"], True),
    (["decode", "t.hqt", "-o", "d.safetensors"], True),
    (["decode", "t.hqt", "-o", "d.npy", "--tensor", "a"], True),
    (["verify", "t.hqt", "--against", "t.npz"], True),
    (["bench", "--size", "2000", "--repeats", "1", "--out", "bench.md"], True),
]


@pytest.mark.parametrize("argv,numba_ok", CASES, ids=["_".join(a[:3]) for a, _ in CASES])
def test_model_free_command_imports_no_torch(files, argv, numba_ok):
    res = _run([["-q", *argv]], files)
    assert res["codes"] == [0]
    assert "torch" not in res["modules"]
    assert "torchvision" not in res["modules"]
    if not numba_ok:
        assert "numba" not in res["modules"]


def test_help_of_every_command_imports_no_torch(files):
    argvs = [["--help"]] + [[name, "--help"] for name in _COMMAND_MODULES]
    res = _run(argvs, files)
    assert res["codes"] == [0] * len(argvs)
    assert "torch" not in res["modules"] and "numba" not in res["modules"]


def test_the_check_sees_torch_when_a_command_needs_it(files):
    # the same wrapper on a .pt input must see torch: the check above can fail
    import torch

    torch.save({"w": torch.arange(6, dtype=torch.int16)}, files / "w.pt")
    res = _run([["-q", "encode", "w.pt", "-o", "pt.hqt"]], files)
    assert res["codes"] == [0] and "torch" in res["modules"]


def test_import_entropy_is_light():
    mods = _imports("import entropy")
    assert "numba" not in mods and "torch" not in mods


def test_quant_package_and_aciq_are_torch_free():
    mods = _imports("import quant, quant.errors, quant.aciq\nassert quant.alpha_multiplier(4, 'laplace') > 0")
    assert "torch" not in mods and "numba" not in mods


def test_quant_public_names_resolve_lazily():
    import quant

    for name in quant.__all__:
        assert getattr(quant, name) is not None, name
    from quant.step_ratio import step_ratio

    assert quant.step_ratio is step_ratio  # the function, as before, not the submodule
    with pytest.raises(AttributeError):
        quant.no_such_name  # noqa: B018
