"""Reports and status of sweep folders written by a fixture in the real run-folder format.

Statistics are checked against scipy called here on the fixture's numbers, and the
reference rows against means computed here from the shipped JSON file.
"""

import argparse
import base64
import csv
import html
import io
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from run_folders import QUICK, RESNET, SEEDS, VGG, run_report, write_json, write_run, write_sweep
from scipy import stats

import poolbench
from poolbench.analysis import sweep_analysis
from poolbench.cli import status_verb as status_cli
from poolbench.render import report as rep
from poolbench.render.markdown import setting_title
from poolbench.storage.rundir import RunLock


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    """Read only by the tests: written once."""
    root = tmp_path_factory.mktemp("sweep")
    write_sweep(root, {"quick": QUICK, "resnet56-cifar100": RESNET, "vgg16bn-cifar100": VGG})
    return root


def published(setting: str) -> dict[str, list[float]]:
    """pool (leaderboard name) -> accuracies of the current runs, read straight from the JSON file."""
    data = json.loads((Path(poolbench.__file__).parent / "reference" / sweep_analysis.REFERENCE_FILE).read_text())
    out: dict[str, list[float]] = {}
    for run in data["runs"]:
        out.setdefault(run["method"], []).append(run["best_test_acc"][setting])
    return out


def row(report, setting, pool, published_row=False):
    rows = report.references[setting] if published_row else report.rows[setting]
    return next(r for r in rows if r.pool == pool)


def test_statistics_match_scipy(sweep_dir):
    report = sweep_analysis.build_report(sweep_dir)
    gem, gap = np.array(QUICK["gem"]), np.array(QUICK["gap"])
    st = row(report, "quick", "gem").stats
    assert st.n == 3
    assert st.mean == pytest.approx(gem.mean())
    assert st.std == pytest.approx(gem.std(ddof=1))
    low, high = stats.t.interval(0.95, 2, loc=gem.mean(), scale=stats.sem(gem))
    assert (st.ci_low, st.ci_high) == (pytest.approx(low), pytest.approx(high))
    d = row(report, "quick", "gem").versus
    assert d.diff == pytest.approx((gem - gap).mean())
    test = stats.ttest_rel(gem, gap)
    assert d.p_value == pytest.approx(test.pvalue)
    assert (d.ci_low, d.ci_high) == tuple(pytest.approx(x) for x in test.confidence_interval(0.95))
    assert d.effect == pytest.approx((gem - gap).mean() / (gem - gap).std(ddof=1))
    assert d.n == 3


def test_diverged_runs_are_counted_and_not_averaged(sweep_dir):
    report = sweep_analysis.build_report(sweep_dir)
    mine = row(report, "quick", "mine")
    assert mine.stats.n == 2 and mine.stats.mean == pytest.approx(93.0)
    assert mine.diverged == [123]
    # paired with gap over the two seeds both completed only
    assert mine.versus.n == 2 and mine.versus.diff == pytest.approx(((92.0 - 90.0) + (94.0 - 92.5)) / 2)
    line = next(line for line in rep.to_markdown(report).splitlines() if "| mine" in line and "2/3" in line)
    assert "1 diverged (seed 123)" in line


def test_failed_and_unfinished_runs_are_counted(tmp_path):
    write_run(tmp_path, "quick", "gap", 42, 90.0, epochs=3)
    write_run(tmp_path, "quick", "gap", 123, 80.0, epochs=3, status="failed")
    write_run(tmp_path, "quick", "gap", 456, 85.0, epochs=3, finished=False)  # interrupted
    gap = row(sweep_analysis.build_report(tmp_path), "quick", "gap")
    assert (gap.stats.n, gap.failed, gap.unfinished, gap.runs) == (1, [123], [456], 3)
    assert gap.stats.mean == 90.0 and math.isnan(gap.stats.std)


def test_verdict_needs_every_setting_and_no_diverged_run(sweep_dir):
    verdicts = {v.pool: v for v in sweep_analysis.build_report(sweep_dir).verdicts}
    assert verdicts["allbetter"].wins
    assert not verdicts["better2of3"].wins  # behind on resnet56-cifar100
    assert [c.beats for c in verdicts["better2of3"].comparisons] == [True, False, True]
    assert not verdicts["mine"].wins  # diverged on quick, though its mean is ahead there
    assert "diverged" in verdicts["mine"].comparisons[0].problem
    assert not verdicts["gap"].wins


