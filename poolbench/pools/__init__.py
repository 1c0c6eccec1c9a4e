"""Global poolings ``[B, C, H, W] -> [B, C]`` and their registry.

>>> import poolbench.pools as pools
>>> pool = pools.create("gem", channels=64)
>>> "gap" in pools.names()
True
>>> pools.build("topk(k=0.5)", channels=64)  # a registered pooling with hyper-parameters
TopKPool(k=0.5)
"""

from . import attention, classic, mixed, smooth, split, statistics  # noqa: F401  (register the poolings)
from .registry import (
    PoolSpecError,
    accepts_channels,
    build,
    create,
    get,
    hyper_parameters,
    instantiate,
    is_file_spec,
    load_file,
    names,
    normalise_spec,
    register,
    resolve,
)

__all__ = [
    "PoolSpecError",
    "accepts_channels",
    "build",
    "create",
    "get",
    "hyper_parameters",
    "instantiate",
    "is_file_spec",
    "load_file",
    "names",
    "normalise_spec",
    "register",
    "resolve",
]
