"""Poolings that mix the average and the max, and stochastic pooling.

``mixed`` and ``gated`` follow Lee, Gallagher & Tu, "Generalizing Pooling Functions in
Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016; ``channel_gate`` is a
proposal made on the public benchmark, MLS-Bench cv-pooling-aggregation
(``poolbench/reference/mls_bench_agent_proposals.json``); ``stochastic`` is Zeiler & Fergus, ICLR 2013.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in ('mixed', 'gated', 'channel_gate', 'stochastic')]
[(2, 8), (2, 8), (2, 8), (2, 8)]
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._numerics import autocast_off, check_value, like, positions, require_channels, upcast
from .classic import global_avg
from .registry import Traits, register


def mix_max_avg(x: torch.Tensor, a: torch.Tensor | float) -> torch.Tensor:
    """``a * max + (1 - a) * avg`` over H, W; ``a`` is a scalar or broadcasts against ``[B, C]``."""
    x32 = upcast(x)
    a = a.to(x32.dtype) if isinstance(a, torch.Tensor) else a
    return (a * x32.amax(dim=(2, 3)) + (1 - a) * x32.mean(dim=(2, 3))).to(x.dtype)


def _logit(a: float, name: str) -> float:
    # a = 0 or 1 would need an infinite logit, which weight decay turns into NaN.
    check_value(0 < a < 1, name, "a", a, "strictly between 0 and 1 (a = sigmoid of a finite logit)",
                f"use e.g. {name}(a=0.5)")
    return math.log(a / (1 - a))


@register("mixed", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                          functional=(mix_max_avg,)))
class MixedMaxAvgPool(nn.Module):
    """Mixed max-average pooling (Lee, Gallagher & Tu, AISTATS 2016), applied globally.

    ``y_c = a max_{h,w} x_{c,h,w} + (1 - a) 1/(HW) sum_{h,w} x_{c,h,w}`` with the mixing
    proportion ``a = sigmoid(alpha)`` learned through the free parameter ``alpha`` so that it
    stays in ``[0, 1]`` (the paper's "one a per layer"; ``per_channel=True`` learns one per
    channel, the paper's finer option). ``a`` is the initial proportion (default 0.5, avg+max).

    Args:
        channels: C; needed only with ``per_channel=True``.
        a: the initial proportion of the max, strictly between 0 and 1 (0.5).
        per_channel: learn one ``a`` per channel instead of one for all (False).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # mean 3, max 6
    >>> MixedMaxAvgPool()(x).detach()  # a = 0.5 at init: avg+max
    tensor([[4.5000]])
    >>> MixedMaxAvgPool(a=0.25)(x).detach()  # 0.25 * 6 + 0.75 * 3
    tensor([[3.7500]])
    """

    def __init__(self, channels: int | None = None, a: float = 0.5, per_channel: bool = False):
        super().__init__()
        shape = (require_channels(channels, "mixed(per_channel=True)"),) if per_channel else ()
        self.alpha = nn.Parameter(torch.full(shape, _logit(a, "mixed")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mix_max_avg(x, torch.sigmoid(upcast(self.alpha)))

    def extra_repr(self) -> str:
        return f"a={torch.sigmoid(self.alpha.detach().float()).mean().item():.3f}"


@register("gated", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                          functional=(mix_max_avg, global_avg)))
class GatedMaxAvgPool(nn.Module):
    """Gated max-average pooling (Lee, Gallagher & Tu, AISTATS 2016), applied globally.

    ``y_c = a max_{h,w} x_{c,h,w} + (1 - a) avg_{h,w} x_{c,h,w}`` with a per-sample gate
    ``a = sigmoid(w . avg(x))``, ``w`` in R^C. The paper's gate is ``sigmoid(w . x)`` with ``w``
    a mask over the pixels of a fixed pooling region, shared across channels; a global pool has
    no fixed region, so here ``w`` runs over the channels of the GAP descriptor instead (one
    scalar gate per sample, independent of H, W). ``w`` starts at 0, i.e. ``a = 0.5``.

    Args:
        channels: C (the gate's weights ``w``); no hyper-parameters.

    >>> import torch
    >>> pool = GatedMaxAvgPool(channels=1)
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # mean 3, max 6
    >>> pool(x).detach()  # w = 0 at init: the gate is 0.5, avg+max
    tensor([[4.5000]])
    >>> with torch.no_grad():
    ...     _ = pool.w.fill_(10.0)  # 10 * mean 3: the gate is sigmoid(30), all max
    >>> pool(x).detach()
    tensor([[6.]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(require_channels(channels, "gated")))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            avg, peak = x32.mean(dim=(2, 3)), x32.amax(dim=(2, 3))
            a = torch.sigmoid(avg @ like(self.w, x32)).unsqueeze(1)  # [B, 1]
            return (a * peak + (1 - a) * avg).to(x.dtype)


@register("channel_gate", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True))
class ChannelGatePool(nn.Module):
    """Per-channel avg/max gate (LCGP), the seed document's final attempt on the public benchmark,
    MLS-Bench cv-pooling-aggregation (its annotations and leaderboard, 2026; restated in
    ``poolbench/reference/mls_bench_agent_proposals.json``).

    ``g_c = sigmoid(w_c tau)``, ``y_c = g_c avg_c + (1 - g_c) max_c`` with per-channel logits
    ``w`` (init 0: ``g = 0.5``, i.e. avg+max) and one learnable global temperature ``tau``
    (init 1.0). The original sized ``w`` with 2048 slots sliced to C, so that most of it never
    trained and a C > 2048 crashed; here ``w`` has exactly C entries (the only change). At the
    published init ``w = 0`` the gradient of ``tau`` is 0 until ``w`` moves (the contract warns).

    Args:
        channels: C (one logit ``w_c`` per channel).
        tau: the initial temperature, finite and not 0 (1.0).

    >>> import torch
    >>> pool = ChannelGatePool(channels=2)
    >>> x = torch.tensor([1.0, 2.0, 3.0, 6.0]).repeat(2).view(1, 2, 2, 2)  # two channels holding 1, 2, 3, 6
    >>> with torch.no_grad():
    ...     _ = pool.w.copy_(torch.tensor([0.0, 30.0]))  # channel 0 at the init, channel 1 all average
    >>> pool(x).detach()  # g = 0.5: (3 + 6) / 2; g = sigmoid(30): the mean 3
    tensor([[4.5000, 3.0000]])
    """

    def __init__(self, channels: int | None = None, tau: float = 1.0):
        super().__init__()
        # tau = 0 with w = 0: both gradients are 0 (each is the other times the gate's slope), so
        # neither ever moves and the pooling stays avg+max.
        check_value(tau != 0 and math.isfinite(tau), "channel_gate", "tau", tau,
                    "a finite number other than 0 (at tau = 0 neither tau nor w gets a gradient)",
                    "use e.g. channel_gate(tau=1)")
        self.w = nn.Parameter(torch.zeros(require_channels(channels, "channel_gate")))
        self.tau = nn.Parameter(torch.tensor(float(tau)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = upcast(x)
        avg, peak = x32.mean(dim=(2, 3)), x32.amax(dim=(2, 3))
        g = torch.sigmoid(like(self.w, x32) * like(self.tau, x32))
        return (g * avg + (1 - g) * peak).to(x.dtype)


def stochastic_probabilities(x: torch.Tensor) -> torch.Tensor:
    """``p_i = relu(x_i) / sum_j relu(x_j)`` over the last dimension; uniform where all are <= 0.

    Zeiler & Fergus assume non-negative (post-ReLU) inputs; negative values get probability 0,
    and a channel without any positive value (dead, or wholly negative) falls back to the
    uniform distribution, so its expectation is its mean rather than 0/0.
    """
    a = torch.relu(x)
    total = a.sum(dim=-1, keepdim=True)
    alive = total > 0
    p = a / torch.where(alive, total, torch.ones_like(total))
    return torch.where(alive, p, torch.full_like(p, 1.0 / x.shape[-1]))


def stochastic_pool(x: torch.Tensor, training: bool, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Stochastic pooling: in training one position per channel drawn with probability ``p_i``
    (:func:`stochastic_probabilities`) and its value returned; otherwise ``sum_i p_i x_i``."""
    x32 = positions(upcast(x))
    if training:
        # The draw is not differentiable; the gradient reaches the sampled position only.
        p = stochastic_probabilities(x32.detach())
        # One multinomial draw per (sample, channel) row: vectorised, on the torch RNG.
        index = torch.multinomial(p.reshape(-1, p.shape[-1]), 1, generator=generator)
        return positions(x).gather(-1, index.reshape(*p.shape[:2], 1)).squeeze(-1)
    return (stochastic_probabilities(x32) * x32).sum(dim=-1).to(x.dtype)


@register("stochastic", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                               functional=(stochastic_pool,)))
class StochasticPool(nn.Module):
    """Stochastic pooling (Zeiler & Fergus, "Stochastic Pooling for Regularization of Deep
    Convolutional Neural Networks", ICLR 2013), applied globally.

    ``p_{c,i} = relu(x_{c,i}) / sum_j relu(x_{c,j})`` over the H*W positions (uniform for a
    channel with no positive value). Training: ``y_c = x_{c,l}`` with ``l ~ Multinomial(p_c)``
    drawn with the torch RNG, so the gradient reaches the sampled position only. Evaluation
    (probabilistic weighting): ``y_c = sum_i p_{c,i} x_{c,i}``. Computed by :func:`stochastic_pool`.

    Args:
        channels: unused (accepted like every pooling's); no hyper-parameters.

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> StochasticPool().eval()(x)  # (1 * 1 + 2 * 2 + 3 * 3 + 6 * 6) / (1 + 2 + 3 + 6)
    tensor([[4.1667]])
    >>> _ = torch.manual_seed(0)
    >>> StochasticPool().train()(x).item() in (1.0, 2.0, 3.0, 6.0)  # training: one position's value
    True
    """

    def __init__(self, channels: int | None = None):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stochastic_pool(x, self.training)
