"""Global poolings ``[B, C, H, W] -> [B, C]``: the zoo, its registry, functional forms and attach().

The public API is :func:`create` (a pooling from any spec), :func:`names`, :func:`register`,
:func:`attach` (put a pooling into a torchvision or timm classifier), :mod:`.functional` (the
poolings as functions), :class:`PoolSpecError` and its :class:`HyperParameterError` (a value a
pooling refuses).

>>> import poolbench.pools as pools
>>> pools.create("gem", channels=64)
GeM(p=3.000, eps=1e-06, p_min=1.0)
>>> pools.create("topk(k=0.5)", channels=64)  # a registered pooling with hyper-parameters
TopKPool(k=0.5)
>>> "gap" in pools.names()
True
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from typing import Any

from . import registry
from .attach import attach
from .registry import HyperParameterError, PoolSpecError, create, names, register

# Every family file in this folder is imported (importing registers its poolings), so a new
# family file needs no line here; functional comes after them, since it exports what they declare.
for _family in pkgutil.iter_modules(__path__):
    if not _family.name.startswith("_") and _family.name != "functional":
        importlib.import_module(f"{__name__}.{_family.name}")
del _family
from . import functional  # noqa: E402

__all__ = ["OWN_POOLING", "HyperParameterError", "PoolSpecError", "attach", "create", "functional", "names", "register"]

#: poolbench's own pooling, designed from the diagnostic suite (see poolbench.pools.split).
OWN_POOLING = "spectrum"

# The public API before create() became the one way to get a pooling. They still work, with a
# DeprecationWarning; poolbench's own code is to call create() or poolbench.pools.registry.
_CREATE = "poolbench.pools.create(spec, channels, **kwargs)"
_DEPRECATED = {  # old name -> (helper in poolbench.pools.registry, what to use instead)
    "build": ("create", _CREATE),
    "get": ("get", _CREATE),
    "resolve": ("resolve", _CREATE),
    "instantiate": ("instantiate", _CREATE),
    "load_file": ("load_file", _CREATE),
    "accepts_channels": ("accepts_channels", "inspect.signature"),
    "hyper_parameters": ("hyper_parameters", "inspect.signature"),
    "is_file_spec": ("is_file_spec", "poolbench.core.poolspec.is_file_spec"),
    "normalise_spec": ("normalise_spec", "poolbench.core.poolspec.normalise_spec"),
}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        helper, instead = _DEPRECATED[name]
        warnings.warn(f"poolbench.pools.{name} is deprecated and will be removed: use {instead}",
                      DeprecationWarning, stacklevel=2)
        return getattr(registry, helper)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
