"""Named quantization recipes: presets of :class:`quant.config.QuantConfig` fields.

* ``naive``: per-channel min/max ranges for weights and activations, round to nearest, nothing else (the
  baseline every method is measured against).
* ``paper``: Banner et al. (NeurIPS 2019) as the reference code's "all methods" run: ACIQ-Laplace activation
  clipping, per-channel bit allocation (eq. 11) for weights and activations, and mean bias correction of the
  weights (eq. 13's additive term, the reference code's ``-bcw``).
* ``best``: what works best on the depthwise networks here (EfficientNet-Lite0); every part and the reason for
  it is in ``quant/METHODS.md`` ("Recipes").

All three keep the first layer's weights and the classifier's weights at 8 bits, the practice of the literature and
of the paper's reference code, and the classifier's output (the logits, the network's output rather than a stored
feature map) in FP32; ``first_layer_wbits`` / ``classifier_bits`` / ``classifier_output_bits`` override that.
A recipe sets only the fields it names; :func:`recipe_config` applies a recipe and then any field given by the
caller, so every flag overrides the preset.
"""

from __future__ import annotations

from typing import Any

from quant.errors import QuantError

__all__ = ["ADAROUND_ITERATIONS", "RECIPES", "recipe_settings", "recipe_config", "check_recipe", "check_settings"]

# AdaRound steps per layer, in best and for a bare --adaround (held-out loss ratios change by <= 3% from 500 to
# 2000 steps on EfficientNet-Lite0, see quant/PIPELINE.md)
ADAROUND_ITERATIONS = 1000

_BASE: dict[str, Any] = dict(
    clip="minmax", weight_clip="minmax", clip_window="mean", per_channel_weights=True, per_channel_activations=True,
    bit_alloc=(), bin_alloc=(), bias_correction=None, bias_correction_form="paper", equalize=False, adaround=0,
    first_layer_wbits=8, first_layer_abits="same", classifier_bits=8, classifier_output_bits=None,
)

RECIPES: dict[str, dict[str, Any]] = {
    "naive": dict(_BASE),
    "paper": dict(_BASE, clip="aciq-laplace", bit_alloc=("weights", "activations"), bias_correction="mean"),
    "best": dict(_BASE, clip="auto", weight_clip="mse", equalize=True, adaround=ADAROUND_ITERATIONS, bias_correction="empirical"),
}


def check_recipe(name: str) -> str:
    """``name`` normalised (lower case), or :class:`QuantError` listing the recipes."""
    key = str(name).strip().lower()
    if key not in RECIPES:
        raise QuantError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return key


def recipe_settings(name: str) -> dict[str, Any]:
    """The :class:`QuantConfig` fields recipe ``name`` sets (a copy)."""
    return dict(RECIPES[check_recipe(name)])


def recipe_config(name: str, wbits: float | None = 4, abits: float | None = 4, **overrides: Any) -> Any:
    """The :class:`quant.config.QuantConfig` of recipe ``name`` at ``wbits``/``abits``; ``overrides`` (any
    QuantConfig field) win over the recipe. Raises :class:`QuantError` for an unknown recipe or a bad field."""
    from quant.config import QuantConfig

    kw = recipe_settings(name)
    kw.update(overrides)
    try:
        return QuantConfig(wbits=wbits, abits=abits, **kw)
    except TypeError as exc:  # an unknown field name
        raise QuantError(f"recipe {name!r}: {exc}") from exc


def check_settings(*, model: str | None = None, recipe: str | None = None, wbits: float | None = 4,
                   abits: float | None = 4, **fields: Any) -> Any:
    """Validate a run's settings before anything is loaded: the model name (or MODULE:FUNCTION, whose module is
    located but not run), the recipe and every :class:`quant.config.QuantConfig` field. Returns the config;
    raises :class:`QuantError` (:class:`ModelError` for the model) with a one-line message."""
    if model is not None:
        from quant.models import check_model_name

        check_model_name(model)
    return recipe_config(recipe or "naive", wbits, abits, **fields)
