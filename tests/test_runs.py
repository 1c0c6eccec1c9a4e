"""Run folder files: atomic writes, the run lock, status, RunConfig round trip."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from poolbench.rundir import (
    RunConfig,
    RunLock,
    RunLockedError,
    is_locked,
    read_jsonl,
    status,
    write_json,
    write_jsonl,
)
from poolbench.settings import Protocol


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
        "import sys, time; from poolbench.rundir import RunLock; RunLock(sys.argv[1]).acquire(); "
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
