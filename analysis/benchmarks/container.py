"""Benchmark of the .hqt container: write + read one file per dataset (rows for ``huffquant bench``).

Rows follow the codec rows' schema (``dataset, method, threads, bits_per_value, entropy,
encode_MBps, decode_MBps, lossless``) with method ``"huffquant-file"``:

* encode: ``entropy.save`` of the tensor (codec encode, CRCs, atomic write with
  fsync) as a new file in a temporary folder (each timed run writes its own file: replacing an
  existing one would add the file system's cost of freeing the old file's blocks, which is not
  the writer's work);
* decode: ``entropy.load`` (mmap, CRC checks, codec decode);
* bits_per_value: the whole file's bytes * 8 / values; entropy: the codec's order-0 entropy.

A second row per dataset, method ``"huffquant-file-nosync"``, writes with
``durable=False`` (no fsync of file and folder; still atomic if the process dies): the
difference between the two rows is the price of durability on the machine's disk, the
difference to the codec's ``huffquant`` row is everything else the container does.

Each row is measured on one thread and on ``threads`` threads (default: all cores, when more than one; the
runs interleaved). Speeds are million values per second (= MB/s for 1-byte values), best of ``repeats``.

:func:`layout_rows` codes a channel-structured tensor, :data:`ACTIVATION` (a post-ReLU 4-bit activation of 64
channels of 56 x 56, :func:`activation`), in one file with one code (method ``"huffquant-file"``) and with its
channel axis, in the smallest layout (method ``"huffquant-file-layout"``; the row's ``layout`` names it and
``channel_entropy`` gives the per-channel entropy, the bound of a code per channel). Both write without fsync
(``durable=False``): the rows compare coding, not the disk.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from analysis.benchmarks.codec import thread_counts, time_interleaved
from entropy import channel_entropies, load, save, shannon_entropy, tensor_counts

__all__ = ["file_rows", "layout_rows", "activation", "ACTIVATION", "METHOD", "METHOD_NOSYNC", "METHOD_LAYOUT"]

METHOD = "huffquant-file"
METHOD_NOSYNC = "huffquant-file-nosync"
METHOD_LAYOUT = "huffquant-file-layout"
#: the channel-structured dataset of :func:`layout_rows`
ACTIVATION = "act4-64x56x56"


def file_rows(datasets: Mapping[str, np.ndarray], repeats: int = 3, threads: int | None = None) -> list[dict]:
    """Rows per dataset for durable and no-fsync writes, each at every thread count of
    :func:`~analysis.benchmarks.codec.thread_counts`: write and read a one-tensor .hqt file."""
    rows = []
    counts = thread_counts(threads)
    with tempfile.TemporaryDirectory(prefix="hqt-bench-") as d:
        for name, values in datasets.items():
            path = os.path.join(d, f"{name}.hqt")
            n = int(values.size)
            save(path, {name: values})  # warm-up (numba compile, page cache)
            load(path)
            runs = itertools.count()

            def write(durable: bool, t: int):
                return save(os.path.join(d, f"{name}-{next(runs)}.hqt"), {name: values}, durable=durable, threads=t)

            for method, durable in ((METHOD, True), (METHOD_NOSYNC, False)):
                encs = time_interleaved({t: (lambda t=t: write(durable, t)) for t in counts}, repeats)
                decs = time_interleaved({t: (lambda t=t: load(path, threads=t)) for t in counts}, repeats)
                for t in counts:
                    (t_enc, fi), (t_dec, back) = encs[t], decs[t]
                    rows.append(
                        {
                            "dataset": name,
                            "method": method,
                            "threads": t,
                            "bits_per_value": 8.0 * fi.file_bytes / n if n else 0.0,
                            "entropy": fi.entropy_bits,
                            "encode_MBps": n / t_enc / 1e6 if t_enc > 0 else float("inf"),
                            "decode_MBps": n / t_dec / 1e6 if t_dec > 0 else float("inf"),
                            "lossless": bool(np.array_equal(back[name], values) and back[name].dtype == values.dtype),
                        }
                    )
    return rows


def _moving_average(x: np.ndarray, width: int, axis: int) -> np.ndarray:
    """Mean of ``width`` neighbours along ``axis`` (edges repeated), same shape."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (width // 2, width - 1 - width // 2)
    c = np.cumsum(np.pad(x, pad, mode="edge"), axis=axis)
    c = np.concatenate([np.zeros_like(np.take(c, [0], axis=axis)), c], axis=axis)
    n = x.shape[axis]
    return (np.take(c, range(width, width + n), axis=axis) - np.take(c, range(n), axis=axis)) / width


def activation(seed: int = 0) -> np.ndarray:
    """A post-ReLU activation of 64 channels of 56 x 56, quantized to 4 bits (uint8 codes 0..15; channel axis 0).

    Like a conv layer's output: smooth spatial fields (random 8 x 8 blocks, blurred, plus pixel noise), each
    channel with its own gain and bias, so that channels differ in spread and sparsity (about 70% zeros overall)
    and zeros come in spatial runs. Fixed seed; numpy only.
    """
    rng = np.random.default_rng(seed)
    C, H, W, B = 64, 56, 56, 8
    coarse = rng.normal(0.0, 1.0, (C, H // B + 1, W // B + 1))
    field = np.repeat(np.repeat(coarse, B, axis=1), B, axis=2)[:, :H, :W]
    field = _moving_average(_moving_average(field, B, 1), B, 2)
    x = field + 0.35 * rng.normal(0.0, 1.0, (C, H, W))
    x = np.maximum(rng.uniform(0.3, 2.0, (C, 1, 1)) * x + rng.normal(-0.3, 0.6, (C, 1, 1)), 0.0)
    step = np.quantile(x[x > 0], 0.999) / 15
    return np.clip(np.round(x / step), 0, 15).astype(np.uint8)


def layout_rows(repeats: int = 3) -> list[dict]:
    """Two rows for :data:`ACTIVATION` (one thread): one code for the tensor, and the smallest layout along its
    channel axis."""
    values = activation()
    n = int(values.size)
    tc = tensor_counts(values, 0)
    channel_H = float(np.dot(channel_entropies(tc), tc.counts.sum(axis=1)) / n)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hqt-bench-") as d:
        for method, axis in ((METHOD, None), (METHOD_LAYOUT, 0)):
            path = os.path.join(d, f"{method}.hqt")
            runs = itertools.count()
            t_enc, fi = time_interleaved({0: lambda: save(os.path.join(d, f"{method}-{next(runs)}.hqt"),
                                                          {ACTIVATION: values}, channel_axis=axis, durable=False, threads=1)},
                                         repeats)[0]
            save(path, {ACTIVATION: values}, channel_axis=axis, durable=False, threads=1)
            t_dec, back = time_interleaved({0: lambda: load(path, threads=1)}, repeats)[0]
            rows.append({
                "dataset": ACTIVATION,
                "method": method,
                "threads": 1,
                "bits_per_value": 8.0 * fi.file_bytes / n,
                "entropy": shannon_entropy(tc.pooled()),
                "encode_MBps": n / t_enc / 1e6 if t_enc > 0 else float("inf"),
                "decode_MBps": n / t_dec / 1e6 if t_dec > 0 else float("inf"),
                "lossless": bool(np.array_equal(back[ACTIVATION], values) and back[ACTIVATION].dtype == values.dtype),
                "layout": fi.tensors[0].layout,
                "n_codebooks": fi.tensors[0].n_codebooks,
                "channel_entropy": channel_H,
            })
    return rows
