"""User code tried first in a child process, with a time limit on every call into it.

A pooling or model file can hang (a ``forward()`` that never returns) or end the process
(``os._exit(0)`` at import, a signal to itself). Run in poolbench's own process, either would
leave a command hanging with no output, or ending with exit code 0 and no output. So the first
time a command meets a file, it imports, builds and checks it in a new Python process (a fork
of a process that has used torch's thread pool can hang): the child reports
each stage before it starts it, and the parent waits at most :data:`CALL_TIME_LIMIT_S` for the
next one. A stage that does not end in time, or a child that ends without answering, becomes
one FAIL line naming the stage. What the child prints goes to stderr.

Registered poolings are poolbench's own code and are checked in the calling process.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from .. import models
from ..contract import CheckResult, ContractReport, benchmark_pool_inputs, check_pool
from ..core.quoting import quote, shorten
from ..core.setting_spec import arch_file, is_arch_file
from ..pools import registry as pool_registry
from ..training.catalog import pool_input
from .signals import how_it_ended

#: The longest a single call into user code may take (an import, a constructor, one check's
#: forward and backward calls on small inputs): each takes well under a second for a working
#: pooling on a CPU.
CALL_TIME_LIMIT_S = 60.0
#: Starting the child (importing torch and poolbench) is poolbench's time, not the pooling's.
START_TIME_LIMIT_S = 300.0


@dataclass
class ChildOutcome:
    """How the child ended: its return value, or the stage it was in when it hung or died."""

    value: Any = None
    error: str | None = None  # the child's target raised: its one-line message
    stage: str | None = None  # the stage that did not return, or in which the child ended
    problem: str | None = None  # "did not return within 60 s", "ended the process (exit code 0)"
    events: tuple[Any, ...] = ()  # what the target reported before it ended (see run_in_child)


def run_in_child(target: Callable[..., Any], args: tuple[Any, ...],
                 time_limit_s: float = CALL_TIME_LIMIT_S) -> ChildOutcome:
    """Call ``target(*args, stage=..., event=...)`` in a new Python process.

    The target calls ``stage(name)`` before each call into user code and ``event(value)`` for
    each partial result the parent should keep if it later hangs or dies; its return value must
    be picklable. The child runs with one torch thread (the calls are small); its stdout is this
    process's stderr. A plain subprocess, not multiprocessing: that re-imports the caller's main
    script in the child, which a script without a ``__main__`` guard cannot take.
    """
    read_fd, write_fd = os.pipe()
    package_parent = str(Path(__file__).resolve().parents[2])  # this poolbench, also from a checkout
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    child = subprocess.Popen(
        [sys.executable, "-c", f"from {__name__} import _child_main; _child_main({write_fd})"],
        stdin=subprocess.PIPE, stdout=_stderr_fd(), pass_fds=(write_fd,), env=env)
    os.close(write_fd)
    receiver = Connection(read_fd)
    stage, limit = "starting", START_TIME_LIMIT_S
    events: list[Any] = []
    try:
        assert child.stdin is not None
        child.stdin.write(pickle.dumps((target, args)))
        child.stdin.close()
        while True:
            if not receiver.poll(limit):
                return ChildOutcome(stage=stage, problem=f"did not return within {limit:g} s", events=tuple(events))
            try:
                kind, payload = receiver.recv()
            except EOFError:  # the child ended without saying it was done
                return ChildOutcome(stage=stage, problem=f"ended the process ({_how_it_ended(child.wait(10))})",
                                    events=tuple(events))
            if kind == "stage":
                stage, limit = payload, time_limit_s
            elif kind == "event":
                events.append(payload)
            elif kind == "error":
                return ChildOutcome(error=payload, events=tuple(events))
            else:
                return ChildOutcome(value=payload, events=tuple(events))
    finally:
        receiver.close()
        if child.poll() is None:
            child.kill()
        child.wait()


def _stderr_fd() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a captured stderr (pytest, a notebook)
        return 2


def _how_it_ended(exit_code: int | None) -> str:
    if exit_code is None:
        return "it did not exit"
    return how_it_ended(exit_code) + (f", as os._exit({exit_code}) does" if exit_code >= 0 else "")


def _child_main(write_fd: int) -> None:
    """The child's side of run_in_child: read the call from stdin, report on ``write_fd``."""
    sender = Connection(write_fd)
    target, args = pickle.loads(sys.stdin.buffer.read())
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the child

    def stage(name: str) -> None:
        sender.send(("stage", name))

    def event(value: Any) -> None:
        sender.send(("event", value))

    try:
        value = target(*args, stage=stage, event=event)
    except (Exception, SystemExit) as error:
        sender.send(("error", " ".join(str(error).split()) or type(error).__name__))
    else:
        sender.send(("done", value))
    sender.close()
    sys.stderr.flush()
    os._exit(0)  # the parent has its answer: no 1 s of unloading torch while it waits


