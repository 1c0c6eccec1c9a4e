"""The training protocol: SGD + cosine schedule, evaluation after every epoch, divergence
guard, and an atomic checkpoint after every epoch from which a killed run resumes exactly.
"""

from __future__ import annotations

import io
import math
import time
import typing
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..core.atomic import atomic_write_bytes
from ..core.settings import Protocol

CHECKPOINT_FORMAT = 1

Forward = Callable[[torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]  # (images, labels), already on the model's device


class Batches(typing.Protocol):
    """What the loop needs of a loader: its batches and how many there are (poolbench.data.DeviceLoader)."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...


class EpochBatches(Batches, typing.Protocol):
    """A training loader whose order is a function of the epoch, so a resumed run sees the same batches."""

    def set_epoch(self, epoch: int) -> None: ...


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch produced; accuracies in percent, ``lr`` after the scheduler step."""

    epoch: int
    train_loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    lr: float
    epoch_time_s: float
    val_acc: float | None = None  # on the held-out training images (Protocol.val_split); None without

    def as_record(self) -> dict[str, Any]:
        """The epoch as a line of metrics.jsonl (``val_acc`` only where images were held out)."""
        record = asdict(self)
        if self.val_acc is None:
            del record["val_acc"]
        return record

    def metrics_line(self) -> str:
        """The original harness's per-epoch stdout line."""
        return (f"TRAIN_METRICS: epoch={self.epoch} train_loss={self.train_loss:.4f} "
                f"train_acc={self.train_acc:.2f} test_loss={self.test_loss:.4f} "
                f"test_acc={self.test_acc:.2f} lr={self.lr:.6f}")


class DivergedError(RuntimeError):
    """The loss became non-finite: the run cannot produce a meaningful score."""

    def __init__(self, epoch: int, step: int | None, what: str):
        where = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        super().__init__(f"{what} at {where}")
        self.epoch = epoch
        self.step = step


class CheckpointMismatchError(ValueError):
    """A checkpoint written by a run with a different configuration."""


def make_optimizer(model: nn.Module, protocol: Protocol) -> torch.optim.SGD:
    """SGD on all parameters; weight decay applies to every parameter, as in the protocol."""
    return torch.optim.SGD(model.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                           weight_decay=protocol.weight_decay, nesterov=protocol.nesterov)


def make_scheduler(optimizer: torch.optim.Optimizer,
                   protocol: Protocol) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing to 0 over the run, stepped once per epoch."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=protocol.epochs, eta_min=0.0)


def train_one_epoch(model: nn.Module, loader: Batches, optimizer: torch.optim.Optimizer, epoch: int,
                    autocast_dtype: torch.dtype | None = None,
                    scaler: torch.amp.GradScaler | None = None,
                    forward: Forward | None = None) -> tuple[float, float]:
    """One pass over ``loader``; returns (mean loss, accuracy %). Raises DivergedError.

    ``forward`` computes the logits in place of ``model`` (e.g. its compiled form, see
    poolbench.training.compile); ``model`` is what is trained.

    Per-step losses stay on the device and are checked for non-finite values every
    ``check_every`` steps, so a GPU is not synchronised on every step; the step reported is
    still the first bad one.
    """
    model.train()
    forward = forward or model
    device = next(model.parameters()).device
    check_every = 1 if device.type == "cpu" else 25  # a CPU has nothing to overlap: check every step
    losses = torch.zeros(len(loader), device=device)  # sums kept on the device: no sync per step
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    checked = 0
    for step, (images, labels) in enumerate(tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=None)):
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = forward(images)
            loss = F.cross_entropy(logits.float(), labels)  # the loss in float32 whatever the autocast
        optimizer.zero_grad(set_to_none=True)  # None, not zeros: the step skips the memset
        if scaler is not None:  # float16: scale the loss so that small gradients do not flush to 0
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        losses[step] = loss.detach() * labels.numel()  # the sum, so a smaller last batch weighs less
        correct += (logits.argmax(dim=1) == labels).sum()
        seen += labels.numel()
        if (step + 1) % check_every == 0 or step + 1 == len(loader):
            _raise_if_not_finite(losses[checked:step + 1], epoch, first_step=checked)  # one sync per check
            checked = step + 1
    return losses.sum().item() / seen, 100.0 * correct.item() / seen


def _raise_if_not_finite(step_losses: torch.Tensor, epoch: int, first_step: int) -> None:
    bad = (~torch.isfinite(step_losses)).nonzero()
    if bad.numel():
        step = first_step + int(bad[0, 0]) + 1  # steps are counted from 1 within the epoch
        raise DivergedError(epoch, step, "non-finite training loss")


