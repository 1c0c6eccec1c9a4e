"""scikit-learn's digits: real data that ships with scikit-learn, for runs without any download.

1,797 8x8 grey images of handwritten digits (UCI's optical recognition data), split once into a
fixed stratified 1,437 / 360, upscaled to 32 x 32. Registered in
:data:`poolbench.data.datasets.DATASETS` with its :func:`load` and :func:`available`.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import decode_cache
from .common import one_line, record
from .images import DataSet, ImageData, grey_to_rgb


def load(dataset: DataSet, root: Path, download: bool, image_size: int | None = None) -> ImageData:
    """Both splits at 32 x 32; ``root``, ``download`` and ``image_size`` are not used (nothing is read
    from disk but scikit-learn's bundled file; the caller resizes).

    Read through the decode cache (:mod:`.decode_cache`), keyed by scikit-learn's version and its
    bundled file: only the first load on a machine imports scikit-learn, which takes longer than
    the rest of a ``quick`` run's start.
    """
    key = _key()
    return decode_cache.load(decode_cache.default_dir() / f"digits-{key}.pt", key, dataset.name,
                             lambda: _decode(dataset))


def _key() -> str:
    """The cache key: scikit-learn's version (its split may change with it) and its digits file's bytes,
    found without importing scikit-learn. Raises ImportError where scikit-learn is not installed."""
    found = importlib.util.find_spec("sklearn")
    if found is None or not found.submodule_search_locations:
        raise ImportError("No module named 'sklearn': install scikit-learn (pip install scikit-learn)")
    digest = decode_cache.new_key("digits", None)
    decode_cache.add_field(digest, importlib.metadata.version("scikit-learn").encode())
    bundled = Path(found.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz"
    if bundled.is_file():  # where scikit-learn keeps it today; its version alone names the data otherwise
        decode_cache.add_field(digest, bundled.read_bytes())
    return digest.hexdigest()


def _decode(dataset: DataSet) -> dict[str, Any]:
    """The digits from scikit-learn, split and upscaled: a decode cache entry's fields."""
    from sklearn.datasets import load_digits  # imported lazily: scikit-learn takes a second and a half to import
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # Pixel values are counts 0..16 (of 4x4 blocks of a 32x32 bitmap); stretch them to 0..255.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = grey_to_rgb(torch.from_numpy(pixels).unsqueeze(1))
    labels = torch.from_numpy(digits.target.astype(np.int64))
    # A fixed stratified split: the same 1437/360 images on every machine and every call.
    train_idx, test_idx = train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=digits.target, random_state=0
    )
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    train_images = images[train_idx].contiguous()
    # No published constants exist for the upscaled images, so they are measured on the training split.
    mean, std = dataset.stats(train_images)
    return dict(classes=[str(digit) for digit in range(dataset.num_classes)], mean=list(mean), std=list(std),
                train_images=train_images, train_labels=labels[train_idx],
                test_images=images[test_idx].contiguous(), test_labels=labels[test_idx])


def available(dataset: DataSet, root: Path, found: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Found wherever scikit-learn is installed (it is a dependency, but an installation can lack it)."""
    try:
        digits = load(dataset, root, download=False)
    except ImportError as err:
        return record(dataset.name, problem=one_line(err))
    return record(dataset.name, found=True, where="scikit-learn", train_images=len(digits.train_labels),
                  test_images=len(digits.test_labels))
