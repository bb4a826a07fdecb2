"""``huffquant bench``: codec speed and bits per value against bitarray, zstd and memcpy."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from analysis.cli import UsageError, add_threads_argument, threads_of

COMMAND = "bench"
HELP = "benchmark the codec (and file format, quantizers) against bitarray, zstd and memcpy"
DESCRIPTION = (
    "Encode and decode six fixed-seed datasets (lap4, relu4, lap8, relu4-sparse; wide-int16 and\n"
    "wide-uint16 of 16-bit values) with huffquant, bitarray (1-byte data), zstd (Huff0 literals; level 19\n"
    "on packed nibbles) and a numpy copy, in memory and (huffquant) through .hqt files, and report bits per\n"
    "value and speed (million values per second, min of --repeats runs), the ratios against bitarray and\n"
    "zstd-huff0, and whether the codec's targets are met (speed against bitarray, bits/value against the\n"
    "optimal Huffman code, the entropy and zstd -19, all-core against single-thread speed; listed in the\n"
    "output). huffquant runs on one thread and on --threads threads (rows with threads = 1 and N; their runs\n"
    "interleaved); the other methods on one. Every row checks the round trip. The Markdown table is written\n"
    "to --out; --json prints {\"rows\": [...]} on stdout, every row with its \"threads\"."
)
EPILOG = """examples:
  huffquant bench                         (10 M values per dataset, about a minute)
  huffquant bench --size 1000000 --repeats 5
  huffquant bench --json > bench.json
  huffquant bench --quant                 (+ quantizer speed)
  huffquant bench --pipeline --out reports/bench.md
"""

log = logging.getLogger(__name__)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=10_000_000, metavar="N",
                        help="values per dataset (default 10,000,000)")
    parser.add_argument("--repeats", type=int, default=3, metavar="R",
                        help="timed runs per measurement; the minimum is reported (default 3)")
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} as JSON instead of the table')
    parser.add_argument("--quant", action="store_true",
                        help="also time the quantizers against their direct references (imports torch)")
    parser.add_argument("--pipeline", action="store_true",
                        help="also time the model pipeline; implies --quant (imports torch, loads a model)")
    parser.add_argument("--out", default=os.path.join("reports", "bench.md"), metavar="PATH",
                        help="Markdown report to write (default reports/bench.md)")
    add_threads_argument(parser, "huffquant's multi-thread rows (besides its single-thread ones)")


def run(args: argparse.Namespace) -> int:
    from analysis.benchmarks import bench_markdown, run_benchmarks

    if args.size < 1:
        raise UsageError(f"--size must be >= 1, got {args.size}")
    if args.repeats < 1:
        raise UsageError(f"--repeats must be >= 1, got {args.repeats}")
    quiet = getattr(args, "quiet", False)
    threads = threads_of(args)
    result = run_benchmarks(args.size, args.repeats, quant=args.quant, pipeline=args.pipeline,
                            progress=not quiet and not args.json, threads=threads)
    text = bench_markdown(result)
    out_dir = os.path.dirname(args.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    log.info("wrote %s", args.out)
    if args.json:
        doc = {k: result[k] for k in ("rows", "targets", "references", "quant_rows", "pipeline_rows", "setup")}
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(text)
    return 0
