"""The in-memory form every data set takes (:class:`ImageData`), what is known of it before decoding
(:class:`DataInfo`), the record a built-in data set is registered with (:class:`DataSet`), and
what their loaders share (:func:`channel_stats`, :func:`grey_to_rgb`, :func:`checked`).

Its own module, below ``datasets.py`` (the registry of the named data sets), their loader modules
(``cifar.py``, ``fmnist.py``, ``digits.py``, ``diagnostics.py``) and ``custom.py`` (the
researcher's own folders and ``.npz`` files), so that each can use them and ``datasets.load`` can
call into the others without an import cycle. ``datasets.py`` re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .common import DataMissingError

#: The smallest std :func:`channel_stats` gives: one grey level, in [0, 1] units.
STD_FLOOR = 1 / 255


@dataclass(frozen=True, eq=False)  # eq=False: a field-wise == would compare tensors, which is ambiguous
class ImageData:
    """Both splits of a data set as CPU tensors, and its normalisation constants."""

    name: str
    train_images: torch.Tensor  # uint8 [N, 3, H, W], contiguous, CPU; 32x32 for the named data sets
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor  # uint8 [M, 3, H, W]
    test_labels: torch.Tensor  # int64 [M]
    num_classes: int
    mean: tuple[float, ...]  # per channel, in [0, 1] units (pixel / 255)
    std: tuple[float, ...]
    val_images: torch.Tensor | None = None  # training images held out (poolbench.data.holdout), uint8
    val_labels: torch.Tensor | None = None


@dataclass(frozen=True)
class DataInfo:
    """What a data set holds, known without decoding its images: for the checks before a run
    (classes, memory), seed plans and listings."""

    name: str  # a poolbench data set's name, or the normalised imagefolder:/npz: spec
    num_classes: int
    image_shape: tuple[int, int, int]  # (3, H, W) as loaded, i.e. after --image-size
    train_images: int
    test_images: int
    classes: tuple[str, ...] = ()  # class names where the data has them (an image folder's sub-folders)
    test_split: str = "test"  # where the test images come from: "test" or "val" (imagefolder), "x_test" (npz)

    def bytes(self, crop_padding: int) -> int:
        """The bytes the device loaders hold: uint8 pixels (train padded by ``crop_padding`` on each
        side, as :class:`DeviceLoader` stores it; test unpadded) plus 8 bytes (int64) per label."""
        if crop_padding < 0:
            raise ValueError(f"crop padding must be >= 0, got {crop_padding}")
        channels, height, width = self.image_shape
        padded = (height + 2 * crop_padding) * (width + 2 * crop_padding) * channels
        return (self.train_images * padded + self.test_images * height * width * channels
                + 8 * (self.train_images + self.test_images))


#: A built-in data set's loader: ``(data set, data root, download allowed, --image-size or None)`` ->
#: both splits. It may resize to the image size itself (FashionMNIST resizes its 28 x 28 originals
#: once); :func:`poolbench.data.datasets.load` resizes whatever comes back at another size.
Loader = Callable[["DataSet", Path, bool, "int | None"], ImageData]
#: A built-in data set's availability check: ``(data set, data root, the records of the data sets
#: registered before it)`` -> its ``poolbench data`` record (:func:`poolbench.data.common.record`).
#: It never downloads.
Availability = Callable[["DataSet", Path, Mapping[str, dict[str, Any]]], dict[str, Any]]


@dataclass(frozen=True)
class DataSet:
    """A data set poolbench names: every fact about it, in one record of
    :data:`poolbench.data.datasets.DATASETS`.

    ``num_classes``, ``train_size`` and ``test_size`` are what :func:`~poolbench.data.datasets.describe`
    answers without decoding; ``mean`` and ``std`` are published per-channel training-set statistics
    in [0, 1] units that ``load`` normalises with (None: measured on the training split as loaded,
    :func:`channel_stats`); ``load`` reads both splits (:data:`Loader`) and ``available`` says whether
    this machine holds them, intact (:data:`Availability`).
    """

    name: str
    num_classes: int
    train_size: int
    test_size: int
    load: Loader
    available: Availability
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def stats(self, train_images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """The (mean, std) to normalise with: the published ones, else measured on ``train_images``."""
        if self.mean is not None and self.std is not None:
            return self.mean, self.std
        return channel_stats(train_images)

    def info(self, image_size: int | None = None) -> DataInfo:
        """Its classes, image shape (3 x ``image_size`` squared, 32 when None) and split sizes."""
        side = image_size or 32
        return DataInfo(self.name, self.num_classes, (3, side, side), self.train_size, self.test_size)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images ``[N, C, H, W]``, in [0, 1] units.

    Accumulated in float64 over chunks so that 50k CIFAR images need neither a float64 copy of
    the whole split nor suffer float32 round-off in the sums. A std below one grey level
    (:data:`STD_FLOOR`) is raised to it: normalising divides by the std, and a channel that is
    constant over the training split (std 0: legitimate data, e.g. a colour image saved from a
    grey one with a blank channel) would divide by zero; at the floor such a channel normalises to
    0 and a nearly constant one stays within +-255 instead of growing without bound.
    """
    if images.dtype != torch.uint8 or images.dim() != 4:
        raise ValueError(f"expected uint8 images [N, C, H, W], got {images.dtype} {tuple(images.shape)}")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64) / 255.0
        total += x.sum(dim=(0, 2, 3))
        total_sq += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() // channels
    mean = total / count
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt().clamp_min(STD_FLOOR)
    return tuple(mean.tolist()), tuple(std.tolist())


def grey_to_rgb(grey: torch.Tensor, size: int = 32) -> torch.Tensor:
    """uint8 ``[N, 1, h, w]`` -> uint8 ``[N, 3, size, size]`` (32 unless ``--image-size`` says otherwise):
    bilinear resize once, grey copied to 3 channels.

    torchvision's uint8 bilinear resize with antialias matches PIL's ``Image.resize(BILINEAR)``, i.e.
    what ``transforms.Resize(32)`` does to each PIL image in the reference harness.
    """
    resized = TF.resize(grey, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return resized.expand(-1, 3, -1, -1).contiguous()


def checked(root: Path, data: ImageData) -> ImageData:
    """``data``, or DataMissingError for files that parsed but hold the wrong shapes or labels
    (e.g. a different data set under the expected file names)."""
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
        raise DataMissingError(f"{data.name} under {root} is corrupt: {'; '.join(problems)}")
    return data
