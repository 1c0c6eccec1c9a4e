"""The protocol's command-line flags are made from Protocol's fields: adding a field is one edit,
and it reaches `poolbench run`, `poolbench sweep` and the command a sweep gives each of its runs."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from poolbench.cli import build_parser
from poolbench.cli.flags import add_protocol_arguments, protocol_overrides
from poolbench.core.settings import Protocol
from poolbench.execution.sweep_runner import PROTOCOL_FLAGS, protocol_flags, run_arguments
from poolbench.storage.sweepdir import Sweep

FIELDS = {f.name for f in dataclasses.fields(Protocol)}


def protocol_dests(parser: argparse.ArgumentParser) -> set[str]:
    group = next(g for g in parser._action_groups if (g.title or "").startswith("protocol overrides"))
    return {action.dest for action in group._group_actions}


def test_every_protocol_field_is_a_flag_of_run_and_sweep():
    verbs = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(PROTOCOL_FLAGS) == FIELDS
    assert protocol_dests(verbs["run"]) == FIELDS
    assert protocol_dests(verbs["sweep"]) == FIELDS
    assert PROTOCOL_FLAGS["batch_size"] == "--batch-size" and PROTOCOL_FLAGS["weight_decay"] == "--weight-decay"


def test_a_sweeps_overrides_reach_its_runs_unchanged():
    overrides = {"epochs": 3, "batch_size": 64, "lr": 0.05, "momentum": 0.8, "weight_decay": 1e-4,
                 "nesterov": True, "crop_padding": 2, "hflip": False, "image_size": 48, "val_split": 100}
    assert set(overrides) == FIELDS  # every field, a bool set each way
    sweep = Sweep(Path("/sweep"), {"gap": "gap"}, ["quick"], [1], overrides)
    arguments = run_arguments(sweep, sweep.runs()[0])
    assert arguments[:3] == ["-m", "poolbench", "run"] and "--no-hflip" in arguments and "--nesterov" in arguments
    assert protocol_overrides(build_parser().parse_args(arguments[2:])) == overrides


def test_a_new_protocol_field_becomes_a_flag_without_another_edit():
    @dataclasses.dataclass(frozen=True)
    class Longer(Protocol):
        label_smoothing: float = 0.0
        mixup: bool = False

    parser = argparse.ArgumentParser()
    add_protocol_arguments(parser, Longer)
    args = parser.parse_args(["--label-smoothing", "0.1", "--no-mixup", "--epochs", "2"])
    given = {k: v for k, v in protocol_overrides(args, Longer).items() if v is not None}
    assert given == {"epochs": 2, "label_smoothing": 0.1, "mixup": False}
    assert set(protocol_overrides(args, Longer)) == FIELDS | {"label_smoothing", "mixup"}
    assert protocol_flags(Longer)["label_smoothing"] == "--label-smoothing"
    assert Protocol().replace(**protocol_overrides(parser.parse_args([]))) == Protocol()
