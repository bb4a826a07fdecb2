"""``huffquant decode``: decode an .hqt file into .npz, .npy, .pt or .safetensors."""

from __future__ import annotations

import argparse
import re

COMMAND = "decode"
HELP = "decode an .hqt file into .npz/.npy/.pt/.safetensors (optionally dequantized)"
DESCRIPTION = (
    "Decode the tensors of an .hqt file, verifying every checksum, and write them by OUTPUT's extension:\n"
    ".npz, .pt or .safetensors (all tensors) or .npy (one tensor). --dequantize writes float32\n"
    "(q - zero_point) * scale from the stored quantization parameters (tensors without them are written as stored).\n"
    "A file whose tensors would decode to more than --max-decoded-bytes (default 4 GiB) is refused before\n"
    "anything is decoded: a small hostile file can legally describe a huge tensor.\n"
    "\n"
    "Tensor names become member names (.npz) or keys (.safetensors, .pt), so only plain names are written:\n"
    "not empty, no NUL or control character, no backslash, not absolute ('/x', 'C:x'), and no empty, '.' or\n"
    "'..' component between slashes ('layer1/weight' is fine, '../../x' is not). A file holding any other\n"
    "name is refused (exit 1, naming the tensor) before anything is written; names are never rewritten.\n"
    "A .npy file stores no name, so '-o OUT.npy --tensor NAME' takes such a tensor out."
)

#: The decoded-size limit when --max-decoded-bytes is not given (bytes).
DEFAULT_MAX_DECODED_BYTES = 4 << 30

_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}


def byte_count(text: str) -> int | None:
    """Parse a byte count: ``123456``, ``500M`` / ``2k`` (powers of 1000), ``4GiB`` (powers of 1024);
    ``none`` or ``0`` means no limit (None)."""
    t = text.strip().lower()
    if t in ("none", "0"):
        return None
    m = re.fullmatch(r"(\d+)\s*([kmgt]?)(i?)b?", t)
    if not m or (m.group(3) and not m.group(2)):
        raise argparse.ArgumentTypeError(f"not a byte count: {text!r} (e.g. 4GiB, 500M, 123456, none)")
    base = 1024 if m.group(3) else 1000
    return int(m.group(1)) * base ** _POWERS[m.group(2)]


def add_limit_argument(parser: argparse.ArgumentParser) -> None:
    """The --max-decoded-bytes option of the commands that decode (default: DEFAULT_MAX_DECODED_BYTES)."""
    parser.add_argument(
        "--max-decoded-bytes", type=byte_count, default=DEFAULT_MAX_DECODED_BYTES, metavar="N",
        help="refuse a file whose tensors decode to more than N bytes, before decoding (e.g. 4GiB, 500M, "
             "123456; 'none' = no limit; default 4 GiB)",
    )


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="the .hqt file")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT", help=".npz, .npy, .pt/.pth or .safetensors")
    parser.add_argument("--tensor", action="append", metavar="NAME", help="decode only this tensor (repeatable)")
    parser.add_argument("--dequantize", action="store_true", help="write float32 values from the stored scale/zero point")
    add_limit_argument(parser)
    from analysis.cli import add_threads_argument

    add_threads_argument(parser, "decoding")


def run(args: argparse.Namespace) -> int:
    from analysis.cli import UsageError, threads_of
    from analysis.tensor_io import decode_file

    threads = threads_of(args)
    if args.output.lower().endswith(".npy") and not (args.tensor and len(args.tensor) == 1):
        from entropy import info

        n = len(info(args.input).tensors)
        if n != 1:
            raise UsageError(f"a .npy file holds one tensor and {args.input} has {n}: pick one with --tensor NAME")
    out = decode_file(args.input, args.output, names=args.tensor, dequantize=args.dequantize,
                      max_decoded_bytes=args.max_decoded_bytes, threads=threads)
    if not args.quiet:
        n_values = sum(a.size for a in out.values())
        print(f"wrote {args.output}: {len(out)} tensors, {n_values} values")
    return 0
