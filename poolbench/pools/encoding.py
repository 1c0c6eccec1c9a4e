"""Orderless encodings of the positions against learned cluster centres: NetVLAD and GhostVLAD.

Each position's channel vector is soft-assigned to K centres and the residuals ``x_i - c_k`` are
summed per centre; the ``K x d`` descriptor is normalised and, since a pooling returns C values,
projected back to C by a learned linear map. Both first reduce C to ``d = min(dim, C)`` by a
learned 1x1 convolution, so the descriptor (``K d``) and the projection (``C K d``) stay small
at C = 512 (the papers reduce after encoding, by PCA); both are invariant to permuting positions.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in ('netvlad', 'ghostvlad')]
[(2, 8), (2, 8)]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._numerics import autocast_off, check_value, like, positions, require_channels, upcast
from .registry import Traits, register


def vlad(tokens: torch.Tensor, logits: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """The normalised VLAD descriptor ``[B, K, d]`` of ``tokens`` ``[B, N, d]``.

    ``a = softmax_k(logits)`` over the ``K + G`` clusters of ``logits`` ``[B, N, K + G]``; the last
    ``G`` (ghost) clusters are dropped after the softmax; ``V_k = sum_i a_ik (x_i - c_k)`` for the
    ``K`` rows of ``centroids``; each ``V_k`` is L2-normalised (intra-normalisation), then ``V`` as
    a whole.
    """
    clusters = centroids.shape[0]
    assignment = torch.softmax(logits, dim=-1)[..., :clusters]  # [B, N, K]
    residuals = assignment.transpose(1, 2) @ tokens - assignment.sum(dim=1)[..., None] * centroids
    intra = F.normalize(residuals, dim=-1)
    return F.normalize(intra.flatten(1), dim=-1).view_as(residuals)


class _VLADPool(nn.Module):
    """NetVLAD with ``ghosts`` ghost clusters (GhostVLAD); see :class:`NetVLADPool`."""

    def __init__(self, pool: str, channels: int | None, clusters: int, ghosts: int, dim: int):
        super().__init__()
        check_value(clusters >= 1, pool, "clusters", clusters, ">= 1", f"use e.g. {pool}(clusters=8)")
        check_value(ghosts >= 0, pool, "ghosts", ghosts, ">= 0", f"use e.g. {pool}(ghosts=1)")
        check_value(dim >= 1, pool, "dim", dim, ">= 1", f"use e.g. {pool}(dim=64)")
        channels = require_channels(channels, pool)
        width = min(dim, channels)
        self.reduce = nn.Conv2d(channels, width, kernel_size=1, bias=False)
        self.assign = nn.Linear(width, clusters + ghosts)
        self.centroids = nn.Parameter(torch.rand(clusters, width))
        self.project = nn.Parameter(torch.empty(channels, clusters, width).uniform_(
            -1 / math.sqrt(clusters * width), 1 / math.sqrt(clusters * width)))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            tokens = positions(F.conv2d(x32, like(self.reduce.weight, x32))).transpose(1, 2)  # [B, N, d]
            logits = F.linear(tokens, like(self.assign.weight, x32), like(self.assign.bias, x32))
            descriptor = vlad(tokens, logits, like(self.centroids, x32))  # [B, K, d]
            y = torch.einsum("bkd,ckd->bc", descriptor, like(self.project, x32)) + like(self.bias, x32)
            return y.to(x.dtype)


@register("netvlad", Traits(permutation_invariant=True))
class NetVLADPool(_VLADPool):
    """NetVLAD (Arandjelovic, Gronat, Torii, Pajdla & Sivic, "NetVLAD: CNN architecture for weakly
    supervised place recognition", CVPR 2016), projected back to C.

    With ``z_i = W_r x_i`` (a learned 1x1 reduction to ``d = min(dim, C)``),
    ``a_k(z_i) = softmax_k(w_k . z_i + b_k)``, ``V_k = sum_i a_k(z_i) (z_i - c_k)``; every ``V_k``
    L2-normalised, then the whole ``K x d`` descriptor; ``y = W_p vec(V) + b_p`` with ``W_p`` a
    learned ``C x K d`` map (the paper follows VLAD with PCA; a pooling must return C). ``w, b``
    and the centres ``c`` are learned apart, as the paper proposes; centres start uniform in
    ``[0, 1)`` (the paper starts from k-means on the training set).

    Args:
        channels: C.
        clusters: K, the number of centres (8; the paper's 64 at d = 512).
        dim: d, the width after the reduction, capped at C (64).

    >>> import torch
    >>> pool = NetVLADPool(channels=16, clusters=4, dim=8)
    >>> pool(torch.rand(2, 16, 5, 5)).shape
    torch.Size([2, 16])
    """

    def __init__(self, channels: int | None = None, clusters: int = 8, dim: int = 64):
        super().__init__("netvlad", channels, clusters, 0, dim)


@register("ghostvlad", Traits(permutation_invariant=True))
class GhostVLADPool(_VLADPool):
    """GhostVLAD (Zhong, Arandjelovic & Zisserman, "GhostVLAD for set-based face recognition", ACCV
    2018), projected back to C.

    NetVLAD (:class:`NetVLADPool`) with ``G`` extra "ghost" clusters: the soft assignment runs
    over ``K + G`` clusters, ``a_k(z_i) = softmax_{k in K+G}(w_k . z_i + b_k)``, and only the
    ``K`` real clusters' residuals ``V_k = sum_i a_k(z_i) (z_i - c_k)`` are kept, so positions
    assigned to a ghost (uninformative ones) weigh less. Then as NetVLAD: intra- and L2
    normalisation and ``y = W_p vec(V) + b_p`` (learned, ``C x K d``).

    Args:
        channels: C.
        clusters: K, the real clusters (8).
        ghosts: G, the ghost clusters (1, as in the paper's best setting).
        dim: d, the width after the reduction, capped at C (64).

    >>> import torch
    >>> pool = GhostVLADPool(channels=16, clusters=4, ghosts=2, dim=8)
    >>> pool(torch.rand(2, 16, 5, 5)).shape
    torch.Size([2, 16])
    """

    def __init__(self, channels: int | None = None, clusters: int = 8, ghosts: int = 1, dim: int = 64):
        super().__init__("ghostvlad", channels, clusters, ghosts, dim)
