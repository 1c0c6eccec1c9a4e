"""Options declared once, as fields of a dataclass that carry their command-line flag.

A field made by :func:`option` holds its default and type (the field's own) and a :class:`Flag`:
the flag's name, its help, and for a run option whether ``poolbench sweep`` passes it on to each
run. ``poolbench.cli.flags.add_option_arguments`` makes the argparse flags from these fields and
:meth:`Flag.arguments` the command line that gives a value back, so an option is one field, as a
protocol field is (``core.settings.Protocol``). The run's options are ``run_options.RunOptions``;
each executor declares its own flags the same way (``executor_registry``).

>>> @dataclasses.dataclass(frozen=True)
... class Example:
...     jobs: int | None = option(None, "--jobs", "runs at a time", metavar="N")
...     wait: bool = option(True, "--no-wait", "submit and return")
>>> [(f.flag, f.kind.__name__, f.default) for f in flags(Example)]
[('--jobs', 'int', None), ('--no-wait', 'bool', True)]
>>> flags(Example)[1].arguments(False)
['--no-wait']
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

FLAG = "poolbench.flag"  # the key of a field's Flag in its metadata


@dataclass(frozen=True)
class Flag:
    """The command line of one option field.

    A bool is a switch: ``--x`` turns on an option that is off by default, ``--no-x`` turns off
    one that is on. A list (``list[str] | None``) takes its flag once per item. Anything else takes
    one value of the field's type (``int | None`` takes an int).
    """

    flag: str  # "--data-root"
    help: str  # the help of ``poolbench run`` (or of the command that owns the field)
    sweep_help: str | None = None  # a run option ``sweep`` passes on to each run, with this help; None: not passed
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other names of the flag ("--detach" for "--no-wait")
    identity: bool = False  # changes the run's numbers: recorded in its RunConfig (config.json), not only used
    # The field it declares, filled in by flags():
    name: str = ""
    kind: Any = str  # the field's type, None taken away
    default: Any = None

    @property
    def switch(self) -> bool:
        return self.kind is bool

    @property
    def repeated(self) -> bool:
        return typing.get_origin(self.kind) is list

    def arguments(self, value: Any) -> list[str]:
        """The flag that gives a run ``value`` (nothing for the default or an unset value):
        a switch when it differs from the default, else the flag and the value as text."""
        if self.switch:  # an option on by default is turned off only by False itself, never by a missing value
            return [self.flag] if (value is False if self.default else bool(value)) else []
        if self.repeated:
            return [part for item in value or [] for part in (self.flag, str(item))]
        return [self.flag, str(value)] if value else []


def option(default: Any, flag: str, help: str, *, sweep: str | None = None, metavar: str | None = None,
           choices: tuple[str, ...] | None = None, aliases: tuple[str, ...] = (), identity: bool = False) -> Any:
    """A dataclass field with its flag (see :class:`Flag`); ``sweep`` is the help of ``poolbench sweep``'s
    flag for a run option the sweep passes on to each run."""
    declared = Flag(flag, help, sweep, metavar, choices, aliases, identity)
    return dataclasses.field(default=default, metadata={FLAG: declared})


def flags(options: type) -> list[Flag]:
    """The Flag of every field of the dataclass ``options`` made by :func:`option`, in field order,
    each with its field's name, type (an optional one's non-None type) and default."""
    hints = typing.get_type_hints(options)
    declared = []
    for field in dataclasses.fields(options):
        if FLAG not in field.metadata:
            continue  # not given on the command line (RunOptions.command)
        kind = hints[field.name]
        kind = next((t for t in typing.get_args(kind) if t is not type(None)), kind) \
            if type(None) in typing.get_args(kind) else kind
        declared.append(dataclasses.replace(field.metadata[FLAG], name=field.name, kind=kind, default=field.default))
    return declared


def values(options: type, given: dict[str, Any] | Any) -> dict[str, Any]:
    """Field -> value of ``options``' flags, read from a mapping or a namespace (parsed arguments)."""
    read = given.get if isinstance(given, dict) else lambda name: getattr(given, name)
    return {flag.name: read(flag.name) for flag in flags(options)}
