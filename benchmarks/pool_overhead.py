"""What a pooling costs inside a real training step, relative to GAP, measured in the same run.

The contract's cost check times the pooling alone; this times a whole SGD step (forward,
backward, update) of a benchmark model at its real batch size, so the ratio is what a
200-epoch run pays.

    python benchmarks/pool_overhead.py [--arch resnet56] [--batch-size 128] [--pools gem,lse,cov] [--rounds 3]

Prints ms per step for GAP and each pooling, and the ratio pooling / GAP. GAP is timed before and
after the poolings and the ratios are to the mean of the two. With ``--rounds R`` all of it is
repeated in R passes, each pass's ratios taken to that pass's GAP (so a load that changes between
passes, on a shared machine, cancels); it prints the median ratio over the passes and their range.
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
    parser.add_argument("--arch", default="resnet56", help="the benchmark model (default resnet56)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (default 128)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed steps per pooling and pass, after 2 warm-up steps; the median is kept (default 5)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="passes over GAP and every pooling; each pass's ratios are to its own GAP (default 1)")
    parser.add_argument("--pools", default="gem,lse,softpool,topk,simpool,cov",
                        help="comma-separated pooling specs, or 'all'")
    args = parser.parse_args()
    if args.repeats < 1 or args.rounds < 1:
        parser.error("--repeats and --rounds must be >= 1")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    names = [name for name in (pools.names() if args.pools == "all" else split_specs(args.pools)) if name != "gap"]

    gap_ms: list[float] = []
    ms: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(1, args.rounds + 1):
        # GAP opens and closes each pass: the pass's reference is their mean, so a load that
        # drifts during the pass (minutes on a CPU) moves the reference with it.
        opening = step_ms(args.arch, "gap", args.batch_size, args.repeats, device)
        for name in names:
            ms[name].append(step_ms(args.arch, name, args.batch_size, args.repeats, device))
            # Progress on stderr: a full pass over the zoo takes minutes on a CPU.
            print(f"round {round_}/{args.rounds}: {name} {ms[name][-1]:.1f} ms/step", file=sys.stderr, flush=True)
        closing = step_ms(args.arch, "gap", args.batch_size, args.repeats, device) if names else opening
        gap_ms.append((opening + closing) / 2)
        print(f"round {round_}/{args.rounds}: gap {opening:.1f} then {closing:.1f} ms/step", file=sys.stderr,
              flush=True)
    print(f"{args.arch}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads; "
          f"median of {args.repeats} steps" + (f", {args.rounds} rounds" if args.rounds > 1 else ""))
    print(f"{'gap':20s} {statistics.median(gap_ms):9.1f} ms/step  1.00x")
    for name in names:
        ratios = [pool / gap for pool, gap in zip(ms[name], gap_ms, strict=True)]
        spread = f"  ({min(ratios):.2f}x-{max(ratios):.2f}x)" if args.rounds > 1 else ""
        print(f"{name:20s} {statistics.median(ms[name]):9.1f} ms/step  {statistics.median(ratios):.2f}x{spread}")


if __name__ == "__main__":
    main()
