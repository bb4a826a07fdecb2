"""One-line descriptions of what went wrong when reading a torch file or loading a state dict.

torch's own messages run to several lines (a pickled object) or hundreds (a state dict that does
not fit: one line per key). Callers put these summaries into their own exception types; the
original exception stays chained for ``--debug``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["first_line", "load_error_line", "state_dict_mismatch"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def first_line(exc: BaseException) -> str:
    """``TypeName: first non-empty line of the message`` (terminal colour codes removed)."""
    text = _ANSI.sub("", str(exc))
    line = next((s.strip() for s in text.splitlines() if s.strip()), "")
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def load_error_line(exc: BaseException) -> str:
    """One line saying why ``torch.load(path, weights_only=True)`` failed with ``exc``."""
    text = _ANSI.sub("", str(exc))
    if "weights_only" in text or "Weights only load failed" in text:
        found = _GLOBAL.search(text)
        what = f" (e.g. {found.group(1)})" if found else ""
        return (f"it holds pickled Python objects other than tensors{what}; torch files are read with "
                "torch.load(weights_only=True), which runs no pickled code: save a plain dict of tensors")
    return first_line(exc)


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(int(s) for s in shape)


def _fmt(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "[" + ", ".join(map(str, shape)) + "]"


def state_dict_mismatch(expected: Mapping[str, Any], state: Any) -> str | None:
    """One line on how ``state`` differs from ``expected`` (e.g. ``model.state_dict()``), or None.

    Counts shape mismatches, missing and unexpected keys, each with its first example.
    """
    if not isinstance(state, Mapping):
        return f"it holds a {type(state).__name__}, not a state dict"
    shapes = [(k, _shape(state[k]), _shape(v)) for k, v in expected.items()
              if k in state and _shape(state[k]) != _shape(v)]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    parts = []
    if shapes:
        k, got, want = shapes[0]
        parts.append(f"{len(shapes)} shape mismatch{'es' if len(shapes) > 1 else ''} "
                     f"(first: {k!r} is {_fmt(got)} in the file, {_fmt(want)} in the model)")
    if missing:
        parts.append(f"{len(missing)} missing key{'s' if len(missing) > 1 else ''} (first: {missing[0]!r})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key{'s' if len(unexpected) > 1 else ''} "
                     f"(first: {unexpected[0]!r})")
    return ", ".join(parts) or None
