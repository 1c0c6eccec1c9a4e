"""Data sets as uint8 tensors, and a loader that augments whole batches on the device.

>>> from poolbench import data
>>> digits = data.load("digits")          # bundled with scikit-learn, no download
>>> digits.train_images.shape[1:]
torch.Size([3, 32, 32])
>>> loader = data.DeviceLoader(digits.train_images, digits.train_labels, 64,
...                            mean=digits.mean, std=digits.std, train=True)
"""

from .available import available
from .datasets import DataInfo, DataMissingError, ImageData, channel_stats, default_root, describe, load, names
from .loader import DeviceLoader, epoch_generator

__all__ = [
    "DataInfo",
    "DataMissingError",
    "DeviceLoader",
    "ImageData",
    "available",
    "channel_stats",
    "default_root",
    "describe",
    "epoch_generator",
    "load",
    "names",
]
