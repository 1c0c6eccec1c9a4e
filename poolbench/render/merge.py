"""One report of several inputs: sweep folders and tables written by ``poolbench export``, as when one
grid ran in halves on a laptop and a GPU box, or was shared between two labs.

A run is its setting, pooling (the label its folder is filed under), protocol and seed. Found in two
inputs, it is one run: reported once, the first input's copy, when the copies' results agree (the
status and the best, final and val scores, exactly: a run repeated on the same kind of machine gives
the same numbers); an error naming both places when they differ, since one run cannot have two
results. A copy without a result (not started there, unfinished, failed, refused, unreadable) gives
way to a copy with one. Runs of one setting trained with different protocols are never pooled: the
merged report is refused, naming one run of each (a single folder keeps its note, as before).

>>> result_differences({"status": "completed", "best_test_acc": 91.0}, {"status": "completed", "best_test_acc": 90.5})
['best_test_acc 91.0 vs 90.5']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..analysis.sweep_analysis import RunSet
from ..core.outcomes import RunStatus
from ..core.settings import Protocol
from ..core.unique import unique
from ..storage.rundir import RunSummary
from ..storage.sweep_runs import ReportError, collect_runs
from .export import epochs_path, read_tables

TABLE_SUFFIXES = (".csv", ".parquet")
RESULTS = (RunStatus.COMPLETED, RunStatus.DIVERGED)  # the statuses that are a result to agree with
OUTCOME_KEYS = ("status", "best_test_acc", "final_test_acc", "val_test_acc")  # what two copies must agree on


@dataclass
class _Copy:
    """One input's copy of a run, and where it is (for messages)."""

    summary: RunSummary
    where: str

    @property
    def protocol(self) -> Protocol | None:
        config = self.summary.config
        return Protocol(**config["protocol"]) if config else None

    @property
    def rank(self) -> int:
        """Which copy a report keeps: one with a result, then one that started, then a grid cell not started."""
        if self.summary.status in RESULTS:
            return 2
        return int(self.summary.config is not None or self.summary.status != RunStatus.PENDING)

    @property
    def outcome(self) -> dict[str, Any]:
        result = self.summary.result or {}
        return {"status": str(self.summary.status), **{key: result.get(key) for key in OUTCOME_KEYS[1:]}}


def read_input(path: str | Path) -> list[RunSummary]:
    """The runs of one input: a sweep folder (poolbench.analysis.sweep_analysis.collect_runs) or an exported runs table
    (``.csv``/``.parquet``, poolbench.render.export.read_tables). ReportError when it is neither."""
    path = Path(path)
    if path.is_file() and path.suffix in TABLE_SUFFIXES:
        return read_tables(path)
    if path.is_file():
        raise ReportError(f"{path} is a file, neither a sweep folder nor a table of `poolbench export` "
                          f"({' or '.join(TABLE_SUFFIXES)}): give the folder made by poolbench sweep --out, or "
                          "the --output of poolbench export")
    return collect_runs(path)


def result_differences(first: dict[str, Any], second: dict[str, Any]) -> list[str]:
    """``key a vs b`` for every outcome (OUTCOME_KEYS) on which two copies of a run differ."""
    return [f"{key} {first.get(key)} vs {second.get(key)}" for key in OUTCOME_KEYS if first.get(key) != second.get(key)]


