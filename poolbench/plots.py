"""Report plots as PNG bytes: test accuracy per epoch, and mean best accuracy with 95% CIs.

Figures are built with ``matplotlib.figure.Figure`` (the Agg canvas), never pyplot: no
display is needed and no global backend state is touched. Inputs are plain data.
"""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

# curves[setting][pool] = one test-accuracy-per-epoch list per completed seed
Curves = dict[str, dict[str, list[list[float]]]]
# bars[setting] = (label, mean, CI half-width or nan, is a published reference)
Bars = dict[str, list[tuple[str, float, float, bool]]]


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


def accuracy_curves_png(curves: Curves) -> bytes:
    """Test accuracy per epoch, one panel per setting: the mean over seeds and a min-max band."""
    figure, axes = _grid(max(1, len(curves)))
    colors = _colors([pool for by_pool in curves.values() for pool in by_pool])
    for ax, (setting, by_pool) in zip(axes, curves.items(), strict=False):
        for pool, seeds in by_pool.items():
            length = min(len(seed) for seed in seeds)  # the seeds' common epochs
            accs = np.array([seed[:length] for seed in seeds], dtype=float)
            epochs = np.arange(1, length + 1)
            ax.plot(epochs, accs.mean(axis=0), color=colors[pool], label=f"{pool} (n={len(seeds)})")
            if len(seeds) > 1:
                ax.fill_between(epochs, accs.min(axis=0), accs.max(axis=0), alpha=0.2, color=colors[pool])
        ax.set_title(setting)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    figure.suptitle("Test accuracy per epoch: mean over seeds, band from min to max")
    return _png(figure)


def accuracy_bars_png(bars: Bars) -> bytes:
    """Mean best test accuracy per pooling with 95% CIs; published references hatched."""
    figure, axes = _grid(max(1, len(bars)))
    colors = _colors([entry[0] for entries in bars.values() for entry in entries if not entry[3]])
    for ax, (setting, entries) in zip(axes, bars.items(), strict=False):
        labels = [label for label, *_ in entries]
        means = np.array([mean for _, mean, _, _ in entries], dtype=float)
        halves = np.array([half for _, _, half, _ in entries], dtype=float)
        positions = np.arange(len(entries))
        ax.bar(positions, means, yerr=halves, capsize=4, edgecolor="black", linewidth=0.5,
               color=["lightgray" if reference else colors[label] for label, *_, reference in entries],
               hatch=["//" if reference else "" for *_, reference in entries])
        low = np.nanmin(means - np.nan_to_num(halves))
        high = np.nanmax(means + np.nan_to_num(halves))
        margin = max(0.5, 0.15 * (high - low))
        ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))  # differences are small: zoom in
        ax.set_xticks(positions, labels, rotation=30, ha="right", fontsize="small")
        ax.set_title(setting)
        ax.set_ylabel("best test accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle("Best test accuracy: mean over seeds with 95% CI (hatched: published)")
    return _png(figure)


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
