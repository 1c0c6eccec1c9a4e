"""Changes its input in place: behind the in-place ReLU that ends a CIFAR ResNet block, whose
backward pass needs that map, training fails at the first backward."""

import torch
from torch import nn


class CustomPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.relu_()
        return x.mean(dim=(2, 3))
