"""The structural contract checks: where the pooling keeps its state, and how it behaves as a module.

These catch the mistakes that run fine for one forward and then waste a run: parameters created
in ``forward()``, a fixed-size buffer sliced to C, batch-dependent evaluation, state that does not
move with ``.to()`` or survive ``state_dict()``. Same conventions as :mod:`.numeric`.
"""

from __future__ import annotations

import statistics
import time
from itertools import chain

import torch
from torch import nn

from ..pools.classic import GlobalAvgPool
from .findings import CheckStatus
from .subject import (
    BATCH,
    BATCHNORM_ONE_VALUE,
    INPLACE_INPUT,
    ContractViolation,
    Subject,
    feature_map,
    hidden_state,
    is_lazy,
    nonfinite_part,
    one_line,
    shape_text,
    step,
)


def _registered(module: nn.Module) -> dict[str, torch.Tensor]:
    """``{"parameter att.0.weight": tensor, "buffer ...": tensor}``: every registered parameter and buffer.

    The tensors themselves, not their ids: holding them keeps a replaced object's id from being reused.
    """
    items = chain(
        (("parameter", n, p) for n, p in module.named_parameters(remove_duplicate=False)),
        (("buffer", n, b) for n, b in module.named_buffers(remove_duplicate=False)),
    )
    return {f"{kind} {name}": tensor for kind, name, tensor in items}


def _listing(keys: list[str], limit: int = 4) -> str:
    shown = ", ".join(k.split(" ", 1)[1] for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_forward_params(subject: Subject) -> tuple[CheckStatus, str]:
    """No parameter or buffer is created inside ``forward()``, and no parameter re-created."""
    lazy = []
    for channels, height, width in subject.pool_inputs:
        module = subject.build(channels, materialise=None)
        if is_lazy(module):
            lazy = [f"{n or 'self'}: {type(m).__name__}" for n, m in module.named_modules()
                    if isinstance(m, nn.modules.lazy.LazyModuleMixin)]
        before = _registered(module)
        x = subject.maps("relu", (2, channels, height, width))
        step(module, x, train=True)
        after_first = _registered(module)
        step(module, x, train=True)
        after_second = _registered(module)
        created = [k for k in after_first if k not in before]
        if created:
            kinds = [k for k in ("parameter", "buffer") if any(c.startswith(k) for c in created)]
            raise ContractViolation(
                f"forward() created {'s and '.join(kinds)}s {_listing(created)}: the optimizer is built "
                f"before the first forward and would never see them (and they stay on the wrong device); "
                f"create them in __init__ (take a `channels` argument for their sizes)"
            )
        # Re-assigning a buffer (running statistics) is fine; a new Parameter object is never trained.
        replaced = [k for k, tensor in after_second.items()
                    if k.startswith("parameter") and after_first.get(k) is not tensor]
        if replaced:
            raise ContractViolation(
                f"forward() re-creates {_listing(replaced)} at every call: they are re-initialised each step "
                f"and never trained (and the optimizer never sees them); create them once in __init__"
            )
    if lazy:
        return "WARN", (
            f"lazily initialised modules ({', '.join(lazy[:3])}) get their parameters at the first forward: "
            f"poolbench materialises them with a dry run before building the optimizer; elsewhere do the same"
        )
    return "PASS", "forward() creates no parameters or buffers"


def check_hidden_params(subject: Subject) -> tuple[CheckStatus, str]:
    """No parameter or module sits in a plain list/dict/tuple, where nothing registers it."""
    channels, height, width = subject.pool_inputs[0]
    module = subject.build(channels, materialise=(height, width))
    step(module, subject.maps("relu", (2, channels, height, width)), train=True)
    for path, value in hidden_state(module):
        if isinstance(value, (nn.Parameter, nn.Module)) and "[" in path:
            kind = "nn.Parameter" if isinstance(value, nn.Parameter) else "nn.Module"
            fix = "nn.ParameterList/ParameterDict" if kind == "nn.Parameter" else "nn.ModuleList/ModuleDict"
            raise ContractViolation(
                f"'{path}' is an {kind} inside a plain python container: the optimizer, .to() and "
                f"state_dict() never see it; use {fix}"
            )
    return "PASS", "all parameters and submodules are registered"


def check_fixed_buffer(subject: Subject) -> tuple[CheckStatus, str]:
    """A parameter that is a fixed-size slot buffer sliced to C (e.g. ``w = ones(2048); w[:C]``):
    WARN where every pool input's C fits (it trains correctly; the other slots are wasted), FAIL
    where a pool input's C exceeds the slots (that run would crash).

    Heuristic: at C=32 a dimension larger than C whose gradient is non-zero in slot C-1 and
    zero in every slot from C on is sliced to C. (32 differs from the 4x4=16 positions, so a
    buffer sliced to H*W is not mistaken for one sliced to C, and any power-of-two head count
    up to 32 divides it.)
    """
    channels = 32
    module = subject.build(channels)
    result = step(module, subject.maps("relu", (BATCH, channels, 4, 4)), train=True)
    widest = max(subject.channel_counts)
    for name, grad in result.param_grads.items():
        if grad is None:
            continue
        for dim, size in enumerate(grad.shape):
            if size <= channels:
                continue
            per_slot = grad.detach().abs().movedim(dim, 0).reshape(size, -1).sum(dim=1)
            if per_slot[channels - 1] > 0 and not per_slot[channels:].any():
                if widest > size:
                    raise ContractViolation(
                        f"parameter '{name}' has a fixed size {size} and only its first C entries get a "
                        f"gradient (it is sliced to C): the pool input's C={widest} exceeds its {size} slots and "
                        f"crashes; size it with a `channels` constructor argument"
                    )
                used = ", ".join(f"C={c}: {100 * (size - c) / size:.0f}% unused" for c in subject.channel_counts)
                return "WARN", (
                    f"parameter '{name}' has a fixed size {size} and only its first C entries get a gradient "
                    f"(first C={channels} at C={channels}): it is sliced to C, which trains correctly here but "
                    f"wastes the other slots ({used}) and crashes for C > {size}; size it with a `channels` "
                    f"constructor argument"
                )
    return "PASS", "no fixed-size parameter is sliced to C"


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # float32 batched kernels may differ from single-sample ones in the last bits.
    scale = float(a.abs().nan_to_num(posinf=0, neginf=0).max()) if a.numel() else 0.0
    return a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-5 * max(1.0, scale), equal_nan=True)


