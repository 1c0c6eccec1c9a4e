"""The no-trade-off check: does a pooling keep up with the best standard pooling on every
diagnostic task?

On the diagnostic suite the standard poolings trade off: each of gap, gmp, gem and avgmax is
best on some tasks and far behind on others. A pooling shows *no trade-off* when, on every
diagnostic task of a sweep, it is

- not significantly worse than the best of the four there: ahead of it, or behind it with a
  paired p >= alpha; and
- significantly better than the worst of the four there: ahead of it with a paired p < alpha.

Both comparisons pair runs by seed (paired t-test). With fewer than 2 paired seeds nothing is
significant: the first condition holds and the second fails. A constant difference over 2 or
more seeds has no t statistic (zero spread), and counts as significant. The numbers come from
poolbench.analysis, which builds these checks; poolbench.report renders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Versus:
    """A pooling against one baseline on one task: mean paired difference, its p, the seeds paired."""

    pool: str
    diff: float
    p_value: float
    n: int

    def significant(self, alpha: float) -> bool:
        if self.n < 2 or self.diff == 0 or math.isnan(self.diff):
            return False
        return math.isnan(self.p_value) or self.p_value < alpha  # nan with n >= 2: every seed differs alike


@dataclass(frozen=True)
class TaskCheck:
    task: str
    best: Versus  # against the baseline with the highest mean on this task
    worst: Versus  # against the baseline with the lowest mean
    alpha: float = 0.05

    @property
    def not_worse(self) -> bool:
        return self.best.diff >= 0 or not self.best.significant(self.alpha)

    @property
    def better(self) -> bool:
        return self.worst.diff > 0 and self.worst.significant(self.alpha)


@dataclass(frozen=True)
class TradeOffCheck:
    pool: str
    tasks: tuple[TaskCheck, ...]

    @property
    def holds(self) -> bool:
        return bool(self.tasks) and all(t.not_worse and t.better for t in self.tasks)

    def text(self) -> str:
        if self.holds:
            return "yes"
        reasons = [f"worse than the best on {t.task}" for t in self.tasks if not t.not_worse]
        reasons += [f"not better than the worst on {t.task}" for t in self.tasks if not t.better]
        return "no: " + "; ".join(reasons)


RULE = ("No trade-off: on every diagnostic task a pooling is not significantly worse than the best of {baselines} "
        "there (ahead, or paired p >= {alpha}) and significantly better than the worst of them (ahead with "
        "paired p < {alpha}); pairs by seed, paired t-test. Each cell: the difference to the best baseline, then "
        "to the worst; WORSE / NOT BETTER mark a failed condition.")
