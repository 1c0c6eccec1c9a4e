"""Pooling by 2D DCT frequencies: FcaNet's multi-spectral pooling.

GAP is the lowest frequency of the 2D discrete cosine transform of each channel; FcaNet (Qin,
Zhang, Wu & Li, "FcaNet: Frequency Channel Attention Networks", ICCV 2021) gives groups of
channels other frequencies as well. This pooling depends on where a value is, so unlike the rest
of the zoo it is not invariant to permuting positions.

Created by its name:

>>> import torch
>>> from poolbench import pools
>>> pools.create("fca", channels=32)(torch.rand(2, 32, 8, 8)).shape
torch.Size([2, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ._numerics import check_value, positions, upcast
from .registry import Traits, register

# FcaNet's frequency ranking on its 7x7 grid ("top" selection, its get_freq_indices): (u, v) pairs,
# u along the height, v along the width, best first.
FCA_TOP_U = (0, 0, 6, 0, 0, 1, 1, 4, 5, 1, 3, 0, 0, 0, 3, 2, 4, 6, 3, 5, 5, 2, 6, 5, 5, 3, 3, 4, 2, 2, 6, 1)
FCA_TOP_V = (0, 1, 0, 5, 2, 0, 2, 0, 0, 6, 0, 4, 6, 3, 5, 2, 6, 3, 3, 3, 5, 1, 1, 2, 4, 2, 1, 1, 3, 0, 5, 3)


def dct_basis(frequencies: torch.Tensor, size: int) -> torch.Tensor:
    """The 1D DCT-II bases ``cos(pi f (t + 1/2) / S)`` at ``t = 0..S-1`` for each ``f`` of
    ``frequencies``, times sqrt(2) where ``f > 0``: FcaNet's orthonormal filters times sqrt(S), so
    that frequency 0 is all ones. ``[K] -> [K, S]``."""
    t = torch.arange(size, dtype=frequencies.dtype, device=frequencies.device)
    basis = torch.cos(math.pi * frequencies[:, None] * (t + 0.5) / size)
    scale = 1.0 + (math.sqrt(2.0) - 1.0) * (frequencies > 0).to(basis.dtype)  # in the basis' dtype
    return basis * scale[:, None]


def dct_pool(x: torch.Tensor, u: Sequence[int], v: Sequence[int]) -> torch.Tensor:
    """``y_c = 1/(HW) sum_{h,w} x_{c,h,w} B_{u_c}(h) B_{v_c}(w)`` with :func:`dct_basis` ``B``:
    channel c pooled at its own DCT frequency ``(u_c, v_c)``; ``(0, 0)`` is the mean."""
    dtype = x.dtype
    x32 = upcast(x)
    height, width = x32.shape[2], x32.shape[3]
    rows = dct_basis(torch.tensor(u, dtype=x32.dtype, device=x32.device), height)  # [C, H]
    columns = dct_basis(torch.tensor(v, dtype=x32.dtype, device=x32.device), width)  # [C, W]
    filters = rows[:, :, None] * columns[:, None, :]  # [C, H, W]
    return (positions(x32) * filters.flatten(1)).mean(dim=-1).to(dtype)


@register("fca", Traits(identity_on_1x1=True, functional=(dct_pool,)))
class FcaPool(nn.Module):
    """FcaNet's multi-spectral DCT pooling (Qin, Zhang, Wu & Li, "FcaNet: Frequency Channel Attention
    Networks", ICCV 2021) as the global pooling itself (FcaNet feeds it to an SE gate).

    The channels are split into ``n`` equal groups in order (channel c in group
    ``floor(c n / C)``, FcaNet's split when n divides C), group g pooled at FcaNet's g-th best
    frequency ``(u_g, v_g)`` on its 7x7 grid, scaled to the map as FcaNet scales it,
    ``(u_g (H // 7), v_g (W // 7))``: ``y_c = 1/(HW) sum_{h,w} x_{c,h,w} B_{u}(h) B_{v}(w)`` with
    ``B_f(t) = cos(pi f (t + 1/2) / S)`` (times sqrt(2) for ``f > 0``), the DCT-II basis normalised
    so that frequency (0, 0), the first group, is GAP. On maps smaller than 7x7 every frequency
    scales to 0, so the pooling is GAP there (the identity on a 1x1 map); FcaNet instead
    average-pools larger maps to 7x7 first. No parameters.

    Args:
        channels: unused (the split is taken of the C it sees); accepted like every pooling's.
        n: the number of frequencies, 1 to 32 (16, FcaNet's "top16").

    >>> import torch
    >>> x = torch.rand(1, 2, 7, 7)
    >>> y = FcaPool(n=2)(x)  # channel 0 at (0, 0): the mean; channel 1 at (0, 1)
    >>> torch.allclose(y[:, 0], x[:, 0].mean(dim=(1, 2)))
    True
    """

    def __init__(self, channels: int | None = None, n: int = 16):
        super().__init__()
        check_value(1 <= n <= len(FCA_TOP_U), "fca", "n", n, f"between 1 and {len(FCA_TOP_U)}", "use e.g. fca(n=16)")
        self.n = n

    def frequencies(self, channels: int, height: int, width: int) -> tuple[list[int], list[int]]:
        """Each channel's ``(u, v)`` on an ``height x width`` map."""
        groups = [c * self.n // channels for c in range(channels)]
        return ([FCA_TOP_U[g] * (height // 7) for g in groups], [FCA_TOP_V[g] * (width // 7) for g in groups])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dct_pool(x, *self.frequencies(x.shape[1], x.shape[2], x.shape[3]))

    def extra_repr(self) -> str:
        return f"n={self.n}"
