"""``poolbench sweep --config FILE``: the sweep's flags read from a sweep file (poolbench.execution.sweep_file).

Every flag of ``sweep`` is a key of the file, named by its destination (``--data-root`` is
``data_root``, ``--no-download`` is ``download: false``), save the folder argument, ``--config`` and
``--dry-run``; the lists (``pools``, ``settings``, ``suite``, ``seeds``) take a YAML list, and every
protocol field one value or a list (protocol variants). A flag given on the command line wins over
the file's key: ``poolbench sweep --config grid.yaml --seeds 1`` runs the file's grid on seed 1.
The values become exactly the arguments the flags would have given, so a file and the equivalent
flags prepare the same sweep (the same ``sweep.json``).
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Callable
from typing import Any

from ..execution.sweep_file import SweepFileError, protocol_keys, read_sweep_file
from ..execution.sweep_runner import SweepError

#: The sweep's list flags and the type of their items in a file (a single value is a one-item list).
LIST_KEYS: dict[str, type] = {"pools": str, "settings": str, "suite": str, "seeds": int}
#: Flags that are no key of a sweep file: the folder argument (the file's ``out``), the file itself,
#: and --dry-run, which is how a command uses the grid, not part of it.
NOT_KEYS = ("help", "folder", "config", "dry_run")


def file_keys(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Key -> the type its value must have, for every flag of ``parser`` (the sweep's)."""
    protocol = protocol_keys()
    keys: dict[str, Any] = {}
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        dest = action.dest
        if dest in NOT_KEYS or dest in keys:
            continue
        if dest in protocol:
            keys[dest] = protocol[dest]
        elif dest in LIST_KEYS:
            item = LIST_KEYS[dest]
            keys[dest] = list[item] | item  # type: ignore[valid-type]
        elif action.nargs == 0:  # store_true / store_false / --x/--no-x
            keys[dest] = bool
        elif action.choices is not None:
            keys[dest] = typing.Literal[tuple(action.choices)]
        elif action.type in (int, float):
            keys[dest] = action.type
        else:
            keys[dest] = str
    return keys


def apply_config(args: argparse.Namespace, add_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    """Fill ``args`` from the sweep file ``args.config``: each key the command line left at its default.

    SweepError (one line) when the file cannot be read or holds an unknown key or a wrong value.
    """
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    defaults = parser.parse_args([])
    try:
        values = read_sweep_file(args.config, file_keys(parser))
    except SweepFileError as error:
        raise SweepError(str(error)) from None
    for key, value in values.items():
        given = getattr(args, key) != getattr(defaults, key)
        if given or (key == "out" and args.folder):  # the command line wins over the file
            continue
        if key in LIST_KEYS:  # the text the flag would hold: ", " never splits a name(key=value, ...) wrongly
            value = ", ".join(map(str, value if isinstance(value, list) else [value]))
        setattr(args, key, value)
