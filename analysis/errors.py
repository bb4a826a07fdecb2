"""Exception types raised by :mod:`analysis`."""

from __future__ import annotations

__all__ = ["AnalysisError", "InputFormatError"]


class AnalysisError(Exception):
    """Base class of every error raised by :mod:`analysis`."""


class InputFormatError(AnalysisError):
    """An input file (.npy, .npz, .pt, .safetensors) cannot be read or holds unsupported data."""
