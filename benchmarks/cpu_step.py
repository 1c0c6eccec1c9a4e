"""Which CPU training step pays for the diagnostic and real suites' ResNet-8: memory layout,
``torch.compile`` and the thread layout, each measured against the default in the same run.

A run of either suite trains ResNet-8 at batch 64 on 32x32 images (diagnostic tasks: 4 or 6
classes; the real suite's FashionMNIST: 10). For each variant a fresh process trains the same
steps from the same initial weights on the same batches and reports its median step time and its
loss after the last step:

- ``contiguous``: NCHW float32, eager, one thread;
- ``channels_last``: poolbench's layout (the DeviceLoader's batches and the model), eager, one thread;
- ``channels_last, malloc trims``: the same with glibc's default allocator settings, which every CPU run
  changes (``poolbench.execution.device.keep_freed_memory``: no fresh pages for each step's tensors);
- ``compiled``: ``channels_last`` with the model through ``torch.compile`` (inductor's CPU backend),
  one thread; its compile time is printed apart;
- thread layout: the same total of steps as two 1-thread processes at once (a sweep's ``--jobs 2``)
  against one 2-thread process (``--jobs 1 --threads 2``), as aggregate steps per second;
- the floor: the step's arithmetic (convolutions and matrix products, counted by torch's
  ``FlopCounterMode``) per second against one thread running a wide 3x3 convolution in the same run
  (the fastest arithmetic a core gives torch's convolutions), and what the real suite's arithmetic (5
  poolings x 5 seeds: every training step and every test image of every epoch) takes at that rate on
  the machine's cores: a bound no layout, compiler or process scheme goes under.

Each variant's loss after the last step is printed beside the reference's: layouts and fused
kernels round differently, so the difference says whether a variant keeps the numbers.

    python benchmarks/cpu_step.py                  # about 3 minutes on 2 cores
    python benchmarks/cpu_step.py --steps 10 --no-compile    # seconds (the test's smoke run)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CLASSES = {"diagnostic": 4, "real": 10}


def train_steps(layout: str, compiled: bool, classes: int, steps: int, threads: int,
                keep_memory: bool = True) -> dict[str, float]:
    """Median step time (ms), first-step time (s, the compile for ``compiled``) and the last loss.
    ``keep_memory``: the allocator setting every CPU run makes (keep_freed_memory), else glibc's default."""
    import torch
    import torch.nn.functional as F

    from poolbench import models
    from poolbench.core.settings import REAL_PROTOCOL
    from poolbench.execution.device import keep_freed_memory
    from poolbench.training.train import make_optimizer

    if keep_memory:
        keep_freed_memory()
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    model = models.create("resnet8", num_classes=classes, pool="gap").to(memory_format=memory_format)
    optimizer = make_optimizer(model, REAL_PROTOCOL)
    forward = torch.compile(model) if compiled else model
    generator = torch.Generator().manual_seed(1)
    batches = [(torch.randn(64, 3, 32, 32, generator=generator).contiguous(memory_format=memory_format),
                torch.randint(0, classes, (64,), generator=generator)) for _ in range(4)]
    times, loss = [], float("nan")
    for step in range(steps + 1):
        x, y = batches[step % len(batches)]
        start = time.perf_counter()
        loss_tensor = F.cross_entropy(forward(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss_tensor.backward()
        optimizer.step()
        loss = loss_tensor.item()
        times.append(time.perf_counter() - start)
    return {"step_ms": 1000 * statistics.median(times[1:]), "first_step_s": times[0], "loss": loss}


def dense_conv_gflops(threads: int, channels: int = 128, size: int = 16, repeats: int = 10) -> float:
    """GFLOP/s of a wide 3x3 convolution's forward (batch 64, ``channels`` in and out, ``size`` x ``size``,
    channels-last float32) on ``threads`` threads, median of ``repeats``: the fastest arithmetic torch's
    convolutions get from the core (on 2 AMD EPYC cores faster than a 1024x1024 matrix product)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.set_num_threads(threads)
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(64, channels, size, size).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counted:
            conv(x)  # also the first call, which sets up the kernel
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            conv(x)
            times.append(time.perf_counter() - start)
    return counted.get_total_flops() / statistics.median(times) / 1e9


def resnet8_gflop(classes: int) -> dict[str, float]:
    """GFLOP of ResNet-8 (gap) at 32x32: one training step at batch 64 (forward and backward) and one
    test image's forward; convolutions and matrix products only (what FlopCounterMode counts)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from poolbench import models

    model = models.create("resnet8", num_classes=classes, pool="gap")
    with FlopCounterMode(display=False) as step:
        F.cross_entropy(model(torch.randn(64, 3, 32, 32)), torch.zeros(64, dtype=torch.long)).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as test:
        model.eval()(torch.randn(1, 3, 32, 32))
    return {"step": step.get_total_flops() / 1e9, "test_image": test.get_total_flops() / 1e9}


def real_suite_gflop(step_gflop: float, test_image_gflop: float, runs: int = 25) -> float:
    """The real suite's arithmetic: ``runs`` runs (5 poolings x 5 seeds), each training every epoch's
    steps and evaluating every test image after every epoch (its score is the best epoch's)."""
    from poolbench.core.settings import REAL_PROTOCOL, SETTINGS
    from poolbench.data.datasets import registered

    dataset = registered(SETTINGS["resnet8-fmnist-5k"].dataset)
    steps = REAL_PROTOCOL.epochs * -(-dataset.train_size // REAL_PROTOCOL.batch_size)
    return runs * (steps * step_gflop + REAL_PROTOCOL.epochs * dataset.test_size * test_image_gflop)


def in_process(layout: str, compiled: bool, classes: int, steps: int, threads: int,
               keep_memory: bool = True) -> subprocess.Popen:
    """Start one training measurement in a fresh process with ``threads`` threads (its result on stdout)."""
    return child(json.dumps([layout, compiled, classes, steps, threads, keep_memory]), threads)


def child(measurement: str, threads: int) -> subprocess.Popen:
    """This script as ``--child measurement`` in a fresh process with ``threads`` threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.Popen([sys.executable, __file__, "--child", measurement], env=env, stdout=subprocess.PIPE,
                            text=True)


def result(process: subprocess.Popen) -> dict[str, float]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a measurement process failed (exit {process.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="timed steps per variant (default 60)")
    parser.add_argument("--suites", default="diagnostic,real", help="diagnostic, real or both")
    parser.add_argument("--no-compile", action="store_true", help="leave out torch.compile (minutes on 2 cores)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "dense_conv":
        print(json.dumps({"gflops": dense_conv_gflops(1)}))
        return 0
    if args.child:
        print(json.dumps(train_steps(*json.loads(args.child))))
        return 0

    import torch
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    print(f"ResNet-8, batch 64, 32x32, {args.steps} steps per variant; torch {torch.__version__}, {cores} cores")
    reference_rate = result(child("dense_conv", 1))["gflops"]
    print(f"one thread's wide 3x3 convolution (128 channels, 16x16, batch 64): {reference_rate:.1f} GFLOP/s "
          "(the floor's reference)")
    for suite in args.suites.split(","):
        classes = CLASSES[suite]
        reference = result(in_process("contiguous", False, classes, args.steps, 1))
        rows = [("contiguous (reference)", reference)]
        rows.append(("channels_last", result(in_process("channels_last", False, classes, args.steps, 1))))
        rows.append(("channels_last, malloc trims", result(in_process("channels_last", False, classes, args.steps, 1,
                                                                      keep_memory=False))))
        if not args.no_compile:
            rows.append(("channels_last + compile", result(in_process("channels_last", True, classes, args.steps, 1))))
        gflop = resnet8_gflop(classes)
        print(f"\n{suite} suite ({classes} classes): a step is {gflop['step']:.2f} GFLOP, a test image "
              f"{1000 * gflop['test_image']:.1f} MFLOP")
        print(f"{'variant':<28} {'ms/step':>8} {'ratio':>6} {'first step s':>12} {'loss after':>11} {'|d loss|':>9} "
              f"{'GFLOP/s':>8} {'of ref':>6}")
        for name, row in rows:
            rate = gflop["step"] / (row["step_ms"] / 1000)
            print(f"{name:<28} {row['step_ms']:8.1f} {row['step_ms'] / reference['step_ms']:6.2f} "
                  f"{row['first_step_s']:12.2f} {row['loss']:11.6f} {abs(row['loss'] - reference['loss']):9.2e} "
                  f"{rate:8.1f} {rate / reference_rate:6.2f}")
        layout = dict(rows)
        print(f"keeping freed memory (every CPU run's allocator setting): "
              f"{layout['channels_last']['step_ms'] / layout['channels_last, malloc trims']['step_ms']:.2f} of the "
              f"step time with glibc's defaults")
        if suite == "real":
            total = real_suite_gflop(gflop["step"], gflop["test_image"])
            print(f"the floor: the real suite (25 runs) is {total / 1000:.1f} TFLOP; even at the wide "
                  f"convolution's rate on {cores} cores it would take {total / (reference_rate * cores):.0f} s")

        # Thread layout: 2 x 1-thread processes at once against 1 x 2-thread process, same total steps.
        start = time.perf_counter()
        pair = [in_process("channels_last", False, classes, args.steps, 1) for _ in range(2)]
        for process in pair:
            result(process)
        two_jobs = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(2):
            result(in_process("channels_last", False, classes, args.steps, 2))
        one_job = time.perf_counter() - start
        print(f"thread layout, {2 * args.steps} steps each way (process start included): 2 jobs x 1 thread "
              f"{two_jobs:.1f} s, 1 job x 2 threads {one_job:.1f} s, ratio {two_jobs / one_job:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