def test_verdict_compares_with_best_baseline_and_published_runs(sweep_dir):
    verdict = next(v for v in sweep_analysis.build_report(sweep_dir).verdicts if v.pool == "allbetter")
    quick, resnet, vgg = verdict.comparisons
    assert quick.best.pool == "gem" and not quick.best.published  # best measured mean on quick
    assert quick.versus.p_value == pytest.approx(stats.ttest_rel(QUICK["allbetter"], QUICK["gem"]).pvalue)
    # on resnet56-cifar100 the best baseline mean is the published GeM (72.29), above the measured ones
    reference = published("resnet56-cifar100")
    assert resnet.best.published and resnet.best.pool == "gem"
    assert resnet.best.stats.mean == pytest.approx(np.mean(reference["gem"]))
    assert resnet.lead == pytest.approx(np.mean(RESNET["allbetter"]) - np.mean(reference["gem"]))
    assert resnet.versus.diff == pytest.approx(resnet.lead) and resnet.versus.test == "Welch t"
    assert resnet.versus.p_value == pytest.approx(
        stats.ttest_ind(RESNET["allbetter"], reference["gem"], equal_var=False).pvalue)
    assert resnet.versus.p_holm >= resnet.versus.p_value
    assert resnet.significant == (resnet.versus.p_holm < 0.05)


def test_reference_rows_carry_the_published_means(sweep_dir):
    report = sweep_analysis.build_report(sweep_dir)
    assert "quick" not in report.references
    text = rep.to_markdown(report)
    for setting in ("resnet56-cifar100", "vgg16bn-cifar100"):
        for method, pool in (("avg_max", "avgmax"), ("gem", "gem"), ("global_max", "gmp")):
            mean, std = np.mean(published(setting)[method]), np.std(published(setting)[method], ddof=1)
            st = row(report, setting, pool, published_row=True).stats
            assert (st.mean, st.std) == (pytest.approx(mean), pytest.approx(std))
            section = text.split(f"## {setting}")[1].split("##")[0]
            line = next(line for line in section.splitlines()
                        if f"| {pool}: published (MLS-Bench leaderboard)" in line)
            assert f"{mean:.2f} ± {std:.2f}" in line


def test_published_proposals_are_reference_rows_with_their_seed42_scores_never_baselines(sweep_dir):
    data = json.loads((Path(poolbench.__file__).parent / "reference" / sweep_analysis.PROPOSALS_FILE).read_text())
    signed = next(p for p in data["proposals"] if p["name"].startswith("signed GeM"))
    report = sweep_analysis.build_report(sweep_dir)
    text = rep.to_markdown(report)
    vgg = text.split("## vgg16bn-cifar100")[1].split("##")[0]
    std_residual = next(line for line in vgg.splitlines() if "| std_residual: published proposal" in line)
    assert "73.22" in std_residual
    # the published VGG score of signed_gem is a diverged run scored at chance: listed, not averaged
    assert signed["published_seed42"][1] == 1.0
    line = next(line for line in vgg.splitlines() if "| signed_gem: published proposal" in line)
    assert "1 diverged (seed 42)" in line and "1.00" not in line
    # the proposals' global max (74.39 on VGG) is above every baseline mean, yet never the bar to beat
    for verdict in report.verdicts:
        for comparison in verdict.comparisons:
            assert comparison.best is None or not comparison.best.proposal


def test_published_rows_stay_out_of_the_verdict_when_the_protocol_differs(tmp_path):
    write_sweep(tmp_path, {"resnet56-cifar100": {"gap": RESNET["gap"], "mine": RESNET["mine"]}})
    for path in tmp_path.glob("resnet56-cifar100/*/*/config.json"):  # as if run with --epochs 3
        data = json.loads(path.read_text())
        data["config"]["protocol"]["epochs"] = 3
        path.write_text(json.dumps(data))
    report = sweep_analysis.build_report(tmp_path)
    assert report.references["resnet56-cifar100"]  # still shown
    assert not report.reference_in_verdict["resnet56-cifar100"]
    assert any("reference only" in note for note in report.notes)
    mine = next(v for v in report.verdicts if v.pool == "mine").comparisons[0]
    assert mine.best.pool == "gap" and not mine.best.published


def test_markdown_has_the_final_metrics_lines_in_the_original_format(sweep_dir):
    text = rep.to_markdown(sweep_analysis.build_report(sweep_dir))
    lines = [line for line in text.splitlines() if line.startswith("Final metrics")]
    assert len(lines) == 3 * len(QUICK)
    for line in lines:
        assert re.fullmatch(r"Final metrics \(([\w-]+)\): test_acc_\1=\d+\.\d\d", line), line
    assert f"Final metrics (quick): test_acc_quick={np.mean(QUICK['gem']):.2f}" in lines
    assert "Final metrics (quick): test_acc_quick=93.00" in lines  # mine: 2 completed seeds
    assert f"Final metrics (vgg16bn-cifar100): test_acc_vgg16bn-cifar100={np.mean(VGG['mine']):.2f}" in lines


