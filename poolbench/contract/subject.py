"""What the checks share: the pooling under test, its test inputs, and one instrumented step."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core.unique import unique
from ..pools.registry import PoolFactory, instantiate
from .findings import CheckStatus

BATCH = 4  # small batches keep the whole check at a few seconds on a CPU
# What PyTorch's BatchNorm raises in train mode when a channel has a single value.
BATCHNORM_ONE_VALUE = "more than 1 value per channel"


class ContractViolation(Exception):
    """A check found a problem; the message is the one-line report (what is wrong, what to fix)."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, shortened: reports stay one line per check."""
    text = " ".join(str(error).split())
    if isinstance(error, SystemExit):
        text = f"{error.code!r} (sys.exit: a pooling must not end the interpreter)"
    if not isinstance(error, ContractViolation):  # whose message is already a sentence
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shape_text(shape: tuple[int, ...] | torch.Size) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def is_lazy(module: nn.Module) -> bool:
    """Whether ``module`` still holds uninitialised (lazy) parameters or buffers."""
    return any(
        isinstance(m, nn.modules.lazy.LazyModuleMixin) and m.has_uninitialized_params()
        for m in module.modules()
    )


@dataclass
class Subject:
    """The pooling under test and how the checks build and feed it."""

    label: str
    factory: PoolFactory
    takes_channels: bool
    pool_inputs: tuple[tuple[int, int, int], ...]
    device: torch.device
    seed: int

    @property
    def channel_counts(self) -> list[int]:
        """The distinct C of the pool inputs, in order."""
        return unique(c for c, _, _ in self.pool_inputs)

    def call_text(self, channels: int | None = None) -> str:
        """How the pooling is constructed, for messages: ``GeM(channels=64)``, ``CustomPool()`` or,
        for a spec's hyper-parameters (a ``functools.partial``), ``TopKPool(channels=64, k=0.5)``."""
        factory, arguments = self.factory, []
        if self.takes_channels:
            arguments.append(f"channels={'C' if channels is None else channels}")
        if isinstance(factory, functools.partial):
            arguments += [f"{key}={value!r}" for key, value in factory.keywords.items()]
            factory = factory.func
        name = getattr(factory, "__name__", type(factory).__name__)
        return f"{name}({', '.join(arguments)})"

    def build(self, channels: int, materialise: tuple[int, int] | None = (4, 4)) -> nn.Module:
        """A fresh instance for ``channels`` input channels, on the device.

        Lazy modules (``nn.LazyLinear`` ...) are materialised with one dry-run forward on a
        ``materialise``-sized map, as the harness does before it builds the optimizer.
        """
        try:
            module = instantiate(self.factory, channels if self.takes_channels else None)
        except (Exception, SystemExit) as error:  # sys.exit() in a constructor is a bad pooling too
            raise ContractViolation(f"{self.call_text(channels)} raised {one_line(error)}") from error
        if not isinstance(module, nn.Module):
            raise ContractViolation(
                f"{self.call_text(channels)} returned {type(module).__name__}, not an nn.Module"
            )
        module.to(self.device)
        if materialise is not None and is_lazy(module):
            with torch.no_grad():
                module(self.maps("relu", (2, channels, *materialise)))
        return module

    def maps(self, kind: str, shape: tuple[int, int, int, int], dtype: torch.dtype = torch.float32,
             ) -> torch.Tensor:
        """A reproducible test feature map of ``shape`` ``[B, C, H, W]``.

        kinds: ``relu`` (post-ReLU Gaussian, what the benchmark models feed), ``dead`` (half the
        channels all zero: dead ReLU units are common), ``constant`` (no spatial variation: zero
        variance), ``large`` (post-ReLU with activations ~1e3), ``negative`` (pre-ReLU Gaussian).
        """
        generator = torch.Generator().manual_seed(self.seed + zlib.crc32(f"{kind}{shape}".encode()))
        batch, channels, height, width = shape
        if kind == "constant":
            x = torch.rand(batch, channels, 1, 1, generator=generator).expand(shape).contiguous() * 2
        else:
            x = torch.randn(shape, generator=generator)
            if kind != "negative":
                x = x.relu()
            if kind == "dead":
                x[:, ::2] = 0
            if kind == "large":
                x = x * 1e3
        return x.to(device=self.device, dtype=dtype)


