"""``poolbench report``: the statistics, verdict and plots of a sweep folder, as Markdown, HTML or CSV.

    poolbench report runs/demo
    poolbench report runs/laptop runs/gpu-box lab2-runs.csv   # one report of several inputs (poolbench.render.merge)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analysis.levels import MARGIN
from ..analysis.sweep_analysis import SCORES, SweepAnalysis, build_report
from ..analysis.variants import VariantsAnalysis, build_variants_report, has_variants
from ..core.outcomes import ExitCode
from ..execution.sweep_runner import split_list
from ..render.export import epochs_path
from ..render.merge import TABLE_SUFFIXES, gather
from ..render.report import (
    plots,
    to_csv,
    to_html,
    to_markdown,
    variants_to_csv,
    variants_to_html,
    variants_to_markdown,
)
from ..storage import rundir
from ..storage.sweep_runs import ReportError
from ..storage.sweepdir import REFUSED_FILE, SWEEP_FILE
from . import say

FORMATS = ("md", "html", "csv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", metavar="DIR", nargs="+",
                        help="sweep folder; several folders and tables written by `poolbench export` make one "
                             "report, each run once (the same setting, pooling, protocol and seed are one run)")
    parser.add_argument("--format", choices=list(FORMATS),
                        help="default: from the --output suffix, else md")
    parser.add_argument("--output", metavar="FILE", help="write the report to FILE (default: stdout)")
    parser.add_argument("--baseline", help="pooling the others are compared with, paired by seed "
                                           "(default gap)")
    parser.add_argument("--detect", type=float, metavar="D",
                        help="seed planning: also give the seeds a difference of D accuracy points needs")
    parser.add_argument("--margin", type=float, default=MARGIN, metavar="M",
                        help="the no-trade-off check's non-inferiority margin in accuracy points: not worse than "
                             f"the best baseline means the one-sided 95%% lower bound is above -M (default {MARGIN:g})")
    parser.add_argument("--score", default="best", metavar="|".join(SCORES),
                        help="which score of each run the tables hold: best (the protocol's, default), final "
                             "(last epoch) or val (test accuracy at the epoch best on held-out images; needs runs "
                             "made with --val-split N)")
    parser.add_argument("--seeds", metavar="LIST",
                        help="only the runs of these comma-separated seeds, e.g. to check a claim on held-out seeds")


def main(args: argparse.Namespace) -> int:
    """0, or 2 on a user error (nothing is written then), or 1 when the report cannot be written."""
    output = Path(args.output) if args.output else None
    fmt = args.format or (output.suffix.lstrip(".").replace("markdown", "md") if output else "md")
    try:
        if output is not None and output.is_dir():
            raise ReportError(f"--output {output} is a folder: give a file name, e.g. {output / 'report.html'}")
        if fmt not in FORMATS:
            raise ReportError(f"cannot tell the format of {output}: add --format md|html|csv")
        if output is not None and not output.parent.is_dir():
            raise ReportError(f"folder {output.parent} of --output does not exist: create it first")
        folders = [Path(folder) for folder in args.folder]
        if output is not None:
            output = _output_file(output, folders)
        one_folder = len(folders) == 1 and not (folders[0].is_file() and folders[0].suffix in TABLE_SUFFIXES)
        report: SweepAnalysis | VariantsAnalysis
        if one_folder and has_variants(args.folder[0]):  # each variant within itself, the variants side by side
            report = build_variants_report(args.folder[0], args.baseline, args.detect, margin=args.margin,
                                           score=args.score, seeds=_seeds(args.seeds))
        else:
            runs = args.folder[0] if one_folder else gather(args.folder)  # one folder: read as it always was
            report = build_report(runs, args.baseline, args.detect, margin=args.margin, score=args.score,
                                  seeds=_seeds(args.seeds))
    except ReportError as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    try:
        write_report(report, fmt, output)
    except OSError as error:  # a full disk, a read-only folder: nothing half-written is left
        where = error.filename or output or "stdout"
        say(f"error: cannot write the report to {where}: {error.strerror or error}; free some space or "
            f"choose another --output")
        return ExitCode.FAILED
    return ExitCode.COMPLETED


def _output_file(output: Path, inputs: list[Path]) -> Path:
    """The file the report replaces: ``output``, or the file a symlink there points to (the link is
    kept). ReportError for what a report must not replace: a device, a pipe, a socket, a sweep's
    own files, an input table, a run's folder."""
    target = output.resolve() if output.is_symlink() else output
    folder = inputs[0].parent if inputs[0].is_file() else inputs[0]
    if target.exists() and not target.is_file():
        raise ReportError(f"--output {output} is not a regular file (a device, pipe or socket): give a file name")
    for given in inputs:
        own = ([given, epochs_path(given)] if given.is_file() else
               [given / name for name in (SWEEP_FILE, REFUSED_FILE)])
        if target.resolve() in {path.resolve() for path in own}:
            whose = "an input of the report" if given.is_file() else f"the sweep's own {target.name}"
            raise ReportError(f"--output {output} is {whose}: give another file name, e.g. {folder / 'report.md'}")
    run_folder = rundir.enclosing_run(target.parent)
    if run_folder is not None:
        raise ReportError(f"--output {output} is in the run folder {run_folder}: write the report beside the "
                          f"runs, e.g. {folder / 'report.md'}")
    return target


def _seeds(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        seeds = [int(seed) for seed in split_list(text)]
    except ValueError:
        raise ReportError(f"--seeds takes comma-separated integers, got {text!r}") from None
    if not seeds:
        raise ReportError("--seeds is empty: give comma-separated seeds, e.g. --seeds 42,123")
    return seeds


def write_report(report: SweepAnalysis | VariantsAnalysis, fmt: str, output: Path | None) -> None:
    """The report in ``fmt`` to ``output`` (atomically) or stdout; a Markdown file gets its plots
    as PNG files beside it (``REPORT-<variant>-<plot>.png`` for each protocol variant)."""
    if isinstance(report, VariantsAnalysis):
        text = _variants_text(report, fmt, output)
    elif fmt == "html":
        text = to_html(report)
    elif fmt == "csv":
        text = to_csv(report)
    else:
        images = {}
        if output is not None:
            for name, png in plots(report).items():
                path = output.with_name(f"{output.stem}-{name}.png")
                rundir.atomic_write_bytes(path, png)
                images[name] = path.name
        text = to_markdown(report, images)
    _write(text, output)


def _variants_text(report: VariantsAnalysis, fmt: str, output: Path | None) -> str:
    if fmt == "html":
        return variants_to_html(report)
    if fmt == "csv":
        return variants_to_csv(report)
    images: dict[str, dict[str, str]] = {}
    if output is not None:
        for variant, one in report.reports.items():
            for name, png in plots(one).items():
                path = output.with_name(f"{output.stem}-{variant}-{name}.png")
                rundir.atomic_write_bytes(path, png)
                images.setdefault(variant, {})[name] = path.name
    return variants_to_markdown(report, images)


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
    else:
        rundir.atomic_write_bytes(output, text.encode())  # a failed write leaves the old file whole
        say(f"wrote {output}")
