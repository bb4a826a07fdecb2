"""Measuring each integer tensor of the report: its coding choices, packings and zstd size, then the real file.

Per tensor (one layer's activations or weights) :func:`analyze_tensors` gives: nominal bits per value (the mean
of log2(levels) over channels; channels have equal sizes, so this is element-weighted), the Shannon entropy
pooled over the layer's channels (the reference code's measure), the per-channel (conditional) entropy, the
Huffman average code length of every coding choice of :mod:`analysis.coding`, the choice with the fewest total
bits, the coded bits per value measured on the written file, zstd level 19 on the packed bytes, the
mixed-precision packings of :mod:`analysis.packing`, and a lossless check (decoded == original, SHA-256 of
both). It is torch-free: it works on integer tensors and their quantization parameters.
:func:`closed_form_rates` sizes tensors from their symbol counts alone (no file), for the baseline and sweep.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from analysis import coding, packing
from analysis.errors import AnalysisError

__all__ = ["KINDS", "TensorInput", "TensorResult", "analyze_tensors", "closed_form_rates"]

KINDS = ("activations", "weights")

#: Which choice names feed the acl_*/bpv_* columns (clusters: the best of any K, singles or pairs).
_COLUMN_CHOICES = {
    "layer": ("layer",),
    "channel": ("channel",),
    "pairs": ("layer-pairs",),
    "bitwidth": ("bitwidth",),
}


@dataclass
class TensorInput:
    """One integer tensor of the quantized network and what is needed to store and describe it.

    ``codes``: integer codes (numpy), channels along ``axis`` (None: one channel). ``levels`` and ``qmin``:
    per channel (or scalars), codes of channel c lie in ``[qmin[c], qmin[c] + levels[c] - 1]``.
    ``quant``: the quantization metadata stored in the file with it (scale, zero_point, bits...).
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

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AnalysisError(f"{self.layer}: kind must be one of {KINDS}, got {self.kind!r}")
        self.codes = np.asarray(self.codes)
        C = 1 if self.axis is None else int(self.codes.shape[self.axis])
        self.levels = np.broadcast_to(np.asarray(self.levels, dtype=np.int64).reshape(-1), (C,)).copy()
        self.qmin = np.broadcast_to(np.asarray(self.qmin, dtype=np.int64).reshape(-1), (C,)).copy()


@dataclass
class TensorResult:
    """Everything measured on one tensor; ``row`` is its layers.csv row."""

    row: dict
    choices: dict[str, coding.CodingChoice]
    best: coding.CodingChoice
    packing: packing.PackingResult
    channel_bits: np.ndarray  # nominal bits per channel (log2 levels)


def _choice_cols(choices: Mapping[str, coding.CodingChoice]) -> dict:
    out: dict[str, Any] = {}
    for col, names in _COLUMN_CHOICES.items():
        cands = [choices[n] for n in names if n in choices]
        c = min(cands, key=lambda c: c.total_bits) if cands else None
        out[f"acl_{col}"] = c.avg_code_length if c else None
        out[f"bpv_{col}"] = c.bits_per_value if c else None
    cl = [c for n, c in choices.items() if n.startswith("cluster")]
    c = min(cl, key=lambda c: c.total_bits) if cl else None
    out["acl_cluster"] = c.avg_code_length if c else None
    out["bpv_cluster"] = c.bits_per_value if c else None
    return out


def _sha256_rows(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows).data).hexdigest()


