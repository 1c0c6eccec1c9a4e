"""Where and how a run computes: its device, mixed precision and determinism, and the versions
recorded with it.
"""

from __future__ import annotations

import ctypes
import os
import platform

import numpy as np
import torch
import torchvision

from .. import __version__
from ..core.quoting import quote

DEVICE_FORMS = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU. ValueError with the valid forms otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"--device {quote(name)} is not a device: use one of {DEVICE_FORMS}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {quote(name)}: poolbench trains on {DEVICE_FORMS}")
    if device.type == "cuda" and device.index is not None and device.index >= max(torch.cuda.device_count(), 1):
        raise ValueError(f"--device {quote(name)}: there are {torch.cuda.device_count()} CUDA devices; "
                         f"use cuda:0 .. cuda:{max(torch.cuda.device_count() - 1, 0)} or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("--device mps asked for, but MPS is not available: use --device cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA device is available: use --device cpu")
    return device


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


# glibc's mallopt parameters (malloc.h) and the values poolbench sets on the CPU.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's largest (half its 64 MiB heap size on 64-bit machines)
TRIM_THRESHOLD_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Let the C library's allocator keep the memory a training step frees for the next step's
    tensors; True where it took the setting (glibc), False elsewhere, where nothing changes.

    By default glibc gives every block above its mmap threshold (128 KiB, raised as such blocks are
    freed) fresh pages from the kernel and returns the top of its heap once 128 KiB of it is free. A
    CPU training step frees and allocates megabytes of activations and gradients, so each step
    touches new pages: about 3,000 page faults a step of the suites' ResNet-8, 9% of its time
    (``benchmarks/cpu_step.py``, docs/speed.md). With a 32 MiB threshold and no trimming the pages
    are kept and reused. Where a tensor's memory comes from changes no number a run computes.
    """
    if platform.libc_ver()[0] != "glibc":  # macOS, musl: other allocators, no such setting
        return False
    libc = ctypes.CDLL(None)  # the C library this process runs on
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def versions() -> dict[str, str]:
    return {"poolbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__}


def free_memory_bytes(device: torch.device) -> int | None:
    """Memory a run can still take on ``device``: CUDA's free bytes, the CPU's available RAM
    (``MemAvailable``), None where it cannot be known (MPS, no /proc)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    return None
