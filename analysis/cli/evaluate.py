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
from quant.recipes import ADAROUND_ITERATIONS

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
  huffquant evaluate --imagenet ~/data/imagenet/val --workers 8 --stats lite0.npz   (8 image-reading processes)
  huffquant evaluate --model efficientnet-lite0 --wbits 4 --abits 4 --clip aciq-laplace \\
      --bit-alloc weights,activations --bias-correction --json
  huffquant calibrate -o lite0.npz && huffquant evaluate --stats lite0.npz --clip aciq-laplace
  huffquant evaluate --model resnet50 --weights resnet50.pth --imagenet ~/data/imagenet/val --device cuda
  huffquant evaluate --wbits 8 --abits 5.3 --bin-alloc activations --clip aciq-laplace

Several machines: calibrate once ('huffquant calibrate -o s.npz'), give every machine the same --stats s.npz and
its part of the images, '--shard K/N' (K = 1..N, contiguous parts), each writing --json to a file; then
'huffquant evaluate --merge part*.json' (or quant.evaluation.merge_results) gives the result of one run over
all the images:
  huffquant evaluate --imagenet val --stats s.npz --shard 1/4 --json > part1.json   (on machine 1, etc.)
  huffquant evaluate --merge part1.json part2.json part3.json part4.json --json

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


def _layer_bits(text: str) -> float | str | None:
    """--first-layer-bits / --classifier-bits / --classifier-output-bits: a number, 'fp' (FP32) or 'same' (as the
    rest of the network)."""
    if text.lower() == "same":
        return "same"
    try:
        v = _bits(text)
        return "fp" if v is None else v  # "fp" (not None, which means "not given") until config_from_args
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number of bits, 'fp' or 'same', got {text!r}") from None


def _count(what: str):
    """An argparse type: a whole number >= 0 of ``what`` (e.g. "iterations")."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of {what}, got {text!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"the number of {what} must be >= 0, got {v}")
        return v

    return parse


_workers = _count("worker processes")
_iterations = _count("iterations")


def _shard(text: str) -> tuple[int, int]:
    """--shard K/N: part K (1-based) of N."""
    try:
        k, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N (e.g. 2/4), got {text!r}") from None
    if n < 1 or not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --random-init, --device, --batch-size, --workers, --seed."""
    _add(parser, "--model", metavar="NAME", default=None,
         help="efficientnet-lite0 (default, built in), a torchvision model name, or "
              "MODULE:FUNCTION (a dotted module or path/to/file.py and a function returning an nn.Module "
              "or (module, preprocessing dict); see README)")
    _add(parser, "--weights", metavar="PATH", help="state-dict file for the model (torchvision models)")
    _add(parser, "--random-init", action="store_true", help="allow random weights when none are found")
    _add(parser, "--device", default="cpu", metavar="cpu|cuda", help="where to run (default cpu)")
    _add(parser, "--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    _add(parser, "--workers", type=_workers, default=None, metavar="N",
         help="DataLoader worker processes reading the images (default: one per core, at most 8, when the images "
              "fill more than one batch; 0: read in this process)")
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




