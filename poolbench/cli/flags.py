"""What the verbs share: human output on stderr, and the flags made from declared fields: the
protocol's (``core.settings.Protocol``), the run's options (``execution.run_options.RunOptions``) and
the executors' own (``execution.executor_registry``)."""

from __future__ import annotations

import argparse
import typing
from typing import Any

from ..core.settings import Protocol
from ..execution.option_fields import flags
from ..execution.run_options import RunOptions
from ..execution.sweep_runner import protocol_flags


def add_protocol_arguments(parser: argparse.ArgumentParser, protocol: type = Protocol, many: bool = False) -> None:
    """One flag per field of ``protocol``, with the original training script's flag names
    (``--batch-size``; ``--hflip/--no-hflip`` for a bool). Unset flags are None: the setting's value.
    With ``many`` (``sweep``), a non-bool flag takes comma-separated values (``--lr 0.1,0.05``): a list,
    each value one protocol variant."""
    title = "protocol overrides (default: the setting's protocol" + ("; a, b, ...: one variant per value)" if many
                                                                     else ")")
    group = parser.add_argument_group(title)
    types = typing.get_type_hints(protocol)
    for name, flag in protocol_flags(protocol).items():
        # An optional field (``int | None``) takes its non-None type on the command line.
        kind = next((t for t in typing.get_args(types[name]) if t is not type(None)), types[name])
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, type=comma_list(kind) if many else kind)


def comma_list(kind: type) -> Any:
    """An argparse type: ``"0.1, 0.05"`` -> ``[0.1, 0.05]``, each item read by ``kind`` (argparse's
    "invalid float value" names the item's type when one is not)."""
    def parse(text: str) -> list:
        return [kind(item) for item in text.split(",") if item.strip()]

    parse.__name__ = kind.__name__
    return parse


def protocol_overrides(args: argparse.Namespace, protocol: type = Protocol) -> dict[str, Any]:
    """Field -> value of the protocol flags (None where a flag was not given)."""
    return {name: getattr(args, name) for name in protocol_flags(protocol)}


def add_option_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, options: type = RunOptions,
                         sweep: bool = False) -> None:
    """One flag per field of the dataclass ``options`` declared with ``option_fields.option``: its name,
    help, type, choices and default (a bool as a switch, ``--x`` or ``--no-x``; a list as a repeated flag).

    With ``sweep``, only the run options a sweep passes on to each run, with the sweep's help and no
    default (None: the value the sweep folder keeps, else the run's own default).
    """
    for flag in flags(options):
        if sweep and flag.sweep_help is None:
            continue
        names = (flag.flag, *flag.aliases)
        common: dict[str, Any] = dict(dest=flag.name, help=flag.sweep_help if sweep else flag.help,
                                      default=None if sweep else flag.default)
        if flag.switch:
            parser.add_argument(*names, action="store_false" if flag.default else "store_true", **common)
        elif flag.repeated:
            parser.add_argument(*names, action="append", metavar=flag.metavar, **common)
        else:
            parser.add_argument(*names, type=flag.kind, metavar=flag.metavar,
                                choices=list(flag.choices) if flag.choices else None, **common)
