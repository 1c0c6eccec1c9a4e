"""A report's comparisons recomputed independently with statsmodels and scipy: every difference's
95% CI and d_z, the Holm adjustment over the report's whole family, the verdict reading the
adjusted p; and the report's choices of score (--score), seeds (--seeds) and margin (--margin)."""

import csv
import io
import math
import re

import numpy as np
import pytest
from run_folders import QUICK, RESNET, SEEDS, VGG, run_report, write_run, write_sweep
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.weightstats import DescrStatsW

from poolbench.analysis import sweep_analysis
from poolbench.render import report as rep


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("family")
    write_sweep(root, {"quick": QUICK, "resnet56-cifar100": RESNET, "vgg16bn-cifar100": VGG})
    return root


def recompute(report: sweep_analysis.SweepAnalysis) -> dict[tuple[str, str, str], float]:
    """(setting, pooling, versus) -> raw p of every comparison, from the rows' scores (scipy)."""
    rows = {(r.setting, r.label): r for s in report.settings
            for r in report.rows[s] + report.references.get(s, [])}
    raw = {}
    for setting, first, second, _ in report.family.members():
        a, b = rows[setting, first], rows[setting, second]
        if a.published or b.published:
            p = stats.ttest_ind(list(a.values.values()), list(b.values.values()), equal_var=False).pvalue
        else:
            shared = sorted(set(a.values) & set(b.values))
            if len(shared) < 2:
                continue
            p = stats.ttest_rel([a.values[s] for s in shared], [b.values[s] for s in shared]).pvalue
        raw[setting, first, second] = float(p)
    return raw


def test_every_comparison_is_holm_adjusted_over_the_whole_family_as_statsmodels_does(sweep_dir):
    report = sweep_analysis.build_report(sweep_dir)
    raw = recompute(report)
    # the baseline column (5 poolings x 3 settings) and each verdict's comparison with the best baseline
    assert len(raw) == report.family.size >= 15
    adjusted = dict(zip(raw, multipletests(list(raw.values()), method="holm")[1], strict=True))
    for setting, first, second, d in report.family.members():
        if (setting, first, second) in raw:
            assert d.p_value == pytest.approx(raw[setting, first, second], rel=1e-9)
            assert d.p_holm == pytest.approx(adjusted[setting, first, second], rel=1e-9)
            assert d.family == report.family.size


def test_each_paired_difference_has_the_ci_and_d_z_statsmodels_gives(sweep_dir):
    report = sweep_analysis.build_report(sweep_dir)
    for setting, pools in (("quick", QUICK), ("vgg16bn-cifar100", VGG)):
        for r in report.rows[setting]:
            if r.pool == "gap":
                continue
            shared = [i for i, v in enumerate(pools[r.pool]) if v is not None]
            diffs = np.array([pools[r.pool][i] - pools["gap"][i] for i in shared])
            low, high = DescrStatsW(diffs).tconfint_mean(alpha=0.05)
            d = r.versus
            assert (d.ci_low, d.ci_high) == (pytest.approx(low), pytest.approx(high))
            assert d.effect == pytest.approx(diffs.mean() / diffs.std(ddof=1))


def test_the_tables_show_interval_effect_raw_and_adjusted_p_and_the_verdict_says_holm(sweep_dir):
    report = sweep_analysis.build_report(sweep_dir)
    text = rep.to_markdown(report)
    quick = text.split("## quick")[1].split("\n## ")[0]
    assert "Δ vs gap [95% CI]" in quick and "| d_z" in quick and "p Holm" in quick
    gem = report.rows["quick"][[r.pool for r in report.rows["quick"]].index("gem")].versus
    line = next(line for line in quick.splitlines() if line.startswith("| 4 ") and "gem" in line)
    assert f"{gem.diff:+.2f} [{gem.ci_low:+.2f}, {gem.ci_high:+.2f}]" in line and f"{gem.effect:.2f}" in line
    assert f"{report.family.size} comparisons" in text and "## Comparisons" in text
    members = text.split("## Comparisons")[1].split("\n## ")[0]
    assert sum(line.startswith("| ") for line in members.splitlines()) == 1 + len(report.family.members())
    allbetter = next(v for v in report.verdicts if v.pool == "allbetter")
    significant = sum(c.versus.p_holm < 0.05 for c in allbetter.comparisons)
    assert allbetter.text() == f"WINS, significant (Holm) on {significant}/3"
    records = list(csv.DictReader(io.StringIO(rep.to_csv(report))))
    gem_row = next(r for r in records if r["setting"] == "quick" and r["pool"] == "gem")
    assert float(gem_row["p_holm_vs_baseline"]) == pytest.approx(gem.p_holm, rel=1e-5)
    assert gem_row["holm_family_size"] == str(report.family.size) and gem_row["score"] == "best"


