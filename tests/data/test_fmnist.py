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
from pathlib import Path

import numpy as np
import pytest
import torch
from torchvision import datasets as tvd

from conftest import require_debian_fmnist
from poolbench import data
from poolbench.cli import main
from poolbench.data import fmnist

FILES = list(fmnist.FMNIST_SHA256)  # train images, train labels, test images, test labels


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


def test_load_from_the_system_folder(tmp_path: Path, debian_fmnist: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Its speed against gzip's alone: python benchmarks/data_loading.py
    monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", debian_fmnist)
    copy = fmnist.find_copy(tmp_path)
    assert copy is not None and copy.layout == "system"
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
    assert "train-images" not in message  # download=False: the fix does not promise a download
    assert "delete the other files, then `apt-get install dataset-fashion-mnist` or run without --no-download" \
        in message


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


# --- Damaged tiny copies: one line naming the file and the remedy that works where the copy is ----

def _damage(path: Path, fault: str) -> None:
    """``path`` (a plain IDX file of the tiny copy) damaged as ``fault``; ``*-gz`` faults leave a .gz."""
    content = path.read_bytes()
    damaged = {"truncated": content[: len(content) // 2], "padded": content + b"\0" * 7,
               "garbage": bytes(range(97)), "empty": b"", "header-cut": content[:6],
               "count-wrong": content[:4] + (3).to_bytes(4, "big") + content[8:]}
    if fault.endswith("-gz"):
        path.unlink()
        gz = path.with_name(path.name + ".gz")
        whole = gzip.compress(content)
        gz.write_bytes({"truncated-gz": whole[:-20], "garbage-gz": b"\x1f\x8b" + bytes(range(60)),
                        "cut-content-gz": gzip.compress(content[:-100])}[fault])
    else:
        path.write_bytes(damaged[fault])


FAULTS = {"truncated": "truncated or padded", "padded": "truncated or padded", "garbage": "magic number",
          "empty": "ends inside the IDX header, after 0 bytes", "header-cut": "ends inside the IDX header",
          "count-wrong": "its header, 3 images", "truncated-gz": "not an intact gzip file",
          "garbage-gz": "not an intact gzip file", "cut-content-gz": "truncated or padded"}


@pytest.mark.parametrize("fault", sorted(FAULTS))
@pytest.mark.parametrize("layout", ["torchvision", "flat", "system"])
def test_a_damaged_file_is_one_line_naming_it_and_the_remedy_for_its_place(
        fault: str, layout: str, fmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = fmnist_root / "FashionMNIST" / "raw"
    folder = {"torchvision": raw, "flat": tmp_path / "flat", "system": tmp_path / "system"}[layout]
    if folder != raw:
        shutil.move(raw, folder)
    if layout == "system":
        monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", folder)
    _damage(folder / "train-images-idx3-ubyte", fault)
    root = tmp_path / "flat" if layout == "flat" else fmnist_root
    for download in (False, True):
        monkeypatch.setattr(tvd.FashionMNIST, "download", lambda self: pytest.fail("a download was started"))
        with pytest.raises(data.DataMissingError) as err:
            fmnist.load_fmnist_arrays(root, download=download)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"fmnist file {folder / 'train-images-idx3-ubyte'}")
        assert FAULTS[fault] in message, message
        remedy = {"system": "delete it and reinstall with `apt-get install --reinstall dataset-fashion-mnist`",
                  "torchvision": "or delete it and " + ("allow the download" if download else
                                                        "run without --no-download") + " to download it again",
                  "flat": (f"delete the four files in {folder} " + "to download again") if download else
                          f"delete the four files in {folder}, then `apt-get install dataset-fashion-mnist` or "
                          f"run without --no-download"}[layout]
        assert message.endswith(remedy), message


def test_a_damaged_flat_copy_points_to_debians_copy_when_it_is_there(fmnist_root: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    system = tmp_path / "system"
    shutil.copytree(fmnist_root / "FashionMNIST" / "raw", system)
    monkeypatch.setattr(fmnist, "SYSTEM_FOLDER", system)
    flat = tmp_path / "flat"
    shutil.move(fmnist_root / "FashionMNIST" / "raw", flat)
    _damage(flat / "t10k-labels-idx1-ubyte", "truncated")
    with pytest.raises(data.DataMissingError, match=f"delete the four files in {flat} to use Debian's copy in "
                                                    f"{system}$"):
        fmnist.load_fmnist_arrays(flat, download=False)
    for name in fmnist.FMNIST_SHA256:  # the remedy works: Debian's copy is read
        (flat / name).unlink()
    test_labels = fmnist.load_fmnist_arrays(flat, download=False)[0][3]
    assert len(test_labels) == int.from_bytes((system / "t10k-labels-idx1-ubyte").read_bytes()[4:8], "big")


def test_run_on_a_damaged_copy_exits_2_with_that_line_and_writes_nothing(fmnist_root: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture) -> None:
    path = fmnist_root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    _damage(path, "truncated")
    out_dir = tmp_path / "run"
    code = main(["run", "--arch", "resnet8", "--dataset", "fmnist", "--data-root", str(fmnist_root), "--no-download",
                 "--epochs", "1", "--output-dir", str(out_dir)])
    err = capsys.readouterr().err
    assert code == 2, err
    error = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and f"fmnist file {path} is not the original FashionMNIST file" in error[0], err
    assert "Traceback" not in err and "reshape" not in err
    assert not (out_dir / "config.json").exists()
