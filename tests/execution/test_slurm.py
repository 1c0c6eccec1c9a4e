"""`sweep --executor slurm` (poolbench.execution.slurm): the submission script Slurm would get, the
refusals, and the array run by submitit's local executor (real processes, real signals), requeue
included. Fast tests start the stand-in run of test_sweep; the end-to-end test trains for real.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_sweep import fake_run, sweep, trainings  # noqa: F401 - fake_run is a fixture

from poolbench.cli import status_verb as status_cli
from poolbench.execution import slurm, slurm_jobs
from poolbench.storage.rundir import read_jsonl

SLURM_FLAGS = ("--executor", "slurm", "--slurm-partition", "gpu", "--slurm-time", "1:30:00",
               "--slurm-gpus-per-node", "1", "--slurm-cpus-per-task", "8", "--slurm-mem", "16G",
               "--slurm-extra", "account=proj", "--slurm-extra", "constraint=a100")


@pytest.fixture
def local_cluster(monkeypatch):
    """The array runs on submitit's local executor: a process per job, signals and requeue as on Slurm."""
    monkeypatch.setenv(slurm.CLUSTER_VARIABLE, "local")


def sbatch_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH ")]


def test_the_submission_script_has_the_flags_and_a_resumed_sweep_reuses_them(tmp_path, capsys):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap,gem", "--seeds", "1", "--out", out, "--jobs", "1", *SLURM_FLAGS, "--dry-run") == 0
    lines = sbatch_lines(capsys.readouterr().out)
    for expected in ("--partition=gpu", "--time=90", "--gpus-per-node=1", "--cpus-per-task=8", "--mem=16G",
                     "--array=0-1%1", "--account=proj", "--constraint=a100", "--signal=USR2@120"):
        assert f"#SBATCH {expected}" in lines, lines
    options = json.loads((out / "sweep.json").read_text())["options"]
    assert options["slurm_partition"] == "gpu" and options["slurm_additional_parameters"]["account"] == "proj"

    # The same folder again, no --slurm-* flags, another --jobs and one more seed: the stored resources.
    assert sweep(out, "--seeds", "2", "--executor", "slurm", "--jobs", "3", "--dry-run") == 0
    again = sbatch_lines(capsys.readouterr().out)
    assert "#SBATCH --array=0-3%3" in again  # 4 runs, 3 at a time
    assert [line for line in again if "--array" not in line] == [line for line in lines if "--array" not in line]


@pytest.mark.parametrize("argv, message", [
    (("--slurm-time", "soon"), "--slurm-time 'soon' is not a time limit"),
    (("--slurm-mem", "16GB"), "--slurm-mem '16GB' is not a size"),
    (("--slurm-extra", "=proj"), "--slurm-extra '=proj' is not an #SBATCH option"),
    (("--slurm-cpus-per-task", "0"), "--slurm-cpus-per-task must be >= 1"),
])
def test_bad_slurm_flags_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "runs"
    assert sweep("--pools", "gap", "--out", out, "--executor", "slurm", *argv, "--dry-run") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_without_submitit_the_slurm_executor_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    assert sweep("--pools", "gap", "--out", tmp_path / "runs", "--executor", "slurm") == 2
    assert capsys.readouterr().err == ('error: --executor slurm needs submitit, an optional extra: '
                                       'pip install "poolbench[slurm]"\n')
    assert not (tmp_path / "runs").exists()


