"""Rate-fidelity sweep: the grid, exact rates per point, the Pareto front, and the same rows on every engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis import report as R
from analysis.errors import AnalysisError
from analysis.report import sweep as S
from analysis.report.measure import inference_bits_per_value


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


def test_grid_points_are_the_recipes_settings():
    """A grid point with a recipe's clipping, allocation and correction is that recipe (same QuantConfig), so
    the report's measurement of the recipe can stand for it."""
    from quant.recipes import recipe_config

    naive = S.SweepPoint(4, "minmax", False, False).quant_config()
    paper = S.SweepPoint(4, "aciq-laplace", True, True).quant_config()
    assert S.config_key(naive) == S.config_key(recipe_config("naive", 4, 4, stats_mode="offline"))
    assert S.config_key(paper) == S.config_key(recipe_config("paper", 4, 4, stats_mode="offline"))


def test_allocation_at_the_cap_is_left_out_because_it_is_the_same_setting():
    from quant import QuantConfig, prepare

    cap = QuantConfig.alloc_max_bits
    grid = S.sweep_grid((cap, 4), ("minmax",))
    at_cap = [p for p in grid if p.bits == cap]
    assert [(p.allocation, p.bias_correction) for p in at_cap] == [(False, False), (False, True)]
    assert len([p for p in grid if p.bits == 4]) == 4
    # the point left out quantizes exactly as the one kept: same weight codes, same activation parameters
    torch.manual_seed(0)
    model = SmallNet().eval()
    calib = [torch.randn(4, 3, 12, 12)]
    with_alloc = prepare(model, S.SweepPoint(cap, "aciq-laplace", True, False).quant_config(), calibration=calib)
    without = prepare(model, S.SweepPoint(cap, "aciq-laplace", False, False).quant_config(), calibration=calib)
    for name, lq in with_alloc.layers.items():
        other = without.layers[name]
        assert torch.equal(lq.weight.codes, other.weight.codes)
        assert (lq.act_params is None) == (other.act_params is None) == (lq.act_bits is None)
        if lq.act_params is None:  # an output left in FP32 (the classifier's, the logits): in both
            continue
        assert torch.equal(lq.act_params.levels, other.act_params.levels)
        assert torch.equal(lq.act_params.scale, other.act_params.scale)
    assert any(lq.act_params is not None for lq in with_alloc.layers.values())


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


def _sweep_report(**engine) -> R.Report:
    torch.manual_seed(1)
    cfg = R.ReportConfig(batch_size=3, progress=False, compare=("naive",), sweep=True, sweep_bits=(2, 4, 3.5),
                         sweep_clips=("minmax", "aciq-laplace"), sweep_images=6, sweep_rate_images=5, adaround=5,
                         compare_rate_images=5, sweep_recipe_bits=None, zstd_sample_bytes=256, **engine)
    return R.report(SmallNet().eval(), torch.randn(6, 3, 12, 12), cfg)


@pytest.fixture(scope="module")
def in_process():
    return _sweep_report(jobs=1)


def test_sweep_end_to_end(in_process, tmp_path):
    rep = in_process
    rows = rep.sweep
    grid = S.sweep_grid((2, 4, 3.5), ("minmax", "aciq-laplace"), recipes=("best",))
    assert [r["label"] for r in rows] == [p.label() for p in grid]
    # the best recipe at each integer bit width (not at the fractional one), as a whole recipe
    best = [r for r in rows if r["recipe"] == "best"]
    assert [r["wbits"] for r in best] == [2.0, 4.0] and {r["series"] for r in best} == {"best recipe"}
    assert all(r["series"] == r["clip"] for r in rows if not r["recipe"])
    for r in rows:
        assert r["images"] == 6 and r["rate_images"] == 5
        assert 0.0 <= r["top1_agreement"] <= 1.0 and r["kl_divergence"] >= -1e-9
        assert r["top1_agreement_ci_low"] <= r["top1_agreement"] <= r["top1_agreement_ci_high"]
        n_a, n_w = r["act_coded_bits_per_value"], r["weight_coded_bits_per_value"]
        assert min(n_a, n_w) <= r["coded_bits_per_value"] <= max(n_a, n_w)
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
    text = R.to_csv(rep, "sweep")
    assert text.splitlines()[0].split(",") == list(R.SWEEP_COLUMNS)
    assert len(text.splitlines()) == len(rows) + 1
    paths = R.plot_report(rep, tmp_path)
    assert (tmp_path / "rate_fidelity.png").exists() and (tmp_path / "rate_fidelity.pdf").exists()
    assert np.isfinite([r["coded_bits_per_value"] for r in rows]).all()
    assert len(paths) >= 2


