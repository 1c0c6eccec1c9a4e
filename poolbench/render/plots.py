"""Report plots as PNG bytes.

- ``epoch_curves_png``: any per-epoch metric (test or validation accuracy, training loss, learning
  rate), one panel per setting: per pooling the mean over seeds with a band of ± 1 standard error
  over seeds (none for a single seed); seeds of unequal length are cut to their common epochs.
- ``accuracy_bars_png``: a score (best test accuracy by default) per pooling and setting, the mean
  with its 95% CI on a zoomed y-axis and every seed's value as a black dot over its bar, so the
  spread behind a mean is visible; published reference rows are hatched light grey.
- ``differences_png``: the paired design as a forest plot, one panel per setting: per pooling the
  mean difference to the baseline over the seeds both ran, with its 95% CI; a filled marker is
  significant after the report's Holm correction, an open one is not.
- ``fingerprint_png``: each pooling's mean side against its max side on the diagnostic tasks.

Figures are built with ``matplotlib.figure.Figure`` (the Agg canvas), never pyplot: no
display is needed and no global backend state is touched. Inputs are plain data. Each pooling has
one colour, the same in every panel and plot (``_colors``). Each ``*_png`` function renders a
figure built by a private ``_*_figure`` function, which the tests inspect.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import NamedTuple

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# curves[setting][pool] = one per-epoch list (e.g. test accuracy, loss) per completed seed
Curves = dict[str, dict[str, list[list[float]]]]


class Bar(NamedTuple):
    """One bar of ``accuracy_bars_png``."""

    label: str
    mean: float
    ci_low: float  # the mean's 95% CI (it may be asymmetric: truncated at 0 and 100), nan when unknown
    ci_high: float
    published: bool  # a published reference row: hatched, light grey
    values: list[float]  # the per-seed scores (may be empty for a published row shown as a mean only)


# bars[setting] = the bars in display order
Bars = dict[str, list[Bar]]


class DifferenceBar(NamedTuple):
    """One row of ``differences_png``: a pooling against the baseline, paired by seed."""

    label: str  # the pooling
    diff: float  # mean paired difference to the baseline (accuracy points)
    ci_low: float  # its 95% CI (nan when fewer than 2 paired seeds)
    ci_high: float
    significant: bool  # after the report's Holm correction


# differences[setting] = the rows in display order (top to bottom)
Differences = dict[str, list[DifferenceBar]]

JITTER = 0.25  # seed dots are spread evenly over ± this much of a bar's centre (bars are 0.8 wide)


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def _grid(count: int, width: float = 5.0, height: float = 3.6) -> tuple[Figure, list]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for unused in axes[count:]:
        unused.set_visible(False)
    return figure, axes[:count]


def _colors(names: list[str]) -> dict[str, str]:
    """One colour per pooling, the same in every panel and plot."""
    return {name: f"C{i % 10}" for i, name in enumerate(sorted(set(names)))}


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _curve_stats(seeds: list[list[float]], log_y: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per common epoch: the mean over seeds and its standard error (nan where under 2 finite values).

    Non-finite values (a diverged loss) and, on a log axis, non-positive ones count as missing.
    """
    length = min(len(seed) for seed in seeds)  # the seeds' common epochs
    values = np.array([seed[:length] for seed in seeds], dtype=float).reshape(len(seeds), length)
    values[~np.isfinite(values)] = np.nan
    if log_y:
        values[values <= 0] = np.nan
    counts = np.isfinite(values).sum(axis=0)
    with warnings.catch_warnings():  # an epoch without a finite value is nan, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0, ddof=1)
    error = np.where(counts >= 2, std / np.sqrt(np.maximum(counts, 1)), np.nan)
    return mean, error


def _curves_figure(curves: Curves, ylabel: str, title: str, log_y: bool = False) -> Figure:
    figure, axes = _grid(max(1, len(curves)))
    colors = _colors([pool for by_pool in curves.values() for pool in by_pool])
    for ax, (setting, by_pool) in zip(axes, curves.items(), strict=False):
        for pool, seeds in by_pool.items():
            if not seeds or min(len(seed) for seed in seeds) == 0:
                continue
            mean, error = _curve_stats(seeds, log_y)
            epochs = np.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, color=colors[pool], label=f"{pool} (n={len(seeds)})", gid=f"mean:{pool}")
            if len(seeds) > 1 and np.isfinite(error).any():
                low, high = mean - error, mean + error
                if log_y:  # a log axis has no zero: a band reaching it is cut at half the mean there
                    low = np.where(low > 0, low, mean / 2)
                ax.fill_between(epochs, low, high, alpha=0.2, color=colors[pool], linewidth=0, gid=f"band:{pool}")
        if log_y and any(np.isfinite(line.get_ydata()).any() for line in ax.get_lines()):
            ax.set_yscale("log")
        ax.set_title(setting)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    figure.suptitle(f"{title}: mean over seeds, band ± 1 standard error over seeds")
    return figure


