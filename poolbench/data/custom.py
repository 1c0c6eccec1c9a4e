"""The researcher's own data set, ``imagefolder:PATH`` or ``npz:FILE``, decoded once and cached by content.

Two formats a researcher already has, read into the same :class:`ImageData` as the named data sets
(uint8 ``[N, 3, H, W]`` images, int64 labels, channel mean/std measured on the training split):

- ``imagefolder:PATH``: torchvision's ``ImageFolder`` layout, ``PATH/train/<class>/<image>`` and
  ``PATH/test/<class>/<image>`` (or ``PATH/val/...``, not both). Discovery follows torchvision's
  (``find_classes``, ``make_dataset``'s order and ``IMG_EXTENSIONS``) without its loops, repeats
  and special files (:func:`_list_images`); PIL decodes, every image converted to RGB (16-bit and
  float grey scaled by their depth, :func:`_rgb_pixels`), so grey and palette images get 3 channels.
- ``npz:FILE``: a ``numpy.savez`` file of uint8 ``x_train``, ``x_test`` and integer ``y_train``,
  ``y_test`` (see :func:`_layout` for which image layouts are accepted).

``image_size=N`` resizes every image once, at load, to N x N (bilinear, antialiased); without it the
images must all have one size. Decoding a folder of PNGs or JPEGs takes seconds to minutes and a run
or a sweep loads the data set many times, so the decoded tensors are cached in one file per data
set, named by the SHA-256 of the content (every file's relative path and bytes, or the npz's bytes)
and of the options: an edited, added or renamed image gives a new key, an unchanged data set is read
back without decoding, once its content matches the SHA-256 stored in it (:mod:`.decode_cache`).
Anything the user can fix raises :class:`DataMissingError` with one line.
"""

from __future__ import annotations

import os
import re
import stat
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.lib import format as npy_format
from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..core.quoting import quote
from . import decode_cache
from .common import DataMissingError, one_line
from .images import DataInfo, ImageData, channel_stats

_KINDS = ("imagefolder", "npz")
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_LAYOUT = "PATH/train/<class>/<image> and PATH/test/<class>/<image> (or PATH/val/<class>/<image>)"
_NPZ_HOW = "numpy.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)"
_RESIZE_CHUNK = 1024  # images resized per call when an npz is resized: bounds the temporary memory

Log = decode_cache.Log


# ---------------------------------------------------------------------------------------------------
# specs


def is_custom(spec: str) -> bool:
    """Whether ``spec`` names a custom data set (``imagefolder:...`` or ``npz:...``), not a named one."""
    return spec.startswith(tuple(f"{kind}:" for kind in _KINDS))


def _split_spec(spec: str) -> tuple[str, str]:
    kind, colon, path = spec.partition(":")
    if not colon or kind not in _KINDS:
        raise ValueError(f"unknown data spec {quote(spec)}: a custom data set is imagefolder:PATH or npz:FILE")
    if not path.strip():
        raise ValueError(f"{kind}: needs a path after the colon, e.g. {kind}:~/data/pets"
                         + (".npz" if kind == "npz" else ""))
    return kind, path


def normalise_spec(spec: str) -> str:
    """The one spelling of a custom spec: its kind and the absolute path (``~`` expanded).

    ``imagefolder:`` paths are also resolved (symlinks, ``..``), so two spellings of one folder give
    one spec; an ``npz:`` path is only made absolute, keeping the file name the user gave (its stem
    is the label, see :func:`spec_label`). ``ValueError`` for an unknown prefix or an empty path.

    >>> normalise_spec("npz:/data/../data/pets.npz")
    'npz:/data/pets.npz'
    """
    kind, path = _split_spec(spec)
    expanded = Path(path).expanduser()
    absolute = expanded.resolve() if kind == "imagefolder" else Path(os.path.abspath(expanded))
    return f"{kind}:{absolute}"


def spec_label(spec: str) -> str:
    """A short name safe in a folder name: ``imagefolder-<folder name>`` or ``npz-<file stem>``.

    Characters other than ``[A-Za-z0-9._-]`` become ``_``.

    >>> spec_label("npz:/data/my pets.npz")
    'npz-my_pets'
    """
    kind, path = _split_spec(normalise_spec(spec))
    name = Path(path).name if kind == "imagefolder" else Path(path).stem
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{kind}-{name or 'root'}")


