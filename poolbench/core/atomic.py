"""Atomic file writes: a crash, a kill or a full disk leaves the old file or the new one, whole.

Used by the training loop for its checkpoints and by the run and sweep folders for every file.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old or the new file, whole.

    Temp file in the same folder, fsync, rename, fsync of the folder.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; others on a shared folder read results
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# A full disk, a full quota, a read-only file system: the machine's problem, not the run's. Runs
# end on them with ExitCode.DISK and keep their checkpoint; they are never recorded as failed.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


def is_disk_full_or_read_only(error: BaseException) -> bool:
    """Whether ``error`` is a write refused by the file system (full, over quota, read-only)."""
    return isinstance(error, OSError) and error.errno in DISK_ERRNOS


def disk_message(error: OSError, where: str | Path) -> str:
    """One line for a refused write: the path, the reason and the fix (the same command resumes)."""
    path = error.filename or where
    reason = error.strerror or str(error)
    fix = "make it writable" if error.errno == errno.EROFS else "free space"
    return f"cannot write {path}: {reason}; {fix} and run the same command again (nothing written is lost)"
