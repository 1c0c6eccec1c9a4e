"""``poolbench run``: train one setting with one pooling and one seed (see poolbench.execution.runner)."""

from __future__ import annotations

import argparse
import sys

from ..core.outcomes import ExitCode
from ..core.setting_spec import normalise_arch, normalise_dataset, with_pool_site
from ..core.settings import SETTINGS, run_protocol
from ..data import DataMissingError
from ..execution.option_fields import values
from ..execution.run_options import RunOptions, identity
from ..execution.runner import run
from ..pools import registry as pool_registry
from ..storage.rundir import RunConfig, input_hashes, run_path
from ..storage.tracking import parse as parse_trackers
from ..training import catalog
from ..training.catalog import get_setting, setting_for
from . import say
from .flags import add_option_arguments, add_protocol_arguments, protocol_overrides


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
    add_option_arguments(parser)  # where and how the run executes: RunOptions' fields


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
                     num_classes=args.num_classes or catalog.num_classes(setting), pool=pool, seed=args.seed,
                     protocol=run_protocol(protocol_of, protocol_overrides(args)),
                     **{**identity(vars(args)), **hashes})  # amp and compile: part of what the run is


def main(args: argparse.Namespace) -> int:
    try:
        parse_trackers(args.log)  # a bad --log is refused first
        config = run_config_from_args(args)
    except (ValueError, TypeError) as error:
        say(f"error: {error}")
        return ExitCode.BAD_INPUT
    output_dir = args.output_dir or run_path("runs", config.setting, config.pool, config.seed)
    options = RunOptions(**values(RunOptions, args), command=tuple(sys.argv))
    return run(config, output_dir, options, log=say)