# ---------------------------------------------------------------------------------------------------
# describe: counts, classes and shape without decoding


def describe(spec: str, image_size: int | None = None) -> DataInfo:
    """Classes, image counts and the loaded image shape of a custom data set, cheaply.

    An image folder is listed and the first image of each split opened for its size (the header
    only); without ``image_size`` the other images' sizes are not checked here, :func:`load_custom`
    does that. An npz's shapes come from its arrays' ``.npy`` headers; only the labels are loaded.
    Raises :class:`DataMissingError` for everything :func:`load_custom` would refuse from the same
    information.
    """
    _check_image_size(image_size)
    spec = normalise_spec(spec)
    with _memory_refused(spec):
        return _describe(spec, image_size)


def _describe(spec: str, image_size: int | None) -> DataInfo:
    kind, path = _split_spec(spec)
    if kind == "imagefolder":
        folder = _scan_folder(Path(path))
        if image_size is None:
            firsts = [(p, _image_size_of(p)) for p in (folder.train[0][0], folder.test[0][0])]
            if firsts[0][1] != firsts[1][1]:
                raise _sizes_error(folder.root, firsts)
            width, height = firsts[0][1]
        else:
            width = height = image_size
        return DataInfo(name=spec, num_classes=len(folder.classes), classes=folder.classes,
                        image_shape=(3, height, width), train_images=len(folder.train),
                        test_images=len(folder.test), test_split=folder.test_split)
    npz = _check_npz(Path(path), image_size)
    height, width = npz.size if image_size is None else (image_size, image_size)
    return DataInfo(name=spec, num_classes=npz.num_classes, classes=_npz_classes(npz.num_classes),
                    image_shape=(3, height, width), train_images=len(npz.y_train), test_images=len(npz.y_test),
                    test_split="x_test")


# ---------------------------------------------------------------------------------------------------
# load


def load_custom(spec: str, image_size: int | None = None, cache_dir: Path | None = None,
                log: Log | None = None) -> ImageData:
    """Both splits of a custom data set as uint8 tensors, from the cache when its content is unchanged.

    ``image_size``: resize every image once to N x N (bilinear, antialiased); ``None`` keeps the
    native size, which must then be the same for all images. ``cache_dir`` (default
    :func:`.decode_cache.default_dir`) holds one file per decoded data set; a damaged or altered file there
    is deleted and rebuilt, and a cache that cannot be written only costs a decode next time. ``log`` gets one
    line saying where the data came from (default: silent). Mean and std are measured on the
    training split. Raises :class:`DataMissingError` for a data set that cannot be used as it is.

    Every load reads each file once to hash it (not decoding it): that is what makes an edited image
    impossible to miss, and it costs a fraction of a second for thousands of small images.
    """
    _check_image_size(image_size)
    spec = normalise_spec(spec)
    with _memory_refused(spec):
        return _load(spec, image_size, cache_dir, log)


def _load(spec: str, image_size: int | None, cache_dir: Path | None, log: Log | None) -> ImageData:
    kind, path = _split_spec(spec)
    folder: _Folder | None = None
    npz: _Npz | None = None
    if kind == "imagefolder":
        folder = _scan_folder(Path(path))
        key = _folder_key(folder, image_size)
    else:
        npz = _check_npz(Path(path), image_size)
        key = _npz_key(npz, image_size)
    cache_dir = Path(cache_dir) if cache_dir is not None else decode_cache.default_dir()

    def decode() -> dict[str, Any]:
        if folder is not None:
            train_images, train_labels, test_images, test_labels = _decode_folder(folder, image_size)
            classes = folder.classes
        else:
            assert npz is not None
            train_images, train_labels, test_images, test_labels = _decode_npz(npz, image_size)
            classes = _npz_classes(npz.num_classes)
        mean, std = channel_stats(train_images)
        return dict(classes=list(classes), mean=list(mean), std=list(std), train_images=train_images,
                    train_labels=train_labels, test_images=test_images, test_labels=test_labels)

    # Named by the key alone (the kind for the reader): a copy of the data set elsewhere shares the file.
    return decode_cache.load(cache_dir / f"{kind}-{key}.pt", key, spec, decode, log)


