"""Faults a new user meets: each ends in one line on stderr naming the problem and the fix, the
documented exit code, no traceback, and nothing already written lost."""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poolbench.cli import main
from poolbench.core.outcomes import RunStatus
from poolbench.storage import rundir

FAST = ["--setting", "quick", "--epochs", "1", "--batch-size", "256", "--image-size", "16"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
METRICS = re.compile(r"^TRAIN_METRICS: epoch=(\d+) ", re.M)


def call(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(err: str) -> str:
    """The refusal's single line; there is no traceback."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    return lines[0]


# --- 1. pooling files that end the interpreter ---------------------------------------------------

EXIT_ON_IMPORT = "import sys\nsys.exit(3)\n"
EXIT_IN_INIT = """import torch
from torch import nn

class CustomPool(nn.Module):
    def __init__(self):
        super().__init__()
        raise SystemExit(3)

    def forward(self, x):
        return x.mean(dim=(2, 3))
"""


@pytest.mark.parametrize("source", [EXIT_ON_IMPORT, EXIT_IN_INIT], ids=["import", "constructor"])
def test_a_pool_file_calling_sys_exit_is_a_bad_pooling(tmp_path, capsys, source):
    pool = tmp_path / "quits.py"
    pool.write_text(source)
    for extra in ([], ["--no-check"]):
        code, _, err = call(capsys, "run", *FAST, "--pool", str(pool), "--output-dir", str(tmp_path / "run"), *extra)
        assert code == 2 and ("sys.exit(3)" in one_error(err) or "SystemExit(3)" in one_error(err))
        assert not (tmp_path / "run").exists()
    code, out, _ = call(capsys, "check", str(pool))
    assert code == 1 and "FAIL construct" in out


# --- 2. every argument validated before anything is written ---------------------------------------

@pytest.mark.parametrize("args, words", [
    (["--device", "gpu0"], ["'gpu0'", "cpu", "cuda:N"]),
    (["--lr", "inf"], ["lr", "finite"]),
    (["--lr", "nan"], ["lr", "finite"]),
    (["--seed", "-1"], ["--seed -1", "0 to 4294967295"]),
    (["--seed", str(2**64)], ["out of range"]),
    (["--num-classes", "7"], ["10 classes", "--num-classes"]),
    (["--pool", "gem(p=-1)"], ["p must be > p_min", "GAP"]),
    (["--epochs", "0"], ["epochs must be >= 1"]),
    (["--batch-size", "-1"], ["batch size must be >= 1"]),
    (["--pool", ""], ["unknown pooling"]),
    (["--threads", "0"], ["--threads 0"]),
])
def test_bad_arguments_are_refused_before_the_run_folder_exists(tmp_path, capsys, args, words):
    out_dir = tmp_path / "run"
    code, _, err = call(capsys, "run", *FAST, *args, "--output-dir", str(out_dir))
    line = one_error(err)
    assert code == 2 and all(word in line for word in words), line
    assert not out_dir.exists()


def test_a_data_root_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "data").write_text("")
    code, _, err = call(capsys, "run", *FAST, "--data-root", str(tmp_path / "data"),
                        "--output-dir", str(tmp_path / "run"))
    assert code == 2 and "is a file" in one_error(err) and not (tmp_path / "run").exists()


def test_a_refused_command_does_not_block_its_corrected_form(tmp_path, capsys):
    out_dir = tmp_path / "run"
    out_dir.mkdir()  # a folder that exists already (e.g. made by the user) must not matter either
    code, _, err = call(capsys, "run", *FAST, "--num-classes", "7", "--output-dir", str(out_dir))
    assert code == 2 and list(out_dir.iterdir()) == []
    code, out, err = call(capsys, "run", *FAST, "--output-dir", str(out_dir))
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("TEST_METRICS")


# --- 3. damaged files ---------------------------------------------------------------------------

DAMAGE = {"truncated": b'{"config": {"setting": "qu', "binary": bytes(range(256)), "null": b"null",
          "list": b"[1, 2]"}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One completed 1-epoch run, copied by the tests that damage it."""
    out_dir = tmp_path_factory.mktemp("finished") / "quick" / "gap" / "seed42"
    result = subprocess.run([sys.executable, "-m", "poolbench", "run", *FAST, "--output-dir", str(out_dir)],
                            env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out_dir


def copy_run(source: Path, root: Path) -> Path:
    target = root / "quick" / "gap" / "seed42"
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file():
            (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.xdist_group("finished_run")  # one worker trains it, once
@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_config_is_one_line_naming_it(tmp_path, capsys, finished_run, kind):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "config.json").write_bytes(DAMAGE[kind])
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"}
    code, _, err = call(capsys, "run", *FAST, "--output-dir", str(run_dir))
    line = one_error(err)
    assert code == 2 and "config.json is damaged" in line and "delete it" in line
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.name != ".lock"} == before  # nothing lost


@pytest.mark.xdist_group("finished_run")  # one worker trains it, once
@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_result_of_a_completed_run_is_rewritten_by_the_same_command(tmp_path, capsys, finished_run, kind):
    run_dir = copy_run(finished_run, tmp_path)
    original = json.loads((run_dir / "result.json").read_text())
    (run_dir / "result.json").write_bytes(DAMAGE[kind])
    assert rundir.status(run_dir) == RunStatus.UNREADABLE
    code, out, _ = call(capsys, "status", str(tmp_path))
    assert code == 0 and "0 failed" in out and "1 unreadable" in out
    assert re.search(r"\| gap +\| unreadable \(.*result\.json is damaged", out) and str(run_dir / "result.json") in out
    code, out, err = call(capsys, "report", str(tmp_path))
    assert code == 0 and "1 unreadable (seed 42)" in out and str(run_dir / "result.json") in out

    code, out, err = call(capsys, "run", *FAST, "--output-dir", str(run_dir))
    assert code == 0, err
    assert "result.json is damaged" in err and "Traceback" not in err
    rewritten = json.loads((run_dir / "result.json").read_text())
    assert rewritten["status"] == "completed" and rewritten["best_test_acc"] == original["best_test_acc"]
    assert (run_dir / "result.json.damaged").read_bytes() == DAMAGE[kind]  # kept, not lost
    assert METRICS.findall(out) == ["1"] and f"test_acc={original['best_test_acc']:.2f}" in out


@pytest.mark.xdist_group("finished_run")  # one worker trains it, once
@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_checkpoint_says_delete_it(tmp_path, capsys, finished_run, kind):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "result.json").unlink()  # an interrupted run
    (run_dir / "checkpoint.pt").write_bytes(DAMAGE[kind])
    metrics = (run_dir / "metrics.jsonl").read_bytes()
    code, _, err = call(capsys, "run", *FAST, "--output-dir", str(run_dir))
    line = one_error(err)
    assert code == 2 and "checkpoint.pt is damaged" in line and "delete it" in line and "metrics.jsonl" in line
    assert (run_dir / "metrics.jsonl").read_bytes() == metrics


@pytest.mark.xdist_group("finished_run")  # one worker trains it, once
@pytest.mark.parametrize("kind", ["binary", "null", "list"])
def test_a_damaged_metrics_file_does_not_break_status(tmp_path, capsys, finished_run, kind):
    run_dir = copy_run(finished_run, tmp_path)
    (run_dir / "metrics.jsonl").write_bytes(DAMAGE[kind] + b"\n{}\n")
    code, out, err = call(capsys, "status", str(tmp_path))
    assert code == 0 and "completed" in out and "Traceback" not in err


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_sweep_file_is_one_line_for_sweep_status_and_report(tmp_path, capsys, kind):
    (tmp_path / "sweep.json").write_bytes(DAMAGE[kind])
    for argv in (["sweep", str(tmp_path), "--dry-run"], ["status", str(tmp_path)], ["report", str(tmp_path)]):
        code, _, err = call(capsys, *argv)
        line = one_error(err)
        assert code == 2 and "sweep.json is damaged" in line, (argv, line)
    assert (tmp_path / "sweep.json").read_bytes() == DAMAGE[kind]


# --- 4. sweeps ----------------------------------------------------------------------------------

POOL = """import torch
from torch import nn

class CustomPool(nn.Module):
    def forward(self, x):
        return x.{}(dim=(2, 3))
"""


def test_two_pool_files_with_one_name_are_refused(tmp_path, capsys):
    for folder, op in (("a", "mean"), ("b", "amax")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "mine.py").write_text(POOL.format(op))
    out = tmp_path / "sweep"
    code, _, err = call(capsys, "sweep", "--pools", f"{tmp_path}/a/mine.py,{tmp_path}/b/mine.py",
                        "--out", str(out), "--dry-run")
    line = one_error(err)
    assert code == 2 and "a/mine.py" in line and "b/mine.py" in line and "rename" in line
    assert not out.exists()


def test_a_vanished_pool_copy_is_named_in_dry_run(tmp_path, capsys):
    (tmp_path / "mine.py").write_text(POOL.format("mean"))
    out = tmp_path / "sweep"
    assert call(capsys, "sweep", "--pools", f"gap,{tmp_path}/mine.py", "--out", str(out), "--dry-run")[0] == 0
    (out / "pools" / "mine.py").unlink()
    code, _, err = call(capsys, "sweep", str(out), "--dry-run")
    line = one_error(err)
    assert code == 2 and str(out / "pools" / "mine.py") in line and "vanished" in line


# --- 5. reports ---------------------------------------------------------------------------------

@pytest.mark.xdist_group("finished_run")  # one worker trains it, once
def test_report_output_onto_a_folder_or_a_full_disk(tmp_path, capsys, finished_run, monkeypatch):
    copy_run(finished_run, tmp_path)
    code, _, err = call(capsys, "report", str(tmp_path), "--output", str(tmp_path))
    assert code == 2 and "is a folder" in one_error(err)

    def full_disk(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(rundir, "atomic_write_bytes", full_disk)
    code, _, err = call(capsys, "report", str(tmp_path), "--output", str(tmp_path / "r.html"))
    assert code == 1 and "No space left on device" in one_error(err)
    assert not (tmp_path / "r.html").exists()


# --- 6, 7. SIGTERM is Ctrl-C; a resumed run prints the whole run on stdout ---------------------

@pytest.mark.slow
def test_sigterm_keeps_the_checkpoint_and_the_resumed_stdout_holds_every_epoch(tmp_path):
    out_dir = tmp_path / "run"
    command = [sys.executable, "-m", "poolbench", "run", "--setting", "quick", "--epochs", "3",
               "--batch-size", "256", "--image-size", "16", "--output-dir", str(out_dir)]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (out_dir / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "Traceback" not in err and "SIGTERM" in err and "run the same command again to resume" in err
    assert (out_dir / "checkpoint.pt").exists() and not (out_dir / "result.json").exists()
    done = METRICS.findall(out)
    assert done and len(done) < 3

    resumed = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert METRICS.findall(resumed.stdout) == ["1", "2", "3"]  # the epochs before the interruption too
    assert resumed.stdout.strip().splitlines()[-1].startswith("TEST_METRICS")


@pytest.mark.parametrize("spec", ["gem(p=-1)", "quits.py"])
def test_a_sweep_refuses_a_pooling_that_cannot_be_built_before_writing(tmp_path, capsys, spec):
    (tmp_path / "quits.py").write_text(EXIT_IN_INIT)
    spec = spec if spec.startswith("gem") else str(tmp_path / spec)
    code, _, err = call(capsys, "sweep", "--pools", f"gap,{spec}", "--out", str(tmp_path / "sweep"), "--dry-run")
    line = one_error(err)  # the range refusal's own line for gem(p=-1), "cannot be built" for the file
    assert code == 2 and ("cannot be built" in line if spec.endswith(".py") else "gem: p must be > p_min" in line)
    assert not (tmp_path / "sweep" / "sweep.json").exists() and not (tmp_path / "sweep" / "pools").exists()


def test_a_run_lock_that_cannot_record_its_holder_on_a_full_disk_is_not_left_held(tmp_path, monkeypatch):
    def no_space(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "write", no_space)
    with pytest.raises(OSError, match="No space left"):
        rundir.RunLock(tmp_path).acquire()
    monkeypatch.undo()
    assert not rundir.is_locked(tmp_path)  # the next attempt is not "running elsewhere"
