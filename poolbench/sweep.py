"""Sweeps: the grid poolings x settings x seeds in one folder, and the ``sweep`` verb that runs it.

A sweep folder::

    sweep.json                  the grid, the protocol overrides and the run options
    pools/<stem>.py             copies of pooling files, so the sweep can be repeated later
    <setting>/<pool>/seed<k>/   one run folder per grid cell (see poolbench.runs); <pool> is the
                                spec's label: gem, topk-k0.5 for topk(k=0.5), a file's stem

Every run is one ``python -m poolbench run`` process, started by poolbench.executors (local
executor, N at a time) or in a Ray task (ray executor). A process per run isolates the sweep
from a pooling that crashes, leaks memory or hangs a device. A run holds its folder's lock
while it lives, so two sweeps on one folder never train the same run twice: the second one's
attempt exits 75 and is reported as "running elsewhere". Completed and diverged runs are
skipped; an interrupted run resumes from its checkpoint; a failed run is tried again.
"""

from __future__ import annotations

import argparse
import fcntl
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import runs
from .poolspec import is_call_spec, is_file_spec, split_specs
from .settings import get_setting, suite_settings

SWEEP_FILE = "sweep.json"
POOLS_DIR = "pools"
DEFAULT_SEEDS = (42, 123, 456)
EXIT_BAD_INPUT = 2

# The kinds of outcome a sweep reports for a run.
COMPLETED, DIVERGED, FAILED = runs.COMPLETED, runs.DIVERGED, runs.FAILED
ALREADY_DONE, RUNNING_ELSEWHERE = "already done", "running elsewhere"


class SweepError(ValueError):
    """A user error: the message names the problem and the fix."""


@dataclass(frozen=True)
class SweepRun:
    """One cell of the grid."""

    setting: str
    pool: str  # the label: folder name and report name
    pool_spec: str  # what ``run --pool`` gets: a registered name, name(key=value, ...) or pools/<stem>.py[:Class]
    seed: int

    @property
    def name(self) -> str:
        return f"{self.setting}/{self.pool}/seed{self.seed}"


@dataclass
class Sweep:
    """A sweep folder's grid and what every run of it is given. Stored in ``sweep.json``."""

    root: Path
    pools: dict[str, str]  # label -> spec for `run --pool` (file copies relative to root)
    settings: list[str]
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)  # protocol overrides
    options: dict[str, Any] = field(default_factory=dict)  # data_root, device, download

    def runs(self) -> list[SweepRun]:
        """The grid, seed-major: a partial sweep already compares every pooling on a seed."""
        return [SweepRun(setting, label, spec, seed)
                for seed in self.seeds for setting in self.settings for label, spec in self.pools.items()]

    def path(self, run: SweepRun) -> Path:
        return runs.run_path(self.root, run.setting, run.pool, run.seed)

    def relative(self, run: SweepRun) -> str:
        return str(self.path(run).relative_to(self.root))

    def to_dict(self) -> dict[str, Any]:
        return {"pools": self.pools, "settings": self.settings, "seeds": self.seeds,
                "overrides": self.overrides, "options": self.options}


@dataclass
class Outcome:
    """How one run of a sweep ended."""

    run: SweepRun
    kind: str  # completed, diverged, failed, already done, running elsewhere
    best_test_acc: float | None = None
    seconds: float = 0.0
    message: str = ""


# --- Building the grid ------------------------------------------------------------------------

def split_list(text: str | None) -> list[str]:
    """``"a, b,,a"`` -> ``["a", "b"]``: comma-separated, blanks and repeats dropped."""
    items = [item.strip() for item in (text or "").split(",")]
    return list(dict.fromkeys(item for item in items if item))


def split_pools(text: str | None) -> list[str]:
    """The specs of ``--pools``: like split_list, but commas inside ``name(...)`` do not split.

    ``"gap,topk(k=0.1),gem(p=4, learnable=False)"`` -> ``["gap", "topk(k=0.1)", "gem(p=4, learnable=False)"]``
    """
    return split_specs(text)


def load_sweep(root: str | Path) -> Sweep | None:
    """The sweep stored in ``root/sweep.json``, or None when there is none."""
    path = Path(root) / SWEEP_FILE
    if not path.exists():
        return None
    fix = (f"restore it, or start anew with --pools/--settings/--seeds in a new --out folder "
           f"(the run folders in {Path(root)} are kept)")
    data = runs.read_json_object(path, fix, keys=("pools", "settings", "seeds"))
    try:
        return Sweep(Path(root), dict(data["pools"]), list(data["settings"]), [int(s) for s in data["seeds"]],
                     dict(data.get("overrides") or {}), dict(data.get("options") or {}))
    except (TypeError, ValueError) as error:
        raise runs.DamagedFileError(f"{path} is damaged (not a sweep's grid: {' '.join(str(error).split())}): "
                                    f"{fix}") from None


