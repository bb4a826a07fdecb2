"""Coverage-guided fuzzing of the .hqt readers with atheris (libFuzzer for Python).

Every input is taken as a whole .hqt file and read every way the library offers: ``entropy.info``, opening it
with :class:`entropy.HQTFile`, the metadata and each tensor's quantization arrays, each tensor whole, two channel
ranges of each tensor that has a channel axis, and ``dequantize`` where a scale is stored. The only accepted
failure is the package's own :class:`entropy.errors.EntropyError`; any other exception is a finding (libFuzzer
saves the input under ``<work>/findings/``), and so are the reader's last-resort error (a Python error of the codec
turned into a FormatError: refused, but by no check; :class:`MissingCheck`), an input that takes longer than the
per-input time limit
(``-timeout``) and a process that grows past the memory limit (``-rss_limit_mb``); every read also passes
``max_decoded_bytes``, so a small file describing a huge tensor must be refused before anything is allocated.

The seed corpus (:mod:`seeds`) is written by the project's own writer at the start of every run: one small file
per layout, symbol mode and header feature, and the version-1 reference files. libFuzzer keeps the inputs that
reach new code in ``<work>/corpus``, so a later run starts where the last one stopped.

Coverage is that of entropy's Python code (parsing, validation, the codec's checks and slicing); the numba
kernels run compiled and uninstrumented (instrumenting them would stop numba from compiling them), so they are
exercised by every input but do not guide the search.

Usage (``make fuzz`` runs the first form with ``FUZZ_SECONDS``, default 60)::

    python fuzz/fuzz_reader.py --seconds 60 [--work build/fuzz] [-- extra libFuzzer flags]
    python fuzz/fuzz_reader.py --runs 500          # a fixed number of inputs (the test suite's smoke run)
    python fuzz/fuzz_reader.py --replay FILE...    # run the check on given inputs, no fuzzing
    python fuzz/fuzz_reader.py --replay build/fuzz/corpus/* --lines   # which reader lines a corpus runs
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # for `seeds`, when run as a script

#: what one read may decode (bytes): far above any seed, far below the memory limit
MAX_DECODED_BYTES = 64 << 20
#: seconds one input may take (libFuzzer -timeout); the slowest seed reads in milliseconds
TIMEOUT_S = 10
#: resident memory limit of the fuzzing process (libFuzzer -rss_limit_mb); Python, numpy and numba take ~400
RSS_LIMIT_MB = 2048


class MissingCheck(Exception):
    """The reader's last resort turned a Python error of the codec into a FormatError ("cannot decode (...)"):
    the file is refused, but no check caught what was wrong with it first. A finding, like a crash."""


def _refused(exc: Exception) -> None:
    """An EntropyError is the expected outcome, unless it is the reader's last resort (see MissingCheck)."""
    from entropy.errors import EntropyError

    cause = exc.__cause__
    if "cannot decode (" in str(exc) and cause is not None and not isinstance(cause, EntropyError):
        raise MissingCheck(str(exc)) from exc


