"""``poolbench run``: train one setting with one pooling and one seed (see poolbench.execution.runner)."""

from __future__ import annotations

import argparse
import sys

from ..core.outcomes import ExitCode
from ..core.precision import AMP_DTYPES
from ..core.setting_spec import normalise_arch, normalise_dataset, with_pool_site
from ..core.settings import SETTINGS, run_protocol
from ..data import DataMissingError
from ..execution.runner import RunOptions, run
from ..pools import registry as pool_registry
from ..storage.rundir import RunConfig, input_hashes, run_path
from ..storage.tracking import TRACKERS
from ..storage.tracking import parse as parse_trackers
from ..training.catalog import get_setting, setting_for
from .flags import add_protocol_arguments, protocol_overrides, say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--setting", help=f"one of {', '.join(SETTINGS)}, or MODEL@DATASET "
                        "(e.g. timm:resnet18@imagefolder:/data/pets)")
    parser.add_argument("--arch", help="model (overrides the setting's): a poolbench architecture, "
                        "torchvision:NAME, timm:NAME or FILE.py:FUNCTION (a function taking num_classes)")
    parser.add_argument("--pool-at", metavar="PATH", help="the module of the model to replace by the pooling, "
                        "as print(model) names it (e.g. features.8); default: the global pooling found "
                        "(see docs/own-model.md)")
    parser.add_argument("--dataset", help="data set (overrides the setting's): a poolbench data set, "
                        "imagefolder:PATH (PATH/train, PATH/test or PATH/val) or npz:FILE")
    parser.add_argument("--num-classes", type=int, help="default: the data set's")
    parser.add_argument("--pool", default="gap", help="registered name, name(key=value, ...) such as "
                        "'topk(k=0.5)', or path.py[:Class] (default gap)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", help="run folder (default runs/<setting>/<pool>/seed<k>)")
    add_protocol_arguments(parser)
    add_execution_arguments(parser)


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how runs execute: data, device, precision, the contract check."""
    parser.add_argument("--data-root", help="data folder (default: $POOLBENCH_DATA or the user cache dir)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never try to download a missing data set")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", choices=list(AMP_DTYPES), default="none",
                        help="mixed precision (default none: the published protocol is float32)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (CUDA graphs on CUDA); falls back with a warning")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="train even if the pooling fails the contract check")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: $OMP_NUM_THREADS, else all cores); on a busy "
                             "or shared machine use 1 (see docs/running.md)")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-for-bit reproducible CUDA runs: deterministic algorithms, no cuDNN "
                             "autotuning (slower); CPU runs are reproducible without it")
    parser.add_argument("--log", metavar="TRACKERS",
                        help=f"also log epochs, configuration and result to experiment trackers: comma-separated "
                             f"{', '.join(TRACKERS)} (optional extras; see docs/running.md)")


def run_config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig the ``run`` arguments describe; ValueError with the fix on bad input."""
    base = get_setting(args.setting) if args.setting else None
    arch = normalise_arch(args.arch) if args.arch else (base and base.arch)
    if arch and args.pool_at is not None:
        arch = normalise_arch(with_pool_site(arch, args.pool_at))
    dataset = normalise_dataset(args.dataset) if args.dataset else (base and base.dataset)
    if not (arch and dataset):
        raise ValueError("say what to train: --setting NAME (see `poolbench list`) or --arch A --dataset D")
    same_as_base = base is not None and (arch, dataset) == (base.arch, base.dataset)
    setting = base if base is not None and same_as_base else setting_for(arch, dataset)
    protocol_of = base or setting
    if pool_registry.is_file_spec(args.pool):  # imported first in a child process, by the run (see isolation)
        pool_registry.existing_file(args.pool.split(":", 1)[0], "pooling", pool_registry.PoolSpecError)
    else:
        pool_registry.resolve(args.pool)  # an unknown name, a bad name(key=value): ValueError
    pool = pool_registry.normalise_spec(args.pool)  # one spelling per pooling, so a re-run resumes its folder
    try:  # the content of every file of the user's that the run reads is part of what the run is
        hashes = input_hashes(setting.arch, setting.dataset, pool)
    except (OSError, DataMissingError) as error:
        raise ValueError(" ".join(str(error).split())) from None
    return RunConfig(setting=setting.name, arch=setting.arch, dataset=setting.dataset,
                     num_classes=args.num_classes or setting.num_classes, pool=pool, seed=args.seed,
                     protocol=run_protocol(protocol_of, protocol_overrides(args)),
                     amp=args.amp, compile=args.compile, **hashes)


def main(args: argparse.Namespace) -> int:
    try:
        trackers = parse_trackers(args.log)
        config = run_config_from_args(args)
    except (ValueError, TypeError) as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    output_dir = args.output_dir or run_path("runs", config.setting, config.pool, config.seed)
    options = RunOptions(data_root=args.data_root, download=args.download, device=args.device, check=args.check,
                         command=tuple(sys.argv), threads=args.threads, deterministic=args.deterministic,
                         trackers=trackers)
    return run(config, output_dir, options, log=say)