def prepare(root: str | Path, pools: list[str], settings: list[str], seeds: list[int],
            overrides: dict[str, Any], options: dict[str, Any]) -> Sweep:
    """Create the sweep in ``root``, or extend the one there (its grid becomes the union).

    Pooling files are copied to ``root/pools/``. A protocol different from the one the
    folder's runs were made with is refused: it would mix incomparable results.
    Raises SweepError for every user error, before anything is written.
    """
    root = Path(root).resolve()
    overrides = {k: v for k, v in overrides.items() if v is not None}
    options = {k: v for k, v in options.items() if v is not None}
    if options.get("data_root"):
        options["data_root"] = str(Path(options["data_root"]).expanduser().resolve())  # runs start in root
    for name in settings:
        _check_setting(name)
    if not pools and not (root / SWEEP_FILE).exists():
        raise SweepError(f"{root} holds no sweep.json: start a sweep with --pools gap,gem,... --out {root}")
    entries = [(spec, *_pool_entry(root, spec)) for spec in pools]  # (given, label, spec for runs)
    _refuse_clashing_files(entries)
    new_pools = {label: spec for _, label, spec in entries}
    _check_protocols(settings or ["quick"], {}, overrides, root, existing=False)  # bad values: before writing
    root.mkdir(parents=True, exist_ok=True)
    with _sweep_file_lock(root):  # two sweeps extending one folder must not lose each other's grid
        try:
            old = load_sweep(root)
        except runs.DamagedFileError as error:
            raise SweepError(str(error)) from None
        existing = old is not None
        old = old or Sweep(root, {}, [], [])
        for _, label, spec in entries:
            for other in (new_pools[label], old.pools.get(label, spec)):
                if other != spec:
                    raise SweepError(f"pooling name {label!r} would name two poolings in {root} ({other} and "
                                     f"{spec}): rename a file or use another --out folder")
        sweep = Sweep(root, {**old.pools, **new_pools},
                      _union(old.settings, settings or ([] if existing else ["quick"])),
                      _union(old.seeds, seeds or ([] if existing else list(DEFAULT_SEEDS))),
                      {**old.overrides, **overrides}, {**old.options, **options})
        _check_protocols(sweep.settings, old.overrides, sweep.overrides, root, existing)
        for given, _, _ in entries:
            _refuse_unbuildable(given)
        given_now = {label for given, label, _ in entries if is_file_spec(given)}
        for label, spec in sweep.pools.items():
            if label not in given_now:
                check_pool_copy(sweep, label, spec)
        for given, _, spec in entries:
            if is_file_spec(given):  # copied now that nothing was refused
                _copy_pool_file(root, given, spec)
        runs.write_json(root / SWEEP_FILE, sweep.to_dict())
    return sweep


def check_pool_copy(sweep: Sweep, label: str, spec: str) -> None:
    """SweepError when the copy of a pooling file the sweep's runs use has vanished."""
    if not is_file_spec(spec):
        return
    copy = sweep.root / spec.partition(":")[0]
    if not copy.is_file():
        raise SweepError(f"pooling {label!r} of {sweep.root}: its copy {copy} has vanished; give the pooling "
                         f"file again with --pools PATH/{copy.name} (it is copied back) or restore {copy}")


def _refuse_clashing_files(entries: list[tuple[str, str, str]]) -> None:
    """Two different files with one name (a/mine.py, b/mine.py) would share one copy and one label."""
    sources: dict[str, Path] = {}
    for given, label, spec in entries:
        if not is_file_spec(given):
            continue
        source = Path(given.partition(":")[0]).expanduser()
        copy = spec.partition(":")[0]
        other = sources.setdefault(copy, source)
        if other.resolve() != source.resolve() and other.read_bytes() != source.read_bytes():
            raise SweepError(f"{other} and {source} are two different poolings with one file name: both would "
                             f"be {copy} (label {label!r}) and one would replace the other; rename one file")


def _check_setting(name: str) -> None:
    try:
        get_setting(name)
    except ValueError as error:
        raise SweepError(str(error)) from None


def _union(old: list, new: list) -> list:
    return list(dict.fromkeys([*old, *new]))


