"""How a one-line message quotes what the user typed: never more than a short excerpt.

A value can be anything a command line or a spec allows, a 4,000-digit number included; echoed
whole it would turn a one-line refusal into kilobytes. Every message that quotes user input
passes it through :func:`quote` (a value, as ``repr``) or :func:`shorten` (text as it is).

>>> quote("3")
"'3'"
>>> quote(10**80)
'100000000000000000000000000000000000000000000000000000000000... (81 digits)'
>>> shorten("x" * 100)
'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (100 characters)'
"""

from __future__ import annotations

LIMIT = 60  # characters of user input a message quotes


def shorten(text: str, limit: int = LIMIT) -> str:
    """``text`` itself when at most ``limit`` characters, else its start, ``...`` and its length."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def quote(value: object, limit: int = LIMIT) -> str:
    """``repr(value)``, shortened as :func:`shorten` does. An int is shortened by arithmetic: Python
    refuses to write one of more than 4300 digits as text (ValueError)."""
    if isinstance(value, int) and not isinstance(value, bool):
        digits = _digit_count(abs(value))
        if digits > limit:
            head = abs(value) // 10 ** (digits - limit)
            return f"{'-' if value < 0 else ''}{head}... ({digits:,} digits)"
    return shorten(repr(value), limit)


def _digit_count(value: int) -> int:
    """The number of decimal digits of ``value >= 0``: estimated from its bit length (log10 2 =
    0.30103), which is exact or one short, then corrected."""
    estimate = int((value.bit_length() - 1) * 0.30102999566398120) + 1 if value else 1
    return estimate + 1 if value >= 10**estimate else estimate
