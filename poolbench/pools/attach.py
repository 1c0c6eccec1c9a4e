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

- any other model, e.g. a researcher's own ``nn.Sequential`` CNN: an ``nn.AdaptiveAvgPool2d`` or
  ``nn.AdaptiveMaxPool2d`` with output size 1 at any depth and under any name. Of several (a
  squeeze-and-excitation block pools too) it is the last one run by a dry forward after which no
  module makes a spatial map, i.e. the one that feeds the head. C is measured by that forward;
  what follows (``nn.Flatten``, ``torch.flatten``) gets the ``[B, C, 1, 1]`` it got;
- a model that pools with a function in ``forward`` (``x.mean((2, 3))``, ``x.mean([-2, -1])``,
  ``x.amax((2, 3))``, ``F.adaptive_avg_pool2d(x, 1)``, ...): where ``torch.fx`` can trace the model,
  the last such call is replaced by the pooling as a module of the traced graph, and ``attach``
  returns that ``torch.fx.GraphModule`` (the same parameters, under the same names). Where it
  cannot, a ValueError says so and how to make the pooling a module.

``at="path.to.module"`` names the module to replace where that is not the one wanted. ``attach``
records which module it replaced in ``model.pool_path``; on the last two kinds a dry forward then
proves the new pooling is called.

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

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp
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
    + ", an nn.AdaptiveAvgPool2d/AdaptiveMaxPool2d(1) feeding the head, or x.mean((2, 3)), x.amax((2, 3)) or "
    "F.adaptive_avg_pool2d(x, 1) in a forward torch.fx can trace"
)
MODULE_FIX = ("make the global pooling a module (self.pool = nn.AdaptiveAvgPool2d(1), then torch.flatten(x, 1)), "
              "or name the module to replace with attach(model, spec, at='path.to.module')")
_EXAMPLE_SIZES = (32, 64, 224)  # the image sizes a dry forward tries, smallest first
_GRAPH_POOL = "poolbench_pool"  # the traced graph's module that is the new pooling


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
    path: str = ""  # the replaced module's path in the model (``model.pool_path``)
    root: nn.Module | None = None  # what attach returns when not the model: a traced GraphModule
    prove: bool = False  # a dry forward must show the new pooling is called (a site found by search)


def attach(model: nn.Module, spec: str | PoolFactory | nn.Module = "gap", *, at: str | None = None,
           **kwargs: object) -> nn.Module:
    """Replace the global pooling of ``model`` by the poolbench pooling ``spec``; returns ``model``.

    ``spec`` is anything :func:`poolbench.pools.create` takes (``"gem"``, ``"topk(k=0.5)"``,
    ``"my_pool.py"``, a class), built for the channels the head expects with ``kwargs`` as its
    hyper-parameters, or a pooling module used as it is. Works on torchvision classifiers, timm
    CNNs and poolbench's models (see the module's docstring for where each keeps its pooling);
    the pooling is moved to the device and dtype of the model and given its train/eval mode.
    A model whose pooling cannot be found is a ValueError naming what was looked for. ``at``
    names the module to replace (``"features.pool"``). Returns ``model``, or the traced
    ``torch.fx.GraphModule`` of a model that pools with a function in ``forward``; either has
    ``pool_path``, the path of the module replaced.

    With timm, call ``model.reset_classifier(...)`` before ``attach``: it re-creates the pooling
    from a name and refuses the one attached here.
    """
    site = _site_at(model, at) if at is not None else _find_site(model)
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
    attached = AttachedPool(pool, site.flatten, site.channels_last) if site.wrap else pool
    setattr(site.parent, site.name, attached)
    result = site.root if site.root is not None else model
    if site.prove:
        _prove_called(result, attached, site.path)
    # setattr: nn.Module's __setattr__ is typed for tensors and modules only
    setattr(result, "pool_path", site.path or _path_of(model, site.parent, site.name))  # noqa: B010
    return result


def _path_of(model: nn.Module, parent: nn.Module, name: str) -> str:
    parent_path = next((path for path, module in model.named_modules() if module is parent), "")
    return f"{parent_path}.{name}" if parent_path else name


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
                     wrap=True, path=f"{block_name}.pool")
    site = _adaptive_pool_site(model)
    if site is not None:
        return site
    return _functional_site(model)


# --- any model: a dry forward finds the pooling that feeds the head --------------------------------

def _is_global_adaptive(module: nn.Module) -> bool:
    return (isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d))
            and _pair(module.output_size) == (1, 1))


