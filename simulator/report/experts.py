"""Expert load of an :class:`~moesim.simulator.report.traffic.ExpertLoad` as deviation from the mean, busiest first."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from moesim.simulator.report.traffic import ExpertLoad


def deviation_pct(values: list[float]) -> list[float]:
    """Each value's deviation from the mean of ``values``, in percent (0 for an all-zero list)."""
    mean = sum(values) / len(values) if values else 0.0
    return [(v / mean - 1) * 100 if mean else 0.0 for v in values]


def expert_note(load: ExpertLoad) -> str:
    """What the chart was sampled on, for the section's note."""
    busiest = max(load.tokens_per_gpu) / (sum(load.tokens_per_gpu) / len(load.tokens_per_gpu))
    return (f"One MoE layer, one micro-batch of one EP group: {load.routed_tokens:,} tokens routed by the "
            f"{load.router} router (sampled on {load.sampled_tokens:,} and scaled). Bars are sorted, busiest "
            f"first; 0 is the mean. The busiest GPU gets {busiest:.3f}× the mean, and the combine waits for it.")


def expert_figure(load: ExpertLoad) -> go.Figure:
    """Two sorted bar charts: each routed expert's and each EP GPU's token count as % deviation from the mean."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.7, 0.3], horizontal_spacing=0.08, subplot_titles=(
        "per routed expert", "per GPU of the EP group"))
    experts, gpus = load.tokens_per_expert, load.tokens_per_gpu
    order = sorted(range(len(experts)), key=lambda e: (-experts[e], e))
    dev = deviation_pct(experts)
    fig.add_trace(go.Bar(x=list(range(len(order))), y=[dev[e] for e in order], name="per expert",
                         marker_color=["#E45756" if dev[e] > 0 else "#4C78A8" for e in order],
                         customdata=[[e, e // load.experts_per_gpu, experts[e]] for e in order],
                         hovertemplate="expert %{customdata[0]} (GPU %{customdata[1]}): %{customdata[2]:,.0f} "
                                       "tokens, %{y:+.1f}% vs the mean<extra></extra>"), row=1, col=1)
    gorder = sorted(range(len(gpus)), key=lambda g: (-gpus[g], g))
    gdev = deviation_pct(gpus)
    fig.add_trace(go.Bar(x=[f"GPU {g}" for g in gorder], y=[gdev[g] for g in gorder], name="per GPU",
                         marker_color=["#E45756" if gdev[g] > 0 else "#4C78A8" for g in gorder],
                         customdata=[gpus[g] for g in gorder],
                         hovertemplate="%{x}: %{customdata:,.0f} tokens, %{y:+.1f}% vs the mean<extra></extra>"),
                  row=1, col=2)
    fig.update_layout(title="expert load: deviation from the mean token count", showlegend=False, height=420,
                      margin=dict(t=80))
    fig.update_xaxes(title_text="routed experts, busiest first (rank by load)", row=1, col=1)
    fig.update_xaxes(title_text="EP GPUs, busiest first", row=1, col=2)
    fig.update_yaxes(title_text="tokens vs the mean (%)", ticksuffix="%", row=1, col=1)
    fig.update_yaxes(title_text="tokens vs the mean (%)", ticksuffix="%", row=1, col=2)
    return fig
