"""Rate-fidelity sweep: coded bits per value against fidelity to FP32 over a grid of quantization settings.

The grid crosses bit widths (weights and activations together, e.g. 2, 3, 4, 5, 6, 8 and fractional
bin-allocation targets such as 5.3), activation clipping methods, per-channel allocation on/off and bias
correction on/off, and adds whole recipes (default: ``best``, at 4 and 8 bits). Each point runs the quantized
model once on the sweep images, measures its fidelity
(top-1 agreement, top-5 overlap, KL; top-1/top-5 accuracy with labels) and sizes the integer tensors of
the first ``sweep_rate_images`` images exactly from their symbol counts
(:func:`analysis.report.tensors.closed_form_rates`: the smallest of entropy's single, per-channel and bit-width
layouts, every bit of side information but the quantization parameters counted). Points no other point beats
in both rate and fidelity (top-1 accuracy with labels, else top-1 agreement) form the Pareto front.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, Sequence

from analysis.errors import AnalysisError
from analysis.report.learned import learns
from analysis.plots import pareto_front
from analysis.report.model_pass import run_quantized, tensor_inputs
from analysis.report.tensors import closed_form_rates

__all__ = ["SweepPoint", "sweep_grid", "run_sweep", "mark_pareto"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepPoint:
    """One setting of the grid. ``allocation`` means bit allocation (eq. 11) for integer bit widths and bin
    allocation (eq. 10, non-power-of-two level counts) for fractional ones; it applies to weights and
    activations. ``bias_correction`` is the weights' mean correction."""

    bits: float
    clip: str
    allocation: bool
    bias_correction: bool
    recipe: str | None = None  # a whole recipe (quant.recipes) instead of the four fields above

    @classmethod
    def of_recipe(cls, bits: float, recipe: str) -> "SweepPoint":
        """Recipe ``recipe`` at ``bits`` (weights and activations)."""
        from quant.recipes import recipe_settings

        kw = recipe_settings(recipe)
        return cls(float(bits), str(kw["clip"]), bool(kw["bit_alloc"] or kw["bin_alloc"]),
                   kw["bias_correction"] is not None, recipe=recipe)

    @property
    def fractional(self) -> bool:
        return float(self.bits) != int(self.bits)

    @property
    def series(self) -> str:
        """What the figure colours the point by: its clipping method, or its recipe."""
        return f"{self.recipe} recipe" if self.recipe else self.clip

    def label(self) -> str:
        b = f"{self.bits:g}"
        if self.recipe:
            return f"W{b}A{b} {self.recipe} recipe"
        parts = [f"W{b}A{b}", self.clip]
        if self.allocation:
            parts.append("bin-alloc" if self.fractional else "bit-alloc")
        if self.bias_correction:
            parts.append("bias-corr")
        return " ".join(parts)

    def quant_config(self, adaround: int | None = None, keep_fp32: Sequence[str] = ()):
        """This point as a :class:`quant.QuantConfig`; ``adaround`` replaces a recipe's AdaRound
        iterations; ``keep_fp32``: conv/linear modules left in FP32."""
        from quant import QuantConfig

        if self.recipe:
            from quant.recipes import recipe_config

            qc = recipe_config(self.recipe, self.bits, self.bits, stats_mode="offline", keep_fp32=keep_fp32)
            if adaround is not None and qc.adaround:
                qc = dataclasses.replace(qc, adaround=int(adaround))
            return qc

        both = ("weights", "activations")
        return QuantConfig(
            wbits=self.bits, abits=self.bits, clip=self.clip,
            bit_alloc=both if self.allocation and not self.fractional else (),
            bin_alloc=both if self.allocation and self.fractional else (),
            bias_correction="mean" if self.bias_correction else None,
            stats_mode="offline",  # fixed parameters: the exported codes are what a file would store
            keep_fp32=keep_fp32,
        )


def sweep_grid(bits: Sequence[float], clips: Sequence[str], *, allocation: Sequence[bool] = (False, True),
               bias_correction: Sequence[bool] = (False, True), recipes: Sequence[str] = (),
               recipe_bits: Sequence[float] | None = None) -> list[SweepPoint]:
    """Every combination; fractional bit widths only with allocation (they need bin allocation). Then each of
    ``recipes`` at every integer bit width of ``bits`` (only those in ``recipe_bits`` when given)."""
    if not bits or not clips:
        raise AnalysisError("the sweep needs at least one bit width and one clipping method")
    out = []
    for b in bits:
        for c in clips:
            for a in allocation:
                for bc in bias_correction:
                    p = SweepPoint(float(b), str(c), bool(a), bool(bc))
                    if p.fractional and not p.allocation:
                        continue
                    out.append(p)
    for r in recipes:
        out += [SweepPoint.of_recipe(b, r) for b in bits
                if float(b) == int(b) and (recipe_bits is None or float(b) in {float(x) for x in recipe_bits})]
    return out


