"""Page assembly: headline numbers, notes and figures in one self-contained HTML file (plotly.js inlined).

plotly.js and ``moesim.js`` (the timeline's level-of-detail drawing and the downloads) are embedded once in
``<script>`` elements and every figure is a ``<div>`` drawn by them, so the file opens offline, from disk or an
e-mail attachment, with nothing fetched. Under every chart, buttons download its data as CSV or JSON. No chart
offers plotly's "send to cloud": a moesim page may describe a confidential plan.

Which plotly.js: compiling the full bundle (4.8 MB) is most of the time a browser takes to open a page, so a
page whose charts use only the trace types of plotly's "cartesian" partial bundle (``vendor/``, 1.5 MB; bars,
scatter, heat maps, …: every result and compare page) carries that one; others (a sweep's parallel
coordinates) the full bundle of the installed ``plotly`` package.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from moesim.simulator.report.timeline import script

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
.downloads { font-size: .8rem; color: #666; margin: -.6rem 0 1.5rem 0; }
.downloads button { font-size: .8rem; margin-left: .4rem; padding: .1rem .5rem; cursor: pointer; }
table.compare { border-collapse: collapse; margin: 1rem 0; font-variant-numeric: tabular-nums; }
table.compare th, table.compare td { padding: .25rem .9rem; border-bottom: 1px solid #eee; text-align: right; }
table.compare th:first-child, table.compare td:first-child { text-align: left; }
td.better { color: #1a7f37; } td.worse { color: #b00; }
"""
PARTIAL_BUNDLE = Path(__file__).with_name("vendor") / "plotly-cartesian.min.js"
PARTIAL_TRACES = frozenset({"bar", "box", "contour", "heatmap", "histogram", "histogram2d", "histogram2dcontour",
                            "image", "pie", "scatter", "scatterternary", "violin"})  # what that bundle registers
TIMELINE_TRACES = frozenset({"bar", "heatmap", "scatter"})  # what moesim.js draws a timeline with
CONFIG = {"displaylogo": False, "responsive": True, "showSendToCloud": False,
          "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio", "lasso2d", "select2d"]}


@dataclass
class Section:
    title: str
    figure: go.Figure | None = None
    note: str = ""  # plain text, escaped on output
    timeline: dict | None = None  # moesim.simulator.report.timeline.timeline_data, drawn by moesim.js
    html: str = ""  # trusted markup placed before the figure (a comparison table)


@dataclass
class Page:
    title: str
    subtitle: str = ""
    headline: list[tuple[str, str]] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def script_safe(text: str) -> str:
    """JSON that cannot end or comment out the <script> element holding it (same value once parsed)."""
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def plotly_js(trace_types: set[str]) -> str:
    """The smallest plotly.js that draws these trace types: the cartesian partial bundle, or the full one."""
    return PARTIAL_BUNDLE.read_text() if trace_types <= PARTIAL_TRACES else get_plotlyjs()


def trace_types(page: Page) -> set[str]:
    """Every plotly trace type the page's charts use (a timeline counts as what moesim.js draws it with)."""
    types: set[str] = set()
    for section in page.sections:
        if section.timeline is not None:
            types |= TIMELINE_TRACES
        elif section.figure is not None:
            types |= {trace.type for trace in section.figure.data}
    return types


def figure_div(fig: go.Figure, div_id: str) -> str:
    """A chart's div and its figure as JSON; ``moesim.later`` draws it once the timelines are on screen."""
    fig.update_layout(template="plotly_white")
    payload = script_safe(fig.to_json())
    return (f"<div id='{div_id}' class='chart'></div>"
            f"<script type='application/json' id='{div_id}-figure'>{payload}</script>"
            f"<script type='text/javascript'>moesim.later('{div_id}');</script>")


