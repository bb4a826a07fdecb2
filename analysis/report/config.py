"""What :func:`analysis.report.report` runs: :class:`ReportConfig`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from analysis import coding

__all__ = ["ReportConfig", "HISTOGRAM_CLIPS"]

HISTOGRAM_CLIPS = ("kl", "mse", "percentile")  # clipping methods that need per-channel histograms


@dataclass
class ReportConfig:
    """What :func:`report` runs.

    The main setting (whose tensors are coded, written and verified in full) is recipe ``recipe`` (default
    ``best``, the recipe that keeps the network working: equalization, each layer's activation clipping chosen on
    held-out calibration images, MSE weight clipping, AdaRound, empirical bias correction; W4A4) with ``settings`` (any :class:`quant.QuantConfig` field) overriding it. The
    recipes in ``compare`` (default None: every other recipe, so the paper's is always there) run side by side at
    the same bit widths: fidelity on every evaluation image, coded bits on the first ``compare_rate_images``
    (the main setting's too, for the headline table). Every setting uses offline statistics from the calibration
    images: a stored tensor has one set of scales, so its codes need fixed parameters (the reference code's
    default re-fits them on every batch). What a recipe learns on the calibration images (statistics of the
    equalized network, AdaRound roundings, empirical bias corrections) is kept in ``calibration_dir`` and reused
    by the next run.

    The compared recipes and the sweep points are independent measurements, run through joblib
    (:mod:`analysis.report.parallel`): ``jobs`` loky worker processes on this machine (None: one per core), or
    the workers of the Dask distributed cluster at ``cluster`` (``pip install 'huffquant[cluster]'``). Each
    measurement uses ``task_threads`` torch intra-op threads whatever the engine, so the numbers do not depend on
    the engine or the number of jobs (torch's float sums depend on the thread count).
    """

    recipe: str = "best"
    wbits: float | None = 4
    abits: float | None = 4
    settings: dict[str, Any] = field(default_factory=dict)  # QuantConfig fields over the recipe's
    compare: tuple[str, ...] | None = None  # None: every recipe but the main setting's
    compare_rate_images: int | None = 16  # every recipe's headline coded bits are measured on these first images
    adaround: int | None = None  # AdaRound iterations of every recipe that uses it (None: the recipe's own)
    calibration_dir: str | None = None  # cache of what recipes learn (None: learned on every run, not kept)
    num_calibration: int | None = None  # None: all built-in calibration crops, or 32 of the caller's images
    num_images: int | None = None  # evaluation images (None: all of the built-in evaluation split)
    activation_images: int | None = 32  # activations are exported and coded on the first N (None: all)
    batch_size: int = 32
    device: str = "cpu"
    max_code_length: int = 12
    chunk_size: int = 4096
    zstd_sample_bytes: int | None = 1 << 15  # per activation tensor (4x per weight tensor); None: everything
    verify_huffman_packing: bool = False
    clusters: tuple[int, ...] = coding.CLUSTER_COUNTS
    sweep: bool = False
    sweep_bits: tuple[float, ...] = (2, 3, 4, 5, 6, 8, 5.3)
    sweep_clips: tuple[str, ...] = ("minmax", "aciq-laplace", "aciq-gauss", "2sigma")
    sweep_recipes: tuple[str, ...] = ("best",)  # whole recipes added to the sweep
    # ... at these bit widths (None: every integer one of sweep_bits). 4 is the main setting's (learned once for
    # both, cached in calibration_dir); every other width learns its own AdaRound, about an hour of CPU on
    # EfficientNet-Lite0 at 8 bits (quant/PIPELINE.md), so it is asked for, not a default.
    sweep_recipe_bits: tuple[float, ...] | None = (4,)
    sweep_images: int | None = 32  # fidelity of each sweep point on the first N images
    sweep_rate_images: int | None = 16  # coded sizes of each sweep point on the first N images
    jobs: int | None = None  # worker processes for the measurements (None: one per core; 1: in this process)
    cluster: str | None = None  # address of a Dask distributed scheduler to run the measurements on instead
    task_threads: int = 1  # torch intra-op threads of each measurement (the same on every engine)
    image_workers: int | None = None  # DataLoader workers reading the images (None: quant.images.loader_workers)
    hist_layer: str | None = None
    files_dir: str | None = None  # keep the written .hqt files here (None: a temporary directory)
    progress: bool = False
    seed: int = 0
    command: str = ""

    def quant_config(self):
        """The main setting as a :class:`quant.QuantConfig` (raises QuantError for a bad field)."""
        from quant.recipes import recipe_config

        qc = recipe_config(self.recipe, self.wbits, self.abits, **{"stats_mode": "offline", **self.settings})
        return self._iterations(qc, explicit="adaround" in self.settings)

    def compared(self) -> tuple[str, ...]:
        """The recipes run side by side with the main setting: ``compare``, or every recipe but the main one."""
        from quant.recipes import RECIPES

        if self.compare is not None:
            return tuple(dict.fromkeys(self.compare))
        return tuple(r for r in RECIPES if self.settings or r != self.recipe)

    def recipe_config(self, name: str, wbits: float | None = None, abits: float | None = None):
        """Recipe ``name`` at ``wbits``/``abits`` (default: the main setting's) with offline statistics, the main
        setting's :attr:`keep_fp32`, and :attr:`adaround` iterations where the recipe uses AdaRound."""
        from quant.recipes import recipe_config

        qc = recipe_config(name, self.wbits if wbits is None else wbits, self.abits if abits is None else abits,
                           stats_mode="offline", keep_fp32=self.keep_fp32)
        return self._iterations(qc)

    @property
    def keep_fp32(self) -> tuple[str, ...]:
        """The conv/linear modules every setting of the report leaves in FP32 (``settings["keep_fp32"]``)."""
        v = self.settings.get("keep_fp32") or ()
        return tuple(v.split(",")) if isinstance(v, str) else tuple(v)

    def _iterations(self, qc: Any, explicit: bool = False) -> Any:
        if self.adaround is None or not qc.adaround or explicit:
            return qc
        return dataclasses.replace(qc, adaround=int(self.adaround))
