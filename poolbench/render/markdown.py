"""The Markdown pieces every rendered page shares: a table that also lines up in a terminal, and a
setting's title. Its own module so that ``poolbench status`` renders without the report's plots.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..core.settings import SETTINGS

if TYPE_CHECKING:
    from ..analysis.sweep_analysis import SweepAnalysis


def md_table(header: list[str], body: list[list[str]]) -> str:
    """A Markdown table padded to line up in a terminal too."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    return "\n".join([line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)])


def setting_title(setting: str, report: SweepAnalysis | None = None) -> str:
    """``name: description``; an ad-hoc setting is described by the model and data set of its runs."""
    description = SETTINGS[setting].description if setting in SETTINGS else ""
    if not description and report is not None:
        description = report.sources.get(setting, "")
    return f"{setting}: {description}" if description else setting
