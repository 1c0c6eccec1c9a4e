"""The named benchmark settings and the training protocol.

A *setting* fixes the model, the data set and the pool input; the *protocol* fixes how
it is trained. Both are frozen dataclasses so that a run is fully described by plain data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Protocol:
    """How a model is trained and scored (SPEC section 1, identical for every setting).

    SGD with momentum and weight decay on all parameters, cross-entropy, cosine annealing
    to 0 stepped once per epoch, RandomCrop(32, padding=4) + horizontal flip, evaluation on
    the full test set after every epoch; the score is the best test accuracy.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    crop_padding: int = 4
    hflip: bool = True

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):  # nan and inf: every step would diverge
            problems.append(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {self.momentum}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            problems.append(f"weight decay must be a finite number >= 0, got {self.weight_decay}")
        if self.crop_padding < 0:
            problems.append(f"crop padding must be >= 0, got {self.crop_padding}")
        if problems:
            raise ValueError("invalid protocol: " + "; ".join(problems))

    def replace(self, **overrides) -> Protocol:
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Setting:
    """A benchmark setting: an architecture trained on a data set, and its pool input."""

    name: str
    arch: str
    dataset: str
    num_classes: int
    pool_input_shape: tuple[int, int, int] | None  # (C, H, W) the pooling sees; None: not tabled
    protocol: Protocol = Protocol()
    description: str = ""


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("resnet56-cifar100", "resnet56", "cifar100", 100, (64, 8, 8),
                description="ResNet-56 (CIFAR style) on CIFAR-100"),
        Setting("vgg16bn-cifar100", "vgg16bn", "cifar100", 100, (512, 1, 1),
                description="VGG-16-BN (CIFAR style) on CIFAR-100"),
        Setting("mobilenetv2-fmnist", "mobilenetv2", "fmnist", 10, (1280, 1, 1),
                description="MobileNetV2 (width 1.0) on FashionMNIST resized to 32x32"),
        # The embedded default: real data shipped with scikit-learn, no download, CPU-sized.
        Setting("quick", "resnet20", "digits", 10, (64, 8, 8),
                protocol=Protocol(epochs=10, batch_size=32, lr=0.01),
                description="ResNet-20 on scikit-learn's 8x8 digits, upscaled (no download)"),
    ]
}

# Classes per data set, needed to build a model before any data is loaded.
DATASET_CLASSES: dict[str, int] = {"cifar10": 10, "cifar100": 100, "fmnist": 10, "digits": 10}

BENCHMARK_SETTINGS: tuple[str, ...] = ("resnet56-cifar100", "vgg16bn-cifar100", "mobilenetv2-fmnist")


def setting_for(arch: str, dataset: str) -> Setting:
    """The named setting for ``arch`` on ``dataset``, or an ad-hoc one named ``arch-dataset``."""
    for setting in SETTINGS.values():
        if (setting.arch, setting.dataset) == (arch, dataset) and setting.name != "quick":
            return setting
    if dataset not in DATASET_CLASSES:
        raise ValueError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASET_CLASSES)}")
    return Setting(f"{arch}-{dataset}", arch, dataset, DATASET_CLASSES[dataset], None)


def get_setting(name: str) -> Setting:
    """The setting called ``name``; an unknown name lists the known ones."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {name!r}: choose one of {', '.join(SETTINGS)}")
    return SETTINGS[name]
