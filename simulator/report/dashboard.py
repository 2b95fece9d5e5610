"""The live what-if dashboard (Dash): knobs on the left, headline numbers and charts on the right.

Every change of a knob re-simulates the step (representative mode: tens of milliseconds for the small
presets, about a second for DeepSeek-V3 on 2048 GPUs) and redraws the headline numbers, the pipeline
timeline (for every preset: the browser draws it at two levels of detail with ``assets/moesim.js``, as the
static report does), the step-time breakdown, memory against HBM and the link-utilisation heat map. "Pin as
baseline" keeps the current result: the headline table then shows every change against it, and a chart the
change per rank and step component. Bad combinations (pp that does not divide the GPUs, ep that does not
divide the experts, ...) show the one-line error the CLI would print beside the last good charts, greyed.

Every callback input is checked (:mod:`moesim.simulator.report.dashboard_inputs`) as the command line checks its
options, so a request crafted by hand (a preset that is a path, a bandwidth that is text, a forged baseline) gets
the same one line in the page, never an HTTP 500. Every chart has a height of its own (a flex row of graphs with
none draws them 37 px tall with dash 4) and the row wraps below a chart's minimum width.
"""

from __future__ import annotations

import time
from dataclasses import asdict

from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html, no_update

from moesim.simulator.report.breakdown import memory_figure, step_breakdown_figure
from moesim.simulator.report.dashboard_inputs import INTERNAL, checked_baseline, checked_current, checked_knobs, \
    checked_preset
from moesim.simulator.report.build import headline
from moesim.simulator.report.compare import delta_figure, delta_text, headline_rows, verdict
from moesim.simulator.report.heatmap import heatmap_figure
from moesim.simulator.report.page import CONFIG
from moesim.simulator.report.timeline import SCRIPT, timeline_of
from moesim.simulator.report.traffic import link_loads
from moesim.simulator.report.whatif import preset_knobs, what_if
from moesim.simulator.schedules import SCHEDULES, ScheduleError
from moesim.workloads.errors import ScenarioError
from moesim.workloads.presets import DEFAULT_PRESET, preset_names

# Per-NIC bandwidths per direction: 100, 200, 400 and 800 Gb/s InfiniBand or Ethernet ports.
NIC_GBPS_MARKS = (12.5, 25.0, 50.0, 100.0)
KNOBS = ("schedule", "pp", "ep", "micro_batches", "dispatch_dtype", "nic_gbps", "routing_skew")
PANEL = {"width": "270px", "padding": "1rem", "borderRight": "1px solid #ddd", "flex": "none"}
LABEL = {"fontWeight": 600, "marginTop": "0.9rem", "display": "block"}
GRAPHS = ("breakdown", "memory", "links", "delta")
BUTTON = {"fontSize": "0.8rem", "marginLeft": "0.4rem", "cursor": "pointer"}
# Heights (px) of the charts whose figures set none. Dash 4 gives a graph `height: 100%` of its parent, and a
# flex row of graphs has no height: they were drawn 37 px tall. The others (timeline, links) size to their figure.
CHART_HEIGHT_PX = {"breakdown": 480, "memory": 480, "delta": 480}
MIN_CHART_WIDTH_PX = 320  # below two of these side by side, the breakdown and memory charts stack
CHART_BOX = {"minWidth": f"{MIN_CHART_WIDTH_PX}px"}
STALE = {"opacity": 0.35, "filter": "grayscale(1)", "transition": "opacity 0.2s"}  # results of an earlier input


def _control(label: str, component) -> html.Div:
    return html.Div([html.Label(label, style=LABEL), component])


def _number(id_: str, minimum: int) -> dcc.Input:
    return dcc.Input(id=id_, type="number", min=minimum, step=1, debounce=True, style={"width": "100%"})


def downloads(name: str) -> html.Div:
    """CSV and JSON buttons under a chart (the browser builds the file from the chart's data)."""
    return html.Div(["this chart's data:",
                     html.Button("CSV", id=f"{name}-csv", n_clicks=0, style=BUTTON),
                     html.Button("JSON", id=f"{name}-json", n_clicks=0, style=BUTTON),
                     html.Span(id=f"{name}-saved")],
                    style={"fontSize": "0.8rem", "color": "#666", "margin": "0 0 1rem 0"})


