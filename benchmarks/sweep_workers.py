"""The README's main job run both ways: runs trained by worker processes against one process per run.

The job is the diagnostic suite for gap, gmp, gem and avgmax over seeds 42, 123 and 456 with
``--jobs 2`` (36 runs). It is swept twice in the same run on the same machine, into two fresh
folders: with ``--worker-processes on`` (the default: one process per job slot trains its runs one
after another) and with ``--worker-processes off`` (a ``python -m poolbench run`` process per run).
Each sweep is timed from its command's start to its end, the contract checks included.

    python benchmarks/sweep_workers.py                                       # the README's job, ~10 min on 2 cores
    python benchmarks/sweep_workers.py --seeds 42 --settings diag-majority,diag-brightest   # a subset

Then it times the real suite as docs/real.md runs it (``sweep --suite real --pools
gap,gmp,gem,avgmax,spectrum --seeds 1,2,3,4,5 --jobs 2``, worker processes, FashionMNIST from
``--data-root`` or Debian's copy): goal <= 6 minutes on 2 cores. ``--only main`` or ``--only real``
runs one part; ``--real-seeds``, ``--real-pools`` and ``--real-epochs`` choose a subset of it.

    python benchmarks/sweep_workers.py --only real                          # the real suite, ~13 min on 2 cores

Prints the machine, each sweep's time and runs, the ratio workers / process per run (goal <= 0.75),
how many runs gave a byte-identical metrics.jsonl both ways (its wall-time field aside), and the
real suite's time against its goal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from poolbench.core.settings import suite_settings

GOAL = 0.75
REAL_GOAL_S = 360.0  # the real suite (25 runs) on 2 cores
REAL_POOLS, REAL_SEEDS = "gap,gmp,gem,avgmax,spectrum", "1,2,3,4,5"  # as docs/real.md runs it


def machine() -> str:
    """The CPU model, the cores this process may use, the OS, Python and torch."""
    model = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{model}, {cores} cores; {platform.system()} {platform.release()}; Python "
            f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads")


def sweep_seconds(out: Path, grid: list[str], workers: str) -> float:
    """Wall time of ``poolbench sweep`` of ``grid`` into ``out`` with ``--worker-processes workers``."""
    command = [sys.executable, "-m", "poolbench", "sweep", "--out", str(out), *grid, "--worker-processes", workers]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        sys.exit(f"error: the sweep with --worker-processes {workers} exited {completed.returncode}:\n"
                 f"{completed.stderr[-2000:]}")
    return seconds


def metrics(run_dir: Path) -> list[dict]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        record.pop("epoch_time_s", None)  # wall time: the one field allowed to differ
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=("main", "real"), help="run one part (default: both)")
    parser.add_argument("--pools", default="gap,gmp,gem,avgmax")
    parser.add_argument("--settings", default=",".join(suite_settings("diagnostics")),
                        help="comma-separated settings (default: the diagnostic suite's)")
    parser.add_argument("--seeds", default="42,123,456")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, help="override the settings' epochs (default: theirs)")
    parser.add_argument("--image-size", type=int, help="train both parts at this image size (a quick check only)")
    parser.add_argument("--real-pools", default=REAL_POOLS)
    parser.add_argument("--real-seeds", default=REAL_SEEDS)
    parser.add_argument("--real-epochs", type=int, help="override the real suite's epochs (default: its 5)")
    parser.add_argument("--data-root", help="where FashionMNIST is (default: poolbench's, then Debian's copy)")
    parser.add_argument("--out", help="folder for the sweeps (default: a temporary one, removed after)")
    args = parser.parse_args()

    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="sweep_workers_") as temporary:
        root = Path(args.out or temporary)
        if args.only != "real":
            main_job(root, args)
        if args.only != "main":
            real_suite(root, args)


def main_job(root: Path, args: argparse.Namespace) -> None:
    """The README's main job both ways: the ratio, and whether every run's numbers are the same."""
    grid = ["--pools", args.pools, "--settings", args.settings, "--seeds", args.seeds, "--jobs", str(args.jobs)]
    if args.epochs:
        grid += ["--epochs", str(args.epochs)]
    if args.image_size:
        grid += ["--image-size", str(args.image_size)]
    # Workers first: whatever the first sweep warms (the page cache, the data sets' files) helps the
    # reference, so the ratio does not flatter the workers.
    workers_s = sweep_seconds(root / "workers", grid, "on")
    processes_s = sweep_seconds(root / "processes", grid, "off")
    folders = sorted(path.parent for path in (root / "workers").glob("*/*/seed*/metrics.jsonl"))
    same = sum(metrics(folder) == metrics(root / "processes" / folder.relative_to(root / "workers"))
               for folder in folders)
    runs = len(folders)
    print(f"job: poolbench sweep {' '.join(grid)}")
    print(f"process per run:    {runs} runs in {processes_s:7.1f} s ({processes_s / max(runs, 1):.1f} s a run)")
    print(f"worker processes:   {runs} runs in {workers_s:7.1f} s ({workers_s / max(runs, 1):.1f} s a run)")
    ratio = workers_s / processes_s
    print(f"ratio workers / process per run: {ratio:.2f} (goal <= {GOAL}: {'met' if ratio <= GOAL else 'not met'})")
    print(f"metrics.jsonl identical both ways (wall time aside): {same} of {runs} runs")


def real_suite(root: Path, args: argparse.Namespace) -> None:
    """The real suite's sweep (worker processes) timed; its goal holds for the whole suite only."""
    grid = ["--suite", "real", "--pools", args.real_pools, "--seeds", args.real_seeds, "--jobs", str(args.jobs)]
    if args.real_epochs:
        grid += ["--epochs", str(args.real_epochs)]
    if args.image_size:
        grid += ["--image-size", str(args.image_size)]
    if args.data_root:
        grid += ["--data-root", args.data_root, "--no-download"]
    seconds = sweep_seconds(root / "real", grid, "on")
    runs = len(list((root / "real").glob("*/*/seed*/result.json")))
    whole = (args.real_pools, args.real_seeds) == (REAL_POOLS, REAL_SEEDS) and not (args.real_epochs or args.image_size)
    verdict = f"goal <= {REAL_GOAL_S:.0f} s: {'met' if seconds <= REAL_GOAL_S else 'not met'}" if whole \
        else "a subset: the goal is for the whole suite"
    print(f"real suite: poolbench sweep {' '.join(grid)}")
    print(f"real suite: {runs} runs in {seconds:7.1f} s ({seconds / max(runs, 1):.1f} s a run; {verdict})")


if __name__ == "__main__":
    main()
