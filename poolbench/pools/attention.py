"""Poolings that weight positions by a learned, per-position score: GWAP, SimPool, spatial attention,
LIP, gated-attention MIL, the attention pools with a learned, a mean or a class-token query (PMA,
CLIP, CaiT) and rank-1 attentional pooling.

Scores come from 1x1 convolutions or per-token projections, which treat every position alike,
so these poolings are still invariant to permutations of positions (none adds a position
embedding). All layers are created in
``__init__`` and sized by ``channels``. Layers run through their functional forms with weights
cast to the compute dtype (float32 at least), so a float32 module accepts float16 maps.

Each pooling here, created by its name:

>>> import torch
>>> from poolbench import pools
>>> x = torch.rand(2, 8, 4, 4)  # [B, C, H, W]
>>> names = ('gwap', 'simpool', 'spatial_attention', 'scap', 'lip', 'gated_attention', 'pma', 'clip_attention',
...          'class_attention', 'rank1_attention')
>>> [tuple(pools.create(name, channels=8)(x).shape) for name in names]
[(2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8), (2, 8)]
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ._numerics import autocast_off, check_eps, check_value, like, positions, require_channels, upcast
from .registry import Traits, register


def sigmoid_weighted_mean(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i x_i`` with ``w_i = sigmoid(s_i) / sum_j sigmoid(s_j)`` over the H*W positions.

    ``x`` is ``[B, C, H, W]`` and ``scores`` ``[B, 1 or C, H, W]``. Written as a softmax of
    ``log sigmoid(s)``, which is the same ratio without its 0/0 when every ``sigmoid(s_j)``
    underflows (``s < -104`` in float32).
    """
    weights = torch.softmax(F.logsigmoid(positions(scores)), dim=-1)
    return (weights * positions(x)).sum(dim=-1)


