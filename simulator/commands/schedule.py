"""``moesim schedule NAME``: run one pipeline schedule on uniform chunk times (or a preset's priced chunks) and
report, per rank, busy time, bubble and peak in-flight micro-batches; ``--html`` draws the pipeline as a Gantt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moesim.simulator.cli import INPUT_ERRORS, app, console, fail
from moesim.simulator.engine import PipelineEngine, TailSpec, Timeline
from moesim.simulator.limits import check_pipeline
from moesim.simulator.metrics import rank_breakdowns
from moesim.simulator.pricing import Segment, StagePrice
from moesim.simulator.schedules import SCHEDULES, get_schedule
from moesim.workloads.files import check_target, write_atomic
from moesim.workloads.ops import Phase, Stream
from moesim.workloads.quantities import CHUNK_SECONDS


CHUNK = CHUNK_SECONDS.parser()
# Scenario fields named in schedule errors, and the flags that set them here.
UNIFORM_FLAGS = {"parallelism.pp": "--pp", "parallelism.virtual_stages": "--virtual-stages",
                 "parallelism.global_batch": "--microbatches"}


def uniform_prices(stages: int, f_s: float, b_s: float, w_s: float) -> list[StagePrice]:
    """Every stage's chunk: F, B and W each one compute segment of the given seconds, one unit of activation."""
    def segment(phase: Phase, seconds: float) -> tuple[Segment, ...]:
        return (Segment(phase.value, Stream.COMPUTE, seconds, phase),)
    chunk = {Phase.F: segment(Phase.F, f_s), Phase.B: segment(Phase.B, b_s), Phase.W: segment(Phase.W, w_s)}
    return [StagePrice(chunk, 0.0, 0.0, 1.0) for _ in range(stages)]


def schedule_report(name: str, timeline: Timeline, activation_bytes: list[float], pp: int, micro_batches: int,
                    virtual_stages: int) -> dict:
    """Per rank: busy (compute-stream seconds), bubble, exposed communication and peak in-flight chunks."""
    ranks = []
    for rank, b in zip(timeline.row_ranks(), rank_breakdowns(timeline, activation_bytes)):
        busy = b.forward_s + b.backward_input_s + b.backward_weight_s + b.optimizer_s
        ranks.append({"rank": rank, "busy": busy, "bubble": b.bubble_s, "exposed_comm": b.exposed_comm_s,
                      "peak_inflight": b.peak_inflight, "forward": b.forward_s,
                      "backward_input": b.backward_input_s, "backward_weight": b.backward_weight_s})
    makespan = timeline.makespan_s
    return {"schedule": name, "pp": pp, "micro_batches": micro_batches, "virtual_stages": virtual_stages,
            "makespan": makespan, "ranks": ranks,
            "bubble_fraction": sum(r["bubble"] for r in ranks) / (makespan * len(ranks)) if makespan else 0.0}


def gantt_figure(timeline: Timeline, title: str):
    """A plotly Gantt of the timeline: one row per rank and stream, one bar per task, coloured by phase."""
    import plotly.graph_objects as go

    colours = {"F": "#4C78A8", "B": "#F58518", "W": "#54A24B", "opt": "#B279A2", "dp": "#9D755D"}
    names = {"F": "forward", "B": "backward (input)", "W": "backward (weight)", "opt": "optimizer",
             "dp": "data-parallel sync"}
    rows = [f"rank {r} {s}" for r in timeline.row_ranks() for s in ("compute", "comm", "pp")]
    labelled = len(timeline.records) <= 3000  # labels on the bars only while they can be read
    fig = go.Figure()
    for phase in colours:
        recs = [r for r in timeline.records if r[5] == phase and r[3] > r[2]]
        if not recs:
            continue
        fig.add_trace(go.Bar(
            orientation="h", name=names[phase], marker_color=colours[phase], marker_line_width=0,
            y=[f"rank {r[0]} {r[1]}" for r in recs], base=[r[2] for r in recs], x=[r[3] - r[2] for r in recs],
            text=[f"{r[4]} mb{r[6]}" if r[6] >= 0 else r[4] for r in recs],
            textposition="inside" if labelled else "none",
            hovertemplate="%{y}<br>%{text} stage %{customdata}<br>%{base:.4g} s + %{x:.4g} s<extra></extra>",
            customdata=[r[7] for r in recs]))
    fig.update_layout(title=title, barmode="overlay", xaxis_title="seconds", height=120 + 40 * len(rows),
                      yaxis={"categoryorder": "array", "categoryarray": rows[::-1]})
    return fig


def _print(report: dict) -> None:
    console.print(f"[bold]{report['schedule']}[/]: pp {report['pp']}, {report['micro_batches']} micro-batches, "
                  f"{report['virtual_stages']} virtual stage(s) — makespan {report['makespan']:.4g} s, "
                  f"bubble {report['bubble_fraction']:.1%} of rank time", highlight=False)
    table = Table()
    for col in ("rank", "busy", "bubble", "exposed comm", "peak in flight"):
        table.add_column(col, justify="right")
    for r in report["ranks"]:
        table.add_row(str(r["rank"]), f"{r['busy']:.4g}", f"{r['bubble']:.4g}", f"{r['exposed_comm']:.4g}",
                      str(r["peak_inflight"]))
    console.print(table)


