"""Poolings built on spatial statistics beyond the mean: standard deviation, covariance and second order.

``meanstd``, ``cov``, ``isqrt_cov``, ``compact_bilinear`` and ``genmax`` come from the
literature; ``std_residual``, ``var_softmax`` and
``signed_gem`` are the proposals made on the public benchmark (MLS-Bench cv-pooling-aggregation) and
``cap`` a withdrawn attempt in its public record, each computing the formula stated in
``poolbench/reference/mls_bench_agent_proposals.json`` at its
initial values, with only a numerical defect fixed (each docstring says which);
``channel_adaptive`` is our SE-style variant of ``cap``. Every standard deviation here is :func:`spatial_std`: no
Bessel correction, exactly 0 on a 1x1 map, finite gradient there.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> names = ('meanstd', 'cov', 'std_residual', 'var_softmax', 'signed_gem', 'cap', 'channel_adaptive', 'isqrt_cov',
...          'compact_bilinear', 'genmax')
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in names]
[(2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8)]
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ._numerics import (
    add_scalar,
    autocast_off,
    check_eps,
    check_value,
    is_positive,
    like,
    positions,
    require_channels,
    safe_sqrt,
    spatial_std,
    upcast,
)
from .classic import gem, global_avg, global_max
from .registry import Traits, register
from .smooth import power_normalize


@register("meanstd", Traits(identity_on_1x1=True, permutation_invariant=True, functional=(global_avg, spatial_std)))
class MeanStdPool(nn.Module):
    """Mean + standard deviation pooling, the statistics pooling of x-vectors (Snyder et al.,
    ICASSP 2018) reduced back to C by a weighted sum instead of a concatenation.

    ``y_c = mu_c + lam sigma_c`` with ``mu_c, sigma_c^2`` the mean and (biased) variance over the
    H*W positions (``sigma`` as in :func:`spatial_std`, ``eps=1e-6``) and one scalar ``lam``
    (init 1), learnable by default. On a 1x1 map ``sigma = 0`` and ``y = x``.

    Args:
        channels: unused (one ``lam`` for all channels).
        lam: the initial weight of the std (1).
        learnable: ``lam`` is a parameter (default) or a fixed buffer.
        eps: inside the std, ``sqrt(var + eps) - sqrt(eps)`` (1e-6).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # mean 3, std sqrt(3.5) = 1.8708
    >>> MeanStdPool(learnable=False)(x)  # 3 + 1.8708, less sqrt(eps) = 0.001
    tensor([[4.8698]])
    >>> MeanStdPool(lam=0.0, learnable=False)(x)  # lam = 0: GAP
    tensor([[3.]])
    """

    def __init__(self, channels: int | None = None, lam: float = 1.0, learnable: bool = True,
                 eps: float = 1e-6):
        super().__init__()
        check_eps("meanstd", eps, "the std of a constant map divides 0 by sqrt(eps)", 1e-6)
        self.lam: torch.Tensor  # a parameter when learnable, else a buffer
        add_scalar(self, "lam", lam, learnable)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = upcast(x)
        y = x32.mean(dim=(2, 3)) + like(self.lam, x32) * spatial_std(x32, self.eps)
        return y.to(x.dtype)


def covariance(z: torch.Tensor) -> torch.Tensor:
    """Channel covariance over positions (no Bessel correction): ``[B, d, H, W] -> [B, d, d]``."""
    z = positions(z)
    centred = z - z.mean(dim=-1, keepdim=True)
    return centred @ centred.transpose(1, 2) / z.shape[-1]


def newton_schulz_sqrt(a: torch.Tensor, iterations: int) -> torch.Tensor:
    """Approximate square root of symmetric PSD matrices ``a`` with eigenvalues in ``[0, 1]``
    (trace-normalised covariances) by coupled Newton-Schulz iterations, as in iSQRT-COV.
    ``iterations=0`` returns ``a`` itself; ``a = 0`` stays 0."""
    identity = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    y, z = a, identity.expand_as(a)  # y -> a^(1/2), z -> a^(-1/2)
    for _ in range(iterations):
        t = 0.5 * (3.0 * identity - z @ y)
        y, z = y @ t, t @ z
    return y


def normalised_root(x: torch.Tensor, reduce: torch.Tensor, iterations: int, eps: float
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The iSQRT-COV core shared by ``cov`` and ``isqrt_cov``: ``S = cov(W_r x)`` (``reduce`` the 1x1
    conv's weight), ``NS_sqrt(S / (tr S + eps))`` and ``tr S`` (``[B, 1, 1]``), in ``x``'s dtype."""
    cov = covariance(F.conv2d(x, like(reduce, x)))
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(dim=-1)[:, None, None]
    return newton_schulz_sqrt(cov / (trace + eps), iterations), trace


