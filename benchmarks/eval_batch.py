"""How long evaluating the real suite's test set takes on the CPU at each test batch size, against a
batch of 1,000 (a GPU's test batch) measured in the same run.

A real-suite run evaluates all 10,000 FashionMNIST test images after each of its 5 epochs, and on
one CPU thread that is almost half of the run. The evaluation is the runs' own
(:func:`poolbench.training.train.evaluate` over a test-mode :class:`~poolbench.data.loader.DeviceLoader`,
channels-last, one thread) on ResNet-8 with GAP and 10 classes; the images are random (the time does
not depend on them). Every batch size must give the same loss and accuracy as the reference: the
printed ``same`` column says so.

    python benchmarks/eval_batch.py                       # about a minute on 2 cores
    python benchmarks/eval_batch.py --images 500 --rounds 1    # seconds (the test's smoke run)
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from poolbench import models
from poolbench.data.loader import DeviceLoader
from poolbench.execution.runner import test_batch_size
from poolbench.training.train import evaluate

REFERENCE = 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--sizes", default="64,128,256,512", help="batch sizes to time against 1,000")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes per size (the fastest is kept)")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = models.create("resnet8", num_classes=10, pool="gap").to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (args.images,), generator=generator)

    def timed(batch_size: int) -> tuple[float, tuple[float, float]]:
        loader = DeviceLoader(images, labels, batch_size, mean=(0.5,) * 3, std=(0.25,) * 3, train=False,
                              channels_last=True)
        best, result = float("inf"), (float("nan"), float("nan"))
        for _ in range(args.rounds):
            start = time.perf_counter()
            result = evaluate(model, loader)
            best = min(best, time.perf_counter() - start)
        return best, result

    sizes = [int(size) for size in args.sizes.split(",")]
    print(f"{platform.node()}: {torch.get_num_threads()} thread, torch {torch.__version__}; {args.images:,} "
          f"test images at 32x32, ResNet-8 + gap; the runs' CPU test batch: {test_batch_size(torch.device('cpu'))}")
    reference, expected = timed(REFERENCE)
    print(f"{'batch':>6} {'seconds':>8} {'ratio':>6}  same loss and accuracy")
    print(f"{REFERENCE:>6} {reference:8.2f} {1.0:6.2f}  (reference: loss {expected[0]:.6f}, "
          f"accuracy {expected[1]:.2f}%)")
    for size in sizes:
        seconds, result = timed(size)
        print(f"{size:>6} {seconds:8.2f} {seconds / reference:6.2f}  {result == expected}")


if __name__ == "__main__":
    main()
