"""The benchmark's CNN classifiers, each with its global pooling as a replaceable ``.pool``.

>>> from poolbench import models
>>> model = models.create("resnet56", num_classes=100, pool="gem")
>>> model.pool_channels, models.pool_input_shape("resnet56")
(64, (64, 8, 8))

Every model runs ``features -> pool -> flatten -> head``; a pooling may return ``[B, C]`` or
``[B, C, 1, 1]``. ``pool`` may be ``None`` (global average pooling), an ``nn.Module`` (used as
is), a registered pooling name or ``path.py[:Class]``, or a factory called with the channels.

Models from outside the zoo are named ``torchvision:NAME``, ``timm:NAME`` or ``FILE.py:FUNCTION``
(see :mod:`.adapters`); their pooling is put in by :func:`poolbench.pools.attach`:

>>> model = models.create("torchvision:resnet18", num_classes=10, pool="gem")
>>> models.pool_input_shape("torchvision:resnet18", image_size=64)
(512, 2, 2)
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import nn

from .. import pools
from ..core.quoting import quote
from ..core.setting_spec import is_custom_arch
from ..pools import registry as pool_registry
from . import adapters, mobilenetv2, resnet, vgg
from .adapters import ModelSpecError, pooling_of
from .mobilenetv2 import MobileNetV2
from .resnet import CifarResNet, PadShortcut
from .vgg import CifarVGG

#: What ``create`` accepts as a pooling.
PoolArg = nn.Module | str | Callable[..., nn.Module] | None


@dataclass(frozen=True)
class _Arch:
    build: Callable[..., nn.Module]  # build(num_classes=..., **options) with the default pooling
    options: tuple[str, ...]  # the keyword arguments this architecture accepts
    pool_channels: Callable[..., int]  # pool_channels(**options): the C the pooling sees


_ARCHS: dict[str, _Arch] = {
    **{
        name: _Arch(functools.partial(CifarResNet, blocks), ("shortcut",),
                    lambda **options: resnet.STAGE_WIDTHS[-1])
        for name, blocks in resnet.BLOCKS_PER_STAGE.items()
    },
    **{
        name: _Arch(functools.partial(CifarVGG, config), ("dropout",),
                    lambda **options: vgg.POOL_CHANNELS)
        for name, config in vgg.CONFIGS.items()
    },
    "mobilenetv2": _Arch(MobileNetV2, ("width_mult", "dropout"),
                         lambda width_mult=1.0, **options: mobilenetv2.pool_channels(width_mult)),
    # The spatial suite's variants: the pooling sees 2x2 and 4x4 maps instead of 1x1.
    "vgg16bn-2x2": _Arch(functools.partial(CifarVGG, "D", last_maxpool=False), ("dropout",),
                         lambda **options: vgg.POOL_CHANNELS),
    "mobilenetv2-4x4": _Arch(functools.partial(MobileNetV2, cifar_strides=True), ("width_mult", "dropout"),
                             lambda width_mult=1.0, **options: mobilenetv2.pool_channels(width_mult)),
}


def names() -> list[str]:
    """All architecture names: the CIFAR ResNets by depth, the VGGs, then MobileNetV2."""
    return list(_ARCHS)


def _get(arch: str, kwargs: dict) -> _Arch:
    """The architecture ``arch``, after checking that it accepts every keyword in ``kwargs``."""
    key = arch.lower()
    if key not in _ARCHS:
        close = difflib.get_close_matches(key, _ARCHS, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"choose one of {', '.join(_ARCHS)}"
        raise ValueError(f"unknown architecture {quote(arch)}: {hint}")
    spec = _ARCHS[key]
    unexpected = sorted(set(kwargs) - set(spec.options))
    if unexpected:
        raise TypeError(f"{key} got unexpected keyword argument(s) {', '.join(unexpected)}; "
                        f"it accepts: {', '.join(spec.options)}")
    return spec


def make_pool(pool: PoolArg, channels: int) -> nn.Module:
    """The pooling module for ``channels`` input channels from any form ``create`` accepts."""
    if pool is None:
        return pools.create("gap", channels)
    if isinstance(pool, nn.Module):  # checked before callable(): modules are callable too
        return pool
    if isinstance(pool, str):
        return pool_registry.create(pool, channels)
    if callable(pool):
        module = pool_registry.instantiate(pool, channels)
        if not isinstance(module, nn.Module):
            raise TypeError(f"pooling factory {pool!r} returned {type(module).__name__}, not an nn.Module")
        return module
    raise TypeError(f"pool must be None, an nn.Module, a name or a factory, got {type(pool).__name__}")


def create(arch: str, num_classes: int, pool: PoolArg = None, **kwargs) -> nn.Module:
    """Build ``arch`` for ``num_classes`` classes with ``pool`` as its global pooling.

    Keyword arguments: ``shortcut="projection" | "identity_pad"`` (CIFAR ResNets),
    ``dropout`` (VGG, MobileNetV2), ``width_mult`` (MobileNetV2). ``vgg16bn-2x2`` is VGG-16-BN
    without its last max-pool and ``mobilenetv2-4x4`` MobileNetV2 with CIFAR strides: the same
    parameters as ``vgg16bn`` and ``mobilenetv2``, a 2x2 and a 4x4 pool input on 32x32 images.

    ``arch`` may also be ``torchvision:NAME``, ``timm:NAME`` or ``FILE.py:FUNCTION`` (no keyword
    arguments then); their pooling is put in by :func:`poolbench.pools.attach`.

    The backbone is built and initialised first and a pooling named by a string or a factory
    is built after it, so with the same seed every pooling gets the same backbone weights. The
    pooling draws its own initial values from the generator and leaves it as the backbone left
    it: the randomness after ``create`` (dropout) is the same with every pooling, even one that
    reseeds the generator in its constructor.
    """
    if is_custom_arch(arch):
        if kwargs:
            raise TypeError(f"{arch} takes no keyword arguments, got {', '.join(sorted(kwargs))}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        return adapters.build(arch, num_classes, pool)
    spec = _get(arch, kwargs)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model = spec.build(num_classes=num_classes, **kwargs)
    with torch.random.fork_rng(devices=[]):
        model.pool = make_pool(pool, cast(int, model.pool_channels))
    return model


def pool_channels(arch: str, **kwargs) -> int:
    """The channels ``C`` the pooling of ``arch`` sees (without building a zoo model)."""
    if is_custom_arch(arch):
        return pool_input_shape(arch)[0]
    return _get(arch, kwargs).pool_channels(**kwargs)


def pool_input_shape(arch: str, image_size: int | tuple[int, int] = 32, num_classes: int = 10,
                     **kwargs) -> tuple[int, int, int]:
    """``(C, H, W)`` the pooling of ``arch`` sees for ``image_size x image_size`` images (or
    ``(height, width)``).

    Measured by one forward pass on zeros of the model built for ``num_classes``, in eval mode and
    without gradients, once per process for each question. The global random state is left as it
    was, so asking does not change the weights of later models. ValueError when the model cannot
    take images of that size, or does not return ``[B, num_classes]`` logits (a factory that
    ignores ``num_classes``, a head that keeps the map's ``H x W``).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    return _pool_input_shape(arch, height, width, num_classes, tuple(sorted(kwargs.items())))


@functools.lru_cache(maxsize=64)
def _pool_input_shape(arch: str, height: int, width: int, num_classes: int, options: tuple) -> tuple[int, int, int]:
    seen: list[tuple[int, int, int]] = []
    with torch.random.fork_rng(devices=[]):
        model = create(arch, num_classes=num_classes, **dict(options)).eval()
    handle = pooling_of(model).register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[1:])))
    try:
        with torch.no_grad():
            output = model(torch.zeros(1, 3, height, width))
    except RuntimeError as error:
        reason = " ".join(str(error).split())[:200]
        not_float32 = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()
                              if p.is_floating_point() and p.dtype != torch.float32})
        if not_float32:  # the images are float32: a float64 model fails at every size
            raise ValueError(f"{arch} has {', '.join(not_float32)} parameters and cannot take float32 images "
                             f"({reason}); make the model float32 (e.g. return model.float())") from None
        raise ValueError(f"{arch} cannot take {height}x{width} images ({reason}); "
                         f"choose another --image-size or model") from None
    finally:
        handle.remove()
    if not seen or len(seen[0]) != 3:
        raise ValueError(f"{arch}: its pooling saw no [B, C, H, W] map on {height}x{width} images")
    problem = _output_problem(arch, output, num_classes)
    if problem is not None:
        raise ModelSpecError(problem)
    return seen[0]


