"""Model, data-set and setting specs as text, and the folder names they get (no torch, no I/O).

A *model spec* is a poolbench architecture (``resnet20``), ``torchvision:NAME``, ``timm:NAME`` or
``FILE.py:FUNCTION`` (a function taking ``num_classes`` and returning a classifier). A *data-set
spec* is a poolbench data set (``fmnist``), ``imagefolder:PATH`` or ``npz:FILE``. A *setting* is a
named setting or ``MODEL@DATASET``, split at the first ``@``.

>>> split_setting("timm:resnet18@imagefolder:/data/pets")
('timm:resnet18', 'imagefolder:/data/pets')
>>> arch_label("torchvision:resnet18"), arch_label("nets/mine.py:build"), dataset_label("npz:/x/grey.npz")
('torchvision-resnet18', 'mine-build', 'npz-grey')
>>> pair_label("timm:resnet18", "imagefolder:/data/pets")
'timm-resnet18-imagefolder-pets'

Paths in specs are made absolute by :func:`normalise_arch` and :func:`normalise_dataset`, so that
a sweep's runs (started in the sweep folder) and a resumed run find the same files.
"""

from __future__ import annotations

from pathlib import Path

from .labels import safe_label

ARCH_PREFIXES = ("torchvision", "timm")
DATASET_PREFIXES = ("imagefolder", "npz")


def is_arch_file(arch: str) -> bool:
    """Whether ``arch`` is ``FILE.py:FUNCTION``."""
    path, colon, function = arch.rpartition(":")
    return bool(colon) and path.endswith(".py") and function.isidentifier()


def arch_prefix(arch: str) -> str | None:
    """``torchvision`` or ``timm`` for ``torchvision:NAME`` / ``timm:NAME``, else None."""
    prefix, colon, _ = arch.partition(":")
    return prefix if colon and prefix in ARCH_PREFIXES else None


def is_custom_arch(arch: str) -> bool:
    """Whether ``arch`` is a model from outside poolbench's zoo (torchvision, timm or a file)."""
    return arch_prefix(arch) is not None or is_arch_file(arch)


def dataset_prefix(dataset: str) -> str | None:
    """``imagefolder`` or ``npz`` for a data set of the user's own, else None."""
    prefix, colon, _ = dataset.partition(":")
    return prefix if colon and prefix in DATASET_PREFIXES else None


def split_setting(spec: str) -> tuple[str, str]:
    """``MODEL@DATASET`` -> (model spec, data-set spec); ValueError with the form when one side is empty.

    Split at the first ``@`` followed by ``imagefolder:`` or ``npz:``, else at the last ``@``: a model
    file's path may hold an ``@`` (``my@nets/mine.py:build@npz:/x.npz``), and so may an own data
    set's path, but never a poolbench data set's name.

    >>> split_setting("/a/my@nets/mine.py:build@npz:/d/x@2.npz")
    ('/a/my@nets/mine.py:build', 'npz:/d/x@2.npz')
    """
    ats = [i for i, char in enumerate(spec) if char == "@"]
    own = [i for i in ats if dataset_prefix(spec[i + 1:].strip()) is not None]
    where = own[0] if own else (ats[-1] if ats else len(spec))
    arch, at, dataset = spec[:where], spec[where:where + 1], spec[where + 1:]
    if not (at and arch.strip() and dataset.strip()):
        raise ValueError(f"setting {spec!r}: write a named setting (see `poolbench list`) or MODEL@DATASET, "
                         "e.g. resnet20@cifar10 or timm:resnet18@imagefolder:/data/pets")
    return arch.strip(), dataset.strip()


def normalise_arch(arch: str) -> str:
    """One spelling per model: a file's path absolute; a prefix's name as given; a zoo name lower-case."""
    if is_arch_file(arch):
        path, _, function = arch.rpartition(":")
        return f"{Path(path).expanduser().resolve()}:{function}"
    if arch_prefix(arch) is not None:
        prefix, _, name = arch.partition(":")
        if not name.strip():
            raise ValueError(f"model {arch!r} names no model: write {prefix}:NAME")
        return f"{prefix}:{name.strip()}"
    if ":" in arch:
        raise ValueError(f"model {arch!r}: write a poolbench architecture, torchvision:NAME, timm:NAME "
                         "or FILE.py:FUNCTION (a function taking num_classes)")
    return arch.lower()


def normalise_dataset(dataset: str) -> str:
    """One spelling per data set: the path of ``imagefolder:``/``npz:`` absolute, names lower-case."""
    prefix = dataset_prefix(dataset)
    if prefix is None:
        if ":" in dataset:
            raise ValueError(f"data set {dataset!r}: write a poolbench data set (see `poolbench data`), "
                             "imagefolder:PATH or npz:FILE")
        return dataset.lower()
    path = dataset.partition(":")[2].strip()
    if not path:
        raise ValueError(f"data set {dataset!r} names no path: write {prefix}:PATH")
    return f"{prefix}:{Path(path).expanduser().resolve()}"


def _safe(text: str) -> str:
    return safe_label(text, "x")


def arch_label(arch: str) -> str:
    """A folder-friendly name of a model spec: ``timm:resnet18`` -> ``timm-resnet18``, a file's stem
    and function (``nets/mine.py:build`` -> ``mine-build``), a zoo name as it is."""
    if is_arch_file(arch):
        path, _, function = arch.rpartition(":")
        return f"{_safe(Path(path).stem)}-{function}"
    prefix = arch_prefix(arch)
    if prefix is not None:
        return f"{prefix}-{_safe(arch.partition(':')[2])}"
    return _safe(arch.lower())


def dataset_label(dataset: str) -> str:
    """A folder-friendly name of a data-set spec: ``imagefolder:/data/pets`` -> ``imagefolder-pets``,
    ``npz:/x/grey.npz`` -> ``npz-grey``, a poolbench data set as it is."""
    prefix = dataset_prefix(dataset)
    if prefix is None:
        return _safe(dataset.lower())
    path = Path(dataset.partition(":")[2].rstrip("/"))
    return f"{prefix}-{_safe(path.stem if prefix == 'npz' else path.name)}"


def pair_label(arch: str, dataset: str) -> str:
    """The folder name of an ad-hoc setting: ``<model label>-<data-set label>`` (``resnet20-cifar10``)."""
    return f"{arch_label(arch)}-{dataset_label(dataset)}"
