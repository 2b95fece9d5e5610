"""Scenarios side by side: headline metrics, per-stage deltas and overlaid charts of two or more results.

Everything here takes plain ``Result.to_dict()`` summaries (``ResultReport.summary``), so a comparison can mix
freshly simulated scenarios with saved ``--json`` results. The first result is the baseline: deltas are
``other − baseline``. Used by ``moesim compare`` and by the dashboard's pinned baseline.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import plotly.graph_objects as go

from moesim.simulator.report.breakdown import STEP_PARTS
from moesim.simulator.report.page import Page, Section
from moesim.simulator.report.payload import ResultReport
from moesim.simulator.report.timeline import timeline_of
from moesim.simulator.report.traffic import link_loads

PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#9D755D", "#FF9DA6")


@dataclass(frozen=True)
class Metric:
    key: str
    name: str
    fmt: str  # format of the value
    lower_is_better: bool
    unit: str = ""


METRICS = (
    Metric("step_time_s", "step time", "{:.3f}", True, " s"),
    Metric("tokens_per_s", "tokens / s", "{:,.0f}", False),
    Metric("tflops_per_gpu_causal", "TFLOPS / GPU (causal)", "{:.1f}", False),
    Metric("mfu_causal", "MFU (causal)", "{:.1%}", False),
    Metric("gpu_hours_per_trillion_tokens", "GPU-hours per trillion tokens", "{:,.0f}", True),
    Metric("training_days", "training days", "{:.1f}", True),
    Metric("peak_memory_gb", "peak memory (max over stages)", "{:.1f}", True, " GB"),
    Metric("bubble_share", "bubble share", "{:.1%}", True),
    Metric("exposed_comm_share", "exposed comm share", "{:.1%}", True),
    Metric("gpus", "GPUs", "{:,}", True),
    # With an energy section (simulator/energy.py): the whole run.
    Metric("run_gpu_hours", "GPU-hours (run)", "{:,.0f}", True),
    Metric("run_mwh", "energy (run)", "{:,.0f}", True, " MWh"),
    Metric("run_usd", "cost (run)", "${:,.0f}", True),
)
ENERGY_KEYS = ("run_gpu_hours", "run_mwh", "run_usd")
STAGE_FIELDS = (("forward_s", "forward"), ("backward_input_s", "bwd input"), ("backward_weight_s", "bwd weight"),
                ("optimizer_s", "optimizer"), ("exposed_comm_s", "exposed comm"), ("host_bound_s", "host-bound"),
                ("bubble_s", "bubble"), ("peak_memory_gb", "memory"))


def metric_values(summary: dict) -> dict[str, float]:
    """The :data:`METRICS` of one result summary (derived ones computed from its stages)."""
    stages = summary["stages"]
    span = summary["step_time_s"] * max(1, len(stages))
    derived = {
        "peak_memory_gb": max((s["peak_memory_gb"] for s in stages), default=0.0),
        "bubble_share": sum(s["bubble_s"] for s in stages) / span,
        "exposed_comm_share": sum(s["exposed_comm_s"] for s in stages) / span,
    }
    energy = summary.get("energy") or {}
    derived.update({k: energy[k] for k in ENERGY_KEYS if energy.get(k) is not None})
    return {m.key: derived[m.key] if m.key in derived else summary[m.key] for m in METRICS
            if m.key in derived or m.key in summary}


def relative(base: float, value: float) -> float | None:
    return None if base == 0 else value / base - 1


def delta_text(metric: Metric, base: float, value: float) -> str:
    """``+12.3%`` (or ``+1.2 pt`` for shares); empty when unchanged."""
    if value == base:
        return "="
    if metric.fmt.endswith("%}"):
        return f"{(value - base) * 100:+.1f} pt"
    rel = relative(base, value)
    return f"{rel:+.1%}" if rel is not None else f"{value - base:+g}"


def verdict(metric: Metric, base: float, value: float) -> str:
    """``better``, ``worse`` or ``same`` for the reader."""
    if value == base:
        return "same"
    return "better" if (value < base) == metric.lower_is_better else "worse"


def headline_rows(summaries: list[dict]) -> list[tuple[Metric, list[float]]]:
    """Per metric, its value in each summary (metrics missing from any summary are left out)."""
    values = [metric_values(s) for s in summaries]
    return [(m, [v[m.key] for v in values]) for m in METRICS if all(m.key in v for v in values)]


def stage_deltas(base: dict, other: dict) -> list[dict[str, float]] | None:
    """Per stage, ``other − base`` of each :data:`STAGE_FIELDS` field; None when stage counts differ."""
    a, b = base["stages"], other["stages"]
    if len(a) != len(b):
        return None
    # .get: results saved before the host was modelled have no host_bound_s
    return [{f: sb.get(f, 0.0) - sa.get(f, 0.0) for f, _ in STAGE_FIELDS} for sa, sb in zip(a, b)]


def compare_table_html(names: list[str], summaries: list[dict]) -> str:
    """Headline metrics as an HTML table: a column per result, deltas against the first."""
    esc = html.escape
    head = "".join(f"<th>{esc(n)}</th>" for n in names)
    rows = []
    for metric, values in headline_rows(summaries):
        cells = [f"<td>{esc(metric.name)}</td>", f"<td>{esc(metric.fmt.format(values[0]) + metric.unit)}</td>"]
        for v in values[1:]:
            cls = verdict(metric, values[0], v)
            cells.append(f"<td class='{cls}'>{esc(metric.fmt.format(v) + metric.unit)} "
                         f"({esc(delta_text(metric, values[0], v))})</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return (f"<table class='compare' id='compare-table'><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"
            "<p class='note'>In brackets: the change against the first column; green is better, red worse.</p>")


def breakdown_overlay(names: list[str], summaries: list[dict]) -> go.Figure:
    """Where a pipeline rank's step goes, averaged over ranks: one bar group per component, a bar per result."""
    fig = go.Figure()
    parts = [name for _, name, _ in STEP_PARTS]
    for i, (name, s) in enumerate(zip(names, summaries)):
        n = max(1, len(s["stages"]))
        y = [sum(st.get(f, 0.0) for st in s["stages"]) / n for f, _, _ in STEP_PARTS]
        fig.add_trace(go.Bar(x=parts, y=y, name=name, marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate=f"{name}<br>%{{x}}: %{{y:.3f}} s per rank<extra></extra>"))
    fig.update_layout(title="step-time breakdown, mean over pipeline ranks", barmode="group",
                      xaxis_title="component of the step", yaxis_title="seconds per rank per step",
                      legend_orientation="h", legend_y=-0.2)
    return fig


