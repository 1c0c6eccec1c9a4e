"""The process-wide state a run depends on, and a guard that keeps user code from changing it.

A pooling or model file is ordinary Python: at import or in its constructor it can reseed the
random generators, change torch's thread count or default dtype, turn off gradients, switch on
deterministic algorithms, change the working directory or replace a signal handler. Any of these
silently changes the experiment around it (a ``torch.manual_seed(0)`` at import gives every
``--seed`` the same initial weights). :func:`restoring` runs such code and puts every entry of
:data:`ENTRIES` back as it was, returning what the code changed so that it can be reported.

>>> import torch
>>> with restoring("importing example.py") as changes:
...     torch.set_num_threads(torch.get_num_threads() + 1)
>>> changes  # doctest: +ELLIPSIS
["importing example.py changed torch's CPU thread count (... -> ...)"]
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .unique import unique


@dataclass(frozen=True)
class Entry:
    """One piece of global state: how to read it, how to put it back (None: it cannot be)."""

    label: str
    get: Callable[[], Any]
    set: Callable[[Any], None] | None
    random: bool = False  # a random generator: drawing from it is a change, but no setting is shown

    def show(self, value: Any) -> str:
        return "" if self.random else str(value)


def _cuda_rng_states() -> Any:
    # Only once CUDA is initialised: reading it earlier would initialise it (and fail without a GPU).
    return torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None


def _set_cuda_rng_states(states: Any) -> None:
    if states is not None and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(states)


def _set_deterministic(value: tuple[bool, bool]) -> None:
    torch.use_deterministic_algorithms(value[0], warn_only=value[1])


#: The handlers a run sets to stop cleanly (Ctrl-C; SIGTERM and Slurm's SIGUSR1/SIGUSR2, see
#: poolbench.execution.signals).
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


def _signal_handlers() -> tuple[Any, ...]:
    return tuple(signal.getsignal(s) for s in _STOP_SIGNALS)


def _set_signal_handlers(handlers: tuple[Any, ...]) -> None:
    if threading.current_thread() is threading.main_thread():  # signal.signal works only there
        for number, handler in zip(_STOP_SIGNALS, handlers, strict=True):
            if handler is not None:
                signal.signal(number, handler)


def _set_grad_mode(mode: bool) -> None:
    torch.set_grad_enabled(mode)


def _set_anomaly(mode: bool) -> None:
    torch.autograd.set_detect_anomaly(mode)


def _set_cudnn(value: tuple[bool, bool, bool, bool]) -> None:
    cudnn = torch.backends.cudnn
    cudnn.enabled, cudnn.benchmark, cudnn.deterministic, cudnn.allow_tf32 = value


def _set_streams(streams: tuple[Any, Any]) -> None:
    sys.stdout, sys.stderr = streams


ENTRIES: tuple[Entry, ...] = (
    Entry("torch's random generator", torch.random.get_rng_state, torch.random.set_rng_state, random=True),
    Entry("CUDA's random generators", _cuda_rng_states, _set_cuda_rng_states, random=True),
    Entry("numpy's global random generator", np.random.get_state, np.random.set_state, random=True),
    Entry("Python's random module", random.getstate, random.setstate, random=True),
    Entry("torch's CPU thread count", torch.get_num_threads, torch.set_num_threads),
    # torch refuses a second set_num_interop_threads: a change is reported, it cannot be undone.
    Entry("torch's inter-op thread count", torch.get_num_interop_threads, None),
    Entry("torch's default dtype", torch.get_default_dtype, torch.set_default_dtype),
    Entry("torch's default device", torch.get_default_device, torch.set_default_device),
    Entry("gradient mode (torch.is_grad_enabled)", torch.is_grad_enabled, _set_grad_mode),
    Entry("autograd anomaly detection", torch.is_anomaly_enabled, _set_anomaly),
    Entry("deterministic algorithms (enabled, warn only)",
          lambda: (torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled()), _set_deterministic),
    Entry("cuDNN flags (enabled, benchmark, deterministic, allow_tf32)",
          lambda: (torch.backends.cudnn.enabled, torch.backends.cudnn.benchmark,
                   torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32), _set_cudnn),
    Entry("float32 matmul precision", torch.get_float32_matmul_precision, torch.set_float32_matmul_precision),
    Entry("the working directory", os.getcwd, os.chdir),
    Entry("the SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 handlers", _signal_handlers, _set_signal_handlers),
    Entry("sys.stdout and sys.stderr", lambda: (sys.stdout, sys.stderr), _set_streams),
)


def _same(a: Any, b: Any) -> bool:
    """Equality that also compares tensors and arrays (inside tuples and lists) by value."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def capture(entries: tuple[Entry, ...] = ENTRIES) -> list[Any]:
    """The current value of each entry."""
    return [entry.get() for entry in entries]


def changes_since(before: list[Any], entries: tuple[Entry, ...] = ENTRIES) -> list[tuple[Entry, Any, Any]]:
    """The entries whose value is no longer the captured one: (entry, before, now)."""
    now = capture(entries)
    return [(entry, old, new) for entry, old, new in zip(entries, before, now, strict=True) if not _same(old, new)]


def describe(what: str, entry: Entry, before: Any, now: Any) -> str:
    """One phrase: ``importing x.py changed torch's CPU thread count (2 -> 8)``."""
    if entry.random:
        return f"{what} drew from or reseeded {entry.label}"
    return f"{what} changed {entry.label} ({entry.show(before)} -> {entry.show(now)})"


