"""The ``poolbench`` command: run, check, list (and sweep, status, report, data).

Human messages go to stderr; machine-readable lines (TRAIN_METRICS, TEST_METRICS, --json)
to stdout. One module per verb, each with ``add_arguments(parser)`` and ``main(args) -> exit
code`` (its help line is in :data:`VERBS`); :mod:`.common` holds what they share. This package
is the only place that parses command lines (see the import-linter contracts in pyproject.toml).
"""

from __future__ import annotations

import argparse
import atexit
import errno
import importlib
import os
import re
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from .. import __version__
from ..core.outcomes import ExitCode
from ..core.quoting import LIMIT, shorten
from ..execution.signals import how_interrupted, interrupted_code

#: verb -> its one-line help. A verb's module is imported only when the command is that verb:
#: ``report``'s statistics and plots cost a second at every ``run`` start otherwise.
VERBS = {
    "run": "train one setting with one pooling and one seed",
    "check": "run the pooling contract checks (seconds)",
    "list": "settings, archs, data sets and poolings",
    "sweep": "run a grid of poolings x settings x seeds",
    "status": "show a sweep's grid and progress",
    "report": "statistics, verdict and plots of a sweep",
    "export": "a sweep as tidy tables: one row per run, one per epoch (CSV or Parquet)",
    "data": "the data sets found under a data root, verified (nothing is downloaded)",
}


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose error line quotes at most LIMIT characters of a value: its
    ``invalid int value: '...'`` echoes the whole argument (10,000 digits of a --seed)."""

    def error(self, message: str) -> NoReturn:
        super().error(re.sub(rf"'([^']{{{LIMIT + 1},}})'", lambda match: f"'{shorten(match[1])}'", message))


def verb_module(name: str) -> ModuleType:
    """The module of a verb (``list`` lives in ``list_verb.py``)."""
    return importlib.import_module(f"{__name__}.{name}_verb")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command's parser; with ``only``, the other verbs' arguments are left out (not imported)."""
    parser = Parser(prog="poolbench", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--version", action="version", version=f"poolbench {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for name, help_text in VERBS.items():
        verb_parser = verbs.add_parser(name, help=help_text)
        if only is None or name == only:
            verb = verb_module(name)
            verb.add_arguments(verb_parser)
            verb_parser.set_defaults(main=verb.main)
    return parser


#: The environment variables that name a folder (the data root, the decode cache of poolbench.data.custom).
PATH_VARIABLES = ("POOLBENCH_DATA", "POOLBENCH_CACHE")


def anchor_path_variables() -> None:
    """Make the relative folders in :data:`PATH_VARIABLES` absolute, against the current folder.

    Done once, where a command starts, in the folder the user launched it from: a sweep starts
    each run in the sweep folder, where a relative ``POOLBENCH_CACHE=cache`` would otherwise put a
    cache inside every sweep's files. The runs inherit the absolute path with the environment.
    """
    for name in PATH_VARIABLES:
        value = os.environ.get(name)
        if value:
            os.environ[name] = os.path.abspath(os.path.expanduser(value))


def main(argv: Sequence[str] | None = None) -> int:
    anchor_path_variables()
    # Not list(): importing the verb module poolbench.cli.list_verb binds `list` in this namespace.
    argv = [*(sys.argv[1:] if argv is None else argv)]
    chosen = next((word for word in argv if not word.startswith("-")), None)
    args = build_parser(chosen if chosen in VERBS else None).parse_args(argv)
    try:
        return args.main(args)
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:
            raise
        # Any path a user gives (--output-dir, --data-root, imagefolder:, FILE.py) can be too long.
        print(f"error: a path is too long for the file system: {shorten(str(error.filename))}; "
              f"give a shorter one", file=sys.stderr)
        return ExitCode.BAD_INPUT


def say(message: str) -> None:
    """A human message (progress, ``error: ...``): stderr, so that stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


def console() -> NoReturn:
    """The ``poolbench`` command (and ``python -m poolbench``): :func:`main`, then exit at once.

    Ctrl-C that no verb handles itself (a run and a sweep keep their checkpoints and say how to
    resume) ends the command with one line and exit code 130 (143 for SIGTERM), not a traceback.
    """
    try:
        code = main()
    except KeyboardInterrupt as error:
        say(how_interrupted(error))
        code = interrupted_code(error)
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Exit with ``code`` after the exit handlers, without the interpreter's teardown: unloading
    torch and torchvision takes 1.3 s on a 2-core machine, paid by every run of a sweep."""
    atexit._run_exitfuncs()  # Ray's shutdown, logging's flush, temporary folders: they still run
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more can be said there
            pass
    os._exit(code)
