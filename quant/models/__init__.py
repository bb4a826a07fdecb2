"""Models by name: the built-in EfficientNet-Lite0, any torchvision classification model, and any model a
Python function builds (``MODULE:FUNCTION``, :mod:`quant.models.user`).

``load_model(name)`` returns a :class:`LoadedModel` (eval-mode module + the preprocessing its weights
expect). Nothing is downloaded; see :mod:`quant.models.torchvision_models` for where weights come from.
Any other ``nn.Module`` can be used directly with the pipeline's Python API.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from torch import nn

from quant.errors import ModelError
from quant.images import Preprocessing

__all__ = ["LoadedModel", "load_model", "available_models", "check_model_name", "DEFAULT_MODEL",
           "EFFICIENTNET_PREPROCESSING"]

DEFAULT_MODEL = "efficientnet-lite0"
# TF EfficientNet evaluation: centre crop of 224/(224+32) of the short side, bicubic, (x - 127) / 128
EFFICIENTNET_PREPROCESSING = Preprocessing(
    size=224, crop_fraction=224 / 256, interpolation="bicubic", mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0)
)


@dataclass
class LoadedModel:
    """A model ready for the pipeline."""

    name: str
    model: nn.Module  # eval mode, on CPU
    preprocessing: Preprocessing
    weights: str  # where the weights came from (file path or "random-init")
    categories: list[str] | None = None  # class names when known


def available_models() -> list[str]:
    """Every name :func:`load_model` accepts (built-in first, then torchvision names)."""
    from quant.models.torchvision_models import torchvision_names

    return [DEFAULT_MODEL] + torchvision_names()


def _torchvision_name(name: str) -> str | None:
    from quant.models.torchvision_models import torchvision_names

    names = torchvision_names()
    return name if name in names else (name.replace("-", "_") if name.replace("-", "_") in names else None)


def _is_builtin(name: str) -> bool:
    return name.strip().lower().replace("_", "-") in (DEFAULT_MODEL, "efficientnet-lite")


def check_model_name(name: str) -> None:
    """Raise :class:`ModelError` for a name :func:`load_model` would not accept, without building anything
    (a ``MODULE:FUNCTION`` is checked for its module or file, not run)."""
    from quant.models.user import check_model_spec, is_model_spec

    if not name or not str(name).strip():
        raise ModelError("empty model name")
    if is_model_spec(name):
        check_model_spec(name)
    elif not _is_builtin(name) and _torchvision_name(name) is None:
        raise ModelError(f"unknown model {name!r}; available models: {', '.join(available_models())}, "
                         f"or MODULE:FUNCTION")


def load_model(
    name: str = DEFAULT_MODEL, *, weights: str | os.PathLike | None = None, random_init: bool = False
) -> LoadedModel:
    """Build model ``name`` with its weights, in eval mode on CPU: a name of :func:`available_models`, or
    ``MODULE:FUNCTION`` (a dotted module or ``path/to/file.py``, and a function returning an ``nn.Module`` or
    ``(module, preprocessing dict)``; see :mod:`quant.models.user`).

    ``weights``: a state-dict file to use instead of the default source. ``random_init``: allow random
    weights when no trained weights are found (torchvision models only). Raises :class:`ModelError`.
    """
    from quant.models.user import is_model_spec, load_model_spec

    if name and is_model_spec(name):
        module, prep = load_model_spec(name)
        if weights is not None:
            from quant.models.torchvision_models import load_state_file

            load_state_file(module, weights, name)
        return LoadedModel(name, module, prep, str(weights) if weights is not None else name)
    key = name.strip().lower().replace("_", "-") if name else name
    if key in (DEFAULT_MODEL, "efficientnet-lite"):
        from quant.models.efficientnet_lite import efficientnet_lite0, weights_path

        model = efficientnet_lite0(str(weights) if weights is not None else None)
        return LoadedModel(DEFAULT_MODEL, model, EFFICIENTNET_PREPROCESSING, str(weights or weights_path()))
    from quant.models.torchvision_models import load_torchvision

    tv = _torchvision_name(name)
    if tv is None:
        raise ModelError(f"unknown model {name!r}; available models: {', '.join(available_models())}, "
                         f"or MODULE:FUNCTION")
    model, prep, source, categories = load_torchvision(tv, weights=weights, random_init=random_init)
    return LoadedModel(tv, model, prep, source, categories)
