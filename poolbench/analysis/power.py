"""Seed planning: how small a difference a setting's seeds can detect between its two leading poolings,
and how many seeds a difference needs.

Poolings are compared paired by seed (the same seed gives every pooling the same data order and
backbone weights), so what matters is the spread of the *paired differences*. For a two-sided
paired t-test at level ``alpha`` with ``n`` seeds, a true difference ``delta`` is detected with
probability (power)

    P(|T| > t_{1-alpha/2, n-1}),   T ~ noncentral t(df = n - 1, nc = delta * sqrt(n) / sd),

where ``sd`` is the standard deviation of the paired differences; a one-sided test at level
alpha (a non-inferiority bound) has power P(T > t_{1-alpha, n-1}). The smallest detectable
difference solves power = 0.8 for ``delta``; the seeds needed for a given ``delta`` are the
smallest ``n`` reaching it. Both agree with statsmodels' ``TTestPower`` to 1e-6 (tests), which
gives NaN at 1-2 degrees of freedom where this integrates instead.

>>> round(detectable_difference(sd=1.0, seeds=3), 2)
3.26
>>> seeds_needed(difference=0.5, sd=1.0)
34
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import integrate, optimize, stats

from .levels import ALPHA, POWER

MAX_SEEDS = 10_000


def _power(effect: float, seeds: int, alpha: float, one_sided: bool = False) -> float:
    """Power of the paired t-test for a standardised effect ``difference / sd``: two-sided, or
    one-sided towards the sign of ``effect`` (``one_sided``)."""
    df = seeds - 1
    critical = stats.t.ppf(1 - (alpha if one_sided else alpha / 2), df)
    noncentrality = abs(effect) * math.sqrt(seeds)
    if noncentrality > 1e3:  # far past any critical value; scipy's nct loses accuracy out there
        return 1.0
    power = stats.nct.sf(critical, df, noncentrality) + (0.0 if one_sided else stats.nct.cdf(-critical, df,
                                                                                              noncentrality))
    if math.isfinite(power):
        return float(power)
    # scipy's noncentral t gives NaN in places at 1-2 degrees of freedom (e.g. df 1, nc 11.3):
    # integrate T = (Z + nc) / sqrt(V / df) over V ~ chi2(df) instead.
    def given_v(v: float) -> float:
        scaled = critical * math.sqrt(v / df)
        tails = stats.norm.sf(scaled - noncentrality) + (0.0 if one_sided else stats.norm.cdf(-scaled - noncentrality))
        return float(tails * stats.chi2.pdf(v, df))
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


def seeds_needed(difference: float, sd: float, power: float = POWER, alpha: float = ALPHA,
                 one_sided: bool = False) -> int | None:
    """The fewest paired seeds that detect ``difference`` with probability ``power`` (two-sided, or
    one-sided towards its sign); None past MAX_SEEDS, or for no difference."""
    if not sd > 0 or difference == 0 or not math.isfinite(difference):
        return None
    effect = difference / sd
    low, high = 2, 2
    while _power(effect, high, alpha, one_sided) < power:  # doubling, then bisection
        low, high = high, high * 2
        if high > MAX_SEEDS:
            return None
    while low < high:
        middle = (low + high) // 2
        if _power(effect, middle, alpha, one_sided) >= power:
            high = middle
        else:
            low = middle + 1
    return high


@dataclass(frozen=True)
class SeedPlan:
    """What one setting's seeds can tell apart between its two leading poolings (the highest means):
    the comparison a reader asks about first, planned from that pair's own spread, never a spread
    pooled over pairs (one erratic pooling would widen it for every pair)."""

    setting: str
    first: str  # the pooling with the highest mean ("" when fewer than two poolings have runs)
    second: str  # the runner-up
    seeds: int  # seeds the two share (unpaired: the fewer of their seed counts)
    diff: float  # first - second, the mean paired difference (unpaired: the difference of means)
    sd: float  # standard deviation of their paired differences
    source: str  # how ``sd`` was estimated
    detectable: float  # smallest difference ``seeds`` seeds detect (power 0.8, alpha 0.05, two-sided)
    to_tell: int | None = None  # seeds that would detect the measured ``diff``; None past MAX_SEEDS
    detect: float | None = None  # a difference the user asked about (--detect)
    needed: int | None = None  # seeds that difference needs
    identical: bool = False  # every paired difference is exactly 0: the two compute the same function

    def text(self) -> str:
        if not self.first or math.isnan(self.sd):
            return (f"{self.setting}: not enough seeds to measure the spread (need 2 seeds of each of the two "
                    "leading poolings)")
        pair = f"the two leading poolings, {self.first} and {self.second}"
        if self.identical:
            return (f"{self.setting}: every paired difference between {pair} is exactly 0 over {self.seeds} "
                    "seeds: they compute the same function here (a 1x1 pool input?); no number of seeds "
                    "separates them")
        if self.sd == 0:
            return (f"{self.setting}: {pair}, differ by the same {self.diff:+.2f} points on all {self.seeds} "
                    "shared seeds, so their spread cannot be measured yet: add seeds")
        line = (f"{self.setting}: {pair}, differ by {self.diff:+.2f} points (sd of paired differences "
                f"{self.sd:.2f}, {self.source}); {self.seeds} seeds detect {self.detectable:.2f} points between "
                f"them with {POWER:.0%} power (paired t, alpha {ALPHA:g})")
        line += (f"; the measured {abs(self.diff):.2f} needs about {self.to_tell} seeds" if self.to_tell
                 else f"; the measured {abs(self.diff):.2f} needs more than {MAX_SEEDS} seeds")
        if self.detect is not None:
            need = f"{self.needed} seeds" if self.needed else f"more than {MAX_SEEDS} seeds"
            line += f"; detecting {self.detect:g} points needs {need}"
        return line


def _paired_differences(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """a - b on every seed both have, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b))]


