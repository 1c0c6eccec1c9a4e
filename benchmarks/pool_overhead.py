"""What a pooling costs inside a real training step, relative to GAP, measured in the same run.

The contract's cost check times the pooling alone; this times a whole SGD step (forward,
backward, update) of a benchmark model at its real batch size, so the ratio is what a
200-epoch run pays.

    python benchmarks/pool_overhead.py [--arch resnet56] [--batch-size 128] [--pools gem,lse,cov]

Prints ms per step for GAP and each pooling, and the ratio pooling / GAP.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from poolbench import models, pools
from poolbench.core.poolspec import split_specs
from poolbench.core.settings import Protocol
from poolbench.training.train import make_optimizer


def step_ms(arch: str, pool: str, batch_size: int, repeats: int, device: torch.device) -> float:
    """Median wall time of one SGD step of ``arch`` with ``pool``, in milliseconds."""
    torch.manual_seed(0)
    model = models.create(arch, num_classes=100, pool=pool).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, Protocol())
    x = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (batch_size,), device=device)
    times = []
    for step in range(repeats + 2):  # two warm-up steps
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= 2:
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet56")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pools", default="gem,lse,softpool,topk,simpool,cov",
                        help="comma-separated pooling specs, or 'all'")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    names = pools.names() if args.pools == "all" else split_specs(args.pools)

    reference = step_ms(args.arch, "gap", args.batch_size, args.repeats, device)
    print(f"{args.arch}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} steps")
    print(f"{'gap':20s} {reference:9.1f} ms/step  1.00x")
    for name in names:
        if name == "gap":
            continue
        ms = step_ms(args.arch, name, args.batch_size, args.repeats, device)
        print(f"{name:20s} {ms:9.1f} ms/step  {ms / reference:.2f}x")


if __name__ == "__main__":
    main()