def memory_overlay(names: list[str], summaries: list[dict]) -> go.Figure:
    """Peak memory per pipeline rank, a line per result, with each result's HBM capacity."""
    fig = go.Figure()
    for i, (name, s) in enumerate(zip(names, summaries)):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=list(range(len(s["stages"]))), y=[st["peak_memory_gb"] for st in s["stages"]],
                                 mode="lines+markers", name=name, line_color=colour,
                                 hovertemplate=f"{name}<br>rank %{{x}}: %{{y:.1f}} GB<extra></extra>"))
    for hbm in sorted({s["hbm_gb"] for s in summaries}):
        fig.add_hline(y=hbm, line_dash="dash", line_color="#E45756", annotation_text=f"HBM {hbm:g} GB")
    peak = max(max((st["peak_memory_gb"] for st in s["stages"]), default=0) for s in summaries)
    fig.update_layout(title="peak memory per pipeline rank", xaxis_title="pipeline rank", yaxis_title="GB",
                      xaxis_dtick=1,
                      yaxis_range=[0, max(peak, max(s["hbm_gb"] for s in summaries)) * 1.1],
                      legend_orientation="h", legend_y=-0.2)
    return fig


def network_overlay(names: list[str], reports: list[ResultReport]) -> go.Figure | None:
    """Average NVLink and NIC utilisation per pipeline rank, a line per result and link class."""
    fig = go.Figure()
    for i, (name, rep) in enumerate(zip(names, reports)):
        if rep.scenario is None:
            continue
        grid = link_loads(rep.scenario).utilisation(rep.summary["step_time_s"])
        for row, values, dash in zip(grid.rows, grid.values, ("solid", "dot")):
            fig.add_trace(go.Scatter(x=list(range(len(values))), y=[v * 100 for v in values], name=f"{name} · {row}",
                                     mode="lines+markers", line=dict(color=PALETTE[i % len(PALETTE)], dash=dash),
                                     hovertemplate=f"{name} · {row}<br>rank %{{x}}: %{{y:.1f}}% busy<extra></extra>"))
    if not fig.data:
        return None
    fig.update_layout(title="link utilisation per pipeline rank (NVLink solid, NIC dotted)",
                      xaxis_title="pipeline rank", yaxis_title="% of the step busy", xaxis_dtick=1, legend_orientation="h",
                      legend_y=-0.2)
    return fig


