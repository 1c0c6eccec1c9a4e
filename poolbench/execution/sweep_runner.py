"""Sweeps: the grid poolings x settings x seeds in one folder (see poolbench.storage.sweepdir), prepared
and checked before anything runs, and the command line each of its runs is started with.

Every run is the command ``python -m poolbench run ...``, started by poolbench.execution.executors
(local executor, N at a time: on the CPU in N worker processes that train their runs one after
another, else a process per run) or in a Ray task (ray executor). A process per run isolates the sweep
from a pooling that crashes, leaks memory or hangs a device. A run holds its folder's lock
while it lives, so two sweeps on one folder never train the same run twice: the second one's
attempt exits 75 and is reported as "running elsewhere". Completed and diverged runs are
skipped; an interrupted run resumes from its checkpoint; a failed run is tried again.

Before its first run a sweep command checks each pooling it would run once (the run's own contract
check, at every setting's pool input): a pooling that fails is not started and is recorded in the
folder's refused.json, which ``status`` and ``report`` read.
"""

from __future__ import annotations

import dataclasses
import errno
import math
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock

from ..contract import ContractReport, check_pool
from ..core.atomic import is_disk_full_or_read_only
from ..core.outcomes import RunStatus, StrEnum
from ..core.poolspec import is_file_spec, split_specs
from ..core.quoting import quote
from ..core.settings import Protocol, normalise_setting, run_protocol, setting_label
from ..core.unique import unique
from ..data import DataMissingError
from ..pools import registry as pool_registry
from ..storage import rundir, tracking
from ..storage.sweepdir import (
    POOLS_DIR,
    SWEEP_FILE,
    Sweep,
    SweepRun,
    load_sweep,
    variant_grid,
    write_refusals,
)
from ..training.catalog import get_setting
from . import isolation
from .device import resolve_device
from .run_options import passed_on_arguments
from .runner import HARMLESS_ON_CPU, SEED_MAX

DEFAULT_SEEDS = (42, 123, 456)
SWEEP_LOCK_FILE = ".sweep.lock"


def protocol_flags(protocol: type = Protocol) -> dict[str, str]:
    """Field -> its ``poolbench run`` flag (``batch_size`` -> ``--batch-size``; a bool's negative is
    ``--no-<flag>``). The cli's protocol flags are made from the same fields (poolbench.cli.flags)."""
    return {f.name: "--" + f.name.replace("_", "-") for f in dataclasses.fields(protocol)}


PROTOCOL_FLAGS = protocol_flags()


class Skipped(StrEnum):
    """A run of the sweep that has no outcome here: not started, or stopped by the machine."""

    ALREADY_DONE = "already done"  # another sweep finished it since this one started
    RUNNING_ELSEWHERE = "running elsewhere"  # another process holds its lock (its attempt exited 75)
    DISK_FULL = "stopped: the disk is full or read-only"  # exit 74 (ExitCode.DISK): checkpoint kept, resumable


class SweepError(ValueError):
    """A user error: the message names the problem and the fix."""


def disk_full_message(root: str | Path) -> str:
    """The one line of a sweep stopped by a full (or read-only) file system: nothing is lost."""
    return (f"the disk is full (or read-only) writing under {root}: free space and run the same sweep "
            f"command again to resume")


def folder_error(root: Path, error: OSError) -> SweepError:
    """The user error of a sweep folder that cannot be written (read-only, not ours, under a file)."""
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(root) else ""
    return SweepError(f"cannot write the sweep folder {root}: {error.strerror or error}{where}; give --out a "
                      f"folder you can write")


@dataclass
class Outcome:
    """How one run of a sweep ended."""

    run: SweepRun
    kind: RunStatus | Skipped  # completed, diverged or failed; or not started here
    best_test_acc: float | None = None
    seconds: float = 0.0
    message: str = ""


# --- Building the grid ------------------------------------------------------------------------

def split_list(text: str | None) -> list[str]:
    """``"a, b,,a"`` -> ``["a", "b"]``: comma-separated, blanks and repeats dropped."""
    items = [item.strip() for item in (text or "").split(",")]
    return unique(item for item in items if item)


