"""``huffquant report``: what every activation and weight of a quantized network really costs in bits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.cli import UsageError
from analysis.cli.evaluate import add_config_arguments, config_from_args

COMMAND = "report"
HELP = "bits-per-value report of a quantized network: entropy vs Huffman vs file, packing, plots"
DESCRIPTION = (
    "Quantize a network post-training (default: EfficientNet-Lite0 at W4A4 with the best recipe: equalization,\n"
    "clipping chosen per layer, MSE weight clipping, AdaRound and empirical bias correction), run the other\n"
    "recipes (naive, and the paper's: ACIQ, per-channel bit allocation and bias correction) side by side at the\n"
    "same bit widths, and put each recipe's coded bits per value next to its fidelity (top-1 agreement with its\n"
    "95% interval, logit SQNR). Export the main\n"
    "setting's integer activations and weights, Huffman-code them in the smallest layout per layer, write and\n"
    "verify real .hqt files, and report per layer: nominal bits, pooled and per-channel entropy, average code\n"
    "length of every layout of the format, coded bits from the file, zstd -19, mixed-precision packings and the\n"
    "step ratio. Writes report.md, layers.csv, summary.json (and sweep.csv with --sweep) and figures/*.png|pdf to\n"
    "--out. What the recipes learn on the calibration images (AdaRound, statistics of the equalized network, bias\n"
    "corrections) is kept in <out>/calibration/ and reused by the next run on the same model and images.\n"
    "The compared recipes and the sweep points run as independent tasks on joblib: --jobs worker processes on\n"
    "this machine (one torch thread each), or --cluster ADDRESS, a Dask distributed scheduler."
)
EPILOG = """examples:
  huffquant report                                   (EfficientNet-Lite0 on the built-in photos)
  huffquant report --sweep                           (+ the rate-fidelity sweep; regenerates reports/efficientnet-lite0)
  huffquant report --json > summary.json             (the summary document on stdout)
  huffquant report --wbits 4 --abits 8 --clip kl --bit-alloc none
  huffquant report --recipe paper                    (the paper's tensors coded and written; naive and best compared)
  huffquant report --sweep --jobs 8                  (8 worker processes)
  huffquant report --sweep --cluster tcp://scheduler:8786   (on a Dask cluster: pip install 'huffquant[cluster]')
  huffquant report --model resnet18 --weights resnet18.pth --imagenet ~/data/imagenet/val --num-images 1000
  huffquant report --images ~/photos --out reports/mine --keep-files
  huffquant report --sweep --sweep-bits 2,3,4,5.3 --sweep-clips minmax,aciq-laplace,kl --sweep-images 16
"""


def _floats(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one number")
    return vals


def _names(text: str) -> tuple[str, ...]:
    vals = tuple(t.strip() for t in text.split(",") if t.strip())
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one name")
    return vals


def _recipes(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("none", "off", ""):
        return ()
    from quant.errors import QuantError
    from quant.recipes import check_recipe

    try:
        return tuple(dict.fromkeys(check_recipe(t) for t in _names(text)))
    except QuantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def register(parser: argparse.ArgumentParser) -> None:
    m = parser.add_argument_group("model and images")
    m.add_argument("--model", default="efficientnet-lite0", metavar="NAME",
                   help="built-in or torchvision model name, or MODULE:FUNCTION (a function returning an "
                        "nn.Module; see README) (default efficientnet-lite0)")
    m.add_argument("--weights", metavar="PATH", help="state-dict file with the model's weights")
    m.add_argument("--random-init", action="store_true", help="allow random weights (torchvision models only)")
    src = m.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="folder of images without labels (default: the built-in photos)")
    src.add_argument("--imagenet", metavar="DIR", help="ImageFolder-style labelled set (gives top-1/top-5)")
    m.add_argument("--num-images", type=int, metavar="N", help="images to evaluate (default: all)")
    m.add_argument("--num-calibration", type=int, default=None, metavar="N",
                   help="calibration images (default: all 144 built-in calibration crops; with --images or "
                        "--imagenet the first 32 report images)")
    m.add_argument("--activation-images", type=int, default=32, metavar="N",
                   help="export and code the activations of the first N evaluated images (0 = all; default 32)")
    q = parser.add_argument_group("quantization (the main setting, whose files are written and verified)")
    add_config_arguments(q, stats=False, default_recipe="best")
    q.add_argument("--compare", type=_recipes, default=None, metavar="RECIPES",
                   help="recipes run side by side with the main setting, at its bit widths (default: every other "
                        "recipe, the paper's included; 'none' for none)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", metavar="DIR", help="output folder (default reports/<model>)")
    o.add_argument("--json", action="store_true", help="print summary.json to stdout")
    o.add_argument("--no-plots", action="store_true", help="skip the figures")
    o.add_argument("--keep-files", action="store_true", help="keep the written .hqt files in <out>/files")
    o.add_argument("--hist-layer", metavar="LAYER", help="layer of the clipping histogram (default: the largest)")
    c = parser.add_argument_group("coding")
    c.add_argument("--max-code-length", type=int, default=12, metavar="L", help="longest code in bits (default 12)")
    c.add_argument("--chunk-size", type=int, default=4096, metavar="N", help="values per chunk (default 4096)")
    c.add_argument("--zstd-sample", type=int, default=32, metavar="KIB",
                   help="zstd -19 on this many KiB of packed activations per layer, 4x per weight tensor "
                        "(0 = all; default 32)")
    c.add_argument("--verify-packing", action="store_true",
                   help="also encode and decode packings (iii) and (iv) of every layer")
    s = parser.add_argument_group("rate-fidelity sweep")
    s.add_argument("--sweep", action="store_true", help="run the sweep and write sweep.csv + its figure")
    s.add_argument("--sweep-bits", type=_floats, default=(2, 3, 4, 5, 6, 8, 5.3), metavar="LIST",
                   help="bit widths, W and A together (default 2,3,4,5,6,8,5.3; fractional = bin allocation)")
    s.add_argument("--sweep-clips", type=_names, default=("minmax", "aciq-laplace", "aciq-gauss", "2sigma"),
                   metavar="LIST", help="clipping methods (default minmax,aciq-laplace,aciq-gauss,2sigma; kl per "
                                        "channel is slow: minutes per point)")
    s.add_argument("--sweep-recipes", type=_recipes, default=("best",), metavar="RECIPES",
                   help="whole recipes added to the sweep (default best; 'none')")
    s.add_argument("--sweep-recipe-bits", type=_floats, default=None, metavar="LIST",
                   help="bit widths of the recipe points, among --sweep-bits (default 4, the main setting's: "
                        "AdaRound is learned once per bit width, up to an hour of CPU, and cached in "
                        "<out>/calibration)")
    s.add_argument("--sweep-images", type=int, default=32, metavar="N", help="images per sweep point (default 32)")
    s.add_argument("--sweep-rate-images", type=int, default=16, metavar="N",
                   help="images whose codes are sized per sweep point (default 16)")
    h = parser.add_argument_group("hardware")
    h.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes for the compared recipes and the sweep points, one torch thread each "
                        "(default: one per core; 1: in this process)")
    h.add_argument("--cluster", metavar="ADDRESS",
                   help="run them on the Dask distributed scheduler at ADDRESS instead (e.g. tcp://host:8786; "
                        "needs pip install 'huffquant[cluster]' here and on the workers)")
    h.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    h.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    h.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def run(args: argparse.Namespace) -> int:
    for name in ("num_images", "num_calibration", "batch_size", "sweep_images", "sweep_rate_images", "jobs"):
        v = getattr(args, name, None)
        if v is not None and v < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be >= 1")
    if args.activation_images < 0:
        raise UsageError("--activation-images must be >= 0")
    if args.zstd_sample < 0:
        raise UsageError("--zstd-sample must be >= 0")
    if args.random_init and args.weights:
        raise UsageError("--random-init and --weights exclude each other")
    from quant.errors import QuantError
    from quant.models import check_model_name

    try:  # every configuration error before the model is loaded
        check_model_name(args.model)
    except QuantError as exc:
        raise UsageError(str(exc)) from exc
    if args.cluster:
        try:
            import distributed  # noqa: F401
        except ImportError:
            raise UsageError("--cluster needs Dask distributed: pip install 'huffquant[cluster]'") from None
    main = config_from_args(args, default_mode="offline")
    for name in (args.compare or ()) + args.sweep_recipes:
        config_from_args(argparse.Namespace(recipe=name, wbits=args.wbits, abits=args.abits))
    settings = _overrides(args.recipe, main)
    if args.adaround:  # iterations of every recipe that uses AdaRound (ReportConfig.adaround), not a new setting
        settings.pop("adaround", None)
    from analysis.report import ReportConfig, report, to_json, write_report
    from analysis.report.paths import portable_command
    from quant.images import imagenet_folder
    from quant.models import load_model

    lm = load_model(args.model, weights=args.weights, random_init=args.random_init)
    out = Path(args.out) if args.out else Path("reports") / lm.name
    images = None
    if args.imagenet:
        images = imagenet_folder(args.imagenet, lm.preprocessing, limit=args.num_images)
    elif args.images:
        images = args.images
    cfg = ReportConfig(
        recipe=args.recipe, wbits=args.wbits, abits=args.abits, settings=settings, compare=args.compare,
        adaround=args.adaround or None, calibration_dir=str(out / "calibration"), sweep_recipes=args.sweep_recipes,
        sweep_recipe_bits=(ReportConfig.sweep_recipe_bits if args.sweep_recipe_bits is None
                           else args.sweep_recipe_bits),
        num_calibration=args.num_calibration,
        num_images=args.num_images, activation_images=args.activation_images or None, batch_size=args.batch_size,
        device=args.device,
        max_code_length=args.max_code_length, chunk_size=args.chunk_size,
        zstd_sample_bytes=args.zstd_sample * 1024 if args.zstd_sample else None,
        verify_huffman_packing=args.verify_packing, sweep=args.sweep, sweep_bits=args.sweep_bits,
        sweep_clips=args.sweep_clips, sweep_images=args.sweep_images, sweep_rate_images=args.sweep_rate_images,
        hist_layer=args.hist_layer,
        files_dir=str(out / "files") if args.keep_files else None, progress=not args.quiet, seed=args.seed,
        jobs=args.jobs, cluster=args.cluster,
        command="huffquant " + portable_command(getattr(args, "argv", sys.argv[1:]), out),
    )
    rep = report(lm, images, cfg)
    written = write_report(rep, out, plots=not args.no_plots)
    if args.json:
        sys.stdout.write(to_json(rep, out) + "\n")
    else:
        _print_summary(rep, out, written)
    return 0


def _overrides(recipe: str, config) -> dict:
    """The QuantConfig fields the command line changed from recipe ``recipe`` at the same bit widths."""
    from quant.recipes import recipe_config

    preset = recipe_config(recipe, config.wbits, config.abits, stats_mode="offline").to_dict()
    wanted = config.to_dict()
    return {k: getattr(config, k) for k, v in wanted.items() if k not in ("wbits", "abits") and preset[k] != v}


def _print_summary(rep, out: Path, written: list) -> None:
    s = rep.summary
    lines = [f"{rep.header['model']}: {rep.header['settings']}", f"images: {rep.header['images']}",
             f"layers quantized: {rep.header.get('layers_quantized')} of the {rep.header.get('conv_linear_modules')} "
             f"conv/linear modules that ran"]
    for kind in ("activations", "weights"):
        if kind not in s:
            continue
        k = s[kind]
        lines.append(
            f"{kind:11s} nominal {k['nominal_bits']:.3f}  entropy {k['entropy_bits']:.3f}  "
            f"channel entropy {k['channel_entropy_bits']:.3f}  avg code length {k['avg_code_length']:.3f}  "
            f"coded {k['coded_bits_per_value']:.3f} bits/value ({k['ratio_to_entropy']:.3f} x entropy)  "
            f"lossless {'yes' if k['lossless'] else 'NO'}"
        )
    for c in rep.headline:
        ci = c.get("top1_agreement_ci")
        ci_text = f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else ""
        bits = [f"{k} {c[key]:.3f}" for k, key in (("act", "act_coded_bits_per_value"),
                                                     ("weights", "weight_coded_bits_per_value"),
                                                     ("together", "coded_bits_per_value"))
                if c.get(key) is not None]
        sqnr = c.get("logit_sqnr_db")
        name = c["recipe"] + ("*" if c.get("main") else "")
        lines.append(f"{name:9s} coded bits/value: {', '.join(bits)}; top-1 agreement {c['top1_agreement']:.3f}"
                     f"{ci_text}" + (f", logit SQNR {sqnr:.1f} dB" if sqnr is not None else ""))
    t = rep.timing
    if t.get("ratio_to_fp32_and_calibration") is not None:
        lines.append(f"time      {t.get('total_s', t['report_s']):.1f} s = {t['ratio_to_fp32_and_calibration']:.2f} x "
                     f"(FP32 forward + calibration)")
    lines.append("(* main setting: its files are written and verified)")
    lines.append(f"wrote     {out}/ ({len(written)} files)")
    print("\n".join(lines))
