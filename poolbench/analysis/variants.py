"""Protocol variants side by side: one sweep run at several protocols (``lr: [0.1, 0.05]``).

Each variant is reported on its own (poolbench.analysis.sweep_analysis ``build_report(root, variant=...)``): its
poolings are compared with each other under that protocol only, with its own Holm family, since
two learning rates are two experiments. Across variants the report puts, per setting, each
pooling's mean score and its rank under every variant side by side, and says how much the order
of the poolings moves between two variants with Kendall's tau over the poolings both ranked:

    tau = (concordant pairs - discordant pairs) / number of pairs     (tau-b, which corrects for ties)

1 is the same order, -1 the reversed one, 0 no relation (Kendall 1938, Biometrika 30: 81-93;
``scipy.stats.kendalltau``). A tau is over a handful of poolings and the means of a few seeds:
it describes the sweep, it is no test. On the diagnostic suite each variant also has its
fingerprint (poolbench.analysis.fingerprint), so a pooling's mean side, max side and lean can be read per
learning rate.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from ..core.unique import unique
from ..storage.sweep_runs import ReportError
from ..storage.sweepdir import load_sweep, variant_grid
from .levels import MARGIN
from .sweep_analysis import SweepAnalysis, build_report


@dataclass
class Agreement:
    """How alike two variants order the poolings of one setting."""

    first: str
    second: str
    tau: float  # Kendall's tau-b of the two variants' means over the poolings both ranked; nan below 2
    n: int  # poolings ranked in both


@dataclass
class SettingAcross:
    """One setting under every variant: each pooling's mean and rank (1 = best) per variant."""

    setting: str
    pools: list[str]
    means: dict[str, dict[str, float]]  # pooling -> variant -> mean score of its completed seeds
    seeds: dict[str, dict[str, int]]  # pooling -> variant -> completed seeds
    ranks: dict[str, dict[str, int]]  # pooling -> variant -> rank among the poolings with a mean there
    agreements: list[Agreement] = field(default_factory=list)

    def moves(self, pool: str) -> int | None:
        """How many places ``pool``'s rank moves between its best and its worst variant (None below two)."""
        ranks = list(self.ranks.get(pool, {}).values())
        return max(ranks) - min(ranks) if len(ranks) > 1 else None


@dataclass
class VariantsAnalysis:
    """The report of a sweep of protocol variants: each variant's own, and the variants side by side."""

    root: Path
    values: dict[str, dict[str, Any]]  # variant -> the protocol values that make it
    reports: dict[str, SweepAnalysis]  # variant -> its report (poolings compared within it)
    settings: list[SettingAcross]

    @property
    def variants(self) -> list[str]:
        return list(self.reports)

    def has_fingerprints(self) -> bool:
        return any(report.fingerprint is not None for report in self.reports.values())


def rank(means: dict[str, float]) -> dict[str, int]:
    """Pooling -> 1 for the highest mean, 2 for the next, ... (ties share the better rank).

    >>> rank({"gap": 80.0, "gmp": 90.0, "gem": 80.0})
    {'gmp': 1, 'gap': 2, 'gem': 2}
    """
    order = sorted(means, key=lambda pool: -means[pool])
    return {pool: 1 + sum(other > means[pool] for other in means.values()) for pool in order}


def agreement(first: str, second: str, a: dict[str, float], b: dict[str, float]) -> Agreement:
    """Kendall's tau-b between the means ``a`` and ``b`` (pooling -> mean) over the poolings in both."""
    common = [pool for pool in a if pool in b]
    if len(common) < 2:
        return Agreement(first=first, second=second, tau=math.nan, n=len(common))
    with warnings.catch_warnings():  # a constant input (all poolings tied) is nan, as it should be
        warnings.simplefilter("ignore")
        tau = stats.kendalltau([a[p] for p in common], [b[p] for p in common]).statistic
    return Agreement(first=first, second=second, tau=float(tau), n=len(common))


def side_by_side(reports: dict[str, SweepAnalysis]) -> list[SettingAcross]:
    """Per setting (in report order), each pooling's mean and rank in every variant, and the
    agreement of every pair of variants."""
    settings = unique([s for report in reports.values() for s in report.settings])
    across = []
    for setting in settings:
        means: dict[str, dict[str, float]] = {}
        seeds: dict[str, dict[str, int]] = {}
        per_variant: dict[str, dict[str, float]] = {}
        for variant, report in reports.items():
            for row in report.rows.get(setting, []):
                if row.values:
                    means.setdefault(row.pool, {})[variant] = row.stats.mean
                    seeds.setdefault(row.pool, {})[variant] = row.stats.n
                    per_variant.setdefault(variant, {})[row.pool] = row.stats.mean
        pools = unique([row.pool for report in reports.values() for row in report.rows.get(setting, [])])
        ranks: dict[str, dict[str, int]] = {}
        for variant, scores in per_variant.items():
            for pool, place in rank(scores).items():
                ranks.setdefault(pool, {})[variant] = place
        pairs = [agreement(a, b, per_variant.get(a, {}), per_variant.get(b, {}))
                 for a, b in itertools.combinations(reports, 2)]
        across.append(SettingAcross(setting=setting, pools=pools, means=means, seeds=seeds, ranks=ranks,
                                    agreements=pairs))
    return across


def has_variants(root: str | Path) -> bool:
    """Whether the sweep in ``root`` is one of protocol variants (its runs one folder level deeper)."""
    try:
        sweep = load_sweep(root)
    except ValueError:  # a damaged sweep.json: the report's own reading names it
        return False
    return sweep is not None and bool(sweep.variants)


def build_variants_report(root: str | Path, baseline: str | None = None, detect: float | None = None, *,
                          margin: float = MARGIN, score: str = "best",
                          seeds: list[int] | None = None) -> VariantsAnalysis:
    """Every variant's report (poolbench.analysis.sweep_analysis.build_report with the same arguments) and the
    variants side by side; ReportError when ``root`` is no sweep of protocol variants."""
    try:
        sweep = load_sweep(root)
    except ValueError as error:  # a damaged sweep.json: its one line
        raise ReportError(str(error)) from None
    if sweep is None or not sweep.variants:
        raise ReportError(f"{root} is no sweep of protocol variants (its sweep.json has no variants)")
    values = variant_grid(sweep.variants)
    reports = {}
    for variant in values:
        try:
            reports[variant] = build_report(root, baseline, detect, margin=margin, score=score, seeds=seeds,
                                            variant=variant)
        except ReportError as error:
            raise ReportError(f"variant {variant}: {error}") from None
    return VariantsAnalysis(root=Path(root), values=values, reports=reports, settings=side_by_side(reports))
