"""``attach(model, spec)``: put a poolbench pooling in the place of a classifier's global pooling.

Where the pooling sits, and the C it sees (read from the head, so the head's input width stays):

- poolbench's own models: ``.pool`` (C is ``.pool_channels``);
- timm models: ``.global_pool`` or ``.head.global_pool`` (timm's ``SelectAdaptivePool2d``; C is
  ``.num_features``). timm's ``reset_classifier(..., global_pool=...)`` only takes pool *names*,
  so the module is replaced directly, keeping its ``flatten`` setting and input format;
- torchvision models with an ``.avgpool`` (ResNet, RegNet, EfficientNet, MobileNetV3, ConvNeXt,
  Inception, GoogLeNet, Swin, VGG, AlexNet): C is the ``in_features`` of the first ``Linear`` in
  ``.fc`` / ``.classifier`` / ``.head``. The pooling's ``[B, C]`` is given back as ``[B, C, 1, 1]``,
  what the model's ``flatten`` (or ConvNeXt's ``LayerNorm2d``) expects;
- torchvision models that pool with a function in ``forward`` (MobileNetV2, MNASNet,
  ShuffleNetV2): the pooling is appended to the block before it (``.features``, ``.layers``,
  ``.conv5``) as ``.pool``, giving ``[B, C, 1, 1]``, on which the model's own average over
  H, W is then exactly the identity.

VGG and AlexNet pool to a 7x7 (6x6) map, not to a vector, and their first ``Linear`` takes
``C*7*7`` inputs. A global pooling gives C values, so that ``Linear`` is replaced by one of
``C`` inputs whose weights are the old ones summed over the 49 positions: it computes what the
old head computed on any map that is constant over positions, which is exactly what
``AdaptiveAvgPool2d((7, 7))`` makes of a 1x1 map (inputs of 32x32 and below). The head's
width changes there, necessarily; everywhere else it stays.

>>> import torch, torchvision
>>> from poolbench import pools
>>> model = pools.attach(torchvision.models.resnet18(num_classes=10), "gem")
>>> model.avgpool
AttachedPool(
  flatten=False
  (pool): GeM(p=3.000, eps=1e-06, p_min=1.0)
)
>>> model(torch.rand(2, 3, 64, 64)).shape
torch.Size([2, 10])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from .registry import PoolFactory, create

# torchvision classifiers that pool with a function inside forward(), and the Sequential it follows.
_FUNCTIONAL_POOL_BLOCKS = {"MobileNetV2": "features", "MNASNet": "layers", "ShuffleNetV2": "conv5"}
_TORCHVISION_HEADS = ("fc", "classifier", "head")

LOOKED_FOR = (
    ".pool with .pool_channels (poolbench models), .global_pool or .head.global_pool (timm), "
    ".avgpool with a Linear in " + "/".join(f".{name}" for name in _TORCHVISION_HEADS) + " (torchvision), "
    "or the block before the functional pooling of torchvision's "
    + ", ".join(f"{cls} (.{block})" for cls, block in _FUNCTIONAL_POOL_BLOCKS.items())
)


class AttachedPool(nn.Module):
    """A poolbench pooling in the shape a host model expects of its global pooling.

    Runs ``pool`` on the ``[B, C, H, W]`` map (permuted from ``[B, H, W, C]`` when
    ``channels_last``) and returns ``[B, C]`` when ``flatten``, else ``[B, C, 1, 1]``
    (``[B, 1, 1, C]`` when ``channels_last``). The pooling may return ``[B, C]`` or
    ``[B, C, 1, 1]``. Also answers what timm asks of a global pool (``pool_type``,
    ``feat_mult()``, ``is_identity()``).
    """

    pool_type = "poolbench"  # timm re-creates a pool from this name: it refuses it, never falls back

    def __init__(self, pool: nn.Module, flatten: bool = False, channels_last: bool = False):
        super().__init__()
        self.pool = pool
        self.flatten = flatten
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.permute(0, 3, 1, 2)
        y = self.pool(x).flatten(1)
        if self.flatten:
            return y
        return y[:, None, None, :] if self.channels_last else y[:, :, None, None]

    def feat_mult(self) -> int:
        return 1

    def is_identity(self) -> bool:
        return False

    def extra_repr(self) -> str:
        return f"flatten={self.flatten}" + (", channels_last=True" if self.channels_last else "")


@dataclass
class _Site:
    """Where a model's global pooling is, and what a replacement must be."""

    parent: nn.Module
    name: str
    channels: int
    wrap: bool  # wrap the pooling in an AttachedPool (else the model takes [B, C] itself)
    flatten: bool = False
    channels_last: bool = False
    fold: tuple[nn.Module, str, int] | None = None  # (parent, name, positions) of a Linear to fold


def attach(model: nn.Module, spec: str | PoolFactory | nn.Module = "gap", **kwargs: object) -> nn.Module:
    """Replace the global pooling of ``model`` by the poolbench pooling ``spec``; returns ``model``.

    ``spec`` is anything :func:`poolbench.pools.create` takes (``"gem"``, ``"topk(k=0.5)"``,
    ``"my_pool.py"``, a class), built for the channels the head expects with ``kwargs`` as its
    hyper-parameters, or a pooling module used as it is. Works on torchvision classifiers, timm
    CNNs and poolbench's models (see the module's docstring for where each keeps its pooling);
    the pooling is moved to the device and dtype of the model and given its train/eval mode.
    A model whose pooling cannot be found is a ValueError naming the attributes looked for.

    With timm, call ``model.reset_classifier(...)`` before ``attach``: it re-creates the pooling
    from a name and refuses the one attached here.
    """
    site = _find_site(model)
    if isinstance(spec, nn.Module):
        if kwargs:
            raise TypeError("attach: keyword arguments are hyper-parameters for a spec; a module is used as it is")
        pool = spec
    else:
        pool = create(spec, site.channels, **kwargs)
    reference = next(iter(model.parameters()), None)
    if reference is not None:
        pool.to(device=reference.device, dtype=reference.dtype if reference.is_floating_point() else None)
    pool.train(model.training)
    if site.fold is not None:
        _fold_linear(*site.fold)
    setattr(site.parent, site.name, AttachedPool(pool, site.flatten, site.channels_last) if site.wrap else pool)
    return model


