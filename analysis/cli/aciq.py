"""``huffquant aciq``: the optimal ACIQ clipping multipliers α/b (Laplace) and α/σ (Gauss) per bit width."""

from __future__ import annotations

import argparse
import json
import math

from analysis.cli import UsageError

COMMAND = "aciq"
HELP = "print the optimal ACIQ clipping multipliers for bit widths or level counts"
DESCRIPTION = (
    "Solve the ACIQ mean-squared-error model (Banner et al. 2019, eq. 5 and its Gaussian form) for the\n"
    "clipping value α that minimizes clipping + rounding noise, and print α/b (Laplace, b = mean absolute\n"
    "deviation) and α/σ (Gauss), two-sided [-α, α] and one-sided [0, α] (fused ReLU), to 4 decimals.\n"
    "Bit widths may be fractional (levels = 2**bits); --levels takes level counts directly (e.g. 39)."
)
EPILOG = """examples:
  huffquant aciq                              (bits 1..8)
  huffquant aciq --bits 2 3 4
  huffquant aciq --bits 5.3 --levels 39 40
  huffquant aciq --bits 4 --json
"""


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bits", type=float, nargs="+", metavar="M", help="bit widths (default 1 2 3 4 5 6 7 8)")
    parser.add_argument("--levels", type=float, nargs="+", metavar="L", help="level counts (any real > 0)")
    parser.add_argument("--json", action="store_true", help='print {"rows": [...]} as JSON')


def run(args: argparse.Namespace) -> int:
    from quant.aciq import aciq_table

    bits = args.bits if args.bits is not None else ([] if args.levels else [1, 2, 3, 4, 5, 6, 7, 8])
    for b in bits:
        if not math.isfinite(b) or b < 0 or b > 30:
            raise UsageError(f"--bits {b}: must be in [0, 30]")
    for lv in args.levels or []:
        if not math.isfinite(lv) or lv <= 0 or lv > 2**30:
            raise UsageError(f"--levels {lv}: must be > 0")
    rows = aciq_table(bits=bits, levels=args.levels or [])
    if args.json:
        print(json.dumps({"rows": rows}))
        return 0
    print(f"{'bits':>7} {'levels':>9} {'laplace':>9} {'gauss':>9} {'laplace_1s':>11} {'gauss_1s':>9}")
    for r in rows:
        print(f"{r['bits']:>7.4g} {r['levels']:>9.6g} {r['laplace']:>9.4f} {r['gauss']:>9.4f} "
              f"{r['laplace_one_sided']:>11.4f} {r['gauss_one_sided']:>9.4f}")
    return 0
