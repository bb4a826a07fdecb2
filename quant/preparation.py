"""From a model and a :class:`~quant.config.QuantConfig` to a :class:`~quant.model.QuantizedModel`.

:func:`prepare` folds BN (in an instrumented copy), equalizes when asked, collects offline statistics when none are
given, quantizes the weights and installs the activation quantizers, then learns AdaRound roundings and empirical
bias corrections (or reuses those stored with the statistics). :func:`calibrate_model` makes the statistics file
``huffquant calibrate`` saves. :func:`adaround_key` / :func:`bias_key` say what a stored result was learned for.

Per layer (names are stable qualified module names):

* weights: per output channel (axis 0) or per tensor; ``weight_clip`` (reference: min/max, never clipped);
  bit allocation (eq. 11, statistic σ_c of the weights) or bin allocation (eq. 10) to the mean target
  ``wbits``; the first layer(s) (no layer before them) use ``first_layer_wbits`` and the classifier(s) (no
  layer after them) ``classifier_bits``; optional bias correction (eq. 12/13, ``"paper"`` or the
  reference code's form);
* activations: unsigned when a ReLU/ReLU6 is fused ([0, hi] and one-sided ACIQ); per channel along axis 1
  for conv outputs (per tensor for linear outputs, as the reference); clipping ``clip`` from offline
  statistics (FP32 calibration images) or dynamically from each batch (``stats_mode="dynamic"``, the
  reference default); bit or bin allocation to ``abits`` (statistic: b_c for Laplace clipping, σ_c
  otherwise); the classifier's output (the logits) in FP32, or at ``classifier_output_bits`` per tensor with
  min/max (``"same"``: like any other layer output).

The reference code's activation "bias correction" (``-bca``) uses the FP32 outputs of the batch being
evaluated, an oracle, and is not provided.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

from quant.act_quantizers import ActQuantizer, ActSpec, DynamicActQuantizer, act_params, needs_histogram
from quant.adaround import AdaRoundSettings, adaround_layers, rounding_codes
from quant.bias_correction import empirical_bias_correction
from quant.calibration import ModelStatistics, calibrate
from quant.clip_choice import AUTO, choose_clipping, parse_choice
from quant.capture import ACTIVATION_MAX, ActivationSite
from quant.config import SAME, QuantConfig, layer_bits
from quant.equalization import absorb, absorption_shifts, equalize
from quant.errors import CalibrationError, QuantError
from quant.graph import instrument
from quant.model import LayerParams, LayerQuant, QuantizedModel, snapshot
from quant.sqnr import tensor_sqnr_db
from quant.weight_quant import corrected_weight, quantize_weight

__all__ = ["prepare", "calibrate_model", "needs_calibration", "adaround_key", "bias_key", "clip_key", "ABSORBED"]

log = logging.getLogger(__name__)

ABSORBED = "absorbed"  # statistics extra: layer -> the constants high-bias absorption moved out of it (floats)


def _equalized(quant: Any, stats: ModelStatistics | None, calib: list[torch.Tensor] | None,
               device: torch.device) -> dict[str, torch.Tensor]:
    """Equalize ``quant`` in place and absorb high biases, with the shifts stored in ``stats`` when it has them,
    else measured by a pass of the equalized FP32 network over ``calib``. Returns the shifts (layer -> (C,))."""
    equalize(quant)
    stored = None if stats is None else stats.extra.get(ABSORBED)
    if stored is not None:
        shifts = {n: torch.tensor(v, dtype=torch.float64) for n, v in stored.items()}
    else:
        if not calib:
            raise CalibrationError("high-bias absorption measures the equalized network on calibration images: give "
                                   "calibration images, or statistics calibrated with equalization")
        pre = calibrate(quant, calib, histogram=False, tensor_stats=False, device=device)
        shifts = absorption_shifts(quant, {n: st.channel_view() for n, st in pre.layers.items()})
    absorb(quant, shifts)
    return shifts


def _activation_spec(quant: Any, name: str, fl: LayerParams, cfg: QuantConfig) -> ActSpec | None:
    """How layer ``name``'s output is quantized under ``cfg`` (None: it stays FP32)."""
    info = quant.layers[name]
    if info.module_name in cfg.keep_fp32:
        return None
    a_bits = layer_bits(info, cfg.abits, cfg.first_layer_abits, cfg.classifier_output_bits)
    if a_bits is None:
        return None
    mod = quant.modules[name]
    ndim = mod.weight.dim() if info.kind == "conv" else 2  # conv: N, C + spatial dims
    per_channel = cfg.per_channel_activations and info.kind == "conv"
    clip = cfg.clip
    alloc = None
    if info.classifier and cfg.classifier_output_bits != SAME:
        per_channel, clip = False, "minmax"
    elif a_bits == cfg.abits and per_channel:
        alloc = "bits" if "activations" in cfg.bit_alloc else ("bins" if "activations" in cfg.bin_alloc else None)
    act_max = fl.act_hi if fl.act_hi is not None else ACTIVATION_MAX.get(info.activation or "")
    return ActSpec(bits=float(a_bits), clip=clip, per_channel=per_channel, signed=info.signed, alloc=alloc,
                   ndim=ndim, act_max=act_max)


