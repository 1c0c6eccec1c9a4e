"""Hand-made run and sweep folders in the real run-folder format, and ``poolbench report`` called
in-process: what the report, statistics, export, merge and hostile-folder tests share."""

import argparse
import json
from pathlib import Path

import numpy as np

from poolbench.cli import report_verb as report_cli
from poolbench.core.settings import SETTINGS
from poolbench.storage.rundir import RunConfig
from poolbench.training import catalog

SEEDS = (42, 123, 456)
QUICK = {  # pool -> best test accuracy per seed; None: diverged
    "gap": (90.0, 91.0, 92.5),
    "gem": (91.0, 91.5, 93.6),
    "avgmax": (90.5, 90.9, 92.0),
    "mine": (92.0, None, 94.0),
    "better2of3": (92.0, 93.0, 94.0),
    "allbetter": (93.0, 94.0, 95.0),
}
RESNET = {  # resnet56-cifar100 at the full protocol: the published rows join the verdict
    "gap": (72.0, 72.4, 72.1),
    "gem": (72.1, 72.3, 72.2),
    "avgmax": (71.5, 71.9, 71.6),
    "mine": (73.0, 73.2, 72.9),
    "better2of3": (71.0, 71.2, 71.1),  # behind here: better on 2 of 3 settings only
    "allbetter": (73.1, 73.4, 73.0),
}
VGG = {
    "gap": (73.5, 74.0, 73.2),
    "gem": (73.8, 73.9, 73.1),
    "avgmax": (73.0, 73.4, 73.3),
    "mine": (74.5, 74.9, 74.2),
    "better2of3": (74.6, 74.8, 74.4),
    "allbetter": (74.7, 75.0, 74.6),
}


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data))  # the format of rundir.write_json, without its fsyncs: fast


def write_jsonl(path: Path, records: list) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def write_run(root: Path, setting: str, pool: str, seed: int, best: float | None, *,
              epochs: int | None = None, status: str | None = None, finished: bool = True,
              accs: list[float] | None = None, val: float | None = None) -> Path:
    """A run folder exactly as `poolbench run` leaves it (3 epochs recorded, or ``accs``);
    ``val``: its val_test_acc, as if run with --val-split."""
    base = SETTINGS[setting]
    protocol = base.protocol.replace(epochs=epochs)
    folder = root / setting / pool / f"seed{seed}"
    folder.mkdir(parents=True)
    config = RunConfig(setting, base.arch, base.dataset, catalog.num_classes(base), pool, seed, protocol)
    write_json(folder / "config.json", {"config": config.to_dict(), "command": [], "versions": {}})
    if accs is None:
        accs = [best - 4.0, best - 1.0, best] if best is not None else [30.0, 10.0]
    write_jsonl(folder / "metrics.jsonl", [
        {"epoch": i + 1, "train_loss": 1.0, "train_acc": 50.0, "test_loss": 1.0, "test_acc": acc,
         "lr": 0.01, "epoch_time_s": 1.0} for i, acc in enumerate(accs)])
    if finished:
        status = status or ("completed" if best is not None else "diverged")
        write_json(folder / "result.json", {
            "status": status, "best_test_acc": max(accs), "best_epoch": int(np.argmax(accs)) + 1,
            "final_test_acc": accs[-1], "epochs_completed": len(accs), "epochs": protocol.epochs,
            "wall_time_s": 3.0, "num_params": 1000, "pool_input_shape": [64, 8, 8], "device": "cpu",
            "versions": {}, "setting": setting, "arch": base.arch, "dataset": base.dataset, "pool": pool,
            "seed": seed, "error": "RuntimeError: boom" if status == "failed" else None,
            "diverged_at": {"epoch": 3, "step": 7} if status == "diverged" else None,
            **({"val_test_acc": val, "val_epoch": 1} if val is not None else {})})
    return folder


def write_sweep(root: Path, table: dict[str, dict], quick_epochs: int = 3) -> None:
    for setting, pools in table.items():
        for pool, values in pools.items():
            epochs = quick_epochs if setting == "quick" else None  # benchmark settings: full protocol
            for seed, best in zip(SEEDS, values, strict=True):
                write_run(root, setting, pool, seed, best, epochs=epochs)


def run_report(folder, *extra, capsys=None):
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    return report_cli.main(parser.parse_args([str(folder), *extra]))
