"""What the verbs share: human output on stderr, and the protocol's flags made from its fields."""

from __future__ import annotations

import argparse
import sys
import typing
from typing import Any

from ..execution.sweep import protocol_flags
from ..settings import Protocol


def say(message: str) -> None:
    """A human message (progress, ``error: ...``): stderr, so that stdout stays machine-readable."""
    print(message, file=sys.stderr, flush=True)


def add_protocol_arguments(parser: argparse.ArgumentParser, protocol: type = Protocol) -> None:
    """One flag per field of ``protocol``, with the original training script's flag names
    (``--batch-size``; ``--hflip/--no-hflip`` for a bool). Unset flags are None: the setting's value."""
    group = parser.add_argument_group("protocol overrides (default: the setting's protocol)")
    types = typing.get_type_hints(protocol)
    for name, flag in protocol_flags(protocol).items():
        # An optional field (``int | None``) takes its non-None type on the command line.
        kind = next((t for t in typing.get_args(types[name]) if t is not type(None)), types[name])
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            group.add_argument(flag, type=kind)


def protocol_overrides(args: argparse.Namespace, protocol: type = Protocol) -> dict[str, Any]:
    """Field -> value of the protocol flags (None where a flag was not given)."""
    return {name: getattr(args, name) for name in protocol_flags(protocol)}
