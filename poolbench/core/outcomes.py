"""How a command ends and what state a run folder is in: the one definition of each.

``ExitCode`` is what every verb returns (and what a sweep reads back from its run processes);
``RunStatus`` is what a run folder's files say about the run (see poolbench.storage.rundir.status).
Both are plain ``int``/``str`` subclasses: they compare equal to their values, print as them
and are written to JSON as them.
"""

from __future__ import annotations

import sys
from enum import Enum, IntEnum

if sys.version_info >= (3, 11):
    from enum import StrEnum
else:  # Python 3.10: the same behaviour, str() and format() give the value
    class StrEnum(str, Enum):
        def __str__(self) -> str:
            return str(self.value)

        def __format__(self, spec: str) -> str:
            return str(self.value).__format__(spec)


class ExitCode(IntEnum):
    """The exit status of a ``poolbench`` command."""

    COMPLETED = 0  # the run completed; a verb did what it was asked
    FAILED = 1  # a run failed (a broken pooling, a crash), a pooling failed its check, a write failed
    BAD_INPUT = 2  # a user error, refused in one line before anything is run
    DIVERGED = 3  # the run's loss became non-finite: recorded, scored as diverged
    DISK = 74  # EX_IOERR: a full or read-only file system; the checkpoint is kept, the same command resumes
    LOCKED = 75  # EX_TEMPFAIL: another process holds the run folder's lock
    INTERRUPTED = 130  # Ctrl-C, 128 + SIGINT: the checkpoint is kept, the same command resumes
    TERMINATED = 143  # SIGTERM (Slurm, Kubernetes, `timeout`), 128 + 15: handled like Ctrl-C


class RunStatus(StrEnum):
    """The state of a run folder."""

    COMPLETED = "completed"
    DIVERGED = "diverged"
    FAILED = "failed"
    RUNNING = "running"  # a live process holds its lock
    INTERRUPTED = "interrupted"  # a checkpoint or metrics, no result: the same command resumes it
    PENDING = "pending"  # nothing written yet
    REFUSED = "refused"  # not started: its pooling failed the sweep's contract check (the sweep folder's refused.json)
    UNREADABLE = "unreadable"  # a damaged result.json hides what the run did: never counted as failed


#: The statuses result.json can record: the run is over.
FINISHED_STATUSES = (RunStatus.COMPLETED, RunStatus.DIVERGED, RunStatus.FAILED)
