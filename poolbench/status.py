"""The ``status`` verb: a sweep folder's grid, each run's state (completed, running, diverged,
failed, interrupted, pending) and best accuracy so far, as text tables or one JSON document.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import runs
from .analysis import ReportError, collect_runs, ordered
from .report import EXIT_BAD_INPUT, md_table, setting_title

STATUS_ORDER = (runs.COMPLETED, runs.RUNNING, runs.DIVERGED, runs.FAILED, runs.INTERRUPTED, runs.PENDING,
                runs.UNREADABLE)


def status_cell(summary: runs.RunSummary) -> str:
    """``completed 93.21``, ``running 85.10 (3/8)``, ``diverged (epoch 2)``, ``pending``."""
    text = summary.status
    if summary.status == runs.UNREADABLE:
        return f"{text} ({summary.problem or summary.path / runs.RESULT_FILE})"
    if summary.best_test_acc is not None and summary.status != runs.DIVERGED:
        text += f" {summary.best_test_acc:.2f}"
    if summary.status in (runs.RUNNING, runs.INTERRUPTED):
        text += f" ({summary.epochs_completed}/{summary.epochs or '?'})"
    diverged_at = (summary.result or {}).get("diverged_at")
    if summary.status == runs.DIVERGED and diverged_at:
        text += f" (epoch {diverged_at['epoch']})"
    return text


def status_text(root: Path, summaries: list[runs.RunSummary]) -> str:
    """Per setting a grid: poolings down, seeds across; counts on top."""
    counts = {kind: sum(s.status == kind for s in summaries) for kind in STATUS_ORDER}
    out = [f"{root}: {len(summaries)} runs: " + ", ".join(f"{n} {kind}" for kind, n in counts.items())]
    for setting in ordered([s.setting for s in summaries]):
        in_setting = [s for s in summaries if s.setting == setting]
        seeds = sorted({s.seed for s in in_setting})
        cells = {(s.pool, s.seed): status_cell(s) for s in in_setting}
        body = [[pool, *(cells.get((pool, seed), "") for seed in seeds)]
                for pool in ordered([s.pool for s in in_setting])]
        out += ["", setting_title(setting), md_table(["pooling", *(f"seed {k}" for k in seeds)], body)]
    return "\n".join(out) + "\n"


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``poolbench status``."""
    parser.add_argument("folder", metavar="DIR", help="sweep folder")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def status_main(args: argparse.Namespace) -> int:
    """``poolbench status``: the grid of a sweep folder with each run's state and best accuracy."""
    try:
        summaries = collect_runs(args.folder)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        records = [{"setting": s.setting, "pool": s.pool, "seed": s.seed, "status": s.status,
                    "best_test_acc": s.best_test_acc, "epochs_completed": s.epochs_completed,
                    "epochs": s.epochs, "path": str(s.path), "problem": s.problem} for s in summaries]
        counts = {kind: sum(s.status == kind for s in summaries) for kind in STATUS_ORDER}
        print(json.dumps({"root": str(args.folder), "counts": counts, "runs": records}, indent=1))
    else:
        sys.stdout.write(status_text(Path(args.folder), summaries))
    return 0
