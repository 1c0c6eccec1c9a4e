"""Procedurally generated diagnostic data sets that separate pooling families in CPU-minutes.

Each image is a black 32x32 canvas divided into an 8x8 grid of 4x4 cells; a few cells hold a
small coloured square (3x3 pixels at a random offset inside its cell, so squares never touch).
Every data set draws its images from a fixed generator seed, so the same images come back on
every machine and every call; a run's seed changes only its training, never its data.

The label is a property that one pooling family can read off the feature map and the other
cannot:

``majority`` (favours mean-type pooling)
    4 classes, one colour each (red, green, blue, yellow). Every colour appears: the three
    others on 1-2 squares each, the class colour on 2-3 squares more than the most frequent
    other (6-11 squares in all). A maximum over positions only sees which colours are present
    (all of them), so it cannot tell; an average counts them.

``count`` (favours mean-type pooling)
    6 classes: 3, 5, 7, 9, 11 or 13 squares, each of a random colour of the six-colour
    palette. Presence is the same in every class; only the number of squares differs.

``brightest`` (favours max-type pooling)
    4 classes (red, green, blue, yellow); the class is the colour of the single brightest
    square. That colour appears on that one square only, each other colour on 2-4 dimmer
    squares (7-13 squares in all), so a sum over positions points at a wrong colour. The
    brightest level is drawn per image (40-100 % of full) and every other square's from 20 %
    to 15 points below it: no fixed brightness threshold separates the classes, only a
    comparison of per-colour maxima.

``salient`` (favours max-type pooling)
    4 classes (red, green, blue, yellow). One bright square of the class colour among 6-12
    dim squares (25-45 %) of the other colours, with mild pixel noise everywhere: one position
    decides, the rest is distraction that an average dilutes it with.

What they test: whether a pooling can read a count or proportion (mean side) and whether it
can single out one position (max side), and how fast it learns to at the task's learning rate.
What they do not test: accuracy on natural images. A pooling's profile across these tasks,
its *fingerprint*, describes the pooling; it does not predict CIFAR accuracy.

Each task of :data:`DIAGNOSTICS` is registered in :data:`poolbench.data.datasets.DATASETS` with
:func:`load` and :func:`available`; a new task is one entry of :data:`DIAGNOSTICS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import record
from .images import DataSet, ImageData

#: Colours as RGB in [0, 1]; the four-class tasks use the first four.
PALETTE = np.array([
    [1.00, 0.15, 0.10],  # red
    [0.10, 0.85, 0.15],  # green
    [0.15, 0.35, 1.00],  # blue
    [0.95, 0.85, 0.10],  # yellow
    [0.10, 0.85, 0.90],  # cyan
    [0.85, 0.15, 0.90],  # magenta
])

IMAGE_SIZE, CELL, SQUARE = 32, 4, 3
GRID = IMAGE_SIZE // CELL  # 8 x 8 cells


@dataclass(frozen=True)
class Diagnostic:
    """A generated data set: its size, classes, the family theory favours, and its generator."""

    name: str
    num_classes: int
    favours: str  # "mean" or "max"
    draw: Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]  # rng, n -> images, labels
    train_size: int = 1600
    test_size: int = 800
    seed: int = 0  # the data's own seed: fixed, independent of the run's

    def generate(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(train images, train labels, test images, test labels): uint8 ``[N, 3, 32, 32]``, int64."""
        train = self.draw(np.random.default_rng([self.seed, 0]), self.train_size)
        test = self.draw(np.random.default_rng([self.seed, 1]), self.test_size)
        return (*_to_tensors(*train), *_to_tensors(*test))


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels.astype(np.int64))


def _render(rng: np.random.Generator, squares: list[list[tuple[int, float]]], noise: float = 0.0) -> np.ndarray:
    """uint8 NHWC images; ``squares[i]`` lists (colour index, brightness) of image i's squares."""
    images = np.zeros((len(squares), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    for image, content in zip(images, squares, strict=True):
        cells = rng.choice(GRID * GRID, size=len(content), replace=False)
        offsets = rng.integers(0, CELL - SQUARE + 1, size=(len(content), 2))
        for (colour, level), cell, (dy, dx) in zip(content, cells, offsets, strict=True):
            y, x = cell // GRID * CELL + dy, cell % GRID * CELL + dx
            image[y:y + SQUARE, x:x + SQUARE] = PALETTE[colour] * level
    if noise:
        images += rng.normal(0.0, noise, size=images.shape).astype(np.float32)
    return np.rint(np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)


def _shuffled(rng: np.random.Generator, content: list[tuple[int, float]]) -> list[tuple[int, float]]:
    return [content[i] for i in rng.permutation(len(content))]


def draw_majority(rng: np.random.Generator, n: int, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, size=n)
    squares = []
    for label in labels:
        others = rng.integers(1, 3, size=classes - 1)  # every other colour on 1-2 squares
        majority = others.max() + rng.integers(2, 4)  # the class colour on 2-3 more
        colours = [c for c in range(classes) if c != label]
        content = [(int(label), 1.0)] * int(majority)
        content += [(c, 1.0) for c, k in zip(colours, others, strict=True) for _ in range(k)]
        squares.append(_shuffled(rng, content))
    return _render(rng, squares), labels


COUNTS = (3, 5, 7, 9, 11, 13)


def draw_count(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, len(COUNTS), size=n)
    squares = [[(int(c), 1.0) for c in rng.integers(0, len(PALETTE), size=COUNTS[label])] for label in labels]
    return _render(rng, squares), labels


def draw_brightest(rng: np.random.Generator, n: int, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, size=n)
    squares = []
    for label in labels:
        top = rng.uniform(0.4, 1.0)
        content = [(int(label), top)]
        for colour in range(classes):
            if colour != label:
                content += [(colour, rng.uniform(0.2, top - 0.15)) for _ in range(rng.integers(2, 5))]
        squares.append(_shuffled(rng, content))
    return _render(rng, squares), labels


def draw_salient(rng: np.random.Generator, n: int, classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, classes, size=n)
    squares = []
    for label in labels:
        others = [c for c in range(classes) if c != label]
        content = [(int(label), 1.0)]
        content += [(int(rng.choice(others)), rng.uniform(0.25, 0.45)) for _ in range(rng.integers(6, 13))]
        squares.append(_shuffled(rng, content))
    return _render(rng, squares, noise=0.03), labels


DIAGNOSTICS: dict[str, Diagnostic] = {d.name: d for d in [
    Diagnostic("majority", 4, "mean", draw_majority),
    Diagnostic("count", len(COUNTS), "mean", draw_count),
    Diagnostic("brightest", 4, "max", draw_brightest),
    Diagnostic("salient", 4, "max", draw_salient),
]}


def load(dataset: DataSet, root: Path, download: bool, image_size: int | None = None) -> ImageData:
    """Task ``dataset.name``'s generated splits; ``root``, ``download`` and ``image_size`` are not used
    (the caller resizes). Mostly black images: the statistics are measured, not ImageNet's."""
    train_images, train_labels, test_images, test_labels = DIAGNOSTICS[dataset.name].generate()
    mean, std = dataset.stats(train_images)
    return ImageData(name=dataset.name, train_images=train_images, train_labels=train_labels,
                     test_images=test_images, test_labels=test_labels, num_classes=dataset.num_classes,
                     mean=mean, std=std)


def available(dataset: DataSet, root: Path, found: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Always found: generated on load."""
    return record(dataset.name, found=True, where="generated", train_images=dataset.train_size,
                  test_images=dataset.test_size)
