"""The Slurm executor: a sweep's runs as one Slurm job array, through submitit.

Each array task runs one run exactly as the local executor does (``executors.run_process`` of
``python -m poolbench run`` in the sweep folder, its outcome from ``executors.classify``), so a
run's files, exit codes and resume are the same on a cluster as on a laptop. The array runs at
most ``--jobs`` tasks at a time (``#SBATCH --array=0-N%jobs``); the partition, time limit, GPUs,
CPUs, memory and extra ``#SBATCH`` lines come from the sweep's options (``slurm_*`` in sweep.json,
so that the same command run again resubmits with the same ones).

Preemption and time limits: submitit asks Slurm to send SIGUSR2 ``signal_delay_s`` before the
end (``#SBATCH --signal=USR2@90``) and calls the task's ``checkpoint()``. ``RunTask.checkpoint``
sends SIGTERM to the run's process, which keeps its last epoch's checkpoint and exits 143 (the
runner handles SIGTERM, SIGUSR1 and SIGUSR2 alike, see poolbench.execution.signals), and returns
a fresh submission of the same task: Slurm requeues it and the run resumes after its last
finished epoch. submitit's local executor (real processes on this machine, with the same
signals and requeue) runs the array when ``POOLBENCH_SUBMITIT_CLUSTER=local``: how the tests
run it, and a way to try a sweep before sending it to the cluster.

The sweep folder holds submitit's files in ``slurm/`` (submission scripts, pickles, logs) and
each run's job id in ``slurm.json``, which ``poolbench status`` shows, with the job's state from
``squeue`` when Slurm's commands are on PATH.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.outcomes import RunStatus
from ..storage import rundir
from ..storage.sweepdir import Sweep, SweepRun
from . import executors
from .option_fields import option
from .slurm_jobs import record_jobs
from .sweep_runner import Outcome, Skipped, SweepError

try:  # an optional extra: the module is imported by the cli whether or not it is installed
    from submitit.helpers import Checkpointable
except ImportError:  # pragma: no cover - the refusal (import_submitit) names the extra
    Checkpointable = object  # type: ignore[misc,assignment]

SLURM_DIR = "slurm"  # submitit's files: submission scripts, pickled tasks, the tasks' own logs
CLUSTER_VARIABLE = "POOLBENCH_SUBMITIT_CLUSTER"  # "local": submitit's local executor runs the array
#: sweep.json options (the ``--slurm-*`` flags) -> submitit's Slurm parameter (sbatch's option).
PARAMETERS = {"slurm_partition": "partition", "slurm_time": "time", "slurm_gpus_per_node": "gpus_per_node",
              "slurm_cpus_per_task": "cpus_per_task", "slurm_mem": "mem",
              "slurm_additional_parameters": "additional_parameters"}
SIGNAL_DELAY_S = 120  # SIGUSR2 this long before the time limit: the run's epoch in progress is dropped
POLL_S = 2.0


def import_submitit() -> Any:
    """submitit, or SweepError naming the extra that installs it."""
    try:
        import submitit  # an optional extra: imported only when --executor slurm asks for it
    except ImportError:
        raise SweepError('--executor slurm needs submitit, an optional extra: pip install "poolbench[slurm]"') from None
    return submitit


def cluster() -> str:
    """The submitit executor that runs the array: ``slurm``, or ``local`` when asked by
    ``POOLBENCH_SUBMITIT_CLUSTER=local``; SweepError when Slurm's commands are missing."""
    name = os.environ.get(CLUSTER_VARIABLE) or "slurm"
    if name not in ("slurm", "local"):
        raise SweepError(f"{CLUSTER_VARIABLE}={name!r} names no submitit executor: use slurm or local")
    if name == "slurm" and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        raise SweepError(f"--executor slurm needs Slurm's sbatch and srun on PATH (none here): run the sweep on "
                         f"the cluster's login node, or set {CLUSTER_VARIABLE}=local to try the array on this "
                         f"machine")
    return name


