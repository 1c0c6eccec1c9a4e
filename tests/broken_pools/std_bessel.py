# BROKEN: the standard deviation uses PyTorch's default Bessel correction (divide by N-1).
# On a 1x1 map (VGG-16-BN, MobileNetV2) N-1 = 0, so the std is NaN and the first step
# turns every weight NaN: the run is scored at chance. Fix: x.std(dim=(2, 3), correction=0)
# or better sqrt(var(correction=0) + eps).
import torch
from torch import nn


class CustomPool(nn.Module):
    """Average plus standard deviation over the spatial positions."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) + x.std(dim=(2, 3))