def test_without_slurm_commands_the_sweep_is_refused_before_writing(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(slurm.CLUSTER_VARIABLE, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    assert sweep("--pools", "gap", "--out", tmp_path / "runs", "--executor", "slurm") == 2
    err = capsys.readouterr().err
    assert "needs Slurm's sbatch and srun on PATH" in err and slurm.CLUSTER_VARIABLE in err
    assert not (tmp_path / "runs").exists()


def test_slurm_time_forms():
    assert [slurm.parse_time(t) for t in ("90", "90:30", "1:30:00", "2-12", "2-00:30:00")] == [90, 91, 90, 3600, 2910]
    for bad in ("0", "1:2:3:4", "x", "-5"):
        with pytest.raises(ValueError, match="is not a time limit"):
            slurm.parse_time(bad)


def job_process(controller: int, timeout: float = 120.0) -> int:
    """The pid of the task process that submitit's local controller (the job id) started."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise AssertionError(f"job {controller} started no task")


def interrupt_after_first_epoch(out: Path, run: str, timeout: float = 300.0) -> threading.Thread:
    """In the background: once ``run`` has finished its first epoch, send its job SIGUSR2, as Slurm does
    before a time limit or on preemption (submitit's signal)."""
    def watch() -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            jobs = slurm_jobs.recorded_jobs(out) if (out / slurm_jobs.JOBS_FILE).exists() else {}
            if run in jobs and len(read_jsonl(out / run / "metrics.jsonl")) >= 1:
                os.kill(job_process(int(jobs[run]["job_id"])), signal.SIGUSR2)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def requeued(out: Path, run: str) -> bool:
    """submitit's own log of the run's job says it was checkpointed and requeued."""
    job = slurm_jobs.recorded_jobs(out)[run]["job_id"]
    return any("Requeued job" in log.read_text() for log in (out / slurm.SLURM_DIR / job).glob("*_log.*"))


def test_local_array_runs_the_grid_records_jobs_and_requeues_an_interrupted_run(fake_run, local_cluster,  # noqa: F811
                                                                                tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_RUN_SLEEP", "1.5")  # each epoch of the stand-in: room to interrupt epoch 2
    out = tmp_path / "runs"
    watcher = interrupt_after_first_epoch(out, "quick/gem/seed1")
    assert sweep("--pools", "gap,gem", "--seeds", "1", "--epochs", "3", "--out", out, "--executor", "slurm",
                 "--jobs", "2") == 0
    watcher.join()
    err = capsys.readouterr().err
    assert "2 completed, 0 diverged, 0 failed" in err and "submitted quick/gap/seed1 (job " in err
    gem = [t for t in trainings(fake_run) if Path(t["run"]).parent.name == "gem"]
    assert [t["resumed_at"] for t in gem] == [0, 1]  # stopped in epoch 2, requeued, resumed after epoch 1
    assert [r["epoch"] for r in read_jsonl(out / "quick" / "gem" / "seed1" / "metrics.jsonl")] == [1, 2, 3]
    assert requeued(out, "quick/gem/seed1")

    jobs = slurm_jobs.recorded_jobs(out)
    assert sorted(jobs) == ["quick/gap/seed1", "quick/gem/seed1"]
    assert status_cli.main(status_cli.argparse.Namespace(folder=str(out), json=True)) == 0
    document = json.loads(capsys.readouterr().out)
    assert {(row["run"], row["job_id"], row["state"]) for row in document["jobs"]} == {
        (name, job["job_id"], "completed") for name, job in jobs.items()}


def comparable(run_dir: Path) -> list[dict]:
    records = read_jsonl(run_dir / "metrics.jsonl")
    return [{k: v for k, v in record.items() if k != "epoch_time_s"} for record in records]


@pytest.mark.slow
def test_end_to_end_local_array_with_a_requeue_ends_like_an_uninterrupted_run(local_cluster, tmp_path, capsys):
    out = tmp_path / "runs"
    watcher = interrupt_after_first_epoch(out, "quick/gem/seed1")
    # 16x16 images: a requeue needs an epoch to stop in, not the protocol's image size.
    assert sweep("--pools", "gap,gem", "--seeds", "1", "--epochs", "2", "--threads", "1", "--image-size", "16",
                 "--out", out, "--executor", "slurm", "--jobs", "1") == 0
    watcher.join()
    assert "2 completed, 0 diverged, 0 failed" in capsys.readouterr().err
    gem = out / "quick" / "gem" / "seed1"
    assert requeued(out, "quick/gem/seed1") and (gem / "stdout.log.1").exists()  # two attempts

    straight = tmp_path / "straight"
    command = [sys.executable, "-m", "poolbench", "run", "--setting", "quick", "--pool", "gem", "--seed", "1",
               "--epochs", "2", "--threads", "1", "--image-size", "16", "--output-dir", str(straight)]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    assert comparable(gem) == comparable(straight)

    from poolbench.analysis.sweep_analysis import build_report
    from poolbench.render.report import to_markdown

    assert "Final metrics (quick): test_acc_quick=" in to_markdown(build_report(out))


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2])
def test_slurms_user_signals_stop_a_run_like_sigterm(signum):
    from poolbench.execution.signals import Terminated, sigterm_as_interrupt

    with pytest.raises(Terminated), sigterm_as_interrupt():
        os.kill(os.getpid(), signum)
        time.sleep(5)  # the handler raises here, at once
    assert signal.getsignal(signum) == signal.SIG_DFL  # restored on the way out


def test_no_wait_submits_one_array_records_its_jobs_and_status_shows_the_queue(tmp_path, monkeypatch, capsys):
    """Submission through submitit's SlurmExecutor against stand-ins of sbatch, srun and squeue."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {"sbatch": f'cp "$1" {tmp_path}/submitted.sh; echo "Submitted batch job 4242"',
             "srun": "exit 0", "squeue": 'echo "4242_0 RUNNING"; echo "4242_1 PENDING"'}
    for name, body in tools.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(slurm.CLUSTER_VARIABLE, raising=False)
    out = tmp_path / "runs"
    assert sweep("--pools", "gap,gem", "--seeds", "1", "--out", out, "--jobs", "1", *SLURM_FLAGS, "--no-wait") == 0
    err = capsys.readouterr().err
    assert "submitted job array 4242 (2 runs, 1 at a time)" in err and f"poolbench status {out}" in err
    lines = sbatch_lines((tmp_path / "submitted.sh").read_text())
    assert "#SBATCH --array=0-1%1" in lines and "#SBATCH --partition=gpu" in lines
    assert {name: job["job_id"] for name, job in slurm_jobs.recorded_jobs(out).items()} == {
        "quick/gap/seed1": "4242_0", "quick/gem/seed1": "4242_1"}

    assert status_cli.main(status_cli.argparse.Namespace(folder=str(out), json=False)) == 0
    table = capsys.readouterr().out.split("jobs (--executor slurm)", 1)[1]
    assert "| quick/gap/seed1 | 4242_0 | running |" in table and "| quick/gem/seed1 | 4242_1 | pending |" in table
