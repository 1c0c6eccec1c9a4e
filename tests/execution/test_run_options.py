"""A run's options are made from RunOptions' fields: adding one is one field, and it reaches
`poolbench run`, `poolbench sweep` and the command a sweep gives each of its runs."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from poolbench.cli import build_parser
from poolbench.cli.flags import add_option_arguments
from poolbench.execution.option_fields import flags, option, values
from poolbench.execution.run_options import PASSED_ON, RUN_FLAGS, RunOptions, identity, passed_on_arguments
from poolbench.execution.sweep_runner import run_arguments
from poolbench.storage.sweepdir import Sweep


def verb(name: str) -> argparse.ArgumentParser:
    return next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def flag_names(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    return {action.dest: action.option_strings for action in parser._actions}


def test_every_option_is_a_flag_of_run_and_the_passed_on_ones_of_sweep():
    run, sweep = flag_names(verb("run")), flag_names(verb("sweep"))
    for flag in RUN_FLAGS:
        assert run[flag.name] == [flag.flag]
    assert {flag.name for flag in PASSED_ON} == {f.name for f in RUN_FLAGS} - {"check"}
    for flag in PASSED_ON:
        assert sweep[flag.name] == [flag.flag]
    assert "check" not in sweep  # a sweep checks each pooling once itself
    assert {flag.name for flag in RUN_FLAGS if flag.identity} == {"amp", "compile"}


def test_run_defaults_are_the_fields_and_sweep_leaves_every_option_unset():
    run = verb("run").parse_args(["--setting", "quick"])
    assert RunOptions(**values(RunOptions, run)) == RunOptions()
    sweep = verb("sweep").parse_args(["--out", "x"])
    assert {flag.name: getattr(sweep, flag.name) for flag in PASSED_ON} == dict.fromkeys(f.name for f in PASSED_ON)


def test_a_sweeps_options_reach_its_runs_as_the_flags_of_today():
    options = {"data_root": "/data", "device": "cpu", "amp": "bf16", "compile": True, "download": False,
               "threads": 2, "deterministic": True, "log": "tensorboard"}
    assert set(options) == {flag.name for flag in PASSED_ON}  # every one, each away from its default
    sweep = Sweep(Path("/sweep"), {"gap": "gap"}, ["quick"], [1], {}, options)
    arguments = run_arguments(sweep, sweep.runs()[0])
    assert arguments[arguments.index("--data-root"):] == [
        "--data-root", "/data", "--device", "cpu", "--amp", "bf16", "--compile", "--no-download",
        "--threads", "2", "--deterministic", "--log", "tensorboard"]
    given = values(RunOptions, verb("run").parse_args(arguments[3:]))
    assert {name: given[name] for name in options} == options
    assert identity(given) == {"amp": "bf16", "compile": True}


def test_options_at_their_defaults_or_unset_give_no_flag():
    assert passed_on_arguments({}) == []
    assert passed_on_arguments({"download": True, "compile": False, "deterministic": None, "threads": None}) == []
    assert passed_on_arguments({"amp": "none"}) == ["--amp", "none"]  # given: passed on as given


def test_a_new_option_becomes_a_flag_of_run_and_sweep_without_another_edit():
    @dataclasses.dataclass(frozen=True)
    class More(RunOptions):
        prefetch: int | None = option(None, "--prefetch", "batches loaded ahead", sweep="of every run", metavar="N")
        pin_memory: bool = option(False, "--pin-memory", "pinned host memory", sweep="every run pins")
        profile: bool = option(True, "--no-profile", "no profiler")  # run only

    run, sweep = argparse.ArgumentParser(), argparse.ArgumentParser()
    add_option_arguments(run, More)
    add_option_arguments(sweep, More, sweep=True)
    given = run.parse_args(["--prefetch", "4", "--pin-memory", "--no-profile", "--threads", "1"])
    assert More(**values(More, given)) == More(prefetch=4, pin_memory=True, profile=False, threads=1)
    with_sweep = sweep.parse_args(["--prefetch", "2", "--pin-memory"])
    assert (with_sweep.prefetch, with_sweep.pin_memory) == (2, True) and not hasattr(with_sweep, "profile")
    new = {flag.name: flag for flag in flags(More)}
    assert new["prefetch"].arguments(2) + new["pin_memory"].arguments(True) == ["--prefetch", "2", "--pin-memory"]
    assert "--no-profile" in run.format_help() and "--no-profile" not in sweep.format_help()
