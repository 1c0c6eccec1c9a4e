"""``poolbench data``: which data sets this machine holds under a data root, and whether each is intact."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import data
from ..core.outcomes import ExitCode


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-root", type=Path, default=None,
                        help="where data sets are looked for (default: $POOLBENCH_DATA, else ~/.cache/poolbench/data)")
    parser.add_argument("--json", action="store_true", help="the records as one JSON list")


def main(args: argparse.Namespace) -> int:
    root = args.data_root if args.data_root is not None else data.default_root()
    records = data.available(root)
    if args.json:
        print(json.dumps(records, indent=1))
        return ExitCode.COMPLETED
    print(f"data root: {root}")
    for r in records:
        if not r["found"]:
            state = "missing"
        elif r["verified"] is None:
            state = "found"
        else:
            state = "verified" if r["verified"] else "NOT INTACT"
        where = r["where"] or "-"
        if r["layout"]:
            where += f" ({r['layout']})"
        counts = f"{r['train_images']} train / {r['test_images']} test" if r["train_images"] is not None else "-"
        line = f"  {r['name']:10s} {state:10s} {counts:24s} {where}"
        print(line + (f": {r['problem']}" if r["problem"] else ""))
    return ExitCode.COMPLETED
