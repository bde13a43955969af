"""A report being written: its figures as PNG files, its tables as CSV files, and one self-contained HTML page that
embeds every figure (base64 PNG) and shows every table, so it opens offline with nothing beside it."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from tuneprune.output.plotting import save_figure
from tuneprune.output.summaries import write_rows

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.3em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: right; }
th { background: #f2f2f2; } td:first-child { text-align: left; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
p.note { color: #555; font-style: italic; }
"""


def cell(value: Any) -> str:
    """How a table cell reads: floats to four significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


class Report:
    """Collects headings, text, tables and figures; :meth:`write_html` writes the page into ``out``, which is made
    when the first file is written (a report refused before then leaves no folder)."""

    def __init__(self, title: str, out: Path) -> None:
        self.title = title
        self.out = Path(out)
        self.blocks: list[str] = []
        self.files: list[Path] = []

    def path(self, name: str) -> Path:
        """Where the file ``name`` goes, listed in :attr:`files`: ``out / name``, ``out`` made if it is not there yet."""
        self.out.mkdir(parents=True, exist_ok=True)
        self.files.append(self.out / name)
        return self.out / name

    def heading(self, text: str) -> None:
        self.blocks.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str, note: bool = False) -> None:
        css = ' class="note"' if note else ""
        self.blocks.append(f"<p{css}>{html.escape(text)}</p>")

    def table(self, name: str, rows: Sequence[dict[str, Any]], caption: str = "", inline: bool = True) -> Path:
        """Write ``NAME.csv`` (every row has the first row's keys) and, if ``inline``, show it as a table."""
        path = write_rows(rows, self.path(f"{name}.csv"))
        if not inline:
            self.text(f"{caption} ({len(rows)} rows): {path.name}", note=True)
            return path
        columns = list(rows[0]) if rows else []
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(r[c]))}</td>" for c in columns) + "</tr>" for r in rows)
        title = f"<caption>{html.escape(caption)}</caption>" if caption else ""
        self.blocks.append(f"<table>{title}<tr>{head}</tr>{body}</table>")
        return path

    def figure(self, name: str, fig: Any, caption: str = "") -> Path:
        """Save a matplotlib figure as ``NAME.png``, close it, and embed it in the page."""
        path = save_figure(fig, self.path(f"{name}.png"), dpi=100)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.blocks.append(f'<img src="data:image/png;base64,{data}" alt="{html.escape(name)}">')
        if caption:
            self.text(caption, note=True)
        return path

    def write_yaml(self, name: str, document: dict[str, Any], header: str = "") -> Path:
        """Write ``NAME`` beside the report (a config, a rule, a preset): ``header`` (comment lines), then ``document``."""
        path = self.path(name)
        path.write_text(header + yaml.safe_dump(document, sort_keys=False))
        return path

    def remove_stale(self, pattern: str) -> None:
        """Delete the files of ``out`` whose names match ``pattern`` (a regular expression, the whole name) that this
        report did not write: those an earlier run of the command left there (presets of trials no longer chosen, a
        list of trials no longer left out); a name the command never gives, a file of the user's, is kept."""
        stale = [p for p in self.out.glob("*") if re.fullmatch(pattern, p.name) and p not in self.files]
        for old in filter(Path.is_file, stale):
            old.unlink()

    def write_html(self, name: str = "report.html") -> Path:
        path = self.path(name)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        page = (
            f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>"
            f'<p class="note">written {stamp} by tuneprune</p>\n' + "\n".join(self.blocks) + "\n</body></html>\n"
        )
        path.write_text(page)
        return path