@contextmanager
def _memory_refused(spec: str) -> Iterator[None]:
    """A MemoryError (the decoded images, an npz's arrays, PIL's decode of a huge image) as one line:
    the data set is too large for this machine's memory, which no edit of its files fixes."""
    try:
        yield
    except MemoryError as err:
        raise DataMissingError(f"not enough memory to load {spec}: free memory, or load less of it (a smaller "
                               f"--image-size, fewer or smaller images)") from err


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise ValueError(f"image size must be a positive integer, got {quote(image_size)}")


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[..., 3, h, w]`` -> ``[..., 3, size, size]``: bilinear with antialiasing (PIL's
    ``resize(BILINEAR)``, which a downscale needs to not alias); made contiguous first so that every
    image goes through the same kernel whatever layout it arrived in."""
    return TF.resize(images.contiguous(), [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)


# ---------------------------------------------------------------------------------------------------
# imagefolder


@dataclass(frozen=True)
class _Folder:
    """An image folder as listed: the class names and each split's (file, label) in torchvision's order."""

    root: Path
    classes: tuple[str, ...]
    test_split: str  # "test" or "val"
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def _class_folders(split_dir: Path) -> list[str]:
    try:
        classes, _ = find_classes(split_dir)
    except FileNotFoundError:  # find_classes' "Couldn't find any class folder"
        return []
    return classes


def _scan_folder(root: Path) -> _Folder:
    """List an image folder and refuse a layout that cannot make a data set, naming the folder.

    The classes are the train folder's sub-folders, sorted (ImageFolder's rule), and label the test
    split too. Every train class needs images; the test split must have a folder for every class,
    which may be empty, and no other class.
    """
    if not root.is_dir():
        raise DataMissingError(f"imagefolder: {root} is not a folder: give the folder laid out as {_LAYOUT}")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise DataMissingError(f"imagefolder: {root} has no train folder: lay it out as {_LAYOUT}")
    found = [s for s in ("test", "val") if (root / s).is_dir()]
    if len(found) == 2:
        raise DataMissingError(f"imagefolder: {root} has both a test and a val folder: rename or remove one, so "
                               f"that which split is held out is not a guess")
    test_split = found[0] if found else None
    if test_split is None:
        raise DataMissingError(f"imagefolder: {root} has neither a test nor a val folder: put the held-out "
                               f"images in {root / 'test'}/<class>/ (layout {_LAYOUT})")
    test_dir = root / test_split
    classes = _class_folders(train_dir)
    if not classes:
        raise DataMissingError(f"imagefolder: {train_dir} has no class folders: put each class's images "
                               f"in {train_dir}/<class>/")
    if len(classes) < 2:
        raise DataMissingError(f"imagefolder: {train_dir} has one class folder, {quote(classes[0])}: a classifier "
                               f"needs at least 2; put each class's images in {train_dir}/<class>/")
    test_classes = _class_folders(test_dir)
    extra = sorted(set(test_classes) - set(classes))
    if extra:
        raise DataMissingError(f"imagefolder: {test_dir} has the class folder(s) {', '.join(extra)} that "
                               f"{train_dir} lacks: both splits need the same classes; add their images to train "
                               f"or remove them from {test_split}")
    missing = [c for c in classes if c not in test_classes]
    if missing:
        raise DataMissingError(f"imagefolder: {test_dir} lacks the class folder(s) {', '.join(missing)} of "
                               f"{train_dir}: create them (they may be empty) so that both splits have the "
                               f"same classes")
    seen: dict[tuple[int, int], tuple[str, str]] = {}
    train = _list_images(train_dir, classes, seen)
    test = _list_images(test_dir, classes, seen)
    filled = {label for _, label in train}
    empty = [name for i, name in enumerate(classes) if i not in filled]
    if empty:
        more = f" (and {len(empty) - 1} more class folders)" if len(empty) > 1 else ""
        raise DataMissingError(f"imagefolder: the class folder {train_dir / empty[0]}{more} holds no images "
                               f"({' '.join(IMG_EXTENSIONS)}): put its images there or remove the folder")
    if not test:
        raise DataMissingError(f"imagefolder: {test_dir} holds no images ({' '.join(IMG_EXTENSIONS)}): put "
                               f"the held-out images in {test_dir}/<class>/")
    return _Folder(root=root, classes=tuple(classes), test_split=test_split, train=train, test=test)


def _list_images(split_dir: Path, classes: list[str], seen: dict[tuple[int, int], tuple[str, str]]
                 ) -> list[tuple[str, int]]:
    """Each image under ``split_dir/<class>/`` with its label, in torchvision's ``make_dataset`` order.

    torchvision's rules (folder symlinks followed, a file is an image by its extension in
    ``IMG_EXTENSIONS``, sorted by folder then name) with what its walk lets through refused or cut:
    a folder symlink back to a folder above it (a loop, which torchvision walks until the path is
    too long, listing the class again each time) is not entered again; a file reached twice (a
    symlink or hard link, in one split or across both: ``seen`` maps (device, inode) to where it
    was first found) is refused, since counting it once would hide a mistake in the layout and a
    test image in training inflates the test accuracy; only regular files are images (a named pipe
    would block the read forever).
    """
    samples: list[tuple[str, int]] = []
    for label, name in enumerate(classes):
        found: list[tuple[str, str]] = []
        _walk(str(split_dir / name), frozenset({_identity(os.stat(split_dir / name))}), found)
        for folder, file_name in sorted(found):
            if not file_name.lower().endswith(IMG_EXTENSIONS):
                continue
            path = os.path.join(folder, file_name)
            try:
                status = os.stat(path)  # follows symlinks: the file an image symlink points to
            except OSError as err:
                raise DataMissingError(f"imagefolder: cannot read {path} ({one_line(err)}): make it readable or "
                                       f"remove it") from err
            if not stat.S_ISREG(status.st_mode):
                raise DataMissingError(f"imagefolder: {path} is {_file_kind(status.st_mode)}, not a regular file: "
                                       f"only files can be images; remove it")
            first = seen.setdefault(_identity(status), (split_dir.name, path))
            if first[1] != path:
                where = f"in {first[0]} and in {split_dir.name}" if first[0] != split_dir.name else \
                    f"twice in {split_dir.name}"
                raise DataMissingError(f"imagefolder: {first[1]} and {path} are one file (a symlink or hard link), "
                                       f"{where}: each image must be in the data set once; remove one of them")
            samples.append((path, label))
    return samples


def _identity(status: os.stat_result) -> tuple[int, int]:
    return status.st_dev, status.st_ino


def _walk(top: str, above: frozenset[tuple[int, int]], found: list[tuple[str, str]]) -> None:
    """Append (folder, name) of every non-folder entry under ``top``, following folder symlinks
    except into a real folder on the way down (``above`` for ``top``: a loop). A stack rather than
    recursion: a folder nested a thousand deep is a path the file system allows."""
    stack = [(top, above)]
    while stack:
        folder, above = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as err:
            raise DataMissingError(f"imagefolder: cannot list {folder} ({one_line(err)}): make it readable") from err
        for entry in entries:
            if not entry.is_dir():  # follows symlinks; a broken symlink is a file here and refused by its reader
                found.append((folder, entry.name))
                continue
            identity = _identity(entry.stat())
            if identity not in above:
                stack.append((entry.path, above | {identity}))


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def _folder_key(folder: _Folder, image_size: int | None) -> str:
    """SHA-256 over the options and every (relative path, bytes) of the data set's files, sorted by path.

    Reads the files one at a time. The path is part of the key because it carries the class and
    the split; the classes are hashed too (they follow from the paths, but being explicit is cheap).
    """
    digest = decode_cache.new_key("imagefolder", image_size)
    decode_cache.add_field(digest, "\n".join(folder.classes).encode())
    files = sorted((Path(path).relative_to(folder.root).as_posix(), path) for path, _ in folder.train + folder.test)
    for relative, path in files:
        try:
            content = Path(path).read_bytes()
        except OSError as err:
            raise DataMissingError(f"imagefolder: cannot read {path} ({one_line(err)}): make it readable "
                                   f"or remove it") from err
        decode_cache.add_field(digest, relative.encode())
        decode_cache.add_field(digest, content)
    return digest.hexdigest()


def _image_size_of(path: str) -> tuple[int, int]:
    """(width, height) of an image file from its header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as err:  # whatever PIL raises, the file is not an image it can read
        raise _decode_error(path, err) from err


