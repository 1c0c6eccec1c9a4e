# BROKEN: geometric-mean pooling exp(mean(log x)) without a clamp. On a dead (all-zero) ReLU
# channel log(0) = -inf: the output is 0 but the gradient is NaN, which poisons every weight at
# the first step. Fix: torch.log(x.clamp(min=eps)).
import torch
from torch import nn


class CustomPool(nn.Module):
    """Geometric mean over the spatial positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x).mean(dim=(2, 3)).exp()
