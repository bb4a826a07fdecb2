"""The bits-per-value report: what each activation and weight of a quantized network really costs.

:func:`report` runs the whole job on a model and images (quantize, export the integer tensors, code
them, write real ``.hqt`` files, decode and verify them, measure) and returns a :class:`Report`;
:func:`analyze_tensors` is the torch-free core that does everything after the export, on integer
tensors and their quantization parameters.

Per tensor (one layer's activations or weights) the report gives: nominal bits per value (the mean of
log2(levels) over channels; channels have equal sizes, so this is element-weighted), the Shannon
entropy pooled over the layer's channels (the reference code's measure), the per-channel
(conditional) entropy, the Huffman average code length of every coding choice of
:mod:`analysis.coding`, the choice with the fewest total bits, the coded bits per value measured on the
written file, zstd level 19 on the packed bytes, the mixed-precision packings of
:mod:`analysis.packing`, and a lossless check (decoded == original, SHA-256 of both).

Whole-model figures are element-weighted averages over tensors (totals of bits over totals of values).
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from analysis import coding, packing
from analysis.errors import AnalysisError

__all__ = [
    "TensorInput",
    "TensorResult",
    "Report",
    "ReportConfig",
    "analyze_tensors",
    "summarize",
    "report",
    "LAYER_COLUMNS",
    "SWEEP_COLUMNS",
]

log = logging.getLogger(__name__)

KINDS = ("activations", "weights")
_HISTOGRAM_CLIPS = ("kl", "mse", "percentile")  # clipping methods that need per-channel histograms

#: Columns of layers.csv, in order (documented in the README).
LAYER_COLUMNS = (
    "index", "layer", "kind", "shape", "n_values", "n_channels",
    "nominal_bits", "entropy_bits", "channel_entropy_bits",
    "acl_layer", "acl_channel", "acl_pairs", "acl_bitwidth", "acl_cluster",
    "bpv_layer", "bpv_channel", "bpv_pairs", "bpv_bitwidth", "bpv_cluster",
    "choice", "segments", "avg_code_length", "payload_bits", "codebook_bits", "index_bits", "record_bits",
    "map_bits", "closed_form_bits", "coded_bits", "coded_bits_per_value", "quant_metadata_bits",
    "file_bits_per_value", "zstd_bits_per_value", "zstd_sample_fraction",
    "pack_widest_bpv", "pack_dense_bpv", "pack_huffman_layer_bpv", "pack_huffman_bitwidth_bpv",
    "step_ratio", "fused_activation", "lossless", "sha256",
)

#: Columns of sweep.csv, in order (documented in the README).
SWEEP_COLUMNS = (
    "wbits", "abits", "clip", "allocation", "bias_correction", "label",
    "act_nominal_bits", "act_entropy_bits", "act_coded_bits_per_value",
    "weight_nominal_bits", "weight_entropy_bits", "weight_coded_bits_per_value",
    "coded_bits_per_value", "top1_agreement", "top5_overlap", "kl_divergence", "top1", "top5", "pareto",
    "images", "rate_images",
)

#: Which choice names feed the acl_*/bpv_* columns (clusters: the best of any K, singles or pairs).
_COLUMN_CHOICES = {
    "layer": ("layer",),
    "channel": ("channel",),
    "pairs": ("layer-pairs",),
    "bitwidth": ("bitwidth",),
}


# --------------------------------------------------------------------------- tensor-level analysis


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
        tc = coding.tensor_counts(t.codes, t.axis, pairs=True)
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


def _wavg(rows: Sequence[Mapping[str, Any]], key: str) -> float | None:
    vals = [(r[key], r["n_values"]) for r in rows if r.get(key) is not None]
    if not vals:
        return None
    n = sum(w for _, w in vals)
    return float(sum(v * w for v, w in vals) / n) if n else None


def summarize(rows: Sequence[Mapping[str, Any]], files: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Element-weighted whole-model figures per kind (``summary.activations``/``summary.weights``)."""
    out: dict[str, Any] = {}
    for kind in KINDS:
        rs = [r for r in rows if r["kind"] == kind]
        if not rs:
            continue
        n = sum(r["n_values"] for r in rs)
        s: dict[str, Any] = {"n_layers": len(rs), "n_values": n}
        for key in ("nominal_bits", "entropy_bits", "channel_entropy_bits", "avg_code_length",
                    "acl_layer", "bpv_layer", "zstd_bits_per_value", "pack_widest_bpv", "pack_dense_bpv",
                    "pack_huffman_layer_bpv", "pack_huffman_bitwidth_bpv"):
            s[key] = _wavg(rs, key)
        if all(r.get("coded_bits") is not None for r in rs):
            s["coded_bits_per_value"] = sum(r["coded_bits"] for r in rs) / n
        else:  # closed form only (no file written)
            s["coded_bits_per_value"] = sum(r["closed_form_bits"] for r in rs) / n
        s["closed_form_bits_per_value"] = sum(r["closed_form_bits"] for r in rs) / n
        if files and kind in files:
            # the whole file counts: its preamble and file-level strings too
            s["layers_coded_bits_per_value"] = s["coded_bits_per_value"]
            s["coded_bits_per_value"] = files[kind]["coded_bits_per_value"]
            s["file_bits_per_value"] = files[kind]["file_bits_per_value"]
            s["file_bytes"] = files[kind]["file_bytes"]
        coded = s["coded_bits_per_value"]
        s["ratio_to_entropy"] = coded / s["entropy_bits"] if s["entropy_bits"] else None
        s["ratio_to_channel_entropy"] = coded / s["channel_entropy_bits"] if s["channel_entropy_bits"] else None
        s["reduction_vs_nominal"] = s["nominal_bits"] / coded if coded else None
        s["reduction_vs_8bit"] = 8.0 / coded if coded else None
        s["bandwidth_saved_vs_nominal"] = 1.0 - coded / s["nominal_bits"] if s["nominal_bits"] else None
        s["bandwidth_saved_vs_8bit"] = 1.0 - coded / 8.0
        s["lossless"] = all(bool(r.get("lossless", False)) for r in rs)
        s["choices"] = {c: sum(1 for r in rs if r["choice"] == c) for c in sorted({r["choice"] for r in rs})}
        sr = [r for r in rs if r.get("step_ratio") is not None and math.isfinite(r["step_ratio"])]
        if sr:
            s["step_ratio_mean"] = float(np.mean([r["step_ratio"] for r in sr]))
            plain = [r["step_ratio"] for r in sr if r.get("fused_activation", "none") == "none"]
            s["step_ratio_mean_no_activation"] = float(np.mean(plain)) if plain else None
        out[kind] = s
    if len(out) == 2:
        n = out["activations"]["n_values"] + out["weights"]["n_values"]
        tot = sum(out[k]["coded_bits_per_value"] * out[k]["n_values"] for k in KINDS)
        nom = sum(out[k]["nominal_bits"] * out[k]["n_values"] for k in KINDS)
        out["model"] = {"n_values": n, "coded_bits_per_value": tot / n, "nominal_bits": nom / n,
                        "reduction_vs_nominal": nom / tot if tot else None,
                        "reduction_vs_8bit": 8 * n / tot if tot else None}
    return out


