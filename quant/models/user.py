"""Any model from a Python function: ``MODULE:FUNCTION`` (a dotted module path, or ``path/to/file.py:function``).

The function is called with no arguments and returns either an ``nn.Module`` or a pair ``(module, preprocessing)``.
``preprocessing`` is a dict with

* ``input_size``: the side of the square input in pixels (int),
* ``mean`` and ``std``: three numbers each, per RGB channel, on the 0..1 pixel scale of torchvision
  (``(0.485, 0.456, 0.406)``); values above 1 are read on the 0..255 scale,
* ``crop_fraction`` (optional, default 0.875): the centred square crop as a fraction of the short side,
* ``interpolation`` (optional, default ``"bilinear"``): ``"bilinear"``, ``"bicubic"`` or ``"nearest"``.

Without a preprocessing dict the model gets torchvision's ImageNet preprocessing (224 pixels, crop 0.875,
bilinear, ImageNet mean/std). The module is put in eval mode on the CPU. A file is imported under a private module
name (its own folder is not added to ``sys.path``); a dotted module is imported normally. Whatever the user's code
prints while it is imported or called (``Loaded pretrained weights for ...``) goes to stderr, so that stdout keeps
only what the command writes (e.g. its JSON).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable

from quant.errors import ModelError

__all__ = ["is_model_spec", "parse_model_spec", "check_model_spec", "load_model_spec", "preprocessing_from_dict"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_KEYS = {"input_size", "mean", "std", "crop_fraction", "interpolation"}


def is_model_spec(name: str) -> bool:
    """True when ``name`` has the MODULE:FUNCTION form (rather than a model name)."""
    return ":" in str(name)


def parse_model_spec(spec: str) -> tuple[str, str, bool]:
    """(module or file, function, is_file) of ``MODULE:FUNCTION``; raises :class:`ModelError` when malformed."""
    target, sep, func = str(spec).rpartition(":")
    if not sep or not target or not func.isidentifier():
        raise ModelError(f"model {spec!r}: expected MODULE:FUNCTION (a dotted module or path/to/file.py, a colon, "
                         f"and the name of a function returning an nn.Module)")
    is_file = target.endswith(".py") or os.sep in target or "/" in target
    if not is_file and not all(part.isidentifier() for part in target.split(".")):
        raise ModelError(f"model {spec!r}: {target!r} is neither a dotted module path nor a .py file")
    return target, func, is_file


def check_model_spec(spec: str) -> None:
    """Check that the module or file of ``spec`` exists (without running it); raises :class:`ModelError`."""
    target, _, is_file = parse_model_spec(spec)
    if is_file:
        if not Path(target).is_file():
            raise ModelError(f"model {spec!r}: file {target} not found")
        return
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        raise ModelError(f"model {spec!r}: cannot locate module {target!r} ({exc})") from exc
    if found is None:
        raise ModelError(f"model {spec!r}: no module named {target!r} (is it on PYTHONPATH?)")


def _import(target: str, is_file: bool, spec: str) -> Any:
    try:
        if not is_file:
            return importlib.import_module(target)
        path = Path(target).resolve()
        name = "_huffquant_model_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
        if name in sys.modules:
            return sys.modules[name]
        ispec = importlib.util.spec_from_file_location(name, path)
        if ispec is None or ispec.loader is None:
            raise ModelError(f"model {spec!r}: cannot import {path}")
        module = importlib.util.module_from_spec(ispec)
        sys.modules[name] = module
        try:
            ispec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return module
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is reported as a model error
        raise ModelError(f"model {spec!r}: importing {target} failed: {type(exc).__name__}: {exc}") from exc


def preprocessing_from_dict(d: dict[str, Any], where: str = "preprocessing") -> Any:
    """A :class:`quant.images.Preprocessing` from the dict described in the module docstring."""
    from quant.images import Preprocessing

    if not isinstance(d, dict):
        raise ModelError(f"{where} must be a dict, got {type(d).__name__}")
    unknown = set(d) - _KEYS
    missing = {"input_size", "mean", "std"} - set(d)
    if unknown or missing:
        raise ModelError(f"{where}: " + (f"unknown keys {sorted(unknown)}; " if unknown else "")
                         + (f"missing keys {sorted(missing)}; " if missing else "")
                         + f"expected {sorted(_KEYS)}")
    try:
        size = int(d["input_size"])
        mean = tuple(float(v) for v in d["mean"])
        std = tuple(float(v) for v in d["std"])
        crop = float(d.get("crop_fraction", 0.875))
        interp = str(d.get("interpolation", "bilinear")).lower()
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: bad value ({exc})") from exc
    if size < 1 or len(mean) != 3 or len(std) != 3 or not all(s > 0 for s in std) or not 0 < crop <= 1:
        raise ModelError(f"{where}: need input_size >= 1, three means, three positive stds and 0 < crop_fraction "
                         f"<= 1, got {d}")
    if interp not in ("bilinear", "bicubic", "nearest"):
        raise ModelError(f"{where}: interpolation must be bilinear, bicubic or nearest, got {interp!r}")
    if max(mean) <= 1.0 and max(std) <= 1.0:  # 0..1 pixel scale -> 0..255
        mean = tuple(v * 255.0 for v in mean)
        std = tuple(v * 255.0 for v in std)
    return Preprocessing(size=size, crop_fraction=crop, interpolation=interp, mean=mean, std=std)


def load_model_spec(spec: str) -> tuple[Any, Any]:
    """Call the function of ``MODULE:FUNCTION``; returns (module in eval mode on CPU, Preprocessing)."""
    from torch import nn

    target, func_name, is_file = parse_model_spec(spec)
    if is_file and not Path(target).is_file():
        raise ModelError(f"model {spec!r}: file {target} not found")
    with contextlib.redirect_stdout(sys.stderr):  # the user's prints must not mix with a command's output
        module = _import(target, is_file, spec)
        func: Callable[[], Any] | None = getattr(module, func_name, None)
        if not callable(func):
            raise ModelError(f"model {spec!r}: {target} has no function {func_name!r}")
        try:
            out = func()
        except Exception as exc:  # noqa: BLE001 - the user's function failed
            raise ModelError(f"model {spec!r}: {func_name}() failed: {type(exc).__name__}: {exc}") from exc
    prep_dict = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ModelError(f"model {spec!r}: {func_name}() returned a tuple of {len(out)}; expected "
                             f"(module, preprocessing)")
        out, prep_dict = out
    if not isinstance(out, nn.Module):
        raise ModelError(f"model {spec!r}: {func_name}() returned {type(out).__name__}, not a torch.nn.Module")
    if prep_dict is None:
        prep_dict = {"input_size": 224, "mean": _IMAGENET_MEAN, "std": _IMAGENET_STD}
    prep = preprocessing_from_dict(prep_dict, where=f"model {spec!r}: preprocessing")
    return out.to("cpu").eval(), prep
