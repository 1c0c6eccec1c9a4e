"""What a run pays to read its data set before its first step, against the least that reading can cost.

Two reads, each with its reference measured in the same run on the same machine:

- an ``imagefolder:`` data set of ``--images`` PNGs (8 x 8, 3 classes) read back from the decode cache
  (every file hashed, the tensors loaded) against decoding it from its files (the first load);
- the real FashionMNIST from Debian's package (``read_copy``: the four gzip files decompressed, their
  SHA-256 verified, parsed) against ``gzip.decompress`` of the same four files alone.

    python benchmarks/data_loading.py [--images 1050] [--repeats 5]

Prints the median seconds of each and the ratio. The FashionMNIST row needs ``apt-get install
dataset-fashion-mnist``; without it the row says so and the other is still measured.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from poolbench.data import fmnist
from poolbench.data.custom import load_custom

CLASSES = ("cat", "dog", "fox")


def median_seconds(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_folder(root: Path, images: int) -> str:
    """``images`` PNGs of noise, 8 x 8, 6 of 7 under train/ and 1 of 7 under test/, 3 classes."""
    rng = np.random.default_rng(0)
    for i in range(images):
        part = "test" if i % 7 == 6 else "train"
        folder = root / part / CLASSES[i % len(CLASSES)]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return f"imagefolder:{root}"


def imagefolder_row(images: int, repeats: int) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        spec = write_folder(Path(scratch) / "set", images)
        caches = iter(range(repeats + 1))
        # Each decode gets an empty cache of its own: it decodes every file, as a first load does.
        decoded = median_seconds(lambda: load_custom(spec, cache_dir=Path(scratch) / f"cold{next(caches)}"),
                                 repeats)
        warm = Path(scratch) / "warm"
        load_custom(spec, cache_dir=warm)
        cached = median_seconds(lambda: load_custom(spec, cache_dir=warm), repeats)
    return (f"imagefolder, {images} PNGs: from the cache {cached:.3f} s, decoded {decoded:.3f} s, "
            f"ratio {cached / decoded:.2f}")


def fmnist_row(repeats: int) -> str:
    copy = fmnist.find_copy(fmnist.SYSTEM_FOLDER)
    if copy is None or len(copy.files) != 4:
        return f"fmnist: not measured, no copy in {fmnist.SYSTEM_FOLDER} (apt-get install {fmnist.DEBIAN_PACKAGE})"
    files = [copy.files[name] for name in sorted(copy.files)]
    decompressed = median_seconds(lambda: [gzip.decompress(path.read_bytes()) for path in files], repeats)
    read = median_seconds(lambda: fmnist.read_copy(copy), repeats)
    return (f"fmnist, Debian's 4 files: read_copy {read:.3f} s, gzip.decompress alone {decompressed:.3f} s, "
            f"ratio {read / decompressed:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1050)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(imagefolder_row(args.images, args.repeats), flush=True)
    print(fmnist_row(args.repeats), flush=True)


if __name__ == "__main__":
    main()
