"""MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen, "MobileNetV2: Inverted Residuals and
Linear Bottlenecks", CVPR 2018) with a replaceable global pooling.

The network is torchvision's definition, unchanged: its feature stack (standard ImageNet
strides, total stride 32, so a 32x32 image ends as a 1x1 map of 1280 channels) and its head
``Dropout(0.2) + Linear(1280, num_classes)``; only the pooling between them is ours.

``cifar_strides=True`` gives the variant of the widely used CIFAR model zoo: the stem and the
first 24-channel stage keep stride 1 (total stride 8), so a 32x32 image ends as a 4x4 map; the
layers and parameter count are unchanged.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from .. import pools

#: Channels of the last 1x1 convolution at ``width_mult <= 1``.
LAST_CHANNEL = 1280


#: torchvision's stages (expansion t, channels c, blocks n, stride s) with the 24-channel
#: stage at stride 1, as in the CIFAR model zoo.
CIFAR_STAGES = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2],
                [6, 320, 1, 1]]


def pool_channels(width_mult: float = 1.0) -> int:
    """Channels the pooling sees, by torchvision's rule (its private ``_make_divisible``, divisor 8).

    The last layer only ever widens: ``width_mult < 1`` keeps 1280 channels.
    """
    value = LAST_CHANNEL * max(1.0, width_mult)
    channels = max(8, int(value + 4) // 8 * 8)
    if channels < 0.9 * value:  # rounding down must not remove more than 10 %
        channels += 8
    return channels


class MobileNetV2(nn.Module):
    """torchvision's MobileNetV2 (Sandler et al. 2018) with the pooling as ``.pool``.

    Args:
        num_classes: outputs of the final linear layer.
        pool: the global pooling ``[B, C, H, W] -> [B, C]`` (or ``[B, C, 1, 1]``) with
            ``C = pool_channels(width_mult)``; ``None`` is global average pooling.
        width_mult: the width multiplier of the paper (torchvision's ``width_mult``).
        dropout: dropout probability before the final linear layer.
        cifar_strides: stride 1 in the stem and the first 24-channel stage (4x4 last map on
            32x32 images) instead of torchvision's ImageNet strides (1x1).
    """

    def __init__(self, num_classes: int = 10, pool: nn.Module | None = None, width_mult: float = 1.0,
                 dropout: float = 0.2, cifar_strides: bool = False):
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        # torchvision initialises its model in the constructor (Kaiming normal fan_out with gain
        # sqrt(2) for convolutions, BN 1/0, N(0, 0.01) linears), i.e. before the pool exists.
        reference = torchvision.models.mobilenet_v2(
            weights=None, num_classes=num_classes, width_mult=width_mult, dropout=dropout,
            inverted_residual_setting=CIFAR_STAGES if cifar_strides else None)
        if cifar_strides:
            reference.features[0][0].stride = (1, 1)  # the stem convolution
        self.pool_channels: int = reference.last_channel
        self.features = reference.features
        self.pool = pool if pool is not None else pools.create("gap", self.pool_channels)
        self.classifier = reference.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)  # also accepts poolings that return [B, C, 1, 1]
        return self.classifier(x)
