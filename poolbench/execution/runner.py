"""One run end to end, as named steps: plan (every argument checked), lock, check the folder, check the pooling's
contract, resume, load the data, write the configuration, build and fit, write the result.

``run`` is what ``poolbench run`` calls (a sweep starts each of its runs as that command). It
returns an exit code and never raises for a problem a user can fix: a step that refuses the
run raises :class:`RunRefused`, which ends it as one ``error:`` line on the log.
"""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import data as datasets
from .. import models
from ..contract import check_pool
from ..core import global_state
from ..core.atomic import disk_message, is_disk_full_or_read_only
from ..core.outcomes import ExitCode, RunStatus
from ..core.precision import AMP_DTYPES
from ..core.quoting import quote, shorten
from ..data import holdout
from ..pools import registry as pool_registry
from ..storage import tracking
from ..storage.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOCK_FILE,
    METRICS_FILE,
    RESULT_FILE,
    DamagedFileError,
    RunConfig,
    RunLock,
    RunLockedError,
    changed_inputs,
    read_config,
    read_result,
    write_json,
    write_jsonl,
)
from ..storage.sweepdir import SWEEP_FILE
from ..training.compile import CompiledForward
from ..training.train import (
    CheckpointMismatchError,
    DivergedError,
    EpochRecord,
    best_epoch,
    best_val_epoch,
    checkpoint_history,
    fit,
    load_checkpoint,
)
from . import isolation
from .device import configure_determinism, free_memory_bytes, keep_freed_memory, resolve_device, versions
from .run_options import RunOptions
from .signals import how_interrupted, interrupted_code, sigterm_as_interrupt

SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes 0 .. 2**32 - 1; torch takes more, so this is the bound

Log = Callable[[str], None]
Emit = Callable[[str], None]  # writes one machine-readable line (TRAIN_METRICS, TEST_METRICS) to stdout


class RunRefused(Exception):
    """A step refused the run: the message is one line with the fix; ``code`` ends the run."""

    def __init__(self, message: str, code: ExitCode = ExitCode.BAD_INPUT):
        super().__init__(message)
        self.code = code


def run(config: RunConfig, output_dir: str | Path, options: RunOptions, log: Log) -> ExitCode:
    """Run ``config`` into ``output_dir`` (resuming it if it was interrupted); an exit code.

    SIGTERM is handled like Ctrl-C: the checkpoint of the last finished epoch is kept and the
    run exits 143 (130 for Ctrl-C); the same command resumes it. A full or read-only disk ends it
    as one line and exit 74, its checkpoint kept. Stdout holds only the metric lines: what the
    pooling or model prints goes to stderr, so a print cannot forge a result.
    """
    output_dir = Path(output_dir)
    stdout = sys.stdout

    def emit(line: str) -> None:
        print(line, file=stdout, flush=True)

    try:
        with redirect_stdout(sys.stderr):
            plan = refuse_bad_arguments(config, output_dir, options)
            if options.threads is not None:
                torch.set_num_threads(options.threads)
            if plan.device.type == "cpu":
                keep_freed_memory()  # no page faults for each step's new tensors: 0.88-0.93 of the step time
            with sigterm_as_interrupt(), holding_lock(output_dir):
                return run_locked(config, output_dir, options, plan, log, emit)
    except RunRefused as refusal:
        log(f"error: {refusal}")
        return refusal.code
    except KeyboardInterrupt as error:  # before the run started, or after it ended
        started = (output_dir / CHECKPOINT_FILE).exists()
        log("interrupted: " + ("run the same command again to resume it" if started
                               else "nothing had started; the same command starts the run"))
        return interrupted_code(error)
    except OSError as error:
        if not is_disk_full_or_read_only(error):
            raise
        log(f"error: {disk_message(error, output_dir)}")
        return ExitCode.DISK


