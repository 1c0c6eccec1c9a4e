"""Training on real images: Debian's FashionMNIST (``apt-get install dataset-fashion-mnist``, which
.ci/run installs). Without the package these tests fail with that command; they never skip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from poolbench import data
from poolbench.cli import main
from poolbench.core.settings import SUITES, get_setting
from poolbench.training import catalog


def test_the_balanced_subset_is_the_first_500_of_each_class_in_file_order(debian_fmnist: Path) -> None:
    full = data.load("fmnist", root=debian_fmnist, download=False)
    subset = data.load("fmnist-5k", root=debian_fmnist, download=False)
    assert subset.name == "fmnist-5k" and len(subset.train_labels) == 5_000 and len(subset.test_labels) == 10_000
    assert torch.bincount(subset.train_labels).tolist() == [500] * 10
    expected = torch.cat([torch.nonzero(full.train_labels == k).flatten()[:500] for k in range(10)]).sort().values
    assert torch.equal(subset.train_images, full.train_images[expected])
    assert torch.equal(subset.test_images, full.test_images)
    assert data.describe("fmnist-5k").train_images == 5_000


@pytest.mark.slow
def test_resnet8_learns_real_fashion_mnist_in_a_few_hundred_steps(debian_fmnist: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    # 5,000 images at batch 16: 313 steps in the one epoch, at a gentle lr; chance is 10 %.
    code = main(["run", "--setting", "resnet8-fmnist-5k", "--data-root", str(debian_fmnist), "--no-download",
                 "--epochs", "1", "--batch-size", "16", "--lr", "0.02", "--pool", "gem", "--seed", "1",
                 "--threads", "1", "--output-dir", str(out)])
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["pool_input_shape"] == [64, 8, 8]
    # One epoch's end point moves by several points with the thread count (61-67 % measured); 50 is
    # five times chance.
    assert result["best_test_acc"] > 50, result
    losses = [float(m) for m in re.findall(r"train_loss=([0-9.]+)", capsys.readouterr().out)]
    assert len(losses) == 1 and losses[0] < 1.6  # the epoch's mean loss; ln 10 = 2.30 at chance


def test_the_real_suite_is_five_poolings_by_five_seeds_of_an_8x8_map(tmp_path: Path, capsys) -> None:
    assert SUITES["real"] == ("resnet8-fmnist-5k",)
    setting = get_setting("resnet8-fmnist-5k")
    assert catalog.pool_input(setting.arch, setting.dataset) == (64, 8, 8) and setting.dataset == "fmnist-5k"
    assert main(["sweep", "--suite", "real", "--pools", "gap,gmp,gem,avgmax,spectrum", "--seeds", "1,2,3,4,5",
                 "--out", str(tmp_path / "real"), "--dry-run"]) == 0
    assert len(re.findall(r"resnet8-fmnist-5k/\w+/seed\d", capsys.readouterr().out)) == 25