def add_config_arguments(parser: argparse.ArgumentParser, *, stats: bool = True,
                         default_recipe: str = "naive") -> None:
    """The QuantConfig options (a --recipe preset, default ``default_recipe``, then every flag given overrides it);
    ``stats``: also --stats and --stats-mode."""
    _add(parser, "--recipe", metavar="NAME", default=default_recipe,
         help="preset: naive (per-channel min/max), paper (ACIQ + bit allocation + bias correction) or best "
              "(equalization + ACIQ + AdaRound + empirical bias correction; see quant/METHODS.md); the flags below "
              f"override it (default: {default_recipe})")
    _add(parser, "--wbits", type=_bits, default=4.0, metavar="B", help="weight bits, or 'fp' (default 4)")
    _add(parser, "--abits", type=_bits, default=4.0, metavar="B", help="activation bits, or 'fp' (default 4)")
    _add(parser, "--clip", default=None, metavar="METHOD",
         help="activation clipping: minmax (naive), aciq-laplace, aciq-gauss, <k>sigma, percentile:<p>, mse, kl")
    _add(parser, "--weight-clip", default=None, metavar="METHOD", help="weight clipping (default minmax)")
    _add(parser, "--clip-window", default=None, choices=("mean", "reference", "zero"),
         help="how ACIQ's alpha becomes a range (default mean)")
    _add(parser, "--per-layer", action="store_true", help="per-layer (per-tensor) ranges instead of per channel")
    _add(parser, "--per-layer-weights", action="store_true", help="per-layer ranges for weights only")
    _add(parser, "--per-layer-activations", action="store_true", help="per-layer ranges for activations only")
    _add(parser, "--bit-alloc", default=None, metavar="WHAT",
         help="per-channel bit allocation: weights,activations ('none': off)")
    _add(parser, "--bin-alloc", default=None, metavar="WHAT",
         help="per-channel level-count allocation (fractional --wbits/--abits, e.g. 5.3): weights,activations")
    _add(parser, "--bias-correction", nargs="?", const="both", default=None,
         choices=("mean", "variance", "both", "empirical", "none"),
         help="weight bias correction of the paper (mean, variance, both; the default when the flag has no value), "
              "empirical (measured on the calibration images, added to the biases) or none")
    _add(parser, "--bias-correction-form", default=None, choices=("paper", "reference"),
         help="eq. 13 of the paper (default) or the reference code's form")
    _add(parser, "--equalize", action="store_true", default=None,
         help="cross-layer equalization with high-bias absorption (statistics must be calibrated with it)")
    _add(parser, "--no-equalize", dest="equalize", action="store_false", help="no equalization (overrides a recipe)")
    _add(parser, "--adaround", type=_iterations, nargs="?", const=ADAROUND_ITERATIONS, default=None,
         metavar="N", help=f"AdaRound: learn the rounding of the weights on the calibration images, N iterations per "
                           f"layer (default {ADAROUND_ITERATIONS}; 0: off); cached in --stats files made "
                           f"by 'huffquant calibrate --adaround'")
    _add(parser, "--first-layer-bits", type=_layer_bits, default=None, metavar="B",
         help="weight bits of the first layer(s): a number, 'fp' (FP32) or 'same' (as --wbits) (default 8)")
    _add(parser, "--classifier-bits", type=_layer_bits, default=None, metavar="B",
         help="weight bits of the classifier: a number, 'fp' (FP32) or 'same' (as --wbits) (default 8)")
    _add(parser, "--classifier-output-bits", type=_layer_bits, default=None, metavar="B",
         help="bits of the classifier's output, the logits: 'fp' (FP32, the default: they are the network's "
              "output, not a stored feature map), a number (per tensor, min/max) or 'same' (as --abits and --clip)")
    _add(parser, "--keep-fp32", default=None, metavar="NAME[,NAME]",
         help="conv/linear modules (qualified module names, as in the per-layer table) to leave in FP32: not "
              "quantized, and allowed to run where the pipeline cannot quantize them (otherwise a conv/linear "
              "module that runs unquantized fails the run, naming it)")
    if stats:
        _add(parser, "--stats", metavar="FILE",
             help="offline statistics from 'huffquant calibrate' (with any AdaRound rounding and bias corrections "
                  "it learned)")
        _add(parser, "--stats-mode", choices=("dynamic", "offline"), default=None,
             help="offline (calibration images or --stats, default) or dynamic (each batch)")


def config_from_args(args: argparse.Namespace, *, default_mode: str = "offline") -> Any:
    """A :class:`quant.QuantConfig` from the parsed options: the --recipe preset (default naive), then
    every option given on the command line (UsageError on a bad value or combination)."""
    from quant.errors import QuantError
    from quant.recipes import recipe_config

    mode = getattr(args, "stats_mode", None) or default_mode
    if getattr(args, "stats", None) and mode == "dynamic":
        raise UsageError("--stats gives offline statistics; it cannot be combined with --stats-mode dynamic")
    kw: dict[str, Any] = {"stats_mode": mode}
    per_layer = bool(getattr(args, "per_layer", False))
    if per_layer or getattr(args, "per_layer_weights", False):
        kw["per_channel_weights"] = False
    if per_layer or getattr(args, "per_layer_activations", False):
        kw["per_channel_activations"] = False
    options = {"clip": "clip", "weight_clip": "weight_clip", "clip_window": "clip_window", "bit_alloc": "bit_alloc",
               "bin_alloc": "bin_alloc", "bias_correction_form": "bias_correction_form", "equalize": "equalize",
               "adaround": "adaround", "first_layer_bits": "first_layer_wbits", "classifier_bits": "classifier_bits",
               "classifier_output_bits": "classifier_output_bits", "keep_fp32": "keep_fp32"}
    for opt, field in options.items():
        v = getattr(args, opt, None)
        if v is not None:
            kw[field] = None if v == "fp" else v
    for opt in ("bit_alloc", "bin_alloc"):
        if isinstance(kw.get(opt), str) and kw[opt].strip().lower() in ("none", "off"):
            kw[opt] = ()
    bc = getattr(args, "bias_correction", None)
    if bc is not None:
        kw["bias_correction"] = None if bc == "none" else bc
    try:
        return recipe_config(getattr(args, "recipe", None) or "naive", args.wbits, args.abits, **kw)
    except QuantError as exc:
        raise UsageError(str(exc)) from exc


