"""The protocol loop: schedule, accuracy bookkeeping, divergence guard, checkpoint/resume."""

import math

import pytest
import torch
from torch import nn

from poolbench.core.settings import Protocol
from poolbench.training.train import (
    CheckpointMismatchError,
    DivergedError,
    EpochRecord,
    best_epoch,
    evaluate,
    fit,
    make_optimizer,
    make_scheduler,
)


class TensorLoader:
    """A tiny in-memory loader with the DeviceLoader interface (set_epoch, len, iter)."""

    def __init__(self, x, y, batch_size, shuffle):
        self.x, self.y, self.batch_size, self.shuffle = x, y, batch_size, shuffle
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __iter__(self):
        order = (torch.randperm(len(self.x), generator=torch.Generator().manual_seed(self.epoch))
                 if self.shuffle else torch.arange(len(self.x)))
        for start in range(0, len(self.x), self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.x[index], self.y[index]


def blobs(n=96, classes=3, seed=0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(classes, 8, generator=generator) * 3
    y = torch.arange(n) % classes
    return centres[y] + torch.randn(n, 8, generator=generator), y


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))


def loaders():
    x, y = blobs()
    return TensorLoader(x, y, 16, shuffle=True), TensorLoader(x, y, 32, shuffle=False)


def test_evaluation_gives_the_same_loss_and_accuracy_whatever_the_batch_size():
    """The CPU evaluates in batches of 128 and a GPU in batches of 1,000: the numbers must not say which."""
    from poolbench import models
    from poolbench.data.loader import DeviceLoader
    from poolbench.execution.runner import test_batch_size

    assert test_batch_size(torch.device("cpu")) == 128 and test_batch_size(torch.device("cuda")) == 1000
    torch.manual_seed(0)
    model = models.create("resnet8", num_classes=10, pool="gap").to(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (300,), generator=generator)
    results = {size: evaluate(model, DeviceLoader(images, labels, size, mean=(0.5,) * 3, std=(0.25,) * 3,
                                                  train=False, channels_last=True))
               for size in (7, 128, 1000)}
    assert results[7] == results[128] == results[1000]
    assert 1.5 < results[7][0] < 4.0 and 0 <= results[7][1] <= 100  # cross-entropy of 10 classes near log(10)


def test_cosine_schedule_matches_the_published_lr_values():
    protocol = Protocol()
    optimizer = make_optimizer(nn.Linear(2, 2), protocol)
    scheduler = make_scheduler(optimizer, protocol)
    lrs = {}
    for epoch in range(1, 201):
        optimizer.step()
        scheduler.step()
        lrs[epoch] = scheduler.get_last_lr()[0]
    assert f"{lrs[190]:.6f}" == "0.000616"
    assert lrs[200] == pytest.approx(0.0, abs=1e-12)
    assert lrs[100] == pytest.approx(0.05)


def test_optimizer_is_sgd_with_the_protocol_values_on_all_parameters():
    model = tiny_model()
    optimizer = make_optimizer(model, Protocol())
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, torch.optim.SGD)
    values = (group["lr"], group["momentum"], group["weight_decay"], group["nesterov"])
    assert values == (0.1, 0.9, 5e-4, False)
    assert sum(p.numel() for p in group["params"]) == sum(p.numel() for p in model.parameters())


def test_fit_learns_and_records_every_epoch():
    train, test = loaders()
    history = fit(tiny_model(), train, test, Protocol(epochs=4, lr=0.05))
    assert [r.epoch for r in history] == [1, 2, 3, 4]
    assert history[-1].test_acc > 90.0
    assert history[-1].lr == pytest.approx(0.0, abs=1e-12)
    assert history[0].lr == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_metrics_line_has_the_original_format():
    record = EpochRecord(190, 0.06581, 98.8234, 1.22221, 72.3899, 0.00061628, 3.0)
    assert record.metrics_line() == ("TRAIN_METRICS: epoch=190 train_loss=0.0658 train_acc=98.82 "
                                     "test_loss=1.2222 test_acc=72.39 lr=0.000616")


def test_best_epoch_is_the_first_with_the_highest_accuracy():
    history = [EpochRecord(e, 1.0, 50.0, 1.0, acc, 0.1, 1.0) for e, acc in [(1, 10.0), (2, 30.0), (3, 30.0)]]
    assert best_epoch(history).epoch == 2


class NaNAfter(nn.Module):
    """Returns NaN from its ``steps``-th training call on: a run driven to divergence."""

    def __init__(self, steps):
        super().__init__()
        self.steps, self.calls = steps, 0
        self.linear = nn.Linear(8, 3)

    def forward(self, x):
        if self.training:
            self.calls += 1
            if self.calls >= self.steps:
                return self.linear(x) * float("nan")
        return self.linear(x)


def test_non_finite_loss_stops_the_run_at_the_exact_step():
    train, test = loaders()  # 6 steps per epoch
    with pytest.raises(DivergedError) as raised:
        fit(NaNAfter(steps=9), train, test, Protocol(epochs=5))
    assert (raised.value.epoch, raised.value.step) == (2, 3)
    assert "non-finite training loss" in str(raised.value)


def test_resume_from_checkpoint_gives_identical_metrics(tmp_path):
    train, test = loaders()
    protocol = Protocol(epochs=4, lr=0.05)
    straight = fit(tiny_model(), train, test, protocol, checkpoint_path=tmp_path / "a.pt", config={"k": 1})

    class Stop(Exception):
        pass

    def stop_after_two(record, history):
        if record.epoch == 2:
            raise Stop

    torch.manual_seed(123)  # the global RNG (dropout) must come from the checkpoint, not from here
    with pytest.raises(Stop):
        fit(tiny_model(), train, test, protocol, checkpoint_path=tmp_path / "b.pt", config={"k": 1},
            on_epoch=stop_after_two)
    torch.manual_seed(999)
    resumed = fit(tiny_model(seed=5), train, test, protocol, checkpoint_path=tmp_path / "b.pt",
                  config={"k": 1})
    strip = [(r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr) for r in straight]
    assert [(r.epoch, r.train_loss, r.train_acc, r.test_loss, r.test_acc, r.lr) for r in resumed] == strip


def test_checkpoint_from_another_config_is_refused(tmp_path):
    train, test = loaders()
    fit(tiny_model(), train, test, Protocol(epochs=1), checkpoint_path=tmp_path / "c.pt",
        config={"pool": "gap"})
    with pytest.raises(CheckpointMismatchError, match="different configuration"):
        fit(tiny_model(), train, test, Protocol(epochs=2), checkpoint_path=tmp_path / "c.pt",
            config={"pool": "gem"})
