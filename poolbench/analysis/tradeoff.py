"""The no-trade-off check: does a pooling keep up with the best standard pooling on every
diagnostic task?

On the diagnostic suite the standard poolings trade off: each of gap, gmp, gem and avgmax is
best on some tasks and far behind on others. A pooling shows *no trade-off* when, on every
diagnostic task of a sweep, it is

- **not worse than the best** of the four there by more than a declared margin M: the one-sided
  95% lower bound of the paired difference lies above -M (non-inferiority, poolbench.analysis.paired);
- **ahead of the worst** of the four there: a positive paired difference, significant after the
  report's Holm correction.

Each condition is *shown*, *not* met (the measured numbers point the other way: the upper bound
below -M, or not ahead of the worst at all), or *undecided* (the seeds cannot tell yet, with the
seeds that would). The check is "yes" only when both are shown on every task, "no" when any is
not met, and otherwise "undecided: about N seeds needed": absence of evidence is never read as
equivalence. Requiring every task is an intersection-union test, which needs no correction of its
own. The numbers come from poolbench.analysis.sweep_analysis, which builds these checks; poolbench.render.report
renders them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .levels import ALPHA
from .paired import Decision, Difference, NonInferiority
from .power import MAX_SEEDS, seeds_needed


@dataclass(frozen=True)
class TaskCheck:
    task: str
    best: str  # the baseline with the highest mean on this task
    worst: str  # the baseline with the lowest mean
    not_worse: NonInferiority  # against ``best``, with the report's margin
    ahead: Difference  # against ``worst``, paired, Holm-adjusted over the report's comparisons

    @property
    def ahead_decision(self) -> Decision:
        if self.ahead.n < 2 or math.isnan(self.ahead.diff):
            return Decision.UNDECIDED
        if self.ahead.diff <= 0:
            return Decision.NOT
        return Decision.SHOWN if self.ahead.significant(ALPHA) else Decision.UNDECIDED

    @property
    def ahead_seeds_needed(self) -> int | None:
        """Seeds at which the measured lead over the worst would be significant at Holm's strictest
        level (alpha / family size) with 80% power; None when unknown or past MAX_SEEDS."""
        d = self.ahead
        if self.ahead_decision != Decision.UNDECIDED or not d.sd > 0:
            return None
        return seeds_needed(d.diff, d.sd, alpha=ALPHA / max(1, d.family))

    @property
    def decisions(self) -> tuple[Decision, Decision]:
        return self.not_worse.decision, self.ahead_decision

    def seeds_needed(self) -> list[int | None]:
        """The seeds each undecided condition needs (None: unknown or more than MAX_SEEDS)."""
        needs = []
        if self.not_worse.decision == Decision.UNDECIDED:
            needs.append(self.not_worse.seeds_needed)
        if self.ahead_decision == Decision.UNDECIDED:
            needs.append(self.ahead_seeds_needed)
        return needs


@dataclass(frozen=True)
class TradeOffCheck:
    pool: str
    tasks: tuple[TaskCheck, ...]

    @property
    def decision(self) -> Decision:
        decisions = [d for t in self.tasks for d in t.decisions]
        if not decisions or Decision.NOT in decisions:
            return Decision.NOT
        return Decision.UNDECIDED if Decision.UNDECIDED in decisions else Decision.SHOWN

    @property
    def holds(self) -> bool:
        return self.decision == Decision.SHOWN

    def text(self) -> str:
        if not self.tasks:
            return "no: no diagnostic task"
        if self.holds:
            return "yes"
        if self.decision == Decision.NOT:
            reasons = [f"worse than the best on {t.task}" for t in self.tasks if t.not_worse.decision == Decision.NOT]
            reasons += [f"not ahead of the worst on {t.task}" for t in self.tasks if t.ahead_decision == Decision.NOT]
            return "no: " + "; ".join(reasons)
        needs = [n for t in self.tasks for n in t.seeds_needed()]
        if any(n is None for n in needs):
            known = [t.not_worse.difference.n for t in self.tasks]
            need = "too few seeds to estimate" if min(known) < 2 else f"more than {MAX_SEEDS} seeds needed"
        else:
            need = f"about {max(n for n in needs if n is not None)} seeds needed"
        open_ = [f"{'not worse than the best' if kind == 0 else 'ahead of the worst'} on {t.task}"
                 for t in self.tasks for kind, d in enumerate(t.decisions) if d == Decision.UNDECIDED]
        return f"undecided: {need} ({'; '.join(open_)} not resolved)"


RULE = ("No trade-off: on every diagnostic task a pooling is not worse than the best of {baselines} there by "
        "more than the margin of {margin:g} points (the one-sided 95% lower bound of the paired difference lies "
        "above -{margin:g}) and ahead of the worst of them (a positive paired difference, Holm-adjusted p < "
        "{alpha}). \"undecided\" means the seeds cannot tell yet, with about how many seeds would; it is never "
        "read as \"yes\". Each cell: the difference to the best baseline with its lower bound, then to the worst "
        "with its Holm-adjusted p; WORSE / NOT AHEAD mark a failed condition, ? an undecided one. "
        "`poolbench report --margin M` sets the margin.")