# --------------------------------------------------------------------------- the report object


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, Path):
        return str(x)
    return x


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        if not math.isfinite(float(v)):
            return "–"
        return f"{float(v):.{digits}f}"
    return str(v)


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(v, digits) for v in r) + " |")
    return "\n".join(lines)


@dataclass
class Report:
    """A finished report. ``to_markdown``/``to_json``/``to_csv`` render it; ``write``/``plot`` save it."""

    header: dict
    summary: dict
    layers: list[dict]
    configs: list[dict] = field(default_factory=list)
    packing: list[dict] = field(default_factory=list)
    sweep: list[dict] | None = None
    targets: dict = field(default_factory=dict)
    timing: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict, repr=False)  # data for plot(), not serialized

    # -- machine-readable
    def to_dict(self) -> dict:
        """The summary.json document."""
        d = {
            "header": self.header,
            "summary": self.summary,
            "targets": self.targets,
            "timing": self.timing,
            "configs": self.configs,
            "files": self.files,
            "layers": self.layers,
            "packing": self.packing,
        }
        if self.sweep is not None:
            d["sweep"] = self.sweep
        return _jsonable(d)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    def to_csv(self, table: str = "layers") -> str:
        """``layers`` (layers.csv), ``sweep`` (sweep.csv) or ``packing`` as CSV text."""
        if table == "layers":
            cols, rows = LAYER_COLUMNS, self.layers
        elif table == "sweep":
            cols, rows = SWEEP_COLUMNS, self.sweep or []
        elif table == "packing":
            rows = self.packing
            cols = tuple(rows[0]) if rows else ("layer",)
        else:
            raise AnalysisError(f"unknown table {table!r}; expected layers, sweep or packing")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(cols), extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _csv_value(r.get(k)) for k in cols})
        return buf.getvalue()

    # -- human-readable
    def to_markdown(self) -> str:
        h = self.header
        out = [f"# huffquant report: {h.get('model', '?')}", ""]
        out.append(_table(["", ""], [
            ("model", h.get("model")), ("images", h.get("images")), ("settings", h.get("settings")),
            ("baseline", h.get("baseline_settings") or "–"), ("package", h.get("package")),
            ("date", h.get("date")), ("device", h.get("device")), ("command", f"`{h.get('command', '')}`"),
        ]))
        out += ["", "## Whole model (element-weighted over layers)", ""]
        out.append(self._summary_table())
        out += ["", "Coded bits per value count everything needed to decode the integer codes from the file: "
                "payload, codebooks, chunk indexes, tensor records, alignment and channel maps. "
                "The file bits additionally hold the quantization parameters (scale, zero point, bits per "
                "channel), which every representation needs, nominal storage included. "
                "Entropy is the reference code's measure: order-0 Shannon entropy of a layer's codes pooled "
                "over its channels, averaged over layers weighted by element count."]
        if self.targets:
            out += ["", "## Targets", ""]
            out.append(_table(["target", "value", "limit", "met"], [
                (t.get("description", k), t.get("value"), t.get("limit"), t.get("met")) for k, t in self.targets.items()
            ]))
        if self.configs:
            out += ["", "## Configurations (fidelity to FP32 on the report images)", ""]
            out.append(_table(
                ["configuration", "top-1 agreement", "top-5 overlap", "KL (nats)", "top-1", "act. coded bpv",
                 "weight coded bpv", "coded bpv on images"],
                [(c.get("label"), c.get("top1_agreement"), c.get("top5_overlap"), c.get("kl_divergence"),
                  c.get("top1"), c.get("act_coded_bits_per_value"), c.get("weight_coded_bits_per_value"),
                  c.get("rate_images")) for c in self.configs], digits=4))
        for kind in KINDS:
            rows = [r for r in self.layers if r["kind"] == kind]
            if not rows:
                continue
            out += ["", f"## Per layer: {kind} (bits per value)", ""]
            out.append(_table(
                ["#", "layer", "nominal", "entropy", "ch. entropy", "ACL layer", "ACL channel", "ACL pairs",
                 "ACL bit-width", "ACL cluster", "picked", "coded", "zstd-19", "lossless"],
                [(r["index"], r["layer"], r["nominal_bits"], r["entropy_bits"], r["channel_entropy_bits"],
                  r.get("acl_layer"), r.get("acl_channel"), r.get("acl_pairs"), r.get("acl_bitwidth"),
                  r.get("acl_cluster"), r["choice"], r.get("coded_bits_per_value"), r.get("zstd_bits_per_value"),
                  r.get("lossless")) for r in rows]))
        out += ["", "ACL = Huffman average code length (payload bits per value) of a coding choice: one code per "
                "layer, per channel, per layer over pairs of values, per bit-width group, and the best of K "
                "codes shared by clusters of channels. *picked* is the choice with the fewest total bits, side "
                "information included; *coded* is measured on the written file."]
        if self.packing:
            out += ["", "## Mixed-precision channel packing (bits per value)", ""]
            out.append(_table(
                ["layer", "kind", "nominal", "(i) widest", "(ii) dense", "(iii) Huffman layer",
                 "(iv) Huffman per width", "lossless"],
                [(p["layer"], p["kind"], p["nominal_bits"], p["widest_bpv"], p["dense_bpv"], p["huffman_layer_bpv"],
                  p["huffman_bitwidth_bpv"], p["lossless"]) for p in self.packing]))
            out += ["", "(i) every value at the layer's widest width; (ii) each channel bit-packed at its own width "
                    "ceil(log2 levels); (iii) one Huffman code over the layer's mixed channels; (iv) one code per "
                    "group of equal width; (iii) and (iv) include codebooks, index and records. Built sizes equal "
                    "the closed-form counts (checked)."]
        sr = [(r["index"], r["layer"], r.get("fused_activation", "none"), r["step_ratio"]) for r in self.layers
              if r["kind"] == "activations" and r.get("step_ratio") is not None]
        if sr:
            s_act = self.summary.get("activations", {})
            out += ["", "## Step ratio ρ = Δ_ACIQ / Δ_KL (rebuttal: mean 0.81–0.86 on ResNets and Inception-V3)", "",
                    f"Mean over all layers {_fmt(s_act.get('step_ratio_mean'))}; over layers without a fused "
                    f"activation (signed outputs, like-for-like with ResNet pre-ReLU statistics) "
                    f"{_fmt(s_act.get('step_ratio_mean_no_activation'))}. Steps at the layer's mean bit width from "
                    "FP32 calibration statistics (pre-activation, per tensor); for a fused ReLU6 both ranges are "
                    "capped at 6.", ""]
            out.append(_table(["#", "layer", "fused activation", "ρ"], sr))
        if self.sweep:
            front = [p for p in self.sweep if p.get("pareto")]
            out += ["", f"## Rate-fidelity sweep ({len(self.sweep)} points; Pareto front below)", ""]
            out.append(_table(
                ["label", "coded bpv", "act. bpv", "weight bpv", "top-1 agreement", "KL"],
                [(p["label"], p["coded_bits_per_value"], p["act_coded_bits_per_value"],
                  p["weight_coded_bits_per_value"], p["top1_agreement"], p.get("kl_divergence"))
                 for p in sorted(front, key=lambda p: p["coded_bits_per_value"])], digits=4))
            out += ["", "All points: `sweep.csv`."]
        if self.timing:
            out += ["", "## Timing", ""]
            out.append(_table(["", "seconds"], [(k, v) for k, v in self.timing.items()], digits=2))
        if self.figures.get("written"):
            out += ["", "## Figures", ""]
            out += [f"- `{p}`" for p in self.figures["written"]]
        notes = self.header.get("notes") or []
        if notes:
            out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
        return "\n".join(out) + "\n"

    def _summary_table(self) -> str:
        keys = [
            ("nominal bits", "nominal_bits"), ("entropy (pooled, reference-style)", "entropy_bits"),
            ("per-channel entropy", "channel_entropy_bits"), ("Huffman avg. code length, picked", "avg_code_length"),
            ("Huffman avg. code length, one code per layer", "acl_layer"),
            ("coded bits per value (file, all side info)", "coded_bits_per_value"),
            ("file bits per value (+ quant. parameters)", "file_bits_per_value"),
            ("zstd -19 on packed bytes", "zstd_bits_per_value"),
            ("coded / pooled entropy", "ratio_to_entropy"), ("coded / channel entropy", "ratio_to_channel_entropy"),
            ("bandwidth reduction vs nominal (×)", "reduction_vs_nominal"),
            ("bandwidth reduction vs 8 bit (×)", "reduction_vs_8bit"),
            ("lossless (all layers)", "lossless"),
        ]
        kinds = [k for k in KINDS if k in self.summary]
        return _table(["measure"] + kinds, [(label, *[self.summary[k].get(key) for k in kinds]) for label, key in keys])

    # -- files
    def write(self, out_dir: str | os.PathLike[str], *, plots: bool = True) -> list[Path]:
        """Write report.md, layers.csv, summary.json (and sweep.csv, figures/) into ``out_dir``."""
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        if plots:
            t = time.perf_counter()
            figs = self.plot(d / "figures")
            self.timing["plots_s"] = time.perf_counter() - t
            self._retime()
            self.figures["written"] = [str(p.relative_to(d)) for p in figs if p.suffix == ".png"]
            written += figs
        for name, text in (("layers.csv", self.to_csv("layers")), ("summary.json", self.to_json()),
                           ("report.md", self.to_markdown())):
            (d / name).write_text(text, encoding="utf-8")
            written.append(d / name)
        if self.sweep is not None:
            (d / "sweep.csv").write_text(self.to_csv("sweep"), encoding="utf-8")
            written.append(d / "sweep.csv")
        return written

    def _retime(self) -> None:
        """Count the figures in the speed ratio: the command's work is the report plus its plots."""
        t = self.timing
        base = t.get("fp32_forward_s", 0.0) + t.get("calibration_s", 0.0)
        if "report_s" not in t or base <= 0:
            return
        t["total_s"] = t["report_s"] + t.get("plots_s", 0.0)
        t["ratio_to_fp32_and_calibration"] = t["total_s"] / base
        if "time" in self.targets:
            self.targets["time"].update(value=t["ratio_to_fp32_and_calibration"],
                                        met=t["ratio_to_fp32_and_calibration"] <= self.targets["time"]["limit"])

    def plot(self, out_dir: str | os.PathLike[str]) -> list[Path]:
        """Write every figure the report has data for (PNG + PDF each); returns the paths."""
        from analysis import plots

        f = self.figures
        paths: list[Path] = []
        if f.get("histogram"):
            h = f["histogram"]
            paths += plots.plot_clipping_histogram(h.get("values"), h["thresholds"], out_dir,
                                                   histogram=h.get("histogram"), layer=h.get("layer", ""),
                                                   xlabel=h.get("xlabel"))
        paths += plots.plot_layer_bits(
            [{**r, "file_bits_per_value": r.get("coded_bits_per_value", r["closed_form_bits"] / r["n_values"])}
             for r in self.layers], out_dir)
        if self.sweep:
            labelled = all(p.get("top1") is not None for p in self.sweep)
            paths += plots.plot_rate_fidelity(
                self.sweep, out_dir, y="top1" if labelled else "top1_agreement",
                ylabel="top-1 accuracy (%)" if labelled else "top-1 agreement with FP32 (%)")
        if f.get("mse_curves"):
            paths += plots.plot_mse_alpha(f["mse_curves"], out_dir)
        cb = f.get("channel_bits") or {}
        if any(len(v) for v in cb.values()):
            paths += plots.plot_bit_allocation(cb, out_dir)
        sr = [r for r in self.layers if r["kind"] == "activations" and r.get("step_ratio") is not None]
        if sr:
            groups = ["no activation" if r.get("fused_activation", "none") == "none" else
                      f"fused {r['fused_activation'].replace('relu', 'ReLU')}" for r in sr]
            paths += plots.plot_step_ratio([r["step_ratio"] for r in sr], out_dir, groups=groups)
        return paths


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    if v is None:
        return ""
    return v


