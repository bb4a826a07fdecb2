"""The ``huffquant`` command line: a thin layer over the public Python API.

Each subcommand lives in its own module of this package and exposes

* ``COMMAND``: the subcommand name,
* ``HELP``: a one-line summary,
* ``register(parser)``: adds its arguments to its own ``argparse`` sub-parser
  (the parser's description and epilog, with examples, are set there too),
* ``run(args) -> int``: does the work through the public API and returns the exit code.

Exit codes: 0 success, 2 usage error, 1 any other failure. Failures print one
line on stderr; ``--debug`` adds the traceback. The global options (``--debug``,
``-q``) may come before or after the subcommand.

Start-up stays light: this package and every command module import only the standard
library at module level; numpy, numba, torch and the rest are imported inside ``run`` on
the code paths that need them, so that a command that needs no model never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from entropy import FileOptions

__all__ = ["main", "build_parser"]

# Order is the order shown in ``huffquant --help``.
_COMMAND_MODULES = (
    "report",
    "calibrate",
    "evaluate",
    "encode",
    "decode",
    "inspect",
    "verify",
    "aciq",
    "bench",
)


class UsageError(Exception):
    """Raised by a subcommand for a bad combination of arguments (exit code 2)."""


def add_threads_argument(parser: argparse.ArgumentParser, what: str) -> None:
    """The ``--threads N`` option of the commands that code or decode (``what`` says what runs in parallel)."""
    parser.add_argument(
        "--threads", type=int, default=None, metavar="N",
        help=f"threads for {what}: chunks of a large tensor are coded in parallel; 1 = single thread; "
             "the output is the same bytes whatever N (default: all cores of this process)",
    )


def threads_of(args: argparse.Namespace) -> int | None:
    """``--threads`` checked: None (all cores) or N >= 1; UsageError (exit 2) otherwise."""
    n = getattr(args, "threads", None)
    if n is not None and n < 1:
        raise UsageError(f"--threads must be >= 1, got {n}")
    return n


def file_options_of(args: argparse.Namespace) -> FileOptions:
    """The :class:`entropy.FileOptions` that ``huffquant encode``'s flags ask for (INPUT or --model): the codec's
    (``--max-code-length``, ``--chunk-size``, ``--group``), the layout's (``--channel-axis``, ``--layout``),
    ``--share-codebooks`` and ``--verify``. Raises entropy's EntropyError for a bad value."""
    from entropy import CodecOptions, FileOptions

    codec = CodecOptions(max_code_length=args.max_code_length, chunk_size=args.chunk_size, group=args.group)
    return FileOptions(codec=codec, channel_axis=getattr(args, "channel_axis", None),
                       layout=getattr(args, "layout", "auto"), share_codebooks=args.share_codebooks,
                       verify=getattr(args, "verify", False))


def _load_commands() -> list[ModuleType]:
    return [importlib.import_module(f"{__name__}.{name}") for name in _COMMAND_MODULES]


def _add_global_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, default: object) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show tracebacks and debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", default=default,
                        help="only warnings and errors on stderr; no progress bars")


def _one_line(exc: BaseException) -> tuple[str, bool]:
    """The error as one line, and whether anything was left out: an OSError names its path,
    other messages keep their first line."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}", False
    lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
    return (lines[0] if lines else ""), len(lines) > 1


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="huffquant",
        description=(
            "Post-training quantization of CNNs into real canonical-Huffman bitstreams, "
            "with exact bits-per-value accounting."
        ),
        epilog="Run 'huffquant COMMAND --help' for the options and examples of each command.",
    )
    _add_global_options(parser, default=False)
    # the same options after the subcommand; SUPPRESS keeps an absent one from resetting the global value
    common = argparse.ArgumentParser(add_help=False)
    _add_global_options(common.add_argument_group("global options (also accepted before COMMAND)"),
                        default=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for mod in _load_commands():
        p = sub.add_parser(
            mod.COMMAND,
            help=mod.HELP,
            description=getattr(mod, "DESCRIPTION", mod.HELP),
            epilog=getattr(mod, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[common],
        )
        mod.register(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``huffquant`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors
    args.argv = list(sys.argv[1:] if argv is None else argv)  # the command line, as a report records it
    level = logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from entropy import EntropyError
    from quant.errors import QuantError
    from analysis.errors import AnalysisError

    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        parser.exit(2, f"huffquant {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        print(f"huffquant {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for every failure; the traceback with --debug
        if args.debug:
            raise
        expected = isinstance(exc, (EntropyError, QuantError, AnalysisError, OSError))
        text, cut = _one_line(exc)
        kind = type(exc).__name__ if expected else f"unexpected {type(exc).__name__}"
        hint = "" if expected and not cut else " (rerun with --debug for the details)"
        print(f"huffquant {args.command}: {kind}: {text}{hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
