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