def _decode_error(path: str, err: BaseException) -> DataMissingError:
    return DataMissingError(f"imagefolder: cannot decode the image {path} ({one_line(err)}): replace or "
                            f"remove the file")


def _decode_image(path: str, image_size: int | None) -> torch.Tensor:
    """One image file as uint8 RGB ``[3, H, W]``, resized to ``image_size`` x ``image_size`` if given."""
    try:
        with Image.open(path) as image:
            rgb = _rgb_pixels(image, path)  # decodes the pixels
        pixels = torch.from_numpy(rgb).permute(2, 0, 1)  # HWC -> CHW
    except (DataMissingError, MemoryError):  # MemoryError: not the file's fault, see _memory_refused
        raise
    except Exception as err:  # a truncated file fails only here, in the decode
        raise _decode_error(path, err) from err
    return _resize(pixels, image_size) if image_size is not None else pixels


def _rgb_pixels(image: Image.Image, path: str) -> np.ndarray:
    """An opened image's pixels as uint8 RGB ``[H, W, 3]``, scaled from its bit depth.

    PIL's ``convert("RGB")`` clips the values of 16-bit grey (mode ``I;16``) and float (``F``) images
    to 0..255 rather than scaling them: a 16-bit image becomes nearly all white, a float image in
    0..1 black. So 16-bit grey is scaled by 255 / 65535 (an 8-bit value v stored as 16-bit v * 257
    decodes to v again) and float in 0..1 by 255; a float image outside 0..1 and a 32-bit integer one
    have no known range and are refused. Every other mode (grey, palette, RGBA, CMYK; 16-bit colour
    PNGs, which PIL reads as 8-bit RGB) is PIL's ``convert("RGB")``.
    """
    mode = image.mode
    sixteen_bit = mode.startswith("I;16") or (mode == "I" and image.format == "PNG")  # PNG has no 32-bit
    if not sixteen_bit and mode not in ("I", "F"):
        return np.array(image.convert("RGB"))
    values = np.asarray(image, dtype=np.float64)
    if mode == "I" and not sixteen_bit:
        raise DataMissingError(f"imagefolder: {path} has 32-bit integer pixels (PIL mode I), whose range is "
                               f"unknown: save it as an 8- or 16-bit image")
    if mode == "F" and not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
        low, high = np.nanmin(values), np.nanmax(values)
        raise DataMissingError(f"imagefolder: {path} is a float image (PIL mode F) with values from {low:g} to "
                               f"{high:g}, not 0..1: scale it to 0..1 or save it as an 8- or 16-bit image")
    if sixteen_bit and (values.min() < 0 or values.max() > 65535):  # mode I from a PNG: never, but cheap
        raise DataMissingError(f"imagefolder: {path} has pixel values outside 0..65535 (PIL mode {mode}): "
                               f"save it as an 8- or 16-bit image")
    scale = 255 / 65535 if sixteen_bit else 255
    grey = np.rint(values * scale).astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def _sizes_error(root: Path, sizes: list[tuple[str, tuple[int, int]]]) -> DataMissingError:
    """The images do not all have one size: name the smallest and largest (width x height)."""
    by_area = sorted(sizes, key=lambda item: (item[1][0] * item[1][1], item[1]))
    (small_path, (w0, h0)), (large_path, (w1, h1)) = by_area[0], by_area[-1]
    return DataMissingError(f"imagefolder: {root}: images have sizes from {w0}x{h0} to {w1}x{h1} (width x "
                            f"height; {small_path} and {large_path}): give --image-size N to resize all to N x N")


