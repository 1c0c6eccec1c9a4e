"""Model, data-set and setting specs as text, and the folder names they get (no torch, no I/O).

A *model spec* is a poolbench architecture (``resnet20``), ``torchvision:NAME``, ``timm:NAME`` or
``FILE.py:FUNCTION`` (a function taking ``num_classes`` and returning a classifier), the last three
optionally followed by ``#PATH``: the module at ``PATH`` (``features.8``) is the pooling replaced,
as with ``pools.attach(model, spec, at=PATH)`` (``--pool-at PATH``). A *data-set
spec* is a poolbench data set (``fmnist``), ``imagefolder:PATH`` or ``npz:FILE``. A *setting* is a
named setting or ``MODEL@DATASET``, split at the first ``@``.

>>> split_setting("timm:resnet18@imagefolder:/data/pets")
('timm:resnet18', 'imagefolder:/data/pets')
>>> arch_label("torchvision:resnet18"), arch_label("nets/mine.py:build"), dataset_label("npz:/x/grey.npz")
('torchvision-resnet18', 'mine-build', 'npz-grey')
>>> pair_label("timm:resnet18", "imagefolder:/data/pets")
'timm-resnet18-imagefolder-pets'
>>> split_pool_site("nets/mine.py:build#features.8"), arch_label("nets/mine.py:build#features.8")
(('nets/mine.py:build', 'features.8'), 'mine-build-at-features.8')

Paths in specs are made absolute by :func:`normalise_arch` and :func:`normalise_dataset`, so that
a sweep's runs (started in the sweep folder) and a resumed run find the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

from .labels import safe_label

ARCH_PREFIXES = ("torchvision", "timm")
DATASET_PREFIXES = ("imagefolder", "npz")
POOL_SITE = "#"  # model spec#PATH: like a URL's fragment, it points inside the model
_MODULE_PATH = re.compile(r"[A-Za-z_0-9]+(\.[A-Za-z_0-9]+)*")


def split_pool_site(arch: str) -> tuple[str, str | None]:
    """``MODEL#PATH`` -> (``MODEL``, ``PATH``); ``MODEL`` -> (``MODEL``, None).

    The site is looked for after the last ``:`` so that a model file's directory may hold a ``#``.
    """
    head, colon, tail = arch.rpartition(":")
    name, hash_sign, site = tail.partition(POOL_SITE)
    return (head + colon + name, site) if hash_sign else (arch, None)


def with_pool_site(arch: str, site: str | None) -> str:
    """``arch`` with its pooling at ``site`` (a module path such as ``features.8``); ``arch`` when
    ``site`` is None. ValueError when ``arch`` already names another site."""
    if site is None:
        return arch
    model, old = split_pool_site(arch)
    if old is not None and old != site:
        raise ValueError(f"model {arch!r} already names its pooling at {old!r}; --pool-at says {site!r}: keep one")
    return f"{model}{POOL_SITE}{site}"


def arch_file(arch: str) -> str:
    """The file of a ``FILE.py:FUNCTION[#PATH]`` model spec."""
    return split_pool_site(arch)[0].rpartition(":")[0]


def is_arch_file(arch: str) -> bool:
    """Whether ``arch`` is ``FILE.py:FUNCTION`` (``#PATH`` allowed)."""
    path, colon, function = split_pool_site(arch)[0].rpartition(":")
    return bool(colon) and path.endswith(".py") and function.isidentifier()


def arch_prefix(arch: str) -> str | None:
    """``torchvision`` or ``timm`` for ``torchvision:NAME`` / ``timm:NAME``, else None."""
    prefix, colon, _ = arch.partition(":")
    return prefix if colon and prefix in ARCH_PREFIXES else None


def arch_name(arch: str) -> str:
    """NAME of ``torchvision:NAME[#PATH]`` / ``timm:NAME[#PATH]``."""
    return split_pool_site(arch)[0].partition(":")[2]


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
    """One spelling per model: a file's path absolute; a prefix's name as given; a zoo name
    lower-case; a pooling site (``#PATH``) checked to be a module path."""
    model, site = split_pool_site(arch)
    if site is not None:
        site = site.strip()
        if not _MODULE_PATH.fullmatch(site):
            raise ValueError(f"model {arch!r}: the pooling's place {site!r} is not a module path; write it as "
                             "print(model) names it, e.g. features.8 or head.global_pool")
        if not is_custom_arch(model):
            raise ValueError(f"model {arch!r}: a pooling place (#PATH, --pool-at) is for torchvision:, timm: and "
                             "FILE.py:FUNCTION models; poolbench's own models pool at .pool")
    return with_pool_site(_normalise_model(model), site)


def _normalise_model(arch: str) -> str:
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
    and function (``nets/mine.py:build`` -> ``mine-build``), a zoo name as it is; a pooling site
    adds ``-at-PATH``."""
    model, site = split_pool_site(arch)
    if site is not None:
        return f"{arch_label(model)}-at-{_safe(site)}"
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
