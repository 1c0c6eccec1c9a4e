"""Models from outside the zoo: ``torchvision:NAME``, ``timm:NAME`` and ``FILE.py:FUNCTION``.

Each is built untrained for ``num_classes`` classes (no weights are ever downloaded), then its
global pooling is replaced by poolbench's with :func:`poolbench.pools.attach`, which finds it in
torchvision's and timm's classifiers and in poolbench's own models. A factory file's function is
called as ``FUNCTION(num_classes=K)`` and must return an ``nn.Module`` classifier that ``attach``
can take (for example one of torchvision's or timm's, or a model with ``.pool`` and an int
``.pool_channels``). ``MODEL#PATH`` replaces the module at ``PATH`` (``attach(..., at=PATH)``).
"""

from __future__ import annotations

import difflib
from typing import Any

import torch
from torch import nn

from .. import pools
from ..core import global_state
from ..core.setting_spec import arch_prefix, is_arch_file, split_pool_site
from ..pools.attach import AttachedPool
from ..pools.registry import import_user_file


class ModelSpecError(ValueError):
    """A model spec that builds nothing usable; the message is one line with the fix."""


def build(arch: str, num_classes: int, pool: Any) -> nn.Module:
    """The classifier ``arch`` names, with ``pool`` (anything ``attach`` takes) as its global pooling."""
    model_spec, site = split_pool_site(arch)
    model = _backbone(model_spec, num_classes)
    if not isinstance(model, nn.Module):
        raise ModelSpecError(f"model {arch!r} gave {type(model).__name__}, not an nn.Module: return the model")
    try:
        # The pooling draws its initial values, then the generators go back to the backbone's end:
        # the rest of the run's randomness is the same with every pooling (see models.create).
        with torch.random.fork_rng(devices=[]):
            return pools.attach(model, "gap" if pool is None else pool, at=site)
    except ValueError as error:
        if isinstance(error, pools.PoolSpecError):
            raise
        raise ModelSpecError(f"model {arch!r}: {error}") from None


def pooling_of(model: nn.Module) -> nn.Module:
    """The poolbench pooling inside ``model``: what ``attach`` put there, else ``model.pool``."""
    for module in model.modules():
        if isinstance(module, AttachedPool):
            return module.pool
    pool = getattr(model, "pool", None)
    if not isinstance(pool, nn.Module):
        raise ModelSpecError(f"{type(model).__name__} has no pooling that poolbench attached")
    return pool


def _backbone(arch: str, num_classes: int) -> Any:
    prefix = arch_prefix(arch)
    if prefix == "torchvision":
        return _torchvision(arch.partition(":")[2], num_classes)
    if prefix == "timm":
        return _timm(arch.partition(":")[2], num_classes)
    if is_arch_file(arch):
        return _from_file(arch, num_classes)
    raise ModelSpecError(f"model {arch!r}: write torchvision:NAME, timm:NAME or FILE.py:FUNCTION")


def _torchvision(name: str, num_classes: int) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)  # the image classifiers only
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see torchvision.models.list_models()"
        raise ModelSpecError(f"torchvision has no classifier {name!r}: {hint}")
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    except (TypeError, ValueError) as error:
        raise ModelSpecError(f"torchvision:{name} cannot be built for {num_classes} classes: {error}") from None


def _timm(name: str, num_classes: int) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ModelSpecError(f"timm:{name} needs timm: pip install \"poolbench[timm]\" (or timm)") from None
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise ModelSpecError(f"timm has no model {name!r}: {hint}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def _from_file(arch: str, num_classes: int) -> Any:
    path_text, _, function_name = arch.rpartition(":")
    module = import_user_file(path_text, "model", ModelSpecError)
    module_name = module.__name__
    factory = getattr(module, function_name, None)
    if not callable(factory):
        found = [n for n, v in vars(module).items() if callable(v) and not n.startswith("_")
                 and getattr(v, "__module__", None) == module_name]
        raise ModelSpecError(f"model file {path_text!r} has no function {function_name!r}; "
                             f"found: {', '.join(found) or 'none'} (use {path_text}:FUNCTION)")
    try:
        building = f"building {function_name} from {path_text}"
        with global_state.restoring(building, random_generators=False), global_state.seeding_ignored(building):
            return factory(num_classes=num_classes)
    except (Exception, SystemExit) as error:
        what = f"SystemExit({error.code!r})" if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}"
        raise ModelSpecError(f"{function_name}(num_classes={num_classes}) in {path_text!r} failed: "
                             f"{' '.join(what.split())}; it must take num_classes and return a classifier") from None
