"""Pooling specs as text: ``name``, ``name(key=value, ...)`` and ``path.py[:Class]``.

This module only reads and writes spec strings (it does not import torch), so the run layout,
status and reports can use it; :func:`poolbench.pools.create` builds the pooling a spec names.

>>> parse_call("gem(p=4,learnable=False)")
('gem', {'p': 4, 'learnable': False})
>>> normalise_spec("gem(p=4,learnable=False)")
'gem(p=4, learnable=False)'
>>> spec_label("topk(k=0.5)")
'topk-k0.5'

Values are Python literals read with :func:`ast.literal_eval`, never evaluated: numbers, True,
False, None, quoted strings and tuples of them.
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .labels import UNSAFE, safe_label
from .quoting import quote, shorten
from .unique import unique

USAGE = "use name(key=value, ...)"
_VALUE_TYPES = "finite numbers, True/False, None, quoted strings or tuples of them"
_CALL_START = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*\(")


class PoolSpecError(ValueError):
    """A pooling spec that names nothing usable: unknown name, missing file or class, bad syntax."""


class HyperParameterError(PoolSpecError):
    """A hyper-parameter value a pooling cannot use: not a number where one is expected, or outside
    the range where the pooling is what its name says (``topk(k=2.5)``, ``lse(r=0)``)."""


class PositionalValueError(PoolSpecError):
    """``name(value)``: a hyper-parameter value without its keyword."""

    def __init__(self, message: str, name: str, values: list[str]):
        super().__init__(message)
        self.name = name
        self.values = values  # the positional values as written


def is_call_spec(spec: str) -> bool:
    """Whether ``spec`` is meant as ``name(...)``: it has a parenthesis and is not a ``.py`` file."""
    return ("(" in spec or ")" in spec) and not _is_file_path(spec)


def _is_file_path(spec: str) -> bool:
    looks_like_call = _CALL_START.match(spec) is not None and spec.rstrip().endswith(")")
    return not looks_like_call and spec.split(":", 1)[0].endswith(".py")


def is_file_spec(spec: str) -> bool:
    """Whether ``spec`` names a Python file (``path.py`` or ``path.py:Class``)."""
    return _is_file_path(spec)


def parse_call(spec: str) -> tuple[str, dict[str, Any]]:
    """``"name"`` -> ``("name", {})``; ``"name(k=v, ...)"`` -> ``("name", {"k": v, ...})``.

    The name keeps its case (the registry ignores case). PoolSpecError, one line naming the
    problem and the fix, for anything else: bad syntax, unbalanced parentheses, a value without
    its keyword, a repeated keyword, a value that is not a literal.
    """
    text = spec.strip()
    if not is_call_spec(text):
        return text, {}
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError) as error:
        message = error.msg if isinstance(error, SyntaxError) else ""
        if "integer string conversion" in message:  # Python's limit on the digits of an int literal
            message = "a number has more digits than Python reads (4300)"
        problem = "unbalanced parentheses" if _unbalanced(text) else (message or "invalid syntax")
        raise PoolSpecError(f"bad pooling spec {quote(spec)}: {problem}; {USAGE}, e.g. topk(k=0.5)") from None
    if not (isinstance(tree, ast.Call) and isinstance(tree.func, ast.Name)):
        raise PoolSpecError(f"bad pooling spec {quote(spec)}: not a registered name with (key=value, ...) "
                            f"(files take no values: set them in the class); {USAGE}, e.g. topk(k=0.5)")
    name = tree.func.id
    if tree.args:
        values = [ast.get_source_segment(text, arg) or ast.unparse(arg) for arg in tree.args]
        raise PositionalValueError(
            f"bad pooling spec {quote(spec)}: {shorten(', '.join(values))} {'have' if len(values) > 1 else 'has'} "
            f"no keyword; {USAGE}, e.g. {shorten(name)}(key={shorten(values[0])})", name, values)
    kwargs: dict[str, Any] = {}
    for keyword in tree.keywords:
        if keyword.arg is None:
            raise PoolSpecError(f"bad pooling spec {quote(spec)}: ** is not allowed; {USAGE}")
        source = ast.get_source_segment(text, keyword.value) or ast.unparse(keyword.value)
        try:
            value = ast.literal_eval(keyword.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = _NOT_A_LITERAL
        if not _allowed_value(value):
            raise PoolSpecError(f"bad pooling spec {quote(spec)}: the value of {shorten(keyword.arg)}, "
                                f"{shorten(source)}, is not a literal ({_VALUE_TYPES}); {USAGE}")
        if keyword.arg in kwargs:
            raise PoolSpecError(f"bad pooling spec {quote(spec)}: {shorten(keyword.arg)} is given twice; {USAGE}, "
                                f"each key once")
        kwargs[keyword.arg] = value
    return name, kwargs


_NOT_A_LITERAL = object()


def _allowed_value(value: Any) -> bool:
    if isinstance(value, tuple):
        return all(_allowed_value(item) for item in value)
    if isinstance(value, float):
        return math.isfinite(value)  # repr(inf) would not read back
    return value is None or isinstance(value, (bool, int, str))


def _paren_depths(text: str) -> Iterator[tuple[str, int | None]]:
    """Each character with the parentheses depth after it, or None inside a quoted string."""
    depth, quote = 0, ""
    for char in text:
        if quote or char in "'\"":
            quote = "" if char == quote else (quote or char)
            yield char, None
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        yield char, depth


def _unbalanced(text: str) -> bool:
    """Whether the parentheses outside quoted strings do not pair up."""
    depths = [depth for _, depth in _paren_depths(text) if depth is not None]
    return any(depth < 0 for depth in depths) or (depths[-1] if depths else 0) != 0


def format_call(name: str, kwargs: dict[str, Any]) -> str:
    """The canonical text of a call spec: ``name(k=v, k2=v2)``, values as ``repr``, keys in order."""
    if not kwargs:
        return name
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in kwargs.items())})"


def normalise_spec(spec: str) -> str:
    """The canonical spelling of a spec, so one pooling is one run config whatever the spacing.

    ``name(...)`` becomes ``name(k=v, k2=v2)``: the name lower-cased (names ignore case), the
    user's key order, one space after each comma, values as Python writes them (``.5`` ->
    ``0.5``, ``"a"`` -> ``'a'``); ``name()`` becomes ``name``. A plain name is lower-cased, as the
    registry keeps it (``GAP`` and ``gap`` are one run); a file spec is returned as given.
    PoolSpecError on a malformed call spec.
    """
    if is_file_spec(spec):
        return spec
    if not is_call_spec(spec):
        return spec.lower()
    name, kwargs = parse_call(spec)
    return format_call(name.lower(), kwargs)


def spec_label(spec: str) -> str:
    """A folder-friendly name of a spec (see ``is_safe_label``).

    ``topk(k=0.5)`` -> ``topk-k0.5``; ``gem(p=4, learnable=False)`` -> ``gem-p4-learnableFalse``;
    a file's stem (and ``-Class``) for a file, unsafe characters replaced; a plain name as given (normalised
    first: lower-case).
    """
    if is_file_spec(spec):
        path_text, _, class_name = spec.partition(":")
        return safe_label(Path(path_text).stem + (f"-{class_name}" if class_name else ""), "pool")
    if not is_call_spec(spec):
        return spec  # a label made from a normalised spec is made again as it is
    try:
        name, kwargs = parse_call(spec)
    except PoolSpecError:  # not a usable spec, but still a deterministic folder name
        return safe_label("".join(spec.split()), "pool")
    return "-".join([name.lower(), *(f"{key}{_label_text(value)}" for key, value in kwargs.items())])


def _label_text(value: Any) -> str:
    if isinstance(value, tuple):
        return "_".join(_label_text(item) for item in value)
    text = value if isinstance(value, str) else repr(value)
    return UNSAFE.sub("_", text)


def split_specs(text: str | None) -> list[str]:
    """``"gap, topk(k=0.1),gem(p=4, learnable=False)"`` -> the three specs, blanks and repeats dropped.

    Commas inside parentheses or quotes do not split.
    """
    items: list[str] = []
    current: list[str] = []
    for char, depth in _paren_depths(text or ""):
        if char == "," and depth is not None and depth <= 0:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return unique(item for item in items if item)