def key_of(parts: dict[str, Any]) -> str:
    """Canonical key string of the settings a learned result depends on (a whole number of bits is the same
    setting whether it came as 4 or 4.0)."""
    canon = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in parts.items()}
    return json.dumps(canon, sort_keys=True, separators=(",", ":"))



def clip_key(cfg: QuantConfig, stats: ModelStatistics | None = None) -> str:
    """What a per-layer clipping choice (``clip="auto"``) depends on: the activation settings, the float network
    (equalized or not) and the calibration images."""
    d = {k: v for k, v in cfg.to_dict().items() if k in (
        "abits", "clip", "clip_window", "per_channel_activations", "first_layer_abits", "classifier_output_bits",
        "alloc_min_bits", "alloc_max_bits", "equalize")}
    d["alloc"] = [t for t in ("activations",) if t in cfg.bit_alloc or t in cfg.bin_alloc]
    if stats is not None:
        d["calibration"] = [stats.model, stats.num_images, stats.source]
    return key_of(d)


def _choose_clipping(quant: Any, specs: dict[str, ActSpec], cfg: QuantConfig, stats: ModelStatistics | None,
                     calib: list[torch.Tensor] | None, device: torch.device) -> None:
    """Resolve ``clip="auto"`` in ``specs`` (in place): the choice stored with ``stats``, else measured on ``calib``
    (:mod:`quant.clip_choice`, in the float network before any weight is quantized) and stored with ``stats``."""
    auto = {n: sp for n, sp in specs.items() if sp.clip == AUTO}
    key = clip_key(cfg, stats)
    choice = stats.result("clip", key) if stats is not None else None
    if choice is None:
        if not calib:
            raise CalibrationError("clip='auto' chooses each layer's clipping on calibration images (the statistics "
                                   "hold no choice for this configuration)")
        choice = choose_clipping(quant, auto, cfg, calib, device=device)
        if stats is not None:
            stats.add_result("clip", key, choice)
    for n, sp in auto.items():
        if n not in choice:
            raise CalibrationError(f"the stored clipping choice has no entry for layer {n!r}")
        method, per_channel = parse_choice(choice[n])
        specs[n] = replace(sp, clip=method, per_channel=per_channel, alloc=sp.alloc if per_channel else None)


def _mark_equalized(stats: ModelStatistics, shifts: dict[str, torch.Tensor] | None) -> None:
    stats.extra["equalized"] = shifts is not None
    if shifts is not None:
        stats.extra[ABSORBED] = {n: [float(v) for v in c.reshape(-1).tolist()] for n, c in shifts.items()}


def adaround_key(cfg: QuantConfig, stats: ModelStatistics | None = None) -> str:
    """What an AdaRound result depends on: the weight grids, the quantized network it was learned in (every
    field except the bias corrections, which come after it) and the statistics' calibration images."""
    d = cfg.to_dict()
    for k in ("bias_correction", "bias_correction_form", "stats_mode"):
        d.pop(k, None)
    if stats is not None:
        d["calibration"] = [stats.model, stats.num_images, stats.source]
    return key_of(d)


