"""``poolbench report DIR1 DIR2 ...``: one report of several sweep folders and exported tables.

The grid is trained for real once, as two halves in two folders (seed 1 on "a laptop", seed 2 on
"a GPU box": docs/running.md's example); the same grid in one folder is those run folders copied
together and swept again (every run is skipped as done), so a merged report can be compared with
the single folder's.
Duplicates, conflicts and protocols are checked on hand-made folders in the real format.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from run_folders import run_report, write_run

from poolbench.analysis.sweep_analysis import SweepAnalysis, build_report
from poolbench.cli import main
from poolbench.render.merge import gather
from poolbench.render.report import to_csv, to_html, to_markdown

GRID = ("--settings", "quick", "--pools", "gap,gem", "--epochs", "1")  # as docs/running.md's example


@pytest.fixture(scope="module")
def grid(merge_example, tmp_path_factory) -> dict[str, Path]:
    """docs/running.md's example (conftest.merge_example): folders "a" (seed 1) and "b" (seed 2) swept
    for real and "b.csv", b exported; here "b.parquet" too, and "whole": both seeds in one folder,
    made of their run folders and swept again (every run skipped as done)."""
    root = tmp_path_factory.mktemp("grid")
    a, b = merge_example / "runs" / "laptop", merge_example / "runs" / "gpu-box"
    whole = root / "whole"
    for half in (a, b):
        shutil.copytree(half / "quick", whole / "quick", dirs_exist_ok=True)
    results = {p: p.stat().st_mtime_ns for p in whole.glob("quick/*/seed*/result.json")}
    assert len(results) == 4
    assert main(["sweep", *GRID, "--seeds", "1,2", "--out", str(whole)]) == 0
    assert results == {p: p.stat().st_mtime_ns for p in results}  # nothing trained again: the same runs
    assert main(["export", str(b), "--output", str(root / "b.parquet")]) == 0
    return {"a": a, "b": b, "whole": whole, "b.csv": merge_example / "gpu-box.csv", "b.parquet": root / "b.parquet"}


def _body(report: SweepAnalysis) -> tuple[str, str, str, list[str]]:
    """What a merged report must share with the single folder's: its Markdown and HTML after the notes,
    its CSV, and its notes but the merge's own."""
    return (to_markdown(report).split("\n## ", 1)[1], to_html(report).split("<h2>", 1)[1], to_csv(report),
            [note for note in report.notes if not note.startswith("one report of ")])


def _one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    assert all(word in err[0] for word in words), err[0]
    return err[0]


@pytest.mark.slow
@pytest.mark.xdist_group("merge_example")  # conftest.merge_example: one worker trains it, once
@pytest.mark.parametrize("options", [{}, {"margin": 0.25, "score": "final", "baseline": "gem"}, {"seeds": [2]}])
def test_two_halves_report_as_the_same_grid_in_one_folder(grid, options):
    whole = build_report(grid["whole"], **options)
    merged = build_report(gather([grid["a"], grid["b"]]), **options)
    assert _body(merged) == _body(whole)  # the tables, plots (HTML), verdict and notes
    assert to_markdown(merged).splitlines()[2] == to_markdown(whole).splitlines()[2]  # "4 runs: 4 completed, ..."
    assert merged.curves == whole.curves and merged.curves["test_acc"]["quick"]["gap"]
    assert [r.values for r in merged.rows["quick"]] == [r.values for r in whole.rows["quick"]]
    assert merged.notes[0] == f"one report of 2 inputs: {grid['a']} (2 runs); {grid['b']} (2 runs)"
    assert to_markdown(merged).startswith(f"# poolbench report: {grid['a']} + {grid['b']}\n")


