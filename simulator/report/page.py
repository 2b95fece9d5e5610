"""Page assembly: headline numbers, notes and figures in one self-contained HTML file (plotly.js inlined).

plotly.js is embedded once in a ``<script>`` element and every figure is a ``<div>`` drawn by it, so the file
opens offline, from disk or an e-mail attachment, with nothing fetched.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0 auto; max-width: 1280px;
       padding: 1rem 2rem; color: #222; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.15rem; margin-top: 2rem; }
.subtitle { color: #555; margin-top: 0; }
table.headline { border-collapse: collapse; margin: 1rem 0; }
table.headline td { padding: .25rem 1.2rem .25rem 0; border-bottom: 1px solid #eee; }
table.headline td.value { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
.note { color: #666; font-size: .9rem; } .warn { color: #b00; font-weight: 600; }
.figure { margin: 1rem 0 2rem 0; }
"""


@dataclass
class Section:
    title: str
    figure: go.Figure | None = None
    note: str = ""  # plain text, escaped on output


@dataclass
class Page:
    title: str
    subtitle: str = ""
    headline: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def figure_div(fig: go.Figure, div_id: str) -> str:
    fig.update_layout(template="plotly_white")
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=div_id,
                       config={"displaylogo": False, "responsive": True})


def render(page: Page) -> str:
    """The whole HTML document as a string."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{esc(page.title)}</title>", f"<style>{STYLE}</style>",
             f"<script type='text/javascript'>{get_plotlyjs()}</script>", "</head><body>",
             f"<h1>{esc(page.title)}</h1>"]
    if page.subtitle:
        parts.append(f"<p class='subtitle'>{esc(page.subtitle)}</p>")
    if page.headline:
        rows = "".join(f"<tr><td>{esc(k)}</td><td class='value'>{esc(v)}</td></tr>" for k, v in page.headline)
        parts.append(f"<table class='headline' id='headline'>{rows}</table>")
    for i, section in enumerate(page.sections):
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.note:
            parts.append(f"<p class='note'>{esc(section.note)}</p>")
        if section.figure is not None:
            parts.append(f"<div class='figure'>{figure_div(section.figure, f'figure-{i}')}</div>")
    for note in page.notes:
        parts.append(f"<p class='note'>note: {esc(note)}</p>")
    parts.append("<p class='note'>Written by moesim. Interactive: drag to zoom, double-click to reset, "
                 "click a legend entry to hide it.</p></body></html>")
    return "\n".join(parts)
