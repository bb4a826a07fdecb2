"""Rate-fidelity sweep: coded bits per value against fidelity to FP32 over a grid of quantization settings.

The grid crosses bit widths (weights and activations together, e.g. 2, 3, 4, 5, 6, 8 and fractional
bin-allocation targets such as 5.3), activation clipping methods, per-channel allocation on/off and bias
correction on/off, and adds whole recipes (default: ``best``, at 4 and 8 bits). Two kinds of points are left out
because they are the same setting as another point: a fractional bit width without allocation does not exist (it
needs bin allocation), and bit allocation at a bit width at or above the allocation's cap
(``QuantConfig.alloc_max_bits``, 8) gives every channel the cap, i.e. the point without allocation (so 8-bit
points come without the allocation variant; the grid of 7 widths x 4 clipping methods has 96 points, not 104,
plus the recipe points).

Each point is one independent measurement (:mod:`analysis.report.measure`) run through joblib
(:mod:`analysis.report.parallel`): the quantized model on the first ``sweep_images`` report images, its
fidelity (top-1 agreement with its 95% Wilson interval, top-5 overlap, KL, logit SQNR; top-1/top-5 accuracy with
labels), and the integer activations of the first ``sweep_rate_images`` images sized exactly from their symbol
counts (:func:`analysis.report.tensors.closed_form_rates`: the smallest of entropy's single, per-channel and
bit-width layouts, every bit of side information but the quantization parameters counted). Nothing is measured
twice:

* weight codes depend only on the weight settings (bit width, allocation), not on the activations' clipping or
  the weights' bias correction (which changes the dequantized weights, not their codes): the weights are sized
  once per weight setting, and every point checks that its weights have the same digest (a point whose weights
  differ gets its own sizing);
* a point whose setting the report already measured on the same images (a compared recipe, the main setting)
  takes the report's numbers.

Coded bits per value *together* are those of one inference: one image's activations and every weight.
Points no other point beats in both rate and fidelity (top-1 accuracy with labels, else top-1 agreement) form
the Pareto front. Rows come in grid order, and are the same whatever the engine and the number of jobs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from analysis.errors import AnalysisError
from analysis.plots import pareto_front
from analysis.report.learned import learns
from analysis.report.measure import (
    Measure, Measured, add_seconds, fidelity_columns, inference_bits_per_value, measure,
)

__all__ = ["SweepPoint", "sweep_grid", "run_sweep", "mark_pareto", "config_key"]

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
        """This point as a :class:`quant.QuantConfig`: a recipe's, or the naive recipe with this point's
        clipping, allocation and bias correction; offline statistics (the exported codes are what a file would
        store). ``adaround`` replaces a recipe's AdaRound iterations; ``keep_fp32``: conv/linear modules left in
        FP32."""
        from quant.recipes import recipe_config

        if self.recipe:
            qc = recipe_config(self.recipe, self.bits, self.bits, stats_mode="offline", keep_fp32=keep_fp32)
            if adaround is not None and qc.adaround:
                qc = dataclasses.replace(qc, adaround=int(adaround))
            return qc
        both = ("weights", "activations")
        return recipe_config(
            "naive", self.bits, self.bits, clip=self.clip,
            bit_alloc=both if self.allocation and not self.fractional else (),
            bin_alloc=both if self.allocation and self.fractional else (),
            bias_correction="mean" if self.bias_correction else None, stats_mode="offline", keep_fp32=keep_fp32,
        )


def _allocation_cap() -> float:
    from quant import QuantConfig

    return float(QuantConfig.alloc_max_bits)


def sweep_grid(bits: Sequence[float], clips: Sequence[str], *, allocation: Sequence[bool] = (False, True),
               bias_correction: Sequence[bool] = (False, True), recipes: Sequence[str] = (),
               recipe_bits: Sequence[float] | None = None) -> list[SweepPoint]:
    """Every combination but the redundant ones (module docstring): fractional bit widths only with (bin)
    allocation, integer bit widths at or above the allocation cap only without it. Then each of ``recipes`` at
    every integer bit width of ``bits`` (only those in ``recipe_bits`` when given)."""
    if not bits or not clips:
        raise AnalysisError("the sweep needs at least one bit width and one clipping method")
    cap = _allocation_cap()
    out = []
    for b in bits:
        for c in clips:
            for a in allocation:
                for bc in bias_correction:
                    p = SweepPoint(float(b), str(c), bool(a), bool(bc))
                    if p.fractional and not p.allocation:
                        continue
                    if p.allocation and not p.fractional and p.bits >= cap and False in allocation:
                        continue  # every channel gets the cap: the point without allocation
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


def config_key(qc: Any) -> str:
    """A QuantConfig as a string: equal keys, equal settings."""
    return json.dumps(qc.to_dict(), sort_keys=True, default=str)


# QuantConfig fields that set activations only, or change the weights' dequantized values but not their codes
_NOT_WEIGHT_CODES = ("abits", "clip", "first_layer_abits", "classifier_output_bits", "per_channel_activations",
                     "bias_correction", "bias_correction_form", "stats_mode")


def _weight_key(qc: Any) -> str:
    d = {k: v for k, v in qc.to_dict().items() if k not in _NOT_WEIGHT_CODES}
    for k in ("bit_alloc", "bin_alloc"):
        d[k] = [x for x in d.get(k) or () if x == "weights"]
    return json.dumps(d, sort_keys=True, default=str)


def _row(p: SweepPoint, fid: dict, act: Mapping[str, Any], w: Mapping[str, Any], images: int,
         rate_images: int) -> dict:
    rates = {"activations": act, "weights": w}
    return {
        "wbits": p.bits, "abits": p.bits, "clip": p.clip, "allocation": p.allocation,
        "bias_correction": p.bias_correction, "recipe": p.recipe or "", "series": p.series, "label": p.label(),
        "act_nominal_bits": act.get("nominal_bits"), "act_entropy_bits": act.get("entropy_bits"),
        "act_coded_bits_per_value": act.get("coded_bits_per_value"),
        "weight_nominal_bits": w.get("nominal_bits"), "weight_entropy_bits": w.get("entropy_bits"),
        "weight_coded_bits_per_value": w.get("coded_bits_per_value"),
        "coded_bits_per_value": inference_bits_per_value(rates, rate_images),
        **fidelity_columns(fid, images),
        "images": images, "rate_images": rate_images,
    }


def _run_widest_first(run: Callable[..., list], tasks: list[Measure], progress: bool) -> list[Measured]:
    """``run`` the tasks widest bit width first (the slowest to size: the workers end together), results in task
    order."""
    order = sorted(range(len(tasks)), key=lambda i: -float(tasks[i].config.abits or 0))
    done = run(measure, [tasks[i] for i in order], desc="sweep", progress=progress)
    out: list[Measured] = [None] * len(tasks)  # type: ignore[list-item]
    for i, m in zip(order, done):
        out[i] = m
    return out


def run_sweep(points: Sequence[SweepPoint], cfg: Any, run: Callable[..., list], *,
              statistics_of: Callable[[Any], str], known: Mapping[str, Measured] | None = None,
              timing: dict[str, float] | None = None) -> list[dict]:
    """Measure every point of ``points`` (see the module docstring) and return the sweep.csv rows (grid order)
    with the Pareto flag.

    ``cfg``: the :class:`~analysis.report.config.ReportConfig` (``sweep_images``, ``sweep_rate_images``,
    ``adaround``); ``run``: an engine session (:meth:`analysis.report.parallel.Engine.session`) whose context is
    a :class:`~analysis.report.measure.MeasureContext`; ``statistics_of(qc)``: the name of the statistics a
    configuration runs on in that context (what learning recipes learned must already be in them); ``known``:
    measurements the report already made (by :func:`config_key`) on the first ``sweep_images`` images (prefix
    fidelity) with activations sized on the first ``sweep_rate_images``. ``timing``: gains the measurements'
    seconds per stage summed over tasks (``sweep.prepare_s``, ``sweep.pass_s``, ``sweep.rates_s``...).
    """
    known = dict(known or {})
    configs = [p.quant_config(adaround=cfg.adaround, keep_fp32=cfg.keep_fp32) for p in points]
    todo = [i for i, qc in enumerate(configs) if config_key(qc) not in known]
    # the weights of plain points: sized once per weight setting
    groups: dict[str, int] = {}
    for i in todo:
        if not learns(configs[i]):
            groups.setdefault(_weight_key(configs[i]), i)
    weight_tasks = [Measure(configs[i], statistics_of(configs[i]), images=0, rate_images=0) for i in groups.values()]
    point_tasks = [Measure(configs[i], statistics_of(configs[i]), images=cfg.sweep_images,
                           rate_images=cfg.sweep_rate_images, weights=learns(configs[i])) for i in todo]
    done = _run_widest_first(run, weight_tasks + point_tasks, cfg.progress)
    if timing is not None:
        add_seconds(timing, "sweep", done)
    by_group = dict(zip(groups, done[: len(weight_tasks)]))
    measured = dict(zip(todo, done[len(weight_tasks):]))
    # a point whose weights are not those of its group gets its own weight sizing
    weights: dict[int, Measured] = {}
    odd = []
    for i, m in measured.items():
        if learns(configs[i]):
            weights[i] = m
            continue
        g = by_group[_weight_key(configs[i])]
        if g.weight_digest == m.weight_digest:
            weights[i] = g
        else:
            odd.append(i)
    if odd:
        log.info("%d sweep point(s) have weights of their own; sizing them", len(odd))
        extra = run(measure, [Measure(configs[i], statistics_of(configs[i]), images=0, rate_images=0) for i in odd],
                    desc="sweep weights", progress=cfg.progress)
        weights.update(zip(odd, extra))
    rows = []
    for i, (p, qc) in enumerate(zip(points, configs)):
        if i in measured:
            m, w = measured[i], weights[i]
            fid, images = m.fidelity, m.images
        else:
            m = w = known[config_key(qc)]
            fid, images = m.prefix_fidelity, min(cfg.sweep_images or m.images, m.images)
        if fid is None:
            raise AnalysisError(f"sweep point {p.label()}: no fidelity measured")
        rows.append(_row(p, fid, m.rates.get("activations", {}), w.rates.get("weights", {}), images,
                         m.rate_images))
        log.debug("sweep %s: %.3f bpv, top-1 agreement %.3f", p.label(), rows[-1]["coded_bits_per_value"],
                  rows[-1]["top1_agreement"])
    labelled = bool(rows) and all(r.get("top1") is not None for r in rows)
    return mark_pareto(rows, y="top1" if labelled else "top1_agreement")