def _find_site(model: nn.Module) -> _Site:
    pool_channels = getattr(model, "pool_channels", None)
    if isinstance(getattr(model, "pool", None), nn.Module) and isinstance(pool_channels, int):
        return _Site(model, "pool", pool_channels, wrap=False)
    timm_site = _timm_site(model)
    if timm_site is not None:
        return timm_site
    if isinstance(getattr(model, "avgpool", None), nn.Module):
        return _avgpool_site(model)
    block_name = next((block for cls, block in _FUNCTIONAL_POOL_BLOCKS.items()
                       if any(base.__name__ == cls and base.__module__.startswith("torchvision.")
                              for base in type(model).__mro__)), None)
    if block_name is not None and isinstance(getattr(model, block_name, None), nn.Sequential):
        return _Site(getattr(model, block_name), "pool", _head_linear(model, block_name)[2].in_features,
                     wrap=True)
    raise ValueError(f"attach: cannot find the global pooling of {type(model).__name__}: looked for {LOOKED_FOR}")


def _timm_site(model: nn.Module) -> _Site | None:
    """The site of a timm model's ``global_pool`` (on the model or on its ``.head``), if it has one."""
    for parent in (model, getattr(model, "head", None)):
        if not isinstance(parent, nn.Module) or not hasattr(parent, "global_pool"):
            continue
        pool: Any = parent.global_pool  # timm's SelectAdaptivePool2d (duck-typed: timm is optional)
        if isinstance(pool, str):  # ViT-style models keep the name of a token pooling here
            raise ValueError(f"attach: {type(model).__name__} pools tokens (global_pool={pool!r}), not a "
                             f"[B, C, H, W] feature map; attach needs a CNN")
        if not callable(getattr(pool, "feat_mult", None)):
            continue
        if pool.is_identity():
            raise ValueError(f"attach: {type(model).__name__} has no global pooling (global_pool=''); "
                             f"create it with one, e.g. global_pool='avg'")
        if pool.feat_mult() != 1:
            raise ValueError(f"attach: {type(model).__name__}'s global pooling {pool.pool_type!r} gives "
                             f"{pool.feat_mult()}x the channels, and a poolbench pooling keeps C: call "
                             f"model.reset_classifier(num_classes, global_pool='avg') first")
        channels = getattr(model, "num_features", None)
        if not isinstance(channels, int):
            raise ValueError(f"attach: {type(model).__name__} has a timm global_pool but no int .num_features "
                             f"to read its channels from")
        if isinstance(pool, AttachedPool):
            return _Site(parent, "global_pool", channels, True, pool.flatten, pool.channels_last)
        inner = getattr(pool, "pool", None)
        flatten = isinstance(getattr(pool, "flatten", None), nn.Flatten) or getattr(inner, "flatten", False) is True
        spatial = getattr(inner, "dim", getattr(inner, "dim_reduce", (2, 3)))
        return _Site(parent, "global_pool", channels, True, flatten, channels_last=tuple(spatial) == (1, 2))
    return None


def _avgpool_site(model: nn.Module) -> _Site:
    """The site of torchvision's ``.avgpool``, folding the first Linear when it pools to a grid (VGG)."""
    parent, name, linear = _head_linear(model, "avgpool")
    avgpool = model.avgpool
    output_size = getattr(avgpool, "output_size", 1) if isinstance(avgpool, nn.AdaptiveAvgPool2d) else 1
    height, width = _pair(output_size)
    positions = (height or 1) * (width or 1)  # None in an output size keeps the input's size: refuse below
    if height is None or width is None or linear.in_features % positions:
        raise ValueError(f"attach: {type(model).__name__}.avgpool pools to {output_size} and its head's first "
                         f"Linear takes {linear.in_features} inputs: not a grid of C channels")
    channels = linear.in_features // positions
    fold = (parent, name, positions) if positions > 1 else None
    return _Site(model, "avgpool", channels, wrap=True, fold=fold)


def _head_linear(model: nn.Module, after: str) -> tuple[nn.Module, str, nn.Linear]:
    """The first ``Linear`` of the model's head (``.fc``, ``.classifier`` or ``.head``), with its parent."""
    for head_name in _TORCHVISION_HEADS:
        head = getattr(model, head_name, None)
        if not isinstance(head, nn.Module):
            continue
        if isinstance(head, nn.Linear):
            return model, head_name, head
        for path, module in head.named_modules():
            if isinstance(module, nn.Linear):
                parent_path, _, name = path.rpartition(".")
                return head.get_submodule(parent_path), name, module
    raise ValueError(f"attach: {type(model).__name__} has .{after} but no Linear in "
                     f"{'/'.join('.' + name for name in _TORCHVISION_HEADS)} to read its channels C from")


def _fold_linear(parent: nn.Module, name: str, positions: int) -> None:
    """Replace ``parent.name``, a Linear on ``C * positions`` inputs (channel-major), by one on ``C``
    inputs whose weights are summed over the positions."""
    old = getattr(parent, name)
    new = nn.Linear(old.in_features // positions, old.out_features, bias=old.bias is not None,
                    device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(old.weight.reshape(old.out_features, -1, positions).sum(dim=-1))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    new.train(old.training)
    setattr(parent, name, new)