def mark_pareto(rows: list[dict], x: str = "coded_bits_per_value", y: str = "top1_agreement") -> list[dict]:
    """Set ``row["pareto"]`` on every row (True: no other row has lower-or-equal rate and higher-or-equal
    fidelity, one of them strictly)."""
    if not rows:
        return rows
    mask = pareto_front([r[x] for r in rows], [r[y] for r in rows])
    for r, m in zip(rows, mask):
        r["pareto"] = bool(m)
    return rows


def run_sweep(src: Any, stats: Any, refs: list, cfg: Any, grid: Sequence[SweepPoint] | None = None, *,
              learned: Any = None) -> list[dict]:
    """Run every point of ``grid`` (default: from ``cfg.sweep_bits`` x ``cfg.sweep_clips`` x allocation x bias
    correction, plus ``cfg.sweep_recipes`` at the integer bit widths of ``cfg.sweep_recipe_bits``) on the first ``cfg.sweep_images`` report
    images; returns sweep.csv rows with the Pareto flag.

    ``src`` (:class:`~analysis.report.model_pass.ReportInputs`), ``stats`` and ``refs`` (FP32 logits per batch)
    come from :func:`analysis.report.report`. Points that learn on the calibration images (equalization, AdaRound,
    empirical bias correction) need ``learned`` (:class:`~analysis.report.learned.LearnedCalibration`).
    """
    from tqdm.auto import tqdm

    from quant import prepare

    points = list(grid) if grid is not None else sweep_grid(cfg.sweep_bits, cfg.sweep_clips,
                                                            recipes=cfg.sweep_recipes,
                                                            recipe_bits=cfg.sweep_recipe_bits)
    batches, brefs = _first_images(src.eval_batches, refs, cfg.sweep_images)
    rows = []
    for p in tqdm(points, desc="sweep", unit="point", disable=not cfg.progress):
        qc = p.quant_config(adaround=cfg.adaround, keep_fp32=cfg.keep_fp32)
        if learns(qc):
            if learned is None:
                raise AnalysisError(f"sweep point {p.label()} learns on the calibration images: pass learned=")
            qm = learned.prepare(qc, progress=False)
        else:
            qm = prepare(src.module, qc, stats=stats, device=cfg.device, model_name=src.name, progress=False)
        keep = cfg.sweep_rate_images
        fid, codes = run_quantized(qm, batches, brefs, record=True, progress=False, desc="sweep point",
                                    record_images=keep)
        if keep:
            codes = {k: (c[:keep], p_) for k, (c, p_) in codes.items()}
        rate_images = int(next(iter(codes.values()))[0].shape[0]) if codes else 0
        inputs = tensor_inputs(qm, codes, None, qc.abits)
        del codes, qm
        rates = closed_form_rates(inputs, max_code_length=cfg.max_code_length, chunk_size=cfg.chunk_size,
                                  clusters=())
        del inputs
        act = rates.get("activations", {})
        w = rates.get("weights", {})
        n = act.get("n_values", 0) + w.get("n_values", 0)
        total = act.get("coded_bits_per_value", 0) * act.get("n_values", 0) + \
            w.get("coded_bits_per_value", 0) * w.get("n_values", 0)
        rows.append({
            "wbits": p.bits, "abits": p.bits, "clip": p.clip, "allocation": p.allocation,
            "bias_correction": p.bias_correction, "recipe": p.recipe or "", "series": p.series, "label": p.label(),
            "act_nominal_bits": act.get("nominal_bits"), "act_entropy_bits": act.get("entropy_bits"),
            "act_coded_bits_per_value": act.get("coded_bits_per_value"),
            "weight_nominal_bits": w.get("nominal_bits"), "weight_entropy_bits": w.get("entropy_bits"),
            "weight_coded_bits_per_value": w.get("coded_bits_per_value"),
            "coded_bits_per_value": total / n if n else math.nan,
            "top1_agreement": fid["top1_agreement"], "top5_overlap": fid["top5_overlap"],
            "kl_divergence": fid["kl_divergence"], "top1": fid.get("top1"), "top5": fid.get("top5"),
            "images": sum(int(x.shape[0]) for x, _ in batches),
            "rate_images": rate_images,
        })
        log.debug("sweep %s: %.3f bpv, top-1 agreement %.3f", p.label(), rows[-1]["coded_bits_per_value"],
                 fid["top1_agreement"])
    labelled = bool(rows) and all(r.get("top1") is not None for r in rows)
    return mark_pareto(rows, y="top1" if labelled else "top1_agreement")


def _first_images(batches: list, refs: list, limit: int | None) -> tuple[list, list]:
    if limit is None:
        return batches, refs
    out_b, out_r, n = [], [], 0
    for (x, labels), r in zip(batches, refs):
        if n >= limit:
            break
        k = min(int(x.shape[0]), limit - n)
        out_b.append((x[:k], None if labels is None else labels[:k]))
        out_r.append(r[:k])
        n += k
    return out_b, out_r