# --------------------------------------------------------------------------- the driver


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


@dataclass
class _Inputs:
    name: str
    module: Any
    description: str
    eval_batches: list  # (images, labels or None)
    calib_batches: list  # images
    labelled: bool
    preprocessing: Any = None
    weights: str = ""


def _resolve(model: Any, images: Any, calibration_images: Any, cfg: ReportConfig) -> _Inputs:
    import torch

    from quant.images import ImageSet, builtin_images, folder_images, iter_batches
    from quant.models import LoadedModel, load_model

    if isinstance(model, str):
        model = load_model(model)
    if isinstance(model, LoadedModel):
        name, module, prep, wsrc = model.name, model.model, model.preprocessing, model.weights
    elif isinstance(model, torch.nn.Module):
        name, module, prep, wsrc = type(model).__name__, model, None, "caller's module"
    else:
        raise AnalysisError(f"model must be a name, a LoadedModel or an nn.Module, got {type(model).__name__}")

    def batches_of(src: Any, limit: int | None, split: str) -> tuple[list, str, bool]:
        if src is None:
            if prep is None:
                raise AnalysisError("pass images= for a plain nn.Module (its preprocessing is unknown)")
            src = builtin_images(prep, limit, split=split)
        elif isinstance(src, (str, os.PathLike)):
            if prep is None:
                raise AnalysisError("an image folder needs a named model (its preprocessing)")
            src = folder_images(src, prep, limit=limit)
        if isinstance(src, torch.Tensor):
            x = src if limit is None else src[:limit]
            bs = cfg.batch_size
            return [(x[i:i + bs], None) for i in range(0, x.shape[0], bs)], f"tensor of {x.shape[0]} images", False
        if isinstance(src, ImageSet):
            if limit is not None and len(src) > limit:
                src = src.subset(0, limit)
            out = []
            skipped = 0
            for b in iter_batches(src, cfg.batch_size):
                skipped += len(b.skipped)
                if b.images.numel():
                    out.append((b.images, b.labels if src.labelled else None))
            if skipped:
                log.warning("%d unreadable image(s) skipped", skipped)
            if not out:
                raise AnalysisError(f"no readable image in {src.description}")
            return out, src.description + (f", {skipped} unreadable skipped" if skipped else ""), src.labelled
        raise AnalysisError(f"images must be None, a folder, an ImageSet or a tensor, got {type(src).__name__}")

    ev, desc, labelled = batches_of(images, cfg.num_images, "evaluation")
    if calibration_images is None and images is not None:
        # calibrate on the first images of the caller's set (the reference code's default of 32)
        calib, left = [], cfg.num_calibration
        for x, _ in ev:
            if left <= 0:
                break
            calib.append(x[:left])
            left -= int(calib[-1].shape[0])
        cdesc = "the first report images"
    else:
        cb, cdesc, _ = batches_of(calibration_images, cfg.num_calibration, "calibration")
        calib = [x for x, _ in cb]
    n_eval = sum(int(x.shape[0]) for x, _ in ev)
    n_cal = sum(int(x.shape[0]) for x in calib)
    return _Inputs(name, module, f"{desc} ({n_eval} evaluated); calibration: {cdesc} ({n_cal})", ev, calib,
                   labelled, prep, wsrc)


