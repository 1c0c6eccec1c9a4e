"""``poolbench status``: the grid of a sweep folder with each run's state and best accuracy."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..core.outcomes import ExitCode
from ..execution.slurm_jobs import job_rows
from ..render.markdown import md_table
from ..render.status import status_document, status_text
from ..storage.rundir import DamagedFileError
from ..storage.sweep_runs import ReportError, collect_runs
from . import say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="sweep folder")
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def main(args: argparse.Namespace) -> int:
    try:
        summaries = collect_runs(args.folder)
        jobs = job_rows(args.folder, {f"{s.setting}/{s.pool}/seed{s.seed}": s.status for s in summaries})
    except (ReportError, DamagedFileError) as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    if args.json:
        print(json.dumps({**status_document(args.folder, summaries), **({"jobs": jobs} if jobs else {})}, indent=1))
    else:
        sys.stdout.write(status_text(Path(args.folder), summaries))
        if jobs:  # --executor slurm: each run's job, its state in Slurm's queue when squeue answers
            sys.stdout.write("\njobs (--executor slurm)\n" + md_table(["run", "job", "state"],
                                                                       [list(row.values()) for row in jobs]) + "\n")
    return ExitCode.COMPLETED
