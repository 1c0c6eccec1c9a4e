"""Data sets as whole uint8 tensors: download, checksum, parse, and the normalisation constants.

Every data set comes back as an :class:`ImageData`: uint8 images ``[N, 3, 32, 32]`` plus int64 labels
for both splits, and the per-channel mean/std the protocol normalises with. For CIFAR the file
formats, the download URLs and the md5 checks are torchvision's own code; FashionMNIST is found, verified
and parsed by :mod:`.fmnist` (any intact copy, torchvision downloading it only when there is none). This
module converts their output and turns every way a load can fail into one readable :class:`DataMissingError`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tvd
from torchvision.datasets.utils import check_integrity, extract_archive
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..core.quoting import quote
from ..core.setting_spec import dataset_prefix
from . import custom
from .common import DOWNLOAD_TIMEOUT_S, DataMissingError, one_line, socket_timeout
from .diagnostics import DIAGNOSTICS
from .fmnist import load_fmnist_arrays
from .images import DataInfo, ImageData, channel_stats  # defined there, re-exported from here

# DataMissingError and DOWNLOAD_TIMEOUT_S live in .common (fmnist.py raises and uses them too) and are
# found here as before; setting DOWNLOAD_TIMEOUT_S on this module sets it for every download this
# module starts, FashionMNIST's included (it is passed on to load_fmnist_arrays).

# Published training-set statistics, in [0, 1] units. CIFAR: the true per-channel std over all
# training pixels (not the often-copied (0.2023, 0.1994, 0.2010), which is a different statistic).
_CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
# FashionMNIST: the constants of the 28x28 originals, used as-is after the resize to 32x32 because
# that is what the reference harness (Resize(32) -> ToTensor -> Normalize) does; the stats of the
# upsampled images differ only in the third decimal, which the network absorbs in its first BN.
_FMNIST_STATS = ((0.2860,) * 3, (0.3530,) * 3)

#: (classes, train images, test images) of every data set poolbench names, before any subset.
_SIZES: dict[str, tuple[int, int, int]] = {
    "cifar10": (10, 50_000, 10_000), "cifar100": (100, 50_000, 10_000), "fmnist": (10, 60_000, 10_000),
    "digits": (10, 1_437, 360),
    **{name: (task.num_classes, task.train_size, task.test_size) for name, task in DIAGNOSTICS.items()},
}

#: Class-balanced training subsets of a data set: name -> (data set, images per class). The subset is
#: the first ``per_class`` training images of each class in the files' order (the same on every
#: machine; no randomness); the test set stays whole. Sized for the real-data suite on 2 CPU cores.
SUBSETS: dict[str, tuple[str, int]] = {"fmnist-5k": ("fmnist", 500)}

_NAMES = ["cifar10", "cifar100", "digits", "fmnist", *SUBSETS, *DIAGNOSTICS]


def is_custom(name: str) -> bool:
    """Whether ``name`` is a data set of the user's own: ``imagefolder:PATH`` or ``npz:FILE``."""
    return dataset_prefix(name) is not None


def default_root() -> Path:
    """``$POOLBENCH_DATA`` if set, else ``$XDG_CACHE_HOME`` (or ``~/.cache``) + ``/poolbench/data``."""
    if os.environ.get("POOLBENCH_DATA"):
        return Path(os.environ["POOLBENCH_DATA"]).expanduser().absolute()  # see cli.anchor_path_variables
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "poolbench" / "data"


def names() -> list[str]:
    """The data sets :func:`load` knows."""
    return list(_NAMES)


def describe(name: str, image_size: int | None = None) -> DataInfo:
    """Classes, image shape and split sizes of data set ``name`` at ``image_size`` (None: its own
    size, 32 for poolbench's data sets), cheaply: nothing is decoded. ValueError for an unknown name."""
    if is_custom(name):
        return custom.describe(name, image_size)
    if name not in _NAMES:
        raise ValueError(f"unknown data set {quote(name)}: choose one of {', '.join(_NAMES)}, "
                         "imagefolder:PATH or npz:FILE")
    if name in SUBSETS:
        source, per_class = SUBSETS[name]
        classes, _, test = _SIZES[source]
        train = classes * per_class
    else:
        classes, train, test = _SIZES[name]
    side = image_size or 32
    return DataInfo(name, classes, (3, side, side), train, test)


def load(name: str, root: str | Path | None = None, download: bool = True,
         image_size: int | None = None, log: Callable[[str], None] | None = None) -> ImageData:
    """Load data set ``name`` from ``root`` (default :func:`default_root`), downloading it if allowed.

    ``digits`` is scikit-learn's bundled 8x8 digits and the diagnostic tasks (``majority``,
    ``count``, ``brightest``, ``salient``) are generated; neither touches ``root``. ``fmnist-5k``
    is FashionMNIST's class-balanced training subset (see :data:`SUBSETS`). ``imagefolder:PATH``
    and ``npz:FILE`` are the user's own (see :mod:`.custom`). ``image_size`` resizes every image
    once to N x N (antialiased bilinear); None keeps 32 x 32 (a custom data set's own size).
    ``log`` gets one line on how a custom data set was read (decoded, or from the cache).
    Raises :class:`DataMissingError` when the files are absent or corrupt and cannot be downloaded.
    """
    if is_custom(name):
        return custom.load_custom(name, image_size, log=log)
    if name not in _NAMES:
        raise ValueError(f"unknown data set {quote(name)}: choose one of {', '.join(_NAMES)}, "
                         "imagefolder:PATH or npz:FILE")
    if name in SUBSETS:
        source, per_class = SUBSETS[name]
        data = _balanced_subset(load(source, root, download, image_size, log), per_class)
        return dataclasses.replace(data, name=name)
    if name == "digits":
        data = _load_digits()
    elif name in DIAGNOSTICS:
        data = _load_diagnostic(name)
    else:
        root = Path(root).expanduser() if root is not None else default_root()
        if name == "fmnist":  # resized once from its 28 x 28 originals, as the harness resizes to 32
            return _load_fmnist(root, download, image_size or 32)
        data = _load_cifar(name, root, download)
    return resized(data, image_size)


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