def _decode_folder(folder: _Folder, image_size: int | None) -> tuple[torch.Tensor, ...]:
    """Decode both splits into preallocated uint8 tensors, one image at a time.

    Memory: the result plus one image's decode. The first image fixes the size; an image of
    another size (only possible without ``image_size``) stops the decode, and the headers of all
    images are then read for the size range the error reports.
    """
    shape: tuple[int, ...] | None = None
    out: list[torch.Tensor] = []
    for samples in (folder.train, folder.test):
        images: torch.Tensor | None = None
        for i, (path, _) in enumerate(samples):
            image = _decode_image(path, image_size)
            if shape is None:
                shape = tuple(image.shape)
            elif tuple(image.shape) != shape:
                every = [p for p, _ in folder.train + folder.test]
                raise _sizes_error(folder.root, [(p, _image_size_of(p)) for p in every])
            if images is None:
                images = torch.empty((len(samples), *shape), dtype=torch.uint8)
            images[i] = image
        assert images is not None  # _scan_folder refuses an empty split
        out += [images, torch.tensor([label for _, label in samples], dtype=torch.int64)]
    return tuple(out)


# ---------------------------------------------------------------------------------------------------
# npz


@dataclass(frozen=True)
class _Npz:
    """An npz file checked from its headers and labels: what its images will decode to."""

    path: Path
    layouts: dict[str, str]  # x_train / x_test -> "NHW", "NHWC" or "NCHW"
    size: tuple[int, int]  # (H, W) of x_train
    y_train: np.ndarray
    y_test: np.ndarray
    num_classes: int


