"""Measuring each integer tensor of the report, writing it through entropy's file API and checking the file.

Per tensor (one layer's activations or weights) :func:`analyze_tensors` gives: nominal bits per value (the mean
of log2(levels) over channels; channels have equal sizes, so this is element-weighted), the Shannon entropy
pooled over the layer's channels (the reference code's measure), the per-channel (conditional) entropy, the
average code length and size of every layout entropy sizes for it (:mod:`analysis.coding`), the smallest one
(what :func:`entropy.save` picks), the coded bits measured on the written file, zstd level 19 on the packed
bytes, the mixed-precision packings of :mod:`analysis.packing`, and a lossless check (decoded == original,
SHA-256 of both). Each kind (activations, weights) is one ``.hqt`` file written with :func:`entropy.plan_file`
and :func:`entropy.write_plan`; a layer is one tensor in it, in its own shape and dtype with its channel axis.
It is torch-free: it works on integer tensors and their quantization parameters.
:func:`closed_form_rates` sizes tensors from their symbol counts alone (no file), for the compared recipes and the sweep.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from analysis import coding, packing
from analysis.errors import AnalysisError
from entropy import EntropyError, channel_rows

__all__ = ["KINDS", "TensorInput", "TensorResult", "analyze_tensors", "closed_form_rates"]

KINDS = ("activations", "weights")


@dataclass
class TensorInput:
    """One integer tensor of the quantized network and what is needed to store and describe it.

    ``codes``: integer codes (numpy), quantized per channel along ``axis`` (None: per tensor). ``levels`` and
    ``qmin``: per channel of ``axis`` (or scalars), codes of channel c lie in ``[qmin[c], qmin[c] + levels[c] - 1]``.
    ``quant``: the quantization metadata stored in the file with it (scale, zero_point, bits, axis...).
    ``channel_axis``: the axis whose channels the coding may give codes of their own (the file's channel axis;
    default ``axis``); a tensor quantized per tensor still has channels (1 for activations, 0 for weights).
    """

    layer: str
    kind: str
    codes: np.ndarray
    axis: int | None
    levels: np.ndarray
    qmin: np.ndarray
    quant: dict = field(default_factory=dict)
    step_ratio: float | None = None
    fused_activation: str = "none"  # "relu", "relu6" or "none": what the layer's output went through
    channel_axis: int | None | str = "axis"  # "axis": the same as axis

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AnalysisError(f"{self.layer}: kind must be one of {KINDS}, got {self.kind!r}")
        self.codes = np.asarray(self.codes)
        if isinstance(self.channel_axis, str):
            self.channel_axis = self.axis
        C = 1 if self.axis is None else int(self.codes.shape[self.axis])
        self.levels = np.broadcast_to(np.asarray(self.levels, dtype=np.int64).reshape(-1), (C,)).copy()
        self.qmin = np.broadcast_to(np.asarray(self.qmin, dtype=np.int64).reshape(-1), (C,)).copy()


@dataclass
class TensorResult:
    """Everything measured on one tensor; ``row`` is its layers.csv row."""

    row: dict
    layouts: coding.LayoutMeasures
    packing: packing.PackingResult
    channel_bits: np.ndarray  # nominal bits per channel (log2 levels)


def _sha256(codes: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(codes).data).hexdigest()


class _Stopwatch:
    """Seconds per phase, summed over threads (``with clock("layouts_s"): ...``)."""

    def __init__(self, into: dict[str, float] | None) -> None:
        self.seconds = into if into is not None else {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            with self._lock:
                self.seconds[key] = self.seconds.get(key, 0.0) + dt


@dataclass(frozen=True)
class _CodingOptions:
    max_code_length: int
    chunk_size: int
    clusters: tuple[int, ...]
    zstd_sample_bytes: Mapping[str, int | None]
    verify_huffman_packing: bool


def _size(t: TensorInput, opt: _CodingOptions, clock: _Stopwatch) -> tuple[coding.TensorCounts, coding.LayoutMeasures]:
    """Stage 1: the tensor's per-channel counts and every layout entropy sizes for it."""
    with clock("counts_s"):
        tc = coding.tensor_counts(t.codes, t.channel_axis)
    with clock("layouts_s"):
        lm = coding.measure_layouts(t.codes, t.channel_axis, name=t.layer, quant=t.quant,
                                    max_code_length=opt.max_code_length, chunk_size=opt.chunk_size,
                                    clusters=opt.clusters)
    return tc, lm


