"""Write a CIFAR-100 of random uint8 images in the real python-pickle format, for a machine without
internet (a GPU session): ``python benchmarks/make_cifar.py --root DIR [--train 50000 --test 10000]``.

torchvision reads the files with its own parser; their md5s are not the published ones, so the
files' own md5s go to ``DIR/cifar-100-python/md5.json``, and ``benchmarks/fake_cifar/sitecustomize.py``
(on ``PYTHONPATH``, with ``POOLBENCH_FAKE_CIFAR=DIR``) makes torchvision's integrity check expect
them, in every process a run or a sweep starts. Timing only: the images are noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np

FOLDER = "cifar-100-python"


def write(root: Path, train: int, test: int, seed: int = 0) -> Path:
    folder = Path(root) / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        with open(folder / split, "wb") as handle:
            pickle.dump({"filenames": [f"img{i}.png" for i in range(n)], "batch_label": f"{split} batch",
                         "fine_labels": rng.integers(0, 100, n).tolist(),
                         "coarse_labels": rng.integers(0, 20, n).tolist(),
                         "data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)}, handle)
    with open(folder / "meta", "wb") as handle:
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"coarse{i}" for i in range(20)]}, handle)
    md5 = {name: hashlib.md5((folder / name).read_bytes()).hexdigest() for name in ("train", "test", "meta")}
    (folder / "md5.json").write_text(json.dumps(md5))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    args = parser.parse_args()
    print(f"wrote {write(Path(args.root), args.train, args.test)}: {args.train} train, {args.test} test images")


if __name__ == "__main__":
    main()
