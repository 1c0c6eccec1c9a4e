"""The data-set registry (``poolbench.data.datasets.DATASETS``): one record per named data set, which
``names``, ``describe``, ``load`` and ``available`` all read, so what ``describe`` answers without
decoding is what ``load`` returns.

The cheap data sets (scikit-learn's digits, the generated tasks) are loaded whole; CIFAR and
FashionMNIST come from the tiny fake copies of conftest.py, whose split sizes are their own, so
for those the classes, image shape and statistics are compared, and the sizes against the fixture.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from poolbench import data, models
from poolbench.core.settings import SETTINGS
from poolbench.data import datasets
from poolbench.data.diagnostics import DIAGNOSTICS
from poolbench.training import catalog

CHEAP = ["digits", *DIAGNOSTICS]


def test_every_name_is_one_record_and_every_record_a_name() -> None:
    assert data.names() == list(datasets.DATASETS)
    for name, dataset in datasets.DATASETS.items():
        assert dataset.name == name
        assert data.describe(name) == data.DataInfo(name, dataset.num_classes, (3, 32, 32), dataset.train_size,
                                                    dataset.test_size)
    assert [record["name"] for record in data.available(Path("/nonexistent-data-root"))] == data.names()


@pytest.mark.parametrize("image_size", [None, 48])
@pytest.mark.parametrize("name", CHEAP)
def test_describe_is_what_load_returns(name: str, image_size: int | None) -> None:
    info = data.describe(name, image_size)
    loaded = data.load(name, image_size=image_size)
    assert loaded.name == info.name == name
    assert loaded.num_classes == info.num_classes
    assert tuple(loaded.train_images.shape[1:]) == tuple(loaded.test_images.shape[1:]) == info.image_shape
    assert (len(loaded.train_labels), len(loaded.test_labels)) == (info.train_images, info.test_images)
    assert int(loaded.train_labels.max()) == int(loaded.test_labels.max()) == info.num_classes - 1
    # No published statistics: measured on the training split as loaded.
    assert datasets.DATASETS[name].mean is None
    assert (loaded.mean, loaded.std) == data.channel_stats(loaded.train_images)


@pytest.mark.parametrize(("name", "root_fixture"), [("cifar10", "cifar10_root"), ("cifar100", "cifar100_root"),
                                                    ("fmnist", "fmnist_root"), ("fmnist-5k", "fmnist_root")])
def test_registered_facts_are_what_the_files_load_as(name: str, root_fixture: str, fake_data_sizes,
                                                     request: pytest.FixtureRequest) -> None:
    root = request.getfixturevalue(root_fixture)
    source, info = datasets.DATASETS[name.removesuffix("-5k")], data.describe(name)
    loaded = data.load(name, root=root, download=False)
    assert loaded.name == name and loaded.num_classes == info.num_classes
    assert tuple(loaded.train_images.shape[1:]) == info.image_shape
    assert (loaded.mean, loaded.std) == (source.mean, source.std)  # the published statistics, as registered
    train, test = fake_data_sizes[source.name]
    assert len(loaded.test_labels) == test
    # The fake FashionMNIST has fewer than 500 images a class: its subset is all of it.
    assert len(loaded.train_labels) == train
    record = next(r for r in data.available(root) if r["name"] == name)
    assert record["found"] and record["verified"]


def test_a_subset_is_described_from_its_source() -> None:
    subset, source = datasets.DATASETS["fmnist-5k"], datasets.DATASETS["fmnist"]
    assert (subset.num_classes, subset.train_size, subset.test_size) == (10, 5_000, source.test_size)
    assert (subset.mean, subset.std) == (None, None)  # read from the source's load, not its own


@pytest.mark.parametrize("name", list(SETTINGS))
def test_every_named_setting_agrees_with_its_data_set_and_model(name: str) -> None:
    """A setting's classes are its data set's and its pool input is what its model gives on the data
    set's images: neither is restated in the setting."""
    setting = SETTINGS[name]
    info = data.describe(setting.dataset)
    assert catalog.num_classes(setting) == info.num_classes
    assert not hasattr(setting, "num_classes") and not hasattr(setting, "pool_input_shape")  # one source each
    assert setting.image_size == info.image_shape[1] == info.image_shape[2]
    assert catalog.pool_input(setting.arch, setting.dataset) == models.pool_input_shape(
        setting.arch, info.image_shape[1:], num_classes=info.num_classes)
