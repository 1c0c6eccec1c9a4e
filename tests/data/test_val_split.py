"""``--val-split N``: N training images held out, class-balanced and the same for every seed and
pooling, evaluated every epoch; the score ``val`` is the test accuracy at the epoch best on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from poolbench.cli import main
from poolbench.core.settings import Protocol
from poolbench.data import holdout
from poolbench.data.images import ImageData
from poolbench.training.train import EpochRecord, best_val_epoch


def labels_of(counts: list[int]) -> torch.Tensor:
    return torch.cat([torch.full((n,), k) for k, n in enumerate(counts)])[torch.randperm(sum(counts))]


def test_the_held_out_images_are_class_balanced_and_fixed_by_the_labels_alone():
    labels = labels_of([10, 12, 9])
    held = holdout.held_out(labels, 7, 3)
    assert torch.bincount(labels[held], minlength=3).tolist() == [3, 2, 2]  # 7 // 3, the first 7 % 3 one more
    torch.manual_seed(123)  # the run's seed does not move the split
    assert torch.equal(holdout.held_out(labels, 7, 3), held) and torch.equal(held, held.sort().values)
    assert len(set(held.tolist())) == 7


def test_split_moves_the_held_out_images_and_keeps_the_normalisation():
    labels = labels_of([6, 6])
    images = torch.arange(12, dtype=torch.uint8)[:, None, None, None].expand(12, 3, 2, 2).contiguous()
    data = ImageData("x", images, labels, images[:2], labels[:2], 2, (0.5,) * 3, (0.2,) * 3)
    split = holdout.split(data, 4)
    assert split.val_images is not None and split.val_labels is not None
    assert len(split.train_labels) == 8 and len(split.val_labels) == 4
    train_ids = set(split.train_images[:, 0, 0, 0].tolist())
    val_ids = set(split.val_images[:, 0, 0, 0].tolist())
    assert train_ids.isdisjoint(val_ids) and train_ids | val_ids == set(range(12))
    assert (split.mean, split.std) == (data.mean, data.std) and holdout.split(data, 0) is data


def test_a_split_the_classes_cannot_give_is_one_line():
    with pytest.raises(holdout.HoldoutError, match=r"--val-split 9 holds out 3 images of class 1, which has 3 "
                                                  r"training images: hold out fewer \(at most 6\)"):
        holdout.held_out(labels_of([5, 3, 4]), 9, 3)
    with pytest.raises(ValueError, match="val split must be >= 0"):
        Protocol(val_split=-1)


def test_the_val_epoch_is_the_first_best_on_the_held_out_images():
    history = [EpochRecord(e, 1.0, 50.0, 1.0, test, 0.1, 1.0, val)
               for e, test, val in ((1, 70.0, 60.0), (2, 80.0, 65.0), (3, 75.0, 65.0), (4, 90.0, 64.0))]
    chosen = best_val_epoch(history)
    assert chosen is not None and (chosen.epoch, chosen.test_acc) == (2, 80.0)
    assert best_val_epoch(history[:0]) is None
    assert "val_acc" not in EpochRecord(1, 1.0, 1.0, 1.0, 1.0, 0.1, 1.0).as_record()


@pytest.mark.slow
def test_a_sweep_with_a_val_split_is_reported_by_its_val_score(tmp_path: Path, capsys):
    out = tmp_path / "sweep"
    assert main(["sweep", "--pools", "gap", "--seeds", "1", "--epochs", "2", "--batch-size", "256",
                 "--image-size", "16", "--val-split", "100", "--threads", "1", "--out", str(out)]) == 0
    run = out / "quick" / "gap" / "seed1"
    result = json.loads((run / "result.json").read_text())
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all(isinstance(m["val_acc"], float) for m in metrics)
    best = max(metrics, key=lambda m: (m["val_acc"], -m["epoch"]))
    assert (result["val_epoch"], result["val_test_acc"]) == (best["epoch"], best["test_acc"])
    capsys.readouterr()
    assert main(["report", str(out), "--score", "val"]) == 0
    report = capsys.readouterr().out
    assert "test accuracy at the epoch best on the held-out validation images" in report
    assert "100 training images held out for validation" in report
    assert main(["report", str(out), "--score", "final", "--format", "csv"]) == 0
