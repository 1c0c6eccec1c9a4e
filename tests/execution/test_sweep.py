"""Sweeps: grid expansion, skipping and resuming, locking between sweeps, executors.

The fast tests replace `poolbench run` by a stand-in script that keeps the run contract
(lock, exit codes 0/1/3/75, metrics.jsonl, result.json, TEST_METRICS) in milliseconds; the
end-to-end tests (marked slow) train for real on the embedded quick setting.
"""

import argparse
import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from poolbench.cli import sweep_verb as sweep_cli
from poolbench.core.settings import get_setting
from poolbench.execution import executors as ex
from poolbench.execution import sweep_runner as sw
from poolbench.storage import rundir
from poolbench.storage.rundir import read_jsonl

FAKE_RUN = r'''
"""Stand-in for `poolbench run`: the same files, exit codes and stdout, no training."""
import argparse, json, os, sys, time
from pathlib import Path
from poolbench.storage.rundir import RunLock, RunLockedError, read_json, read_jsonl, write_json, write_jsonl

parser = argparse.ArgumentParser()
for flag in ("--fake-log", "--setting", "--pool", "--output-dir", "--data-root", "--device"):
    parser.add_argument(flag)
parser.add_argument("--seed", type=int)
parser.add_argument("--epochs", type=int, default=2)
args, _ = parser.parse_known_args()
out = Path(args.output_dir)
try:
    lock = RunLock(out)
    lock.acquire()
except RunLockedError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(75)
result_path = out / "result.json"
if result_path.exists() and read_json(result_path)["status"] in ("completed", "diverged"):
    result = read_json(result_path)
    print(f"TEST_METRICS: test_acc={result['best_test_acc']:.2f}")
    sys.exit(0 if result["status"] == "completed" else 3)
records = read_jsonl(out / "metrics.jsonl")  # resume after the last finished epoch
with open(args.fake_log, "a") as log:
    log.write(json.dumps({"run": str(out), "pool": args.pool, "resumed_at": len(records),
                          "omp": os.environ.get("OMP_NUM_THREADS"),
                          "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "cwd": os.getcwd()}) + "\n")
pool = out.parent.name
status, code, error = "completed", 0, None
for epoch in range(len(records) + 1, args.epochs + 1):
    time.sleep(float(os.environ.get("FAKE_RUN_SLEEP", "0")))
    if pool == "crashy" and epoch == 2 and not (out / "crashed").exists():  # killed once, mid-run
        (out / "crashed").touch()
        os.kill(os.getpid(), 9)
    if pool == "full" and epoch == 2:  # the disk fills up: `poolbench run` exits 74, its checkpoint kept
        print(f"error: cannot write {out}/checkpoint.pt: No space left on device", file=sys.stderr)
        sys.exit(74)
    if pool == "quits" and epoch == 2:  # a pooling calling os._exit(0): no result, exit 0
        os._exit(0)
    if pool == "boom":
        status, code, error = "failed", 1, "RuntimeError: boom"
        print("error: run failed: RuntimeError: boom", file=sys.stderr)
        break
    if pool == "nan" and epoch == 2:
        status, code, error = "diverged", 3, "non-finite loss"
        break
    acc = 80.0 + epoch + args.seed % 7
    records.append({"epoch": epoch, "train_loss": 0.5, "train_acc": 90.0, "test_loss": 0.6,
                    "test_acc": acc, "lr": 0.01, "epoch_time_s": 0.01})
    write_jsonl(out / "metrics.jsonl", records)
    print(f"TRAIN_METRICS: epoch={epoch} train_loss=0.5000 train_acc=90.00 test_loss=0.6000 "
          f"test_acc={acc:.2f} lr=0.010000", flush=True)
best = max((r["test_acc"] for r in records), default=None)
write_json(result_path, {"status": status, "best_test_acc": best, "epochs_completed": len(records),
                         "epochs": args.epochs, "seed": args.seed, "error": error,
                         "diverged_at": {"epoch": 2, "step": 1} if status == "diverged" else None})
if status == "completed":
    print(f"TEST_METRICS: test_acc={best:.2f}")
sys.exit(code)
'''