def run_locked(config: RunConfig, output_dir: Path, options: RunOptions, plan: RunPlan, log: Log,
               emit: Emit) -> ExitCode:
    """The steps of a run whose folder this process holds."""
    finished = finished_result(config, output_dir, log)
    if finished is not None:
        return report_finished(output_dir, finished, log, emit)
    device = plan.device
    if options.check:
        check_contract(config, plan, log)
    resumed = resumed_epochs(config, output_dir, log)
    data = load_data(config, options, log)
    # Written only once nothing refused the run: a refused command must not block its own fix.
    write_json(output_dir / CONFIG_FILE, {"config": config.to_dict(), "command": list(options.command),
                                          "versions": versions(), "device": str(device),
                                          "deterministic": options.deterministic})
    return train_and_record(config, output_dir, data, plan, resumed, options, log, emit)


# --- Before the lock: arguments that cannot work ---------------------------------------------------

@dataclass(frozen=True)
class RunPlan:
    """A run resolved once, before its folder is written: the device it trains on, its data set as
    described (nothing decoded) and the (C, H, W) its pooling sees. The later steps read these
    instead of asking the data set, the device or the model again."""

    device: torch.device
    data: datasets.DataInfo
    pool_input: tuple[int, int, int]
    probe: isolation.Probe | None = None  # a pooling or model file: what its child process found


def refuse_bad_arguments(config: RunConfig, output_dir: Path, options: RunOptions) -> RunPlan:
    """The run's plan, or RunRefused for arguments that cannot work; called before the run folder
    exists, so a refused command leaves nothing behind."""
    planned = plan_run(config, data_root=options.data_root, device=options.device, threads=options.threads)
    problem = planned if isinstance(planned, str) else None
    if problem is None and output_dir.exists() and not output_dir.is_dir():
        problem = f"--output-dir {shorten(str(output_dir))} is a file: give a folder"
    file_above = next((folder for folder in output_dir.absolute().parents if folder.is_file()), None)
    if problem is None and file_above is not None:
        problem = (f"--output-dir {shorten(str(output_dir))} is under {shorten(str(file_above), 200)}, which is a "
                   f"file: give a folder that is not inside a file")
    if problem is None and (output_dir / SWEEP_FILE).exists():
        folder = shorten(str(output_dir))
        problem = (f"--output-dir {folder} is a sweep's folder (it holds {SWEEP_FILE}): give a folder of its "
                   f"own, or run the sweep (`poolbench sweep --out {folder}`)")
    if problem is None:  # last: it may wait for a tracking server
        problem = tracking.problem(options.trackers)
    if problem is not None:
        raise RunRefused(problem)
    assert isinstance(planned, RunPlan)
    return planned


def plan_run(config: RunConfig, *, data_root: str | None = None, device: str = "auto",
             threads: int | None = None) -> RunPlan | str:
    """The run's plan, or the one-line refusal of a run whose arguments cannot work; writes nothing."""
    problem = argument_problem(seeds=[config.seed], device=device, threads=threads, data_root=data_root)
    if problem is not None:
        return problem
    resolved = resolve_device(device)  # argument_problem refused one that cannot be
    if config.amp == "fp16" and resolved.type == "cpu":
        # Measured here: a ResNet-20 backward under float16 autocast took 42 s on the CPU against
        # 0.5 s in float32 (no native half-precision kernels): a run would never finish.
        return ("--amp fp16 needs a CUDA device: float16 training on the CPU is emulated, about 80x "
                "slower than float32; use --amp bf16 or --amp none there")
    if config.amp not in AMP_DTYPES:
        return f"--amp {config.amp!r}: use one of {', '.join(AMP_DTYPES)}"
    try:
        info = datasets.describe(config.dataset, config.protocol.image_size)
    except (ValueError, datasets.DataMissingError) as error:
        return str(error)
    if config.num_classes != info.num_classes:
        return (f"{config.dataset} has {info.num_classes} classes, the run asks for {quote(config.num_classes)}; "
                f"drop --num-classes or set it to {info.num_classes}")
    problem = too_big(info, config.protocol.crop_padding, resolved)
    if problem is not None:
        return problem
    if isolation.runs_user_code(config.pool, config.arch):
        probe = isolation.probe(config.arch, config.dataset, config.protocol.image_size, config.pool,
                                config.pool_sha256, config.arch_sha256)
        if probe.problem is not None:
            return probe.problem
        assert probe.pool_input is not None  # the child found no problem, so it measured the pool input
        return RunPlan(resolved, info, probe.pool_input, probe)
    try:
        shape = models.pool_input_shape(config.arch, (info.image_shape[1], info.image_shape[2]),
                                         num_classes=config.num_classes)
    except (ValueError, TypeError) as error:  # an unknown model, a size it cannot take
        return " ".join(str(error).split())
    return isolation.unbuildable_pool(config.pool, shape[0]) or RunPlan(resolved, info, shape)


