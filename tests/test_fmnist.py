"""Tests of poolbench.data.fmnist (FashionMNIST from any intact copy), data.available and `poolbench data`.

Most run on the real files of Debian's package dataset-fashion-mnist, installed wherever the tests run:
without it they fail (``debian_fmnist``), they do not skip. Expectations are computed here from the
decompressed IDX bytes (header 16 / 8 bytes, then one byte per pixel / label), not by the code under
test. conftest hides the system folder from every test; a test that wants poolbench to see it says so.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd

from poolbench import data
from poolbench.cli import main
from poolbench.data import fmnist

DEBIAN_FOLDER = fmnist.SYSTEM_FOLDER  # read at import, before conftest hides it for each test
NEEDS_DEBIAN = f"needs Debian's package {fmnist.DEBIAN_PACKAGE} (apt-get install {fmnist.DEBIAN_PACKAGE})"
FILES = list(fmnist.FMNIST_SHA256)  # train images, train labels, test images, test labels


def require_debian_fmnist(folder: Path = DEBIAN_FOLDER) -> Path:
    """``folder`` when it holds Debian's four files; otherwise the test FAILS: the package is part of
    every machine the tests run on, so its absence is a broken setup, not a reason to skip."""
    if not all((folder / f"{name}.gz").is_file() for name in FILES):
        pytest.fail(f"{NEEDS_DEBIAN}: {folder} lacks its four .gz files")
    return folder


@pytest.fixture(scope="session")
def debian_fmnist() -> Path:
    """Debian's folder of the real FashionMNIST (poolbench does not see it unless a test sets SYSTEM_FOLDER)."""
    return require_debian_fmnist()


@pytest.fixture(scope="session")
def debian_content(debian_fmnist: Path) -> dict[str, bytes]:
    """Name -> decompressed content of Debian's four files, decompressed once for the whole session."""
    return {name: gzip.decompress((debian_fmnist / f"{name}.gz").read_bytes()) for name in FILES}


def _expected(content: dict[str, bytes]) -> list[np.ndarray]:
    """The four arrays as the IDX format defines them, read straight from the bytes."""
    return [np.frombuffer(content[name], dtype=np.uint8, offset=16 if "images" in name else 8) for name in FILES]


