"""``huffquant verify``: check that an .hqt file decodes bit-exact to the original tensors."""

from __future__ import annotations

import argparse
import json
import sys

COMMAND = "verify"
HELP = "check that every tensor of an .hqt file decodes bit-exact to the original"
DESCRIPTION = (
    "Decode every tensor of FILE and compare it with the tensor of the same name in ORIGINAL\n"
    "(.npy/.npz/.pt/.safetensors): dtype, shape and every value. Prints a SHA-256 of each decoded tensor.\n"
    "Exit 0 only if all match; otherwise exit 1 naming the missing, extra, mismatched or damaged tensors."
)
EPILOG = """examples:
  huffquant verify codes.hqt --against codes.npz
  huffquant verify acts.hqt --against acts.safetensors --json
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the .hqt file")
    parser.add_argument("--against", required=True, metavar="ORIGINAL", help="the original tensor file")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    from analysis.cli.decode import add_limit_argument

    add_limit_argument(parser)
    from analysis.cli import add_threads_argument

    add_threads_argument(parser, "decoding")


def run(args: argparse.Namespace) -> int:
    from analysis.cli import threads_of
    from analysis.verify import verify_file

    threads = threads_of(args)
    report = verify_file(args.file, args.against, max_decoded_bytes=args.max_decoded_bytes, threads=threads)
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        for c in report.checks:
            digest = c.sha256 or "-"
            print(f"{c.status:<8} {digest}  {c.name}" + (f"  ({c.detail})" if c.detail else ""))
    if report.ok:
        return 0
    bad = report.failures or []
    what = ", ".join(f"{c.name} ({c.status})" for c in bad[:10]) or "the file holds no tensors"
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    print(f"huffquant verify: {len(bad)} tensor(s) not bit-exact: {what}{more}", file=sys.stderr)
    return 1
