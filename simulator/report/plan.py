"""The plan page (``moesim plan --report plan.html``): every simulated plan on days against cost, the time/cost
Pareto front of those meeting every constraint drawn as a line, the deadline and budget as guides, and the
ranked plans as a table. Hover shows a plan's layout and the metrics a planner acts on."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from moesim.simulator.report.page import Page, Section, render
from moesim.workloads.files import write_atomic


def hover(plan: dict) -> str:
    lay = plan["layout"]
    sched = lay["schedule"] + (f":{lay['virtual_stages']}" if lay["schedule"] == "interleaved" else "")
    return (f"<b>{lay['gpus']:,} {lay['gpu'].upper()}</b> dp{lay['dp']} tp{lay['tp']} pp{lay['pp']} cp{lay['cp']} "
            f"ep{lay['ep']}<br>{sched}, micro-batch {lay['micro_batch_size']}×{lay['micro_batches']}, batch "
            f"{lay['global_batch']:,}, ZeRO-{lay['zero_stage']}, recompute {lay['recompute']}<br>"
            f"{plan['training_days']:.1f} days ({plan['training_days_with_failures']:.1f} with failures), "
            f"${plan['cost_usd']:,.0f}, {plan['gpu_hours']:,.0f} GPU-hours<br>MFU {plan['mfu_causal']:.1%}, "
            f"peak {plan['peak_memory_gb']:.1f} of {plan['hbm_gb']:g} GB<br>{plan['verdict']}")


def front_figure(answer: dict) -> go.Figure:
    fig = go.Figure()
    groups: dict[str, list[dict]] = {}
    for p in answer["simulated"]:
        groups.setdefault("does not fit in memory" if "memory" in p["verdict"] else p["verdict"], []).append(p)
    styles = {"meets every constraint": ("#1f77b4", "circle"), "does not fit in memory": ("#bbbbbb", "x")}
    for label, plans in groups.items():
        color, symbol = styles.get(label, ("#ff7f0e", "circle-open"))
        fig.add_trace(go.Scatter(
            x=[p["training_days"] for p in plans], y=[p["cost_usd"] for p in plans], mode="markers", name=label,
            marker={"color": color, "symbol": symbol, "size": 10}, text=[hover(p) for p in plans],
            hovertemplate="%{text}<extra></extra>"))
    front = answer["pareto"]
    if front:
        fig.add_trace(go.Scatter(x=[p["training_days"] for p in front], y=[p["cost_usd"] for p in front],
                                 mode="lines+markers", name="time/cost Pareto front",
                                 line={"color": "#2ca02c", "width": 2}, marker={"size": 12, "color": "#2ca02c"},
                                 text=[hover(p) for p in front], hovertemplate="%{text}<extra></extra>"))
    request = answer["request"]
    if request["deadline_days"] is not None:
        fig.add_vline(x=request["deadline_days"], line_dash="dash", line_color="#d62728",
                      annotation_text=f"deadline {request['deadline_days']:g} d")
    if request["budget_usd"] is not None:
        fig.add_hline(y=request["budget_usd"], line_dash="dash", line_color="#d62728",
                      annotation_text=f"budget ${request['budget_usd']:,.0f}")
    fig.update_layout(xaxis_title="training days", yaxis_title="cost (USD)", height=560,
                      legend={"orientation": "h", "y": -0.15})
    return fig


def plan_page(answer: dict) -> Page:
    request, search = answer["request"], answer["search"]
    best = answer["plans"][0] if answer["plans"] else None
    headline = [("model", answer["model"]), ("tokens", f"{request['tokens'] / 1e12:g}T"),
                ("layouts searched", f"{search['layouts']:,}"), ("simulated in full", str(search["simulated"]))]
    if best:
        lay = best["layout"]
        headline += [("best plan", f"{lay['gpus']:,} {lay['gpu'].upper()}, {lay['schedule']}"),
                     ("days (with failures)",
                      f"{best['training_days']:.1f} ({best['training_days_with_failures']:.1f})"),
                     ("cost", f"${best['cost_usd']:,.0f}"), ("MFU", f"{best['mfu_causal']:.1%}")]
    sections = [Section("Days against cost", front_figure(answer),
                        "Each point is a simulated plan; the line joins the plans that meet every constraint and "
                        "that no other such plan beats on both days and cost.")]
    notes = [f"{r}: {n:,}" for r, n in search["dropped"].items()]
    notes += [f"closest plan needs: {line}" for line in answer["what_must_change"]]
    return Page(f"moesim plan — {answer['model']}", f"ranked by {request['objective']}; global batch from "
                f"{answer['global_batch_from']}", headline, sections, notes)


def write_plan_report(answer: dict, path: str | Path, force: bool = False) -> Path:
    return write_atomic(Path(path), render(plan_page(answer)), force=force, flag="--report")
