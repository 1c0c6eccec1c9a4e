"""Tidy tables of a sweep folder: one row per run and one row per epoch, as pandas reads them.

``runs`` has, per run folder: its setting, model, data set, pooling spec and seed, every protocol
field, its status, the three scores where present (``best_test_acc``; ``final_test_acc``;
``val_test_acc``, the test accuracy at the epoch best on held-out images), the epochs, the wall
time, the machine (device, host, versions), the content hashes of the user's own files, the pool
input and why a run was refused or failed. ``epochs`` has, per epoch of every run, the run's setting,
pooling and seed and that epoch's metrics (``metrics.jsonl``). A run's own folder stays the truth:
these tables are made from it, and made again by the same command.

``read_tables`` reads the two tables back as the runs a report reads (``rundir.RunSummary``), so a
table exported on another machine can join a report (``poolbench report DIR runs.csv``).

>>> [column for column in RUN_COLUMNS if column.endswith("_test_acc")]
['best_test_acc', 'final_test_acc', 'val_test_acc']
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import typing
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.outcomes import FINISHED_STATUSES, RunStatus
from ..core.quoting import quote
from ..core.settings import Protocol
from ..storage.rundir import RunSummary
from ..storage.sweep_runs import ReportError, collect_runs

PROTOCOL_FIELDS = tuple(f.name for f in dataclasses.fields(Protocol))
RUN_COLUMNS = ("setting", "arch", "dataset", "pool", "seed", *PROTOCOL_FIELDS, "status", "best_test_acc",
               "best_epoch", "final_test_acc", "val_test_acc", "val_epoch", "epochs_completed", "wall_time_s",
               "num_params", "device", "host", "python", "torch", "poolbench", "amp", "compile", "pool_sha256",
               "arch_sha256", "dataset_sha256", "pool_input_shape", "problem", "run_dir")
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
        row.update({key: config.get(key) for key in ("arch", "dataset", "pool", "amp", "compile", "pool_sha256",
                                                     "arch_sha256", "dataset_sha256")})
        row.update({name: protocol.get(name) for name in PROTOCOL_FIELDS})
        row.update({key: result.get(key) for key in ("best_test_acc", "best_epoch", "final_test_acc", "val_test_acc",
                                                     "val_epoch", "wall_time_s", "num_params", "device", "host")})
        row.update({key: versions.get(key) for key in ("python", "torch", "poolbench")})
        row.update(setting=summary.setting, pool=config.get("pool", summary.pool), seed=summary.seed,
                   status=str(summary.status), epochs_completed=summary.epochs_completed, problem=summary.problem,
                   pool_input_shape=_shape_text(result.get("pool_input_shape")),
                   run_dir=summary.path.relative_to(Path(root)).as_posix())
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


def _shape_text(shape: Any) -> str | None:
    """A pool input (C, H, W) as ``64x8x8``: one cell that CSV and Parquet hold alike."""
    return "x".join(map(str, shape)) if isinstance(shape, list) and shape else None


def epochs_path(runs_path: str | Path, fmt: str = "csv") -> Path:
    """Where the epochs table of the runs table ``runs_path`` goes: beside it, ``<stem>-epochs.<suffix>``."""
    path = Path(runs_path)
    return path.with_name(f"{path.stem}-epochs{path.suffix or '.' + fmt}")


# --- Reading the tables back ------------------------------------------------------------------

def _kind(hint: Any) -> type:
    """The plain type a column of this type hint holds: ``int | None`` holds ints."""
    options = [option for option in typing.get_args(hint) or (hint,) if option is not type(None)]
    return options[0] if len(options) == 1 and options[0] in (bool, int, float) else str


#: The type of every column that is no text (CSV holds only text; Parquet has the types).
_KINDS: dict[str, type] = {name: _kind(hint) for name, hint in typing.get_type_hints(Protocol).items()}
_KINDS.update(dict.fromkeys(("seed", "best_epoch", "val_epoch", "epochs_completed", "num_params", "epoch"), int))
_KINDS.update(dict.fromkeys(("best_test_acc", "final_test_acc", "val_test_acc", "wall_time_s", "train_loss",
                             "train_acc", "test_loss", "test_acc", "val_acc", "lr", "epoch_time_s"), float))
_KINDS["compile"] = bool
_SCORES = ("best_test_acc", "final_test_acc", "val_test_acc")
_REQUIRED_RUN = ("setting", "pool", "seed", "status", "run_dir", *_SCORES, *PROTOCOL_FIELDS)
_REQUIRED_EPOCH = ("setting", "pool", "seed", "epoch")


def _cell(value: Any, kind: type) -> Any:
    """A table cell as a Python value of ``kind``; None for an empty cell (CSV) or a null/NaN (Parquet).
    ValueError when it is not one."""
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return None
    if kind is bool:
        if isinstance(value, str):
            if value.lower() not in ("true", "false"):
                raise ValueError("not true or false")
            return value.lower() == "true"
        return bool(value)
    if kind is int:
        number = float(value)
        if not number.is_integer():
            raise ValueError("not a whole number")
        return int(number)
    if kind is float:
        return float(value)
    return str(value)


def _read_rows(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of an exported table (Parquet by its suffix, else CSV), each cell typed; ReportError when
    ``path`` is no table that ``poolbench export`` wrote."""
    fix = "give a table written by `poolbench export DIR --output FILE`, or a sweep folder"
    try:
        if path.suffix == ".parquet":
            import pandas as pd  # statsmodels' dependency: always there; pyarrow is not

            try:
                frame = pd.read_parquet(path)
            except ImportError:
                raise ReportError(f"{path} is Parquet, which needs pyarrow: pip install pyarrow, or export it "
                                  "again with --format csv") from None
            rows: list[dict[str, Any]] = frame.to_dict("records")
            columns = list(frame.columns)
        else:
            with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: a table saved again by Excel
                reader = csv.DictReader(file)
                rows, columns = list(reader), list(reader.fieldnames or [])
    except ReportError:
        raise
    except (UnicodeDecodeError, csv.Error) as error:
        raise ReportError(f"{path} is not a CSV table ({' '.join(str(error).split())[:80]}): {fix}") from None
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from None
    except Exception as error:  # pyarrow's errors for a file that is no Parquet have no common base
        raise ReportError(f"{path} is not a Parquet table ({type(error).__name__}): {fix}") from None
    missing = [column for column in required if column not in columns]
    if missing:
        raise ReportError(f"{path} is not a table of `poolbench export` (no column {', '.join(missing[:3])}): {fix}")
    typed = []
    for number, row in enumerate(rows, start=1):
        try:
            typed.append({column: _cell(value, _KINDS.get(column, str)) for column, value in row.items()
                          if isinstance(column, str)})
        except (TypeError, ValueError):
            bad = next(c for c, v in row.items() if not _parses(v, _KINDS.get(str(c), str)))
            raise ReportError(f"{path} row {number}: {bad} {quote(row[bad])} is no "
                              f"{_KINDS.get(bad, str).__name__}: export the sweep again") from None
    return typed