def split_pools(text: str | None) -> list[str]:
    """The specs of ``--pools``: like split_list, but commas inside ``name(...)`` do not split.

    ``"gap,topk(k=0.1),gem(p=4, learnable=False)"`` -> ``["gap", "topk(k=0.1)", "gem(p=4, learnable=False)"]``
    """
    return split_specs(text)


def prepare(root: str | Path, pools: list[str], settings: list[str], seeds: list[int],
            overrides: dict[str, Any], options: dict[str, Any], variants: dict[str, list[Any]] | None = None) -> Sweep:
    """Create the sweep in ``root``, or extend the one there (its grid becomes the union).

    Pooling files are copied to ``root/pools/``. A protocol different from the one the
    folder's runs were made with is refused: it would mix incomparable results. ``variants``
    (protocol field -> two or more values) runs the grid once per combination of their values, each
    in its own folder level (see poolbench.storage.sweepdir); a sweep of variants may gain values of its
    varied fields (new variants), never a new varied field or a change of its shared protocol.
    Raises SweepError for every user error, before anything is written.
    """
    root = Path(root).resolve()
    run_folder = rundir.enclosing_run(root)
    if run_folder is not None:
        raise SweepError(f"--out {root} is in the run folder {run_folder}: its runs would mix with that run's "
                         "files; give a folder of its own, e.g. a new folder beside it")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    variants = dict(variants or {})
    options = {k: v for k, v in options.items() if v is not None}
    if options.get("data_root"):
        options["data_root"] = str(Path(options["data_root"]).expanduser().resolve())  # runs start in root
    settings = [_check_setting(name) for name in settings]
    _refuse_clashing_settings(settings)
    if not pools and not (root / SWEEP_FILE).exists():
        raise SweepError(f"{root} holds no sweep.json: start a sweep with --pools gap,gem,... --out {root}")
    entries = [(spec, *_pool_entry(root, spec)) for spec in pools]  # (given, label, spec for runs)
    _refuse_clashing_files(entries)
    _check_variants(settings or ["quick"], overrides, variants, root)  # bad values: before writing
    if "log" in options:
        refuse_unusable_trackers(options["log"], root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        with _sweep_file_lock(root):  # two sweeps extending one folder must not lose each other's grid
            return _extend(root, entries, settings, seeds, overrides, options, variants)
    except OSError as error:
        if is_disk_full_or_read_only(error) and error.errno != errno.EROFS:
            raise  # full, not unwritable: the caller's "free space and run the same command again"
        raise folder_error(root, error) from None


def _extend(root: Path, entries: list[tuple[str, str, str]], settings: list[str], seeds: list[int],
            overrides: dict[str, Any], options: dict[str, Any], variants: dict[str, list[Any]]) -> Sweep:
    """prepare's work under the sweep file's lock: the union of the stored grid and the new one."""
    new_pools = {label: spec for _, label, spec in entries}
    try:
        old = load_sweep(root)
    except rundir.DamagedFileError as error:
        raise SweepError(str(error)) from None
    if old is not None:
        check_stored_grid(old)
    existing = old is not None
    old = old or Sweep(root, {}, [], [])
    for _, label, spec in entries:
        for other in (new_pools[label], old.pools.get(label, spec)):
            if other != spec:
                raise SweepError(f"pooling name {label!r} would name two poolings in {root} ({other} and "
                                 f"{spec}): rename a file or use another --out folder")
    overrides, variants = _merge_variants(root, old, overrides, variants) if existing else (overrides, variants)
    sweep = Sweep(root, {**old.pools, **new_pools},
                  _union(old.settings, settings or ([] if existing else ["quick"])),
                  _union(old.seeds, seeds or ([] if existing else list(DEFAULT_SEEDS))),
                  {**old.overrides, **overrides}, {**old.options, **options}, variants)
    _refuse_clashing_settings(sweep.settings)
    _check_protocols(sweep.settings, old.overrides, sweep.overrides, root, existing)
    if "log" not in options:  # given now: prepare checked it before the folder was made
        refuse_unusable_trackers(sweep.options.get("log"), root)
    _check_variants(sweep.settings, sweep.overrides, sweep.variants, root)
    file_inputs = unique(_pool_input(sweep, setting, variant) for setting in sweep.settings
                         for variant in sweep.variant_labels()) if given_files(entries) else []
    for given, _, _ in entries:
        if is_file_spec(given):  # imported and built only in a child process (check_poolings)
            _refuse_unbuildable_file(given, file_inputs)
        else:
            _refuse_unbuildable(given)
    given_now = {label for given, label, _ in entries if is_file_spec(given)}
    for label, spec in sweep.pools.items():
        if label not in given_now:
            check_pool_copy(sweep, label, spec)
    for given, _, spec in entries:
        if is_file_spec(given):  # copied now that nothing was refused
            _copy_pool_file(root, given, spec)
    refuse_changed_inputs(sweep)  # before sweep.json takes the new grid: a refusal writes nothing
    rundir.write_json(root / SWEEP_FILE, sweep.to_dict())
    return sweep


def check_stored_grid(sweep: Sweep) -> None:
    """SweepError naming sweep.json and the entry when its grid (edited by hand, or by an older
    version) names a pooling, setting, seed or protocol field that cannot work: now, not as every
    run failing later. Pooling files are only looked for: their code runs in the contract check."""
    where = sweep.root / SWEEP_FILE
    fix = f"correct or remove that entry in {where}"
    for label, spec in sweep.pools.items():
        if not isinstance(spec, str):
            raise SweepError(f"{where}: pooling {label!r} is {spec!r}, not a pool spec: {fix}")
        if is_file_spec(spec):
            continue  # prepare checks that its copy exists, unless --pools gives the file again now
        try:
            pool_registry.resolve(spec)  # an unknown name, a malformed name(key=value), an unknown keyword
        except pool_registry.PoolSpecError as error:
            raise SweepError(f"{where}: pooling {label!r}: {error}; {fix}") from None
    for setting in sweep.settings:
        try:
            if not isinstance(setting, str):
                raise ValueError(f"{setting!r} is not a setting")
            get_setting(setting)
        except ValueError as error:
            raise SweepError(f"{where}: setting {setting!r}: {error}; {fix}") from None
    for seed in sweep.seeds:
        if not 0 <= seed <= SEED_MAX:
            raise SweepError(f"{where}: seed {seed} is out of range (0 to {SEED_MAX}): {fix}")
    for entry, fields in (("overrides", sweep.overrides), ("variants", sweep.variants)):
        unknown = [key for key in fields if key not in PROTOCOL_FLAGS]
        if unknown:
            raise SweepError(f"{where}: {entry} {unknown[0]!r} is not a protocol field (one of "
                             f"{', '.join(PROTOCOL_FLAGS)}): {fix}")
    try:
        _check_variants(sweep.settings, sweep.overrides, sweep.variants, sweep.root)
    except SweepError as error:
        raise SweepError(f"{where}: overrides: {error}; {fix}") from None
    try:
        resolve_device(str(sweep.options.get("device") or "auto"))
    except ValueError as error:
        raise SweepError(f"{where}: options: {error}; {fix}") from None


def refuse_unusable_trackers(log: Any, root: Path) -> None:
    """SweepError when a tracker of the sweep's ``--log`` (given now, or stored in sweep.json) is not
    installed or cannot be reached: once, before any run, not as every run refused."""
    try:
        problem = tracking.problem(tracking.parse(log if log is None or isinstance(log, str) else repr(log)))
    except ValueError as error:
        raise SweepError(f"{root / SWEEP_FILE}: options: {error}; correct or remove that entry") from None
    if problem is not None:
        raise SweepError(problem)


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


def _check_setting(name: str) -> str:
    """The setting's normalised spec (absolute paths: the runs start in the sweep folder); SweepError
    when it names no setting, model or data set that exists."""
    try:
        get_setting(name)
        return normalise_setting(name)
    except ValueError as error:
        raise SweepError(str(error)) from None


def _refuse_clashing_settings(settings: list[str]) -> None:
    """Two settings with one folder name (imagefolder:/a/pets and imagefolder:/b/pets) would mix runs."""
    seen: dict[str, str] = {}
    for spec in settings:
        other = seen.setdefault(setting_label(spec), spec)
        if other != spec:
            raise SweepError(f"{other} and {spec} would both be filed as {setting_label(spec)!r}: rename a "
                             f"folder or file, or sweep them into separate --out folders")


def _union(old: list, new: list) -> list:
    return unique([*old, *new])


def _check_protocols(settings: list[str], old: dict[str, Any], new: dict[str, Any], root: Path,
                     existing: bool) -> None:
    """Refuse overrides that are invalid, or that change the protocol of an existing sweep."""
    for name in settings:
        setting = get_setting(name)
        try:
            protocol = run_protocol(setting, new)
        except (ValueError, TypeError) as error:
            raise SweepError(str(error)) from None
        if existing and protocol != run_protocol(setting, old):
            before = ", ".join(f"{k}={v}" for k, v in old.items()) or "the settings' own protocols"
            after = ", ".join(f"{k}={v}" for k, v in new.items() if old.get(k) != v)
            raise SweepError(f"{root} was swept with {before}; {after} would mix incomparable runs "
                             f"in one report: use a new --out folder")


def _check_variants(settings: list[str], overrides: dict[str, Any], variants: dict[str, list[Any]],
                    root: Path) -> None:
    """Refuse protocol values that are invalid in any variant, and variants whose folder names clash."""
    grid = variant_grid(variants)
    if len(grid) != math.prod(map(len, variants.values())):
        raise SweepError(f"the variants {variants} would share folder names ({', '.join(grid)}): give "
                         f"values that differ in their first digits")
    shared = [name for name in variants if name in overrides]
    if shared:
        raise SweepError(f"{shared[0]} is given both one value and a list: give one")
    for values in grid.values():
        _check_protocols(settings, {}, {**overrides, **values}, root, existing=False)


def _merge_variants(root: Path, old: Sweep, overrides: dict[str, Any],
                    variants: dict[str, list[Any]]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(overrides, variants) of an existing sweep given new ones: the values of a varied field are
    added to its list (new variants); a new varied field, or variants in a sweep of one protocol,
    is refused: its runs are filed without a variant level, or under other variant names."""
    if not variants and not old.variants:
        return overrides, {}
    new_fields = [name for name in variants if name not in old.variants]
    if new_fields:
        now = "varies " + ", ".join(old.variants) if old.variants else "holds runs of one protocol"
        raise SweepError(f"{root} {now}; varying {', '.join(new_fields)} too would file its runs under other "
                         f"folders: sweep into a new --out folder")
    merged = {name: _union(values, variants.get(name, []) + ([overrides[name]] if name in overrides else []))
              for name, values in old.variants.items()}
    return {k: v for k, v in overrides.items() if k not in old.variants}, merged


def _refuse_unbuildable(spec: str) -> None:
    """SweepError when a registered pooling cannot even be built (bad hyper-parameters such as
    gem(p=-1)): now, not as N failed runs later."""
    problem = isolation.unbuildable_pool(spec, 64)
    if problem is not None:
        raise SweepError(problem)


def given_files(entries: list[tuple[str, str, str]]) -> bool:
    return any(is_file_spec(given) for given, _, _ in entries)


def _refuse_unbuildable_file(spec: str, pool_inputs: list[PoolInput]) -> None:
    """SweepError when a pooling file cannot be imported or built (a missing class, a constructor that
    raises, hangs or ends its process), found by its contract check in a child process; the check's
    other failures refuse the pooling later (refuse_failing_poolings), without stopping the sweep."""
    failure = check_poolings([spec], pool_inputs)[spec].result("construct")
    if failure is not None and failure.status == "FAIL":
        raise SweepError(f"pooling {spec!r} cannot be built: {failure.message} "
                         f"(`poolbench check {shlex.quote(spec)}` shows it)")


def _pool_entry(root: Path, spec: str) -> tuple[str, str]:
    """(label, spec the runs get) for a pooling named on the command line; validates it."""
    if not pool_registry.is_file_spec(spec):
        if "/" in spec and "(" not in spec:  # no registered name holds a "/": a path cut at a comma
            raise SweepError(f"pooling {quote(spec)} is no registered name and no .py file: commas separate the "
                             f"poolings of --pools, so a file whose path holds a comma is cut there; move or "
                             f"rename it to a path without a comma")
        try:
            pool_registry.resolve(spec)  # an unknown name, a malformed name(key=value) or an unknown keyword
        except pool_registry.PoolSpecError as error:
            raise SweepError(str(error)) from None
        spec = pool_registry.normalise_spec(spec)  # one spelling per pooling: GAP and gap are one run
        return rundir.pool_label(spec), spec
    path_text, _, class_name = spec.partition(":")
    source = Path(path_text).expanduser()
    try:  # a missing file now; its import and class are checked in a child process (check_poolings)
        pool_registry.existing_file(path_text, "pooling", pool_registry.PoolSpecError)
    except pool_registry.PoolSpecError as error:
        raise SweepError(str(error)) from None
    copy = root / POOLS_DIR / f"{source.stem}.py"
    if copy.exists() and copy.resolve() != source.resolve() and copy.read_bytes() != source.read_bytes():
        raise SweepError(f"{source} differs from {copy}, the copy this sweep's runs used: use a new --out "
                         f"folder, or delete {copy} and the runs of {source.stem} to start that pooling anew")
    relative = f"{POOLS_DIR}/{source.stem}.py" + (f":{class_name}" if class_name else "")
    return rundir.pool_label(spec), relative


def _copy_pool_file(root: Path, spec: str, relative: str) -> None:
    source = Path(spec.partition(":")[0]).expanduser()
    copy = root / relative.partition(":")[0]
    copy.parent.mkdir(exist_ok=True)
    if not copy.exists() or copy.resolve() != source.resolve():
        rundir.atomic_write_bytes(copy, source.read_bytes())


@contextmanager
def _sweep_file_lock(root: Path) -> Iterator[None]:
    """An exclusive lock on ``root/.sweep.lock`` (filelock), held for milliseconds (blocking is fine);
    the file is removed when released, so none is left behind, even when a write under it fails.

    Removing a lock file races with a process that opened it and waits: filelock >= 4 takes the lock
    again when the file it got it on was removed meanwhile, so what it holds is the file at the path.
    """
    path = root / SWEEP_LOCK_FILE
    lock = filelock.FileLock(path)
    lock.acquire()
    try:
        yield
    finally:
        try:
            path.unlink(missing_ok=True)  # before the unlock: a waiter then sees that its file was removed
        finally:
            lock.release()


# --- Runs made from other inputs ------------------------------------------------------------------

def refuse_changed_inputs(sweep: Sweep) -> None:
    """SweepError when a run folder of the grid was made from other content of its setting's model
    file or data set than the one there now (edited or replaced since): its seeds would be averaged
    with seeds of the new content in one row. A sweep folder holds one content of each input; the
    pooling files are already held to their copies in ``pools/`` (see _pool_entry)."""
    current: dict[str, dict[str, str | None]] = {}  # setting spec -> its input hashes
    for run in sweep.runs():
        config_path = sweep.path(run) / rundir.CONFIG_FILE
        if not config_path.exists():
            continue
        try:
            stored = rundir.read_config(config_path)
        except (rundir.DamagedFileError, OSError):
            continue  # a damaged config.json: the run itself names it
        spec = run.setting_spec or run.setting
        if spec not in current:
            setting = get_setting(spec)
            try:
                hashes = rundir.input_hashes(setting.arch, setting.dataset, "gap")
            except (OSError, DataMissingError) as error:
                raise SweepError(" ".join(str(error).split())) from None
            current[spec] = hashes
        now = dataclasses.replace(stored, arch_sha256=current[spec]["arch_sha256"],
                                  dataset_sha256=current[spec]["dataset_sha256"])
        changed = rundir.changed_inputs(stored, now)
        if changed is not None:
            raise SweepError(f"{sweep.path(run)} was run on other content of {changed} (edited or replaced since): "
                             f"its seeds would be averaged with seeds of the new content; sweep into a new --out "
                             f"folder, or delete {sweep.root / run.setting} to run that setting anew")


# --- The contract check, once per pooling ------------------------------------------------------

PoolInput = tuple[int, int, int]


def check_poolings(specs: list[str], pool_inputs: list[PoolInput]) -> dict[str, ContractReport]:
    """Spec -> the contract check a run makes before training (poolbench.execution.runner
    check_contract), made once here for all of a sweep's runs of that pooling, at every pool input.

    ``specs`` are registered names, name(key=value) specs or absolute path.py[:Class] files. The one
    place a sweep runs the poolings' code: a pooling file is imported, built and checked in a child
    process with a time limit (isolation), so a file that hangs or ends its process is refused,
    not the end of the sweep.
    """
    return {spec: isolation.check_in_child(spec, pool_inputs=pool_inputs, include_cost=False) if is_file_spec(spec)
            else check_pool(spec, pool_inputs=pool_inputs, include_cost=False) for spec in specs}


def refuse_failing_poolings(sweep: Sweep, todo: list[SweepRun]) -> dict[str, dict[str, Any]]:
    """Check each pooling of ``todo`` once (check_poolings) and record those that fail in the sweep
    folder's refused.json, replacing what an earlier command found (a pooling fixed since is checked
    again and runs). Returns label -> {"spec", "message", "failures"} of the refused ones.

    A failure the run itself would only warn about (to_dtype_device in a CPU run) refuses nothing.
    """
    labels = unique(run.pool for run in todo)
    specs = {label: _checkable_spec(sweep, sweep.pools[label]) for label in labels}
    settings = unique((run.setting_spec or run.setting, run.variant) for run in todo)
    inputs = unique(_pool_input(sweep, setting, variant) for setting, variant in settings)
    reports = check_poolings(list(specs.values()), inputs) if labels else {}
    on_cpu = resolve_device(sweep.options.get("device") or "auto").type == "cpu"
    refusals = {}
    for label, spec in specs.items():
        fatal = [f for f in reports[spec].failures() if not (on_cpu and f.name in HARMLESS_ON_CPU)]
        if fatal:
            lines = [f"FAIL {f.name}: {' '.join(f.message.split())[:200]}" for f in fatal]
            more = f" and {len(fatal) - 1} more" if len(fatal) > 1 else ""
            message = (f"pooling {sweep.pools[label]!r} fails the contract check ({lines[0]}{more}): fix it, see "
                       f"`poolbench check {shlex.quote(spec)}`; the next sweep command checks it again")
            refusals[label] = {"spec": sweep.pools[label], "message": message, "failures": lines}
    write_refusals(sweep.root, refusals)
    return refusals


def _checkable_spec(sweep: Sweep, spec: str) -> str:
    """The spec with a pooling file's copy as an absolute path: the runs' copy, from any folder."""
    return str(sweep.root / spec) if is_file_spec(spec) else spec


def _pool_input(sweep: Sweep, setting_spec: str, variant: str = "") -> PoolInput:
    """The (C, H, W) a run of the setting (in ``variant``) gives its pooling, as its own contract check
    computes it."""
    setting = get_setting(setting_spec)
    try:
        size = run_protocol(setting, sweep.protocol_overrides(variant)).image_size
        return isolation.model_pool_input(setting.arch, setting.dataset, size)  # a model file: in a child
    except ValueError as error:
        raise SweepError(f"setting {setting_spec!r}: {error}") from None


# --- The command of one run -------------------------------------------------------------------

def run_arguments(sweep: Sweep, run: SweepRun) -> list[str]:
    """The ``python`` arguments of one run, relative to the sweep folder (the runs' working dir).

    Relative paths keep the recorded command and config valid when the folder is moved.
    """
    arguments = ["-m", "poolbench", "run", "--setting", run.setting_spec or run.setting, "--pool", run.pool_spec,
                 "--seed", str(run.seed), "--output-dir", sweep.relative(run)]
    for key, value in sweep.protocol_overrides(run.variant).items():
        if isinstance(value, bool):
            arguments.append(PROTOCOL_FLAGS[key] if value else "--no-" + PROTOCOL_FLAGS[key][2:])
        else:
            arguments += [PROTOCOL_FLAGS[key], str(value)]
    return arguments + passed_on_arguments(sweep.options)  # RunOptions the sweep keeps