def argument_problem(*, seeds: Iterable[int] = (), device: str | None = None, threads: int | None = None,
                     data_root: str | None = None, seed_flag: str = "--seed") -> str | None:
    """The one-line refusal of the seeds and options a run is given, or None; writes nothing.

    ``poolbench run`` (plan_run) and ``poolbench sweep`` (for all its runs, before its folder is written)
    both call it, so a value one refuses the other does too. None leaves an option out (a sweep's unset
    ``--device`` is each run's default). ``seed_flag`` names the flag the seeds came from (``--seeds``).
    """
    if device is not None:
        try:
            resolve_device(device)
        except ValueError as error:
            return str(error)
    for seed in seeds:
        if not 0 <= seed <= SEED_MAX:
            return (f"{seed_flag} {quote(seed)} is out of range: use "
                    f"{'integers' if seed_flag == '--seeds' else 'an integer'} from 0 to {SEED_MAX}")
    if threads is not None and threads < 1:
        return f"--threads {quote(threads)}: give a number of CPU threads >= 1"
    if data_root is not None and Path(data_root).expanduser().exists() and not Path(data_root).expanduser().is_dir():
        return f"--data-root {shorten(data_root)} is a file: give a folder (it is created if missing)"
    return None


def too_big(info: datasets.DataInfo, crop_padding: int, device: torch.device) -> str | None:
    """Why the data set cannot be held on ``device``, or None. The loader keeps the uint8 splits
    there (the training one padded for the crop); on the CPU the decoded copy is held beside it."""
    need = info.bytes(crop_padding) * (2 if device.type == "cpu" else 1)
    free = free_memory_bytes(device)
    if free is None or need <= free:
        return None
    height, width = info.image_shape[1:]
    return (f"{info.name} at {height}x{width} needs {need / 2**30:.1f} GiB on {device} "
            f"({info.train_images:,} + {info.test_images:,} uint8 images), {free / 2**30:.1f} GiB are free: "
            f"give a smaller --image-size or use a smaller data set")


