"""Benchmarks behind ``huffquant bench``: one module per area, collected here.

* :mod:`analysis.benchmarks.codec` - the codec against bitarray, zstd and memcpy;
* :mod:`analysis.benchmarks.container` - ``file_rows``: write + read a .hqt file; ``layout_rows``: a channel-structured
  activation in one code and in its smallest channel layout;
* :mod:`analysis.benchmarks.quant` - ``quant_rows``: fast vs reference quantizers (``--quant``; torch);
* :mod:`analysis.benchmarks.pipeline` - ``pipeline_rows``: the model pipeline (``--pipeline``; torch).

:func:`run_benchmarks` runs the codec and file benchmarks (and the others when asked) and evaluates the
codec targets (:data:`SPEEDUP_TARGET`, :data:`HUFFMAN_OVERHEAD_TARGET`, :data:`SPARSE_ENTROPY_TARGET`,
:data:`WIDE_DATASETS`, :data:`BELOW_ZSTD19_DATASETS`, :data:`PARALLEL_DECODE_TARGET`,
:data:`PARALLEL_ENCODE_TARGET`);
:func:`bench_markdown` renders the result as the ``reports/bench.md`` table.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from typing import Any

__all__ = ["run_benchmarks", "bench_markdown", "evaluate_targets", "targets_text", "TARGET_DATASETS"]

#: datasets with the speed and Huffman-overhead targets
TARGET_DATASETS = ("lap4", "relu4", "lap8")
SPEEDUP_TARGET = 5.0  # x bitarray, encode and decode, single thread
HUFFMAN_OVERHEAD_TARGET = 1.01  # bits/value <= optimal unlimited Huffman + 1 %
SPARSE_ENTROPY_TARGET = 1.10  # relu4-sparse bits/value <= 1.10 x entropy (and below zstd -19)
#: wide (16-bit) datasets: bits/value within HUFFMAN_OVERHEAD_TARGET of the optimal unlimited Huffman code (the
#: cost of escapes or a raised code-length limit)
WIDE_DATASETS = ("wide-int16", "wide-uint16")
#: datasets whose bits/value must beat zstd -19 (on nibble-packed bytes for 4-bit data, raw bytes otherwise;
#: not wide-uint16: uniform values do not compress, and zstd stores them raw without a chunk index)
BELOW_ZSTD19_DATASETS = ("relu4-sparse", "wide-int16")
#: datasets with the parallel targets: all-core speed / single-thread speed of huffquant, in the same run
PARALLEL_DATASETS = ("lap4", "lap8")
PARALLEL_DECODE_TARGET = 1.7
PARALLEL_ENCODE_TARGET = 1.5


def _find(rows: list[dict], dataset: str, method: str, threads: int | None = 1) -> dict | None:
    """The row of ``dataset`` and ``method`` on ``threads`` threads (None: the most threads measured)."""
    found = [r for r in rows if r["dataset"] == dataset and r["method"] == method
             and (threads is None or r.get("threads", 1) == threads)]
    return max(found, key=lambda r: r.get("threads", 1)) if found else None


def evaluate_targets(rows: list[dict], references: dict[str, dict[str, float]]) -> list[dict]:
    """Check the codec's targets on the codec rows (see :func:`targets_text`); one dict per (dataset, target)."""
    out = []
    for ds in TARGET_DATASETS + WIDE_DATASETS:
        hq, ba = _find(rows, ds, "huffquant"), _find(rows, ds, "bitarray")
        if hq is None or (ba is None and ds in TARGET_DATASETS):
            continue
        for what in ("encode", "decode") if ds in TARGET_DATASETS else ():
            ratio = hq[f"{what}_MBps"] / ba[f"{what}_MBps"]
            out.append(
                {
                    "dataset": ds,
                    "target": f"{what} >= {SPEEDUP_TARGET:g}x bitarray",
                    "value": f"{ratio:.2f}x",
                    "met": ratio >= SPEEDUP_TARGET,
                }
            )
        huff = references[ds]["huffman"]
        rel = hq["bits_per_value"] / huff
        out.append(
            {
                "dataset": ds,
                "target": f"bits/value <= optimal Huffman x {HUFFMAN_OVERHEAD_TARGET:g}",
                "value": f"{hq['bits_per_value']:.4f} vs {huff:.4f} ({(rel - 1) * 100:+.2f}%)",
                "met": rel <= HUFFMAN_OVERHEAD_TARGET,
            }
        )
    hq = _find(rows, "relu4-sparse", "huffquant")
    if hq is not None:
        H = references["relu4-sparse"]["entropy"]
        rel = hq["bits_per_value"] / H
        out.append(
            {
                "dataset": "relu4-sparse",
                "target": f"bits/value <= {SPARSE_ENTROPY_TARGET:g}x entropy",
                "value": f"{hq['bits_per_value']:.4f} vs H {H:.4f} ({rel:.3f}x)",
                "met": rel <= SPARSE_ENTROPY_TARGET,
            }
        )
    for ds in PARALLEL_DATASETS:
        one, many = _find(rows, ds, "huffquant"), _find(rows, ds, "huffquant", None)
        if one is None or many is None or many.get("threads", 1) <= 1:
            continue
        for what, goal in (("decode", PARALLEL_DECODE_TARGET), ("encode", PARALLEL_ENCODE_TARGET)):
            ratio = many[f"{what}_MBps"] / one[f"{what}_MBps"]
            out.append(
                {
                    "dataset": ds,
                    "target": f"{what} on all cores >= {goal:g}x single thread",
                    "value": f"{ratio:.2f}x ({many['threads']} threads)",
                    "met": ratio >= goal,
                }
            )
    for ds in BELOW_ZSTD19_DATASETS:
        hq, z19 = _find(rows, ds, "huffquant"), _find(rows, ds, "zstd-19-packed")
        if hq is None or z19 is None:
            continue
        out.append(
            {
                "dataset": ds,
                "target": "bits/value < zstd-19",
                "value": f"{hq['bits_per_value']:.4f} vs {z19['bits_per_value']:.4f} "
                f"({hq['bits_per_value'] / z19['bits_per_value']:.3f}x)",
                "met": hq["bits_per_value"] < z19["bits_per_value"],
            }
        )
    return out


