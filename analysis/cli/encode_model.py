"""``huffquant encode --model NAME``: quantize a model and write its integer weights (and feature maps).

Not a subcommand of its own: ``analysis/cli/encode.py`` calls :func:`add_arguments` and, when ``--model``
is given, :func:`run`.
"""

from __future__ import annotations

import argparse
import json
import sys

from analysis.cli import UsageError, file_options_of
from analysis.cli.evaluate import (
    _add,
    add_config_arguments,
    add_image_arguments,
    add_model_arguments,
    calibration_from_args,
    check_model_from_args,
    config_from_args,
    images_from_args,
    load_model_from_args,
)

__all__ = ["add_arguments", "run"]

EXAMPLES = """model examples:
  huffquant encode --model efficientnet-lite0 --wbits 4 --abits 4 --clip aciq-laplace -o lite0.hqt
  huffquant encode --model efficientnet-lite0 --activations --num-images 8 -o lite0_acts.hqt
  huffquant decode lite0.hqt -o lite0_float.npz --dequantize
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model-pipeline options of ``huffquant encode`` (flags the parser already has are reused)."""
    add_model_arguments(parser)
    add_image_arguments(parser)
    add_config_arguments(parser)
    _add(parser, "--activations", action="store_true",
         help="with --model: also write the activation codes over the images (offline statistics)")


def run(args: argparse.Namespace) -> int:
    """Quantize ``args.model`` and write ``args.output``; prints a summary (or JSON)."""
    from analysis.model_export import export_model
    from quant.calibration import ModelStatistics

    if getattr(args, "input", None):
        raise UsageError("give either INPUT or --model, not both")
    if getattr(args, "bits", None) is not None:
        raise UsageError("with --model use --wbits/--abits instead of --bits")
    if getattr(args, "channel_axis", None) is not None or getattr(args, "layout", "auto") != "auto":
        raise UsageError("--channel-axis and --layout apply to an INPUT file, not yet to --model")
    cfg = config_from_args(args, default_mode="offline")
    check_model_from_args(args)
    lm = load_model_from_args(args)
    images = images_from_args(args, lm.preprocessing) if args.activations else None
    if images is not None and args.num_images is None and len(images) > 16:
        images = images.subset(0, 16)  # ~7 MB of codes per EfficientNet-Lite0 image: keep the default small
    stats = ModelStatistics.load(args.stats) if args.stats else None
    from quant import needs_calibration

    need_calib = (args.activations or bool(cfg.adaround)) and needs_calibration(cfg, stats)
    calib = calibration_from_args(args, lm.preprocessing) if need_calib else None
    meta = {}
    for item in getattr(args, "meta", []) or []:
        if "=" not in item:
            raise UsageError(f"--meta expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        meta[k] = v
    fi = export_model(args.output, lm, cfg, activations=args.activations, images=images, calibration_images=calib,
                      stats=stats, batch_size=args.batch_size, device=args.device,
                      progress=not args.quiet and not getattr(args, "json", False), metadata=meta,
                      options=file_options_of(args))
    n = len(fi.tensors)
    if getattr(args, "json", False):
        doc = {"output": str(args.output), "model": lm.name, "config": cfg.describe(), "tensors": n,
               "file_bytes": fi.file_bytes, "n_values": fi.n_values, "bits_per_value": fi.bits_per_value,
               "entropy_bits": fi.entropy_bits}
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif not args.quiet:
        sys.stdout.write(f"wrote {args.output}: {n} tensors of {lm.name} ({cfg.describe()}), "
                         f"{fi.n_values} values, {fi.file_bytes} bytes, {fi.bits_per_value:.3f} bits/value\n")
    return 0
