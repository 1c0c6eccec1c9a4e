"""The pooling registry: names -> constructors, user pooling files, and construction by spec.

:func:`create` is the public way to get a pooling (re-exported as ``poolbench.pools.create``);
the other functions here are internal helpers of the harness, the contract and the CLI.

A spec is a registered name (``gem``), a registered name with hyper-parameters
(``topk(k=0.5)``, ``gem(p=4, learnable=False)``; see :mod:`poolbench.core.poolspec`) or a file
(``path.py[:Class]``). A pooling constructor may take ``channels`` (the C it will see) or nothing
at all (the original task's ``CustomPool()`` style). :func:`create` hides that difference.

A pooling declares its :class:`Traits` where it is registered (``@register("gem", Traits(...))``);
the tests of ``tests/pools`` read them, so a new pooling is tested for what it declares without
joining hand-kept lists, and :mod:`poolbench.pools.functional` exports the functional forms they name.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..core import global_state
from ..core.poolspec import (
    USAGE,
    HyperParameterError,
    PoolSpecError,
    PositionalValueError,
    is_call_spec,
    is_file_spec,
    normalise_spec,
    parse_call,
)
from ..core.quoting import quote, shorten

PoolFactory = Callable[..., nn.Module]
FunctionalForm = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class Traits:
    """What a pooling declares about itself where it is registered; nothing is claimed by default.

    The tests check each property on every pooling that declares it (``tests/pools``), so a
    declaration that does not hold fails there. For ``x`` of shape ``[B, C, H, W]`` and output ``y``:

    - ``identity_on_1x1``: ``y = x[:, :, 0, 0]`` on a 1x1 map with ``x > 0``, in training and in
      evaluation, for any parameters.
    - ``between_min_and_max``: ``min_hw x <= y <= max_hw x`` per channel for any parameters, on
      non-negative maps (a possibly learned, data-dependent mix of weighted means and the max).
    - ``permutation_invariant``: in evaluation, ``y`` does not change when the positions are
      permuted (each position is reduced alike; not so for fca's DCT frequencies).
    - ``batch_norm``: it keeps a BatchNorm over its pooled values, which refuses to train on one
      value per channel (a batch of one 1x1 map).
    - ``functional``: the functions of the feature map its ``forward`` is computed from, the
      main one first (``gem`` for ``GeM``); :mod:`poolbench.pools.functional` exports them. Empty
      for a pooling built from layers, whose forward is no composition of such functions.
    """

    identity_on_1x1: bool = False
    between_min_and_max: bool = False
    permutation_invariant: bool = False
    batch_norm: bool = False
    functional: tuple[FunctionalForm, ...] = ()


_REGISTRY: dict[str, PoolFactory] = {}
_TRAITS: dict[str, Traits] = {}

__all__ = ["FunctionalForm", "HyperParameterError", "PoolFactory", "PoolSpecError", "Traits", "accepts_channels",
           "create", "existing_file", "functional_forms", "get", "hyper_parameters", "instantiate", "is_file_spec",
           "load_file", "names", "normalise_spec", "register", "resolve", "traits"]


def register(name: str, traits: Traits | None = None) -> Callable[[PoolFactory], PoolFactory]:
    """Decorator that registers a pooling class (or factory) under ``name``, with its ``traits``.

    >>> @register("my_pool")
    ... class MyPool(nn.Module): ...
    >>> traits("my_pool").between_min_and_max, traits("gem").between_min_and_max  # gem's own declaration
    (False, True)
    """
    key = name.lower()
    declared = traits or Traits()

    def decorator(factory: PoolFactory) -> PoolFactory:
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"pooling {name!r} is already registered; choose another name")
        known = functional_forms()
        for function in declared.functional:
            if known.get(function.__name__, function) is not function:
                raise ValueError(f"pooling {name!r}: another functional form is already named "
                                 f"{function.__name__!r}; rename one of them")
        _REGISTRY[key] = factory
        _TRAITS[key] = declared
        return factory

    return decorator


def traits(name: str) -> Traits:
    """The traits the pooling ``name`` declared where it was registered (see :class:`Traits`)."""
    get(name)  # an unknown name: the error with the closest names
    return _TRAITS[name.lower()]


def functional_forms() -> dict[str, FunctionalForm]:
    """Every functional form the registered poolings declare, by function name, sorted."""
    forms = {function.__name__: function for declared in _TRAITS.values() for function in declared.functional}
    return dict(sorted(forms.items()))


def names() -> list[str]:
    """All registered pooling names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> PoolFactory:
    """The constructor registered under ``name``; an unknown name lists the closest ones."""
    key = name.lower()
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, _REGISTRY, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `poolbench list`"
        raise PoolSpecError(f"unknown pooling {quote(name)}: {hint}")
    return _REGISTRY[key]


def _takes_no_arguments(factory: PoolFactory) -> bool:
    """A class without an ``__init__`` of its own: nn.Module's (*args, **kwargs) would take nothing."""
    while isinstance(factory, functools.partial):
        factory = factory.func
    return isinstance(factory, type) and factory.__init__ is nn.Module.__init__  # type: ignore[misc]


def accepts_channels(factory: PoolFactory) -> bool:
    """Whether ``factory`` takes a ``channels`` argument (else it is built with no arguments).

    ``factory`` may be a ``functools.partial`` (what ``resolve("name(key=value)")`` returns).
    """
    if _takes_no_arguments(factory):
        return False
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "channels" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


def hyper_parameters(factory: PoolFactory) -> list[str] | None:
    """The keywords ``factory`` takes besides ``channels``, in order; None when it takes any (**kwargs)."""
    if _takes_no_arguments(factory):
        return []
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keyword_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in params if p.kind in keyword_kinds and p.name != "channels"]