def gather(inputs: Sequence[str | Path], *, pool_protocols: bool | None = None) -> RunSet:
    """The runs of ``inputs`` (sweep folders and exported tables, in this order) as one RunSet: each run
    once, in grid order (settings and poolings as the inputs first list them, then seeds).

    ReportError (one line) for an input given twice, two copies of a run whose results differ, and,
    where ``pool_protocols`` is false (the default for two inputs or more), a setting whose runs were
    trained with different protocols.
    """
    if pool_protocols is None:
        pool_protocols = len(inputs) < 2
    seen: dict[Path, str] = {}
    for given in map(str, inputs):
        where = Path(given).resolve()
        if where in seen:
            raise ReportError(f"{given} is given twice (as {seen[where]} too): give each input once")
        seen[where] = given
    copies: dict[tuple[str, str, int], list[_Copy]] = {}
    counts, missing_epochs = [], []
    merged = {"same": 0, "finished": 0}
    for given in map(str, inputs):
        summaries = read_input(given)
        counts.append(f"{given} ({len(summaries)} runs)")
        if Path(given).is_file() and not epochs_path(given).is_file() and any(s.config for s in summaries):
            missing_epochs.append(f"{given} has no epochs table beside it ({epochs_path(given).name}): its runs "
                                  "have no learning curves in the plots")
        for summary in summaries:
            kind = _add(copies.setdefault((summary.setting, summary.pool, summary.seed), []),
                               _Copy(summary, str(summary.path)))
            if kind:
                merged[kind] += 1
    kept = [copy for same_cell in copies.values() for copy in same_cell]
    if not pool_protocols:
        _refuse_mixed_protocols(kept)
    settings = unique([copy.summary.setting for copy in kept])
    pools = unique([copy.summary.pool for copy in kept])
    kept.sort(key=lambda c: (settings.index(c.summary.setting), pools.index(c.summary.pool), c.summary.seed))
    notes = [f"one report of {len(inputs)} inputs: {'; '.join(counts)}"
             + (f"; {merged['same']} runs found in more than one input with the same result are counted once"
                if merged["same"] else "")
             + (f"; {merged['finished']} runs not finished in one input are taken from another, where they "
                "finished" if merged["finished"] else "")] if len(inputs) > 1 else []
    return RunSet(summaries=[copy.summary for copy in kept], inputs=list(map(str, inputs)),
                  notes=notes + missing_epochs)


def _add(same_cell: list[_Copy], new: _Copy) -> str | None:
    """Put ``new`` among the copies of its grid cell, keeping one copy of each run: "same" when it
    repeats a run's result, "finished" when one copy has a result and the other one, started, has
    none; None otherwise (a new run, or a grid cell that one input never started). ReportError when
    the two copies' results differ."""
    for index, old in enumerate(same_cell):
        if old.protocol is not None and new.protocol is not None and old.protocol != new.protocol:
            continue  # another run: the protocol check decides whether it may be reported with this one
        if old.rank == new.rank == 2 and result_differences(old.outcome, new.outcome):
            s = new.summary
            raise ReportError(f"{s.setting}/{s.pool}/seed{s.seed} has two different results, in {old.where} and "
                              f"{new.where} ({'; '.join(result_differences(old.outcome, new.outcome))}): one "
                              "run cannot have two; leave one of them out of the report (or move it into a "
                              "folder of its own)")
        if new.rank > old.rank:
            same_cell[index] = new
        return "same" if old.rank == new.rank == 2 else "finished" if {old.rank, new.rank} == {1, 2} else None
    same_cell.append(new)
    return None


def _refuse_mixed_protocols(copies: list[_Copy]) -> None:
    """ReportError naming a run of each protocol when a setting's runs were trained with two."""
    first: dict[str, dict[Protocol, _Copy]] = {}
    for copy in copies:
        if copy.protocol is not None:
            first.setdefault(copy.summary.setting, {}).setdefault(copy.protocol, copy)
    for setting, by_protocol in first.items():
        if len(by_protocol) > 1:
            (one, a), (other, b) = list(by_protocol.items())[:2]
            differ = [f"{f.name} {getattr(one, f.name)} vs {getattr(other, f.name)}"
                      for f in dataclasses.fields(Protocol) if getattr(one, f.name) != getattr(other, f.name)]
            raise ReportError(f"{setting}: {a.where} and {b.where} were trained with different protocols "
                              f"({', '.join(differ)}): a report never pools them; report the inputs of each "
                              "protocol on their own")
