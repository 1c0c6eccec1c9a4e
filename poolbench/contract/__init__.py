"""The pooling contract: catch in seconds a pooling that would waste a 200-epoch run.

A pooling must map ``[B, C, H, W] -> [B, C]`` for every C and spatial size (1x1 included),
stay finite with finite gradients on the maps a CNN produces, train every parameter it has,
keep its state where PyTorch can move and save it, and evaluate each sample on its own.

>>> report = check_pool("gem")
>>> report.ok
True

``poolbench run`` calls ``check_pool(spec, pool_inputs=[the run's pool input],
include_cost=False)`` before loading data and refuses a failing pooling; ``poolbench check``
prints :meth:`ContractReport.format` (see poolbench.cli.check_verb).

Each check in :data:`CHECKS` is a small function (:mod:`.numeric`, :mod:`.structure`) that
builds fresh instances. One root cause should give one FAIL: a check whose case is already
broken for a reason an earlier check reports says "not tested" (WARN) instead of failing again.

Low precision: the harness trains in float32, optionally under autocast. The ``bfloat16`` and
``float16`` checks run the pooling under ``torch.autocast`` with float32 parameters and a
low-precision input (what autocast feeds it), and again with module and input cast. A non-finite
output in bfloat16 (which has float32's range) fails; in float16 it fails on CUDA and only warns
on CPU, whose autocast casts other ops than CUDA's; an op missing in low precision only warns.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import cast

import torch

from .. import models
from ..core import global_state
from ..core.precision import AMP_DTYPES
from ..core.settings import BENCHMARK_SETTINGS, get_setting
from ..core.unique import unique
from ..pools.registry import PoolSpecError, accepts_channels, is_file_spec, resolve
from . import numeric, structure
from .findings import CheckResult, CheckStatus, ContractReport
from .subject import Check, ContractViolation, Subject, one_line

__all__ = ["CHECKS", "CheckResult", "ContractReport", "CheckStatus", "benchmark_pool_inputs", "check_pool"]

@functools.cache
def benchmark_pool_inputs() -> tuple[tuple[int, int, int], ...]:
    """The (C, H, W) each benchmark setting's pooling sees, measured on its model (once per process,
    a fraction of a second): what a pooling is checked at unless told otherwise."""
    return tuple(models.pool_input_shape(setting.arch, setting.image_size)
                 for setting in map(get_setting, BENCHMARK_SETTINGS))

# Every check after "construct", in report order.
CHECKS: list[tuple[str, Check]] = [
    # First: layers built in forward() make most other checks fail as a consequence.
    ("forward_params", structure.check_forward_params),
    ("shape", numeric.check_shape),
    ("dtype", numeric.check_dtype),
    ("finite_relu", numeric.finite_check("relu")),
    ("finite_dead_channels", numeric.finite_check("dead_channels")),
    ("finite_constant", numeric.finite_check("constant")),
    ("finite_large", numeric.finite_check("large")),
    ("finite_negative", numeric.finite_check("negative")),
    ("finite_1x1", numeric.check_finite_1x1),
    *((str(dtype).removeprefix("torch."), numeric.low_precision_check(dtype))  # every --amp precision
      for dtype in AMP_DTYPES.values() if dtype is not None),
    ("gradients", numeric.check_gradients),
    ("hidden_params", structure.check_hidden_params),
    ("fixed_buffer", structure.check_fixed_buffer),
    ("eval_independence", structure.check_eval_independence),
    ("train_batch1", structure.check_train_batch1),
    ("state_dict", structure.check_state_dict),
    ("to_dtype_device", structure.check_to_dtype_device),
    ("identity_1x1", numeric.check_identity_1x1),
    ("cost", structure.check_cost),
]


def _construct(subject: Subject) -> CheckResult:
    """Build the pooling for every pool input C; report the constructor style used."""
    try:
        for channels, height, width in subject.pool_inputs:
            subject.build(channels, materialise=(height, width))
            if not subject.takes_channels:
                break  # one CustomPool() instance is all the original harness builds
    except ContractViolation as violation:
        if isinstance(violation.__cause__, PoolSpecError):  # a hyper-parameter out of range: its own line
            return CheckResult("construct", "FAIL", str(violation.__cause__))
        need = "channels=C" if subject.takes_channels else "no arguments (or take a `channels` argument)"
        return CheckResult("construct", "FAIL", f"{violation}: the constructor must run with {need}")
    if subject.takes_channels:
        counts = ", ".join(str(c) for c in subject.channel_counts)
        return CheckResult("construct", "PASS", f"built as {subject.call_text()} for C = {counts}")
    return CheckResult("construct", "PASS", f"built as {subject.call_text()} with no arguments "
                       f"(original task style): the same instance must serve any C")


def _run_check(name: str, check: Check, subject: Subject, changed: list[str]) -> CheckResult:
    """One check, its exceptions turned into a FAIL that carries the exception text.

    Global settings the pooling changes while the check runs it are put back (the next check
    starts clean) and added to ``changed``; its constructor's changes are recorded apart, by
    :func:`poolbench.pools.registry.instantiate`.
    """
    torch.manual_seed(subject.seed)  # each check sees the same randomness, whatever ran before
    with global_state.restoring("forward() or backward()", random_generators=False) as changes:
        try:
            status, message = check(subject)
        except ContractViolation as violation:
            status, message = "FAIL", str(violation)
        except (Exception, SystemExit) as error:
            status, message = "FAIL", f"{name} check raised {one_line(error)}"
    changed.extend(changes)
    return CheckResult(name, status, message)


def _global_state_result(at_import_or_construction: list[str], in_forward: list[str]) -> CheckResult:
    """FAIL for a pooling that changes global settings when it runs (that cannot be put back
    between training steps); WARN for one whose import or constructor does (put back: runs are
    unaffected, but the file does something it should not)."""
    if in_forward:
        also = f" (and, put back: {'; '.join(at_import_or_construction)})" if at_import_or_construction else ""
        return CheckResult("global_state", "FAIL", f"{'; '.join(unique(in_forward))}{also}: a pooling must "
                           f"not change global settings while it trains (that changes the whole run); remove the call")
    if at_import_or_construction:
        return CheckResult("global_state", "WARN", f"{'; '.join(at_import_or_construction)}: poolbench puts it "
                           f"back, so runs are unaffected (the run's --seed and settings hold); remove the call")
    return CheckResult("global_state", "PASS", "its import, constructor and forward() leave the random generators, "
                       "threads, default dtype, grad mode and other global settings as they were")


Stage = Callable[[str], None]  # told what is about to run: "importing x.py", "the shape check"
Done = Callable[[CheckResult], None]  # told each result as it is known


def _ignore(_: object) -> None:
    pass


def check_pool(spec: str | Callable, *,
               pool_inputs: Sequence[tuple[int, int, int]] | None = None, include_cost: bool = True,
               device: str | torch.device = "cpu", seed: int = 0,
               on_stage: Stage = _ignore, on_result: Done = _ignore) -> ContractReport:
    """Run the contract checks on a pooling and return the report; never raises for a bad pooling.

    ``spec`` is a registered name, ``path.py[:Class]`` (class ``CustomPool`` by default) or a
    factory. ``pool_inputs`` are the ``(C, H, W)`` the pooling will see (default: the benchmark
    settings', :func:`benchmark_pool_inputs`); the checks add odd sizes.
    The global RNG state and torch's thread count are restored afterwards, so checking does not
    change a run. The pooling runs in this process: ``poolbench check`` and ``poolbench run`` run
    a pooling file's check in a child process with a time limit instead
    (:mod:`poolbench.execution.isolation`), told where it is by ``on_stage`` and ``on_result``.
    """
    start = time.perf_counter()
    if pool_inputs is None:
        pool_inputs = benchmark_pool_inputs()
    pool_inputs = cast(list[tuple[int, int, int]], [tuple(shape) for shape in pool_inputs])  # checked below
    if not pool_inputs or any(len(s) != 3 or min(s) < 1 for s in pool_inputs):
        raise ValueError(f"pool_inputs must be a non-empty list of (C, H, W), got {pool_inputs}")
    device = torch.device(device)
    label = spec if isinstance(spec, str) else getattr(spec, "__qualname__", repr(spec))
    report = ContractReport(label)
    threads = torch.get_num_threads()
    # The checks use tiny tensors: threads only add overhead, and on a busy machine (parallel runs
    # of a sweep) a multi-threaded small op waits for descheduled threads, several times slower.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []), \
                torch.enable_grad():
            torch.manual_seed(seed)
            report.results.extend(_check_all(spec, label, pool_inputs, include_cost, device, seed,
                                             on_stage, on_result))
    finally:
        torch.set_num_threads(threads)
    report.seconds = time.perf_counter() - start
    return report


def _check_all(spec: str | Callable, label: str, pool_inputs: Sequence[tuple[int, int, int]],
               include_cost: bool, device: torch.device, seed: int,
               on_stage: Stage, on_result: Done) -> list[CheckResult]:
    """Resolve and construct the pooling, then run every check (none if construction fails)."""
    recorded_before = global_state.recorded_count()
    results: list[CheckResult] = []

    def add(result: CheckResult) -> list[CheckResult]:
        results.append(result)
        on_result(result)
        return results

    on_stage(f"importing {label}" if isinstance(spec, str) and is_file_spec(spec) else f"resolving {label}")
    try:
        factory = resolve(spec) if isinstance(spec, str) else spec
    except PoolSpecError as error:
        return add(CheckResult("construct", "FAIL", str(error)))
    except (Exception, SystemExit) as error:
        return add(CheckResult("construct", "FAIL", f"cannot load {label!r}: {one_line(error)}"))
    subject = Subject(label, factory, accepts_channels(factory), tuple(pool_inputs), device, seed)
    on_stage("construct")
    if add(_construct(subject))[-1].status == "FAIL":
        return results
    in_forward: list[str] = []
    first_failed: dict[str, str] = {}  # FAIL message -> the check that reported it first
    for name, check in CHECKS:
        if name != "cost" or include_cost:
            on_stage(name)
            result = _run_check(name, check, subject, in_forward)
            if result.status == "FAIL" and result.message in first_failed:  # one root cause, one FAIL
                result = CheckResult(name, "WARN", f"not tested: it fails as {first_failed[result.message]} does")
            elif result.status == "FAIL":
                first_failed[result.message] = name
            add(result)
    outside_forward = [change for change in global_state.recorded(since=recorded_before) if change not in in_forward]
    return add(_global_state_result(outside_forward, in_forward))
