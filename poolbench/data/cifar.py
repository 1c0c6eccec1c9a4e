"""CIFAR-10 and CIFAR-100: read (downloading if allowed) and checked with torchvision's own code.

The file formats, the download URLs and the md5 lists are torchvision's; this module converts its
output to an :class:`~poolbench.data.images.ImageData` and turns every way a load can fail into one
readable :class:`~poolbench.data.common.DataMissingError`. :func:`available` checks a copy by the
same md5 lists and never downloads. Both data sets are registered in
:data:`poolbench.data.datasets.DATASETS`, with their published statistics.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torchvision import datasets as tvd
from torchvision.datasets.utils import check_integrity, extract_archive

from . import common
from .common import DataMissingError, one_line, record, socket_timeout
from .images import DataSet, ImageData, checked

#: Registered name -> torchvision's class (CIFAR100 subclasses CIFAR10), which knows the files, URLs and md5s.
TORCHVISION: dict[str, type[tvd.CIFAR10]] = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}


def load(dataset: DataSet, root: Path, download: bool, image_size: int | None = None) -> ImageData:
    """Both splits of CIFAR ``dataset`` under ``root`` (downloaded there if allowed), at 32 x 32,
    normalised with the registered statistics. ``image_size`` is left to the caller."""
    name, cls = dataset.name, TORCHVISION[dataset.name]
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    expected = f"{cls.base_folder}/{{{','.join(files)}}} or the archive {cls.filename}"
    how = f"download {cls.url} into {root} (it is unpacked on load), or pass --data-root DIR"
    archives = [(root / cls.filename, cls.tgz_md5, root, root / cls.base_folder)]
    train, test = _open(name, cls, root, download, archives, expected, how)

    def images(ds) -> torch.Tensor:  # .data is uint8 NHWC numpy
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()

    train_images = images(train)
    mean, std = dataset.stats(train_images)
    return checked(root, ImageData(
        name=name,
        train_images=train_images,
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=images(test),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        num_classes=dataset.num_classes,
        mean=mean,
        std=std,
    ))


def available(dataset: DataSet, root: Path, found: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Whether ``root`` holds CIFAR ``dataset``: unpacked (each file checked by torchvision's md5),
    or as its archive (only the archive's md5 can be checked until the first load unpacks it)."""
    name, cls = dataset.name, TORCHVISION[dataset.name]
    folder, archive = root / cls.base_folder, root / cls.filename
    if folder.is_dir():
        files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        bad = [file for file, md5 in files if not check_integrity(str(folder / file), md5)]
        if bad:
            return record(name, found=True, where=str(folder), layout="torchvision", verified=False, problem=(
                f"{name} in {folder} is not intact: {', '.join(bad)} missing or not matching torchvision's md5; "
                f"replace {'it' if len(bad) == 1 else 'them'}, or delete the folder to download again"))
        return record(name, found=True, where=str(folder), layout="torchvision", verified=True,
                      train_images=_count(folder, cls.train_list), test_images=_count(folder, cls.test_list))
    if archive.is_file():
        if check_integrity(str(archive), cls.tgz_md5):
            return record(name, found=True, where=str(archive), layout="archive", verified=True)
        return record(name, found=True, where=str(archive), layout="archive", verified=False, problem=(
            f"{name} archive {archive} does not match torchvision's md5 (truncated or another file); "
            f"replace it, or delete it to download again"))
    return record(name)


def _count(folder: Path, files: list[list[str]]) -> int:
    """Images in CIFAR batch files: the rows of each pickle's ``data``."""
    total = 0
    for file, _ in files:
        with open(folder / file, "rb") as f:
            total += len(pickle.load(f, encoding="latin1")["data"])
    return total


def _extract_if_intact(archive: Path, md5: str, into: Path, done: Path) -> None:
    """Unpack a local archive whose md5 is right, unless its content (``done``) is already there."""
    if not done.exists() and check_integrity(str(archive), md5):
        extract_archive(str(archive), str(into))


def _open(name: str, cls: type, root: Path, download: bool, archives: list[tuple[Path, str, Path, Path]],
          expected: str, how: str) -> tuple:
    """Both splits of torchvision dataset ``cls``; any failure becomes a one-line DataMissingError.

    ``archives`` are (archive, md5, unpack into, unpacked content) of local archives to unpack first
    when downloads are not allowed: with ``download=True`` torchvision unpacks an intact archive
    itself without touching the network, but with ``download=False`` it never looks at it, so a
    copied-in archive would otherwise count as missing.
    """
    try:
        if not download:
            for archive, md5, into, done in archives:
                _extract_if_intact(archive, md5, into, done)
        if download:
            with socket_timeout(common.DOWNLOAD_TIMEOUT_S):
                train = cls(str(root), train=True, download=True)
        else:
            train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except Exception as err:  # any failure to read the files means the data is not usable
        reason = one_line(err)  # torchvision's messages span lines
        tried = "download failed" if download else "download not allowed"
        raise DataMissingError(
            f"{name} not found or corrupt under {root}: expected {expected}; {tried} ({reason}); "
            f"to get it: {how}"
        ) from err
    return train, test
