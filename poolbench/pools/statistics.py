"""Poolings built on spatial statistics beyond the mean: standard deviation and covariance.

``meanstd`` and ``cov`` come from the literature; ``channel_adaptive``, ``std_residual``,
``var_softmax`` and ``signed_gem`` are proposals from the benchmark task (SPEC section 2), whose
first versions failed on 1x1 maps. Every standard deviation here is :func:`spatial_std`: no
Bessel correction, exactly 0 on a 1x1 map, finite gradient there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._numerics import add_scalar, autocast_off, like, positions, require_channels, spatial_std, upcast
from .classic import gem
from .registry import register


@register("meanstd")
class MeanStdPool(nn.Module):
    """Mean + standard deviation pooling, the statistics pooling of x-vectors (Snyder et al.,
    ICASSP 2018) reduced back to C by a weighted sum instead of a concatenation.

    ``y_c = mu_c + lam sigma_c`` with ``mu_c, sigma_c^2`` the mean and (biased) variance over the
    H*W positions (``sigma`` as in :func:`spatial_std`, ``eps=1e-6``) and one scalar ``lam``
    (init 1), learnable by default. On a 1x1 map ``sigma = 0`` and ``y = x``.
    """

    def __init__(self, channels: int | None = None, lam: float = 1.0, learnable: bool = True,
                 eps: float = 1e-6):
        super().__init__()
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


@register("cov")
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
    covariance is 0, ``u = 0`` and the gate is ``2 sigmoid(b_e)``. Defaults ``dim=64``,
    ``iterations=5`` (iSQRT-COV's choice), ``eps=1e-5``.
    """

    def __init__(self, channels: int | None = None, dim: int = 64, iterations: int = 5,
                 eps: float = 1e-5):
        super().__init__()
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
            cov = covariance(F.conv2d(x32, like(self.reduce.weight, x32)))
            trace = cov.diagonal(dim1=-2, dim2=-1).sum(dim=-1)
            root = newton_schulz_sqrt(cov / (trace[:, None, None] + self.eps), self.iterations)
            u = (root * like(self.row, x32)).sum(dim=-1)  # [B, d]
            gate = 2 * torch.sigmoid(F.linear(u, like(self.expand.weight, x32), like(self.expand.bias, x32)))
            return (x32.mean(dim=(2, 3)) * gate).to(x.dtype)


@register("channel_adaptive")
class ChannelAdaptivePool(nn.Module):
    """Channel-adaptive pooling, a proposal from the benchmark task (SPEC section 2).

    The per-channel statistics ``[mu, max, sigma]`` of a sample (``3C`` values; ``sigma`` as in
    :func:`spatial_std`, 0 on 1x1 maps where the proposal's Bessel-corrected std was NaN) feed
    an SE-style MLP ``Linear(3C, h) -> ReLU -> Linear(h, C) -> sigmoid`` giving a gate
    ``g_c``, and ``y_c = g_c mu_c + (1 - g_c) max_c``. ``h = max(C // reduction, min_hidden)``
    (``reduction=16``, ``min_hidden=8``). On a 1x1 map ``mu = max`` so ``y = x``.
    """

    def __init__(self, channels: int | None = None, reduction: int = 16, min_hidden: int = 8,
                 eps: float = 1e-6):
        super().__init__()
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


