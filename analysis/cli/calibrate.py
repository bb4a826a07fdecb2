"""``huffquant calibrate``: offline activation statistics of a model, for ``evaluate --stats``."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from analysis.cli import UsageError
from analysis.cli.evaluate import (
    add_config_arguments,
    add_model_arguments,
    check_model_from_args,
    config_from_args,
    load_model_from_args,
)

COMMAND = "calibrate"
HELP = "collect per-layer activation statistics on calibration images (offline mode)"
DESCRIPTION = (
    "Run the FP32 model (BN folded) on N calibration images and save, for every conv/linear layer, the\n"
    "per-channel and per-tensor min, max, mean, mean absolute deviation b, std, the two most extreme per-image\n"
    "values and a histogram of its output before the fused ReLU. Layers are keyed by their module names.\n"
    "With --equalize the statistics are those of the equalized network. With --adaround or --bias-correction\n"
    "empirical (or a --recipe that uses them) the rounding / bias corrections learned on the same images for\n"
    "that configuration (--wbits, --abits, ...) are saved too. Reuse with 'evaluate --stats FILE' (and the same\n"
    "configuration)."
)
EPILOG = """examples:
  huffquant calibrate -o lite0.npz
  huffquant calibrate --model efficientnet-lite0 --images ~/photos --num-images 64 -o lite0.npz
  huffquant calibrate --model resnet18 --weights resnet18.pth --channel-histograms -o r18.npz
  huffquant calibrate --recipe best --wbits 4 --abits 8 -o lite0_best_w4a8.npz
  huffquant calibrate --adaround 1000 --wbits 4 --abits 8 -o lite0_ada.npz && \
      huffquant evaluate --stats lite0_ada.npz --adaround 1000 --wbits 4 --abits 8

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
    g = parser.add_argument_group("what to learn with the statistics (only --equalize, --adaround and "
                                  "--bias-correction empirical change the file; the rest says for which setting)")
    add_config_arguments(g, stats=False)


def _adaround_summary(stats: Any) -> list[dict[str, Any]]:
    """Per AdaRound result in ``stats``: its seconds, the layers kept at round to nearest and the loss ratio
    (AdaRound / round to nearest on the held-out images) of every layer."""
    return [{"seconds": r.seconds, "kept_nearest": list(r.kept_nearest), "loss_ratios": r.loss_ratios()}
            for r in stats.results.get("adaround", {}).values()]


def run(args: argparse.Namespace) -> int:
    import torch

    from quant.images import builtin_images, folder_images, iter_batches
    from quant import calibrate_model

    if args.num_images is not None and args.num_images < 1:
        raise UsageError(f"--num-images must be >= 1, got {args.num_images}")
    if not args.output.endswith(".npz"):
        raise UsageError("the statistics file must end in .npz")
    cfg = config_from_args(args)
    check_model_from_args(args)
    lm = load_model_from_args(args)
    torch.manual_seed(args.seed)
    if args.images:
        images = folder_images(args.images, lm.preprocessing, limit=args.num_images)
    else:
        images = builtin_images(lm.preprocessing, args.num_images, split="calibration")
    skipped: list[str] = []

    def batches():
        for b in iter_batches(images, args.batch_size, num_workers=args.workers):
            skipped.extend(b.skipped)
            if b.images.numel():
                yield b.images

    stats = calibrate_model(lm.model, cfg, batches(), model_name=lm.name, source=images.description,
                            channel_histograms=args.channel_histograms, device=args.device,
                            progress=not args.quiet and not args.json,
                            total=math.ceil(len(images) / args.batch_size))
    stats.save(args.output)
    summary = {"output": args.output, "model": lm.name, "layers": len(stats.layers), "num_images": stats.num_images,
               "images": images.description, "skipped": len(skipped), "equalized": bool(cfg.equalize),
               "learned": {k: len(v) for k, v in stats.results.items()}, "config": cfg.describe(),
               "adaround": _adaround_summary(stats),
               **stats.extra.get("coverage", {})}
    if args.json:
        json.dump(summary, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not args.quiet:
        learned = [k for k in stats.results]
        cov = stats.extra.get("coverage", {})
        sys.stdout.write(f"wrote {args.output}: {len(stats.layers)} layers of {lm.name} "
                         f"({cov.get('layers_quantized')} of the {cov.get('conv_linear_modules')} conv/linear modules "
                         f"that ran), {stats.num_images} images"
                         + (", equalized" if cfg.equalize else "")
                         + (f", with {' and '.join(learned)} for {cfg.describe()}" if learned else "")
                         + (f", {len(skipped)} unreadable skipped" if skipped else "") + "\n")
    return 0
