"""Training-batch throughput of poolbench's DeviceLoader against the usual torchvision pipeline.

Both produce the same augmented batches (RandomCrop(32, padding=4) + horizontal flip, normalised)
from a CIFAR-sized uint8 split of 50,000 images; the reference is ``torchvision.datasets``-style
per-image PIL transforms behind a ``DataLoader``, measured in the same run on the same machine.

    python benchmarks/loader_throughput.py [--images 50000] [--batch-size 128] [--workers 2]

Prints images/s of each and the ratio (DeviceLoader / reference).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from poolbench.data import DeviceLoader

MEAN, STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


class PilDataset(Dataset):
    """What torchvision's CIFAR datasets do per item: a PIL image through the transforms."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images_nhwc, labels
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
            transforms.ToTensor(), transforms.Normalize(MEAN, STD)])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def images_per_second(batches, limit_images: int) -> float:
    seen = 0
    start = time.perf_counter()
    for x, _ in batches:
        seen += x.shape[0]
        if seen >= limit_images:
            break
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--measure", type=int, default=10_000, help="images timed for each loader")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 100, size=args.images)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    reference = DataLoader(PilDataset(images, labels), batch_size=args.batch_size, shuffle=True,
                           num_workers=args.workers, persistent_workers=args.workers > 0)
    ours = DeviceLoader(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels),
                        args.batch_size, mean=MEAN, std=STD, train=True, device=device)
    images_per_second(ours, args.batch_size)  # warm-up
    ours_rate = images_per_second(ours, args.measure)
    reference_rate = images_per_second(reference, args.measure)
    print(f"device: {device}, batch {args.batch_size}, {args.measure} images timed")
    print(f"torchvision DataLoader ({args.workers} workers): {reference_rate:10.0f} images/s")
    print(f"poolbench DeviceLoader:                 {ours_rate:10.0f} images/s")
    print(f"ratio DeviceLoader / DataLoader: {ours_rate / reference_rate:.1f}x")


if __name__ == "__main__":
    main()