def epoch_curves_png(curves: Curves, ylabel: str, title: str, log_y: bool = False) -> bytes:
    """A per-epoch metric, one panel per setting: per pooling the mean over seeds, ± 1 standard error."""
    return _png(_curves_figure(curves, ylabel, title, log_y))


def _jitter(count: int) -> np.ndarray:
    """Offsets of ``count`` seed dots from their bar's centre: evenly spread, no randomness."""
    return np.linspace(-JITTER, JITTER, count) if count > 1 else np.zeros(count)


def _bars_figure(bars: Bars, score: str = "best test accuracy") -> Figure:
    figure, axes = _grid(max(1, len(bars)))
    colors = _colors([bar.label for entries in bars.values() for bar in entries if not bar.published])
    for ax, (setting, entries) in zip(axes, bars.items(), strict=False):
        means = np.array([bar.mean for bar in entries], dtype=float)
        below = np.array([bar.mean - bar.ci_low for bar in entries], dtype=float)
        above = np.array([bar.ci_high - bar.mean for bar in entries], dtype=float)
        positions = np.arange(len(entries))
        ax.bar(positions, means, yerr=np.vstack([below, above]), capsize=4, edgecolor="black", linewidth=0.5,
               color=["lightgray" if bar.published else colors[bar.label] for bar in entries],
               hatch=["//" if bar.published else "" for bar in entries])
        dots_x = np.concatenate([i + _jitter(len(bar.values)) for i, bar in enumerate(entries)] + [np.zeros(0)])
        dots_y = np.array([value for bar in entries for value in bar.values], dtype=float)
        if len(dots_y):
            ax.scatter(dots_x, dots_y, s=9, color="black", zorder=3, linewidths=0, gid="seeds")
        shown = np.concatenate([means - np.nan_to_num(below), means + np.nan_to_num(above), dots_y])
        shown = shown[np.isfinite(shown)]
        if len(shown):  # differences are small: zoom in, but keep every dot and error bar inside
            low, high = float(shown.min()), float(shown.max())
            margin = max(0.5, 0.15 * (high - low))
            ax.set_ylim(max(0.0, low - margin) if low >= 0 else low - margin,
                        min(100.0, high + margin) if high <= 100 else high + margin)
        ax.set_xticks(positions, [bar.label for bar in entries], rotation=30, ha="right", fontsize="small")
        ax.set_title(setting)
        ax.set_ylabel(f"{score} (%)")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"{_sentence(score)}: mean over seeds with 95% CI, dots: single seeds (hatched: published)")
    return figure


def accuracy_bars_png(bars: Bars, score: str = "best test accuracy") -> bytes:
    """Mean score per pooling with 95% CIs and each seed as a dot; published references hatched."""
    return _png(_bars_figure(bars, score))


def _no_comparison(ax: Axes) -> None:
    ax.text(0.5, 0.5, "no comparison", ha="center", va="center", transform=ax.transAxes, gid="no comparison")
    ax.set_xticks([])
    ax.set_yticks([])


def _differences_figure(differences: Differences, baseline: str, score: str = "best test accuracy") -> Figure:
    if not differences:
        figure = Figure(figsize=(5.0, 2.0), layout="constrained")
        _no_comparison(figure.subplots())
        figure.suptitle(f"{_sentence(score)}: difference to {baseline}")
        return figure
    shown = {setting: [row for row in rows if not math.isnan(row.diff)] for setting, rows in differences.items()}
    most = max(len(rows) for rows in shown.values())
    figure, axes = _grid(len(shown), height=max(2.2, 1.4 + 0.4 * most))
    # the baseline counts too, so that every pooling has the colour it has in the other plots
    colors = _colors([row.label for rows in shown.values() for row in rows] + [baseline])
    for ax, (setting, rows) in zip(axes, shown.items(), strict=False):
        ax.set_title(setting)
        if not rows:
            _no_comparison(ax)
            continue
        ax.axvline(0.0, color="gray", linewidth=1, linestyle="--", zorder=1, gid="zero")
        for y, row in enumerate(rows):
            color = colors[row.label]
            if math.isfinite(row.ci_low) and math.isfinite(row.ci_high):
                ax.plot([row.ci_low, row.ci_high], [y, y], color=color, linewidth=2, solid_capstyle="butt",
                        zorder=2, gid=f"ci:{row.label}")
            ax.plot([row.diff], [y], linestyle="none", marker="o", markersize=8, color=color,
                    markeredgecolor=color, markerfacecolor=color if row.significant else "white",
                    markeredgewidth=1.5, zorder=3, gid=f"point:{row.label}")
        ax.set_yticks(range(len(rows)), [row.label for row in rows], fontsize="small")
        ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row on top
        ax.margins(x=0.1)
        ax.set_xlabel(f"difference to {baseline} (points, paired by seed)")
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(f"{_sentence(score)}: difference to {baseline}, mean over paired seeds with 95% CI\n"
                    "filled: significant after Holm correction, open: not significant")
    return figure