def _check_protocols(settings: list[str], old: dict[str, Any], new: dict[str, Any], root: Path,
                     existing: bool) -> None:
    """Refuse overrides that are invalid, or that change the protocol of an existing sweep."""
    for name in settings:
        base = get_setting(name).protocol
        try:
            protocol = base.replace(**new)
        except (ValueError, TypeError) as error:
            raise SweepError(str(error)) from None
        if existing and protocol != base.replace(**old):
            before = ", ".join(f"{k}={v}" for k, v in old.items()) or "the settings' own protocols"
            after = ", ".join(f"{k}={v}" for k, v in new.items() if old.get(k) != v)
            raise SweepError(f"{root} was swept with {before}; {after} would mix incomparable runs "
                             f"in one report: use a new --out folder")


def _refuse_unbuildable(spec: str) -> None:
    """SweepError when the pooling cannot even be built (bad hyper-parameters such as gem(p=-1), a
    constructor that raises or calls sys.exit()): now, not as N failed runs later."""
    from .pools import registry as pool_registry

    try:
        pool_registry.instantiate(pool_registry.resolve(spec), 64)
    except (Exception, SystemExit) as error:
        what = f"SystemExit({error.code!r})" if isinstance(error, SystemExit) else f"{type(error).__name__}: {error}"
        raise SweepError(f"pooling {spec!r} cannot be built: {' '.join(what.split())}; "
                         f"fix it (see `poolbench check {spec}`)") from None


def _pool_entry(root: Path, spec: str) -> tuple[str, str]:
    """(label, spec the runs get) for a pooling named on the command line; validates it."""
    from .pools import registry as pool_registry  # imports torch: only once a sweep is really being prepared

    if not pool_registry.is_file_spec(spec):
        try:
            pool_registry.resolve(spec)  # an unknown name, a malformed name(key=value) or an unknown keyword
        except pool_registry.PoolSpecError as error:
            raise SweepError(str(error)) from None
        spec = pool_registry.normalise_spec(spec) if is_call_spec(spec) else spec.lower()
        return runs.pool_label(spec), spec
    path_text, _, class_name = spec.partition(":")
    source = Path(path_text).expanduser()
    try:
        pool_registry.load_file(spec)  # a missing file or class now, not as N failed runs later
    except pool_registry.PoolSpecError as error:
        raise SweepError(str(error)) from None
    copy = root / POOLS_DIR / f"{source.stem}.py"
    if copy.exists() and copy.resolve() != source.resolve() and copy.read_bytes() != source.read_bytes():
        raise SweepError(f"{source} differs from {copy}, the copy this sweep's runs used: use a new --out "
                         f"folder, or delete {copy} and the runs of {source.stem} to start that pooling anew")
    relative = f"{POOLS_DIR}/{source.stem}.py" + (f":{class_name}" if class_name else "")
    return runs.pool_label(spec), relative


def _copy_pool_file(root: Path, spec: str, relative: str) -> None:
    source = Path(spec.partition(":")[0]).expanduser()
    copy = root / relative.partition(":")[0]
    copy.parent.mkdir(exist_ok=True)
    if not copy.exists() or copy.resolve() != source.resolve():
        runs.atomic_write_bytes(copy, source.read_bytes())


