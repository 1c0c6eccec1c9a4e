"""Repeats dropped, first occurrences kept in order: the one helper for every ordered de-duplication
(poolings, settings, seeds, shapes, messages), so that none of them sorts or reorders by accident.

>>> unique(["gem", "gap", "gem", "gmp", "gap"])
['gem', 'gap', 'gmp']
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import TypeVar

T = TypeVar("T", bound=Hashable)


def unique(items: Iterable[T]) -> list[T]:
    """``items`` without repeats, each at its first position (``dict`` keeps insertion order)."""
    return list(dict.fromkeys(items))
