"""FashionMNIST's four IDX files: where a copy is, whether it is the original data, and its arrays.

A copy may sit in torchvision's folder (``ROOT/FashionMNIST/raw``), directly in the data root, or in
the folder of Debian's package ``dataset-fashion-mnist``; each file may be gzipped or not. Copies are
verified by the SHA-256 of their *decompressed* content, never by the bytes of an archive: Debian's
``.gz`` files are recompressed (torchvision's md5s of the archives do not match them) yet hold the
original data, and a copy gzipped again at any level is the same data set too. :func:`load` and
:func:`available` are the loader and availability check it is registered with in
:data:`poolbench.data.datasets.DATASETS`.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision import datasets as tvd

from . import common
from .common import DataMissingError, one_line, record, socket_timeout
from .images import DataSet, ImageData, checked, grey_to_rgb

#: File name (without ``.gz``) -> SHA-256 of its decompressed content, measured on Debian's copy.
#: Looked up at call time, so tests of tiny fake files can point it at their own hashes.
FMNIST_SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
SYSTEM_FOLDER = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"

# The four files in the order read_copy returns their arrays: train images, train labels, test ...
_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_IMAGES_MAGIC, _LABELS_MAGIC = 2051, 2049  # IDX: unsigned bytes (0x08) in 3 dims / 1 dim
_SIDE = 28


@dataclass(frozen=True)
class FashionMNISTCopy:
    """A folder holding some or all of FashionMNIST's four IDX files.

    ``layout`` is ``"torchvision"`` (``ROOT/FashionMNIST/raw``), ``"flat"`` (the files directly in
    the data root) or ``"system"`` (Debian's folder). ``files`` maps each of the four names found
    to its file, plain or ``.gz``; a name that is absent is missing from the copy.
    """

    folder: Path
    layout: str
    files: dict[str, Path]


def find_copy(root: Path) -> FashionMNISTCopy | None:
    """The first of ``root/FashionMNIST/raw``, ``root`` and :data:`SYSTEM_FOLDER` holding any of the files.

    A plain file is preferred to its ``.gz``. A folder holding only some of the four is returned
    all the same, so that :func:`verify` can name what is missing instead of a copy elsewhere
    being used silently; None only when no location holds any of them.
    """
    system = SYSTEM_FOLDER
    for folder, layout in ((root / tvd.FashionMNIST.__name__ / "raw", "torchvision"), (root, "flat"),
                           (system, "system")):
        files = {}
        for name in _FILES:
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    files[name] = candidate
                    break
        if files:
            if layout == "flat" and _same_folder(folder, system):  # --data-root pointed at Debian's folder
                layout = "system"
            return FashionMNISTCopy(folder=folder, layout=layout, files=files)
    return None


def verify(copy: FashionMNISTCopy, download: bool | None = None) -> None:
    """Raise :class:`DataMissingError` (one line naming the file and the fix) unless the copy is intact.

    Intact: all four files present, each ``.gz`` a complete gzip stream, each content an IDX file
    of the size its header states, with the SHA-256 of :data:`FMNIST_SHA256`. ``download``: whether
    the command may download (the fix offers it only then; None: not known, as for `poolbench data`).
    """
    _contents(copy, download)


def read_copy(copy: FashionMNISTCopy, download: bool | None = None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Verify the copy, then parse it: train images uint8 ``[N, 28, 28]``, train labels int64, test images, labels.

    Each file is decompressed once; its verified bytes are the ones parsed. ``download`` as for :func:`verify`.
    """
    contents = _contents(copy, download)
    arrays = []
    for name in _FILES:
        dims, offset = _header(contents[name])
        values = np.frombuffer(contents[name], dtype=np.uint8, offset=offset).reshape(dims)
        # A copy: frombuffer's array is read-only and torch warns on (and must not write into) it.
        arrays.append(torch.from_numpy(values.copy()) if len(dims) == 3 else torch.from_numpy(values.astype(np.int64)))
    for split, images, labels in (("train", arrays[0], arrays[1]), ("t10k", arrays[2], arrays[3])):
        if len(images) != len(labels):
            raise DataMissingError(f"fmnist copy in {copy.folder} is not the original FashionMNIST: {split} has "
                                   f"{len(images)} images but {len(labels)} labels; {_fix(copy, download)}")
    return arrays[0], arrays[1], arrays[2], arrays[3]


def image_counts(copy: FashionMNISTCopy) -> tuple[int | None, int | None]:
    """(train, test) image counts as the images files' headers state them (None for a missing or unreadable
    file); reads 16 bytes of each, so it is cheap, and it checks nothing: :func:`verify` does."""
    counts: list[int | None] = []
    for name in ("train-images-idx3-ubyte", "t10k-images-idx3-ubyte"):
        path = copy.files.get(name)
        try:
            if path is None:
                raise FileNotFoundError(name)
            with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
                magic, n = struct.unpack(">II", f.read(8))
            counts.append(n if magic == _IMAGES_MAGIC else None)
        except (OSError, EOFError, zlib.error, struct.error):
            counts.append(None)
    return counts[0], counts[1]


def load_fmnist_arrays(root: Path, download: bool, *, timeout_s: float | None = None
                       ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], FashionMNISTCopy]:
    """The four arrays of :func:`read_copy` from the copy :func:`find_copy` finds, and that copy.

    With ``download`` and no copy anywhere, torchvision downloads the data set into
    ``root/FashionMNIST/raw`` (with its socket timeout ``timeout_s``, default
    :data:`.common.DOWNLOAD_TIMEOUT_S`); so it does when that folder holds an incomplete copy, which an
    interrupted download leaves. Any failure is one :class:`DataMissingError`.
    """
    copy = find_copy(root)
    failure = None
    if download and (copy is None or (copy.layout == "torchvision" and len(copy.files) < len(_FILES))):
        try:
            with socket_timeout(common.DOWNLOAD_TIMEOUT_S if timeout_s is None else timeout_s):
                tvd.FashionMNIST(str(root), train=True, download=True)
        except Exception as err:  # whatever torchvision raised, the download did not give us the files
            failure = one_line(err)
        copy = find_copy(root)
    if copy is None:
        raw = root / tvd.FashionMNIST.__name__ / "raw"
        if not download:
            tried, allow = "download not allowed", ", or allow the download"
        else:
            tried, allow = f"download failed ({failure or 'it left no files'})", ""
        raise DataMissingError(
            f"fmnist not found under {root} (looked in {raw}, {root} and {SYSTEM_FOLDER} for "
            f"{', '.join(_FILES)}, gzipped or not); {tried}; to get it: `apt-get install {DEBIAN_PACKAGE}`, "
            f"or copy the four IDX files (gzipped or not, e.g. from {tvd.FashionMNIST.mirrors[0]}) into {root}"
            f"{allow}, or pass --data-root DIR"
        )
    try:
        return read_copy(copy, download), copy
    except DataMissingError as err:
        if failure is None:
            raise
        raise DataMissingError(f"{err}; the download to complete it failed ({failure})") from err