def delta_figure(base: dict, current: dict, base_name: str = "baseline") -> go.Figure:
    """Per pipeline rank, how each step component changed against ``base`` (seconds; + is longer)."""
    fig = go.Figure()
    deltas = stage_deltas(base, current)
    if deltas is None:
        fig.update_layout(title=f"change against {base_name}: the pipelines differ in depth "
                                f"({len(base['stages'])} vs {len(current['stages'])} ranks); see the table")
        return fig
    x = [f"rank {i}" for i in range(len(deltas))]
    for field, name, colour in STEP_PARTS:
        fig.add_trace(go.Bar(x=x, y=[d[field] for d in deltas], name=name, marker_color=colour,
                             hovertemplate=f"{name}: %{{y:+.3f}} s<extra>%{{x}}</extra>"))
    step = current["step_time_s"] - base["step_time_s"]
    fig.update_layout(title=f"change against {base_name} per pipeline rank (step {step:+.3f} s)", barmode="group",
                      xaxis_title="pipeline rank", yaxis_title="seconds per step (+ longer)",
                      legend_orientation="h", legend_y=-0.25)
    return fig


def compare_page(names: list[str], reports: list[ResultReport]) -> Page:
    """The compare page: metrics table, the timelines on one time axis (zoom one, all follow), overlays."""
    summaries = [r.summary for r in reports]
    span_s = max(s["step_time_s"] for s in summaries)
    span_s = max([span_s] + [r.timeline.makespan_s for r in reports if r.timeline is not None])
    sections = [Section("headline metrics", html=compare_table_html(names, summaries))]
    for name, rep in zip(names, reports):
        if rep.timeline is None:
            sections.append(Section(f"timeline: {name}", note="This result has no timeline: save it with "
                                                              "moesim simulate --json --timeline."))
            continue
        data = timeline_of(rep.timeline, title=f"{name} — step {rep.summary['step_time_s']:.3f} s")
        data["span_s"] = span_s
        data["link"] = "compare"
        sections.append(Section(f"timeline: {name}", timeline=data,
                                note="All timelines share one time axis: zoom or pan one and the others follow."))
    sections.append(Section("step-time breakdown", breakdown_overlay(names, summaries)))
    sections.append(Section("memory", memory_overlay(names, summaries)))
    network = network_overlay(names, reports)
    if network is not None:
        sections.append(Section("network", network, "Analytic network model, per link class (see the report "
                                                     "page's link heat map)."))
    for name, s in zip(names[1:], summaries[1:]):
        sections.append(Section(f"change per rank: {name} vs {names[0]}", delta_figure(summaries[0], s, names[0])))
    return Page(f"moesim compare: {' vs '.join(names)}", f"{len(names)} results; the first is the baseline",
                [], sections)
