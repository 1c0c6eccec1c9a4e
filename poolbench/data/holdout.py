"""The validation split: training images held out of training to choose an epoch without the test set.

``--val-split N`` holds out N training images, class-balanced (``N // K`` of every class, one more
of the first ``N % K`` classes), chosen by a generator with a fixed seed from each class's images.
The choice depends only on the data set's labels: every seed and every pooling holds out the
same images, so their runs stay paired. The normalisation statistics stay those of the whole
training split, so a run with a split normalises exactly as one without.
"""

from __future__ import annotations

import dataclasses

import torch

from .images import ImageData

HOLDOUT_SEED = 0  # fixed: the split is the data set's, not the run's


class HoldoutError(ValueError):
    """A split the training images cannot give; the message is one line with the fix."""


def held_out(labels: torch.Tensor, count: int, num_classes: int) -> torch.Tensor:
    """Indices of the ``count`` training images held out, class-balanced, sorted."""
    generator = torch.Generator().manual_seed(HOLDOUT_SEED)
    chosen = []
    for label in range(num_classes):
        members = (labels == label).nonzero().flatten()
        take = count // num_classes + (label < count % num_classes)
        if take >= len(members):
            raise HoldoutError(f"--val-split {count} holds out {take} images of class {label}, which has "
                               f"{len(members)} training images: hold out fewer (at most "
                               f"{num_classes * (min_class_size(labels, num_classes) - 1)}), or none")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:take]])
    return torch.cat(chosen).sort().values


def min_class_size(labels: torch.Tensor, num_classes: int) -> int:
    return int(torch.bincount(labels, minlength=num_classes).min())


def split(data: ImageData, count: int) -> ImageData:
    """``data`` with ``count`` training images moved to ``val_images``/``val_labels``."""
    if count == 0:
        return data
    held = held_out(data.train_labels, count, data.num_classes)
    keep = torch.ones(len(data.train_labels), dtype=torch.bool)
    keep[held] = False
    return dataclasses.replace(data, train_images=data.train_images[keep].contiguous(),
                               train_labels=data.train_labels[keep], val_images=data.train_images[held].contiguous(),
                               val_labels=data.train_labels[held])