def needs_calibration_images(cfg: Any, stats: Any) -> bool:
    """True when the run must see calibration images: offline statistics to collect, or AdaRound / empirical
    bias correction not already stored in ``stats``."""
    from quant import needs_calibration

    return needs_calibration(cfg, stats)


def check_model_from_args(args: argparse.Namespace) -> None:
    """Reject an unknown model name or a bad MODULE:FUNCTION before anything is loaded (UsageError)."""
    from quant.errors import ModelError
    from quant.models import DEFAULT_MODEL, check_model_name

    try:
        check_model_name(args.model or DEFAULT_MODEL)
    except ModelError as exc:
        raise UsageError(str(exc)) from exc


def load_model_from_args(args: argparse.Namespace) -> Any:
    from quant.models import DEFAULT_MODEL, load_model

    check_model_from_args(args)
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
    parser.add_argument("--layers", action="store_true",
                        help="print the per-layer table: bits, SQNR, the activation clipping, and AdaRound's output "
                             "error over round to nearest's on held-out calibration images (always in --json)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON document")
    d = parser.add_argument_group("several machines")
    d.add_argument("--shard", type=_shard, metavar="K/N",
                   help="evaluate only part K of N contiguous parts of the images (merge the parts with --merge)")
    d.add_argument("--merge", nargs="+", metavar="FILE",
                   help="no evaluation: merge the --json results of every part (--shard 1/N ... N/N) into one")


def _fmt_db(v: float | None) -> str:
    if v is None:
        return "-"
    return "inf" if math.isinf(v) else f"{v:.1f}"


def print_result(res: Any, *, layers: bool, out: Any = sys.stdout) -> None:
    """Human-readable summary of an :class:`EvaluationResult`."""
    w = out.write
    w(f"model {res.model}  images {res.num_images} ({res.images}{', part ' + res.shard if res.shard else ''})")
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
    kept = f" ({len(res.kept_fp32)} kept in FP32: {', '.join(res.kept_fp32[:5])})" if res.kept_fp32 else ""
    w(f"layers quantized {res.layers_quantized} of the {res.conv_linear_modules} conv/linear modules that ran{kept}\n")
    t = res.timing
    w(f"time {t['total_s']:.2f} s (prepare {t['prepare_s']:.2f}, FP32 {t['fp32_s']:.2f}, "
      f"quantized {t['quantized_s']:.2f})\n")
    if layers:
        w(f"{'layer':40s} {'kind':6s} {'wbits':>6s} {'abits':>6s} {'W SQNR':>7s} {'A SQNR':>7s} "
          f"{'clipping':>20s} {'AdaRound':>8s}\n")
        for r in res.per_layer:
            wb = "-" if r.weight_bits is None else f"{r.weight_bits:.2f}"
            ab = "-" if r.act_bits is None else f"{r.act_bits:.2f}"
            ada = "-" if r.adaround_loss_ratio is None else f"{r.adaround_loss_ratio:.3f}"
            w(f"{r.name:40s} {r.kind:6s} {wb:>6s} {ab:>6s} {_fmt_db(r.weight_sqnr_db):>7s} "
              f"{_fmt_db(r.act_sqnr_db):>7s} {r.act_clip or '-':>20s} {ada:>8s}\n")


def _merge(args: argparse.Namespace) -> int:
    from quant.evaluation import merge_results

    docs = []
    for path in args.merge:
        try:
            with open(path, encoding="utf-8") as fh:
                docs.append(json.load(fh))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--merge {path}: cannot read a JSON result: {exc}") from exc
    return _show(merge_results(docs), args)


def _show(res: Any, args: argparse.Namespace) -> int:
    if args.json:
        json.dump(res.to_dict(), sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_result(res, layers=args.layers)
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from quant.calibration import ModelStatistics
    from quant.evaluation import evaluate_model

    if args.merge:
        return _merge(args)
    cfg = config_from_args(args)
    check_model_from_args(args)
    lm = load_model_from_args(args)
    images = images_from_args(args, lm.preprocessing)
    stats = ModelStatistics.load(args.stats) if args.stats else None
    calib = None
    if needs_calibration_images(cfg, stats):
        calib = calibration_from_args(args, lm.preprocessing)
    torch.manual_seed(args.seed)
    res = evaluate_model(lm, cfg, images=images, calibration_images=calib, stats=stats,
                         batch_size=args.batch_size, device=args.device, seed=args.seed,
                         layer_sqnr=not args.no_layer_sqnr, progress=not args.quiet and not args.json,
                         num_workers=args.workers, shard=args.shard)
    res.config["describe"] = cfg.describe()
    return _show(res, args)
