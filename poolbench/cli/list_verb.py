"""``poolbench list``: the settings, suites, architectures, data sets and poolings."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from .. import data, models, pools
from ..core.outcomes import ExitCode
from ..core.settings import SETTINGS, SUITES, Setting, is_1x1, run_protocol
from ..execution import isolation
from ..execution.sweep_runner import split_list
from ..training import catalog
from ..training.catalog import get_setting
from . import say


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--settings", metavar="S1,S2", help="list these settings instead of the named ones: "
                        "names or MODEL@DATASET (e.g. timm:resnet18@imagefolder:/data/pets); their pool input "
                        "is measured on the model")
    parser.add_argument("--image-size", type=int, metavar="N", help="with --settings: at N x N images")


def setting_record(setting: Setting, image_size: int | None = None) -> dict[str, Any]:
    """A setting as plain data, for ``list --json``; ``image_size`` as ``--image-size`` would resize."""
    protocol = run_protocol(setting, {"image_size": image_size})
    shape = isolation.model_pool_input(setting.arch, setting.dataset, protocol.image_size)
    return {"name": setting.name, "arch": setting.arch, "dataset": setting.dataset,
            "num_classes": catalog.num_classes(setting), "pool_input_shape": list(shape),
            "suites": list(setting.suites),
            "favours": setting.favours, "pool_is_1x1": is_1x1(shape),
            "protocol": dataclasses.asdict(protocol), "description": setting.description}


def main(args: argparse.Namespace) -> int:
    try:
        chosen = [get_setting(spec) for spec in split_list(args.settings)] or list(SETTINGS.values())
        records = [setting_record(s, args.image_size) for s in chosen]
    except (ValueError, TypeError) as error:
        say(f"error: {' '.join(str(error).split())}")
        return ExitCode.BAD_INPUT
    listing: dict[str, Any] = {
        "settings": records,
        "suites": {name: list(members) for name, members in SUITES.items()},
        "archs": models.names(),
        "datasets": data.names(),
        "pools": pools.names(),
        "own": pools.OWN_POOLING,
    }
    if args.json:
        print(json.dumps(listing, indent=1))
        return ExitCode.COMPLETED
    print("settings:")
    for s in listing["settings"]:
        shape = "x".join(str(d) for d in s["pool_input_shape"])
        tags = ",".join(s["suites"]) + (f" favours {s['favours']}" if s["favours"] else "")
        print(f"  {s['name']:22s} {s['arch']:15s} {s['dataset']:10s} {s['num_classes']:4d} classes  "
              f"pool input {shape:10s} {s['protocol']['epochs']:4d} epochs  {tags:28s} {s['description']}")
    for name, members in listing["suites"].items():
        print(f"suite {name}: {', '.join(members)}")
    print(f"archs:    {', '.join(listing['archs'])}")
    print(f"datasets: {', '.join(listing['datasets'])}")
    print(f"pools:    {', '.join(listing['pools'])}")
    print(f"own:      {listing['own']} (poolbench's own pooling)")
    return ExitCode.COMPLETED
