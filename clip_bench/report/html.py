"""A single self-contained HTML page: summary, figures, tables; PNGs embedded as base64, a little inline JS to sort.

Every string from the data is escaped. Text passed to :func:`paragraph` may mark code with backticks,
which become ``<code>`` (no literal Markdown reaches the page).
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

_CSS = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem auto; max-width: 1400px;
       padding: 0 1.2rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: .3rem; }
h2 { margin-top: 2.4rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
h3 { margin-top: 1.6rem; font-size: 1.08rem; }
nav.toc { background: #f7f7f7; border: 1px solid #e4e4e4; padding: .5rem 1rem; font-size: .9rem; }
nav.toc ul { margin: .2rem 0; padding-left: 1.1rem; }
nav.toc > ul { display: flex; flex-wrap: wrap; gap: .2rem 2.5rem; list-style: none; padding-left: 0; }
code { font-size: .88em; background: #f1f1f1; padding: 0 .2em; border-radius: 3px; }
table { border-collapse: collapse; font-size: .82rem; margin: 0; }
th, td { border: 1px solid #ddd; padding: .22rem .45rem; white-space: nowrap; vertical-align: top; }
th { background: #f3f3f3; position: sticky; top: 0; z-index: 1; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.text, th.text { text-align: left; }
td.wrap { white-space: normal; min-width: 16rem; max-width: 34rem; }
tr:nth-child(even) td { background: #fafafa; }
td.sticky, th.sticky { position: sticky; left: 0; z-index: 2; background: #fff; }
th.sticky { z-index: 3; background: #f3f3f3; }
.scroll { overflow: auto; max-width: 100%; max-height: 36rem; border: 1px solid #e6e6e6; margin: .5rem 0 1rem; }
table.compact th { white-space: normal; min-width: 6.5rem; vertical-align: bottom; }
table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e8eef6; }
figure { margin: .8rem 0 1.4rem; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; font-size: .9rem; margin-top: .3rem; }
.figrow { display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 520px), 1fr)); gap: 1rem; }
.note { color: #555; font-size: .9rem; max-width: 62rem; }
.headline { font-size: 1.02rem; max-width: 70rem; }
.headline li { margin: .25rem 0; }
svg.swatch { vertical-align: -2px; margin-right: .35rem; }
details > summary { cursor: pointer; font-weight: 600; margin: .6rem 0; }
ul.warn li { color: #8a5a00; }
"""

_SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("data-dir") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-dir"); });
      th.setAttribute("data-dir", asc ? "asc" : "desc");
      function key(row) {
        var cell = row.cells[col];
        var v = cell.getAttribute("data-v");
        if (v === null) { v = cell.textContent; }
        var n = parseFloat(v);
        return isNaN(n) ? v.toLowerCase() : n;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (typeof x !== typeof y) { return (typeof x === "number" ? -1 : 1); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def esc(text: Any) -> str:
    """Escaped text."""
    return html.escape(str(text))


def rich(text: str) -> str:
    """Escaped text in which `backticks` become <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def paragraph(text: str, cls: str = "note") -> str:
    """A <p> of :func:`rich` text."""
    return f'<p class="{cls}">{rich(text)}</p>'


def bullet_list(items: list[str], cls: str = "") -> str:
    """A <ul> of :func:`rich` items."""
    return f'<ul class="{cls}">' + "".join(f"<li>{rich(i)}</li>" for i in items) + "</ul>"


def raw_list(items: list[str], cls: str = "") -> str:
    """A <ul> of items that are already HTML."""
    return f'<ul class="{cls}">' + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


@dataclass
class Cell:
    """A table cell: HTML to show, the value to sort by, and whether it is numeric (right-aligned)."""

    html: str
    sort: str | None = None
    numeric: bool = False


def fmt_value(value: Any, digits: int = 1) -> str:
    """A number with `digits` decimals, blank for NaN/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        return str(value)
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return str(value)


def with_interval(value: Any, lo: Any, hi: Any, digits: int = 1) -> str:
    """``91.7 ± 2.8`` (symmetric 95 % interval), ``91.7 +3.0/−2.6`` (asymmetric), or just the value."""
    v = fmt_value(value, digits)
    if not v or lo is None or hi is None or any(isinstance(x, float) and math.isnan(x) for x in (lo, hi)):
        return v
    up, down = float(hi) - float(value), float(value) - float(lo)
    if abs(up - down) < 0.5 * 10 ** -digits:
        return f"{v} ± {up:.{digits}f}"
    return f"{v} +{up:.{digits}f}/−{down:.{digits}f}"


def frame_cells(df: pd.DataFrame, digits: int = 1, formatters: dict[str, Callable[[Any], Cell]] | None = None
                ) -> tuple[list[str], list[list[Cell]]]:
    """Header and cells of `df`: numbers right-aligned with `digits` decimals, text left-aligned and escaped."""
    formatters = formatters or {}
    numeric = {c: pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns}
    rows = []
    for rec in df.itertuples(index=False):
        cells = []
        for col, value in zip(df.columns, rec):
            if col in formatters:
                cells.append(formatters[col](value))
            elif numeric[col]:
                text = fmt_value(value, digits)
                cells.append(Cell(esc(text), "" if not text else repr(float(value)), True))
            else:
                cells.append(Cell(esc(fmt_value(value) if isinstance(value, (bool, float)) else value or "")))
        rows.append(cells)
    return [str(c) for c in df.columns], rows


def table(header: list[str] | pd.DataFrame, rows: list[list[Cell]] | None = None, sortable: bool = False,
          sticky_first: bool = True, wrap: tuple[str, ...] = (), caption: str = "", compact: bool = False) -> str:
    """A table in its own scrolling box; `wrap` names columns whose long text wraps. A DataFrame may be
    passed instead of (header, rows)."""
    if isinstance(header, pd.DataFrame):
        header, rows = frame_cells(header, 2)
    rows = rows or []
    numeric_cols = [bool(rows) and all(r[i].numeric or not r[i].html for r in rows) and any(r[i].numeric for r in rows)
                    for i in range(len(header))]
    classes = [c for c, on in (("sortable", sortable), ("compact", compact)) if on]
    cls = f' class="{" ".join(classes)}"' if classes else ""
    out = [f'<div class="scroll"><table{cls}>']
    if caption:
        out.append(f"<caption>{rich(caption)}</caption>")
    ths = []
    for i, h in enumerate(header):
        kind = ["num" if numeric_cols[i] else "text"] + (["sticky"] if sticky_first and i == 0 else [])
        ths.append(f'<th class="{" ".join(kind)}">{esc(h)}</th>')
    out.append("<thead><tr>" + "".join(ths) + "</tr></thead><tbody>")
    for r in rows:
        tds = []
        for i, c in enumerate(r):
            kind = ["num" if c.numeric else "text"]
            if header[i] in wrap:
                kind.append("wrap")
            if sticky_first and i == 0:
                kind.append("sticky")
            sort = f' data-v="{esc(c.sort)}"' if c.sort is not None else ""
            tds.append(f'<td class="{" ".join(kind)}"{sort}>{c.html}</td>')
        out.append("<tr>" + "".join(tds) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def df_table(df: pd.DataFrame, digits: int = 1, **kw: Any) -> str:
    """:func:`table` of a DataFrame (see :func:`frame_cells`)."""
    formatters = kw.pop("formatters", None)
    return table(*frame_cells(df, digits, formatters), **kw)


def image_uri(path: str | Path) -> str:
    """`path` (a PNG) as a data URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure(path: str | Path, alt: str, caption: str) -> str:
    """An inlined PNG that never exceeds its container, with a one-line caption."""
    return (f'<figure><img src="{image_uri(path)}" alt="{esc(alt)}"><figcaption>{rich(caption)}</figcaption>'
            "</figure>")


def details(summary: str, body: list[str], open_: bool = False) -> str:
    """A collapsed block."""
    return f"<details{' open' if open_ else ''}><summary>{rich(summary)}</summary>{''.join(body)}</details>"


@dataclass
class Section:
    """A heading with its blocks of HTML, and sub-sections (listed in the table of contents)."""

    title: str
    blocks: list[str] = field(default_factory=list)
    children: list[Section] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def _toc(sections: list[Section]) -> str:
    items = []
    for s in sections:
        sub = "".join(f'<li><a href="#{c.anchor}">{esc(c.title)}</a></li>' for c in s.children)
        items.append(f'<li><a href="#{s.anchor}">{esc(s.title)}</a>' + (f"<ul>{sub}</ul>" if sub else "") + "</li>")
    return '<nav class="toc"><strong>Contents</strong><ul>' + "".join(items) + "</ul></nav>"


def page(title: str, sections: list[Section], intro: list[str] | None = None) -> str:
    """The whole document: title, intro, table of contents, then each section and its sub-sections."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>", *(paragraph(t) for t in intro or []), _toc(sections),
    ]
    for s in sections:
        parts.append(f'<h2 id="{s.anchor}">{esc(s.title)}</h2>')
        parts.extend(s.blocks)
        for c in s.children:
            parts.append(f'<h3 id="{c.anchor}">{esc(c.title)}</h3>')
            parts.extend(c.blocks)
    parts.append(f"<script>{_SORT_JS}</script></body></html>")
    return "\n".join(parts) + "\n"
