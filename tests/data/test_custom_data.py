"""Tests of poolbench.data.custom: the researcher's own data set as an image folder or an npz file.

The fixtures write tiny data sets in the real formats (PNG and JPEG files via PIL in torchvision's
ImageFolder layout, ``numpy.savez`` files) into tmp_path. Conventions the expectations are computed
from (not from the code under test):

- an image folder has the classes ``cat``, ``ant``, ``Bee`` (written in that order; ImageFolder's
  sorted order, and so the labels, is ``Bee`` = 0, ``ant`` = 1, ``cat`` = 2); a class folder holds
  ``img0.png``, ``img1.png``, ...; every image is seeded random noise, returned by the fixture in
  the order a load must give (classes sorted, then file names);
- an npz's labels are ``i % 3`` in train and ``(i + 1) % 3`` in test.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from poolbench import data
from poolbench.data import custom, decode_cache
from poolbench.data import datasets as datasets_module
from poolbench.data.custom import DataInfo, describe, load_custom

CLASSES_WRITTEN = ("cat", "ant", "Bee")
CLASSES_SORTED = ("Bee", "ant", "cat")


@dataclass
class Folder:
    """An image folder written by :func:`_write_folder` and the pixels a load must return."""

    root: Path
    train: list[np.ndarray]  # HWC uint8, in load order
    train_labels: list[int]
    test: list[np.ndarray]
    test_labels: list[int]

    @property
    def spec(self) -> str:
        return f"imagefolder:{self.root}"


def _chw(images: list[np.ndarray]) -> torch.Tensor:
    """HWC uint8 arrays -> uint8 [N, 3, H, W] (grey [H, W] arrays copied to 3 channels)."""
    stacked = [np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a for a in images]
    return torch.from_numpy(np.stack(stacked)).permute(0, 3, 1, 2).contiguous()


def _resized(images: torch.Tensor, size: int) -> torch.Tensor:
    return TF.resize(images.contiguous(), [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


def _write_folder(root: Path, height: int = 20, width: int = 24, train_per_class: int = 4, test_per_class: int = 2,
                  split: str = "test", seed: int = 0) -> Folder:
    """PNGs of random noise in ``root/train/<class>/`` and ``root/<split>/<class>/`` (see module docstring)."""
    rng = np.random.default_rng(seed)
    written: dict[tuple[str, str], np.ndarray] = {}
    for name in CLASSES_WRITTEN:
        for part, count in (("train", train_per_class), (split, test_per_class)):
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"img{i}.png")
                written[(part, f"{name}/img{i}.png")] = pixels
    out = Folder(root=root, train=[], train_labels=[], test=[], test_labels=[])
    for part, images, labels in (("train", out.train, out.train_labels), (split, out.test, out.test_labels)):
        for label, name in enumerate(CLASSES_SORTED):
            for i in range(train_per_class if part == "train" else test_per_class):
                images.append(written[(part, f"{name}/img{i}.png")])
                labels.append(label)
    return out


@pytest.fixture
def folder(tmp_path: Path) -> Folder:
    """3 classes x (4 train + 2 test) PNGs of 20 x 24 (height x width)."""
    return _write_folder(tmp_path / "pets")


def _one_line_error(excinfo: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, f"{part!r} not in {message!r}"
    return message


# ---------------------------------------------------------------------------------------------------
# specs


def test_is_custom_normalise_spec_and_label(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert custom.is_custom("imagefolder:x") and custom.is_custom("npz:x.npz")
    assert not custom.is_custom("cifar10") and not custom.is_custom("folder:x")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    # imagefolder: ~ expanded, relative made absolute, symlinks resolved; npz: only absolute
    assert custom.normalise_spec("imagefolder:~/link/") == f"imagefolder:{tmp_path.resolve() / 'real'}"
    assert custom.normalise_spec("imagefolder:link") == f"imagefolder:{tmp_path.resolve() / 'real'}"
    assert custom.normalise_spec("npz:~/d.npz") == f"npz:{tmp_path / 'd.npz'}"
    assert custom.normalise_spec("npz:./sub/../d.npz") == f"npz:{Path.cwd() / 'd.npz'}"
    spec = custom.normalise_spec("imagefolder:link")
    assert custom.normalise_spec(spec) == spec  # idempotent
    for bad in ("folder:x", "cifar10", "imagefolder:", "npz:  "):
        with pytest.raises(ValueError) as err:
            custom.normalise_spec(bad)
        assert "\n" not in str(err.value)
    assert custom.spec_label("imagefolder:/data/my pets (v2)/") == "imagefolder-my_pets__v2_"
    assert custom.spec_label("npz:/data/cifar.small.npz") == "npz-cifar.small"
    assert custom.spec_label("imagefolder:link") == "imagefolder-real"


def test_default_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "mine"))
    assert decode_cache.default_dir() == tmp_path / "mine"
    monkeypatch.delenv("POOLBENCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert decode_cache.default_dir() == tmp_path / "xdg" / "poolbench" / "decoded"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert decode_cache.default_dir() == tmp_path / "home" / ".cache" / "poolbench" / "decoded"


def test_moved_names_are_re_exported() -> None:
    from poolbench.data import common, images

    assert datasets_module.ImageData is images.ImageData is data.ImageData
    assert datasets_module.DataMissingError is common.DataMissingError is custom.DataMissingError is \
        data.DataMissingError
    assert datasets_module.channel_stats is images.channel_stats is data.channel_stats


# ---------------------------------------------------------------------------------------------------
# imagefolder


def test_imagefolder_pixels_labels_and_class_order(folder: Folder, cache: Path) -> None:
    d = load_custom(folder.spec, cache_dir=cache)
    assert d.name == custom.normalise_spec(folder.spec)
    assert d.num_classes == 3
    for images, labels, written, written_labels in ((d.train_images, d.train_labels, folder.train, folder.train_labels),
                                                    (d.test_images, d.test_labels, folder.test, folder.test_labels)):
        assert images.shape == (len(written), 3, 20, 24) and images.dtype == torch.uint8 and images.is_contiguous()
        assert torch.equal(images, _chw(written))  # bit-exact, every pixel at its channel, row and column
        assert labels.dtype == torch.int64 and labels.tolist() == written_labels
    assert describe(folder.spec).classes == CLASSES_SORTED


def test_imagefolder_mean_std_from_the_train_split_only(folder: Folder, cache: Path) -> None:
    d = load_custom(folder.spec, cache_dir=cache)
    assert (d.mean, d.std) == data.channel_stats(_chw(folder.train))
    assert (d.mean, d.std) != data.channel_stats(torch.cat([_chw(folder.train), _chw(folder.test)]))


def test_imagefolder_val_fallback_and_both_refused(tmp_path: Path, cache: Path) -> None:
    only_val = _write_folder(tmp_path / "a", split="val")
    d = load_custom(only_val.spec, cache_dir=cache)
    assert torch.equal(d.test_images, _chw(only_val.test))
    assert describe(only_val.spec).test_split == "val"

    both = _write_folder(tmp_path / "b", split="test", seed=1)
    _write_folder(tmp_path / "other", split="val", seed=2)
    (tmp_path / "other" / "val").rename(tmp_path / "b" / "val")  # other pixels, same classes
    for call in (lambda: load_custom(both.spec, cache_dir=cache), lambda: describe(both.spec)):
        with pytest.raises(data.DataMissingError) as err:  # which one is held out would be a guess
            call()
        _one_line_error(err, f"{both.root} has both a test and a val folder", "rename or remove one")


def test_imagefolder_empty_test_class_folder_is_fine(folder: Folder, cache: Path) -> None:
    for image in (folder.root / "test" / "ant").iterdir():
        image.unlink()
    d = load_custom(folder.spec, cache_dir=cache)
    assert d.num_classes == 3 and 1 not in d.test_labels.tolist() and len(d.test_labels) == 4


def test_grey_palette_and_jpeg_images_become_rgb(tmp_path: Path, cache: Path) -> None:
    rng = np.random.default_rng(5)
    root = tmp_path / "modes"
    grey = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    colour = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
    Image.fromarray(grey).save(root / "train" / "a" / "grey.png")  # mode L
    Image.fromarray(colour).convert("P").save(root / "train" / "a" / "palette.png")  # mode P
    Image.fromarray(colour).save(root / "train" / "b" / "photo.jpg", quality=90)
    Image.fromarray(colour).save(root / "test" / "a" / "x.png")
    Image.fromarray(grey).save(root / "test" / "b" / "y.jpeg")
    d = load_custom(f"imagefolder:{root}", cache_dir=cache)

    def pil_rgb(path: Path) -> torch.Tensor:  # PIL's own decode, the reference for the lossy / palette files
        return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)

    assert d.train_images.shape == (3, 3, 16, 16) and d.train_labels.tolist() == [0, 0, 1]
    grey_loaded = d.train_images[0]
    assert torch.equal(grey_loaded[0], torch.from_numpy(grey))
    assert torch.equal(grey_loaded[0], grey_loaded[1]) and torch.equal(grey_loaded[0], grey_loaded[2])
    assert torch.equal(d.train_images[1], pil_rgb(root / "train" / "a" / "palette.png"))
    assert torch.equal(d.train_images[2], pil_rgb(root / "train" / "b" / "photo.jpg"))
    test_grey = d.test_images[1]
    assert torch.equal(test_grey, pil_rgb(root / "test" / "b" / "y.jpeg"))
    assert torch.equal(test_grey[0], test_grey[1]) and torch.equal(test_grey[1], test_grey[2])


def test_imagefolder_resize_matches_torchvision(tmp_path: Path, cache: Path) -> None:
    big = _write_folder(tmp_path / "big", height=48, width=48)
    d = load_custom(big.spec, image_size=16, cache_dir=cache)
    assert d.train_images.shape == (12, 3, 16, 16) and d.test_images.shape == (6, 3, 16, 16)
    assert torch.equal(d.train_images, _resized(_chw(big.train), 16))
    assert torch.equal(d.test_images, _resized(_chw(big.test), 16))
    assert (d.mean, d.std) == data.channel_stats(_resized(_chw(big.train), 16))


def test_imagefolder_mixed_sizes_need_image_size(tmp_path: Path, cache: Path) -> None:
    mixed = _write_folder(tmp_path / "mixed", height=48, width=48)
    small = np.zeros((20, 24, 3), dtype=np.uint8)
    Image.fromarray(small).save(mixed.root / "train" / "cat" / "img9.png")
    with pytest.raises(data.DataMissingError) as err:
        load_custom(mixed.spec, cache_dir=cache)
    _one_line_error(err, "images have sizes from 24x20 to 48x48", "give --image-size N", "img9.png")
    d = load_custom(mixed.spec, image_size=32, cache_dir=cache)
    assert d.train_images.shape == (13, 3, 32, 32)
    assert torch.equal(d.train_images[-1], _resized(torch.zeros(3, 20, 24, dtype=torch.uint8), 32))
    # describe reads only the first image of each split: here they agree, so it does not refuse
    assert describe(mixed.spec).image_shape == (3, 48, 48)
    Image.fromarray(small).save(mixed.root / "test" / "Bee" / "img0.png")  # now the first test image differs
    with pytest.raises(data.DataMissingError) as err:
        describe(mixed.spec)
    _one_line_error(err, "images have sizes from 24x20 to 48x48", "--image-size N")


def _break(root: Path, how: str) -> str:
    """Damage the folder written by the fixture; return what the error must name."""
    if how == "not a folder":
        return str(root / "nowhere")
    if how == "no train":
        (root / "train").rename(root / "training")
        return "has no train folder"
    if how == "no test":
        (root / "test").rename(root / "testing")
        return "neither a test nor a val folder"
    if how == "class only in test":
        (root / "test" / "dog").mkdir()
        return f"{root / 'test'} has the class folder(s) dog"
    if how == "class folder missing from test":
        for image in (root / "test" / "ant").iterdir():
            image.unlink()
        (root / "test" / "ant").rmdir()
        return "lacks the class folder(s) ant"
    if how == "empty train class":
        (root / "train" / "dog").mkdir()
        (root / "test" / "dog").mkdir()
        (root / "train" / "dog" / "notes.txt").write_text("not an image")
        return f"{root / 'train' / 'dog'} holds no images"
    if how == "undecodable":
        (root / "train" / "ant" / "img1.png").write_bytes(b"this is not a png")
        return f"cannot decode the image {root / 'train' / 'ant' / 'img1.png'}"
    if how == "truncated":
        path = root / "test" / "cat" / "img0.png"
        path.write_bytes(path.read_bytes()[:120])
        return f"cannot decode the image {path}"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["not a folder", "no train", "no test", "class only in test",
                                 "class folder missing from test", "empty train class", "undecodable", "truncated"])
def test_imagefolder_errors_are_one_line_naming_the_place(folder: Folder, cache: Path, how: str) -> None:
    expected = _break(folder.root, how)
    spec = f"imagefolder:{folder.root / 'nowhere'}" if how == "not a folder" else folder.spec
    with pytest.raises(data.DataMissingError) as err:
        load_custom(spec, cache_dir=cache)
    _one_line_error(err, expected)
    if how not in ("undecodable", "truncated"):  # describe sees the same layout errors without decoding
        with pytest.raises(data.DataMissingError) as err:
            describe(spec)
        _one_line_error(err, expected)
    assert not cache.exists() or not any(cache.iterdir())  # nothing cached from a refused data set


# ---------------------------------------------------------------------------------------------------
# npz


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _labels(n: int, offset: int = 0, dtype: type = np.int64) -> np.ndarray:
    return ((np.arange(n) + offset) % 3).astype(dtype)


def _npz_pair(rng: np.random.Generator, shape_train: tuple[int, ...], shape_test: tuple[int, ...]) -> dict:
    return dict(x_train=rng.integers(0, 256, size=shape_train, dtype=np.uint8), y_train=_labels(shape_train[0]),
                x_test=rng.integers(0, 256, size=shape_test, dtype=np.uint8), y_test=_labels(shape_test[0], 1))


@pytest.mark.parametrize("shape, to_nchw", [
    ((7, 10, 12), lambda x: np.repeat(x[:, None], 3, axis=1)),  # grey NHW
    ((7, 10, 12, 1), lambda x: np.repeat(x.transpose(0, 3, 1, 2), 3, axis=1)),  # grey NHWC
    ((7, 1, 10, 12), lambda x: np.repeat(x, 3, axis=1)),  # grey NCHW
    ((7, 10, 12, 3), lambda x: x.transpose(0, 3, 1, 2)),  # colour NHWC
    ((7, 3, 10, 12), lambda x: x),  # colour NCHW
])
def test_npz_layouts_pixels_and_labels(tmp_path: Path, cache: Path, shape: tuple[int, ...], to_nchw) -> None:
    arrays = _npz_pair(np.random.default_rng(1), shape, (4, *shape[1:]))
    spec = f"npz:{_save_npz(tmp_path / 'set.npz', **arrays)}"
    d = load_custom(spec, cache_dir=cache)
    for images, key in ((d.train_images, "x_train"), (d.test_images, "x_test")):
        expected = torch.from_numpy(np.ascontiguousarray(to_nchw(arrays[key])))
        assert images.dtype == torch.uint8 and images.is_contiguous() and torch.equal(images, expected)
    assert d.train_labels.dtype == torch.int64 and d.train_labels.tolist() == (np.arange(7) % 3).tolist()
    assert d.test_labels.tolist() == [1, 2, 0, 1]
    assert d.num_classes == 3
    assert (d.mean, d.std) == data.channel_stats(d.train_images)
    info = describe(spec)
    assert info.classes == ("0", "1", "2") and info.test_split == "x_test"
    assert info.image_shape == tuple(d.train_images.shape[1:])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint32, np.int64])
def test_npz_labels_of_any_integer_dtype(tmp_path: Path, cache: Path, dtype: type) -> None:
    arrays = _npz_pair(np.random.default_rng(2), (6, 8, 8), (3, 8, 8))
    arrays["y_train"], arrays["y_test"] = _labels(6, dtype=dtype), _labels(3, 1, dtype=dtype)
    d = load_custom(f"npz:{_save_npz(tmp_path / 'set.npz', **arrays)}", cache_dir=cache)
    assert d.train_labels.dtype == torch.int64 and d.train_labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_npz_resize_matches_torchvision(tmp_path: Path, cache: Path) -> None:
    arrays = _npz_pair(np.random.default_rng(3), (5, 28, 28), (3, 20, 24))  # different sizes: fine with a resize
    spec = f"npz:{_save_npz(tmp_path / 'set.npz', **arrays)}"
    d = load_custom(spec, image_size=32, cache_dir=cache)
    grey3 = torch.from_numpy(arrays["x_train"]).unsqueeze(1).expand(-1, 3, -1, -1)
    assert torch.equal(d.train_images, _resized(grey3, 32))
    assert d.test_images.shape == (3, 3, 32, 32)
    with pytest.raises(data.DataMissingError) as err:
        load_custom(spec, cache_dir=cache)
    _one_line_error(err, "x_train images are 28x28 and x_test images 20x24", "--image-size N")


def _npz_case(tmp_path: Path, how: str) -> tuple[Path, tuple[str, ...]]:
    """An npz broken in one way, and what its error must say."""
    path = tmp_path / "bad.npz"
    arrays = _npz_pair(np.random.default_rng(4), (6, 8, 8, 3), (3, 8, 8, 3))
    if how == "float images":
        arrays["x_train"] = arrays["x_train"].astype(np.float32) / 255
        return _save_npz(path, **arrays), ("x_train is float32", "convert to uint8 0..255")
    if how == "missing keys":
        del arrays["y_test"], arrays["x_test"]
        return _save_npz(path, **arrays), ("lacks the array(s) x_test, y_test",)
    if how == "negative label":
        arrays["y_test"][1] = -1
        return _save_npz(path, **arrays), ("y_test holds the label -1",)
    if how == "length mismatch":
        arrays["y_train"] = arrays["y_train"][:5]
        return _save_npz(path, **arrays), ("y_train has 5 labels but x_train has 6 images",)
    if how == "float labels":
        arrays["y_train"] = arrays["y_train"].astype(np.float64)
        return _save_npz(path, **arrays), ("y_train is float64, not an integer type",)
    if how == "2-D labels":
        arrays["y_test"] = arrays["y_test"].reshape(3, 1)
        return _save_npz(path, **arrays), ("y_test has shape (3, 1)",)
    if how == "bad image shape":
        arrays["x_test"] = np.zeros((3, 8, 8, 5), dtype=np.uint8)
        return _save_npz(path, **arrays), ("x_test has shape (3, 8, 8, 5)",)
    if how == "no images":
        arrays["x_test"], arrays["y_test"] = np.zeros((0, 8, 8, 3), dtype=np.uint8), np.zeros(0, dtype=np.int64)
        return _save_npz(path, **arrays), ("x_test holds no images",)
    if how == "not a zip":
        np.save(tmp_path / "bad.npy", arrays["x_train"])
        (tmp_path / "bad.npy").rename(path)
        return path, ("is not an .npz file",)
    if how == "no file":
        return path, ("no file",)
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["float images", "missing keys", "negative label", "length mismatch", "float labels",
                                 "2-D labels", "bad image shape", "no images", "not a zip", "no file"])
def test_npz_errors_are_one_line_naming_the_file(tmp_path: Path, cache: Path, how: str) -> None:
    path, parts = _npz_case(tmp_path, how)
    for call in (lambda: load_custom(f"npz:{path}", cache_dir=cache), lambda: describe(f"npz:{path}")):
        with pytest.raises(data.DataMissingError) as err:
            call()
        _one_line_error(err, str(path), *parts)


def test_npz_describe_reads_no_image_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = _npz_pair(np.random.default_rng(6), (9, 3, 16, 16), (4, 3, 16, 16))
    path = _save_npz(tmp_path / "set.npz", **arrays)
    read: list[str] = []
    original = np.lib.npyio.NpzFile.__getitem__

    def recording(self, key):
        read.append(key)
        return original(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", recording)
    info = describe(f"npz:{path}", image_size=8)
    assert sorted(read) == ["y_test", "y_train"]
    assert info == DataInfo(name=f"npz:{path}", num_classes=3, classes=("0", "1", "2"), image_shape=(3, 8, 8),
                            train_images=9, test_images=4, test_split="x_test")


# ---------------------------------------------------------------------------------------------------
# describe and its byte count


@pytest.mark.parametrize("image_size", [None, 12])
def test_describe_agrees_with_load(folder: Folder, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                   image_size: int | None) -> None:
    d = load_custom(folder.spec, image_size=image_size, cache_dir=cache)

    def no_decode(*args, **kwargs):
        raise AssertionError("describe decoded an image")

    monkeypatch.setattr(custom, "_decode_image", no_decode)
    info = describe(folder.spec, image_size=image_size)
    assert info.name == d.name and info.num_classes == d.num_classes == len(info.classes)
    assert info.train_images == len(d.train_labels) and info.test_images == len(d.test_labels)
    assert info.image_shape == tuple(d.train_images.shape[1:]) == tuple(d.test_images.shape[1:])
    assert info.test_split == "test"


def test_data_info_bytes() -> None:
    info = DataInfo(name="npz:/x.npz", num_classes=2, classes=("0", "1"), image_shape=(3, 20, 24),
                    train_images=10, test_images=4, test_split="x_test")
    assert info.bytes(0) == 10 * 20 * 24 * 3 + 4 * 20 * 24 * 3 + 8 * 14
    assert info.bytes(4) == 10 * 28 * 32 * 3 + 4 * 20 * 24 * 3 + 8 * 14  # only train is stored padded
    with pytest.raises(ValueError):
        info.bytes(-1)


# ---------------------------------------------------------------------------------------------------
# the cache


def _refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("decoded although the cache holds the data set")

    monkeypatch.setattr(custom, "_decode_image", refuse)
    monkeypatch.setattr(custom, "_decode_npz", refuse)
    monkeypatch.setattr(Image, "open", refuse)


def _assert_same(a: data.ImageData, b: data.ImageData) -> None:
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert (a.name, a.num_classes, a.mean, a.std) == (b.name, b.num_classes, b.mean, b.std)


def test_second_load_reads_the_cache_without_decoding(folder: Folder, cache: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[str] = []
    first = load_custom(folder.spec, cache_dir=cache, log=lines.append)
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].name.startswith("imagefolder-") and files[0].suffix == ".pt"
    assert len(lines) == 1 and lines[0].startswith(f"decoded 18 images of {first.name} in ")
    assert lines[0].endswith(f"cached as {files[0]}")
    _refuse_decoding(monkeypatch)
    second = load_custom(folder.spec, cache_dir=cache, log=lines.append)
    _assert_same(first, second)
    assert len(lines) == 2 and lines[1].startswith(f"read {first.name} from the cache (18 images in ")
    assert list(cache.iterdir()) == files


def test_npz_second_load_reads_the_cache(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = f"npz:{_save_npz(tmp_path / 'set.npz', **_npz_pair(np.random.default_rng(7), (6, 9, 9), (2, 9, 9)))}"
    first = load_custom(spec, image_size=4, cache_dir=cache)
    _refuse_decoding(monkeypatch)
    _assert_same(first, load_custom(spec, image_size=4, cache_dir=cache))


def test_content_changes_give_a_new_cache_key(folder: Folder, cache: Path) -> None:
    def keys() -> set[str]:
        return {p.name for p in cache.iterdir()}

    load_custom(folder.spec, cache_dir=cache)
    seen = keys()
    changes = {
        "one pixel edited": lambda: _edit_pixel(folder.root / "train" / "ant" / "img2.png"),
        "image added": lambda: Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(folder.root / "test/cat/x.png"),
        "image renamed": lambda: (folder.root / "test" / "cat" / "x.png").rename(folder.root / "test/cat/y.png"),
    }
    for what, change in changes.items():
        change()
        d = load_custom(folder.spec, cache_dir=cache)
        assert len(keys() - seen) == 1, what
        seen = keys()
    assert d.train_images[4 + 2, 0, 0, 0] == (int(folder.train[6][0, 0, 0]) + 1) % 256  # the edit was decoded
    load_custom(folder.spec, image_size=10, cache_dir=cache)
    assert len(keys() - seen) == 1  # the options are part of the key too


def _edit_pixel(path: Path) -> None:
    pixels = np.array(Image.open(path))
    pixels[0, 0, 0] = (int(pixels[0, 0, 0]) + 1) % 256
    Image.fromarray(pixels).save(path)


def test_same_content_elsewhere_shares_the_key(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = _write_folder(tmp_path / "a")
    b = _write_folder(tmp_path / "b")  # same seed: the same files under another path
    load_custom(a.spec, cache_dir=cache)
    _refuse_decoding(monkeypatch)
    d = load_custom(b.spec, cache_dir=cache)
    assert d.name == custom.normalise_spec(b.spec)  # the name is the spec asked for, not the cached one's
    assert torch.equal(d.train_images, _chw(b.train))


def test_truncated_cache_file_is_rebuilt(folder: Folder, cache: Path) -> None:
    first = load_custom(folder.spec, cache_dir=cache)
    (path,) = cache.iterdir()
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    lines: list[str] = []
    second = load_custom(folder.spec, cache_dir=cache, log=lines.append)
    _assert_same(first, second)
    assert len(lines) == 2 and "damaged" in lines[0] and str(path) in lines[0] and lines[1].startswith("decoded ")
    assert zipfile.is_zipfile(path) and list(cache.iterdir()) == [path]  # whole again
    lines.clear()
    load_custom(folder.spec, cache_dir=cache, log=lines.append)
    assert lines[0].startswith("read ")


def test_unwritable_cache_dir_still_loads(folder: Folder, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder's parent should be")  # fails for root too, unlike chmod
    lines: list[str] = []
    d = load_custom(folder.spec, cache_dir=blocker / "cache", log=lines.append)
    assert torch.equal(d.train_images, _chw(folder.train))
    assert len(lines) == 1 and lines[0].startswith("warning: decoded 18 images") and "could not cache" in lines[0]
    assert "\n" not in lines[0]


def test_default_cache_dir_is_used(folder: Folder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLBENCH_CACHE", str(tmp_path / "env-cache"))
    load_custom(folder.spec)
    assert len(list((tmp_path / "env-cache").iterdir())) == 1