def parse_time(text: str) -> int:
    """A time limit as sbatch takes it -> whole minutes (seconds round up): ``90`` (minutes), ``90:30``
    (minutes:seconds), ``1:30:00`` (hours:minutes:seconds), ``2-12``, ``2-12:30``, ``2-12:30:00``
    (days-hours...); ValueError naming the forms when it is none of them or not positive."""
    days, dash, rest = text.strip().rpartition("-")
    try:
        numbers = [int(part) for part in rest.split(":")]
        day_count = int(days) if dash else 0
    except ValueError:
        numbers, day_count = [], 0
    if dash:
        hours, minutes, seconds = (numbers + [0, 0])[:3] if 1 <= len(numbers) <= 3 else (-1, 0, 0)
    else:
        hours, minutes, seconds = {1: lambda: (0, numbers[0], 0), 2: lambda: (0, *numbers),
                                   3: lambda: tuple(numbers)}.get(len(numbers), lambda: (-1, 0, 0))()
    total = (day_count * 24 + hours) * 60 + minutes + (seconds > 0)
    if min(day_count, hours, minutes, seconds) < 0 or total < 1:
        raise ValueError(f"--slurm-time {text!r} is not a time limit: give minutes (90), H:MM:SS (1:30:00) "
                         f"or D-HH:MM:SS (2-00:00:00)")
    return total


def slurm_parameters(options: dict[str, Any], jobs: int | None) -> dict[str, Any]:
    """The sweep's ``slurm_*`` options as submitit's Slurm parameters (``_make_sbatch_string``'s
    keywords), with the array's parallelism (``%jobs``) and the requeue signal's delay."""
    parameters = {name: options[key] for key, name in PARAMETERS.items() if options.get(key) is not None}
    parameters["signal_delay_s"] = SIGNAL_DELAY_S
    parameters["job_name"] = "poolbench"
    if jobs:
        parameters["array_parallelism"] = jobs
    return parameters


def sbatch_script(sweep: Sweep, count: int, jobs: int | None) -> str:
    """The submission script of an array of ``count`` runs, as submitit's SlurmExecutor writes it
    (``sweep --executor slurm --dry-run`` prints it); needs no Slurm."""
    import_submitit()
    from submitit.slurm.slurm import _make_sbatch_string  # the text SlurmExecutor submits

    folder = sweep.root / SLURM_DIR / "%j"
    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    return _make_sbatch_string(command=command, folder=folder, map_count=count, **slurm_parameters(sweep.options, jobs))


def task_environment(options: dict[str, Any]) -> dict[str, str]:
    """The run process's thread count: --threads, else the CPUs Slurm gives the task; Slurm sets its GPUs."""
    threads = options.get("threads") or options.get("slurm_cpus_per_task")
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)} if threads else {}


class RunTask(Checkpointable):
    """One array task: one run of the sweep, started and classified as the local executor does.

    submitit calls ``checkpoint()`` (in this process's main thread, from its SIGUSR2 handler) when
    Slurm preempts the task or its time limit nears; the returned submission is pickled and requeued.
    """

    def __init__(self, sweep: Sweep, run: SweepRun, arguments: list[str], env: dict[str, str]) -> None:
        self.sweep, self.run, self.arguments, self.env = sweep, run, arguments, env
        self.live: set[subprocess.Popen] = set()

    def __call__(self) -> Outcome:
        settled = executors.settled_elsewhere(self.sweep, self.run)
        if settled is not None:
            return settled
        start = time.perf_counter()
        code = executors.run_process(self.arguments, str(self.sweep.root), self.sweep.relative(self.run), self.env,
                                     self.live)
        return executors.classify(self.run, self.sweep.path(self.run), code, time.perf_counter() - start)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Stop the run's process as Slurm would (SIGTERM: it keeps its checkpoint and exits 143) and
        return the same task, to run again: the run then resumes after its last finished epoch."""
        from submitit.helpers import DelayedSubmission

        for process in list(self.live):
            process.send_signal(signal.SIGTERM)
            # Wait for its end without reaping it: the interrupted Popen.wait of __call__ holds the
            # lock that a second wait() would need.
            os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        return DelayedSubmission(RunTask(self.sweep, self.run, self.arguments, self.env))

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "live": set()}  # processes stay with the process that started them


def make_executor(sweep: Sweep, jobs: int | None, name: str) -> Any:
    """A submitit executor writing into the sweep's ``slurm/`` folder, with its Slurm parameters."""
    submitit = import_submitit()
    folder = sweep.root / SLURM_DIR / "%j"
    if name == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=sweep.options.get("slurm_time") or 60 * 24,
                                   gpus_per_node=sweep.options.get("slurm_gpus_per_node") or 0,
                                   signal_delay_s=SIGNAL_DELAY_S)
        return executor
    executor = submitit.SlurmExecutor(folder)
    executor.update_parameters(**slurm_parameters(sweep.options, jobs))
    return executor


