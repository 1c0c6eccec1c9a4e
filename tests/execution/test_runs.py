"""Run folder files: atomic writes, the run lock, status, RunConfig round trip."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poolbench.cli import main
from poolbench.core.settings import Protocol
from poolbench.storage.rundir import (
    DamagedFileError,
    RunConfig,
    RunLock,
    RunLockedError,
    is_locked,
    read_jsonl,
    read_result,
    status,
    summarize,
    write_json,
    write_jsonl,
)


def test_run_config_round_trips_through_json():
    config = RunConfig("quick", "resnet20", "digits", 10, "gem", 7, Protocol(epochs=3, lr=0.01), "abc")
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_differences_name_the_changed_fields():
    a = RunConfig("quick", "resnet20", "digits", 10, "gem", 7, Protocol(epochs=3))
    b = RunConfig("quick", "resnet20", "digits", 10, "gap", 7, Protocol(epochs=4))
    assert a.differences(b) == ["pool: 'gap' != 'gem'", "protocol.epochs: 4 != 3"]


def test_write_json_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "result.json"
    write_json(path, {"a": 1})
    write_json(path, {"b": 2})
    assert json.loads(path.read_text()) == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_read_jsonl_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_jsonl(path, [{"epoch": 1}, {"epoch": 2}])
    with open(path, "a") as handle:
        handle.write('{"epoch": 3, "tra')
    assert read_jsonl(path) == [{"epoch": 1}, {"epoch": 2}]


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path):
        assert is_locked(tmp_path)
        with pytest.raises(RunLockedError, match="already running"):
            RunLock(tmp_path).acquire()
    assert not is_locked(tmp_path)
    RunLock(tmp_path).acquire()  # free again


def test_lock_of_a_killed_process_is_released(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from poolbench.storage.rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('locked', flush=True); time.sleep(60)"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert is_locked(tmp_path)
    assert status(tmp_path) == "running"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    deadline = time.time() + 5
    while is_locked(tmp_path) and time.time() < deadline:
        time.sleep(0.05)
    assert not is_locked(tmp_path)
    assert status(tmp_path) == "pending"


def test_status_follows_the_files(tmp_path):
    assert status(tmp_path) == "pending"
    write_jsonl(tmp_path / "metrics.jsonl", [{"epoch": 1}])
    assert status(tmp_path) == "interrupted"
    write_json(tmp_path / "result.json", {"status": "diverged"})
    assert status(tmp_path) == "diverged"


# --- result.json: what no run can produce is unreadable, never a result ----------------------------

GOOD_RESULT = {"status": "completed", "best_test_acc": 72.5, "best_epoch": 3, "final_test_acc": 71.0,
               "epochs_completed": 3, "epochs": 3}


@pytest.mark.parametrize("change, words", [
    ({"best_test_acc": float("nan")}, "best_test_acc nan is no accuracy from 0 to 100"),
    ({"best_test_acc": float("inf")}, "best_test_acc inf"),
    ({"best_test_acc": "72.5"}, "best_test_acc '72.5'"),
    ({"best_test_acc": -1.0}, "best_test_acc -1.0"),
    ({"best_test_acc": 250}, "best_test_acc 250"),
    ({"best_test_acc": True}, "best_test_acc True"),
    ({"best_test_acc": None}, "a completed run without best_test_acc"),
    ({"final_test_acc": 100.5}, "final_test_acc 100.5"),
    ({"epochs_completed": -1}, "epochs_completed -1 is not a whole number >= 0"),
    ({"epochs_completed": 2.5}, "epochs_completed 2.5"),
    ({"best_epoch": 0}, "best_epoch 0 is not a whole number >= 1"),
    ({"status": "finished"}, "status 'finished' is none of completed, diverged, failed"),
    ({"status": "running"}, "status 'running'"),
    ({"status": ["completed"]}, "status ['completed']"),
    ({"status": "x" * 10_000}, "(10,002 characters)"),
])
def test_an_impossible_result_makes_the_run_unreadable_not_a_result(tmp_path, change, words):
    run_dir = tmp_path / "quick" / "gap" / "seed1"
    run_dir.mkdir(parents=True)
    write_json(run_dir / "result.json", {**GOOD_RESULT, **change})
    with pytest.raises(DamagedFileError) as caught:
        read_result(run_dir / "result.json")
    assert words in str(caught.value) and str(run_dir / "result.json") in str(caught.value), str(caught.value)
    assert len(str(caught.value)) < 400 and "\n" not in str(caught.value)
    assert status(run_dir) == "unreadable"
    summary = summarize(run_dir)
    assert summary.status == "unreadable" and summary.result is None and words in (summary.problem or "")


def test_json_python_cannot_read_is_unreadable_too(tmp_path):
    (tmp_path / "result.json").write_text('{"status": "completed", "best_test_acc": 1' + "0" * 5000 + "}")
    assert status(tmp_path) == "unreadable"
    (tmp_path / "result.json").write_text("[" * 100_000 + "]" * 100_000)
    assert status(tmp_path) == "unreadable"


@pytest.mark.parametrize("result", [
    GOOD_RESULT, {**GOOD_RESULT, "best_test_acc": 0, "final_test_acc": 100},
    {"status": "diverged", "best_test_acc": None, "epochs_completed": 0},
    {"status": "diverged"}, {"status": "failed", "error": "RuntimeError: boom", "best_test_acc": 12.5},
])
def test_a_possible_result_reads_back_as_written(tmp_path, result):
    write_json(tmp_path / "result.json", result)
    assert read_result(tmp_path / "result.json") == result
    assert status(tmp_path) == result["status"]


def test_run_on_a_folder_whose_result_is_impossible_trains_again_instead_of_reporting_it(tmp_path, capsys):
    out_dir = tmp_path / "run"
    args = ["run", "--setting", "quick", "--epochs", "1", "--image-size", "16", "--output-dir", str(out_dir)]
    assert main(args) == 0
    written = json.loads((out_dir / "result.json").read_text())
    write_json(out_dir / "result.json", {**written, "best_test_acc": 250.0})
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "best_test_acc 250.0 is no accuracy from 0 to 100" in captured.err
    assert "result.json.damaged" in captured.err
    assert captured.out.strip().splitlines()[-1] == f"TEST_METRICS: test_acc={written['best_test_acc']:.2f}"
    assert json.loads((out_dir / "result.json").read_text())["best_test_acc"] == written["best_test_acc"]


def test_poolbench_imports_and_locks_without_fcntl(tmp_path):
    """Where fcntl does not exist (Windows), poolbench imports and its run lock still works."""
    code = (
        "import sys; sys.modules['fcntl'] = None\n"  # import fcntl raises ImportError
        "import poolbench, poolbench.cli, poolbench.execution.sweep_runner\n"
        "from poolbench.storage.rundir import RunLock, RunLockedError, is_locked\n"
        "run = sys.argv[1]\n"
        "with RunLock(run):\n"
        "    assert is_locked(run)\n"
        "    try:\n"
        "        RunLock(run).acquire()\n"
        "    except RunLockedError as error:\n"
        "        print(error)\n"
        "assert not is_locked(run)\n"
        "assert 'fcntl' not in sys.modules or sys.modules['fcntl'] is None\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"run {tmp_path} is already running (pid ") and " on " in done.stdout


def test_a_second_holder_is_told_who_holds_the_lock(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=rf"already running \(pid {os.getpid()} on .+\)"):
            RunLock(tmp_path).acquire()
    assert (tmp_path / ".lock").exists()  # left in place: a waiter shares its inode
