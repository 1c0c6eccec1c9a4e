"""The no-trade-off check: non-inferiority with a margin against statsmodels, its decisions on
hand-made seeds (a pooling a few points worse with too few seeds is never "yes"), and its section
in a sweep's report."""

import math
import re

import numpy as np
import pytest
from run_folders import write_run
from statsmodels.stats.weightstats import DescrStatsW, ttost_paired

from poolbench.analysis import sweep_analysis
from poolbench.analysis.paired import Decision, holm_adjust, non_inferiority, paired
from poolbench.analysis.tradeoff import TaskCheck, TradeOffCheck
from poolbench.cli import main
from poolbench.render.report import tradeoff_cell


def scores(values) -> dict[int, float]:
    return {seed: float(v) for seed, v in enumerate(values, start=1)}


@pytest.mark.parametrize("seed, n, shift, spread, margin", [
    (0, 5, -0.3, 0.5, 1.0), (1, 20, -4.0, 7.0, 1.0), (2, 3, -2.0, 3.0, 1.0), (3, 30, 0.4, 2.0, 0.5),
    (4, 10, -1.5, 0.2, 1.0), (5, 8, 1.0, 4.0, 2.0),
])
def test_non_inferiority_matches_statsmodels_paired_tost_and_one_sided_bound(seed, n, shift, spread, margin):
    rng = np.random.default_rng(seed)
    best = 80 + rng.normal(0, 3, n)
    pool = best + shift + rng.normal(0, spread, n)
    check = non_inferiority(scores(pool), scores(best), margin)
    # The lower half of statsmodels' paired TOST is the one-sided test of H0: difference <= -margin.
    _, lower_test, _ = ttost_paired(pool, best, -margin, margin)
    assert check.p_value == pytest.approx(lower_test[1], abs=1e-9)
    low, high = DescrStatsW(pool - best).tconfint_mean(alpha=0.10)  # two 5% tails: the one-sided bounds
    assert (check.lower, check.upper) == (pytest.approx(low, abs=1e-9), pytest.approx(high, abs=1e-9))
    expected = (Decision.SHOWN if low > -margin else Decision.NOT if high < -margin else Decision.UNDECIDED)
    assert check.decision == expected
    assert (check.p_value < 0.05) == (check.decision == Decision.SHOWN)


def test_a_pooling_a_few_points_worse_with_too_few_seeds_is_undecided_with_the_seeds_that_would_tell():
    rng = np.random.default_rng(7)
    best = 70 + rng.normal(0, 4, 4)
    pool = best - 3.0 + rng.normal(0, 5, 4)  # 3 points worse, 4 noisy seeds
    check = non_inferiority(scores(pool), scores(best), 1.0)
    assert check.decision == Decision.UNDECIDED
    assert check.seeds_needed is not None and check.seeds_needed > 4
    # Absence of evidence is not equivalence: the old rule (paired p >= 0.05: "not worse") said yes.
    assert paired(scores(pool), scores(best)).p_value >= 0.05


def task(pool: list[float], best: list[float], worst: list[float], margin: float = 1.0) -> TaskCheck:
    ahead = paired(scores(pool), scores(worst))
    holm_adjust([ahead])
    return TaskCheck("t", "best", "worst", non_inferiority(scores(pool), scores(best), margin), ahead)


GOOD = task([90.1, 91.0, 89.9, 90.4, 90.2], [90.0, 91.1, 90.0, 90.3, 90.1], [50, 52, 49, 51, 50])


def test_ahead_of_the_worst_is_a_positive_holm_significant_difference():
    assert GOOD.ahead_decision == Decision.SHOWN
    behind = task([90, 91, 90], [90, 91, 90], [91, 92, 91.5])
    assert behind.ahead_decision == Decision.NOT
    barely = task([90, 91, 90], [90, 91, 90], [89, 92, 89.5])  # ahead on the mean, not significantly
    assert barely.ahead_decision == Decision.UNDECIDED and barely.seeds_needed()


def test_the_check_is_yes_only_when_every_condition_is_shown_and_says_why_not():
    assert TradeOffCheck("p", (GOOD, GOOD)).text() == "yes" and TradeOffCheck("p", (GOOD,)).holds
    worse = TaskCheck("count", "gem", "gmp", non_inferiority(scores([80, 81, 80.5]), scores([90, 91, 90.4]), 1.0),
                      paired(scores([80, 81, 80.5]), scores([81, 82, 81.4])))
    failed = TradeOffCheck("p", (GOOD, worse))
    assert not failed.holds and failed.decision == Decision.NOT
    assert failed.text() == "no: worse than the best on count; not ahead of the worst on count"
    assert "WORSE" in tradeoff_cell(worse) and "NOT AHEAD" in tradeoff_cell(worse)
    assert "vs margin -1" in tradeoff_cell(worse) and "vs gem" in tradeoff_cell(worse)
    assert TradeOffCheck("p", ()).text().startswith("no")


def test_an_unresolved_margin_makes_the_check_undecided_never_yes():
    rng = np.random.default_rng(3)
    best = 60 + rng.normal(0, 3, 5)
    noisy = task(list(best - 2 + rng.normal(0, 4, 5)), list(best), [20, 21, 19, 20, 22])
    assert noisy.not_worse.decision == Decision.UNDECIDED
    check = TradeOffCheck("p", (GOOD, noisy))
    assert not check.holds
    assert re.fullmatch(r"undecided: about \d+ seeds needed \(not worse than the best on t not resolved\)",
                        check.text())
    assert "?" in tradeoff_cell(noisy)


