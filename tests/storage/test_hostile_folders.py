"""Folders as a careless user or a colleague's copy brings them: hand-edited and damaged run files,
report targets that must not be replaced, sweeps and reports pointed into a run's folder. Each is
one line naming the problem and the fix, exit 2, nothing written where it should not be, or it is
read as *unreadable* like a damaged result.json."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import pytest
from run_folders import QUICK, run_report, write_run, write_sweep

from poolbench.analysis import sweep_analysis
from poolbench.cli import status_verb as status_cli
from poolbench.cli import sweep_verb as sweep_cli
from poolbench.core.outcomes import RunStatus
from poolbench.storage import rundir


def one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    write_sweep(root, {"quick": QUICK})
    (root / "sweep.json").write_text(json.dumps({"pools": {p: p for p in QUICK}, "settings": ["quick"],
                                                 "seeds": [42, 123, 456], "overrides": {"epochs": 3},
                                                 "options": {}}))
    return root


# --- a damaged config.json is unreadable, never a crash ---------------------------------------------

def _drop_protocol(config: dict) -> None:
    del config["protocol"]


DAMAGED_CONFIGS = {
    "unknown protocol key": lambda config: config["protocol"].update(warmup_epochs=5),
    "no protocol": _drop_protocol,
    "text for a number": lambda config: config["protocol"].update(epochs="three"),
    "impossible value": lambda config: config["protocol"].update(lr=-1),
    "config is a list": lambda config: config.clear() or config.update(setting=[1, 2]),
}


@pytest.mark.parametrize("damage", DAMAGED_CONFIGS)
def test_a_damaged_config_makes_its_run_unreadable_in_report_and_status(sweep_dir, capsys, damage):
    path = sweep_dir / "quick" / "gem" / "seed42" / "config.json"
    stored = json.loads(path.read_text())
    DAMAGED_CONFIGS[damage](stored["config"])
    path.write_text(json.dumps(stored))
    summary = rundir.summarize(path.parent)
    assert summary.status == RunStatus.UNREADABLE and "config.json is damaged" in (summary.problem or "")
    report = sweep_analysis.build_report(sweep_dir)
    gem = next(r for r in report.rows["quick"] if r.pool == "gem")
    assert 42 not in gem.values and gem.unreadable == [42] and set(gem.values) == {123, 456}
    assert run_report(sweep_dir) == 0
    assert "1 unreadable" in capsys.readouterr().out
    parser = argparse.ArgumentParser()
    status_cli.add_arguments(parser)
    assert status_cli.main(parser.parse_args([str(sweep_dir)])) == 0
    assert "1 unreadable" in capsys.readouterr().out


# --- report --output: what it must not replace --------------------------------------------------------

def test_report_output_refuses_a_pipe_and_a_link_to_a_device(sweep_dir, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    device = tmp_path / "null.md"
    device.symlink_to("/dev/null")
    for target in (fifo, device):
        assert run_report(sweep_dir, "--output", str(target), "--format", "md") == 2
        assert "is not a regular file" in one_error(capsys.readouterr().err)
    assert fifo.is_fifo() and device.is_symlink() and os.readlink(device) == "/dev/null"


def test_report_output_through_a_symlink_writes_its_target_and_keeps_the_link(sweep_dir, tmp_path, capsys):
    real = tmp_path / "shared" / "report.csv"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "report.csv"
    link.symlink_to(real)
    assert run_report(sweep_dir, "--output", str(link)) == 0
    assert link.is_symlink() and real.read_text().startswith("setting,")


@pytest.mark.parametrize("name", ["sweep.json", "quick/gap/seed42/report.md"])
def test_report_output_refuses_the_sweeps_own_files(sweep_dir, capsys, name):
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()}
    assert run_report(sweep_dir, "--output", str(sweep_dir / name), "--format", "md") == 2
    line = one_error(capsys.readouterr().err)
    assert "sweep's own sweep.json" in line or "is in the run folder" in line
    assert {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("flag, value", [("--detect", "1e308"), ("--detect", "nan"), ("--detect", "0"),
                                         ("--margin", "1e308"), ("--margin", "-1"), ("--margin", "nan")])
def test_report_refuses_differences_no_accuracy_can_have(sweep_dir, capsys, flag, value):
    assert run_report(sweep_dir, flag, value) == 2
    assert flag in one_error(capsys.readouterr().err)


# --- sweep --out inside a run folder --------------------------------------------------------------

def test_a_sweep_inside_a_run_folder_is_refused_before_writing(tmp_path, capsys):
    run = write_run(tmp_path / "runs", "quick", "gap", 42, 90.0, epochs=3)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for out in (run, run / "sub"):
        parser = argparse.ArgumentParser()
        sweep_cli.add_arguments(parser)
        assert sweep_cli.main(parser.parse_args(["--pools", "gap", "--seeds", "1", "--out", str(out)])) == 2
        assert "is in the run folder" in one_error(capsys.readouterr().err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
