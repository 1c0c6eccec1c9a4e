"""Executors: how the runs of a sweep are started, each one as ``python -m poolbench run``.

A process per run isolates the sweep from a pooling that crashes, leaks memory or hangs a device.
The local executor runs N runs at a time on this machine (a GPU or a share of the CPUs each): on
a GPU each in its own process, on the CPU in N worker processes that train their runs one after
another (poolbench.execution.workers: a run that ends its worker ends alone, and gets the exit code
its own process would have had). The Ray executor runs each one in a Ray task, retried when its
worker or process dies.
Every run's stdout/stderr go to its folder's stdout.log / stderr.log, and its exit code and
result.json are turned into an ``Outcome``; a run locked by another sweep exits 75 and is
reported as "running elsewhere"; a run that hits a full or read-only disk exits 74, keeps its
checkpoint, and stops the sweep from starting more.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..core.atomic import is_disk_full_or_read_only
from ..core.outcomes import ExitCode, RunStatus
from ..storage import rundir
from ..storage.sweepdir import Sweep, SweepRun
from .device import resolve_device
from .option_fields import option
from .signals import STOP_SIGNALS, Terminated, how_it_ended
from .sweep_runner import Outcome, Skipped, SweepError, run_arguments, split_list
from .workers import Worker, runs_in_a_worker

#: The outcome of a run process that exits with these codes, when its result.json agrees.
EXPECTED_STATUS: dict[int, RunStatus] = {ExitCode.COMPLETED: RunStatus.COMPLETED, ExitCode.DIVERGED: RunStatus.DIVERGED}
#: A run that ends so was asked to stop (Ctrl-C, SIGTERM: by the sweep, Slurm, the user): interrupted, not
#: failed, even with no result.json; exit codes of a run that handled it, and of one killed by it.
STOPPED_ON_REQUEST = frozenset({ExitCode.INTERRUPTED, ExitCode.TERMINATED, -signal.SIGINT,
                                *(-signum for signum in STOP_SIGNALS)})
STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"


# --- Running one run --------------------------------------------------------------------------

def run_process(arguments: list[str], cwd: str, run_dir: str, env: dict[str, str],
            live: set[subprocess.Popen] | None = None) -> int:
    """Run ``python <arguments>`` in ``cwd``; its stdout goes to the run folder's stdout.log (one per
    attempt, see start_attempt), its stderr is appended to stderr.log. Returns the exit code.
    Called in a Ray task too: the interpreter is the one running this function, on whichever
    machine that is.
    """
    folder = start_logs(Path(cwd) / run_dir)
    with open(folder / STDOUT_LOG, "ab") as out, open(folder / STDERR_LOG, "ab") as err:
        process = subprocess.Popen([sys.executable, *arguments], cwd=cwd, stdout=out, stderr=err,
                                   stdin=subprocess.DEVNULL, env={**os.environ, **env},
                                   preexec_fn=_die_with_parent())
        if live is not None:
            live.add(process)
        try:
            return process.wait()
        except BaseException:  # interrupted (Ctrl-C, Ray cancel): the run must not go on unseen
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
        finally:
            if live is not None:
                live.discard(process)


def start_logs(folder: Path) -> Path:
    """Before a run starts: its folder made, its logs started (start_attempt), a line in stderr.log
    saying when the sweep started it; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    start_attempt(folder)
    with open(folder / STDERR_LOG, "ab") as err:
        err.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} poolbench sweep starts this run\n".encode())
    return folder


def start_attempt(folder: Path) -> None:
    """Before a run's process starts: stdout.log starts afresh, the previous attempt's kept as
    stdout.log.1, and the previous attempt's no_result.json is removed.

    A resumed run prints the TRAIN_METRICS lines of the epochs it resumes after again, so that one
    attempt's stdout holds the whole run: appending would give those epochs twice. Done under the
    run's lock: a run running elsewhere keeps its stdout.log (this attempt then exits 75 and writes
    nothing to it). The lock is released before the run's process takes it.
    """
    try:
        with rundir.RunLock(folder):
            stdout = folder / STDOUT_LOG
            if stdout.exists():
                os.replace(stdout, stdout.with_name(STDOUT_LOG + ".1"))
            rundir.clear_no_result(folder)
    except rundir.RunLockedError:
        pass


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the kernel kill the run if the process that started it dies (Linux).

    An orphaned run would hold its lock and keep training unseen: a retried Ray task would then
    find its own run "running elsewhere". Its checkpoint is written atomically, so a killed run
    resumes. The function is resolved here, before the fork: the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1
    return lambda: prctl(pr_set_pdeathsig, signal.SIGKILL)


