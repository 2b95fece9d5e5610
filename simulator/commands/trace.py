"""``moesim trace summarize`` and ``moesim replay``: read PyTorch-profiler traces, replay them at scale."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from moesim.simulator.cli import (INPUT_ERRORS, JSON_OPT, PRESET_OPT, PROFILE_OPT, SCENARIO_ARG, SET_OPT,
                           TRACE_OUT_OPT, app, console, fail, print_result)
from moesim.workloads.errors import one_line

trace_app = typer.Typer(no_args_is_help=True, help="Read PyTorch-profiler (Kineto) Chrome traces.")
app.add_typer(trace_app, name="trace")

MAX_LAYER_COLUMNS = 6  # the per-layer table shows the first layers; --json has them all
MAX_LAYER_ROWS = 40
TRACE_ARG = typer.Argument(..., help="A PyTorch-profiler (Kineto) Chrome trace, .json or .json.gz.")
TRACED_AS_OPT = typer.Option(None, "--traced-as", help="The model/cluster the trace was recorded with: a preset "
                             "name or scenario file (default: the replayed scenario at the traced shapes).")


def warn_ignored(trace) -> None:
    """One stderr line naming the trace's optional fields of the wrong type (ignored), if any."""
    if trace.warning:
        print(f"warning: {one_line(trace.warning)}", file=sys.stderr)


def _ms(us: float) -> str:
    return f"{us / 1000:.3f}"


@trace_app.command("summarize")
def summarize_cmd(trace: str = TRACE_ARG, as_json: bool = JSON_OPT) -> None:
    """Per phase and stream: kernel counts and durations; kernel classes; compute/communication overlap."""
    from moesim.workloads.traces import load_trace
    from moesim.workloads.traces.summary import summarize

    try:
        loaded = load_trace(trace)
        summary = summarize(loaded)
    except INPUT_ERRORS as err:
        fail(str(err))
    warn_ignored(loaded)
    if as_json:
        print(json.dumps(summary, indent=1))
        return
    t = summary["trace"]
    console.print(f"[bold]{t['name'] or t['path']}[/] — {t['device']} ({t['sms']} SMs), rank {t['rank']} of "
                  f"{t['world_size']}: {t['kernels']} GPU activities on streams {t['streams']}, "
                  f"{t['flow_links']} launch→kernel links, {t['annotations']} annotations", highlight=False)
    streams = Table(title="streams (ms)", title_justify="left")
    for col in ("stream", "kernels", "kernel time", "busy", "comm kernels", "mostly"):
        streams.add_column(col, justify="right")
    for sid, s in summary["streams"].items():
        streams.add_row(sid, str(s["kernels"]), _ms(s["kernel_us"]), _ms(s["busy_us"]), str(s["comm_kernels"]),
                        s["main_class"])
    console.print(streams)
    classes = Table(title="kernel classes (ms)", title_justify="left")
    for col in ("class", "kernels", "time"):
        classes.add_column(col, justify="right")
    for name, c in summary["kernel_classes"].items():
        classes.add_row(name, str(c["kernels"]), _ms(c["kernel_us"]))
    console.print(classes)
    stream_ids = list(summary["streams"])
    phases = Table(title="phases (ms): GPU time of the kernels each phase launched, all layers",
                   title_justify="left")
    phases.add_column("phase", no_wrap=True, overflow="ellipsis", max_width=36)
    for col in ("layers", "CPU", "GPU", *[f"stream {s}" for s in stream_ids]):
        phases.add_column(col, justify="right")
    layers = Table(title="per layer (GPU ms)", title_justify="left")
    layers.add_column("phase", no_wrap=True, overflow="ellipsis", max_width=36)
    most = max((p["instances"] for p in summary["phases"].values()), default=0)
    for i in range(min(most, MAX_LAYER_COLUMNS)):
        layers.add_column(f"layer {i}", justify="right")
    comm = Table(title="communication kernels (ms): transfer, synchronisation and waiting for peers",
                 title_justify="left")
    comm.add_column("phase", no_wrap=True, overflow="ellipsis", max_width=36)
    for col in ("kernels", "transfer", "sync", "waiting"):
        comm.add_column(col, justify="right")
    for name, p in summary["phases"].items():
        phases.add_row(name, str(p["instances"]), _ms(p["cpu_us"]), _ms(p["gpu_us"]),
                       *[_ms(p["streams"][s]["gpu_us"]) if s in p["streams"] else "" for s in stream_ids])
        if p["per_layer_gpu_us"] and len(summary["phases"]) <= MAX_LAYER_ROWS:
            layers.add_row(name, *[_ms(x) for x in p["per_layer_gpu_us"][:MAX_LAYER_COLUMNS]])
        if "comm" in p:
            c = p["comm"]
            comm.add_row(name, _ms(sum(c.values())), _ms(c["transfer_us"]), _ms(c["sync_us"]), _ms(c["waiting_us"]))
    console.print(phases)
    if layers.row_count:
        console.print(layers)
    if comm.row_count:
        console.print(comm)
    o = summary["overlap"]
    per = f" (summed over {o['gpus']} GPUs)" if o["gpus"] > 1 else ""
    console.print(f"overlap{per}: compute busy {_ms(o['compute_busy_us'])} ms, communication busy "
                  f"{_ms(o['comm_busy_us'])} ms, both at once {_ms(o['overlap_us'])} ms "
                  f"({o['comm_hidden_fraction']:.1%} of communication hidden), communication exposed "
                  f"{_ms(o['comm_exposed_us'])} ms, span {_ms(o['span_us'])} ms", highlight=False)