def _flat_gz_copy(debian_fmnist: Path, root: Path) -> Path:
    """Debian's four .gz files copied unchanged into ``root``."""
    root.mkdir(exist_ok=True)
    for name in FILES:
        shutil.copyfile(debian_fmnist / f"{name}.gz", root / f"{name}.gz")
    return root


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download torchvision would start fails the test."""
    def refuse(self) -> None:
        raise AssertionError("a download was started")
    for cls in (tvd.FashionMNIST, tvd.CIFAR10, tvd.CIFAR100):
        monkeypatch.setattr(cls, "download", refuse)


def _one_line_error(root: Path, *names: str) -> str:
    with pytest.raises(data.DataMissingError) as err:
        fmnist.load_fmnist_arrays(root, download=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith("fmnist")
    for name in names:
        assert name in message
    return message


def test_without_debian_package_the_tests_fail_not_skip(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"needs Debian's package dataset-fashion-mnist "
                                                    r"\(apt-get install dataset-fashion-mnist\)"):
        require_debian_fmnist(tmp_path)


# --- every layout, the same data ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["torchvision", "flat-recompressed", "flat-plain", "system"])
def test_every_layout_gives_the_same_images(layout: str, tmp_path: Path, debian_fmnist: Path,
                                            debian_content: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "root"
    root.mkdir()
    if layout == "torchvision":  # the gunzipped files where torchvision keeps them
        folder = root / "FashionMNIST" / "raw"
        folder.mkdir(parents=True)
        for name in FILES:
            (folder / name).write_bytes(debian_content[name])
    elif layout == "flat-recompressed":  # other archive bytes, the same content: must verify
        folder = root
        for name in FILES:
            (root / f"{name}.gz").write_bytes(gzip.compress(debian_content[name], compresslevel=1))
        archive = "t10k-labels-idx1-ubyte.gz"
        assert (root / archive).read_bytes() != (debian_fmnist / archive).read_bytes()
    elif layout == "flat-plain":
        folder = root
        for name in FILES:
            (root / name).write_bytes(debian_content[name])
    else:  # an empty root: Debian's folder is used
        folder = debian_fmnist
        monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", debian_fmnist)
    _no_downloads(monkeypatch)  # a copy is found, so download=True must not download
    arrays, copy = fmnist.load_fmnist_arrays(root, download=True)
    assert copy.layout == layout.split("-")[0] and copy.folder == folder
    assert sorted(copy.files) == sorted(FILES) and all(path.parent == folder for path in copy.files.values())
    train_images, train_labels, test_images, test_labels = arrays
    assert train_images.shape == (60_000, 28, 28) and train_images.dtype == torch.uint8
    assert test_images.shape == (10_000, 28, 28) and test_images.dtype == torch.uint8
    assert train_labels.dtype == torch.int64 and test_labels.dtype == torch.int64
    assert train_labels.bincount().tolist() == [6000] * 10 and test_labels.bincount().tolist() == [1000] * 10
    expected = _expected(debian_content)
    for tensor, values in zip(arrays, expected, strict=True):
        assert np.array_equal(tensor.numpy().ravel(), values)


def test_load_from_the_system_folder_and_fast(tmp_path: Path, debian_fmnist: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", debian_fmnist)
    copy = fmnist.find_copy(tmp_path)
    assert copy is not None and copy.layout == "system"
    start = time.perf_counter()
    fmnist.read_copy(copy)  # decompress, verify and parse all four files
    assert time.perf_counter() - start < 2.0  # about 0.7 s on a 2-core machine
    d = data.load("fmnist", root=tmp_path, download=False)
    assert d.train_images.shape == (60_000, 3, 32, 32) and d.test_images.shape == (10_000, 3, 32, 32)
    assert torch.equal(d.train_images[:, 0], d.train_images[:, 2])
    assert fmnist.image_counts(copy) == (60_000, 10_000)


def test_plain_file_preferred_to_its_gz(fmnist_root: Path) -> None:
    raw = fmnist_root / "FashionMNIST" / "raw"
    for name in FILES:
        (raw / f"{name}.gz").write_bytes(b"not gzip")  # would fail verification if it were read
    copy = fmnist.find_copy(fmnist_root)
    assert copy is not None and copy.files == {name: raw / name for name in FILES}
    fmnist.verify(copy)


def test_root_holding_no_copy_does_not_hide_a_partial_one(tmp_path: Path, debian_fmnist: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # One file in the root: that copy is reported (incomplete), Debian's complete one is not used silently.
    monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", debian_fmnist)
    shutil.copyfile(debian_fmnist / "train-labels-idx1-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    copy = fmnist.find_copy(tmp_path)
    assert copy is not None and copy.layout == "flat" and list(copy.files) == ["train-labels-idx1-ubyte"]


# --- missing, truncated, wrong -------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path: Path, debian_fmnist: Path) -> None:
    root = _flat_gz_copy(debian_fmnist, tmp_path / "root")
    (root / "t10k-images-idx3-ubyte.gz").unlink()
    message = _one_line_error(root, "t10k-images-idx3-ubyte", str(root), "incomplete")
    assert "train-images" not in message and "delete the other files to download again" in message


def test_truncated_gz_is_named(tmp_path: Path, debian_fmnist: Path) -> None:
    root = _flat_gz_copy(debian_fmnist, tmp_path / "root")
    path = root / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-50])
    message = _one_line_error(root, str(path), "not an intact gzip file")
    assert "replace it with an intact copy" in message and fmnist.DEBIAN_PACKAGE in message


@pytest.mark.parametrize("fault", ["labels-for-images", "train-for-test", "byte-changed", "truncated", "not-gzip"])
def test_wrong_file_is_named(fault: str, tmp_path: Path, debian_fmnist: Path,
                             debian_content: dict[str, bytes]) -> None:
    root = _flat_gz_copy(debian_fmnist, tmp_path / "root")
    target = root / "t10k-images-idx3-ubyte.gz"
    if fault == "labels-for-images":
        shutil.copyfile(root / "t10k-labels-idx1-ubyte.gz", target)
        reason = "magic number 2049"
    elif fault == "train-for-test":  # a valid IDX images file of the right format, but not this one
        shutil.copyfile(root / "train-images-idx3-ubyte.gz", target)
        reason = "SHA-256 of its content"
    elif fault == "byte-changed":
        content = bytearray(debian_content["t10k-images-idx3-ubyte"])
        content[5000] ^= 1
        target.write_bytes(gzip.compress(bytes(content), compresslevel=1))
        reason = f"SHA-256 of its content {hashlib.sha256(content).hexdigest()[:8]}... != expected 5b4141f0..."
    elif fault == "truncated":  # a whole gzip of cut content: its size disagrees with its header
        target.write_bytes(gzip.compress(debian_content["t10k-images-idx3-ubyte"][:-100], compresslevel=1))
        reason = "7839916 bytes where its header, 10000 images, needs 7840016"
    else:
        target.write_bytes(debian_content["t10k-labels-idx1-ubyte"])  # plain content under a .gz name
        reason = "not an intact gzip file"
    message = _one_line_error(root, str(target), reason)
    assert "replace it with an intact copy" in message


def test_system_copy_fix_is_reinstall(tmp_path: Path, debian_fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = _flat_gz_copy(debian_fmnist, tmp_path / "system")
    monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", system)
    root = tmp_path / "empty"
    root.mkdir()
    (system / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b truncated")
    message = _one_line_error(root, str(system / "train-images-idx3-ubyte.gz"))
    assert "delete it and reinstall with `apt-get install --reinstall dataset-fashion-mnist`" in message
    (system / "train-images-idx3-ubyte.gz").unlink()
    message = _one_line_error(root, "train-images-idx3-ubyte", str(system))
    assert "reinstall with `apt-get install --reinstall dataset-fashion-mnist`" in message


def test_not_found_names_the_places_and_the_package(tmp_path: Path) -> None:
    message = _one_line_error(tmp_path, str(tmp_path / "FashionMNIST" / "raw"), str(fmnist.SYSTEM_FOLDER),
                              "`apt-get install dataset-fashion-mnist`", "download not allowed", *FILES)
    assert message.startswith(f"fmnist not found under {tmp_path} ")


def test_download_completes_an_incomplete_torchvision_copy(fmnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What an interrupted download leaves: with download allowed it is tried again (here: no network).
    (fmnist_root / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(tvd.FashionMNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    with pytest.raises(data.DataMissingError) as err:
        fmnist.load_fmnist_arrays(fmnist_root, download=True)
    message = str(err.value)
    assert "\n" not in message and "t10k-labels-idx1-ubyte" in message and "download to complete it failed" in message


# --- data.available and `poolbench data` -------------------------------------------------------------


def _by_name(records: list[dict]) -> dict[str, dict]:
    assert [r["name"] for r in records] == data.names()
    return {r["name"]: r for r in records}


def test_data_verb_json_on_the_real_files(tmp_path: Path, debian_fmnist: Path, capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root = _flat_gz_copy(debian_fmnist, tmp_path / "root")
    _no_downloads(monkeypatch)
    assert main(["data", "--json", "--data-root", str(root)]) == 0
    records = _by_name(json.loads(capsys.readouterr().out))
    assert records["fmnist"] == {"name": "fmnist", "found": True, "where": str(root), "layout": "flat",
                                 "verified": True, "problem": None, "train_images": 60_000, "test_images": 10_000}
    for name in ("cifar10", "cifar100"):
        assert records[name]["found"] is False and records[name]["where"] is None
    assert records["digits"]["where"] == "scikit-learn" and records["digits"]["train_images"] == 1437
    for name in ("majority", "count", "brightest", "salient"):
        assert records[name]["where"] == "generated" and records[name]["found"] is True


def test_available_and_text_output_on_fake_files(cifar10_root: Path, fmnist_root: Path, fake_data_sizes,
                                                 capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _no_downloads(monkeypatch)
    records = _by_name(data.available(fmnist_root))  # cifar10_root and fmnist_root are the same tmp_path
    for name in ("cifar10", "fmnist"):
        assert records[name]["found"] and records[name]["verified"] and records[name]["layout"] == "torchvision"
        assert (records[name]["train_images"], records[name]["test_images"]) == fake_data_sizes[name]
    assert not records["cifar100"]["found"]
    bad_cifar = cifar10_root / "cifar-10-batches-py" / "data_batch_3"
    bad_cifar.write_bytes(bad_cifar.read_bytes()[:-10])
    bad_fmnist = fmnist_root / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte"
    bad_fmnist.write_bytes(bad_fmnist.read_bytes()[:-1])
    assert main(["data", "--data-root", str(fmnist_root)]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert list(lines) == data.names()
    assert "NOT INTACT" in lines["cifar10"] and "data_batch_3" in lines["cifar10"]
    assert "NOT INTACT" in lines["fmnist"] and str(bad_fmnist) in lines["fmnist"]
    assert "missing" in lines["cifar100"] and "verified" not in lines["cifar100"]
    assert "1437 train / 360 test" in lines["digits"] and "generated" in lines["salient"]
