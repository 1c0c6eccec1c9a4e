"""Which data sets this machine holds, and whether each is intact: ``poolbench data`` as data.

Nothing here downloads. CIFAR is checked with torchvision's md5 lists, FashionMNIST with
:func:`.fmnist.verify` (the SHA-256 of each decompressed file), wherever :func:`.fmnist.find_copy`
finds it; scikit-learn's digits and the generated diagnostic tasks need no files.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from torchvision import datasets as tvd
from torchvision.datasets.utils import check_integrity

from . import fmnist
from .common import DataMissingError, one_line
from .datasets import SUBSETS, default_root, describe, load, names
from .diagnostics import DIAGNOSTICS


def available(root: Path | None = None) -> list[dict[str, Any]]:
    """One record per data set of :func:`.names`, for data root ``root`` (default :func:`.default_root`).

    Each record: ``name``; ``found``; ``where`` (the folder or file, or ``"scikit-learn"`` /
    ``"generated"``); ``layout`` (``"torchvision"``, ``"archive"``, ``"flat"``, ``"system"`` or
    None); ``verified`` (None where there is nothing to verify or nothing found); ``problem`` (the
    one-line reason when found but not intact); ``train_images`` and ``test_images`` (None unless
    the data set is usable as it is).
    """
    root = Path(root).expanduser() if root is not None else default_root()
    records = []
    for name in names():
        if name in ("cifar10", "cifar100"):
            records.append(_cifar(name, root))
        elif name == "fmnist":
            records.append(_fmnist(root))
        elif name == "digits":
            records.append(_digits())
        elif name in SUBSETS:  # found and intact where its source is; its own counts
            source, _ = SUBSETS[name]
            record = dict(next(r for r in records if r["name"] == source), name=name)
            if record["train_images"] is not None:
                record["train_images"] = describe(name).train_images
            records.append(record)
        else:
            task = DIAGNOSTICS[name]
            records.append(_record(name, found=True, where="generated", train_images=task.train_size,
                                   test_images=task.test_size))
    return records


def _record(name: str, **fields: Any) -> dict[str, Any]:
    record = {"name": name, "found": False, "where": None, "layout": None, "verified": None, "problem": None,
              "train_images": None, "test_images": None}
    record.update(fields)
    return record


def _cifar(name: str, root: Path) -> dict[str, Any]:
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    folder, archive = root / cls.base_folder, root / cls.filename
    if folder.is_dir():
        files = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        bad = [file for file, md5 in files if not check_integrity(str(folder / file), md5)]
        if bad:
            return _record(name, found=True, where=str(folder), layout="torchvision", verified=False, problem=(
                f"{name} in {folder} is not intact: {', '.join(bad)} missing or not matching torchvision's md5; "
                f"replace {'it' if len(bad) == 1 else 'them'}, or delete the folder to download again"))
        return _record(name, found=True, where=str(folder), layout="torchvision", verified=True,
                       train_images=_count(folder, cls.train_list), test_images=_count(folder, cls.test_list))
    if archive.is_file():  # unpacked by the first load; until then only the archive's md5 can be checked
        if check_integrity(str(archive), cls.tgz_md5):
            return _record(name, found=True, where=str(archive), layout="archive", verified=True)
        return _record(name, found=True, where=str(archive), layout="archive", verified=False, problem=(
            f"{name} archive {archive} does not match torchvision's md5 (truncated or another file); "
            f"replace it, or delete it to download again"))
    return _record(name)


def _count(folder: Path, files: list[list[str]]) -> int:
    """Images in CIFAR batch files: the rows of each pickle's ``data``."""
    total = 0
    for file, _ in files:
        with open(folder / file, "rb") as f:
            total += len(pickle.load(f, encoding="latin1")["data"])
    return total


def _fmnist(root: Path) -> dict[str, Any]:
    copy = fmnist.find_copy(root)
    if copy is None:
        return _record("fmnist")
    where = {"where": str(copy.folder), "layout": copy.layout}
    try:
        fmnist.verify(copy)
    except DataMissingError as err:
        return _record("fmnist", found=True, verified=False, problem=str(err), **where)
    train, test = fmnist.image_counts(copy)
    return _record("fmnist", found=True, verified=True, train_images=train, test_images=test, **where)


def _digits() -> dict[str, Any]:
    try:
        digits = load("digits")
    except ImportError as err:  # scikit-learn is a dependency, but an installation can still lack it
        return _record("digits", problem=one_line(err))
    return _record("digits", found=True, where="scikit-learn", train_images=len(digits.train_labels),
                   test_images=len(digits.test_labels))
