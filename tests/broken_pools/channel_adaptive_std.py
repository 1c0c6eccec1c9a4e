# BROKEN: the "channel-adaptive pooling" an agent proposed on the original task: per-channel
# mean, max and std feed a small MLP that gates avg against max. The std uses Bessel's
# correction, NaN over the single position of a 1x1 map, so every VGG-16-BN and MobileNetV2 run
# diverged at the first step. Fix: sqrt(var(correction=0) + eps).
import torch
from torch import nn


class CustomPool(nn.Module):
    """Gate g = sigmoid(MLP([mean, max, std])) per channel; y = g * avg + (1 - g) * max."""

    def __init__(self, hidden: int = 8):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(3, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3))
        mx = x.amax(dim=(2, 3))
        std = x.std(dim=(2, 3))
        g = torch.sigmoid(self.gate(torch.stack([avg, mx, std], dim=-1))).squeeze(-1)
        return g * avg + (1 - g) * mx