def bias_key(cfg: QuantConfig, stats: ModelStatistics | None = None) -> str:
    """What empirical bias corrections depend on: the whole configuration and the calibration images."""
    d = cfg.to_dict()
    d.pop("stats_mode", None)
    if stats is not None:
        d["calibration"] = [stats.model, stats.num_images, stats.source]
    return key_of(d)


def calibrate_model(
    model: nn.Module,
    config: QuantConfig,
    batches: Iterable[torch.Tensor],
    *,
    model_name: str = "",
    source: str = "",
    channel_histograms: bool = False,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
    adaround_settings: Any = None,
) -> ModelStatistics:
    """Offline statistics of ``model`` for ``config`` (what ``huffquant calibrate`` saves).

    Every statistic is collected (histograms too, so any clipping method can use the file), on the equalized
    network when ``config.equalize``. If ``config`` uses AdaRound or empirical bias correction, they are learned
    on the same ``batches`` and kept in the returned statistics (:meth:`ModelStatistics.result`), so
    :func:`prepare` with these statistics and the same ``config`` reuses them. ``extra["coverage"]`` of the result
    counts the conv/linear modules that ran and the layers among them (:class:`quant.graph.Coverage`); a
    conv/linear module that ran unquantized, unless ``config.keep_fp32`` names it, raises :class:`ModelError`.
    """
    dev = torch.device(device)
    data = [b for b in batches]
    inst = instrument(model, ActivationSite, keep_fp32=config.keep_fp32).to(dev)
    shifts = _equalized(inst, None, data, dev) if config.equalize else None
    stats = calibrate(inst, data, model_name=model_name, source=source, channel_histograms=channel_histograms,
                      device=dev, progress=progress, total=total)
    _mark_equalized(stats, shifts)
    stats.extra["coverage"] = inst.coverage().to_dict()
    del inst
    if config.stats_mode == "offline" and (config.adaround or config.bias_correction == "empirical"
                                           or (config.clip == AUTO and config.abits is not None)):
        prepare(model, config, stats=stats, calibration=data, device=dev, model_name=model_name, progress=progress,
                adaround_settings=adaround_settings)
    return stats


def needs_calibration(cfg: QuantConfig, stats: ModelStatistics | None) -> bool:
    """True when :func:`prepare` needs calibration images for ``cfg`` given ``stats`` (None: no file): to collect
    offline statistics, or to learn AdaRound / empirical bias corrections not stored in ``stats``."""
    if cfg.stats_mode != "offline":
        return False
    if stats is None:
        return cfg.abits is not None or bool(cfg.adaround) or cfg.bias_correction == "empirical" or cfg.equalize
    if cfg.equalize and ABSORBED not in stats.extra:
        return True
    if cfg.clip == AUTO and cfg.abits is not None and stats.result("clip", clip_key(cfg, stats)) is None:
        return True
    if cfg.adaround and stats.result("adaround", adaround_key(cfg, stats)) is None:
        return True
    return cfg.bias_correction == "empirical" and stats.result("bias", bias_key(cfg, stats)) is None