def _measure(index: int, t: TensorInput, tc: coding.TensorCounts, lm: coding.LayoutMeasures, opt: _CodingOptions,
             clock: _Stopwatch) -> TensorResult:
    """Stage 2: the tensor's layers.csv row from its sizes, packings, zstd size and hash (without what the written
    file adds: :func:`_file_columns`)."""
    with clock("packing_s"):
        chan_bits = np.log2(t.levels.astype(np.float64))
        rows = channel_rows(t.codes, t.axis)
        pk = packing.pack_layer(rows, packing.packing_sizes(lm, t.levels, layer=t.layer), t.levels, t.qmin,
                                widest=opt.verify_huffman_packing)
        if opt.verify_huffman_packing:
            pk = packing.check_huffman(t.codes, t.channel_axis, pk, lm.arrays, max_code_length=opt.max_code_length,
                                       chunk_size=opt.chunk_size)
    with clock("zstd_s"):
        zbpv, zfrac = packing.zstd_bits_per_value(rows, packing.channel_widths(t.levels), t.qmin,
                                                  sample_bytes=opt.zstd_sample_bytes.get(t.kind))
    with clock("hash_s"):
        digest = _sha256(t.codes)
    best = lm.best
    pk_row = pk.as_row()
    row = {
        "index": index,
        "layer": t.layer,
        "kind": t.kind,
        "shape": "x".join(str(d) for d in t.codes.shape),
        "dtype": str(t.codes.dtype),
        "n_values": tc.n_values,
        "n_channels": tc.n_channels,
        "nominal_bits": float(np.mean(chan_bits)),
        "entropy_bits": coding.pooled_entropy(tc),
        "channel_entropy_bits": coding.channel_entropy(tc),
        **lm.columns(tc, opt.max_code_length),
        "layout": best.name,
        "n_codebooks": len(best.streams),
        "modes": coding.stream_modes(best),
        "avg_code_length": best.avg_code_length,
        **lm.parts(),
        "closed_form_bits": lm.coded_bits(),
        "zstd_bits_per_value": zbpv,
        "zstd_sample_fraction": zfrac,
        "pack_widest_bpv": pk_row["widest_bpv"],
        "pack_dense_bpv": pk_row["dense_bpv"],
        "pack_huffman_layer_bpv": pk_row["huffman_layer_bpv"],
        "pack_huffman_bitwidth_bpv": pk_row["huffman_bitwidth_bpv"],
        "pack_lossless": pk_row["lossless"],
        "step_ratio": t.step_ratio,
        "fused_activation": t.fused_activation,
        "sha256": digest,
    }
    return TensorResult(row=row, layouts=lm, packing=pk, channel_bits=chan_bits)