def differences_png(differences: Differences, baseline: str, score: str = "best test accuracy") -> bytes:
    """Forest plot per setting: each pooling's paired difference to the baseline with its 95% CI."""
    return _png(_differences_figure(differences, baseline, score))


class MarginBar(NamedTuple):
    """One row of ``non_inferiority_png``: a pooling against the best baseline on one task."""

    label: str  # the pooling
    versus: str  # the best baseline there
    diff: float  # mean paired difference (accuracy points)
    lower: float  # its one-sided 95% lower bound (nan with fewer than 2 paired seeds)
    decision: str  # "shown", "undecided" or "not" (poolbench.analysis.paired.Decision)


DECISION_COLORS = {"shown": "tab:green", "undecided": "tab:orange", "not": "tab:red"}


def _non_inferiority_figure(rows: dict[str, list[MarginBar]], margin: float) -> Figure:
    most = max((len(bars) for bars in rows.values()), default=1)
    figure, axes = _grid(max(1, len(rows)), height=max(2.2, 1.4 + 0.4 * most))
    for ax, (task, bars) in zip(axes, rows.items(), strict=False):
        ax.set_title(task)
        ax.axvline(0.0, color="gray", linewidth=1, linestyle="--", zorder=1, gid="zero")
        ax.axvline(-margin, color="black", linewidth=1.5, zorder=1, gid="margin")
        for y, bar in enumerate(bars):
            color = DECISION_COLORS.get(bar.decision, "gray")
            if math.isfinite(bar.lower):  # the one-sided interval: from the lower bound up
                ax.plot([bar.lower, max(bar.lower, bar.diff)], [y, y], color=color, linewidth=2, zorder=2,
                        gid=f"bound:{bar.label}")
                ax.plot([bar.lower], [y], marker="|", markersize=12, color=color, zorder=3)
            ax.plot([bar.diff], [y], linestyle="none", marker="o", markersize=8, color=color, zorder=3,
                    gid=f"point:{bar.label}")
        ax.set_yticks(range(len(bars)), [f"{bar.label} vs {bar.versus}" for bar in bars], fontsize="small")
        ax.set_ylim(len(bars) - 0.5, -0.5)
        ax.margins(x=0.1)
        ax.set_xlabel("difference to the best baseline (points, paired by seed)")
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(f"Not worse than the best baseline by more than the margin {margin:g} (solid line): mean "
                    "paired difference and its one-sided 95% lower bound\ngreen: shown, orange: undecided, red: worse")
    return figure


def non_inferiority_png(rows: dict[str, list[MarginBar]], margin: float) -> bytes:
    """Per diagnostic task, each pooling's difference to the best baseline with its one-sided 95%
    lower bound, and the non-inferiority margin drawn at -margin."""
    return _png(_non_inferiority_figure(rows, margin))


def fingerprint_png(points: list[tuple[str, float, float]]) -> bytes:
    """Each pooling as a point: mean side (x) against max side (y); top right is good at both."""
    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = figure.subplots()
    colors = _colors([name for name, _, _ in points])
    for name, mean_side, max_side in points:
        ax.scatter(mean_side, max_side, s=60, color=colors[name], edgecolor="black", linewidth=0.5, zorder=3)
        ax.annotate(name, (mean_side, max_side), textcoords="offset points", xytext=(6, 4), fontsize="small")
    values = [v for _, a, b in points for v in (a, b)]
    low, high = min(values), max(values)
    margin = max(2.0, 0.1 * (high - low))
    ax.set_xlim(low - margin, min(100.0, high + margin) + margin)
    ax.set_ylim(low - margin, min(100.0, high + margin) + margin)
    ax.plot([0, 100], [0, 100], color="gray", linewidth=0.5, linestyle=":")
    ax.set_xlabel("mean side: accuracy on tasks favouring mean-type pooling (%)")
    ax.set_ylabel("max side: accuracy on tasks favouring max-type pooling (%)")
    ax.grid(alpha=0.3)
    ax.set_title("Fingerprint on the diagnostic tasks")
    return _png(figure)
