"""Exception types raised by :mod:`analysis`."""

from __future__ import annotations

__all__ = ["AnalysisError", "InputFormatError", "TensorNameError"]


class AnalysisError(Exception):
    """Base class of every error raised by :mod:`analysis`."""


class InputFormatError(AnalysisError):
    """An input file (.npy, .npz, .pt, .safetensors) cannot be read or holds unsupported data."""


class TensorNameError(AnalysisError):
    """A tensor name cannot be written into a multi-tensor file: it could act as a path (``..``, ``/x``, NUL...)."""