def _run_quantized(qmodel: Any, batches: list, refs: list, *, record: bool, progress: bool, desc: str,
                   record_images: int | None = None):
    """One quantized pass over ``batches``: fidelity to the FP32 logits ``refs`` and, with ``record``, the codes
    (of the first ``record_images`` images when given, rounded up to whole batches)."""
    import torch
    from tqdm.auto import tqdm

    from quant.capture import CodeRecorder, check_finite_logits
    from quant.evaluation import FidelityMeter

    sizes = [int(x.shape[0]) for x, _ in batches]
    n_rec = sum(sizes)
    if record_images is not None:
        n_rec, acc = 0, 0
        for k in sizes:
            if acc >= record_images:
                break
            n_rec += k
            acc += k
    sites = qmodel.sites
    recs = {}
    if record:
        for name, s in sites.items():
            if s.quantizer is not None:
                recs[name] = s.recorder = CodeRecorder(n_rec)
    meter = FidelityMeter()
    seen = 0
    try:
        with torch.no_grad():
            for (x, labels), ref in tqdm(list(zip(batches, refs)), desc=desc, unit="batch", disable=not progress):
                if recs and seen >= n_rec:
                    for s in sites.values():
                        s.recorder = None
                out = qmodel(x.to(qmodel.device))
                seen += int(x.shape[0])
                check_finite_logits(qmodel.quant, x, out)
                meter.update(ref, out, labels)
    finally:
        for s in sites.values():
            s.recorder = None
    codes = {name: (r.result(), r.params) for name, r in recs.items()}
    return meter.summary(), codes


