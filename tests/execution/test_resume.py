"""A run killed with SIGKILL at random moments and resumed ends exactly like an uninterrupted one."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

EPOCHS = 3
# ResNet-8 (about 2 s an epoch on one thread): the interruption points below are in epochs and
# startup, whatever the model, and a smaller one leaves more runs per minute of the suite.
COMMAND = [sys.executable, "-m", "poolbench", "run", "--arch", "resnet8", "--dataset", "digits",
           "--pool", "gem", "--epochs", str(EPOCHS), "--batch-size", "128", "--seed", "7"]
# One thread each: identical float reductions in both runs, and no fight over the 2 cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def default_sigint() -> None:
    # A suite started in the background of a non-interactive shell inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: give the child Ctrl-C's usual meaning.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(out_dir: Path) -> subprocess.Popen:
    return subprocess.Popen([*COMMAND, "--output-dir", str(out_dir)], env=ENV, preexec_fn=default_sigint,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def epochs_done(out_dir: Path) -> int:
    path = out_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def comparable(out_dir: Path) -> tuple[list, dict]:
    records = [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]
    for record in records:
        del record["epoch_time_s"]  # wall time is the one thing allowed to differ
    result = json.loads((out_dir / "result.json").read_text())
    keys = ("status", "best_test_acc", "best_epoch", "final_test_acc", "epochs_completed", "num_params")
    return records, {k: result[k] for k in keys}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    uninterrupted = start(straight)  # trains beside the interrupted one (one thread each)

    rng = random.Random()
    seed = rng.randrange(10**6)
    rng.seed(seed)
    interrupted = tmp_path / "interrupted"
    kills = []
    # Kill 1: mid-epoch 2, a moment after epoch 1's checkpoint. Kill 2: anywhere, startup included.
    process = start(interrupted)
    deadline = time.time() + 300
    while epochs_done(interrupted) < 1 and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    process.send_signal(signal.SIGKILL)
    process.wait()
    kills.append(epochs_done(interrupted))
    process = start(interrupted)
    time.sleep(rng.uniform(0.0, 6.0))
    process.send_signal(signal.SIGKILL)
    process.wait()
    kills.append(epochs_done(interrupted))
    assert not (interrupted / "result.json").exists() or kills[-1] == EPOCHS

    process = start(interrupted)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()
    printed_epochs = [int(line.split()[1].split("=")[1]) for line in out.splitlines()
                      if line.startswith("TRAIN_METRICS")]
    if printed_epochs:  # else the second start had already finished the run
        # A resumed run reprints the epochs before the interruption: stdout holds the whole run.
        assert "resumed from" in err and printed_epochs == list(range(1, EPOCHS + 1))
    assert out.strip().splitlines()[-1].startswith("TEST_METRICS: test_acc=")
    assert comparable(interrupted) == comparable(straight), f"random seed {seed}, epochs at kills {kills}"


def test_ctrl_c_keeps_the_checkpoint_and_says_how_to_resume(tmp_path):
    out_dir = tmp_path / "run"
    process = start(out_dir)
    deadline = time.time() + 300
    while epochs_done(out_dir) < 1 and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "run the same command again to resume" in err.strip().splitlines()[-1]
    assert (out_dir / "checkpoint.pt").exists() and not (out_dir / "result.json").exists()
