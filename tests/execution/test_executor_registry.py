"""The executors are one registry (poolbench.execution.executor_registry): `--executor`'s choices, the
executors' own flags and the sweep's dispatch are read from it, so a new executor is one entry."""

from __future__ import annotations

import argparse
import dataclasses

from poolbench.cli import sweep_verb
from poolbench.core.outcomes import RunStatus
from poolbench.execution import executor_registry
from poolbench.execution.executor_registry import EXECUTORS, Executor
from poolbench.execution.option_fields import flags, option
from poolbench.execution.sweep_runner import Outcome


def sweep_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    sweep_verb.add_arguments(parser)
    return parser


def test_executor_choices_and_flags_come_from_the_registry():
    parser = sweep_parser()
    executor = next(a for a in parser._actions if a.dest == "executor")
    assert executor.choices == ["local", "ray", "slurm"] == list(EXECUTORS) and executor.default == "local"
    assert executor.help.startswith("local: this machine (default;") and "; slurm: one Slurm job array" in executor.help
    dests = {a.dest: a.option_strings for a in parser._actions}
    for entry in EXECUTORS.values():
        for flag in flags(entry.flags):
            assert dests[flag.name] == [flag.flag, *flag.aliases]
    slurm = next(g for g in parser._action_groups if g.title == "slurm")
    assert {a.dest for a in slurm._group_actions} == {f.name for f in flags(EXECUTORS["slurm"].flags)}
    assert dests["wait"] == ["--no-wait", "--detach"] and parser.parse_args(["--detach"]).wait is False


def test_a_new_executor_is_one_registry_entry(tmp_path, monkeypatch, capsys):
    @dataclasses.dataclass(frozen=True)
    class InlineFlags:
        inline_label: str | None = option(None, "--inline-label", "what the runs are called here")

    started = []

    def run_inline(sweep, todo, jobs, report, flags, note):
        started.append((len(todo), jobs, flags.inline_label))
        for run in todo:
            report(Outcome(run, RunStatus.COMPLETED, 50.0))
        return True

    entry = Executor("runs reported as they are planned", run_inline, InlineFlags, jobs=2)
    monkeypatch.setitem(executor_registry.EXECUTORS, "inline", entry)
    args = sweep_parser().parse_args(["--pools", "gap", "--seeds", "1,2", "--out", str(tmp_path / "runs"),
                                      "--executor", "inline", "--inline-label", "here"])
    assert sweep_verb.main(args) == 0
    assert started == [(2, 2, "here")]
    err = capsys.readouterr().err
    assert "2 to run (inline, 2 at a time)" in err and "2 completed" in err
