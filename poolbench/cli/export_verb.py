"""``poolbench export``: a sweep folder as two tidy tables, one row per run and one row per epoch.

    poolbench export runs/diagnostics --output runs.csv      # runs.csv and runs-epochs.csv
    poolbench export runs/diagnostics --output runs.parquet  # needs pyarrow
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.outcomes import ExitCode
from ..render.export import EPOCH_COLUMNS, RUN_COLUMNS, epochs_path, tables, to_csv, to_parquet
from ..storage import rundir
from ..storage.sweep_runs import ReportError
from . import say

FORMATS = ("csv", "parquet")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", help="sweep folder")
    parser.add_argument("--output", required=True, metavar="PATH",
                        help="the runs table; the epochs table goes beside it as <stem>-epochs.<format>")
    parser.add_argument("--format", choices=FORMATS, help="default: from the --output suffix (csv if none)")


def main(args: argparse.Namespace) -> int:
    """0; 2 on a user error (nothing written); 74 when the disk refuses the tables."""
    output = Path(args.output)
    fmt = args.format or (output.suffix.lstrip(".") if output.suffix.lstrip(".") in FORMATS else "csv")
    epochs_output = epochs_path(output, fmt)
    try:
        if output.is_dir() or not output.parent.is_dir():
            raise ReportError(f"--output {output} must be a file in an existing folder: e.g. {Path(args.folder)}.csv")
        if rundir.enclosing_run(output.parent) is not None:
            raise ReportError(f"--output {output} is in a run folder: write the tables beside the sweep")
        runs, epochs = tables(args.folder)
        if fmt == "parquet":
            try:
                contents = [to_parquet(runs, RUN_COLUMNS), to_parquet(epochs, EPOCH_COLUMNS)]
            except ImportError:
                raise ReportError("--format parquet needs pyarrow: pip install pyarrow, or use --format csv") from None
        else:
            contents = [to_csv(runs, RUN_COLUMNS).encode(), to_csv(epochs, EPOCH_COLUMNS).encode()]
    except ReportError as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    try:
        for path, content in zip((output, epochs_output), contents, strict=True):
            rundir.atomic_write_bytes(path, content)
    except OSError as error:
        say(f"error: cannot write {error.filename or output}: {error.strerror or error}; free space or choose "
            "another --output")
        return ExitCode.DISK
    say(f"wrote {output} ({len(runs)} runs) and {epochs_output} ({len(epochs)} epochs)")
    return ExitCode.COMPLETED
