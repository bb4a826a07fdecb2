"""How the codec codes a stream: :class:`CodecOptions`, the one definition of those options and of their checks.

:func:`entropy.encode` takes a :class:`CodecOptions`, or its fields as keyword arguments; so do the layout search
(:func:`entropy.layout_choices`) and the file (:class:`entropy.FileOptions` holds one). :meth:`CodecOptions.of`
is the one place where keyword arguments become options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from entropy.codec.lengths import MAX_SUPPORTED_LENGTH
from entropy.codec.params import MAX_CHUNK_SIZE, MODES
from entropy.errors import EntropyError

__all__ = ["CodecOptions", "check_int", "given_or_default"]

T = TypeVar("T")

# the modes each ``group`` allows: 1 single values in a code, 2 pairs in a code, "auto" any mode (only it stores)
_GROUPS = {1: ("plain", "runs"), 2: ("pairs",), "auto": MODES}


def check_int(name: str, x: object, lo: int, hi: int) -> int:
    """``x`` as an int in ``lo..hi`` (EntropyError naming ``name`` otherwise; bools are not integers here)."""
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
        raise EntropyError(f"{name} must be an integer, got {x!r}")
    if not lo <= int(x) <= hi:
        raise EntropyError(f"{name} must be in {lo}..{hi}, got {x}")
    return int(x)


def given_or_default(options: T | None, default: T) -> T:
    """``options`` when it is of ``default``'s type, ``default`` when None (EntropyError for anything else)."""
    if options is None:
        return default
    if not isinstance(options, type(default)):
        raise EntropyError(f"options must be {type(default).__name__}, got {type(options).__name__}")
    return options


def _allowed_modes(group: object, mode: str | tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(group, bool) or group not in _GROUPS:
        raise EntropyError(f"group must be 1, 2 or 'auto', got {group!r}")
    wanted = (mode,) if isinstance(mode, str) else mode
    if "auto" in wanted:
        wanted = MODES
    if not wanted or any(m not in MODES for m in wanted):
        raise EntropyError(f"mode must be 'auto' or among {', '.join(MODES)}, got {mode!r}")
    allowed = tuple(m for m in MODES if m in wanted and m in _GROUPS[group])
    if not allowed:
        raise EntropyError(f"group {group!r} and mode {mode!r} leave no symbol mode")
    return allowed


@dataclass(frozen=True)
class CodecOptions:
    """How a stream is coded; every field has the default :func:`entropy.encode` and :func:`entropy.save` use.

    ``max_code_length``: code-length limit L in bits (1..24; 12 keeps the decode table 16 KiB). When more distinct
    symbols occur than ``2**L`` codes exist, the codec either raises the limit just enough (at most to 16 bits) or
    escapes the rarest values, whichever is smaller; a stream's params carry the limit used.
    ``chunk_size``: values per chunk (1..2**24; even for pairs).
    ``group``: 1 (single values in a code: plain or run symbols), 2 (pairs only) or ``"auto"`` (any mode, stored
    too).
    ``mode``: ``"auto"``, or one or several of ``"plain"``, ``"pairs"``, ``"runs"``, ``"stored"`` to choose among
    (with ``group``). ``"auto"`` picks the smallest total by exact size; pairs are considered when at most 256
    values occur and ``chunk_size`` is even, run symbols when the most frequent value is common and the plain code
    is measurably above the entropy; with ``group="auto"``, ``"stored"`` (no code: every value in the bits of its
    window, at copy speed) whenever no code is smaller (a tie goes to the stored stream).
    ``escape``: allow escapes (values coded raw after an escape symbol) for values outside a 65536-value window and
    for rare values when the code cannot hold them all; False raises SymbolError for values spanning more than
    65536 instead.

    Invalid values raise EntropyError when the options are made.

    >>> CodecOptions(max_code_length=10).chunk_size
    4096
    >>> CodecOptions(group=1).modes
    ('plain', 'runs')
    >>> CodecOptions(group=2, mode="plain")
    Traceback (most recent call last):
    ...
    entropy.errors.EntropyError: group 2 and mode 'plain' leave no symbol mode
    """

    max_code_length: int = 12
    chunk_size: int = 4096
    group: int | str = "auto"
    mode: str | tuple[str, ...] = "auto"
    escape: bool = True
    #: the symbol modes ``group`` and ``mode`` allow, in the order of MODES (derived)
    modes: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # (frozen: the checked values replace the given ones)
        set_(self, "max_code_length", check_int("max_code_length", self.max_code_length, 1, MAX_SUPPORTED_LENGTH))
        set_(self, "chunk_size", check_int("chunk_size", self.chunk_size, 1, MAX_CHUNK_SIZE))
        if isinstance(self.group, np.integer):
            set_(self, "group", int(self.group))
        mode = self.mode
        if not isinstance(mode, str):
            if not isinstance(mode, Iterable):
                raise EntropyError(f"mode must be a string or several strings, got {mode!r}")
            mode = tuple(mode)
            set_(self, "mode", mode)
        set_(self, "modes", _allowed_modes(self.group, mode))
        set_(self, "escape", bool(self.escape))

    @classmethod
    def of(cls, options: CodecOptions | None = None, /, **fields: object) -> CodecOptions:
        """``options`` (default: the defaults) with the named ``fields`` replaced: how every entry point turns
        its keyword arguments into options. Raises TypeError for a name that is not a field, EntropyError for a
        bad value.

        >>> CodecOptions.of(CodecOptions(chunk_size=1024), max_code_length=11)
        CodecOptions(max_code_length=11, chunk_size=1024, group='auto', mode='auto', escape=True)
        """
        options = given_or_default(options, _DEFAULT)
        if not fields:
            return options
        unknown = sorted(set(fields) - set(FIELDS))
        if unknown:
            raise TypeError(f"unexpected keyword argument(s) {', '.join(unknown)}; the codec's options are "
                            f"{', '.join(FIELDS)}")
        return dataclasses.replace(options, **fields)


#: the names of the options (the keyword arguments :meth:`CodecOptions.of` takes)
FIELDS = tuple(f.name for f in dataclasses.fields(CodecOptions) if f.init)
_DEFAULT = CodecOptions()