def graph(name: str, **style) -> html.Div:
    """A chart and its download buttons in a box (``<name>-box``) at least MIN_CHART_WIDTH_PX wide."""
    height = CHART_HEIGHT_PX.get(name)
    return html.Div([dcc.Graph(id=name, config=CONFIG, style={"height": f"{height}px" if height else "auto"}),
                     downloads(name)], id=f"{name}-box", style={**CHART_BOX, **style})


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
        html.Button("pin as baseline", id="pin", n_clicks=0, style={"marginTop": "1rem", "cursor": "pointer"}),
        html.Button("clear baseline", id="unpin", n_clicks=0,
                    style={"marginTop": "1rem", "marginLeft": "0.4rem", "cursor": "pointer"}),
        html.P(id="baseline-line", style={"color": "#666", "fontSize": "0.85rem"}),
    ], style=PANEL)
    charts = html.Div([
        html.Div(id="error", style={"color": "#b00", "fontWeight": 600, "minHeight": "1.4rem"}),
        html.Div(id="results", children=[
            html.Div(id="summary"),
            html.Div(id="headline"),
            dcc.Store(id="timeline-data"), dcc.Store(id="current"), dcc.Store(id="baseline"),
            dcc.Loading(dcc.Graph(id="timeline", config=CONFIG, style={"height": "auto"}), type="dot"),
            downloads("timeline"),
            html.Div([graph("breakdown", flex=1), graph("memory", flex=1)],
                     style={"display": "flex", "flexWrap": "wrap"}),
            graph("delta", display="none"),
            graph("links"),
        ]),
    ], style={"flex": 1, "padding": "1rem", "minWidth": 0})
    return html.Div([controls, charts], style={"display": "flex", "fontFamily": "system-ui, sans-serif"})


def headline_table(summary: dict, sim_s: float, baseline: dict | None = None) -> html.Table:
    """The headline numbers; with a pinned ``baseline`` (``{"summary", "line"}``) a column of changes."""
    value_style = {"textAlign": "right", "fontWeight": 600, "paddingLeft": "1.5rem"}
    rows = []
    for name, value in headline(summary):
        ids = {"id": "step-time"} if name == "step time" else {}
        rows.append(html.Tr([html.Td(name), html.Td(value, style=value_style, **ids)]))
    rows.append(html.Tr([html.Td("simulated in"), html.Td(f"{sim_s * 1e3:.0f} ms", id="sim-time",
                                                          style={"textAlign": "right", "paddingLeft": "1.5rem"})]))
    table = html.Table(rows, style={"borderCollapse": "collapse", "margin": "0.5rem 0"})
    if baseline is None:
        return table
    colours = {"better": "#1a7f37", "worse": "#b00", "same": "#666"}
    changes = [html.Tr([html.Th("against the baseline", style={"textAlign": "left"}), html.Th("baseline"),
                        html.Th("now"), html.Th("change")])]
    for metric, (base, now) in headline_rows([baseline["summary"], summary]):
        changes.append(html.Tr([
            html.Td(metric.name), html.Td(metric.fmt.format(base) + metric.unit, style={"textAlign": "right"}),
            html.Td(metric.fmt.format(now) + metric.unit, style={"textAlign": "right", "paddingLeft": "1rem"}),
            html.Td(delta_text(metric, base, now), style={"textAlign": "right", "paddingLeft": "1rem",
                                                          "color": colours[verdict(metric, base, now)]})]))
    table.style["marginRight"] = "2rem"
    return html.Div([table, html.Table(changes, id="baseline-table", style={
        "borderCollapse": "collapse", "margin": "0.5rem 2rem 0.5rem 0", "fontVariantNumeric": "tabular-nums"})],
        style={"display": "flex", "flexWrap": "wrap", "alignItems": "flex-start"})


