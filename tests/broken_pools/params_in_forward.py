# BROKEN: the spatial-channel attention pooling's first version. It does not know C in
# __init__ (the original harness calls CustomPool() with no arguments), so it builds its
# attention layers at the first forward. The optimizer was built before that forward and never
# updates them, and they are created on the CPU whatever device the model is on.
# Fix: take `channels` in __init__ and create the layers there.
import torch
from torch import nn


class CustomPool(nn.Module):
    """1x1 conv -> BN -> ReLU -> 1x1 conv -> sigmoid spatial attention, mixed with the max."""

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "att"):
            channels = x.shape[1]
            self.att = nn.Sequential(
                nn.Conv2d(channels, channels // 8, 1), nn.BatchNorm2d(channels // 8), nn.ReLU(),
                nn.Conv2d(channels // 8, 1, 1), nn.Sigmoid(),
            )
        weights = self.att(x)
        attended = (x * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp(min=1e-6)
        return attended + self.gamma * x.amax(dim=(2, 3))
