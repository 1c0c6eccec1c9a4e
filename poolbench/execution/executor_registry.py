"""The executors a sweep can start its runs with (``poolbench sweep --executor NAME``), in one place.

An entry names the function that runs a sweep's todo list and its own flags (a dataclass of
``option_fields.option`` fields); ``--executor``'s choices and help, the executors' flags (and so
their keys in a sweep file) and the sweep's dispatch are all read from :data:`EXECUTORS`. A new
executor is its module plus one entry here (CONTRIBUTING.md, "Adding an executor").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..storage.sweepdir import Sweep, SweepRun
from . import executors, memory_estimate, slurm
from .option_fields import values as flag_values
from .sweep_runner import Outcome

OnOutcome = Callable[[Outcome], None]  # called with each run's outcome as it ends
Note = Callable[[str], None]  # a human line (stderr)
#: run(sweep, todo, jobs, report, flags, note): start the runs of ``todo`` (``jobs`` at a time, None: all),
#: report each outcome; True when they ended here, False when they were left running (a detached submission).
Start = Callable[[Sweep, list[SweepRun], int | None, OnOutcome, Any, Note], bool]


@dataclass(frozen=True)
class Executor:
    """How a sweep's runs start, as ``poolbench sweep`` calls it."""

    help: str  # its part of --executor's help
    run: Start
    flags: type | None = None  # its own flags: a dataclass of option_fields.option fields, given to ``run``
    flag_group: tuple[str, str] | None = None  # (title, description) of the help section of its flags
    jobs: int | None = None  # runs at a time without --jobs (None: all)
    check: Callable[[bool], None] | None = None  # (dry_run) -> SweepError when what it needs is missing
    stored: Callable[[Any], dict[str, Any]] | None = None  # its flags kept in sweep.json's options
    refuse: Callable[[Sweep, list[SweepRun], int, Note], str | None] | None = None  # before its runs start
    plan: Callable[[Sweep, int, int | None], str] | None = None  # what --dry-run prints after the grid


def gpu_memory_problem(sweep: Sweep, todo: list[SweepRun], jobs: int, note: Note) -> str | None:
    """Why ``jobs`` runs at a time would not fit in this machine's free GPU memory (memory_estimate)."""
    try:
        return memory_estimate.sweep_problem(sweep, todo, jobs)
    except (RuntimeError, OSError, ValueError) as error:
        note(f"warning: cannot estimate the runs' GPU memory ({error}); starting them unchecked")
        return None


EXECUTORS: dict[str, Executor] = {
    "local": Executor("this machine (default; CPU runs in --jobs worker processes, see --worker-processes)",
                      executors.run_local, executors.LocalFlags, jobs=1, refuse=gpu_memory_problem),
    "ray": Executor("Ray tasks", executors.run_ray, executors.RayFlags, check=executors.check_ray),
    "slurm": Executor("one Slurm job array through submitit", slurm.run_slurm, slurm.SlurmFlags,
                      flag_group=("slurm", "--executor slurm (submitit): the job array's resources, remembered "
                                           "in sweep.json; --jobs: array tasks at a time"),
                      check=slurm.check_slurm, stored=slurm.stored_options, plan=slurm.sbatch_script),
}


def flags_of(executor: Executor, values: Any) -> Any:
    """The executor's flags dataclass filled from parsed arguments (None when it has none)."""
    return executor.flags(**flag_values(executor.flags, values)) if executor.flags is not None else None