def load(dataset: DataSet, root: Path, download: bool, image_size: int | None = None) -> ImageData:
    """Both splits from the copy :func:`load_fmnist_arrays` finds (or downloads), resized once from
    their 28 x 28 originals to ``image_size`` (32 when None), as the reference harness resizes to 32,
    grey copied to 3 channels, normalised with the registered statistics."""
    (train_images, train_labels, test_images, test_labels), _ = load_fmnist_arrays(root, download)
    size = image_size or 32
    train = grey_to_rgb(train_images.unsqueeze(1), size)
    mean, std = dataset.stats(train)
    return checked(root, ImageData(
        name=dataset.name,
        train_images=train,
        train_labels=train_labels,
        test_images=grey_to_rgb(test_images.unsqueeze(1), size),
        test_labels=test_labels,
        num_classes=dataset.num_classes,
        mean=mean,
        std=std,
    ))


def available(dataset: DataSet, root: Path, found: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether a copy :func:`find_copy` finds is intact (:func:`verify`), with its image counts."""
    copy = find_copy(root)
    if copy is None:
        return record(dataset.name)
    where = {"where": str(copy.folder), "layout": copy.layout}
    try:
        verify(copy)
    except DataMissingError as err:
        return record(dataset.name, found=True, verified=False, problem=str(err), **where)
    train, test = image_counts(copy)
    return record(dataset.name, found=True, verified=True, train_images=train, test_images=test, **where)


# ---------------------------------------------------------------------------------------------------
# helpers


def _contents(copy: FashionMNISTCopy, download: bool | None) -> dict[str, bytes]:
    """Name -> decompressed, verified content of each of the four files; DataMissingError on the first fault."""
    missing = [name for name in _FILES if name not in copy.files]
    if missing:
        raise DataMissingError(
            f"fmnist copy in {copy.folder} is incomplete: it holds no {' and no '.join(missing)} (plain or .gz); "
            f"{_fix(copy, download, missing=True)}"
        )
    contents = {}
    for name in _FILES:
        path = copy.files[name]
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise DataMissingError(f"fmnist file {path} cannot be read ({one_line(err)}); {_fix(copy, download)}"
                                   ) from err
        if path.suffix == ".gz":
            try:
                raw = gzip.decompress(raw)
            except (EOFError, OSError, zlib.error) as err:  # truncated stream / not gzip / corrupt data
                raise DataMissingError(
                    f"fmnist file {path} is not an intact gzip file ({one_line(err)}); {_fix(copy, download)}"
                ) from err
        _check_content(name, path, raw, _fix(copy, download))
        contents[name] = raw
    return contents


def _check_content(name: str, path: Path, content: bytes, fix: str) -> None:
    """The content's IDX header fits the file's role and its size, and its SHA-256 is the original's;
    else DataMissingError naming the fault, then ``fix``."""
    images = "images" in name
    what = "images" if images else "labels"
    not_original = f"fmnist file {path} is not the original FashionMNIST file"
    expected_magic = _IMAGES_MAGIC if images else _LABELS_MAGIC
    magic = struct.unpack_from(">I", content)[0] if len(content) >= 4 else None
    if magic is not None and magic != expected_magic:
        raise DataMissingError(f"{not_original} (its content starts with magic number {magic}; an IDX {what} file "
                               f"starts with {expected_magic}); {fix}")
    try:
        dims, offset = _header(content)
    except struct.error:
        raise DataMissingError(f"{not_original} (its content ends inside the IDX header, after {len(content)} "
                               f"bytes); {fix}") from None
    if images and dims[1:] != (_SIDE, _SIDE):
        raise DataMissingError(f"{not_original} (its images are {dims[1]}x{dims[2]}, FashionMNIST's "
                               f"{_SIDE}x{_SIDE}); {fix}")
    size = offset + int(np.prod(dims))
    if len(content) != size:
        raise DataMissingError(f"{not_original} (its content has {len(content)} bytes where its header, {dims[0]} "
                               f"{what}, needs {size}: truncated or padded); {fix}")
    digest = hashlib.sha256(content).hexdigest()
    expected = FMNIST_SHA256[name]
    if digest != expected:
        raise DataMissingError(f"{not_original} (SHA-256 of its content {digest[:8]}... != expected "
                               f"{expected[:8]}...); {fix}")


def _header(content: bytes) -> tuple[tuple[int, ...], int]:
    """(dims, offset of the values) of IDX content: a big-endian magic whose low byte is the number of
    dims, then each dim as a big-endian uint32. Raises struct.error when the header is cut short."""
    (magic,) = struct.unpack_from(">I", content)
    dims = struct.unpack_from(f">{magic & 0xFF}I", content, 4)
    return tuple(dims), 4 + 4 * len(dims)


def _fix(copy: FashionMNISTCopy, download: bool | None, missing: bool = False) -> str:
    """What to do about a bad or missing file of ``copy``, which depends on where the copy is, on whether
    Debian's copy is there to fall back on, and on whether the command may download (None: not known)."""
    if copy.layout == "system":
        reinstall = f"reinstall with `apt-get install --reinstall {DEBIAN_PACKAGE}`"
        return reinstall if missing else f"delete it and {reinstall}"
    source = f"the .gz from torchvision's mirror {tvd.FashionMNIST.mirrors[0]} or Debian's package {DEBIAN_PACKAGE}"
    replace = f"copy it in (gzipped or not; {source})" if missing else f"replace it with an intact copy ({source})"
    allow = "run without --no-download" if download is False else "allow the download"
    if copy.layout == "torchvision":  # the download completes an incomplete copy there (an interrupted one's)
        return f"{replace}, or {allow}" if missing else f"{replace}, or delete it and {allow} to download it again"
    # A flat copy hides the others: poolbench reads Debian's folder, or downloads, only once no file is left.
    files = "the other files" if missing else f"the four files in {copy.folder}"
    if _has_system_copy(copy.folder):
        return f"{replace}, or delete {files} to use Debian's copy in {SYSTEM_FOLDER}"
    if download is False:
        return f"{replace}, or delete {files}, then `apt-get install {DEBIAN_PACKAGE}` or {allow}"
    return f"{replace}, or delete {files} to download again"


def _has_system_copy(besides: Path) -> bool:
    """Whether Debian's folder holds all four files and is not ``besides`` itself."""
    system = SYSTEM_FOLDER
    return not _same_folder(besides, system) and all(
        (system / name).is_file() or (system / f"{name}.gz").is_file() for name in _FILES)


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False
