"""``poolbench sweep``: run a grid of poolings x settings x seeds in one folder (see
poolbench.execution.sweep_runner for the grid, poolbench.execution.executors for how its runs start).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..core.atomic import is_disk_full_or_read_only
from ..core.outcomes import FINISHED_STATUSES, ExitCode, RunStatus
from ..core.settings import suite_settings
from ..core.unique import unique
from ..execution.executor_registry import EXECUTORS, flags_of
from ..execution.run_options import PASSED_ON
from ..execution.runner import argument_problem
from ..execution.signals import how_interrupted, interrupted_code, sigterm_as_interrupt
from ..execution.sweep_runner import (
    Outcome,
    Skipped,
    SweepError,
    disk_full_message,
    prepare,
    refuse_failing_poolings,
    split_list,
    split_pools,
)
from ..storage import rundir
from ..storage.sweep_runs import NOT_STARTED_WHEN_REFUSED
from ..storage.sweepdir import Sweep, load_refusals, split_variants
from ..storage.tracking import parse as parse_trackers
from ..training.catalog import with_pool_at
from . import say
from .flags import add_option_arguments, add_protocol_arguments, protocol_overrides
from .sweep_config import apply_config

DONE = (RunStatus.COMPLETED, RunStatus.DIVERGED)  # a sweep never runs these again
#: flag -> (what it takes, what leaving it out gives): a flag given but naming nothing is refused, since
#: falling back to the default would sweep what was not asked for.
LIST_FLAGS = {
    "pools": ("comma-separated poolings (e.g. gap,gem)", "the sweep folder's poolings"),
    "settings": ("comma-separated settings (e.g. quick,resnet20@cifar10)", "quick, or the sweep folder's settings"),
    "suite": ("comma-separated suites (e.g. diagnostics)", "no suite"),
    "seeds": ("comma-separated integers (e.g. 1,2,3)", "42,123,456, or the sweep folder's seeds"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", nargs="?", metavar="DIR", help="sweep folder (same as --out)")
    parser.add_argument("--config", metavar="FILE",
                        help="a sweep file (YAML or TOML): the flags below as keys (data_root for --data-root), "
                             "protocol fields with a list of values as variants; a flag given here wins over "
                             "the file (see docs/running.md, Sweep files)")
    parser.add_argument("--out", help="sweep folder; its sweep.json remembers the grid for later runs")
    parser.add_argument("--pools", help="comma-separated registered names, name(key=value, ...) and "
                                        "path.py[:Class] files (e.g. 'gap,gem,topk(k=0.1),topk(k=0.5),mine.py')")
    parser.add_argument("--settings", help="comma-separated settings (default quick): names, or MODEL@DATASET "
                                           "(e.g. resnet20@cifar10, timm:resnet18@imagefolder:/data/pets)")
    parser.add_argument("--pool-at", metavar="PATH", help="the module of every --settings model to replace by "
                        "the pooling (e.g. features.8); default: each model's global pooling, found")
    parser.add_argument("--suite", help="comma-separated suites whose settings are added: diagnostics, "
                                        "real, spatial, benchmark (see `poolbench list`)")
    parser.add_argument("--seeds", help="comma-separated seeds (default 42,123,456)")
    parser.add_argument("--jobs", type=int, help="runs at a time (local default 1; ray default: all)")
    parser.add_argument("--executor", choices=list(EXECUTORS), default="local",
                        help="; ".join(f"{name}: {executor.help}" for name, executor in EXECUTORS.items()))
    for executor in EXECUTORS.values():  # each executor's own flags, in its own help section if it has one
        if executor.flags is not None:
            group = parser.add_argument_group(*executor.flag_group) if executor.flag_group else parser
            add_option_arguments(group, executor.flags)
    parser.add_argument("--dry-run", action="store_true",
                        help="write the sweep folder's sweep.json and print the plan; run nothing")
    add_protocol_arguments(parser, many=True)
    add_option_arguments(parser, sweep=True)  # the RunOptions passed on to every run


def main(args: argparse.Namespace) -> int:
    """0 when every run completed or diverged, 1 if any failed or its pooling was refused, 2 on bad
    input, 74 when the disk is full (or read-only): nothing is lost, the same command resumes."""
    try:
        sweep = sweep_from_args(args)
    except SweepError as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    except OSError as error:  # prepare refuses an unwritable folder; a full disk comes here
        if is_disk_full_or_read_only(error):
            say(f"error: {disk_full_message(_sweep_folder(args))}")
            return ExitCode.DISK
        say(f"error: cannot use {error.filename or _sweep_folder(args)}: {error.strerror or error}")
        return ExitCode.BAD_INPUT
    try:
        return run_sweep(args, sweep)
    except SweepError as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    except OSError as error:  # the sweep's own files (refused.json, the runs' logs and records)
        if is_disk_full_or_read_only(error):
            say(f"error: {disk_full_message(_sweep_folder(args))}")
            return ExitCode.DISK
        say(f"error: cannot write {error.filename or sweep.root}: {error.strerror or error}; make the sweep "
            f"folder writable and run the same command again to resume")
        return ExitCode.FAILED


def run_sweep(args: argparse.Namespace, sweep: Sweep) -> int:
    """Run the prepared sweep's runs that are not done; its exit code (see main)."""
    grid = sweep.runs()
    before = {run: rundir.status(sweep.path(run)) for run in grid}
    todo = [run for run in grid if before[run] not in (*DONE, RunStatus.RUNNING)]
    done = sum(before[run] in DONE for run in grid)
    elsewhere = sum(before[run] == RunStatus.RUNNING for run in grid)
    executor = EXECUTORS[args.executor]
    jobs = args.jobs or executor.jobs
    root = _sweep_folder(args)  # as the user wrote it (sweep.root is resolved)
    if args.dry_run:
        refusals = load_refusals(sweep.root)  # what the last sweep command found; none is checked now
        say(f"sweep {root}: {_shape(sweep)} = {len(grid)} runs; {done} already done, {elsewhere} running elsewhere, "
            f"{len(todo)} to run ({args.executor}, {jobs or 'all'} at a time)")
        for run in grid:
            shown = RunStatus.REFUSED if run.pool in refusals and before[run] in NOT_STARTED_WHEN_REFUSED \
                else before[run]
            print(f"{run.name:40s} {shown}")
        if executor.plan is not None:  # what it would submit now (slurm: the array's submission script)
            print(f"\n{executor.plan(sweep, len(todo), jobs)}", end="")
        return ExitCode.COMPLETED

    refused = refuse_failing_poolings(sweep, todo)  # each pooling once, before any of its runs
    not_started = [run for run in todo if run.pool in refused]
    todo = [run for run in todo if run.pool not in refused]
    if executor.refuse is not None:  # local: whether --jobs runs fit in the GPUs' memory
        problem = executor.refuse(sweep, todo, jobs or 1, say)
        if problem:
            say(f"error: {problem}")
            return ExitCode.BAD_INPUT
    say(f"sweep {root}: {_shape(sweep)} = {len(grid)} runs; {done} already done, {elsewhere} running elsewhere, "
         f"{len(todo)} to run ({args.executor}, {jobs or 'all'} at a time)"
         + (f", {len(not_started)} refused" if not_started else ""))
    for label, refusal in refused.items():
        count = sum(run.pool == label for run in not_started)
        say(f"refused {label} ({count} runs not started): {refusal['message']}")

    outcomes: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)
        say(f"[{len(outcomes)}/{len(todo)}] {_describe(outcome)}")

    start = time.perf_counter()
    try:
        with sigterm_as_interrupt():  # SIGTERM (Slurm, Kubernetes, timeout) is passed on to the runs
            if not executor.run(sweep, todo, jobs, on_outcome, flags_of(executor, args), say):
                say(f"not waiting: `poolbench status {root}` shows the runs and their jobs; the same sweep "
                    f"command run again once they end collects them and resumes any that stopped")
                return ExitCode.COMPLETED
    except KeyboardInterrupt as error:
        how = how_interrupted(error)
        say(f"{how} after {len(outcomes)} of {len(todo)} runs, their checkpoints kept; "
             f"`poolbench sweep {root}` resumes it")
        return interrupted_code(error)  # 130 for Ctrl-C, 143 for SIGTERM
    if any(o.kind == Skipped.DISK_FULL for o in outcomes):
        say(f"error: {disk_full_message(root)}")
        return ExitCode.DISK
    counts = {kind: sum(o.kind == kind for o in outcomes) for kind in FINISHED_STATUSES}
    elsewhere += sum(o.kind == Skipped.RUNNING_ELSEWHERE for o in outcomes)
    done += sum(o.kind == Skipped.ALREADY_DONE for o in outcomes)
    seconds = time.perf_counter() - start
    finished = sum(counts.values())
    say(f"sweep {root} done in {seconds:.0f} s ({3600 * finished / max(seconds, 1e-9):.1f} runs/hour): "
         f"{counts[RunStatus.COMPLETED]} completed, "
         f"{counts[RunStatus.DIVERGED]} diverged, {counts[RunStatus.FAILED]} failed, {done} skipped (already done), "
         f"{elsewhere} skipped (running elsewhere), {len(not_started)} refused; see `poolbench report {root}`")
    return ExitCode.FAILED if counts[RunStatus.FAILED] or not_started else ExitCode.COMPLETED