class RunKilledError(RuntimeError):
    """The run's process was killed by a signal (out of memory, a lost worker): worth a retry."""


def run_process_or_raise(arguments: list[str], cwd: str, run_dir: str, env: dict[str, str]) -> int:
    """``run_process`` for Ray tasks: a run killed by a signal raises, so that Ray retries the task."""
    code = run_process(arguments, cwd, run_dir, env)
    if code < 0:
        raise RunKilledError(f"{run_dir}: the run was killed by signal {-code}")
    return code


def classify(run: SweepRun, run_dir: Path, exit_code: int, seconds: float) -> Outcome:
    """The outcome of a finished run process, from its exit code and its result.json.

    A process that ended without a result.json on its own (exit 0 after os._exit, a crash, a
    refusal) or by a signal other than a request to stop (SIGKILL: the pooling killing itself, or
    the out-of-memory killer) is failed, and recorded as such in the run folder's no_result.json,
    since the folder alone would say "pending" or "interrupted". Its checkpoint is kept either way:
    the next sweep tries failed runs again, resuming from it, and that attempt removes the record.
    """
    if exit_code == ExitCode.LOCKED:
        return Outcome(run, Skipped.RUNNING_ELSEWHERE, seconds=seconds)
    if exit_code == ExitCode.DISK:
        return Outcome(run, Skipped.DISK_FULL, seconds=seconds)
    summary = rundir.summarize(run_dir)
    expected = EXPECTED_STATUS.get(exit_code)
    if expected is not None and summary.status == expected:
        return Outcome(run, expected, summary.best_test_acc, seconds)
    if not (run_dir / rundir.RESULT_FILE).exists() and exit_code not in STOPPED_ON_REQUEST:
        message = no_result_message(run_dir, exit_code)
        rundir.record_no_result(run_dir, exit_code, message)
        return Outcome(run, RunStatus.FAILED, summary.best_test_acc, seconds,
                       f"{message} (see {run_dir / 'stderr.log'})")
    why = f"killed by signal {-exit_code}" if exit_code < 0 else f"exit {exit_code}"
    return Outcome(run, RunStatus.FAILED, summary.best_test_acc, seconds,
                   f"{why}: {_last_error_line(run_dir)} (see {run_dir / 'stderr.log'})")


def no_result_message(run_dir: Path, exit_code: int) -> str:
    """Why a run's process gave no result: what ended it, and what may have."""
    if exit_code < 0:
        cause = "the pooling or model may end the process (os._exit, signals), or the system killed it (out of memory?)"
    else:
        cause = ("the pooling or model may end the process (os._exit, signals)" if exit_code == 0
                 else _last_error_line(run_dir))
    text = f"the run's process ended without a result ({how_it_ended(exit_code)}): {cause}"
    if (run_dir / rundir.CHECKPOINT_FILE).exists():
        text += "; its checkpoint is kept: the same sweep command resumes it"
    return text


def settled_elsewhere(sweep: Sweep, run: SweepRun) -> Outcome | None:
    """Just before a run starts: the outcome if another sweep finished it or is running it.

    Checked again here, not only when the sweep starts, because a sweep running at the same
    time may have done it since; the lock still settles any remaining race (exit 75).
    """
    state = rundir.status(sweep.path(run))
    if state in (RunStatus.COMPLETED, RunStatus.DIVERGED):
        return Outcome(run, Skipped.ALREADY_DONE)
    return Outcome(run, Skipped.RUNNING_ELSEWHERE) if state == RunStatus.RUNNING else None


def _last_error_line(run_dir: Path) -> str:
    """The line of stderr.log that best says why a run failed: its last ``error:`` line."""
    try:
        lines = (run_dir / "stderr.log").read_text(errors="replace").splitlines()
    except OSError:
        return "no stderr.log"
    lines = [line.strip() for line in lines if line.strip() and not line.startswith("--- ")]
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["no message"])[-1]


# --- Executors ----------------------------------------------------------------------------------

