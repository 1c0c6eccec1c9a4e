"""Does a pooling's diagnostic fingerprint predict its order on real images?

Reads a diagnostic sweep (its fingerprint: mean side, max side, lean per pooling) and a sweep on
real images (the mean best test accuracy per pooling on each setting), and prints, for the
poolings in both, the table side by side and Spearman's rank correlation (scipy) of the real
accuracy with each fingerprint score: the lean, the mean side, the max side, and the weaker of the
two sides (``min(mean side, max side)``: is a pooling good at both?). With five poolings a rank
correlation is weak evidence: its exact p-value (scipy's permutation test over every ordering,
two-sided) is printed with it.

    python benchmarks/real_vs_fingerprint.py --diagnostics runs/diag5 --real runs/real5
"""

from __future__ import annotations

import argparse
import math
import sys

from scipy import stats

from poolbench.analysis.sweep_analysis import build_report
from poolbench.storage.sweep_runs import ReportError


def spearman_exact(x: list[float], y: list[float]) -> tuple[float, float]:
    """Spearman's rho of ``x`` and ``y`` and its two-sided p-value over every pairing of the two."""
    def rho(values: list[float]) -> float:
        return float(stats.spearmanr(values, y).statistic)

    test = stats.permutation_test((x,), rho, permutation_type="pairings", n_resamples=math.inf,
                                  alternative="two-sided")
    return float(test.statistic), float(test.pvalue)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diagnostics", required=True, help="a sweep folder with the diagnostic suite")
    parser.add_argument("--real", required=True, help="a sweep folder on real images")
    args = parser.parse_args(argv)
    try:
        diagnostic, real = build_report(args.diagnostics), build_report(args.real)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if diagnostic.fingerprint is None:
        print(f"error: {args.diagnostics} has no diagnostic tasks with completed runs", file=sys.stderr)
        return 2
    prints = {row.pool: row for row in diagnostic.fingerprint.rows}
    for setting in real.settings:
        accuracy = {row.pool: row.stats.mean for row in real.rows[setting] if row.values and row.pool in prints}
        pools = sorted(accuracy, key=accuracy.__getitem__, reverse=True)
        if len(pools) < 3:
            print(f"{setting}: fewer than 3 poolings in both sweeps; nothing to correlate")
            continue
        print(f"{setting} ({len(pools)} poolings in both sweeps)")
        print(f"  {'pooling':10s} {'real':>7s} {'lean':>6s} {'mean side':>10s} {'max side':>9s} {'weaker side':>12s}")
        scores = {"lean": {}, "mean side": {}, "max side": {}, "weaker side": {}}
        for pool in pools:
            row = prints[pool]
            scores["lean"][pool], scores["mean side"][pool] = row.lean, row.mean_side
            scores["max side"][pool], scores["weaker side"][pool] = row.max_side, min(row.mean_side, row.max_side)
            print(f"  {pool:10s} {accuracy[pool]:7.2f} {row.lean:6.2f} {row.mean_side:10.2f} {row.max_side:9.2f} "
                  f"{min(row.mean_side, row.max_side):12.2f}")
        for name, by_pool in scores.items():
            usable = [p for p in pools if not math.isnan(by_pool[p])]
            if len(usable) < 3:
                continue
            rho, p = spearman_exact([accuracy[q] for q in usable], [by_pool[q] for q in usable])
            print(f"  Spearman rho(real, {name}) = {rho:+.2f} (p = {p:.3f}, n = {len(usable)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
