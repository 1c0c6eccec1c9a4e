"""``python -m poolbench.gpu_memory``: an entry point only, like ``poolbench/__main__.py``.

The estimates are poolbench.execution.memory_estimate; the command line is poolbench.cli.gpu_memory_verb.
"""

import sys

from .cli.gpu_memory_verb import main

if __name__ == "__main__":
    sys.exit(main())
