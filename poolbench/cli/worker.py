"""``python -m poolbench.cli.worker FD``: a worker process of a CPU sweep (see poolbench.execution.workers).

Each run it is sent is the ``poolbench`` command's :func:`poolbench.cli.main` called with the run's
arguments, as ``python -m poolbench run ...`` would call it; ``sys.argv`` is what that process' would
be, so the command recorded in the run's config.json is the same.
"""

from __future__ import annotations

import importlib.util
import sys

from ..execution.workers import serve
from . import exit_now, main

#: ``sys.argv[0]`` of ``python -m poolbench``: the path of poolbench/__main__.py.
MAIN_SCRIPT = str(getattr(importlib.util.find_spec("poolbench.__main__"), "origin", "-m"))


def run_command(argv: list[str]) -> int:
    """One ``poolbench`` command in this process, with the ``sys.argv`` its own process would have."""
    sys.argv = [MAIN_SCRIPT, *argv]
    return main(argv)


if __name__ == "__main__":
    exit_now(serve(int(sys.argv[1]), run_command))
