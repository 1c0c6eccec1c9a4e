"""One run end to end: contract check, model, data, fit, and the run folder's files.

``execute`` is what ``poolbench run`` and every sweep worker call. It returns an exit code
and never raises for a problem a user can fix: those are one line on stderr.
"""

from __future__ import annotations

import math
import os
import platform
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from . import __version__, models, pools
from . import data as datasets
from .compile import CompiledForward
from .pools import registry as pool_registry
from .runs import (
    CHECKPOINT_FILE,
    COMPLETED,
    CONFIG_FILE,
    DIVERGED,
    FAILED,
    METRICS_FILE,
    RESULT_FILE,
    DamagedFileError,
    RunConfig,
    RunLock,
    RunLockedError,
    read_json_object,
    write_json,
    write_jsonl,
)
from .settings import DATASET_CLASSES
from .train import CheckpointMismatchError, DivergedError, EpochRecord, best_epoch, fit, load_checkpoint

EXIT_COMPLETED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 75, 130
EXIT_TERMINATED = 143  # SIGTERM (Slurm, Kubernetes, `timeout`): handled like Ctrl-C, 128 + 15

SEED_MAX = 2**32 - 1  # numpy's legacy seeding takes 0 .. 2**32 - 1; torch takes more, so this is the bound
DEVICE_FORMS = "auto, cpu, cuda, cuda:N, mps"


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt, so that it unwinds like Ctrl-C (checkpoint kept)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated` (only the main thread can set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def interrupted_code(error: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return EXIT_TERMINATED if isinstance(error, Terminated) else EXIT_INTERRUPTED

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU. ValueError with the valid forms otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {name!r} is not a device: use one of {DEVICE_FORMS}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name!r}: poolbench trains on {DEVICE_FORMS}")
    if device.type == "cuda" and device.index is not None and device.index >= max(torch.cuda.device_count(), 1):
        raise ValueError(f"--device {name!r}: there are {torch.cuda.device_count()} CUDA devices; "
                         f"use cuda:0 .. cuda:{max(torch.cuda.device_count() - 1, 0)} or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps asked for, but MPS is not available: use --device cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available: use --device cpu")
    return device


def versions() -> dict[str, str]:
    return {"poolbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__}


def test_metrics_line(best_test_acc: float) -> str:
    """The original harness's final stdout line, carrying the best test accuracy."""
    return f"TEST_METRICS: test_acc={best_test_acc:.2f}"


def build_model(config: RunConfig, device: torch.device, channels_last: bool) -> torch.nn.Module:
    """The model with its pooling, on ``device``, lazily created parameters materialised.

    The dry-run forward runs before the optimizer is built, so that parameters a pooling
    creates on its first call are seen by the optimizer and live on the right device.
    """
    torch.manual_seed(config.seed)
    model = models.create(config.arch, config.num_classes, pool=pool_registry.resolve(config.pool))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3, 32, 32, device=device))
    model.to(device)  # parameters created by the dry run
    return model


def validate(config: RunConfig, *, data_root: str | None = None, device: str = "auto",
             threads: int | None = None) -> str | None:
    """The one-line refusal of a run whose arguments cannot work, or None; writes nothing.

    Called before the run folder is created, so a refused command leaves nothing behind.
    """
    try:
        resolve_device(device)
    except ValueError as error:
        return str(error)
    if not 0 <= config.seed <= SEED_MAX:
        return f"--seed {config.seed} is out of range: use an integer from 0 to {SEED_MAX}"
    if threads is not None and threads < 1:
        return f"--threads {threads}: give a number of CPU threads >= 1"
    if data_root is not None and Path(data_root).expanduser().exists() and not Path(data_root).expanduser().is_dir():
        return f"--data-root {data_root} is a file: give a folder (it is created if missing)"
    classes = DATASET_CLASSES.get(config.dataset)
    if classes is not None and config.num_classes != classes:
        return (f"{config.dataset} has {classes} classes, the run asks for {config.num_classes}; "
                f"drop --num-classes or set it to {classes}")
    if config.amp not in AMP_DTYPES:
        return f"--amp {config.amp!r}: use one of {', '.join(AMP_DTYPES)}"
    try:
        shape = models.pool_input_shape(config.arch)
        # Built once here: a constructor that raises, calls sys.exit() or refuses its
        # hyper-parameters (gem(p=-1)) is a bad pooling, also with --no-check.
        pool_registry.instantiate(pool_registry.resolve(config.pool), shape[0])
    except (Exception, SystemExit) as error:
        what = f"SystemExit({error.code!r}), the pooling ended the interpreter" if isinstance(error, SystemExit) \
            else f"{type(error).__name__}: {error}"
        if isinstance(error, pools.PoolSpecError):
            return str(error)
        return (f"pooling {config.pool!r} cannot be built: {' '.join(what.split())}; "
                f"fix it (see `poolbench check {shlex.quote(config.pool)}`)")
    return None


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    """Bit-for-bit runs on CUDA: deterministic algorithms, no cuDNN autotuning, a fixed cuBLAS workspace.

    Without it a CUDA run uses ``cudnn.benchmark`` (the fastest kernels, picked by timing), so two
    runs of the same seed differ in the last bits and then more. CPU runs are reproducible either way.
    """
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once


def execute(config: RunConfig, output_dir: str | Path, *, data_root: str | None = None,
            download: bool = True, device: str = "auto", check: bool = True,
            command: list[str] | None = None, log: Callable[[str], None] = stderr,
            threads: int | None = None, deterministic: bool = False) -> int:
    """Run ``config`` into ``output_dir`` (resuming it if it was interrupted); an exit code.

    SIGTERM is handled like Ctrl-C: the checkpoint of the last finished epoch is kept and the
    run exits 143 (130 for Ctrl-C); the same command resumes it.
    """
    output_dir = Path(output_dir)
    problem = validate(config, data_root=data_root, device=device, threads=threads)
    if problem is None and output_dir.exists() and not output_dir.is_dir():
        problem = f"--output-dir {output_dir} is a file: give a folder"
    if problem is not None:
        log(f"error: {problem}")
        return EXIT_BAD_INPUT
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with sigterm_as_interrupt():
            try:
                output_dir.mkdir(parents=True, exist_ok=True)
                lock = RunLock(output_dir)
                lock.acquire()
            except RunLockedError as error:
                log(f"error: {error}")
                return EXIT_LOCKED
            except OSError as error:
                log(f"error: cannot use output dir {output_dir}: {error.strerror}; choose a writable --output-dir")
                return EXIT_BAD_INPUT
            try:
                return _execute_locked(config, output_dir, data_root=data_root, download=download,
                                       device_name=device, check=check, command=command, log=log,
                                       deterministic=deterministic)
            finally:
                lock.release()
    except KeyboardInterrupt as error:  # before the run started, or after it ended
        log(f"interrupted: run the same command again to {'resume' if output_dir.exists() else 'start'} it")
        return interrupted_code(error)


CONFIG_FIX = "delete it (the same command writes it again; the checkpoint still guards the configuration)"


def _execute_locked(config: RunConfig, output_dir: Path, *, data_root, download, device_name,
                    check, command, log, deterministic: bool = False) -> int:
    config_path = output_dir / CONFIG_FILE
    try:
        if config_path.exists():
            stored = read_json_object(config_path, CONFIG_FIX, keys=("config",))
            try:
                previous = RunConfig.from_dict(stored["config"])
            except (TypeError, ValueError, AttributeError) as error:
                raise DamagedFileError(f"{config_path} is damaged (not a run configuration: "
                                       f"{' '.join(str(error).split())}): {CONFIG_FIX}") from None
            if previous != config:
                log(f"error: {output_dir} holds a run with another configuration "
                    f"({'; '.join(config.differences(previous))}); use another --output-dir")
                return EXIT_BAD_INPUT
        finished = _finished_result(output_dir, log)
    except DamagedFileError as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT
    if finished is not None:
        log(f"{output_dir}: already {finished['status']}, not run again")
        if finished["status"] == COMPLETED:
            print(test_metrics_line(finished["best_test_acc"]), flush=True)
            return EXIT_COMPLETED
        return EXIT_DIVERGED

    try:
        device = resolve_device(device_name)
        autocast_dtype = AMP_DTYPES[config.amp]
        pool_input_shape = models.pool_input_shape(config.arch)
        pool_registry.resolve(config.pool)
    except (ValueError, TypeError, KeyError) as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT

    if check:
        from .contract import check_pool

        report = check_pool(config.pool, pool_inputs=[pool_input_shape], include_cost=False)
        for warning in report.warnings():
            log(f"WARN {warning.name}: {warning.message}")
        if not report.ok:
            for failure in report.failures():
                log(f"FAIL {failure.name}: {failure.message}")
            log(f"error: pooling {config.pool!r} fails the contract check; fix it "
                f"(see `poolbench check {shlex.quote(config.pool)}`) or pass --no-check to train anyway")
            return EXIT_BAD_INPUT

    checkpoint_path = output_dir / CHECKPOINT_FILE
    resumed: list[EpochRecord] = []
    if checkpoint_path.exists():
        try:
            state = load_checkpoint(checkpoint_path, config.to_dict())
            resumed = [EpochRecord(**record) for record in state["history"]]
            del state
        except CheckpointMismatchError as error:
            log(f"error: {error}")
            return EXIT_BAD_INPUT
        except Exception as error:  # truncated, binary, not a checkpoint: torch raises many kinds
            log(f"error: {checkpoint_path} is damaged ({type(error).__name__}: {' '.join(str(error).split())[:160]}): "
                f"delete it to restart the run from epoch 1; the epochs in {METRICS_FILE} are kept "
                f"(moved to {METRICS_FILE}.old)")
            return EXIT_BAD_INPUT
    else:
        _keep_old_metrics(output_dir, log)

    try:
        data = datasets.load(config.dataset, data_root, download=download)
    except datasets.DataMissingError as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT
    if data.num_classes != config.num_classes:
        log(f"error: {config.dataset} has {data.num_classes} classes, the run asks for "
            f"{config.num_classes}; drop --num-classes or set it to {data.num_classes}")
        return EXIT_BAD_INPUT
    # Written only once nothing refused the run: a refused command must not block its own fix.
    write_json(config_path, {"config": config.to_dict(), "command": command or [],
                             "versions": versions(), "device": str(device), "deterministic": deterministic})

    start = time.perf_counter()
    history: list[EpochRecord] = list(resumed)
    result: dict[str, Any] = {
        "setting": config.setting, "arch": config.arch, "dataset": config.dataset, "pool": config.pool,
        "seed": config.seed, "epochs": config.protocol.epochs, "pool_input_shape": list(pool_input_shape),
        "device": str(device), "versions": versions(), "error": None, "diverged_at": None}
    forward = None
    try:
        channels_last = True  # faster on CPUs too (mkldnn), and on GPUs with tensor cores
        configure_determinism(deterministic, device)
        model = build_model(config, device, channels_last)
        forward = CompiledForward(model, device, warn=log) if config.compile else None
        result["num_params"] = sum(p.numel() for p in model.parameters())
        protocol = config.protocol
        loader_options = dict(mean=data.mean, std=data.std, device=device, channels_last=channels_last)
        train_loader = datasets.DeviceLoader(
            data.train_images, data.train_labels, protocol.batch_size, train=True, seed=config.seed,
            crop_padding=protocol.crop_padding, hflip=protocol.hflip, **loader_options)
        test_loader = datasets.DeviceLoader(data.test_images, data.test_labels, 1000, train=False,
                                            **loader_options)
        log(f"{config.setting}: {config.arch} on {config.dataset}, pool {config.pool}, seed {config.seed}, "
            f"{result['num_params']:,} parameters, pool input {tuple(pool_input_shape)}, {device}")
        # stdout holds the whole run for the original tooling: the epochs before an interruption too.
        for record in resumed:
            print(record.metrics_line(), flush=True)

        def on_epoch(record: EpochRecord, so_far: list[EpochRecord]) -> None:
            history[:] = so_far
            write_jsonl(output_dir / METRICS_FILE, [asdict(r) for r in so_far])
            print(record.metrics_line(), flush=True)

        history = fit(model, train_loader, test_loader, protocol,
                      checkpoint_path=checkpoint_path, config=config.to_dict(),
                      autocast_dtype=autocast_dtype, forward=forward, on_epoch=on_epoch, log=log)
        status, code = COMPLETED, EXIT_COMPLETED
    except DivergedError as error:
        log(f"error: run diverged: {error}; the run is scored as diverged, not as an accuracy")
        result["error"] = str(error)
        result["diverged_at"] = {"epoch": error.epoch, "step": error.step}
        status, code = DIVERGED, EXIT_DIVERGED
    except CheckpointMismatchError as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as error:
        how = "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"
        log(f"{how} after epoch {len(history)}; the checkpoint is kept: run the same command again to resume")
        return interrupted_code(error)
    except (Exception, SystemExit) as error:  # a broken pooling or model must end as a recorded failure
        if not isinstance(error, SystemExit):
            traceback.print_exc(file=sys.stderr)
        what = f"{type(error).__name__}({error.code!r})" if isinstance(error, SystemExit) \
            else f"{type(error).__name__}: {error}"
        log(f"error: run failed: {what}")
        result["error"] = what
        status, code = FAILED, EXIT_FAILED

    result.update(_score(history))
    if config.compile:
        result["compile"] = forward.status if forward is not None else None
    result.update(status=status, epochs_completed=len(history),
                  wall_time_s=round(time.perf_counter() - start, 3))
    write_json(output_dir / RESULT_FILE, result)
    if status == COMPLETED:
        print(test_metrics_line(result["best_test_acc"]), flush=True)
    return code


def _keep_old_metrics(output_dir: Path, log: Callable[[str], None]) -> None:
    """A run starting from epoch 1 over an existing metrics.jsonl (its checkpoint was deleted)
    keeps the old epochs as metrics.jsonl.old instead of overwriting them."""
    path = output_dir / METRICS_FILE
    if path.exists() and path.stat().st_size > 0:
        os.replace(path, path.with_name(METRICS_FILE + ".old"))
        log(f"{path} holds epochs of an earlier start without a checkpoint: kept as {METRICS_FILE}.old")


def _score(history: list[EpochRecord]) -> dict[str, Any]:
    if not history:
        return {"best_test_acc": None, "best_epoch": None, "final_test_acc": None}
    best = best_epoch(history)
    return {"best_test_acc": best.test_acc, "best_epoch": best.epoch, "final_test_acc": history[-1].test_acc}


def _finished_result(output_dir: Path, log: Callable[[str], None] = stderr) -> dict[str, Any] | None:
    """The result of a run that needs no more work (completed or diverged), else None.

    A failed run is tried again: its failure may have been the machine's, not the pooling's.
    A damaged result.json is moved aside (result.json.damaged) and the run goes on from its
    checkpoint, which rewrites it: a completed run's checkpoint holds every epoch.
    """
    path = output_dir / RESULT_FILE
    if not path.exists():
        return None
    try:
        result = read_json_object(path, "", keys=("status",))
        score = result.get("best_test_acc")
        if result["status"] == COMPLETED and not (isinstance(score, (int, float)) and math.isfinite(score)):
            raise DamagedFileError(f"{path} is damaged (no best_test_acc): ")
    except DamagedFileError as error:
        os.replace(path, path.with_name(RESULT_FILE + ".damaged"))
        log(f"{str(error).rstrip(': ')}; moved to {RESULT_FILE}.damaged, rewriting it from the run's checkpoint")
        return None
    if result["status"] in (COMPLETED, DIVERGED):
        return result
    path.unlink()
    return None

