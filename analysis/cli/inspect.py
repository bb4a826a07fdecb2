"""``huffquant inspect``: per-tensor bits per value of an .hqt file, from its header alone."""

from __future__ import annotations

import argparse
import json
import sys

COMMAND = "inspect"
HELP = "show per-tensor sizes, entropy and coded bits/value of an .hqt file"
DESCRIPTION = (
    "List every tensor of an .hqt file with its nominal bits per value (from the stored quantization bits,\n"
    "else the value range), the Shannon entropy, the average code length and the coded bits per value with\n"
    "everything included (payload, chunk index, its share of the codebook, its header record and metadata,\n"
    "alignment padding), its layout (single, channel, bitwidth, cluster) and its number of codes (streams).\n"
    "Nothing is decoded; only the header is read and checked (codebooks included)."
)
EPILOG = """examples:
  huffquant inspect w4.hqt
  huffquant inspect w4.hqt --json | python -m json.tool
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .hqt file")
    parser.add_argument("--json", action="store_true",
                        help="one JSON document on stdout (the file's fields, then one line per tensor)")


def _fmt(x: float | None, nd: int = 3) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def _layout(t) -> str:
    """The layout, with its channel axis when it has one (e.g. ``cluster@1``)."""
    return t.layout if t.channel_axis is None else f"{t.layout}@{t.channel_axis}"


def _groups(t) -> str:
    """Values per symbol of the tensor's streams: 1, 2 or 1+2 (singles and pairs)."""
    gs = sorted({s.group for s in t.streams})
    return "+".join(map(str, gs)) or "-"


def _json_document(d: dict) -> str:
    """``d`` as JSON: the file's fields indented, then its tensors one per line. (The indented form of tens of
    thousands of tensors takes seconds in json's pure-Python indenting encoder; one line each takes its C
    encoder, and still reads and greps well.)"""
    head = {k: v for k, v in d.items() if k != "tensors"}
    text = json.dumps(head, indent=2)
    if not d["tensors"]:
        return text[:-2] + ',\n  "tensors": []\n}\n'
    one = json.JSONEncoder().encode
    lines = ",\n".join("    " + one(t) for t in d["tensors"])
    return text[:-2] + ',\n  "tensors": [\n' + lines + "\n  ]\n}\n"


def run(args: argparse.Namespace) -> int:
    from entropy import info

    fi = info(args.file)
    if args.json:
        sys.stdout.write(_json_document(fi.to_dict()))
        return 0
    head = ("name", "shape", "dtype", "layout", "codes", "sym", "values", "nominal", "entropy", "avg len",
            "coded b/v", "ratio")
    rows = [
        (t.name, "x".join(map(str, t.shape)) or "()", t.dtype, _layout(t), str(t.n_codebooks), _groups(t),
         str(t.n_values), _fmt(t.nominal_bits, 2), _fmt(t.entropy_bits), _fmt(t.avg_code_length),
         _fmt(t.coded_bits_per_value), _fmt(t.ratio_to_nominal))
        for t in fi.tensors
    ]
    n = fi.n_values
    nominal = sum(t.nominal_bits * t.n_values for t in fi.tensors) / n if n else None
    rows.append(("TOTAL", "", "", "", str(sum(len(t.streams) for t in fi.tensors)), "", str(n), _fmt(nominal, 2),
                 _fmt(fi.entropy_bits),
                 _fmt(sum(t.avg_code_length * t.n_values for t in fi.tensors) / n if n else None),
                 _fmt(fi.bits_per_value), _fmt(fi.bits_per_value / nominal if nominal else None)))
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for i, r in enumerate([head, *rows]):
        if i == len(rows):
            print("  ".join("-" * w for w in widths))
        print("  ".join(c.ljust(w) if j < 4 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))))
    overhead = fi.file_bytes - fi.payload_bytes
    print(
        f"\n{args.file}: format v{fi.version}, {fi.file_bytes} bytes = payload {fi.payload_bytes} + "
        f"header/metadata {fi.header_bytes} (file metadata {fi.file_metadata_bytes}, tensor records "
        f"{fi.tensor_table_bytes}, codebooks {fi.codebook_bytes} in {fi.n_codebooks}) + chunk index "
        f"{fi.index_bytes} + padding {fi.padding_bytes}; overhead {overhead} bytes "
        f"({100.0 * overhead / fi.file_bytes:.2f}%)"
    )
    if fi.metadata:
        print("metadata: " + ", ".join(f"{k}={v}" for k, v in fi.metadata.items()))
    return 0
