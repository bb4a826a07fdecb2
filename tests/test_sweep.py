"""Rate-fidelity sweep: the grid, exact rates per point and the Pareto front."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis import report as R
from analysis import sweep as S
from analysis.errors import AnalysisError


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c1(x))
        x = torch.relu(self.c2(x))
        return self.fc(x.mean((2, 3)))


def test_grid_rules():
    grid = S.sweep_grid((2, 4, 5.3), ("minmax", "kl"))
    assert len(grid) == 2 * 2 * 4 + 1 * 2 * 2  # fractional bits only with (bin) allocation
    assert all(p.allocation for p in grid if p.fractional)
    labels = [p.label() for p in grid]
    assert len(set(labels)) == len(labels)
    qc = S.SweepPoint(5.3, "aciq-laplace", True, True).quant_config()
    assert qc.bin_alloc == ("weights", "activations") and qc.bit_alloc == () and qc.bias_correction == "mean"
    qc = S.SweepPoint(3, "minmax", True, False).quant_config()
    assert qc.bit_alloc == ("weights", "activations") and qc.bias_correction is None
    with pytest.raises(AnalysisError):
        S.sweep_grid((), ("minmax",))


def test_grid_recipe_points():
    grid = S.sweep_grid((2, 4, 5.3, 8), ("minmax",), recipes=("best",), recipe_bits=(4, 8, 5.3))
    rec = [p for p in grid if p.recipe]
    assert [(p.bits, p.recipe) for p in rec] == [(4.0, "best"), (8.0, "best")]  # integer widths asked for only
    assert len(grid) - len(rec) == len(S.sweep_grid((2, 4, 5.3, 8), ("minmax",)))
    everywhere = S.sweep_grid((2, 4, 5.3, 8), ("minmax",), recipes=("best",))
    assert [p.bits for p in everywhere if p.recipe] == [2.0, 4.0, 8.0]


def test_mark_pareto():
    rows = [{"coded_bits_per_value": r, "top1_agreement": a} for r, a in
            [(1.0, 0.5), (2.0, 0.9), (2.0, 0.4), (3.0, 0.9), (0.5, 0.1), (4.0, 1.0)]]
    S.mark_pareto(rows)
    assert [r["pareto"] for r in rows] == [True, True, False, False, True, True]


def test_sweep_end_to_end(tmp_path):
    torch.manual_seed(1)
    cfg = R.ReportConfig(batch_size=3, progress=False, compare=(), sweep=True, sweep_bits=(2, 4, 3.5),
                         sweep_clips=("minmax", "aciq-laplace"), sweep_images=5, adaround=5,
                         sweep_recipe_bits=None)
    rep = R.report(SmallNet().eval(), torch.randn(6, 3, 12, 12), cfg)
    rows = rep.sweep
    grid = S.sweep_grid((2, 4, 3.5), ("minmax", "aciq-laplace"), recipes=("best",))
    assert [r["label"] for r in rows] == [p.label() for p in grid]
    # the best recipe at each integer bit width (not at the fractional one), as a whole recipe
    best = [r for r in rows if r["recipe"] == "best"]
    assert [r["wbits"] for r in best] == [2.0, 4.0] and {r["series"] for r in best} == {"best recipe"}
    assert all(r["series"] == r["clip"] for r in rows if not r["recipe"])
    for r in rows:
        assert r["images"] == 5 and r["rate_images"] == 5
        assert 0.0 <= r["top1_agreement"] <= 1.0 and r["kl_divergence"] >= -1e-9
        n_a, n_w = r["act_coded_bits_per_value"], r["weight_coded_bits_per_value"]
        assert min(n_a, n_w) <= r["coded_bits_per_value"] <= max(n_a, n_w)
        # coded sizes include side information: never below the pooled entropy by more than channel codes allow
        assert r["act_coded_bits_per_value"] > 0 and r["weight_coded_bits_per_value"] > 0
    # fewer bits cost fewer coded bits (same method, allocation and correction)
    by = {(r["wbits"], r["clip"], r["allocation"], r["bias_correction"]): r for r in rows if not r["recipe"]}
    for clip in ("minmax", "aciq-laplace"):
        assert by[(2.0, clip, False, False)]["weight_coded_bits_per_value"] < \
            by[(4.0, clip, False, False)]["weight_coded_bits_per_value"]
    front = [r for r in rows if r["pareto"]]
    assert front
    for r in rows:  # brute-force Pareto check
        dominated = any(o["coded_bits_per_value"] <= r["coded_bits_per_value"]
                        and o["top1_agreement"] >= r["top1_agreement"]
                        and (o["coded_bits_per_value"] < r["coded_bits_per_value"]
                             or o["top1_agreement"] > r["top1_agreement"]) for o in rows)
        assert r["pareto"] == (not dominated)
    text = rep.to_csv("sweep")
    assert text.splitlines()[0].split(",") == list(R.SWEEP_COLUMNS)
    assert len(text.splitlines()) == len(rows) + 1
    paths = rep.plot(tmp_path)
    assert (tmp_path / "rate_fidelity.png").exists() and (tmp_path / "rate_fidelity.pdf").exists()
    assert np.isfinite([r["coded_bits_per_value"] for r in rows]).all()
    assert len(paths) >= 2