def prepare(
    model: nn.Module,
    config: QuantConfig,
    *,
    stats: ModelStatistics | None = None,
    calibration: Iterable[torch.Tensor] | None = None,
    calibration_batches: int | None = None,
    device: str | torch.device = "cpu",
    model_name: str = "",
    progress: bool = False,
    adaround_settings: Any = None,
) -> QuantizedModel:
    """Fold BN, quantize weights and install activation quantizers; returns a :class:`QuantizedModel`.

    Offline mode needs ``stats`` (from :func:`quant.calibration.calibrate` or ``ModelStatistics.load``)
    or ``calibration`` batches (image tensors) to compute them. ``config.equalize`` equalizes the network first
    (the statistics must come from the equalized network: calibrate with the same ``equalize``).
    ``config.adaround`` and empirical bias correction learn on the ``calibration`` batches, unless ``stats``
    already holds their result for this configuration (:meth:`ModelStatistics.add_result`); what they learn is
    added to ``stats`` (so saving it caches them). ``progress`` shows bars for calibration and AdaRound.
    Layers whose module ``config.keep_fp32`` names stay FP32 (weights and output). Raises :class:`ModelError` for
    a model with no conv/linear layer (and, in the first pass through the returned model, for a conv/linear
    module that ran without being quantized: :meth:`quant.graph.Instrumented.coverage`) and
    :class:`CalibrationError` for statistics that do not match the model.
    """
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    dev = torch.device(device)
    cfg = config
    quant = instrument(model, ActivationSite, keep_fp32=cfg.keep_fp32).to(dev)  # a copy: ``model`` is not modified
    fp32 = model.eval()  # kept only to locate NaN/Inf layers of the original (QuantizedModel.check_reference)
    original = snapshot(quant)
    if stats is not None and cfg.stats_mode == "offline" and cfg.abits is not None:
        if bool(stats.extra.get("equalized", False)) != bool(cfg.equalize):
            raise CalibrationError(
                "the statistics were collected " + ("with" if stats.extra.get("equalized") else "without")
                + " cross-layer equalization, but this configuration " + ("uses" if cfg.equalize else "does not use")
                + " it; calibrate with the same --equalize setting")
        if cfg.equalize and ABSORBED not in stats.extra:
            raise CalibrationError("the statistics were collected on an equalized network without the measured "
                                   "high-bias absorption of this version; calibrate again")
    needs_images = (cfg.adaround or cfg.bias_correction == "empirical") and cfg.stats_mode == "offline"
    calib_list: list[torch.Tensor] | None = None
    if calibration is not None and needs_calibration(cfg, stats):
        calib_list = [b for b in calibration]
    shifts = None
    if cfg.equalize:
        t = time.perf_counter()
        shifts = _equalized(quant, stats, calib_list, dev)
        timing["equalize_s"] = time.perf_counter() - t
    floating = snapshot(quant) if cfg.equalize else original
    if needs_images and cfg.abits is None and stats is None:
        # nothing to calibrate; an empty record keeps what AdaRound / bias correction learn
        stats = ModelStatistics(layers={}, model=model_name, num_images=sum(int(b.shape[0]) for b in calib_list or []))
        _mark_equalized(stats, shifts)
    if cfg.abits is not None and cfg.stats_mode == "offline":
        if stats is None:
            if calib_list is None:
                raise CalibrationError("offline statistics mode needs statistics (--stats FILE) or calibration images")
            # calibrate the FP32 (folded, equalized, not yet quantized) copy; only the statistics this config uses
            per_tensor = lambda info: cfg.clip == AUTO or not (cfg.per_channel_activations and info.kind == "conv")  # noqa: E731,E501
            t = time.perf_counter()
            stats = calibrate(quant, calib_list, model_name=model_name, device=dev, progress=progress,
                              histogram=needs_histogram(cfg.clip), tensor_stats=per_tensor, total=calibration_batches)
            _mark_equalized(stats, shifts)
            timing["calibration_s"] = time.perf_counter() - t
        stats.check_layers(quant.layers)
    specs = {name: spec for name in quant.layers
             if (spec := _activation_spec(quant, name, floating[name], cfg)) is not None}
    if cfg.clip == AUTO and cfg.stats_mode == "offline":
        t = time.perf_counter()
        _choose_clipping(quant, specs, cfg, stats, calib_list, dev)
        timing["clip_choice_s"] = time.perf_counter() - t
    layers: dict[str, LayerQuant] = {}
    quantized: dict[str, LayerParams] = {}
    for name, info in quant.layers.items():
        mod = quant.modules[name]
        fl = floating[name]
        kept = info.module_name in cfg.keep_fp32
        # weights
        wq = None
        w_bits = None if kept else layer_bits(info, cfg.wbits, cfg.first_layer_wbits, cfg.classifier_bits)
        w_sqnr = None
        mean_wbits = None
        w_use = fl.weight
        if w_bits is not None:
            w = fl.weight
            alloc = None
            if w_bits == cfg.wbits:  # layers at their own bits (first, classifier) are not allocated
                alloc = "bits" if "weights" in cfg.bit_alloc else ("bins" if "weights" in cfg.bin_alloc else None)
            wq = quantize_weight(name, w, w_bits, alloc, cfg)
            w_use = corrected_weight(w, wq, cfg)
            w_sqnr = tensor_sqnr_db(w, w_use)
            mean_wbits = float(wq.params.bits.mean())
        quantized[name] = LayerParams(w_use.clone() if w_use is fl.weight else w_use,
                                      None if fl.bias is None else fl.bias.clone(), fl.act_lo, fl.act_hi)
        with torch.no_grad():
            mod.weight.data = quantized[name].weight
        # activations
        spec = specs.get(name)
        a_params = None
        mean_abits = None
        site = quant.sites[name]
        if spec is not None:
            if cfg.stats_mode == "offline":
                try:
                    a_params = act_params(stats[name], spec, cfg)
                except (QuantError, CalibrationError) as exc:
                    raise CalibrationError(f"layer {name}: {exc}") from exc
                site.quantizer = ActQuantizer(a_params, spec.ndim, dev)
                mean_abits = float(a_params.bits.mean())
            else:
                site.quantizer = DynamicActQuantizer(spec, cfg, name)
                mean_abits = float(spec.bits)
        layers[name] = LayerQuant(info=info, weight=wq, weight_bits=mean_wbits, weight_sqnr_db=w_sqnr,
                                  act_bits=mean_abits, act_params=a_params, act_spec=spec)
    qm = QuantizedModel(config=cfg, fp32=fp32, quant=quant, layers=layers, stats=stats, device=dev,
                        original=original, floating=floating, quantized=quantized, timing=timing)
    qm.load(quantized)
    if cfg.adaround:
        _apply_adaround(qm, calib_list, adaround_settings, progress)
    if cfg.bias_correction == "empirical":
        _apply_empirical_bias(qm, calib_list, progress)
    qm.prepare_s = time.perf_counter() - t0
    return qm