def cpu_count() -> int:
    """CPUs this process may use (the affinity mask, not the machine's total)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs runs may be given, as CUDA_VISIBLE_DEVICES entries (respects the parent's)."""
    count = torch.cuda.device_count()
    inherited = split_list(os.environ.get("CUDA_VISIBLE_DEVICES"))
    return inherited[:count] if inherited else [str(i) for i in range(count)]


def in_worker_processes(sweep: Sweep) -> bool:
    """Whether the local executor may train the sweep's runs in worker processes (execution.workers):
    runs on the CPU that do not compile their model. A GPU run keeps a process of its own (a device
    hung or filled by one run must not reach the next), and so does a compiled one (torch.compile's
    caches and limits are per process)."""
    return not sweep.options.get("compile") and resolve_device(str(sweep.options.get("device") or "auto")).type == "cpu"


@dataclass(frozen=True)
class LocalFlags:
    """The local executor's own flags (poolbench.execution.executor_registry)."""

    worker_processes: str = option(
        "on", "--worker-processes", "on (default): on the CPU, each of the --jobs is one process that trains its "
                                    "runs one after another; off: a new process for every run (see docs/running.md)",
        choices=("on", "off"))


def run_local(sweep: Sweep, todo: list[SweepRun], jobs: int | None, on_outcome: Callable[[Outcome], None],
              flags: LocalFlags = LocalFlags(), note: Callable[[str], None] = print) -> bool:
    """Run ``todo`` ``jobs`` at a time (None: one); each gets its own GPU when there are GPUs (round robin),
    else ``cores // jobs`` CPU threads. Reports each outcome as it ends; True: they all ended here.

    A run is its own ``python -m poolbench run`` process, but on the CPU (see in_worker_processes)
    each job slot is one worker process that trains its runs one after another, unless
    ``--worker-processes off``; a run that ends its worker gets a new one for the next run.
    """
    jobs = jobs or 1
    gpus = visible_gpus()
    # The user's own thread setting wins (--threads, else an exported OMP_NUM_THREADS; an empty one, which
    # torch ignores for all the cores, is no choice: two such runs on 2 cores took 2.4x as long).
    threads = str(sweep.options.get("threads") or max(1, cpu_count() // jobs))
    set_threads = bool(sweep.options.get("threads")) or not os.environ.get("OMP_NUM_THREADS")
    slots: deque[int] = deque(range(jobs))  # a slot is a GPU for the duration of one run
    slot_lock = threading.Lock()
    live: set[subprocess.Popen] = set()
    stop = threading.Event()
    workers: dict[int, Worker] = {}  # a slot's worker process, when the runs are trained in workers
    in_workers = flags.worker_processes == "on" and in_worker_processes(sweep)

    def ready_worker(slot: int, env: dict[str, str]) -> Worker:
        """The slot's worker once it can take a run; a new one if the slot has none or its worker ended."""
        worker = workers.get(slot)
        if worker is None or not worker.alive():
            worker = workers[slot] = Worker(sweep.root, env, _die_with_parent())
        worker.wait_ready()
        return worker

    def train(run: SweepRun, arguments: list[str], worker: Worker | None, env: dict[str, str]) -> int:
        """The run's exit code, from the slot's worker, or from its own process where it has none."""
        if worker is None:
            return run_process(arguments, str(sweep.root), sweep.relative(run), env, live)
        folder = start_logs(sweep.path(run))
        live.add(worker.process)
        try:
            return worker.run(arguments, folder / STDOUT_LOG, folder / STDERR_LOG)
        finally:
            live.discard(worker.process)

    def work(run: SweepRun) -> Outcome | None:
        if stop.is_set():
            return None
        settled = settled_elsewhere(sweep, run)
        if settled is not None:
            return settled
        with slot_lock:
            slot = slots.popleft()
        env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads} if set_threads else {}
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        start = time.perf_counter()
        try:
            arguments, worker = run_arguments(sweep, run), None
            if in_workers and runs_in_a_worker(arguments):
                worker = ready_worker(slot, env)
                # A new worker takes seconds to start, in which another sweep on the folder may have
                # started or finished the run: asked again when it can start, it is not counted twice.
                if stop.is_set():
                    return None
                settled = settled_elsewhere(sweep, run)
                if settled is not None:
                    return settled
            code = train(run, arguments, worker, env)
            outcome = classify(run, sweep.path(run), code, time.perf_counter() - start)
        except OSError as error:  # writing the run's logs or records
            if not is_disk_full_or_read_only(error):
                raise
            outcome = Outcome(run, Skipped.DISK_FULL, seconds=time.perf_counter() - start)
        finally:
            with slot_lock:
                slots.append(slot)
        if outcome.kind == Skipped.DISK_FULL:
            stop.set()  # every run would hit the same disk: the ones running finish or stop the same way
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(work, run) for run in todo]
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    if outcome is not None:
                        on_outcome(outcome)
            except BaseException as error:
                stop.set()  # start no more runs; leaving the with-block waits for the ones running
                for future in futures:
                    future.cancel()
                if isinstance(error, KeyboardInterrupt):
                    # They may not have seen the terminal's Ctrl-C, and never see a SIGTERM sent to the sweep.
                    passed_on = signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT
                    for process in list(live):
                        process.send_signal(passed_on)
                raise
    finally:
        for worker in workers.values():
            worker.connection.close()  # all told at once, then waited for
        for worker in workers.values():
            worker.close()
    return True


