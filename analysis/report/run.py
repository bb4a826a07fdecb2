"""The report's driver: :func:`report` runs the whole job on a model and images.

Calibrate, quantize (the main setting and the compared recipes: naive and best by default), export the integer activations and weights
(:mod:`analysis.report.model_pass`), code them, write real ``.hqt`` files, decode and verify them and measure
(:mod:`analysis.report.tensors`, :mod:`analysis.report.summary`), gather the figures' data
(:mod:`analysis.report.figures`), check the targets (:mod:`analysis.report.targets`), optionally run the
rate-fidelity sweep (:mod:`analysis.sweep`), and return a :class:`~analysis.report.document.Report`.
"""

from __future__ import annotations

import datetime as _dt
import tempfile
import time
from typing import Any

from analysis.report.config import HISTOGRAM_CLIPS, ReportConfig
from analysis.report.document import Report
from analysis.report.figures import figure_data
from analysis.report.learned import LearnedCalibration, learns
from analysis.report.model_pass import resolve_inputs, run_quantized, tensor_inputs
from analysis.report.summary import summarize
from analysis.report.targets import report_targets
from analysis.report.tensors import TensorInput, analyze_tensors, closed_form_rates

__all__ = ["report", "coded_tensors"]


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
    (default 32) report images. Returns a :class:`Report`; nothing is printed, and nothing is written outside
    ``config.files_dir`` and ``config.calibration_dir``.
    """
    import torch

    from quant.calibration import calibrate
    from quant.capture import ActivationSite
    from quant.graph import instrument
    from quant import prepare

    cfg = config or ReportConfig()
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    src = resolve_inputs(model, images, calibration_images, cfg)
    timing["images_s"] = time.perf_counter() - t_start
    dev = torch.device(cfg.device)

    # the baseline of the speed target: FP32 forward pass and calibration on the same images
    main_qc = cfg.quant_config()
    configs = [("main", main_qc)]
    for name in dict.fromkeys(cfg.compare):
        qc = cfg.recipe_config(name)
        if qc != main_qc:
            configs.append((name, qc))
    learned = LearnedCalibration(src.module, src.calib_batches, model_name=src.name, source="report calibration",
                                 directory=cfg.calibration_dir, device=dev, progress=cfg.progress)
    t = time.perf_counter()
    inst = instrument(src.module, ActivationSite, keep_fp32=main_qc.keep_fp32).to(dev)
    clips = [qc.clip for _, qc in configs] + (list(cfg.sweep_clips) if cfg.sweep else [])
    per_channel_hist = any(c.split(":")[0] in HISTOGRAM_CLIPS for c in clips)  # per-channel KL, MSE, percentile
    stats = calibrate(inst, [x for x in src.calib_batches], model_name=src.name, device=dev,
                      progress=cfg.progress, total=len(src.calib_batches), channel_histograms=per_channel_hist)
    timing["calibration_s"] = time.perf_counter() - t
    t = time.perf_counter()
    refs = []
    with torch.no_grad():
        for x, _ in src.eval_batches:
            refs.append(inst(x.to(dev)))
    timing["fp32_forward_s"] = time.perf_counter() - t
    del inst

    conf_rows: list[dict] = []
    main_inputs: list[TensorInput] = []
    main_q = main_stats = None
    for role, qc in configs:
        t = time.perf_counter()
        if learns(qc):
            qm = learned.prepare(qc)
            role_stats = learned.statistics(qc)
        else:
            qm = prepare(src.module, qc, stats=stats, device=dev, model_name=src.name, progress=False)
            role_stats = stats
        keep = cfg.activation_images if role == "main" else cfg.compare_rate_images
        fid, codes = run_quantized(qm, src.eval_batches, refs, record=True, progress=cfg.progress,
                                    desc=f"quantized ({role})", record_images=keep)
        if keep:
            codes = {k: (c[:keep], p) for k, (c, p) in codes.items()}
        inputs = tensor_inputs(qm, codes, role_stats if role == "main" else None, qc.abits)
        codes_n = {k: int(v[0].shape[0]) for k, v in codes.items()}
        del codes
        timing[f"{role}_quantized_s"] = time.perf_counter() - t
        recipe = role if role != "main" else (cfg.recipe if not cfg.settings else "custom")
        row = {"role": role, "recipe": recipe, "label": qc.describe(), "config": qc.to_dict(), **fid}
        row["rate_images"] = int(next(iter(codes_n.values()))) if codes_n else 0
        if role == "main":
            main_inputs, main_q, main_stats = inputs, qm, role_stats
        else:
            t = time.perf_counter()
            rates = closed_form_rates(inputs, max_code_length=cfg.max_code_length, chunk_size=cfg.chunk_size,
                                      clusters=())
            timing[f"{role}_coding_s"] = time.perf_counter() - t
            for kind, r in rates.items():
                pre = "act" if kind == "activations" else "weight"
                row[f"{pre}_coded_bits_per_value"] = r["coded_bits_per_value"]
                row[f"{pre}_entropy_bits"] = r["entropy_bits"]
                row[f"{pre}_nominal_bits"] = r["nominal_bits"]
            del inputs, qm
        conf_rows.append(row)

    # code, write, read back and verify the main configuration's tensors
    t = time.perf_counter()
    tmp = None
    files_dir = cfg.files_dir
    if files_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="huffquant-report-")
        files_dir = tmp.name
    coding_timing: dict[str, float] = {}
    file_meta = {"model": src.name, "settings": configs[0][1].describe(), "images": src.description}
    try:
        results, files = analyze_tensors(
            main_inputs, files_dir=files_dir, metadata=file_meta, max_code_length=cfg.max_code_length,
            chunk_size=cfg.chunk_size,
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
    rows = [r.row for r in results]
    summary = summarize(rows, files)
    for kind, pre in (("activations", "act"), ("weights", "weight")):
        if kind in summary:
            conf_rows[0][f"{pre}_coded_bits_per_value"] = summary[kind]["coded_bits_per_value"]
            conf_rows[0][f"{pre}_entropy_bits"] = summary[kind]["entropy_bits"]
            conf_rows[0][f"{pre}_nominal_bits"] = summary[kind]["nominal_bits"]

    figures = figure_data(results, main_q, main_stats, hist_layer=cfg.hist_layer, abits=main_qc.abits)

    sweep_rows = None
    if cfg.sweep:
        from analysis.sweep import run_sweep  # not at the top: the sweep imports this package's model pass

        t = time.perf_counter()
        learned_before = learned.seconds
        sweep_rows = run_sweep(src, stats, refs, cfg, learned=learned)
        timing["sweep_s"] = time.perf_counter() - t - (learned.seconds - learned_before)
    calibration_files = [str(p) for p in learned.save()]
    timing["learned_calibration_s"] = learned.seconds

    # what recipes learn (statistics of the equalized network, AdaRound, bias corrections) counts as calibration
    timing["report_s"] = time.perf_counter() - t_start - timing.get("sweep_s", 0.0)
    base = timing["fp32_forward_s"] + timing["calibration_s"] + timing["learned_calibration_s"]
    timing["ratio_to_fp32_and_calibration"] = timing["report_s"] / base if base > 0 else None

    targets = report_targets(summary, timing)
    zs = cfg.zstd_sample_bytes
    notes = [
        "zstd level 19 runs at a few MB/s; it compresses a deterministic sample of each tensor's packed bytes "
        f"(16 evenly spaced blocks, {zs // 1024} KiB per activation tensor and {4 * zs // 1024} KiB per weight "
        "tensor; the zstd_sample_fraction column gives the share of values compressed)." if zs else
        "zstd level 19 compresses every tensor's packed bytes in full.",
        (f"The compared recipes' coded bits per value are measured on their first {cfg.compare_rate_images} "
         "images, each tensor in the smallest of entropy's single, per-channel and bit-width layouts (no clusters "
         "of channels), sized in closed form; their fidelity on all images." if cfg.compare_rate_images else
         "The compared recipes' coded bits per value are measured on all images."),
        "Recipes: naive = per-channel min/max; paper = ACIQ + per-channel bit allocation + mean bias correction; "
        "best = cross-layer equalization + ACIQ + AdaRound + empirical bias correction (quant/METHODS.md). "
        "Top-1 agreement comes with its 95% Wilson interval.",
        "MSE vs α: the simulation clips Laplace(0, 1) samples to [-α, α] and rounds them to the centres of "
        "2^M equal bins, the quantizer eq. 5 models.",
        (f"Activations are the integer codes of the first {cfg.activation_images} evaluation images (the reference "
         "code measures entropy per batch of 32 and averages over batches); fidelity uses every evaluation image."
         if cfg.activation_images else "Activations are the integer codes of every evaluation image."),
        "Layouts are sized exactly from per-channel symbol counts by entropy (entropy.layout_choices); each "
        "layer is one tensor of the .hqt file in the smallest layout, the one entropy.save picks for its channel "
        "axis, and is read back and compared (SHA-256) with the exported codes.",
        "The step ratio uses per-tensor statistics of the FP32 calibration outputs (ACIQ Laplace vs KL at the "
        "layer's mean bit width).",
    ]
    if cfg.verify_huffman_packing:
        notes.append("Packings (iii) and (iv) were also encoded and decoded for every layer (lossless).")
    header = {
        "model": src.name,
        "weights": src.weights,
        "images": src.description,
        "labelled": src.labelled,
        "settings": configs[0][1].describe(),
        "coded_tensors": coded_tensors(main_q),
        **main_q.quant.coverage().to_dict(),
        "recipe": conf_rows[0]["recipe"],
        "compared": {role: qc.describe() for role, qc in configs[1:]},
        "calibration_files": {"written": calibration_files, "reused": list(learned.reused)},
        "package": _version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "command": cfg.command,
        "max_code_length": cfg.max_code_length,
        "chunk_size": cfg.chunk_size,
        "notes": notes,
    }
    packing_rows = [{**r.packing.as_row(), "kind": r.row["kind"]} for r in results]
    return Report(header=header, summary=summary, layers=rows, configs=conf_rows, packing=packing_rows,
                  sweep=sweep_rows, targets=targets, timing=timing, files=files, figures=figures)