def check_eval_independence(subject: Subject) -> tuple[CheckStatus, str]:
    """In eval mode a sample's output does not depend on the rest of the batch, and is deterministic."""
    for channels, height, width in subject.pool_inputs:
        module = subject.build(channels, materialise=(height, width))
        x = subject.maps("relu", (6, channels, height, width))
        batch = step(module, x, train=False).output
        again = step(module, x, train=False).output
        if not _close(batch, again):
            raise ContractViolation(
                f"two eval calls on the same input {shape_text(x.shape)} give different outputs: sample "
                f"only in training (if self.training) and use the expectation in eval"
            )
        single = torch.cat([step(module, x[i:i + 1], train=False).output for i in range(len(x))])
        if not _close(batch, single):
            diff = float((batch - single).abs().nan_to_num(nan=float("inf")).max())
            raise ContractViolation(
                f"in eval mode a sample's output depends on the rest of the batch (max difference "
                f"{diff:.3g} on {shape_text(x.shape)}): normalise with running statistics (like "
                f"BatchNorm's running_mean) in eval, not with the batch's"
            )
    return "PASS", "eval output is per sample and deterministic"


def check_train_batch1(subject: Subject) -> tuple[CheckStatus, str]:
    """Training works with batch 1 on a 1x1 map (a last incomplete batch of one image)."""
    for channels in subject.channel_counts:
        module = subject.build(channels, materialise=(1, 1))
        x = subject.maps("relu", (1, channels, 1, 1))
        try:
            result = step(module, x, train=True)
        except ContractViolation as violation:
            if BATCHNORM_ONE_VALUE not in str(violation):
                raise
            return "WARN", (
                f"BatchNorm cannot train on one value (batch 1 on a 1x1 map, C={channels}): fine at batch "
                f"128, but a last batch of 1 would crash; drop incomplete batches or use LayerNorm/GroupNorm"
            )
        problem = nonfinite_part(result)
        if problem is not None:
            if nonfinite_part(step(module, subject.maps("relu", (BATCH, channels, 1, 1)), train=True)):
                return "WARN", "not tested: already non-finite at batch 4 on 1x1 maps (see the finite checks)"
            raise ContractViolation(
                f"{problem} in train mode with batch 1 on a 1x1 map (C={channels}): a statistic over the "
                f"batch of one value (e.g. a std with Bessel's correction) is NaN; use correction=0, add eps"
            )
    return "PASS", "trains with batch 1 on 1x1 maps"


def check_state_dict(subject: Subject) -> tuple[CheckStatus, str]:
    """A fresh instance loaded with the state_dict gives the same eval output."""
    for channels, height, width in subject.pool_inputs:
        source = subject.build(channels, materialise=(height, width))
        x = subject.maps("relu", (BATCH, channels, height, width))
        step(source, x, train=True)  # moves running statistics away from their init
        with torch.no_grad():  # and the parameters, so that a round trip that loses them shows
            for p in source.parameters():
                if p.is_floating_point():
                    p.mul_(1 + 0.05 * torch.randn_like(p).clamp(-2, 2))
        torch.manual_seed(subject.seed + 1)  # a fresh instance whose random init differs
        target = subject.build(channels, materialise=(height, width))
        try:
            target.load_state_dict(source.state_dict())
        except Exception as error:
            raise ContractViolation(
                f"loading the state_dict into a fresh {subject.call_text(channels)} failed: "
                f"{one_line(error, 200)}"
            ) from error
        expected = step(source, x, train=False).output
        if not _close(expected, step(source, x, train=False).output):
            return "WARN", "not tested: the eval output is not deterministic (see eval_independence)"
        if not _close(expected, step(target, x, train=False).output):
            raise ContractViolation(
                f"a fresh instance loaded with the state_dict gives a different eval output on "
                f"{shape_text(x.shape)}: some state lives outside parameters and buffers (a plain tensor "
                f"or number attribute); register it with register_buffer"
            )
    return "PASS", "state_dict round trip reproduces the eval output"