@app.command()
def schedule(
    name: str = typer.Argument(..., help=f"Schedule: {', '.join(sorted(SCHEDULES))}."),
    pp: Optional[int] = typer.Option(None, "--pp", help="Pipeline ranks (default 8)."),
    microbatches: Optional[int] = typer.Option(None, "--microbatches", "-m", help="Micro-batches (default 20)."),
    virtual_stages: Optional[int] = typer.Option(None, "--virtual-stages", "-v",
                                                 help="Stages per rank: interleaved ≥ 2, dualpipev 2 (default "
                                                      "2 for dualpipev, else 1)."),
    f: float = typer.Option(1.0, "--f", parser=CHUNK, help="Forward time of one chunk (one stage, one "
                                                           "micro-batch): seconds, or with a unit (ms, us)."),
    b: float = typer.Option(1.0, "--b", parser=CHUNK, help="Backward-for-inputs time of one chunk."),
    w: float = typer.Option(1.0, "--w", parser=CHUNK,
                            help="Backward-for-weights time of one chunk (a full backward is b + w)."),
    fb: Optional[float] = typer.Option(None, "--fb", parser=CHUNK, help="Time of an overlapped F&B pair "
                                                                        "(default f + b + w: no overlap gain)."),
    p2p: float = typer.Option(0.0, "--p2p", parser=CHUNK, help="Send/recv time between ranks."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p",
                                         help="Use a preset's layout and priced chunks instead of uniform times."),
    set_: Optional[list[str]] = typer.Option(None, "--set", "-s", help="With --preset: override a field."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    html: Optional[Path] = typer.Option(None, "--html", help="Write a plotly Gantt of the pipeline here."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --html file."),
) -> None:
    """Run one pipeline schedule and report per-rank busy time, bubble and peak in-flight micro-batches."""
    if set_ and preset is None:
        fail("--set needs --preset (it overrides the preset's scenario); use --pp, --microbatches, --f … here")
    try:
        if html is not None:
            check_target(html, force, "--html")
        if preset is not None:
            report, timeline = _run_preset(name, preset, set_ or [], pp, microbatches, virtual_stages)
        else:
            report, timeline = _run_uniform(name, 8 if pp is None else pp, 20 if microbatches is None else microbatches,
                                            virtual_stages, f, b, w, fb, p2p)
    except INPUT_ERRORS as err:
        fail(str(err))
    if html is not None:
        title = (f"{name}: pp {report['pp']}, {report['micro_batches']} micro-batches — makespan "
                 f"{report['makespan']:.4g} s")
        from moesim.simulator.report.page import standalone_html
        try:
            write_atomic(html, standalone_html(gantt_figure(timeline, title), title), force, "--html")
        except INPUT_ERRORS as err:
            fail(str(err))
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        _print(report)
        if html is not None:
            console.print(f"wrote {html}", highlight=False)


def _run_uniform(name, pp, micro_batches, virtual_stages, f, b, w, fb, p2p):
    for flag, value in (("--f", f), ("--b", b), ("--w", w), ("--p2p", p2p)):
        if value < 0:
            fail(f"{flag}={value:g} must be ≥ 0")
    if f + b + w <= 0:
        fail("--f, --b and --w are all 0; give chunks some time")
    if fb is not None and fb <= 0:
        fail(f"--fb={fb:g} must be > 0")
    cls = get_schedule(name)
    v = virtual_stages if virtual_stages is not None else (2 if name == "dualpipev" else 1)
    try:
        check_pipeline(pp, micro_batches, v, "lower --microbatches, --pp or --virtual-stages")
        sched = cls(pp, micro_batches, v)
    except INPUT_ERRORS as err:  # name this command's flags, not the scenario fields they stand for
        message = str(err)
        for field, flag in UNIFORM_FLAGS.items():
            message = message.replace(field, flag)
        fail(message)
    timeline = PipelineEngine(sched, uniform_prices(sched.stages, f, b, w), p2p, TailSpec(0.0, 0.0, 0.0),
                              pair_s=fb).run()
    return schedule_report(name, timeline, [1.0] * sched.stages, pp, micro_batches, v), timeline


def _run_preset(name, preset, sets, pp, micro_batches, virtual_stages):
    from moesim.simulator.simulate import simulate
    from moesim.workloads.loader import load_scenario

    if pp is not None or micro_batches is not None or virtual_stages is not None:
        fail("with --preset the layout comes from the scenario; use --set parallelism.pp=… (or global_batch, "
             "virtual_stages) instead of --pp/--microbatches/--virtual-stages")
    scenario = load_scenario(None, preset, [f"schedule={name}", *sets])
    result = simulate(scenario, keep_timeline=True, check_memory=False)
    par = scenario.parallelism
    timeline = result.timeline
    report = schedule_report(name, timeline, [1.0] * (par.pp * par.virtual_stages), par.pp,
                             scenario.micro_batches, par.virtual_stages)
    return report, timeline
