"""An interactive plotly picture of a (small) cluster graph: servers at the bottom, switch tiers above."""

from __future__ import annotations

import networkx as nx
import plotly.graph_objects as go

MAX_DRAW_NODES = 3000  # beyond this the page is an unreadable hairball and slow to open
LAYER = {"gpu": 0.0, "nvswitch": 1.0, "nic": 2.0}
COLOR = {"gpu": "#76b900", "nvswitch": "#999999", "nic": "#1f77b4", "switch": "#d62728"}
EDGE_COLOR = {"nvlink": "#76b900", "pcie": "#bbbbbb", "nic": "#1f77b4", "fabric": "#d62728"}


def _positions(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    layers: dict[float, list[str]] = {}
    for n, d in g.nodes(data=True):
        y = LAYER.get(d["kind"], 3.0 + d.get("tier", 0))
        layers.setdefault(y, []).append(n)
    pos = {}
    for y, names in layers.items():
        names.sort(key=lambda n: (g.nodes[n].get("plane", 0), g.nodes[n].get("node", 0),
                                  g.nodes[n].get("index", 0), n))
        for i, n in enumerate(names):
            pos[n] = ((i + 0.5) / len(names), y)
    return pos


def topology_figure(g: nx.DiGraph, title: str) -> go.Figure:
    """Nodes coloured by kind, links by class; hover shows names, capacities and latencies."""
    if g.number_of_nodes() > MAX_DRAW_NODES:
        raise ValueError(f"--draw: {g.number_of_nodes()} graph nodes is too many to draw (at most "
                         f"{MAX_DRAW_NODES}); pass a smaller --gpus or --radix")
    pos = _positions(g)
    fig = go.Figure()
    for cls, color in EDGE_COLOR.items():
        xs, ys = [], []
        for u, v, d in g.edges(data=True):
            if d["link"] == cls and u < v:
                xs += [pos[u][0], pos[v][0], None]
                ys += [pos[u][1], pos[v][1], None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": color, "width": 1},
                                     name=f"{cls} links", hoverinfo="skip", opacity=0.5))
    for kind, color in COLOR.items():
        names = [n for n, d in g.nodes(data=True) if d["kind"] == kind]
        if not names:
            continue
        text = []
        for n in names:
            out = [f"{v}: {d['capacity_gbps']:g} GB/s, {d['latency_us']:g} µs" for _, v, d in g.out_edges(n, data=True)]
            extra = "<br>".join(out[:8]) + ("<br>…" if len(out) > 8 else "")
            attrs = ", ".join(f"{k}={val}" for k, val in g.nodes[n].items() if k != "kind")
            text.append(f"<b>{n}</b> ({kind}; {attrs})<br>{extra}")
        fig.add_trace(go.Scatter(x=[pos[n][0] for n in names], y=[pos[n][1] for n in names], mode="markers",
                                 marker={"color": color, "size": 7 if kind != "switch" else 10}, name=kind,
                                 text=text, hoverinfo="text"))
    fig.update_layout(title=title, showlegend=True, plot_bgcolor="white",
                      xaxis={"visible": False}, yaxis={"visible": False}, height=700)
    return fig
