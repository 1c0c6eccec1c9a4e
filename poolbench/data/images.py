"""The in-memory form every data set takes (:class:`ImageData`), what is known of it before decoding
(:class:`DataInfo`), and its channel statistics.

Its own module, below both ``datasets.py`` (the named data sets) and ``custom.py`` (the researcher's
own folders and ``.npz`` files), so that each can use them and ``datasets.load`` can call into
``custom.py`` without an import cycle. ``datasets.py`` re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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
