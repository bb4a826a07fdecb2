"""``huffquant decode``: decode an .hqt file into .npz, .npy, .pt or .safetensors."""

from __future__ import annotations

import argparse

COMMAND = "decode"
HELP = "decode an .hqt file into .npz/.npy/.pt/.safetensors (optionally dequantized)"
DESCRIPTION = (
    "Decode the tensors of an .hqt file, verifying every checksum, and write them by OUTPUT's extension:\n"
    ".npz, .pt or .safetensors (all tensors) or .npy (one tensor). --dequantize writes float32\n"
    "(q - zero_point) * scale from the stored quantization parameters (tensors without them are written as stored).\n"
    "\n"
    "Tensor names become member names (.npz) or keys (.safetensors, .pt), so only plain names are written:\n"
    "not empty, no NUL or control character, no backslash, not absolute ('/x', 'C:x'), and no empty, '.' or\n"
    "'..' component between slashes ('layer1/weight' is fine, '../../x' is not). A file holding any other\n"
    "name is refused (exit 1, naming the tensor) before anything is written; names are never rewritten.\n"
    "A .npy file stores no name, so '-o OUT.npy --tensor NAME' takes such a tensor out."
)
EPILOG = """examples:
  huffquant decode codes.hqt -o codes.npz
  huffquant decode w4.hqt -o w4_float.pt --dequantize
  huffquant decode w4.hqt -o conv1.npy --tensor conv1.weight
  huffquant decode acts.hqt -o acts.safetensors --tensor layer1 --tensor layer2
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="the .hqt file")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT", help=".npz, .npy, .pt/.pth or .safetensors")
    parser.add_argument("--tensor", action="append", metavar="NAME", help="decode only this tensor (repeatable)")
    parser.add_argument("--dequantize", action="store_true", help="write float32 values from the stored scale/zero point")


def run(args: argparse.Namespace) -> int:
    from analysis.cli import UsageError
    from analysis.tensor_io import decode_file

    if args.output.lower().endswith(".npy") and not (args.tensor and len(args.tensor) == 1):
        from entropy.container import info

        n = len(info(args.input).tensors)
        if n != 1:
            raise UsageError(f"a .npy file holds one tensor and {args.input} has {n}: pick one with --tensor NAME")
    out = decode_file(args.input, args.output, names=args.tensor, dequantize=args.dequantize)
    if not args.quiet:
        n_values = sum(a.size for a in out.values())
        print(f"wrote {args.output}: {len(out)} tensors, {n_values} values")
    return 0
