"""Tidy tables of a sweep folder: one row per run and one row per epoch, as pandas reads them.

``runs`` has, per run folder: its setting, model, data set, pooling spec and seed, every protocol
field, its status, the three scores where present (``best_test_acc``; ``final_test_acc``;
``val_test_acc``, the test accuracy at the epoch best on held-out images), the epochs, the wall
time and the machine (device, host, versions). ``epochs`` has, per epoch of every run, the run's
setting, pooling and seed and that epoch's metrics (``metrics.jsonl``). A run's own folder stays
the truth: these tables are made from it, and made again by the same command.

>>> [column for column in RUN_COLUMNS if column.endswith("_test_acc")]
['best_test_acc', 'final_test_acc', 'val_test_acc']
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path
from typing import Any

from .analysis import collect_runs
from .settings import Protocol

PROTOCOL_FIELDS = tuple(f.name for f in dataclasses.fields(Protocol))
RUN_COLUMNS = ("setting", "arch", "dataset", "pool", "seed", *PROTOCOL_FIELDS, "status", "best_test_acc",
               "best_epoch", "final_test_acc", "val_test_acc", "val_epoch", "epochs_completed", "wall_time_s",
               "num_params", "device", "host", "python", "torch", "poolbench", "amp", "compile", "run_dir")
EPOCH_COLUMNS = ("setting", "pool", "seed", "epoch", "train_loss", "train_acc", "test_loss", "test_acc", "val_acc",
                 "lr", "epoch_time_s")


def tables(root: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(runs, epochs) of the sweep folder ``root``: one dict per row, keys RUN_COLUMNS / EPOCH_COLUMNS
    (None where a run does not have the value). ReportError when ``root`` holds no run."""
    runs, epochs = [], []
    for summary in collect_runs(root):
        config, result = summary.config or {}, summary.result or {}
        protocol = config.get("protocol") or {}
        versions = result.get("versions") or {}
        row: dict[str, Any] = {column: None for column in RUN_COLUMNS}
        row.update({key: config.get(key) for key in ("arch", "dataset", "pool", "amp", "compile")})
        row.update({name: protocol.get(name) for name in PROTOCOL_FIELDS})
        row.update({key: result.get(key) for key in ("best_test_acc", "best_epoch", "final_test_acc", "val_test_acc",
                                                     "val_epoch", "wall_time_s", "num_params", "device", "host")})
        row.update({key: versions.get(key) for key in ("python", "torch", "poolbench")})
        row.update(setting=summary.setting, pool=config.get("pool", summary.pool), seed=summary.seed,
                   status=str(summary.status), epochs_completed=summary.epochs_completed,
                   run_dir=str(summary.path.relative_to(Path(root))))
        runs.append(row)
        for record in summary.metrics:
            epochs.append({column: record.get(column) for column in EPOCH_COLUMNS}
                          | {"setting": summary.setting, "pool": row["pool"], "seed": summary.seed})
    return runs, epochs


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """The rows as CSV with a header; an empty cell where a value is None."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def to_parquet(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> bytes:
    """The rows as a Parquet file (pandas with pyarrow); ImportError without pyarrow."""
    import pandas as pd  # statsmodels' dependency: always there; pyarrow is not

    buffer = io.BytesIO()
    pd.DataFrame(rows, columns=list(columns)).to_parquet(buffer, index=False)
    return buffer.getvalue()