@contextmanager
def restoring(what: str, *, random_generators: bool = True) -> Iterator[list[str]]:
    """Run the body, then put back every entry it changed; yields the list of changes (filled on exit).

    ``what`` names the code for the messages ("importing mine.py"). ``random_generators=False``
    leaves the random generators as the body left them: a constructor draws its parameters'
    initial values from them, which is its job, not a change to undo.
    """
    entries = ENTRIES if random_generators else tuple(e for e in ENTRIES if not e.random)
    before = capture(entries)
    changes: list[str] = []
    try:
        yield changes
    finally:
        for entry, old, new in changes_since(before, entries):
            changes.append(describe(what, entry, old, new) + ("" if entry.set else " (this cannot be undone)"))
            if entry.set is not None:
                entry.set(old)
        _RECORDED.extend(changes)


# Every change restoring() undid in this process, in order: the run and the contract check report
# them (a run records them in result.json), whichever step imported or built the user's code.
_RECORDED: list[str] = []


def recorded(since: int = 0) -> list[str]:
    """The changes user code made in this process (from the ``since``-th on), each once."""
    return unique(_RECORDED[since:])


def recorded_count() -> int:
    """How many changes have been recorded so far: a mark for :func:`recorded`."""
    return len(_RECORDED)


def record(change: str) -> None:
    """Add one change that user code made (or tried) to what :func:`recorded` reports."""
    _RECORDED.append(change)


#: The calls that reseed the global generators, by where user code finds them: each is replaced
#: for the body of :func:`seeding_ignored`. The state setters (``torch.set_rng_state``) are left
#: alone: ``torch.random.fork_rng`` restores with them, and a factory that sets a fixed state is
#: found by building it from two seeds (poolbench.models.fixes_the_generator).
_SEEDING: tuple[tuple[Any, str, str], ...] = (
    *((module, name, f"{label}.{name}") for module, label in ((torch, "torch"), (torch.random, "torch.random"))
      for name in ("manual_seed", "seed")),
    *((torch.cuda, name, f"torch.cuda.{name}") for name in ("manual_seed", "manual_seed_all", "seed", "seed_all")),
    (np.random, "seed", "numpy.random.seed"), (random, "seed", "random.seed"),
)


@contextmanager
def seeding_ignored(what: str) -> Iterator[list[str]]:
    """Run the body with the global generators' seeding calls made to do nothing; yields (filled
    on exit) one phrase per call it made, also added to :func:`recorded`.

    A model factory draws its initial weights from the generators the run seeded: one that calls
    ``torch.manual_seed(0)`` would give every ``--seed`` the same weights. Put back afterwards
    (:func:`restoring`) would be too late, the weights are drawn by then; ignored, the call leaves
    the factory drawing from the run's seed. A private ``torch.Generator`` is the factory's own.
    """
    calls: list[str] = []

    def ignored(label: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            shown = ", ".join([*(repr(a)[:20] for a in args), *(f"{k}={v!r}"[:20] for k, v in kwargs.items())])
            calls.append(f"{what} called {label}({shown}): ignored, so that every --seed gets its own "
                         f"initial weights")
            # What the real call returns, for a factory that uses it.
            if label in ("torch.manual_seed", "torch.random.manual_seed"):
                return torch.default_generator
            return torch.initial_seed() if label in ("torch.seed", "torch.random.seed") else None
        return call

    saved = [(module, name, getattr(module, name)) for module, name, _ in _SEEDING]
    try:
        for module, name, label in _SEEDING:
            setattr(module, name, ignored(label))
        yield calls
    finally:
        for module, name, original in saved:
            setattr(module, name, original)
        _RECORDED.extend(unique(calls))


# --- Many runs in one process ----------------------------------------------------------------------

#: The modules whose functions a run's code could replace (``torch.nn.functional.conv2d = ...``) for
#: the runs after it in the same process; poolbench's own modules are added by name.
PATCHABLE: tuple[Any, ...] = (torch, torch.nn.functional, torch.nn.init, torch.optim, torch.autograd,
                              torch.Tensor, torch.nn.Module, np, random)


def _namespaces() -> dict[tuple[str, str], int]:
    """The identity of every attribute of :data:`PATCHABLE` and of poolbench's loaded modules."""
    spaces = [*PATCHABLE, *(module for name, module in list(sys.modules.items())
                            if name == "poolbench" or name.startswith("poolbench."))]
    return {(getattr(space, "__name__", ""), name): id(value)
            for space in spaces for name, value in list(vars(space).items())}


@contextmanager
def run_scope() -> Iterator[list[str]]:
    """One run of a process that trains many (a sweep's worker): the run starts as in a new process
    and what it changes does not reach the next one.

    On entry the changes recorded by earlier runs are forgotten (a run reports only its own); on
    exit every entry of :data:`ENTRIES` that can be set, ``os.environ`` and ``sys.argv`` are put
    back as they were on entry. Yields a list, filled on exit, of what could not be put back: an
    entry without a setter (the inter-op thread count) or a function of torch, numpy or poolbench
    replaced by the run's code. A process whose list is not empty must not train another run.
    """
    before = capture()
    environ, argv = dict(os.environ), list(sys.argv)
    namespaces = _namespaces()
    left: list[str] = []
    del _RECORDED[:]
    try:
        yield left
    finally:
        for entry, old, new in changes_since(before):
            if entry.set is None:
                left.append(describe("the run", entry, old, new))
            else:
                entry.set(old)
        if os.environ != environ:
            os.environ.clear()
            os.environ.update(environ)
        sys.argv[:] = argv
        now = _namespaces()
        replaced = sorted(f"{space}.{name}" for (space, name), ident in namespaces.items()
                          if now.get((space, name), ident) != ident)
        if replaced:
            left.append(f"the run replaced {', '.join(replaced[:3])}" + (" ..." if len(replaced) > 3 else ""))
        del _RECORDED[:]