@contextmanager
def holding_lock(output_dir: Path) -> Iterator[None]:
    """The run folder, created and locked for this process (exit 75 when another one holds it).

    A run that ends before it writes its configuration (refused, interrupted) leaves the folder
    as it found it: the lock file and the folders this created are removed again.
    """
    created = [folder for folder in (output_dir, *output_dir.parents) if not folder.exists()]
    lock_was_there = (output_dir / LOCK_FILE).exists()
    lock = RunLock(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except RunLockedError as error:
        raise RunRefused(str(error), ExitCode.LOCKED) from None
    except OSError as error:
        _remove_created(output_dir, created, remove_lock=not lock_was_there)
        raise RunRefused(f"cannot use output dir {shorten(str(output_dir))}: {error.strerror}; "
                         f"choose a writable --output-dir") from None
    try:
        yield
    finally:
        if not (output_dir / CONFIG_FILE).exists():
            _remove_created(output_dir, created, remove_lock=not lock_was_there)  # while still holding the lock
        lock.release()


def _remove_created(output_dir: Path, created: list[Path], remove_lock: bool) -> None:
    """Undo what holding_lock made: its lock file, then each folder it created that is empty."""
    if remove_lock:
        try:
            (output_dir / LOCK_FILE).unlink(missing_ok=True)
        except OSError:  # the folder was never made (a file in its path): no lock to remove
            pass
    for folder in created:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (something else is in it) or gone: leave it
            return


# --- The run folder: the same run, and whether it is already over ----------------------------------

def finished_result(config: RunConfig, output_dir: Path, log: Log) -> dict[str, Any] | None:
    """The result of the folder's run if it needs no more work; RunRefused if the folder holds
    another run's configuration or a damaged one."""
    config_path = output_dir / CONFIG_FILE
    try:
        if config_path.exists():
            previous = read_config(config_path)
            changed = changed_inputs(previous, config)
            if changed is not None:
                raise RunRefused(f"{shorten(str(output_dir))} holds a run made with other content of {changed} "
                                 f"(edited or replaced since: its SHA-256 differs); use a new --output-dir, or "
                                 f"delete the folder to run it again")
            if previous != config:
                raise RunRefused(f"{output_dir} holds a run with another configuration "
                                 f"({'; '.join(config.differences(previous))}); use another --output-dir")
        return _finished_result(output_dir, log)
    except DamagedFileError as error:
        raise RunRefused(str(error)) from None


def report_finished(output_dir: Path, finished: dict[str, Any], log: Log, emit: Emit) -> ExitCode:
    """A run that is over is not run again: its outcome, as if it had just ended."""
    log(f"{output_dir}: already {finished['status']}, not run again")
    if finished["status"] == RunStatus.COMPLETED:
        emit(test_metrics_line(finished["best_test_acc"]))
        return ExitCode.COMPLETED
    return ExitCode.DIVERGED


def _finished_result(output_dir: Path, log: Log) -> dict[str, Any] | None:
    """The result of a run that needs no more work (completed or diverged), else None.

    A failed run is tried again: its failure may have been the machine's, not the pooling's.
    A damaged result.json is moved aside (result.json.damaged) and the run goes on from its
    checkpoint, which rewrites it: a completed run's checkpoint holds every epoch.
    """
    path = output_dir / RESULT_FILE
    if not path.exists():
        return None
    try:
        result = read_result(path, fix="")
    except DamagedFileError as error:
        os.replace(path, path.with_name(RESULT_FILE + ".damaged"))
        log(f"{str(error).rstrip(': ')}; moved to {RESULT_FILE}.damaged, rewriting it from the run's checkpoint")
        return None
    if result["status"] in (RunStatus.COMPLETED, RunStatus.DIVERGED):
        return result
    path.unlink()
    return None


# --- Before training: the pooling, the epochs already done, the data --------------------------------

# Failures that cannot waste a run on the CPU: a tensor that does not follow .to() breaks a run on
# another device, but a CPU run computes correctly with it. There they are warnings (refuse what
# wastes the run, warn about the rest).
HARMLESS_ON_CPU = frozenset({"to_dtype_device"})


def check_contract(config: RunConfig, plan: RunPlan, log: Log) -> None:
    """The pooling contract at the run's pool input (seconds): a pooling that would waste this
    run ends it before any data is loaded; what only wastes it elsewhere is a WARN line. A pooling
    or model file was checked in a child process by :func:`plan_run` (isolation.probe)."""
    device = plan.device
    if plan.probe is not None:
        report = plan.probe.report
        assert report is not None  # plan_run refused the run otherwise
    else:
        report = check_pool(config.pool, include_cost=False, pool_inputs=[plan.pool_input])
    for warning in report.warnings():
        if warning.name != "global_state":  # the run says what it put back itself (train_and_record)
            log(f"WARN {warning.name}: {warning.message}")
    fatal = [f for f in report.failures() if not (device.type == "cpu" and f.name in HARMLESS_ON_CPU)]
    for failure in report.failures():
        if failure not in fatal:
            log(f"WARN {failure.name}: {failure.message} (harmless in this CPU run; it fails on a GPU)")
    if fatal:
        for failure in fatal:
            log(f"FAIL {failure.name}: {failure.message}")
        raise RunRefused(f"pooling {config.pool!r} fails the contract check; fix it "
                         f"(see `poolbench check {shlex.quote(config.pool)}`) or pass --no-check to train anyway")


def resumed_epochs(config: RunConfig, output_dir: Path, log: Log) -> list[EpochRecord]:
    """The epochs the folder's checkpoint holds (the run resumes after them), or none."""
    checkpoint_path = output_dir / CHECKPOINT_FILE
    if not checkpoint_path.exists():
        _keep_old_metrics(output_dir, log)
        return []
    try:
        state = load_checkpoint(checkpoint_path, config.to_dict())
        history = checkpoint_history(checkpoint_path, state)
    except CheckpointMismatchError as error:
        raise RunRefused(str(error)) from None
    except Exception as error:  # truncated, binary, not a checkpoint: torch raises many kinds
        raise RunRefused(
            f"{checkpoint_path} is damaged ({type(error).__name__}: {' '.join(str(error).split())[:160]}): "
            f"delete it to restart the run from epoch 1; the epochs in {METRICS_FILE} are kept "
            f"(moved to {METRICS_FILE}.old)") from None
    return history


def _keep_old_metrics(output_dir: Path, log: Log) -> None:
    """A run starting from epoch 1 over an existing metrics.jsonl (its checkpoint was deleted)
    keeps the old epochs as metrics.jsonl.old instead of overwriting them."""
    path = output_dir / METRICS_FILE
    if path.exists() and path.stat().st_size > 0:
        os.replace(path, path.with_name(METRICS_FILE + ".old"))
        log(f"{path} holds epochs of an earlier start without a checkpoint: kept as {METRICS_FILE}.old")


def load_data(config: RunConfig, options: RunOptions, log: Log | None = None) -> datasets.ImageData:
    """The run's data set as uint8 tensors; RunRefused when it is missing or has other classes."""
    try:
        data = _decoded(config, options, log)
    except datasets.DataMissingError as error:
        raise RunRefused(str(error)) from None
    if data.num_classes != config.num_classes:
        raise RunRefused(f"{config.dataset} has {data.num_classes} classes, the run asks for "
                         f"{config.num_classes}; drop --num-classes or set it to {data.num_classes}")
    try:
        return holdout.split(data, config.protocol.val_split)
    except holdout.HoldoutError as error:
        raise RunRefused(str(error)) from None


#: Decoded data sets kept by a process that trains many runs (a sweep's worker, execution.workers),
#: by what the data depends on; None in a process that trains one run (nothing is kept).
_DECODED: dict[tuple[Any, ...], datasets.ImageData] | None = None
#: The most data sets a worker keeps: a sweep's settings use a few (the diagnostic suite four).
KEEP_DATA_SETS = 6


def keep_decoded_data() -> None:
    """From now on this process keeps the data sets it loads in memory (see :func:`load_data`)."""
    global _DECODED
    if _DECODED is None:
        _DECODED = {}


def _decoded(config: RunConfig, options: RunOptions, log: Log | None) -> datasets.ImageData:
    """``datasets.load`` of the run's data set, from memory when this process keeps data sets and
    loaded one with the same name, content (a custom data set's SHA-256), data root and image size.
    The loader and the validation split copy what they change: a kept data set is never altered."""
    if _DECODED is None:
        return datasets.load(config.dataset, options.data_root, download=options.download,
                             image_size=config.protocol.image_size, log=log)
    root = str(Path(options.data_root).expanduser().resolve()) if options.data_root else None
    key = (config.dataset, config.dataset_sha256, root, config.protocol.image_size)
    if key not in _DECODED:
        while len(_DECODED) >= KEEP_DATA_SETS:
            del _DECODED[next(iter(_DECODED))]  # the oldest: a sweep goes setting by setting
        _DECODED[key] = datasets.load(config.dataset, options.data_root, download=options.download,
                                      image_size=config.protocol.image_size, log=log)
    return _DECODED[key]


# --- Training: build, fit, record --------------------------------------------------------------------

def build_model(config: RunConfig, device: torch.device, channels_last: bool,
                image_size: tuple[int, int] = (32, 32)) -> torch.nn.Module:
    """The model with its pooling, on ``device``, lazily created parameters materialised.

    The dry-run forward runs before the optimizer is built, so that parameters a pooling
    creates on its first call are seen by the optimizer and live on the right device.
    """
    pool = pool_registry.resolve(config.pool)  # importing a pooling file restores the generators it touches
    torch.manual_seed(config.seed)
    model = models.create(config.arch, config.num_classes, pool=pool)
    model.to(device)
    model.to(memory_format=torch.channels_last if channels_last else torch.preserve_format)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3, *image_size, device=device))
    model.to(device)  # parameters created by the dry run
    return model