def test_sweep_rates_are_those_of_each_point_measured_alone(in_process):
    """Weights sized once per weight setting and the report's own measurements reused give the numbers each
    point gets when measured alone, from scratch."""
    from analysis.report.measure import Measure, MeasureContext, measure
    from quant.calibration import calibrate
    from quant.capture import ActivationSite
    from quant.graph import instrument

    rep = in_process
    torch.manual_seed(1)
    model = SmallNet().eval()
    images = torch.randn(6, 3, 12, 12)
    batches = [(images[i:i + 3], None) for i in range(0, 6, 3)]
    inst = instrument(model, ActivationSite)
    stats = calibrate(inst, [images[:3], images[3:]], model_name="SmallNet")  # the first 32 (here 6) images
    with torch.no_grad():
        refs = [inst(x) for x, _ in batches]
    ctx = MeasureContext("SmallNet", model, {"report": stats}, batches, refs)
    rows = {r["label"]: r for r in rep.sweep}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the report's measurements run with one thread each (ReportConfig.task_threads)
    try:
        alone = {p.label(): measure(ctx, Measure(p.quant_config(), "report", images=6, rate_images=5))
                 for p in S.sweep_grid((2, 4), ("minmax", "aciq-laplace"))}
    finally:
        torch.set_num_threads(threads)
    for label, m in alone.items():
        p = label
        r = rows[label]
        assert r["weight_coded_bits_per_value"] == m.rates["weights"]["coded_bits_per_value"], p
        assert r["act_coded_bits_per_value"] == m.rates["activations"]["coded_bits_per_value"], p
        assert r["coded_bits_per_value"] == inference_bits_per_value(m.rates, 5)
        assert r["top1_agreement"] == m.fidelity["top1_agreement"], p
        assert r["kl_divergence"] == m.fidelity["kl_divergence"], p
    # the weights do not depend on the activations' clipping or the weights' bias correction
    for bits in (2.0, 4.0):
        for alloc in (False, True):
            w = {r["weight_coded_bits_per_value"] for r in rep.sweep
                 if not r["recipe"] and r["wbits"] == bits and r["allocation"] == alloc}
            assert len(w) == 1


def _same_rows(a: R.Report, b: R.Report) -> None:
    assert [r["label"] for r in a.sweep] == [r["label"] for r in b.sweep]
    for ra, rb in zip(a.sweep, b.sweep):
        assert ra == rb, ra["label"]
    assert a.headline == b.headline
    assert [c for c in a.configs] == [c for c in b.configs]


@pytest.mark.slow
def test_two_loky_jobs_give_the_rows_of_one(in_process):
    two = _sweep_report(jobs=2)
    assert two.header["engine"] == "2 loky worker processes"
    _same_rows(in_process, two)


@pytest.mark.slow
def test_a_local_dask_cluster_gives_the_rows_of_one_process(in_process):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
                                  silence_logs=40) as cluster, distributed.Client(cluster) as client:
        with distributed.get_task_stream(client) as stream:
            on_cluster = _sweep_report(cluster=cluster.scheduler_address)
        assert on_cluster.header["engine"] == "Dask distributed cluster"
        ran = [t for t in stream.data if str(t.get("key", "")).startswith("batch_of")]  # joblib's tasks
        # every sweep point ran there but two: the compared naive recipe and the main setting (best) stand for them
        assert len(ran) >= len(on_cluster.sweep) - 2
        assert len({t["worker"] for t in ran}) == 2  # on both workers
    _same_rows(in_process, on_cluster)


def test_cluster_needs_a_reachable_scheduler():
    pytest.importorskip("distributed")
    from analysis.report.parallel import Engine

    with pytest.raises(AnalysisError, match="Dask scheduler"):
        with Engine(cluster="tcp://127.0.0.1:9", threads=1).session(object()):
            pass