def _example_input(model: nn.Module, size: int) -> torch.Tensor:
    """Zeros of ``[1, C_in, size, size]``, C_in from the model's first convolution (3 without one)."""
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    reference = next(iter(model.parameters()), None)
    return torch.zeros(1, first_conv.in_channels if first_conv is not None else 3, size, size,
                       device=reference.device if reference is not None else None,
                       dtype=reference.dtype if reference is not None and reference.is_floating_point() else None)


@contextmanager
def _dry(model: nn.Module) -> Iterator[None]:
    """Eval mode, no gradients, the random generators and the train/eval flags put back after."""
    modes = {module: module.training for module in model.modules()}
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()
            yield
    finally:
        for module, training in modes.items():
            module.training = training


def _leaf_calls(model: nn.Module) -> list[tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] | None:
    """(module, input shape, output shape) of every leaf module a dry forward runs, in order; None
    when the model takes none of the example sizes."""
    calls: list[tuple[nn.Module, tuple[int, ...], tuple[int, ...]]] = []

    def record(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if args and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor):
            calls.append((module, tuple(args[0].shape), tuple(output.shape)))

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(record) for m in leaves]
    try:
        return calls if _dry_forward(model, calls.clear) else None
    finally:
        for handle in handles:
            handle.remove()


def _dry_forward(model: nn.Module, failed: Callable[[], None]) -> bool:
    """One forward on zeros of the first example size the model takes (``failed`` after each that
    it does not); whether one went through."""
    with _dry(model):
        for size in _EXAMPLE_SIZES:
            try:
                model(_example_input(model, size))
                return True
            except Exception:  # noqa: BLE001 - any failure: try the next size, then give up
                failed()
    return False


def _feeds_head(calls: list[tuple[nn.Module, tuple[int, ...], tuple[int, ...]]], index: int) -> bool:
    """Whether no module run after call ``index`` makes a spatial map: the pooling's output is what
    the head sees (a squeeze-and-excitation pooling is followed by more convolutions)."""
    return not any(len(out) == 4 and out[2] * out[3] > 1 for _, _, out in calls[index + 1:])


def _adaptive_pool_site(model: nn.Module) -> _Site | None:
    """The site of the adaptive pooling to a 1x1 map that feeds the head, if the model has one."""
    paths = {module: path for path, module in model.named_modules() if _is_global_adaptive(module)}
    if not paths:
        return None
    calls = _leaf_calls(model)
    if calls is None:
        raise ValueError(f"attach: {type(model).__name__} has {len(paths)} global adaptive pooling(s) "
                         f"({', '.join(paths.values())}) but a dry forward on {_EXAMPLE_SIZES} px images failed, "
                         "so which one feeds the head and its channels are unknown: name it with at='path'")
    for index in range(len(calls) - 1, -1, -1):
        module, shape_in, _ = calls[index]
        if module in paths and len(shape_in) == 4 and _feeds_head(calls, index):
            return _module_site(model, paths[module], shape_in[1])
    return None  # they pool inside blocks only: the global pooling is a function in forward


def _module_site(model: nn.Module, path: str, channels: int) -> _Site:
    parent_path, _, name = path.rpartition(".")
    return _Site(model.get_submodule(parent_path), name, channels, wrap=True, path=path, prove=True)


def _site_at(model: nn.Module, path: str) -> _Site:
    """The site of the module at ``path``, its channels measured by a dry forward."""
    try:
        module = model.get_submodule(path)
    except AttributeError:
        modules = [p for p, _ in model.named_modules() if p]
        close = difflib.get_close_matches(path, modules, n=3, cutoff=0.5)
        raise ValueError(f"attach: {type(model).__name__} has no module {path!r}"
                         + (f": did you mean {', '.join(close)}?" if close else "")) from None
    if not path or module is model:
        raise ValueError("attach: at= names the module to replace inside the model, not the model itself")
    seen = _inputs_seen(model, module)
    if not seen or len(seen[-1]) != 4:
        raise ValueError(f"attach: {type(model).__name__}.{path} saw no [B, C, H, W] map in a dry forward on "
                         f"{_EXAMPLE_SIZES} px images: name the global pooling of the model")
    return _module_site(model, path, seen[-1][1])


