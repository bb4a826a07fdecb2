"""Exception types raised by :mod:`quant`."""

from __future__ import annotations

__all__ = ["QuantError", "ModelError", "CalibrationError"]


class QuantError(Exception):
    """Base class of every error raised by :mod:`quant` (bad bits, NaN input, empty tensor...)."""


class ModelError(QuantError):
    """A model cannot be built, loaded or instrumented (unknown name, missing weights, no layers)."""


class CalibrationError(QuantError):
    """Statistics are missing, inconsistent or non-finite (the message names the layer)."""
