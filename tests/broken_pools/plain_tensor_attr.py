# BROKEN: keeps its fixed mixing weights as a plain tensor attribute instead of a buffer.
# model.cuda() / .to() does not move it (forward then mixes devices and crashes on a GPU), and
# state_dict() does not save it. Fix: self.register_buffer("mix", torch.tensor([0.75, 0.25])).
import torch
from torch import nn


class CustomPool(nn.Module):
    """Fixed mix of average and max pooling: 0.75 * avg + 0.25 * max."""

    def __init__(self):
        super().__init__()
        self.mix = torch.tensor([0.75, 0.25])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.stack([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=-1)
        return (stats * self.mix).sum(dim=-1)