def _other_device(device: torch.device) -> torch.device:
    """A device to move to: CUDA if there is one, else meta (a device no forgotten tensor is on)."""
    if device.type == "cuda":
        return torch.device("cpu")
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("meta")


def _stale_tensors(module: nn.Module, dtype: torch.dtype | None, device: torch.device) -> list[str]:
    """Tensors in ``module`` that did not follow ``.to(dtype)`` / ``.to(device)``."""
    tensors = chain(module.named_parameters(), module.named_buffers(),
                    ((p, v) for p, v in hidden_state(module) if isinstance(v, torch.Tensor)))
    return [
        f"'{path}' ({value.dtype}, {value.device})" for path, value in tensors
        if value.device.type != device.type or (dtype is not None and value.is_floating_point()
                                                and value.dtype != dtype)
    ]


# What PyTorch says when an op mixes devices.
_DEVICE_ERRORS = ("is not on the expected device", "Expected all tensors to be on the same device")


def check_to_dtype_device(subject: Subject) -> tuple[CheckStatus, str]:
    """After ``.to(float64)`` and ``.to(<other device>)`` every tensor moved and forward works."""
    channels, height, width = subject.pool_inputs[0]
    module = subject.build(channels, materialise=(height, width)).to(torch.float64)
    step(module, subject.maps("relu", (2, channels, height, width), dtype=torch.float64), train=True)
    stale = _stale_tensors(module, torch.float64, subject.device)
    if stale:
        raise ContractViolation(
            f"tensor attribute {stale[0]} did not move with .to(torch.float64): a plain tensor attribute "
            f"is not a buffer, so .to(), .cuda() and state_dict() skip it; use self.register_buffer(name, t)"
        )
    other = _other_device(subject.device)
    module = subject.build(channels, materialise=(height, width)).to(other)
    x = subject.maps("relu", (2, channels, height, width)).to(other)
    note = ""
    try:
        step(module, x, train=False)
    except ContractViolation as violation:
        if any(text in str(violation) for text in _DEVICE_ERRORS):
            stand_in = " (standing in for .cuda())" if other.type == "meta" else ""
            raise ContractViolation(
                f"after .to({str(other)!r}){stand_in} {violation}: forward() uses a tensor on a fixed "
                f"device; create tensors with device=x.device (x.new_zeros(...)) or register buffers"
            ) from violation
        if other.type != "meta":
            raise
        # meta tensors have no values: .item() and data-dependent branches cannot run there
        note = f" (the meta forward could not run: {str(violation)[:80]})"
    stale = _stale_tensors(module, None, other)
    if stale:
        raise ContractViolation(
            f"tensor attribute {stale[0]} did not move with .to({str(other)!r}): a plain tensor attribute "
            f"is not a buffer; use self.register_buffer(name, t)"
        )
    stand_in = " (standing in for a GPU)" if other.type == "meta" else ""
    return "PASS", f"all tensors follow .to(torch.float64) and .to({str(other)!r}){stand_in}{note}"


COST_WARN_RATIO = 100  # forward+backward time relative to GAP above which the cost check warns


def check_cost(subject: Subject) -> tuple[CheckStatus, str]:
    """Forward+backward time relative to GAP at 64x8x8 with batch 128 (the ResNet-56 pool input)."""
    shape = (128, 64, 8, 8)
    x = subject.maps("relu", shape).requires_grad_()
    modules = {"gap": GlobalAvgPool().to(subject.device), "pool": subject.build(64, materialise=(8, 8))}
    times: dict[str, list[float]] = {"gap": [], "pool": []}

    def timed(module: nn.Module) -> float:
        start = time.perf_counter()
        pool_input = feature_map(x)
        version = pool_input._version
        output = module(pool_input)
        if output.requires_grad:
            try:
                output.sum().backward()
            except RuntimeError as error:
                if pool_input._version != version:
                    raise ContractViolation(INPLACE_INPUT) from error
                raise
        if subject.device.type == "cuda":
            torch.cuda.synchronize(subject.device)
        return time.perf_counter() - start

    for module in modules.values():  # warm-up: first calls allocate and pick kernels
        module.train()
        timed(module)
    deadline = time.perf_counter() + 0.8
    while len(times["gap"]) < 3 or (len(times["gap"]) < 9 and time.perf_counter() < deadline):
        for key, module in modules.items():
            times[key].append(timed(module))
    gap, pool = statistics.median(times["gap"]), statistics.median(times["pool"])
    ratio = pool / max(gap, 1e-9)
    text = (f"forward+backward on {shape_text(shape)}: {pool * 1e3:.2f} ms, {ratio:.1f}x GAP "
            f"({gap * 1e3:.2f} ms)")
    status: CheckStatus = "WARN" if ratio > COST_WARN_RATIO else "PASS"
    return status, text + ("; expect slower training" if status == "WARN" else "")
