"""The report's driver: :func:`report` runs the whole job on a model and images, in named stages.

1. :func:`_baseline` - the images, the calibration statistics and the FP32 logits (the speed target's baseline);
2. :func:`_learn` - what the recipes learn on the calibration images (cached in ``calibration_dir``);
3. :func:`_main_pass` - the main setting: quantized pass over every image, its integer codes
   (:mod:`analysis.report.model_pass`);
4. :func:`_code_main` - its tensors coded, written as real ``.hqt`` files, decoded and verified, measured
   (:mod:`analysis.report.tensors`, :mod:`analysis.report.summary`);
5. :func:`_measure_others` - the compared recipes, then (with ``sweep``) the rate-fidelity sweep
   (:mod:`analysis.report.sweep`), as independent measurements on joblib (:mod:`analysis.report.parallel`);
6. :func:`_assemble` - the headline, the recipe rows, the targets (:mod:`analysis.report.targets`), the figures'
   data (:mod:`analysis.report.figures`) and the header, into a :class:`~analysis.report.document.Report`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Sequence

from analysis.report.config import HISTOGRAM_CLIPS, ReportConfig
from analysis.report.document import Report
from analysis.report.figures import figure_data
from analysis.report.learned import LearnedCalibration, learns
from analysis.report.measure import (
    Measure, Measured, MeasureContext, add_seconds, fidelity_columns, inference_bits_per_value, measure,
    weight_digest,
)
from analysis.report.model_pass import QuantizedPass, ReportInputs, resolve_inputs, run_quantized, tensor_inputs
from analysis.report.parallel import Engine
from analysis.report.summary import summarize
from analysis.report.sweep import config_key, run_sweep, sweep_grid
from analysis.report.targets import report_targets, time_ratio
from analysis.report.tensors import TensorInput, TensorResult, analyze_tensors, closed_form_rates

__all__ = ["report", "coded_tensors"]

_REPORT_STATISTICS = "report"  # the name of the report's own statistics among the measurements' statistics


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"huffquant {version('huffquant')}"
    except Exception:  # noqa: BLE001
        return "huffquant (not installed)"


def coded_tensors(qmodel: Any) -> dict[str, Any]:
    """Which tensors of a quantized model the report codes: the layers whose weights and whose outputs are
    quantized (counts), and the layer outputs left in FP32 (names; the classifier's output, the logits, by
    default: the network's output is not a stored feature map)."""
    layers = qmodel.layers
    fp32 = [n for n, lq in layers.items() if lq.act_bits is None]
    return {
        "weights": sum(1 for lq in layers.values() if lq.weight is not None),
        "activations": len(layers) - len(fp32),
        "fp32_outputs": fp32,
        "fp32_logits": [n for n in fp32 if layers[n].info.classifier],
    }


@dataclass
class _Setting:
    """One setting of the report: ``role`` main or the compared recipe's name."""

    role: str
    recipe: str
    config: Any


@dataclass
class _Main:
    """The main setting measured: its quantized model, its pass, its tensors, and the header's facts about which
    tensors are quantized and coded (:func:`coded_tensors`, the pipeline's coverage)."""

    qmodel: Any
    qpass: QuantizedPass
    inputs: list[TensorInput]
    coverage: dict[str, Any]


def _settings(cfg: ReportConfig) -> list[_Setting]:
    """The main setting, then every compared recipe whose configuration differs from it."""
    main = cfg.quant_config()
    out = [_Setting("main", cfg.recipe if not cfg.settings else "custom", main)]
    for name in cfg.compared():
        qc = cfg.recipe_config(name)
        if qc != main:
            out.append(_Setting(name, name, qc))
    return out


def _baseline(src: ReportInputs, cfg: ReportConfig, clips: Sequence[str], keep_fp32: Sequence[str],
              timing: dict) -> tuple[Any, list]:
    """Stage 1: calibration statistics (with per-channel histograms when a clipping method needs them) and the FP32
    logits of every evaluation image; ``keep_fp32``: the conv/linear modules every setting leaves in FP32."""
    import torch

    from quant.calibration import calibrate
    from quant.capture import ActivationSite
    from quant.graph import instrument

    dev = torch.device(cfg.device)
    t = time.perf_counter()
    inst = instrument(src.module, ActivationSite, keep_fp32=keep_fp32).to(dev)
    per_channel_hist = any(c.split(":")[0] in HISTOGRAM_CLIPS for c in clips)  # per-channel KL, MSE, percentile
    stats = calibrate(inst, list(src.calib_batches), model_name=src.name, device=dev, progress=cfg.progress,
                      total=len(src.calib_batches), channel_histograms=per_channel_hist)
    timing["calibration_s"] = time.perf_counter() - t
    t = time.perf_counter()
    with torch.no_grad():
        refs = [inst(x.to(dev)) for x, _ in src.eval_batches]
    timing["fp32_forward_s"] = time.perf_counter() - t
    return stats, refs


def _learn(learned: LearnedCalibration, configs: Sequence[Any]) -> None:
    """Stage 2: what every configuration that learns needs, learned now (or loaded from the cache), so that the
    measurements only read it."""
    for qc in configs:
        if learns(qc):
            learned.learn(qc)


def _allocates(qc: Any) -> bool:
    return bool(qc.bit_alloc or qc.bin_alloc)


def _statistics_name(qc: Any) -> str:
    return LearnedCalibration.statistics_name(qc) if learns(qc) else _REPORT_STATISTICS


def _first(inputs: Sequence[TensorInput], images: int | None) -> list[TensorInput]:
    """``inputs`` with the activations of the first ``images`` images only (weights as they are)."""
    if images is None:
        return list(inputs)
    return [dataclasses.replace(t, codes=t.codes[:images]) if t.kind == "activations" else t for t in inputs]


def _main_pass(src: ReportInputs, cfg: ReportConfig, qc: Any, learned: LearnedCalibration, stats: Any, refs: list,
               timing: dict) -> _Main:
    """Stage 3: the main setting's quantized pass over every image, recording the codes of the images the report
    codes (``activation_images``) and sizes for the headline (``compare_rate_images``). The step ratios come from
    ``stats``, the FP32 network's (an equalized network's ReLU6 bounds differ per channel)."""
    from quant import prepare

    t = time.perf_counter()
    if learns(qc):
        qm = learned.prepare(qc)
    else:
        qm = prepare(src.module, qc, stats=stats, device=cfg.device, model_name=src.name, progress=False)
    keep = [cfg.activation_images, cfg.compare_rate_images]
    record = None if None in keep else max(keep)
    qp = run_quantized(qm, src.eval_batches, refs, record=True, progress=cfg.progress, desc="quantized (main)",
                       record_images=record, prefix_images=cfg.sweep_images if cfg.sweep else None)
    inputs = tensor_inputs(qm, qp.codes, stats, qc.abits)
    qp.codes = {}
    timing["main_quantized_s"] = time.perf_counter() - t
    return _Main(qm, qp, inputs, {"coded_tensors": coded_tensors(qm), **qm.quant.coverage().to_dict()})


def _code_main(src: ReportInputs, cfg: ReportConfig, settings: str, main: _Main,
               timing: dict) -> tuple[list[TensorResult], dict, dict]:
    """Stage 4: the main setting's tensors (activations of the first ``activation_images`` images) coded, written,
    read back and verified; returns the per-tensor results, the files' facts and the whole-model summary."""
    t = time.perf_counter()
    tmp = None
    files_dir = cfg.files_dir
    if files_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="huffquant-report-")
        files_dir = tmp.name
    coding_timing: dict[str, float] = {}
    try:
        results, files = analyze_tensors(
            _first(main.inputs, cfg.activation_images), files_dir=files_dir,
            metadata={"model": src.name, "settings": settings, "images": src.description},
            max_code_length=cfg.max_code_length, chunk_size=cfg.chunk_size,
            zstd_sample_bytes={"activations": cfg.zstd_sample_bytes,
                               "weights": 4 * cfg.zstd_sample_bytes if cfg.zstd_sample_bytes else None},
            verify_huffman_packing=cfg.verify_huffman_packing, clusters=cfg.clusters, durable=tmp is None,
            progress=cfg.progress, timing=coding_timing,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    if tmp is not None:
        for f in files.values():
            f["path"] = None  # written and verified in a temporary directory, then removed
    timing["coding_s"] = time.perf_counter() - t
    timing.update({f"coding.{k}": v for k, v in coding_timing.items()})
    return results, files, summarize([r.row for r in results], files)


def _main_measured(cfg: ReportConfig, main: _Main, timing: dict) -> Measured:
    """The main setting as the other recipes are measured (closed form on the first ``compare_rate_images``, no
    clusters), for the headline and the sweep."""
    t = time.perf_counter()
    inputs = _first(main.inputs, cfg.compare_rate_images)
    rates = closed_form_rates(inputs, max_code_length=cfg.max_code_length, chunk_size=cfg.chunk_size, clusters=())
    timing["main_rates_s"] = time.perf_counter() - t
    n_act = [int(t.codes.shape[0]) for t in inputs if t.kind == "activations"]
    return Measured(main.qpass.fidelity, main.qpass.prefix_fidelity, rates, images=main.qpass.images,
                    rate_images=n_act[0] if n_act else 0, weight_digest=weight_digest(inputs))


def _measure_others(src: ReportInputs, cfg: ReportConfig, settings: list[_Setting], learned: LearnedCalibration,
                    stats: Any, refs: list, known: dict[str, Measured], sweep_points: list,
                    timing: dict) -> tuple[list[Measured], list[dict] | None]:
    """Stage 5: the compared recipes (every image; activations sized on the first ``compare_rate_images``), then
    the sweep, through one engine session (the model, statistics, images and FP32 logits go to each worker once).
    Returns the compared recipes' measurements and the sweep rows (None without ``sweep``)."""
    others = settings[1:]
    if not others and not sweep_points:
        return [], None
    context = MeasureContext(src.name, src.module, {_REPORT_STATISTICS: stats, **learned.named_statistics()},
                             src.eval_batches, refs, cfg.device, cfg.max_code_length, cfg.chunk_size)
    engine = Engine(jobs=cfg.jobs, cluster=cfg.cluster, threads=cfg.task_threads)
    sweep_rows = None
    with engine.session(context, by_value=[src.module]) as run:
        t = time.perf_counter()
        tasks = [Measure(s.config, _statistics_name(s.config), images=None, rate_images=cfg.compare_rate_images,
                         prefix_images=cfg.sweep_images if cfg.sweep else None) for s in others]
        compared = run(measure, tasks, desc="recipes", progress=cfg.progress)
        timing["compare_s"] = time.perf_counter() - t
        add_seconds(timing, "compare", compared)
        if cfg.sweep:
            for s, m in zip(others, compared):
                known.setdefault(config_key(s.config), m)
            usable = {k: m for k, m in known.items()
                      if m.prefix_fidelity is not None and m.rate_images == (cfg.sweep_rate_images or m.rate_images)}
            t = time.perf_counter()
            sweep_rows = run_sweep(sweep_points, cfg, run, statistics_of=_statistics_name, known=usable,
                                   timing=timing)
            timing["sweep_s"] = time.perf_counter() - t
    return compared, sweep_rows


def _rates_columns(rates: dict) -> dict:
    out = {}
    for kind, r in rates.items():
        pre = "act" if kind == "activations" else "weight"
        out[f"{pre}_coded_bits_per_value"] = r["coded_bits_per_value"]
        out[f"{pre}_entropy_bits"] = r["entropy_bits"]
        out[f"{pre}_nominal_bits"] = r["nominal_bits"]
    return out


def _headline_row(s: _Setting, m: Measured) -> dict:
    fid = fidelity_columns(m.fidelity, m.images)
    return {
        "recipe": s.recipe, "main": s.role == "main", "settings": s.config.describe(),
        "act_coded_bits_per_value": m.rates.get("activations", {}).get("coded_bits_per_value"),
        "weight_coded_bits_per_value": m.rates.get("weights", {}).get("coded_bits_per_value"),
        "coded_bits_per_value": inference_bits_per_value(m.rates, m.rate_images),
        "top1_agreement": fid["top1_agreement"], "top1_agreement_ci": list(m.fidelity["top1_agreement_ci"]),
        "logit_sqnr_db": fid["logit_sqnr_db"], "top1": fid["top1"],
        "top1_ci": None if fid["top1_ci_low"] is None else [fid["top1_ci_low"], fid["top1_ci_high"]],
        "images": m.images, "rate_images": m.rate_images,
    }


def _headline(settings: list[_Setting], measured: list[Measured]) -> list[dict]:
    """Per recipe (in the recipes' order; a custom main setting first), coded bits next to fidelity."""
    from quant.recipes import RECIPES

    order = {name: i for i, name in enumerate(RECIPES)}
    rows = [_headline_row(s, m) for s, m in zip(settings, measured)]
    return sorted(rows, key=lambda r: order.get(r["recipe"], -1))


def _notes(cfg: ReportConfig) -> list[str]:
    zs = cfg.zstd_sample_bytes
    notes = [
        "zstd level 19 runs at a few MB/s; it compresses a deterministic sample of each tensor's packed bytes "
        f"(16 evenly spaced blocks, {zs // 1024} KiB per activation tensor and {4 * zs // 1024} KiB per weight "
        "tensor; the zstd_sample_fraction column gives the share of values compressed)." if zs else
        "zstd level 19 compresses every tensor's packed bytes in full.",
        (f"Every recipe's headline coded bits per value are measured on its first {cfg.compare_rate_images} "
         "images, each tensor in the smallest of entropy's single, per-channel and bit-width layouts (no clusters "
         "of channels), sized in closed form; their fidelity on all images." if cfg.compare_rate_images else
         "Every recipe's headline coded bits per value are measured on all images."),
        "Recipes: naive = per-channel min/max; paper = ACIQ + per-channel bit allocation + mean bias correction; "
        "best = cross-layer equalization + each layer's activation clipping chosen on held-out calibration images "
        "+ MSE weight clipping + AdaRound + empirical bias correction (quant/METHODS.md). "
        "Top-1 agreement comes with its 95% Wilson interval.",
        "MSE vs α: the simulation clips Laplace(0, 1) samples to [-α, α] and rounds them to the centres of "
        "2^M equal bins, the quantizer eq. 5 models.",
        (f"The main setting's activations are the integer codes of the first {cfg.activation_images} evaluation "
         "images (the reference code measures entropy per batch of 32 and averages over batches); fidelity uses "
         "every evaluation image." if cfg.activation_images else
         "The main setting's activations are the integer codes of every evaluation image."),
        "Layouts are sized exactly from per-channel symbol counts by entropy (entropy.layout_choices); each "
        "layer is one tensor of the .hqt file in the smallest layout, the one entropy.save picks for its channel "
        "axis, and is read back and compared (SHA-256) with the exported codes.",
        "The step ratio uses per-tensor statistics of the FP32 calibration outputs (ACIQ Laplace vs KL at the "
        "layer's mean bit width).",
    ]
    if cfg.verify_huffman_packing:
        notes.append("Packings (iii) and (iv) were also encoded and decoded for every layer (lossless).")
    return notes


def _header(src: ReportInputs, cfg: ReportConfig, settings: list[_Setting], learned: LearnedCalibration,
            written: list, engine: str, coverage: dict) -> dict:
    import torch

    main = settings[0]
    b = f"W{main.config.wbits:g}A{main.config.abits:g}" if main.config.wbits and main.config.abits else "its bits"
    return {
        "model": src.name,
        "weights": src.weights,
        "images": src.description,
        "labelled": src.labelled,
        "settings": main.config.describe(),
        **coverage,
        "recipe": main.recipe,
        "bits": b,
        "compared": {s.role: s.config.describe() for s in settings[1:]},
        "calibration_files": {"written": list(written), "reused": list(learned.reused)},
        "package": _version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(cfg.device),
        "threads": torch.get_num_threads(),
        "engine": engine,
        "task_threads": cfg.task_threads,
        "command": cfg.command,
        "max_code_length": cfg.max_code_length,
        "chunk_size": cfg.chunk_size,
        "notes": _notes(cfg),
    }


def report(
    model: Any = "efficientnet-lite0",
    images: Any = None,
    config: ReportConfig | None = None,
    *,
    calibration_images: Any = None,
) -> Report:
    """Run the whole report: calibrate, quantize (main setting and compared recipes), export the integer
    activations and weights, code them, write and verify real ``.hqt`` files, measure everything.

    ``model``: a name (see ``quant.models.available_models``), a ``LoadedModel`` or an ``nn.Module``.
    ``images``: None (the built-in evaluation photos), a folder, an ``ImageSet`` (e.g. ImageNet-style with
    labels) or an image tensor ``(N, 3, H, W)``. ``calibration_images``: default the built-in calibration crops
    (all 144, or ``config.num_calibration``) when ``images`` is None, else the first ``config.num_calibration``
    (default 32) report images. Returns a :class:`Report` (render it with :func:`analysis.report.write_report`);
    nothing is printed, and nothing is written outside ``config.files_dir`` and ``config.calibration_dir``.
    """
    import torch

    cfg = config or ReportConfig()
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    src = resolve_inputs(model, images, calibration_images, cfg)
    timing["images_s"] = time.perf_counter() - t_start
    settings = _settings(cfg)
    points = sweep_grid(cfg.sweep_bits, cfg.sweep_clips, recipes=cfg.sweep_recipes,
                        recipe_bits=cfg.sweep_recipe_bits) if cfg.sweep else []
    clips = [s.config.clip for s in settings] + [p.clip for p in points]
    stats, refs = _baseline(src, cfg, clips, settings[0].config.keep_fp32, timing)
    learned = LearnedCalibration(src.module, src.calib_batches, model_name=src.name, source="report calibration",
                                 directory=cfg.calibration_dir, device=torch.device(cfg.device),
                                 progress=cfg.progress)
    _learn(learned, [s.config for s in settings]
           + [p.quant_config(adaround=cfg.adaround, keep_fp32=cfg.keep_fp32) for p in points])

    main = _main_pass(src, cfg, settings[0].config, learned, stats, refs, timing)
    results, files, summary = _code_main(src, cfg, settings[0].config.describe(), main, timing)
    main_measured = _main_measured(cfg, main, timing)
    figures = figure_data(results, main.qmodel, stats, hist_layer=cfg.hist_layer, abits=settings[0].config.abits)
    del main.qmodel
    known = {config_key(settings[0].config): main_measured}
    compared, sweep_rows = _measure_others(src, cfg, settings, learned, stats, refs, known, points, timing)
    if not _allocates(settings[0].config):  # no allocation in the main setting: show a compared recipe's
        for s, m in zip(settings[1:], compared):
            if _allocates(s.config) and m.channel_bits:
                figures["channel_bits"], figures["channel_bits_recipe"] = m.channel_bits, s.recipe
                break
    return _assemble(src, cfg, settings, learned, main_measured, compared, results, files, summary, figures,
                     sweep_rows, main.coverage, timing, t_start)


def _assemble(src: ReportInputs, cfg: ReportConfig, settings: list[_Setting], learned: LearnedCalibration,
              main_measured: Measured, compared: list[Measured], results: list[TensorResult], files: dict,
              summary: dict, figures: dict, sweep_rows: list[dict] | None, coverage: dict, timing: dict,
              t_start: float) -> Report:
    """Stage 6: the document; ``coverage``: the header's facts about the main setting's quantized tensors."""
    written = learned.save()
    timing["learned_calibration_s"] = learned.seconds
    timing["report_s"] = time.perf_counter() - t_start - timing.get("sweep_s", 0.0)
    timing["ratio_to_fp32_and_calibration"] = time_ratio(timing, timing["report_s"])

    conf_rows = []
    for s, m in zip(settings, [main_measured] + compared):
        row = {"role": s.role, "recipe": s.recipe, "label": s.config.describe(), "config": s.config.to_dict(),
               **m.fidelity, "images": m.images, "rate_images": m.rate_images, **_rates_columns(m.rates)}
        conf_rows.append(row)
    main_row = conf_rows[0]  # the main setting's coded bits are those of its written files
    main_row["rate_images"] = min(cfg.activation_images or main_measured.images, main_measured.images)
    for kind, pre in (("activations", "act"), ("weights", "weight")):
        if kind in summary:
            main_row[f"{pre}_coded_bits_per_value"] = summary[kind]["coded_bits_per_value"]
            main_row[f"{pre}_entropy_bits"] = summary[kind]["entropy_bits"]
            main_row[f"{pre}_nominal_bits"] = summary[kind]["nominal_bits"]
    engine = Engine(jobs=cfg.jobs, cluster=cfg.cluster, threads=cfg.task_threads).describe() \
        if len(settings) > 1 or sweep_rows is not None else "this process"
    return Report(
        header=_header(src, cfg, settings, learned, written, engine, coverage),
        headline=_headline(settings, [main_measured] + compared),
        summary=summary, layers=[r.row for r in results], configs=conf_rows,
        packing=[{**r.packing.as_row(), "kind": r.row["kind"]} for r in results],
        sweep=sweep_rows, targets=report_targets(summary, timing), timing=timing, files=files, figures=figures,
    )
