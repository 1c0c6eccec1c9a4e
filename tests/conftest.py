"""Shared fixtures. Data fixtures write tiny data sets in the real on-disk formats into tmp_path,
so that torchvision's own parsers and checksum code read them.

Conventions of the fake data sets (tests compute their expectations from these, not from the code
under test):

- image ``i`` of a split is random noise (seeded), except image 0, the *coordinate image*:
  CIFAR: red = 8 * row, green = 8 * column, blue = 77; FashionMNIST: grey = 9 * row;
- CIFAR-10 / FashionMNIST label of image ``i`` = ``i % 10``; CIFAR-100 fine label = ``(3 * i + 1) % 100``
  and coarse label = ``i % 20`` (so a test can tell which of the two was used).

Debian's FashionMNIST (``/usr/share/datasets/fashion-mnist``), which poolbench uses when a data root
holds none, is hidden from every test (``_hide_system_fmnist``): a test sees only the data it made,
whatever the machine has installed. Tests of the real files (tests/data/test_fmnist.py) ask for it.

The suite runs in parallel (pytest-xdist, ``-n auto`` in pyproject.toml's addopts): nothing a test
writes may be shared with another worker. Each worker has a decode cache of its own, which the
processes its tests start inherit, and trains with its share of the cores (both ``pytest_configure``);
a test that checks the cache's default location removes the variable itself.
Tests that share one trained run (a module- or session-scoped fixture) carry the same
``xdist_group`` mark, so that one worker trains it once (``--dist loadgroup``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import shlex
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd

from poolbench.cli import main
from poolbench.data import fmnist
from poolbench.execution.device import keep_freed_memory
from poolbench.execution.executors import cpu_count

CIFAR10_TRAIN_PER_BATCH = 4  # x 5 batch files
CIFAR10_TEST = 6
CIFAR100_TRAIN = 30
CIFAR100_TEST = 10
FMNIST_TRAIN = 12
FMNIST_TEST = 5


def pytest_configure(config: pytest.Config) -> None:
    """In an xdist worker, train with the worker's share of the cores (as a sweep gives each local
    job its share), unless OMP_NUM_THREADS was chosen: two workers with all cores each would fight
    over them. Subprocesses (runs, sweeps) inherit it through the environment."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and not os.environ.get("OMP_NUM_THREADS"):
        threads = max(1, cpu_count() // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)
    # The decode cache (the digits of every `quick` run, own data sets) is this worker's, never the
    # user's ~/.cache: set here, before any test module copies the environment for its subprocesses.
    cache = tempfile.mkdtemp(prefix="poolbench-test-decode-cache-")
    os.environ["POOLBENCH_CACHE"] = cache
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    # What every CPU run does when it starts (poolbench.execution.device.keep_freed_memory): the tests
    # that train in this process without a run (fit, the benchmarks' functions) get it too.
    keep_freed_memory()


@pytest.fixture
def fake_data_sizes() -> dict[str, tuple[int, int]]:
    """(train, test) image counts of the fake data sets the fixtures below write."""
    return {
        "cifar10": (5 * CIFAR10_TRAIN_PER_BATCH, CIFAR10_TEST),
        "cifar100": (CIFAR100_TRAIN, CIFAR100_TEST),
        "fmnist": (FMNIST_TRAIN, FMNIST_TEST),
    }


DEBIAN_FMNIST = fmnist.SYSTEM_FOLDER  # read at import, before _hide_system_fmnist hides it for each test


def require_debian_fmnist(folder: Path = DEBIAN_FMNIST) -> Path:
    """``folder`` when it holds Debian's four files; otherwise the test FAILS: the package is part of
    every machine the tests run on, so its absence is a broken setup, not a reason to skip."""
    if not all((folder / f"{name}.gz").is_file() for name in fmnist.FMNIST_SHA256):
        pytest.fail(f"needs Debian's package {fmnist.DEBIAN_PACKAGE} (apt-get install {fmnist.DEBIAN_PACKAGE}): "
                    f"{folder} lacks its four .gz files")
    return folder


@pytest.fixture(scope="session")
def debian_fmnist() -> Path:
    """Debian's folder of the real FashionMNIST (poolbench does not see it unless a test sets
    SYSTEM_FOLDER or passes it as the data root)."""
    return require_debian_fmnist()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cifar_rows(n: int, seed: int, coordinate_image: bool = True) -> np.ndarray:
    """``n`` images in the CIFAR row format: uint8 [n, 3072] = red plane, green plane, blue plane,
    each 32x32 row-major; image 0 is the coordinate image unless told otherwise."""
    rows = np.random.default_rng(seed).integers(0, 256, size=(n, 3072), dtype=np.uint8)
    if coordinate_image:
        grid_row, grid_col = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
        rows[0, :1024] = (8 * grid_row).ravel()
        rows[0, 1024:2048] = (8 * grid_col).ravel()
        rows[0, 2048:] = 77
    return rows


def _pickle(path: Path, obj: dict) -> None:
    """The real files are Python 2 pickles whose byte-string keys and names torchvision reads back as
    ``str`` (``encoding="latin1"``); a Python 3 pickle with ``str`` keys reads back identically."""
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _patch_cifar_md5s(monkeypatch: pytest.MonkeyPatch, cls: type, folder: Path) -> None:
    """Point the class's expected md5s at the files just written: torchvision's real integrity check
    then runs unchanged, and any later change to a file is detected as corruption."""
    monkeypatch.setattr(cls, "train_list", [[name, _md5(folder / name)] for name, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[name, _md5(folder / name)] for name, _ in cls.test_list])
    meta = dict(cls.meta, md5=_md5(folder / cls.meta["filename"]))
    monkeypatch.setattr(cls, "meta", meta)


@pytest.fixture
def cifar10_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root holding a tiny CIFAR-10 in the python-pickle format (5 train batches, 1 test batch)."""
    folder = tmp_path / tvd.CIFAR10.base_folder
    folder.mkdir()
    for k in range(1, 6):
        n = CIFAR10_TRAIN_PER_BATCH
        first = (k - 1) * n  # labels continue across batch files: image i of the split has label i % 10
        _pickle(folder / f"data_batch_{k}", {
            "batch_label": f"training batch {k} of 5",
            "data": _cifar_rows(n, seed=k, coordinate_image=k == 1),
            "labels": [(first + i) % 10 for i in range(n)],
        })
    _pickle(folder / "test_batch", {
        "batch_label": "testing batch 1 of 1",
        "data": _cifar_rows(CIFAR10_TEST, seed=10),
        "labels": [i % 10 for i in range(CIFAR10_TEST)],
    })
    _pickle(folder / "batches.meta", {
        "label_names": [f"class{i}" for i in range(10)], "num_vis": 3072, "num_cases_per_batch": 4,
    })
    _patch_cifar_md5s(monkeypatch, tvd.CIFAR10, folder)
    return tmp_path


@pytest.fixture
def cifar100_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root holding a tiny CIFAR-100 in the python-pickle format (train, test, meta)."""
    folder = tmp_path / tvd.CIFAR100.base_folder
    folder.mkdir()
    for split, n, seed in (("train", CIFAR100_TRAIN, 20), ("test", CIFAR100_TEST, 21)):
        _pickle(folder / split, {
            "filenames": [f"img{i}.png" for i in range(n)],
            "batch_label": f"{split} batch",
            "fine_labels": [(3 * i + 1) % 100 for i in range(n)],
            "coarse_labels": [i % 20 for i in range(n)],
            "data": _cifar_rows(n, seed=seed),
        })
    _pickle(folder / "meta", {
        "fine_label_names": [f"fine{i}" for i in range(100)],
        "coarse_label_names": [f"coarse{i}" for i in range(20)],
    })
    _patch_cifar_md5s(monkeypatch, tvd.CIFAR100, folder)
    return tmp_path


def _write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3: magic 2051 (ubyte, 3 dims), then the dims as big-endian uint32, then the pixels."""
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def _write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1: magic 2049 (ubyte, 1 dim), the count as big-endian uint32, then the labels."""
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


@pytest.fixture(autouse=True)
def _hide_system_fmnist(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point poolbench's system FashionMNIST folder at one that does not exist, so that "not found" means
    not found (and nothing is created per test)."""
    monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", tmp_path_factory.getbasetemp() / "no-system-fmnist")


@pytest.fixture
def fmnist_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A root holding a tiny FashionMNIST as the four raw IDX files under ``FashionMNIST/raw/``, where
    torchvision keeps them; ``fmnist.FMNIST_SHA256`` is pointed at their hashes (as ``_patch_cifar_md5s``
    does for CIFAR), so that poolbench's verification runs unchanged and detects any later change."""
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(30)
    for prefix, n in (("train", FMNIST_TRAIN), ("t10k", FMNIST_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0] = 9 * np.arange(28)[:, None]
        _write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    hashes = {name: hashlib.sha256((raw / name).read_bytes()).hexdigest() for name in fmnist.FMNIST_SHA256}
    monkeypatch.setattr(fmnist, "FMNIST_SHA256", hashes)
    return tmp_path


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A decode cache folder of the test's own (own data sets' tests pass it as ``cache_dir``)."""
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def merge_example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder where docs/running.md's example of one report of two machines ran, command by command:
    two halves of a quick grid swept (runs/laptop: seed 1, runs/gpu-box: seed 2), one exported
    (gpu-box.csv), and their one report (report.md). Trained once, read by the tests that need real runs;
    they carry ``xdist_group("merge_example")``, so that one xdist worker trains it."""
    text = (Path(__file__).parent.parent / "docs" / "running.md").read_text()
    block = next(block for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
                 if "poolbench report runs/laptop" in block)
    folder = tmp_path_factory.mktemp("merge-example")
    here = os.getcwd()
    os.chdir(folder)  # the example's paths are relative
    try:
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            assert words[0] == "poolbench" and main(words[1:]) == 0, line
    finally:
        os.chdir(here)
    return folder