def instantiate(factory: PoolFactory, channels: int | None = None, **kwargs) -> nn.Module:
    """Call ``factory`` with ``channels`` when it takes it, with no channel argument otherwise.

    Global settings the constructor changes (threads, default dtype, grad mode ...: see
    :mod:`poolbench.core.global_state`) are put back and recorded; the random generators are left
    as it leaves them, since drawing initial values is a constructor's job.
    """
    if channels is not None and accepts_channels(factory):
        kwargs["channels"] = channels
    name = getattr(factory.func if isinstance(factory, functools.partial) else factory, "__name__", "the pooling")
    with global_state.restoring(f"constructing {name}", random_generators=False):
        return factory(**kwargs)


def existing_file(path_text: str, kind: str, error: type[ValueError]) -> Path:
    """The path of a pooling or model file (``kind``), ``error`` with the fix when there is none."""
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise error(f"{kind} file {path_text!r} not found: give an existing "
                    f"{'path.py[:Class]' if kind == 'pooling' else 'FILE.py:FUNCTION'}")
    return path


def import_user_file(path_text: str, kind: str, error: type[ValueError]) -> ModuleType:
    """The Python file ``path_text`` imported as a module (``kind``: "pooling" or "model"); ``error``
    with a one-line fix when it is missing or fails to import (``sys.exit()`` in it included).

    The module is named by the file's resolved path, the same in every process, so that pickles of
    its classes load elsewhere, and is registered in ``sys.modules`` so that dataclasses, pickling
    and torch.compile find it. Whatever global state the import changes (a ``torch.manual_seed``,
    ``torch.set_num_threads`` ...) is put back and recorded (see :mod:`poolbench.core.global_state`):
    importing a file cannot change the experiment around it.
    """
    path = existing_file(path_text, kind, error)
    prefix = "poolbench_user_pool_" if kind == "pooling" else f"poolbench_user_{kind}_"  # as named before
    module_name = prefix + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    try:
        with global_state.restoring(f"importing {path.name}"):
            module_spec.loader.exec_module(module)
    except (Exception, SystemExit) as failure:  # sys.exit() in a user's file must not end poolbench
        del sys.modules[module_name]
        what = (f"it calls sys.exit({failure.code!r}) while being imported" if isinstance(failure, SystemExit)
                else f"{type(failure).__name__}: {' '.join(str(failure).split())}")
        raise error(f"{kind} file {path_text!r} failed to import: {what}; fix the file") from None
    return module


def load_file(spec: str) -> PoolFactory:
    """Load the pooling class from ``path.py[:ClassName]`` (class ``CustomPool`` by default)."""
    path_text, _, class_name = spec.partition(":")
    class_name = class_name or "CustomPool"
    module = import_user_file(path_text, "pooling", PoolSpecError)
    factory = getattr(module, class_name, None)
    if factory is None:
        found = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, nn.Module)]
        raise PoolSpecError(
            f"pooling file {quote(path_text)} has no class {quote(class_name)}; "
            f"nn.Module classes found: {', '.join(found) or 'none'} (use {shorten(path_text)}:ClassName)"
        )
    return factory


def resolve(spec: str) -> PoolFactory:
    """The constructor a spec names: a registered name, ``name(key=value, ...)`` or ``path.py[:Class]``.

    ``name(key=value, ...)`` gives ``functools.partial(get(name), key=value, ...)``, after checking
    that the pooling takes those keywords. PoolSpecError, with the fix, for anything unusable.
    """
    if is_file_spec(spec):
        return load_file(spec)
    if not is_call_spec(spec):
        return get(spec)
    try:
        name, kwargs = parse_call(spec)
    except PositionalValueError as error:
        raise PoolSpecError(_positional_message(spec, error)) from None
    factory = get(name)
    if not kwargs:
        return factory
    _check_keywords(spec, name, factory, kwargs)
    return functools.partial(factory, **kwargs)


