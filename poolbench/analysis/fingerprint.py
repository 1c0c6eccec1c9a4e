"""A pooling's fingerprint: its accuracy across the diagnostic tasks, and where it sits between
mean-like and max-like.

Each diagnostic task favours one family (``mean`` or ``max``, see poolbench.data.diagnostics).
Per pooling the fingerprint gives its mean best accuracy on every task, its average over the
mean-favouring tasks (*mean side*) and over the max-favouring ones (*max side*), and its *lean*:

    lean = ((max side - gap's max side) - (mean side - gap's mean side))
           / ((gmp's max side - gap's max side) - (gmp's mean side - gap's mean side))

so that gap has lean 0 and gmp lean 1 by construction; a pooling at 0.5 trades the two sides
off like their average would, and one that is good on both sides shows it in its two side
scores (high mean side *and* high max side), not in its lean. The lean needs gap and gmp in
the sweep; without them it is left out.

A fingerprint describes a pooling. Its lean does not predict the order of poolings on real images;
on the real suite the weaker of the two side scores did (docs/real.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..core.unique import unique

FAMILIES = ("mean", "max")


@dataclass(frozen=True)
class FingerprintRow:
    pool: str
    accuracy: dict[str, float]  # task (setting) -> mean best test accuracy over completed seeds
    mean_side: float
    max_side: float
    lean: float = math.nan


@dataclass
class Fingerprint:
    tasks: list[str]  # the diagnostic settings of the sweep, in report order
    favours: dict[str, str]  # task -> "mean" | "max"
    rows: list[FingerprintRow] = field(default_factory=list)

    def profile(self, row: FingerprintRow) -> str:
        """A few words on where ``row`` sits, relative to gap and gmp when they are there."""
        if math.isnan(row.lean):
            return ""
        if row.lean < 0.25:
            return "mean-like"
        if row.lean > 0.75:
            return "max-like"
        return "between"


def _side(accuracy: dict[str, float], favours: dict[str, str], family: str) -> float:
    """The average over the tasks favouring ``family``; nan if there is none or one is missing."""
    tasks = [task for task, side in favours.items() if side == family]
    if not tasks or any(task not in accuracy for task in tasks):
        return math.nan
    return sum(accuracy[task] for task in tasks) / len(tasks)


def fingerprint(scores: dict[str, dict[str, float]], favours: dict[str, str]) -> Fingerprint | None:
    """The fingerprint from ``scores`` (task -> pooling -> mean accuracy) of the tasks in ``favours``.

    None when the sweep has no diagnostic task. Poolings missing a task get nan on that side.
    """
    tasks = [task for task in scores if favours.get(task) in FAMILIES]
    if not tasks:
        return None
    favours = {task: favours[task] for task in tasks}
    pools = unique(pool for task in tasks for pool in scores[task])
    result = Fingerprint(tasks, favours)
    sides = {}
    for pool in pools:
        accuracy = {task: scores[task][pool] for task in tasks if pool in scores[task]}
        sides[pool] = (_side(accuracy, favours, "mean"), _side(accuracy, favours, "max"), accuracy)
    if "gap" in sides and "gmp" in sides:
        gap_mean, gap_max, _ = sides["gap"]
        gmp_mean, gmp_max, _ = sides["gmp"]
        scale = (gmp_max - gap_max) - (gmp_mean - gap_mean)
    else:
        gap_mean = gap_max = scale = math.nan
    for pool, (mean_side, max_side, accuracy) in sides.items():
        usable = not math.isnan(scale) and scale != 0
        lean = ((max_side - gap_max) - (mean_side - gap_mean)) / scale if usable else math.nan
        result.rows.append(FingerprintRow(pool=pool, accuracy=accuracy, mean_side=mean_side, max_side=max_side,
                                          lean=lean))
    return result