def create_app(initial: str = DEFAULT_PRESET) -> Dash:
    app = Dash(__name__, title="moesim what-if", assets_folder=str(SCRIPT.parent))
    app.layout = layout(initial)

    @app.server.errorhandler(Exception)
    def malformed(err):
        """A request no page of this app sends (its callbacks catch their own errors, see ``update``): one line
        and 400, not a 500 with a traceback in the server's log."""
        from werkzeug.exceptions import HTTPException
        if isinstance(err, HTTPException):
            return err
        return (f"error: not a request this page sends ({type(err).__name__}); reload the page\n", 400,
                {"Content-Type": "text/plain; charset=utf-8"})
    app.clientside_callback(ClientsideFunction("moesim", "timeline"), Output("timeline", "figure"),
                            Input("timeline-data", "data"), Input("timeline", "relayoutData"),
                            State("timeline", "figure"))
    app.clientside_callback(ClientsideFunction("moesim", "downloadTimeline"), Output("timeline-saved", "title"),
                            Input("timeline-csv", "n_clicks"), Input("timeline-json", "n_clicks"),
                            State("timeline-data", "data"), State("timeline", "id"),
                            prevent_initial_call=True)
    for name in GRAPHS:
        app.clientside_callback(ClientsideFunction("moesim", "downloadFigure"), Output(f"{name}-saved", "title"),
                                Input(f"{name}-csv", "n_clicks"), Input(f"{name}-json", "n_clicks"),
                                State(name, "figure"), State(name, "id"), prevent_initial_call=True)

    @app.callback([Output("baseline", "data"), Output("baseline-line", "children")],
                  [Input("pin", "n_clicks"), Input("unpin", "n_clicks")], State("current", "data"),
                  prevent_initial_call=True)
    def pin(_pin, _unpin, current):
        from dash import ctx
        if ctx.triggered_id == "unpin" or current is None:
            return None, ""
        try:
            current = checked_current(current)
        except ScenarioError as err:
            return None, f"error: {err}"
        return current, f"baseline: {current['line']}"

    @app.callback([Output(k, "value") for k in KNOBS] + [Output("error", "children", allow_duplicate=True)],
                  Input("preset", "value"), prevent_initial_call="initial_duplicate")
    def reset_knobs(preset):
        try:
            knobs = asdict(preset_knobs(checked_preset(preset)))
        except ScenarioError as err:
            return [no_update] * len(KNOBS) + [f"error: {err}"]
        return [knobs[k] for k in KNOBS] + [no_update]

    @app.callback(
        [Output("error", "children"), Output("summary", "children"), Output("headline", "children"),
         Output("timeline-data", "data"), Output("breakdown", "figure"), Output("memory", "figure"),
         Output("links", "figure"), Output("current", "data"), Output("delta", "figure"),
         Output("delta-box", "style"), Output("results", "style"), Output("links", "style")],
        [Input(k, "value") for k in KNOBS] + [Input("baseline", "data")], State("preset", "value"))
    def update(schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew, baseline, preset):
        """Simulate the knobs; on bad input the error line and the last good results, greyed."""
        if None in (schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew):
            return ("fill in every control",) + (no_update,) * 9 + (STALE, no_update)
        try:
            return simulate_knobs(preset, schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew,
                                  baseline)
        except (ScenarioError, ScheduleError) as err:
            return (f"error: {err}",) + (no_update,) * 9 + (STALE, no_update)
        except Exception as err:  # a bug, not bad input: one line in the page, as the CLI's exit 70
            return (f"{INTERNAL}: {type(err).__name__}: {err}"[:300],) + (no_update,) * 9 + (STALE, no_update)

    return app


def simulate_knobs(preset, schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew, baseline):
    """The outputs of the dashboard's update callback for checked inputs (ScenarioError names a bad one)."""
    knobs = checked_knobs(preset, schedule, pp, ep, micro_batches, dispatch_dtype, nic_gbps, routing_skew)
    baseline = checked_baseline(baseline)
    wall = time.perf_counter()
    scenario, result = what_if(knobs)
    sim_s = time.perf_counter() - wall
    summary = result.to_dict()
    par = scenario.parallelism
    line = (f"{scenario.model.name} on {result.gpus} × {scenario.cluster.gpu.name}: schedule {knobs.schedule}, "
            f"dp{par.dp} tp{par.tp} pp{par.pp} ep{par.ep}, {result.micro_batches} micro-batches, dispatch "
            f"{knobs.dispatch_dtype}, NIC {knobs.nic_gbps:g} GB/s, routing skew {knobs.routing_skew:g}")
    timeline = timeline_of(result.timeline)
    figures = [step_breakdown_figure(summary["stages"], result.step_time_s),
               memory_figure(summary["stages"], result.hbm_gb),
               heatmap_figure(link_loads(scenario).utilisation(result.step_time_s))]
    delta, delta_style = {}, {**CHART_BOX, "display": "none"}
    if baseline is not None:  # the change chart shows only against a pinned baseline
        delta = delta_figure(baseline["summary"], summary, "the baseline")
        figures.append(delta)
        delta_style = CHART_BOX
    for fig in figures:
        fig.update_layout(template="plotly_white", uirevision=knobs.preset)
    current = {"summary": summary, "line": line}
    links_style = {"height": f"{figures[2].layout.height}px"}  # the heat map's height grows with its rows
    return ("", line, headline_table(summary, sim_s, baseline), timeline, *figures[:3], current, delta,
            delta_style, {}, links_style)