def _apply_adaround(qm: QuantizedModel, calib: list[torch.Tensor] | None, settings: Any, progress: bool) -> None:
    """Learn AdaRound roundings on ``calib`` (or reuse the ones stored with the statistics) and use them."""
    cfg = qm.config
    st = settings if settings is not None else AdaRoundSettings(iterations=int(cfg.adaround))
    if st.iterations != cfg.adaround:
        st = replace(st, iterations=int(cfg.adaround))
    key = adaround_key(cfg, qm.stats)
    cached = qm.stats.result("adaround", key) if qm.stats is not None else None
    t = time.perf_counter()
    if cached is not None:
        for name, up in cached.up.items():
            if name not in qm.layers or qm.layers[name].weight is None:
                raise CalibrationError(f"stored AdaRound rounding names layer {name!r}, which this model does not "
                                       f"quantize")
            w, _ = qm.float_params(name)
            lq = qm.layers[name]
            qm.set_weight_codes(name, rounding_codes(w, lq.weight, up.to(w.device)))
        qm.adaround = cached
        log.info("AdaRound: reused the rounding stored with the statistics")
    else:
        if not calib:
            raise CalibrationError("AdaRound needs calibration images (the statistics hold no rounding learned for "
                                   "this configuration)")
        names = [n for n, lq in qm.layers.items() if lq.weight is not None]
        bar = tqdm(total=len(names), desc=f"AdaRound ({st.iterations} it/layer)", unit="layer", disable=not progress)
        try:
            res = adaround_layers(qm, calib, st, key=key, progress=lambda _n: bar.update(1))
        finally:
            bar.close()
        qm.adaround = res
        if qm.stats is not None:
            qm.stats.add_result("adaround", key, res)
    qm.timing["adaround_s"] = time.perf_counter() - t


def _apply_empirical_bias(qm: QuantizedModel, calib: list[torch.Tensor] | None, progress: bool) -> None:
    """Learn empirical bias corrections on ``calib`` (or reuse the ones stored with the statistics) and add them."""
    key = bias_key(qm.config, qm.stats)
    cached = qm.stats.result("bias", key) if qm.stats is not None else None
    t = time.perf_counter()
    if cached is not None:
        deltas = cached
        for name, d in deltas.items():
            qm.add_bias(name, d)
        log.info("empirical bias correction: reused the corrections stored with the statistics")
    else:
        if not calib:
            raise CalibrationError("empirical bias correction needs calibration images (the statistics hold no "
                                   "correction for this configuration)")
        deltas = empirical_bias_correction(qm, calib)
        if qm.stats is not None:
            qm.stats.add_result("bias", key, deltas)
    qm.bias_deltas = dict(deltas)
    qm.timing["bias_correction_s"] = time.perf_counter() - t
