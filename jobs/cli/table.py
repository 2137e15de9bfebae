"""Tables that fit the terminal: each column as wide as its widest cell, the flexible ones shrunk
until the rows fit, and every line cut at the terminal's edge rather than wrapped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .common import clip, printable

# A flexible column keeps at least this much, whatever the width (its cells are cut to it).
MIN_FLEXIBLE = 8


@dataclass(frozen=True)
class Column:
    header: str
    #: Numbers, aligned on the right.
    right: bool = False
    #: Given up first when the line would be too long.
    flexible: bool = False


def table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    *,
    width: int,
    notes: Sequence[str] | None = None,
    indent: int = 2,
) -> list[str]:
    """The header line and a line per row, one space between columns, none longer than `width`.
    `notes`: a line of text under each row that has one (empty: none), indented by `indent`.
    Every cell and note is printed `printable`: most are stored text."""
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(column.header), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]
    excess = sum(widths) + len(columns) - 1 - width
    for i, column in enumerate(columns):
        if column.flexible and excess > 0:
            cut = min(excess, max(0, widths[i] - max(MIN_FLEXIBLE, len(column.header))))
            widths[i] -= cut
            excess -= cut

    def line(cells: Sequence[str]) -> str:
        parts = []
        for cell, column, size in zip(cells, columns, widths, strict=True):
            cell = clip(cell, size)
            parts.append(cell.rjust(size) if column.right else cell.ljust(size))
        return clip(" ".join(parts).rstrip(), width)

    lines = [line([column.header for column in columns])]
    for n, row in enumerate(rows):
        lines.append(line(row))
        note = notes[n] if notes else ""
        if note:
            lines.append(clip(" " * indent + printable(note), width))
    return lines
