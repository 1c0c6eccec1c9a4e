"""What the data set modules share: the one error they raise, the bounded download, and the
record ``poolbench data`` prints for each data set.

Its own module so that :mod:`.datasets` and its loader modules (:mod:`.cifar`, :mod:`.fmnist`, ...)
can all use them without importing each other.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# Per-operation socket timeout during a download attempt. Without it a network that silently drops
# packets leaves urllib waiting forever; with it a dead network fails in seconds. It bounds each
# connect/read, not the whole transfer, so a slow but working download is not cut off. The loaders
# read it at call time (``common.DOWNLOAD_TIMEOUT_S``), so setting it here sets it for every download.
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


def record(name: str, **fields: Any) -> dict[str, Any]:
    """A data set's ``poolbench data`` record (see :func:`poolbench.data.available.available`): not
    found, unless ``fields`` say otherwise."""
    found = {"name": name, "found": False, "where": None, "layout": None, "verified": None, "problem": None,
             "train_images": None, "test_images": None}
    found.update(fields)
    return found


def user_folder(variable: str, leaf: str) -> Path:
    """``$variable`` if set (made absolute), else ``$XDG_CACHE_HOME`` (or ``~/.cache``) + ``/poolbench/leaf``.

    A relative value is made absolute by the command, in the folder it was started from
    (``poolbench.cli.anchor_path_variables``), before a sweep starts its runs elsewhere.
    """
    if os.environ.get(variable):
        return Path(os.environ[variable]).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "poolbench" / leaf
