"""The statistics of one comparison between two poolings: a difference, its interval, its effect
size, its test; Holm's correction over a report's comparisons; non-inferiority with a margin.

Poolings are compared paired by seed (one seed gives every pooling the same data order and
backbone weights). For the differences d_i = a_i - b_i over the n seeds both have, with mean
d̄ and sample standard deviation s:

    t = d̄ / (s / sqrt(n)),  two-sided p from Student's t with n - 1 degrees of freedom,
    95% CI = d̄ ± t_{0.975, n-1} s / sqrt(n),
    Cohen's d_z = d̄ / s                                   (Cohen 1988; Lakens 2013).

Against published runs, which share seeds but not hardware or code, the comparison is unpaired:
Welch's t-test and interval, and Cohen's d with the pooled standard deviation.

A constant difference over n >= 2 seeds has s = 0: its t is infinite, so p = 0 (d̄ != 0) or
p = 1 (d̄ = 0, the two poolings compute the same thing here), and the interval is the point.

**Holm** (Holm 1979; statsmodels' ``multipletests(method="holm")``) adjusts the p-values of a
family of m tests so that the chance of any false "significant" among them is at most alpha.

**Non-inferiority** with margin M (ICH E9; Lakens 2017): a pooling is *not worse* than another
when the one-sided 95% lower bound of d̄, d̄ - t_{0.95, n-1} s / sqrt(n), lies above -M, which is
the one-sided t-test of H0: true difference <= -M at alpha 0.05 (one half of a TOST). It is
*worse* when the one-sided upper bound lies below -M; otherwise the seeds cannot tell, and the
seeds needed are the fewest for which the one-sided test reaches 80% power at the difference
measured (poolbench.analysis.power, which agrees with statsmodels' ``TTestPower``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..core.outcomes import StrEnum
from .levels import ALPHA
from .power import seeds_needed

CONSTANT = 1e-9  # a spread below this is float round-off of a constant difference
PAIRED, WELCH = "paired t", "Welch t"


@dataclass
class Difference:
    """``a - b``: the mean difference with its 95% CI, the test's p-value, the effect size, and the
    Holm-adjusted p once the report's family of comparisons is known (``holm_adjust`` sets it)."""

    n: int  # seeds paired (paired t), or the smaller group (Welch t)
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    effect: float  # Cohen's d_z (paired t) or d (Welch t)
    test: str = PAIRED
    sd: float = math.nan  # standard deviation of the paired differences (paired t only)
    p_holm: float = math.nan
    family: int = 0  # how many comparisons the Holm adjustment was over

    @property
    def effect_name(self) -> str:
        return "d_z" if self.test == PAIRED else "d"

    def significant(self, alpha: float = ALPHA) -> bool:
        """Holm-adjusted p < alpha (the raw p before adjust() has run)."""
        p = self.p_value if math.isnan(self.p_holm) else self.p_holm
        return self.diff != 0 and p < alpha

    def mirrored(self) -> Difference:
        """``b - a``: the same test seen from the other side."""
        return Difference(n=self.n, diff=-self.diff, ci_low=-self.ci_high, ci_high=-self.ci_low, p_value=self.p_value,
                          effect=-self.effect, test=self.test, sd=self.sd, p_holm=self.p_holm, family=self.family)


def nothing() -> Difference:
    """No comparison possible (no shared seed, no runs)."""
    return Difference(n=0, diff=math.nan, ci_low=math.nan, ci_high=math.nan, p_value=math.nan, effect=math.nan)


def paired(a: dict[int, float], b: dict[int, float]) -> Difference:
    """``a - b`` paired by seed over the seeds both have (paired t-test, d_z)."""
    seeds = sorted(set(a) & set(b))
    diffs = np.array([a[s] - b[s] for s in seeds], dtype=float)
    if len(diffs) == 0:
        return nothing()
    mean = float(diffs.mean())
    if len(diffs) < 2:
        return Difference(n=1, diff=mean, ci_low=math.nan, ci_high=math.nan, p_value=math.nan, effect=math.nan)
    sd = float(diffs.std(ddof=1))
    if sd < CONSTANT:
        p = 1.0 if abs(mean) < CONSTANT else 0.0
        effect = 0.0 if p == 1.0 else math.copysign(math.inf, mean)
        return Difference(n=len(diffs), diff=mean, ci_low=mean, ci_high=mean, p_value=p, effect=effect, test=PAIRED,
                          sd=0.0)
    result = stats.ttest_1samp(diffs, 0.0)
    ci = result.confidence_interval(1 - ALPHA)
    return Difference(n=len(diffs), diff=mean, ci_low=float(ci.low), ci_high=float(ci.high),
                      p_value=float(result.pvalue), effect=mean / sd, test=PAIRED, sd=sd)


