# BROKEN: a per-channel weight for a pooling built without knowing C. The author gave it a
# fixed 2048 slots "big enough for every model" and slices it to C in forward. Most of the
# parameter never trains, and any model with C > 2048 crashes.
# Fix: take `channels` in __init__ and size the parameter with it.
import torch
from torch import nn


class CustomPool(nn.Module):
    """Per-channel learned mix of average and max: y_c = w_c * avg_c + (1 - w_c) * max_c."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.full((2048,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.w[: x.shape[1]]
        return w * x.mean(dim=(2, 3)) + (1 - w) * x.amax(dim=(2, 3))
