"""The live what-if dashboard (Dash): knobs on the left, headline numbers and charts on the right.

Every change of a knob re-simulates the step (representative mode: tens of milliseconds for the small
presets, about a second for DeepSeek-V3 on 2048 GPUs) and redraws the headline numbers, the pipeline
timeline, the step-time breakdown, memory against HBM and the link-utilisation heat map. Bad combinations
(pp that does not divide the GPUs, ep that does not divide the experts, ...) show the one-line error the CLI
would print and leave the last good charts in place.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from dash import Dash, Input, Output, State, dcc, html, no_update

from simulator.report.breakdown import memory_figure, step_breakdown_figure
from simulator.report.build import headline
from simulator.report.heatmap import heatmap_figure
from simulator.report.timeline import timeline_figure
from simulator.report.traffic import link_loads
from simulator.report.whatif import Knobs, preset_knobs, what_if
from simulator.schedules import SCHEDULES, ScheduleError
from workloads.errors import ScenarioError
from workloads.presets import DEFAULT_PRESET, preset_names

MAX_TIMELINE_RECORDS = 20_000  # beyond this the Gantt chart is too heavy to redraw on every change
# Per-NIC bandwidths per direction: 100, 200, 400 and 800 Gb/s InfiniBand or Ethernet ports.
NIC_GBPS_MARKS = (12.5, 25.0, 50.0, 100.0)
KNOBS = ("schedule", "pp", "ep", "micro_batches", "dispatch_dtype", "nic_gbps", "routing_skew")
PANEL = {"width": "270px", "padding": "1rem", "borderRight": "1px solid #ddd", "flex": "none"}
LABEL = {"fontWeight": 600, "marginTop": "0.9rem", "display": "block"}


def _control(label: str, component) -> html.Div:
    return html.Div([html.Label(label, style=LABEL), component])


def _number(id_: str, minimum: int) -> dcc.Input:
    return dcc.Input(id=id_, type="number", min=minimum, step=1, debounce=True, style={"width": "100%"})


def layout(initial: str) -> html.Div:
    controls = html.Div([
        html.H3("moesim what-if", style={"marginTop": 0}),
        _control("preset", dcc.Dropdown(preset_names(), initial, id="preset", clearable=False)),
        _control("schedule", dcc.Dropdown(sorted(SCHEDULES), id="schedule", clearable=False)),
        _control("pipeline parallel (pp)", _number("pp", 1)),
        _control("expert parallel (ep)", _number("ep", 1)),
        _control("micro-batches per step", _number("micro_batches", 1)),
        _control("dispatch dtype", dcc.RadioItems(["fp8", "bf16"], id="dispatch_dtype", inline=True,
                                                  inputStyle={"marginRight": "4px", "marginLeft": "8px"})),
        _control("NIC bandwidth (GB/s per NIC, per direction)",
                 dcc.Slider(0, 100, id="nic_gbps", step=None, included=False,
                            marks={v: f"{v:g}" for v in NIC_GBPS_MARKS})),
        _control("routing skew (Zipf exponent; 0 = balanced)",
                 dcc.Slider(0, 1.5, id="routing_skew", step=0.25, included=False,
                            marks={v: f"{v:g}" for v in (0, 0.5, 1.0, 1.5)})),
        html.P("dp takes the GPUs pp leaves; the global batch follows the micro-batch count. Routing skew makes "
               "expert popularity fall as 1/rank^skew; dense models ignore it.",
               style={"color": "#666", "fontSize": "0.85rem", "marginTop": "1.2rem"}),
    ], style=PANEL)
    charts = html.Div([
        html.Div(id="error", style={"color": "#b00", "fontWeight": 600, "minHeight": "1.4rem"}),
        html.Div(id="summary"),
        html.Div(id="headline"),
        dcc.Loading(dcc.Graph(id="timeline"), type="dot"),
        html.Div([dcc.Graph(id="breakdown", style={"flex": 1}), dcc.Graph(id="memory", style={"flex": 1})],
                 style={"display": "flex"}),
        dcc.Graph(id="links"),
    ], style={"flex": 1, "padding": "1rem", "minWidth": 0})
    return html.Div([controls, charts], style={"display": "flex", "fontFamily": "system-ui, sans-serif"})


def headline_table(summary: dict, sim_s: float) -> html.Table:
    value_style = {"textAlign": "right", "fontWeight": 600, "paddingLeft": "1.5rem"}
    rows = []
    for name, value in headline(summary):
        ids = {"id": "step-time"} if name == "step time" else {}
        rows.append(html.Tr([html.Td(name), html.Td(value, style=value_style, **ids)]))
    rows.append(html.Tr([html.Td("simulated in"), html.Td(f"{sim_s * 1e3:.0f} ms", id="sim-time",
                                                          style={"textAlign": "right", "paddingLeft": "1.5rem"})]))
    return html.Table(rows, style={"borderCollapse": "collapse", "margin": "0.5rem 0"})


def create_app(initial: str = DEFAULT_PRESET) -> Dash:
    app = Dash(__name__, title="moesim what-if")
    app.layout = layout(initial)

    @app.callback([Output(k, "value") for k in KNOBS], Input("preset", "value"))
    def reset_knobs(preset):
        knobs = asdict(preset_knobs(preset))
        return [knobs[k] for k in KNOBS]

    @app.callback(
        [Output("error", "children"), Output("summary", "children"), Output("headline", "children"),
         Output("timeline", "figure"), Output("breakdown", "figure"), Output("memory", "figure"),
         Output("links", "figure")],
        [Input(k, "value") for k in KNOBS], State("preset", "value"))
    def update(schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew, preset):
        if None in (schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew):
            return ("fill in every control",) + (no_update,) * 6
        wall = time.perf_counter()
        try:
            scenario, result = what_if(Knobs(preset, schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps,
                                             routing_skew))
        except (ScenarioError, ScheduleError) as err:
            return (f"error: {err}",) + (no_update,) * 6
        sim_s = time.perf_counter() - wall
        summary = result.to_dict()
        par = scenario.parallelism
        line = (f"{scenario.model.name} on {result.gpus} × {scenario.cluster.gpu.name}: schedule {schedule}, "
                f"dp{par.dp} tp{par.tp} pp{par.pp} ep{par.ep}, {result.micro_batches} micro-batches, "
                f"dispatch {dispatch_dtype}, NIC {nic_gbps:g} GB/s, routing skew {routing_skew:g}")
        tl = result.timeline
        if len(tl.records) <= MAX_TIMELINE_RECORDS:
            timeline = timeline_figure(tl.records, tl.ranks, tl.makespan_s)
        else:
            timeline = timeline_figure([], tl.ranks, tl.makespan_s, title=(
                f"timeline omitted: {len(tl.records):,} segments; moesim simulate --report draws it in full"))
        figures = [timeline, step_breakdown_figure(summary["stages"], result.step_time_s),
                   memory_figure(summary["stages"], result.hbm_gb),
                   heatmap_figure(link_loads(scenario).utilisation(result.step_time_s))]
        for fig in figures:
            fig.update_layout(template="plotly_white", uirevision=preset)
        return ("", line, headline_table(summary, sim_s), *figures)

    return app