def _npz_classes(num_classes: int) -> tuple[str, ...]:
    return tuple(str(k) for k in range(num_classes))


def _npz_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """(shape, dtype) of each of the four arrays the file holds, read from the ``.npy`` headers in the
    zip: no array is loaded, so a large or wrong x array costs nothing to inspect or refuse."""
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # a named pipe would block the read forever
            raise DataMissingError(f"npz: {path} is {_file_kind(mode)}, not a regular file: give the path of an "
                                   f".npz written by {_NPZ_HOW}")
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                key = member.removesuffix(".npy")
                if key not in _NPZ_KEYS or not member.endswith(".npy"):
                    continue
                with archive.open(member) as stream:
                    version = npy_format.read_magic(stream)
                    if version == (1, 0):
                        shape, _, dtype = npy_format.read_array_header_1_0(stream)
                    elif version == (2, 0):
                        shape, _, dtype = npy_format.read_array_header_2_0(stream)
                    else:  # 3.0 is only written for structured dtypes with non-latin-1 field names
                        raise ValueError(f"{key} is in .npy format {version[0]}.{version[1]}, which is not read")
                headers[key] = (tuple(shape), dtype)
    except FileNotFoundError as err:
        raise DataMissingError(f"npz: no file {path}: give the path of an .npz written by {_NPZ_HOW}") from err
    except (zipfile.BadZipFile, IsADirectoryError) as err:
        raise DataMissingError(f"npz: {path} is not an .npz file (a zip of .npy arrays): write it with "
                               f"{_NPZ_HOW}") from err
    except (ValueError, OSError) as err:
        raise DataMissingError(f"npz: cannot read {path} ({one_line(err)}): write it again with {_NPZ_HOW}") from err
    missing = [key for key in _NPZ_KEYS if key not in headers]
    if missing:
        raise DataMissingError(f"npz: {path} lacks the array(s) {', '.join(missing)}: write it with {_NPZ_HOW}")
    return headers


def _layout(shape: tuple[int, ...]) -> str | None:
    """The layout of an image array, or None when it is none of the accepted ones.

    ``[N, H, W]``: grey, ``"NHW"``. ``[N, a, b, c]``: channels first (``"NCHW"``) when axis 1 has
    size 1 or 3 and the last axis not, channels last (``"NHWC"``) the other way round, and
    ``"ambiguous"`` when both have, such as ``[N, 3, H, 3]``: reading it either way would be a
    guess (the file says nothing of its layout), and a wrong guess trains on scrambled pixels.
    Size 1 is grey, 3 is RGB.

    >>> _layout((10, 28, 28)), _layout((10, 32, 32, 3)), _layout((10, 1, 28, 28)), _layout((10, 3, 5, 3))
    ('NHW', 'NHWC', 'NCHW', 'ambiguous')
    """
    if len(shape) == 3:
        return "NHW"
    if len(shape) == 4:
        first, last = shape[1] in (1, 3), shape[3] in (1, 3)
        if first and last:
            return "ambiguous"
        if first:
            return "NCHW"
        if last:
            return "NHWC"
    return None