@dataclass(frozen=True)
class SlurmFlags:
    """The Slurm executor's own flags (poolbench.execution.executor_registry): the job array's
    resources, kept in sweep.json's options (slurm_*, stored_options) for the next command."""

    slurm_partition: str | None = option(None, "--slurm-partition", "partition of the array's jobs", metavar="NAME")
    slurm_time: str | None = option(None, "--slurm-time", "time limit of each run's job: minutes, H:MM:SS or "
                                    "D-HH:MM:SS; a run reaching it is checkpointed and requeued", metavar="TIME")
    slurm_gpus_per_node: int | None = option(None, "--slurm-gpus-per-node", "GPUs of each run's job", metavar="N")
    slurm_cpus_per_task: int | None = option(None, "--slurm-cpus-per-task",
                                             "CPUs of each run's job (its threads unless --threads)", metavar="N")
    slurm_mem: str | None = option(None, "--slurm-mem", "memory of each run's job (e.g. 16G)", metavar="SIZE")
    slurm_extra: list[str] | None = option(None, "--slurm-extra", "an extra #SBATCH line (e.g. account=proj, "
                                           "qos=normal, constraint=a100); repeat it", metavar="KEY=VALUE")
    wait: bool = option(True, "--no-wait", "submit and return: `poolbench status DIR` shows the jobs; the same sweep "
                        "command run again collects and resumes", aliases=("--detach",))


def check_slurm(dry_run: bool) -> None:
    """SweepError before anything is written when submitit is not installed, or (unless ``dry_run``)
    Slurm's commands are missing (see cluster)."""
    import_submitit()
    if not dry_run:
        cluster()


def stored_options(flags: SlurmFlags) -> dict[str, Any]:
    """The --slurm-* flags as sweep.json options (submitit's names, slurm_*), given with any executor
    (kept for a later ``--executor slurm``); SweepError for a bad one."""
    for name in ("slurm_gpus_per_node", "slurm_cpus_per_task"):
        value = getattr(flags, name)
        if value is not None and value < (0 if name == "slurm_gpus_per_node" else 1):
            raise SweepError(f"--{name.replace('_', '-')} must be >= {0 if 'gpus' in name else 1}, got {value}")
    if flags.slurm_mem is not None and not re.fullmatch(r"\d+[KMGT]?", flags.slurm_mem.strip()):
        raise SweepError(f"--slurm-mem {flags.slurm_mem!r} is not a size: give megabytes or a number with K, M, G "
                         f"or T (e.g. 16G)")
    extra: dict[str, str | bool] = {}
    for item in flags.slurm_extra or []:
        key, equals, value = item.partition("=")
        key = key.strip().removeprefix("--")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", key) or (equals and not value.strip()) or "\n" in value:
            raise SweepError(f"--slurm-extra {item!r} is not an #SBATCH option: give KEY=VALUE (e.g. account=proj) "
                             f"or KEY alone for a flag (e.g. requeue)")
        extra[key] = value.strip() if equals else True
    try:
        time_limit = parse_time(flags.slurm_time) if flags.slurm_time is not None else None
    except ValueError as error:
        raise SweepError(str(error)) from None
    return {"slurm_partition": flags.slurm_partition, "slurm_time": time_limit,
            "slurm_gpus_per_node": flags.slurm_gpus_per_node, "slurm_cpus_per_task": flags.slurm_cpus_per_task,
            "slurm_mem": flags.slurm_mem and flags.slurm_mem.strip(), "slurm_additional_parameters": extra or None}


