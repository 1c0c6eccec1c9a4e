"""Tests of poolbench.data: data sets read from real file formats, and the device loader.

The fake CIFAR / FashionMNIST files come from the fixtures in conftest.py, whose docstring states
the conventions (coordinate image, label formulas) the expectations below are computed from.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import datasets as tvd

from poolbench import data
from poolbench.data import common, datasets, digits

# ---------------------------------------------------------------------------------------------------
# data sets


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _assert_image_data(d: data.ImageData, n_train: int, n_test: int, num_classes: int) -> None:
    splits = ((d.train_images, d.train_labels, n_train), (d.test_images, d.test_labels, n_test))
    for images, labels, n in splits:
        assert images.shape == (n, 3, 32, 32)
        assert images.dtype == torch.uint8 and images.is_contiguous() and images.device.type == "cpu"
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert 0 <= int(labels.min()) and int(labels.max()) < num_classes
    assert d.num_classes == num_classes
    assert len(d.mean) == 3 and len(d.std) == 3
    assert all(0 < m < 1 for m in d.mean) and all(0 < s < 1 for s in d.std)


def test_names_and_unknown_name() -> None:
    assert data.names() == ["cifar10", "cifar100", "digits", "fmnist", "fmnist-5k", "majority", "count", "brightest",
                            "salient"]
    with pytest.raises(ValueError) as err:
        data.load("imagenet")
    for name in data.names():
        assert name in str(err.value)


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POOLBENCH_DATA", str(tmp_path / "mine"))
    assert data.default_root() == tmp_path / "mine"
    monkeypatch.delenv("POOLBENCH_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_root() == tmp_path / "xdg" / "poolbench" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_root() == tmp_path / "home" / ".cache" / "poolbench" / "data"


def test_cifar10_shapes_labels_and_constants(cifar10_root: Path, fake_data_sizes) -> None:
    d = data.load("cifar10", root=cifar10_root, download=False)
    n_train, n_test = fake_data_sizes["cifar10"]
    _assert_image_data(d, n_train, n_test, 10)
    assert d.name == "cifar10"
    assert d.train_labels.tolist() == [i % 10 for i in range(n_train)]
    assert d.test_labels.tolist() == [i % 10 for i in range(n_test)]
    assert d.mean == pytest.approx((0.4914, 0.4822, 0.4465))
    assert d.std == pytest.approx((0.2470, 0.2435, 0.2616))


def test_cifar_pixels_land_at_channel_row_column(cifar10_root: Path, fake_data_sizes) -> None:
    d = data.load("cifar10", root=cifar10_root, download=False)
    rows = torch.arange(32).view(32, 1).expand(32, 32)
    cols = torch.arange(32).view(1, 32).expand(32, 32)
    for images in (d.train_images, d.test_images):
        assert torch.equal(images[0, 0], (8 * rows).to(torch.uint8))  # red = 8 * row
        assert torch.equal(images[0, 1], (8 * cols).to(torch.uint8))  # green = 8 * column
        assert torch.equal(images[0, 2], torch.full((32, 32), 77, dtype=torch.uint8))
    # A random image of the second batch file sits after the first file's images, its row laid out
    # as the format defines: 1024 red, 1024 green, 1024 blue bytes, each plane row-major.
    with open(cifar10_root / "cifar-10-batches-py" / "data_batch_2", "rb") as f:
        row = pickle.load(f)["data"][1]
    k = fake_data_sizes["cifar10"][0] // 5 + 1  # image 1 of the second of five equal batch files
    for c, h, w in [(0, 0, 0), (1, 3, 30), (2, 31, 5), (0, 17, 2)]:
        assert int(d.train_images[k, c, h, w]) == int(row[c * 1024 + h * 32 + w])


def test_cifar100_uses_fine_labels(cifar100_root: Path, fake_data_sizes) -> None:
    d = data.load("cifar100", root=cifar100_root, download=False)
    n_train, n_test = fake_data_sizes["cifar100"]
    _assert_image_data(d, n_train, n_test, 100)
    assert d.train_labels.tolist() == [(3 * i + 1) % 100 for i in range(n_train)]
    assert d.test_labels.tolist() == [(3 * i + 1) % 100 for i in range(n_test)]
    assert d.mean == pytest.approx((0.5071, 0.4865, 0.4409))
    assert d.std == pytest.approx((0.2673, 0.2564, 0.2762))


def test_fmnist_is_resized_grey_in_three_channels(fmnist_root: Path, fake_data_sizes) -> None:
    d = data.load("fmnist", root=fmnist_root, download=False)
    n_train, n_test = fake_data_sizes["fmnist"]
    _assert_image_data(d, n_train, n_test, 10)
    assert d.train_labels.tolist() == [i % 10 for i in range(n_train)]
    for images in (d.train_images, d.test_images):
        assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    # The coordinate image through PIL's bilinear resize, as transforms.Resize(32) does in the harness.
    source = (9 * np.arange(28)[:, None] * np.ones((1, 28))).astype(np.uint8)
    expected = np.asarray(Image.fromarray(source).resize((32, 32), Image.BILINEAR)).astype(int)
    assert np.abs(d.train_images[0, 0].numpy().astype(int) - expected).max() <= 1
    # Rows increase down the image, columns are constant: orientation survived.
    assert (d.train_images[0, 0, 1:, 16] >= d.train_images[0, 0, :-1, 16]).all()
    assert d.mean == pytest.approx((0.2860,) * 3) and d.std == pytest.approx((0.3530,) * 3)


def test_digits_real_data_stratified_split() -> None:
    from sklearn.datasets import load_digits

    d = data.load("digits")
    _assert_image_data(d, 1437, 360, 10)
    targets = load_digits().target
    all_labels = torch.cat([d.train_labels, d.test_labels])
    assert torch.equal(all_labels.bincount(), torch.from_numpy(np.bincount(targets)))
    # Stratified: each class is split 80/20 up to rounding.
    assert (d.test_labels.bincount(minlength=10) - 0.2 * all_labels.bincount()).abs().max() <= 1
    assert int(d.train_images.max()) == 255 and int(d.train_images.min()) == 0  # 0..16 stretched to 0..255
    assert torch.equal(d.train_images[:, 0], d.train_images[:, 2])
    # mean/std are the training split's own statistics.
    pixels = d.train_images[:, 0].numpy().astype(np.float64) / 255
    assert d.mean == pytest.approx((pixels.mean(),) * 3, abs=1e-9)
    assert d.std == pytest.approx((pixels.std(),) * 3, abs=1e-9)
    again = data.load("digits")
    assert torch.equal(again.train_labels, d.train_labels) and torch.equal(again.test_images, d.test_images)


def test_digits_are_decoded_once_then_read_back_without_scikit_learn(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "cache"))
    dataset = datasets.DATASETS["digits"]
    first = digits.load(dataset, tmp_path, download=False)
    (entry,) = (tmp_path / "cache").glob("digits-*.pt")

    def fingerprint(d: data.ImageData) -> str:
        tensors = (d.train_images, d.train_labels, d.test_images, d.test_labels)
        content = b"".join(t.numpy().tobytes() for t in tensors) + repr((d.mean, d.std)).encode()
        return hashlib.sha256(content).hexdigest()

    # A new process (a run's) reads the entry: the same tensors and statistics, and scikit-learn never imported.
    code = ("import hashlib, sys; from poolbench.data import datasets, digits; "
            "d = digits.load(datasets.DATASETS['digits'], None, False); "
            "t = (d.train_images, d.train_labels, d.test_images, d.test_labels); "
            "print('sklearn' in sys.modules, hashlib.sha256(b''.join(x.numpy().tobytes() for x in t) "
            "+ repr((d.mean, d.std)).encode()).hexdigest())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "POOLBENCH_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", fingerprint(first)]

    # An entry changed after it was written is not trained on: it is decoded again and rewritten.
    entry.write_bytes(entry.read_bytes()[:-100])
    again = digits.load(dataset, tmp_path, download=False)
    assert fingerprint(again) == fingerprint(first)
    assert fingerprint(digits.load(dataset, tmp_path, download=False)) == fingerprint(first)
    assert entry.stat().st_size > 5_000_000


def test_channel_stats_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (50, 3, 7, 5), dtype=torch.uint8, generator=gen)
    images[:, 2] = 51  # a constant channel has std 0, floored at one grey level (a divisor)
    mean, std = data.channel_stats(images)
    x = images.numpy().astype(np.float64) / 255
    assert mean == pytest.approx(tuple(x.mean(axis=(0, 2, 3))), abs=1e-12)
    assert std[:2] == pytest.approx(tuple(x.std(axis=(0, 2, 3)))[:2], abs=1e-9)
    assert std[2] == pytest.approx(1 / 255, abs=1e-12)
    with pytest.raises(ValueError):
        data.channel_stats(images.float())


# --- missing, unreachable, corrupt --------------------------------------------------------------------

_EXPECTED_FILES = {
    "cifar10": ["cifar-10-batches-py", "data_batch_1", "data_batch_5", "test_batch", "batches.meta",
                "cifar-10-python.tar.gz"],
    "cifar100": ["cifar-100-python", "train", "test", "meta", "cifar-100-python.tar.gz"],
    "fmnist": ["FashionMNIST/raw", "train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"],
}
_CLASSES = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100, "fmnist": tvd.FashionMNIST}


def _download_url(name: str) -> str:
    cls = _CLASSES[name]
    return cls.mirrors[0] if name == "fmnist" else cls.url


def _point_downloads_at(monkeypatch: pytest.MonkeyPatch, name: str, base: str) -> None:
    """Send the real download code to ``base`` instead of the internet (so tests never download)."""
    cls = _CLASSES[name]
    if name == "fmnist":
        monkeypatch.setattr(cls, "mirrors", [base + "/"])
    else:
        monkeypatch.setattr(cls, "url", f"{base}/{cls.filename}")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _assert_one_line_naming(err: pytest.ExceptionInfo, name: str, root: Path) -> str:
    message = str(err.value)
    assert "\n" not in message
    assert name in message and str(root) in message and "--data-root" in message
    for expected in _EXPECTED_FILES[name]:
        assert expected in message
    assert _download_url(name) in message
    return message


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "fmnist"])
def test_missing_without_download(name: str, tmp_path: Path) -> None:
    with pytest.raises(data.DataMissingError) as err:
        data.load(name, root=tmp_path, download=False)
    _assert_one_line_naming(err, name, tmp_path)


@pytest.mark.parametrize("name", ["cifar100", "fmnist"])
def test_missing_and_download_fails(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _point_downloads_at(monkeypatch, name, f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with pytest.raises(data.DataMissingError) as err:
        data.load(name, root=tmp_path, download=True)
    assert time.perf_counter() - start < 10
    assert "download failed" in _assert_one_line_naming(err, name, tmp_path)


def test_download_that_hangs_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A server that accepts connections but never answers, like a network that drops packets.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        _point_downloads_at(monkeypatch, "cifar10", f"http://127.0.0.1:{server.getsockname()[1]}")
        monkeypatch.setattr(common, "DOWNLOAD_TIMEOUT_S", 0.5)
        before = socket.getdefaulttimeout()
        start = time.perf_counter()
        with pytest.raises(data.DataMissingError, match="download failed"):
            data.load("cifar10", root=tmp_path, download=True)
        assert time.perf_counter() - start < 5
        assert socket.getdefaulttimeout() == before  # the timeout was only set around the download


def test_corrupt_cifar_file_is_rejected(cifar100_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data.load("cifar100", root=cifar100_root, download=False)  # intact: loads
    path = cifar100_root / "cifar-100-python" / "test"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(data.DataMissingError, match="corrupt"):
        data.load("cifar100", root=cifar100_root, download=False)
    _point_downloads_at(monkeypatch, "cifar100", f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(data.DataMissingError, match="download failed"):  # a repair is attempted, and fails
        data.load("cifar100", root=cifar100_root, download=True)


def test_corrupt_meta_is_rejected(cifar10_root: Path) -> None:
    path = cifar10_root / "cifar-10-batches-py" / "batches.meta"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(data.DataMissingError, match="cifar10"):
        data.load("cifar10", root=cifar10_root, download=False)


def test_truncated_fmnist_file_is_rejected(fmnist_root: Path) -> None:
    path = fmnist_root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(data.DataMissingError) as err:
        data.load("fmnist", root=fmnist_root, download=False)
    assert "fmnist" in str(err.value) and "\n" not in str(err.value)


# --- archives copied in by hand ---------------------------------------------------------------------


def test_cifar_archive_is_unpacked(cifar100_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = data.load("cifar100", root=cifar100_root, download=False)
    archive = cifar100_root / tvd.CIFAR100.filename
    folder = cifar100_root / tvd.CIFAR100.base_folder
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    monkeypatch.setattr(tvd.CIFAR100, "tgz_md5", _md5(archive))
    _point_downloads_at(monkeypatch, "cifar100", f"http://127.0.0.1:{_closed_port()}")
    for download in (False, True):  # by us without download; by torchvision (no network needed) with it
        for path in sorted(folder.iterdir()):
            path.unlink()
        folder.rmdir()
        d = data.load("cifar100", root=cifar100_root, download=download)
        assert torch.equal(d.train_images, reference.train_images)
        assert torch.equal(d.test_labels, reference.test_labels)


def test_fmnist_gz_archives_are_unpacked(fmnist_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = data.load("fmnist", root=fmnist_root, download=False)
    raw = fmnist_root / "FashionMNIST" / "raw"
    resources = []
    for archive, _ in tvd.FashionMNIST.resources:
        unpacked = raw / archive.removesuffix(".gz")
        (raw / archive).write_bytes(gzip.compress(unpacked.read_bytes()))
        unpacked.unlink()
        resources.append((archive, _md5(raw / archive)))
    monkeypatch.setattr(tvd.FashionMNIST, "resources", resources)
    d = data.load("fmnist", root=fmnist_root, download=False)
    assert torch.equal(d.train_images, reference.train_images)
    assert torch.equal(d.test_labels, reference.test_labels)


# ---------------------------------------------------------------------------------------------------
# loader

MEAN = (0.3, 0.4, 0.5)
STD = (0.2, 0.25, 0.3)


def _coordinate_images(n: int, seed: int = 0) -> torch.Tensor:
    """Channel 0 = row + 1, channel 1 = column + 1 (so 0 can only be padding), channel 2 = noise."""
    images = torch.empty(n, 3, 32, 32, dtype=torch.uint8)
    images[:, 0] = (torch.arange(32).view(32, 1) + 1).to(torch.uint8)
    images[:, 1] = (torch.arange(32).view(1, 32) + 1).to(torch.uint8)
    gen = torch.Generator().manual_seed(seed)
    images[:, 2] = torch.randint(0, 256, (n, 32, 32), dtype=torch.uint8, generator=gen)
    return images


def _pixels(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Undo the normalisation; the result must be whole numbers in 0..255."""
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    values = (x.float().cpu() * s + m) * 255
    assert (values - values.round()).abs().max() < 1e-3
    assert values.min() > -1e-3 and values.max() < 255 + 1e-3
    return values.round().to(torch.int64)


