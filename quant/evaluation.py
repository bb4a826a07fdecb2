"""Evaluation of a quantized model: accuracy with labels, and always its fidelity to the FP32 model.

Fidelity measures (per image, averaged over the images):

* ``top1_agreement``: fraction of images whose quantized top-1 class equals the FP32 top-1 class, with its 95%
  binomial confidence interval ``top1_agreement_ci`` (Wilson score interval, :func:`binomial_ci`; it treats the
  images as independent draws, which crops of the same few photos are not: read it as a lower bound on the
  uncertainty);
* ``top5_overlap``: |top-5(FP32) ∩ top-5(quantized)| / 5;
* ``kl_divergence``: KL(FP32 softmax || quantized softmax) in nats, computed from log-softmax in float64;
* ``logit_sqnr_db``: 10·log10(Σ z² / Σ (z − ẑ)²) over all logits;
* per layer: ``act_sqnr_db`` = SQNR of the activation quantizer (its input vs its output inside the
  quantized run, over all evaluated images) and ``weight_sqnr_db`` = SQNR of the final weights against
  the folded FP32 weights;
* ``layers_quantized`` beside ``conv_linear_modules``: the conv/linear modules that ran, and how many of them
  the pipeline quantized (the others are named by ``kept_fp32``; any other would have failed the run).

With labels: top-1/top-5 accuracy of the quantized and of the FP32 model (fractions in [0, 1]).
An SQNR with zero noise is infinite and appears as ``None`` in :meth:`EvaluationResult.to_dict`.

Every measure is a ratio of sums over the images, and a result keeps those sums (``totals``; per layer the
activation signal and noise energies). So an evaluation can be split over machines: evaluate each part of the
images (:meth:`quant.images.ImageSet.shard`, ``huffquant evaluate --shard K/N``) with the same statistics, and
:func:`merge_results` adds the parts' sums into the result of one run over all the images (equal up to the order
of float additions).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from statistics import NormalDist
from typing import Any, Iterable, Sequence

import torch
from tqdm.auto import tqdm

from quant.calibration import ModelStatistics
from quant.capture import check_finite_logits
from quant.errors import QuantError
from quant.images import DEFAULT_CALIBRATION_IMAGES, Batch, ImageSet, builtin_images, iter_batches
from quant.model import QuantizedModel
from quant.models import LoadedModel
from quant.preparation import needs_calibration, prepare
from quant.sqnr import sqnr_db

__all__ = ["LayerReport", "EvaluationResult", "FidelityMeter", "evaluate", "evaluate_model", "merge_results",
           "sqnr_db", "binomial_ci", "CI_METHOD"]

CI_METHOD = "Wilson score interval"

log = logging.getLogger(__name__)


def binomial_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval (lo, hi) of a binomial proportion: the Wilson score interval.

    Chosen over the normal (Wald) interval, which collapses to a point at 0 or 1 successes out of n and
    undercovers near the ends, and over Clopper-Pearson, which is conservative (wider than its nominal level).
    ``p̂ = k/n``, ``z`` the two-sided normal quantile: centre ``(p̂ + z²/2n)/(1 + z²/n)``, half-width
    ``z·sqrt(p̂(1−p̂)/n + z²/4n²)/(1 + z²/n)``. Raises :class:`QuantError` for n < 1 or k outside [0, n].
    """
    if trials < 1 or not 0 <= successes <= trials:
        raise QuantError(f"binomial interval needs 0 <= successes <= trials and trials >= 1, got {successes}/{trials}")
    if not 0 < confidence < 1:
        raise QuantError(f"confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n = float(trials)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # exact ends at 0 and n successes (the formula gives them up to rounding)
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == trials else min(1.0, centre + half)
    return lo, hi


def _json_float(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass
class LayerReport:
    """One row of the per-layer table."""

    name: str
    kind: str
    signed: bool
    first: bool
    classifier: bool
    weight_bits: float | None  # mean bits per weight (None: FP32)
    act_bits: float | None  # mean bits per activation value (None: FP32)
    weight_sqnr_db: float | None
    act_sqnr_db: float | None
    act_clip: str | None = None  # how its activations were clipped ("method/channel" or "method/tensor")
    adaround_loss_ratio: float | None = None  # AdaRound / round-to-nearest output error (held-out images); 1: kept
    act_signal_energy: float | None = None  # Σ x² of the activation quantizer's input over the images
    act_noise_energy: float | None = None  # Σ (x - q(x))²

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["weight_sqnr_db"] = _json_float(self.weight_sqnr_db)
        d["act_sqnr_db"] = _json_float(self.act_sqnr_db)
        return d


@dataclass
class EvaluationResult:
    """Accuracy and fidelity of one quantized run (fractions in [0, 1], KL in nats, SQNR in dB)."""

    model: str
    config: dict[str, Any]
    images: str
    num_images: int
    top1_agreement: float
    top1_agreement_ci: tuple[float, float]  # 95% Wilson interval (binomial_ci)
    top5_overlap: float
    kl_divergence: float
    logit_sqnr_db: float
    top1: float | None = None
    top5: float | None = None
    fp32_top1: float | None = None
    fp32_top5: float | None = None
    skipped: list[str] = field(default_factory=list)
    per_layer: list[LayerReport] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)  # seconds
    layers_quantized: int = 0  # conv/linear modules that ran as quantized layers
    conv_linear_modules: int = 0  # conv/linear modules that ran
    kept_fp32: list[str] = field(default_factory=list)  # modules that ran in FP32 by the user's choice
    shard: str | None = None  # "K/N" when the run covered part K of N of the images (ImageSet.shard)
    totals: dict[str, Any] = field(default_factory=dict)  # the sums behind the measures (FidelityMeter.totals)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (infinite values become None)."""
        d = {k: v for k, v in asdict(self).items() if k not in ("per_layer",)}
        d["logit_sqnr_db"] = _json_float(self.logit_sqnr_db)
        d["top1_agreement_ci"] = list(self.top1_agreement_ci)
        d["num_skipped"] = len(self.skipped)
        d["per_layer"] = [row.to_dict() for row in self.per_layer]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EvaluationResult":
        """The result :meth:`to_dict` wrote (e.g. read back from ``huffquant evaluate --json``)."""
        known = {f for f in cls.__dataclass_fields__}
        kw = {k: v for k, v in d.items() if k in known and k != "per_layer"}
        kw["top1_agreement_ci"] = tuple(kw.get("top1_agreement_ci") or (0.0, 0.0))
        if kw.get("logit_sqnr_db") is None:
            kw["logit_sqnr_db"] = math.inf
        layer_fields = set(LayerReport.__dataclass_fields__)
        kw["per_layer"] = [LayerReport(**{k: v for k, v in r.items() if k in layer_fields})
                           for r in d.get("per_layer", [])]
        return cls(**kw)


class FidelityMeter:
    """Accumulates agreement, overlap, KL, logit SQNR and accuracy over batches of logits."""

    def __init__(self) -> None:
        self.n = 0
        self.agree = 0
        self.overlap = 0.0
        self.kl = 0.0
        self.sig = 0.0
        self.noise = 0.0
        self.n_labelled = 0
        self.correct = {"q1": 0, "q5": 0, "f1": 0, "f5": 0}

    def update(self, ref: torch.Tensor, quant: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Add one batch: FP32 logits ``ref`` and quantized logits ``quant`` (N, classes); labels (N,) or None."""
        if ref.shape != quant.shape or ref.dim() != 2:
            raise QuantError(f"logits must be (N, classes) of equal shape, got {tuple(ref.shape)} "
                             f"and {tuple(quant.shape)}")
        r = ref.detach().to(torch.float64)
        q = quant.detach().to(torch.float64)
        k = min(5, r.shape[1])
        top_r = r.topk(k, dim=1).indices
        top_q = q.topk(k, dim=1).indices
        self.agree += int((top_r[:, 0] == top_q[:, 0]).sum())
        inter = (top_r[:, :, None] == top_q[:, None, :]).any(dim=2).sum(dim=1)
        self.overlap += float(inter.sum()) / k
        lp = torch.log_softmax(r, dim=1)
        lq = torch.log_softmax(q, dim=1)
        self.kl += float((lp.exp() * (lp - lq)).sum())
        self.sig += float((r * r).sum())
        self.noise += float(((r - q) ** 2).sum())
        self.n += r.shape[0]
        if labels is not None and labels.numel() and bool((labels >= 0).all()):
            lab = labels.to(r.device)[:, None]
            self.n_labelled += r.shape[0]
            self.correct["q1"] += int((top_q[:, :1] == lab).any(1).sum())
            self.correct["q5"] += int((top_q == lab).any(1).sum())
            self.correct["f1"] += int((top_r[:, :1] == lab).any(1).sum())
            self.correct["f5"] += int((top_r == lab).any(1).sum())

    def totals(self) -> dict[str, Any]:
        """The sums every measure is a ratio of (JSON-ready); :meth:`add_totals` adds another meter's."""
        return {"n": self.n, "agree": self.agree, "overlap": self.overlap, "kl": self.kl, "sig": self.sig,
                "noise": self.noise, "n_labelled": self.n_labelled, "correct": dict(self.correct)}

    def add_totals(self, t: dict[str, Any]) -> None:
        """Add the sums of another meter (:meth:`totals`), as if its images had been evaluated here."""
        self.n += int(t["n"])
        self.agree += int(t["agree"])
        self.overlap += float(t["overlap"])
        self.kl += float(t["kl"])
        self.sig += float(t["sig"])
        self.noise += float(t["noise"])
        self.n_labelled += int(t["n_labelled"])
        for k in self.correct:
            self.correct[k] += int(t["correct"][k])

    def summary(self) -> dict[str, Any]:
        if self.n == 0:
            raise QuantError("no image was evaluated")
        out: dict[str, Any] = {
            "top1_agreement": self.agree / self.n,
            "top1_agreement_ci": binomial_ci(self.agree, self.n),
            "top5_overlap": self.overlap / self.n,
            "kl_divergence": self.kl / self.n,
            "logit_sqnr_db": sqnr_db(self.sig, self.noise),
            "top1": None, "top5": None, "fp32_top1": None, "fp32_top5": None,
        }
        if self.n_labelled == self.n:
            out.update(top1=self.correct["q1"] / self.n, top5=self.correct["q5"] / self.n,
                       fp32_top1=self.correct["f1"] / self.n, fp32_top5=self.correct["f5"] / self.n)
        return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate(
    qmodel: QuantizedModel,
    batches: Iterable[Batch | torch.Tensor],
    *,
    model_name: str = "",
    images: str = "",
    total: int | None = None,
    layer_sqnr: bool = True,
    progress: bool = False,
) -> EvaluationResult:
    """Run the FP32 reference and the quantized model on every batch and compare them.

    ``batches`` yields :class:`quant.images.Batch` (labels used when every image has one) or plain image
    tensors. ``layer_sqnr`` measures the per-layer activation SQNR (a few extra reductions per layer).
    Timing (seconds): ``prepare_s`` (folding, weight quantization, calibration), ``fp32_s`` and
    ``quantized_s`` (forward passes), ``metrics_s``, ``total_s`` (their sum; image loading excluded).
    """
    dev = qmodel.device
    sites = qmodel.sites
    for s in sites.values():
        s.reset_measure()
        s.measure = layer_sqnr and s.quantizer is not None
    meter = FidelityMeter()
    skipped: list[str] = []
    t_fp = t_q = t_m = 0.0
    try:
        with torch.no_grad():
            for b in tqdm(batches, desc="evaluate", unit="batch", total=total, disable=not progress):
                if isinstance(b, Batch):
                    skipped.extend(b.skipped)
                    x, labels = b.images, b.labels
                else:
                    x, labels = b, None
                if x.numel() == 0:
                    continue
                x = x.to(dev)
                _sync(dev)
                t0 = time.perf_counter()
                ref = qmodel.reference(x)
                _sync(dev)
                t1 = time.perf_counter()
                out = qmodel(x)
                _sync(dev)
                t2 = time.perf_counter()
                qmodel.check_reference(x, ref)
                check_finite_logits(qmodel.quant, x, out)
                meter.update(ref, out, labels)
                t3 = time.perf_counter()
                t_fp += t1 - t0
                t_q += t2 - t1
                t_m += t3 - t2
    finally:
        for s in sites.values():
            s.measure = False
    summ = meter.summary()
    rows = []
    ratios = qmodel.adaround.loss_ratios() if qmodel.adaround is not None else {}
    for name, lq in qmodel.layers.items():
        site = sites[name]
        measured = layer_sqnr and site.quantizer is not None
        act = sqnr_db(float(site.signal), float(site.noise)) if measured else None
        rows.append(LayerReport(name=name, kind=lq.info.kind, signed=lq.info.signed, first=lq.info.first,
                                classifier=lq.info.classifier, weight_bits=lq.weight_bits, act_bits=lq.act_bits,
                                weight_sqnr_db=lq.weight_sqnr_db, act_sqnr_db=act,
                                act_clip=None if lq.act_spec is None else
                                f"{lq.act_spec.clip}/{'channel' if lq.act_spec.per_channel else 'tensor'}",
                                adaround_loss_ratio=ratios.get(name),
                                act_signal_energy=float(site.signal) if measured else None,
                                act_noise_energy=float(site.noise) if measured else None))
    cov = qmodel.quant.coverage()
    timing = {"prepare_s": qmodel.prepare_s, "fp32_s": t_fp, "quantized_s": t_q, "metrics_s": t_m}
    timing["total_s"] = sum(timing.values())
    if skipped:
        log.warning("%d unreadable image(s) skipped", len(skipped))
    return EvaluationResult(
        model=model_name, config=qmodel.config.to_dict(), images=images, num_images=meter.n,
        top1_agreement=float(summ["top1_agreement"]), top1_agreement_ci=tuple(summ["top1_agreement_ci"]),
        top5_overlap=float(summ["top5_overlap"]),
        kl_divergence=float(summ["kl_divergence"]), logit_sqnr_db=float(summ["logit_sqnr_db"]),
        top1=summ["top1"], top5=summ["top5"], fp32_top1=summ["fp32_top1"], fp32_top5=summ["fp32_top5"],
        skipped=skipped, per_layer=rows, timing=timing, layers_quantized=cov.layers_quantized,
        conv_linear_modules=cov.conv_linear_modules, kept_fp32=list(cov.kept_fp32), totals=meter.totals(),
    )


def _result(meter: FidelityMeter, base: EvaluationResult, **fields: Any) -> EvaluationResult:
    summ = meter.summary()
    return replace(
        base, num_images=meter.n, top1_agreement=float(summ["top1_agreement"]),
        top1_agreement_ci=tuple(summ["top1_agreement_ci"]), top5_overlap=float(summ["top5_overlap"]),
        kl_divergence=float(summ["kl_divergence"]), logit_sqnr_db=float(summ["logit_sqnr_db"]), top1=summ["top1"],
        top5=summ["top5"], fp32_top1=summ["fp32_top1"], fp32_top5=summ["fp32_top5"], totals=meter.totals(),
        **fields)


def merge_results(results: Sequence[EvaluationResult | dict[str, Any]]) -> EvaluationResult:
    """One result from the results of every part of a sharded evaluation (:meth:`quant.images.ImageSet.shard`;
    ``--shard K/N``), given as :class:`EvaluationResult` or their :meth:`~EvaluationResult.to_dict` documents:
    the parts' sums added, every measure recomputed from them, per-layer activation SQNR from the summed
    energies; what the parts share (per layer its bits, clipping, weight SQNR and AdaRound loss ratio; the
    quantized-module counts) from the first part. Raises :class:`QuantError` unless the parts are the same model,
    configuration, images, layers and per-layer clipping, and together every part 1..N exactly once (or whole
    runs of disjoint image sets, without shards)."""
    parts = [r if isinstance(r, EvaluationResult) else EvaluationResult.from_dict(r) for r in results]
    if not parts:
        raise QuantError("nothing to merge")
    first = parts[0]
    for r in parts:
        if not r.totals:
            raise QuantError(f"a result of {r.model} holds no totals (made by an older version?); evaluate again")
        for what in ("model", "images"):
            if getattr(r, what) != getattr(first, what):
                raise QuantError(f"cannot merge results of different {what}: {getattr(first, what)!r} and "
                                 f"{getattr(r, what)!r}")
        if {k: v for k, v in r.config.items() if k != "describe"} != \
                {k: v for k, v in first.config.items() if k != "describe"}:
            raise QuantError("cannot merge results of different quantization settings")
        if [lr.name for lr in r.per_layer] != [lr.name for lr in first.per_layer] or \
                (r.layers_quantized, r.conv_linear_modules, list(r.kept_fp32)) != \
                (first.layers_quantized, first.conv_linear_modules, list(first.kept_fp32)):
            raise QuantError("cannot merge results of different layers")
        if [lr.act_clip for lr in r.per_layer] != [lr.act_clip for lr in first.per_layer]:
            raise QuantError("cannot merge results whose layers clipped their activations differently (prepare "
                             "every part from the same statistics)")
    shards = [r.shard for r in parts]
    if any(shards):
        try:
            got = sorted((int(k), int(n)) for k, n in (str(s).split("/") for s in shards))
        except ValueError:
            raise QuantError(f"cannot merge: not every part is a shard K/N: {shards}") from None
        n = got[0][1]
        if got != [(k, n) for k in range(1, n + 1)]:
            raise QuantError(f"cannot merge: need every shard 1/{n} to {n}/{n} exactly once, got "
                             f"{', '.join(f'{k}/{m}' for k, m in got)}")
    meter = FidelityMeter()
    for r in parts:
        meter.add_totals(r.totals)
    layers = []
    for i, lr in enumerate(first.per_layer):
        sig = noise = None
        if lr.act_signal_energy is not None and all(r.per_layer[i].act_signal_energy is not None for r in parts):
            sig = sum(float(r.per_layer[i].act_signal_energy) for r in parts)
            noise = sum(float(r.per_layer[i].act_noise_energy) for r in parts)
        layers.append(replace(lr, act_signal_energy=sig, act_noise_energy=noise,
                              act_sqnr_db=None if sig is None else sqnr_db(sig, noise)))
    timing = {k: sum(float(r.timing.get(k, 0.0)) for r in parts) for k in first.timing}
    skipped = [s for r in parts for s in r.skipped]
    return _result(meter, first, skipped=skipped, per_layer=layers, timing=timing, shard=None)


def evaluate_model(
    model: Any,
    config: Any,
    *,
    images: ImageSet | None = None,
    calibration_images: ImageSet | None = None,
    stats: ModelStatistics | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    seed: int = 0,
    layer_sqnr: bool = True,
    progress: bool = False,
    num_workers: int | None = 0,
    shard: tuple[int, int] | None = None,
) -> EvaluationResult:
    """Prepare and evaluate in one call.

    ``model``: a :class:`quant.models.LoadedModel` or an ``nn.Module`` (then ``images`` and, in offline
    mode without ``stats``, ``calibration_images`` are required because the preprocessing is unknown).
    Defaults: evaluation on the built-in evaluation crops, calibration on the 32 built-in calibration crops.
    ``num_workers``: DataLoader worker processes reading the images (None: :func:`quant.images.loader_workers`).
    ``shard=(K, N)``: evaluate only part K (1-based) of N of the images (:meth:`ImageSet.shard`); the parts'
    results merge into the whole run's with :func:`merge_results` (use the same ``stats`` for every part).
    """
    torch.manual_seed(seed)
    if isinstance(model, LoadedModel):
        name, module, prep = model.name, model.model, model.preprocessing
    else:
        name, module, prep = type(model).__name__, model, None
    if images is None:
        if prep is None:
            raise QuantError("pass images= for a plain nn.Module (its preprocessing is unknown)")
        images = builtin_images(prep, None, split="evaluation")
    whole = images
    if shard is not None:
        k, n = shard
        images = images.shard(int(k) - 1, int(n))
    calib = None
    n_calib_batches = None
    if needs_calibration(config, stats):
        if calibration_images is None:
            if prep is None:
                raise QuantError("pass calibration_images= or stats= for a plain nn.Module")
            calibration_images = builtin_images(prep, DEFAULT_CALIBRATION_IMAGES, split="calibration")
        calib = (b.images for b in iter_batches(calibration_images, batch_size, num_workers=num_workers)
                 if b.images.numel())
        n_calib_batches = math.ceil(len(calibration_images) / batch_size)
    qmodel = prepare(module, config, stats=stats, calibration=calib, calibration_batches=n_calib_batches,
                     device=device, model_name=name, progress=progress)
    res = evaluate(qmodel, iter_batches(images, batch_size, num_workers=num_workers), model_name=name,
                   images=whole.description, total=math.ceil(len(images) / batch_size),
                   layer_sqnr=layer_sqnr, progress=progress)
    if shard is not None:
        res.shard = f"{int(shard[0])}/{int(shard[1])}"
    return res
