"""The named benchmark settings and the training protocol.

A *setting* fixes the model, the data set and the pool input; the *protocol* fixes how
it is trained. Both are frozen dataclasses so that a run is fully described by plain data.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .quoting import quote
from .setting_spec import normalise_arch, normalise_dataset, pair_label, split_setting


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
    image_size: int | None = None  # resize every image once at load to N x N; None: the data set's own size
    val_split: int = 0  # training images held out (class-balanced, fixed per data set) and evaluated every epoch

    def __post_init__(self) -> None:
        problems = []
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {quote(self.epochs)}")
        if self.batch_size < 1:
            problems.append(f"batch size must be >= 1, got {quote(self.batch_size)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):  # nan and inf: every step would diverge
            problems.append(f"lr must be a finite number > 0, got {quote(self.lr)}")
        if not 0 <= self.momentum < 1:
            problems.append(f"momentum must be in [0, 1), got {quote(self.momentum)}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            problems.append(f"weight decay must be a finite number >= 0, got {quote(self.weight_decay)}")
        if self.crop_padding < 0:
            problems.append(f"crop padding must be >= 0, got {quote(self.crop_padding)}")
        if self.val_split < 0:
            problems.append(f"val split must be >= 0 training images, got {quote(self.val_split)}")
        if self.image_size is not None and not 8 <= self.image_size <= 1024:
            problems.append(f"image size must be from 8 to 1024 pixels, got {quote(self.image_size)}")
        if problems:
            raise ValueError("invalid protocol: " + "; ".join(problems))

    def replace(self, **overrides) -> Protocol:
        """A copy with the given fields changed; ``None`` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def with_overrides(self, overrides: dict) -> Protocol:
        """This protocol with ``overrides``; a new ``image_size`` N scales the crop padding, stated for
        32 x 32 images, with it (``round(crop_padding * N / 32)``: 4 px at 32 is 8 at 64) unless the
        overrides give ``crop_padding`` too."""
        protocol = self.replace(**overrides)
        size = overrides.get("image_size")
        if size is not None and overrides.get("crop_padding") is None:
            protocol = dataclasses.replace(protocol, crop_padding=max(0, round(self.crop_padding * size / 32)))
        return protocol


