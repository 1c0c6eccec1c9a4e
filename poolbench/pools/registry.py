"""The pooling registry: names -> constructors, user pooling files, and construction by spec.

A pooling constructor may take ``channels`` (the C it will see) or nothing at all
(the original task's ``CustomPool()`` style). :func:`instantiate` hides that difference.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path

from torch import nn

PoolFactory = Callable[..., nn.Module]

_REGISTRY: dict[str, PoolFactory] = {}


class PoolSpecError(ValueError):
    """A pooling spec that names nothing usable: unknown name, missing file or class."""


def register(name: str) -> Callable[[PoolFactory], PoolFactory]:
    """Decorator that registers a pooling class (or factory) under ``name``.

    >>> @register("my_pool")
    ... class MyPool(nn.Module): ...
    """
    key = name.lower()

    def decorator(factory: PoolFactory) -> PoolFactory:
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"pooling {name!r} is already registered; choose another name")
        _REGISTRY[key] = factory
        return factory

    return decorator


def names() -> list[str]:
    """All registered pooling names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> PoolFactory:
    """The constructor registered under ``name``; an unknown name lists the closest ones."""
    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `poolbench list`"
        raise PoolSpecError(f"unknown pooling {name!r}: {hint}")
    return _REGISTRY[key]


def create(name: str, channels: int | None = None, **kwargs) -> nn.Module:
    """Build the registered pooling ``name`` for ``channels`` input channels."""
    return instantiate(get(name), channels, **kwargs)


def accepts_channels(factory: PoolFactory) -> bool:
    """Whether ``factory`` takes a ``channels`` argument (else it is built with no arguments)."""
    if isinstance(factory, type) and factory.__init__ is nn.Module.__init__:
        return False  # no __init__ of its own: nn.Module's (*args, **kwargs) would take nothing
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "channels" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def instantiate(factory: PoolFactory, channels: int | None = None, **kwargs) -> nn.Module:
    """Call ``factory`` with ``channels`` when it takes it, with no channel argument otherwise."""
    if channels is not None and accepts_channels(factory):
        kwargs["channels"] = channels
    return factory(**kwargs)


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a Python file (``path.py`` or ``path.py:Class``)."""
    return spec.split(":", 1)[0].endswith(".py")


def load_file(spec: str) -> PoolFactory:
    """Load the pooling class from ``path.py[:ClassName]`` (class ``CustomPool`` by default)."""
    path_text, _, class_name = spec.partition(":")
    class_name = class_name or "CustomPool"
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise PoolSpecError(f"pooling file {path_text!r} not found: give an existing path.py[:Class]")
    # Named by the file's path, the same in every process, so that pickles of it load elsewhere.
    module_name = "poolbench_user_pool_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    # Registered in sys.modules so that dataclasses, pickling and torch.compile can find it.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[module_name]
        raise PoolSpecError(
            f"pooling file {path_text!r} failed to import: {type(error).__name__}: {error}"
        ) from error
    factory = getattr(module, class_name, None)
    if factory is None:
        found = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)]
        raise PoolSpecError(
            f"pooling file {path_text!r} has no class {class_name!r}; "
            f"nn.Module classes found: {', '.join(found) or 'none'} (use {path_text}:ClassName)"
        )
    return factory


def resolve(spec: str) -> PoolFactory:
    """The constructor a spec names: a registered name or ``path.py[:Class]``."""
    return load_file(spec) if is_file_spec(spec) else get(spec)


def build(spec: str, channels: int, **kwargs) -> nn.Module:
    """Build the pooling that ``spec`` names for ``channels`` input channels."""
    return instantiate(resolve(spec), channels, **kwargs)
