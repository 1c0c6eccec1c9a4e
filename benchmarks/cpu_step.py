"""Which CPU training step pays for the diagnostic and real suites' ResNet-8: memory layout,
``torch.compile`` and the thread layout, each measured against the default in the same run.

A run of either suite trains ResNet-8 at batch 64 on 32x32 images (diagnostic tasks: 4 or 6
classes; the real suite's FashionMNIST: 10). For each variant a fresh process trains the same
steps from the same initial weights on the same batches and reports its median step time and its
loss after the last step:

- ``contiguous``: NCHW float32, eager, one thread;
- ``channels_last``: poolbench's layout (the DeviceLoader's batches and the model), eager, one thread;
- ``compiled``: ``channels_last`` with the model through ``torch.compile`` (inductor's CPU backend),
  one thread; its compile time is printed apart;
- thread layout: the same total of steps as two 1-thread processes at once (a sweep's ``--jobs 2``)
  against one 2-thread process (``--jobs 1 --threads 2``), as aggregate steps per second.

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


def train_steps(layout: str, compiled: bool, classes: int, steps: int, threads: int) -> dict[str, float]:
    """Median step time (ms), first-step time (s, the compile for ``compiled``) and the last loss."""
    import torch
    import torch.nn.functional as F

    from poolbench import models
    from poolbench.core.settings import REAL_PROTOCOL
    from poolbench.training.train import make_optimizer

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


def in_process(layout: str, compiled: bool, classes: int, steps: int, threads: int) -> subprocess.Popen:
    """Start one measurement in a fresh process with ``threads`` threads (its result on stdout)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    command = [sys.executable, __file__, "--child", json.dumps([layout, compiled, classes, steps, threads])]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)


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
    if args.child:
        print(json.dumps(train_steps(*json.loads(args.child))))
        return 0

    import torch
    print(f"ResNet-8, batch 64, 32x32, {args.steps} steps per variant; torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs")
    for suite in args.suites.split(","):
        classes = CLASSES[suite]
        reference = result(in_process("contiguous", False, classes, args.steps, 1))
        rows = [("contiguous (reference)", reference)]
        rows.append(("channels_last", result(in_process("channels_last", False, classes, args.steps, 1))))
        if not args.no_compile:
            rows.append(("channels_last + compile", result(in_process("channels_last", True, classes, args.steps, 1))))
        print(f"\n{suite} suite ({classes} classes)")
        print(f"{'variant':<26} {'ms/step':>8} {'ratio':>6} {'first step s':>12} {'loss after':>11} {'|d loss|':>9}")
        for name, row in rows:
            print(f"{name:<26} {row['step_ms']:8.1f} {row['step_ms'] / reference['step_ms']:6.2f} "
                  f"{row['first_step_s']:12.2f} {row['loss']:11.6f} {abs(row['loss'] - reference['loss']):9.2e}")

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
