"""Which data sets this machine holds, and whether each is intact: ``poolbench data`` as data.

Nothing here downloads. Each registered data set answers through its own availability check
(:attr:`.images.DataSet.available`): CIFAR by torchvision's md5 lists, FashionMNIST by
:func:`.fmnist.verify` (the SHA-256 of each decompressed file) wherever :func:`.fmnist.find_copy`
finds it; scikit-learn's digits and the generated diagnostic tasks need no files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .datasets import DATASETS, default_root


def available(root: Path | None = None) -> list[dict[str, Any]]:
    """One record per data set of :func:`.names`, for data root ``root`` (default :func:`.default_root`).

    Each record: ``name``; ``found``; ``where`` (the folder or file, or ``"scikit-learn"`` /
    ``"generated"``); ``layout`` (``"torchvision"``, ``"archive"``, ``"flat"``, ``"system"`` or
    None); ``verified`` (None where there is nothing to verify or nothing found); ``problem`` (the
    one-line reason when found but not intact); ``train_images`` and ``test_images`` (None unless
    the data set is usable as it is).
    """
    root = Path(root).expanduser() if root is not None else default_root()
    records: dict[str, dict[str, Any]] = {}
    for dataset in DATASETS.values():  # in order: a subset reads its source's record, found before it
        records[dataset.name] = dataset.available(dataset, root, records)
    return list(records.values())
