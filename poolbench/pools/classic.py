"""The benchmark's four baseline poolings: GAP, GMP, GeM and avg+max, and GeM with one exponent per channel.

The four are defined exactly as the MLS-Bench task ``cv-pooling-aggregation`` defines them.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in ('gap', 'gmp', 'gem', 'avgmax', 'gem_channel')]
[(2, 8), (2, 8), (2, 8), (2, 8), (2, 8)]
"""

from __future__ import annotations

import torch
from torch import nn

from ._numerics import add_scalar, check_eps, check_floor, check_value, is_positive, require_channels, upcast
from .registry import Traits, register


def global_avg(x: torch.Tensor) -> torch.Tensor:
    """Global average pooling: ``mean over H, W``. ``[B, C, H, W] -> [B, C]``."""
    return x.mean(dim=(2, 3))


def global_max(x: torch.Tensor) -> torch.Tensor:
    """Global max pooling: ``max over H, W``. ``[B, C, H, W] -> [B, C]``."""
    return x.amax(dim=(2, 3))


def avg_max(x: torch.Tensor) -> torch.Tensor:
    """Average of global average and global max pooling: ``(mean + max) / 2`` over H, W."""
    return 0.5 * (global_avg(x) + global_max(x))


def gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean: ``(mean(clamp(x, eps) ** p)) ** (1 / p)`` over H, W.

    Computed as ``m * (mean((c / m) ** p)) ** (1 / p)`` with ``c = clamp(x, eps)`` and
    ``m = max c``: the same value (GeM is 1-homogeneous), but the ratios lie in ``(0, 1]`` with
    one equal to 1, so the mean is at least ``1/(HW)`` for every ``p``. The plain formula
    overflows (``100 ** 20``) or underflows (``eps ** 8`` on a dead channel, where the root's
    infinite slope at 0 makes the gradient of ``p`` NaN) in float32. At least float32 inside.
    """
    dtype = x.dtype
    c = upcast(x).clamp(min=eps)
    p = p.to(c.dtype) if isinstance(p, torch.Tensor) else p
    m = c.detach().amax(dim=(2, 3), keepdim=True)
    return (m * (c / m).pow(p).mean(dim=(2, 3), keepdim=True).pow(1.0 / p)).flatten(1).to(dtype)


@register("gap", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                        functional=(global_avg,)))
class GlobalAvgPool(nn.Module):
    """Global average pooling (Lin, Chen & Yan, "Network in Network", ICLR 2014).

    ``y_c = 1/(HW) sum_{h,w} x_{c,h,w}``: every position weighs the same, so the pooled value
    reads counts and proportions. The benchmark's reference: every other pooling is compared
    with it.

    Args:
        channels: unused (accepted like every pooling's); no hyper-parameters.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # [B=1, C=1, H=2, W=2]
    >>> GlobalAvgPool()(x)
    tensor([[3.]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_avg(x)


@register("gmp", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                        functional=(global_max,)))
class GlobalMaxPool(nn.Module):
    """Global max pooling (Oquab, Bottou, Laptev & Sivic, "Is object localization for free? --
    Weakly-supervised learning with convolutional neural networks", CVPR 2015).

    ``y_c = max_{h,w} x_{c,h,w}``: the strongest response of each channel, wherever it is; the
    gradient reaches that one position only.

    Args:
        channels: unused (accepted like every pooling's); no hyper-parameters.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> GlobalMaxPool()(x)
    tensor([[6.]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_max(x)


@register("gem", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True, functional=(gem,)))
class GeM(nn.Module):
    """Generalised-mean pooling (Radenovic, Tolias & Chum, "Fine-tuning CNN Image Retrieval with No
    Human Annotation", TPAMI 2018).

    ``y_c = (1/(HW) sum_{h,w} clamp(x_{c,h,w}, eps) ** p) ** (1/p)`` with one scalar ``p``
    shared by the channels. ``p = 1`` is GAP, ``p -> inf`` tends to GMP (on positive maps).
    Computed as :func:`gem`'s max-normalised form (the same value, no overflow at large ``p``).

    Args:
        channels: unused (one ``p`` for all channels; ``gem_channel`` learns one per channel).
        p: the initial exponent (3, the paper's).
        eps: the clamp of the input, keeping powers of zero finite (1e-6).
        p_min: ``p`` is clamped to ``>= p_min`` (1) in the forward pass.
        learnable: ``p`` is a parameter (default) or a fixed buffer.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> GeM(p=1.0, learnable=False)(x)  # p = 1 is the mean
    tensor([[3.]])
    >>> GeM(p=3.0, learnable=False)(x)  # between the mean and the max
    tensor([[3.9791]])
    """

    def __init__(self, channels: int | None = None, p: float = 3.0, eps: float = 1e-6,
                 p_min: float = 1.0, learnable: bool = True):
        super().__init__()
        self.p: torch.Tensor  # a parameter when learnable, else a buffer
        check_eps("gem", eps, "the clamp at eps keeps powers of zero finite", 1e-6)
        check_value(is_positive(p_min), "gem", "p_min", p_min, "a finite number > 0 (the root 1/p)",
                    "use e.g. gem(p_min=1)")
        check_floor("gem", "p", p, "p_min", p_min, learnable, "gem(p=3)",
                    "the pooling is GAP for good", "gem(p=1, learnable=False) for GAP")
        add_scalar(self, "p", p, learnable)
        self.eps = eps
        self.p_min = p_min

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p.clamp(min=self.p_min), self.eps)

    def extra_repr(self) -> str:
        return f"p={self.p.item():.3f}, eps={self.eps}, p_min={self.p_min}"


@register("avgmax", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                           functional=(avg_max,)))
class AvgMaxPool(nn.Module):
    """Average of global average and global max pooling, as timm's ``adaptive_avgmax_pool2d``
    (Wightman, "PyTorch Image Models", 2019; the ``avgmax`` of its ``SelectAdaptivePool2d``).

    ``y_c = (1/(HW) sum_{h,w} x_{c,h,w} + max_{h,w} x_{c,h,w}) / 2``: mixed pooling (Lee et al.
    2016) at a fixed, even mix.

    Args:
        channels: unused (accepted like every pooling's); no hyper-parameters.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> AvgMaxPool()(x)  # (3 + 6) / 2
    tensor([[4.5000]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return avg_max(x)


@register("gem_channel", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                                functional=(gem,)))
class GeMPerChannel(nn.Module):
    """Generalised-mean pooling with one learnable exponent per channel, the per-feature-map ``p_k``
    of Radenovic, Tolias & Chum ("Fine-tuning CNN Image Retrieval with No Human Annotation",
    TPAMI 2018, eq. 3, which allows "a pooling parameter per feature map").

    ``y_c = (1/(HW) sum_{h,w} clamp(x_{c,h,w}, eps) ** p_c) ** (1/p_c)`` with ``p`` in R^C, every
    ``p_c`` initialised to ``p`` (3) and clamped to ``>= p_min`` (1) in the forward pass; computed
    by :func:`gem` (max-normalised, no overflow at large ``p_c``).

    Args:
        channels: C (one exponent per channel).
        p: the initial exponent of every channel (3).
        eps: the clamp of the input, keeping powers of zero finite (1e-6).
        p_min: the floor of every ``p_c`` in the forward pass (1: the mean).

    >>> import torch
    >>> pool = GeMPerChannel(channels=2)
    >>> with torch.no_grad():
    ...     _ = pool.p.copy_(torch.tensor([1.0, 64.0]))
    >>> x = torch.tensor([[[[1.0, 3.0]], [[1.0, 3.0]]]])  # two channels holding 1 and 3
    >>> pool(x).detach()  # the mean, and nearly the max
    tensor([[2.0000, 2.9677]])
    """

    def __init__(self, channels: int | None = None, p: float = 3.0, eps: float = 1e-6, p_min: float = 1.0):
        super().__init__()
        check_eps("gem_channel", eps, "the clamp at eps keeps powers of zero finite", 1e-6)
        check_value(is_positive(p_min), "gem_channel", "p_min", p_min, "a finite number > 0 (the root 1/p)",
                    "use e.g. gem_channel(p_min=1)")
        check_floor("gem_channel", "p", p, "p_min", p_min, True, "gem_channel(p=3)", "every channel is GAP for good")
        self.p = nn.Parameter(torch.full((require_channels(channels, "gem_channel"),), float(p)))
        self.eps = eps
        self.p_min = p_min

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return gem(x, self.p.clamp(min=self.p_min).view(1, -1, 1, 1), self.eps)

    def extra_repr(self) -> str:
        return f"channels={self.p.numel()}, eps={self.eps}, p_min={self.p_min}"
