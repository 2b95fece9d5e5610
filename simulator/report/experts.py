"""Tokens per expert and per GPU of an :class:`~simulator.report.traffic.ExpertLoad`."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from simulator.report.traffic import ExpertLoad


def expert_figure(load: ExpertLoad) -> go.Figure:
    """Two bar charts: token copies per routed expert and per GPU of one EP group, with the mean marked."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3], subplot_titles=(
        "tokens per routed expert", "tokens per GPU of the EP group"))
    experts, gpus = load.tokens_per_expert, load.tokens_per_gpu
    fig.add_trace(go.Bar(x=list(range(len(experts))), y=experts, name="per expert", marker_color="#4C78A8",
                         customdata=[e // load.experts_per_gpu for e in range(len(experts))],
                         hovertemplate="expert %{x} (GPU %{customdata}): %{y:,.0f} tokens<extra></extra>"),
                  row=1, col=1)
    fig.add_trace(go.Bar(x=list(range(len(gpus))), y=gpus, name="per GPU",
                         marker_color="#F58518", hovertemplate="GPU %{x}: %{y:,.0f} tokens<extra></extra>"),
                  row=1, col=2)
    for values, col in ((experts, 1), (gpus, 2)):
        mean = sum(values) / len(values)
        fig.add_hline(y=mean, line_dash="dot", row=1, col=col, annotation_text=f"mean {mean:,.0f}")
    imbalance = max(gpus) / (sum(gpus) / len(gpus))
    fig.update_layout(
        title=(f"expert load, one MoE layer, one micro-batch ({load.routed_tokens:,} tokens, {load.router} "
               f"routing, sampled on {load.sampled_tokens:,}); busiest GPU {imbalance:.3f}× the mean"),
        showlegend=False)
    fig.update_xaxes(title_text="expert", row=1, col=1)
    fig.update_xaxes(title_text="GPU (EP rank)", row=1, col=2)
    return fig
