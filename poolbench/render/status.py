"""A sweep's status rendered: its grid, each run's state (completed, running, diverged, failed,
refused, interrupted, pending) and best accuracy so far, as text tables or one JSON document
(``poolbench status``, see poolbench.cli.status_verb).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..core.outcomes import RunStatus
from ..core.unique import unique
from ..storage.rundir import RESULT_FILE, RunSummary
from ..storage.sweep_runs import problems_by_pool
from .markdown import md_table, setting_title

STATUS_ORDER = (RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.DIVERGED, RunStatus.FAILED, RunStatus.REFUSED,
                RunStatus.INTERRUPTED, RunStatus.PENDING, RunStatus.UNREADABLE)


def status_cell(summary: RunSummary) -> str:
    """``completed 93.21``, ``running 85.10 (3/8)``, ``diverged (epoch 2)``, ``pending``."""
    text = str(summary.status)
    if summary.status == RunStatus.UNREADABLE:
        return f"{text} ({summary.problem or summary.path / RESULT_FILE})"
    if summary.best_test_acc is not None and summary.status != RunStatus.DIVERGED:
        text += f" {summary.best_test_acc:.2f}"
    if summary.status in (RunStatus.RUNNING, RunStatus.INTERRUPTED):
        text += f" ({summary.epochs_completed}/{summary.epochs or '?'})"
    diverged_at = (summary.result or {}).get("diverged_at")
    if summary.status == RunStatus.DIVERGED and diverged_at:
        text += f" (epoch {diverged_at['epoch']})"
    return text


def status_text(root: Path, summaries: list[RunSummary]) -> str:
    """Per setting a grid: poolings down, seeds across; counts on top; why runs were refused or
    failed without a result at the bottom."""
    counts = status_counts(summaries)
    out = [f"{root}: {len(summaries)} runs: " + ", ".join(f"{n} {kind}" for kind, n in counts.items())]
    for variant, setting in unique((s.variant, s.setting) for s in summaries):
        in_setting = [s for s in summaries if (s.variant, s.setting) == (variant, setting)]
        seeds = sorted({s.seed for s in in_setting})
        cells = {(s.pool, s.seed): status_cell(s) for s in in_setting}
        body = [[pool, *(cells.get((pool, seed), "") for seed in seeds)]
                for pool in unique([s.pool for s in in_setting])]
        title = f"{variant}: {setting_title(setting)}" if variant else setting_title(setting)
        out += ["", title, md_table(["pooling", *(f"seed {k}" for k in seeds)], body)]
    problems = problems_by_pool(summaries)
    if problems:
        out += ["", *(f"{pool}: {problem}" for pool, problem in problems.items())]
    return "\n".join(out) + "\n"


def status_counts(summaries: list[RunSummary]) -> dict[str, int]:
    """Runs per state, every state listed."""
    return {kind: sum(s.status == kind for s in summaries) for kind in STATUS_ORDER}


def status_document(root: str | Path, summaries: list[RunSummary]) -> dict[str, Any]:
    """``status --json``: the counts and one record per run."""
    records = [{**({"variant": s.variant} if s.variant else {}),  # a sweep of protocol variants
                "setting": s.setting, "pool": s.pool, "seed": s.seed, "status": s.status,
                "best_test_acc": s.best_test_acc, "epochs_completed": s.epochs_completed,
                "epochs": s.epochs, "path": str(s.path), "problem": s.problem} for s in summaries]
    return {"root": str(root), "counts": status_counts(summaries), "runs": records}
