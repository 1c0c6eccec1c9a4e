"""SIGTERM handled like Ctrl-C: a run or a sweep unwinds, keeps its checkpoints and exits 143.

Slurm, Kubernetes and ``timeout`` stop a job with SIGTERM; turned into an interrupt it takes the
same path as Ctrl-C, so the same command resumes what was stopped. SIGUSR1 and SIGUSR2 are handled
the same way: Slurm sends them (``--signal``, submitit's USR2) to every process of a job before its
time limit or on preemption, and their default action would kill a run without its record.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..core.outcomes import ExitCode

#: The signals a job scheduler stops a process with: each is handled like SIGTERM.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)


class Terminated(KeyboardInterrupt):
    """SIGTERM turned into an interrupt, so that it unwinds like Ctrl-C (checkpoint kept)."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM, SIGUSR1 and SIGUSR2 raise :class:`Terminated` (only the main thread
    can set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, action in previous.items():
            signal.signal(signum, action)


def interrupted_code(error: KeyboardInterrupt) -> ExitCode:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return ExitCode.TERMINATED if isinstance(error, Terminated) else ExitCode.INTERRUPTED


def how_it_ended(exit_code: int) -> str:
    """A finished process's exit code as a reader says it: ``killed by SIGKILL``, ``exit code 3``."""
    if exit_code >= 0:
        return f"exit code {exit_code}"
    try:
        return f"killed by {signal.Signals(-exit_code).name}"
    except ValueError:
        return f"killed by signal {-exit_code}"
