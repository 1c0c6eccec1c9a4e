"""Global poolings ``[B, C, H, W] -> [B, C]`` and their registry.

>>> import poolbench.pools as pools
>>> pool = pools.create("gem", channels=64)
>>> "gap" in pools.names()
True
"""

from . import attention, classic, mixed, smooth, statistics  # noqa: F401  (register the poolings)
from .registry import (
    PoolSpecError,
    accepts_channels,
    build,
    create,
    get,
    instantiate,
    is_file_spec,
    load_file,
    names,
    register,
    resolve,
)

__all__ = [
    "PoolSpecError",
    "accepts_channels",
    "build",
    "create",
    "get",
    "instantiate",
    "is_file_spec",
    "load_file",
    "names",
    "register",
    "resolve",
]