def linear(t: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(t)`` with the layer's weight and bias cast to ``t``'s dtype (a float32 module on float64 maps)."""
    return F.linear(t, like(layer.weight, t), like(layer.bias, t))


def multi_head_attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, heads: int) -> torch.Tensor:
    """Scaled dot-product attention per head, ``softmax(q k^T / sqrt(d)) v`` with ``d = C / heads``:
    ``query`` ``[B, Q, C]``, ``keys`` and ``values`` ``[B, N, C]`` -> ``[B, Q, C]``. Written out
    rather than ``F.scaled_dot_product_attention``, whose fused kernels choose their own
    precision and are not deterministic in the backward pass on every device."""
    batch, count, channels = query.shape
    head_dim = channels // heads
    q = query.reshape(batch, count, heads, head_dim).transpose(1, 2)  # [B, h, Q, d]
    k = keys.reshape(batch, -1, heads, head_dim).transpose(1, 2)  # [B, h, N, d]
    v = values.reshape(batch, -1, heads, head_dim).transpose(1, 2)
    attn = torch.softmax(q @ k.transpose(-2, -1) * head_dim**-0.5, dim=-1)  # [B, h, Q, N]
    return (attn @ v).transpose(1, 2).reshape(batch, count, channels)


def _check_heads(pool: str, channels: int, num_heads: int) -> None:
    check_value(num_heads >= 1 and channels % num_heads == 0, pool, "num_heads", num_heads,
                f"a divisor of the {channels} channels", f"use e.g. {pool}(num_heads=1)")


@register("gwap", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True,
                         functional=(sigmoid_weighted_mean,)))
class GlobalWeightedAvgPool(nn.Module):
    """Global weighted average pooling (Qiu, "Global Weighted Average Pooling Bridges Pixel-level
    Localization and Image-level Classification", arXiv:1809.08264, 2018).

    The class-agnostic module: ``s = conv1x1(x)`` (``C -> 1``, with bias) scores every position,
    and ``y_c = sum_i sigmoid(s_i) x_{c,i} / sum_j sigmoid(s_j)``, a positive weight map shared by
    the channels and normalised to sum 1 over positions. The sigmoid as the positive map is our
    documented choice (public implementations differ: softmax, ``exp(sigmoid(s))``); it is
    computed as in :func:`sigmoid_weighted_mean`. The score convolution starts at zero, so the
    pooling starts as GAP.

    Args:
        channels: C (the score convolution's input); no hyper-parameters.

    >>> import torch
    >>> pool = GlobalWeightedAvgPool(channels=1)
    >>> x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    >>> pool(x).detach()  # zero scores at init: every weight 1/4, GAP
    tensor([[3.]])
    >>> with torch.no_grad():
    ...     _ = pool.score.weight.fill_(10.0)
    ...     _ = pool.score.bias.fill_(-55.0)  # scores 10 (x - 5.5): sigmoid near 0 but at the 6
    >>> pool(x).detach()
    tensor([[6.]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()
        self.score = nn.Conv2d(require_channels(channels, "gwap"), 1, kernel_size=1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)  # type: ignore[arg-type]  # a Conv2d made with bias=True has one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            scores = F.conv2d(x32, like(self.score.weight, x32), like(self.score.bias, x32))
            return sigmoid_weighted_mean(x32, scores).to(x.dtype)


@register("simpool", Traits(permutation_invariant=True))
class SimPool(nn.Module):
    """Attention pooling with a GAP query, SimPool (Psomas et al., "Keep It SimPool: Who Said
    Supervised Transformers Suffer from Attention Deficit?", ICCV 2023), CNN form.

    With tokens ``x_i`` in R^C (the H*W positions), ``u = LN(x_i)`` (LayerNorm over channels),
    query ``q = W_q GAP(x)``, keys ``k_i = W_k u_i``, values ``v_i = u_i``:
    ``a = softmax_i(q . k_i / sqrt(C / heads))`` per head and ``y = sum_i a_i v_i``, so C stays C.
    ``W_q, W_k`` are ``C x C`` without bias (the paper's defaults); ``num_heads`` (default 1)
    splits the channels. The optional GeM on the values (the paper's ``gamma``) is not used.

    Args:
        channels: C (the projections are ``C x C``).
        num_heads: attention heads, a divisor of C (1).
        eps: the LayerNorm's epsilon (1e-6).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> pool = SimPool(channels=2)
    >>> x = torch.tensor([1.0, 3.0]).view(1, 2, 1, 1).expand(1, 2, 3, 3)  # every position holds (1, 3)
    >>> pool(x).detach()  # equal tokens, so whatever the attention: y = LN((1, 3))
    tensor([[-1.0000,  1.0000]])
    """

    def __init__(self, channels: int | None = None, num_heads: int = 1, eps: float = 1e-6):
        super().__init__()
        check_value(num_heads >= 1, "simpool", "num_heads", num_heads, ">= 1", "use e.g. simpool(num_heads=1)")
        check_eps("simpool", eps, "LayerNorm divides by sqrt(var + eps), and var = 0 where all channels are 0", 1e-6)
        channels = require_channels(channels, "simpool")
        _check_heads("simpool", channels, num_heads)
        self.num_heads = num_heads
        self.norm = nn.LayerNorm(channels, eps=eps)
        self.wq = nn.Linear(channels, channels, bias=False)
        self.wk = nn.Linear(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            batch, channels = x32.shape[:2]
            tokens = positions(x32).transpose(1, 2)  # [B, N, C]
            values = F.layer_norm(tokens, (channels,), like(self.norm.weight, x32), like(self.norm.bias, x32),
                                  self.norm.eps)
            query = linear(tokens.mean(dim=1, keepdim=True), self.wq)  # [B, 1, C]
            keys = linear(values, self.wk)  # [B, N, C]
            return multi_head_attention(query, keys, values, self.num_heads).reshape(batch, channels).to(x.dtype)


@register("spatial_attention", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True))
class SpatialAttentionPool(nn.Module):
    """Spatial-channel attention pooling: poolbench's variant of the spatial-channel attention
    attempt (SCAP) withdrawn in the public record of MLS-Bench cv-pooling-aggregation, which
    ``scap`` computes as stated (``poolbench/reference/mls_bench_agent_proposals.json``).

    ``s = conv1x1_2(ReLU(GN(conv1x1_1(x))))`` (``C -> C/reduction -> 1``) scores positions,
    ``att_c = sum_i sigmoid(s_i) x_{c,i} / sum_j sigmoid(s_j)`` is the attention-weighted mean,
    and ``y = g att + (1 - g) max_{h,w} x`` with ``g = sigmoid(gamma)`` for one learnable
    scalar ``gamma`` (init 0). Hidden width ``max(C // reduction, min_hidden)``
    (``reduction=16``, ``min_hidden=8``).

    The proposal's BatchNorm is replaced by GroupNorm with one group (normalising each sample
    over its hidden channels and positions): BatchNorm2d in training raises on a 1x1 map with
    batch size 1 (a single value per channel), couples the samples of a batch, and was the
    source of the proposal's failures; GroupNorm behaves the same in training and evaluation.

    Args:
        channels: C (the scoring convolutions' input).
        reduction: the hidden width is ``max(C // reduction, min_hidden)`` (16).
        min_hidden: the smallest hidden width (8).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(2, 16, 4, 4)
    >>> y = SpatialAttentionPool(channels=16)(x).detach()
    >>> y.shape
    torch.Size([2, 16])
    >>> bool((x.amin(dim=(2, 3)) <= y).all() and (y <= x.amax(dim=(2, 3))).all())  # weighted mean and max mixed
    True
    """

    def __init__(self, channels: int | None = None, reduction: int = 16, min_hidden: int = 8):
        super().__init__()
        check_value(reduction >= 1, "spatial_attention", "reduction", reduction, ">= 1",
                    "use e.g. spatial_attention(reduction=16)")
        check_value(min_hidden >= 1, "spatial_attention", "min_hidden", min_hidden, ">= 1",
                    "use e.g. spatial_attention(min_hidden=8)")
        channels = require_channels(channels, "spatial_attention")
        hidden = max(channels // reduction, min_hidden)
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.norm = nn.GroupNorm(1, hidden)
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            h = F.conv2d(x32, like(self.conv1.weight, x32))
            h = F.group_norm(h, 1, like(self.norm.weight, x32), like(self.norm.bias, x32), self.norm.eps)
            scores = F.conv2d(F.relu(h), like(self.conv2.weight, x32), like(self.conv2.bias, x32))
            attended = sigmoid_weighted_mean(x32, scores)
            g = torch.sigmoid(like(self.gamma, x32))
            return (g * attended + (1 - g) * x32.amax(dim=(2, 3))).to(x.dtype)


@register("scap", Traits(permutation_invariant=True, batch_norm=True))
class SpatialChannelAttentionPool(nn.Module):
    """Spatial-channel attention pooling (SCAP), a withdrawn attempt in the public record of the
    MLS-Bench task cv-pooling-aggregation (its annotations and leaderboard, 2026; restated in
    ``poolbench/reference/mls_bench_agent_proposals.json``, ``seed_document_attempts``).

    ``A = sigmoid(conv1x1_2(relu(bn(conv1x1_1(x)))))`` with ``conv1x1_1: C -> max(C // 8, 8)`` and
    ``conv1x1_2: -> 1`` (both with bias, PyTorch's default init), ``att_c = sum_i x_{c,i} A_i /
    (sum_i A_i + 1e-6)``, ``g = sigmoid(2 w + b)``, ``y = g att + (1 - g) max``; learnable scalars
    ``w`` (init 0.5) and ``b`` (init 0). The attempt created its attention layers inside
    ``forward()`` on the first call, so the optimizer never saw them (its defect, which withdrew
    it); here they are built in ``__init__`` from ``channels`` (the only change). The BatchNorm is
    kept: it cannot train on a batch of one 1x1 map (the contract check warns).

    Args:
        channels: C (the attention convolutions' input; hidden width ``max(C // 8, 8)``).
        w: the initial gate weight (0.5).
        b: the initial gate bias (0).

    >>> import torch
    >>> _ = torch.manual_seed(0)
    >>> x = torch.rand(2, 16, 4, 4)
    >>> y = SpatialChannelAttentionPool(channels=16).eval()(x).detach()
    >>> y.shape
    torch.Size([2, 16])
    >>> bool((x.amin(dim=(2, 3)) <= y).all() and (y <= x.amax(dim=(2, 3))).all())  # attended mean and max mixed
    True
    """

    def __init__(self, channels: int | None = None, w: float = 0.5, b: float = 0.0):
        super().__init__()
        channels = require_channels(channels, "scap")
        hidden = max(channels // 8, 8)
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.bn = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, 1, kernel_size=1)
        self.w = nn.Parameter(torch.tensor(float(w)))
        self.b = nn.Parameter(torch.tensor(float(b)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            h = F.conv2d(x32, like(self.conv1.weight, x32), like(self.conv1.bias, x32))
            bn = self.bn
            # The running statistics are updated in place: pass the buffers themselves when their
            # dtype matches (always, unless the module was cast below float32).
            stats = [t if t is None or t.dtype == x32.dtype else t.to(x32.dtype)
                     for t in (bn.running_mean, bn.running_var)]
            if bn.training and bn.num_batches_tracked is not None:
                bn.num_batches_tracked.add_(1)
            h = F.batch_norm(h, stats[0], stats[1], like(bn.weight, x32), like(bn.bias, x32),
                             bn.training, cast(float, bn.momentum), bn.eps)  # BatchNorm2d's default, 0.1
            a = torch.sigmoid(F.conv2d(F.relu(h), like(self.conv2.weight, x32), like(self.conv2.bias, x32)))
            attended = (positions(x32) * positions(a)).sum(dim=-1) / (positions(a).sum(dim=-1) + 1e-6)
            g = torch.sigmoid(2 * like(self.w, x32) + like(self.b, x32))
            return (g * attended + (1 - g) * x32.amax(dim=(2, 3))).to(x.dtype)


@register("lip", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True))
class LIPPool(nn.Module):
    """Local importance-based pooling (LIP; Gao, Wang & Wu, "LIP: Local Importance-based Pooling",
    ICCV 2019), global form: the pooling window is the whole map.

    ``y_c = sum_i x_{c,i} exp(G_{c,i}) / sum_j exp(G_{c,j})`` over the H*W positions, with the
    importance map ``G = 12 sigmoid(IN(W x))`` of the paper's simplified logit module (``W`` a
    convolution ``C -> C`` without bias, ``IN`` an affine instance norm, 12 its ``SoftGate``
    coefficient). The paper's convolution is 3x3; here it is 1x1, so the pooling stays invariant
    to permuting positions and costs ``C^2`` rather than ``9 C^2`` per position. The instance norm
    is written out (biased variance, ``eps``): on a 1x1 map it gives its bias, where PyTorch's
    ``InstanceNorm2d`` refuses to train on one value per channel.

    Args:
        channels: C (the logit convolution is C x C).
        eps: the instance norm's epsilon (1e-5, PyTorch's).

    >>> import torch
    >>> pool = LIPPool(channels=4)
    >>> x = torch.rand(2, 4, 3, 3)
    >>> y = pool(x)
    >>> bool((y >= x.amin(dim=(2, 3))).all() and (y <= x.amax(dim=(2, 3))).all())  # a weighted mean
    True
    """

    def __init__(self, channels: int | None = None, eps: float = 1e-5):
        super().__init__()
        check_eps("lip", eps, "the instance norm of a constant map divides 0 by sqrt(eps)", 1e-5)
        channels = require_channels(channels, "lip")
        self.logit = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(channels))
        self.norm_bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            z = positions(F.conv2d(x32, like(self.logit.weight, x32)))  # [B, C, N]
            z = (z - z.mean(dim=-1, keepdim=True)) / (z.var(dim=-1, correction=0, keepdim=True) + self.eps).sqrt()
            importance = 12.0 * torch.sigmoid(z * like(self.norm_weight, x32)[:, None]
                                              + like(self.norm_bias, x32)[:, None])
            return (torch.softmax(importance, dim=-1) * positions(x32)).sum(dim=-1).to(x.dtype)


@register("gated_attention", Traits(identity_on_1x1=True, between_min_and_max=True, permutation_invariant=True))
class GatedAttentionPool(nn.Module):
    """Gated-attention MIL pooling (Ilse, Tomczak & Welling, "Attention-based Deep Multiple Instance
    Learning", ICML 2018), the positions as the bag's instances.

    ``a_i = softmax_i(w^T (tanh(V x_i + b_V) * sigmoid(U x_i + b_U)))``, ``y = sum_i a_i x_i``:
    one attention weight per position, shared by the channels. ``V, U`` are ``L x C`` with
    ``L = min(hidden, C)`` (the paper's L = 128 at C = 500); ``w`` has no bias, which the
    softmax would cancel (it would get no gradient). PyTorch's default initialisation.

    Args:
        channels: C.
        hidden: L, the width of the attention network (capped at C).

    >>> import torch
    >>> pool = GatedAttentionPool(channels=4)
    >>> x = torch.rand(2, 4, 3, 3)
    >>> y = pool(x)
    >>> bool((y >= x.amin(dim=(2, 3))).all() and (y <= x.amax(dim=(2, 3))).all())  # a weighted mean
    True
    """

    def __init__(self, channels: int | None = None, hidden: int = 128):
        super().__init__()
        check_value(hidden >= 1, "gated_attention", "hidden", hidden, ">= 1", "use e.g. gated_attention(hidden=128)")
        channels = require_channels(channels, "gated_attention")
        width = min(hidden, channels)
        self.attention_v = nn.Linear(channels, width)
        self.attention_u = nn.Linear(channels, width)
        self.attention_w = nn.Linear(width, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            tokens = positions(x32).transpose(1, 2)  # [B, N, C]
            gated = torch.tanh(linear(tokens, self.attention_v)) * torch.sigmoid(linear(tokens, self.attention_u))
            weights = torch.softmax(linear(gated, self.attention_w), dim=1)  # [B, N, 1]
            return (weights * tokens).sum(dim=1).to(x.dtype)


@register("pma", Traits(permutation_invariant=True))
class LatentAttentionPool(nn.Module):
    """Attention pooling with a learned latent query: pooling by multi-head attention (PMA; Lee et al.,
    "Set Transformer", ICML 2019) with one seed vector, as timm's ``AttentionPoolLatent`` computes
    it without its output projection and MLP (``out_features=0``, its pre-logits mode).

    With tokens ``x_i`` in R^C (the H*W positions): ``q = W_q s + b_q`` for the learned latent
    ``s`` in R^C, ``[k_i, v_i] = W_kv x_i + b_kv`` and per head ``y = sum_i softmax_i(q . k_i /
    sqrt(d)) v_i`` with ``d = C / num_heads``. ``s`` starts from a truncated normal with std
    ``C^-1/2`` (timm's), the projections from PyTorch's default. No LayerNorm or feed-forward
    (the Set Transformer's MAB has both; the head that follows is linear).

    Args:
        channels: C.
        num_heads: the number of heads, a divisor of C (1 by default: every C works).

    >>> import torch
    >>> LatentAttentionPool(channels=8, num_heads=2)(torch.rand(3, 8, 4, 4)).shape
    torch.Size([3, 8])
    """

    def __init__(self, channels: int | None = None, num_heads: int = 1):
        super().__init__()
        channels = require_channels(channels, "pma")
        _check_heads("pma", channels, num_heads)
        self.num_heads = num_heads
        self.latent = nn.Parameter(nn.init.trunc_normal_(torch.empty(channels), std=channels**-0.5))
        self.q = nn.Linear(channels, channels)
        self.kv = nn.Linear(channels, 2 * channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            tokens = positions(x32).transpose(1, 2)  # [B, N, C]
            query = linear(like(self.latent, x32), self.q).expand(x32.shape[0], 1, -1)
            keys, values = linear(tokens, self.kv).chunk(2, dim=-1)
            return multi_head_attention(query, keys, values, self.num_heads)[:, 0].to(x.dtype)


@register("clip_attention", Traits(permutation_invariant=True))
class CLIPAttentionPool(nn.Module):
    """CLIP's attention pooling with the mean as its query (Radford et al., "Learning Transferable
    Visual Models From Natural Language Supervision", ICML 2021; timm's ``AttentionPool2d``), without
    the position embedding.

    With tokens ``t_0 = mean_i x_i`` and ``t_i = x_i`` (the H*W positions),
    ``[q_j, k_j, v_j] = W_qkv t_j + b_qkv`` and per head ``o = sum_{j=0..N} softmax_j(q_0 . k_j /
    sqrt(d)) v_j`` (the mean token attends over itself and every position), ``y = W_o o + b_o``.
    CLIP adds a learned position embedding sized for its 7x7 map; it would tie the pooling to one
    map size and to positions, so it is left out (timm's with a zero embedding computes this).
    ``W_qkv`` starts from a truncated normal with std ``C^-1/2`` and zero bias (timm's).

    Args:
        channels: C.
        num_heads: the number of heads, a divisor of C (1 by default: every C works).

    >>> import torch
    >>> CLIPAttentionPool(channels=8, num_heads=2)(torch.rand(3, 8, 4, 4)).shape
    torch.Size([3, 8])
    """

    def __init__(self, channels: int | None = None, num_heads: int = 1):
        super().__init__()
        channels = require_channels(channels, "clip_attention")
        _check_heads("clip_attention", channels, num_heads)
        self.num_heads = num_heads
        self.qkv = nn.Linear(channels, 3 * channels)
        nn.init.trunc_normal_(self.qkv.weight, std=channels**-0.5)
        nn.init.zeros_(self.qkv.bias)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            tokens = positions(x32).transpose(1, 2)  # [B, N, C]
            tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
            q, k, v = linear(tokens, self.qkv).chunk(3, dim=-1)
            attended = multi_head_attention(q[:, :1], k, v, self.num_heads)[:, 0]
            return linear(attended, self.proj).to(x.dtype)


@register("class_attention", Traits(permutation_invariant=True))
class ClassAttentionPool(nn.Module):
    """Class-attention pooling: one class-attention layer of CaiT (Touvron et al., "Going deeper with
    Image Transformers", ICCV 2021; timm's ``ClassAttn``) reading the positions into a learned
    class token.

    ``u = LN([c; x_1 ... x_N])`` (LayerNorm over channels, eps 1e-6), ``q = W_q u_0 + b_q``,
    ``k_j = W_k u_j + b_k``, ``v_j = W_v u_j + b_v`` (j = 0..N: the class token attends to itself
    and every position), per head ``o = sum_j softmax_j(q . k_j / sqrt(d)) v_j``, and
    ``y = c + W_o o + b_o`` (the layer's residual). The class token ``c`` starts from a truncated
    normal with std 0.02 (CaiT's). CaiT's layer scale and the feed-forward that follows are left
    out: the head after the pooling is linear.

    Args:
        channels: C.
        num_heads: the number of heads, a divisor of C (1 by default: every C works).

    >>> import torch
    >>> ClassAttentionPool(channels=8, num_heads=2)(torch.rand(3, 8, 4, 4)).shape
    torch.Size([3, 8])
    """

    def __init__(self, channels: int | None = None, num_heads: int = 1):
        super().__init__()
        channels = require_channels(channels, "class_attention")
        _check_heads("class_attention", channels, num_heads)
        self.num_heads = num_heads
        self.cls_token = nn.Parameter(nn.init.trunc_normal_(torch.empty(channels), std=0.02))
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.q = nn.Linear(channels, channels)
        self.k = nn.Linear(channels, channels)
        self.v = nn.Linear(channels, channels)
        self.proj = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):  # keep the matmuls in float32 under autocast
            x32 = upcast(x)
            batch, channels = x32.shape[:2]
            cls = like(self.cls_token, x32).expand(batch, 1, channels)
            tokens = torch.cat([cls, positions(x32).transpose(1, 2)], dim=1)  # [B, N + 1, C]
            u = F.layer_norm(tokens, (channels,), like(self.norm.weight, x32), like(self.norm.bias, x32),
                             self.norm.eps)
            attended = multi_head_attention(linear(u[:, :1], self.q), linear(u, self.k), linear(u, self.v),
                                            self.num_heads)
            return (cls + linear(attended, self.proj))[:, 0].to(x.dtype)


def attentional_pool(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Rank-1 attentional pooling ``y = 1/N X^T (X b)`` with ``X`` the ``N x C`` positions: the
    positions summed with their (unnormalised) attention ``X b``. ``b`` is ``[C]``."""
    dtype = x.dtype
    tokens = positions(upcast(x))  # [B, C, N]
    with autocast_off(x):  # keep the matmuls in float32 under autocast
        attention = torch.einsum("bcn,c->bn", tokens, b.to(tokens.dtype))
        return (tokens * attention[:, None]).mean(dim=-1).to(dtype)


@register("rank1_attention", Traits(permutation_invariant=True, functional=(attentional_pool,)))
class AttentionalPool(nn.Module):
    """Rank-1 attentional pooling (Girdhar & Ramanan, "Attentional Pooling for Action Recognition",
    NeurIPS 2017).

    The paper scores class k by a rank-1 approximation of second-order pooling,
    ``s_k = (X a_k)^T (X b)`` with ``X`` the ``N x C`` matrix of positions, a class-specific
    ``a_k`` (top-down) and a class-agnostic ``b`` (bottom-up saliency). ``s_k = a_k^T (X^T X b)``,
    so the pooling is ``y = 1/N X^T X b``: ``y_c = 1/(HW) sum_i (b . x_i) x_{c,i}``, the positions
    summed with their attention ``X b`` (no softmax), and the linear head that follows holds the
    ``a_k``. ``b`` starts at ``1/C`` everywhere (attention = the channel mean at each position);
    the paper gives no initial value, and ``b = 0`` would pass no gradient to the input.

    Args:
        channels: C (``b`` is in R^C).

    >>> import torch
    >>> x = torch.tensor([[[[1.0, 3.0]], [[1.0, 1.0]]]])  # two channels at two positions
    >>> AttentionalPool(channels=2)(x).detach()  # attention (1, 2): y_0 = (1 + 6) / 2, y_1 = (1 + 2) / 2
    tensor([[3.5000, 1.5000]])
    """

    def __init__(self, channels: int | None = None):
        super().__init__()
        channels = require_channels(channels, "rank1_attention")
        self.b = nn.Parameter(torch.full((channels,), 1.0 / channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return attentional_pool(x, self.b)
