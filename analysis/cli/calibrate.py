"""``huffquant calibrate``: offline activation statistics of a model, for ``evaluate --stats``."""

from __future__ import annotations

import argparse
import json
import math
import sys

from analysis.cli import UsageError
from analysis.cli.evaluate import add_model_arguments, load_model_from_args

COMMAND = "calibrate"
HELP = "collect per-layer activation statistics on calibration images (offline mode)"
DESCRIPTION = (
    "Run the FP32 model (BN folded) on N calibration images and save, for every conv/linear layer, the\n"
    "per-channel and per-tensor min, max, mean, mean absolute deviation b, std and a histogram of its\n"
    "output before the fused ReLU. Layers are keyed by their module names. Reuse with 'evaluate --stats FILE'."
)
EPILOG = """examples:
  huffquant calibrate -o lite0.npz
  huffquant calibrate --model efficientnet-lite0 --images ~/photos --num-images 64 -o lite0.npz
  huffquant calibrate --model resnet18 --weights resnet18.pth --channel-histograms -o r18.npz

Default images: the 144 built-in calibration crops (disjoint from the evaluation crops; see quant/PIPELINE.md).
"""


def register(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--images", metavar="DIR", help="calibration folder (default: built-in crops)")
    parser.add_argument("--num-images", type=int, default=None, metavar="N",
                        help="calibration images (default: all 144 built-in calibration crops, or every file of --images)")
    parser.add_argument("--channel-histograms", action="store_true",
                        help="also keep per-channel histograms (per-channel kl/percentile/mse clipping)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE", help="statistics file to write (.npz)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args: argparse.Namespace) -> int:
    import torch

    from quant.calibration import calibrate
    from quant.capture import ActivationSite
    from quant.graph import instrument
    from quant.images import builtin_images, folder_images, iter_batches

    if args.num_images is not None and args.num_images < 1:
        raise UsageError(f"--num-images must be >= 1, got {args.num_images}")
    if not args.output.endswith(".npz"):
        raise UsageError("the statistics file must end in .npz")
    lm = load_model_from_args(args)
    torch.manual_seed(args.seed)
    if args.images:
        images = folder_images(args.images, lm.preprocessing, limit=args.num_images)
    else:
        images = builtin_images(lm.preprocessing, args.num_images, split="calibration")
    inst = instrument(lm.model, ActivationSite)
    skipped: list[str] = []

    def batches():
        for b in iter_batches(images, args.batch_size, num_workers=args.workers):
            skipped.extend(b.skipped)
            if b.images.numel():
                yield b.images

    stats = calibrate(inst, batches(), model_name=lm.name, source=images.description,
                      channel_histograms=args.channel_histograms, device=args.device,
                      progress=not args.quiet and not args.json, total=math.ceil(len(images) / args.batch_size))
    stats.save(args.output)
    summary = {"output": args.output, "model": lm.name, "layers": len(stats.layers), "num_images": stats.num_images,
               "images": images.description, "skipped": len(skipped)}
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not args.quiet:
        sys.stdout.write(f"wrote {args.output}: {len(stats.layers)} layers of {lm.name}, {stats.num_images} images"
                         + (f", {len(skipped)} unreadable skipped" if skipped else "") + "\n")
    return 0