def standalone_html(fig: go.Figure, title: str) -> str:
    """One figure as a whole offline HTML page with a ``<title>`` and the page config (no send-to-cloud)."""
    text = pio.to_html(fig, include_plotlyjs=False, full_html=True, config=CONFIG)
    bundle = f"<script type='text/javascript'>{plotly_js({trace.type for trace in fig.data})}</script>"
    return text.replace("<head>", f"<head><title>{html.escape(title)}</title>{bundle}", 1)


INT_ARRAYS = (("b", "Int8Array", 1 << 7), ("h", "Int16Array", 1 << 15), ("i", "Int32Array", 1 << 31))


def typed_column(values: list) -> dict:
    """A column of numbers as a base64 little-endian JS typed array: ``{"array": "Float64Array", "base64": …}``.

    Integers take the smallest of Int8/16/32Array that holds them, other numbers (and larger integers)
    Float64Array: every value comes back exactly, in about half the bytes of its decimal JSON, and the browser
    decodes it much faster than it parses 10^5 decimals.
    """
    code, name = "d", "Float64Array"
    if all(isinstance(v, int) for v in values):  # bools too (0 or 1)
        low, high = min(values, default=0), max(values, default=0)
        code, name = next(((c, n) for c, n, limit in INT_ARRAYS if -limit <= low and high < limit),
                          ("d", "Float64Array"))
    packed = array(code, values)  # C char, short, int: 1, 2 and 4 bytes wherever CPython runs
    if sys.byteorder == "big":
        packed.byteswap()
    return {"array": name, "base64": base64.b64encode(packed.tobytes()).decode("ascii")}


def compact(data: dict) -> dict:
    """Timeline data as the page carries it: the ``ops`` and ``chunks`` columns as :func:`typed_column`."""
    return {**data, **{table: {name: typed_column(list(values)) for name, values in data[table].items()}
                       for table in ("ops", "chunks")}}


def timeline_div(data: dict, div_id: str) -> str:
    """A timeline's div, its data as a JSON script element (``</`` escaped), and the call that draws it."""
    payload = script_safe(json.dumps(compact(data), separators=(",", ":")))
    return (f"<div id='{div_id}' class='timeline'></div>"
            f"<script type='application/json' id='{div_id}-data'>{payload}</script>"
            f"<script type='text/javascript'>moesim.attach('{div_id}', '{div_id}-data');</script>")


def downloads(div_id: str, name: str, timeline: bool) -> str:
    table = (f"moesim.tableOfTimeline(document.getElementById('{div_id}'))" if timeline
             else f"moesim.tableOfFigure(document.getElementById('{div_id}'))")
    buttons = "".join(f"<button type='button' data-format='{fmt}' onclick=\"moesim.download({table}, "
                      f"'{name}', '{fmt}')\">{fmt.upper()}</button>" for fmt in ("csv", "json"))
    return f"<div class='downloads'>this chart's data:{buttons}</div>"


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:60] or "chart"


def render(page: Page) -> str:
    """The whole HTML document as a string."""
    esc = html.escape
    parts = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
             f"<title>{esc(page.title)}</title>", f"<style>{STYLE}</style>",
             f"<script type='text/javascript'>{plotly_js(trace_types(page))}</script>",
             f"<script type='text/javascript'>{script()}</script>", "</head><body>",
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
        if section.html:
            parts.append(section.html)
        div_id = f"figure-{i}"
        if section.timeline is not None:
            parts.append(f"<div class='figure'>{timeline_div(section.timeline, div_id)}</div>")
        elif section.figure is not None:
            parts.append(f"<div class='figure'>{figure_div(section.figure, div_id)}</div>")
        if section.timeline is not None or section.figure is not None:
            parts.append(downloads(div_id, slug(section.title), section.timeline is not None))
    for note in page.notes:
        parts.append(f"<p class='note'>note: {esc(note)}</p>")
    parts.append("<p class='note'>Written by moesim. Interactive: drag to zoom, double-click to reset, "
                 "click a legend entry to hide it.</p></body></html>")
    return "\n".join(parts)
