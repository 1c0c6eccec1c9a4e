"""How far the protocol's score (best test accuracy over epochs, chosen on the test set) exceeds the
scores not chosen on it: per pooling and setting, the mean of best - val and best - final over the
completed seeds with a 95% t interval (statsmodels' DescrStatsW).

    python benchmarks/score_gap.py runs/diag_val      # a sweep made with --val-split N

``val`` is the test accuracy at the epoch best on the held-out training images, ``final`` the last
epoch's. Runs without a val split show only best - final.
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict

from statsmodels.stats.weightstats import DescrStatsW

from poolbench.analysis import sweep_analysis
from poolbench.core.outcomes import RunStatus


def interval(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    if len(values) < 2:
        return f"{mean:+.2f}"
    low, high = DescrStatsW(values).tconfint_mean(alpha=0.05)
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else f"{mean:+.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a sweep folder")
    args = parser.parse_args()
    gaps: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: {"val": [], "final": []})
    for summary in sweep_analysis.collect_runs(args.folder):
        if summary.status != RunStatus.COMPLETED or summary.best_test_acc is None:
            continue
        for score in ("val", "final"):
            value = sweep_analysis.run_score(summary, score)
            if value is not None:
                gaps[summary.setting, summary.pool][score].append(summary.best_test_acc - value)
    print("| setting | pooling | n | best - val [95% CI] | best - final [95% CI] |")
    print("|---|---|---|---|---|")
    for (setting, pool), by_score in gaps.items():
        print(f"| {setting} | {pool} | {len(by_score['final'])} | {interval(by_score['val'])} | "
              f"{interval(by_score['final'])} |")
    every = [gap for by_score in gaps.values() for gap in by_score["val"]]
    final = [gap for by_score in gaps.values() for gap in by_score["final"]]
    print(f"\nall runs: best - val {interval(every)} (n={len(every)}), best - final {interval(final)} (n={len(final)})")


if __name__ == "__main__":
    main()
