"""Seed planning: how small a difference a setting's seeds can detect, and how many seeds a difference needs.

Poolings are compared paired by seed (the same seed gives every pooling the same data order and
backbone weights), so what matters is the spread of the *paired differences*. For a two-sided
paired t-test at level ``alpha`` with ``n`` seeds, a true difference ``delta`` is detected with
probability (power)

    P(|T| > t_{1-alpha/2, n-1}),   T ~ noncentral t(df = n - 1, nc = delta * sqrt(n) / sd),

where ``sd`` is the standard deviation of the paired differences. The smallest detectable
difference solves power = 0.8 for ``delta``; the seeds needed for a given ``delta`` are the
smallest ``n`` reaching it.

>>> round(detectable_difference(sd=1.0, seeds=3), 2)
3.26
>>> seeds_needed(difference=0.5, sd=1.0)
34
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import integrate, optimize, stats

POWER = 0.8
ALPHA = 0.05
MAX_SEEDS = 10_000


def _power(effect: float, seeds: int, alpha: float) -> float:
    """Power of the two-sided paired t-test for a standardised effect ``difference / sd``."""
    df = seeds - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    noncentrality = abs(effect) * math.sqrt(seeds)
    if noncentrality > 1e3:  # far past any critical value; scipy's nct loses accuracy out there
        return 1.0
    power = stats.nct.sf(critical, df, noncentrality) + stats.nct.cdf(-critical, df, noncentrality)
    if math.isfinite(power):
        return float(power)
    # scipy's noncentral t gives NaN in places at 1-2 degrees of freedom (e.g. df 1, nc 11.3):
    # integrate T = (Z + nc) / sqrt(V / df) over V ~ chi2(df) instead.
    def given_v(v: float) -> float:
        scaled = critical * math.sqrt(v / df)
        return float((stats.norm.sf(scaled - noncentrality) + stats.norm.cdf(-scaled - noncentrality))
                     * stats.chi2.pdf(v, df))
    return float(integrate.quad(given_v, 0.0, math.inf, limit=200)[0])


def paired_power(difference: float, sd: float, seeds: int, alpha: float = ALPHA) -> float:
    """Probability that a paired t-test over ``seeds`` seeds finds a true ``difference`` (two-sided)."""
    if seeds < 2 or not sd > 0:
        return math.nan
    return _power(difference / sd, seeds, alpha)


def detectable_difference(sd: float, seeds: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true difference that ``seeds`` paired seeds detect with probability ``power``.

    Solved for the standardised effect (sd = 1) and scaled by ``sd``, so tiny or huge spreads
    never push the solver to the edges of scipy's noncentral t.
    """
    if seeds < 2 or not sd > 0:
        return math.nan
    high = 1.0
    while _power(high, seeds, alpha) < power:
        high *= 2
    effect = optimize.brentq(lambda e: _power(e, seeds, alpha) - power, 0.0, high, xtol=1e-9)
    return float(effect * sd)