def welch(a: list[float], b: list[float]) -> Difference:
    """mean(a) - mean(b), unpaired: Welch's t-test and interval, Cohen's d with the pooled sd."""
    if not a or not b:
        return nothing()
    diff = float(np.mean(a) - np.mean(b))
    n = min(len(a), len(b))
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return Difference(n=n, diff=diff, ci_low=math.nan, ci_high=math.nan, p_value=math.nan, effect=math.nan,
                          test=WELCH)
    result = stats.ttest_ind(a, b, equal_var=False)
    ci = result.confidence_interval(1 - ALPHA)
    pooled = math.sqrt(((len(a) - 1) * np.var(a, ddof=1) + (len(b) - 1) * np.var(b, ddof=1)) / (len(a) + len(b) - 2))
    return Difference(n=n, diff=diff, ci_low=float(ci.low), ci_high=float(ci.high), p_value=float(result.pvalue),
                      effect=diff / pooled, test=WELCH)


def holm_adjust(differences: list[Difference]) -> None:
    """Set ``p_holm`` and ``family`` of every difference with a p-value, Holm-adjusted over all of them."""
    tested = [d for d in differences if not math.isnan(d.p_value)]
    for difference, p in zip(tested, holm([d.p_value for d in tested]), strict=True):
        difference.p_holm, difference.family = p, len(tested)


def holm(p_values: list[float]) -> list[float]:
    """Holm-adjusted p-values in the order given; nan stays nan and is not counted in the family."""
    from statsmodels.stats.multitest import multipletests  # pandas: 2 s, only when a report is made

    known = [i for i, p in enumerate(p_values) if not math.isnan(p)]
    adjusted = [math.nan] * len(p_values)
    if known:
        for i, p in zip(known, multipletests([p_values[i] for i in known], alpha=ALPHA, method="holm")[1],
                        strict=True):
            adjusted[i] = float(p)
    return adjusted


class Decision(StrEnum):
    SHOWN = "shown"
    NOT = "not"  # the evidence points the other way
    UNDECIDED = "undecided"


@dataclass(frozen=True)
class NonInferiority:
    """Is ``a`` not worse than ``b`` by more than ``margin`` points? (a one-sided paired t-test)."""

    margin: float
    difference: Difference
    lower: float  # one-sided 95% lower bound of the mean paired difference
    upper: float  # one-sided 95% upper bound
    p_value: float  # one-sided, H0: true difference <= -margin
    decision: Decision
    seeds_needed: int | None = None  # undecided: seeds for 80% power at the measured difference

    def text(self) -> str:
        bound = f"lower 95% bound {self.lower:+.2f}" if math.isfinite(self.lower) else "no bound (1 seed)"
        return f"{self.difference.diff:+.2f}, {bound} vs margin -{self.margin:g}"


def non_inferiority(a: dict[int, float], b: dict[int, float], margin: float) -> NonInferiority:
    """``a`` against ``b`` with a margin: shown (lower bound > -margin), not (upper bound < -margin),
    or undecided with the seeds that would tell."""
    difference = paired(a, b)
    n, mean, sd = difference.n, difference.diff, difference.sd
    if n < 2:
        return NonInferiority(margin=margin, difference=difference, lower=math.nan, upper=math.nan, p_value=math.nan,
                              decision=Decision.UNDECIDED)
    if sd == 0:  # a constant difference: the bounds are the point
        decision = Decision.SHOWN if mean > -margin else Decision.NOT
        return NonInferiority(margin=margin, difference=difference, lower=mean, upper=mean,
                              p_value=0.0 if mean > -margin else 1.0, decision=decision)
    diffs_scale = sd / math.sqrt(n)
    critical = float(stats.t.ppf(1 - ALPHA, n - 1))
    lower, upper = mean - critical * diffs_scale, mean + critical * diffs_scale
    p = float(stats.t.sf((mean + margin) / diffs_scale, n - 1))
    if lower > -margin:
        return NonInferiority(margin=margin, difference=difference, lower=lower, upper=upper, p_value=p,
                              decision=Decision.SHOWN)
    if upper < -margin:
        return NonInferiority(margin=margin, difference=difference, lower=lower, upper=upper, p_value=p,
                              decision=Decision.NOT)
    # Whichever way the measured difference points, the seeds that would show it at 80% power.
    needed = seeds_needed(abs(mean + margin), sd, one_sided=True)
    return NonInferiority(margin=margin, difference=difference, lower=lower, upper=upper, p_value=p,
                          decision=Decision.UNDECIDED, seeds_needed=needed)
