# BROKEN: declares a learnable temperature `tau` but forward() never uses it (a leftover of
# an edit). It gets no gradient, so it silently never trains; weight decay still shrinks it.
# Fix: use it, or delete it.
import torch
from torch import nn


class CustomPool(nn.Module):
    """Mixed pooling a*max + (1-a)*avg with a learned a (Lee, Gallagher & Tu 2016)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.0))
        self.tau = nn.Parameter(torch.tensor(1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.sigmoid(self.a)
        return a * x.amax(dim=(2, 3)) + (1 - a) * x.mean(dim=(2, 3))