# --- The contract check of a pooling file --------------------------------------------------------

def _check_target(spec: str, pool_inputs: list[tuple[int, int, int]], include_cost: bool, *,
                  stage: Callable[[str], None], event: Callable[[Any], None]) -> float:
    result = check_pool(spec, pool_inputs=pool_inputs, include_cost=include_cost, on_stage=stage,
                        on_result=lambda r: event((r.name, r.status, r.message)))
    return result.seconds


def check_in_child(spec: str, *, pool_inputs: Sequence[tuple[int, int, int]] | None = None,
                   include_cost: bool = True, time_limit_s: float = CALL_TIME_LIMIT_S) -> ContractReport:
    """:func:`poolbench.contract.check_pool` of ``spec`` in a child process (see the module's text).

    A stage that hangs or a child that ends becomes a FAIL of that stage's check; the checks
    after it are not run. A file's report is kept for the command by its content (a sweep checks
    a file where the user named it and then its copy): an edited file is checked again.
    """
    if pool_inputs is None:
        pool_inputs = benchmark_pool_inputs()
    path_text, _, class_name = spec.partition(":")
    try:
        content = hashlib.sha256(Path(path_text).expanduser().read_bytes()).hexdigest()
    except OSError:
        content = None  # the check reports the missing file
    key = (content, class_name, tuple(tuple(shape) for shape in pool_inputs), include_cost, time_limit_s)
    if content is None or key not in _CHECKED:
        _CHECKED[key] = _check_in_child(spec, pool_inputs, include_cost, time_limit_s)
    return _CHECKED[key]


_CHECKED: dict[tuple[Any, ...], ContractReport] = {}


def _check_in_child(spec: str, pool_inputs: Sequence[tuple[int, int, int]], include_cost: bool,
                    time_limit_s: float) -> ContractReport:
    start = time.perf_counter()
    outcome = run_in_child(_check_target, (spec, [tuple(s) for s in pool_inputs], include_cost), time_limit_s)
    report = ContractReport(spec, [CheckResult(*event) for event in outcome.events])
    if outcome.error is not None:  # the checker itself failed: not the pooling's doing
        report.results.append(CheckResult("construct", "FAIL", f"the check could not run: {outcome.error}"))
    elif outcome.problem is not None:
        report.results.append(stage_failure(outcome.stage or "starting", outcome.problem, spec))
    report.seconds = time.perf_counter() - start
    return report


def stage_failure(stage: str, problem: str, spec: str) -> CheckResult:
    """The FAIL for a stage of the check that hung or ended the process, named as a user reads it."""
    if stage.startswith(("importing", "resolving", "building")):
        return CheckResult("construct", "FAIL", f"{stage} {problem}: a pooling or model file must import in seconds "
                           f"and never end the process; fix {spec}")
    if stage == "construct":
        return CheckResult("construct", "FAIL", f"the constructor {problem}: fix {spec}")
    if stage == "starting":
        return CheckResult("construct", "FAIL", f"the check's process {problem} before it reached the pooling")
    return CheckResult(stage, "FAIL", f"forward() or backward() {problem} (in the {stage} check): a pooling "
                       f"must return in well under a second and never end the process; fix {spec}")


# --- A run's pooling and model, before the run ---------------------------------------------------

def runs_user_code(pool: str, arch: str) -> bool:
    """Whether a run would import a pooling or model file (else all its code is poolbench's)."""
    return pool_registry.is_file_spec(pool) or is_arch_file(arch)


