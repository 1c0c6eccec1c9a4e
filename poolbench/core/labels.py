"""Labels: the names a run's setting and pooling are filed under, each one folder of its path.

A label is ``[A-Za-z0-9][A-Za-z0-9._-]*`` of at most 100 characters: it starts with a letter or
digit (never ``.``, ``..``, a hidden name or an option-like ``-x``) and holds no separator, so
``<root>/<setting>/<pool>/seed<k>`` always stays inside ``<root>`` and is a folder the report
finds. Labels are made safe where they are made (``safe_label``) and checked where they are read
back from a file a person may have edited (``is_safe_label``).

>>> safe_label("my pool.v2")
'my_pool.v2'
>>> safe_label("..")
'x'
>>> is_safe_label("../../x")
False
"""

from __future__ import annotations

import re

UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RULE = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 characters"


def is_safe_label(label: object) -> bool:
    """Whether ``label`` can be one folder of a run's path."""
    return isinstance(label, str) and _SAFE.fullmatch(label) is not None


def safe_label(text: str, default: str = "x") -> str:
    """``text`` as a safe label: other characters become ``_``, leading ``._-`` go, long texts are
    cut; ``default`` when nothing is left."""
    label = UNSAFE.sub("_", text).lstrip("._-")[:100].rstrip("._-")
    return label if is_safe_label(label) else default
