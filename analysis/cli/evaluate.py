"""``huffquant evaluate``: simulated WxAy inference of a model, accuracy and fidelity to FP32.

Also holds the model/image/config arguments shared by ``calibrate`` and ``encode --model``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from typing import Any

from analysis.cli import UsageError

COMMAND = "evaluate"
HELP = "quantize a model (WxAy) and measure top-1/top-5 and fidelity to FP32"
DESCRIPTION = (
    "Fold BN, quantize weights and activations (simulated, integer grid) and run the model on images.\n"
    "Reports top-1 agreement, top-5 overlap and mean KL(FP32 || quantized) against the FP32 model, per-layer\n"
    "SQNR, and top-1/top-5 accuracy when the images have labels (--imagenet). '--clip minmax' with no other\n"
    "method is the naive baseline. Activation statistics are offline: from --stats FILE ('huffquant calibrate')\n"
    "or from the 144 built-in calibration crops; --stats-mode dynamic takes them from each batch instead (the\n"
    "reference code's default; slower)."
)
EPILOG = """examples:
  huffquant evaluate --wbits 4 --abits 4 --clip minmax
  huffquant evaluate --model efficientnet-lite0 --wbits 4 --abits 4 --clip aciq-laplace \\
      --bit-alloc weights,activations --bias-correction --json
  huffquant calibrate -o lite0.npz && huffquant evaluate --stats lite0.npz --clip aciq-laplace
  huffquant evaluate --model resnet50 --weights resnet50.pth --imagenet ~/data/imagenet/val --device cuda
  huffquant evaluate --wbits 8 --abits 5.3 --bin-alloc activations --clip aciq-laplace

