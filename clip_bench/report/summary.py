"""What one report build did (its lines, files, tables and figures), and the one way its files are written: inside
the report folder, a failure to write being one :class:`ReportWriteError`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from clip_bench.util.errors import ClipBenchError
from clip_bench.util.io import write_text_atomic

if TYPE_CHECKING:
    from matplotlib.figure import Figure


class ReportWriteError(ClipBenchError):
    """A report file that could not be written (a full disk, a read-only folder, a file where a folder belongs);
    ``lines`` are the summary lines the report had computed until then."""

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.lines = list(lines or [])


@dataclass
class ReportSummary:
    """What ``build_report`` did: ``lines`` to print, the ``files`` it wrote, the tables and figures behind them."""

    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    figures: dict[str, Figure] = field(default_factory=dict)
    out: Path | None = None

    def skip(self, part: str, why: str) -> None:
        """Record that `part` of the report was left out, and why (one line, printed and on the page)."""
        line = f"skipped {part}: {why}"
        self.skipped.append(line)
        self.lines.append(line)

    def _inside(self, path: Path) -> Path:
        if self.out is not None and not path.resolve().is_relative_to(self.out.resolve()):
            raise ClipBenchError(f"refusing to write {path}: outside the report folder {self.out}")
        return path

    def cannot_write(self, path: Path, exc: OSError) -> ReportWriteError:
        """The one-line error for a report file that could not be written, with the lines computed so far."""
        return ReportWriteError(f"cannot write the report file {path} ({exc.strerror or type(exc).__name__}); free "
                                "some space or pass --out to a writable folder.", self.lines)

    def write(self, path: Path, text: str) -> Path:
        """Write one report file (atomically, inside the report folder) and record it."""
        try:
            write_text_atomic(self._inside(path), text)
        except OSError as exc:
            raise self.cannot_write(path, exc) from None
        self.files.append(path)
        return path

    def save_figure(self, name: str, fig: Figure, path: Path) -> Path:
        """Save `fig` as a PNG at `path` (inside the report folder) and record it as figure `name`."""
        from clip_bench.report.plotting import save_png

        try:
            save_png(fig, self._inside(path))
        except OSError as exc:
            raise self.cannot_write(path, exc) from None
        self.files.append(path)
        self.figures[name] = fig
        return path
