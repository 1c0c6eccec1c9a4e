"""Sweep files: a sweep's grid written as data (``poolbench sweep --config grid.yaml``).

A sweep file is a YAML (``.yaml``, ``.yml``, ``.json``) or TOML (``.toml``, Python 3.11+) mapping
whose keys are the sweep's flags without their dashes (``data_root`` for ``--data-root``), and
the protocol's fields (``lr``, ``epochs``, ...), each taking one value or a list of values::

    out: runs/lr-grid
    pools: [gap, gmp, "gem(p=3)"]
    suite: diagnostics
    seeds: [1, 2, 3]
    epochs: 6
    lr: [0.05, 0.01]       # two protocol variants, side by side in one sweep
    jobs: 2

The file is read with pydantic against a model made from the keys the caller allows
(``poolbench.cli.sweep_config`` makes them from the sweep's own flags, so every flag is a key):
an unknown key or a value of the wrong type is one line naming it and what is allowed.
Values are read strictly (``epochs: "5"`` or ``epochs: true`` is refused, not converted), since
a sweep silently run with another value than the one meant costs hours.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path
from typing import Any

import pydantic
import yaml

from ..core.quoting import quote
from ..core.settings import Protocol

SUFFIXES = (".yaml", ".yml", ".json", ".toml")


class SweepFileError(ValueError):
    """A sweep file that cannot be read or holds a wrong key or value: one line naming it."""


def protocol_keys(protocol: type = Protocol) -> dict[str, Any]:
    """Field -> the type a sweep file's key for it takes: one value, or a list of values (variants).

    >>> protocol_keys()["lr"]
    float | list[float]
    """
    keys: dict[str, Any] = {}
    for name, kind in typing.get_type_hints(protocol).items():
        # An optional field (``int | None``) takes its non-None type: None is "the setting's own", i.e. no key.
        kind = next((t for t in typing.get_args(kind) if t is not type(None)), kind)
        keys[name] = kind | types.GenericAlias(list, (kind,))
    return keys


def load_mapping(path: Path) -> dict[str, Any]:
    """The top-level mapping of a YAML/JSON or TOML file; SweepFileError naming what is wrong."""
    if path.suffix.lower() not in SUFFIXES:
        raise SweepFileError(f"--config {path}: cannot tell its format from the suffix {path.suffix or '(none)'!r}: "
                             f"name it *.yaml or *.toml")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SweepFileError(f"--config {path} not found: give the path of a sweep file (YAML or TOML)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SweepFileError(f"cannot read --config {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = _load_toml(path, text)
        else:
            data = yaml.safe_load(text)  # JSON is YAML too
    except (yaml.YAMLError, ValueError) as error:
        if isinstance(error, SweepFileError):
            raise
        raise SweepFileError(f"--config {path} is not valid {'TOML' if path.suffix == '.toml' else 'YAML'}: "
                             f"{' '.join(str(error).split())}") from None
    if not isinstance(data, dict):
        raise SweepFileError(f"--config {path} holds {quote(data)}, not a mapping of keys to values "
                             f"(e.g. 'pools: [gap, gem]')")
    return data


def _load_toml(path: Path, text: str) -> Any:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(text)
    raise SweepFileError(f"--config {path}: TOML needs Python 3.11 or newer (tomllib): write the grid as YAML")


def read_sweep_file(path: str | Path, keys: dict[str, Any]) -> dict[str, Any]:
    """The keys set in the sweep file ``path``, each checked against ``keys`` (key -> type).

    SweepFileError (one line) for a file that cannot be read, an unknown key (the allowed keys are
    listed) or a value of the wrong type (the key and the type it takes are named).
    """
    path = Path(path)
    data = load_mapping(path)
    fields: dict[str, Any] = {key: (kind | None, None) for key, kind in keys.items()}
    model = pydantic.create_model("SweepFile", __config__=pydantic.ConfigDict(strict=True, extra="forbid"),
                                  **fields)
    try:
        parsed = model.model_validate(data)
    except pydantic.ValidationError as error:
        raise SweepFileError(describe_error(path, error, keys)) from None
    return {key: value for key, value in parsed.model_dump(exclude_unset=True).items() if value is not None}


def describe_error(path: Path, error: pydantic.ValidationError, keys: dict[str, Any]) -> str:
    """The one line of pydantic's first error: the key, the value found and what the key takes."""
    errors = error.errors()
    key = str(errors[0]["loc"][0]) if errors[0]["loc"] else ""
    # The deepest of the key's errors: in a list, the item that is wrong, not the whole list.
    first = max((e for e in errors if e["loc"][:1] == errors[0]["loc"][:1]), key=lambda e: len(e["loc"]))
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key {quote(key)}: the keys allowed are {', '.join(keys)}"
    value = first.get("input")
    hint = ""
    if isinstance(value, str):
        try:
            float(value)
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)" if "e" in value.lower() else " (write it unquoted)"
        except ValueError:
            pass
    return f"{path}: {key}: {quote(value)} is not {type_text(keys.get(key))}{hint}"


def type_text(kind: Any) -> str:
    """What a key takes, in words: ``a number or a list of numbers``.

    >>> type_text(int | list[int])
    'an integer or a list of integers'
    """
    names = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "booleans"),
             str: ("a text", "texts")}
    parts = []
    for option in typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,):
        if typing.get_origin(option) is list:
            parts.append(f"a list of {names.get(typing.get_args(option)[0], ('', 'values'))[1]}")
        elif typing.get_origin(option) is typing.Literal:
            parts.append("one of " + ", ".join(map(str, typing.get_args(option))))
        else:
            parts.append(names.get(option, (getattr(option, "__name__", str(option)), ""))[0])
    return " or ".join(parts)
