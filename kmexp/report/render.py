"""Turn the report's sections into report.md and a self-contained report.html.

Both pages come from the same ``Section`` list, so they always say the same
thing. Every string that came from a dataset, a config or an error message is
escaped here (``html.escape``): a label such as ``<script>`` shows as text.
The HTML page needs nothing beside it: CSS inline, plots as base64 data URIs.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kmexp.report.tables import Table

BEST_MARK = "✓"
NUMERIC = re.compile(r"^[-–+\d.,\[\]± ]*$")  # scores, intervals, "mean ± std": right-aligned

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 75rem;
       padding: 0 1rem; color: #1a1a1a; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: bold; background: #e3f4e1; }
figure { margin: 1rem 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #555; }
.scroll { overflow-x: auto; }
"""


@dataclass(frozen=True)
class Image:
    """A PNG the report shows: linked from report.md, embedded in report.html."""

    path: Path
    caption: str


@dataclass(frozen=True)
class Section:
    """A heading and its blocks, in order: paragraphs (plain text), tables and images."""

    title: str
    blocks: tuple[str | Table | Image, ...]


# --- Markdown ----------------------------------------------------------------------------------------------


def md_text(value: str) -> str:
    """Plain text for Markdown, one line, with inline HTML neutralized: ``<`` and ``&`` are enough to stop
    a tag or an entity from forming, and leaving ``>`` keeps error messages such as ``must be > 0`` readable."""
    return " ".join(str(value).split()).replace("&", "&amp;").replace("<", "&lt;")


def md_cell(value: str) -> str:
    return md_text(value).replace("|", "\\|")


def numeric_columns(table: Table) -> list[bool]:
    """Which columns hold only numbers (right-aligned); names, overrides and errors read better left-aligned."""
    return [i > 0 and all(NUMERIC.match(row[i]) for row in table.rows) for i in range(len(table.header))]


def md_table(table: Table) -> str:
    lines = [
        "| " + " | ".join(md_cell(h) for h in table.header) + " |",
        "|" + "|".join("---:" if numeric else "---" for numeric in numeric_columns(table)) + "|",
    ]
    for i, row in enumerate(table.rows):
        cells = [f"**{md_cell(c)}** {BEST_MARK}" if (i, j) in table.marked else md_cell(c) for j, c in enumerate(row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def md_image(image: Image, base: Path) -> str:
    caption = md_text(image.caption).replace("[", "\\[").replace("]", "\\]")
    return f"![{caption}]({image.path.relative_to(base).as_posix()})"


def render_block(block, table: Callable[[Table], str], image: Callable[[Image], str], text: Callable[[str], str]) -> str:
    """One block of a section, in whichever format the three renderers write."""
    if isinstance(block, Table):
        return table(block)
    if isinstance(block, Image):
        return image(block)
    return text(block)


def to_markdown(title: str, sections: list[Section], base: Path) -> str:
    """report.md; images are linked relative to ``base`` (the sweep folder)."""
    parts = [f"# {md_text(title)}"]
    for section in sections:
        parts.append(f"## {md_text(section.title)}")
        parts += [render_block(block, md_table, lambda image: md_image(image, base), md_text) for block in section.blocks]
    return "\n\n".join(parts) + "\n"


# --- HTML --------------------------------------------------------------------------------------------------


def esc(value: str) -> str:
    return html.escape(str(value), quote=True)


def html_cell(value: str, best: bool, numeric: bool) -> str:
    classes = " ".join(name for name, on in (("best", best), ("num", numeric)) if on)
    attribute = f' class="{classes}"' if classes else ""
    return f"<td{attribute}>{esc(value)}{' ' + BEST_MARK if best else ''}</td>"


def html_table(table: Table) -> str:
    numeric = numeric_columns(table)
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = []
    for i, row in enumerate(table.rows):
        cells = "".join(html_cell(c, (i, j) in table.marked, numeric[j]) for j, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody></table></div>"


def html_image(image: Image) -> str:
    """The PNG inline as a data URI, so the page opens offline and travels as one file."""
    data = base64.b64encode(image.path.read_bytes()).decode("ascii")
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(image.caption)}">'
        f"<figcaption>{esc(image.caption)}</figcaption></figure>"
    )


def to_html(title: str, sections: list[Section]) -> str:
    """report.html: one file, no external scripts, styles, fonts or images."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{esc(section.title)}</h2>")
        parts += [render_block(block, html_table, html_image, lambda text: f"<p>{esc(text)}</p>") for block in section.blocks]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