def _sample_sd(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def plan_seeds(setting: str, scores: dict[str, dict[int, float]], detect: float | None = None) -> SeedPlan:
    """The seed plan of one setting from ``scores`` (pooling -> seed -> score) for its two leading
    poolings.

    The sd is that of their paired differences over the seeds both have (>= 2). With fewer shared
    seeds but >= 2 seeds of each, it falls back to sqrt(2) x their pooled seed-to-seed sd, which
    is what pairing gives when the seeds' effects are independent between poolings.
    """
    ranked = sorted((name for name, values in scores.items() if values),
                    key=lambda name: -sum(scores[name].values()) / len(scores[name]))
    if len(ranked) < 2:
        return SeedPlan(setting=setting, first="", second="", seeds=0, diff=math.nan, sd=math.nan, source="",
                        detectable=math.nan, detect=detect)
    first, second = ranked[:2]
    a, b = scores[first], scores[second]
    diffs = _paired_differences(a, b)
    identical = False
    if len(diffs) >= 2:
        seeds, diff, sd = len(diffs), sum(diffs) / len(diffs), _sample_sd(diffs)
        identical = all(abs(d) < 1e-9 for d in diffs)
        if sd < 1e-9:
            sd = 0.0  # float round-off of a constant difference
        source = f"over {seeds} shared seeds"
    elif len(a) >= 2 and len(b) >= 2:
        seeds = min(len(a), len(b))
        diff = sum(a.values()) / len(a) - sum(b.values()) / len(b)
        df = len(a) + len(b) - 2
        pooled = ((len(a) - 1) * _sample_sd(list(a.values())) ** 2
                  + (len(b) - 1) * _sample_sd(list(b.values())) ** 2) / df
        sd, source = math.sqrt(2 * pooled), "sqrt(2) x their seed spread: fewer than 2 shared seeds"
    else:
        return SeedPlan(setting=setting, first=first, second=second, seeds=len(diffs), diff=math.nan, sd=math.nan,
                        source="", detectable=math.nan, detect=detect)
    if not sd > 0:
        return SeedPlan(setting=setting, first=first, second=second, seeds=seeds, diff=diff, sd=0.0, source=source,
                        detectable=math.nan, detect=detect, identical=identical)
    return SeedPlan(setting=setting, first=first, second=second, seeds=seeds, diff=diff, sd=sd, source=source,
                    detectable=detectable_difference(sd, seeds), to_tell=seeds_needed(diff, sd), detect=detect,
                    needed=seeds_needed(detect, sd) if detect is not None else None)