def _tensor_inputs(qmodel: Any, codes: Mapping[str, Any], stats: Any, cfg_abits: float | None) -> list[TensorInput]:
    """TensorInputs for every quantized layer (activations then weights per layer, network order)."""
    out: list[TensorInput] = []
    for name, lq in qmodel.layers.items():
        if name in codes:
            c, p = codes[name]
            levels = p.levels.cpu().numpy().reshape(-1)
            rho = None
            if stats is not None and lq.act_bits is not None:
                try:
                    rho = _step_ratio(stats[name], float(lq.act_bits), lq.info)
                except Exception as exc:  # noqa: BLE001 - a missing histogram must not stop the report
                    log.debug("step ratio of %s not computed: %s", name, exc)
            meta = {k: v for k, v in _meta(c, p).items()}
            out.append(TensorInput(name, "activations", c.numpy(), p.axis, levels,
                                   p.qmin.cpu().numpy().reshape(-1), meta, step_ratio=rho,
                                   fused_activation=lq.info.activation or "none"))
        if lq.weight is not None:
            w = lq.weight
            p = w.params
            out.append(TensorInput(name, "weights", w.codes.cpu().numpy(), p.axis, p.levels.cpu().numpy().reshape(-1),
                                   p.qmin.cpu().numpy().reshape(-1), dict(w.metadata()),
                                   fused_activation=lq.info.activation or "none"))
    return out