class _FeatureMap(torch.autograd.Function):
    """The identity, standing in for the layer that made the feature map a pooling receives.

    A real pool input is no leaf tensor but the output of a layer, and in the CIFAR ResNets that
    layer is an in-place ReLU, which keeps its output for its backward pass: a pooling that changes
    its input in place (``x.relu_()``) makes that backward fail. This op keeps its output the same
    way, so such a pooling fails here as in training, while the gradient passes through unchanged
    and the input gradient is still checked. (A leaf input would refuse every in-place op in the
    forward pass, an artefact; VGG's max-pool and MobileNetV2's ReLU6 keep no output, but the check
    must hold for every model.)
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        output = x.clone()
        ctx.save_for_backward(output)
        return output

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        ctx.saved_tensors  # noqa: B018  (reading them is autograd's check that nothing changed them)
        return grad


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a pooling receives it in training: the output of a layer (see :class:`_FeatureMap`)
    when it requires grad, else ``x`` itself (evaluation runs without a graph)."""
    return _FeatureMap.apply(x) if x.requires_grad else x


# What step() reports for a pooling that changes its input in place, instead of autograd's message.
INPLACE_INPUT = ("forward() changes its input in place (x.relu_(), x.clamp_(...), x += ...): the layer "
                 "before the pooling (the ReLU ending a ResNet block) needs that map for its backward pass, "
                 "so training fails; compute out of place, e.g. x = x.relu() or x = x.clamp(min=0)")


# A check returns (status, message) or raises ContractViolation with the message of a FAIL.
Check = Callable[[Subject], tuple[CheckStatus, str]]


@dataclass
class Step:
    """What one forward (and backward) of the pooling produced."""

    output: torch.Tensor
    input_grad: torch.Tensor | None
    param_grads: dict[str, torch.Tensor | None]


def step(module: nn.Module, x: torch.Tensor, *, train: bool, backward: bool | None = None) -> Step:
    """Run ``module`` on ``x`` in train or eval mode; in train mode also backward.

    The loss is a random projection of the output rather than ``output.sum()``, so that
    poolings whose outputs are normalised (constant sum) still pass a gradient back.
    Eval runs under ``no_grad`` as the harness's evaluation does.
    """
    backward = train if backward is None else backward
    module.train(train)
    x = x.detach().clone().requires_grad_(backward)  # the leaf whose gradient is checked
    for p in module.parameters():
        p.grad = None
    mode = "train" if train else "eval"
    try:
        with torch.set_grad_enabled(backward):
            pool_input = feature_map(x)
            version = pool_input._version  # bumped by every in-place op on it
            output = module(pool_input)
    except (Exception, SystemExit) as error:
        raise ContractViolation(
            f"forward() raised {one_line(error)} on input {shape_text(x.shape)} ({mode} mode)"
        ) from error
    if not isinstance(output, torch.Tensor):
        raise ContractViolation(f"forward() returned {type(output).__name__}, not a Tensor: return [B, C]")
    if backward and output.requires_grad:
        generator = torch.Generator().manual_seed(zlib.crc32(str(tuple(output.shape)).encode()))
        weight = torch.randn(output.shape, generator=generator).to(output.device)
        try:
            (output.float() * weight).sum().backward()
        except Exception as error:
            if pool_input._version != version:
                raise ContractViolation(INPLACE_INPUT) from error
            raise ContractViolation(
                f"backward raised {one_line(error)} on input {shape_text(x.shape)} ({mode} mode)"
            ) from error
    grads = {name: p.grad for name, p in module.named_parameters() if p.requires_grad}
    return Step(output.detach(), x.grad if backward else None, grads)


def nonfinite_part(result: Step) -> str | None:
    """``"output is NaN"``, ``"input gradient is inf"``, ...: the first non-finite tensor, if any."""

    def kind(t: torch.Tensor) -> str | None:
        if t.is_floating_point() and not torch.isfinite(t).all():
            return "NaN" if torch.isnan(t).any() else "inf"
        return None

    if (k := kind(result.output)) is not None:
        return f"output is {k}"
    if result.input_grad is not None and (k := kind(result.input_grad)) is not None:
        return f"input gradient is {k}"
    for name, grad in result.param_grads.items():
        if grad is not None and (k := kind(grad)) is not None:
            return f"gradient of parameter '{name}' is {k}"
    return None


def hidden_state(module: nn.Module) -> Iterator[tuple[str, object]]:
    """Tensors, parameters and modules that ``module`` holds outside PyTorch's registries.

    Plain tensor attributes and python lists/dicts of parameters or modules are invisible to
    ``.to()``, ``.cuda()``, ``state_dict()`` and the optimizer.
    """
    registries = {"_parameters", "_buffers", "_modules", "_non_persistent_buffers_set"}
    for prefix, sub in module.named_modules():
        for attr, value in vars(sub).items():
            if attr in registries:
                continue
            path = f"{prefix}.{attr}" if prefix else attr
            if isinstance(value, torch.Tensor):
                yield path, value
            elif isinstance(value, (list, tuple, dict)):
                items = value.items() if isinstance(value, dict) else enumerate(value)
                for key, item in items:
                    if isinstance(item, (torch.Tensor, nn.Module)):
                        yield f"{path}[{key!r}]", item
