"""``python -m poolbench.gpu_memory``: the peak GPU memory of one run, and the GPUs' free memory
(see poolbench.execution.memory_estimate). ``--probe`` is the sweep's child process asking for both.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

import torch

from ..core.outcomes import ExitCode
from ..core.precision import AMP_DTYPES
from ..execution.memory_estimate import GIB, RunSpec, estimate_bytes, measure_here


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m poolbench.gpu_memory",
                                     description="Peak GPU memory of one run, and the GPUs' free memory.")
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # JSON list of RunSpec fields: the sweep's child
    parser.add_argument("--arch", default="resnet56")
    parser.add_argument("--num-classes", type=int, default=100)
    parser.add_argument("--dataset", default="cifar100")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--amp", choices=sorted(AMP_DTYPES), default="none")
    parser.add_argument("--compile", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    specs = ([RunSpec(**fields) for fields in json.loads(args.probe)] if args.probe else
             [RunSpec(args.arch, args.num_classes, args.dataset, args.batch_size, args.amp, args.compile)])
    found = measure_here(specs)
    if args.probe:
        print(json.dumps(found))
        return ExitCode.COMPLETED
    free, need = found["free"], found["need"]
    cuda = torch.cuda.is_available()
    for spec in specs:
        how = "measured on " + torch.cuda.get_device_name(0) if cuda else "counted on the CPU (no CUDA)"
        print(f"{spec.label}: {need[spec.label] / GIB:.2f} GiB per run ({how})")
        if cuda:  # the counted estimate beside the measurement, to keep the CPU estimate honest
            print(f"  counted on the CPU: {estimate_bytes(spec) / GIB:.2f} GiB")
    for i, bytes_free in enumerate(free):
        print(f"GPU {i}: {bytes_free / GIB:.1f} GiB free, room for {bytes_free // need[specs[0].label]} such runs")
    return ExitCode.COMPLETED