def seeds_needed(difference: float, sd: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """The fewest paired seeds that detect ``difference`` with probability ``power``; None past MAX_SEEDS."""
    if not sd > 0 or difference == 0:
        return None
    effect = difference / sd
    low, high = 2, 2
    while _power(effect, high, alpha) < power:  # doubling, then bisection
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return None
    while low < high:
        middle = (low + high) // 2
        if _power(effect, middle, alpha) >= power:
            high = middle
        else:
            low = middle + 1
    return high


@dataclass(frozen=True)
class SeedPlan:
    """What one setting's seeds can tell apart, from the spread measured there."""

    setting: str
    seeds: int  # paired seeds per pooling in this sweep (the most any pair shares)
    sd: float  # standard deviation of paired differences between poolings, pooled over pairs
    source: str  # how ``sd`` was estimated
    detectable: float  # smallest difference ``seeds`` seeds detect (power 0.8, alpha 0.05)
    detect: float | None = None  # a difference the user asked about (--detect)
    needed: int | None = None  # seeds that difference needs
    identical: bool = False  # every paired difference is exactly 0: the poolings compute the same function
    leading: LeadingPair | None = None  # the two best poolings' own spread (the pooled one mixes every pair)

    def text(self) -> str:
        if math.isnan(self.sd):
            return f"{self.setting}: not enough paired seeds to measure the spread (need 2 seeds of 2 poolings)"
        if self.identical:
            return (f"{self.setting}: every paired difference is exactly 0 over {self.seeds} seeds: the poolings "
                    "compute the same function here (a 1x1 pool input?); no number of seeds separates them")
        if self.sd == 0:
            return (f"{self.setting}: the paired differences do not vary over {self.seeds} seeds, so their "
                    "spread cannot be measured yet: add seeds")
        line = (f"{self.setting}: with {self.seeds} seeds a difference of {self.detectable:.2f} points is "
                f"detected with 80% power (paired t, alpha 0.05; sd of paired differences {self.sd:.2f}, "
                f"{self.source})")
        if self.detect is not None:
            need = f"{self.needed} seeds" if self.needed else f"more than {MAX_SEEDS} seeds"
            line += f"; detecting {self.detect:g} points needs {need}"
        if self.leading is not None:
            line += f". {self.leading.text()}"
        return line


@dataclass(frozen=True)
class LeadingPair:
    """The spread of paired differences between the two poolings with the highest means.

    One erratic pooling widens the pooled spread of a whole setting; the comparison users most
    often ask about, the winner against the runner-up, can be far tighter (near a ceiling,
    differences of a tenth of a point become significant).
    """

    first: str
    second: str
    seeds: int  # seeds the two share
    sd: float
    detectable: float

    def text(self) -> str:
        pair = f"The two leading poolings, {self.first} and {self.second}"
        if self.sd == 0:
            return f"{pair}, differ by the same amount on all {self.seeds} shared seeds"
        return (f"{pair}, differ with sd {self.sd:.2f} over {self.seeds} shared seeds: a difference of "
                f"{self.detectable:.2f} points between them is detected with 80% power")


def _paired_differences(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a - b on every seed both have, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def _squares_about_mean(values: list[float]) -> float:
    """Sum of squared deviations from the mean (the variance's numerator)."""
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values)


def leading_pair(scores: dict[str, dict[int, float]]) -> LeadingPair | None:
    """The two poolings with the highest mean score and the spread of their paired differences;
    None when fewer than two poolings or fewer than 2 shared seeds."""
    ranked = sorted((name for name, values in scores.items() if values),
                    key=lambda name: -sum(scores[name].values()) / len(scores[name]))
    if len(ranked) < 2:
        return None
    first, second = ranked[:2]
    diffs = _paired_differences(scores[first], scores[second])
    if len(diffs) < 2:
        return None
    sd = math.sqrt(_squares_about_mean(diffs) / (len(diffs) - 1))
    if sd < 1e-9:
        sd = 0.0  # float round-off of a constant difference
    return LeadingPair(first, second, len(diffs), sd, detectable_difference(sd, len(diffs)) if sd else math.nan)


def plan_seeds(setting: str, scores: dict[str, dict[int, float]], detect: float | None = None) -> SeedPlan:
    """The seed plan of one setting from ``scores`` (pooling -> seed -> best test accuracy).

    The sd of paired differences is pooled over every pair of poolings with >= 2 common seeds
    (each pair's variance weighted by its degrees of freedom). With no such pair but some
    pooling with >= 2 seeds, it falls back to sqrt(2) x the pooled seed-to-seed sd, which is
    what pairing gives when the seeds' effects are independent between poolings.
    """
    names = [name for name, values in scores.items() if values]
    squares, df, most, identical = 0.0, 0, 0, True
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            diffs = _paired_differences(scores[a], scores[b])
            most = max(most, len(diffs))
            if len(diffs) >= 2:
                identical = identical and all(abs(d) < 1e-9 for d in diffs)
                squares += _squares_about_mean(diffs)
                df += len(diffs) - 1
    source = "pooled over pairs of poolings"
    identical = identical and df > 0  # only paired differences can show two poolings computing the same
    if df == 0:
        for values in scores.values():
            if len(values) >= 2:
                squares += 2 * _squares_about_mean(list(values.values()))
                df += len(values) - 1
                most = max(most, len(values))
        source = "sqrt(2) x the seed spread of single poolings"
    sd = math.sqrt(squares / df) if df else math.nan
    if identical:
        sd = 0.0  # differences that are float round-off of 0
    needed = seeds_needed(detect, sd) if detect is not None and df else None
    return SeedPlan(setting, most, sd, source, detectable_difference(sd, most) if df else math.nan, detect, needed,
                    identical=identical, leading=None if identical else leading_pair(scores))