def _parses(value: Any, kind: type) -> bool:
    try:
        _cell(value, kind)
    except (TypeError, ValueError):
        return False
    return True


def read_tables(runs_path: str | Path) -> list[RunSummary]:
    """The runs of a runs table written by ``poolbench export`` (CSV, or Parquet by the suffix), each as
    the RunSummary its folder gave, with its epochs from the table beside it (see ``epochs_path``)
    where that is there. ReportError (one line) when the file is no such table or a row records what
    no run can have: an unknown status, an impossible protocol or accuracy."""
    path = Path(runs_path)
    if not path.is_file():
        raise ReportError(f"{path} not found: give a sweep folder or a table written by `poolbench export`")
    runs = _read_rows(path, _REQUIRED_RUN)
    metrics: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    if epochs_path(path).is_file():
        for record in _read_rows(epochs_path(path), _REQUIRED_EPOCH):
            metrics.setdefault((record["setting"], record["pool"], record["seed"]), []).append(
                {key: value for key, value in record.items()
                 if key not in ("setting", "pool", "seed") and value is not None})
    return [_summary(path, number, row, metrics.get((row["setting"], row["pool"], row["seed"]), []))
            for number, row in enumerate(runs, start=1)]


def _summary(path: Path, number: int, row: dict[str, Any], metrics: list[dict[str, Any]]) -> RunSummary:
    """One row of a runs table as the RunSummary of its run folder (config and result as its files hold)."""
    def bad(what: str) -> ReportError:
        return ReportError(f"{path} row {number}: {what}: export the sweep folder again")

    get: Callable[[str], Any] = row.get
    parts = PurePosixPath(str(get("run_dir")).replace("\\", "/")).parts  # written on any system
    if get("setting") is None or get("seed") is None or len(parts) != 3 or parts[0] != get("setting") \
            or parts[2] != f"seed{get('seed')}":
        raise bad(f"run_dir {quote(get('run_dir'))} is not {get('setting')}/<pool>/seed{get('seed')}")
    try:
        status = RunStatus(get("status"))
    except ValueError:
        raise bad(f"status {quote(get('status'))} is none of {', '.join(RunStatus)}") from None
    for score in _SCORES:
        if get(score) is not None and not 0 <= get(score) <= 100:
            raise bad(f"{score} {quote(get(score))} is no accuracy from 0 to 100")
    if status == RunStatus.COMPLETED and get("best_test_acc") is None:
        raise bad("a completed run without best_test_acc")
    config = None
    if any(get(name) is not None for name in PROTOCOL_FIELDS):  # a run that started: its protocol is recorded
        fields = dataclasses.fields(Protocol)
        missing = [f.name for f in fields if get(f.name) is None and f.default is not None]
        if missing:
            raise bad(f"no {', '.join(missing)}")
        try:
            protocol = Protocol(**{f.name: get(f.name) for f in fields})
        except ValueError as error:
            raise bad(str(error)) from None
        config = {key: get(key) for key in ("setting", "arch", "dataset", "pool", "seed", "amp", "compile",
                                            "pool_sha256", "arch_sha256", "dataset_sha256")}
        config["protocol"] = dataclasses.asdict(protocol)
    result = None
    if status in FINISHED_STATUSES:
        result = {key: get(key) for key in ("status", *_SCORES, "best_epoch", "val_epoch", "epochs_completed",
                                            "wall_time_s", "num_params", "device", "host") if get(key) is not None}
        result["versions"] = {key: get(key) for key in ("python", "torch", "poolbench") if get(key) is not None}
        if get("pool_input_shape"):
            try:
                result["pool_input_shape"] = [int(size) for size in str(get("pool_input_shape")).split("x")]
            except ValueError:
                raise bad(f"pool_input_shape {quote(get('pool_input_shape'))} is not CxHxW") from None
    accs = [m["test_acc"] for m in metrics if isinstance(m.get("test_acc"), float)]
    best = get("best_test_acc") if get("best_test_acc") is not None else max(accs, default=None)
    completed = get("epochs_completed")
    return RunSummary(path / Path(*parts), parts[0], parts[1], get("seed"), status, best,
                      completed if completed is not None else len(metrics), get("epochs"), metrics, result, config,
                      get("problem"))