def _write_and_read_back(path: Path, kind: str, tensors: Sequence[TensorInput], measures: Sequence[coding.LayoutMeasures],
                         metadata: Mapping[str, str], opt: _CodingOptions, durable: bool,
                         clock: _Stopwatch) -> tuple[Any, list[str | None]]:
    """Stage 3: write one kind's file through entropy's API (each tensor in the layout the measures found
    smallest, which is the one ``entropy.save`` picks), check its sizes against the measures, read every tensor
    back and compare it with the codes. Returns entropy's FileInfo and, per tensor, None when it decoded equal,
    else the decoded tensor's SHA-256."""
    import entropy

    names = [t.layer for t in tensors]
    if len(set(names)) != len(names):
        raise AnalysisError(f"two {kind} tensors have the same layer name")
    checks: list[str | None] = []
    try:
        with clock("plan_s"):
            # naming the layout the measures found smallest spares the planner a second search
            plan = entropy.plan_file(
                {t.layer: t.codes for t in tensors}, {"content": kind, **metadata},
                quant={t.layer: lm.arrays for t, lm in zip(tensors, measures)},
                channel_axis={t.layer: t.channel_axis for t in tensors},
                layout={t.layer: lm.best.name for t, lm in zip(tensors, measures)},
                max_code_length=opt.max_code_length, chunk_size=opt.chunk_size, clusters=opt.clusters,
            )
            for tp, lm in zip(plan.tensors, measures):
                if tp.choice.name != lm.best.name or tp.choice.total_bytes != lm.best.total_bytes:
                    raise AnalysisError(f"{path.name}: tensor {tp.name!r}: entropy plans {tp.choice.name} in "
                                        f"{tp.choice.total_bytes} bytes, the measures {lm.best.name} in "
                                        f"{lm.best.total_bytes}")
        with clock("write_s"):
            info = entropy.write_plan(plan, path, durable=durable)
        if info.file_bytes != plan.file_bytes:
            raise AnalysisError(f"{path.name}: {info.file_bytes} bytes written, {plan.file_bytes} planned")
        with clock("verify_s"), entropy.HQTFile(path) as hqt:
            for t in tensors:
                back = hqt.read(t.layer)
                same = back.shape == t.codes.shape and back.dtype == t.codes.dtype and np.array_equal(back, t.codes)
                checks.append(None if same else _sha256(back))
    except EntropyError as exc:
        raise AnalysisError(f"{path.name}: {exc}") from exc
    return info, checks


def _file_columns(results: Sequence[TensorResult], tensors: Sequence[TensorInput], info: Any,
                  checks: Sequence[str | None], path: Path) -> dict[str, Any]:
    """Stage 4: each tensor's share of the written file (a codebook identical to another tensor's is stored once
    and shared) into its row, and the file's facts (bytes, path, bits per value)."""
    quant_bytes_total = 0
    for r, t, check in zip(results, tensors, checks):
        row = r.row
        ti = info.tensor(t.layer)
        quant_bytes_total += ti.metadata_bytes
        coded_bits = 8 * (ti.total_bytes - ti.metadata_bytes)
        n = row["n_values"]
        row.update(
            coded_bits=coded_bits,
            coded_bits_per_value=coded_bits / n,
            quant_metadata_bits=8 * ti.metadata_bytes,
            file_bits_per_value=8 * ti.total_bytes / n,
            lossless=bool(check is None and row["pack_lossless"]),
            decoded_sha256=row["sha256"] if check is None else check,
        )
    return {"path": path, "file_bytes": info.file_bytes, "n_values": info.n_values,
            "file_bits_per_value": 8 * info.file_bytes / max(info.n_values, 1),
            "quant_metadata_bytes": quant_bytes_total,
            "coded_bits_per_value": 8 * (info.file_bytes - quant_bytes_total) / max(info.n_values, 1)}


