"""A run's options: where its data is, on which device, with which checks, and the two options
that change its numbers (mixed precision, torch.compile), each declared once as a field of
:class:`RunOptions` with its flag (poolbench.execution.option_fields).

``poolbench run``'s flags, ``poolbench sweep``'s flags (those a sweep passes on to each run, kept
in its sweep.json's options) and the command line a sweep gives each run are all made from these
fields: adding an option is one field here, plus the code that uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.precision import AMP_DTYPES
from ..storage.tracking import TRACKERS
from ..storage.tracking import parse as parse_trackers
from .option_fields import flags, option


@dataclass(frozen=True)
class RunOptions:
    """How a run is executed. Its results are determined by its RunConfig; these only say how to
    get them here, save the ``identity`` ones (amp, compile), which the run records in its RunConfig
    (``cli.run_verb.run_config_from_args`` copies them there, and the run reads them there).

    The fields' order is the order of their flags in the command a sweep gives each run.
    """

    data_root: str | None = option(
        None, "--data-root", "data folder (default: $POOLBENCH_DATA or the user cache dir)",
        sweep="data folder given to every run")
    device: str = option(
        "auto", "--device", "auto (CUDA if present), cpu, cuda, cuda:1, ...",
        sweep="device given to every run (default: the run's, auto)")
    amp: str = option(
        "none", "--amp", "mixed precision (default none: the published protocol is float32)",
        sweep="mixed precision of every run (default none: the published protocol is float32)",
        choices=tuple(AMP_DTYPES), identity=True)
    compile: bool = option(
        False, "--compile", "torch.compile the model (CUDA graphs on CUDA); falls back with a warning",
        sweep="every run torch.compiles its model (see `poolbench run --compile`)", identity=True)
    download: bool = option(
        True, "--no-download", "never try to download a missing data set",
        sweep="runs never try to download a missing data set")
    # Not passed on by a sweep: it checks each pooling once itself before its runs (refused.json).
    check: bool = option(True, "--no-check", "train even if the pooling fails the contract check")
    threads: int | None = option(
        None, "--threads", "CPU threads for torch (default: $OMP_NUM_THREADS, else all cores); on a busy "
                           "or shared machine use 1 (see docs/running.md)",
        sweep="CPU threads of each run (default: $OMP_NUM_THREADS if set, else cores / jobs)", metavar="N")
    deterministic: bool = option(
        False, "--deterministic", "bit-for-bit reproducible CUDA runs: deterministic algorithms, no cuDNN "
                                  "autotuning (slower); CPU runs are reproducible without it",
        sweep="bit-for-bit reproducible CUDA runs (see `poolbench run --help`)")
    log: str | None = option(
        None, "--log", f"also log epochs, configuration and result to experiment trackers: comma-separated "
                       f"{', '.join(TRACKERS)} (optional extras; see docs/running.md)",
        sweep=f"every run also logs to these experiment trackers: comma-separated {', '.join(TRACKERS)}, or none "
              f"(see docs/running.md)", metavar="TRACKERS")
    command: tuple[str, ...] = ()  # the command line, recorded in config.json (no flag)

    @property
    def trackers(self) -> tuple[str, ...]:
        """The experiment trackers of ``--log`` (poolbench.storage.tracking; the verbs refuse a bad list
        before the run starts)."""
        return parse_trackers(self.log)


RUN_FLAGS = flags(RunOptions)
#: The options a sweep passes on to each of its runs (sweep.json's options by these names).
PASSED_ON = [flag for flag in RUN_FLAGS if flag.sweep_help is not None]


def identity(values: dict[str, Any]) -> dict[str, Any]:
    """The options of ``values`` (field -> value) that are part of what a run is (RunConfig's amp, compile)."""
    return {flag.name: values[flag.name] for flag in RUN_FLAGS if flag.identity}


def passed_on_arguments(options: dict[str, Any]) -> list[str]:
    """The flags that give a run the sweep's ``options`` (sweep.json's), in RunOptions' order: a value
    the sweep left unset, or a switch at its default, gives none (the run's own default)."""
    return [argument for flag in PASSED_ON for argument in flag.arguments(options.get(flag.name))]