def check_file(path: str) -> None:
    """Read every part of the .hqt file at ``path``; raises anything but EntropyError (a finding), MissingCheck
    for the reader's last-resort error, and a RuntimeWarning (numpy's overflow or invalid-value warnings: the
    library must not emit them, whatever the file says) as an exception."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        _check_file(path)


def _check_file(path: str) -> None:
    import entropy
    from entropy.errors import EntropyError

    try:
        entropy.info(path)
        f = entropy.HQTFile(path, max_decoded_bytes=MAX_DECODED_BYTES)
    except EntropyError as exc:
        _refused(exc)
        return
    with f:
        f.metadata
        tensors = f.info().tensors
        for t in tensors:  # one tensor's failure does not hide the next one's
            try:
                meta = f.quant(t.name)
                f.read(t.name, threads=1)
                if t.channel_axis is not None:
                    c = t.shape[t.channel_axis]
                    f.read(t.name, channels=slice(0, 1), threads=1)
                    f.read(t.name, channels=slice(c // 2, c), threads=1)
                if "scale" in meta:
                    f.dequantize(t.name, threads=1)
            except EntropyError as exc:
                _refused(exc)


def _seal_header(raw: bytearray) -> bool:
    """Recompute the header CRC of ``raw`` in place (FORMAT.md §3); False if the header length cannot be right."""
    if len(raw) < 32:
        return False
    (hlen,) = struct.unpack_from("<I", raw, 12)
    if 32 + hlen > len(raw):
        return False
    struct.pack_into("<I", raw, 28, zlib.crc32(raw[32 : 32 + hlen], zlib.crc32(raw[:28])))
    return True


def resealed(data: bytes, path: str) -> bytes | None:
    """``data`` with its checksums made to match (header CRC, then every tensor's index and payload CRC, the
    tensors' regions placed as FORMAT.md §2 does), so that a mutated file reaches the checks behind them; None
    if nothing changes. Uses ``path`` as scratch space."""
    import entropy
    from entropy.errors import EntropyError

    raw = bytearray(data)
    if not _seal_header(raw):
        return None
    with open(path, "wb") as fh:
        fh.write(raw)
    try:
        fi = entropy.info(path)
    except EntropyError:
        return bytes(raw) if raw != data else None
    hend = fi.header_bytes
    pos, at = hend, 32
    for t in fi.tensors:
        payload_at = entropy.align(pos + t.index_bytes)
        end = entropy.align(payload_at + t.payload_bytes)
        for stored, start, stop in ((t.index_crc32, pos, payload_at), (t.payload_crc32, payload_at, end)):
            # the CRC fields follow each other in the records: find each after the previous one
            found = raw.find(struct.pack("<I", stored), at, hend)
            if found < 0 or stop > len(raw):
                continue
            struct.pack_into("<I", raw, found, zlib.crc32(raw[start:stop]))
            at = found + 4
        pos = end
    _seal_header(raw)
    return bytes(raw) if raw != data else None


class _Target:
    """The fuzz target: writes each input to one reused file (``input.hqt`` in the given directory, else in a
    temporary one, memory-backed where possible) and checks it as it is, then with its checksums re-sealed (libFuzzer's mutations almost never keep a CRC right, and a reader that
    stopped at every CRC would hide everything behind it)."""

    def __init__(self, directory: Path | None = None) -> None:
        # a fuzzing run ends inside libFuzzer, which exits the process: it writes into its own work directory,
        # which outlives it; other callers get a temporary directory, removed by close()
        if directory is not None:
            self.dir, self.owned = str(directory), False
        else:
            base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self.dir, self.owned = tempfile.mkdtemp(prefix="hqt-fuzz-", dir=base), True
        self.path = os.path.join(self.dir, "input.hqt")

    def __call__(self, data: bytes) -> None:
        with open(self.path, "wb") as fh:
            fh.write(data)
        check_file(self.path)
        again = resealed(data, self.path)
        if again is not None:
            with open(self.path, "wb") as fh:
                fh.write(again)
            check_file(self.path)

    def close(self) -> None:
        try:
            os.remove(self.path)
        except OSError:
            pass
        if self.owned:
            os.rmdir(self.dir)


def _function_lines(code) -> set[int]:
    """Line numbers of the function bodies in a code object (module and class bodies run at import: left out)."""
    import inspect

    lines = set()
    if code.co_flags & inspect.CO_OPTIMIZED:
        lines = {ln for _, _, ln in code.co_lines() if ln is not None and ln != code.co_firstlineno}
    for const in code.co_consts:
        if hasattr(const, "co_lines"):
            lines |= _function_lines(const)
    return lines


def line_coverage(paths: list[str]) -> dict[str, tuple[int, int]]:
    """Run every file of ``paths`` through the fuzz target (as it is, then re-sealed) under a line tracer; returns,
    for each of entropy's Python modules that the reading runs at all (the numba kernels left out: they run
    compiled), (lines run, lines) of its functions."""
    import entropy

    root = Path(entropy.__file__).resolve().parent
    kernels = {p.resolve() for k in root.rglob("kernels") if k.is_dir() for p in k.rglob("*.py")}
    files = [p for p in root.rglob("*.py") if p.resolve() not in kernels]
    wanted = {str(p) for p in files}
    ran: dict[str, set[int]] = {f: set() for f in wanted}

    def tracer(frame, event, arg):
        f = frame.f_code.co_filename
        if f not in wanted:
            return None
        def local(frame, event, arg):
            if event == "line":
                ran[f].add(frame.f_lineno)
            return local
        return local

    import threading

    target = _Target()
    sys.settrace(tracer)
    threading.settrace(tracer)
    try:
        for p in paths:
            try:
                target(Path(p).read_bytes())  # as the fuzzer runs it: as it is, then re-sealed
            except Exception:  # a finding: still counted (a replay without --lines reports it)
                pass
    finally:
        sys.settrace(None)
        threading.settrace(None)
        target.close()
    out = {}
    for p in sorted(files):
        lines = _function_lines(compile(p.read_text(), str(p), "exec"))
        if ran[str(p)] & lines:
            out[str(p.relative_to(root.parent))] = (len(ran[str(p)] & lines), len(lines))
    return out


class _ArrayCompareGuard:
    """atheris 3.0's comparison hook (``atheris._trace_cmp``, which instrumented code calls for every ``<``,
    ``==``, ...) leaks memory when an operand is a numpy array or scalar: about 1.5 KB per input here, so that
    the memory limit ended a 30-minute run. Such comparisons (of no use to the fuzzer's data-flow guidance) are
    done directly; every other one still goes through the hook. ``atheris.Fuzz`` installs its hook when it
    starts, so :meth:`ensure` puts the guard back in front of it at every input (one attribute check)."""

    def __init__(self, atheris) -> None:
        import dis
        import operator

        import numpy as np

        self.atheris = atheris
        ops = {"<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne, ">": operator.gt,
               ">=": operator.ge}
        try:
            from atheris.version_dependent import CMP_OP_SHIFT_AMOUNT as shift
        except ImportError:  # (older atheris: comparison arguments are not shifted)
            shift = 0
        by_arg = [ops[name] for name in dis.cmp_op]
        numpy_types = (np.ndarray, np.generic)

        def trace_cmp(left, right, op, counter, left_is_const):
            if isinstance(left, numpy_types) or isinstance(right, numpy_types):
                return by_arg[op >> shift](left, right)
            return self.native(left, right, op, counter, left_is_const)

        self.guard = trace_cmp
        self.native = atheris._trace_cmp

    def ensure(self) -> None:
        hook = self.atheris._trace_cmp
        if hook is not self.guard:
            self.native = hook
            self.atheris._trace_cmp = self.guard


def _kernel_modules() -> list[str]:
    """Module names of entropy's numba kernels (wherever they live in the package): left uninstrumented."""
    import importlib.util

    spec = importlib.util.find_spec("entropy")
    root = Path(spec.origin).parent
    # atheris excludes exact module names, not packages with their submodules: name every module of each
    # kernels package (its __init__ as the package itself)
    out = []
    for k in (p for p in root.rglob("kernels") if p.is_dir()):
        for f in sorted(k.rglob("*.py")):
            parts = f.relative_to(root).with_suffix("").parts
            out.append("entropy." + ".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _libfuzzer_args(args: argparse.Namespace, work: Path, seed_dir: Path) -> list[str]:
    corpus = work / "corpus"
    findings = work / "findings"
    corpus.mkdir(parents=True, exist_ok=True)
    findings.mkdir(parents=True, exist_ok=True)
    out = [sys.argv[0], str(corpus), str(seed_dir), f"-timeout={TIMEOUT_S}", f"-rss_limit_mb={RSS_LIMIT_MB}",
           f"-artifact_prefix={findings}/", "-print_final_stats=1", "-max_len=65536"]
    if args.seconds is not None:
        out.append(f"-max_total_time={args.seconds}")
    if args.runs is not None:
        out.append(f"-runs={args.runs}")
    return out + list(args.libfuzzer)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=None, help="stop after this many seconds (libFuzzer "
                    "-max_total_time)")
    ap.add_argument("--runs", type=int, default=None, help="stop after this many inputs (libFuzzer -runs)")
    ap.add_argument("--work", default="build/fuzz", help="directory of the seeds, the growing corpus and the "
                    "findings (default build/fuzz)")
    ap.add_argument("--replay", nargs="+", metavar="FILE", help="check these inputs and exit (no atheris needed)")
    ap.add_argument("--lines", action="store_true", help="with --replay: print the lines of entropy's Python "
                    "modules the inputs run (the kernels left out)")
    ap.add_argument("libfuzzer", nargs="*", help="further libFuzzer flags, after --")
    args = ap.parse_args(argv)
    if args.replay and args.lines:
        cov = line_coverage(args.replay)
        for mod, (ran, total) in cov.items():
            print(f"{mod:40s} {ran:5d} / {total:5d} lines")
        ran, total = (sum(v[i] for v in cov.values()) for i in (0, 1))
        print(f"{'all':40s} {ran:5d} / {total:5d} lines ({100.0 * ran / total:.1f}%) run by {len(args.replay)} inputs")
        return 0
    if args.replay:
        for p in args.replay:
            check_file(p)
            print(f"{p}: ok")
        return 0
    import atheris

    guard = _ArrayCompareGuard(atheris)
    with atheris.instrument_imports(include=["entropy"], exclude=_kernel_modules()):
        import entropy  # noqa: F401  (instrumented: its Python code reports coverage)
    from seeds import write_seeds

    work = Path(args.work)
    seed_dir = work / "seeds"
    write_seeds(seed_dir)  # with the writer of this checkout
    target = _Target(work)
    for p in sorted(seed_dir.iterdir()):  # compile or load the kernels before the clock starts
        target(p.read_bytes())

    def one_input(data: bytes) -> None:
        guard.ensure()
        target(data)

    atheris.Setup(_libfuzzer_args(args, work, seed_dir), one_input)
    try:
        atheris.Fuzz()  # exits the process when done
    finally:
        target.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
