"""The pipeline timeline: a zoomable Gantt chart, one row per rank and stream, one bar per engine record.

Bars are grouped into one plotly trace per phase (forward, input-backward, weight-backward, optimizer,
data-parallel sync, pipeline send) so the legend toggles them; hover shows the op, micro-batch, stage, start
and duration. Records are plain tuples in :data:`simulator.report.payload.TIMELINE_FIELDS` order.
"""

from __future__ import annotations

from collections import defaultdict

import plotly.graph_objects as go

MS = 1e3
PHASE_STYLE = {  # legend name and colour per phase
    "F": ("forward", "#4C78A8"),
    "B": ("backward (input)", "#F58518"),
    "W": ("backward (weight)", "#54A24B"),
    "opt": ("optimizer", "#B279A2"),
    "dp": ("gradient / parameter sync", "#9D755D"),
    "send": ("pipeline send", "#BAB0AC"),
}
COMM_STYLE = {  # communication-stream segments are drawn lighter than compute of the same phase
    "F": "#9ECAE9", "B": "#FFBF79", "W": "#8CD17D",
}


def row_name(rank: int, stream: str) -> str:
    return f"rank {rank} · {stream}"


def _style_key(stream: str, label: str, phase: str) -> str:
    if label.startswith("send"):
        return "send"
    if stream == "comm" and phase in COMM_STYLE:
        return f"comm-{phase}"
    return phase


def timeline_figure(records: list[tuple], ranks: int, makespan_s: float, title: str = "") -> go.Figure:
    """Gantt chart of ``records`` (rank, stream, start_s, end_s, label, phase, micro_batch, stage); x in ms."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for rank, stream, start, end, label, phase, mb, stage in records:
        if end <= start:
            continue
        g = groups[_style_key(stream, label, phase)]
        g["y"].append(row_name(rank, stream))
        g["base"].append(start * MS)
        g["x"].append((end - start) * MS)
        g["text"].append(f"{label}<br>micro-batch {mb}, stage {stage}" if mb >= 0 else label)
    # Full-fidelity timelines record a few GPUs out of many (rank = global GPU index): rows for those only.
    present = sorted({rec[0] for rec in records})
    shown = present if present and present[-1] >= ranks or len(present) < ranks else range(ranks)
    order = [row_name(r, s) for r in shown for s in ("compute", "comm")]
    fig = go.Figure()
    for key in ["F", "B", "W", "comm-F", "comm-B", "comm-W", "send", "dp", "opt"]:
        if key not in groups:
            continue
        g = groups[key]
        if key.startswith("comm-"):
            name, colour = f"{PHASE_STYLE[key[5:]][0]} comm", COMM_STYLE[key[5:]]
        else:
            name, colour = PHASE_STYLE.get(key, (key, "#888888"))
        fig.add_trace(go.Bar(
            y=g["y"], x=g["x"], base=g["base"], orientation="h", name=name, marker_color=colour,
            marker_line_width=0, customdata=g["text"],
            hovertemplate="%{customdata}<br>start %{base:.3f} ms, %{x:.3f} ms<extra>%{y}</extra>"))
    fig.update_layout(
        title=title or f"pipeline timeline — step {makespan_s:.3f} s", barmode="overlay", bargap=0.25,
        height=max(340, 90 + 34 * len(order)), legend=dict(orientation="h", yanchor="top", y=-0.06, x=0),
        margin=dict(l=120, r=20, t=50, b=40))
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(order)))
    fig.update_xaxes(range=[0, makespan_s * MS], ticksuffix=" ms")
    return fig
