"""Fold a batch-norm layer into the convolution or linear layer that feeds it.

For output channel o: s_o = γ_o/√(var_o + ε), W'_o = s_o·W_o and b'_o = (b_o − μ_o)·s_o + β_o (a zero bias is
created when the layer has none). BN acts per output channel, so the same formula holds for groups = 1,
grouped and depthwise convolutions. The BN must be in inference form (running statistics).
"""

from __future__ import annotations

import torch
from torch import nn

from quant.errors import ModelError

__all__ = ["fold_conv_bn", "reset_bn"]

_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def fold_conv_bn(conv: nn.Module, bn: nn.Module, *, reset: bool = False) -> None:
    """Fold ``bn`` into ``conv`` in place (Conv1d/2d/3d of any groups, or Linear).

    With ``reset=True`` the BN is then set to the identity (γ = 1, β = 0, μ = 0, var = 1 − ε) so the model
    computes the same function whether or not the BN is still called; otherwise the caller must remove it.
    """
    if not isinstance(conv, _FOLDABLE):
        raise ModelError(f"cannot fold BN into {type(conv).__name__}; expected Conv1d/2d/3d or Linear")
    if not isinstance(bn, _BN):
        raise ModelError(f"expected a BatchNorm layer, got {type(bn).__name__}")
    out_ch = conv.out_features if isinstance(conv, nn.Linear) else conv.out_channels
    if bn.num_features != out_ch:
        raise ModelError(f"BN has {bn.num_features} features but {type(conv).__name__} has {out_ch} outputs")
    if bn.running_mean is None or bn.running_var is None:
        raise ModelError("BN has no running statistics (track_running_stats=False); cannot fold")
    w = conv.weight
    mean = bn.running_mean.to(torch.float64)
    var = bn.running_var.to(torch.float64)
    gamma = bn.weight.to(torch.float64) if bn.weight is not None else torch.ones_like(mean)
    beta = bn.bias.to(torch.float64) if bn.bias is not None else torch.zeros_like(mean)
    s = gamma / torch.sqrt(var + bn.eps)
    if not torch.isfinite(s).all():
        raise ModelError("BN scale is not finite (negative running_var?)")
    shape = [-1] + [1] * (w.dim() - 1)
    w.copy_((w.to(torch.float64) * s.reshape(shape)).to(w.dtype))
    b = conv.bias.to(torch.float64) if conv.bias is not None else torch.zeros_like(mean)
    new_b = ((b - mean) * s + beta).to(w.dtype)
    if conv.bias is None:
        conv.bias = nn.Parameter(new_b.to(w.device), requires_grad=w.requires_grad)
    else:
        conv.bias.copy_(new_b)
    if reset:
        reset_bn(bn)


@torch.no_grad()
def reset_bn(bn: nn.Module) -> None:
    """Make a BatchNorm layer the identity in eval mode."""
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    if bn.weight is not None:
        bn.weight.fill_(1.0)
    if bn.bias is not None:
        bn.bias.zero_()