def analyze_tensors(
    inputs: Sequence[TensorInput],
    *,
    files_dir: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    zstd_sample_bytes: Mapping[str, int | None] | None = None,
    verify_huffman_packing: bool = False,  # also build packings (i), (iii) and (iv) and decode them
    clusters: tuple[int, ...] = coding.CLUSTER_COUNTS,
    durable: bool = True,
    progress: bool = False,
    timing: dict[str, float] | None = None,
) -> tuple[list[TensorResult], dict[str, Any]]:
    """Measure, write, decode and verify every tensor of ``inputs``.

    Writes ``activations.hqt`` and ``weights.hqt`` into ``files_dir`` through entropy's public file API (one
    tensor per layer, named by the layer, with its quantization metadata, in the layout ``entropy.save`` picks
    for its channel axis), reads every tensor back and checks it bit-exactly. ``zstd_sample_bytes`` per kind:
    None compresses everything, a number compresses a deterministic sample of that many packed bytes.
    ``durable=False`` skips the fsyncs of the written files. Returns the per-tensor results (in input order)
    and per-kind file facts (bytes, ``path``, bits per value). ``timing`` (optional) accumulates seconds per
    stage: counts, layouts, packing, zstd, hash (summed over the worker threads), then plan, write and verify.
    Raises AnalysisError if a written size differs from the measured closed form.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    zs: dict[str, int | None] = {"activations": 1 << 15, "weights": 1 << 17}
    zs.update(zstd_sample_bytes or {})
    opt = _CodingOptions(max_code_length, chunk_size, tuple(clusters), zs, verify_huffman_packing)
    clock = _Stopwatch(timing)
    folder = Path(files_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    written: dict[str, tuple[Any, list[str | None]]] = {}
    # two workers (the numba kernels, zstd and hashlib release the GIL): first every tensor's sizes, which the
    # files need, then its row, while this thread writes and reads back the files
    with ThreadPoolExecutor(max_workers=2) as pool:
        sizes = [pool.submit(_size, t, opt, clock) for t in inputs]
        rows = [pool.submit(lambda i=i: _measure(i, inputs[i], *sizes[i].result(), opt, clock))
                for i in range(len(inputs))]
        for kind in KINDS:
            idx = [i for i, t in enumerate(inputs) if t.kind == kind]
            if idx:
                written[kind] = _write_and_read_back(
                    folder / f"{kind}.hqt", kind, [inputs[i] for i in idx], [sizes[i].result()[1] for i in idx],
                    metadata or {}, opt, durable, clock)
        results = [f.result() for f in tqdm(rows, desc="coding", unit="tensor", disable=not progress)]
    for kind, (info, checks) in written.items():
        idx = [i for i, t in enumerate(inputs) if t.kind == kind]
        files[kind] = _file_columns([results[i] for i in idx], [inputs[i] for i in idx], info, checks,
                                    folder / f"{kind}.hqt")
    return results, files


def closed_form_rates(inputs: Sequence[TensorInput], *, max_code_length: int = 12, chunk_size: int = 4096,
                      clusters: tuple[int, ...] = (), threads: int = 2) -> dict[str, dict[str, float]]:
    """Per kind, element-weighted nominal bits, pooled entropy and coded bits per value (and ``n_values``): each
    tensor in the smallest of the layouts entropy sizes for it (``clusters``: the cluster counts tried; none by
    default, for speed), every bit of side information but its metadata arrays included; no file written.
    ``threads``: tensors sized at once (the counting kernels release the GIL); the sums do not depend on it."""
    def measure(t: TensorInput) -> coding.LayoutMeasures:
        return coding.measure_layouts(t.codes, t.channel_axis, name=t.layer, quant=t.quant,
                                      max_code_length=max_code_length, chunk_size=chunk_size, clusters=clusters)

    if threads > 1 and len(inputs) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            measures = list(pool.map(measure, inputs))
    else:
        measures = [measure(t) for t in inputs]
    acc: dict[str, dict[str, float]] = {}
    for t, lm in zip(inputs, measures):  # summed in input order: the same floats every run
        a = acc.setdefault(t.kind, {"n": 0.0, "bits": 0.0, "nominal": 0.0, "entropy": 0.0})
        n = lm.n_values
        a["n"] += n
        a["bits"] += lm.coded_bits()
        a["nominal"] += n * float(np.mean(np.log2(t.levels.astype(np.float64))))
        a["entropy"] += n * lm.best.entropy_bits  # order-0 entropy of the values: the pooled entropy
    return {k: {"n_values": a["n"], "coded_bits_per_value": a["bits"] / a["n"], "nominal_bits": a["nominal"] / a["n"],
                "entropy_bits": a["entropy"] / a["n"]} for k, a in acc.items()}
