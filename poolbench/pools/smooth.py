"""Smooth interpolations between average and max: LSE, SoftPool, top-k mean, Lp, power normalisation.

All reduce over the H*W positions of each channel independently, so they are invariant to
permutations of positions and need no ``channels``.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in ('lse', 'softpool', 'topk', 'rms', 'powernorm')]
[(2, 8), (2, 8), (2, 8), (2, 8), (2, 8)]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._numerics import add_scalar, check_eps, check_floor, check_value, is_positive, positions, upcast
from .registry import register


def lse(x: torch.Tensor, r: torch.Tensor | float = 5.0) -> torch.Tensor:
    """Log-sum-exp pooling ``y = 1/r log(1/(HW) sum exp(r x))``, computed as
    ``m + 1/r log mean exp(r (x - m))`` with ``m`` the max so that ``exp`` cannot overflow."""
    dtype = x.dtype
    x = positions(upcast(x))
    r = r.to(x.dtype) if isinstance(r, torch.Tensor) else r
    # The shift cancels analytically; detaching it makes the gradient exactly softmax(r x).
    m = x.detach().amax(dim=-1, keepdim=True)
    y = m + torch.log(torch.exp(r * (x - m)).mean(dim=-1, keepdim=True)) / r
    return y.squeeze(-1).to(dtype)


@register("lse")
class LogSumExpPool(nn.Module):
    """Log-sum-exp pooling (Pinheiro & Collobert, "From Image-level to Pixel-level Labeling with
    Convolutional Networks", CVPR 2015).

    ``y_c = 1/r log(1/(HW) sum_{h,w} exp(r x_{c,h,w}))``: the mean as ``r -> 0``, the max as
    ``r -> inf``, always between them. One scalar ``r`` (init 5), learnable by default and
    clamped to ``r >= r_min`` (0.1) in the forward pass, where the formula is still well
    conditioned in float32.
    """

    def __init__(self, channels: int | None = None, r: float = 5.0, r_min: float = 0.1,
                 learnable: bool = True):
        super().__init__()
        self.r: torch.Tensor  # a parameter when learnable, else a buffer
        check_value(is_positive(r_min), "lse", "r_min", r_min, "a finite number > 0 (the formula divides by r)",
                    "use e.g. lse(r_min=0.1)")
        check_floor("lse", "r", r, "r_min", r_min, learnable, "lse(r=5)", f"it trains as lse(r={r_min}) for good")
        add_scalar(self, "r", r, learnable)
        self.r_min = r_min

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lse(x, self.r.clamp(min=self.r_min))

    def extra_repr(self) -> str:
        return f"r={float(self.r.detach()):.3f}, r_min={self.r_min}"


def softpool(x: torch.Tensor) -> torch.Tensor:
    """SoftPool ``y = sum_i softmax(x)_i x_i`` over the positions ``i`` of each channel."""
    dtype = x.dtype
    x = positions(upcast(x))
    weights = torch.softmax(x, dim=-1)  # subtracts the max internally
    return (weights * x).sum(dim=-1).to(dtype)


@register("softpool")
class SoftPool(nn.Module):
    """SoftPool (Stergiou, Poppe & Kalliatakis, "Refining activation downsampling with SoftPool",
    ICCV 2021), applied globally.

    ``y_c = sum_i w_{c,i} x_{c,i}`` with ``w_{c,i} = exp(x_{c,i}) / sum_j exp(x_{c,j})`` over
    the H*W positions: a weighted mean in which larger activations weigh exponentially more, so
    between the mean and the max, and every position gets a gradient.

    Args:
        channels: unused (accepted like every pooling's); no hyper-parameters.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> SoftPool()(x)  # near the max: exp(6) dominates the weights
    tensor([[5.7615]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return softpool(x)


def topk_count(k: int | float, num_positions: int) -> int:
    """The number of positions ``k`` means: an ``int`` is a count, a ``float`` a fraction of
    ``num_positions`` (rounded up); clamped to ``[1, num_positions]``. :class:`TopKPool` refuses
    any other ``k`` (a float above 1 would be clamped to the mean here)."""
    count = k if isinstance(k, int) else math.ceil(k * num_positions)
    return max(1, min(int(count), num_positions))


def topk_mean(x: torch.Tensor, k: int | float = 0.25) -> torch.Tensor:
    """Mean of the ``k`` largest values of each channel (see :func:`topk_count` for ``k``)."""
    dtype = x.dtype
    x = positions(upcast(x))
    count = topk_count(k, x.shape[-1])
    return x.topk(count, dim=-1, sorted=False).values.mean(dim=-1).to(dtype)


@register("topk")
class TopKPool(nn.Module):
    """Top-k mean pooling, global k-max pooling followed by averaging (k-max pooling:
    Kalchbrenner, Grefenstette & Blunsom, ACL 2014; top-k region scoring: Durand et al.,
    "WELDON", CVPR 2016).

    ``y_c = 1/k sum_{i in topk(x_c)} x_{c,i}``. ``k`` is a count when an ``int`` (``>= 1``) and a
    fraction of H*W when a ``float`` (in ``(0, 1]``): ``k=1`` is max, ``k=1.0`` is mean. A count is
    clamped to H*W so every map size works. Default ``k=0.25`` (a quarter of the positions).
    A float above 1 is refused, integral or not: ``k=2.5`` is no fraction, and ``k=2.0`` would
    read as a count here but as a fraction beside ``k=1.0``; the count is written ``k=2``.
    """

    def __init__(self, channels: int | None = None, k: int | float = 0.25):
        super().__init__()
        fix = "use a fraction of the positions in (0, 1] such as topk(k=0.25), or a whole count such as topk(k=2)"
        if isinstance(k, float):
            if 1 < k < math.inf and k.is_integer():
                fix = f"write topk(k={int(k)}) for a count of {int(k)} positions, or a fraction such as topk(k=0.25)"
            check_value(0 < k <= 1, "topk", "k", k, "a fraction in (0, 1] when written with a decimal point", fix)
        else:
            check_value(isinstance(k, int) and not isinstance(k, bool) and k >= 1, "topk", "k", k,
                        "a count >= 1 or a fraction in (0, 1]", fix)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return topk_mean(x, self.k)

    def extra_repr(self) -> str:
        return f"k={self.k!r}"


def lp_pool(x: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Lp pooling ``y = (1/(HW) sum |x|^p)^(1/p)``; ``p=2`` is the root mean square."""
    dtype = x.dtype
    x = positions(upcast(x))
    # vector_norm's backward is 0 (not 0/0) on an all-zero channel, unlike pow(sum, 1/p).
    norm = torch.linalg.vector_norm(x, ord=p, dim=-1)
    return (norm / x.shape[-1] ** (1.0 / p)).to(dtype)


@register("rms")
class LpPool(nn.Module):
    """Lp pooling (Sermanet, Chintala & LeCun, "Convolutional neural networks applied to house
    numbers digit classification", ICPR 2012), registered as ``rms`` for its default ``p=2``.

    ``y_c = (1/(HW) sum_{h,w} |x_{c,h,w}|^p)^(1/p)``. On non-negative maps it lies between the
    mean (``p = 1``) and the max (``p -> inf``).

    Args:
        channels: unused (accepted like every pooling's).
        p: the fixed exponent, ``>= 1`` (default 2, the root mean square).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> LpPool(p=2.0)(x)  # sqrt((1 + 4 + 9 + 36) / 4)
    tensor([[3.5355]])
    """

    def __init__(self, channels: int | None = None, p: float = 2.0):
        super().__init__()
        check_value(p >= 1, "rms", "p", p, ">= 1 (below 1 it is no norm)", "use e.g. rms(p=2)")
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return lp_pool(x, self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def power_normalize(x: torch.Tensor, a: float = 0.5, eps: float = 1e-3) -> torch.Tensor:
    """Signed power ``sign(x) |x|^a``, smoothed at 0 as ``x (x^2 + eps^2)^((a - 1) / 2)``.

    The exact power has an infinite slope at 0 for ``a < 1`` (a dead channel's mean); the
    smoothed form is odd, maps 0 to 0, caps the slope at ``eps^(a-1)`` (32 for ``a=0.5``) and is
    within a relative ``(1 - a) eps^2 / (2 x^2)`` of the exact power elsewhere.
    """
    return x * (x * x + eps * eps).pow((a - 1) / 2)


def power_normalized_avg(x: torch.Tensor, a: float = 0.5, eps: float = 1e-3) -> torch.Tensor:
    """Power-normalised average ``sign(m) |m|^a`` with ``m = mean over H, W`` (smoothed at 0 as in
    :func:`power_normalize`). At least float32 inside."""
    return power_normalize(upcast(x).mean(dim=(2, 3)), a, eps).to(x.dtype)


@register("powernorm")
class PowerNormAvgPool(nn.Module):
    """Power-normalised average pooling (Perronnin, Sanchez & Mensink, "Improving the Fisher
    kernel for large-scale image classification", ECCV 2010; Koniusz et al., "Higher-order
    occurrence pooling", TPAMI 2017).

    ``y_c = sign(m_c) |m_c|^a`` with ``m_c = 1/(HW) sum_{h,w} x_{c,h,w}``, i.e. the power
    normalisation is applied to the average, as in the papers (after aggregation): applied
    per position it would have an infinite slope at every zero of a post-ReLU map. Fixed
    ``a`` (default 0.5, in ``(0, 1]``; ``a=1`` is GAP), smoothed at 0 with ``eps`` (1e-3) as in
    :func:`power_normalize`.
    """

    def __init__(self, channels: int | None = None, a: float = 0.5, eps: float = 1e-3):
        super().__init__()
        check_value(0 < a <= 1, "powernorm", "a", a, "in (0, 1] (a = 1 is GAP)", "use e.g. powernorm(a=0.5)")
        check_eps("powernorm", eps, "it smooths the power at 0", 1e-3)
        self.a = float(a)
        self.eps = float(eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return power_normalized_avg(x, self.a, self.eps)

    def extra_repr(self) -> str:
        return f"a={self.a}, eps={self.eps}"