def fixes_the_generator(arch: str) -> bool:
    """Whether building ``arch`` leaves torch's generator in one state whatever it was seeded with:
    the factory set it in a way :func:`poolbench.core.global_state.seeding_ignored` cannot see
    (``torch.set_rng_state``, ``torch.default_generator.manual_seed``, a ``manual_seed`` imported
    before the build), so every seed would get the same weights. Two builds; the generator is left
    as it was."""
    after = []
    with torch.random.fork_rng(devices=[]):
        for seed in (1, 2):
            torch.manual_seed(seed)
            create(arch, num_classes=10)
            after.append(torch.random.get_rng_state())
    return bool(torch.equal(after[0], after[1]))


def _output_problem(arch: str, output: object, num_classes: int) -> str | None:
    """Why a model's output on one image is not the ``[1, num_classes]`` logits training needs, or
    None. A wrong width would train silently (1000 logits on 3 classes) or fail at the loss."""
    shape = list(output.shape) if isinstance(output, torch.Tensor) else None
    if shape == [1, num_classes]:
        return None
    got = f"shape {shape}" if shape is not None else f"a {type(output).__name__}"
    head = "pass num_classes to its head (e.g. nn.Linear(features, num_classes))"
    if shape is not None and len(shape) > 2:
        head = "flatten the pooled map before the head (torch.flatten(x, 1)) and " + head
    return (f"model {quote(arch, 200)} returned {got} for one image, expected [1, {num_classes}] (the data set's "
            f"{num_classes} classes): {head}")


__all__ = [
    "CifarResNet",
    "ModelSpecError",
    "CifarVGG",
    "MobileNetV2",
    "PadShortcut",
    "PoolArg",
    "create",
    "fixes_the_generator",
    "make_pool",
    "names",
    "pool_channels",
    "pool_input_shape",
    "pooling_of",
]
