"""The pipeline leaves EfficientNet-Lite0 intact at high precision (issue 10, item 1).

Offline statistics from the built-in calibration crops, evaluation on built-in evaluation crops (disjoint images
of the same photos): W16A16 with every layer at 16 bits, including the first layer and the classifier, must keep
>= 98% of the FP32 top-1 decisions and a logit SQNR >= 30 dB. Rounding at 16 bits costs nothing, so a loss here
means the pipeline itself (ranges that clip unseen images, folding, fusion) damages the network.
"""

from __future__ import annotations

import pytest

from quant.evaluation import evaluate_model
from quant.images import builtin_images
from quant.models import load_model
from quant.config import QuantConfig

pytestmark = pytest.mark.slow


def test_w16a16_offline_keeps_the_network():
    lm = load_model()
    calib = builtin_images(lm.preprocessing, None, split="calibration")
    images = builtin_images(lm.preprocessing, 90, split="evaluation")
    assert not {n for n, _, _ in calib.items} & {n for n, _, _ in images.items}
    cfg = QuantConfig(wbits=16, abits=16, first_layer_wbits=16, classifier_bits=16)
    res = evaluate_model(lm, cfg, images=images, calibration_images=calib, batch_size=45, layer_sqnr=False)
    assert res.num_images == 90
    assert res.top1_agreement >= 0.98
    assert res.logit_sqnr_db >= 30.0