@pytest.mark.slow
@pytest.mark.xdist_group("merge_example")  # conftest.merge_example: one worker trains it, once
@pytest.mark.parametrize("table", ["b.csv", "b.parquet"])
def test_an_exported_table_joins_a_folder_as_its_runs_would(grid, table, tmp_path, capsys):
    merged = build_report(gather([grid["a"], grid[table]]))
    whole = build_report(grid["whole"])
    assert _body(merged) == _body(whole)
    assert merged.curves == whole.curves  # from the epochs table beside it
    out = tmp_path / "report.csv"
    assert run_report(grid["a"], str(grid[table]), "--output", str(out), "--margin", "0.5") == 0
    assert out.read_text() == to_csv(build_report(grid["whole"], margin=0.5))


@pytest.mark.slow
@pytest.mark.xdist_group("merge_example")  # conftest.merge_example: one worker trains it, once
def test_runs_found_twice_with_the_same_result_are_counted_once(grid, capsys):
    merged = build_report(gather([grid["a"], grid["whole"], grid["b.csv"]]))
    assert to_csv(merged) == to_csv(build_report(grid["whole"]))
    assert "4 runs found in more than one input with the same result are counted once" in merged.notes[0]
    assert all(row.runs == 2 for row in merged.rows["quick"])  # two seeds each, not four
    assert run_report(grid["whole"], str(grid["a"]), "--format", "md") == 0
    out = capsys.readouterr().out
    assert "2 runs found in more than one input" in out


def test_one_input_reports_as_before(tmp_path, capsys):
    for seed, best in ((1, 90.0), (2, 91.0)):
        write_run(tmp_path / "x", "quick", "gap", seed, best, epochs=3)
    write_run(tmp_path / "x", "quick", "gap", 3, 92.0, epochs=2)  # one folder mixing protocols: a note, as before
    assert run_report(tmp_path / "x") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# poolbench report: {tmp_path / 'x'}\n") and "one report of" not in out
    assert "runs with different protocols are in one table" in out


def test_a_run_with_two_different_results_is_one_line_naming_both(tmp_path, capsys):
    write_run(tmp_path / "x", "quick", "gap", 1, 90.0, epochs=3)
    write_run(tmp_path / "y", "quick", "gap", 1, 90.5, epochs=3)  # the same run, measured differently
    write_run(tmp_path / "y", "quick", "gap", 2, 91.0, epochs=3)
    out = tmp_path / "report.md"
    assert run_report(tmp_path / "x", str(tmp_path / "y"), "--output", str(out)) == 2
    _one_line_error(capsys, "quick/gap/seed1 has two different results", str(tmp_path / "x" / "quick/gap/seed1"),
                    str(tmp_path / "y" / "quick/gap/seed1"), "best_test_acc 90.0 vs 90.5")
    assert not out.exists()
    assert main(["export", str(tmp_path / "y"), "--output", str(tmp_path / "y.csv")]) == 0
    capsys.readouterr()
    assert run_report(tmp_path / "x", str(tmp_path / "y.csv")) == 2
    _one_line_error(capsys, "two different results", str(tmp_path / "y.csv" / "quick/gap/seed1"))


def test_a_completed_and_a_diverged_copy_differ_and_an_unfinished_copy_gives_way(tmp_path, capsys):
    write_run(tmp_path / "x", "quick", "gap", 1, None, epochs=3)  # diverged here
    write_run(tmp_path / "y", "quick", "gap", 1, 90.0, epochs=3)
    assert run_report(tmp_path / "x", str(tmp_path / "y")) == 2
    _one_line_error(capsys, "status diverged vs completed")
    write_run(tmp_path / "u", "quick", "gap", 1, 88.0, epochs=3, finished=False)  # interrupted there
    write_run(tmp_path / "u", "quick", "gap", 2, 91.0, epochs=3)
    merged = build_report(gather([tmp_path / "u", tmp_path / "y"]))
    (gap,) = merged.rows["quick"]
    assert gap.values == {1: 90.0, 2: 91.0} and not gap.unfinished
    assert "1 runs not finished in one input are taken from another" in merged.notes[0]