def import_ray() -> Any:
    try:
        import ray  # an optional extra: imported only when --executor ray asks for it
    except ImportError:
        raise SweepError("--executor ray needs Ray, an optional extra: "
                         "pip install 'poolbench[ray]'") from None
    return ray


def check_ray(dry_run: bool) -> None:
    """SweepError before anything is written when Ray is not installed."""
    import_ray()


@dataclass(frozen=True)
class RayFlags:
    """The Ray executor's own flags (poolbench.execution.executor_registry)."""

    ray_address: str | None = option(None, "--ray-address", "Ray cluster to use (default: start a local one)")
    ray_max_retries: int = option(3, "--ray-max-retries", "retries of a run whose worker or process dies (default 3)")


def run_ray(sweep: Sweep, todo: list[SweepRun], jobs: int | None, on_outcome: Callable[[Outcome], None],
            flags: RayFlags = RayFlags(), note: Callable[[str], None] = print) -> bool:
    """Run ``todo`` as Ray tasks (``jobs`` at a time, None: all) on the cluster at ``--ray-address``
    (None: the running or a new local one). One CPU per run, one GPU per run when the cluster has GPUs;
    a task whose worker or run process dies is retried ``--ray-max-retries`` times and resumes from the
    run's checkpoint. The sweep folder must be on a file system every node shares, and poolbench
    installed on every node. True: the runs all ended here.
    """
    address, max_retries = flags.ray_address, flags.ray_max_retries
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
    try:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(run_process_or_raise).options(num_cpus=1, num_gpus=1 if has_gpus else 0,
                                                    max_retries=max_retries,
                                                    retry_exceptions=[RunKilledError])
        env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # its one CPU; Ray sets the GPU
        waiting = deque(todo)
        pending: dict[Any, tuple[SweepRun, float]] = {}
        limit = jobs or len(todo)
        try:
            while waiting or pending:
                while waiting and len(pending) < limit:
                    run = waiting.popleft()
                    settled = settled_elsewhere(sweep, run)
                    if settled is not None:
                        on_outcome(settled)
                        continue
                    ref = task.remote(run_arguments(sweep, run), str(sweep.root), sweep.relative(run), env)
                    pending[ref] = (run, time.perf_counter())
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    run, start = pending.pop(ref)
                    seconds = time.perf_counter() - start
                    try:
                        outcome = classify(run, sweep.path(run), ray.get(ref), seconds)
                    except ray.exceptions.RayError as error:  # retries exhausted, node gone, ...
                        last = (str(error).strip() or type(error).__name__).splitlines()[-1]
                        outcome = Outcome(run, RunStatus.FAILED, None, seconds,
                                          f"Ray gave up after {max_retries} retries: {last}")
                        if not (sweep.path(run) / rundir.RESULT_FILE).exists():
                            rundir.record_no_result(sweep.path(run), None, outcome.message)
                    if outcome.kind == Skipped.DISK_FULL:
                        waiting.clear()  # every run would hit the same disk: start no more
                    on_outcome(outcome)
        except KeyboardInterrupt:
            for ref in pending:
                ray.cancel(ref)  # raises KeyboardInterrupt in the task: run_process stops its process
            raise
    finally:
        if started_here:
            ray.shutdown()
    return True