POOL_FILE = '''
import torch
from torch import nn


class CustomPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
'''


def fake_arguments(script: Path, log: Path):
    """`run_arguments` that start the stand-in (logging each training to ``log``)."""
    real = sw.run_arguments
    return lambda sweep, run: [str(script), "--fake-log", str(log), *real(sweep, run)[3:]]


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """Sweeps in this test start the stand-in instead of `python -m poolbench run`; its log."""
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    log = tmp_path / "trainings.jsonl"
    monkeypatch.setattr(ex, "run_arguments", fake_arguments(script, log))  # where the executors look it up
    return log


def trainings(log: Path) -> list[dict]:
    return read_jsonl(log)


def sweep(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    sweep_cli.add_arguments(parser)
    return sweep_cli.main(parser.parse_args([str(a) for a in argv]))


@pytest.fixture
def pool_files(tmp_path):
    for name in ("mine", "boom", "nan", "crashy", "full", "quits"):
        (tmp_path / f"{name}.py").write_text(POOL_FILE)
    return tmp_path


def test_sweep_runs_the_grid_into_run_folders(fake_run, pool_files, tmp_path, capsys):
    out = tmp_path / "runs"
    pools = f"gap,GEM,{pool_files / 'mine.py'}"
    assert sweep("--pools", pools, "--seeds", "1,2", "--out", out, "--epochs", "2") == 0
    err = capsys.readouterr().err
    grid = [f"quick/{pool}/seed{seed}" for seed in (1, 2) for pool in ("gap", "gem", "mine")]
    assert sorted(str(Path(t["run"])) for t in trainings(fake_run)) == sorted(grid)
    for name in grid:
        result = json.loads((out / name / "result.json").read_text())
        assert result["status"] == "completed" and result["epochs"] == 2
        assert "TEST_METRICS: test_acc=" in (out / name / "stdout.log").read_text()
    assert all(t["cwd"] == str(out.resolve()) for t in trainings(fake_run))
    assert {t["pool"] for t in trainings(fake_run)} == {"gap", "gem", "pools/mine.py"}
    assert (out / "pools" / "mine.py").read_text() == POOL_FILE
    stored = json.loads((out / "sweep.json").read_text())
    assert stored["pools"] == {"gap": "gap", "gem": "gem", "mine": "pools/mine.py"}
    assert (stored["settings"], stored["seeds"], stored["overrides"]) == (["quick"], [1, 2], {"epochs": 2})
    assert err.count(" completed  best ") == 6
    assert "6 completed, 0 diverged, 0 failed, 0 skipped (already done)" in err


def test_rerun_skips_finished_runs_and_resumes_interrupted_ones(fake_run, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap,gem", "--seeds", "1", "--out", out, "--epochs", "3") == 0
    before = len(trainings(fake_run))
    # interrupt one run after its first epoch: keep one metrics record, drop the result
    interrupted = out / "quick" / "gem" / "seed1"
    (interrupted / "result.json").unlink()
    first_epoch = (interrupted / "metrics.jsonl").read_text().splitlines()[0]
    (interrupted / "metrics.jsonl").write_text(first_epoch + "\n")
    capsys.readouterr()
    assert sweep(out) == 0  # the grid and protocol come from sweep.json
    again = trainings(fake_run)[before:]
    assert [(Path(t["run"]).as_posix(), t["resumed_at"]) for t in again] == [("quick/gem/seed1", 1)]
    assert [r["epoch"] for r in read_jsonl(interrupted / "metrics.jsonl")] == [1, 2, 3]
    assert "1 completed, 0 diverged, 0 failed, 1 skipped (already done)" in capsys.readouterr().err
    assert sweep(out) == 0
    assert len(trainings(fake_run)) == before + 1  # nothing trained the third time


def test_failed_runs_make_exit_1_and_are_retried_diverged_runs_are_results(fake_run, pool_files, tmp_path,
                                                                             capsys):
    out = tmp_path / "runs"
    pools = f"gap,{pool_files / 'boom.py'},{pool_files / 'nan.py'}"
    assert sweep("--pools", pools, "--seeds", "1", "--out", out) == 1
    err = capsys.readouterr().err
    assert "quick/boom/seed1" in err and "failed" in err and "error: run failed: RuntimeError: boom" in err
    assert "1 completed, 1 diverged, 1 failed" in err
    assert sweep(out) == 1  # the failed run is tried again, the diverged one is not
    assert [Path(t["run"]).parent.name for t in trainings(fake_run)].count("boom") == 2
    assert [Path(t["run"]).parent.name for t in trainings(fake_run)].count("nan") == 1


def test_two_sweeps_at_once_never_run_the_same_run_twice(fake_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_RUN_SLEEP", "0.15")
    out = tmp_path / "runs"
    args = ("--pools", "gap,gem,gmp", "--seeds", "1,2", "--out", out, "--epochs", "2")
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(sweep(*args))) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    assert codes == [0, 0]
    started = [t["run"] for t in trainings(fake_run)]
    assert len(started) == len(set(started)) == 6  # every run trained once, by one of the two sweeps
    for folder in out.glob("quick/*/seed*"):
        assert [r["epoch"] for r in read_jsonl(folder / "metrics.jsonl")] == [1, 2]
    err = capsys.readouterr().err
    assert "failed" not in err.replace("0 failed", "")


def test_a_run_locked_elsewhere_is_skipped_not_failed(fake_run, tmp_path, capsys):
    from poolbench.storage.rundir import RunLock

    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1,2", "--out", out, "--dry-run") == 0
    with RunLock(out / "quick" / "gap" / "seed1"):
        assert sweep(out) == 0
    err = capsys.readouterr().err
    assert "1 running elsewhere, 1 to run" in err
    assert "1 skipped (running elsewhere)" in err
    assert [Path(t["run"]).name for t in trainings(fake_run)] == ["seed2"]


def test_a_run_whose_lock_is_taken_after_the_check_exits_75_and_is_skipped(fake_run, tmp_path, monkeypatch,
                                                                           capsys):
    from poolbench.storage.rundir import RunLock

    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1", "--out", out, "--dry-run") == 0
    monkeypatch.setattr(rundir, "status", lambda path: "pending")  # another sweep locks it right after
    with RunLock(out / "quick" / "gap" / "seed1"):
        assert sweep(out) == 0
    err = capsys.readouterr().err
    assert "[1/1] quick/gap/seed1" in err and "running elsewhere" in err
    assert "0 failed, 0 skipped (already done), 1 skipped (running elsewhere)" in err
    assert "is already running" in (out / "quick" / "gap" / "seed1" / "stderr.log").read_text()


def test_a_killed_run_is_failed_and_resumes_on_the_next_sweep(fake_run, pool_files, tmp_path, capsys):
    out = tmp_path / "runs"
    run_dir = out / "quick" / "crashy" / "seed1"
    assert sweep("--pools", pool_files / "crashy.py", "--seeds", "1", "--out", out, "--epochs", "3") == 1
    assert "the run's process ended without a result (killed by SIGKILL)" in capsys.readouterr().err
    assert rundir.status(run_dir) == "failed"  # recorded, not "interrupted": the sweep said failed
    assert "killed by SIGKILL" in rundir.summarize(run_dir).problem
    assert sweep(out) == 0
    assert [t["resumed_at"] for t in trainings(fake_run)] == [0, 1]  # the killed attempt's epoch is kept
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2, 3]
    assert rundir.status(run_dir) == "completed" and not (run_dir / rundir.NO_RESULT_FILE).exists()


DRIVER = """
import argparse, sys
from pathlib import Path
from poolbench.cli import sweep_verb as sweep_cli
from poolbench.execution import executors
sys.path.insert(0, {tests!r})
from test_sweep import fake_arguments
executors.run_arguments = fake_arguments(Path({script!r}), Path({log!r}))
parser = argparse.ArgumentParser()
sweep_cli.add_arguments(parser)
sys.exit(sweep_cli.main(parser.parse_args(sys.argv[1:])))
"""


def test_killing_a_sweep_kills_its_runs_so_none_is_left_holding_a_lock(fake_run, tmp_path):
    from poolbench.storage.rundir import is_locked

    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(tests=str(Path(__file__).parent), script=str(tmp_path / "fake_run.py"),
                                    log=str(fake_run)))
    out = tmp_path / "runs"
    process = subprocess.Popen([sys.executable, str(driver), "--pools", "gap", "--seeds", "1", "--out", out],
                               env={**os.environ, "FAKE_RUN_SLEEP": "60"}, stderr=subprocess.DEVNULL)
    run_dir = out / "quick" / "gap" / "seed1"
    deadline = time.monotonic() + 60
    while not trainings(fake_run) and time.monotonic() < deadline:  # the run has its lock
        time.sleep(0.05)
    assert is_locked(run_dir)
    process.kill()  # SIGKILL: the sweep cannot clean up; the kernel ends its run
    process.wait()
    deadline = time.monotonic() + 10
    while is_locked(run_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_locked(run_dir)


@pytest.mark.parametrize("unchosen", [None, ""])
def test_local_runs_get_their_share_of_threads_and_one_gpu_each(fake_run, tmp_path, monkeypatch, unchosen):
    monkeypatch.setenv("FAKE_RUN_SLEEP", "0.1")
    # The user has not chosen (unset, or exported empty, which torch ignores): cores / jobs.
    if unchosen is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", unchosen)
    monkeypatch.setattr(ex, "visible_gpus", lambda: ["3", "5"])
    monkeypatch.setattr(ex, "cpu_count", lambda: 8)
    assert sweep("--pools", "gap,gem", "--seeds", "1,2", "--out", tmp_path / "runs", "--jobs", "2") == 0
    seen = trainings(fake_run)
    assert {t["omp"] for t in seen} == {"4"}
    assert {t["gpu"] for t in seen} <= {"3", "5"} and len(seen) == 4


def test_the_users_thread_setting_wins(fake_run, tmp_path, monkeypatch):
    monkeypatch.setattr(ex, "cpu_count", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # exported by the user: left alone
    assert sweep("--pools", "gap", "--seeds", "1", "--out", tmp_path / "a", "--jobs", "2") == 0
    assert {t["omp"] for t in trainings(fake_run)} == {"1"}
    assert sweep("--pools", "gap", "--seeds", "1", "--out", tmp_path / "b", "--threads", "3") == 0
    assert {t["omp"] for t in trainings(fake_run)[1:]} == {"3"}


def test_extending_a_sweep_keeps_its_grid(fake_run, tmp_path):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1", "--out", out) == 0
    assert sweep("--pools", "gem", "--out", out) == 0
    assert json.loads((out / "sweep.json").read_text())["pools"] == {"gap": "gap", "gem": "gem"}
    trained = sorted(Path(t["run"]).as_posix() for t in trainings(fake_run))
    assert trained == ["quick/gap/seed1", "quick/gem/seed1"]


@pytest.mark.parametrize("argv, message", [
    (["--pools", "gapp"], "unknown pooling 'gapp'"),
    (["--pools", "gap", "--settings", "nope"], "unknown setting 'nope'"),
    (["--pools", "missing.py"], "not found"),
    (["--pools", "gap", "--seeds", "1,x"], "--seeds takes comma-separated integers"),
    (["--pools", "gap", "--epochs", "0"], "epochs must be >= 1"),
    (["--pools", "gap", "--jobs", "0"], "--jobs must be >= 1"),
    (["--pools", "gap", "--threads", "0"], "--threads 0: give a number of CPU threads >= 1"),
    (["--pools", "gap", "--seeds", "1,-1"], "--seeds -1 is out of range: use integers from 0 to 4294967295"),
    (["--pools", "gap", "--device", "gpu0"], "'gpu0'"),
    ([], "holds no sweep.json"),
    (["--pools", "gap", "--settings", ""], "--settings '' names nothing: give comma-separated settings"),
    (["--pools", "gap", "--seeds", ""], "--seeds '' names nothing"),
    (["--pools", ""], "--pools '' names nothing"),
    (["--pools", "gap", "--suite", " , "], "--suite ' , ' names nothing"),
])
def test_user_errors_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "runs"
    assert sweep(*argv, "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and message in err, err
    assert not out.exists()


def test_run_and_sweep_refuse_a_bad_option_in_the_same_line(tmp_path, capsys):
    """One validator (runner.argument_problem) checks a run's options for `run` and for every run of `sweep`."""
    from poolbench.cli import main

    (tmp_path / "data").write_text("")
    for flag, value in (("--threads", "0"), ("--data-root", tmp_path / "data"), ("--device", "gpu0"),
                        ("--data-root", os.devnull)):  # not a folder, and not a file either
        assert sweep("--pools", "gap", "--out", tmp_path / "runs", flag, value) == 2
        sweep_line = capsys.readouterr().err.strip()
        assert main(["run", "--setting", "quick", flag, str(value), "--output-dir", str(tmp_path / "run")]) == 2
        run_line = capsys.readouterr().err.strip().splitlines()[-1]
        assert sweep_line == run_line and run_line.startswith(f"error: {flag}" if "root" in flag else "error:")
        assert not (tmp_path / "runs").exists() and not (tmp_path / "run").exists()


def test_changing_the_protocol_of_a_sweep_is_refused(fake_run, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1", "--out", out, "--epochs", "2") == 0
    stored = (out / "sweep.json").read_text()
    assert sweep(out, "--epochs", "3") == 2
    err = capsys.readouterr().err
    assert "epochs=3 would mix incomparable runs in one report: use a new --out folder" in err
    assert (out / "sweep.json").read_text() == stored
    quick_lr = str(get_setting("quick").protocol.lr)
    assert sweep(out, "--epochs", "2", "--lr", quick_lr) == 0  # quick's own lr: the same protocol


def test_an_edited_pool_file_is_refused_against_its_copy(fake_run, pool_files, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", pool_files / "mine.py", "--seeds", "1", "--out", out) == 0
    (pool_files / "mine.py").write_text(POOL_FILE + "\n# edited\n")
    assert sweep("--pools", pool_files / "mine.py", "--out", out) == 2
    assert "differs from" in capsys.readouterr().err
    assert (out / "pools" / "mine.py").read_text() == POOL_FILE


@pytest.mark.parametrize("edit, words", [
    (lambda grid: grid["pools"].update(typo="gapp"), "pooling 'typo': unknown pooling 'gapp'"),
    (lambda grid: grid["pools"].update(topk="topk(q=1)"), "pooling 'topk': bad pooling spec 'topk(q=1)'"),
    (lambda grid: grid["pools"].update(gone="pools/gone.py"), "its copy"),
    (lambda grid: grid["settings"].append("nope"), "setting 'nope': unknown setting 'nope'"),
    (lambda grid: grid["seeds"].append(-1), "seed -1 is out of range"),
    (lambda grid: grid["overrides"].update(epochz=3), "overrides 'epochz' is not a protocol field"),
    (lambda grid: grid["overrides"].update(epochs=0), "epochs must be >= 1"),
    (lambda grid: grid["pools"].update({"../../../x": "gap"}), "pooling label '../../../x' is not a folder name"),
    (lambda grid: grid["pools"].update({".": "gem"}), "pooling label '.' is not a folder name"),
    (lambda grid: grid["pools"].update({"a/b": "gem"}), "pooling label 'a/b' is not a folder name"),
], ids=["unknown-pooling", "bad-keyword", "missing-file", "setting", "seed", "override-name", "override-value",
        "label-outside", "label-dot", "label-slash"])
def test_a_hand_edited_sweep_file_is_checked_when_read(fake_run, tmp_path, capsys, edit, words):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--seeds", "1", "--out", out, "--dry-run") == 0
    grid = json.loads((out / "sweep.json").read_text())
    edit(grid)
    (out / "sweep.json").write_text(json.dumps(grid))
    capsys.readouterr()
    assert sweep(out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and words in err, err
    assert "sweep.json" in err or "gone.py" in err  # the file and entry to correct
    assert not trainings(fake_run) and json.loads((out / "sweep.json").read_text()) == grid
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake_run.py", "runs"]  # nothing written outside


def test_a_pooling_file_whose_name_is_no_folder_name_gets_a_safe_label(fake_run, tmp_path):
    odd = tmp_path / "files" / "..my pool!.py"
    odd.parent.mkdir()
    odd.write_text(POOL_FILE)
    out = tmp_path / "runs"
    assert sweep("--pools", odd, "--seeds", "1", "--out", out) == 0
    grid = json.loads((out / "sweep.json").read_text())
    assert list(grid["pools"]) == ["my_pool"]
    assert [t["run"] for t in trainings(fake_run)] == ["quick/my_pool/seed1"]


def test_a_pooling_failing_the_contract_is_checked_once_refused_and_listed_then_rechecked(
        fake_run, pool_files, tmp_path, capsys, monkeypatch):
    broken = (Path(__file__).parent.parent / "broken_pools" / "wrong_shape.py").read_text()
    (pool_files / "wrong.py").write_text(broken)
    checked: list[str] = []
    real = sw.check_poolings
    monkeypatch.setattr(sw, "check_poolings", lambda specs, inputs: checked.extend(specs) or real(specs, inputs))
    out = tmp_path / "runs"
    assert sweep("--pools", f"gap,{pool_files / 'wrong.py'}", "--seeds", "1,2", "--out", out) == 1
    err = capsys.readouterr().err
    # Once each; the file where it was named (can it be built?) and its copy (the runs'): one child process
    # checks both, by content.
    assert sorted(checked) == sorted(["gap", str(pool_files / "wrong.py"), str(out.resolve() / "pools" / "wrong.py")])
    assert [Path(t["run"]).parent.name for t in trainings(fake_run)] == ["gap", "gap"]  # wrong: never started
    assert "refused wrong (2 runs not started): pooling 'pools/wrong.py' fails the contract check (FAIL shape" in err
    assert "`poolbench check " in err and "2 refused; see" in err
    assert not (out / "quick" / "wrong").exists()
    refused = json.loads((out / "refused.json").read_text())
    assert list(refused) == ["wrong"] and refused["wrong"]["failures"][0].startswith("FAIL shape")
    assert [rundir.summarize(out / "quick" / "gap" / f"seed{k}").status for k in (1, 2)] == ["completed"] * 2
    from poolbench.analysis.sweep_analysis import build_report
    from poolbench.storage.sweep_runs import collect_runs

    assert {s.seed: s.status for s in collect_runs(out) if s.pool == "wrong"} == {1: "refused", 2: "refused"}
    wrong = next(r for r in build_report(out).rows["quick"] if r.pool == "wrong")
    assert (wrong.refused, wrong.failed, wrong.unfinished) == ([1, 2], [], [])

    (out / "pools" / "wrong.py").write_text(POOL_FILE)  # fixed: checked again by the next command, and run
    assert sweep(out) == 0
    assert [Path(t["run"]).parent.name for t in trainings(fake_run)][2:] == ["wrong", "wrong"]
    assert not (out / "refused.json").exists() and not (out / ".sweep.lock").exists()


def test_stdout_log_holds_the_latest_attempt_and_stderr_log_every_attempt(tmp_path):
    child = ["-c", "import sys; print('TRAIN_METRICS: epoch=1'); print(sys.argv[1], file=sys.stderr)"]
    assert ex.run_process([*child, "first"], str(tmp_path), "run", {}) == 0
    assert ex.run_process([*child, "second"], str(tmp_path), "run", {}) == 0
    folder = tmp_path / "run"
    assert (folder / "stdout.log").read_text() == "TRAIN_METRICS: epoch=1\n"  # once, not once per attempt
    assert (folder / "stdout.log.1").read_text() == "TRAIN_METRICS: epoch=1\n"  # the previous attempt's
    stderr = (folder / "stderr.log").read_text()
    assert stderr.count("poolbench sweep starts this run") == 2 and stderr.index("first") < stderr.index("second")
    with rundir.RunLock(folder):  # running elsewhere: its stdout.log is left as it is
        (folder / "stdout.log").write_text("live\n")
        ex.run_process(["-c", "pass"], str(tmp_path), "run", {})
    assert (folder / "stdout.log").read_text() == "live\n"


def test_a_run_ending_without_a_result_is_failed_with_the_reason(fake_run, pool_files, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", f"gap,{pool_files / 'quits.py'}", "--seeds", "1", "--out", out) == 1
    err = capsys.readouterr().err
    reason = ("the run's process ended without a result (exit code 0): the pooling or model may end the process "
              "(os._exit, signals)")
    assert reason in err and "1 completed, 0 diverged, 1 failed" in err
    run_dir = out / "quick" / "quits" / "seed1"
    summary = rundir.summarize(run_dir)
    assert summary.status == "failed" and summary.problem.startswith(reason)
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1]  # kept: the next attempt resumes


def test_a_full_disk_in_a_run_stops_the_sweep_and_is_not_a_failure(fake_run, pool_files, tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", f"{pool_files / 'full.py'},gap", "--seeds", "1", "--out", out) == 74
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1] == (f"error: the disk is full (or read-only) writing under {out}: free space and run the "
                         f"same sweep command again to resume")
    assert [Path(t["run"]).parent.name for t in trainings(fake_run)] == ["full"]  # gap was not started
    assert rundir.status(out / "quick" / "full" / "seed1") == "interrupted"  # its epoch kept, not failed
    assert not (out / ".sweep.lock").exists()


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("where", ["sweep.json", "run logs", "refused.json"])
def test_a_full_disk_in_the_sweep_process_is_one_line_and_exit_74(fake_run, tmp_path, capsys, monkeypatch, where):
    out = tmp_path / "runs"
    if where != "sweep.json":
        assert sweep("--pools", "gap", "--seeds", "1", "--out", out, "--dry-run") == 0
        capsys.readouterr()
    target = {"sweep.json": (sw.rundir, "write_json"), "run logs": (ex, "start_attempt"),
              "refused.json": (sw, "write_refusals")}[where]
    monkeypatch.setattr(*target, _no_space)
    assert sweep("--pools", "gap", "--seeds", "1", "--out", out) == 74
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (f"error: the disk is full (or read-only) writing under {out}: free space and "
                                    f"run the same sweep command again to resume")
    assert "Traceback" not in err and not trainings(fake_run)
    assert not (out / ".sweep.lock").exists() and not list(out.glob(".*.tmp"))


def test_an_unwritable_sweep_folder_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    assert sweep("--pools", "gap", "--out", tmp_path / "file" / "runs") == 2  # a path under a file
    err = capsys.readouterr().err
    assert err == (f"error: cannot write the sweep folder {tmp_path / 'file' / 'runs'}: Not a directory; give --out "
                   f"a folder you can write\n")
    real_open = os.open

    def read_only(path, flags, *args):  # chmod does not stop root: the file system refuses instead
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args)

    out = tmp_path / "ro"
    out.mkdir()
    monkeypatch.setattr(os, "open", read_only)  # the sweep lock (filelock) opens it
    assert sweep("--pools", "gap", "--out", out) == 2
    err = capsys.readouterr().err
    assert err == (f"error: cannot write the sweep folder {out}: Read-only file system ({out / '.sweep.lock'}); "
                   f"give --out a folder you can write\n")
    assert list(out.iterdir()) == []


def test_ray_executor_without_ray_is_a_user_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    assert sweep("--pools", "gap", "--out", tmp_path / "runs", "--executor", "ray") == 2
    assert "pip install 'poolbench[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# --- End to end: real training on the embedded quick setting --------------------------------

def sweep_process(*argv: str, **kwargs) -> subprocess.Popen:
    """`poolbench sweep` in its own process, as a user starts it."""
    code = ("import argparse, sys; from poolbench.cli import sweep_verb as sweep_cli; p = argparse.ArgumentParser(); "
            "sweep_cli.add_arguments(p); sys.exit(sweep_cli.main(p.parse_args(sys.argv[1:])))")
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


# 16 x 16 images: each run trains in about a second, so the process and the sweep's work dominate.
E2E = ("--pools", "gap,gem", "--seeds", "1,2", "--epochs", "1", "--image-size", "16", "--jobs", "2")


@pytest.fixture(scope="module")
def two_sweeps(tmp_path_factory) -> tuple[Path, list[int], list[str]]:
    """Two `poolbench sweep` processes started a second apart on one folder, each with the whole
    grid (4 runs, 2 jobs of 1 thread each: no OpenMP oversubscription): the folder, their exit codes
    and their stderr. The tests below read it; the rerun writes nothing."""
    out = tmp_path_factory.mktemp("two_sweeps") / "runs"
    sweeps = [sweep_process(*E2E, "--out", out)]
    time.sleep(1.0)
    sweeps.append(sweep_process(*E2E, "--out", out))
    errs = [process.communicate(timeout=900)[1] for process in sweeps]
    return out, [process.returncode for process in sweeps], errs


@pytest.mark.slow
@pytest.mark.xdist_group("two_sweeps")
def test_end_to_end_two_sweeps_at_once_on_one_folder(two_sweeps):
    out, codes, errs = two_sweeps
    assert codes == [0, 0], errs
    folders = list(out.glob("quick/*/seed*"))
    assert len(folders) == 4
    for folder in folders:
        assert [r["epoch"] for r in read_jsonl(folder / "metrics.jsonl")] == [1]
        assert json.loads((folder / "result.json").read_text())["status"] == "completed"
    trained = sum(err.count(" completed  best ") for err in errs)
    assert trained == 4, errs  # each run trained by exactly one of the two sweeps


@pytest.mark.slow
@pytest.mark.xdist_group("two_sweeps")
def test_end_to_end_sweep_rerun_and_report(two_sweeps):
    out, codes, errs = two_sweeps
    assert codes == [0, 0], errs
    results = {p.parent.parent.name + "/" + p.parent.name: json.loads(p.read_text())
               for p in out.glob("quick/*/seed*/result.json")}
    assert sorted(results) == ["gap/seed1", "gap/seed2", "gem/seed1", "gem/seed2"]
    assert all(r["status"] == "completed" and r["epochs_completed"] == 1 for r in results.values())
    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("quick/*/seed*/*") if p.suffix in (".json", ".jsonl")}

    again = sweep_process(out)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "0 completed, 0 diverged, 0 failed, 4 skipped (already done)" in err
    assert mtimes == {p: p.stat().st_mtime_ns for p in mtimes}  # nothing was written again

    from poolbench.analysis.sweep_analysis import build_report
    from poolbench.render.report import to_markdown

    text = to_markdown(build_report(out))
    assert "Final metrics (quick): test_acc_quick=" in text


@pytest.fixture(scope="module")
def local_ray():
    import ray  # CI installs the ray extra: a missing ray fails these tests, it does not skip them

    ray.init(num_cpus=2, include_dashboard=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@pytest.mark.xdist_group("local_ray")  # one Ray instance, started once
def test_ray_retries_a_killed_run_which_resumes(local_ray, fake_run, pool_files, tmp_path, capsys):
    out = tmp_path / "runs"
    pools = f"gap,{pool_files / 'crashy.py'}"
    assert sweep("--pools", pools, "--seeds", "1", "--epochs", "3", "--out", out, "--executor", "ray") == 0
    assert "2 completed, 0 diverged, 0 failed" in capsys.readouterr().err
    crashy = [t for t in trainings(fake_run) if Path(t["run"]).parent.name == "crashy"]
    assert [t["resumed_at"] for t in crashy] == [0, 1]  # killed in epoch 2, retried by Ray, resumed
    assert [r["epoch"] for r in read_jsonl(out / "quick" / "crashy" / "seed1" / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.xdist_group("local_ray")  # one Ray instance, started once
def test_end_to_end_sweep_on_a_local_ray_instance(local_ray, tmp_path):
    out = tmp_path / "runs"
    code = sweep("--pools", "gap,gem", "--seeds", "1", "--epochs", "1", "--image-size", "16", "--out", out,
                 "--executor", "ray")
    assert code == 0
    for pool in ("gap", "gem"):
        folder = out / "quick" / pool / "seed1"
        assert json.loads((folder / "result.json").read_text())["status"] == "completed"
        assert "TEST_METRICS: test_acc=" in (folder / "stdout.log").read_text()
        assert [r["epoch"] for r in read_jsonl(folder / "metrics.jsonl")] == [1]
