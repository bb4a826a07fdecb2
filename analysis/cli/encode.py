"""``huffquant encode``: code the tensors of a .npy/.npz/.pt/.safetensors file into one .hqt file."""

from __future__ import annotations

import argparse
import json
import re
import sys

from analysis.cli import UsageError, add_threads_argument, encode_model, file_options_of, threads_of

COMMAND = "encode"
HELP = "code integer tensors (or quantize float ones) into one .hqt file"
DESCRIPTION = (
    "Read INPUT (.npy, .npz, .pt state dict or dict of tensors, .safetensors) and write every tensor as a\n"
    "canonical-Huffman bitstream into one .hqt file (format: entropy/FORMAT.md). Integer tensors are coded\n"
    "as they are; float tensors need --bits and --clip and are quantized first, storing scale, zero point,\n"
    "bits and levels so that 'huffquant decode --dequantize' can restore floats.\n"
    "With --channel-axis, each tensor that has that axis gets the smallest of its layouts, from exact sizes:\n"
    "one code, one code per channel, one per group of channels with the same bit width (from stored 'bits'),\n"
    "or K codes shared by clusters of similar channels; each code in the symbol mode that is smallest for it\n"
    "(single values, pairs, runs of the most frequent value, rare values escaped). --layout forces one.\n"
    "--verify decodes the written file and compares it with the input before it replaces OUTPUT."
)
EPILOG = """examples:
  huffquant encode codes.npz -o codes.hqt
  huffquant encode acts.safetensors -o acts.hqt --group 2 --chunk-size 16384
  huffquant encode weights.pt -o w4.hqt --bits 4 --clip aciq-laplace --per-channel
  huffquant encode layers.npz -o shared.hqt --share-codebooks --meta model=resnet18 --meta method=minmax
  huffquant encode acts.npz -o acts.hqt --channel-axis 1 --verify
  huffquant encode acts.npz -o acts16.hqt --channel-axis 1 --layout cluster16
  huffquant encode --model resnet18 -o resnet18.hqt
"""


def _group(value: str) -> int | str:
    if value == "auto":
        return value
    if value in ("1", "2"):
        return int(value)
    raise argparse.ArgumentTypeError("must be auto, 1 or 2")


def _layout(value: str) -> str:
    if value in ("auto", "single", "channel", "bitwidth", "cluster") or re.fullmatch(r"cluster[1-9]\d*", value):
        return value
    raise argparse.ArgumentTypeError("must be auto, single, channel, bitwidth, cluster or clusterK (K >= 1)")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", metavar="INPUT", help="tensor file: .npy, .npz, .pt/.pth or .safetensors")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT", help="the .hqt file to write (atomically)")
    parser.add_argument("--max-code-length", type=int, default=12, metavar="L", help="longest code in bits (default 12)")
    parser.add_argument("--chunk-size", type=int, default=4096, metavar="N", help="values per chunk (default 4096)")
    parser.add_argument("--group", type=_group, default="auto", metavar="auto|1|2",
                        help="values coded per symbol; auto picks the smaller file per tensor (default auto)")
    parser.add_argument("--share-codebooks", action="store_true",
                        help="one pooled codebook for compatible tensors (those without a channel axis)")
    parser.add_argument("--channel-axis", type=int, metavar="N",
                        help="channel axis of every tensor that has one (negative counts from the end): pick the "
                             "smallest layout per tensor (default: one code per tensor)")
    parser.add_argument("--layout", type=_layout, default="auto", metavar="NAME",
                        help="auto (default), single, channel, bitwidth, cluster or clusterK (e.g. cluster16)")
    parser.add_argument("--verify", action="store_true",
                        help="decode the written file and compare it with the input before replacing OUTPUT")
    parser.add_argument("--bits", type=int, metavar="N", help="quantize float tensors to N bits")
    parser.add_argument("--clip", metavar="METHOD", help="clipping method for float tensors (e.g. minmax, aciq-laplace)")
    parser.add_argument("--per-channel", action="store_true", help="quantize float tensors of 2+ dims per channel (axis 0)")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="file metadata string (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the written file's summary as JSON")
    add_threads_argument(parser, "the histograms and the coding (and --verify's decoding)")
    encode_model.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    threads = threads_of(args)
    if getattr(args, "model", None):
        from entropy import using_threads

        with using_threads(threads):
            return int(encode_model.run(args) or 0)
    if not args.input:
        raise UsageError("INPUT is required (or --model NAME)")
    if (args.bits is None) != (args.clip is None):
        raise UsageError("--bits and --clip go together")
    if args.bits is not None and args.bits < 1:
        raise UsageError("--bits must be >= 1")
    if args.layout != "auto" and args.layout != "single" and args.channel_axis is None:
        raise UsageError(f"--layout {args.layout} needs --channel-axis")
    meta = {}
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--meta wants KEY=VALUE, got {item!r}")
        meta[key] = value
    from analysis.tensor_io import encode_file

    fi = encode_file(
        args.input, args.output, bits=args.bits, clip=args.clip, per_channel=args.per_channel, metadata=meta,
        options=file_options_of(args), threads=threads,
    )
    if args.json:
        json.dump(fi.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif not args.quiet:
        print(
            f"wrote {args.output}: {len(fi.tensors)} tensors, {fi.n_values} values, {fi.file_bytes} bytes, "
            f"{fi.bits_per_value:.4f} bits/value (entropy {fi.entropy_bits:.4f})"
            + (", verified" if args.verify else "")
        )
    return 0
