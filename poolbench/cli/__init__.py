"""The ``poolbench`` command: run, check, list (and sweep, status, report, data).

Human messages go to stderr; machine-readable lines (TRAIN_METRICS, TEST_METRICS, --json)
to stdout. One module per verb, each with ``HELP``, ``add_arguments(parser)`` and
``main(args) -> exit code``; :mod:`.common` holds what they share. This package is the only
place that parses command lines (see the import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from ..quoting import LIMIT, shorten
from . import check, data, report, run, status, sweep
from . import list as list_verb

VERBS = {"run": run, "check": check, "list": list_verb, "sweep": sweep, "status": status, "report": report,
         "data": data}


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose error line quotes at most LIMIT characters of a value: its
    ``invalid int value: '...'`` echoes the whole argument (10,000 digits of a --seed)."""

    def error(self, message: str) -> NoReturn:
        super().error(re.sub(rf"'([^']{{{LIMIT + 1},}})'", lambda match: f"'{shorten(match[1])}'", message))


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="poolbench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"poolbench {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, verb in VERBS.items():
        verb_parser = verbs.add_parser(name, help=verb.HELP)
        verb.add_arguments(verb_parser)
        verb_parser.set_defaults(main=verb.main)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