def analyze_tensors(
    inputs: Sequence[TensorInput],
    *,
    files_dir: str | os.PathLike[str],
    metadata: Mapping[str, str] | None = None,
    max_code_length: int = 12,
    chunk_size: int = 4096,
    zstd_sample_bytes: Mapping[str, int | None] | None = None,
    verify_huffman_packing: bool = False,  # also build and decode packings (i), (iii), (iv)
    clusters: tuple[int, ...] = coding.CLUSTER_COUNTS,
    progress: bool = False,
    timing: dict[str, float] | None = None,
) -> tuple[list[TensorResult], dict[str, Any]]:
    """Measure, code, write, decode and verify every tensor of ``inputs``.

    Writes ``activations.hqt`` and ``weights.hqt`` into ``files_dir`` (each layer stored in its chosen
    layout), reads them back and checks every tensor bit-exactly. ``zstd_sample_bytes`` per kind: None
    compresses everything, a number compresses a deterministic sample of that many packed bytes.
    Returns the per-tensor results (in input order) and per-kind file facts (bytes, path). ``timing``
    (optional) accumulates seconds per phase: counts, choices, packing, zstd, write, verify.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    from entropy.container import HQTFile, save

    tm = timing if timing is not None else {}

    def tick(key: str, t0: float) -> float:
        t1 = time.perf_counter()
        tm[key] = tm.get(key, 0.0) + t1 - t0  # summed over worker threads
        return t1

    zs = {"activations": 1 << 15, "weights": 1 << 17}
    if zstd_sample_bytes is not None:
        zs.update(zstd_sample_bytes)

    def one(i: int, t: TensorInput) -> tuple[TensorResult, coding.LayerCoding, list]:
        t0 = time.perf_counter()
        tc = coding.tensor_counts(t.codes, t.axis)
        t0 = tick("counts_s", t0)
        widths = packing.channel_widths(t.levels)
        chan_bits = np.log2(t.levels.astype(np.float64))
        choices = coding.coding_choices(
            tc, layer=t.layer, channel_bits=widths.astype(np.float64), max_code_length=max_code_length,
            chunk_size=chunk_size, clusters=clusters,
        )
        best = coding.best_choice(choices)
        extra = {}
        if "channel" not in choices and tc.n_channels > 1:
            extra["acl_channel"] = float(coding.channel_payload_bits(tc, max_code_length).sum()) / tc.n_values
        t0 = tick("choices_s", t0)
        pk = packing.packing_sizes(tc, t.levels, layer=t.layer, choices=choices)
        rows = coding.channel_rows(t.codes, t.axis)
        pk = packing.pack_layer(rows, pk, t.levels, t.qmin, widest=verify_huffman_packing,
                                huffman=verify_huffman_packing, max_code_length=max_code_length,
                                chunk_size=chunk_size)
        t0 = tick("packing_s", t0)
        zbpv, zfrac = packing.zstd_bits_per_value(rows, widths, t.qmin, sample_bytes=zs.get(t.kind))
        t0 = tick("zstd_s", t0)
        digest = _sha256_rows(t.codes)
        t0 = tick("hash_s", t0)
        encs = coding.encode_choice(rows, best, max_code_length=max_code_length, chunk_size=chunk_size)
        tick("encode_s", t0)
        row = {
            "index": i,
            "layer": t.layer,
            "kind": t.kind,
            "shape": "x".join(str(d) for d in t.codes.shape),
            "n_values": tc.n_values,
            "n_channels": tc.n_channels,
            "nominal_bits": float(np.mean(chan_bits)),
            "entropy_bits": coding.pooled_entropy(tc),
            "channel_entropy_bits": coding.channel_entropy(tc),
            **_choice_cols(choices),
            **extra,
            "choice": best.name,
            "segments": len(best.segments),
            "avg_code_length": best.avg_code_length,
            "payload_bits": best.payload_bits,
            "codebook_bits": best.codebook_bits,
            "index_bits": best.index_bits,
            "record_bits": best.record_bits,
            "map_bits": best.map_bits,
            "closed_form_bits": best.total_bits,
            "zstd_bits_per_value": zbpv,
            "zstd_sample_fraction": zfrac,
            "pack_widest_bpv": pk.widest_bits / tc.n_values,
            "pack_dense_bpv": pk.dense_bits / tc.n_values,
            "pack_huffman_layer_bpv": pk.huffman_layer.bits_per_value,
            "pack_huffman_bitwidth_bpv": (pk.huffman_bitwidth or pk.huffman_layer).bits_per_value,
            "pack_lossless": pk.as_row()["lossless"],
            "step_ratio": t.step_ratio,
            "fused_activation": t.fused_activation,
            "sha256": digest,
        }
        res = TensorResult(row=row, choices=choices, best=best, packing=pk, channel_bits=chan_bits)
        return res, coding.LayerCoding(t.layer, rows, best, dict(t.quant)), encs

    # two workers: the numba kernels, zstd and hashlib release the GIL, so coding one tensor overlaps
    # with choosing the layout of the next
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(one, i, t) for i, t in enumerate(inputs)]
        done = [f.result() for f in tqdm(futures, desc="coding", unit="tensor", disable=not progress)]
    results = [d[0] for d in done]
    by_key = {(r.row["kind"], r.row["layer"]): r for r in results}
    originals = {(t.kind, t.layer): t for t in inputs}
    files: dict[str, Any] = {}
    Path(files_dir).mkdir(parents=True, exist_ok=True)
    for kind in KINDS:
        items = [(lc, encs) for (r, lc, encs) in done if r.row["kind"] == kind]
        if not items:
            continue
        path = Path(files_dir) / f"{kind}.hqt"
        meta = {"content": kind, **(metadata or {})}
        t0 = time.perf_counter()
        tensors, quant = coding.file_entries([lc for lc, _ in items], [e for _, e in items])
        info = save(path, tensors, metadata=meta, quant=quant, max_code_length=max_code_length,
                    chunk_size=chunk_size)
        t0 = tick("write_s", t0)
        tinfo = {ti.name: ti for ti in info.tensors}

        def verify(f: HQTFile, lc: coding.LayerCoding) -> tuple[str, bool]:
            src_t = originals[(kind, lc.name)]
            rows = coding.load_choice(f, lc.name, lc.choice, lc.rows.shape[0], lc.rows.shape[1],
                                      src_t.codes.dtype)
            back = coding.from_rows(rows, src_t.codes.shape, src_t.axis)
            same = back.shape == src_t.codes.shape and back.dtype == src_t.codes.dtype and \
                np.array_equal(back, src_t.codes)
            return (by_key[(kind, lc.name)].row["sha256"] if same else _sha256_rows(back)), same

        # one reader (its header is parsed and checked once); reads are independent, so two threads share it
        with HQTFile(path) as hqt, ThreadPoolExecutor(max_workers=2) as pool:
            checks = list(pool.map(lambda lc: verify(hqt, lc), [lc for lc, _ in items]))
        quant_bytes_total = 0
        for (lc, _), (digest, same) in zip(items, checks):
            r = by_key[(kind, lc.name)]
            n_seg = len(lc.choice.segments)
            names = [coding.segment_name(lc.name, lc.choice.name, j, n_seg) for j in range(n_seg)]
            total_bytes = sum(tinfo[nm].total_bytes for nm in names)
            meta_bytes = sum(tinfo[nm].metadata_bytes for nm in names)
            quant_bytes = meta_bytes - lc.choice.map_bits // 8
            quant_bytes_total += quant_bytes
            coded_bits = 8 * (total_bytes - quant_bytes)
            n = r.row["n_values"]
            r.row.update(
                coded_bits=coded_bits,
                coded_bits_per_value=coded_bits / n,
                quant_metadata_bits=8 * quant_bytes,
                file_bits_per_value=8 * total_bytes / n,
                lossless=bool(same and digest == r.row["sha256"] and r.row["pack_lossless"]),
                decoded_sha256=digest,
            )
        tick("verify_s", t0)
        files[kind] = {
            "path": str(path),
            "file_bytes": info.file_bytes,
            "n_values": info.n_values,
            "quant_metadata_bytes": quant_bytes_total,
            "coded_bits_per_value": 8 * (info.file_bytes - quant_bytes_total) / max(info.n_values, 1),
            "file_bits_per_value": 8 * info.file_bytes / max(info.n_values, 1),
        }
    return results, files


def closed_form_rates(inputs: Sequence[TensorInput], *, max_code_length: int = 12, chunk_size: int = 4096,
                      clusters: tuple[int, ...] = (8,)) -> dict[str, dict[str, float]]:
    """Per kind, element-weighted nominal bits, pooled entropy and coded bits per value (closed form, all
    side information of the chosen layouts included; no file written)."""
    acc: dict[str, dict[str, float]] = {}
    for t in inputs:
        tc = coding.tensor_counts(t.codes, t.axis)
        widths = packing.channel_widths(t.levels)
        ch = coding.coding_choices(tc, layer=t.layer, channel_bits=widths.astype(np.float64),
                                   max_code_length=max_code_length, chunk_size=chunk_size, clusters=clusters)
        best = coding.best_choice(ch)
        a = acc.setdefault(t.kind, {"n": 0.0, "bits": 0.0, "nominal": 0.0, "entropy": 0.0})
        n = tc.n_values
        a["n"] += n
        a["bits"] += best.total_bits
        a["nominal"] += n * float(np.mean(np.log2(t.levels.astype(np.float64))))
        a["entropy"] += n * coding.pooled_entropy(tc)
    return {k: {"n_values": a["n"], "coded_bits_per_value": a["bits"] / a["n"], "nominal_bits": a["nominal"] / a["n"],
                "entropy_bits": a["entropy"] / a["n"]} for k, a in acc.items()}
