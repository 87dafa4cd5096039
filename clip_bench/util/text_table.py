"""The fixed-width text tables the CLI prints (result rows, comparisons, the task catalogue)."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def text_table(rows: Sequence[Sequence[str]], right: Collection[int] = (), rule: bool = True) -> list[str]:
    """Lines of a table whose first row is the header: columns two spaces apart, each as wide as its widest
    cell, left-aligned except the column indices in `right`; trailing blanks are cut. With `rule`, a line
    of dashes under each header cell follows the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(w) if j in right else cell.ljust(w)
                               for j, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0 and rule:
            lines.append("  ".join("-" * w for w in widths))
    return lines