def _inputs_seen(model: nn.Module, module: nn.Module) -> list[tuple[int, ...]]:
    """The shapes of what ``module`` gets in a dry forward of ``model``."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_pre_hook(lambda _, args: seen.append(tuple(args[0].shape)))
    try:
        _dry_forward(model, seen.clear)
    finally:
        handle.remove()
    return seen


def _prove_called(model: nn.Module, attached: nn.Module, path: str) -> None:
    """A dry forward must run the new pooling: never a silent run with the old one."""
    calls: list[bool] = []
    handle = attached.register_forward_hook(lambda *_: calls.append(True))
    try:
        went_through = _dry_forward(model, calls.clear)
    finally:
        handle.remove()
    if not went_through:
        raise ValueError(f"attach: with the pooling put at {path}, {type(model).__name__} fails a dry forward (what "
                         f"follows {path} cannot take a pooled [B, C]): name the model's global pooling")
    if not calls:
        raise ValueError(f"attach: the pooling put at {path} of {type(model).__name__} is not called by a dry "
                         f"forward, so the model would train with its old pooling: {MODULE_FIX}")


# --- functional pooling in forward: torch.fx ---------------------------------------------------------

def _spatial_dims(value: Any) -> bool:
    dims = [value] if isinstance(value, int) else list(value) if isinstance(value, (tuple, list)) else []
    return len(dims) == 2 and {d % 4 if isinstance(d, int) else d for d in dims} == {2, 3}


def _functional_pool(node: torch.fx.Node) -> bool | None:
    """For a node that pools over H, W to one value per channel: whether it keeps the dims
    (``[B, C, 1, 1]``); None for any other node."""
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    args, kwargs = list(node.args), dict(node.kwargs)
    if node.op in ("call_method", "call_function") and name in ("mean", "amax"):
        dims = args[1] if len(args) > 1 else kwargs.get("dim")
        if _spatial_dims(dims):
            return bool(args[2] if len(args) > 2 else kwargs.get("keepdim", False))
        return None
    if node.op == "call_function" and name in ("adaptive_avg_pool2d", "adaptive_max_pool2d",
                                               "_adaptive_max_pool2d"):
        size = args[1] if len(args) > 1 else kwargs.get("output_size")
        return True if _pair(size) == (1, 1) and not kwargs.get("return_indices") else None
    return None


def _functional_site(model: nn.Module) -> _Site:
    """The last functional global pooling of a traced ``model``, replaced by a module of the graph."""
    name = type(model).__name__
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 - fx raises many kinds on untraceable code
        reason = " ".join(str(error).split())[:160]
        raise ValueError(f"attach: cannot find the global pooling of {name}: no module of {LOOKED_FOR}, and "
                         f"torch.fx cannot trace its forward to find a functional one ({reason}); "
                         f"{MODULE_FIX}") from None
    found = [(node, keepdim) for node in traced.graph.nodes if (keepdim := _functional_pool(node)) is not None]
    if not found:
        raise ValueError(f"attach: cannot find the global pooling of {name}: looked for {LOOKED_FOR}; {MODULE_FIX}")
    node, keepdim = found[-1]
    source = node.args[0]
    if not isinstance(source, torch.fx.Node):
        raise ValueError(f"attach: {name} pools something that is not a traced tensor; {MODULE_FIX}")
    channels = _traced_channels(traced, source)
    traced.add_submodule(_GRAPH_POOL, nn.Identity())
    with traced.graph.inserting_after(node):
        replacement = traced.graph.call_module(_GRAPH_POOL, (source,))
    node.replace_all_uses_with(replacement)
    traced.graph.erase_node(node)
    traced.recompile()
    function = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "a pooling")
    where = f"{_GRAPH_POOL} (was {function}() in forward)"
    return _Site(traced, _GRAPH_POOL, channels, wrap=True, flatten=not keepdim, path=where, root=traced,
                 prove=True)


def _traced_channels(traced: torch.fx.GraphModule, source: torch.fx.Node) -> int:
    """C of the map the functional pooling gets, from shapes propagated through the graph."""
    with _dry(traced):
        for size in _EXAMPLE_SIZES:
            try:
                ShapeProp(traced).propagate(_example_input(traced, size))
            except Exception:  # noqa: BLE001
                continue
            meta = source.meta.get("tensor_meta")
            shape = tuple(getattr(meta, "shape", ()))
            if len(shape) == 4:
                return int(shape[1])
            break
    raise ValueError(f"attach: {type(traced).__name__} pools a map whose shape a dry forward could not measure; "
                     f"{MODULE_FIX}")


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
