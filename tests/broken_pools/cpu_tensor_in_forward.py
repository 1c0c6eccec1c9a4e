# BROKEN: builds its spatial prior in forward() with torch.arange/torch.exp and no device, so
# the prior is always on the CPU. It works in a CPU test and crashes at the first step on a GPU
# ("Expected all tensors to be on the same device"). Fix: torch.arange(..., device=x.device).
import torch
from torch import nn


class CustomPool(nn.Module):
    """Centre-weighted average: positions weighted by a Gaussian prior around the map centre."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[2:]
        rows = torch.arange(height, dtype=x.dtype) - (height - 1) / 2
        cols = torch.arange(width, dtype=x.dtype) - (width - 1) / 2
        prior = torch.exp(-(rows[:, None] ** 2 + cols[None, :] ** 2) / (height * width))
        prior = prior / prior.sum()
        return (x * prior).sum(dim=(2, 3))
