"""``poolbench check``: the pooling contract's checks of each spec, in seconds (see poolbench.contract)."""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import redirect_stdout

from ..contract import ContractReport, benchmark_pool_inputs, check_pool
from ..core.outcomes import ExitCode
from ..core.settings import run_protocol
from ..core.unique import unique
from ..execution import isolation
from ..execution.sweep_runner import split_list
from ..pools.registry import is_file_spec
from ..training.catalog import get_setting
from . import say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="registered name, name(key=value, ...) or path.py[:Class]")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--settings", metavar="S1,S2", help="check at these settings' pool inputs (names or "
                        "MODEL@DATASET) instead of the benchmark's")
    parser.add_argument("--image-size", type=int, metavar="N", help="with --settings: at N x N images")
    parser.add_argument("--time-limit", type=float, default=isolation.CALL_TIME_LIMIT_S, metavar="S",
                        help="a pooling file's import, constructor and each check's calls must return within "
                             f"S seconds (default {isolation.CALL_TIME_LIMIT_S:g})")


def main(args: argparse.Namespace) -> int:
    try:
        pool_inputs = settings_pool_inputs(split_list(args.settings), args.image_size)
    except (ValueError, TypeError) as error:
        say(f"error: {' '.join(str(error).split())}")
        return ExitCode.BAD_INPUT
    if not args.time_limit > 0:
        say(f"error: --time-limit {args.time_limit:g}: give a number of seconds > 0")
        return ExitCode.BAD_INPUT
    return run_checks(args.specs, as_json=args.json, pool_inputs=pool_inputs, time_limit_s=args.time_limit)


def settings_pool_inputs(specs: list[str], image_size: int | None) -> list[tuple[int, int, int]] | None:
    """The (C, H, W) each setting's model gives its pooling (None: none named, the benchmark's)."""
    shapes = []
    for spec in specs:
        setting = get_setting(spec)
        size = run_protocol(setting, {"image_size": image_size}).image_size
        shapes.append(isolation.model_pool_input(setting.arch, setting.dataset, size))
    return unique(shapes) or None


def run_checks(specs: list[str], as_json: bool, pool_inputs: list[tuple[int, int, int]] | None = None,
               time_limit_s: float = isolation.CALL_TIME_LIMIT_S) -> int:
    """Print the reports to stdout; 1 if any pooling fails.

    A pooling file is checked in a child process with a time limit (poolbench.execution.isolation);
    what a pooling prints goes to stderr, so stdout holds only the reports (valid JSON with --json).
    """
    if not specs:
        say("poolbench check: give at least one pooling name or path.py[:Class]")
        return ExitCode.BAD_INPUT
    stdout = sys.stdout
    with redirect_stdout(sys.stderr):
        reports = [check_one(spec, pool_inputs, time_limit_s) for spec in specs]
    ok = all(r.ok for r in reports)
    if as_json:
        print(json.dumps({"ok": ok, "reports": [r.to_dict() for r in reports]}, indent=2), file=stdout)
    else:
        print("\n\n".join(r.format() for r in reports), file=stdout)
    return ExitCode.COMPLETED if ok else ExitCode.FAILED


def check_one(spec: str, pool_inputs: list[tuple[int, int, int]] | None, time_limit_s: float) -> ContractReport:
    shapes = benchmark_pool_inputs() if pool_inputs is None else pool_inputs
    if is_file_spec(spec):
        return isolation.check_in_child(spec, pool_inputs=shapes, time_limit_s=time_limit_s)
    return check_pool(spec, pool_inputs=shapes)