def _check_keywords(spec: str, name: str, factory: PoolFactory, kwargs: dict[str, Any]) -> None:
    """PoolSpecError naming the pooling's keywords when it does not take all of ``kwargs``."""
    if "channels" in kwargs:
        raise PoolSpecError(f"bad pooling spec {quote(spec)}: channels is set by the model (the C the pooling "
                            f"sees), not by the spec; {USAGE} without it")
    accepted = hyper_parameters(factory)
    try:
        if _takes_no_arguments(factory):
            raise TypeError("takes no arguments")
        inspect.signature(factory).bind_partial(**kwargs)
    except (TypeError, ValueError):
        unknown = [key for key in kwargs if accepted is None or key not in accepted]
        close = [m for key in unknown for m in difflib.get_close_matches(key, accepted or [], n=1, cutoff=0.5)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        takes = f"its keywords are {', '.join(accepted)}" if accepted else "it takes no keywords"
        raise PoolSpecError(f"bad pooling spec {quote(spec)}: {name} has no keyword "
                            f"{shorten(', '.join(unknown)) or '?'}{hint}; {takes}: {USAGE}") from None
    _check_value_types(name, factory, kwargs)


def _check_value_types(name: str, factory: PoolFactory, kwargs: dict[str, Any]) -> None:
    """HyperParameterError for a value whose type is not that of the keyword's default: a number
    where the default is a number (``gem(p='3')``), an int where it is an int, True/False where it
    is a bool. A string would otherwise reach the constructor's arithmetic (a TypeError there) or,
    as a bool, be silently true. Keywords without a number or bool default are the pooling's own."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    for key, value in kwargs.items():
        default = params[key].default if key in params else inspect.Parameter.empty
        if isinstance(default, bool):
            ok, kind = isinstance(value, bool), "True or False"
        elif isinstance(default, int):
            ok, kind = isinstance(value, int) and not isinstance(value, bool), "a whole number"
        elif isinstance(default, float):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            ok, kind = _is_finite_number(value), "a finite number" if number else "a number"
        else:
            continue
        if not ok:
            written = value.strip() if isinstance(value, str) else ""
            if _is_finite_number(_number_or_none(written)):  # gem(p='3'): the number, quoted
                fix = f"write it unquoted: {name}({key}={shorten(written)})"
            else:
                fix = f"e.g. {name}({key}={default!r})"
            raise HyperParameterError(f"{name}: {key} must be {kind}, got {quote(value)}; {fix}")


def _is_finite_number(value: Any) -> bool:
    """An int or float (not a bool) that a float holds finitely: a 400-digit int does not."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _number_or_none(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _positional_message(spec: str, error: PositionalValueError) -> str:
    """The message for ``name(value)``, suggesting the keywords the value was probably meant for."""
    factory = _REGISTRY.get(error.name.lower())
    keys = hyper_parameters(factory) if factory is not None else None
    more = ", ..." if len(error.values) > 1 else ""
    example = f"{error.name}({keys[0] if keys else 'key'}={error.values[0]}{more})"
    verb = "have" if len(error.values) > 1 else "has"
    return (f"bad pooling spec {quote(spec)}: {shorten(', '.join(error.values))} {verb} no keyword; {USAGE}, "
            f"e.g. {shorten(example)}")


def create(spec: str | PoolFactory, channels: int | None = None, **kwargs: Any) -> nn.Module:
    """Build the pooling ``spec`` names, for ``channels`` input channels: the one public way to get one.

    ``spec`` is anything a user can write: a registered name (``"gem"``, case ignored), a name with
    hyper-parameters (``"gem(p=4, learnable=False)"``), or a file ``"path.py"`` / ``"path.py:Class"``
    (class ``CustomPool`` by default); a pooling class or factory is also accepted. ``channels``
    is the C of the ``[B, C, H, W]`` input; it is passed to constructors that take it and left
    out for those that take nothing (the original task's ``CustomPool()``).

    Keyword arguments are hyper-parameters and add to those in the spec:
    ``create("gem(p=4)", 64, learnable=False)`` is ``create("gem(p=4, learnable=False)", 64)``.
    A keyword given both in the spec and as an argument is an error, whatever the values (as a
    Python call with a repeated keyword), and so is a keyword the pooling does not take; both
    raise :class:`PoolSpecError` naming the fix.

    >>> create("gem", channels=64)
    GeM(p=3.000, eps=1e-06, p_min=1.0)
    >>> create("topk(k=0.5)", channels=64)
    TopKPool(k=0.5)
    >>> create("gem(p=4)", 64, learnable=False).p
    tensor(4.)
    >>> create("gem(p=4)", 64, p=5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    poolbench.core.poolspec.PoolSpecError: bad pooling spec 'gem(p=4)': p is given both in the spec and ... once
    """
    if isinstance(spec, str):
        factory = resolve(spec)
        label, name = spec, parse_call(spec)[0] if is_call_spec(spec) else spec
    elif callable(spec):
        factory = spec
        label = name = getattr(spec, "__name__", repr(spec))
    else:
        raise TypeError(f"pooling spec must be a string (name, name(key=value, ...), path.py[:Class]) "
                        f"or a class, got {type(spec).__name__}")
    if kwargs:
        in_spec = factory.keywords if isinstance(factory, functools.partial) else {}
        twice = [key for key in kwargs if key in in_spec]
        if twice:
            verb = "is" if len(twice) == 1 else "are"
            raise PoolSpecError(f"bad pooling spec {quote(label)}: {', '.join(twice)} {verb} given both in the spec "
                                f"and as a keyword argument; give {'it' if len(twice) == 1 else 'them'} once")
        _check_keywords(label, name, factory, kwargs)
        factory = functools.partial(factory, **kwargs)
    return instantiate(factory, channels)
