"""``poolbench check``: the pooling contract's checks of each spec, in seconds (see poolbench.contract)."""

from __future__ import annotations

import argparse
import json

from ..catalog import get_setting, pool_input
from ..contract import check_pool
from ..execution.sweep import split_list
from ..outcomes import ExitCode
from ..settings import run_protocol
from .common import say

HELP = "run the pooling contract checks (seconds)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("specs", nargs="+", metavar="SPEC",
                        help="registered name, name(key=value, ...) or path.py[:Class]")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--settings", metavar="S1,S2", help="check at these settings' pool inputs (names or "
                        "MODEL@DATASET) instead of the benchmark's")
    parser.add_argument("--image-size", type=int, metavar="N", help="with --settings: at N x N images")


def main(args: argparse.Namespace) -> int:
    try:
        pool_inputs = settings_pool_inputs(split_list(args.settings), args.image_size)
    except (ValueError, TypeError) as error:
        say(f"error: {' '.join(str(error).split())}")
        return ExitCode.BAD_INPUT
    return run_checks(args.specs, as_json=args.json, pool_inputs=pool_inputs)


def settings_pool_inputs(specs: list[str], image_size: int | None) -> list[tuple[int, int, int]] | None:
    """The (C, H, W) each setting's model gives its pooling (None: none named, the benchmark's)."""
    shapes = []
    for spec in specs:
        setting = get_setting(spec)
        size = run_protocol(setting, {"image_size": image_size}).image_size
        shapes.append(pool_input(setting.arch, setting.dataset, size))
    return list(dict.fromkeys(shapes)) or None


def run_checks(specs: list[str], as_json: bool, pool_inputs: list[tuple[int, int, int]] | None = None) -> int:
    """Print the reports to stdout; 1 if any pooling fails."""
    if not specs:
        say("poolbench check: give at least one pooling name or path.py[:Class]")
        return ExitCode.BAD_INPUT
    reports = [check_pool(spec) if pool_inputs is None else check_pool(spec, pool_inputs=pool_inputs)
               for spec in specs]
    ok = all(r.ok for r in reports)
    if as_json:
        print(json.dumps({"ok": ok, "reports": [r.to_dict() for r in reports]}, indent=2))
    else:
        print("\n\n".join(r.format() for r in reports))
    return ExitCode.COMPLETED if ok else ExitCode.FAILED
