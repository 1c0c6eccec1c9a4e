"""CIFAR VGG with batch norm (Simonyan & Zisserman, "Very Deep Convolutional Networks for
Large-Scale Image Recognition", ICLR 2015; batch norm after every convolution).

The convolutions are configurations A, B, D and E of the paper (VGG-11/13/16/19), built by
torchvision's own ``make_layers`` so that the feature stack is exactly torchvision's. Its five
max-pools take a 32x32 image to a 1x1 map of 512 channels, so the ImageNet head (7x7 adaptive
pool, 4096-wide layers) is replaced by the usual CIFAR head of 512-wide layers.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.vgg import cfgs, make_layers

from .. import pools

#: torchvision's configuration letter of each architecture (the paper's table 1 columns).
CONFIGS: dict[str, str] = {
    "vgg11bn": "A",
    "vgg13bn": "B",
    "vgg16bn": "D",
    "vgg19bn": "E",
}

#: Channels of the last convolution in every configuration; the pooling sees them.
POOL_CHANNELS = 512


class CifarVGG(nn.Module):
    """VGG with batch norm for 32x32 images (Simonyan & Zisserman 2015), replaceable pooling.

    ``features -> pool -> Linear(512, 512)-ReLU-Dropout-Linear(512, 512)-ReLU-Dropout-
    Linear(512, num_classes)``.

    Args:
        config: torchvision's configuration letter, ``"A"``, ``"B"``, ``"D"`` or ``"E"``.
        num_classes: outputs of the final linear layer.
        pool: the global pooling ``[B, 512, H, W] -> [B, 512]`` (or ``[B, 512, 1, 1]``);
            ``None`` is global average pooling.
        dropout: dropout probability of the two hidden layers of the head.
        last_maxpool: ``False`` drops the fifth max-pool, so a 32x32 image ends as a 2x2 map
            instead of 1x1 (same parameters: a max-pool has none). On a 1x1 map every spatial
            statistic is the identity; the 2x2 variant lets the pooling matter.
    """

    def __init__(self, config: str, num_classes: int = 10, pool: nn.Module | None = None,
                 dropout: float = 0.5, last_maxpool: bool = True):
        super().__init__()
        if config not in cfgs:
            raise ValueError(f"unknown VGG configuration {config!r}: choose one of {', '.join(cfgs)}")
        self.pool_channels = POOL_CHANNELS
        self.features = make_layers(cfgs[config], batch_norm=True)
        if not last_maxpool:  # the last layer of make_layers' stack is the fifth max-pool
            self.features = self.features[:-1]
        # A placeholder keeps `pool` between `features` and `classifier` in the module order;
        # the real pooling is attached after the weight init below.
        self.pool: nn.Module = nn.Identity()
        self.classifier = nn.Sequential(
            nn.Linear(POOL_CHANNELS, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(512, num_classes),
        )

        # torchvision's VGG init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:  # make_layers' convolutions always have one
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)

        # Attached only now so that the init above never overwrites the pooling's own parameters.
        self.pool = pool if pool is not None else pools.create("gap", self.pool_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)  # also accepts poolings that return [B, C, 1, 1]
        return self.classifier(x)
