"""How much GPU memory one run takes, and whether ``sweep --jobs N`` fits N of them on the GPUs.

A run's peak is its model state (weights, gradients, momentum: 3 x 4 bytes a parameter), the
activations autograd saves for the backward pass (linear in the batch size), the uint8 data
split the DeviceLoader keeps on the device, and each process's CUDA context (cuDNN/cuBLAS
handles and workspaces), which ``max_memory_allocated`` does not see. With CUDA present the
first three are measured (``torch.cuda.max_memory_allocated`` over two training steps and one
evaluation batch); without it they are counted: the saved activations by autograd's
saved-tensor hooks on a CPU forward pass at two small batch sizes (exact bytes, extrapolated
linearly), plus tabled overheads. ``python -m poolbench.gpu_memory`` prints both (see
poolbench.cli.gpu_memory_verb).

The sweep asks a short child process (``--probe``) for the estimates and the free memory, so
that the sweep process itself never holds a CUDA context on the GPU its runs share.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from .. import data, models
from ..core.precision import AMP_DTYPES, amp_bytes
from ..core.unique import unique
from ..storage.sweepdir import Sweep, SweepRun
from ..training.catalog import get_setting, num_classes
from . import executors
from .runner import test_batch_size

GIB = 1024 ** 3
CONTEXT_BYTES = 600 * 1024 ** 2  # CUDA context + cuDNN/cuBLAS handles and workspaces, per process
ALLOCATOR_SLACK = 1.25  # the caching allocator's reserved/allocated ratio, fragmentation included
BACKWARD_PEAK = 1.3  # gradients of activations alive at once during backward, over the saved tensors
EVAL_BATCH = test_batch_size(torch.device("cuda"))  # a run's test batch on a GPU


@dataclass(frozen=True)
class RunSpec:
    """What a run's memory depends on."""

    arch: str
    num_classes: int
    dataset: str
    batch_size: int
    amp: str = "none"
    compile: bool = False
    image_size: int | None = None  # None: the data set's own size

    @property
    def label(self) -> str:
        size = f", {self.image_size}x{self.image_size}" if self.image_size else ""
        return (f"{self.arch} {self.dataset}{size}, batch {self.batch_size}, amp {self.amp}"
                + (", compiled" if self.compile else ""))

    @property
    def image_shape(self) -> tuple[int, int]:
        _, height, width = data.describe(self.dataset, self.image_size).image_shape
        return height, width


def data_bytes(dataset: str, crop_padding: int = 4, image_size: int | None = None) -> int:
    """The DeviceLoader's uint8 splits on the device: train padded for the crop, test as is."""
    return data.describe(dataset, image_size).bytes(crop_padding)


def estimate_bytes(spec: RunSpec) -> int:
    """Peak GPU memory of one run of ``spec``, counted on the CPU (no GPU needed)."""
    torch.manual_seed(0)
    model = models.create(spec.arch, spec.num_classes).to(memory_format=torch.channels_last)
    parameters = sum(p.numel() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    state = 3 * 4 * parameters + buffers
    small, large = (_saved_bytes(model, batch, spec.amp, spec.image_shape) for batch in (2, 4))
    per_image = (large - small) / 2
    train = BACKWARD_PEAK * (per_image * spec.batch_size + max(0.0, 2 * small - large))
    # input, output, workspace
    evaluation = 3 * _largest_activation_bytes(model, spec.amp, spec.image_shape) * EVAL_BATCH
    activations = max(train, evaluation)
    if spec.compile:  # CUDA graphs keep the compiled graph's activations in a private pool
        activations *= 2
    split_bytes = data_bytes(spec.dataset, image_size=spec.image_size)
    return int(ALLOCATOR_SLACK * (state + activations) + split_bytes + CONTEXT_BYTES)


def _autocast(amp: str):
    dtype = torch.bfloat16 if AMP_DTYPES.get(amp) is not None else None  # on the CPU: fp16 and bf16 are both 2 bytes
    return torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None)


def _saved_bytes(model, batch: int, amp: str, image_shape: tuple[int, int] = (32, 32)) -> int:
    """Bytes autograd keeps for the backward pass of a training forward at ``batch`` (parameters excluded)."""
    model.train()
    parameter_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameter_storages:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    x = torch.randn(batch, 3, *image_shape).contiguous(memory_format=torch.channels_last)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), _autocast(amp):
        logits = model(x)
    del logits
    return sum(storages.values())


def _largest_activation_bytes(model, amp: str, image_shape: tuple[int, int] = (32, 32)) -> int:
    """Bytes of the largest output of any module for one image, in the activation dtype."""
    largest = 0

    def hook(module, inputs, output):
        nonlocal largest
        if isinstance(output, torch.Tensor):
            largest = max(largest, output[0].numel())

    handles = [module.register_forward_hook(hook) for module in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, *image_shape))
    for handle in handles:
        handle.remove()
    return largest * amp_bytes(amp)