def run_protocol(setting: Setting, overrides: dict) -> Protocol:
    """The protocol a run of ``setting`` trains with under ``overrides`` (None values ignored).

    A data set whose images are not 32 x 32 is loaded at its own size, and the crop padding follows
    the images' size: ``round(4 * N / 32)`` px at N x N (the published 4 px at 32), unless
    ``crop_padding`` is given.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    if setting.image_size != 32:
        given.setdefault("image_size", setting.image_size)
    return setting.protocol.with_overrides(given)


@dataclass(frozen=True)
class Setting:
    """A benchmark setting: an architecture trained on a data set, and its pool input.

    ``suites`` are the groups ``sweep --suite`` runs it in; ``favours`` is the pooling family
    theory favours on a diagnostic task (``"mean"`` or ``"max"``), None elsewhere. Its classes are
    the data set's (``poolbench.data.describe(setting.dataset).num_classes``, read through
    ``poolbench.training.catalog.num_classes``) and the (C, H, W) its pooling sees is measured on the
    model (``catalog.pool_input``): neither is restated here.
    """

    name: str
    arch: str
    dataset: str
    protocol: Protocol = Protocol()
    description: str = ""
    suites: tuple[str, ...] = ()
    favours: str | None = None
    image_size: int = 32  # the side of the data set's images as loaded without --image-size


def is_1x1(pool_input_shape: tuple[int, ...] | None) -> bool:
    """Whether a (C, H, W) pool input is 1x1, where every parameter-free pooling is the identity."""
    return pool_input_shape is not None and tuple(pool_input_shape[1:]) == (1, 1)


# The diagnostic tasks' protocols: ResNet-8 for a few epochs on 1,600 generated images, sized so
# that one run takes about 15 s on one CPU thread and every baseline learns something (see
# poolbench.data.diagnostics). Max-type poolings learn slowly at a high learning rate (each
# gradient reaches one position), so the tasks favouring them run at lr 0.01 and those favouring
# the mean at lr 0.05: each side is measured where its favoured family trains well.
MEAN_TASK_PROTOCOL = Protocol(epochs=6, batch_size=64, lr=0.05)
MAX_TASK_PROTOCOL = Protocol(epochs=6, batch_size=64, lr=0.01)

# The real-data suite's protocol: a few epochs at the mean-side diagnostic tasks' learning rate.
REAL_PROTOCOL = Protocol(epochs=5, batch_size=64, lr=0.05)

SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting("resnet56-cifar100", "resnet56", "cifar100",
                description="ResNet-56 (CIFAR style) on CIFAR-100", suites=("benchmark", "spatial")),
        Setting("vgg16bn-cifar100", "vgg16bn", "cifar100",
                description="VGG-16-BN (CIFAR style) on CIFAR-100", suites=("benchmark",)),
        Setting("mobilenetv2-fmnist", "mobilenetv2", "fmnist",
                description="MobileNetV2 (width 1.0) on FashionMNIST resized to 32x32", suites=("benchmark",)),
        # The spatial suite: real data where the pooling sees more than one position.
        Setting("vgg16bn-2x2-cifar100", "vgg16bn-2x2", "cifar100",
                description="VGG-16-BN without its last max-pool on CIFAR-100", suites=("spatial",)),
        Setting("mobilenetv2-4x4-fmnist", "mobilenetv2-4x4", "fmnist",
                description="MobileNetV2 (width 1.0) with CIFAR strides on FashionMNIST resized to 32x32",
                suites=("spatial",)),
        # The diagnostic suite: generated data whose label one pooling family can read and the other cannot.
        Setting("diag-majority", "resnet8", "majority", MEAN_TASK_PROTOCOL,
                "ResNet-8: which colour do most squares have (generated)", ("diagnostics",), "mean"),
        Setting("diag-count", "resnet8", "count", MEAN_TASK_PROTOCOL,
                "ResNet-8: how many squares are there (generated)", ("diagnostics",), "mean"),
        Setting("diag-brightest", "resnet8", "brightest", MAX_TASK_PROTOCOL,
                "ResNet-8: the colour of the single brightest square (generated)", ("diagnostics",), "max"),
        # Not in the suite (its budget would push the suite past a few minutes): one bright square
        # among dim ones, where gap's accuracy depends much on the seed.
        Setting("diag-salient", "resnet8", "salient", MAX_TASK_PROTOCOL,
                "ResNet-8: the colour of the one bright square among dim ones (generated)", (), "max"),
        # The real-data suite: real images where the pooling sees an 8x8 map, sized for 2 CPU cores
        # (5 poolings x 5 seeds in under 15 minutes with --jobs 2; see docs/real.md).
        Setting("resnet8-fmnist-5k", "resnet8", "fmnist-5k", REAL_PROTOCOL,
                "ResNet-8 on FashionMNIST (500 training images per class, the full test set), 32x32",
                ("real",)),
        # The embedded default: real data shipped with scikit-learn, no download, CPU-sized.
        Setting("quick", "resnet20", "digits",
                protocol=Protocol(epochs=10, batch_size=32, lr=0.01),
                description="ResNet-20 on scikit-learn's 8x8 digits, upscaled (no download)"),
    ]
}

BENCHMARK_SETTINGS: tuple[str, ...] = ("resnet56-cifar100", "vgg16bn-cifar100", "mobilenetv2-fmnist")

#: Suite name -> its settings, in table order.
SUITES: dict[str, tuple[str, ...]] = {
    suite: tuple(s.name for s in SETTINGS.values() if suite in s.suites)
    for suite in ("benchmark", "spatial", "diagnostics", "real")
}


def suite_settings(name: str) -> tuple[str, ...]:
    """The settings of suite ``name``; an unknown name lists the suites."""
    if name not in SUITES:
        raise ValueError(f"unknown suite {quote(name)}: choose one of {', '.join(SUITES)}")
    return SUITES[name]


def named_setting_for(arch: str, dataset: str) -> Setting | None:
    """The named setting that trains ``arch`` on ``dataset`` (both normalised), if there is one."""
    for setting in SETTINGS.values():
        if (setting.arch, setting.dataset) == (arch, dataset) and setting.name != "quick":
            return setting
    return None


def normalise_setting(spec: str) -> str:
    """One spelling per setting: a named setting's name, else ``MODEL@DATASET`` with both sides
    normalised (absolute paths); ValueError for a malformed spec."""
    if spec in SETTINGS:
        return spec
    if "@" not in spec:
        raise ValueError(f"unknown setting {quote(spec)}: choose one of {', '.join(SETTINGS)}, or write MODEL@DATASET "
                         "(e.g. resnet20@cifar10, timm:resnet18@imagefolder:/data/pets)")
    arch, dataset = split_setting(spec)
    return f"{normalise_arch(arch)}@{normalise_dataset(dataset)}"


def setting_label(spec: str) -> str:
    """The name a setting's runs are filed and reported under: a named setting's name (also when
    ``MODEL@DATASET`` is one), else ``<model label>-<data-set label>`` (see poolbench.core.setting_spec)."""
    spec = normalise_setting(spec)
    if spec in SETTINGS:
        return spec
    arch, dataset = split_setting(spec)
    named = named_setting_for(arch, dataset)
    return named.name if named is not None else pair_label(arch, dataset)


def get_setting(name: str) -> Setting:
    """The setting called ``name``; an unknown name lists the known ones."""
    if name not in SETTINGS:
        raise ValueError(f"unknown setting {quote(name)}: choose one of {', '.join(SETTINGS)}")
    return SETTINGS[name]
