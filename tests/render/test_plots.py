"""The report's plots: figure internals (dots, CI lines, bands) checked against numbers computed here.

Each ``*_png`` function renders a private ``_*_figure``; the tests read that figure's artists.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D

from poolbench.render import plots
from poolbench.render.plots import Bar, DifferenceBar

PNG = b"\x89PNG\r\n\x1a\n"
NAN = float("nan")

BARS = {
    "quick": [Bar("gap", 91.0, 89.8, 92.2, False, [90.0, 91.0, 92.0]),
              Bar("gem", 92.0, NAN, NAN, False, [92.0]),
              Bar("max", 90.0, 90, 90, False, [90.0, 90.0, 90.0, 90.0]),  # identical seeds: still 4 dots
              Bar("published gap", 93.5, 93.1, 93.9, True, [93.2, 93.8])],
    "resnet": [Bar("gap", 75.0, 73, 77, False, [70.5, 78.0]),  # a seed outside the CI: inside the y-limits
               Bar("published gap", 76.0, NAN, NAN, True, [])],  # a published mean without seeds
}

DIFFS = {
    "quick": [DifferenceBar("gem", 1.5, 0.5, 2.5, True),
              DifferenceBar("max", -0.8, -2.0, 0.4, False),
              DifferenceBar("lse", 0.3, NAN, NAN, False),  # one paired seed: a point without a CI
              DifferenceBar("mix", NAN, NAN, NAN, False)],  # no paired seed: no row
    "resnet": [DifferenceBar("gem", 2.0, 1.0, 3.0, True)],
}


def _dots(ax) -> np.ndarray:
    collections = [c for c in ax.collections if isinstance(c, PathCollection) and c.get_gid() == "seeds"]
    return np.concatenate([np.asarray(c.get_offsets()) for c in collections]) if collections else np.zeros((0, 2))


def _line(ax, gid: str) -> Line2D | None:
    found = [line for line in ax.get_lines() if line.get_gid() == gid]
    assert len(found) <= 1
    return found[0] if found else None


def _band(ax, pool: str) -> PolyCollection | None:
    found = [c for c in ax.collections if c.get_gid() == f"band:{pool}"]
    assert len(found) <= 1
    return found[0] if found else None


def _band_at(band: PolyCollection, x: float) -> tuple[float, float]:
    vertices = np.concatenate([path.vertices for path in band.get_paths()])
    ys = vertices[np.isclose(vertices[:, 0], x), 1]
    return float(ys.min()), float(ys.max())


# --- bars ---------------------------------------------------------------------------------------

def test_bars_png_is_a_png():
    assert plots.accuracy_bars_png(BARS).startswith(PNG)
    assert plots.accuracy_bars_png({}).startswith(PNG)


def test_bars_have_one_dot_per_seed_at_its_value_inside_the_y_limits():
    figure = plots._bars_figure(BARS)
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["quick", "resnet"]
    for ax, entries in zip(axes, BARS.values(), strict=True):
        dots = _dots(ax)
        expected = [v for bar in entries for v in bar.values]
        assert len(dots) == len(expected)
        assert dots[:, 1].tolist() == expected
        low, high = ax.get_ylim()
        assert (dots[:, 1] >= low).all() and (dots[:, 1] <= high).all()
        # each dot within +-0.25 of its own bar's centre (bar i is at x = i)
        centres = [i for i, bar in enumerate(entries) for _ in bar.values]
        assert np.all(np.abs(dots[:, 0] - centres) <= 0.25 + 1e-12)
        assert [t.get_text() for t in ax.get_xticklabels()] == [bar.label for bar in entries]
    # the seed at 70.5 is below the CI's lower end (73.0): the zoom still shows it
    assert axes[1].get_ylim()[0] <= 70.5


def test_identical_seeds_are_spread_apart_and_the_jitter_is_deterministic():
    first = _dots(plots._bars_figure(BARS).axes[0])
    second = _dots(plots._bars_figure(BARS).axes[0])
    assert np.array_equal(first, second)
    same = first[4:8]  # the four seeds of "max" (bar 2), all 90.0, after 3 of "gap" and 1 of "gem"
    assert (same[:, 1] == 90.0).all()
    assert len(set(same[:, 0].round(9))) == 4
    assert same[:, 0].min() == pytest.approx(2 - 0.25) and same[:, 0].max() == pytest.approx(2 + 0.25)
    assert first[3, 0] == pytest.approx(1.0)  # a single seed ("gem") sits on its bar's centre
    assert first[:3, 0].tolist() == pytest.approx([-0.25, 0.0, 0.25])


def test_bars_labels_use_the_score_and_published_bars_are_hatched_grey():
    figure = plots._bars_figure(BARS, score="final test accuracy")
    ax = figure.axes[0]
    assert ax.get_ylabel() == "final test accuracy (%)"
    assert "Final test accuracy" in figure.get_suptitle()
    patches = ax.patches
    assert [bool(p.get_hatch()) for p in patches] == [False, False, False, True]
    grey = patches[3].get_facecolor()
    assert grey[:3] == pytest.approx((0.827, 0.827, 0.827), abs=1e-2)
    assert patches[0].get_facecolor() != patches[1].get_facecolor()


# --- differences --------------------------------------------------------------------------------

def test_differences_png_is_a_png():
    assert plots.differences_png(DIFFS, "gap").startswith(PNG)


def test_differences_forest_plot_points_lines_and_markers():
    figure = plots._differences_figure(DIFFS, "gap")
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["quick", "resnet"]
    assert "Holm" in figure.get_suptitle() and "filled" in figure.get_suptitle()
    for ax, rows in zip(axes, DIFFS.values(), strict=True):
        assert ax.get_xlabel() == "difference to gap (points, paired by seed)"
        zero = _line(ax, "zero")
        assert zero is not None and list(zero.get_xdata()) == [0.0, 0.0]
        shown = [row for row in rows if not math.isnan(row.diff)]
        assert [t.get_text() for t in ax.get_yticklabels()] == [row.label for row in shown]
        for y, row in enumerate(shown):
            point = _line(ax, f"point:{row.label}")
            assert point is not None
            assert list(point.get_xdata()) == [row.diff] and list(point.get_ydata()) == [y]
            edge = point.get_markeredgecolor()
            face = point.get_markerfacecolor()
            if row.significant:
                assert face == edge
            else:
                assert face == "white" and edge != "white"
            ci = _line(ax, f"ci:{row.label}")
            if math.isnan(row.ci_low):
                assert ci is None
            else:
                assert ci is not None
                assert list(ci.get_xdata()) == [row.ci_low, row.ci_high] and list(ci.get_ydata()) == [y, y]
        assert _line(ax, "point:mix") is None
        low, high = ax.get_xlim()
        assert low < min(min(r.ci_low, r.diff, 0) for r in shown if not math.isnan(r.ci_low))
        assert high > max(max(r.ci_high, r.diff, 0) for r in shown if not math.isnan(r.ci_high))
    # the first row is on top
    assert axes[0].get_ylim()[0] > axes[0].get_ylim()[1]


def test_differences_colours_match_the_bars():
    bars = plots._bars_figure({"quick": [Bar(p, 90.0, 89, 91, False, [90.0]) for p in ("gap", "gem", "max")]})
    diffs = plots._differences_figure({"quick": [DifferenceBar(p, 1.0, 0.0, 2.0, True) for p in ("gem", "max")]},
                                      "gap")
    for i, pool in ((1, "gem"), (2, "max")):
        point = _line(diffs.axes[0], f"point:{pool}")
        assert point is not None
        assert tuple(bars.axes[0].patches[i].get_facecolor()[:3]) == pytest.approx(to_rgb(point.get_color()))


def test_no_comparison():
    figure = plots._differences_figure({}, "gap")
    assert any(t.get_text() == "no comparison" for ax in figure.axes for t in ax.texts)
    assert plots.differences_png({}, "gap").startswith(PNG)
    figure = plots._differences_figure({"quick": [DifferenceBar("gem", NAN, NAN, NAN, False)]}, "gap")
    assert any(t.get_text() == "no comparison" for t in figure.axes[0].texts)
    assert plots._png(figure).startswith(PNG)


# --- curves -------------------------------------------------------------------------------------

CURVES = {
    "quick": {"gap": [[50.0, 60.0, 70.0], [52.0, 63.0, 71.0, 99.0], [49.0, 61.0, 76.0]],  # 4th epoch: cut
              "gem": [[55.0, 65.0]]},
    "resnet": {"gap": [[10.0, 20.0], [12.0, 26.0]]},
}


def test_curves_png_is_a_png():
    assert plots.epoch_curves_png(CURVES, "test accuracy (%)", "Test accuracy per epoch").startswith(PNG)
    assert plots.epoch_curves_png({}, "loss", "Training loss").startswith(PNG)


def test_curves_mean_and_standard_error_band():
    figure = plots._curves_figure(CURVES, "test accuracy (%)", "Test accuracy per epoch")
    ax = figure.axes[0]
    assert ax.get_ylabel() == "test accuracy (%)" and ax.get_title() == "quick"
    assert figure.get_suptitle().startswith("Test accuracy per epoch")
    seeds = np.array([s[:3] for s in CURVES["quick"]["gap"]])
    mean = seeds.mean(axis=0)
    error = seeds.std(axis=0, ddof=1) / np.sqrt(3)
    line = _line(ax, "mean:gap")
    assert line is not None
    assert list(line.get_xdata()) == [1, 2, 3]  # truncated to the common epochs
    assert np.allclose(line.get_ydata(), mean)
    band = _band(ax, "gap")
    assert band is not None
    for epoch in (1, 2, 3):
        assert _band_at(band, epoch) == pytest.approx((mean[epoch - 1] - error[epoch - 1],
                                                       mean[epoch - 1] + error[epoch - 1]))
    assert _band_at(band, 3)[1] - _band_at(band, 3)[0] > 0
    assert band.get_paths()[0].vertices[:, 0].max() == 3
    # a single seed: its curve and no band
    gem = _line(ax, "mean:gem")
    assert gem is not None and list(gem.get_ydata()) == [55.0, 65.0]
    assert _band(ax, "gem") is None
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["gap (n=3)", "gem (n=1)"]


def test_curves_same_pool_same_colour_in_every_panel():
    figure = plots._curves_figure(CURVES, "acc", "Acc")
    first, second = _line(figure.axes[0], "mean:gap"), _line(figure.axes[1], "mean:gap")
    assert first is not None and second is not None and first.get_color() == second.get_color()


def test_curves_survive_nan_inf_and_log_scale_with_zeros():
    curves = {"quick": {"gap": [[2.3, float("inf"), 1.0, 0.0], [2.2, NAN, 0.8, 0.5], [2.4, 1.5, 0.9, 0.4]],
                        "gem": [[NAN, NAN], [float("inf"), -1.0]],  # nothing finite (and positive) at all
                        "max": [[]]},  # a seed without epochs
              "resnet": {"gap": [[0.0, 0.0], [0.0, 0.0]]}}  # nothing positive on a log axis
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from an all-nan epoch either
        for log_y in (False, True):
            figure = plots._curves_figure(curves, "training loss", "Training loss", log_y=log_y)
            assert plots._png(figure).startswith(PNG)
    figure = plots._curves_figure(curves, "training loss", "Training loss")
    ax = figure.axes[0]
    line = _line(ax, "mean:gap")
    assert line is not None
    # epoch 2: inf and nan are missing, the mean is that of the one finite value; no band there
    assert np.allclose(line.get_ydata(), [2.3, 1.5, 0.9, 0.3], equal_nan=True)
    band = _band(ax, "gap")
    assert band is not None
    assert not np.isclose(np.concatenate([p.vertices for p in band.get_paths()])[:, 0], 2).any()
    first = np.array([2.3, 2.2, 2.4])
    assert _band_at(band, 1) == pytest.approx((first.mean() - first.std(ddof=1) / math.sqrt(3),
                                               first.mean() + first.std(ddof=1) / math.sqrt(3)))
    log = plots._curves_figure(curves, "training loss", "Training loss", log_y=True)
    assert log.axes[0].get_yscale() == "log"
    logged = _line(log.axes[0], "mean:gap")
    assert logged is not None
    assert logged.get_ydata()[3] == pytest.approx(0.45)  # the zero loss is left out on a log axis
    low, high = _band_at(_band(log.axes[0], "gap"), 4)  # type: ignore[arg-type]
    assert low > 0 and high == pytest.approx(0.5)
