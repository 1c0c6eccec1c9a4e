"""``poolbench list``: the settings, suites, architectures, data sets and poolings."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from .. import data, models, pools
from ..outcomes import ExitCode
from ..settings import SETTINGS, SUITES, Setting, is_1x1

HELP = "settings, archs, data sets and poolings"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true")


def setting_record(setting: Setting) -> dict[str, Any]:
    """A setting as plain data, for ``list --json``."""
    shape = setting.pool_input_shape or models.pool_input_shape(setting.arch)
    return {"name": setting.name, "arch": setting.arch, "dataset": setting.dataset,
            "num_classes": setting.num_classes, "pool_input_shape": list(shape), "suites": list(setting.suites),
            "favours": setting.favours, "pool_is_1x1": is_1x1(shape),
            "protocol": dataclasses.asdict(setting.protocol), "description": setting.description}


def main(args: argparse.Namespace) -> int:
    listing: dict[str, Any] = {
        "settings": [setting_record(s) for s in SETTINGS.values()],
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
        print(f"  {s['name']:22s} {s['arch']:15s} {s['dataset']:9s} {s['num_classes']:4d} classes  "
              f"pool input {shape:10s} {s['protocol']['epochs']:4d} epochs  {tags:28s} {s['description']}")
    for name, members in listing["suites"].items():
        print(f"suite {name}: {', '.join(members)}")
    print(f"archs:    {', '.join(listing['archs'])}")
    print(f"datasets: {', '.join(listing['datasets'])}")
    print(f"pools:    {', '.join(listing['pools'])}")
    print(f"own:      {listing['own']} (poolbench's own pooling)")
    return ExitCode.COMPLETED