@app.command()
def replay(trace: str = TRACE_ARG, scenario: Optional[str] = SCENARIO_ARG, preset: Optional[str] = PRESET_OPT,
           set_: Optional[list[str]] = SET_OPT, as_json: bool = JSON_OPT, profile: Optional[str] = PROFILE_OPT,
           trace_out: Optional[str] = TRACE_OUT_OPT,
           force: bool = typer.Option(False, "--force", help="Overwrite an existing --trace file."),
           traced_as: Optional[str] = TRACED_AS_OPT) -> None:
    """Simulate a full training step with per-layer MoE costs measured in a profiler trace."""
    from moesim.simulator.profile_input import user_profile
    from moesim.simulator.export import check_trace_target, write_chrome_trace
    from moesim.simulator.replay import replay as run_replay
    from moesim.workloads.loader import load_scenario
    from moesim.workloads.traces import load_trace

    try:
        sc = load_scenario(scenario, preset, set_ or [])
        if trace_out:
            check_trace_target(trace_out, force)
        traced = None
        if traced_as:
            try:
                traced = load_scenario(traced_as) if Path(traced_as).is_file() else load_scenario(preset=traced_as)
            except INPUT_ERRORS as err:
                fail(f"--traced-as: {err}")
        prof = user_profile(profile)
        loaded = load_trace(trace)
        warn_ignored(loaded)
        replayed = run_replay(loaded, sc, prof, keep_timeline=bool(trace_out), traced_as=traced)
        if trace_out:
            write_chrome_trace(replayed.result.timeline, trace_out, force, f"{sc.name} (replay)", sc.cluster.gpu)
    except INPUT_ERRORS as err:
        fail(str(err))
    except (OSError, ValueError, KeyError) as err:
        fail(f"{err}".splitlines()[0])
    if as_json:
        print(json.dumps(replayed.to_dict(), indent=1))
        return
    costs = replayed.costs
    shapes = ", ".join(f"{k} {v}" for k, v in costs.shapes.items())
    console.print(f"[bold]replay[/] of {trace} (traced at {shapes}) as {sc.name}", highlight=False)
    table = Table(title="one MoE layer (ms): traced, scaled to this scenario, and the cost model's own price",
                  title_justify="left")
    for col in ("component", "traced", "scale", "replayed", "cost model", "layers"):
        table.add_column(col, justify="right")
    for c in costs.costs.values():
        table.add_row(f"{c.component}({c.phase})", f"{c.trace_s * 1e3:.3f}", f"{c.scale:.3f}",
                      f"{c.replay_s * 1e3:.3f}", f"{c.model_s * 1e3:.3f}", str(c.layers_averaged))
    console.print(table)
    for source, names in replayed.sources.items():
        listed = ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in names.items())
        console.print(f"from the {source}: {listed}", highlight=False)
    for note in costs.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    print_result(replayed.result, sc)
    console.print(f"the cost model alone prices this step at {replayed.model_only_step_s:.3f} s", highlight=False)
