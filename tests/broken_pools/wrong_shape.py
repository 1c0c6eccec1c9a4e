# BROKEN: concatenates average and max (timm's "catavgmax") and so returns [B, 2C]; the
# classifier head expects C features. Fix: average them, or project 2C back to C.
import torch
from torch import nn


class CustomPool(nn.Module):
    """Concatenated global average and max pooling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