def sweep_from_args(args: argparse.Namespace) -> Sweep:
    """The sweep the arguments describe, prepared in its folder; SweepError before anything is
    written when an argument cannot work."""
    if args.config is not None:
        apply_config(args, add_arguments)
    for flag, (takes, default) in LIST_FLAGS.items():
        text = getattr(args, flag)
        if text is not None and not (split_pools if flag == "pools" else split_list)(text):
            raise SweepError(f"--{flag} {text!r} names nothing: give {takes}, or leave --{flag} out for {default}")
    root = _sweep_folder(args)
    if root.exists() and not root.is_dir():
        raise SweepError(f"{root} is a file: give a folder for the sweep (--out DIR)")
    if args.jobs is not None and args.jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {args.jobs}")
    problem = argument_problem(seeds=_seeds(args.seeds), seed_flag="--seeds", device=args.device or None,
                               threads=args.threads, data_root=args.data_root or None)  # as each run checks them
    if problem is not None:
        raise SweepError(problem)
    try:
        overrides, variants = split_variants(protocol_overrides(args))
    except ValueError as error:
        raise SweepError(str(error)) from None
    executor = EXECUTORS[args.executor]
    if executor.check is not None:  # what it needs (Ray, submitit, Slurm's commands), before anything is written
        executor.check(args.dry_run)
    try:
        trackers = None if args.log is None else ",".join(parse_trackers(args.log))
    except ValueError as error:
        raise SweepError(str(error)) from None
    stored = {key: value for other in EXECUTORS.values() if other.stored is not None  # slurm's resources
              for key, value in other.stored(flags_of(other, args)).items()}
    settings = _settings(args.settings, args.suite, args.pool_at)
    options = {flag.name: getattr(args, flag.name) for flag in PASSED_ON}
    return prepare(root, split_pools(args.pools), settings, _seeds(args.seeds), overrides,
                   {**options, "log": trackers, **stored}, variants)


