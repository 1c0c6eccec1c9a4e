"""Sweep files (`sweep --config grid.yaml`) and protocol variants (lists over protocol fields, one
folder level per variant, the report's side-by-side view).

The fast tests start a stand-in for `poolbench run` that writes a run's files in milliseconds, with
a score that depends on the pooling and the learning rate it is given (so that the order of the
poolings reverses between lr 0.1 and lr 0.05); one end-to-end test trains for real on `quick`.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from poolbench.analysis.variants import build_variants_report
from poolbench.cli import main
from poolbench.cli import sweep_verb as sweep_cli
from poolbench.execution import executors as ex
from poolbench.execution import sweep_runner as sw
from poolbench.render.report import variants_to_csv, variants_to_html, variants_to_markdown
from poolbench.storage.rundir import read_config, read_jsonl
from poolbench.storage.sweepdir import load_sweep

#: A stand-in for `poolbench run`: its score is SCORES[pool] at lr 0.1 and 100 - SCORES[pool] otherwise
#: (gmp 5 points more on the max-favouring task).
FAKE_RUN = r'''
import argparse, json, sys
from pathlib import Path
from poolbench.storage.rundir import RunLock, read_jsonl, write_json, write_jsonl

SCORES = {"gap": 60.0, "gmp": 70.0, "avgmax": 80.0, "gem": 90.0}
parser = argparse.ArgumentParser()
for flag in ("--fake-log", "--setting", "--pool", "--output-dir"):
    parser.add_argument(flag)
parser.add_argument("--seed", type=int)
parser.add_argument("--epochs", type=int, default=2)
parser.add_argument("--lr", type=float, default=0.1)
args, _ = parser.parse_known_args()
out = Path(args.output_dir)
lock = RunLock(out)
lock.acquire()
with open(args.fake_log, "a") as log:
    log.write(json.dumps({"run": str(out), "lr": args.lr, "epochs": args.epochs, "argv": sys.argv[1:]}) + "\n")
if (out / "result.json").exists():
    sys.exit(0)
acc = SCORES[args.pool] if args.lr == 0.1 else 100.0 - SCORES[args.pool]
acc += args.seed % 3 / 10 + 5.0 * (args.pool == "gmp" and args.setting == "diag-brightest")  # gmp leans max
records = [{"epoch": e, "train_loss": 0.5, "train_acc": 90.0, "test_loss": 0.6, "test_acc": acc, "lr": args.lr,
            "epoch_time_s": 0.01} for e in range(1, args.epochs + 1)]
write_jsonl(out / "metrics.jsonl", records)
write_json(out / "result.json", {"status": "completed", "best_test_acc": acc, "epochs_completed": args.epochs,
                                 "epochs": args.epochs, "seed": args.seed, "error": None, "diverged_at": None})
print(f"TEST_METRICS: test_acc={acc:.2f}")
'''


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """Sweeps start the stand-in instead of `python -m poolbench run`; the log of its trainings."""
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    log = tmp_path / "trainings.jsonl"
    real = sw.run_arguments
    monkeypatch.setattr(ex, "run_arguments", lambda sweep, run: [str(script), "--fake-log", str(log),
                                                                 *real(sweep, run)[3:]])
    return log


def sweep(*argv) -> int:
    parser = argparse.ArgumentParser()
    sweep_cli.add_arguments(parser)
    return sweep_cli.main(parser.parse_args([str(a) for a in argv]))


GRID = """\
# two learning rates side by side
pools: [gap, gmp, "gem(p=3)", "gem(p=4, learnable=False)"]
settings: [quick]
suite: diagnostics
seeds: [1, 2]
epochs: 1
lr: [0.1, 0.05]
hflip: false
data_root: data
jobs: 2
"""
FLAGS = ["--pools", "gap,gmp,gem(p=3),gem(p=4, learnable=False)", "--settings", "quick", "--suite", "diagnostics",
         "--seeds", "1,2", "--epochs", "1", "--lr", "0.1,0.05", "--no-hflip", "--data-root", "data", "--jobs", "2"]
TOML_GRID = """\
pools = ["gap", "gmp", "gem(p=3)", "gem(p=4, learnable=False)"]
settings = "quick"
suite = ["diagnostics"]
seeds = [1, 2]
epochs = 1
lr = [0.1, 0.05]
hflip = false
data_root = "data"
jobs = 2
"""


@pytest.mark.parametrize("name, text", [("grid.yaml", GRID), ("grid.toml", TOML_GRID)])
def test_a_sweep_file_and_the_same_flags_write_the_same_sweep_json(tmp_path, monkeypatch, capsys, name, text):
    monkeypatch.chdir(tmp_path)  # relative paths in a file are read from the current folder, as flags are
    Path(name).write_text(text)
    assert sweep("--config", name, "--out", "from-file", "--dry-run") == 0
    from_file = capsys.readouterr()
    assert sweep(*FLAGS, "--out", "from-flags", "--dry-run") == 0
    from_flags = capsys.readouterr()
    stored = json.loads(Path("from-file/sweep.json").read_text())
    assert stored == json.loads(Path("from-flags/sweep.json").read_text())
    assert stored["variants"] == {"lr": [0.1, 0.05]} and stored["overrides"] == {"epochs": 1, "hflip": False}
    assert stored["options"]["data_root"] == str(tmp_path / "data")
    assert from_file.out == from_flags.out  # the same plan, run by run
    assert "2 protocol variants (lr0.1, lr0.05)" in from_file.err
    assert "lr0.05/diag-count/gem-p4-learnableFalse/seed2" in from_file.out.replace(" ", "")


def test_the_command_line_wins_over_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("grid.yaml").write_text(GRID + "out: from-file\n")
    assert sweep("--config", "grid.yaml", "--seeds", "7", "--lr", "0.01", "--settings", "quick", "--dry-run") == 0
    stored = json.loads(Path("from-file/sweep.json").read_text())
    assert stored["seeds"] == [7] and stored["overrides"]["lr"] == 0.01 and "variants" not in stored
    assert sweep("other", "--config", "grid.yaml", "--dry-run") == 0  # the folder argument wins over `out`
    assert Path("other/sweep.json").exists()


@pytest.mark.parametrize("text, words", [
    ("pools: [gap]\nlrr: 0.1\n", ["unknown key 'lrr'", "the keys allowed are out, pools, settings", "lr,", "jobs"]),
    ("pools: [gap]\nepochs: ten\n", ["epochs: 'ten' is not an integer or a list of integers"]),
    ("pools: [gap]\nepochs: '5'\n", ["epochs: '5' is not an integer", "(write it unquoted)"]),
    ("pools: [gap]\nlr: [0.1, 1e-3]\n", ["lr: '1e-3' is not a number or a list of numbers", "write 1.0e-3"]),
    ("pools: [gap]\nseeds: [1, x]\n", ["seeds: 'x' is not a list of integers or an integer"]),
    ("pools: [gap]\njobs: true\n", ["jobs: True is not an integer"]),
    ("pools: [gap]\namp: fp8\n", ["amp: 'fp8' is not one of none, bf16, fp16"]),
    ("pools: gap\ndevice: [cpu]\n", ["device: ['cpu'] is not a text"]),
    ("[gap, gmp]\n", ["holds ['gap', 'gmp'], not a mapping"]),
    ("pools: [gap\n", ["is not valid YAML"]),
    ("pools: [gap]\nlr: [0.1, -1.0]\n", ["lr must be a finite number > 0"]),
    ("pools: [gap]\nepochs: []\n", ["epochs is given no value"]),
    ("pools: [gapp]\n", ["unknown pooling 'gapp'"]),
])
def test_a_wrong_key_or_value_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, text, words):
    grid = tmp_path / "grid.yaml"
    grid.write_text(text)
    assert sweep("--config", grid, "--out", tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:"), err
    for word in words:
        assert word in err, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, words", [("grid.ini", "name it *.yaml or *.toml"), ("none.yaml", "not found")])
def test_a_sweep_file_that_cannot_be_read_is_one_line(tmp_path, capsys, name, words):
    if name != "none.yaml":
        (tmp_path / name).write_text("pools = gap\n")
    assert sweep("--config", tmp_path / name, "--out", tmp_path / "runs") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err


# --- Protocol variants ----------------------------------------------------------------------------

def test_each_variant_runs_in_its_own_folder_with_its_values(fake_run, tmp_path):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap,gmp", "--seeds", "1", "--epochs", "2,3", "--lr", "0.1,0.05", "--out", out) == 0
    trained = {Path(t["run"]).as_posix(): (t["epochs"], t["lr"]) for t in read_jsonl(fake_run)}
    assert len(trained) == 2 * 2 * 2
    assert trained["epochs3-lr0.05/quick/gmp/seed1"] == (3, 0.05)
    assert trained["epochs2-lr0.1/quick/gap/seed1"] == (2, 0.1)
    assert not (out / "quick").exists()  # no run outside a variant's folder


def test_one_protocol_keeps_the_layout_without_a_variant_level(fake_run, tmp_path):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1", "--lr", "0.05,0.05", "--out", out) == 0  # one value, twice
    assert [Path(t["run"]).as_posix() for t in read_jsonl(fake_run)] == ["quick/gap/seed1"]
    assert "variants" not in json.loads((out / "sweep.json").read_text())


def test_a_variant_sweep_resumes_and_grows_by_new_values_only(fake_run, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap,gmp", "--seeds", "1", "--lr", "0.1,0.05", "--out", out) == 0
    (out / "lr0.05/quick/gmp/seed1/result.json").unlink()  # as if it was interrupted before its result
    capsys.readouterr()
    assert sweep(out) == 0  # the stored grid: only the unfinished run trains again
    assert "3 skipped (already done)" in capsys.readouterr().err
    assert [Path(t["run"]).as_posix() for t in read_jsonl(fake_run)][4:] == ["lr0.05/quick/gmp/seed1"]
    assert sweep(out, "--lr", "0.01") == 0  # a new value of the varied field: a new variant
    assert load_sweep(out).variants == {"lr": [0.1, 0.05, 0.01]}
    assert sorted(Path(t["run"]).as_posix() for t in read_jsonl(fake_run)[5:]) == ["lr0.01/quick/gap/seed1",
                                                                                   "lr0.01/quick/gmp/seed1"]
    stored = (out / "sweep.json").read_text()
    capsys.readouterr()
    assert sweep(out, "--epochs", "1,2") == 2  # a new varied field would file the runs elsewhere
    assert "varies lr; varying epochs too" in capsys.readouterr().err
    assert sweep(out, "--epochs", "5") == 2  # the shared protocol: as in any sweep
    assert "would mix incomparable runs" in capsys.readouterr().err
    assert (out / "sweep.json").read_text() == stored


def test_variants_in_a_sweep_of_one_protocol_are_refused(fake_run, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1", "--out", out) == 0
    stored = (out / "sweep.json").read_text()
    assert sweep(out, "--lr", "0.1,0.05") == 2
    assert "holds runs of one protocol; varying lr too" in capsys.readouterr().err
    assert (out / "sweep.json").read_text() == stored


@pytest.fixture
def diagnostic_variants(fake_run, tmp_path):
    """A variant sweep over two learning rates of the diagnostic suite, run by the stand-in."""
    out = tmp_path / "diag"
    assert sweep("--pools", "gap,gmp,avgmax,gem", "--suite", "diagnostics", "--seeds", "1,2", "--lr", "0.1,0.05",
                 "--out", out, "--jobs", "2") == 0
    return out


def test_the_report_compares_within_each_variant_and_shows_the_variants_side_by_side(diagnostic_variants):
    vr = build_variants_report(diagnostic_variants)
    assert vr.variants == ["lr0.1", "lr0.05"]
    across = {a.setting: a for a in vr.settings}
    count = across["diag-count"]
    assert count.ranks["gem"] == {"lr0.1": 1, "lr0.05": 4} and count.moves("gem") == 3
    assert [(a.first, a.second, round(a.tau, 6), a.n) for a in count.agreements] == [("lr0.1", "lr0.05", -1.0, 4)]
    for variant, report in vr.reports.items():  # each variant is its own report: its own runs, its own Holm family
        assert report.root == diagnostic_variants / variant
        assert {len(row.values) for rows in report.rows.values() for row in rows} == {2}
        assert all(setting == s for s, _, _, _ in report.family.members() for setting in [s])
        assert report.fingerprint is not None
    lean = {v: {row.pool: row.lean for row in r.fingerprint.rows} for v, r in vr.reports.items()}
    assert lean["lr0.1"]["gap"] == 0 and lean["lr0.05"]["gmp"] == 1

    text = variants_to_markdown(vr)
    assert "## Protocol variants side by side" in text and "### Fingerprint per variant" in text
    assert re.search(r"\| diag-count +\| lr0\.1 vs lr0\.05 \| -1\.00 +\| 4 ", text)
    assert re.search(r"\| gem +\| 90\.\d+ \(2\) +\| 10\.\d+ \(2\) +\| 1 +\| 4 +\| 3 +\|", text)
    assert "## Variant lr0.05 (lr 0.05)" in text and "### diag-count" in text
    assert "\n# gem\n" in text  # the final metrics' lines keep their form inside the code block
    page = variants_to_html(vr)
    assert "<h2>Variant lr0.1 (lr 0.1)</h2>" in page and "<h3>Fingerprint</h3>" in page and "<h1>" in page
    rows = variants_to_csv(vr).splitlines()
    assert rows[0].startswith("variant,setting,pool,")
    assert sum(row.startswith("lr0.05,diag-count,") for row in rows) == 4


def test_status_and_report_commands_read_a_variant_sweep(diagnostic_variants, tmp_path, capsys):
    capsys.readouterr()
    assert main(["status", str(diagnostic_variants)]) == 0
    out = capsys.readouterr().out
    assert "48 runs: 48 completed" in out and "lr0.05: diag-count" in out
    assert main(["status", str(diagnostic_variants), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)["runs"]
    assert {r["variant"] for r in records} == {"lr0.1", "lr0.05"}
    report = tmp_path / "report.md"
    assert main(["report", str(diagnostic_variants), "--output", str(report)]) == 0
    assert "Kendall tau" in report.read_text()
    assert (tmp_path / "report-lr0.05-bars.png").exists()
    assert main(["report", str(diagnostic_variants / "lr0.05")]) == 0  # one variant's folder alone
    assert "diag-count" in capsys.readouterr().out


@pytest.mark.slow
def test_end_to_end_a_yaml_sweep_over_two_learning_rates_reported_side_by_side(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"out: {tmp_path / 'runs'}\npools: [gap, gmp]\nsettings: quick\nseeds: [1]\nepochs: 1\n"
                    "lr: [0.05, 0.01]\njobs: 2\nimage_size: 16\n")
    done = subprocess.run([sys.executable, "-m", "poolbench", "sweep", "--config", str(grid)], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    runs = tmp_path / "runs"
    results = sorted(p.relative_to(runs).as_posix() for p in runs.glob("*/*/*/*/result.json"))
    assert results == [f"{lr}/quick/{pool}/seed1/result.json" for lr in ("lr0.01", "lr0.05") for pool in ("gap", "gmp")]
    protocol = read_config(tmp_path / "runs/lr0.01/quick/gmp/seed1/config.json").protocol
    assert (protocol.lr, protocol.epochs) == (0.01, 1)
    report = subprocess.run([sys.executable, "-m", "poolbench", "report", str(tmp_path / "runs")],
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "| pooling | lr0.05 mean (n) | lr0.01 mean (n) | rank lr0.05 | rank lr0.01 | moves |" in report.stdout
    assert "Protocol: 1 epochs, batch 32, lr 0.01" in report.stdout
