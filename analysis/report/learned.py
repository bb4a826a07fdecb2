"""What the report's recipes learn on the calibration images, kept between runs.

A recipe that equalizes the network needs the statistics of the equalized network, and AdaRound roundings and
empirical bias corrections are learned on the calibration images: together minutes on a CPU, so the report
learns them once. :class:`LearnedCalibration` holds one :class:`quant.calibration.ModelStatistics` per
equalization setting (what :func:`quant.prepare` learns is added to it, keyed by configuration) and keeps
it in ``<directory>/<equalized|plain>.npz``. A file is reused only when it was made for the same model name, the
same weights and the same calibration images (SHA-256 of their parameters and pixels); otherwise it is learned
again and replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["LearnedCalibration", "learns", "fingerprint"]

log = logging.getLogger(__name__)


def learns(qc: Any) -> bool:
    """True when configuration ``qc`` needs more than plain statistics: equalization, AdaRound, empirical bias
    correction, or activation clipping chosen per layer on held-out calibration images (``clip="auto"``)."""
    auto_clip = qc.clip == "auto" and qc.abits is not None
    return bool(qc.equalize or qc.adaround or qc.bias_correction == "empirical" or auto_clip)


def fingerprint(module: Any, images: Sequence[Any]) -> str:
    """SHA-256 (16 hex digits each) of the module's parameters and buffers and of the calibration images."""
    import torch

    hw, hi = hashlib.sha256(), hashlib.sha256()
    with torch.no_grad():
        for name, t in list(module.state_dict().items()):
            hw.update(name.encode())
            hw.update(t.detach().cpu().contiguous().numpy().tobytes())
        for x in images:
            hi.update(str(tuple(x.shape)).encode())
            hi.update(x.detach().cpu().to(torch.float32).contiguous().numpy().tobytes())
    return f"weights sha256 {hw.hexdigest()[:16]}, images sha256 {hi.hexdigest()[:16]}"


class LearnedCalibration:
    """Statistics and learned parameters per equalization setting, loaded from and saved to ``directory``.

    ``module``: the FP32 model; ``images``: the calibration batches (image tensors); ``source``: what they are
    (kept in the files). :meth:`prepare` is :func:`quant.prepare` with the right statistics, learning
    what is missing; :meth:`save` writes what changed. ``seconds`` sums the time spent calibrating and learning.
    """

    def __init__(self, module: Any, images: Sequence[Any], *, model_name: str, source: str,
                 directory: str | Path | None, device: Any = "cpu", progress: bool = False) -> None:
        self.module = module
        self.images = list(images)
        self.model_name = model_name
        self.source = f"{source}; {fingerprint(module, self.images)}"
        self.directory = None if directory is None else Path(directory)
        self.device = device
        self.progress = progress
        self.seconds = 0.0
        self.reused: list[Path] = []
        self._stats: dict[str, Any] = {}
        self._loaded: dict[str, int | None] = {}  # results in a file when loaded (None: not from a file)

    @staticmethod
    def _name(qc: Any) -> str:
        return "equalized" if qc.equalize else "plain"

    def _path(self, name: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{name}.npz"

    def _n_results(self, stats: Any) -> int:
        return sum(len(v) for v in stats.results.values())

    def _load(self, name: str, qc: Any) -> Any:
        from quant.calibration import ModelStatistics
        from quant.errors import QuantError

        path = self._path(name)
        if path is None or not path.is_file():
            return None
        try:
            st = ModelStatistics.load(path)
        except (QuantError, OSError, ValueError) as exc:
            log.warning("ignoring learned calibration %s: %s", path, exc)
            return None
        n = sum(int(x.shape[0]) for x in self.images)
        same = (st.model == self.model_name and st.source == self.source and st.num_images == n
                and bool(st.extra.get("equalized", False)) == bool(qc.equalize))
        if not same:
            log.info("learned calibration %s was made for other weights or images; learning again", path)
            return None
        return st

    def statistics(self, qc: Any) -> Any:
        """The statistics ``qc`` runs on (with what was learned so far), calibrating when none are known."""
        from quant import calibrate_model

        name = self._name(qc)
        if name not in self._stats:
            st = self._load(name, qc)
            self._loaded[name] = None if st is None else self._n_results(st)
            if st is not None:
                self.reused.append(self._path(name))
            else:
                t = time.perf_counter()
                base = dataclasses.replace(qc, adaround=0, bias_correction=None)
                st = calibrate_model(self.module, base, self.images, model_name=self.model_name, source=self.source,
                                     device=self.device, progress=self.progress, total=len(self.images))
                self.seconds += time.perf_counter() - t
            self._stats[name] = st
        return self._stats[name]

    def prepare(self, qc: Any, *, progress: bool | None = None) -> Any:
        """:func:`quant.prepare` of ``qc`` on these statistics; AdaRound and empirical bias corrections not
        yet learned for ``qc`` are learned on the calibration images (and kept for :meth:`save`)."""
        from quant import needs_calibration, prepare

        stats = self.statistics(qc)
        learning = needs_calibration(qc, stats)
        t = time.perf_counter()
        qm = prepare(self.module, qc, stats=stats, calibration=self.images if learning else None,
                     device=self.device, model_name=self.model_name,
                     progress=self.progress if progress is None else progress)
        if learning:
            self.seconds += time.perf_counter() - t
        return qm

    def learn(self, qc: Any) -> str:
        """Make sure what ``qc`` learns is in its statistics (learning it now when missing); returns the name of
        those statistics (:meth:`named_statistics`)."""
        from quant import needs_calibration

        if needs_calibration(qc, self.statistics(qc)):
            self.prepare(qc)
        return self._name(qc)

    def named_statistics(self) -> dict[str, Any]:
        """The statistics known so far by name (``equalized``, ``plain``), with what was learned in them."""
        return dict(self._stats)

    @classmethod
    def statistics_name(cls, qc: Any) -> str:
        """The name of the statistics ``qc`` runs on."""
        return cls._name(qc)

    def save(self) -> list[Path]:
        """Write every statistics file that gained something since it was loaded; returns the paths written."""
        out = []
        for name, st in self._stats.items():
            path = self._path(name)
            if path is None or self._loaded.get(name) == self._n_results(st):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            st.save(path)
            out.append(path)
        return out