@register("std_residual")
class StdResidualPool(nn.Module):
    """Average + gated std + (max - avg) residual, a proposal from the benchmark task.

    ``y_c = mu_c + sigmoid(gamma_c) sigma_c + beta_c (max_c - mu_c)`` with per-channel
    learnable ``gamma`` (init 0: gate 0.5) and ``beta`` (init 0.5, so it starts as avg+max plus
    half a std). ``sigma`` as in :func:`spatial_std`; on a 1x1 map both extra terms are 0 and
    ``y = x``.
    """

    def __init__(self, channels: int | None = None, gamma: float = 0.0, beta: float = 0.5,
                 eps: float = 1e-6):
        super().__init__()
        channels = require_channels(channels, "std_residual")
        self.gamma = nn.Parameter(torch.full((channels,), float(gamma)))
        self.beta = nn.Parameter(torch.full((channels,), float(beta)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = upcast(x)
        avg, peak = x32.mean(dim=(2, 3)), x32.amax(dim=(2, 3))
        gate = torch.sigmoid(like(self.gamma, x32))
        y = avg + gate * spatial_std(x32, self.eps) + like(self.beta, x32) * (peak - avg)
        return y.to(x.dtype)


def var_softmax(x: torch.Tensor, tau: torch.Tensor | float = 1.0, eps: float = 1e-5) -> torch.Tensor:
    """``sum_i softmax_i(tau z_i) x_i`` with ``z_i = (x_i - mu) / sqrt(sigma^2 + eps)`` per channel;
    ``tau`` is a scalar or a ``[C]`` tensor."""
    dtype = x.dtype
    x = upcast(x)
    if isinstance(tau, torch.Tensor):
        tau = tau.to(x.dtype)
        tau = tau[:, None] if tau.dim() else tau  # [C] -> [C, 1] against [B, C, H*W]
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, correction=0)
    z = positions((x - mean) * torch.rsqrt(var + eps))
    weights = torch.softmax(tau * z, dim=-1)
    return (weights * positions(x)).sum(dim=-1).to(dtype)


@register("var_softmax")
class VarianceSoftmaxPool(nn.Module):
    """Variance-calibrated softmax pooling, a proposal from the benchmark task.

    SoftPool on standardised scores: ``y_c = sum_i w_{c,i} x_{c,i}`` with
    ``w_c = softmax_i(tau_c z_{c,i})`` and ``z_{c,i} = (x_{c,i} - mu_c) / sqrt(sigma_c^2 + eps)``.
    Plain SoftPool's sharpness depends on the activation scale (it is nearly max for
    activations ~50); dividing by the channel's spatial std makes the temperature ``tau_c``
    (per channel, learnable, init 1) scale-free. A weighted mean, so between min and max;
    ``z = 0`` on 1x1 and constant maps, where ``y`` is the mean. ``eps = 1e-5``.
    """

    def __init__(self, channels: int | None = None, tau: float = 1.0, eps: float = 1e-5):
        super().__init__()
        self.tau = nn.Parameter(torch.full((require_channels(channels, "var_softmax"),), float(tau)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return var_softmax(x, self.tau, self.eps)


def signed_gem(x: torch.Tensor, p: torch.Tensor | float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Signed GeM ``gem_p(relu(x)) - gem_p(relu(-x))`` (see :class:`SignedGeMStdPool`)."""
    return gem(torch.relu(x), p, eps) - gem(torch.relu(-x), p, eps)


@register("signed_gem")
class SignedGeMStdPool(nn.Module):
    """Signed GeM + spatial-std mix, a proposal from the benchmark task.

    ``y_c = gem_p(x_c^+) - gem_p(x_c^-) + lam sigma_c`` with ``x^+ = relu(x)``,
    ``x^- = relu(-x)``, ``gem_p`` GeM with ``eps = 1e-6`` (:func:`.classic.gem`) and ``sigma`` as
    in :func:`spatial_std`. GeM extended to signed maps as an odd function: on post-ReLU maps
    it is GeM (minus ``eps``). The other reading, ``sign(m)|m|^(1/p)`` with
    ``m = mean(sign(x)|x|^p)``, has an infinite slope wherever positive and negative parts
    cancel (``m = 0``) and was rejected for that. One learnable scalar ``p`` (init 3, clamped
    to ``p >= 1`` as in GeM) shared by both parts, one learnable scalar ``lam`` (init 0.1).
    """

    def __init__(self, channels: int | None = None, p: float = 3.0, lam: float = 0.1,
                 eps: float = 1e-6, p_min: float = 1.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.eps = eps
        self.p_min = p_min

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = upcast(x)
        p = like(self.p, x32).clamp(min=self.p_min)
        y = signed_gem(x32, p, self.eps) + like(self.lam, x32) * spatial_std(x32, self.eps)
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        return f"p={float(self.p.detach()):.3f}, lam={float(self.lam.detach()):.3f}, eps={self.eps}"