@torch.no_grad()
def evaluate(model: nn.Module, loader: Batches, autocast_dtype: torch.dtype | None = None,
             forward: Forward | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) over the whole ``loader``; one sync, at the end.

    Each image's loss is kept and they are summed once, so the loss does not depend on how the
    images were batched (the CPU and a GPU use different test batch sizes; each image's logits do
    not depend on its batch on the CPU).
    """
    model.eval()
    forward = forward or model
    device = next(model.parameters()).device
    losses = []
    correct = torch.zeros((), device=device, dtype=torch.long)
    for images, labels in loader:
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits = forward(images)
        losses.append(F.cross_entropy(logits.float(), labels, reduction="none"))
        correct += (logits.argmax(dim=1) == labels).sum()
    every_loss = torch.cat(losses)
    seen = every_loss.numel()
    return every_loss.sum().item() / seen, 100.0 * correct.item() / seen


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class DamagedCheckpointError(CheckpointMismatchError):
    """A checkpoint of this run that loads but whose content cannot be resumed from: retrying fails
    the same way, so the message says to delete it."""

    def __init__(self, path: Path, error: BaseException):
        what = f"{type(error).__name__}: {' '.join(str(error).split())}"[:160]
        super().__init__(f"checkpoint {path} is damaged ({what}): delete it to start the run again from epoch 1")


def checkpoint_history(path: Path, state: dict[str, Any]) -> list[EpochRecord]:
    """The epoch records of a loaded checkpoint; DamagedCheckpointError when they are not such records."""
    try:
        return [EpochRecord(**record) for record in state["history"]]
    except (KeyError, TypeError) as error:  # no history, a record with other fields, not a list of records
        raise DamagedCheckpointError(path, error) from None


def load_checkpoint(path: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Load a checkpoint (tensors and plain data only) and refuse one from another config."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != CHECKPOINT_FORMAT or state.get("config") != config:
        raise CheckpointMismatchError(
            f"checkpoint {path} was written by a run with a different configuration; "
            "use another --output-dir or delete the checkpoint to start over")
    return state


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(model: nn.Module, train_loader: EpochBatches, test_loader: Batches, protocol: Protocol, *,
        val_loader: Batches | None = None, checkpoint_path: Path | None = None, config: dict[str, Any] | None = None,
        autocast_dtype: torch.dtype | None = None, forward: Forward | None = None,
        on_epoch: Callable[[EpochRecord, list[EpochRecord]], None] | None = None,
        log: Callable[[str], None] = lambda message: None) -> list[EpochRecord]:
    """Train ``model`` by ``protocol``, evaluating after every epoch; returns all epoch records.

    ``train_loader.set_epoch(epoch)`` makes the data order of an epoch independent of whether
    the run was resumed. With ``checkpoint_path``, the state after each
    epoch is written there atomically and an existing checkpoint (from the same ``config``)
    is resumed. ``on_epoch(record, history)`` runs after each epoch's checkpoint is safe.
    ``forward`` computes the logits in place of ``model`` (see train_one_epoch). ``val_loader``:
    held-out training images, evaluated after every epoch too (``EpochRecord.val_acc``).
    """
    optimizer = make_optimizer(model, protocol)
    scheduler = make_scheduler(optimizer, protocol)
    device = next(model.parameters()).device
    # float16 needs loss scaling to keep small gradients; bfloat16 has float32's range.
    scaler = torch.amp.GradScaler(device.type) if autocast_dtype == torch.float16 else None
    history: list[EpochRecord] = []
    if checkpoint_path is not None and checkpoint_path.exists():  # resume exactly: every state the next epoch reads
        state = load_checkpoint(checkpoint_path, config or {})
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
        except Exception as error:  # a missing key, a tensor of another shape, an empty random state
            raise DamagedCheckpointError(checkpoint_path, error) from None
        history = checkpoint_history(checkpoint_path, state)
        log(f"resumed from {checkpoint_path} after epoch {len(history)}")

    for epoch in range(len(history) + 1, protocol.epochs + 1):
        start = time.perf_counter()
        train_loader.set_epoch(epoch)  # the epoch's order from (seed, epoch): a resumed run sees the same
        train_loss, train_acc = train_one_epoch(model, train_loader, optimizer, epoch,
                                                autocast_dtype, scaler, forward)
        scheduler.step()  # the protocol's cosine is per epoch, not per step
        # Every epoch: the run's score is its best epoch's test accuracy.
        test_loss, test_acc = evaluate(model, test_loader, autocast_dtype, forward)
        if not math.isfinite(test_loss):  # finite training loss, broken weights (e.g. a NaN running stat)
            raise DivergedError(epoch, None, "non-finite test loss")
        val_acc = evaluate(model, val_loader, autocast_dtype, forward)[1] if val_loader is not None else None
        record = EpochRecord(epoch, train_loss, train_acc, test_loss, test_acc,
                             float(scheduler.get_last_lr()[0]), time.perf_counter() - start, val_acc)
        history.append(record)
        if checkpoint_path is not None:  # after every epoch, atomically: a kill loses at most one epoch
            save_checkpoint(checkpoint_path, {
                "format": CHECKPOINT_FORMAT, "config": config or {}, "epoch": epoch,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": _rng_state(), "history": [asdict(r) for r in history]})
        if on_epoch is not None:  # only now: what it reports is safe on disk
            on_epoch(record, history)
    return history


def best_epoch(history: list[EpochRecord]) -> EpochRecord:
    """The first epoch with the highest test accuracy: the run's score."""
    return max(history, key=lambda record: (record.test_acc, -record.epoch))


def best_val_epoch(history: list[EpochRecord]) -> EpochRecord | None:
    """The first epoch with the highest accuracy on the held-out training images: its test accuracy
    is a score not chosen on the test set. None without held-out images."""
    scored = [record for record in history if record.val_acc is not None]
    return max(scored, key=lambda record: (record.val_acc or 0.0, -record.epoch)) if scored else None