def targets_text() -> str:
    """What the codec's targets ask, in one sentence (the bench report prints it above the table)."""
    return (
        f"Single thread, on {', '.join(TARGET_DATASETS)}: encode and decode at least {SPEEDUP_TARGET:g}x as fast "
        f"as bitarray, and bits per value (codebook and chunk index included) at most {HUFFMAN_OVERHEAD_TARGET:g}x "
        f"the optimal unlimited Huffman payload (also on {', '.join(WIDE_DATASETS)}); on relu4-sparse, bits per "
        f"value at most {SPARSE_ENTROPY_TARGET:g}x the order-0 entropy; on {', '.join(BELOW_ZSTD19_DATASETS)}, fewer "
        f"bits per value than zstd -19. On {', '.join(PARALLEL_DATASETS)}, huffquant on all cores decodes at least "
        f"{PARALLEL_DECODE_TARGET:g}x and encodes at least {PARALLEL_ENCODE_TARGET:g}x as fast as on one thread "
        "(measured in the same run; only on a machine with more than one core)."
    )


def run_benchmarks(
    size: int = 10_000_000,
    repeats: int = 3,
    *,
    quant: bool = False,
    pipeline: bool = False,
    progress: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run every available benchmark; returns {"rows", "references", "targets", "quant_rows",
    "pipeline_rows", "setup"} (rows: codec and file rows of the common schema).

    The codec and file benchmarks need only numpy and numba; huffquant runs on one thread and on ``threads``
    (default: all cores). ``quant`` adds the quantizer-speed rows and ``pipeline`` (which implies ``quant``) the
    model-pipeline rows; both import torch.
    """
    from analysis.benchmarks.codec import codec_rows, make_datasets, reference_bits, thread_counts

    datasets = make_datasets(size)
    references = {name: reference_bits(x) for name, x in datasets.items()}
    rows = codec_rows(datasets, repeats, progress=progress, threads=threads)
    from analysis.benchmarks.container import ACTIVATION, activation, file_rows, layout_rows

    rows += file_rows(datasets, repeats, threads=threads)
    rows += layout_rows(repeats)
    references[ACTIVATION] = reference_bits(activation())
    quant_rows: list[dict] = []
    if quant or pipeline:
        from analysis.benchmarks.quant import quant_rows as quantizer_rows  # imports torch

        quant_rows = quantizer_rows(repeats)
    pipeline_rows: list[dict] = []
    if pipeline:
        from analysis.benchmarks.pipeline import pipeline_rows as model_rows  # imports torch

        pipeline_rows = model_rows(repeats=repeats, progress=progress)
    import numpy as np

    setup = {
        "size": size,
        "repeats": repeats,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()} {_cpu_name()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "threads": " and ".join(f"{t} thread{'s' if t > 1 else ''}" for t in thread_counts(threads)),
    }
    return {
        "rows": rows,
        "references": references,
        "targets": evaluate_targets(rows, references),
        "quant_rows": quant_rows,
        "pipeline_rows": pipeline_rows,
        "setup": setup,
    }


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _fmt(x: Any, nd: int = 2) -> str:
    if isinstance(x, bool):
        return "yes" if x else "**NO**"
    if isinstance(x, float):
        if math.isinf(x):
            return "inf"
        return f"{x:.{nd}f}"
    return str(x)


def _ratio(a: float, b: float | None) -> str:
    if b is None or b <= 0 or not math.isfinite(a) or not math.isfinite(b):
        return "-"
    return f"{a / b:.2f}x"


def bench_markdown(result: dict[str, Any]) -> str:
    """The benchmark result as Markdown (what ``reports/bench.md`` holds)."""
    rows, refs, setup = result["rows"], result["references"], result["setup"]
    lines = [
        "# huffquant bench",
        "",
        f"{setup['size']:,} values per dataset, min of {setup['repeats']} runs, {setup['threads']}; "
        f"{setup['machine']}; Python {setup['python']}, numpy {setup['numpy']}; {setup['date']}.",
        "",
        "Speeds are million values per second (= MB/s of the 1-byte inputs, half the MB/s of the 2-byte wide "
        "ones). Bits/value include the "
        "codebook and chunk index (huffquant), the code table at 8 bits per symbol (bitarray) and "
        "the whole frame (zstd). \"vs H\" = bits/value / order-0 entropy; \"vs Huff\" = bits/value / "
        "optimal unlimited Huffman payload. Ratios: method speed / bitarray (x ba) and / zstd-huff0 "
        "(x z0) on the same dataset (both single-thread). Threads: huffquant runs on one thread and on all "
        "cores (single- and multi-thread runs interleaved); the others on one. Lossless is a real comparison of "
        "the decoded array (and, for huffquant, the same bytes whatever the thread count).",
        "",
        "| dataset | method | threads | bits/value | vs H | vs Huff | encode M/s | decode M/s | enc x ba "
        "| dec x ba | enc x z0 | dec x z0 | lossless |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ba = _find(rows, r["dataset"], "bitarray")
        z0 = _find(rows, r["dataset"], "zstd-huff0")
        ref = refs.get(r["dataset"], {})
        H, huff = ref.get("entropy"), ref.get("huffman")
        lines.append(
            "| "
            + " | ".join(
                [
                    r["dataset"],
                    r["method"],
                    str(r.get("threads", 1)),
                    f"{r['bits_per_value']:.4f}",
                    f"{r['bits_per_value'] / H:.3f}" if H else "-",
                    f"{r['bits_per_value'] / huff:.4f}" if huff else "-",
                    _fmt(r["encode_MBps"], 1),
                    _fmt(r["decode_MBps"], 1),
                    _ratio(r["encode_MBps"], ba and ba["encode_MBps"]),
                    _ratio(r["decode_MBps"], ba and ba["decode_MBps"]),
                    _ratio(r["encode_MBps"], z0 and z0["encode_MBps"]),
                    _ratio(r["decode_MBps"], z0 and z0["decode_MBps"]),
                    _fmt(bool(r["lossless"])),
                ]
            )
            + " |"
        )
    lines += ["", "Reference bits per value (payload only):", "", "| dataset | entropy H | optimal Huffman |", "|---|---:|---:|"]
    for ds, ref in refs.items():
        lines.append(f"| {ds} | {ref['entropy']:.4f} | {ref['huffman']:.4f} |")
    layouts = [r for r in rows if "layout" in r]
    if layouts:
        lines += ["", "Channel layouts (one file per row; bits/value of the whole file; channel H = order-0 entropy "
                  "of each channel, element-weighted):", "",
                  "| dataset | method | layout | codes | bits/value | vs channel H |", "|---|---|---|---:|---:|---:|"]
        for r in layouts:
            lines.append(f"| {r['dataset']} | {r['method']} | {r['layout']} | {r['n_codebooks']} | "
                         f"{r['bits_per_value']:.4f} | {r['bits_per_value'] / r['channel_entropy']:.3f} |")
    if result["targets"]:
        lines += ["", "## Targets", "", targets_text(), "", "| dataset | target | value | met |", "|---|---|---|---|"]
        for t in result["targets"]:
            lines.append(f"| {t['dataset']} | {t['target']} | {t['value']} | {_fmt(bool(t['met']))} |")
    for title, extra in (("Quantizer speed", result.get("quant_rows")), ("Pipeline", result.get("pipeline_rows"))):
        if extra:
            keys = list(dict.fromkeys(k for r in extra for k in r))
            lines += ["", f"## {title}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            for r in extra:
                lines.append("| " + " | ".join(_fmt(r.get(k, ""), 3) for k in keys) + " |")
    return "\n".join(lines) + "\n"
