"""Offline calibration: FP32 activation statistics of every layer over N images, saved and reloaded.

Statistics are taken on the FP32 network (BN folded, fused ReLU applied), as the reference code's
``-sm collect``. Each layer's :class:`~quant.statistics.TensorStatistics` is keyed by the layer's stable
qualified module name (e.g. ``"_blocks.3._expand_conv"``), so a file made for one model instance applies to
any other instance of the same architecture. Channel axis 1 (the output channel of a conv, the feature of
a linear layer); per-tensor statistics are merged from the channels.

File format (``.npz``, no pickle): ``__meta__`` is a JSON document (format tag, model name, image count,
image source, per-layer scalar fields); each array field of layer ``L`` is stored under ``"L/field"``.
What was learned on the same calibration images for one configuration can be kept with the statistics
(:meth:`ModelStatistics.add_result`): AdaRound roundings (``kind="adaround"``, one bit per weight, arrays
``"@adaround/<i>/<layer>"``), empirical bias corrections (``kind="bias"``, arrays ``"@bias/<i>/<layer>"``) and
per-layer clipping choices (``kind="clip"``, in the JSON document),
each under the key of the configuration it was learned for (``quant.preparation.adaround_key`` / ``bias_key``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from tqdm.auto import tqdm

from quant.capture import ActivationSite, check_finite_logits
from quant.errors import CalibrationError
from quant.graph import Instrumented, LayerInfo
from quant.statistics import TensorStatistics

__all__ = ["ModelStatistics", "calibrate", "STATS_FORMAT"]

log = logging.getLogger(__name__)

STATS_FORMAT = "huffquant.model_statistics.v1"
HIST_BINS = 2048


@dataclass
class ModelStatistics:
    """Per-layer FP32 activation statistics of one model."""

    layers: dict[str, TensorStatistics]
    model: str = ""
    num_images: int = 0
    source: str = ""
    channel_histograms: bool = False
    extra: dict = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> configuration key -> result

    RESULT_KINDS = ("adaround", "bias", "clip")

    def result(self, kind: str, key: str) -> Any:
        """What was learned for configuration ``key`` (``kind`` "adaround", "bias" or "clip"), or None."""
        return self.results.get(kind, {}).get(key)

    def add_result(self, kind: str, key: str, value: Any) -> None:
        """Keep an AdaRound result (:class:`quant.adaround.AdaRoundResult`), empirical bias corrections
        (dict layer -> tensor (C_out,)) or a per-layer clipping choice (dict layer -> label,
        :mod:`quant.clip_choice`) learned for configuration ``key``; saved with the statistics."""
        if kind not in self.RESULT_KINDS:
            raise CalibrationError(f"unknown result kind {kind!r}; expected one of {self.RESULT_KINDS}")
        self.results.setdefault(kind, {})[key] = value

    def __getitem__(self, name: str) -> TensorStatistics:
        try:
            return self.layers[name]
        except KeyError:
            raise CalibrationError(
                f"no statistics for layer {name!r} (the file has {len(self.layers)} layers"
                + (f" of model {self.model!r}" if self.model else "")
                + "); recalibrate for this model"
            ) from None

    def check_layers(self, names: Iterable[str]) -> None:
        """Raise :class:`CalibrationError` listing the layers of ``names`` that have no statistics."""
        missing = [n for n in names if n not in self.layers]
        if missing:
            raise CalibrationError(
                f"statistics{' of ' + repr(self.model) if self.model else ''} lack {len(missing)} layer(s) "
                f"of this model, e.g. {missing[:3]}; recalibrate with 'huffquant calibrate'"
            )

    def save(self, path: str | Path) -> Path:
        """Write a ``.npz`` file (see the module docstring); returns the path."""
        p = Path(path)
        arrays: dict[str, np.ndarray] = {}
        layers_meta: dict[str, dict] = {}
        for name, st in self.layers.items():
            d = st.to_dict()
            scal = {}
            for k, v in d.items():
                if isinstance(v, np.ndarray):
                    arrays[f"{name}/{k}"] = v
                else:
                    scal[k] = v
            layers_meta[name] = scal
        results_meta: dict[str, list] = {}
        for kind, by_key in self.results.items():
            for i, (key, value) in enumerate(by_key.items()):
                prefix = f"@{kind}/{i}"
                if kind == "adaround":
                    rmeta, rarr = value.to_arrays(prefix)
                elif kind == "clip":
                    rmeta, rarr = {"choice": dict(value)}, {}
                else:
                    rmeta = {"layers": list(value)}
                    rarr = {f"{prefix}/{n}": t.detach().cpu().numpy() for n, t in value.items()}
                arrays.update(rarr)
                results_meta.setdefault(kind, []).append({"key": key, "prefix": prefix, "meta": rmeta})
        meta = {
            "format": STATS_FORMAT, "model": self.model, "num_images": self.num_images, "source": self.source,
            "channel_histograms": self.channel_histograms, "layer_order": list(self.layers),
            "layers": layers_meta, "extra": self.extra, "results": results_meta,
        }
        with open(p, "wb") as fh:
            np.savez(fh, __meta__=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
        return p

    @classmethod
    def load(cls, path: str | Path) -> "ModelStatistics":
        """Read a file written by :meth:`save`; raises :class:`CalibrationError` on anything else."""
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                if "__meta__" not in z.files:
                    raise CalibrationError(f"{p} is not a huffquant statistics file (no __meta__ record)")
                meta = json.loads(bytes(z["__meta__"]).decode())
                if meta.get("format") != STATS_FORMAT:
                    raise CalibrationError(f"{p}: unknown statistics format {meta.get('format')!r}")
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise CalibrationError(f"cannot read statistics file {p}: {exc}") from exc
        layers: dict[str, TensorStatistics] = {}
        for name in meta["layer_order"]:
            d = dict(meta["layers"][name])
            prefix = name + "/"
            for k, v in arrays.items():
                if k.startswith(prefix) and "/" not in k[len(prefix):]:
                    d[k[len(prefix):]] = v
            for k in ("hist", "channel_hist", "sample_max", "sample_min", "tensor_sample_max", "tensor_sample_min"):
                d.setdefault(k, None)
            try:
                layers[name] = TensorStatistics.from_dict(d)
            except (KeyError, ValueError) as exc:
                raise CalibrationError(f"{p}: statistics of layer {name!r} are incomplete ({exc})") from exc
        results: dict[str, dict[str, Any]] = {}
        for kind, entries in dict(meta.get("results", {})).items():
            if kind not in cls.RESULT_KINDS:
                continue
            for e in entries:
                prefix = e["prefix"]
                if kind == "adaround":
                    from quant.adaround import AdaRoundResult

                    value: Any = AdaRoundResult.from_arrays(e["meta"], arrays, prefix)
                elif kind == "clip":
                    value = {str(n): str(v) for n, v in dict(e["meta"].get("choice", {})).items()}
                else:
                    try:
                        value = {n: torch.from_numpy(arrays[f"{prefix}/{n}"]) for n in e["meta"]["layers"]}
                    except KeyError as exc:
                        raise CalibrationError(f"{p}: bias corrections incomplete ({exc})") from exc
                results.setdefault(kind, {})[e["key"]] = value
        return cls(layers=layers, model=str(meta.get("model", "")), num_images=int(meta.get("num_images", 0)),
                   source=str(meta.get("source", "")), channel_histograms=bool(meta.get("channel_histograms")),
                   extra=dict(meta.get("extra", {})), results=results)


def calibrate(
    inst: Instrumented,
    batches: Iterable[torch.Tensor],
    *,
    model_name: str = "",
    source: str = "",
    channel_histograms: bool = False,
    histogram: bool = True,
    tensor_stats: bool | Callable[[LayerInfo], bool] = True,
    device: str | torch.device = "cpu",
    progress: bool = False,
    total: int | None = None,
) -> ModelStatistics:
    """Accumulate FP32 statistics of every layer's output over ``batches`` (tensors (N, C, H, W)).

    ``inst`` is an instrumented FP32 model (sites of type :class:`ActivationSite` with no quantizer).
    ``histogram`` keeps the per-tensor histogram (KL, percentile and MSE clipping need it);
    ``channel_histograms`` keeps one per channel (needed for those methods per channel; memory: channels
    x 4096 x 8 bytes per layer). ``tensor_stats`` (or a function of the layer's :class:`LayerInfo`) keeps
    the per-tensor mean absolute deviation (needed for per-tensor ACIQ; one more pass). Raises :class:`CalibrationError` naming a layer with NaN/Inf outputs.
    """
    sites = {n: s for n, s in inst.sites.items() if isinstance(s, ActivationSite)}
    for name, site in sites.items():
        if site.quantizer is not None:
            raise CalibrationError(f"layer {name}: calibration needs the FP32 model (a quantizer is installed)")
        per_tensor = tensor_stats(site.info) if callable(tensor_stats) else bool(tensor_stats)
        site.stats = TensorStatistics(axis=1, bins=HIST_BINS, histogram=histogram,
                                      channel_histograms=channel_histograms, tensor_stats=per_tensor, name=name)
    inst.to(device)
    n_images = 0
    try:
        with torch.no_grad():
            for xb in tqdm(batches, desc="calibrate", unit="batch", total=total, disable=not progress):
                xb = xb.to(device)
                check_finite_logits(inst, xb, inst(xb))
                n_images += int(xb.shape[0])
        if n_images == 0:
            raise CalibrationError("calibration received no images")
        layers = {name: site.stats for name, site in sites.items()}
    finally:
        for site in sites.values():
            site.stats = None
    for name, st in layers.items():
        if st.n_batches == 0:
            raise CalibrationError(f"layer {name} was never executed during calibration")
    return ModelStatistics(layers=layers, model=model_name, num_images=n_images, source=source,
                           channel_histograms=channel_histograms)
