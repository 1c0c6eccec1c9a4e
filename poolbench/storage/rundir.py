"""A run folder's files: its configuration, metrics, result, lock and status.

A run folder holds::

    config.json     the RunConfig (everything needed to repeat the run) + versions
    metrics.jsonl   one JSON record per finished epoch
    checkpoint.pt   model/optimizer/scheduler/RNG state after the last finished epoch
    result.json     written once at the end: status completed | diverged | failed
    tracking.json   with ``--log``: each experiment tracker's run id and the epochs it holds (storage.tracking)
    tensorboard/    with ``--log tensorboard``: the run's TensorBoard event files
    no_result.json  written by a sweep when the run's process ended without a result.json (os._exit,
                    a signal): the run is failed until its next attempt, which removes it
    .lock           held (filelock: flock on Unix) by the process running it; released by the OS when it dies
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import filelock

from ..core.atomic import atomic_write_bytes
from ..core.labels import RULE, is_safe_label
from ..core.outcomes import FINISHED_STATUSES, RunStatus
from ..core.poolspec import is_file_spec, spec_label
from ..core.quoting import quote, shorten
from ..core.setting_spec import arch_file, dataset_prefix, is_arch_file
from ..core.settings import Protocol

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
RESULT_FILE = "result.json"
CHECKPOINT_FILE = "checkpoint.pt"
NO_RESULT_FILE = "no_result.json"
LOCK_FILE = ".lock"
T = TypeVar("T")



@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's results. Written to ``config.json``.

    ``pool_sha256`` pins the content of a pooling file, ``arch_sha256`` of a model file and
    ``dataset_sha256`` of an ``imagefolder:``/``npz:`` data set (see :func:`input_hashes`): an
    edited or replaced input is another run, never a finished one reported again, a resumed one
    continued or a seed averaged with the others.
    """

    setting: str
    arch: str
    dataset: str
    num_classes: int
    pool: str
    seed: int
    protocol: Protocol = field(default_factory=Protocol)
    pool_sha256: str | None = None
    amp: str = "none"  # mixed precision changes the numbers, so it is part of what a run is
    compile: bool = False  # so does torch.compile (fused kernels round differently)
    arch_sha256: str | None = None
    dataset_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["dataset_sha256"] is None:  # a built-in data set: the config (and checkpoint) of older versions
            del data["dataset_sha256"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["protocol"] = Protocol(**values.get("protocol", {}))
        return cls(**values)

    def flat(self) -> dict[str, Any]:
        """Field -> value, the protocol's fields as ``protocol.NAME`` (``protocol.lr``): one level, as
        trackers' parameters and comparisons take them."""
        return _flatten(self.to_dict())

    def differences(self, other: RunConfig) -> list[str]:
        """Human-readable ``field: a != b`` for every field that differs."""
        mine, theirs = self.flat(), other.flat()
        return [f"{k}: {theirs.get(k)!r} != {mine.get(k)!r}"
                for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]


#: The fields that pin an input file's content, and what a user calls that input.
CONTENT_FIELDS = {"pool_sha256": "pooling file", "arch_sha256": "model file", "dataset_sha256": "data set"}


def input_hashes(arch: str, dataset: str, pool: str) -> dict[str, str | None]:
    """The SHA-256 of every input of a run that is the user's own file (None for poolbench's own):
    the pooling file, the model file, the data set (the content hash its decode cache is keyed by).
    Specs are normalised (absolute paths). Raises OSError or data.DataMissingError when one cannot
    be read."""
    return {"pool_sha256": file_sha256(pool.partition(":")[0]) if is_file_spec(pool) else None,
            "arch_sha256": file_sha256(arch_file(arch)) if is_arch_file(arch) else None,
            "dataset_sha256": _dataset_sha256(dataset) if dataset_prefix(dataset) is not None else None}


def _dataset_sha256(dataset: str) -> str:
    # Imported here: the data package loads torch, which status and report do not need.
    from ..data.custom import content_sha256

    return content_sha256(dataset)


def changed_inputs(previous: RunConfig, current: RunConfig) -> str | None:
    """``"the data set 'npz:/x.npz'"`` (and the others) when two configs are one run but for the
    content of its inputs (edited or replaced since ``previous`` was recorded); None when they agree,
    or differ in more than content (another run)."""
    contents: dict[str, Any] = {name: getattr(current, name) for name in CONTENT_FIELDS}
    if dataclasses.replace(previous, **contents) != current:
        return None
    specs = {"pool_sha256": previous.pool, "arch_sha256": previous.arch, "dataset_sha256": previous.dataset}
    changed = [f"the {what} {quote(specs[name], 200)}"
               + (" (the run recorded none: an older poolbench made it)" if getattr(previous, name) is None else "")
               for name, what in CONTENT_FIELDS.items() if getattr(previous, name) != contents[name]]
    return " and ".join(changed) or None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class DamagedFileError(ValueError):
    """A run or sweep file that exists but cannot be read as what it must be; the message is one
    line naming the file, what is wrong with it and what to do."""


def _what_is_wrong(data: Any) -> str:
    return "it is null" if data is None else f"it is a JSON {type(data).__name__.replace('dict', 'object')}"


def read_json_object(path: str | Path, fix: str, keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object in ``path``; DamagedFileError (with ``fix``) if it is truncated, binary, not
    an object (``null``, a list, ...) or lacks one of ``keys``. FileNotFoundError passes through."""
    path = Path(path)
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path} is damaged (binary, not JSON): {fix}") from None
    except json.JSONDecodeError as error:
        raise DamagedFileError(f"{path} is damaged (truncated or not JSON: {error.msg}, line {error.lineno}): "
                               f"{fix}") from None
    except (ValueError, RecursionError):  # a number of over 4300 digits; nesting deeper than Python recurses
        raise DamagedFileError(f"{path} is damaged (not JSON that can be read): {fix}") from None
    except IsADirectoryError:
        raise DamagedFileError(f"{path} is a directory, not a file: {fix}") from None
    if not isinstance(data, dict):
        raise DamagedFileError(f"{path} is damaged ({_what_is_wrong(data)}, not an object): {fix}")
    missing = [key for key in keys if key not in data]
    if missing:
        raise DamagedFileError(f"{path} is damaged (no {', '.join(missing)}): {fix}")
    return data


RESULT_FIX = "run the same command again to rewrite it from the run's checkpoint, or delete the run folder"
CONFIG_FIX = "delete it (the same command writes it again; the checkpoint still guards the configuration)"


def read_config(path: str | Path, fix: str = CONFIG_FIX) -> RunConfig:
    """A run's config.json as the RunConfig it records: the one place that decides whether it can be.

    DamagedFileError (with ``fix``) when the file is no JSON object, has no ``config``, or its
    ``config`` is no run's configuration: a missing field or protocol, an unknown protocol field (as
    another poolbench version may write), text where a number belongs, an impossible value. Such a
    run is *unreadable* in ``status`` and reports. FileNotFoundError passes through.
    """
    stored = read_json_object(path, fix, keys=("config",))
    try:
        if not isinstance(stored["config"], dict) or not isinstance(stored["config"].get("protocol"), dict):
            raise ValueError("no protocol")
        return RunConfig.from_dict(stored["config"])
    except (TypeError, ValueError, AttributeError) as error:
        raise DamagedFileError(f"{path} is damaged (not a run configuration: {shorten(' '.join(str(error).split()))}"
                               f"): {fix}") from None


def read_result(path: str | Path, fix: str = RESULT_FIX) -> dict[str, Any]:
    """A run's result.json, if what it records can be a run's result: the one place that decides it.

    DamagedFileError (with ``fix``) when the file is no JSON object or records the impossible: a
    status that is not completed, diverged or failed; a completed run without a score; an accuracy
    (``best_test_acc``, ``final_test_acc``) that is no number from 0 to 100 (NaN, infinite, text, 250);
    an epoch count that is no whole number (negative, 2.5). Such a run is *unreadable* in ``status``,
    reports and sweeps, never a result. FileNotFoundError passes through.
    """
    result = read_json_object(path, fix, keys=("status",))
    problem = _impossible(result)
    if problem is not None:
        raise DamagedFileError(f"{path} is damaged ({problem}): {fix}")
    return result


def _impossible(result: dict[str, Any]) -> str | None:
    """What a result.json records that no run can have produced, or None."""
    status = result["status"]
    if status not in FINISHED_STATUSES:
        return f"status {quote(status)} is none of {', '.join(FINISHED_STATUSES)}"
    if status == RunStatus.COMPLETED and result.get("best_test_acc") is None:
        return "a completed run without best_test_acc"
    for key in ("best_test_acc", "final_test_acc", "val_test_acc", "best_val_acc"):
        value = result.get(key)
        if value is not None and not _is_accuracy(value):
            return f"{key} {quote(value)} is no accuracy from 0 to 100"
    for key, least in (("epochs_completed", 0), ("best_epoch", 1), ("val_epoch", 1), ("epochs", 1)):
        value = result.get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value >= least):
            return f"{key} {quote(value)} is not a whole number >= {least}"
    return None


def _is_accuracy(value: Any) -> bool:
    """A percentage a test set can give: a finite number from 0 to 100 (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        and 0 <= value <= 100


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (a crash mid-write) is ignored.

    DamagedFileError for anything else: binary content, a bad line before the last, a line that
    is not a JSON object (``null``, a list).
    """
    path = Path(path)
    if not path.exists():
        return []
    fix = "it is rewritten from the checkpoint at the next epoch of the run (or delete it)"
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise DamagedFileError(f"{path} is damaged (binary, not JSON lines): {fix}") from None
    except IsADirectoryError:
        raise DamagedFileError(f"{path} is a directory, not a file: {fix}") from None
    records = []
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):
                break  # torn last line
            raise DamagedFileError(f"{path} is damaged (line {number} is not JSON): {fix}") from None
        if not isinstance(record, dict):
            raise DamagedFileError(f"{path} is damaged (line {number}: {_what_is_wrong(record)}, not an "
                                   f"object): {fix}")
        records.append(record)
    return records


class RunLockedError(RuntimeError):
    """Another live process holds this run's lock."""


class RunLock:
    """An exclusive lock on ``<run_dir>/.lock`` (filelock's: ``flock`` on Unix, ``msvcrt`` on Windows).

    The OS drops the lock when its process dies, even by SIGKILL, so a crashed run never blocks the
    next attempt. The file records who holds it, for the refusal of a second holder. filelock >= 4
    leaves a held lock file's content alone when another process tries it (3.x truncated it), so
    the holder's line is still there to be read. A lock never released is held until its process
    ends, even when its RunLock is garbage: filelock's would release it then.
    """

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_FILE
        self._lock: filelock.BaseFileLock | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.path)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            raise RunLockedError(
                f"run {self.path.parent} is already running ({_holder(self.path)}); wait for it or stop it"
            ) from None
        try:
            if not isinstance(lock, filelock.SoftFileLock):  # a soft lock's file is its own marker: pid, host
                _write_holder(self.path)
        except BaseException:  # a full disk: the lock must not stay held by a process that gives up
            lock.release()
            raise
        self._lock = lock
        _HELD.add(lock)

    def release(self) -> None:
        if self._lock is not None:
            _HELD.discard(self._lock)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: set[filelock.BaseFileLock] = set()  # the locks of this process' RunLocks, until released


def _write_holder(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):  # Windows refuses to read a locked range; a damaged file
        return "another process"
    if len(lines) >= 2 and lines[0].isdigit():  # filelock's soft lock marker (no flock): pid, host, token
        return f"pid {lines[0]} on {lines[1]}"
    return lines[0].strip() if lines and lines[0].strip() else "another process"


def is_locked(run_dir: str | Path) -> bool:
    """Whether a live process holds the run's lock (trying it for an instant, never waiting)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return False
    lock = filelock.FileLock(path)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        return True
    lock.release()
    return False


def status(run_dir: str | Path) -> RunStatus:
    """One of completed, diverged, failed (from result.json, or no_result.json), running, interrupted,
    pending, or unreadable (result.json is damaged: what the run did is unknown, so it is never "failed")."""
    run_dir = Path(run_dir)
    result_path = run_dir / RESULT_FILE
    if result_path.exists():
        try:
            return RunStatus(read_result(result_path)["status"])
        except (DamagedFileError, OSError):
            return RunStatus.UNREADABLE
    if is_locked(run_dir):
        return RunStatus.RUNNING
    if (run_dir / NO_RESULT_FILE).exists():
        return RunStatus.FAILED
    if (run_dir / CHECKPOINT_FILE).exists() or (run_dir / METRICS_FILE).exists():
        return RunStatus.INTERRUPTED
    return RunStatus.PENDING


def record_no_result(run_dir: str | Path, exit_code: int | None, message: str) -> None:
    """Record that the run's last attempt ended without a result.json (see NO_RESULT_FILE).

    Its checkpoint is left alone: the next attempt resumes from it and removes this record first.
    """
    write_json(Path(run_dir) / NO_RESULT_FILE, {"exit_code": exit_code, "message": message})


def clear_no_result(run_dir: str | Path) -> None:
    """A new attempt starts: the previous one's ``no_result.json`` no longer describes the run."""
    (Path(run_dir) / NO_RESULT_FILE).unlink(missing_ok=True)


def no_result_message(run_dir: str | Path) -> str | None:
    """Why the run's last attempt ended without a result, if it did (see record_no_result)."""
    path = Path(run_dir) / NO_RESULT_FILE
    if not path.exists():
        return None
    try:
        message = read_json_object(path, "").get("message")
    except (DamagedFileError, OSError):
        message = None
    return message if isinstance(message, str) else f"the run's process ended without a result (see {path})"


# --- Sweep layout: <root>/<setting>/<pool label>/seed<k>/ -------------------------------------

def pool_label(spec: str) -> str:
    """A folder-friendly name for a pool spec: the name, a file's stem (and ``-Class``), or for
    ``name(key=value, ...)`` the name and each key with its value (``topk(k=0.5)`` -> ``topk-k0.5``)."""
    return spec_label(spec)


def run_path(root: str | Path, setting: str, pool: str, seed: int) -> Path:
    """The run folder of one grid cell: ``<root>/<setting>/<pool label>/seed<k>``; ValueError when a
    label is no single safe folder name (the last guard: readers of labels refuse them first)."""
    label = pool_label(pool)
    for part in (setting, label):
        if not is_safe_label(part):
            raise ValueError(f"{quote(part)} is not a folder name for a run ({RULE})")
    return Path(root) / setting / label / f"seed{seed}"


RUN_FILES = (CONFIG_FILE, RESULT_FILE, METRICS_FILE, CHECKPOINT_FILE)


def enclosing_run(path: str | Path) -> Path | None:
    """The run folder ``path`` is or lies in (the nearest folder holding a run's files), else None:
    a sweep or a report written there would mix with that run's files."""
    path = Path(path).resolve()
    return next((folder for folder in (path, *path.parents) if any((folder / name).is_file() for name in RUN_FILES)),
                None)


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every ``<setting>/<pool>/seed<k>`` folder under ``root``, sorted by setting, pool, seed."""
    found = [p for p in Path(root).glob("*/*/seed*") if p.is_dir() and p.name[4:].isdigit()]
    return sorted(found, key=lambda p: (p.parent.parent.name, p.parent.name, int(p.name[4:])))


@dataclass
class RunSummary:
    """What the files of one run folder say, for status tables and reports.

    ``best_test_acc`` is the result's score when the run finished, else the best so far.
    """

    path: Path
    setting: str
    pool: str
    seed: int
    status: RunStatus
    best_test_acc: float | None
    epochs_completed: int
    epochs: int | None
    metrics: list[dict[str, Any]]
    result: dict[str, Any] | None
    config: dict[str, Any] | None
    problem: str | None = None  # why the run is unreadable (the damaged file and what to do), refused or
    #                              failed without a result
    variant: str = ""  # the sweep's protocol variant it belongs to (its folder above the setting); "" for none


CONFIG_DAMAGED_FIX = ("restore it, or delete the run folder and run it again (what the run was is unknown "
                      "without it)")


def summarize(run_dir: str | Path) -> RunSummary:
    """Read a ``<setting>/<pool>/seed<k>`` run folder; its identity comes from the path.

    A damaged result.json or config.json makes the run ``unreadable`` (with ``problem`` saying which
    file and why); a damaged metrics.jsonl only loses what it would add.
    """
    run_dir = Path(run_dir)
    problems = []
    try:
        metrics = read_jsonl(run_dir / METRICS_FILE)
    except (DamagedFileError, OSError) as error:
        metrics = []
        problems.append(str(error))
    result = _read_or_none(read_result, run_dir / RESULT_FILE, problems)
    known = len(problems)
    read = _read_or_none(functools.partial(read_config, fix=CONFIG_DAMAGED_FIX), run_dir / CONFIG_FILE, problems)
    config_damaged = len(problems) > known
    config = read.to_dict() if read is not None else None
    accs = [r["test_acc"] for r in metrics if isinstance(r.get("test_acc"), (int, float))]
    best = max(accs, default=None)
    epochs = (config or {}).get("protocol", {}).get("epochs")
    if result is not None:  # read_result checked its values
        best = result.get("best_test_acc", best)
        epochs = result.get("epochs") or epochs
    # What a run was is its config: without it no result of the folder can be placed in a table.
    state = RunStatus.UNREADABLE if config_damaged else status(run_dir)
    ended = no_result_message(run_dir) if state == RunStatus.FAILED and result is None else None
    problems += [ended] if ended else []
    return RunSummary(
        path=run_dir, setting=run_dir.parent.parent.name, pool=run_dir.parent.name,
        seed=int(run_dir.name[4:]), status=state, best_test_acc=best,
        epochs_completed=(result or {}).get("epochs_completed", len(metrics)), epochs=epochs,
        metrics=metrics, result=result, config=config, problem="; ".join(problems) or None)


def _read_or_none(read: Callable[[Path], T], path: Path, problems: list[str]) -> T | None:
    """``read(path)``; None when the file is missing, or damaged (its problem added to ``problems``)."""
    try:
        return read(path)
    except FileNotFoundError:
        return None
    except (DamagedFileError, OSError) as error:
        problems.append(str(error))
        return None