def test_csv_parses_with_the_expected_columns(sweep_dir):
    records = list(csv.DictReader(io.StringIO(rep.to_csv(sweep_analysis.build_report(sweep_dir)))))
    assert list(records[0]) == rep.CSV_COLUMNS
    measured = [r for r in records if r["source"] == "measured"]
    assert len(measured) == 3 * len(QUICK)
    assert len([r for r in records if r["source"] == "published"]) == 2 * 3
    assert len([r for r in records if r["source"] == "published proposal"]) == 2 * 5
    mine = next(r for r in measured if r["setting"] == "quick" and r["pool"] == "mine")
    assert (mine["n"], mine["runs"], mine["diverged"]) == ("2", "3", "1")
    assert mine["beats_best_baseline"] == "False"
    gem = next(r for r in measured if r["setting"] == "quick" and r["pool"] == "gem")
    p_value = stats.ttest_rel(QUICK["gem"], QUICK["gap"]).pvalue
    assert float(gem["p_vs_baseline"]) == pytest.approx(p_value, rel=1e-5)
    assert float(gem["std"]) == pytest.approx(np.std(QUICK["gem"], ddof=1), abs=1e-4)
    assert gem["rank"] == "4"  # by mean: allbetter 94.0, mine 93.0, better2of3 93.0, gem 92.03
    assert {r["wins"] for r in measured if r["pool"] == "allbetter"} == {"True"}



def test_markdown_and_html_write_the_same_sections_in_the_order_of_SECTIONS(sweep_dir, monkeypatch):
    report = sweep_analysis.build_report(sweep_dir)
    monkeypatch.setattr(rep, "plots", lambda report: {})  # the plots have their own tests
    md = re.findall(r"^## (.+)$", rep.to_markdown(report), flags=re.M)
    assert [html.escape(title) for title in md] == re.findall(r"<h2>(.+?)</h2>", rep.to_html(report))
    expected = [setting_title(s, report) for s in report.settings] + ["Seed planning", "Verdict", "Comparisons",
                                                                         "Final metrics"]
    assert md == expected  # no diagnostic task in this sweep: no fingerprint, no trade-off check


def test_a_section_added_to_SECTIONS_is_written_by_every_renderer(sweep_dir, monkeypatch):
    """The recipe of CONTRIBUTING: one entry in SECTIONS, and Markdown and HTML both show it in its place."""
    report = sweep_analysis.build_report(sweep_dir)
    extra = rep.Section("Seeds per pooling", intro=lambda r, _: ["How many seeds each pooling <completed>."],
                        body=lambda r, _: rep.Table(["pooling", "seeds"], [["gap", "3"]]))
    monkeypatch.setattr(rep, "SECTIONS", [*rep.SECTIONS[:-1], extra, rep.SECTIONS[-1]])
    monkeypatch.setattr(rep, "plots", lambda report: {})
    md, page = rep.to_markdown(report), rep.to_html(report)
    assert "## Seeds per pooling\n\nHow many seeds each pooling <completed>.\n\n| pooling | seeds |" in md
    assert md.index("## Seeds per pooling") < md.index("## Final metrics")
    assert ("<h2>Seeds per pooling</h2><p>How many seeds each pooling &lt;completed&gt;.</p>\n"
            "<table><tr><th>pooling</th><th>seeds</th></tr><tr><td>gap</td><td>3</td></tr></table>") in page
    assert page.index("Seeds per pooling") < page.index("<h2>Final metrics")
    assert rep.to_csv(report) == rep.to_csv(sweep_analysis.build_report(sweep_dir))  # no CSV rows of its own


def test_html_is_one_self_contained_file_with_plots(sweep_dir, tmp_path):
    out = tmp_path / "report.html"
    assert run_report(sweep_dir, "--output", str(out)) == 0
    text = out.read_text()
    images = re.findall(r"<img [^>]*src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)
    assert len(images) == 5  # test accuracy, bars, differences, train loss, lr
    for title in ("Train loss per epoch", "Learning rate per epoch", "Paired difference to the baseline"):
        assert f"<h2>{title}" in text
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)
    assert "src='http" not in text and "<link" not in text and "<script" not in text
    assert "Final metrics (quick): test_acc_quick=" in text
    assert "published (MLS-Bench leaderboard)" in text


