"""One run end to end: contract check, model, data, fit, and the run folder's files.

``execute`` is what ``poolbench run`` and every sweep worker call. It returns an exit code
and never raises for a problem a user can fix: those are one line on stderr.
"""

from __future__ import annotations

import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from . import __version__, models, pools
from . import data as datasets
from .compile import CompiledForward
from .runs import (
    CHECKPOINT_FILE,
    COMPLETED,
    CONFIG_FILE,
    DIVERGED,
    FAILED,
    METRICS_FILE,
    RESULT_FILE,
    RunConfig,
    RunLock,
    RunLockedError,
    read_json,
    write_json,
    write_jsonl,
)
from .train import CheckpointMismatchError, DivergedError, EpochRecord, best_epoch, fit

EXIT_COMPLETED, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_LOCKED, EXIT_INTERRUPTED = 0, 1, 2, 3, 75, 130

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
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
    model = models.create(config.arch, config.num_classes, pool=pools.resolve(config.pool))
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3, 32, 32, device=device))
    model.to(device)  # parameters created by the dry run
    return model


def execute(config: RunConfig, output_dir: str | Path, *, data_root: str | None = None,
            download: bool = True, device: str = "auto", check: bool = True,
            command: list[str] | None = None, log: Callable[[str], None] = stderr) -> int:
    """Run ``config`` into ``output_dir`` (resuming it if it was interrupted); an exit code."""
    output_dir = Path(output_dir)
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
                               device_name=device, check=check, command=command, log=log)
    finally:
        lock.release()


def _execute_locked(config: RunConfig, output_dir: Path, *, data_root, download, device_name,
                    check, command, log) -> int:
    config_path = output_dir / CONFIG_FILE
    if config_path.exists():
        previous = RunConfig.from_dict(read_json(config_path)["config"])
        if previous != config:
            log(f"error: {output_dir} holds a run with another configuration "
                f"({'; '.join(config.differences(previous))}); use another --output-dir")
            return EXIT_BAD_INPUT

    finished = _finished_result(output_dir)
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
        pools.resolve(config.pool)
    except (ValueError, TypeError, KeyError) as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT

    if check:
        from .contract import check_pool

        report = check_pool(config.pool, pool_inputs=[pool_input_shape], include_cost=False)
        if not report.ok:
            for failure in report.failures():
                log(f"FAIL {failure.name}: {failure.message}")
            log(f"error: pooling {config.pool!r} fails the contract check; fix it "
                f"(see `poolbench check {shlex.quote(config.pool)}`) or pass --no-check to train anyway")
            return EXIT_BAD_INPUT

    write_json(config_path, {"config": config.to_dict(), "command": command or [],
                             "versions": versions(), "device": str(device)})
    try:
        data = datasets.load(config.dataset, data_root, download=download)
    except datasets.DataMissingError as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT
    if data.num_classes != config.num_classes:
        log(f"error: {config.dataset} has {data.num_classes} classes, the run asks for "
            f"{config.num_classes}; drop --num-classes or set it to {data.num_classes}")
        return EXIT_BAD_INPUT

    start = time.perf_counter()
    history: list[EpochRecord] = []
    result: dict[str, Any] = {
        "setting": config.setting, "arch": config.arch, "dataset": config.dataset, "pool": config.pool,
        "seed": config.seed, "epochs": config.protocol.epochs, "pool_input_shape": list(pool_input_shape),
        "device": str(device), "versions": versions(), "error": None, "diverged_at": None}
    forward = None
    try:
        channels_last = True  # faster on CPUs too (mkldnn), and on GPUs with tensor cores
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: pick the fastest kernels once
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

        def on_epoch(record: EpochRecord, so_far: list[EpochRecord]) -> None:
            history[:] = so_far
            write_jsonl(output_dir / METRICS_FILE, [asdict(r) for r in so_far])
            print(record.metrics_line(), flush=True)

        history = fit(model, train_loader, test_loader, protocol,
                      checkpoint_path=output_dir / CHECKPOINT_FILE, config=config.to_dict(),
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
    except KeyboardInterrupt:
        log(f"interrupted after epoch {len(history)}: run the same command again to resume")
        return EXIT_INTERRUPTED
    except Exception as error:  # a broken pooling or model must end as a recorded failure
        traceback.print_exc(file=sys.stderr)
        log(f"error: run failed: {type(error).__name__}: {error}")
        result["error"] = f"{type(error).__name__}: {error}"
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


def _score(history: list[EpochRecord]) -> dict[str, Any]:
    if not history:
        return {"best_test_acc": None, "best_epoch": None, "final_test_acc": None}
    best = best_epoch(history)
    return {"best_test_acc": best.test_acc, "best_epoch": best.epoch, "final_test_acc": history[-1].test_acc}


def _finished_result(output_dir: Path) -> dict[str, Any] | None:
    """The result of a run that needs no more work (completed or diverged), else None.

    A failed run is tried again: its failure may have been the machine's, not the pooling's.
    """
    path = output_dir / RESULT_FILE
    if not path.exists():
        return None
    result = read_json(path)
    if result.get("status") in (COMPLETED, DIVERGED):
        return result
    path.unlink()
    return None

