"""What the data set modules share: the one error they raise, and the bounded download.

Its own module so that :mod:`.datasets` and :mod:`.fmnist` can both use them without importing
each other.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

# Per-operation socket timeout during a download attempt. Without it a network that silently drops
# packets leaves urllib waiting forever; with it a dead network fails in seconds. It bounds each
# connect/read, not the whole transfer, so a slow but working download is not cut off.
DOWNLOAD_TIMEOUT_S = 20.0


class DataMissingError(RuntimeError):
    """The files of a data set are absent, not intact, or could not be downloaded; the message is one line."""


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """Give urllib a default socket timeout for the duration of a download attempt only."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: message`` of an exception on one line (torchvision's messages span lines), cut at ``limit``."""
    reason = " ".join(f"{type(err).__name__}: {err}".split())
    return reason if len(reason) <= limit else reason[:limit - 3] + "..."