Images: by default deterministic crops (and mirrored crops) of nine photos shipped with scikit-image,
scikit-learn and matplotlib: 270 evaluation crops and 144 calibration crops, disjoint samples of the same photos
(see quant/PIPELINE.md). --images DIR takes any folder (no labels);
--imagenet DIR an ImageFolder tree DIR/<class>/<image> (class index = the folder name if it is an integer,
else its rank among the sorted folders, i.e. the ImageNet index for the 1000 WordNet-id folders).
"""

log = logging.getLogger(__name__)


def _has(parser: argparse.ArgumentParser, flag: str) -> bool:
    return flag in parser._option_string_actions  # noqa: SLF001 - argparse offers no public query


def _add(parser: argparse.ArgumentParser, *flags: str, **kw: Any) -> None:
    """Add an option unless the parser already has it (``encode`` defines some of the same flags)."""
    if not any(_has(parser, f) for f in flags):
        parser.add_argument(*flags, **kw)


def _bits(text: str) -> float | None:
    if text.lower() in ("fp", "fp32", "none", "float"):
        return None
    try:
        v = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a number of bits or 'fp', got {text!r}") from exc
    return v


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --random-init, --device, --batch-size, --workers, --seed."""
    _add(parser, "--model", metavar="NAME", default=None,
         help="efficientnet-lite0 (default, built in) or a torchvision model name")
    _add(parser, "--weights", metavar="PATH", help="state-dict file for the model (torchvision models)")
    _add(parser, "--random-init", action="store_true", help="allow random weights when none are found")
    _add(parser, "--device", default="cpu", metavar="cpu|cuda", help="where to run (default cpu)")
    _add(parser, "--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    _add(parser, "--workers", type=int, default=0, metavar="N", help="image-loading worker processes (default 0)")
    _add(parser, "--seed", type=int, default=0, metavar="S", help="random seed (default 0)")


def add_image_arguments(parser: argparse.ArgumentParser, *, calibration: bool = True) -> None:
    """--images, --imagenet, --class-index, --num-images, --calib-images, --num-calib."""
    _add(parser, "--images", metavar="DIR", help="folder of images (recursive, unlabelled)")
    _add(parser, "--imagenet", metavar="DIR", help="labelled ImageFolder tree DIR/<class>/<image>")
    _add(parser, "--class-index", metavar="FILE",
         help="with --imagenet: text file, one class folder name per line in model index order")
    _add(parser, "--num-images", type=int, metavar="N", help="use only the first N images")
    if calibration:
        _add(parser, "--calib-images", metavar="DIR",
             help="calibration folder (default: the built-in calibration crops, disjoint from the evaluation crops)")
        _add(parser, "--num-calib", type=int, default=None, metavar="N",
             help="calibration images (default: all 144 built-in calibration crops, or every file of --calib-images)")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """The QuantConfig options."""
    _add(parser, "--wbits", type=_bits, default=4.0, metavar="B", help="weight bits, or 'fp' (default 4)")
    _add(parser, "--abits", type=_bits, default=4.0, metavar="B", help="activation bits, or 'fp' (default 4)")
    _add(parser, "--clip", default=None, metavar="METHOD",
         help="activation clipping: minmax (default), aciq-laplace, aciq-gauss, <k>sigma, percentile:<p>, mse, kl")
    _add(parser, "--weight-clip", default="minmax", metavar="METHOD", help="weight clipping (default minmax)")
    _add(parser, "--clip-window", default="mean", choices=("mean", "reference", "zero"),
         help="how ACIQ's alpha becomes a range (default mean)")
    _add(parser, "--per-layer", action="store_true", help="per-layer (per-tensor) ranges instead of per channel")
    _add(parser, "--per-layer-weights", action="store_true", help="per-layer ranges for weights only")
    _add(parser, "--per-layer-activations", action="store_true", help="per-layer ranges for activations only")
    _add(parser, "--bit-alloc", default="", metavar="WHAT", help="per-channel bit allocation: weights,activations")
    _add(parser, "--bin-alloc", default="", metavar="WHAT",
         help="per-channel level-count allocation (fractional --wbits/--abits, e.g. 5.3): weights,activations")
    _add(parser, "--bias-correction", nargs="?", const="both", default=None, choices=("mean", "variance", "both"),
         help="weight bias correction (default mode when given: both)")
    _add(parser, "--bias-correction-form", default="paper", choices=("paper", "reference"),
         help="eq. 13 of the paper (default) or the reference code's form")
    _add(parser, "--first-layer-bits", type=_bits, default=8.0, metavar="B",
         help="weight bits of the first layer(s) (default 8; 'fp' = same as --wbits)")
    _add(parser, "--classifier-bits", type=_bits, default=8.0, metavar="B",
         help="weight and output bits of the classifier (default 8; 'fp' = same as --wbits/--abits)")
    _add(parser, "--stats", metavar="FILE", help="offline statistics from 'huffquant calibrate'")
    _add(parser, "--stats-mode", choices=("dynamic", "offline"), default=None,
         help="offline (calibration images or --stats, default) or dynamic (each batch)")


def config_from_args(args: argparse.Namespace, *, default_mode: str = "offline") -> Any:
    """A :class:`quant.pipeline.QuantConfig` from the parsed options (UsageError on bad combinations)."""
    from quant.errors import QuantError
    from quant.pipeline import QuantConfig

    mode = args.stats_mode or default_mode
    if getattr(args, "stats", None) and mode == "dynamic":
        raise UsageError("--stats gives offline statistics; it cannot be combined with --stats-mode dynamic")
    per_layer = bool(getattr(args, "per_layer", False))
    try:
        return QuantConfig(
            wbits=args.wbits, abits=args.abits, clip=args.clip or "minmax", weight_clip=args.weight_clip,
            clip_window=args.clip_window,
            per_channel_weights=not (per_layer or args.per_layer_weights),
            per_channel_activations=not (per_layer or args.per_layer_activations),
            bit_alloc=args.bit_alloc, bin_alloc=args.bin_alloc, bias_correction=args.bias_correction,
            bias_correction_form=args.bias_correction_form, first_layer_wbits=args.first_layer_bits,
            classifier_bits=args.classifier_bits, stats_mode=mode,
        )
    except QuantError as exc:
        raise UsageError(str(exc)) from exc


def load_model_from_args(args: argparse.Namespace) -> Any:
    from quant.models import DEFAULT_MODEL, load_model

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available")
    return load_model(args.model or DEFAULT_MODEL, weights=args.weights, random_init=args.random_init)


def _class_index(path: str | None) -> dict[str, int] | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as fh:
        names = [line.split()[0] for line in fh if line.strip()]
    return {n: i for i, n in enumerate(names)}


def images_from_args(args: argparse.Namespace, preprocessing: Any, *, default_split: str = "evaluation") -> Any:
    """The evaluation :class:`quant.images.ImageSet` chosen by --images/--imagenet (default: built-in)."""
    from quant.images import builtin_images, folder_images, imagenet_folder

    if args.images and args.imagenet:
        raise UsageError("--images and --imagenet are exclusive")
    n = args.num_images
    if n is not None and n < 1:
        raise UsageError(f"--num-images must be >= 1, got {n}")
    if args.imagenet:
        return imagenet_folder(args.imagenet, preprocessing, class_index=_class_index(args.class_index), limit=n)
    if args.images:
        return folder_images(args.images, preprocessing, limit=n)
    return builtin_images(preprocessing, n, split=default_split)


def calibration_from_args(args: argparse.Namespace, preprocessing: Any) -> Any:
    from quant.images import builtin_images, folder_images

    n = getattr(args, "num_calib", None)
    if n is not None and n < 1:
        raise UsageError(f"--num-calib must be >= 1, got {n}")
    if getattr(args, "calib_images", None):
        return folder_images(args.calib_images, preprocessing, limit=n)
    return builtin_images(preprocessing, n, split="calibration")


def register(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    add_image_arguments(parser)
    add_config_arguments(parser)
    parser.add_argument("--no-layer-sqnr", action="store_true", help="skip the per-layer activation SQNR")
    parser.add_argument("--layers", action="store_true", help="print the per-layer table (always in --json)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.1f}"


def print_result(res: Any, *, layers: bool, out: Any = sys.stdout) -> None:
    """Human-readable summary of an :class:`EvaluationResult`."""
    w = out.write
    w(f"model {res.model}  images {res.num_images} ({res.images})")
    if res.skipped:
        w(f"  skipped {len(res.skipped)} unreadable")
    w("\n")
    w(f"config {res.config.get('describe', '')}\n" if res.config.get("describe") else "")
    lo, hi = res.top1_agreement_ci
    w(f"top-1 agreement {res.top1_agreement * 100:.2f}% (95% CI {lo * 100:.1f}-{hi * 100:.1f}%, Wilson)   "
      f"top-5 overlap {res.top5_overlap * 100:.2f}%   KL(FP32||quant) {res.kl_divergence:.4f} nats   "
      f"logit SQNR {_fmt_db(res.logit_sqnr_db)} dB\n")
    if res.top1 is not None:
        w(f"top-1 {res.top1 * 100:.2f}% (FP32 {res.fp32_top1 * 100:.2f}%)   "
          f"top-5 {res.top5 * 100:.2f}% (FP32 {res.fp32_top5 * 100:.2f}%)\n")
    t = res.timing
    w(f"time {t['total_s']:.2f} s (prepare {t['prepare_s']:.2f}, FP32 {t['fp32_s']:.2f}, "
      f"quantized {t['quantized_s']:.2f})\n")
    if layers:
        w(f"{'layer':40s} {'kind':6s} {'wbits':>6s} {'abits':>6s} {'W SQNR':>7s} {'A SQNR':>7s}\n")
        for r in res.per_layer:
            wb = "-" if r.weight_bits is None else f"{r.weight_bits:.2f}"
            ab = "-" if r.act_bits is None else f"{r.act_bits:.2f}"
            w(f"{r.name:40s} {r.kind:6s} {wb:>6s} {ab:>6s} {_fmt_db(r.weight_sqnr_db):>7s} "
              f"{_fmt_db(r.act_sqnr_db):>7s}\n")


def run(args: argparse.Namespace) -> int:
    import torch

    from quant.calibration import ModelStatistics
    from quant.evaluation import evaluate_model

    cfg = config_from_args(args)
    lm = load_model_from_args(args)
    images = images_from_args(args, lm.preprocessing)
    stats = ModelStatistics.load(args.stats) if args.stats else None
    calib = None
    if cfg.abits is not None and cfg.stats_mode == "offline" and stats is None:
        calib = calibration_from_args(args, lm.preprocessing)
    torch.manual_seed(args.seed)
    res = evaluate_model(lm, cfg, images=images, calibration_images=calib, stats=stats,
                         batch_size=args.batch_size, device=args.device, seed=args.seed,
                         layer_sqnr=not args.no_layer_sqnr, progress=not args.quiet and not args.json,
                         num_workers=args.workers)
    res.config["describe"] = cfg.describe()
    if args.json:
        json.dump(res.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_result(res, layers=args.layers)
    return 0
