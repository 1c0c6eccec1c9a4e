"""Smooth interpolations between average and max, and order statistics: LSE, SoftPool, top-k mean, Lp,
power normalisation, median and quantiles, rank-weighted (ordinal) pooling, CSRA, AdaPool.

All but AdaPool reduce over the H*W positions of each channel independently (AdaPool's Dice-Sorensen
weights compare whole channel vectors); all are invariant to permutations of positions.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> names = ('lse', 'softpool', 'topk', 'rms', 'powernorm', 'median', 'quantile', 'rank_weighted', 'csra', 'adapool')
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in names]
[(2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8)]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._numerics import add_scalar, check_eps, check_floor, check_value, is_positive, positions, require_channels, upcast
from .registry import Traits, register


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


@register("lse", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True, functional=(lse,)))
class LogSumExpPool(nn.Module):
    """Log-sum-exp pooling (Pinheiro & Collobert, "From Image-level to Pixel-level Labeling with
    Convolutional Networks", CVPR 2015).

    ``y_c = 1/r log(1/(HW) sum_{h,w} exp(r x_{c,h,w}))``: the mean as ``r -> 0``, the max as
    ``r -> inf``, always between them. One scalar ``r`` (init 5), learnable by default and
    clamped to ``r >= r_min`` (0.1) in the forward pass, where the formula is still well
    conditioned in float32. Computed as :func:`lse` (shifted by the max: no overflow).

    Args:
        channels: unused (one ``r`` for all channels).
        r: the initial sharpness (5).
        r_min: the floor of ``r`` in the forward pass (0.1).
        learnable: ``r`` is a parameter (default) or a fixed buffer.

    >>> import torch
    >>> LogSumExpPool()(torch.full((1, 2, 3, 3), 4.0)).detach()  # a constant map gives the constant
    tensor([[4., 4.]])
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> LogSumExpPool(r=50.0, learnable=False)(x)  # large r: near the max, 6 - log(4) / 50
    tensor([[5.9723]])
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


def softpool(x: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """SoftPool ``y = sum_i softmax(T x)_i x_i`` over the positions ``i`` of each channel (``T = 1``:
    SoftPool; ``T -> inf``: the max; ``T -> 0``: the mean)."""
    dtype = x.dtype
    x = positions(upcast(x))
    weights = torch.softmax(temperature * x, dim=-1)  # subtracts the max internally
    return (weights * x).sum(dim=-1).to(dtype)


@register("softpool", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                             functional=(softpool,)))
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


@register("topk", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                         functional=(topk_mean,)))
class TopKPool(nn.Module):
    """Top-k mean pooling, global k-max pooling followed by averaging (k-max pooling:
    Kalchbrenner, Grefenstette & Blunsom, ACL 2014; top-k region scoring: Durand et al.,
    "WELDON", CVPR 2016).

    ``y_c = 1/k sum_{i in topk(x_c)} x_{c,i}``. ``k`` is a count when an ``int`` (``>= 1``) and a
    fraction of H*W when a ``float`` (in ``(0, 1]``): ``k=1`` is max, ``k=1.0`` is mean. A count is
    clamped to H*W so every map size works. Default ``k=0.25`` (a quarter of the positions).
    A float above 1 is refused, integral or not: ``k=2.5`` is no fraction, and ``k=2.0`` would
    read as a count here but as a fraction beside ``k=1.0``; the count is written ``k=2``.

    Args:
        channels: unused (accepted like every pooling's).
        k: how many of the largest values are averaged, a count (``int``) or a fraction of H*W
            (``float``); default 0.25.

    >>> import torch
    >>> from poolbench import pools
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> pools.create("topk(k=2)")(x)  # the mean of the 2 largest
    tensor([[4.5000]])
    >>> TopKPool(k=1)(x), TopKPool(k=1.0)(x)  # the max; the mean
    (tensor([[6.]]), tensor([[3.]]))
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


@register("rms", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                        functional=(lp_pool,)))
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


@register("powernorm", Traits(permutation_invariant=True, functional=(power_normalized_avg, power_normalize)))
class PowerNormAvgPool(nn.Module):
    """Power-normalised average pooling (Perronnin, Sanchez & Mensink, "Improving the Fisher
    kernel for large-scale image classification", ECCV 2010; Koniusz et al., "Higher-order
    occurrence pooling", TPAMI 2017).

    ``y_c = sign(m_c) |m_c|^a`` with ``m_c = 1/(HW) sum_{h,w} x_{c,h,w}``, i.e. the power
    normalisation is applied to the average, as in the papers (after aggregation): applied
    per position it would have an infinite slope at every zero of a post-ReLU map. Fixed
    ``a`` (default 0.5, in ``(0, 1]``; ``a=1`` is GAP), smoothed at 0 with ``eps`` (1e-3) as in
    :func:`power_normalize`.

    Args:
        channels: unused (accepted like every pooling's).
        a: the fixed power, in (0, 1] (0.5: the signed square root).
        eps: the smoothing at 0, which caps the slope at ``eps^(a-1)`` (1e-3).

    >>> import torch
    >>> x = torch.stack([torch.full((2, 2), 4.0), torch.full((2, 2), -9.0)])[None]  # means 4 and -9
    >>> PowerNormAvgPool(a=0.5)(x)  # sign(m) sqrt|m|
    tensor([[ 2., -3.]])
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


def quantile_pool(x: torch.Tensor, q: float = 0.5) -> torch.Tensor:
    """The ``q``-quantile of each channel's H*W values, interpolated linearly between order
    statistics: with ``v`` sorted ascending and ``t = q (N - 1)``,
    ``y = v_floor(t) + (t - floor(t)) (v_ceil(t) - v_floor(t))`` (numpy's and ``torch.quantile``'s
    default, "linear"). ``q = 0.5`` is the median (the mean of the two middle values for even N)."""
    dtype = x.dtype
    values = positions(upcast(x)).sort(dim=-1).values
    t = q * (values.shape[-1] - 1)
    low, high = math.floor(t), math.ceil(t)
    y = values[..., low] + (t - low) * (values[..., high] - values[..., low])
    return y.to(dtype)


def _check_quantile(q: float) -> None:
    check_value(0 <= q <= 1, "quantile", "q", q, "in [0, 1] (0 is the min, 1 the max)", "use e.g. quantile(q=0.75)")


@register("median", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                           functional=(quantile_pool,)))
class MedianPool(nn.Module):
    """Global median pooling: the order statistic at rank 1/2, robust to a few outlying positions
    (a fixed-weight case of ordinal pooling, Deliege et al., "Ordinal Pooling", BMVC 2019).

    ``y_c = median_{h,w} x_{c,h,w}``, the mean of the two middle values when H*W is even (as
    :func:`quantile_pool` with ``q = 0.5``). The gradient reaches the one or two middle positions.

    Args:
        channels: unused (accepted like every pooling's); no hyper-parameters.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 60.0]]]])
    >>> MedianPool()(x)  # (2 + 3) / 2; the outlier 60 does not move it
    tensor([[2.5000]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantile_pool(x, 0.5)


@register("quantile", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                             functional=(quantile_pool,)))
class QuantilePool(nn.Module):
    """Global quantile pooling: the ``q``-quantile of each channel's values, an order statistic
    between the min (``q = 0``), the median (0.5) and the max (1) (a fixed-weight case of ordinal
    pooling, Deliege et al., "Ordinal Pooling", BMVC 2019).

    ``y_c = v_{c,floor(t)} + (t - floor(t)) (v_{c,ceil(t)} - v_{c,floor(t)})`` with ``v_c`` the
    H*W values of channel c sorted ascending and ``t = q (HW - 1)`` (numpy's linear
    interpolation).

    Args:
        channels: unused (accepted like every pooling's).
        q: the quantile, in [0, 1] (default 0.75, the upper quartile).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> QuantilePool(q=0.75)(x)  # t = 2.25: 3 + 0.25 (6 - 3)
    tensor([[3.7500]])
    """

    def __init__(self, channels: int | None = None, q: float = 0.75):
        super().__init__()
        _check_quantile(q)
        self.q = float(q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantile_pool(x, self.q)

    def extra_repr(self) -> str:
        return f"q={self.q}"


def rank_weights(logits: torch.Tensor, num_positions: int) -> torch.Tensor:
    """Convex weights over ``num_positions`` ranks from per-channel logits at ``K`` knots: the
    logit of rank ``r`` (0 the largest) is interpolated linearly at ``r (K - 1) / (N - 1)`` on the
    knots, and the weights are its softmax over ranks. ``[C, K] -> [C, N]``; one rank gets weight 1."""
    knots = logits.shape[-1]
    if num_positions == 1 or knots == 1:
        where = torch.zeros(num_positions, dtype=logits.dtype, device=logits.device)
    else:
        step = (knots - 1) / (num_positions - 1)
        where = torch.arange(num_positions, dtype=logits.dtype, device=logits.device) * step
    low = where.floor().long().clamp(max=knots - 1)
    high = (low + 1).clamp(max=knots - 1)
    frac = where - low.to(where.dtype)
    per_rank = logits[:, low] * (1 - frac) + logits[:, high] * frac
    return torch.softmax(per_rank, dim=-1)


def rank_weighted_mean(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Ordinal pooling ``y_c = sum_r w_{c,r} v_{c,(r)}``: the channel's values sorted in decreasing
    order, weighted by rank with :func:`rank_weights` of ``logits`` (``[C, K]``)."""
    dtype = x.dtype
    values = positions(upcast(x)).sort(dim=-1, descending=True).values
    weights = rank_weights(logits.to(values.dtype), values.shape[-1])
    return (values * weights).sum(dim=-1).to(dtype)


@register("rank_weighted", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                                  functional=(rank_weighted_mean, rank_weights)))
class RankWeightedPool(nn.Module):
    """Rank-weighted (ordinal) pooling (Deliege, Istasse, Kumar, De Vleeschouwer & Van Droogenbroeck,
    "Ordinal Pooling", BMVC 2019; pytorch-toolbelt's ``GlobalRankPooling``), global form.

    ``y_c = sum_r w_{c,r} v_{c,(r)}`` with ``v_{c,(1)} >= v_{c,(2)} >= ...`` the channel's H*W
    values in decreasing order and learned weights per rank, convex as in the paper
    (``w_{c,.} = softmax_r(l_{c,r})``). The paper's region has a fixed size; a global pooling
    meets every H*W, so each channel learns its logits at ``knots`` ranks spread evenly from the
    largest to the smallest value and a map of N positions interpolates them linearly (with
    ``N = knots`` every rank has its own weight). The logits start at 0: the pooling starts as
    GAP; one large logit at the first knot makes it GMP, at the middle the median.

    Args:
        channels: C (one set of rank weights per channel).
        knots: the number of learned rank weights per channel (default 16).

    >>> import torch
    >>> pool = RankWeightedPool(channels=1, knots=4)
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> pool(x).detach()  # all logits 0: the mean
    tensor([[3.]])
    >>> with torch.no_grad():
    ...     pool.logits[0, 0] = 30.0  # all the weight on the largest value
    >>> pool(x).detach()
    tensor([[6.]])
    """

    def __init__(self, channels: int | None = None, knots: int = 16):
        super().__init__()
        check_value(knots >= 1, "rank_weighted", "knots", knots, ">= 1", "use e.g. rank_weighted(knots=16)")
        self.logits = nn.Parameter(torch.zeros(require_channels(channels, "rank_weighted"), knots))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rank_weighted_mean(x, self.logits)


def csra(x: torch.Tensor, temperature: float = 1.0, lam: float = 0.1) -> torch.Tensor:
    """CSRA per channel: ``y = mean(x) + lam * sum_i softmax(T x)_i x_i`` over each channel's positions."""
    dtype = x.dtype
    x32 = upcast(x)
    return (x32.mean(dim=(2, 3)) + lam * softpool(x32, temperature)).to(dtype)


@register("csra", Traits(permutation_invariant=True, functional=(csra,)))
class CSRAPool(nn.Module):
    """Class-specific residual attention (CSRA; Zhu & Wu, "Residual Attention: A Simple but
    Effective Method for Multi-Label Recognition", ICCV 2021), in the form of a pooling.

    CSRA scores class ``i`` at position ``k`` by ``s_ik = m_i . x_k`` with the classifier's
    weight ``m_i`` and adds a softmax-attended score to the average one:
    ``f_i = mean_k s_ik + lam sum_k softmax_k(T s_ik) s_ik``. A pooling returns C features, not
    class scores, so here the "classes" are the channels (``m_i`` the unit vectors; the linear
    head that follows is the classifier): ``y_c = mean_{h,w} x_{c,h,w} + lam sum_i
    softmax_i(T x_{c,i}) x_{c,i}``. ``T -> inf`` makes the attention the max (the paper's T = 99).

    Args:
        channels: unused (accepted like every pooling's).
        temperature: T, the paper's single-head value 1.
        lam: lambda, the weight of the attention residual (0.1, the paper's default).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> CSRAPool(temperature=99.0, lam=0.5)(x)  # mean 3 + 0.5 max 6
    tensor([[6.]])
    """

    def __init__(self, channels: int | None = None, temperature: float = 1.0, lam: float = 0.1):
        super().__init__()
        check_value(0 < temperature < math.inf, "csra", "temperature", temperature, "a finite number > 0",
                    "use e.g. csra(temperature=1)")
        check_value(math.isfinite(lam), "csra", "lam", lam, "a finite number", "use e.g. csra(lam=0.1)")
        self.temperature, self.lam = float(temperature), float(lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return csra(x, self.temperature, self.lam)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, lam={self.lam}"


def adapool(x: torch.Tensor, beta: torch.Tensor | float = 0.5, eps: float = 1e-6) -> torch.Tensor:
    """AdaPool over the H*W positions: ``beta * sum_i w_i x_i + (1 - beta) * softpool(x)`` with
    Dice-Sorensen weights ``w_i = softmax_i(2 |m . x_i| / (|m|^2 + |x_i|^2 + eps))``, ``m`` the
    mean channel vector and ``x_i`` the channel vector at position i."""
    dtype = x.dtype
    tokens = positions(upcast(x))  # [B, C, N]
    beta = beta.to(tokens.dtype) if isinstance(beta, torch.Tensor) else beta
    mean = tokens.mean(dim=-1, keepdim=True)  # [B, C, 1]
    dice = 2 * (mean * tokens).sum(dim=1).abs() / (mean.square().sum(dim=1) + tokens.square().sum(dim=1) + eps)
    dice_pooled = (torch.softmax(dice, dim=-1).unsqueeze(1) * tokens).sum(dim=-1)
    return (beta * dice_pooled + (1 - beta) * softpool(tokens.unsqueeze(-1))).to(dtype)


@register("adapool", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                            functional=(adapool,)))
class AdaPool(nn.Module):
    """AdaPool (Stergiou & Poppe, "AdaPool: Exponential Adaptive Pooling for Information-Retaining
    Downsampling", IEEE TIP 2023), global form: the kernel is the whole map.

    Two exponentially weighted means of the H*W positions, mixed by a learned ``beta``:
    eDSCW, ``y^D = sum_i softmax_i(DSC(m, x_i)) x_i`` with the Dice-Sorensen coefficient
    ``DSC(m, x_i) = 2 |m . x_i| / (|m|^2 + |x_i|^2)`` between the channel vector ``x_i`` at
    position i and their mean ``m`` (one weight per position, shared by the channels); eM,
    ``y^M_c = sum_i softmax_i(x_{c,i}) x_{c,i}`` (SoftPool, per channel); and
    ``y = beta y^D + (1 - beta) y^M``. The paper learns ``beta`` per output location clamped to
    [0, 1]; a global pooling has one location, so one scalar, written ``beta = sigmoid(b)``
    (init ``b = 0``: an even mix) because a clamp passes no gradient at its bounds. ``eps``
    (1e-6) keeps the DSC of an all-zero map finite.

    Args:
        channels: unused (accepted like every pooling's).
        eps: added to the DSC's denominator.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> y = AdaPool()(x)
    >>> bool(3.0 < y < 6.0)  # two weighted means, so between the mean and the max here
    True
    """

    def __init__(self, channels: int | None = None, eps: float = 1e-6):
        super().__init__()
        check_eps("adapool", eps, "the DSC of an all-zero map divides 0 by it", 1e-6)
        self.b = nn.Parameter(torch.zeros(()))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return adapool(x, torch.sigmoid(upcast(self.b)), self.eps)