def _step_ratio(stats: Any, bits: float, info: Any) -> float:
    """ρ = Δ_ACIQ / Δ_KL of one layer's activations at ``bits`` (per tensor, from FP32 calibration statistics),
    with both ranges capped at 6 for a fused ReLU6 (the quantizer never uses a wider range there)."""
    from quant.capture import ACTIVATION_MAX
    from quant.step_ratio import step_size

    levels = 2.0 ** bits
    a = float(step_size(stats, "aciq-laplace", levels, info.signed))
    k = float(step_size(stats, "kl", levels, info.signed))
    cap = ACTIVATION_MAX.get(info.activation) if info.activation else None
    if cap is not None and not info.signed:
        a, k = min(a, cap / (levels - 1)), min(k, cap / (levels - 1))
    return a / k if k > 0 else math.nan


def _meta(codes: Any, params: Any) -> dict:
    from quant.quantizer import QuantizedTensor

    return dict(QuantizedTensor(codes, params).metadata())


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


def _layout_meta(meta: Mapping[str, Any], shape: tuple[int, ...], axis: int | None) -> dict:
    """Quantization metadata for the channel-major layout of the report's files (channels along axis 0),
    plus the original shape and channel axis so the file alone can rebuild the tensor."""
    m = dict(meta)
    m["axis"] = -1 if axis is None else 0
    m["shape"] = np.asarray(shape, dtype=np.int64)
    m["channel_axis"] = -1 if axis is None else int(axis)
    return m