def _height_width(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    return (shape[2], shape[3]) if layout == "NCHW" else (shape[1], shape[2])


def _check_npz(path: Path, image_size: int | None) -> _Npz:
    """Refuse an npz that cannot make a data set, from its headers and its labels (which it loads)."""
    headers = _npz_headers(path)
    layouts: dict[str, str] = {}
    for key in ("x_train", "x_test"):
        shape, dtype = headers[key]
        if dtype != np.uint8:
            raise DataMissingError(f"npz: {path}: {key} is {dtype}, not uint8: convert to uint8 0..255 "
                                   f"(e.g. numpy.clip(x * 255, 0, 255).round().astype(numpy.uint8) for floats in 0..1)")
        layout = _layout(shape)
        if layout is None:
            raise DataMissingError(f"npz: {path}: {key} has shape {shape}: give images as [N, H, W] (grey), "
                                   f"[N, H, W, 1|3] or [N, 1|3, H, W]")
        if layout == "ambiguous":
            raise DataMissingError(f"npz: {path}: {key} has shape {shape}, which reads both as [N, C, H, W] and "
                                   f"as [N, H, W, C]: store it so that only one fits, numpy.transpose(x, (0, 2, 3, 1)) "
                                   f"if it is channels first, (0, 3, 1, 2) if channels last")
        if shape[0] == 0:
            raise DataMissingError(f"npz: {path}: {key} holds no images: both splits need some")
        layouts[key] = layout
    for key in ("y_train", "y_test"):
        shape, dtype = headers[key]
        images = headers["x" + key[1:]][0][0]
        if not np.issubdtype(dtype, np.integer):
            raise DataMissingError(f"npz: {path}: {key} is {dtype}, not an integer type: store the class "
                                   f"indices 0..K-1 as integers (e.g. y.astype(numpy.int64))")
        if len(shape) != 1:
            raise DataMissingError(f"npz: {path}: {key} has shape {shape}, not [N]: store one class index per "
                                   f"image (e.g. y.reshape(-1))")
        if shape[0] != images:
            raise DataMissingError(f"npz: {path}: {key} has {shape[0]} labels but x{key[1:]} has {images} "
                                   f"images: give one label per image")
    sizes = {key: _height_width(headers[key][0], layouts[key]) for key in layouts}
    if image_size is None and sizes["x_train"] != sizes["x_test"]:
        (h0, w0), (h1, w1) = sizes["x_train"], sizes["x_test"]
        raise DataMissingError(f"npz: {path}: x_train images are {h0}x{w0} and x_test images {h1}x{w1} "
                               f"(height x width): give --image-size N to resize all to N x N")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            y_train, y_test = arrays["y_train"], arrays["y_test"]
    except MemoryError:
        raise  # not the file's fault, see _memory_refused
    except Exception as err:  # a damaged member: the headers parsed but the data does not
        raise DataMissingError(f"npz: cannot read the labels of {path} ({one_line(err)}): write it again with "
                               f"{_NPZ_HOW}") from err
    num_classes = _npz_num_classes(path, y_train, y_test)
    return _Npz(path=path, layouts=layouts, size=sizes["x_train"], y_train=y_train, y_test=y_test,
                num_classes=num_classes)


def _listed(values: Any, limit: int = 5) -> str:
    """At most ``limit`` values, comma-separated, then how many more."""
    values = [str(v) for v in values]
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(values[:limit]) + more


def _npz_num_classes(path: Path, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """K, for labels that are the class indices 0..K-1, every one with training images; else refused.

    The image folder's rules in the npz's terms (a class folder without training images, a class only
    in the test split, fewer than 2 classes are refused there too): a label the training split lacks
    would be an output the model is never trained on, a gap in 0..K-1 an empty class that
    still changes the chance level. K is the number of distinct training labels, so it is bounded by
    the images: nothing is ever sized by the largest label (one label of 2**40 once was K).
    """
    fix = "relabel the classes 0..K-1 (e.g. classes, y_train = numpy.unique(y_train, return_inverse=True); " \
          "y_test = numpy.searchsorted(classes, y_test))"
    for key, labels in (("y_train", y_train), ("y_test", y_test)):
        if labels.min() < 0:
            raise DataMissingError(f"npz: {path}: {key} holds the label {labels.min()}, below 0: {fix}")
    train_classes = np.unique(y_train)
    num_classes = len(train_classes)
    if num_classes < 2:
        raise DataMissingError(f"npz: {path}: y_train holds one class (label {train_classes[0]}): a classifier "
                               f"needs at least 2 classes with training images")
    above = train_classes[train_classes >= num_classes]
    if len(above):
        missing = np.setdiff1d(np.arange(num_classes), train_classes)
        raise DataMissingError(f"npz: {path}: y_train's {num_classes} classes are not labelled 0..{num_classes - 1}: "
                               f"it holds the label(s) {_listed(above)} but none of {_listed(missing)}; {fix}")
    test_labels = np.unique(y_test)
    test_only = test_labels[test_labels >= num_classes]  # train's labels are 0..K-1 here, test's >= 0
    if len(test_only):
        raise DataMissingError(f"npz: {path}: y_test holds the label(s) {_listed(test_only)} that no y_train image "
                               f"has (y_train's are 0..{num_classes - 1}): a class needs training images; add "
                               f"them or remove those test images")
    return num_classes


def _npz_key(npz: _Npz, image_size: int | None) -> str:
    """SHA-256 over the options and the file's bytes, read in 1 MiB chunks."""
    digest = decode_cache.new_key("npz", image_size)
    try:
        with open(npz.path, "rb") as stream:
            digest.update(struct.pack("<Q", os.fstat(stream.fileno()).st_size))
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as err:
        raise DataMissingError(f"npz: cannot read {npz.path} ({one_line(err)}): make it readable") from err
    return digest.hexdigest()


def _npz_images(array: np.ndarray, layout: str, image_size: int | None) -> torch.Tensor:
    """An image array as contiguous uint8 ``[N, 3, H, W]``: grey replicated, resized in chunks."""
    images = torch.from_numpy(array)
    if layout == "NHW":
        images = images.unsqueeze(1)
    elif layout == "NHWC":
        images = images.permute(0, 3, 1, 2)
    images = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    if image_size is None:
        return images.contiguous()
    out = torch.empty((len(images), 3, image_size, image_size), dtype=torch.uint8)
    for start in range(0, len(images), _RESIZE_CHUNK):
        out[start:start + _RESIZE_CHUNK] = _resize(images[start:start + _RESIZE_CHUNK], image_size)
    return out


def _decode_npz(npz: _Npz, image_size: int | None) -> tuple[torch.Tensor, ...]:
    """Both splits of a checked npz as uint8 ``[N, 3, H, W]`` images and int64 labels."""
    try:
        with np.load(npz.path, allow_pickle=False) as arrays:
            x_train, x_test = arrays["x_train"], arrays["x_test"]
    except MemoryError:
        raise  # not the file's fault, see _memory_refused
    except Exception as err:
        raise DataMissingError(f"npz: cannot read the images of {npz.path} ({one_line(err)}): write it again "
                               f"with {_NPZ_HOW}") from err
    train = _npz_images(x_train, npz.layouts["x_train"], image_size)
    del x_train  # the array is no longer needed once converted: free it before the test split
    test = _npz_images(x_test, npz.layouts["x_test"], image_size)
    return (train, torch.from_numpy(npz.y_train.astype(np.int64)),
            test, torch.from_numpy(npz.y_test.astype(np.int64)))


def content_sha256(spec: str) -> str:
    """The SHA-256 that identifies a custom data set's content: the decode cache's key at its own
    size (every file's relative path and bytes, or the npz's bytes). A run records it, so that a data
    set edited or replaced after a run is never mistaken for the one it was trained on.

    Raises :class:`DataMissingError` for a data set that cannot be used as it is.
    """
    kind, path = _split_spec(normalise_spec(spec))
    if kind == "imagefolder":
        return _folder_key(_scan_folder(Path(path)), None)
    return _npz_key(_check_npz(Path(path), None), None)