def run_slurm(sweep: Sweep, todo: list[SweepRun], jobs: int | None, on_outcome: Callable[[Outcome], None],
              flags: SlurmFlags = SlurmFlags(), note: Callable[[str], None] = print) -> bool:
    """Submit ``todo`` as one job array (Slurm; ``jobs`` at a time) or as local jobs (``jobs`` at a
    time) and, unless ``--no-wait``, report each outcome as its task ends; ``note`` gets the job ids.
    True when the runs ended here, False when they were left to Slurm (``--no-wait``).

    Interrupting the wait (Ctrl-C) leaves the jobs running: Slurm owns them; the same sweep command
    run again skips finished runs and resubmits the others.
    """
    wait = flags.wait
    name = cluster()
    executor = make_executor(sweep, jobs, name)
    env = task_environment(sweep.options)

    def task(run: SweepRun) -> RunTask:
        return RunTask(sweep, run, executors.run_arguments(sweep, run), env)

    waiting = deque(todo)
    pending: dict[Any, SweepRun] = {}
    limit = len(todo) if name == "slurm" or not wait else max(1, jobs or len(todo))
    if name == "slurm" and todo:  # one array: Slurm keeps at most `jobs` of its tasks running
        submitted = list(zip(todo, executor.submit_array([task(run) for run in todo]), strict=True))
        waiting.clear()
        pending = {job: run for run, job in submitted}
        record_jobs(sweep, submitted, name)
        note(f"submitted job array {submitted[0][1].job_id.partition('_')[0]} ({len(todo)} runs, "
             f"{jobs or 'all'} at a time); its logs: {sweep.root / SLURM_DIR}")
    while waiting or pending:
        batch: list[tuple[SweepRun, Any]] = []
        while waiting and len(pending) + len(batch) < limit:
            run = waiting.popleft()
            batch.append((run, executor.submit(task(run))))
        if batch:
            record_jobs(sweep, batch, name)
            pending.update({job: run for run, job in batch})
            note("submitted " + ", ".join(f"{run.name} (job {job.job_id})" for run, job in batch))
        if not wait:
            return False
        finished = [job for job in pending if job.done()]
        for job in finished:
            outcome = _outcome(pending.pop(job), job, sweep)
            if outcome.kind == Skipped.DISK_FULL:
                waiting.clear()  # every run would hit the same disk: submit no more
            on_outcome(outcome)
        if not finished:
            time.sleep(POLL_S)
    return wait


def _outcome(run: SweepRun, job: Any, sweep: Sweep) -> Outcome:
    """The task's outcome, or a failed one naming the job's log when the task itself failed."""
    try:
        result = job.result()
    except Exception as error:  # noqa: BLE001 - submitit's job errors: the task died, was cancelled, ...
        last = (str(error).strip() or type(error).__name__).splitlines()[-1]
        message = f"job {job.job_id} ended without a result ({last}); see {job.paths.stderr}"
        if not (sweep.path(run) / rundir.RESULT_FILE).exists():
            rundir.record_no_result(sweep.path(run), None, message)
        return Outcome(run, RunStatus.FAILED, rundir.summarize(sweep.path(run)).best_test_acc, 0.0, message)
    return result if isinstance(result, Outcome) else Outcome(run, RunStatus.FAILED, message=f"job {job.job_id}: "
                                                                                           f"no outcome")
