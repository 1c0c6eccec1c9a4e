"""Worker processes of a CPU sweep (poolbench.execution.workers): the runs, their files and their numbers
are those of a run started as its own process; a run that ends its worker fails alone; a stopped sweep
resumes; what a run changes does not reach the next run of its worker."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from poolbench.execution import executors as ex
from poolbench.execution import workers
from poolbench.execution.signals import HeldSignals, Terminated
from poolbench.execution.workers import Reply, Request, Worker, runs_in_a_worker
from poolbench.storage import rundir
from poolbench.storage.rundir import read_jsonl

MEAN_POOL = '''
from torch import nn


class CustomPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
'''

# Training batches are larger than the contract check's (4 images): the check passes, the run ends
# its process at its first training step, as a pooling calling os._exit would.
QUITTING_POOL = '''
import os
from torch import nn


class CustomPool(nn.Module):
    def forward(self, x):
        if self.training and x.shape[0] > 4:
            os._exit(0)
        return x.mean(dim=(2, 3))
'''

# Changes process-wide state while it trains (run with --no-check: the contract check refuses it).
LEAKY_POOL = '''
import numpy as np
import torch
from torch import nn


class CustomPool(nn.Module):
    def forward(self, x):
        if self.training:
            torch.set_default_dtype(torch.float64)
            torch.use_deterministic_algorithms(True)
            torch.set_num_threads(3)
            np.random.seed(0)
            os_environ = __import__("os").environ
            os_environ["OMP_NUM_THREADS"] = "7"
        return x.mean(dim=(2, 3)).to(torch.float32)
'''

# Replaces a function of torch: that cannot be put back, so its worker takes no more runs.
PATCHING_POOL = '''
import torch
from torch import nn

_relu = torch.nn.functional.relu
torch.nn.functional.relu = lambda *args, **kwargs: _relu(*args, **kwargs)


class CustomPool(nn.Module):
    def forward(self, x):
        return x.mean(dim=(2, 3))
'''

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# Every run trains on 16x16 images for one or two epochs: what these tests show (the same numbers, a
# run ending alone, a clean stop and resume, nothing leaking) needs each kind of run once, not the protocol.
SMALL = ("--image-size", "16")


def sweep(out: Path, *args: str, **popen) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "poolbench", "sweep", "--out", str(out), *args], env=ENV,
                          capture_output=True, text=True, timeout=600, **popen)


def epochs(run_dir: Path) -> list[dict]:
    """metrics.jsonl without its one wall-time field (epoch_time_s): what must be byte-identical."""
    records = read_jsonl(run_dir / "metrics.jsonl")
    for record in records:
        del record["epoch_time_s"]
    return records


def run_folders(out: Path) -> list[Path]:
    return sorted(path.parent for path in out.glob("*/*/seed*/config.json"))


@pytest.mark.slow
def test_runs_trained_in_a_worker_give_the_numbers_of_runs_in_their_own_process(tmp_path):
    pool_file = tmp_path / "mine.py"
    pool_file.write_text(MEAN_POOL)
    grid = ["--pools", f"gap,gem,{pool_file}", "--settings", "quick,diag-majority", "--seeds", "3",
            "--epochs", "1", "--jobs", "2", *SMALL]
    in_workers = sweep(tmp_path / "workers", *grid)
    assert in_workers.returncode == 0, in_workers.stderr
    in_processes = sweep(tmp_path / "processes", *grid, "--worker-processes", "off")
    assert in_processes.returncode == 0, in_processes.stderr

    folders = run_folders(tmp_path / "workers")
    assert len(folders) == 6  # two workers trained them, each one run after another
    for folder in folders:
        twin = tmp_path / "processes" / folder.relative_to(tmp_path / "workers")
        assert [r["epoch"] for r in epochs(folder)] == [1]
        assert epochs(folder) == epochs(twin), folder
        # The same files: config.json (the recorded command included) and stdout.log, byte for byte.
        assert (folder / "config.json").read_bytes() == (twin / "config.json").read_bytes()
        assert (folder / "stdout.log").read_bytes() == (twin / "stdout.log").read_bytes()
        assert (folder / "stdout.log").read_text().splitlines()[-1].startswith("TEST_METRICS: test_acc=")
        result = json.loads((folder / "result.json").read_text())
        assert result["status"] == "completed" and result["global_state_restored"] == []
        assert "poolbench sweep starts this run" in (folder / "stderr.log").read_text()
    for folder in folders:  # the lock of every run was released with its run
        with rundir.RunLock(folder):
            pass


@pytest.mark.slow
def test_a_pooling_that_ends_its_process_fails_that_run_and_the_others_complete(tmp_path):
    quitting = tmp_path / "quits.py"
    quitting.write_text(QUITTING_POOL)
    out = tmp_path / "runs"
    done = sweep(out, "--pools", f"{quitting},gap", "--settings", "quick", "--seeds", "1,2", "--epochs", "1",
                 "--jobs", "1", *SMALL)
    assert done.returncode == 1, done.stderr
    reason = ("the run's process ended without a result (exit code 0): the pooling or model may end the process "
              "(os._exit, signals)")
    assert done.stderr.count(reason) == 2 and "2 completed, 0 diverged, 2 failed" in done.stderr
    for seed in (1, 2):
        quits = rundir.summarize(out / "quick" / "quits" / f"seed{seed}")
        assert quits.status == "failed" and quits.problem.startswith(reason)
        assert rundir.summarize(out / "quick" / "gap" / f"seed{seed}").status == "completed"


@pytest.mark.slow
def test_a_worker_sweep_stopped_by_sigterm_and_by_ctrl_c_resumes_to_the_end(tmp_path):
    out = tmp_path / "runs"
    grid = ["--pools", "gap,gem", "--settings", "quick", "--seeds", "1,2", "--epochs", "2", "--jobs", "1", *SMALL]

    def stop_during_an_epoch(how: str, after_runs: int) -> tuple[int, str]:
        process = subprocess.Popen([sys.executable, "-m", "poolbench", "sweep", "--out", str(out), *grid],
                                   env=ENV, stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            finished = [f for f in out.glob("quick/*/seed*") if (f / "result.json").exists()]
            started = [f for f in out.glob("quick/*/seed*") if f not in finished and (f / "metrics.jsonl").exists()]
            if len(finished) >= after_runs and started:
                break
            time.sleep(0.05)
        if how == "sigterm":
            process.send_signal(signal.SIGTERM)  # to the sweep only (Slurm, timeout): it passes it on
        else:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the terminal sends it to every process of the group
        _, err = process.communicate(timeout=120)
        return process.returncode, err

    code, err = stop_during_an_epoch("sigterm", after_runs=1)
    assert code == 143, err
    assert "terminated (SIGTERM)" in err and f"`poolbench sweep {out}` resumes it" in err
    assert "Traceback" not in err
    code, err = stop_during_an_epoch("sigint", after_runs=2)
    assert code == 130, err
    assert "interrupted after" in err and "Traceback" not in err
    statuses = [rundir.status(folder) for folder in sorted(out.glob("quick/*/seed*"))]
    assert "completed" in statuses and "interrupted" in statuses and "running" not in statuses

    done = sweep(out)
    assert done.returncode == 0, done.stderr
    for folder in sorted(out.glob("quick/*/seed*")):
        assert rundir.summarize(folder).status == "completed"
        assert [r["epoch"] for r in epochs(folder)] == [1, 2]
        with rundir.RunLock(folder):  # no worker is left holding it
            pass


def _run(worker: Worker, folder: Path, *args: str) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    return worker.run(["-m", "poolbench", "run", "--setting", "quick", "--epochs", "1", "--seed", "5",
                       "--output-dir", str(folder), *SMALL, *args], folder / "stdout.log", folder / "stderr.log")


@pytest.mark.slow
def test_what_a_run_changes_does_not_reach_the_next_run_of_its_worker(tmp_path):
    (tmp_path / "leaky.py").write_text(LEAKY_POOL)
    (tmp_path / "patching.py").write_text(PATCHING_POOL)
    alone = subprocess.run([sys.executable, "-m", "poolbench", "run", "--setting", "quick", "--epochs", "1",
                            "--seed", "5", "--pool", "gap", *SMALL, "--output-dir", str(tmp_path / "alone")],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert alone.returncode == 0, alone.stderr

    worker = Worker(tmp_path, {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}, None)
    try:
        pid = worker.process.pid
        _run(worker, tmp_path / "leaky", "--pool", str(tmp_path / "leaky.py"), "--no-check")
        assert _run(worker, tmp_path / "after", "--pool", "gap") == 0
        assert epochs(tmp_path / "after") == epochs(tmp_path / "alone")
        assert json.loads((tmp_path / "after" / "result.json").read_text())["global_state_restored"] == []
        assert worker.alive() and worker.process.pid == pid  # what it changed was put back: the worker goes on

        assert _run(worker, tmp_path / "patched", "--pool", str(tmp_path / "patching.py"), "--no-check") == 0
        assert not worker.alive()  # a replaced torch function cannot be put back: the worker ended
        stderr = (tmp_path / "patched" / "stderr.log").read_text()
        assert "the worker ends after this run (the run replaced torch.nn.functional.relu)" in stderr
    finally:
        worker.close()


def test_a_run_another_sweep_starts_while_the_worker_starts_is_asked_again_and_not_run_twice(
        tmp_path, monkeypatch, capsys):
    import argparse

    from poolbench.cli import sweep_verb

    def sweep_here(*argv):  # in this process: the executor's Worker is the one patched below
        parser = argparse.ArgumentParser()
        sweep_verb.add_arguments(parser)
        return sweep_verb.main(parser.parse_args([str(a) for a in argv]))

    out = tmp_path / "runs"
    assert sweep_here("--pools", "gap", "--settings", "quick", "--seeds", "1", "--out", out, "--dry-run") == 0
    folder = out / "quick" / "gap" / "seed1"
    another_sweep = contextlib.ExitStack()
    ready = Worker.wait_ready

    def wait_ready(self):  # a new worker takes seconds to start; another sweep on the folder starts the run
        another_sweep.enter_context(rundir.RunLock(folder))
        return ready(self)

    monkeypatch.setattr(Worker, "wait_ready", wait_ready)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with another_sweep:
        assert sweep_here(out) == 0
    err = capsys.readouterr().err
    assert "0 completed, 0 diverged, 0 failed, 0 skipped (already done), 1 skipped (running elsewhere)" in err
    assert not (folder / "stderr.log").exists()  # the worker was never sent the run


def test_a_ctrl_c_that_comes_as_a_run_ends_ends_the_worker_after_its_answer_without_a_traceback(
        tmp_path, monkeypatch, capfd):
    # Ctrl-C reaches the worker while it cleans up after a run that completed (CI saw it in gc.collect).
    monkeypatch.setattr(workers.gc, "collect", lambda: os.kill(os.getpid(), signal.SIGINT))
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    seen = {}

    def run(argv):
        seen["handler"] = signal.getsignal(signal.SIGINT)  # the run's code gets the worker's handler
        return 0

    ours, theirs = workers.Pipe()
    ours.send(Request(["run"], str(tmp_path / "stdout.log"), str(tmp_path / "stderr.log")))
    replies = []

    def answer():  # the sweep's side: read the answers, then end the connection (so serve cannot wait)
        replies.extend([ours.recv(), ours.recv()])
        ours.close()

    reader = threading.Thread(target=answer)
    reader.start()
    try:
        code = workers.serve(os.dup(theirs.fileno()), run)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C reached the worker's own code as a KeyboardInterrupt")
    reader.join(10)
    theirs.close()
    assert replies == ["ready", Reply(0, "the run was interrupted")]  # the run's own code; the worker retires
    assert code == 130 and seen["handler"] is handlers[0]
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    err = capfd.readouterr().err  # pytest's sys.stderr: the worker's goes to the run's stderr.log
    assert "the worker ends after this run (the run was interrupted)" in err and "Traceback" not in err


def test_a_ctrl_c_while_a_worker_starts_ends_it_before_its_first_run_without_a_traceback(tmp_path, capfd):
    worker = Worker(tmp_path, {})
    try:
        time.sleep(0.3)  # Python starts and imports torch and poolbench
        os.kill(worker.process.pid, signal.SIGINT)
        code = worker.run(["-m", "poolbench", "--help"], tmp_path / "out.log", tmp_path / "err.log")
    finally:
        worker.close()
    assert code == 130 and worker.process.returncode == 130 and not worker.alive()
    assert not (tmp_path / "out.log").exists() and "Traceback" not in capfd.readouterr().err


def test_a_signal_held_before_the_run_starts_interrupts_it_at_once():
    before = signal.getsignal(signal.SIGINT)
    started = []
    with HeldSignals() as held:
        os.kill(os.getpid(), signal.SIGTERM)
        assert held.signals == [signal.SIGTERM] and held.exit_code() == 143
        with pytest.raises(Terminated), held.raising():
            started.append(True)
        os.kill(os.getpid(), signal.SIGINT)  # held again after the block, not raised
    assert started == [] and held.signals == [signal.SIGTERM, signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is before


def test_a_worker_runs_only_poolbench_commands():
    assert runs_in_a_worker(["-m", "poolbench", "run", "--setting", "quick"])
    assert not runs_in_a_worker(["fake_run.py", "--setting", "quick"])


@pytest.mark.parametrize("options, expected", [({}, True), ({"device": "cpu"}, True), ({"compile": True}, False)])
def test_worker_processes_are_for_cpu_runs_that_do_not_compile(tmp_path, options, expected):
    from poolbench.storage.sweepdir import Sweep

    assert ex.in_worker_processes(Sweep(tmp_path, {"gap": "gap"}, ["quick"], [1], {}, options)) is expected
