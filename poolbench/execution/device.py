"""Where and how a run computes: its device, mixed precision and determinism, and the versions
recorded with it.
"""

from __future__ import annotations

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
