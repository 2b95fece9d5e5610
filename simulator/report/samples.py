"""The step-time histogram of ``moesim simulate --samples N`` (``Result.samples``, see simulator/uncertainty.py)."""

from __future__ import annotations

import plotly.graph_objects as go


def samples_figure(samples: dict, step_time_s: float) -> go.Figure:
    """Bars of the sampled step times (seconds) with the p50, p95 and unjittered step marked."""
    counts, edges = samples["histogram"]["counts"], samples["histogram"]["edges_s"]
    centres = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    widths = [b - a for a, b in zip(edges[:-1], edges[1:])]
    fig = go.Figure(go.Bar(x=centres, y=counts, width=widths, marker_color="#4C78A8", name="samples",
                           hovertemplate="%{x:.4f} s: %{y} samples<extra></extra>"))
    # Labels at different corners: p50 and the unjittered step are often a hair apart.
    for label, x, dash, where in (("p50", samples["p50_s"], "solid", "top left"),
                                  ("p95", samples["p95_s"], "dash", "top right"),
                                  ("no jitter", step_time_s, "dot", "bottom right")):
        fig.add_vline(x=x, line_dash=dash, line_color="#E45756", annotation_text=f"{label} {x:.3f} s",
                      annotation_position=where)
    fig.update_layout(title=f"step time over {samples['samples']} samples (kernel-time CV "
                            f"{samples['kernel_time_cv']:.1%}, routing resampled)",
                      xaxis_title="step time (s)", yaxis_title="samples", bargap=0.05, height=380,
                      margin=dict(t=60, l=60, r=20, b=50))
    return fig
