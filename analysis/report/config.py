"""What :func:`analysis.report.report` runs: :class:`ReportConfig`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from analysis import coding

__all__ = ["ReportConfig", "HISTOGRAM_CLIPS"]

HISTOGRAM_CLIPS = ("kl", "mse", "percentile")  # clipping methods that need per-channel histograms


@dataclass
class ReportConfig:
    """What :func:`report` runs. Defaults: the paper's W4A4 setting (ACIQ, bit allocation for weights and
    activations, bias correction) plus the naive per-channel min/max baseline. Both use offline statistics
    from the calibration images: a stored tensor has one set of scales, so its codes need fixed parameters
    (the reference code's default re-fits them on every batch)."""

    wbits: float = 4
    abits: float = 4
    clip: str = "aciq-laplace"
    bit_alloc: tuple[str, ...] = ("weights", "activations")
    bin_alloc: tuple[str, ...] = ()
    bias_correction: str | None = "mean"
    baseline: bool = True
    baseline_rate_images: int | None = 16  # the baseline's coded bits are measured on these first images
    num_calibration: int = 32
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
    sweep_images: int | None = 32  # fidelity of each sweep point on the first N images
    sweep_rate_images: int | None = 16  # coded sizes of each sweep point on the first N images
    hist_layer: str | None = None
    files_dir: str | None = None  # keep the written .hqt files here (None: a temporary directory)
    progress: bool = False
    seed: int = 0
    command: str = ""

    def quant_config(self, **overrides: Any):
        """The main configuration as a :class:`quant.pipeline.QuantConfig`."""
        from quant.pipeline import QuantConfig

        kw = dict(wbits=self.wbits, abits=self.abits, clip=self.clip, bit_alloc=self.bit_alloc,
                  bin_alloc=self.bin_alloc, bias_correction=self.bias_correction, stats_mode="offline")
        kw.update(overrides)
        return QuantConfig(**kw)

    def baseline_config(self):
        from quant.pipeline import QuantConfig

        return QuantConfig.naive(wbits=self.wbits, abits=self.abits, stats_mode="offline")