@pytest.fixture(scope="module")
def scored_dir(tmp_path_factory):
    """Runs whose best, last-epoch and validation-chosen scores differ."""
    root = tmp_path_factory.mktemp("scored")
    for k, pool in enumerate(("gap", "gem")):
        for seed in SEEDS:
            best = 80.0 + k + seed % 7
            write_run(root, "quick", pool, seed, None, epochs=3, status="completed",
                      accs=[best - 5, best, best - 2], val=best - 1)
    return root


@pytest.mark.parametrize("score, offset", [("best", 0.0), ("final", -2.0), ("val", -1.0)])
def test_score_picks_each_runs_best_final_or_validation_chosen_test_accuracy(scored_dir, score, offset, capsys):
    report = sweep_analysis.build_report(scored_dir, score=score)
    gap = report.rows["quick"][[r.pool for r in report.rows["quick"]].index("gap")]
    assert gap.values == {seed: 80.0 + seed % 7 + offset for seed in SEEDS}
    assert run_report(scored_dir, "--score", score) == 0
    out = capsys.readouterr().out
    assert f"Score: {sweep_analysis.SCORES[score]} (%) (`--score {score}`)" in out
    assert run_report(scored_dir, "--score", score, "--format", "csv") == 0
    records = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["score"] for r in records if r["source"] == "measured"} == {score}


def test_score_val_without_held_out_images_is_one_line_naming_the_fix(tmp_path, capsys):
    write_run(tmp_path, "quick", "gap", 1, 90.0, epochs=3)
    assert run_report(tmp_path, "--score", "val") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--val-split N" in err and "--score best|final" in err


def test_seeds_restricts_the_report_and_says_so(sweep_dir, capsys):
    report = sweep_analysis.build_report(sweep_dir, seeds=[42, 456])
    gem = report.rows["quick"][[r.pool for r in report.rows["quick"]].index("gem")]
    assert sorted(gem.values) == [42, 456] and gem.versus.n == 2
    assert any("only the runs of seeds 42, 456" in note for note in report.notes)
    assert run_report(sweep_dir, "--seeds", "42,456") == 0
    assert "only the runs of seeds 42, 456 are in this report" in capsys.readouterr().out


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "1,2"], "no run in"), (["--seeds", "4x"], "comma-separated integers"),
    (["--margin", "-1"], "--margin takes"), (["--margin", "nan"], "--margin takes"),
    (["--score", "median"], "is not a score")])
def test_bad_report_options_are_one_line_and_exit_2(sweep_dir, capsys, extra, message):
    assert run_report(sweep_dir, *extra) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err


def test_a_nan_p_value_never_counts_in_the_family(tmp_path):
    for seed in (1, 2, 3):
        write_run(tmp_path, "quick", "gap", seed, 90.0 + seed, epochs=3)
        write_run(tmp_path, "quick", "same", seed, 90.0 + seed, epochs=3)  # identical: p = 1, counted
    write_run(tmp_path, "quick", "single", 1, 95.0, epochs=3)  # one seed: no p, not counted
    report = sweep_analysis.build_report(tmp_path)
    by_pool = {r.pool: r.versus for r in report.rows["quick"]}
    assert math.isnan(by_pool["single"].p_value) and by_pool["same"].p_value == 1.0
    assert report.family.size == sum(not math.isnan(d.p_value) for *_, d in report.family.members())
    assert not re.search(r"\bsingle\b.*\*", rep.to_markdown(report))


def test_an_accuracy_interval_never_reaches_past_0_or_100():
    # three seeds near the ceiling: Student's t alone reads [80.09, 107.91]
    near_top = sweep_analysis.describe([89.0, 99.0, 99.99])
    t_half = stats.t.ppf(0.975, 2) * np.std([89.0, 99.0, 99.99], ddof=1) / math.sqrt(3)
    assert near_top.mean + t_half > 100 and near_top.ci_high == 100.0
    assert near_top.ci_low == pytest.approx(near_top.mean - t_half)
    near_floor = sweep_analysis.describe([0.5, 9.0, 0.2])
    assert near_floor.ci_low == 0.0 and near_floor.ci_high < 100
    inside = sweep_analysis.describe([70.0, 71.0, 72.5])
    low, high = DescrStatsW(np.array([70.0, 71.0, 72.5])).tconfint_mean(alpha=0.05)
    assert (inside.ci_low, inside.ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))


def test_the_report_says_which_interval_it_uses(sweep_dir):
    assert sweep_analysis.CI_METHOD in rep.to_markdown(sweep_analysis.build_report(sweep_dir))
