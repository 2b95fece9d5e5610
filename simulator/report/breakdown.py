"""Per-stage charts from a result's ``stages``: step-time breakdown, exposed comm vs compute, memory vs HBM.

Each function takes the plain ``stages`` list of ``Result.to_dict()`` (dicts with the
:class:`~moesim.simulator.simulate.StageResult` fields; seconds and GB) and returns a plotly figure.
"""

from __future__ import annotations

import plotly.graph_objects as go

STEP_PARTS = (  # field, legend name, colour
    ("forward_s", "forward", "#4C78A8"),
    ("backward_input_s", "backward (input)", "#F58518"),
    ("backward_weight_s", "backward (weight)", "#54A24B"),
    ("optimizer_s", "optimizer", "#B279A2"),
    ("exposed_comm_s", "exposed communication", "#E45756"),
    ("host_bound_s", "host-bound (GPU waits for the CPU)", "#F2CF5B"),
    ("bubble_s", "bubble", "#D3D3D3"),
)
MEMORY_PARTS = (
    ("weights_gb", "weights", "#4C78A8"),
    ("gradients_gb", "gradients", "#72B7B2"),
    ("optimizer_states_gb", "optimizer states", "#B279A2"),
    ("activations_gb", "activations", "#F58518"),
)


def _ranks(stages: list[dict]) -> list[str]:
    return [f"rank {i}" for i in range(len(stages))]


def step_breakdown_figure(stages: list[dict], step_time_s: float) -> go.Figure:
    """Stacked bars: where each pipeline rank's step goes (sums to the step time)."""
    fig = go.Figure()
    x = _ranks(stages)
    for field, name, colour in STEP_PARTS:
        # .get: results saved before the host was modelled have no host_bound_s
        fig.add_trace(go.Bar(x=x, y=[s.get(field, 0.0) for s in stages], name=name, marker_color=colour,
                             hovertemplate=f"{name}: %{{y:.3f}} s<extra>%{{x}}</extra>"))
    fig.add_hline(y=step_time_s, line_dash="dot", annotation_text=f"step {step_time_s:.3f} s")
    fig.update_layout(title="step-time breakdown per pipeline rank", barmode="stack", yaxis_title="seconds",
                      legend_orientation="h", legend_y=-0.2)
    return fig


def exposed_comm_figure(stages: list[dict]) -> go.Figure:
    """Per rank: compute time, communication hidden behind it, and communication left exposed."""
    compute = [s["forward_s"] + s["backward_input_s"] + s["backward_weight_s"] + s["optimizer_s"] for s in stages]
    exposed = [s["exposed_comm_s"] for s in stages]
    hidden = [max(0.0, s["comm_s"] - s["exposed_comm_s"]) for s in stages]
    x = _ranks(stages)
    fig = go.Figure([
        go.Bar(x=x, y=compute, name="compute", marker_color="#4C78A8", offsetgroup="compute",
               hovertemplate="compute %{y:.3f} s<extra>%{x}</extra>"),
        go.Bar(x=x, y=hidden, name="communication hidden by compute", marker_color="#9ECAE9",
               offsetgroup="comm", hovertemplate="hidden comm %{y:.3f} s<extra>%{x}</extra>"),
        go.Bar(x=x, y=exposed, name="communication exposed", marker_color="#E45756", offsetgroup="comm",
               base=hidden, hovertemplate="exposed comm %{y:.3f} s<extra>%{x}</extra>"),
    ])
    fig.update_layout(title="exposed communication vs compute", barmode="group", yaxis_title="seconds",
                      legend_orientation="h", legend_y=-0.2)
    return fig


def memory_figure(stages: list[dict], hbm_gb: float) -> go.Figure:
    """Stacked peak memory per rank against the GPU's HBM capacity."""
    fig = go.Figure()
    x = _ranks(stages)
    for field, name, colour in MEMORY_PARTS:
        fig.add_trace(go.Bar(x=x, y=[s[field] for s in stages], name=name, marker_color=colour,
                             hovertemplate=f"{name}: %{{y:.1f}} GB<extra>%{{x}}</extra>"))
    fig.add_hline(y=hbm_gb, line_color="#E45756", line_dash="dash", annotation_text=f"HBM {hbm_gb:g} GB")
    peak = max((s["peak_memory_gb"] for s in stages), default=0.0)
    fig.update_layout(title="peak memory per pipeline rank vs HBM", barmode="stack", yaxis_title="GB",
                      yaxis_range=[0, max(hbm_gb, peak) * 1.1], legend_orientation="h", legend_y=-0.2)
    return fig