def check_root_arguments(name: str, dim: int, iterations: int, eps: float, plain: str) -> None:
    """The argument checks of a pooling built on :func:`normalised_root`; ``plain`` says what
    ``iterations=0`` gives."""
    check_value(dim >= 1, name, "dim", dim, ">= 1", f"use e.g. {name}(dim=64)")
    check_value(iterations >= 0, name, "iterations", iterations, f">= 0 (0: {plain})",
                f"use e.g. {name}(iterations=5)")
    check_eps(name, eps, "a 1x1 map's covariance is 0 and is divided by its trace + eps", 1e-5)


@register("cov", Traits(permutation_invariant=True))
class SecondOrderPool(nn.Module):
    """Second-order (covariance) pooling reduced back to C as a channel gate on GAP, in the manner
    of GSoP (Gao et al., "Global Second-order Pooling Convolutional Networks", CVPR 2019) with
    the iterative matrix square root of iSQRT-COV (Li et al., CVPR 2018).

    ``z = W_r x`` (1x1 conv ``C -> d``, ``d = min(dim, C)``; this keeps the ``d x d`` covariance
    cheap at C=1280), ``S = cov(z) / (tr cov(z) + eps)`` (trace normalisation: eigenvalues in
    ``[0, 1]``, scale-free), ``P = NS_sqrt(S)`` (``iterations`` Newton-Schulz steps, 0 = plain
    covariance as in GSoP), row-wise reduction ``u_j = sum_k R_jk P_jk`` (GSoP's row-wise
    convolution, ``R`` in R^{d x d}), then ``y = GAP(x) * 2 sigmoid(W_e u + b_e)``
    (``W_e: d -> C``; the factor 2 makes a zero logit leave GAP unchanged). On a 1x1 map the
    covariance is 0, ``u = 0`` and the gate is ``2 sigmoid(b_e)``.

    Args:
        channels: C.
        dim: d, the width of the reduction, capped at C (64).
        iterations: Newton-Schulz steps, 0 for the plain covariance (5, iSQRT-COV's choice).
        eps: added to the trace (1e-5).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> pool = SecondOrderPool(channels=16, dim=8)
    >>> pool(torch.rand(2, 16, 4, 4)).shape
    torch.Size([2, 16])
    >>> x = torch.rand(2, 16, 1, 1)  # 1x1: no covariance, so GAP times 2 sigmoid(b_e)
    >>> torch.allclose(pool(x), x.flatten(1) * 2 * torch.sigmoid(pool.expand.bias))
    True
    """

    def __init__(self, channels: int | None = None, dim: int = 64, iterations: int = 5,
                 eps: float = 1e-5):
        super().__init__()
        check_root_arguments("cov", dim, iterations, eps, "the plain covariance")
        channels = require_channels(channels, "cov")
        dim = min(dim, channels)
        self.reduce = nn.Conv2d(channels, dim, kernel_size=1, bias=False)
        self.row = nn.Parameter(torch.empty(dim, dim).uniform_(-(dim**-0.5), dim**-0.5))
        self.expand = nn.Linear(dim, channels)
        self.iterations = iterations
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            root, _ = normalised_root(x32, self.reduce.weight, self.iterations, self.eps)
            u = (root * like(self.row, x32)).sum(dim=-1)  # [B, d]
            gate = 2 * torch.sigmoid(F.linear(u, like(self.expand.weight, x32), like(self.expand.bias, x32)))
            return (x32.mean(dim=(2, 3)) * gate).to(x.dtype)


