"""A sweep folder's files: the grid in ``sweep.json`` and where each of its runs lives.

A sweep folder::

    sweep.json                  the grid, the protocol overrides and the run options
    refused.json                the poolings the last sweep command refused (failed contract check):
                                label -> {"spec", "message", "failures"}; their runs are not started
    pools/<stem>.py             copies of pooling files, so the sweep can be repeated later
    slurm.json, slurm/          --executor slurm: each run's job id, and submitit's scripts and logs
    <setting>/<pool>/seed<k>/   one run folder per grid cell (see poolbench.rundir); <pool> is the
                                spec's label: gem, topk-k0.5 for topk(k=0.5), a file's stem

Reading it is all a report needs; creating and running it is poolbench.execution.sweep's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .labels import RULE, is_safe_label
from .quoting import quote
from .rundir import DamagedFileError, read_json_object, run_path, write_json
from .settings import setting_label

SWEEP_FILE = "sweep.json"
REFUSED_FILE = "refused.json"
POOLS_DIR = "pools"


@dataclass(frozen=True)
class SweepRun:
    """One cell of the grid."""

    setting: str  # the label: folder name and report name (a named setting's name, or <model>-<data set>)
    pool: str  # the label: folder name and report name
    pool_spec: str  # what ``run --pool`` gets: a registered name, name(key=value, ...) or pools/<stem>.py[:Class]
    seed: int
    setting_spec: str = ""  # what ``run --setting`` gets: the name, or MODEL@DATASET with absolute paths

    @property
    def name(self) -> str:
        return f"{self.setting}/{self.pool}/seed{self.seed}"


@dataclass
class Sweep:
    """A sweep folder's grid and what every run of it is given. Stored in ``sweep.json``."""

    root: Path
    pools: dict[str, str]  # label -> spec for `run --pool` (file copies relative to root)
    settings: list[str]  # named settings and MODEL@DATASET specs (normalised), in table order
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)  # protocol overrides
    options: dict[str, Any] = field(default_factory=dict)  # data_root, device, download

    def runs(self) -> list[SweepRun]:
        """The grid, seed-major: a partial sweep already compares every pooling on a seed."""
        labels = {setting: setting_label(setting) for setting in self.settings}
        return [SweepRun(labels[setting], label, spec, seed, setting)
                for seed in self.seeds for setting in self.settings for label, spec in self.pools.items()]

    def path(self, run: SweepRun) -> Path:
        return run_path(self.root, run.setting, run.pool, run.seed)

    def relative(self, run: SweepRun) -> str:
        return str(self.path(run).relative_to(self.root))

    def to_dict(self) -> dict[str, Any]:
        return {"pools": self.pools, "settings": self.settings, "seeds": self.seeds,
                "overrides": self.overrides, "options": self.options}


def load_sweep(root: str | Path) -> Sweep | None:
    """The sweep stored in ``root/sweep.json``, or None when there is none."""
    path = Path(root) / SWEEP_FILE
    if not path.exists():
        return None
    fix = (f"restore it, or start anew with --pools/--settings/--seeds in a new --out folder "
           f"(the run folders in {Path(root)} are kept)")
    data = read_json_object(path, fix, keys=("pools", "settings", "seeds"))
    try:
        sweep = Sweep(Path(root), dict(data["pools"]), list(data["settings"]), [int(s) for s in data["seeds"]],
                      dict(data.get("overrides") or {}), dict(data.get("options") or {}))
    except (TypeError, ValueError) as error:
        raise DamagedFileError(f"{path} is damaged (not a sweep's grid: {' '.join(str(error).split())}): "
                               f"{fix}") from None
    for label in sweep.pools:  # each becomes a folder name: one such as ../../x would write outside root
        if not is_safe_label(label):
            raise DamagedFileError(f"{path}: pooling label {quote(label)} is not a folder name ({RULE}): "
                                   "rename it there, or "
                                   "start anew in a new --out folder")
    return sweep


def load_refusals(root: str | Path) -> dict[str, str]:
    """Pooling label -> why the last sweep command refused it (one line), from ``refused.json``."""
    path = Path(root) / REFUSED_FILE
    if not path.exists():
        return {}
    data = read_json_object(path, "delete it: the next `poolbench sweep` of this folder checks its poolings again")
    return {label: str(entry.get("message")) if isinstance(entry, dict) else str(entry)
            for label, entry in data.items()}


def write_refusals(root: str | Path, refusals: dict[str, dict[str, Any]]) -> None:
    """Replace ``refused.json`` by ``refusals`` (label -> {"spec", "message", "failures"}); none: no file.

    Each sweep command checks again the poolings it would run, so the file always holds what the
    latest check found: a pooling fixed since is no longer in it.
    """
    path = Path(root) / REFUSED_FILE
    if refusals:
        write_json(path, refusals)
    else:
        path.unlink(missing_ok=True)