def unbuildable_pool(pool: str, channels: int) -> str | None:
    """Why ``pool`` cannot be built for ``channels`` input channels, or None.

    A constructor that raises, calls sys.exit() or refuses its hyper-parameters (gem(p=-1)) is
    a bad pooling, also with --no-check.
    """
    try:
        pool_registry.instantiate(pool_registry.resolve(pool), channels)
    except (Exception, SystemExit) as error:
        if isinstance(error, pool_registry.PoolSpecError):
            return str(error)
        what = f"SystemExit({error.code!r}), the pooling ended the interpreter" if isinstance(error, SystemExit) \
            else f"{type(error).__name__}: {error}"
        return (f"pooling {quote(pool)} cannot be built: {shorten(' '.join(what.split()), 300)}; "
                f"fix it (see `poolbench check {shorten(shlex.quote(pool))}`)")
    return None


def _pool_input_target(arch: str, dataset: str, image_size: int | None, *,
                       stage: Callable[[str], None], event: Callable[[Any], None]) -> tuple[int, int, int]:
    stage(f"building {arch}")
    return pool_input(arch, dataset, image_size)


def model_pool_input(arch: str, dataset: str, image_size: int | None) -> tuple[int, int, int]:
    """The (C, H, W) ``arch`` gives its pooling on ``dataset`` (catalog.pool_input), a model file
    built in a child process; ValueError with the one-line problem (a hang, an ended process)."""
    if not is_arch_file(arch):
        return pool_input(arch, dataset, image_size)
    outcome = run_in_child(_pool_input_target, (arch, dataset, image_size), CALL_TIME_LIMIT_S)
    if outcome.error is not None:
        raise ValueError(outcome.error)
    if outcome.problem is not None:
        raise ValueError(stage_failure(outcome.stage or "starting", outcome.problem, arch_file(arch)).message)
    return tuple(outcome.value)


@dataclass(frozen=True)
class Probe:
    """What the child found: a one-line refusal, or the pool input and the contract report."""

    problem: str | None
    pool_input: tuple[int, int, int] | None = None
    report: ContractReport | None = None


def _probe_target(arch: str, dataset: str, image_size: int | None, pool: str, *,
                  stage: Callable[[str], None], event: Callable[[Any], None]) -> dict[str, Any]:
    stage(f"building {arch}")
    try:
        shape = pool_input(arch, dataset, image_size)
    except (ValueError, TypeError) as error:  # an unknown model, a factory file that fails, a size it cannot take
        return {"problem": " ".join(str(error).split())}
    if is_arch_file(arch) and models.fixes_the_generator(arch):
        return {"problem": f"model {quote(arch, 200)} sets torch's random generator to a fixed state while it "
                           f"builds (torch.set_rng_state, torch.default_generator.manual_seed, or a manual_seed "
                           f"imported before the build): every --seed would get the same initial weights; remove "
                           f"the reseeding from the file"}
    stage(f"importing {pool}" if pool_registry.is_file_spec(pool) else f"resolving {pool}")
    problem = unbuildable_pool(pool, shape[0])
    if problem is not None:
        return {"problem": problem}
    checked = check_pool(pool, pool_inputs=[shape], include_cost=False, on_stage=stage,
                         on_result=lambda r: event((r.name, r.status, r.message)))
    return {"problem": None, "pool_input": shape, "seconds": checked.seconds}


@functools.lru_cache(maxsize=64)
def probe(arch: str, dataset: str, image_size: int | None, pool: str,
          pool_sha256: str | None = None, arch_sha256: str | None = None) -> Probe:
    """Build the model and the pooling and check the pooling, in a child process, once per command
    (the files' hashes are in the key: an edited file is probed again).

    A hang or an ended process is a refusal even with --no-check (training would hang or end the
    same way); the contract report is the caller's to act on.
    """
    del pool_sha256, arch_sha256  # only keys of the cache
    outcome = run_in_child(_probe_target, (arch, dataset, image_size, pool), CALL_TIME_LIMIT_S)
    if outcome.error is not None:
        return Probe(f"checking {pool!r} with {arch} failed: {outcome.error}")
    if outcome.problem is not None:
        culprit = arch_file(arch) if (outcome.stage or "").startswith("building") else pool
        failure = stage_failure(outcome.stage or "starting", outcome.problem, culprit)
        shows = "" if culprit != pool else f" (poolbench check {shlex.quote(pool)} shows it)"
        return Probe(failure.message + shows)
    if outcome.value["problem"] is not None:
        return Probe(outcome.value["problem"])
    report = ContractReport(pool, [CheckResult(*event) for event in outcome.events], seconds=outcome.value["seconds"])
    return Probe(None, tuple(outcome.value["pool_input"]), report)