def _loader(images: torch.Tensor, batch_size: int = 64, **kw) -> data.DeviceLoader:
    kw.setdefault("train", True)
    return data.DeviceLoader(images, torch.arange(len(images)), batch_size, mean=MEAN, std=STD, **kw)


def _recover_crop(out: torch.Tensor, pad: int = 4) -> tuple[int, int, bool]:
    """(top, left, flipped) of one output coordinate image, read from its row/column channels."""
    rows, cols = out[0], out[1]
    i, j = [int(v) for v in (rows > 0).nonzero()[0]]
    top = int(rows[i, j]) - 1 - i + pad
    inside = (cols[i] > 0).nonzero().flatten()
    flipped = bool(cols[i, inside[1]] < cols[i, inside[0]])
    j = int(inside[0])
    left = int(cols[i, j]) - 1 - (31 - j) + pad if flipped else int(cols[i, j]) - 1 - j + pad
    return top, left, flipped


def _epoch(loader: data.DeviceLoader, epoch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if epoch is not None:
        loader.set_epoch(epoch)
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def test_crops_are_exact_zero_filled_shifts_of_the_source() -> None:
    images = _coordinate_images(256)
    x, y = _epoch(_loader(images), 0)
    out = _pixels(x)
    for k in range(len(y)):
        source = images[int(y[k])].to(torch.int64)
        top, left, flipped = _recover_crop(out[k])
        reference = F.pad(source, (4, 4, 4, 4))[:, top:top + 32, left:left + 32]
        if flipped:
            reference = reference.flip(-1)
        assert torch.equal(out[k], reference), k
    # Padded pixels normalise to -mean/std, as ToTensor + Normalize give for PIL's zero fill.
    padding = out[:, 0] == 0
    assert padding.any()
    for c in range(3):
        assert torch.allclose(x[:, c][padding], torch.tensor(-MEAN[c] / STD[c]), atol=1e-5)


def test_offsets_cover_all_positions_and_flip_half() -> None:
    images = _coordinate_images(2000)
    x, _ = _epoch(_loader(images, batch_size=500), 3)
    draws = [_recover_crop(o) for o in _pixels(x)]
    counts = np.zeros((9, 9), dtype=int)
    for top, left, _ in draws:
        counts[top, left] += 1
    assert (counts > 0).all()  # all 81 positions, so offsets are per image, not per batch
    assert counts.max() < 3 * len(draws) / 81  # and roughly uniform
    flip_rate = np.mean([flipped for _, _, flipped in draws])
    assert abs(flip_rate - 0.5) < 0.05


def test_batches_follow_epoch_draws() -> None:
    # epoch_draws() documents the draws behind a pass: the order, (top, left) and the flip flags.
    images = _coordinate_images(100)
    loader = _loader(images, batch_size=32, seed=3)
    x, y = _epoch(loader, 2)
    order, offsets, flips = loader.epoch_draws(2)
    assert torch.equal(y, order)
    recovered = [_recover_crop(o) for o in _pixels(x)]
    assert [(top, left) for top, left, _ in recovered] == [tuple(o) for o in offsets.tolist()]
    assert [flipped for _, _, flipped in recovered] == flips.tolist()


def test_every_image_once_per_epoch_and_batch_sizes() -> None:
    loader = _loader(_coordinate_images(300), batch_size=64)
    assert len(loader) == 5
    sizes, seen = [], []
    for x, y in loader:
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (3, 32, 32)
        sizes.append(len(y))
        seen.append(y)
    assert sizes == [64, 64, 64, 64, 44]
    ys = torch.cat(seen)
    assert torch.equal(ys.sort().values, torch.arange(300))
    assert not torch.equal(ys, torch.arange(300))  # shuffled


def test_drop_last() -> None:
    loader = _loader(_coordinate_images(300), batch_size=64, drop_last=True)
    assert len(loader) == 4
    batches = list(loader)
    assert [len(y) for _, y in batches] == [64] * 4
    assert len(torch.cat([y for _, y in batches]).unique()) == 256


def test_same_seed_and_epoch_same_batches_else_different() -> None:
    images = _coordinate_images(200)
    a = _epoch(_loader(images, seed=7), 5)
    b = _epoch(_loader(images, seed=7), 5)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other_epoch = _epoch(_loader(images, seed=7), 6)
    other_seed = _epoch(_loader(images, seed=8), 5)
    assert not torch.equal(a[1], other_epoch[1]) and not torch.equal(a[1], other_seed[1])


def test_resume_needs_only_set_epoch() -> None:
    images = _coordinate_images(200)
    running = _loader(images)
    for epoch in range(3):
        last = _epoch(running, epoch)
    resumed = _epoch(_loader(images), 2)
    assert torch.equal(last[0], resumed[0]) and torch.equal(last[1], resumed[1])
    # A pass without set_epoch() is the next epoch, not a repeat of the last one.
    following = _epoch(running)
    assert torch.equal(following[1], _epoch(_loader(images), 3)[1])


def test_test_mode_in_order_and_unaugmented() -> None:
    images = _coordinate_images(150)
    loader = _loader(images, batch_size=64, train=False)
    assert len(loader) == 3
    for _ in range(2):  # every pass identical
        x, y = _epoch(loader)
        assert torch.equal(y, torch.arange(150))
        assert torch.equal(_pixels(x), images.to(torch.int64))


def test_no_padding_no_flip_gives_source_images() -> None:
    images = _coordinate_images(100)
    x, y = _epoch(_loader(images, crop_padding=0, hflip=False), 0)
    assert torch.equal(_pixels(x), images[y].to(torch.int64))


def test_memory_format() -> None:
    images = _coordinate_images(10)
    for train in (True, False):
        x, _ = next(iter(_loader(images, train=train)))
        assert x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        x, _ = next(iter(_loader(images, train=train, channels_last=False)))
        assert x.is_contiguous()


def test_global_rng_untouched() -> None:
    torch.manual_seed(123)
    before = torch.get_rng_state()
    numpy_before = np.random.get_state()[1].copy()
    _epoch(_loader(_coordinate_images(100)), 1)
    assert torch.equal(torch.get_rng_state(), before)
    assert np.array_equal(np.random.get_state()[1], numpy_before)


def test_rejects_bad_arguments() -> None:
    images = _coordinate_images(4)
    with pytest.raises(ValueError):
        data.DeviceLoader(images.float(), torch.arange(4), 2, mean=MEAN, std=STD, train=True)
    with pytest.raises(ValueError):
        data.DeviceLoader(images, torch.arange(3), 2, mean=MEAN, std=STD, train=True)
    with pytest.raises(ValueError):
        data.DeviceLoader(images, torch.arange(4), 2, mean=MEAN, std=(0.2, 0.0, 0.3), train=True)


def test_loader_on_digits() -> None:
    d = data.load("digits")
    loader = data.DeviceLoader(d.train_images, d.train_labels, 128, mean=d.mean, std=d.std, train=True)
    x, y = _epoch(loader, 0)
    assert x.shape == (1437, 3, 32, 32) and torch.equal(y.sort().values, d.train_labels.sort().values)
    # Normalised with the split's own statistics: unaugmented test data is roughly zero-mean, unit-std.
    plain = data.DeviceLoader(d.train_images, d.train_labels, 512, mean=d.mean, std=d.std, train=False)
    xt, _ = _epoch(plain)
    assert abs(float(xt.mean())) < 1e-3 and abs(float(xt.std()) - 1) < 1e-3


# Every device this machine has: on a CPU-only machine this checks that two loaders built
# separately give bit-identical epochs; with a GPU, that the GPU gives the CPU's batches.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_same_batches_on_every_device(device: str) -> None:
    images = _coordinate_images(300)
    cpu = _epoch(_loader(images), 4)
    other = _epoch(_loader(images, device=device), 4)
    assert torch.equal(cpu[1], other[1].cpu()) and torch.allclose(cpu[0], other[0].cpu(), atol=1e-6)
