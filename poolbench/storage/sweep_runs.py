"""The runs of a sweep folder as they are on disk: every cell of its grid (pending where its folder
does not exist yet), the refusals it recorded, and why runs failed, per pooling.

What ``status`` shows, and what ``report``, ``export`` and ``merge`` start from; it reads files only,
so ``poolbench status`` answers without importing torch or the statistics.
"""

from __future__ import annotations

from pathlib import Path

from ..core.outcomes import RunStatus
from ..core.unique import unique
from . import rundir
from .sweepdir import load_refusals, load_sweep

#: The states of a run that a sweep refusing its pooling does not start (it would start the others).
NOT_STARTED_WHEN_REFUSED = (RunStatus.PENDING, RunStatus.INTERRUPTED, RunStatus.FAILED)



class ReportError(ValueError):
    """A user error: the message names the problem and the fix."""



def collect_runs(root: str | Path) -> list[rundir.RunSummary]:
    """Every run of the sweep in ``root``, in grid order: the cells of its sweep.json (pending
    when their folder does not exist yet) and any other run folder there. ReportError if none.
    In a sweep of protocol variants each run's ``variant`` is set, and the runs are in variant order.
    """
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ReportError(f"{root} is a file, not a sweep folder: give the folder made by poolbench sweep --out")
    if not root.is_dir():
        raise ReportError(f"folder {root} not found: give a sweep folder (made by poolbench sweep --out)")
    try:
        sweep = load_sweep(root)
        refusals = load_refusals(root)
    except rundir.DamagedFileError as error:
        raise ReportError(str(error)) from None
    variants = sweep.variant_labels() if sweep else [""]
    found: dict[tuple[str, str, str, int], rundir.RunSummary] = {}
    for variant in variants:
        for summary in map(rundir.summarize, rundir.find_run_dirs(root / variant if variant else root)):
            summary.variant = variant
            found[variant, summary.setting, summary.pool, summary.seed] = summary
    for run in sweep.runs() if sweep else []:
        key = (run.variant, run.setting, run.pool, run.seed)
        if sweep is not None and key not in found:
            found[key] = rundir.RunSummary(sweep.path(run), *key[1:], RunStatus.PENDING, None, 0, None, [], None, None,
                                           variant=run.variant)
    for summary in found.values():
        if summary.pool in refusals and summary.status in NOT_STARTED_WHEN_REFUSED:
            summary.status, summary.problem = RunStatus.REFUSED, refusals[summary.pool]
    if not found:
        raise ReportError(f"no runs in {root} (expected {root}/<setting>/<pool>/seed<k>/): "
                          f"start a sweep with `poolbench sweep --pools gap,gem --out {root}`")
    settings = unique((sweep.settings if sweep else []) + sorted(k[1] for k in found))
    pools = unique((list(sweep.pools) if sweep else []) + sorted(k[2] for k in found))
    return sorted(found.values(), key=lambda s: (variants.index(s.variant), settings.index(s.setting),
                                                 pools.index(s.pool), s.seed))


def problems_by_pool(summaries: list[rundir.RunSummary]) -> dict[str, str]:
    """Per pooling, why its runs were refused or failed without a result (each reason once): the
    notes of a report, the lines under a status table."""
    runs: dict[str, dict[tuple[str, str], int]] = {}
    for s in summaries:
        if s.problem and (s.status == RunStatus.REFUSED or (s.status == RunStatus.FAILED and s.result is None)):
            by_reason = runs.setdefault(s.pool, {})
            by_reason[s.status, s.problem] = by_reason.get((s.status, s.problem), 0) + 1
    return {pool: "; ".join(f"{n} run{'s' if n > 1 else ''} {status}: {problem}"
                            for (status, problem), n in by_reason.items())
            for pool, by_reason in runs.items()}
