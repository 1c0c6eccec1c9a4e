"""Every setting a name can mean: the named ones, and ``MODEL@DATASET`` for any model and data set.

``MODEL`` is a poolbench architecture, ``torchvision:NAME``, ``timm:NAME`` or ``FILE.py:FUNCTION``;
``DATASET`` a poolbench data set, ``imagefolder:PATH`` or ``npz:FILE`` (see poolbench.core.setting_spec).
An ad-hoc setting gets its classes and image size from the data (read cheaply, nothing decoded)
and the published protocol; its runs scale the crop padding to the images' size (see
:func:`poolbench.core.settings.run_protocol`).

>>> from poolbench.training import catalog
>>> setting = catalog.get_setting("resnet20@cifar10")
>>> setting.name, catalog.num_classes(setting), setting.protocol.epochs
('resnet20-cifar10', 10, 200)
>>> catalog.get_setting("resnet56@cifar100").name  # a pair that is a named setting is that setting
'resnet56-cifar100'
"""

from __future__ import annotations

from pathlib import Path

from .. import data, models
from ..core.quoting import quote
from ..core.setting_spec import (
    arch_file,
    is_arch_file,
    is_custom_arch,
    normalise_arch,
    normalise_dataset,
    pair_label,
    split_setting,
    with_pool_site,
)
from ..core.settings import SETTINGS, Protocol, Setting, named_setting_for, normalise_setting


def get_setting(spec: str) -> Setting:
    """The setting ``spec`` names (a named setting or ``MODEL@DATASET``); ValueError, one line with
    the fix, for an unknown name, model or data set, or a data set that cannot be read."""
    spec = normalise_setting(spec)
    if spec in SETTINGS:
        return SETTINGS[spec]
    return setting_for(*split_setting(spec))


def with_pool_at(spec: str, site: str | None) -> str:
    """The setting ``spec`` with its model's pooling at the module ``site`` (``--pool-at``):
    ``MODEL#SITE@DATASET``; ``spec`` when ``site`` is None. ValueError for a poolbench model."""
    if site is None:
        return spec
    setting = get_setting(spec)
    return normalise_setting(f"{with_pool_site(setting.arch, site)}@{setting.dataset}")


def setting_for(arch: str, dataset: str) -> Setting:
    """The named setting that trains ``arch`` on ``dataset``, or an ad-hoc one named
    ``<model label>-<data-set label>`` with the data's classes and the published protocol."""
    arch, dataset = normalise_arch(arch), normalise_dataset(dataset)
    named = named_setting_for(arch, dataset)
    if named is not None:
        return named
    check_arch(arch)
    try:
        info = data.describe(dataset)
    except data.DataMissingError as error:
        raise ValueError(str(error)) from None
    return Setting(pair_label(arch, dataset), arch, dataset, Protocol(),
                   description=f"{arch} on {dataset}", image_size=min(info.image_shape[1:]))


def num_classes(setting: Setting) -> int:
    """The classes ``setting`` is trained on: its data set's, from the data registry (or read from
    the data for an own data set; see :func:`poolbench.data.describe`)."""
    return data.describe(setting.dataset).num_classes


def pool_input(arch: str, dataset: str, image_size: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) that ``arch``'s pooling sees on ``dataset``'s images at ``image_size`` (None: their
    own size); measured on the model (see :func:`poolbench.models.pool_input_shape`)."""
    info = data.describe(dataset, image_size)
    return models.pool_input_shape(arch, info.image_shape[1:], num_classes=info.num_classes)


def check_arch(arch: str) -> None:
    """ValueError with the fix for a model name that cannot be built (checked without building it)."""
    if is_arch_file(arch):
        path = Path(arch_file(arch))
        if not path.is_file():
            raise ValueError(f"model file {quote(str(path))} not found: give an existing FILE.py:FUNCTION")
    elif not is_custom_arch(arch) and arch not in models.names():
        models.pool_channels(arch)  # raises the zoo's "unknown architecture ..., did you mean ...?"
