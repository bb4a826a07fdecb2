"""quant: post-training quantization (ACIQ, bit/bin allocation, bias correction) with integer codes out."""

from quant.aciq import alpha_multiplier, gauss_mse, laplace_mse
from quant.allocation import allocate_bins, allocate_bits
from quant.arrays import quantize_array
from quant.bias_correction import correct_weights
from quant.bn_fold import fold_conv_bn
from quant.clipping import CLIP_METHODS, clip_range
from quant.kl import kl_threshold
from quant.quantizer import QuantizedTensor, QuantParams, fake_quantize, quantize
from quant.statistics import TensorStatistics
from quant.step_ratio import step_ratio, step_size

__all__ = [
    "alpha_multiplier", "gauss_mse", "laplace_mse", "allocate_bins", "allocate_bits", "quantize_array",
    "correct_weights", "fold_conv_bn", "CLIP_METHODS", "clip_range", "kl_threshold", "QuantizedTensor",
    "QuantParams", "fake_quantize", "quantize", "TensorStatistics", "step_ratio", "step_size",
]