def _balanced_subset(data: ImageData, per_class: int) -> ImageData:
    """The first ``per_class`` training images of each class, in the files' order; test set whole."""
    keep = torch.cat([torch.nonzero(data.train_labels == k).flatten()[:per_class]
                      for k in range(data.num_classes)]).sort().values
    return dataclasses.replace(data, train_images=data.train_images[keep].contiguous(),
                               train_labels=data.train_labels[keep])


# ---------------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100


def _load_cifar(name: str, root: Path, download: bool) -> ImageData:
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    files = [f for f, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]
    expected = f"{cls.base_folder}/{{{','.join(files)}}} or the archive {cls.filename}"
    how = f"download {cls.url} into {root} (it is unpacked on load), or pass --data-root DIR"
    archives = [(root / cls.filename, cls.tgz_md5, root, root / cls.base_folder)]
    train, test = _open(name, cls, root, download, archives, expected, how)

    def images(ds) -> torch.Tensor:  # .data is uint8 NHWC numpy
        return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()

    mean, std = _CIFAR10_STATS if name == "cifar10" else _CIFAR100_STATS
    return _checked(name, root, ImageData(
        name=name,
        train_images=images(train),
        train_labels=torch.as_tensor(train.targets, dtype=torch.int64),
        test_images=images(test),
        test_labels=torch.as_tensor(test.targets, dtype=torch.int64),
        num_classes=10 if name == "cifar10" else 100,
        mean=mean,
        std=std,
    ))


# ---------------------------------------------------------------------------------------------------
# FashionMNIST


def _load_fmnist(root: Path, download: bool, size: int = 32) -> ImageData:
    (train_images, train_labels, test_images, test_labels), _ = load_fmnist_arrays(
        root, download, timeout_s=DOWNLOAD_TIMEOUT_S)
    mean, std = _FMNIST_STATS
    return _checked("fmnist", root, ImageData(
        name="fmnist",
        train_images=_to_rgb32(train_images.unsqueeze(1), size),
        train_labels=train_labels,
        test_images=_to_rgb32(test_images.unsqueeze(1), size),
        test_labels=test_labels,
        num_classes=10,
        mean=mean,
        std=std,
    ))


# ---------------------------------------------------------------------------------------------------
# scikit-learn digits: real data that ships with scikit-learn, for runs without any download


def _load_digits() -> ImageData:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are counts 0..16 (of 4x4 blocks of a 32x32 bitmap); stretch them to 0..255.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = _to_rgb32(torch.from_numpy(pixels).unsqueeze(1))
    labels = torch.from_numpy(digits.target.astype(np.int64))
    # A fixed stratified split: the same 1437/360 images on every machine and every call.
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=digits.target, random_state=0
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    train_images = images[train_idx].contiguous()
    # No published constants exist for the upscaled images, so measure them on the training split.
    mean, std = channel_stats(train_images)
    return ImageData(
        name="digits",
        train_images=train_images,
        train_labels=labels[train_idx],
        test_images=images[test_idx].contiguous(),
        test_labels=labels[test_idx],
        num_classes=10,
        mean=mean,
        std=std,
    )


# ---------------------------------------------------------------------------------------------------
# generated diagnostic tasks (see poolbench.data.diagnostics)


def _load_diagnostic(name: str) -> ImageData:
    task = DIAGNOSTICS[name]
    train_images, train_labels, test_images, test_labels = task.generate()
    mean, std = channel_stats(train_images)  # mostly black images: measured, not ImageNet's
    return ImageData(name=name, train_images=train_images, train_labels=train_labels, test_images=test_images,
                     test_labels=test_labels, num_classes=task.num_classes, mean=mean, std=std)


# ---------------------------------------------------------------------------------------------------
# helpers


def _to_rgb32(grey: torch.Tensor, size: int = 32) -> torch.Tensor:
    """uint8 ``[N, 1, h, w]`` -> uint8 ``[N, 3, size, size]`` (32 unless ``--image-size`` says otherwise):
    bilinear resize once, grey copied to 3 channels.

    torchvision's uint8 bilinear resize with antialias matches PIL's ``Image.resize(BILINEAR)``, i.e.
    what ``transforms.Resize(32)`` does to each PIL image in the reference harness.
    """
    resized = TF.resize(grey, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return resized.expand(-1, 3, -1, -1).contiguous()


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
            with socket_timeout(DOWNLOAD_TIMEOUT_S):
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


def _checked(name: str, root: Path, data: ImageData) -> ImageData:
    """Reject files that parsed but hold the wrong shapes or labels (e.g. a different data set)."""
    problems = []
    for split, images, labels in (("train", data.train_images, data.train_labels),
                                  ("test", data.test_images, data.test_labels)):
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            problems.append(f"{split} images are {images.dtype} {tuple(images.shape)}")
        if len(labels) != len(images):
            problems.append(f"{split} has {len(images)} images but {len(labels)} labels")
        elif len(labels) and not (0 <= int(labels.min()) and int(labels.max()) < data.num_classes):
            problems.append(f"{split} labels outside 0..{data.num_classes - 1}")
    if problems:
        raise DataMissingError(f"{name} under {root} is corrupt: {'; '.join(problems)}")
    return data
