"""The data sets poolbench names, in one registry, and what reads it: :func:`names`, :func:`describe`,
:func:`load`.

Every data set comes back as an :class:`ImageData`: uint8 images ``[N, 3, 32, 32]`` plus int64 labels
for both splits, and the per-channel mean/std the protocol normalises with. Each named data set is one
:class:`DataSet` record of :data:`DATASETS` (classes, split sizes, published statistics, its loader
and its availability check); the loaders live in their own modules (:mod:`.cifar`, :mod:`.fmnist`,
:mod:`.digits`, :mod:`.diagnostics`) and nothing here branches on a data set's name. A data set of
the user's own (``imagefolder:PATH``, ``npz:FILE``) is :mod:`.custom`'s.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..core.quoting import quote
from ..core.setting_spec import dataset_prefix
from . import cifar, custom, diagnostics, digits, fmnist
from .common import (
    DataMissingError,  # noqa: F401  (defined there, found here as before)
    user_folder,
)
from .images import DataInfo, DataSet, ImageData, channel_stats  # noqa: F401  (defined there, re-exported from here)

# DOWNLOAD_TIMEOUT_S lives in .common, which every loader reads at call time: set it there
# (``poolbench.data.common.DOWNLOAD_TIMEOUT_S``) to bound every download.


def subset(name: str, source: DataSet, per_class: int) -> DataSet:
    """A class-balanced training subset of ``source``: the first ``per_class`` training images of each
    class in the files' order (the same on every machine; no randomness); the test set stays whole.
    Found and intact wherever ``source`` is."""
    return DataSet(name, source.num_classes, source.num_classes * per_class, source.test_size,
                   load=functools.partial(_load_subset, source, per_class),
                   available=functools.partial(_subset_available, source))


def _load_subset(source: DataSet, per_class: int, dataset: DataSet, root: Path, download: bool,
                 image_size: int | None = None) -> ImageData:
    data = _read(source, root, download, image_size)
    keep = torch.cat([torch.nonzero(data.train_labels == k).flatten()[:per_class]
                      for k in range(data.num_classes)]).sort().values
    return dataclasses.replace(data, name=dataset.name, train_images=data.train_images[keep].contiguous(),
                               train_labels=data.train_labels[keep])


def _subset_available(source: DataSet, dataset: DataSet, root: Path,
                      found: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Its source's record (registered before it, so already in ``found``) under its own name and counts."""
    record = dict(found[source.name], name=dataset.name)
    if record["train_images"] is not None:
        record["train_images"] = dataset.train_size
    return record


_CIFAR10 = DataSet("cifar10", 10, 50_000, 10_000, cifar.load, cifar.available,
                   # Published training-set statistics, in [0, 1] units: the true per-channel std over all
                   # training pixels (not the often-copied (0.2023, 0.1994, 0.2010), a different statistic).
                   mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
_CIFAR100 = DataSet("cifar100", 100, 50_000, 10_000, cifar.load, cifar.available,
                    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762))
# scikit-learn's bundled 8x8 digits, upscaled: no published constants, so measured on its training split.
_DIGITS = DataSet("digits", 10, 1_437, 360, digits.load, digits.available)
# FashionMNIST: the constants of the 28x28 originals, used as-is after the resize to 32x32 because that is
# what the reference harness (Resize(32) -> ToTensor -> Normalize) does; the stats of the upsampled
# images differ only in the third decimal, which the network absorbs in its first BN.
_FMNIST = DataSet("fmnist", 10, 60_000, 10_000, fmnist.load, fmnist.available, mean=(0.2860,) * 3, std=(0.3530,) * 3)

#: Every data set poolbench names, in the order ``poolbench list`` and ``poolbench data`` show them.
#: A new one is one record here (and its loader module); a subset of one is ``subset(...)``; a
#: generated task is one entry of :data:`.diagnostics.DIAGNOSTICS`.
DATASETS: dict[str, DataSet] = {dataset.name: dataset for dataset in [
    _CIFAR10,
    _CIFAR100,
    _DIGITS,
    _FMNIST,
    # FashionMNIST's subset for the real-data suite: sized for 2 CPU cores.
    subset("fmnist-5k", _FMNIST, per_class=500),
    *(DataSet(task.name, task.num_classes, task.train_size, task.test_size, diagnostics.load,
              diagnostics.available) for task in diagnostics.DIAGNOSTICS.values()),
]}


def is_custom(name: str) -> bool:
    """Whether ``name`` is a data set of the user's own: ``imagefolder:PATH`` or ``npz:FILE``."""
    return dataset_prefix(name) is not None


def default_root() -> Path:
    """``$POOLBENCH_DATA`` if set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) + ``/poolbench/data``."""
    return user_folder("POOLBENCH_DATA", "data")


def names() -> list[str]:
    """The data sets :func:`load` knows."""
    return list(DATASETS)


def registered(name: str) -> DataSet:
    """The record of data set ``name``; ValueError, listing the names, for an unknown one."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {quote(name)}: choose one of {', '.join(DATASETS)}, "
                         "imagefolder:PATH or npz:FILE")
    return DATASETS[name]


def describe(name: str, image_size: int | None = None) -> DataInfo:
    """Classes, image shape and split sizes of data set ``name`` at ``image_size`` (None: its own
    size, 32 for poolbench's data sets), cheaply: nothing is decoded. ValueError for an unknown name."""
    if is_custom(name):
        return custom.describe(name, image_size)
    return registered(name).info(image_size)


def load(name: str, root: str | Path | None = None, download: bool = True,
         image_size: int | None = None, log: Callable[[str], None] | None = None) -> ImageData:
    """Load data set ``name`` from ``root`` (default :func:`default_root`), downloading it if allowed.

    ``digits`` is scikit-learn's bundled 8x8 digits and the diagnostic tasks (``majority``,
    ``count``, ``brightest``, ``salient``) are generated; neither touches ``root``. ``fmnist-5k``
    is FashionMNIST's class-balanced training subset (see :func:`subset`). ``imagefolder:PATH``
    and ``npz:FILE`` are the user's own (see :mod:`.custom`). ``image_size`` resizes every image
    once to N x N (antialiased bilinear); None keeps 32 x 32 (a custom data set's own size).
    ``log`` gets one line on how a custom data set was read (decoded, or from the cache).
    Raises :class:`DataMissingError` when the files are absent or corrupt and cannot be downloaded.
    """
    if is_custom(name):
        return custom.load_custom(name, image_size, log=log)
    dataset = registered(name)
    return _read(dataset, Path(root).expanduser() if root is not None else default_root(), download, image_size)


def _read(dataset: DataSet, root: Path, download: bool, image_size: int | None) -> ImageData:
    """``dataset`` through its loader, at ``image_size`` (resized here unless the loader did)."""
    return resized(dataset.load(dataset, root, download, image_size), image_size)


def resized(data: ImageData, image_size: int | None) -> ImageData:
    """``data`` with every image resized once to ``image_size`` squared (antialiased bilinear, as
    PIL's resize); the normalisation constants are measured again on the resized training split."""
    if image_size is None or tuple(data.train_images.shape[2:]) == (image_size, image_size):
        return data

    def resize(images: torch.Tensor) -> torch.Tensor:
        return TF.resize(images, [image_size, image_size], interpolation=InterpolationMode.BILINEAR,
                         antialias=True).contiguous()

    train_images = resize(data.train_images)
    mean, std = channel_stats(train_images)
    return dataclasses.replace(data, train_images=train_images, test_images=resize(data.test_images),
                               mean=mean, std=std)
