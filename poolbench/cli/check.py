"""``poolbench check``: the pooling contract's checks of each spec, in seconds (see poolbench.contract)."""

from __future__ import annotations

import argparse
import json

from ..contract import check_pool
from ..outcomes import ExitCode
from .common import say

HELP = "run the pooling contract checks (seconds)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="registered name, name(key=value, ...) or path.py[:Class]")
    parser.add_argument("--json", action="store_true")


def main(args: argparse.Namespace) -> int:
    return run_checks(args.specs, as_json=args.json)


def run_checks(specs: list[str], as_json: bool) -> int:
    """Print the reports to stdout; 1 if any pooling fails."""
    if not specs:
        say("poolbench check: give at least one pooling name or path.py[:Class]")
        return ExitCode.BAD_INPUT
    reports = [check_pool(spec) for spec in specs]
    ok = all(r.ok for r in reports)
    if as_json:
        print(json.dumps({"ok": ok, "reports": [r.to_dict() for r in reports]}, indent=2))
    else:
        print("\n\n".join(r.format() for r in reports))
    return ExitCode.COMPLETED if ok else ExitCode.FAILED
