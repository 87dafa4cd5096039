"""A single self-contained HTML page: tables inline, PNG plots embedded as base64."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1500px;
       padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .6rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .45rem; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
td:first-child, td:nth-child(2), th:first-child, th:nth-child(2) { text-align: left; }
tr:nth-child(even) td { background: #fafafa; }
.scroll { overflow-x: auto; max-width: 100%; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; }
.plots img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: .9rem; }
ul.skipped li { color: #8a5a00; }
"""


def table(df: pd.DataFrame, floatfmt: str = "{:.2f}") -> str:
    """An HTML table (escaped), horizontally scrollable when wide."""
    body = df.to_html(index=False, na_rep="", float_format=floatfmt.format, border=0, escape=True)
    return f'<div class="scroll">{body}</div>'


def image(path: str | Path, alt: str) -> str:
    """`path` (a PNG) inlined as a data URI."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def images(paths: list[Path]) -> str:
    """Several PNGs inlined side by side, wrapping."""
    return '<div class="plots">' + "".join(image(p, p.stem.replace("_", " ")) for p in paths) + "</div>"


def paragraph(text: str, cls: str = "note") -> str:
    """Escaped text in a <p>."""
    return f'<p class="{cls}">{html.escape(text)}</p>'


def bullet_list(items: list[str], cls: str = "") -> str:
    """Escaped items in a <ul>."""
    return f'<ul class="{cls}">' + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def page(title: str, sections: list[tuple[str, list[str]]], intro: list[str] | None = None) -> str:
    """The whole document; `sections` are (heading, HTML blocks), blocks already built by the helpers above."""
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>", *(paragraph(t) for t in intro or []),
    ]
    for heading, blocks in sections:
        anchor = heading.lower().replace(" ", "-")
        parts.append(f'<h2 id="{html.escape(anchor)}">{html.escape(heading)}</h2>')
        parts.extend(blocks)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
