"""CIFAR ResNets (He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016).

The CIFAR-10 networks of section 4.2 of the paper: a 3x3 convolution with 16 channels, then
three stages of ``n`` basic blocks with 16, 32 and 64 channels on 32x32, 16x16 and 8x8 maps,
then the global pooling and one linear layer: ``6n + 2`` weighted layers in all
(ResNet-20/32/44/56/110 for n = 3/5/7/9/18). There is no stem max-pool.

Where a stage changes the shape, the shortcut is either

* ``"projection"`` (option B of the paper, the benchmark's choice): 1x1 convolution with
  stride 2 followed by batch norm, or
* ``"identity_pad"`` (option A, what the paper used on CIFAR): the identity subsampled with
  stride 2 and padded with zero channels; it has no parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from .. import pools

#: Blocks per stage ``n`` of each CIFAR ResNet; the depth is ``6n + 2``.
BLOCKS_PER_STAGE: dict[str, int] = {
    "resnet8": 1,
    "resnet20": 3,
    "resnet32": 5,
    "resnet44": 7,
    "resnet56": 9,
    "resnet110": 18,
}

#: Channels of the three stages; the pooling sees the last one.
STAGE_WIDTHS: tuple[int, int, int] = (16, 32, 64)

SHORTCUTS: tuple[str, ...] = ("projection", "identity_pad")


class PadShortcut(nn.Module):
    """Option A shortcut of He et al. 2016: ``x[:, :, ::s, ::s]`` with zero channels appended.

    Parameter-free, so a ResNet built with it has only the paper's weighted layers.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"cannot pad {in_channels} channels down to {out_channels}")
        self.extra_channels = out_channels - in_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad pads the last dimensions first: (W left, W right, H top, H bottom, C front, C back).
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def _shortcut(kind: str, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The shortcut of a block that maps ``in_channels`` to ``out_channels`` with ``stride``."""
    if stride == 1 and in_channels == out_channels:
        return None  # plain identity: BasicBlock adds its input unchanged
    if kind == "projection":
        return nn.Sequential(
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    return PadShortcut(in_channels, out_channels, stride)


class CifarResNet(nn.Module):
    """A ``6n + 2``-layer CIFAR ResNet of He et al. 2016 with a replaceable global pooling.

    Args:
        blocks_per_stage: ``n``, the basic blocks in each of the three stages.
        num_classes: outputs of the final linear layer.
        pool: the global pooling ``[B, 64, H, W] -> [B, 64]`` (or ``[B, 64, 1, 1]``);
            ``None`` is global average pooling as in the paper.
        shortcut: ``"projection"`` (option B) or ``"identity_pad"`` (option A).
    """

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, pool: nn.Module | None = None,
                 shortcut: str = "projection"):
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError(f"blocks_per_stage must be >= 1, got {blocks_per_stage}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"unknown shortcut {shortcut!r}: choose one of {', '.join(SHORTCUTS)}")
        self.shortcut = shortcut
        self.in_channels = STAGE_WIDTHS[0]
        self.pool_channels = STAGE_WIDTHS[-1]

        self.conv1 = nn.Conv2d(3, STAGE_WIDTHS[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_stage(STAGE_WIDTHS[0], blocks_per_stage, stride=1)  # 32x32
        self.layer2 = self._make_stage(STAGE_WIDTHS[1], blocks_per_stage, stride=2)  # 16x16
        self.layer3 = self._make_stage(STAGE_WIDTHS[2], blocks_per_stage, stride=2)  # 8x8
        # A placeholder keeps `pool` between the features and `fc` in the module order;
        # the real pooling is attached after the weight init below.
        self.pool: nn.Module = nn.Identity()
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)

        # torchvision's convention; fc keeps PyTorch's default init, as in torchvision's ResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

        # Attached only now so that the init above never overwrites the pooling's own parameters.
        self.pool = pool if pool is not None else pools.create("gap", self.pool_channels)

    def _make_stage(self, channels: int, blocks: int, stride: int) -> nn.Sequential:
        """``blocks`` basic blocks with ``channels`` outputs; the first one applies ``stride``."""
        layers = [BasicBlock(self.in_channels, channels, stride,
                             downsample=_shortcut(self.shortcut, self.in_channels, channels, stride))]
        self.in_channels = channels
        layers += [BasicBlock(channels, channels) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)  # also accepts poolings that return [B, C, 1, 1]
        return self.fc(x)
