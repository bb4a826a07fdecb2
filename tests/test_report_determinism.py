"""A report is deterministic for a fixed configuration on one machine: the same files byte for byte and the same
summary.json (timing and date aside), whether numba's cache was warm or cold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from analysis import report as R
from test_report import TinyNet

ROOT = Path(__file__).resolve().parents[1]


def _run(files: Path) -> R.Report:
    torch.manual_seed(0)
    model = TinyNet().eval()
    with torch.no_grad():
        for bn in (model.b1, model.b2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    images = torch.randn(8, 3, 20, 20)
    cfg = R.ReportConfig(batch_size=4, files_dir=str(files), zstd_sample_bytes=256, sweep=True, sweep_bits=(3,),
                         sweep_clips=("aciq-laplace",), sweep_images=8, sweep_rate_images=8, adaround=5,
                         sweep_recipe_bits=None)
    return R.report(model, images, cfg)


def _canonical(rep: R.Report) -> dict:
    d = R.to_dict(rep)
    d.pop("timing")
    d["header"].pop("date")
    d["targets"].pop("time")
    for f in d["files"].values():
        f.pop("path")
    return d


@pytest.mark.slow
def test_two_report_runs_are_identical(tmp_path):
    a, b = _run(tmp_path / "a"), _run(tmp_path / "b")
    assert _canonical(a) == _canonical(b)
    # allocation and bias correction on/off: the points that used to move
    assert len([p for p in a.sweep if not p["recipe"]]) == 4
    assert [p["recipe"] for p in a.sweep if p["recipe"]] == ["best"]  # AdaRound and its cache are deterministic too
    for kind in ("activations", "weights"):
        assert (tmp_path / "a" / f"{kind}.hqt").read_bytes() == (tmp_path / "b" / f"{kind}.hqt").read_bytes()


_STATS = """
import hashlib, sys
import numpy as np, torch
from quant.statistics import TensorStatistics
x = np.random.default_rng(0).standard_normal((4, 16, 3000)).astype(np.float32)
st = TensorStatistics(axis=1, histogram=False)
st.update(torch.from_numpy(x))
v = st.channel_view()
sys.stdout.write(hashlib.sha256(b"".join(t.numpy().tobytes() for t in (v.mean, v.std, v.b))).hexdigest())
"""


@pytest.mark.slow
def test_statistics_do_not_depend_on_a_warm_numba_cache(tmp_path):
    """The per-channel statistics that set the clipping ranges are the same when their kernel is compiled afresh
    (an empty cache) and when it is loaded from the cache that compilation wrote."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}

    def stats() -> str:
        out = subprocess.run([sys.executable, "-c", _STATS], env=env, capture_output=True, text=True, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return out.stdout

    cold = stats()
    assert any(tmp_path.rglob("*stat_kernels*.nbi"))  # the first run compiled and cached the kernel
    warm = stats()
    assert cold == warm and len(cold) == 64
    # and both are the statistics themselves (not a constant): float64 references of the same data
    x = np.random.default_rng(0).standard_normal((4, 16, 3000)).astype(np.float32)
    from quant.statistics import TensorStatistics

    st = TensorStatistics(axis=1, histogram=False)
    st.update(torch.from_numpy(x))
    rows = x.transpose(1, 0, 2).reshape(16, -1).astype(np.float64)
    np.testing.assert_allclose(st.channel_view().mean.numpy(), rows.mean(axis=1), rtol=0, atol=1e-6)
    np.testing.assert_allclose(st.channel_view().std.numpy(), rows.std(axis=1, ddof=1), rtol=1e-6)