def measure_cuda_bytes(spec: RunSpec, device: int = 0) -> int:
    """Peak GPU memory of ``spec`` measured on CUDA device ``device``: two training steps and one
    evaluation batch with ``torch.cuda.max_memory_allocated``, plus the data split and the context."""
    cuda = torch.device("cuda", device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(cuda)
    start = torch.cuda.memory_allocated(cuda)
    model = models.create(spec.arch, spec.num_classes).to(cuda).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    dtype = AMP_DTYPES.get(spec.amp)
    images = torch.randn(spec.batch_size, 3, *spec.image_shape, device=cuda)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.zeros(spec.batch_size, dtype=torch.long, device=cuda)
    for _ in range(2):
        with torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype or torch.float32, enabled=dtype is not None):
        model(torch.randn(EVAL_BATCH, 3, *spec.image_shape, device=cuda).contiguous(memory_format=torch.channels_last))
    torch.cuda.synchronize(cuda)
    peak = torch.cuda.max_memory_allocated(cuda) - start
    del model, optimizer, images, labels, loss
    torch.cuda.empty_cache()
    factor = 2 if spec.compile else 1
    return int(ALLOCATOR_SLACK * peak * factor + data_bytes(spec.dataset, image_size=spec.image_size) + CONTEXT_BYTES)


# --- Packing runs on GPUs -----------------------------------------------------------------------

def packing_problem(jobs: int, free_bytes: list[int], need: dict[str, int]) -> str | None:
    """Why ``jobs`` runs at a time do not fit on GPUs with ``free_bytes`` free, or None if they do.

    The local executor gives the runs' slots to the GPUs round robin, so a GPU holds up to
    ceil(jobs / GPUs) runs; any of them may be the largest run of ``need`` (label -> bytes).
    """
    if not free_bytes or not need:
        return None
    per_gpu = math.ceil(jobs / len(free_bytes))
    label, largest = max(need.items(), key=lambda item: item[1])
    gpu, free = min(enumerate(free_bytes), key=lambda item: item[1])
    if per_gpu * largest <= free:
        return None
    fits = free // largest
    advice = (f"use --jobs {fits * len(free_bytes)} or fewer" if fits else
              "not even one run fits: free the GPU, lower --batch-size or use --device cpu")
    return (f"--jobs {jobs} puts {per_gpu} run{'s' if per_gpu > 1 else ''} on GPU {gpu} at up to "
            f"{largest / GIB:.1f} GiB each ({label}) = {per_gpu * largest / GIB:.1f} GiB, but it has "
            f"{free / GIB:.1f} GiB free: {advice}")


def probe(specs: Iterable[RunSpec]) -> dict:
    """In a child process: the free bytes of each visible GPU and each spec's measured peak."""
    arguments = [sys.executable, "-m", "poolbench.gpu_memory", "--probe",
                 json.dumps([asdict(spec) for spec in specs])]
    completed = subprocess.run(arguments, capture_output=True, text=True, timeout=600)
    if completed.returncode != 0:
        lines = completed.stderr.strip().splitlines() or ["no output"]
        raise RuntimeError(f"the GPU memory probe failed: {lines[-1]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def sweep_problem(sweep: Sweep, todo: list[SweepRun], jobs: int, probe_gpus: Any = None) -> str | None:
    """Why the sweep's ``todo`` runs, ``jobs`` at a time, cannot fit on this machine's GPUs, or None.

    None without GPUs or when the sweep's runs are on the CPU. ``probe_gpus(specs)`` returns
    ``{"free": [bytes per GPU], "need": {label: bytes}}`` (default :func:`probe` on this machine's
    GPUs); a test passes a fake one, which stands for the GPUs too.
    """
    device = str(sweep.options.get("device") or "auto")
    if not todo or device.startswith("cpu"):
        return None
    if probe_gpus is None:
        if not executors.visible_gpus():
            return None
        probe_gpus = probe
    specs = set()
    # Once per setting and variant, not per run: an own data set's classes are read from its files.
    for setting_spec, variant in unique((run.setting_spec, run.variant) for run in todo):
        setting = get_setting(setting_spec)
        overrides = sweep.protocol_overrides(variant)
        batch_size = overrides.get("batch_size") or setting.protocol.batch_size
        specs.add(RunSpec(setting.arch, num_classes(setting), setting.dataset, int(batch_size),
                          sweep.options.get("amp") or "none", bool(sweep.options.get("compile")),
                          overrides.get("image_size")))
    found = probe_gpus(sorted(specs, key=lambda spec: spec.label))
    return packing_problem(jobs, [int(free) for free in found["free"]], found["need"])


def measure_here(specs: list[RunSpec]) -> dict[str, Any]:
    """The probe's answer on this machine: ``{"free": [bytes per visible GPU], "need": {label: bytes}}``,
    each spec's peak measured with CUDA, counted on the CPU without it."""
    cuda = torch.cuda.is_available()
    free = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())] if cuda else []
    need = {spec.label: measure_cuda_bytes(spec) if cuda else estimate_bytes(spec) for spec in specs}
    return {"free": free, "need": need}
