"""The analysis report: one HTML page and the same content as Markdown, the figures as PNG, every number as JSON.

``write_report(output_dir, sections, title=..., results=...)`` writes into ``output_dir``:

- ``report.html`` — a self-contained page (inline CSS, figures embedded as base64 PNG data);
- ``report.md`` — the same headings, text and tables, figures linked as the PNG files;
- ``<figure>.png`` — one file per figure of the sections;
- ``results.json`` — ``results`` with numpy values converted and non-finite numbers written as null.

A section is a heading with paragraphs, tables and figures, rendered in that order.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from fsdkit.analysis.plots import save_figure

MISSING = "–"
CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.95em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding-bottom: .3em; }
th, td { border: 1px solid #ccc; padding: .3em .7em; text-align: left; }
th { background: #f0f0f0; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
"""


@dataclass
class Table:
    """A table: column headers and rows of cells (numbers are formatted by :func:`format_value`)."""

    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str = ""

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.caption!r}: row {list(row)} has {len(row)} cells, expected {len(self.columns)}"
                )


@dataclass
class ReportFigure:
    """A matplotlib figure saved as ``filename`` (a PNG name inside the output folder)."""

    filename: str
    figure: Figure
    caption: str = ""

    def __post_init__(self) -> None:
        if Path(self.filename).name != self.filename or not self.filename.endswith(".png"):
            raise ValueError(f"figure filename must be a plain .png file name, got {self.filename!r}")


@dataclass
class Section:
    """A report section: heading, then paragraphs (plain text), tables and figures."""

    title: str
    paragraphs: Sequence[str] = field(default_factory=list)
    tables: Sequence[Table] = field(default_factory=list)
    figures: Sequence[ReportFigure] = field(default_factory=list)


def format_value(value: Any) -> str:
    """Cell text: None/NaN → "–", int → thousands separators, float → 4 significant decimals, else str()."""
    if value is None:
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if not math.isfinite(v):
            return MISSING
        if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
            return f"{v:.3e}"
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(value)


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and paths for ``json``; NaN and ±inf become None."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _numeric_columns(table: Table) -> list[bool]:
    """A column is right-aligned when every cell is a number or missing (and not every cell is missing)."""
    flags = []
    for index in range(len(table.columns)):
        cells = [row[index] for row in table.rows if row[index] is not None]
        flags.append(bool(cells) and all(_is_number(c) for c in cells))
    return flags


def _html_table(table: Table) -> str:
    numeric = _numeric_columns(table)
    attrs = [' class="num"' if flag else "" for flag in numeric]
    parts = ["<table>"]
    if table.caption:
        parts.append(f"<caption>{html.escape(table.caption)}</caption>")
    head = "".join(f"<th{a}>{html.escape(str(c))}</th>" for a, c in zip(attrs, table.columns, strict=True))
    parts.append(f"<thead><tr>{head}</tr></thead>")
    parts.append("<tbody>")
    for row in table.rows:
        cells = "".join(f"<td{a}>{html.escape(format_value(v))}</td>" for a, v in zip(attrs, row, strict=True))
        parts.append(f"<tr>{cells}</tr>")
    parts.append("</tbody></table>")
    return "\n".join(parts)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> str:
    lines = []
    if table.caption:
        lines += [f"**{_md_cell(table.caption)}**", ""]
    lines.append("| " + " | ".join(_md_cell(str(c)) for c in table.columns) + " |")
    lines.append("|" + "|".join("---:" if flag else ":---" for flag in _numeric_columns(table)) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(_md_cell(format_value(v)) for v in row) + " |")
    return "\n".join(lines)


def write_report(
    output_dir: str | Path,
    sections: Sequence[Section],
    *,
    title: str,
    results: Mapping[str, Any],
) -> dict[str, Path | list[Path]]:
    """Write ``report.html``, ``report.md``, the sections' PNG figures and ``results.json`` into ``output_dir``.

    Returns the paths written: ``{"html", "markdown", "json", "figures": [...]}``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = [f.filename for s in sections for f in s.figures]
    if len(set(names)) != len(names):
        raise ValueError(f"figure file names repeat: {names}")

    figures = []
    html_parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    md_parts = [f"# {title}"]
    toc = [s.title for s in sections]
    if len(toc) > 1:
        html_parts.append(
            "<nav><ol>"
            + "".join(f'<li><a href="#s{i}">{html.escape(t)}</a></li>' for i, t in enumerate(toc, 1))
            + "</ol></nav>"
        )
        md_parts.append("\n".join(f"{i}. {t}" for i, t in enumerate(toc, 1)))

    for index, section in enumerate(sections, 1):
        html_parts.append(f'<h2 id="s{index}">{html.escape(section.title)}</h2>')
        md_parts.append(f"## {section.title}")
        for paragraph in section.paragraphs:
            html_parts.append(f"<p>{html.escape(paragraph)}</p>")
            md_parts.append(paragraph)
        for table in section.tables:
            html_parts.append(_html_table(table))
            md_parts.append(_md_table(table))
        for fig in section.figures:
            path = save_figure(fig.figure, out / fig.filename)
            figures.append(path)
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            alt = html.escape(fig.caption or fig.filename)
            caption = f"{html.escape(fig.caption)} ({html.escape(fig.filename)})" if fig.caption else ""
            html_parts.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
                + (f"<figcaption>{caption}</figcaption>" if caption else "")
                + "</figure>"
            )
            md_parts.append(f"![{_md_cell(fig.caption or fig.filename)}]({fig.filename})")
            if fig.caption:
                md_parts.append(f"*{fig.caption}*")
    html_parts.append("</body></html>")

    html_path = out / "report.html"
    md_path = out / "report.md"
    json_path = out / "results.json"
    html_path.write_text("\n".join(html_parts) + "\n", encoding="utf-8")
    md_path.write_text("\n\n".join(md_parts) + "\n", encoding="utf-8")
    json_path.write_text(json.dumps(to_jsonable(results), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return {"html": html_path, "markdown": md_path, "json": json_path, "figures": figures}
