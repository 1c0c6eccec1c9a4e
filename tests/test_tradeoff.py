"""The no-trade-off check: its rule on hand-made comparisons, and its section in a sweep's report."""

import math
import re

import pytest
from test_report import write_run

from poolbench import analysis
from poolbench.cli import main
from poolbench.report import tradeoff_cell
from poolbench.tradeoff import TaskCheck, TradeOffCheck, Versus


def task(best_diff: float, best_p: float, worst_diff: float, worst_p: float, n: int = 5) -> TaskCheck:
    return TaskCheck("t", Versus("best", best_diff, best_p, n), Versus("worst", worst_diff, worst_p, n))


@pytest.mark.parametrize("best_diff, best_p, not_worse", [
    (+0.3, 0.01, True),   # ahead of the best, even significantly
    (-0.5, 0.20, True),   # behind, not significantly
    (-0.5, 0.05, True),   # p = alpha is not below it
    (-0.5, 0.04, False),  # behind, significantly
    (-0.5, math.nan, False),  # the same deficit on every seed: no t statistic, still significant
])
def test_not_worse_than_the_best_means_ahead_or_not_significantly_behind(best_diff, best_p, not_worse):
    assert task(best_diff, best_p, 50.0, 0.001).not_worse is not_worse


@pytest.mark.parametrize("worst_diff, worst_p, n, better", [
    (+40.0, 0.001, 5, True),
    (+40.0, 0.30, 5, False),   # ahead, not significantly
    (-1.0, 0.001, 5, False),   # significantly behind the worst
    (+40.0, math.nan, 1, False),  # one seed: nothing is significant
])
def test_better_than_the_worst_means_significantly_ahead(worst_diff, worst_p, n, better):
    assert task(0.0, 0.5, worst_diff, worst_p, n).better is better


def test_the_check_holds_only_when_every_task_passes_both_conditions_and_says_why_not():
    good, worse = task(-0.2, 0.5, 40.0, 0.001), TaskCheck("count", Versus("gem", -3.0, 0.01, 5),
                                                          Versus("gmp", 1.0, 0.6, 5))
    assert TradeOffCheck("p", (good, good)).holds and TradeOffCheck("p", (good,)).text() == "yes"
    failed = TradeOffCheck("p", (good, worse))
    assert not failed.holds
    assert failed.text() == "no: worse than the best on count; not better than the worst on count"
    assert not TradeOffCheck("p", ()).holds
    assert "WORSE NOT BETTER" in tradeoff_cell(worse) and "-3.00 vs gem (p=0.010)" in tradeoff_cell(worse)


@pytest.fixture(scope="module")
def tradeoff_sweep(tmp_path_factory):
    """Two diagnostic tasks: the baselines trade off, `both` keeps up with the best on each, `half`
    does on one only; `gap_only` misses a task and is left out."""
    root = tmp_path_factory.mktemp("tradeoff")
    means = {"diag-majority": {"gap": 99, "gmp": 40, "gem": 98, "avgmax": 90, "both": 99, "half": 60},
             "diag-brightest": {"gap": 40, "gmp": 93, "gem": 80, "avgmax": 96, "both": 96, "half": 96.5}}
    noise = (0.0, 0.5, -0.4, 0.3, -0.2)
    for setting, by_pool in means.items():
        for k, (pool, mean) in enumerate(by_pool.items()):
            shifted = noise[k:] + noise[:k]  # each pooling its own seed-to-seed noise
            for seed, offset in zip((1, 2, 3, 4, 5), shifted, strict=True):
                write_run(root, setting, pool, seed, mean + offset)
    write_run(root, "diag-majority", "gap_only", 1, 99.0)
    return root


def test_the_report_checks_every_new_pooling_against_the_best_and_worst_baseline(tradeoff_sweep):
    checks = {c.pool: c for c in analysis.build_report(tradeoff_sweep).tradeoffs}
    assert set(checks) == {"both", "half"}
    assert checks["both"].holds
    assert {t.task: (t.best.pool, t.worst.pool) for t in checks["both"].tasks} == {
        "diag-majority": ("gap", "gmp"), "diag-brightest": ("avgmax", "gap")}
    assert not checks["half"].holds and checks["half"].text() == "no: worse than the best on diag-majority"


def test_the_report_has_a_no_trade_off_section_in_markdown_and_html(tradeoff_sweep, capsys, tmp_path):
    assert main(["report", str(tradeoff_sweep)]) == 0
    text = capsys.readouterr().out.split("## No trade-off", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"\| both +\| yes +\|", text)
    assert re.search(r"\| half +\| no: worse than the best on diag-majority +\|", text)
    assert main(["report", str(tradeoff_sweep), "--output", str(tmp_path / "r.html")]) == 0
    assert "<h2>No trade-off</h2>" in (tmp_path / "r.html").read_text()


def test_no_section_without_all_four_baselines(tmp_path, capsys):
    for seed in (1, 2):
        for pool in ("gap", "gmp", "spectrum"):
            write_run(tmp_path, "diag-majority", pool, seed, 90.0 + seed)
    assert analysis.build_report(tmp_path).tradeoffs == []
    assert main(["report", str(tmp_path)]) == 0
    assert "## No trade-off" not in capsys.readouterr().out