def test_markdown_file_gets_its_plots_beside_it(sweep_dir, tmp_path):
    out = tmp_path / "out" / "report.md"
    out.parent.mkdir()
    assert run_report(sweep_dir, "--output", str(out)) == 0
    names = sorted(p.name for p in out.parent.iterdir())
    assert names == ["report-bars.png", "report-curves.png", "report-differences.png", "report-loss-curves.png",
                     "report-lr-curves.png", "report.md"]
    assert "](report-curves.png)" in out.read_text()


def test_report_to_stdout_defaults_to_markdown(sweep_dir, capsys):
    assert run_report(sweep_dir, "--format", "csv", "--baseline", "gem") == 0
    assert capsys.readouterr().out.startswith("setting,pool,source")
    assert run_report(sweep_dir) == 0
    assert capsys.readouterr().out.startswith("# poolbench report")


@pytest.mark.parametrize("case, message", [
    ("missing", "not found"), ("empty", "no runs"), ("baseline", "baseline 'nope' has no runs"),
    ("output", "does not exist")])
def test_user_errors_are_one_line_and_exit_2(sweep_dir, tmp_path, capsys, case, message):
    (tmp_path / "empty").mkdir()
    folder = {"missing": tmp_path / "missing", "empty": tmp_path / "empty"}.get(case, sweep_dir)
    extra = {"baseline": ["--baseline", "nope"], "output": ["--output", str(tmp_path / "no" / "r.md")]}
    assert run_report(folder, *extra.get(case, [])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err
    assert not (tmp_path / "no").exists()


def status(folder, *extra):
    parser = argparse.ArgumentParser()
    status_cli.add_arguments(parser)
    return status_cli.main(parser.parse_args([str(folder), *extra]))


def test_status_shows_the_grid_and_counts(tmp_path, capsys):
    write_json(tmp_path / "sweep.json", {"pools": {"gap": "gap", "gem": "gem"}, "settings": ["quick"],
                                         "seeds": [42, 123], "overrides": {"epochs": 3}, "options": {}})
    write_run(tmp_path, "quick", "gap", 42, 90.0, epochs=3)
    write_run(tmp_path, "quick", "gap", 123, None, epochs=3)  # diverged
    interrupted = write_run(tmp_path, "quick", "gem", 42, 88.0, epochs=3, finished=False)
    running = write_run(tmp_path, "quick", "gem", 123, 85.0, epochs=3, finished=False)
    with RunLock(running):  # a live process holds it: running
        assert status(tmp_path) == 0
        text = capsys.readouterr().out
        assert status(tmp_path, "--json") == 0
        data = json.loads(capsys.readouterr().out)
    counts = "4 runs: 1 completed, 1 running, 1 diverged, 0 failed, 0 refused, 1 interrupted, 0 pending"
    assert f"{tmp_path}: {counts}" in text
    gap_line = next(line for line in text.splitlines() if line.startswith("| gap"))
    assert "completed 90.00" in gap_line and "diverged (epoch 3)" in gap_line
    gem_line = next(line for line in text.splitlines() if line.startswith("| gem"))
    assert "interrupted 88.00 (3/3)" in gem_line and "running 85.00 (3/3)" in gem_line
    assert data["counts"] == {"completed": 1, "running": 1, "diverged": 1, "failed": 0, "refused": 0,
                              "interrupted": 1, "pending": 0, "unreadable": 0}
    assert {(r["pool"], r["seed"]): r["status"] for r in data["runs"]}[("gem", 42)] == "interrupted"
    assert interrupted.exists()


def test_status_reads_files_only_so_it_answers_without_torch_or_the_statistics(tmp_path):
    """`poolbench status` is what a researcher polls during a sweep: it must not pay torch's import."""
    write_json(tmp_path / "sweep.json", {"pools": {"gap": "gap"}, "settings": ["quick"], "seeds": [42],
                                         "overrides": {}, "options": {}})
    write_run(tmp_path, "quick", "gap", 42, 90.0, epochs=3)
    code = ("import sys; from poolbench.cli import main; code = main(['status', sys.argv[1]]); "
            "heavy = sorted({'torch', 'numpy', 'scipy', 'matplotlib', 'submitit'} & set(sys.modules)); "
            "print('imported:', heavy, file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "completed 90.00" in done.stdout
    assert "imported: []" in done.stderr


def test_status_lists_grid_cells_not_started_as_pending(tmp_path, capsys):
    write_json(tmp_path / "sweep.json", {"pools": {"gap": "gap", "mine": "pools/mine.py"},
                                         "settings": ["quick"], "seeds": [42, 123], "overrides": {},
                                         "options": {}})
    write_run(tmp_path, "quick", "gap", 42, 90.0, epochs=3)
    assert status(tmp_path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["pending"] == 3 and data["counts"]["completed"] == 1
    report = sweep_analysis.build_report(tmp_path)
    assert row(report, "quick", "mine").unfinished == [42, 123]


def test_refused_poolings_and_runs_ended_without_a_result_are_listed_with_their_reason(tmp_path, capsys):
    write_json(tmp_path / "sweep.json", {"pools": {"gap": "gap", "bad": "pools/bad.py", "quits": "pools/quits.py"},
                                         "settings": ["quick"], "seeds": [42, 123], "overrides": {},
                                         "options": {}})
    write_json(tmp_path / "refused.json", {"bad": {"spec": "pools/bad.py", "message": "pooling 'pools/bad.py' "
                                                   "fails the contract check (FAIL shape: 2C)", "failures": []}})
    write_run(tmp_path, "quick", "gap", 42, 90.0, epochs=3)
    write_run(tmp_path, "quick", "gap", 123, 91.0, epochs=3)
    write_run(tmp_path, "quick", "bad", 42, 50.0, epochs=3, finished=False)  # interrupted before it was refused
    ended = write_run(tmp_path, "quick", "quits", 42, 70.0, epochs=3, finished=False)
    write_json(ended / "no_result.json", {"exit_code": 0, "message": "the run's process ended without a "
                                                                     "result (exit code 0): os._exit"})
    assert status(tmp_path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    states = {(r["pool"], r["seed"]): r["status"] for r in data["runs"]}
    assert states == {("gap", 42): "completed", ("gap", 123): "completed", ("bad", 42): "refused",
                      ("bad", 123): "refused", ("quits", 42): "failed", ("quits", 123): "pending"}
    assert status(tmp_path) == 0
    text = capsys.readouterr().out
    assert "bad: 2 runs refused: pooling 'pools/bad.py' fails the contract check (FAIL shape: 2C)" in text
    assert "quits: 1 run failed: the run's process ended without a result (exit code 0): os._exit" in text
    report = sweep_analysis.build_report(tmp_path)
    bad, quits = row(report, "quick", "bad"), row(report, "quick", "quits")
    assert (bad.refused, bad.failed, bad.unfinished, bad.runs) == ([42, 123], [], [], 2)
    assert (quits.failed, quits.unfinished) == ([42], [123])
    assert any("fails the contract check" in note for note in report.notes)
    markdown = rep.to_markdown(report)
    assert "2 refused (seed 42, 123)" in markdown and "1 failed (seed 42)" in markdown
    records = list(csv.DictReader(io.StringIO(rep.to_csv(report))))
    assert next(r for r in records if r["pool"] == "bad")["refused"] == "2"


def test_status_of_a_missing_folder_is_a_user_error(tmp_path, capsys):
    assert status(tmp_path / "nope") == 2
    assert capsys.readouterr().err.startswith("error: folder")


@pytest.mark.parametrize("impossible", [float("nan"), float("inf"), "91.5", -3.0, 250.0])
def test_a_result_json_with_an_impossible_score_is_unreadable_in_status_and_report(tmp_path, capsys, impossible):
    write_json(tmp_path / "sweep.json", {"pools": {"gap": "gap"}, "settings": ["quick"], "seeds": list(SEEDS),
                                         "overrides": {"epochs": 3}, "options": {}})
    for seed, best in zip(SEEDS, (90.0, 88.0, 86.0), strict=True):
        write_run(tmp_path, "quick", "gap", seed, best, epochs=3)
    damaged = tmp_path / "quick" / "gap" / "seed123" / "result.json"
    write_json(damaged, {**json.loads(damaged.read_text()), "best_test_acc": impossible})
    assert status(tmp_path, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["completed"] == 2 and data["counts"]["unreadable"] == 1
    assert {r["seed"]: r["status"] for r in data["runs"]}[123] == "unreadable"
    report = sweep_analysis.build_report(tmp_path)
    row = next(row for row in report.rows["quick"] if row.pool == "gap")
    assert row.values == {42: 90.0, 456: 86.0} and row.unreadable == [123]  # never a result, never dropped
    assert any(str(damaged) in note for note in report.notes), report.notes
