"""A sweep folder's files: the grid in ``sweep.json`` and where each of its runs lives.

A sweep folder::

    sweep.json                  the grid, the protocol overrides and the run options
    refused.json                the poolings the last sweep command refused (failed contract check):
                                label -> {"spec", "message", "failures"}; their runs are not started
    pools/<stem>.py             copies of pooling files, so the sweep can be repeated later
    slurm.json, slurm/          --executor slurm: each run's job id, and submitit's scripts and logs
    <setting>/<pool>/seed<k>/   one run folder per grid cell (see poolbench.storage.rundir); <pool> is the
                                spec's label: gem, topk-k0.5 for topk(k=0.5), a file's stem
    <variant>/<setting>/<pool>/seed<k>/
                                the same, in a sweep over protocol variants (``variants`` in sweep.json:
                                lr: [0.1, 0.05] runs every cell at each lr): one folder level per variant,
                                named by its values (lr0.05, epochs10-lr0.05); a sweep of one protocol has
                                no such level

Reading it is all a report needs; creating and running it is poolbench.execution.sweep_runner's job.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.labels import RULE, is_safe_label, safe_label
from ..core.quoting import quote
from ..core.settings import setting_label
from ..core.unique import unique
from .rundir import DamagedFileError, read_json_object, run_path, write_json

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
    variant: str = ""  # the protocol variant's label (its folder, e.g. lr0.05); "" in a sweep of one protocol

    @property
    def name(self) -> str:
        return f"{self.variant}/" * bool(self.variant) + f"{self.setting}/{self.pool}/seed{self.seed}"


def variant_value(value: Any) -> str:
    """A protocol value as its variant label writes it: ``0.05``, ``10``, ``1e-05``."""
    return repr(value) if isinstance(value, float) else str(value)


def variant_label(values: dict[str, Any]) -> str:
    """The folder of one protocol variant: each varied field and its value, joined by ``-``, a bool as
    its flag (``hflip``, ``no-hflip``).

    >>> variant_label({"epochs": 10, "lr": 0.05})
    'epochs10-lr0.05'
    >>> variant_label({"hflip": False})
    'no-hflip'
    """
    parts = [(name if value else f"no-{name}") if isinstance(value, bool) else f"{name}{variant_value(value)}"
             for name, value in values.items()]
    return safe_label("-".join(parts))


def variant_grid(variants: dict[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """Label -> the protocol values of each variant: every combination of the varied fields' values,
    in the order given; ``{"": {}}`` (one protocol, no folder level) when nothing varies.

    >>> list(variant_grid({"lr": [0.1, 0.05]}))
    ['lr0.1', 'lr0.05']
    """
    if not variants:
        return {"": {}}
    combos = (dict(zip(variants, values, strict=True)) for values in itertools.product(*variants.values()))
    return {variant_label(combo): combo for combo in combos}


def split_variants(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(shared overrides, variants) of protocol ``values`` (field -> a value or a list of values): a field
    with one value is an override, one with several a variant grid; None leaves a field out.
    ValueError naming a field whose list is empty.

    >>> split_variants({"lr": [0.1, 0.05, 0.1], "epochs": [1], "hflip": None})
    ({'epochs': 1}, {'lr': [0.1, 0.05]})
    """
    overrides: dict[str, Any] = {}
    variants: dict[str, list[Any]] = {}
    for name, value in values.items():
        if value is None:
            continue
        if not isinstance(value, list):
            overrides[name] = value
            continue
        distinct = unique(value)
        if not distinct:
            raise ValueError(f"{name} is given no value: give one or more (e.g. --{name.replace('_', '-')} 1,2), "
                             f"or leave it out for the setting's own")
        if len(distinct) == 1:
            overrides[name] = distinct[0]
        else:
            variants[name] = distinct
    return overrides, variants


@dataclass
class Sweep:
    """A sweep folder's grid and what every run of it is given. Stored in ``sweep.json``."""

    root: Path
    pools: dict[str, str]  # label -> spec for `run --pool` (file copies relative to root)
    settings: list[str]  # named settings and MODEL@DATASET specs (normalised), in table order
    seeds: list[int]
    overrides: dict[str, Any] = field(default_factory=dict)  # protocol overrides
    options: dict[str, Any] = field(default_factory=dict)  # data_root, device, download
    variants: dict[str, list[Any]] = field(default_factory=dict)  # protocol field -> its values (2 or more each)

    def runs(self) -> list[SweepRun]:
        """The grid, seed-major: a partial sweep already compares every pooling (in every variant) on a seed."""
        labels = {setting: setting_label(setting) for setting in self.settings}
        return [SweepRun(labels[setting], label, spec, seed, setting, variant)
                for seed in self.seeds for variant in self.variant_labels() for setting in self.settings
                for label, spec in self.pools.items()]

    def variant_labels(self) -> list[str]:
        """The variants' folder names; ``[""]`` for a sweep of one protocol."""
        return list(variant_grid(self.variants))

    def protocol_overrides(self, variant: str = "") -> dict[str, Any]:
        """The protocol overrides a run of ``variant`` is given: the shared ones and the variant's values."""
        return {**self.overrides, **variant_grid(self.variants)[variant]}

    def path(self, run: SweepRun) -> Path:
        return run_path(self.root / run.variant if run.variant else self.root, run.setting, run.pool, run.seed)

    def relative(self, run: SweepRun) -> str:
        return str(self.path(run).relative_to(self.root))

    def to_dict(self) -> dict[str, Any]:
        data = {"pools": self.pools, "settings": self.settings, "seeds": self.seeds,
                "overrides": self.overrides, "options": self.options}
        return {**data, "variants": self.variants} if self.variants else data  # one protocol: as before variants


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
                      dict(data.get("overrides") or {}), dict(data.get("options") or {}),
                      {str(name): list(values) for name, values in dict(data.get("variants") or {}).items()})
        labels = sweep.variant_labels()
    except (TypeError, ValueError) as error:
        raise DamagedFileError(f"{path} is damaged (not a sweep's grid: {' '.join(str(error).split())}): "
                               f"{fix}") from None
    for label in sweep.pools:  # each becomes a folder name: one such as ../../x would write outside root
        if not is_safe_label(label):
            raise DamagedFileError(f"{path}: pooling label {quote(label)} is not a folder name ({RULE}): "
                                   "rename it there, or "
                                   "start anew in a new --out folder")
    if len(labels) != math.prod(map(len, sweep.variants.values())) or any(
            len(values) < 2 for values in sweep.variants.values()):
        raise DamagedFileError(f"{path}: variants {sweep.variants} is not a grid of protocol values (each field two "
                               f"or more different values): {fix}")
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