def test_batch_size(device: torch.device) -> int:
    """Images per evaluation batch: 1,000 on a GPU; 128 on the CPU, where a batch of 1,000 32x32 images
    holds 65 MB per activation, far more than the caches, and evaluating takes about 1.8 times as long
    (``benchmarks/eval_batch.py``). It changes no number: each image's logits do not depend on its
    batch on the CPU, and :func:`~poolbench.training.train.evaluate` sums the images' losses once."""
    return 128 if device.type == "cpu" else 1000


def build_loaders(config: RunConfig, data: datasets.ImageData, device: torch.device, channels_last: bool
                  ) -> tuple[datasets.DeviceLoader, datasets.DeviceLoader, datasets.DeviceLoader | None]:
    """The augmenting train loader (seeded by the run), the whole test set in batches of
    :func:`test_batch_size`, and the held-out training images like the test set (None without
    ``--val-split``)."""
    protocol = config.protocol
    options: dict[str, Any] = dict(mean=data.mean, std=data.std, device=device, channels_last=channels_last)
    train_loader = datasets.DeviceLoader(
        data.train_images, data.train_labels, protocol.batch_size, train=True, seed=config.seed,
        crop_padding=protocol.crop_padding, hflip=protocol.hflip, **options)
    batch_size = test_batch_size(device)
    test_loader = datasets.DeviceLoader(data.test_images, data.test_labels, batch_size, train=False, **options)
    val_loader = None
    if data.val_images is not None and data.val_labels is not None:
        val_loader = datasets.DeviceLoader(data.val_images, data.val_labels, batch_size, train=False, **options)
    return train_loader, test_loader, val_loader


