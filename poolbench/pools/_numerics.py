"""Numerical helpers shared by the pooling families (not poolings themselves).

Every pooling computes in float32 at least, whatever the input and parameter dtypes, and casts
its result back to the input dtype: ``exp``, ``pow``, variances and softmaxes leave float16's range
(max 65504) for ordinary activations, and bfloat16's 8-bit mantissa makes their sums inexact.
"""

from __future__ import annotations

import contextlib
import math
from typing import overload

import torch
from torch import nn

from ..core.poolspec import HyperParameterError
from ..core.quoting import quote


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype to compute in: float32, or float64 when the input already is."""
    return torch.promote_types(x.dtype, torch.float32)


def upcast(x: torch.Tensor) -> torch.Tensor:
    """``x`` in :func:`compute_dtype` (a no-op for float32 and float64)."""
    return x.to(compute_dtype(x))


def autocast_off(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context in which autocast leaves matmuls and convolutions in the dtype we chose.

    Under ``torch.autocast`` they would run in bfloat16/float16 even on upcast inputs. Autocast
    is only entered where it is on (``torch.autocast`` rejects some devices, e.g. ``meta``).
    """
    device_type = x.device.type
    if device_type in ("cpu", "cuda", "xpu", "mps") and torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()


@overload
def like(tensor: torch.Tensor, x: torch.Tensor) -> torch.Tensor: ...
@overload
def like(tensor: None, x: torch.Tensor) -> None: ...
def like(tensor: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A parameter cast to ``x``'s dtype, so a float32 module accepts float16 maps and vice versa."""
    return None if tensor is None else tensor.to(x.dtype)


def positions(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W] -> [B, C, H*W]``; also takes channels-last input (copies when it must)."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def spatial_std(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standard deviation over H, W without Bessel's correction; exactly 0 where the variance is 0 (1x1 maps).

    ``std = v / (sqrt(v + eps) + sqrt(eps))`` with ``v`` the biased variance: this equals
    ``sqrt(v + eps) - sqrt(eps)`` (so it is 0 where ``v = 0``) without the cancellation, and its
    slope at ``v = 0`` is ``1 / (2 sqrt(eps))`` rather than the infinite slope of ``sqrt(v)``.
    The corrected (``N - 1``) estimator would divide by zero on a 1x1 map.
    """
    var = x.var(dim=(2, 3), correction=0)
    return var / ((var + eps).sqrt() + eps**0.5)


def safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v >= 0`` with the exact value, but a zero (not infinite) gradient where ``v = 0``.

    ``sqrt``'s slope at 0 is infinite; a variance that is identically 0 (a 1x1 map) has a zero
    gradient itself, and ``inf * 0`` is NaN in the backward pass. The ``where`` on both sides
    keeps that path out of the graph (the inner one, so no inf is ever formed).
    """
    positive = v > 0
    return torch.where(positive, torch.where(positive, v, torch.ones_like(v)).sqrt(), torch.zeros_like(v))


def require_channels(channels: int | None, pool: str) -> int:
    """``channels`` checked for a pooling whose parameters are sized by it."""
    if channels is None:
        raise TypeError(
            f"{pool} requires `channels` (the C of its [B, C, H, W] input) because its parameters "
            f"are sized by it: use poolbench.pools.create(name, channels=C)"
        )
    if channels < 1:
        raise ValueError(f"{pool}: channels must be positive, got {channels}")
    return int(channels)


def add_scalar(module: nn.Module, name: str, value: float, learnable: bool) -> None:
    """Give ``module`` the scalar hyper-parameter ``name``: a parameter when ``learnable``, else a
    buffer, so a fixed value still moves with ``.to()`` and is saved in the ``state_dict``."""
    tensor = torch.tensor(float(value))
    if learnable:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


def check_value(valid: bool, pool: str, name: str, value: object, rule: str, fix: str) -> None:
    """How a pooling refuses a hyper-parameter value: HyperParameterError ``"{pool}: {name} must be
    {rule}, got {value}; {fix}"`` unless ``valid``, raised by the constructor, so that a run refuses
    the spec in one line before it starts. Write ``valid`` so that NaN makes it False (``a > 0``,
    not ``not a <= 0``)."""
    if not valid:
        raise HyperParameterError(f"{pool}: {name} must be {rule}, got {quote(value)}; {fix}")


def check_eps(pool: str, eps: float, why: str, default: float) -> None:
    """An ``eps`` (``why``: what it keeps finite) must be a finite number > 0."""
    check_value(is_positive(eps), pool, "eps", eps, f"a finite number > 0 ({why})", f"use e.g. {pool}(eps={default})")


def is_positive(value: float) -> bool:
    """``0 < value < inf`` (False for NaN): an ``eps``, a floor, a scale."""
    return 0 < value < math.inf


def check_floor(pool: str, name: str, value: float, floor_name: str, floor: float, learnable: bool,
                example: str, consequence: str, alternative: str = "") -> None:
    """A scalar hyper-parameter clamped to ``>= floor`` in the forward pass.

    Learnable, it must start above the floor: at the floor or below, the clamp passes it no gradient
    (``clamp``'s gradient is 0 at the boundary too), weight decay only pulls it further down, and it
    stays clamped for good. Fixed, the floor itself is the exact value the pooling uses.
    """
    inside = value > floor if learnable else value >= floor
    why = (f"{name} is clamped to >= {floor_name} and gets no gradient there: {consequence}" if learnable
           else f"{name} is clamped to >= {floor_name}")
    check_value(inside and value < math.inf, pool, name, value,
                f"{'>' if learnable else '>='} {floor_name} = {floor} ({why})",
                f"use e.g. {example}" + (f", or {alternative}" if alternative else ""))
