"""The poolings as functions of the feature map, in one place (as ``torch.nn.functional`` is to
``torch.nn``): ``[B, C, H, W] -> [B, C]``, each with its formula in its docstring.

Each is the function the registered module of the same pooling calls in its ``forward``, with
the module's parameters as arguments (``GeM`` is ``gem(x, p.clamp(min=p_min), eps)``); a test
checks that they agree. Poolings built from layers (``gwap``, ``simpool``, ``spatial_attention``,
``cov``, ``channel_adaptive``, ``lip``, ``pma``, ...) have no functional form beyond their building blocks.

=========================  ==============================================================
pooling                    function
=========================  ==============================================================
``gap``, ``gmp``           :func:`global_avg`, :func:`global_max`
``avgmax``                 :func:`avg_max`
``gem``                    :func:`gem`
``lse``                    :func:`lse`
``softpool``               :func:`softpool` (``T = 1``)
``topk``                   :func:`topk_mean`
``rms``                    :func:`lp_pool`
``powernorm``              :func:`power_normalized_avg` (:func:`power_normalize` on a vector)
``mixed``                  :func:`mix_max_avg` with ``a = sigmoid(alpha)``
``stochastic``             :func:`stochastic_pool`
``var_softmax``            :func:`var_softmax`
``signed_gem``             :func:`signed_gem` ``+ lam *`` :func:`spatial_std`
``gwap``                   :func:`sigmoid_weighted_mean` of the 1x1-conv scores
``split``                  :func:`split_avg_max`
``spectrum``               :func:`gem_spectrum` with ``p = 1 + (q - 1)^w exp(theta + phi)``, times ``p^-readout``
``gem_channel``            :func:`gem` with ``p`` of shape ``[1, C, 1, 1]``
``median``, ``quantile``   :func:`quantile_pool` (``q = 0.5`` for the median)
``rank_weighted``          :func:`rank_weighted_mean` (weights by :func:`rank_weights`)
``csra``                   :func:`csra`
``adapool``                :func:`adapool` with ``beta = sigmoid(b)``
``rank1_attention``        :func:`attentional_pool`
``genmax``                 :func:`generalized_max`
``fca``                    :func:`dct_pool` at ``FcaPool.frequencies(C, H, W)``
=========================  ==============================================================

>>> import torch
>>> from poolbench.pools import functional as PF
>>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])  # [B=1, C=1, H=2, W=2]
>>> PF.global_avg(x), PF.global_max(x), PF.avg_max(x)
(tensor([[3.]]), tensor([[6.]]), tensor([[4.5000]]))
>>> PF.gem(x, p=1.0)  # p = 1 is the mean
tensor([[3.]])
>>> PF.topk_mean(x, k=2)  # mean of the 2 largest
tensor([[4.5000]])
>>> PF.lp_pool(x, p=2.0)  # root mean square
tensor([[3.5355]])
>>> bool(PF.global_avg(x) <= PF.lse(x, r=5.0) <= PF.global_max(x))
True
"""

from __future__ import annotations

from ._numerics import spatial_std
from .attention import attentional_pool, sigmoid_weighted_mean
from .classic import avg_max, gem, global_avg, global_max
from .frequency import dct_pool
from .mixed import mix_max_avg, stochastic_pool
from .smooth import (
    adapool,
    csra,
    lp_pool,
    lse,
    power_normalize,
    power_normalized_avg,
    quantile_pool,
    rank_weighted_mean,
    rank_weights,
    softpool,
    topk_mean,
)
from .spectrum import gem_spectrum
from .split import split_avg_max
from .statistics import generalized_max, signed_gem, var_softmax

__all__ = [
    "adapool",
    "attentional_pool",
    "avg_max",
    "csra",
    "dct_pool",
    "gem",
    "gem_spectrum",
    "generalized_max",
    "global_avg",
    "global_max",
    "lp_pool",
    "lse",
    "mix_max_avg",
    "power_normalize",
    "power_normalized_avg",
    "quantile_pool",
    "rank_weighted_mean",
    "rank_weights",
    "sigmoid_weighted_mean",
    "signed_gem",
    "softpool",
    "spatial_std",
    "split_avg_max",
    "stochastic_pool",
    "topk_mean",
    "var_softmax",
]