@contextmanager
def _sweep_file_lock(root: Path) -> Iterator[None]:
    with open(root / ".sweep.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # held for milliseconds: blocking is fine
        yield


# --- The command of one run -------------------------------------------------------------------

OVERRIDE_FLAGS = {"epochs": "--epochs", "batch_size": "--batch-size", "lr": "--lr",
                  "momentum": "--momentum", "weight_decay": "--weight-decay", "nesterov": "--nesterov",
                  "crop_padding": "--crop-padding", "hflip": "--hflip"}


def run_arguments(sweep: Sweep, run: SweepRun) -> list[str]:
    """The ``python`` arguments of one run, relative to the sweep folder (the runs' working dir).

    Relative paths keep the recorded command and config valid when the folder is moved.
    """
    arguments = ["-m", "poolbench", "run", "--setting", run.setting, "--pool", run.pool_spec,
                 "--seed", str(run.seed), "--output-dir", sweep.relative(run)]
    for key, value in sweep.overrides.items():
        if isinstance(value, bool):
            arguments.append(OVERRIDE_FLAGS[key] if value else "--no-" + OVERRIDE_FLAGS[key][2:])
        else:
            arguments += [OVERRIDE_FLAGS[key], str(value)]
    if sweep.options.get("data_root"):
        arguments += ["--data-root", sweep.options["data_root"]]
    if sweep.options.get("device"):
        arguments += ["--device", sweep.options["device"]]
    if sweep.options.get("amp"):
        arguments += ["--amp", sweep.options["amp"]]
    if sweep.options.get("compile"):
        arguments.append("--compile")
    if sweep.options.get("download") is False:
        arguments.append("--no-download")
    if sweep.options.get("threads"):
        arguments += ["--threads", str(sweep.options["threads"])]
    if sweep.options.get("deterministic"):
        arguments.append("--deterministic")
    return arguments


# --- The `sweep` verb --------------------------------------------------------------------------

def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``poolbench sweep``."""
    from .cli import add_protocol_arguments

    parser.add_argument("folder", nargs="?", metavar="DIR", help="sweep folder (same as --out)")
    parser.add_argument("--out", help="sweep folder; its sweep.json remembers the grid for later runs")
    parser.add_argument("--pools", help="comma-separated registered names, name(key=value, ...) and "
                                        "path.py[:Class] files (e.g. 'gap,gem,topk(k=0.1),topk(k=0.5),mine.py')")
    parser.add_argument("--settings", help="comma-separated settings (default quick)")
    parser.add_argument("--suite", help="comma-separated suites whose settings are added: diagnostics, "
                                        "spatial, benchmark (see `poolbench list`)")
    parser.add_argument("--seeds", help="comma-separated seeds (default 42,123,456)")
    parser.add_argument("--jobs", type=int, help="runs at a time (local default 1; ray default: all)")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: a process per run on this machine (default); ray: Ray tasks")
    parser.add_argument("--ray-address", help="Ray cluster to use (default: start a local one)")
    parser.add_argument("--ray-max-retries", type=int, default=3,
                        help="retries of a run whose worker or process dies (default 3)")
    parser.add_argument("--dry-run", action="store_true",
                        help="write the sweep folder's sweep.json and print the plan; run nothing")
    add_protocol_arguments(parser)
    parser.add_argument("--data-root", help="data folder given to every run")
    parser.add_argument("--device", help="device given to every run (default: the run's, auto)")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"],
                        help="mixed precision of every run (default none: the published protocol is float32)")
    parser.add_argument("--compile", action="store_true", default=None,
                        help="every run torch.compiles its model (see `poolbench run --compile`)")
    parser.add_argument("--no-download", dest="download", action="store_false", default=None,
                        help="runs never try to download a missing data set")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads of each run (default: $OMP_NUM_THREADS if set, else cores / jobs)")
    parser.add_argument("--deterministic", action="store_true", default=None,
                        help="bit-for-bit reproducible CUDA runs (see `poolbench run --help`)")


def sweep_main(args: argparse.Namespace) -> int:
    """``poolbench sweep``: 0 when every run completed or diverged, 1 if any failed, 2 on bad input."""
    from .cli import protocol_overrides
    from .executors import import_ray, run_local, run_ray  # they import this module: not at its top
    from .harness import SEED_MAX, Terminated, interrupted_code, resolve_device, sigterm_as_interrupt

    try:
        root = _sweep_folder(args)
        if root.exists() and not root.is_dir():
            raise SweepError(f"{root} is a file: give a folder for the sweep (--out DIR)")
        if args.jobs is not None and args.jobs < 1:
            raise SweepError(f"--jobs must be >= 1, got {args.jobs}")
        if args.threads is not None and args.threads < 1:
            raise SweepError(f"--threads must be >= 1, got {args.threads}")
        if args.device:
            try:
                resolve_device(args.device)
            except ValueError as error:
                raise SweepError(str(error)) from None
        if args.data_root and Path(args.data_root).expanduser().is_file():
            raise SweepError(f"--data-root {args.data_root} is a file: give a folder (it is created if missing)")
        bad_seeds = [seed for seed in _seeds(args.seeds) if not 0 <= seed <= SEED_MAX]
        if bad_seeds:
            raise SweepError(f"--seeds {bad_seeds[0]} is out of range: use integers from 0 to {SEED_MAX}")
        if args.executor == "ray":
            import_ray()
        sweep = prepare(root, split_pools(args.pools), _settings(args.settings, args.suite), _seeds(args.seeds),
                        protocol_overrides(args),
                        {"data_root": args.data_root, "device": args.device, "download": args.download,
                         "amp": args.amp, "threads": args.threads, "deterministic": args.deterministic,
                         "compile": args.compile})
    except SweepError as error:
        _say(f"error: {error}")
        return EXIT_BAD_INPUT

    grid = sweep.runs()
    before = {run: runs.status(sweep.path(run)) for run in grid}
    todo = [run for run in grid if before[run] not in (COMPLETED, DIVERGED, runs.RUNNING)]
    done = sum(before[run] in (COMPLETED, DIVERGED) for run in grid)
    elsewhere = sum(before[run] == runs.RUNNING for run in grid)
    jobs = args.jobs or (1 if args.executor == "local" else None)
    if args.executor == "local" and not args.dry_run:
        problem = _gpu_memory_problem(sweep, todo, jobs)
        if problem:
            _say(f"error: {problem}")
            return EXIT_BAD_INPUT
    _say(f"sweep {root}: {len(sweep.pools)} poolings x {len(sweep.settings)} settings x "
         f"{len(sweep.seeds)} seeds = {len(grid)} runs; {done} already done, {elsewhere} running elsewhere, "
         f"{len(todo)} to run ({args.executor}, {jobs or 'all'} at a time)")
    if args.dry_run:
        for run in grid:
            print(f"{run.name:40s} {before[run]}")
        return 0

    outcomes: list[Outcome] = []

    def on_outcome(outcome: Outcome) -> None:
        outcomes.append(outcome)
        _say(f"[{len(outcomes)}/{len(todo)}] {_describe(outcome)}")

    start = time.perf_counter()
    try:
        with sigterm_as_interrupt():  # SIGTERM (Slurm, Kubernetes, timeout) is passed on to the runs
            if args.executor == "ray":
                run_ray(sweep, todo, on_outcome, address=args.ray_address, max_retries=args.ray_max_retries,
                        jobs=jobs)
            else:
                run_local(sweep, todo, jobs, on_outcome)
    except KeyboardInterrupt as error:
        how = "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"
        _say(f"{how} after {len(outcomes)} of {len(todo)} runs, their checkpoints kept; "
             f"`poolbench sweep {root}` resumes it")
        return interrupted_code(error)  # 130 for Ctrl-C, EXIT_TERMINATED (143) for SIGTERM
    counts = {kind: sum(o.kind == kind for o in outcomes) for kind in (COMPLETED, DIVERGED, FAILED)}
    elsewhere += sum(o.kind == RUNNING_ELSEWHERE for o in outcomes)
    done += sum(o.kind == ALREADY_DONE for o in outcomes)
    seconds = time.perf_counter() - start
    finished = sum(counts.values())
    _say(f"sweep {root} done in {seconds:.0f} s ({3600 * finished / max(seconds, 1e-9):.1f} runs/hour): "
         f"{counts[COMPLETED]} completed, "
         f"{counts[DIVERGED]} diverged, {counts[FAILED]} failed, {done} skipped (already done), "
         f"{elsewhere} skipped (running elsewhere); see `poolbench report {root}`")
    return 1 if counts[FAILED] else 0


def _gpu_memory_problem(sweep: Sweep, todo: list[SweepRun], jobs: int) -> str | None:
    """Why ``jobs`` runs at a time would not fit in the GPUs' free memory (see poolbench.gpu_memory)."""
    from .gpu_memory import sweep_problem

    try:
        return sweep_problem(sweep, todo, jobs)
    except (RuntimeError, OSError, ValueError) as error:
        _say(f"warning: cannot estimate the runs' GPU memory ({error}); starting them unchecked")
        return None


def _sweep_folder(args: argparse.Namespace) -> Path:
    if args.folder and args.out and Path(args.folder).resolve() != Path(args.out).resolve():
        raise SweepError(f"two sweep folders given ({args.folder} and --out {args.out}): give one")
    folder = args.folder or args.out
    if not folder:
        raise SweepError("no sweep folder: give --out DIR (a new or an existing sweep folder)")
    return Path(folder)


def _settings(settings: str | None, suites: str | None) -> list[str]:
    """The settings named by ``--settings`` followed by those of every ``--suite``."""
    named = split_list(settings)
    for suite in split_list(suites):
        try:
            named += suite_settings(suite)
        except ValueError as error:
            raise SweepError(str(error)) from None
    return list(dict.fromkeys(named))


def _seeds(text: str | None) -> list[int]:
    try:
        return [int(seed) for seed in split_list(text)]
    except ValueError:
        raise SweepError(f"--seeds takes comma-separated integers, got {text!r}") from None


def _describe(outcome: Outcome) -> str:
    text = f"{outcome.run.name:36s} {outcome.kind}"
    if outcome.best_test_acc is not None and outcome.kind in (COMPLETED, DIVERGED):
        text += f"  best {outcome.best_test_acc:.2f}%"
    if outcome.kind in (COMPLETED, DIVERGED, FAILED):
        text += f"  {outcome.seconds:.0f} s"
    return text + (f"  {outcome.message}" if outcome.message else "")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
