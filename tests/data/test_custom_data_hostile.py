"""Issue 31: what a hostile tester's own data set did to a load, each now right or one line naming the fix.

Every data set here is written in the real format by the test (PNG and TIFF files via PIL, ``.npz``
files via numpy, symlinks and named pipes via ``os``); expectations are computed from the values
written, not from the code under test.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_custom_data import _one_line_error

from poolbench import cli, data
from poolbench.data import decode_cache
from poolbench.data.custom import describe, load_custom


def _grey_folder(root: Path, write, per_class: int = 2, size: tuple[int, int] = (6, 5)) -> torch.Tensor:
    """Two classes of random 8-bit grey images, each saved by ``write(path_without_suffix, pixels)``;
    returns the 8-bit pixels in load order (class a, then b; train then test) as uint8 [N, H, W]."""
    rng = np.random.default_rng(0)
    order = []
    for split in ("train", "test"):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=size, dtype=np.uint8)
                pixels[0, 0], pixels[0, 1] = 0, 255  # the extremes of the range, in every image
                write(root / split / name / f"img{i}", pixels)
                order.append(pixels)
    return torch.from_numpy(np.stack(order))


# ---------------------------------------------------------------------------------------------------
# 1. 16-bit and float images are scaled by their depth, not clipped


def _write_16bit_png(stem: Path, pixels: np.ndarray) -> None:
    Image.fromarray(pixels.astype(np.uint16) * 257).save(stem.with_suffix(".png"))  # 8-bit v -> 16-bit v * 257


def _write_float_tiff(stem: Path, pixels: np.ndarray) -> None:
    Image.fromarray(pixels.astype(np.float32) / 255).save(stem.with_suffix(".tif"))


@pytest.mark.parametrize("write, mode", [(_write_16bit_png, "I;16"), (_write_float_tiff, "F")])
def test_16bit_and_float_images_decode_like_their_8bit_equivalent(tmp_path: Path, cache: Path, write,
                                                                  mode: str) -> None:
    expected = _grey_folder(tmp_path / "deep", write)
    first = next((tmp_path / "deep" / "train" / "a").iterdir())
    with Image.open(first) as image:
        assert image.mode == mode  # what PIL gives for the file: the case under test
    d = load_custom(f"imagefolder:{tmp_path / 'deep'}", cache_dir=cache)
    images = torch.cat([d.train_images, d.test_images])
    assert images.shape == (8, 3, 6, 5)
    assert torch.equal(images[:, 0], images[:, 2]) and torch.equal(images[:, 0], images[:, 1])
    difference = (images[:, 0].int() - expected.int()).abs()
    assert int(difference.max()) <= 1  # within one level of the 8-bit image (PIL's convert clipped to 255 or 0)


def test_float_image_outside_0_1_and_32bit_integer_are_refused(tmp_path: Path, cache: Path) -> None:
    _grey_folder(tmp_path / "f", _write_float_tiff)
    bad = tmp_path / "f" / "train" / "b" / "img1.tif"
    Image.fromarray(np.full((6, 5), 3.5, dtype=np.float32)).save(bad)
    with pytest.raises(data.DataMissingError) as err:
        load_custom(f"imagefolder:{tmp_path / 'f'}", cache_dir=cache)
    _one_line_error(err, str(bad), "PIL mode F", "values from 3.5 to 3.5, not 0..1")
    Image.fromarray(np.full((6, 5), 70000, dtype=np.int32)).save(bad)
    with Image.open(bad) as image:
        assert image.mode == "I"
    with pytest.raises(data.DataMissingError) as err:
        load_custom(f"imagefolder:{tmp_path / 'f'}", cache_dir=cache)
    _one_line_error(err, str(bad), "32-bit integer pixels (PIL mode I)", "save it as an 8- or 16-bit image")


# ---------------------------------------------------------------------------------------------------
# 2. npz labels are the class indices 0..K-1, every class with training images


def _npz(path: Path, y_train: list[int], y_test: list[int], dtype: type = np.int64) -> str:
    rng = np.random.default_rng(1)
    np.savez(path, x_train=rng.integers(0, 256, (len(y_train), 4, 4), dtype=np.uint8),
             y_train=np.array(y_train, dtype=dtype),
             x_test=rng.integers(0, 256, (len(y_test), 4, 4), dtype=np.uint8), y_test=np.array(y_test, dtype=dtype))
    return f"npz:{path}"


@pytest.mark.parametrize("y_train, y_test, dtype, parts", [
    ([0, 5, 9, 0], [5, 9], np.int64,
     ("y_train's 3 classes are not labelled 0..2", "the label(s) 5, 9 but none of 1, 2", "relabel the classes 0..K-1")),
    ([0, 1, 2, 255], [0, 1], np.uint8, ("y_train's 4 classes are not labelled 0..3", "the label(s) 255 but none of 3")),
    ([0, 1, 2**40], [0, 1], np.int64, ("the label(s) 1099511627776 but none of 2",)),
    ([0, 1, 2**63 + 5], [0, 1], np.uint64, ("the label(s) 9223372036854775813 but none of 2",)),
    ([0, 1, 0, 1], [0, 2], np.int64, ("y_test holds the label(s) 2 that no y_train image has", "0..1")),
    ([0, 1, 0, 1], [2**63 + 1, 0], np.uint64, ("y_test holds the label(s) 9223372036854775809 that no y_train",)),
    ([3, 3, 3], [3], np.int64, ("y_train holds one class (label 3)", "at least 2 classes")),
    ([0, 1, -2], [0], np.int64, ("y_train holds the label -2, below 0", "relabel")),
    ([0, 1, 0], [0, -1], np.int16, ("y_test holds the label -1, below 0",)),
])
def test_npz_labels_not_0_to_k_minus_1_are_refused(tmp_path: Path, cache: Path, y_train: list[int],
                                                    y_test: list[int], dtype: type, parts: tuple[str, ...]) -> None:
    spec = _npz(tmp_path / "labels.npz", y_train, y_test, dtype)
    for call in (lambda: load_custom(spec, cache_dir=cache), lambda: describe(spec)):
        with pytest.raises(data.DataMissingError) as err:
            call()
        _one_line_error(err, str(tmp_path / "labels.npz"), *parts)
    assert not cache.exists()


def test_npz_labels_0_to_k_minus_1_give_k_classes(tmp_path: Path, cache: Path) -> None:
    spec = _npz(tmp_path / "ok.npz", [2, 0, 1, 1], [1], np.uint8)  # a test split may lack classes
    d = load_custom(spec, cache_dir=cache)
    assert d.num_classes == 3 and d.train_labels.tolist() == [2, 0, 1, 1] and d.test_labels.tolist() == [1]
    assert describe(spec).classes == ("0", "1", "2")


def test_imagefolder_of_one_class_is_refused(tmp_path: Path, cache: Path) -> None:
    for split in ("train", "test"):
        (tmp_path / "one" / split / "only").mkdir(parents=True)
        Image.fromarray(np.zeros((4, 4), dtype=np.uint8)).save(tmp_path / "one" / split / "only" / "a.png")
    with pytest.raises(data.DataMissingError) as err:
        load_custom(f"imagefolder:{tmp_path / 'one'}", cache_dir=cache)
    _one_line_error(err, f"{tmp_path / 'one' / 'train'} has one class folder, 'only'", "at least 2")


# ---------------------------------------------------------------------------------------------------
# 3. an image reached twice: folder loops are cut, one file in two places is refused


def _png_folder(root: Path, per_class: int = 3) -> Path:
    """Classes a and b, ``per_class`` train and 1 test PNG each, every image a different grey level."""
    level = 0
    for split, count in (("train", per_class), ("test", 1)):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.fromarray(np.full((4, 4), level, dtype=np.uint8)).save(root / split / name / f"img{i}.png")
                level += 10
    return root


def test_a_folder_symlink_loop_is_listed_once(tmp_path: Path, cache: Path) -> None:
    root = _png_folder(tmp_path / "loop")
    os.symlink("..", root / "train" / "a" / "up")  # train/a/up -> train: a loop through train/a
    os.symlink(".", root / "train" / "b" / "self")  # train/b/self -> train/b
    (root / "train" / "b" / "deeper").mkdir()
    os.symlink("..", root / "train" / "b" / "deeper" / "back")  # -> train/b, two levels down
    with pytest.raises(data.DataMissingError) as err:  # train/a/up/b/... is b's images again, labelled a
        load_custom(f"imagefolder:{root}", cache_dir=cache)
    _one_line_error(err, "are one file (a symlink or hard link), twice in train", "remove one of them")
    (root / "train" / "a" / "up").unlink()
    d = load_custom(f"imagefolder:{root}", cache_dir=cache)
    assert d.train_labels.tolist() == [0, 0, 0, 1, 1, 1] and d.test_labels.tolist() == [0, 1]
    assert describe(f"imagefolder:{root}").train_images == 6


def test_one_file_in_train_and_test_is_refused(tmp_path: Path, cache: Path) -> None:
    root = _png_folder(tmp_path / "leak")
    test_image = root / "test" / "b" / "img0.png"
    os.symlink(test_image, root / "train" / "b" / "leaked.png")
    for call in (lambda: load_custom(f"imagefolder:{root}", cache_dir=cache),
                 lambda: describe(f"imagefolder:{root}")):
        with pytest.raises(data.DataMissingError) as err:
            call()
        _one_line_error(err, f"{root / 'train' / 'b' / 'leaked.png'} and {test_image} are one file",
                        "in train and in test")
    (root / "train" / "b" / "leaked.png").unlink()
    os.link(root / "train" / "a" / "img0.png", root / "test" / "a" / "hardlinked.png")  # a hard link too
    with pytest.raises(data.DataMissingError) as err:
        load_custom(f"imagefolder:{root}", cache_dir=cache)
    _one_line_error(err, f"{root / 'train' / 'a' / 'img0.png'} and {root / 'test' / 'a' / 'hardlinked.png'}",
                    "in train and in test")


def test_a_test_folder_that_is_the_train_folder_is_refused(tmp_path: Path, cache: Path) -> None:
    root = _png_folder(tmp_path / "same")
    for image in (root / "test" / "a").iterdir():
        image.unlink()
    (root / "test" / "a").rmdir()
    os.symlink(root / "train" / "a", root / "test" / "a")
    with pytest.raises(data.DataMissingError) as err:
        load_custom(f"imagefolder:{root}", cache_dir=cache)
    _one_line_error(err, "in train and in test")


# ---------------------------------------------------------------------------------------------------
# 4. only regular files are images: a named pipe is refused, never opened


def test_a_named_pipe_among_the_images_is_refused_without_hanging(tmp_path: Path, cache: Path) -> None:
    root = _png_folder(tmp_path / "fifo")
    pipe = root / "train" / "a" / "stream.png"
    os.mkfifo(pipe)
    os.symlink(pipe, root / "test" / "b" / "via_link.png")
    signal.signal(signal.SIGALRM, _hung)
    signal.alarm(20)  # a read of the pipe blocks forever: fail instead
    try:
        for call in (lambda: load_custom(f"imagefolder:{root}", cache_dir=cache),
                     lambda: describe(f"imagefolder:{root}")):
            with pytest.raises(data.DataMissingError) as err:
                call()
            _one_line_error(err, f"{pipe} is a named pipe (FIFO), not a regular file", "remove it")
        pipe.unlink()  # the symlink to it is now broken: named too
        with pytest.raises(data.DataMissingError) as err:
            load_custom(f"imagefolder:{root}", cache_dir=cache)
        _one_line_error(err, f"cannot read {root / 'test' / 'b' / 'via_link.png'}")
    finally:
        signal.alarm(0)
    os.mkfifo(root / "train" / "a" / "notes.txt")  # not an image by its extension: never looked at
    (root / "test" / "b" / "via_link.png").unlink()
    assert len(load_custom(f"imagefolder:{root}", cache_dir=cache).train_labels) == 6


def _hung(signum: int, frame: object) -> None:
    raise TimeoutError("the load hung on the named pipe")


# ---------------------------------------------------------------------------------------------------
# 5. an npz layout that reads both as channels first and channels last is refused


@pytest.mark.parametrize("key, shape", [("x_train", (4, 3, 10, 3)), ("x_test", (2, 1, 10, 1)),
                                        ("x_train", (4, 3, 3, 3))])
def test_ambiguous_npz_layout_is_refused(tmp_path: Path, cache: Path, key: str, shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(5)
    arrays = dict(x_train=rng.integers(0, 256, (4, 10, 10, 3), dtype=np.uint8), y_train=np.array([0, 1, 0, 1]),
                  x_test=rng.integers(0, 256, (2, 10, 10, 3), dtype=np.uint8), y_test=np.array([0, 1]))
    arrays[key] = rng.integers(0, 256, shape, dtype=np.uint8)
    np.savez(tmp_path / "amb.npz", **arrays)
    for call in (lambda: load_custom(f"npz:{tmp_path / 'amb.npz'}", image_size=8, cache_dir=cache),
                 lambda: describe(f"npz:{tmp_path / 'amb.npz'}", image_size=8)):
        with pytest.raises(data.DataMissingError) as err:
            call()
        _one_line_error(err, str(tmp_path / "amb.npz"), f"{key} has shape {shape}",
                        "reads both as [N, C, H, W] and as [N, H, W, C]", "numpy.transpose(x, (0, 2, 3, 1))")


def test_the_transposes_the_message_names_make_it_unambiguous(tmp_path: Path, cache: Path) -> None:
    rng = np.random.default_rng(6)
    channels_first = rng.integers(0, 256, (4, 3, 10, 3), dtype=np.uint8)  # 10 x 3 images, RGB
    np.savez(tmp_path / "fixed.npz", x_train=np.transpose(channels_first, (0, 2, 3, 1)), y_train=np.array([0, 1, 0, 1]),
             x_test=np.transpose(channels_first[:2], (0, 2, 3, 1)), y_test=np.array([0, 1]))
    d = load_custom(f"npz:{tmp_path / 'fixed.npz'}", cache_dir=cache)
    assert torch.equal(d.train_images, torch.from_numpy(channels_first))


# ---------------------------------------------------------------------------------------------------
# 7. a channel constant in every image trains


def test_a_constant_channel_loads_and_normalises_to_finite_values(tmp_path: Path, cache: Path) -> None:
    rng = np.random.default_rng(7)
    root = tmp_path / "blank"
    for split, count in (("train", 6), ("test", 2)):
        for name in ("a", "b"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                pixels[:, :, 2] = 40  # the blue channel is 40 in every pixel of every image
                Image.fromarray(pixels).save(root / split / name / f"img{i}.png")
    d = load_custom(f"imagefolder:{root}", cache_dir=cache)
    assert d.mean[2] == pytest.approx(40 / 255) and d.std[2] == pytest.approx(1 / 255)
    assert 0.2 < d.std[0] < 0.4  # uniform noise: 0.29, not floored
    loader = data.DeviceLoader(d.train_images, d.train_labels, 4, mean=d.mean, std=d.std, train=True,
                               crop_padding=2, seed=1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        assert torch.isfinite(x).all()
        assert torch.all((x[:, 2].abs() < 1e-4) | ((x[:, 2] + 40).abs() < 1e-3))  # the mean, or a padded zero pixel
        loss = torch.nn.functional.cross_entropy(model(x), y)
        assert torch.isfinite(loss)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_channel_stats_floors_only_a_std_below_one_grey_level() -> None:
    images = torch.zeros((2, 3, 4, 4), dtype=torch.uint8)
    images[0, 0] = 255  # channel 0: half 0, half 255 -> std 0.5; channel 1: one pixel of 1
    images[0, 1, 0, 0] = 1
    mean, std = data.channel_stats(images)
    assert std[0] == pytest.approx(0.5) and std[1] == std[2] == pytest.approx(1 / 255)
    assert mean == pytest.approx((0.5, 1 / 255 / 32, 0.0))


# ---------------------------------------------------------------------------------------------------
# 8. a cache entry is checked against the digest written with it


@pytest.mark.parametrize("alter", ["pixel", "label", "std", "digest only"])
def test_an_altered_cache_entry_is_discarded_and_decoded_again(tmp_path: Path, cache: Path, alter: str) -> None:
    root = _png_folder(tmp_path / "pets")
    spec = f"imagefolder:{root}"
    first = load_custom(spec, cache_dir=cache)
    (entry,) = cache.iterdir()
    blob = torch.load(entry, weights_only=True)
    if alter == "pixel":
        blob["train_images"][2, 1, 3, 3] ^= 0x40
    elif alter == "label":
        blob["test_labels"][0] = 1 - blob["test_labels"][0]
    elif alter == "std":
        blob["std"] = [s * 2 for s in blob["std"]]
    else:
        blob["digest"] = "0" * 64
    torch.save(blob, entry)
    lines: list[str] = []
    again = load_custom(spec, cache_dir=cache, log=lines.append)
    assert len(lines) == 2 and lines[0] == (f"warning: the cache file {entry} is damaged (ValueError: its content does "
                                            f"not match the digest written with it (altered after it was written)): "
                                            f"deleted, decoding again")
    assert lines[1].startswith(f"decoded 8 images of {spec}")
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(again, name), getattr(first, name))
    assert again.std == first.std
    lines.clear()
    load_custom(spec, cache_dir=cache, log=lines.append)  # rewritten intact: read back
    assert len(lines) == 1 and lines[0].startswith(f"read {spec} from the cache")


# ---------------------------------------------------------------------------------------------------
# 9. a relative POOLBENCH_CACHE is the folder the command was started in, wherever its runs start


def test_a_relative_cache_is_anchored_where_the_command_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launch, sweep_folder = tmp_path / "launch", tmp_path / "sweep"
    launch.mkdir()
    sweep_folder.mkdir()
    root = _png_folder(tmp_path / "pets")
    monkeypatch.setenv("POOLBENCH_CACHE", "cache")
    monkeypatch.setenv("POOLBENCH_DATA", "~/data")
    monkeypatch.chdir(launch)
    with pytest.raises(SystemExit):
        cli.main(["--version"])  # what every command does first
    assert os.environ["POOLBENCH_CACHE"] == str(launch / "cache")
    assert os.environ["POOLBENCH_DATA"] == str(Path("~/data").expanduser())
    monkeypatch.chdir(sweep_folder)  # where a sweep starts each run, which inherits the environment
    assert decode_cache.default_dir() == launch / "cache"
    load_custom(f"imagefolder:{root}")
    assert len(list((launch / "cache").iterdir())) == 1 and not any(sweep_folder.iterdir())


def test_default_cache_dir_is_absolute_without_the_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLBENCH_CACHE", "rel/cache")
    monkeypatch.chdir(tmp_path)
    assert decode_cache.default_dir() == tmp_path / "rel" / "cache"


# ---------------------------------------------------------------------------------------------------
# 10. running out of memory is said as such, never as a damaged file


def test_out_of_memory_is_one_line_saying_to_load_less(tmp_path: Path, cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _npz(tmp_path / "big.npz", [0, 1, 0], [1])
    root = _png_folder(tmp_path / "pets")

    def no_memory(*args, **kwargs):
        raise MemoryError()

    with monkeypatch.context() as patch:
        patch.setattr(np, "load", no_memory)  # the npz's arrays (labels too) do not fit
        for call in (lambda: load_custom(spec, cache_dir=cache), lambda: describe(spec)):
            with pytest.raises(data.DataMissingError) as err:
                call()
            message = _one_line_error(err, f"not enough memory to load {spec}", "free memory",
                                      "a smaller --image-size, fewer or smaller images")
            assert "write it again" not in message
    with monkeypatch.context() as patch:
        patch.setattr(torch, "empty", no_memory)  # the decoded split does not fit
        with pytest.raises(data.DataMissingError) as err:
            load_custom(f"imagefolder:{root}", cache_dir=cache)
        _one_line_error(err, f"not enough memory to load imagefolder:{root}")
    with monkeypatch.context() as patch:
        patch.setattr(Image.Image, "convert", no_memory)  # one image's decode does not fit
        with pytest.raises(data.DataMissingError) as err:
            load_custom(f"imagefolder:{root}", cache_dir=cache)
        assert "cannot decode" not in _one_line_error(err, "not enough memory")
    assert not cache.exists()


def test_an_npz_that_is_a_named_pipe_is_refused_without_hanging(tmp_path: Path, cache: Path) -> None:
    pipe = tmp_path / "stream.npz"
    os.mkfifo(pipe)
    signal.signal(signal.SIGALRM, _hung)
    signal.alarm(20)
    try:
        for call in (lambda: load_custom(f"npz:{pipe}", cache_dir=cache), lambda: describe(f"npz:{pipe}")):
            with pytest.raises(data.DataMissingError) as err:
                call()
            _one_line_error(err, f"npz: {pipe} is a named pipe (FIFO), not a regular file")
    finally:
        signal.alarm(0)


def test_a_folder_nested_deeper_than_the_recursion_limit_is_listed(tmp_path: Path, cache: Path) -> None:
    root = _png_folder(tmp_path / "deep")
    deepest = root / "train" / "a"
    for _ in range(1050):  # more levels than Python's default recursion limit (1000)
        deepest = deepest / "d"
        deepest.mkdir()
    Image.fromarray(np.full((4, 4), 7, dtype=np.uint8)).save(deepest / "bottom.png")
    try:
        d = load_custom(f"imagefolder:{root}", cache_dir=cache)
        assert d.train_labels.tolist() == [0, 0, 0, 0, 1, 1, 1]
        assert int(d.train_images[3, 0, 0, 0]) == 7  # a's images: img0..img2, then the nested one (sorted by folder)
    finally:  # shutil.rmtree recurses (Python 3.11): remove it bottom up
        (deepest / "bottom.png").unlink()
        while deepest != root / "train" / "a":
            deepest.rmdir()
            deepest = deepest.parent
