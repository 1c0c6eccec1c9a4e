"""The in-memory form every data set takes (:class:`ImageData`), its error type and its channel statistics.

Its own module, below both ``datasets.py`` (the named data sets) and ``custom.py`` (the researcher's
own folders and ``.npz`` files), so that each can use them and ``datasets.load`` can call into
``custom.py`` without an import cycle. ``datasets.py`` re-exports all three names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


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


class DataMissingError(RuntimeError):
    """A data set cannot be used as it is on disk (missing, corrupt, malformed) and the user can fix that.

    The message is one line: what is wrong, which file or folder, and the fix.
    """


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std of uint8 images ``[N, C, H, W]``, in [0, 1] units.

    Accumulated in float64 over chunks so that 50k CIFAR images need neither a float64 copy of
    the whole split nor suffer float32 round-off in the sums.
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
    std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())