@pytest.fixture(scope="module")
def tradeoff_sweep(tmp_path_factory):
    """Two diagnostic tasks: the baselines trade off, `both` keeps up with the best on each, `half`
    does on one only, `close` is 2 points behind with noisy seeds; `gap_only` misses a task."""
    root = tmp_path_factory.mktemp("tradeoff")
    means = {"diag-majority": {"gap": 99, "gmp": 40, "gem": 98, "avgmax": 90, "both": 99, "half": 60, "close": 97},
             "diag-brightest": {"gap": 40, "gmp": 93, "gem": 80, "avgmax": 96, "both": 96, "half": 96.5,
                                "close": 94}}
    noise = (0.0, 0.5, -0.4, 0.3, -0.2)
    for setting, by_pool in means.items():
        for k, (pool, mean) in enumerate(by_pool.items()):
            shifted = noise[k % 5:] + noise[:k % 5]  # each pooling its own seed-to-seed noise
            scale = 6.0 if pool == "close" else 0.1  # `close` is 2 points behind with noisy seeds
            for seed, offset in zip((1, 2, 3, 4, 5), shifted, strict=True):
                write_run(root, setting, pool, seed, mean + scale * offset)
    write_run(root, "diag-majority", "gap_only", 1, 99.0)
    return root


def test_the_report_checks_every_new_pooling_against_the_best_and_worst_baseline(tradeoff_sweep):
    report = sweep_analysis.build_report(tradeoff_sweep)
    checks = {c.pool: c for c in report.tradeoffs}
    assert set(checks) == {"both", "half", "close"}
    assert checks["both"].holds
    assert {t.task: (t.best, t.worst) for t in checks["both"].tasks} == {
        "diag-majority": ("gap", "gmp"), "diag-brightest": ("avgmax", "gap")}
    assert checks["half"].text() == "no: worse than the best on diag-majority"
    assert checks["close"].text().startswith("undecided: about ")
    # The comparisons with the worst baseline are members of the report's Holm family.
    ahead = checks["both"].tasks[0].ahead
    assert ahead.family == report.family.size and not math.isnan(ahead.p_holm) and ahead.p_holm >= ahead.p_value


def test_the_margin_is_the_reports_and_is_printed(tradeoff_sweep, capsys):
    wide = {c.pool: c for c in sweep_analysis.build_report(tradeoff_sweep, margin=60.0).tradeoffs}
    assert wide["half"].tasks[0].not_worse.decision == Decision.SHOWN  # 39 points behind, within 60
    assert main(["report", str(tradeoff_sweep), "--margin", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "margin of 2.5 points" in out and "vs margin -2.5" in out


def test_the_report_has_a_no_trade_off_section_in_markdown_and_html(tradeoff_sweep, capsys, tmp_path):
    assert main(["report", str(tradeoff_sweep)]) == 0
    text = capsys.readouterr().out.split("## No trade-off", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| both +\| yes +\|", text)
    assert re.search(r"\| half +\| no: worse than the best on diag-majority +\|", text)
    assert re.search(r"\| close +\| undecided: about \d+ seeds needed", text)
    assert main(["report", str(tradeoff_sweep), "--output", str(tmp_path / "r.html")]) == 0
    assert "<h2>No trade-off</h2>" in (tmp_path / "r.html").read_text()


def test_no_section_without_all_four_baselines(tmp_path, capsys):
    for seed in (1, 2):
        for pool in ("gap", "gmp", "spectrum"):
            write_run(tmp_path, "diag-majority", pool, seed, 90.0 + seed)
    assert sweep_analysis.build_report(tmp_path).tradeoffs == []
    assert main(["report", str(tmp_path)]) == 0
    assert "## No trade-off" not in capsys.readouterr().out


def test_the_no_trade_off_plot_draws_each_bound_against_the_margin(tradeoff_sweep):
    from matplotlib.colors import to_rgb

    from poolbench.render import plots
    from poolbench.render import report as rep

    report = sweep_analysis.build_report(tradeoff_sweep, margin=1.5)
    data = rep.margin_data(report)
    assert set(data) == {"diag-majority", "diag-brightest"}
    checks = {c.pool: c for c in report.tradeoffs}
    assert "margin" in rep.plots(report)
    figure = plots._non_inferiority_figure(data, report.margin)
    for ax, (task, bars) in zip(figure.axes, data.items(), strict=True):
        assert ax.get_title() == task
        lines = {line.get_gid(): line for line in ax.get_lines()}
        assert list(lines["margin"].get_xdata()) == [-1.5, -1.5]
        for bar in bars:
            test = next(t for t in checks[bar.label].tasks if t.task == task).not_worse
            assert (bar.diff, bar.lower, bar.decision) == (test.difference.diff, test.lower, str(test.decision))
            assert list(lines[f"point:{bar.label}"].get_xdata()) == [bar.diff]
            assert lines[f"bound:{bar.label}"].get_xdata()[0] == bar.lower
            assert to_rgb(lines[f"point:{bar.label}"].get_color()) == to_rgb(plots.DECISION_COLORS[bar.decision])
    decisions = {bar.label: bar.decision for bar in data["diag-majority"]}
    assert decisions["both"] == "shown" and decisions["half"] == "not" and decisions["close"] == "undecided"