def _shape(sweep: Sweep) -> str:
    """``2 poolings x 1 settings x 3 seeds``, and ``x 2 protocol variants (lr0.1, lr0.05)`` when there are."""
    shape = f"{len(sweep.pools)} poolings x {len(sweep.settings)} settings x {len(sweep.seeds)} seeds"
    labels = [label for label in sweep.variant_labels() if label]
    return shape + (f" x {len(labels)} protocol variants ({', '.join(labels)})" if labels else "")


def _sweep_folder(args: argparse.Namespace) -> Path:
    if args.folder and args.out and Path(args.folder).resolve() != Path(args.out).resolve():
        raise SweepError(f"two sweep folders given ({args.folder} and --out {args.out}): give one")
    folder = args.folder or args.out
    if not folder:
        raise SweepError("no sweep folder: give --out DIR (a new or an existing sweep folder)")
    return Path(folder)


def _settings(settings: str | None, suites: str | None, pool_at: str | None = None) -> list[str]:
    """The settings named by ``--settings`` followed by those of every ``--suite``, their models'
    pooling at ``pool_at`` when given."""
    named = split_list(settings)
    for suite in split_list(suites):
        try:
            named += suite_settings(suite)
        except ValueError as error:
            raise SweepError(str(error)) from None
    if pool_at is not None:
        if not named:
            raise SweepError("--pool-at needs the models it applies to: give --settings MODEL@DATASET")
        try:
            named = [with_pool_at(spec, pool_at) for spec in named]
        except ValueError as error:
            raise SweepError(str(error)) from None
    return unique(named)


def _seeds(text: str | None) -> list[int]:
    try:
        return [int(seed) for seed in split_list(text)]
    except ValueError:
        raise SweepError(f"--seeds takes comma-separated integers, got {text!r}") from None


def _describe(outcome: Outcome) -> str:
    text = f"{outcome.run.name:36s} {outcome.kind}"
    if outcome.best_test_acc is not None and outcome.kind in DONE:
        text += f"  best {outcome.best_test_acc:.2f}%"
    if outcome.kind in FINISHED_STATUSES:
        text += f"  {outcome.seconds:.0f} s"
    return text + (f"  {outcome.message}" if outcome.message else "")