def test_runs_of_different_protocols_are_never_pooled(tmp_path, capsys):
    write_run(tmp_path / "x", "quick", "gap", 1, 90.0, epochs=3)
    write_run(tmp_path / "y", "quick", "gap", 2, 91.0, epochs=2)
    write_run(tmp_path / "y", "quick", "gap", 1, 89.0, epochs=2)  # the same cell, another protocol: another run
    assert run_report(tmp_path / "x", str(tmp_path / "y"), "--format", "csv") == 2
    _one_line_error(capsys, "quick:", str(tmp_path / "x" / "quick/gap/seed1"), str(tmp_path / "y" / "quick/gap/seed1"),
                    "epochs 3 vs 2", "never pools them")
    assert capsys.readouterr().out == ""
    write_run(tmp_path / "z", "quick", "gem", 1, 92.0, epochs=2)  # other settings or one protocol: reported
    merged = build_report(gather([tmp_path / "y", tmp_path / "z"]))
    assert [row.pool for row in merged.rows["quick"]] == ["gem", "gap"] and "2 epochs" in merged.protocols["quick"]


def test_inputs_that_cannot_be_merged_are_one_line_and_exit_2(tmp_path, capsys):
    write_run(tmp_path / "x", "quick", "gap", 1, 90.0, epochs=3)
    assert main(["export", str(tmp_path / "x"), "--output", str(tmp_path / "x.csv")]) == 0
    capsys.readouterr()
    table = (tmp_path / "x.csv").read_bytes()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    for name, old, new in (("bad.csv", ",completed,", ",finished,"), ("acc.csv", ",completed,90.0,", ",completed,250,"),
                           ("seed.csv", ",gap,1,", ",gap,one,")):
        text = (tmp_path / "x.csv").read_text()
        assert old in text
        (tmp_path / name).write_text(text.replace(old, new))
    (tmp_path / "bad.parquet").write_text("not parquet")
    cases = [([tmp_path / "x", tmp_path / "x"], "is given twice"),
             ([tmp_path / "x", tmp_path / "notes.txt"], "neither a sweep folder nor a table"),
             ([tmp_path / "x", tmp_path / "other.csv"], "is not a table of `poolbench export` (no column"),
             ([tmp_path / "x", tmp_path / "bad.csv"], "row 1: status 'finished' is none of"),
             ([tmp_path / "x", tmp_path / "acc.csv"], "row 1: best_test_acc 250.0 is no accuracy from 0 to 100"),
             ([tmp_path / "x", tmp_path / "seed.csv"], "row 1: seed 'one' is no int"),
             ([tmp_path / "x", tmp_path / "bad.parquet"], "is not a Parquet table"),
             ([tmp_path / "x", tmp_path / "nowhere"], "not found"),
             ([tmp_path / "x", tmp_path / "x.csv", "--output", tmp_path / "x.csv"], "is an input of the report")]
    for argv, words in cases:
        assert run_report(*map(str, argv)) == 2
        _one_line_error(capsys, words)
    assert (tmp_path / "x.csv").read_bytes() == table  # the input the report would have replaced is whole


def test_one_exported_table_alone_is_a_report_of_its_runs(tmp_path):
    for seed, best in ((1, 90.0), (2, 91.0)):
        write_run(tmp_path / "x", "quick", "gap", seed, best, epochs=3)
        write_run(tmp_path / "x", "quick", "gem", seed, best + 1.0, epochs=3)
    assert main(["export", str(tmp_path / "x"), "--output", str(tmp_path / "x.csv")]) == 0
    assert to_csv(build_report(gather([tmp_path / "x.csv"]))) == to_csv(build_report(tmp_path / "x"))
    (tmp_path / "x-epochs.csv").unlink()  # the runs table alone: the same tables, no learning curves
    alone = build_report(gather([tmp_path / "x.csv"]))
    assert to_csv(alone) == to_csv(build_report(tmp_path / "x")) and not alone.curves
    assert "has no epochs table beside it" in alone.notes[0]
