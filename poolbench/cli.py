"""The ``poolbench`` command: run, check, list (and sweep, status, report).

Human messages go to stderr; machine-readable lines (TRAIN_METRICS, TEST_METRICS, --json)
to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import __version__
from .settings import SETTINGS, SUITES, get_setting, setting_for


def add_protocol_arguments(parser: argparse.ArgumentParser) -> None:
    """The protocol overrides, with the original training script's flag names."""
    group = parser.add_argument_group("protocol overrides (default: the setting's protocol)")
    group.add_argument("--epochs", type=int)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--lr", type=float)
    group.add_argument("--momentum", type=float)
    group.add_argument("--weight-decay", type=float)
    group.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None)
    group.add_argument("--crop-padding", type=int)
    group.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None)


def protocol_overrides(args: argparse.Namespace) -> dict:
    return {name: getattr(args, name) for name in
            ("epochs", "batch_size", "lr", "momentum", "weight_decay", "nesterov", "crop_padding", "hflip")}


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how runs execute: data, device, precision, the contract check."""
    parser.add_argument("--data-root", help="data folder (default: $POOLBENCH_DATA or the user cache dir)")
    parser.add_argument("--no-download", dest="download", action="store_false",
                        help="never try to download a missing data set")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none",
                        help="mixed precision (default none: the published protocol is float32)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (CUDA graphs on CUDA); falls back with a warning")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="train even if the pooling fails the contract check")
    parser.add_argument("--threads", type=int, metavar="N",
                        help="CPU threads for torch (default: $OMP_NUM_THREADS, else all cores); on a busy "
                             "or shared machine use 1 (see README)")
    parser.add_argument("--deterministic", action="store_true",
                        help="bit-for-bit reproducible CUDA runs: deterministic algorithms, no cuDNN "
                             "autotuning (slower); CPU runs are reproducible without it")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--setting", help=f"one of {', '.join(SETTINGS)}")
    parser.add_argument("--arch", help="model (overrides the setting's)")
    parser.add_argument("--dataset", help="data set (overrides the setting's)")
    parser.add_argument("--num-classes", type=int, help="default: the data set's")
    parser.add_argument("--pool", default="gap", help="registered name, name(key=value, ...) such as "
                        "'topk(k=0.5)', or path.py[:Class] (default gap)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output-dir", help="run folder (default runs/<setting>/<pool>/seed<k>)")
    add_protocol_arguments(parser)
    add_execution_arguments(parser)


def run_config_from_args(args: argparse.Namespace):
    """The RunConfig the ``run`` arguments describe; ValueError with the fix on bad input."""
    from .pools import registry as pool_registry
    from .runs import RunConfig, file_sha256

    base = get_setting(args.setting) if args.setting else None
    arch = args.arch or (base and base.arch)
    dataset = args.dataset or (base and base.dataset)
    if not (arch and dataset):
        raise ValueError("say what to train: --setting NAME (see `poolbench list`) or --arch A --dataset D")
    same_as_base = base is not None and (arch, dataset) == (base.arch, base.dataset)
    setting = base if same_as_base else setting_for(arch, dataset)
    protocol = (base or setting).protocol
    pool_registry.resolve(args.pool)  # an unknown name, a bad name(key=value), a missing file or class: ValueError
    pool = pool_registry.normalise_spec(args.pool)  # one spelling per pooling, so a re-run resumes its folder
    pool_sha256 = file_sha256(pool.split(":", 1)[0]) if pool_registry.is_file_spec(pool) else None
    return RunConfig(setting=setting.name, arch=setting.arch, dataset=setting.dataset,
                     num_classes=args.num_classes or setting.num_classes, pool=pool, seed=args.seed,
                     protocol=protocol.replace(**protocol_overrides(args)), pool_sha256=pool_sha256,
                     amp=args.amp, compile=args.compile)


def run_main(args: argparse.Namespace) -> int:
    from .harness import EXIT_BAD_INPUT, execute, stderr
    from .runs import run_path

    try:
        config = run_config_from_args(args)
    except (ValueError, TypeError) as error:
        stderr(f"error: {error}")
        return EXIT_BAD_INPUT
    output_dir = args.output_dir or run_path("runs", config.setting, config.pool, config.seed)
    return execute(config, output_dir, data_root=args.data_root, download=args.download, device=args.device,
                   check=args.check, command=sys.argv, threads=args.threads, deterministic=args.deterministic)


def check_main(args: argparse.Namespace) -> int:
    from .contract import main_check

    return main_check(args.specs, as_json=args.json)


def setting_record(setting) -> dict:
    """A setting as plain data, for ``list --json``."""
    from . import models

    shape = setting.pool_input_shape or models.pool_input_shape(setting.arch)
    return {"name": setting.name, "arch": setting.arch, "dataset": setting.dataset,
            "num_classes": setting.num_classes, "pool_input_shape": list(shape), "suites": list(setting.suites),
            "favours": setting.favours, "pool_is_1x1": tuple(shape[1:]) == (1, 1),
            "protocol": dataclasses.asdict(setting.protocol), "description": setting.description}


def list_main(args: argparse.Namespace) -> int:
    from . import data, models, pools

    listing = {
        "settings": [setting_record(s) for s in SETTINGS.values()],
        "suites": {name: list(members) for name, members in SUITES.items()},
        "archs": models.names(),
        "datasets": data.names(),
        "pools": pools.names(),
        "own": pools.OWN_POOLING,
    }
    if args.json:
        print(json.dumps(listing, indent=1))
        return 0
    print("settings:")
    for s in listing["settings"]:
        shape = "x".join(str(d) for d in s["pool_input_shape"])
        tags = ",".join(s["suites"]) + (f" favours {s['favours']}" if s["favours"] else "")
        print(f"  {s['name']:22s} {s['arch']:15s} {s['dataset']:9s} {s['num_classes']:4d} classes  "
              f"pool input {shape:10s} {s['protocol']['epochs']:4d} epochs  {tags:28s} {s['description']}")
    for name, members in listing["suites"].items():
        print(f"suite {name}: {', '.join(members)}")
    print(f"archs:    {', '.join(listing['archs'])}")
    print(f"datasets: {', '.join(listing['datasets'])}")
    print(f"pools:    {', '.join(listing['pools'])}")
    print(f"own:      {listing['own']} (poolbench's own pooling)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="poolbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"poolbench {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    run = verbs.add_parser("run", help="train one setting with one pooling and one seed")
    add_run_arguments(run)
    run.set_defaults(main=run_main)

    check = verbs.add_parser("check", help="run the pooling contract checks (seconds)")
    check.add_argument("specs", nargs="+", metavar="SPEC",
                       help="registered name, name(key=value, ...) or path.py[:Class]")
    check.add_argument("--json", action="store_true")
    check.set_defaults(main=check_main)

    listing = verbs.add_parser("list", help="settings, archs, data sets and poolings")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(main=list_main)

    from .report import add_report_arguments, report_main
    from .status import add_status_arguments, status_main
    from .sweep import add_sweep_arguments, sweep_main

    for name, add_arguments, verb_main, help_text in [
            ("sweep", add_sweep_arguments, sweep_main, "run a grid of poolings x settings x seeds"),
            ("status", add_status_arguments, status_main, "show a sweep's grid and progress"),
            ("report", add_report_arguments, report_main, "statistics, verdict and plots of a sweep")]:
        verb = verbs.add_parser(name, help=help_text)
        add_arguments(verb)
        verb.set_defaults(main=verb_main)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.main(args)


if __name__ == "__main__":
    sys.exit(main())
