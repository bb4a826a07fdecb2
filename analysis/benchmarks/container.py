"""Benchmark of the .hqt container: write + read one file per dataset (rows for ``huffquant bench``).

Rows follow the codec rows' schema (``dataset, method, threads, bits_per_value, entropy,
encode_MBps, decode_MBps, lossless``) with method ``"huffquant-file"``:

* encode: ``entropy.container.save`` of the tensor (codec encode, CRCs, atomic write with
  fsync) as a new file in a temporary folder (each timed run writes its own file: replacing an
  existing one would add the file system's cost of freeing the old file's blocks, which is not
  the writer's work);
* decode: ``entropy.container.load`` (mmap, CRC checks, codec decode);
* bits_per_value: the whole file's bytes * 8 / values; entropy: the codec's order-0 entropy.

A second row per dataset, method ``"huffquant-file-nosync"``, writes with
``durable=False`` (no fsync of file and folder; still atomic if the process dies): the
difference between the two rows is the price of durability on the machine's disk, the
difference to the codec's ``huffquant`` row is everything else the container does.

Each row is measured on one thread and on ``threads`` threads (default: all cores, when more than one; the
runs interleaved). Speeds are million values per second (= MB/s for 1-byte values), best of ``repeats``.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from analysis.benchmarks.codec import thread_counts, time_interleaved
from entropy.container import load, save

__all__ = ["file_rows", "METHOD", "METHOD_NOSYNC"]

METHOD = "huffquant-file"
METHOD_NOSYNC = "huffquant-file-nosync"


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
