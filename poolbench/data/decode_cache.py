"""The decode cache: a decoded data set kept in one file, named by the SHA-256 of what it was decoded
from, so that every later run reads back in a fraction of a second what the first one decoded.

An entry is a dict saved with ``torch.save``: ``format``, ``key``, ``classes``, ``mean``, ``std``,
uint8 ``[N, 3, H, W]`` images and int64 labels of both splits, and ``digest``, the SHA-256 of all of
these (:func:`content_digest`). The digest is checked on every read: the file's name vouches for what
it was decoded from, not for what it holds, so a file changed after it was written (by a tool, a
person, a bad disk) is deleted and decoded again rather than trained on. A cache that cannot be
written only costs a decode next time.

Its users: the researcher's own data sets (:mod:`.custom`, where decoding a folder of images takes
seconds to minutes) and scikit-learn's digits (:mod:`.digits`, where importing scikit-learn to read
them takes about 1.5 s of every ``quick`` run's start).
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from .common import one_line, user_folder
from .images import ImageData

# Part of every key: bump it when the decoded result for the same files changes (decoding, resizing,
# the entry's content), so that old cache files are never read as new ones.
FORMAT_VERSION = 2  # 2: the entry holds the digest of its content

#: Where the cache says what it did (one line each); the default is silence.
Log = Callable[[str], None]

_TENSORS = ("train_images", "train_labels", "test_images", "test_labels")


def default_dir() -> Path:
    """``$POOLBENCH_CACHE`` if set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) + ``/poolbench/decoded``."""
    return user_folder("POOLBENCH_CACHE", "decoded")


def new_key(kind: str, image_size: int | None) -> Any:
    """A SHA-256 that has taken in the format, the data set's ``kind`` and ``image_size``: feed it what
    the data set is decoded from with :func:`add_field`, and name the entry by its ``hexdigest()``."""
    digest = hashlib.sha256()
    for part in (f"poolbench decoded data v{FORMAT_VERSION}", kind, f"image_size={image_size}"):
        add_field(digest, part.encode())
    return digest


def add_field(digest: Any, data: bytes | memoryview) -> None:
    """Feed one length-prefixed field: no two different sequences of fields hash the same bytes."""
    digest.update(struct.pack("<Q", len(data)))
    digest.update(data)


def load(path: Path, key: str, name: str, decode: Callable[[], dict[str, Any]],
         log: Log | None = None) -> ImageData:
    """Data set ``name`` from the entry in ``path`` for ``key``, else from ``decode()`` (``classes``,
    ``mean``, ``std`` and the four tensors), made an entry and written there. ``log`` gets one line:
    read, decoded and cached, or decoded but not cached (with why)."""
    log = log or _silent
    start = time.perf_counter()
    entry = _read(path, key, log)
    if entry is not None:
        log(f"read {name} from the cache ({_count(entry):,} images in {time.perf_counter() - start:.2f} s, {path})")
        return _image_data(name, entry)
    entry = {"format": FORMAT_VERSION, "key": key, **decode()}
    entry["digest"] = content_digest(entry)
    took = time.perf_counter() - start
    try:
        _write(path, entry)
    except Exception as err:  # a cache is an optimisation: no failure to write it may fail the load
        log(f"warning: decoded {_count(entry):,} images of {name} in {took:.1f} s but could not cache them in "
            f"{path.parent} ({one_line(err)}); they will be decoded again next time")
    else:
        log(f"decoded {_count(entry):,} images of {name} in {took:.1f} s; cached as {path}")
    return _image_data(name, entry)


def content_digest(entry: dict[str, Any]) -> str:
    """SHA-256 of an entry's content: key, classes, mean, std and every tensor's shape, dtype and bytes.

    Hashing the tensors costs about a second per GB, far less than decoding them again.
    """
    digest = hashlib.sha256()
    add_field(digest, repr((entry["key"], list(entry["classes"]), list(entry["mean"]), list(entry["std"]))).encode())
    for name in _TENSORS:
        tensor = entry[name]
        add_field(digest, f"{name} {tuple(tensor.shape)} {tensor.dtype}".encode())
        add_field(digest, memoryview(tensor.contiguous().numpy()).cast("B"))  # no copy of a contiguous tensor
    return digest.hexdigest()


def _silent(line: str) -> None:
    pass


def _image_data(name: str, entry: dict[str, Any]) -> ImageData:
    return ImageData(name=name, train_images=entry["train_images"], train_labels=entry["train_labels"],
                     test_images=entry["test_images"], test_labels=entry["test_labels"],
                     num_classes=len(entry["classes"]), mean=tuple(entry["mean"]), std=tuple(entry["std"]))


def _count(entry: dict[str, Any]) -> int:
    return len(entry["train_labels"]) + len(entry["test_labels"])


def _read(path: Path, key: str, log: Log) -> dict[str, Any] | None:
    """The cached entry, or None when there is none or it cannot be used (a damaged one is deleted)."""
    try:
        stream = open(path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        return None  # not cached yet (or the cache folder cannot exist: the write will say so)
    except OSError as err:
        log(f"warning: cannot read the cache file {path} ({one_line(err)}); decoding again")
        return None
    try:
        with stream:
            entry = torch.load(stream, map_location="cpu", weights_only=True)
        _check(entry, key)
    except Exception as err:  # truncated, overwritten, another format: rebuild it
        log(f"warning: the cache file {path} is damaged ({one_line(err)}): deleted, decoding again")
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass  # the rebuilt file replaces it, or the write fails and says so
        return None
    return entry


def _check(entry: Any, key: str) -> None:
    """Raise ValueError unless ``entry`` is a whole cache entry for ``key``."""
    if not isinstance(entry, dict) or entry.get("format") != FORMAT_VERSION or entry.get("key") != key:
        raise ValueError("not a cache entry of this data set and format")
    classes = entry["classes"]
    for split in ("train", "test"):
        images, labels = entry[f"{split}_images"], entry[f"{split}_labels"]
        if not (isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4
                and images.shape[1] == 3 and images.is_contiguous()):
            raise ValueError(f"{split} images are not uint8 [N, 3, H, W]")
        if not (isinstance(labels, torch.Tensor) and labels.dtype == torch.int64 and labels.shape == (len(images),)):
            raise ValueError(f"{split} labels are not int64 [N]")
        if len(labels) == 0 or int(labels.min()) < 0 or int(labels.max()) >= len(classes):
            raise ValueError(f"{split} labels outside 0..{len(classes) - 1}")
    if len(entry["mean"]) != 3 or len(entry["std"]) != 3:
        raise ValueError("no 3-channel mean and std")
    if entry.get("digest") != content_digest(entry):
        raise ValueError("its content does not match the digest written with it (altered after it was written)")


def _write(path: Path, entry: dict[str, Any]) -> None:
    """Write the entry under a temporary name in the cache folder, then rename it into place.

    Streamed into the file rather than built in memory as bytes (which would double the memory of
    a large data set). No fsync: a cache file lost or cut short by a crash is found damaged and
    rebuilt, so durability is not worth its cost here.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o644)  # mkstemp makes 0600; a shared cache folder is read by others
        with os.fdopen(handle, "wb") as stream:
            torch.save(entry, stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