def _histogram_data(stats: Any, info: Any, name: str, bits: float) -> dict | None:
    """Histogram of one layer's FP32 outputs (from the calibration statistics) and its clipping thresholds."""
    from quant.clipping import clip_range

    try:
        view = stats[name].tensor_view()
    except Exception as exc:  # noqa: BLE001
        log.debug("no histogram for %s: %s", name, exc)
        return None
    if view.hist is None:
        return None
    hist = view.hist.double().cpu().numpy()
    R = float(view.hist_range)
    B = hist.size // 2
    edges_full = np.linspace(-R, R, hist.size + 1)
    levels = 2.0 ** bits
    th = {}
    for label, method in (("ACIQ", "aciq-laplace"), ("KL", "kl"), ("2σ", "2sigma"), ("max", "minmax")):
        try:
            lo, hi = clip_range(stats[name], method, levels, signed=info.signed, per_channel=False)
            th[label] = float(hi)
        except Exception as exc:  # noqa: BLE001
            log.debug("threshold %s of %s not computed: %s", method, name, exc)
    if getattr(info, "activation", None) == "relu6":
        th["ReLU6"] = 6.0
    top = max([float(view.max)] + list(th.values())) * 1.04
    if not info.signed:
        counts, edges = hist[B:], edges_full[B:]
    else:
        counts, edges = hist, edges_full
    keep = edges[1:] <= top + (edges[1] - edges[0])
    counts, edges = counts[keep], edges[: keep.sum() + 1]
    # merge into about 150 bins for a readable figure
    f = max(1, counts.size // 150)
    m = counts.size // f * f
    counts = counts[:m].reshape(-1, f).sum(axis=1)
    edges = edges[: m + 1 : f]
    act = getattr(info, "activation", None)
    xlabel = (f"FP32 output before the fused {'ReLU6' if act == 'relu6' else 'ReLU'} (negatives at 0)"
              if not info.signed else "FP32 output")
    return {"layer": name, "histogram": (counts, edges), "thresholds": th, "xlabel": xlabel}


def mse_alpha_curves(bits: Sequence[int] = (2, 3, 4), *, n: int = 100_000, seed: int = 0) -> list[dict]:
    """Clipping MSE of a Laplace(0, b=1) variable against α: the analytical model (quant.aciq, eq. 5) and a
    Monte-Carlo simulation of the quantizer the model describes (clip to [-α, α], 2**bits equal bins of width
    2α/2**bits, values rounded to their bin centre) on ``n`` seeded samples. MSE in b² units."""
    from quant.aciq import alpha_multiplier, laplace_mse

    rng = np.random.default_rng(seed)
    x = rng.laplace(0.0, 1.0, n)
    a = np.linspace(0.5, 12.0, 47)
    out = []
    for m in bits:
        L = 2 ** int(m)
        sim = np.empty(a.size)
        for i, al in enumerate(a):
            step = 2.0 * al / L
            k = np.clip(np.floor((x + al) / step), 0, L - 1)
            sim[i] = float(np.mean((x - (-al + (k + 0.5) * step)) ** 2))
        out.append({"bits": int(m), "alpha": a, "analytical": laplace_mse(a, 1.0, L), "simulated": sim,
                    "alpha_opt": alpha_multiplier(L)})
    return out


def _version() -> str:
    try:
        from importlib.metadata import version

        return f"huffquant {version('huffquant')}"
    except Exception:  # noqa: BLE001
        return "huffquant (not installed)"


def report(
    model: Any = "efficientnet-lite0",
    images: Any = None,
    config: ReportConfig | None = None,
    *,
    calibration_images: Any = None,
) -> Report:
    """Run the whole report: calibrate, quantize (main setting and naive baseline), export the integer
    activations and weights, code them, write and verify real ``.hqt`` files, measure everything.

    ``model``: a name (see ``quant.models.available_models``), a ``LoadedModel`` or an ``nn.Module``.
    ``images``: None (the built-in evaluation photos), a folder, an ``ImageSet`` (e.g. ImageNet-style with
    labels) or an image tensor ``(N, 3, H, W)``. ``calibration_images``: default the 32 built-in
    calibration crops when ``images`` is None, else the first ``config.num_calibration`` report images.
    Returns a :class:`Report`; nothing is printed and nothing is written outside ``config.files_dir``.
    """
    import torch

    from quant.calibration import calibrate
    from quant.capture import ActivationSite
    from quant.graph import instrument
    from quant.pipeline import prepare

    cfg = config or ReportConfig()
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()
    timing: dict[str, float] = {}
    src = _resolve(model, images, calibration_images, cfg)
    timing["images_s"] = time.perf_counter() - t_start
    dev = torch.device(cfg.device)

    # the baseline of the speed target: FP32 forward pass and calibration on the same images
    t = time.perf_counter()
    inst = instrument(src.module, ActivationSite).to(dev)
    clips = [cfg.clip] + (list(cfg.sweep_clips) if cfg.sweep else [])
    per_channel_hist = any(c.split(":")[0] in _HISTOGRAM_CLIPS for c in clips)  # per-channel KL, MSE, percentile
    stats = calibrate(inst, [x for x in src.calib_batches], model_name=src.name, device=dev,
                      progress=cfg.progress, total=len(src.calib_batches), channel_histograms=per_channel_hist)
    timing["calibration_s"] = time.perf_counter() - t
    t = time.perf_counter()
    refs = []
    with torch.no_grad():
        for x, _ in src.eval_batches:
            refs.append(inst(x.to(dev)))
    timing["fp32_forward_s"] = time.perf_counter() - t
    del inst

    configs = [("main", cfg.quant_config())]
    if cfg.baseline:
        configs.append(("baseline", cfg.baseline_config()))
    conf_rows: list[dict] = []
    main_inputs: list[TensorInput] = []
    main_q = None
    for role, qc in configs:
        t = time.perf_counter()
        qm = prepare(src.module, qc, stats=stats, device=dev, model_name=src.name, progress=False)
        fid, codes = _run_quantized(qm, src.eval_batches, refs, record=True, progress=cfg.progress,
                                    desc=f"quantized ({role})",
                                    record_images=cfg.activation_images if role == "main" else cfg.baseline_rate_images)
        keep = cfg.activation_images if role == "main" else cfg.baseline_rate_images
        if keep:
            codes = {k: (c[:keep], p) for k, (c, p) in codes.items()}
        inputs = _tensor_inputs(qm, codes, stats if role == "main" else None, qc.abits)
        codes_n = {k: int(v[0].shape[0]) for k, v in codes.items()}
        del codes
        timing[f"{role}_quantized_s"] = time.perf_counter() - t
        row = {"role": role, "label": qc.describe(), "config": qc.to_dict(), **fid}
        if role == "main":
            main_inputs, main_q = inputs, qm
            row["rate_images"] = int(next(iter(codes_n.values()))) if codes_n else 0
        else:
            t = time.perf_counter()
            rates = closed_form_rates(inputs, max_code_length=cfg.max_code_length, chunk_size=cfg.chunk_size,
                                      clusters=())
            row["rate_images"] = int(next(iter(codes_n.values()))) if codes_n else 0
            timing["baseline_coding_s"] = time.perf_counter() - t
            for kind, r in rates.items():
                pre = "act" if kind == "activations" else "weight"
                row[f"{pre}_coded_bits_per_value"] = r["coded_bits_per_value"]
                row[f"{pre}_entropy_bits"] = r["entropy_bits"]
                row[f"{pre}_nominal_bits"] = r["nominal_bits"]
            del inputs
        conf_rows.append(row)

    # code, write, read back and verify the main configuration's tensors
    t = time.perf_counter()
    for ti in main_inputs:
        ti.quant = _layout_meta(ti.quant, ti.codes.shape, ti.axis)
    tmp = None
    files_dir = cfg.files_dir
    if files_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="huffquant-report-")
        files_dir = tmp.name
    coding_timing: dict[str, float] = {}
    file_meta = {"model": src.name, "settings": configs[0][1].describe(), "images": src.description}
    try:
        results, files = analyze_tensors(
            main_inputs, files_dir=files_dir, metadata=file_meta, max_code_length=cfg.max_code_length,
            chunk_size=cfg.chunk_size,
            zstd_sample_bytes={"activations": cfg.zstd_sample_bytes,
                               "weights": 4 * cfg.zstd_sample_bytes if cfg.zstd_sample_bytes else None},
            verify_huffman_packing=cfg.verify_huffman_packing, clusters=cfg.clusters, progress=cfg.progress,
            timing=coding_timing,
        )
    finally:
        if tmp is not None:
            tmp.cleanup()
    if tmp is not None:
        for f in files.values():
            f["path"] = None  # written and verified in a temporary directory, then removed
    timing["coding_s"] = time.perf_counter() - t
    timing.update({f"coding.{k}": v for k, v in coding_timing.items()})
    rows = [r.row for r in results]
    summary = summarize(rows, files)
    for kind, pre in (("activations", "act"), ("weights", "weight")):
        if kind in summary:
            conf_rows[0][f"{pre}_coded_bits_per_value"] = summary[kind]["coded_bits_per_value"]
            conf_rows[0][f"{pre}_entropy_bits"] = summary[kind]["entropy_bits"]
            conf_rows[0][f"{pre}_nominal_bits"] = summary[kind]["nominal_bits"]

    # figures' data
    figures: dict[str, Any] = {}
    act_rows = [r for r in rows if r["kind"] == "activations"]
    layer_info = {n: lq.info for n, lq in main_q.layers.items()}
    hist_name = cfg.hist_layer
    if hist_name is None and act_rows:
        cands = [r for r in act_rows if not layer_info[r["layer"]].first and not layer_info[r["layer"]].classifier]
        hist_name = max(cands or act_rows, key=lambda r: r["n_values"])["layer"]
    if hist_name is not None:
        if hist_name not in layer_info:
            raise AnalysisError(
                f"--hist-layer {hist_name!r} is not a layer; layers: {', '.join(list(layer_info)[:8])}..."
            )
        bits = main_q.layers[hist_name].act_bits or cfg.abits
        h = _histogram_data(stats, layer_info[hist_name], hist_name, float(bits))
        if h is not None:
            figures["histogram"] = {"values": None, **h}
    figures["mse_curves"] = mse_alpha_curves()
    figures["channel_bits"] = {}
    for kind in KINDS:
        b = [r.channel_bits for r in results if r.row["kind"] == kind
             and not layer_info[r.row["layer"]].first and not layer_info[r.row["layer"]].classifier]
        if b:
            figures["channel_bits"][kind] = np.concatenate(b)

    sweep_rows = None
    if cfg.sweep:
        from analysis.sweep import run_sweep

        t = time.perf_counter()
        sweep_rows = run_sweep(src, stats, refs, cfg)
        timing["sweep_s"] = time.perf_counter() - t

    timing["report_s"] = time.perf_counter() - t_start - timing.get("sweep_s", 0.0)
    base = timing["fp32_forward_s"] + timing["calibration_s"]
    timing["ratio_to_fp32_and_calibration"] = timing["report_s"] / base if base > 0 else None

    targets = {}
    if "activations" in summary:
        v = summary["activations"]["ratio_to_entropy"]
        targets["activations"] = {"description": "activations: coded bpv / pooled entropy", "value": v,
                                  "limit": 0.95, "met": v is not None and v <= 0.95}
    if "weights" in summary:
        v = summary["weights"]["ratio_to_entropy"]
        targets["weights"] = {"description": "weights: coded bpv / pooled entropy", "value": v, "limit": 1.02,
                              "met": v is not None and v <= 1.02}
    targets["time"] = {"description": "report time (with figures) / (FP32 forward + calibration)",
                       "value": timing["ratio_to_fp32_and_calibration"], "limit": 4.0,
                       "met": timing["ratio_to_fp32_and_calibration"] is not None
                       and timing["ratio_to_fp32_and_calibration"] <= 4.0}
    zs = cfg.zstd_sample_bytes
    notes = [
        "zstd level 19 runs at a few MB/s; it compresses a deterministic sample of each tensor's packed bytes "
        f"(16 evenly spaced blocks, {zs // 1024} KiB per activation tensor and {4 * zs // 1024} KiB per weight "
        "tensor; the zstd_sample_fraction column gives the share of values compressed)." if zs else
        "zstd level 19 compresses every tensor's packed bytes in full.",
        "The naive baseline's coded bits per value are measured on its first "
        f"{cfg.baseline_rate_images} images with the layer, channel, pairs and bit-width layouts (no shared-code "
        "clusters); its fidelity on all images." if cfg.baseline and cfg.baseline_rate_images else
        "The naive baseline's coded bits per value are measured on all images.",
        "MSE vs α: the simulation clips Laplace(0, 1) samples to [-α, α] and rounds them to the centres of "
        "2^M equal bins, the quantizer eq. 5 models.",
        (f"Activations are the integer codes of the first {cfg.activation_images} evaluation images (the reference "
         "code measures entropy per batch of 32 and averages over batches); fidelity uses every evaluation image."
         if cfg.activation_images else "Activations are the integer codes of every evaluation image."),
        "Coding choices are sized exactly from per-channel symbol counts (one pass per tensor); only the picked "
        "layout is encoded, written, read back and compared (SHA-256) with the exported codes.",
        "The step ratio uses per-tensor statistics of the FP32 calibration outputs (ACIQ Laplace vs KL at the "
        "layer's mean bit width).",
    ]
    if cfg.verify_huffman_packing:
        notes.append("Packings (iii) and (iv) were also encoded and decoded for every layer (lossless).")
    header = {
        "model": src.name,
        "weights": src.weights,
        "images": src.description,
        "labelled": src.labelled,
        "settings": configs[0][1].describe(),
        "baseline_settings": configs[1][1].describe() if len(configs) > 1 else None,
        "package": _version(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "command": cfg.command,
        "max_code_length": cfg.max_code_length,
        "chunk_size": cfg.chunk_size,
        "notes": notes,
    }
    packing_rows = [{**r.packing.as_row(), "kind": r.row["kind"]} for r in results]
    return Report(header=header, summary=summary, layers=rows, configs=conf_rows, packing=packing_rows,
                  sweep=sweep_rows, targets=targets, timing=timing, files=files, figures=figures)
