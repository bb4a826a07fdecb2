"""Exception types raised by :mod:`entropy`.

Every failure the codec or the file reader can detect is reported as a
subclass of :class:`EntropyError`, with a message that says what was wrong
and where (tensor name, chunk number, byte offset).
"""

from __future__ import annotations

__all__ = [
    "EntropyError", "CodebookError", "StreamError", "FormatError", "IntegrityError", "MissingTensorError", "SymbolError",
]


class EntropyError(Exception):
    """Base class of every error raised by :mod:`entropy`."""


class CodebookError(EntropyError, ValueError):
    """A code-length table is invalid (Kraft sum, maximum length, alphabet size)."""


class StreamError(EntropyError, ValueError):
    """A coded stream is malformed or damaged (bad code, chunk overrun, truncation)."""


class FormatError(EntropyError, ValueError):
    """A file does not follow FORMAT.md (bad magic, unknown version or field, bad length)."""


class IntegrityError(FormatError):
    """A checksum does not match: the header or a tensor's payload is damaged."""


class MissingTensorError(EntropyError, LookupError):
    """A file has no tensor of the requested name."""


class SymbolError(EntropyError, ValueError):
    """A value to encode lies outside the alphabet or has no code in the given codebook."""