@register("channel_adaptive", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True))
class ChannelAdaptivePool(nn.Module):
    """Channel-adaptive pooling: poolbench's SE-style variant of the channel-wise adaptive attempt
    (CAP) withdrawn in the public record of MLS-Bench cv-pooling-aggregation, which ``cap``
    computes as stated (``poolbench/reference/mls_bench_agent_proposals.json``).

    The per-channel statistics ``[mu, max, sigma]`` of a sample (``3C`` values; ``sigma`` as in
    :func:`spatial_std`, 0 on 1x1 maps where the proposal's Bessel-corrected std was NaN) feed
    an SE-style MLP ``Linear(3C, h) -> ReLU -> Linear(h, C) -> sigmoid`` giving a gate
    ``g_c``, and ``y_c = g_c mu_c + (1 - g_c) max_c``. ``h = max(C // reduction, min_hidden)``.
    On a 1x1 map ``mu = max`` so ``y = x``.

    Args:
        channels: C (the MLP reads 3C statistics and gates C channels).
        reduction: the hidden width is ``max(C // reduction, min_hidden)`` (16).
        min_hidden: the smallest hidden width (8).
        eps: inside the std, as in :func:`spatial_std` (1e-6).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(2, 16, 4, 4)
    >>> y = ChannelAdaptivePool(channels=16)(x).detach()
    >>> y.shape
    torch.Size([2, 16])
    >>> bool((x.mean(dim=(2, 3)) <= y).all() and (y <= x.amax(dim=(2, 3))).all())  # gated between mean and max
    True
    """

    def __init__(self, channels: int | None = None, reduction: int = 16, min_hidden: int = 8,
                 eps: float = 1e-6):
        super().__init__()
        check_value(reduction >= 1, "channel_adaptive", "reduction", reduction, ">= 1",
                    "use e.g. channel_adaptive(reduction=16)")
        check_value(min_hidden >= 1, "channel_adaptive", "min_hidden", min_hidden, ">= 1",
                    "use e.g. channel_adaptive(min_hidden=8)")
        check_eps("channel_adaptive", eps, "the std of a constant map divides 0 by sqrt(eps)", 1e-6)
        channels = require_channels(channels, "channel_adaptive")
        hidden = max(channels // reduction, min_hidden)
        self.fc1 = nn.Linear(3 * channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            avg, peak = x32.mean(dim=(2, 3)), x32.amax(dim=(2, 3))
            stats = torch.cat([avg, peak, spatial_std(x32, self.eps)], dim=1)
            h = F.relu(F.linear(stats, like(self.fc1.weight, x32), like(self.fc1.bias, x32)))
            g = torch.sigmoid(F.linear(h, like(self.fc2.weight, x32), like(self.fc2.bias, x32)))
            return (g * avg + (1 - g) * peak).to(x.dtype)


@register("std_residual", Traits(identity_on_1x1=True, permutation_invariant=True,
                                 functional=(global_avg, spatial_std, global_max)))
class StdResidualPool(nn.Module):
    """Average + gated std + (max - avg) residual, a proposal made on the public benchmark
    (``reference/mls_bench_agent_proposals.json``).

    ``y_c = mu_c + sigmoid(alpha) sigma_c + (1 - sigmoid(alpha)) (max_c - mu_c)`` with one
    learnable scalar logit ``alpha`` (init 0.5) and ``eps = 1e-6`` in the std. Numerical fix:
    ``sigma`` is :func:`spatial_std` (``sqrt(var + eps) - sqrt(eps)``, no Bessel correction),
    which is within ``sqrt(eps) = 1e-3`` of ``sqrt(var)`` and exactly 0 on a 1x1 map, where
    ``y = mu`` as the proposal states, with a finite gradient there.

    Args:
        channels: unused (one ``alpha`` for all channels).
        alpha: the initial logit of the gate between the std and ``max - mu`` (0.5).
        eps: inside the std (1e-6).

    >>> import torch
    >>> StdResidualPool()(torch.full((1, 2, 3, 3), 2.0)).detach()  # a constant map: no std, max = mean
    tensor([[2., 2.]])
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> StdResidualPool(alpha=-30.0)(x).detach()  # gate ~0: mu + (max - mu), the max
    tensor([[6.]])
    """

    def __init__(self, channels: int | None = None, alpha: float = 0.5, eps: float = 1e-6):
        super().__init__()
        check_eps("std_residual", eps, "the std of a constant map divides 0 by sqrt(eps)", 1e-6)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = upcast(x)
        avg, peak = x32.mean(dim=(2, 3)), x32.amax(dim=(2, 3))
        gate = torch.sigmoid(like(self.alpha, x32))
        y = avg + gate * spatial_std(x32, self.eps) + (1 - gate) * (peak - avg)
        return y.to(x.dtype)


def var_softmax(x: torch.Tensor, alpha: torch.Tensor | float = 1.0, b: torch.Tensor | float = -0.5,
                eps: float = 1e-6) -> torch.Tensor:
    """Variance-calibrated softmax pooling (see :class:`VarianceSoftmaxPool`); ``alpha``, ``b`` scalars."""
    dtype = x.dtype
    x = upcast(x)
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    b = torch.as_tensor(b, dtype=x.dtype, device=x.device)
    tokens = positions(x)  # [B, C, N]
    scores = tokens.mean(dim=1) * F.softplus(alpha)  # m_hw * softplus(alpha): [B, N]
    attention = torch.softmax(scores, dim=-1)
    s = (tokens * attention[:, None, :]).sum(dim=-1)
    mean = tokens.mean(dim=-1)
    var = tokens.var(dim=-1, correction=0)
    g = torch.sigmoid(var / (mean.abs() + safe_sqrt(var) + eps) + b)
    return (mean + g * (s - mean)).to(dtype)


@register("var_softmax", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                                functional=(var_softmax,)))
class VarianceSoftmaxPool(nn.Module):
    """Variance-calibrated softmax pooling, a proposal made on the public benchmark
    (``reference/mls_bench_agent_proposals.json``).

    ``m_i`` = mean over channels at position ``i``; ``a = softmax_i(m_i softplus(alpha))``;
    ``s_c = sum_i a_i x_{c,i}``; ``g_c = sigmoid(var_c / (|mu_c| + sqrt(var_c) + eps) + b)``;
    ``y_c = mu_c + g_c (s_c - mu_c)``. Learnable scalars ``alpha`` (init 1.0) and ``b`` (init
    -0.5), ``eps = 1e-6``; ``mu, var`` over the H*W positions (no Bessel correction). On a 1x1 map
    ``s = mu`` and ``y = mu``. Numerical fix: ``sqrt(var)`` is :func:`safe_sqrt`, the same value
    with a zero instead of a NaN gradient where ``var = 0`` (1x1 and constant maps). Computed by
    :func:`var_softmax`.

    Args:
        channels: unused (the parameters are scalars).
        alpha: the initial sharpness logit of the position softmax (1.0).
        b: the initial bias of the gate (-0.5).
        eps: in the gate's denominator (1e-6).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> y = VarianceSoftmaxPool()(x).detach()
    >>> bool(3.0 < y < 6.0)  # moved from the mean 3 towards the softmax-attended value
    True
    >>> VarianceSoftmaxPool()(torch.full((1, 2, 3, 3), 2.0)).detach()  # a constant map: no variance, the mean
    tensor([[2., 2.]])
    """

    def __init__(self, channels: int | None = None, alpha: float = 1.0, b: float = -0.5, eps: float = 1e-6):
        super().__init__()
        check_eps("var_softmax", eps, "an all-zero channel divides 0 by eps", 1e-6)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.b = nn.Parameter(torch.tensor(float(b)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return var_softmax(x, self.alpha, self.b, self.eps)


def signed_gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """``sign(mu_c) (mean_i (|x_{c,i}| + eps)^p)^(1/p)``: the GeM term of :class:`SignedGeMStdPool`."""
    x32 = upcast(x)
    magnitude = gem(x32.abs() + eps, p, eps)  # the clamp at eps inside gem is a no-op here
    return (torch.sign(x32.mean(dim=(2, 3))) * magnitude).to(x.dtype)


@register("signed_gem", Traits(permutation_invariant=True, functional=(signed_gem, global_avg)))
class SignedGeMStdPool(nn.Module):
    """Signed GeM + spatial-std mix, a proposal made on the public benchmark
    (``reference/mls_bench_agent_proposals.json``).

    ``s_c = sign(mu_c)``; ``G_c = s_c (mean_i (|x_{c,i}| + eps)^p)^(1/p)``;
    ``S_c = s_c sqrt(var_c + eps)``; ``a = 0.1 sigmoid(w)``; ``y = (1 - a) G + a S``; on a 1x1
    map the std term ``a S`` is skipped (``y = (1 - a) G``). Learnable scalars ``p`` (init 3, clamped to
    ``[1, 20]``) and ``w`` (init 0), ``eps = 1e-6``, ``var`` over the H*W positions (no Bessel
    correction). Numerical fix: ``(|x| + eps)^p`` overflows float32 for ``|x|^p > 3e38`` (e.g.
    ``|x| = 100`` at ``p = 20``), so ``G`` is computed as GeM's max-normalised form
    (:func:`.classic.gem`), the same value without the overflow.

    Args:
        channels: unused (the parameters are scalars).
        p: the initial exponent, strictly between ``p_min`` and ``p_max`` (3).
        w: the initial logit of the std's weight ``a = 0.1 sigmoid(w)`` (0).
        eps: added to ``|x|`` and to the variance (1e-6).
        p_min, p_max: the clamp of ``p`` in the forward pass (1, 20).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> y = SignedGeMStdPool()(torch.cat([x, -x], dim=1)).detach()
    >>> y.shape
    torch.Size([1, 2])
    >>> bool(y[0, 0] == -y[0, 1] and y[0, 0] > 3.0)  # odd in x; GeM at p = 3 lies above the mean
    True
    """

    def __init__(self, channels: int | None = None, p: float = 3.0, w: float = 0.0, eps: float = 1e-6,
                 p_min: float = 1.0, p_max: float = 20.0):
        super().__init__()
        check_value(is_positive(p_min) and p_min < p_max < math.inf, "signed_gem", "p_min, p_max", (p_min, p_max),
                    "finite with 0 < p_min < p_max (the root 1/p)", "use e.g. signed_gem(p_min=1, p_max=20)")
        # At a bound of the clamp (or outside) p gets no gradient: it would stay there for good.
        check_value(p_min < p < p_max, "signed_gem", "p", p, f"strictly between p_min = {p_min} and p_max = {p_max} "
                    f"(p is clamped to [p_min, p_max] and gets no gradient at or outside them)",
                    "use e.g. signed_gem(p=3)")
        check_eps("signed_gem", eps, "the GeM of an all-zero channel is 0/0 at eps = 0", 1e-6)
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.w = nn.Parameter(torch.tensor(float(w)))
        self.eps = eps
        self.p_min, self.p_max = p_min, p_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = upcast(x)
        p = like(self.p, x32).clamp(self.p_min, self.p_max)
        g = signed_gem(x32, p, self.eps)
        a = 0.1 * torch.sigmoid(like(self.w, x32))
        y = (1 - a) * g
        if x.shape[2] * x.shape[3] > 1:
            std = (x32.var(dim=(2, 3), correction=0) + self.eps).sqrt() * torch.sign(x32.mean(dim=(2, 3)))
            y = y + a * std
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()):.3f}, w={float(self.w.detach()):.3f}, eps={self.eps}"


@register("cap", Traits(permutation_invariant=True))
class ChannelWiseAdaptivePool(nn.Module):
    """Channel-wise adaptive pooling (CAP), a withdrawn attempt in the public record of the MLS-Bench
    task cv-pooling-aggregation (its annotations and leaderboard, 2026; restated in
    ``poolbench/reference/mls_bench_agent_proposals.json``, ``seed_document_attempts``).

    Per channel ``stats_c = (mu_c, max_c, sigma_c)``;
    ``z_c = Linear(16 -> 1, no bias)(relu(Linear(3 -> 16)(stats_c)))`` (the same small MLP for
    every channel); ``g_c = sigmoid(z_c scale + bias)``; ``y_c = g_c mu_c + (1 - g_c) max_c``.
    Learnable scalars ``scale`` (init 1) and ``bias`` (init 0); the linear layers keep PyTorch's
    default init. Numerical fix: the attempt's std had Bessel's correction, NaN over the one
    position of a 1x1 map (VGG-16-BN diverged and was scored 1.00); here ``sigma`` is the std over
    the H*W positions without it, ``sqrt(var)`` by :func:`safe_sqrt`: 0 on a 1x1 map, finite gradient.

    Args:
        channels: unused (the same MLP for every channel).
        hidden: the MLP's hidden width (16).
        scale: the initial scale of the gate's logit (1).
        bias: the initial bias of the gate's logit (0).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(2, 16, 4, 4)
    >>> y = ChannelWiseAdaptivePool()(x).detach()
    >>> y.shape
    torch.Size([2, 16])
    >>> bool((x.mean(dim=(2, 3)) <= y).all() and (y <= x.amax(dim=(2, 3))).all())  # gated between mean and max
    True
    """

    def __init__(self, channels: int | None = None, hidden: int = 16, scale: float = 1.0, bias: float = 0.0):
        super().__init__()
        check_value(hidden >= 1, "cap", "hidden", hidden, ">= 1", "use e.g. cap(hidden=16)")
        self.fc1 = nn.Linear(3, hidden)
        self.fc2 = nn.Linear(hidden, 1, bias=False)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.bias = nn.Parameter(torch.tensor(float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            avg, peak = x32.mean(dim=(2, 3)), x32.amax(dim=(2, 3))
            sigma = safe_sqrt(x32.var(dim=(2, 3), correction=0))
            stats = torch.stack([avg, peak, sigma], dim=-1)  # [B, C, 3]
            h = F.relu(F.linear(stats, like(self.fc1.weight, x32), like(self.fc1.bias, x32)))
            z = F.linear(h, like(self.fc2.weight, x32)).squeeze(-1)
            g = torch.sigmoid(z * like(self.scale, x32) + like(self.bias, x32))
            return (g * avg + (1 - g) * peak).to(x.dtype)


@register("isqrt_cov", Traits(permutation_invariant=True))
class ISqrtCovPool(nn.Module):
    """iSQRT-COV: matrix square-root normalised covariance pooling by Newton-Schulz iterations (Li,
    Xie, Wang & Gao, "Towards Faster Training of Global Covariance Pooling Networks by Iterative
    Matrix Square Root Normalization", CVPR 2018; MPN-COV, Li et al., ICCV 2017), projected back to C.

    ``z = W_r x`` (a learned 1x1 reduction to ``d = min(dim, C)``, as the paper reduces 2048 to
    256 first; its BatchNorm and ReLU are left out so a 1x1 map of batch 1 trains),
    ``S = cov(z)`` over the H*W positions (centred, ``1/N``), pre-normalisation
    ``A = S / (tr S + eps)``, ``Y = NS_sqrt(A)`` (``iterations`` coupled Newton-Schulz steps
    ``Y_k = Y_{k-1} T_k, Z_k = T_k Z_{k-1}``, ``T_k = (3 I - Z_{k-1} Y_{k-1}) / 2``, from
    ``Y_0 = A, Z_0 = I``), post-compensation ``P = sqrt(tr S) Y``, then
    ``y_c = sum_{j,k} W_{c,j,k} P_{j,k} + b_c``: a learned linear map of the ``d x d`` matrix to C
    (the paper feeds the upper triangle to its classifier; ``P`` is symmetric, so this is the same
    family of maps). On a 1x1 map the covariance is 0 and ``y = b``: second-order statistics carry
    nothing there. ``sqrt(tr S)`` is :func:`safe_sqrt` (finite gradient at ``tr S = 0``).

    Args:
        channels: C.
        dim: d, the width after the reduction, capped at C (64; the ``C d^2`` projection stays
            2M parameters at C = 512).
        iterations: Newton-Schulz steps (5, the paper's).
        eps: added to the trace (1e-5).

    >>> import torch
    >>> pool = ISqrtCovPool(channels=16, dim=8)
    >>> pool(torch.rand(2, 16, 4, 4)).shape
    torch.Size([2, 16])
    """

    def __init__(self, channels: int | None = None, dim: int = 64, iterations: int = 5, eps: float = 1e-5):
        super().__init__()
        check_root_arguments("isqrt_cov", dim, iterations, eps, "the trace-normalised covariance")
        channels = require_channels(channels, "isqrt_cov")
        width = min(dim, channels)
        self.reduce = nn.Conv2d(channels, width, kernel_size=1, bias=False)
        self.project = nn.Parameter(torch.empty(channels, width, width).uniform_(-1 / width, 1 / width))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.iterations = iterations
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            root, trace = normalised_root(x32, self.reduce.weight, self.iterations, self.eps)
            root = root * safe_sqrt(trace)
            y = torch.einsum("bjk,cjk->bc", root, like(self.project, x32)) + like(self.bias, x32)
            return y.to(x.dtype)


def count_sketch_matrix(channels: int, dim: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A count sketch ``C -> D`` as a ``[C, D]`` matrix: row i holds ``s(i) = +-1`` at column ``h(i)``,
    with ``h`` uniform over ``[0, D)`` and ``s`` uniform over ``{-1, 1}``."""
    hashes = torch.randint(dim, (channels,), generator=generator)
    signs = torch.randint(2, (channels,), generator=generator).float() * 2 - 1
    sketch = torch.zeros(channels, dim)
    sketch[torch.arange(channels), hashes] = signs
    return sketch


def tensor_sketch(tokens: torch.Tensor, sketch1: torch.Tensor, sketch2: torch.Tensor) -> torch.Tensor:
    """Tensor sketch of ``x x^T`` for every token: ``FFT^-1(FFT(x S_1) * FFT(x S_2))`` (circular
    convolution of the two count sketches), ``[..., C] -> [..., D]``."""
    dim = sketch1.shape[1]
    spectrum = torch.fft.rfft(tokens @ sketch1, dim=-1) * torch.fft.rfft(tokens @ sketch2, dim=-1)
    return torch.fft.irfft(spectrum, n=dim, dim=-1)


@register("compact_bilinear", Traits(permutation_invariant=True))
class CompactBilinearPool(nn.Module):
    """Compact bilinear pooling by tensor sketch (Gao, Beijbom, Zhang & Darrell, "Compact Bilinear
    Pooling", CVPR 2016), projected back to C.

    Bilinear pooling ``B = 1/N sum_i x_i x_i^T`` (``C^2`` values) is approximated in ``D``
    dimensions by ``phi = 1/N sum_i FFT^-1(FFT(CS_1(x_i)) * FFT(CS_2(x_i)))`` with two fixed
    random count sketches ``CS_j(x) = x S_j`` (``S_j`` a ``C x D`` matrix with one ``+-1`` per row,
    drawn at construction from the torch generator and saved as buffers); then the signed square
    root ``sign(phi) sqrt|phi|`` (smoothed at 0 as :func:`.smooth.power_normalize`, eps 1e-3) and
    L2 normalisation, as bilinear CNNs do, and ``y = W_p phi + b_p`` with ``W_p`` a learned
    ``C x D`` map back to C. ``D = min(d, 2C)``: the paper's ``d = 8192`` at C = 512 would make the
    projection 4M parameters and the sketch a quarter of the step's FLOPs on CIFAR models; at 2C it
    costs what a concatenation of two C-vectors would. Uncentred, so a 1x1 map gives ``x x^T``'s
    sketch, not 0.

    Args:
        channels: C.
        d: the sketch's width D, capped at 2C (2048).

    >>> import torch
    >>> pool = CompactBilinearPool(channels=16)
    >>> pool(torch.rand(2, 16, 4, 4)).shape
    torch.Size([2, 16])
    """

    def __init__(self, channels: int | None = None, d: int = 2048):
        super().__init__()
        check_value(d >= 1, "compact_bilinear", "d", d, ">= 1", "use e.g. compact_bilinear(d=2048)")
        channels = require_channels(channels, "compact_bilinear")
        width = min(d, 2 * channels)
        self.sketch1: torch.Tensor
        self.sketch2: torch.Tensor
        self.register_buffer("sketch1", count_sketch_matrix(channels, width))
        self.register_buffer("sketch2", count_sketch_matrix(channels, width))
        self.project = nn.Linear(width, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls and FFTs in float32 under autocast
            x32 = upcast(x)
            tokens = positions(x32).transpose(1, 2)  # [B, N, C]
            phi = tensor_sketch(tokens, like(self.sketch1, x32), like(self.sketch2, x32)).mean(dim=1)
            phi = F.normalize(power_normalize(phi, 0.5, 1e-3), dim=-1)
            return F.linear(phi, like(self.project.weight, x32), like(self.project.bias, x32)).to(x.dtype)


def generalized_max(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Generalised max pooling ``psi = argmin ||X psi - 1||^2 + lam ||psi||^2`` for the ``N x C``
    positions ``X``: ``psi = (X^T X + lam I_C)^-1 X^T 1 = X^T (X X^T + lam I_N)^-1 1``, solved in
    the smaller of the two forms."""
    dtype = x.dtype
    tokens = positions(upcast(x)).transpose(1, 2)  # [B, N, C]
    count, channels = tokens.shape[1], tokens.shape[2]
    ones = torch.ones(tokens.shape[0], count, 1, dtype=tokens.dtype, device=tokens.device)
    with autocast_off(x):  # keep the solve in float32 under autocast
        if count <= channels:  # dual: an N x N system
            gram = tokens @ tokens.transpose(1, 2) + lam * torch.eye(count, dtype=tokens.dtype, device=tokens.device)
            psi = tokens.transpose(1, 2) @ torch.linalg.solve(gram, ones)
        else:  # primal: a C x C system
            gram = tokens.transpose(1, 2) @ tokens + lam * torch.eye(channels, dtype=tokens.dtype, device=tokens.device)
            psi = torch.linalg.solve(gram, tokens.transpose(1, 2) @ ones)
    return psi.squeeze(-1).to(dtype)


@register("genmax", Traits(permutation_invariant=True, functional=(generalized_max,)))
class GeneralizedMaxPool(nn.Module):
    """Generalised max pooling (Murray & Perronnin, "Generalized Max Pooling", CVPR 2014).

    The pooled vector ``psi`` in R^C has the same similarity with every position, as max pooling
    has for one-hot (bursty) features: ``psi = argmin_psi sum_i (x_i . psi - 1)^2 + lam ||psi||^2``,
    a ridge regression with the closed form ``psi = (X^T X + lam I)^-1 X^T 1`` (``X`` the
    ``N x C`` positions), solved as its dual ``X^T (X X^T + lam I)^-1 1`` when N <= C. ``lam -> inf``
    gives a multiple of the sum (GAP up to scale). It scales as ``1/x``: a linear head follows,
    and the paper L2-normalises what it pools. No parameters; ``lam`` fixed.

    Args:
        channels: unused (accepted like every pooling's).
        lam: lambda, the ridge (1.0; the paper cross-validates it).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 0.0]], [[0.0, 3.0]]]])  # positions (1, 0) and (0, 3)
    >>> GeneralizedMaxPool(lam=1e-6)(x)  # x_i . psi = 1 for both: a frequent feature does not dominate
    tensor([[1.0000, 0.3333]])
    """

    def __init__(self, channels: int | None = None, lam: float = 1.0):
        super().__init__()
        check_value(is_positive(lam), "genmax", "lam", lam, "a finite number > 0 (the ridge keeps the solve regular)",
                    "use e.g. genmax(lam=1)")
        self.lam = float(lam)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return generalized_max(x, self.lam)

    def extra_repr(self) -> str:
        return f"lam={self.lam}"
