"""Any torchvision classification model by name, with weights from a local file or the torch hub cache.

Nothing is downloaded. Weights come from, in this order:

1. ``weights=PATH``: a state dict saved with ``torch.save`` (or a ``.safetensors`` file);
2. the user's torch hub cache, ``torch.hub.get_dir()/checkpoints/<file>``, where ``<file>`` is the standard
   file name of one of the model's torchvision weight entries (``DEFAULT`` first), e.g.
   ``resnet50-11ad3fa6.pth``. Put a file there with ``torchvision.models.resnet50(weights="DEFAULT")`` on a
   machine with network access, or copy it;
3. ``random_init=True``: random weights, only when explicitly asked for.

Otherwise :class:`~quant.errors.ModelError` explains these options. Preprocessing (resize/crop ratio,
interpolation, ImageNet mean/std) follows the matching torchvision weight entry.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from quant.errors import ModelError
from quant.images import Preprocessing
from quant.torch_files import first_line, load_error_line, state_dict_mismatch

__all__ = ["torchvision_names", "load_torchvision", "hub_checkpoint", "load_state_file"]

log = logging.getLogger(__name__)

# builders that change their architecture when pretrained weights are requested
_PRETRAINED_KWARGS = {
    "inception_v3": {"transform_input": True, "aux_logits": True, "init_weights": False},
    "googlenet": {"transform_input": True, "aux_logits": True, "init_weights": False},
}


def torchvision_names() -> list[str]:
    """Names of torchvision's ImageNet classification models (``torchvision.models.list_models``)."""
    from torchvision import models

    return sorted(models.list_models(module=models))


def _weight_entries(name: str) -> list[Any]:
    from torchvision import models

    try:
        enum = models.get_model_weights(name)
    except (ValueError, KeyError):
        return []
    default = enum.DEFAULT
    return [default] + [w for w in enum if w is not default]


def hub_checkpoint(name: str) -> tuple[Path | None, Any]:
    """(path, weight entry) of the first of ``name``'s standard weight files present in the hub cache."""
    entries = _weight_entries(name)
    ckpt_dir = Path(torch.hub.get_dir()) / "checkpoints"
    for entry in entries:
        path = ckpt_dir / os.path.basename(entry.url)
        if path.is_file():
            return path, entry
    return None, (entries[0] if entries else None)


def _preprocessing(entry: Any) -> Preprocessing:
    crop, resize, interp = 224, 256, "bilinear"
    if entry is not None:
        kw = getattr(entry.transforms, "keywords", {}) or {}
        crop = int(kw.get("crop_size", crop))
        resize = int(kw.get("resize_size", round(crop / 0.875)))
        mode = kw.get("interpolation")
        if mode is not None:
            interp = str(getattr(mode, "value", mode)).lower()
    return Preprocessing(size=crop, crop_fraction=crop / resize, interpolation=interp)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a ModelError
        raise ModelError(f"cannot read weights file {path}: {load_error_line(exc)}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"{path} does not hold a state dict (found {type(state).__name__})")
    # checkpoints saved from DataParallel prefix every key with "module."
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_file(model: nn.Module, weights: str | os.PathLike, name: str) -> None:
    """Load a state-dict file (torch.save or .safetensors) into ``model`` strictly; raises :class:`ModelError`."""
    path = Path(weights)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    state = _read_state_dict(path)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} does not match model {name}: {exc}") from exc


def load_torchvision(
    name: str, *, weights: str | os.PathLike | None = None, random_init: bool = False
) -> tuple[nn.Module, Preprocessing, str, list[str] | None]:
    """Build torchvision model ``name``; returns (model in eval mode, preprocessing, weights source, categories)."""
    from torchvision import models

    if name not in torchvision_names():
        raise ModelError(f"{name!r} is not a torchvision classification model")
    cached, entry = hub_checkpoint(name)
    categories = list(entry.meta.get("categories", [])) if entry is not None else None
    kwargs = dict(_PRETRAINED_KWARGS.get(name, {}))
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise ModelError(f"weights file {path} does not exist")
        state = _read_state_dict(path)
        source = str(path)
    elif cached is not None:
        state = _read_state_dict(cached)
        source = str(cached)
    elif random_init:
        log.warning("%s: random initial weights (random_init=True); accuracy is meaningless", name)
        torch.manual_seed(0)
        extra = {"init_weights": True} if name in _PRETRAINED_KWARGS else {}
        model = models.get_model(name, weights=None, **extra)
        return model.eval(), _preprocessing(entry), "random-init", categories
    else:
        hint = f"{torch.hub.get_dir()}/checkpoints/{os.path.basename(entry.url)}" if entry is not None else None
        raise ModelError(
            f"no weights for {name}: nothing is downloaded. Pass --weights PATH (a saved state dict), "
            + (f"or place the torchvision file at {hint} (e.g. run torchvision.models.{name}(weights='DEFAULT') "
               "once on a machine with network access), " if hint else "")
            + "or use --random-init for random weights"
        )
    if kwargs.get("aux_logits") and not any(k.startswith(("AuxLogits.", "aux1.", "aux2.")) for k in state):
        kwargs["aux_logits"] = False
    fc = [k for k in state if k.endswith(("fc.weight", "classifier.weight", "head.weight", "heads.head.weight"))]
    if fc:
        kwargs.setdefault("num_classes", int(state[fc[-1]].shape[0]))
    model = None
    try:
        model = models.get_model(name, weights=None, **kwargs)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        why = (state_dict_mismatch(model.state_dict(), state) if model is not None else None) or first_line(exc)
        raise ModelError(f"{source} does not match torchvision's {name}: {why}") from exc
    # the auxiliary classifiers are training-only
    if getattr(model, "aux_logits", False):
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)
    return model.eval(), _preprocessing(entry), source, categories