def train_and_record(config: RunConfig, output_dir: Path, data: datasets.ImageData, plan: RunPlan,
                     resumed: list[EpochRecord], options: RunOptions, log: Log, emit: Emit) -> ExitCode:
    """Build the model and loaders, fit the protocol, write result.json; the run's exit code.

    Any error of the pooling or the model ends the run as a recorded failure, a non-finite loss
    as a recorded divergence; an interrupt keeps the checkpoint and writes no result.
    """
    start = time.perf_counter()
    device, pool_input_shape = plan.device, plan.pool_input
    image_size = (data.train_images.shape[2], data.train_images.shape[3])  # as loaded: no second look at the files
    history: list[EpochRecord] = list(resumed)
    result: dict[str, Any] = {
        "setting": config.setting, "arch": config.arch, "dataset": config.dataset, "pool": config.pool,
        "seed": config.seed, "epochs": config.protocol.epochs, "pool_input_shape": list(pool_input_shape),
        "image_shape": list(data.train_images.shape[1:]), "num_classes": config.num_classes,
        "device": str(device), "host": socket.gethostname(), "versions": versions(), "error": None,
        "diverged_at": None}
    trackers = tracking.Tracking(options.trackers, log)
    try:
        trackers.start(config, output_dir, resumed)
    except tracking.TrackerError as error:
        raise RunRefused(str(error)) from None
    forward = None
    try:
        channels_last = True  # faster on CPUs too (mkldnn), and on GPUs with tensor cores
        configure_determinism(options.deterministic, device)
        model = build_model(config, device, channels_last, image_size)
        forward = CompiledForward(model, device, warn=log) if config.compile else None
        result["num_params"] = sum(p.numel() for p in model.parameters())
        # What the pooling's or model's code changed in torch's global state, put back (global_state).
        result["global_state_restored"] = global_state.recorded()
        for change in result["global_state_restored"]:
            log(f"WARN global_state: {change}; put back: the run uses its own seed and settings")
        train_loader, test_loader, val_loader = build_loaders(config, data, device, channels_last)
        pool_path = getattr(model, "pool_path", None)  # where pools.attach put the pooling in a model from outside
        if pool_path is not None:
            result["pool_path"] = pool_path
        log(f"{config.setting}: {config.arch} on {config.dataset}, pool {config.pool}"
            + (f" at {pool_path}" if pool_path is not None else "") + f", seed {config.seed}, "
            f"{result['num_params']:,} parameters, pool input {tuple(pool_input_shape)}, {device}")
        # stdout holds the whole run for the original tooling: the epochs before an interruption too.
        for record in resumed:
            emit(record.metrics_line())

        def on_epoch(record: EpochRecord, so_far: list[EpochRecord]) -> None:
            history[:] = so_far
            write_jsonl(output_dir / METRICS_FILE, [r.as_record() for r in so_far])
            emit(record.metrics_line())
            trackers.log_epoch(record)

        history = fit(model, train_loader, test_loader, config.protocol, val_loader=val_loader,
                      checkpoint_path=output_dir / CHECKPOINT_FILE, config=config.to_dict(),
                      autocast_dtype=AMP_DTYPES[config.amp], forward=forward, on_epoch=on_epoch, log=log)
        status, code = RunStatus.COMPLETED, ExitCode.COMPLETED
    except DivergedError as error:
        log(f"error: run diverged: {error}; the run is scored as diverged, not as an accuracy")
        result["error"] = str(error)
        result["diverged_at"] = {"epoch": error.epoch, "step": error.step}
        status, code = RunStatus.DIVERGED, ExitCode.DIVERGED
    except CheckpointMismatchError as error:
        raise RunRefused(str(error)) from None
    except KeyboardInterrupt as error:
        how = how_interrupted(error)
        if history:
            log(f"{how} after epoch {len(history)}; the checkpoint is kept: run the same command again to resume")
        else:
            log(f"{how} before the first epoch ended: nothing to resume; the same command starts the run again")
        trackers.finish(None)
        return interrupted_code(error)
    except (Exception, SystemExit) as error:  # a broken pooling or model must end as a recorded failure
        if is_disk_full_or_read_only(error):
            raise  # the disk's problem, not the run's: run() says so in one line, the checkpoint is kept
        if not isinstance(error, SystemExit):
            traceback.print_exc(file=sys.stderr)
        what = f"{type(error).__name__}({error.code!r})" if isinstance(error, SystemExit) \
            else f"{type(error).__name__}: {error}"
        log(f"error: run failed: {what}")
        result["error"] = what
        status, code = RunStatus.FAILED, ExitCode.FAILED

    result.update(_score(history))
    if config.compile:
        result["compile"] = forward.compiled_as if forward is not None else None
    result.update(status=status, epochs_completed=len(history), wall_time_s=round(time.perf_counter() - start, 3))
    write_json(output_dir / RESULT_FILE, result)
    trackers.finish(result)
    if status == RunStatus.COMPLETED:
        emit(test_metrics_line(result["best_test_acc"]))
    return code


def _score(history: list[EpochRecord]) -> dict[str, Any]:
    if not history:
        return {"best_test_acc": None, "best_epoch": None, "final_test_acc": None}
    best = best_epoch(history)
    score: dict[str, Any] = {"best_test_acc": best.test_acc, "best_epoch": best.epoch,
                             "final_test_acc": history[-1].test_acc}
    by_val = best_val_epoch(history)
    if by_val is not None:  # the test accuracy at the epoch chosen on held-out training images
        score.update(val_test_acc=by_val.test_acc, val_epoch=by_val.epoch, best_val_acc=by_val.val_acc)
    return score


def test_metrics_line(best_test_acc: float) -> str:
    """The original harness's final stdout line, carrying the best test accuracy."""
    return f"TEST_METRICS: test_acc={best_test_acc:.2f}"
