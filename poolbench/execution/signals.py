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
from typing import Any

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


class HeldSignals:
    """Ctrl-C and the stop signals noted instead of raised, for code that must not be cut in half.

    Within ``with HeldSignals() as held:`` SIGINT, SIGTERM, SIGUSR1 and SIGUSR2 are appended to
    ``held.signals``; within ``with held.raising():`` (nested in it) the handlers from before are back
    and a signal held so far is raised at once (:class:`KeyboardInterrupt` for SIGINT, :class:`Terminated`
    for the others), as if it had arrived there. A worker holds them while it sets a run up, cleans up
    after it and answers its sweep, and raises them only while the run's own code runs. Main thread only.
    """

    SIGNALS = (signal.SIGINT, *STOP_SIGNALS)

    def __init__(self) -> None:
        self.signals: list[int] = []
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def __enter__(self) -> HeldSignals:
        self._previous = {signum: signal.signal(signum, self._note) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, action in self._previous.items():
            signal.signal(signum, action)

    @contextmanager
    def raising(self) -> Iterator[None]:
        """The handlers from before :meth:`__enter__` within the block; a held signal raised first."""
        for signum, action in self._previous.items():
            signal.signal(signum, action)
        try:
            if self.signals:
                raise self._first_as_interrupt()
            yield
        finally:
            for signum in self._previous:
                signal.signal(signum, self._note)

    def exit_code(self) -> ExitCode | None:
        """The first held signal's exit code (:func:`interrupted_code`), None if none came."""
        return interrupted_code(self._first_as_interrupt()) if self.signals else None

    def _first_as_interrupt(self) -> KeyboardInterrupt:
        """The first held signal as its handler would have raised it."""
        return KeyboardInterrupt() if self.signals[0] == signal.SIGINT else Terminated()


def interrupted_code(error: KeyboardInterrupt) -> ExitCode:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return ExitCode.TERMINATED if isinstance(error, Terminated) else ExitCode.INTERRUPTED


def how_interrupted(error: KeyboardInterrupt) -> str:
    """How a stopped command says it was stopped: ``interrupted`` (Ctrl-C) or ``terminated (SIGTERM)``."""
    return "terminated (SIGTERM)" if isinstance(error, Terminated) else "interrupted"


def how_it_ended(exit_code: int) -> str:
    """A finished process's exit code as a reader says it: ``killed by SIGKILL``, ``exit code 3``."""
    if exit_code >= 0:
        return f"exit code {exit_code}"
    try:
        return f"killed by {signal.Signals(-exit_code).name}"
    except ValueError:
        return f"killed by signal {-exit_code}"
