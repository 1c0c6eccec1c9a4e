"""Channel-split average/max pooling: the first design tried for poolbench's own pooling.

The diagnostics (``docs/diagnostics.md``) show the standard poolings trading off: an average
reads counts and proportions (gap leads the majority and count tasks, gmp trails them), a
maximum singles out one position (avgmax, gem and gmp lead gap on the brightest and salient
tasks). avg+max mixes both statistics *inside every channel*, so the count a channel's average
carries is blurred by its maximum, and it is nearly as poor as gmp on the mean-side tasks.

The split pooling gives each statistic channels of its own: the first ``C - k`` channels are
averaged and the last ``k = round(max_fraction * C)`` are max-pooled,

    y_c = mean_{h,w} x_{c,h,w}   (c < C - k),      y_c = max_{h,w} x_{c,h,w}   (c >= C - k).

Channels are interchangeable at initialisation, so the network learns which features to count
and which to detect, and the classifier reads each from clean channels. It builds on timm's
``catavgmax`` (average and maximum concatenated, which doubles C and so changes the head) and on
mixed pooling (Lee, Gallagher & Tu 2016, one learned mix per layer): here the choice is made per
channel, by the features themselves, at the head's width.

How it fared on the diagnostic suite (it lost the majority task to :mod:`.spectrum`) is in
``docs/spectrum.md``.

It has no parameters, so weight decay cannot pull it anywhere (GeM's p, clamped to >= 1 in the
forward pass, drifts below the clamp under decay and silently turns GeM into GAP). On a 1x1 map
both halves are the identity, so where pooling cannot matter it changes nothing. It costs two
reductions over half the channels each.

Created by its name:

>>> import torch
>>> from poolbench import pools
>>> pools.create("split", channels=8)(torch.rand(2, 8, 4, 4)).shape
torch.Size([2, 8])
"""

from __future__ import annotations

import torch
from torch import nn

from ._numerics import check_value
from .registry import Traits, register


def split_avg_max(x: torch.Tensor, max_fraction: float = 0.5) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C]``: mean over H, W of the first ``C - k`` channels, max of the last
    ``k = round(max_fraction * C)``.

    >>> x = torch.arange(16.0).view(1, 4, 2, 2)
    >>> split_avg_max(x)
    tensor([[ 1.5000,  5.5000, 11.0000, 15.0000]])
    """
    channels = x.shape[1]
    k = round(max_fraction * channels)
    averaged = x[:, :channels - k].mean(dim=(2, 3))
    maxed = x[:, channels - k:].amax(dim=(2, 3))
    return torch.cat([averaged, maxed], dim=1)


@register("split", Traits(identity_on_1x1=True, permutation_invariant=True, functional=(split_avg_max,)))
class SplitPool(nn.Module):
    """Channel-split average/max pooling: ``y_c = mean x_c`` for the first ``C - k`` channels and
    ``y_c = max x_c`` for the last ``k = round(max_fraction C)`` (timm's catavgmax at width C;
    Lee et al. 2016's mix, per channel); see the module docstring for the reasoning.

    Args:
        channels: unused (the split is taken of the C it sees); accepted like every pooling's.
        max_fraction: the share of channels that are max-pooled, in [0, 1] (0 is GAP, 1 is GMP).

    >>> import torch
    >>> from poolbench import pools
    >>> x = torch.arange(16.0).view(1, 4, 2, 2)  # channel c holds 4c, ..., 4c + 3
    >>> pools.create("split", channels=4)(x)  # two channels averaged, two max-pooled
    tensor([[ 1.5000,  5.5000, 11.0000, 15.0000]])
    >>> SplitPool(max_fraction=0.25)(x)  # round(0.25 * 4) = 1 channel max-pooled
    tensor([[ 1.5000,  5.5000,  9.5000, 15.0000]])
    """

    def __init__(self, channels: int | None = None, max_fraction: float = 0.5):
        super().__init__()
        check_value(0.0 <= max_fraction <= 1.0, "split", "max_fraction", max_fraction, "in [0, 1] (0 is GAP, 1 is GMP)",
                    "use e.g. split(max_fraction=0.5)")
        self.max_fraction = max_fraction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return split_avg_max(x, self.max_fraction)

    def extra_repr(self) -> str:
        return f"max_fraction={self.max_fraction}"
